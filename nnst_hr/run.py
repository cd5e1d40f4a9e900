"""A whole run from files to files, with a resumable run folder.

``run_files(content, style, output, options)`` writes ``output`` and, beside it,
``<output stem>.run/`` holding ``config.json`` (every parameter, versions, seed),
``nnst.png``, ``nnst_raw.png``, ``nnf.npz``, ``timings.json`` and the checkpoints
that let an interrupted run resume: a stage whose inputs and parameters are
unchanged is not recomputed.
"""

from __future__ import annotations

import hashlib
import json
import platform
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from . import __version__
from .config import NNSTConfig, PosterConfig
from .device import resolve_device
from .errors import InputError
from .field import load_field, save_field
from .io import atomic_output, check_output_path, read_image, sha256_file, write_image
from .progress import Progress, format_seconds
from .nnst import StylizeResult, stylize

NNST_STATE = "nnst_state.npz"  # float32 results of the NNST stage, for exact resumption


@dataclass
class RunOptions:
    """Everything a run needs besides the three paths."""

    nnst: NNSTConfig = field(default_factory=NNSTConfig)
    poster: PosterConfig = field(default_factory=PosterConfig)
    guide: Path | None = None  # masks folder (see guidance.load_masks)
    overwrite: bool = False  # replace an existing output file
    dpi: int = 300  # resolution tag of TIFF and PNG outputs
    jpeg_quality: int = 95  # quality of JPEG outputs
    bit_depth: int | None = None  # 8 or 16; None: 16 for TIFF, 8 otherwise
    weights: Path | None = None  # VGG16 weights file
    quiet: bool = False  # no progress on stderr
    print_size: str | None = None  # A3..A0 or WxH{in,cm,mm}: sets the poster size from `dpi` (nnst_hr.printing)
    fit: str = "crop"  # with print_size: crop the content to the print's aspect, or pad it (mirrored)


def run_folder(output: Path) -> Path:
    """``poster.tif -> poster.run/`` beside it."""
    return output.with_name(output.stem + ".run")


def _folder_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode())
        digest.update(sha256_file(path).encode())
    return digest.hexdigest()


def _versions() -> dict[str, str]:
    import numba
    import torch

    return {"nnst_hr": __version__, "torch": torch.__version__, "numpy": np.__version__,
            "numba": numba.__version__, "python": platform.python_version()}


def _write_json(path: Path, data: dict) -> None:
    with atomic_output(path, overwrite=True) as tmp:
        Path(tmp).write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def _nnst_key(content: Path, style: Path, options: RunOptions) -> dict:
    """What the NNST stage's result depends on (device and progress do not count)."""
    params = options.nnst.to_dict()
    params.pop("device")
    return {
        "content_sha256": sha256_file(content),
        "style_sha256": sha256_file(style),
        "guide_sha256": _folder_digest(options.guide) if options.guide else None,
        "nnst": params,
    }


def _load_nnst_state(folder: Path) -> StylizeResult:
    with np.load(folder / NNST_STATE, allow_pickle=False) as data:
        state = {k: data[k] for k in data.files}
    nnf = load_field(folder / "nnf.npz")
    return StylizeResult(
        image=state["image"], raw=state["raw"], field=nnf["nnf"],
        content_size=tuple(int(v) for v in nnf["content_size"]),
        style_size=tuple(int(v) for v in nnf["style_size"]),
        objective=float(state["objective"]), timings={},
    )


def _save_nnst_state(folder: Path, result: StylizeResult) -> None:
    write_image(folder / "nnst.png", result.image, overwrite=True)
    write_image(folder / "nnst_raw.png", result.raw, overwrite=True)
    save_field(folder / "nnf.npz", result.field, result.content_size, result.style_size)
    with atomic_output(folder / NNST_STATE, overwrite=True) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, image=result.image, raw=result.raw, objective=np.float64(result.objective))


def load_inputs(content: Path, style: Path, options: RunOptions):
    """Read and validate the images and masks (before any long computation)."""
    content_img = read_image(content)
    style_img = read_image(style)
    masks = None
    if options.guide is not None:
        from guidance import load_masks

        masks = load_masks(options.guide, content_img.shape[:2], style_img.shape[:2])
    return content_img, style_img, masks


