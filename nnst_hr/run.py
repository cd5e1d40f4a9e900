"""A whole run from files to files, with a resumable run folder.

``run_files(content, style, output, options)`` writes ``output`` and, beside it,
``<output stem>.run/`` holding ``config.json`` (every parameter, versions, seed),
``nnst.png``, ``nnst_raw.png``, ``nnf.npz``, ``timings.json`` and the checkpoints
that let an interrupted run resume: a stage whose inputs and parameters are
unchanged is not recomputed.

This module owns the run folder: the stages (:func:`nnst_hr.nnst.synthesize_nnst`,
:func:`nnst_hr.color.color_stage`, :func:`nnst_hr.poster.synthesize_poster_stage`,
:func:`nnst_hr.poster.color_poster`) are pure functions; reading inputs, timing the
stages, saving their results and handing saved states back to them happen here.
``config.json`` also reproduces a run: :func:`read_run_config` reads it back.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import platform
import shutil
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Literal

import numpy as np

from . import __version__
from .color import color_stage
from .config import NNSTConfig, PosterConfig, checked_value, field_label, option_label, values_from
from .device import resolve_device
from .errors import InputError
from .files import (
    DECODE_VERSION,
    DEFAULT_BIT_DEPTH,
    OUTPUT_FORMATS,
    atomic_output,
    check_output_file,
    check_output_path,
    check_write_options,
    load_npz,
    load_states,
    read_image,
    refuse_special_file,
    save_npz,
    save_state,
    sha256_file,
    write_cmyk_tiff,
    write_image,
)
from .integrity import SIDECAR_SUFFIX, remove
from .lock import run_lock
from .memory import release_freed_memory
from .nnf import save_field
from .nnst import NNSTResult, check_short_sides, synthesize_nnst
from .preflight import check_resources
from .progress import Progress, Stage, format_seconds
from .sizes import check_input_sizes
from .weights import check_weights_file
from .workplan import output_stage

NNF = "nnf.npz"  # the NNST stage's field (nnst_hr.nnf)
NNST_STATE = "nnst_state.npz"  # float32 results of the NNST stage, for exact resumption
POSTER_STATE = "poster_state.npz"  # synthesized poster and field, for resuming the color stage
CHECKPOINTS = "checkpoints"  # per-scale NNST states (one .npz each), for resuming inside the NNST stage
# every file a run writes into its folder (the .npz files with a checksum sidecar each)
RUN_FILES = ("config.json", "nnst.png", "nnst_raw.png", NNF, NNST_STATE, POSTER_STATE, "timings.json", "proof.jpg")
# config.json's entries besides the two configs: what read_run_config accepts (a missing one is None)
RUN_CONFIG_TYPES = {"content": str | None, "style": str | None, "output": str | None, "guide": str | None,
                    "dpi": float | None, "jpeg_quality": int | None, "bit_depth": int | None, "print": str | None,
                    "fit": Literal["crop", "pad"] | None, "bleed": float | None,
                    "cmyk": str | None}
NNST_IMAGES = 3  # the NNST stage's color stage and the images it saves, in images written (for the time left)
JPEG_MAX_SIDE = 65500  # libjpeg's largest image side (JPEG_MAX_DIMENSION; the format's fields would hold 65535)


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
    print_size: str | None = None  # A6..A0 or WxH{in,cm,mm}: sets the poster size from `dpi` (nnst_hr.printing)
    fit: str = "crop"  # with print_size: crop the content to the print's aspect, or pad it (mirrored)
    bleed: float = 0.0  # with print_size: mm of picture added on every side, which the print shop trims off
    cmyk: Path | None = None  # a press's CMYK output ICC profile: the output is a CMYK TIFF separated through it


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
        "decode": DECODE_VERSION,  # the same bytes read otherwise are other inputs
        "nnst": params,
    }


def _array_mismatch(name: str, array: np.ndarray, shape: tuple[int, ...], kind: type) -> str | None:
    """Why ``array`` is not the ``shape`` array of ``kind`` (np.floating, np.integer) a run computes; None if it is."""
    if array.shape == shape and np.issubdtype(array.dtype, kind):
        return None
    expected = "float" if kind is np.floating else "integer"
    return f"holds {name} of {array.shape} {array.dtype}, not the {shape} {expected} this run computes"


def _nnst_state_mismatch(state: dict, nnf: dict, content_size: tuple[int, int], style_size: tuple[int, int],
                         rotate: bool) -> tuple[str, str] | None:
    """The file (``NNST_STATE`` or ``NNF``) whose arrays are not this run's NNST result, and why; None if both are.

    ``content_size`` / ``style_size``: the content and style as NNST resizes them (:func:`long_side_shape`).
    """
    from .hypercolumns import feature_grid

    image_shape, grid = (*content_size, 3), (*feature_grid(*content_size), 3)
    for name, words in (("image", "an image"), ("raw", "a raw image")):
        if problem := _array_mismatch(words, state[name], image_shape, np.floating):
            return NNST_STATE, problem
    if problem := _array_mismatch("an objective", state["objective"], (), np.floating):
        return NNST_STATE, problem
    for name, size in (("content_size", content_size), ("style_size", style_size)):
        if problem := _array_mismatch(f"a {name}", nnf[name], (2,), np.integer):
            return NNF, problem
        if tuple(int(v) for v in nnf[name]) != size:
            return NNF, (f"was made for a {name} of {tuple(int(v) for v in nnf[name])}, not the {size} this "
                               "run uses")
    field = nnf["nnf"]
    if problem := _array_mismatch("a field", field, grid, np.integer):
        return NNF, problem
    k, y, x = (field[..., i].astype(np.int64) for i in range(3))
    turned = k % 2 == 1  # the style turned a quarter: its height and width swap
    height, width = np.where(turned, style_size[1], style_size[0]), np.where(turned, style_size[0], style_size[1])
    if not ((k >= 0) & (k < (4 if rotate else 1)) & (y >= 0) & (y < height) & (x >= 0) & (x < width)).all():
        return NNF, f"holds a field pointing outside the style{' (or turning it)' if not rotate else ''}"
    return None


def _load_nnst_state(folder: Path, content_shape: tuple[int, int], style_shape: tuple[int, int],
                     options: RunOptions) -> tuple[NNSTResult, np.ndarray] | None:
    """The NNST stage's result and its colored image, as :func:`_save_nnst_state` left them, if they are
    this run's: of the shapes that content and style of ``content_shape`` and ``style_shape`` (as read)
    give at ``options.nnst.size``.

    None when either file is missing, truncated or corrupt (checksums: :mod:`nnst_hr.integrity`), lacks
    an array, or holds arrays of other shapes or types (another version, another size or a hand edit
    wrote it): after one warning, that file is removed so that the stage runs again. Their checksums
    alone say only that the bytes are the ones written, not that they are this run's result.
    """
    from .memory import long_side_shape

    state = load_npz(folder / NNST_STATE, keys=("image", "raw", "objective"))
    nnf = load_npz(folder / NNF, keys=("nnf", "content_size", "style_size"))
    if state is None or nnf is None:
        return None
    size = options.nnst.size
    content_size, style_size = long_side_shape(content_shape, size), long_side_shape(style_shape, size)
    mismatch = _nnst_state_mismatch(state, nnf, content_size, style_size, options.nnst.rotate)
    if mismatch is not None:
        name, problem = mismatch
        warnings.warn(f"{folder / name} {problem}; recomputing it", stacklevel=2)
        remove(folder / name)
        return None
    result = NNSTResult(
        raw=state["raw"], field=nnf["nnf"], content_size=content_size, style_size=style_size,
        objective=float(state["objective"]), timings={},
    )
    return result, state["image"]


def _save_nnst_state(folder: Path, result: NNSTResult, image: np.ndarray) -> None:
    write_image(folder / "nnst.png", image, overwrite=True)
    write_image(folder / "nnst_raw.png", result.raw, overwrite=True)
    save_field(folder / NNF, result.field, result.content_size, result.style_size)
    save_npz(folder / NNST_STATE, image=image, raw=result.raw, objective=np.float64(result.objective))


@dataclass
class _Saved:
    """The stage results in a run folder that this run takes instead of computing them."""

    nnst: tuple[NNSTResult, np.ndarray] | None  # NNST's result and its colored image (:func:`_load_nnst_state`)
    synthesis: np.ndarray | None  # the synthesized poster from poster_state.npz (:func:`_load_poster_state`)


def _poster_shape(nnst_shape: tuple[int, int], options: RunOptions) -> tuple[int, int] | None:
    """The poster's ``(H, W)`` after an NNST result of ``nnst_shape``; None: the run has no poster stage.

    The same rule and arithmetic as the stage itself (:func:`_run_files`, ``synthesize_poster_stage``).
    """
    out_size = options.poster.out_size
    if not out_size or out_size == max(nnst_shape):
        return None
    from .poster import scaled_shape

    return scaled_shape(nnst_shape, out_size / max(nnst_shape))


def _load_poster_state(folder: Path, shape: tuple[int, int]) -> np.ndarray | None:
    """The synthesized poster that ``poster_state.npz`` holds, if it is one of ``shape`` ``(H, W)``.

    None when the file is missing, truncated or corrupt, lacks the image, or holds an image of
    another shape or type (another version or a hand edit wrote it): after a warning, the file is
    removed so that the synthesis runs again. Its checksum alone says only that the bytes are
    the ones written, not that they are this run's poster.
    """
    path = folder / POSTER_STATE
    state = load_npz(path, keys=("image",))
    if state is None:
        return None
    image = state["image"]
    expected = (*shape, 3)
    if image.shape == expected and np.issubdtype(image.dtype, np.floating):
        return image
    warnings.warn(f"{path} holds a poster of {image.shape} {image.dtype}, not the {expected} float32 this run "
                  "synthesizes; recomputing it", stacklevel=2)
    remove(path)
    return None


def _saved_stages(folder: Path, previous: dict, nnst_key: dict, poster_key: dict, options: RunOptions,
                  content_shape: tuple[int, int], style_shape: tuple[int, int]) -> _Saved:
    """What ``folder`` holds for a run with these keys: results written under the same keys, intact
    and of the shapes this run computes from a content and style of ``content_shape`` and
    ``style_shape`` ``(H, W)`` (as NNST gets them), loaded.

    ``previous`` is the folder's ``config.json`` (empty for a new folder). Decided once, before
    the memory check (which counts only the stages that will run), and handed to the stages,
    which use exactly what was loaded here: the decision and the loading cannot disagree.
    The poster's synthesis is taken only with the NNST result it was made from.
    """
    nnst = (_load_nnst_state(folder, content_shape, style_shape, options)
            if previous.get("nnst_key") == nnst_key else None)
    synthesis = None
    shape = _poster_shape(nnst[0].raw.shape[:2], options) if nnst is not None else None
    if shape is not None and previous.get("poster_key") == poster_key:
        synthesis = _load_poster_state(folder, shape)
    return _Saved(nnst, synthesis)


def _nnst(content_img, style_img, masks, options: RunOptions, folder: Path,
          saved: tuple[NNSTResult, np.ndarray] | None, progress: Progress, timings: dict):
    """The NNST stage and its color stage; ``saved`` (:attr:`_Saved.nnst`) is returned when given."""
    if saved is not None:
        progress.message("nnst: resumed from the run folder")
        return saved
    progress.message(f"nnst: {options.nnst.size}px, scales {options.nnst.scales()}")
    total = time.perf_counter()
    checkpoints = folder / CHECKPOINTS
    result = synthesize_nnst(content_img, style_img, options.nnst, masks=masks, weights=options.weights,
                             progress=progress, start_from=load_states(checkpoints),
                             on_checkpoint=partial(save_state, checkpoints))
    start = time.perf_counter()
    image = color_stage(result.raw, content_img, style_img, options.nnst)
    timings.update({f"nnst.{k}": v for k, v in result.timings.items()})
    timings["nnst.color"] = time.perf_counter() - start
    timings["nnst.total"] = time.perf_counter() - total
    _save_nnst_state(folder, result, image)
    return result, image


def _poster(content_img, style_img, masks, result: NNSTResult, options: RunOptions, folder: Path, *,
            saved: np.ndarray | None, progress: Progress, timings: dict) -> np.ndarray:
    """The poster stage and its color stage; ``saved`` (:attr:`_Saved.synthesis`) is the synthesis when given."""
    from .poster import color_poster, synthesize_poster_stage

    state_path = folder / POSTER_STATE
    if saved is not None:
        synthesized = saved
        progress.message("poster: synthesis resumed from the run folder")
    else:
        poster = synthesize_poster_stage(content_img, style_img, result, options.poster, options.nnst,
                                         masks=masks, progress=progress)
        timings.update({f"poster.{k}": v for k, v in poster.timings.items()})
        save_npz(state_path, image=poster.synthesized, field=poster.field)
        synthesized = poster.synthesized
        del poster  # its field (8 bytes per poster pixel) is not needed for the color stage
    if not options.nnst.color:
        return synthesized
    start = time.perf_counter()
    final = color_poster(synthesized, content_img, style_img, result.style_size, options.nnst)
    timings["poster.color"] = time.perf_counter() - start
    return final


def later_stages(content_shape: tuple[int, int], options: RunOptions, poster_resumed: bool = False) -> list[Stage]:
    """The stages of a run after the NNST stage's own plan, for the time left.

    Parameters
    ----------
    content_shape : (height, width)
        The content as NNST gets it.
    options : RunOptions
        The run's options (``nnst.size``, ``poster``).
    poster_resumed : bool
        The poster's synthesis is read back from the run folder, not computed.

    Returns
    -------
    list of Stage
        NNST's color stage and saved state; the poster's synthesis (unless resumed) and color
        stage when ``--out-size`` asks for one; the output.
    """
    scale = options.nnst.size / max(content_shape)
    nnst_shape = (max(1, round(content_shape[0] * scale)), max(1, round(content_shape[1] * scale)))
    pixels = nnst_shape[0] * nnst_shape[1]
    stages = [output_stage("nnst finish", NNST_IMAGES * pixels)]  # color, nnst.png, nnst_raw.png, state
    out_size = options.poster.out_size
    if out_size and out_size != max(nnst_shape):
        from .poster import poster_stages, scaled_shape

        posters = poster_stages(nnst_shape, options.poster)
        stages += posters[1:] if poster_resumed else posters
        pixels = math.prod(scaled_shape(nnst_shape, out_size / max(nnst_shape)))
    return stages + [output_stage("output", pixels)]


def read_run_config(path: str | Path) -> dict:
    """What a run folder's ``config.json`` says to compute, to run it again.

    Returns
    -------
    dict with ``content``, ``style``, ``output`` (paths as the run was given them) and
    ``options`` (:class:`RunOptions`: both configs, the masks folder, DPI, bit depth and JPEG
    quality; how to run, such as ``overwrite``, is not kept)

    Raises
    ------
    InputError
        A missing or unreadable file, or unknown parameters.
    """
    path = Path(path)
    give = "give the config.json in an earlier run's folder (OUTPUT.run/config.json)"
    if path.is_dir():
        inside = path / "config.json"
        raise InputError(f"{path} is a folder; " + (f"give {inside}" if inside.is_file() else give))
    refuse_special_file(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: no such file; {give}") from None
    except UnicodeDecodeError:
        raise InputError(f"{path} is not a run folder's config.json (not text); {give}") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{path} is not a run folder's config.json (not JSON: {exc}); {give}") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot be read ({exc.strerror}); {give}") from None
    if not isinstance(data, dict) or "nnst" not in data or "poster" not in data:
        raise InputError(f"{path} is not a run folder's config.json (no 'nnst' and 'poster' parameters); {give}")
    try:
        for name, hint in RUN_CONFIG_TYPES.items():
            try:
                checked_value(hint, data.get(name), none="null")
            except InputError as exc:
                raise InputError(f"{name}: {exc}") from None
        options = RunOptions(
            nnst=NNSTConfig.from_dict(data["nnst"]),
            poster=PosterConfig.from_dict(data["poster"]),
            guide=Path(data["guide"]) if data.get("guide") else None,
            dpi=RunOptions.dpi if data.get("dpi") is None else data["dpi"],
            jpeg_quality=RunOptions.jpeg_quality if data.get("jpeg_quality") is None else data["jpeg_quality"],
            bit_depth=data.get("bit_depth"),
            print_size=data.get("print"),
            fit=data.get("fit") or RunOptions.fit,
            bleed=RunOptions.bleed if data.get("bleed") is None else data["bleed"],
            cmyk=Path(data["cmyk"]) if data.get("cmyk") else None,
        )
        with values_from("config"):  # "NNSTConfig.seed must be ...", "print 'A9' ...": not "--seed", "--print"
            check_run_options(options)
    except InputError as exc:
        raise InputError(f"{path}: {exc}; fix or remove that entry, or run without --config") from None
    paths = {name: Path(data[name]) if data.get(name) else None for name in ("content", "style", "output")}
    return {**paths, "options": options}


def check_run_options(options: RunOptions) -> None:
    """Refuse (:class:`InputError`) options out of range or that do not go together: both configs,
    a print size with its DPI and fit (and without an ``out_size``, which the print sets), the
    JPEG quality and DPI. Messages name the options as :func:`nnst_hr.config.values_from` says."""
    options.nnst.validate()
    options.poster.validate()
    if options.print_size is not None:
        from .printing import check_print_options

        if options.poster.out_size is not None:
            raise InputError(f"{option_label('--print')} sets the output size; leave out "
                             f"{field_label(PosterConfig, 'out_size')}")
        check_print_options(options.print_size, options.dpi, options.fit, options.bleed)
    elif options.bleed:
        raise InputError(f"{option_label('--bleed')} applies to a print: give {option_label('--print')} too, or "
                         f"leave out {option_label('--bleed')}")
    check_write_options(options.jpeg_quality, options.dpi)


def _check_output_side(output: Path, options: RunOptions) -> None:
    """Refuse (:class:`InputError`), before any input is read, a JPEG output longer than libjpeg writes
    (``JPEG_MAX_SIDE``): the write failed after the whole run. PNG (2**31 - 1) and TIFF (BigTIFF) hold
    any poster up to ``MAX_OUT_SIZE``, and NNST's result is at most ``MAX_SIZE``; :func:`check_run_options`
    has passed."""
    if OUTPUT_FORMATS.get(output.suffix.lower()) != "JPEG":
        return
    if options.print_size is not None:
        from .printsize import bled, parse_print_size, print_pixels, smaller_print_hint

        size = bled(parse_print_size(options.print_size), options.bleed)
        long_side = max(print_pixels(size, options.dpi, "portrait"))
        what = f"{option_label('--print')} {options.print_size} at {options.dpi} dpi"
        fix = smaller_print_hint(size, JPEG_MAX_SIDE)
    else:
        long_side = options.poster.out_size or 0
        what = f"{field_label(PosterConfig, 'out_size')} {long_side}"
        fix = f"use {field_label(PosterConfig, 'out_size')} {JPEG_MAX_SIDE} or less"
    if long_side > JPEG_MAX_SIDE:
        raise InputError(f"{what} makes an image {long_side} px long, but a JPEG holds at most {JPEG_MAX_SIDE} px a "
                         f"side: write {output.with_suffix('.png')} or .tif, or {fix}")


def read_press_profile(path: Path | None, output: Path) -> bytes | None:
    """The CMYK output profile ``--cmyk`` names, read and checked (:func:`check_press_profile`) before any
    work; None without ``--cmyk``.

    Raises
    ------
    InputError
        An output that is no TIFF, a file that cannot be read, or no usable CMYK output profile:
        one line naming the problem and what to give instead.
    """
    if path is None:
        return None
    if OUTPUT_FORMATS.get(output.suffix.lower()) != "TIFF":
        raise InputError(f"{option_label('--cmyk')} writes a CMYK TIFF, not {output.name}: give -o "
                         f"{output.with_suffix('.tif')}")
    return check_press_profile(path)


def check_press_profile(path: Path) -> bytes:
    """The bytes of the press's CMYK output profile at ``path``, read and checked
    (:func:`nnst_hr.icc.check_output_profile`): ``run --cmyk``'s and an experiment plan's ``cmyk``.

    Raises
    ------
    InputError
        A file that cannot be read, or no usable CMYK output profile: one line naming the option
        (:func:`nnst_hr.config.option_label`), the problem and what to give instead.
    """
    from . import icc

    label = option_label("--cmyk")
    give = "give the output profile (.icc) of the press, which the print shop sends (FOGRA39, GRACoL, ...)"
    refuse_special_file(path, f"{label} ")
    try:
        profile = Path(path).read_bytes()
    except FileNotFoundError:
        raise InputError(f"{label} {path}: no such file; {give}") from None
    except IsADirectoryError:
        raise InputError(f"{label} {path} is a folder; {give}") from None
    except OSError as exc:
        raise InputError(f"{label} {path}: cannot be read ({exc.strerror}); {give}") from None
    try:
        icc.check_output_profile(profile)
    except icc.ProfileError as exc:
        raise InputError(f"{label} {path} is {exc}; {give}") from None
    return profile


def _check_run_folder(folder: Path) -> None:
    """Refuse (:class:`InputError`), before any work, a run folder holding a folder where the run
    writes a file, or a file where it keeps its checkpoints: found by the stage that writes there,
    after its work, each was a traceback or a message naming no fix."""
    names = [*RUN_FILES, *(name + SIDECAR_SUFFIX for name in RUN_FILES if name.endswith(".npz"))]
    for path in (folder / name for name in names):
        if path.is_dir():
            raise InputError(f"{path} is a folder where the run writes a file; move it away or choose another -o")
    checkpoints = folder / CHECKPOINTS
    if (checkpoints.exists() or checkpoints.is_symlink()) and not checkpoints.is_dir():
        raise InputError(f"{checkpoints} is a file where the run keeps its checkpoints; move it away or choose "
                         "another -o")
    for path in sorted(checkpoints.glob("*.npz*")) if checkpoints.is_dir() else ():
        if path.is_dir():
            raise InputError(f"{path} is a folder where the run keeps a checkpoint; move it away or choose "
                             "another -o")


def _previous_config(path: Path) -> dict:
    """The run folder's ``config.json`` as the last run left it; {} (with a warning) if it cannot be read,
    so that every stage is recomputed rather than trusted."""
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        data = exc
    if isinstance(data, dict):
        return data
    reason = f"({data})" if isinstance(data, Exception) else "(not a JSON object)"
    warnings.warn(f"{path} is unreadable {reason}; recomputing every stage", stacklevel=2)
    return {}


def load_inputs(content: Path, style: Path, options: RunOptions):
    """Read and validate the images and masks (before any long computation).

    Warnings about them (inputs upscaled to ``--size``) are issued here; :func:`run_files` holds
    them until the run has passed its checks (:func:`_said_after_checks`).
    """
    content_img = read_image(content)
    style_img = read_image(style)
    for message in check_input_sizes({content: content_img.shape[:2], style: style_img.shape[:2]}, options.nnst.size):
        warnings.warn(message, stacklevel=2)
    masks = None
    if options.guide is not None:
        from guidance import load_masks

        masks = load_masks(options.guide, content_img.shape[:2], style_img.shape[:2])
    return content_img, style_img, masks


def run_files(content: str | Path, style: str | Path, output: str | Path, options: RunOptions | None = None, *,
              notes: Sequence[str] = (), info: Sequence[str] = ()) -> dict:
    """Stylize ``content`` after ``style`` and write ``output`` (format from its extension).

    Returns the timings dict (seconds per stage) that is also written to ``timings.json``.
    Holds the run folder's lock (:func:`nnst_hr.lock.run_lock`) throughout: a second run on
    the same output is refused instead of writing into the same folder. ``notes``: the caller's
    warnings about the options (the CLI's ignored ``--jpeg-quality``), issued with the run's own
    once every check before the work has passed; ``info``: its lines about the run (the CLI's
    output taken from ``--config``), said then too, before the run's own.
    """
    output = check_output_file(output)  # a folder (`-o .`) has no run folder beside it
    _check_outside_run_folders(output)
    _check_apart(Path(content), Path(style), output, (options or RunOptions()).guide)
    with run_lock(run_folder(output)):
        return _run_files(content, style, output, options, notes, info)


@dataclass
class _Said:
    """What a run says about itself while its checks run (:func:`_said_after_checks`)."""

    lines: list[str] = field(default_factory=list)  # info lines, said once every check has passed
    done: list[Warning] = field(default_factory=list)  # warnings about what was done (a file removed): said anyway


@contextlib.contextmanager
def _said_after_checks(say: Callable[[str], None], notes: Sequence[str] = ()) -> Iterator[_Said]:
    """Hold the warnings issued in the block, ``notes`` and the lines appended to the yielded
    ``lines``; when the block raises nothing, pass the lines to ``say``, then issue the warnings,
    each once. Warnings recorded under :func:`_said_anyway` (its ``done``) are issued either way.

    A run refused by a check before the work says its one line alone: ``--size 20000`` on small
    inputs printed an "upscaled" warning per input, then the memory refusal.
    """
    said = _Said()
    try:
        with warnings.catch_warnings(record=True) as held:
            warnings.simplefilter("always")
            yield said
    except BaseException:
        _warn_once(said.done)
        raise
    for line in said.lines:
        say(line)
    _warn_once([*notes, *said.done, *(w.message for w in held)])


@contextlib.contextmanager
def _said_anyway(said: _Said) -> Iterator[None]:
    """Within :func:`_said_after_checks`: the block's warnings tell what it did (a run folder's file that
    cannot be used, removed to be recomputed), which a refused run says too."""
    with warnings.catch_warnings(record=True) as held:
        warnings.simplefilter("always")
        try:
            yield
        finally:
            said.done.extend(w.message for w in held)


def _warn_once(messages) -> None:
    """Issue each of ``messages`` (texts or warnings, of their own category) once, in order."""
    unique: dict[str, str | Warning] = {}
    for message in messages:
        unique.setdefault(str(message), message)
    for message in unique.values():
        warnings.warn(message, stacklevel=4)


def _within(path: Path, folder: Path) -> bool:
    """Whether ``path`` is ``folder`` or lies in it (links resolved)."""
    path, folder = path.resolve(), folder.resolve()
    return path == folder or folder in path.parents


def _check_outside_run_folders(output: Path) -> None:
    """Refuse (:class:`InputError`) an output, and so its run folder, inside another run's folder
    (a ``*.run`` folder holding a ``config.json``): ``--config p1.run/config.json -o p1.run/x.png``
    made ``p1.run/x.run/``, which that run's resume never reads and its rerun with
    ``--overwrite`` does not expect."""
    for folder in output.absolute().parents:
        if folder.suffix == ".run" and (folder / "config.json").is_file():
            raise InputError(f"the output {output} is in the run folder {folder} of another run; choose an output "
                             f"outside it (e.g. beside it, in {folder.parent})")


def _check_apart(content: Path, style: Path, output: Path, guide: Path | None) -> None:
    """Refuse (:class:`InputError`), before the run folder is locked, a run that would write over what it reads.

    The output may not be an input; the inputs may not lie in the run folder, whose files the
    run replaces and whose checkpoints it removes; the output and the run folder may not lie in
    the masks folder, nor it in the run folder: the run reads (and keys its resume on) every
    file of that folder, so `-o masks/content.png --overwrite` replaced a mask, and any output
    there made every rerun start again.
    """
    folder = run_folder(output)
    for given in (content, style):
        if output.resolve() == given.resolve() or (output.exists() and given.exists() and output.samefile(given)):
            raise InputError(f"the output {output} is one of the inputs; choose another output path")
        if _within(given, folder):
            raise InputError(f"the input {given} is in the run folder {folder}, whose files the run replaces; "
                             "move it out or choose another output path")
    if guide is None:
        return
    guide = Path(guide)
    if folder.resolve() == guide.resolve():
        raise InputError(f"the run folder {folder} is the masks folder (--guide); choose another output path")
    for written, what in ((output, f"the output {output}"), (folder, f"the run folder {folder}")):
        if _within(written, guide):
            raise InputError(f"{what} is in the masks folder {guide} (--guide), every file of which the run reads; "
                             "choose an output path outside it")
    if _within(guide, folder):
        raise InputError(f"the masks folder {guide} (--guide) is in the run folder {folder}, whose files the run "
                         "replaces; move it out or choose another output path")


def _warn_poster_below_nnst(options: RunOptions, plan) -> None:
    """Warn when the poster is smaller than the NNST result: NNST then computes detail that the poster,
    synthesized at its own smaller size, cannot keep (``--print A4 --dpi 72`` with the default
    ``--size 1024``: minutes of NNST for nothing)."""
    out_size, size = options.poster.out_size, options.nnst.size
    if out_size is None or out_size >= size:
        return
    if plan is not None:
        height, width = plan.pixels
        fix = f"print larger (--print, --dpi) or use --size {out_size}, as good and faster"
        what = f"the print ({width}x{height} px at {plan.dpi} dpi)"
    else:
        fix, what = f"use --size {out_size}, as good and faster, or leave out --out-size", f"--out-size {out_size}"
    warnings.warn(f"{what} is smaller than the NNST result (--size {size}), so the poster keeps none of its "
                  f"extra detail: {fix}", stacklevel=3)


def _run_files(content, style, output, options: RunOptions | None, notes: Sequence[str] = (),
               info: Sequence[str] = ()) -> dict:
    options = options or RunOptions()
    content, style, output = Path(content), Path(style), Path(output)
    progress = Progress(enabled=not options.quiet)
    # every check before the work first: its info line and warnings only for a run that will happen
    with _said_after_checks(progress.message, notes) as said:
        said.lines.extend(info)
        check_run_options(options)
        check_output_path(output, overwrite=options.overwrite, bit_depth=options.bit_depth,
                          jpeg_quality=options.jpeg_quality, dpi=options.dpi)
        _check_output_side(output, options)
        check_weights_file(options.weights)  # a missing file was found after the run folder was written
        press = read_press_profile(options.cmyk, output)
        device = resolve_device(options.nnst.device)
        content_img, style_img, masks = load_inputs(content, style, options)
        plan = None
        if options.print_size is not None:  # the content and the poster size follow the print (nnst_hr.printing)
            from .printing import fit_content, fit_labels, plan_print

            plan = plan_print(content_img.shape[:2], options.print_size, options.dpi, options.fit, options.bleed)
            content_img, masks = fit_content(content_img, plan), fit_labels(masks, plan)
            options = replace(options, poster=replace(options.poster, out_size=max(plan.pixels)))
            said.lines.append(plan.describe())
        _warn_poster_below_nnst(options, plan)
        # as NNST gets them (after the print's crop or pad): refused before the run folder is written, not after
        check_short_sides({content: content_img.shape[:2], style: style_img.shape[:2]}, options.nnst.size)
        folder = run_folder(output)
        _check_run_folder(folder)
        config_path = folder / "config.json"
        nnst_key = _nnst_key(content, style, options)
        if plan is not None:
            nnst_key["print"] = plan.key()
        poster_key = {"poster": options.poster.to_dict(), **nnst_key}
        with _said_anyway(said):  # a saved state that cannot be used is removed: said even if the run is refused
            previous = _previous_config(config_path)
            saved = _saved_stages(folder, previous, nnst_key, poster_key, options, content_img.shape[:2],
                                  style_img.shape[:2])
        check_resources(output, folder, content_img.shape[:2], style_img.shape[:2], options, device.type,
                        nnst_done=saved.nnst is not None, synthesis_done=saved.synthesis is not None)
    for message in (masks.warnings if masks is not None else []):
        progress.message(f"warning: {message}")

    folder.mkdir(parents=True, exist_ok=True)
    checkpoints = folder / CHECKPOINTS
    if previous.get("nnst_key") != nnst_key:
        # a changed input or parameter invalidates every saved intermediate result
        shutil.rmtree(checkpoints, ignore_errors=True)
        remove(folder / NNST_STATE)
    _write_json(config_path, {
        # absolute, so that `--config` reruns it from any folder
        "content": str(content.resolve()), "style": str(style.resolve()), "output": str(output.resolve()),
        "guide": str(Path(options.guide).resolve()) if options.guide else None,
        "nnst": options.nnst.to_dict(),
        # with --print the poster size follows from the print: --config must not see both
        "poster": replace(options.poster, out_size=None).to_dict() if plan else options.poster.to_dict(),
        "nnst_key": nnst_key, "poster_key": poster_key,
        "seed": options.nnst.seed, "device": options.nnst.device,
        "versions": _versions(), "dpi": options.dpi, "bit_depth": options.bit_depth,
        "jpeg_quality": options.jpeg_quality, "print": options.print_size, "fit": options.fit,
        "bleed": options.bleed, "cmyk": str(Path(options.cmyk).resolve()) if options.cmyk else None,
    })

    timings: dict[str, float] = {}
    start = time.perf_counter()
    progress.then(later_stages(content_img.shape[:2], options, saved.synthesis is not None))
    result, final = _nnst(content_img, style_img, masks, options, folder, saved.nnst, progress, timings)
    timings["nnst_objective"] = result.objective

    if _poster_shape(result.raw.shape[:2], options) is not None:
        # NNST's tensors are freed by now, but glibc keeps most of their pages: without this
        # the poster stage's peak came on top of them (memory.release_freed_memory)
        release_freed_memory()
        final = _poster(content_img, style_img, masks, result, options, folder,
                        saved=saved.synthesis, progress=progress, timings=timings)
        saved.synthesis = None  # the color stage's result replaces it; not kept alive beside it

    if plan is not None:
        from .printing import fit_to_print

        final = fit_to_print(final, plan)
    if press is not None:  # separated band by band into code values: no full-size float ink
        from .icc import srgb_to_cmyk

        bits = options.bit_depth or DEFAULT_BIT_DEPTH["TIFF"]
        write_cmyk_tiff(output, srgb_to_cmyk(final, press, bits), press, overwrite=options.overwrite,
                        bit_depth=bits, dpi=options.dpi)
    else:
        write_image(output, final, overwrite=options.overwrite, bit_depth=options.bit_depth,
                    jpeg_quality=options.jpeg_quality, dpi=options.dpi)
    from .printing import write_proof

    write_proof(folder / "proof.jpg", final, options.dpi, trim=plan.trim if plan is not None else None, press=press)
    timings["total"] = time.perf_counter() - start
    _write_json(folder / "timings.json", timings)
    progress.message(f"wrote {output} ({final.shape[1]}x{final.shape[0]}) in {format_seconds(timings['total'])}")
    return timings