def run_files(content: str | Path, style: str | Path, output: str | Path, options: RunOptions | None = None) -> dict:
    """Stylize ``content`` after ``style`` and write ``output`` (format from its extension).

    Returns the timings dict (seconds per stage) that is also written to ``timings.json``.
    """
    options = options or RunOptions()
    content, style, output = Path(content), Path(style), Path(output)
    for given in (content, style):
        if output.resolve() == given.resolve() or (output.exists() and given.exists() and output.samefile(given)):
            raise InputError(f"the output {output} is one of the inputs; choose another output path")
    check_output_path(output, overwrite=options.overwrite, bit_depth=options.bit_depth)
    options.nnst.validate()
    options.poster.validate()
    resolve_device(options.nnst.device)
    progress = Progress(enabled=not options.quiet)
    content_img, style_img, masks = load_inputs(content, style, options)
    for message in (masks.warnings if masks is not None else []):
        progress.message(f"warning: {message}")
    plan = None
    if options.print_size is not None:  # the content and the poster size follow the print (nnst_hr.printing)
        from .printing import fit_content, fit_labels, plan_print

        if options.poster.out_size is not None:
            raise InputError("--print sets the output size; leave out --out-size")
        plan = plan_print(content_img.shape[:2], options.print_size, options.dpi, options.fit)
        content_img, masks = fit_content(content_img, plan), fit_labels(masks, plan)
        options = replace(options, poster=replace(options.poster, out_size=max(plan.pixels)))
        progress.message(plan.describe())

    folder = run_folder(output)
    folder.mkdir(parents=True, exist_ok=True)
    config_path = folder / "config.json"
    previous = json.loads(config_path.read_text()) if config_path.exists() else {}
    nnst_key = _nnst_key(content, style, options)
    if plan is not None:
        nnst_key["print"] = plan.key()
    poster_key = {"poster": options.poster.to_dict(), **nnst_key}
    checkpoints = folder / "checkpoints"
    if previous.get("nnst_key") != nnst_key:
        # a changed input or parameter invalidates every saved intermediate result
        shutil.rmtree(checkpoints, ignore_errors=True)
        (folder / NNST_STATE).unlink(missing_ok=True)
    _write_json(config_path, {
        "content": str(content), "style": str(style), "output": str(output),
        "guide": str(options.guide) if options.guide else None,
        "nnst_key": nnst_key, "poster_key": poster_key,
        "seed": options.nnst.seed, "device": options.nnst.device,
        "versions": _versions(), "dpi": options.dpi, "bit_depth": options.bit_depth,
        "print": options.print_size, "fit": options.fit,
    })

    timings: dict[str, float] = {}
    start = time.perf_counter()
    if (folder / NNST_STATE).exists():
        result = _load_nnst_state(folder)
        progress.message("nnst: resumed from the run folder")
    else:
        progress.message(f"nnst: {options.nnst.size}px, scales {options.nnst.scales()}")
        result = stylize(content_img, style_img, options.nnst, masks=masks, progress=progress,
                         checkpoint_dir=checkpoints, weights=options.weights)
        _save_nnst_state(folder, result)
        timings.update({f"nnst.{k}": v for k, v in result.timings.items()})
    timings["nnst_objective"] = result.objective

    final = result.image
    if options.poster.out_size and options.poster.out_size != max(result.raw.shape[:2]):
        from .poster import make_poster

        final = make_poster(content_img, style_img, result, options, folder,
                            resume=previous.get("poster_key") == poster_key,
                            masks=masks, progress=progress, timings=timings)

    if plan is not None:
        from .printing import fit_to_print

        final = fit_to_print(final, plan)
    write_image(output, final, overwrite=options.overwrite, bit_depth=options.bit_depth,
                jpeg_quality=options.jpeg_quality, dpi=options.dpi)
    from .printing import write_proof

    write_proof(folder / "proof.jpg", final, options.dpi)
    timings["total"] = time.perf_counter() - start
    _write_json(folder / "timings.json", timings)
    progress.message(f"wrote {output} ({final.shape[1]}x{final.shape[0]}) in {format_seconds(timings['total'])}")
    return timings
