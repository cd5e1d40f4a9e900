"""The ``nnst-hr`` command line: a thin layer over :mod:`nnst_hr.run`.

Exit codes: 0 success, 2 bad input (one-line message, no traceback), 1 internal error.

The command sets ``OMP_WAIT_POLICY=PASSIVE`` for its own process (unless it is set) before
torch loads; the library leaves the environment alone.
"""

from __future__ import annotations

import os
import sys
import traceback
import warnings
from dataclasses import dataclass, replace
from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from .config import NNSTConfig, PosterConfig

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="High-resolution, optionally mask-guided Neural Neighbor Style Transfer.")
masks_app = typer.Typer(no_args_is_help=True, help="Inspect segmentation masks for guided runs.")
app.add_typer(masks_app, name="masks")

NNST = NNSTConfig()
POSTER = PosterConfig()


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class Render(str, Enum):
    copy = "copy"
    vote = "vote"


class GuideMode(str, Enum):
    soft = "soft"
    hard = "hard"


def _input_errors() -> tuple[type[Exception], ...]:
    from guidance import MaskError
    from patchsynth import PatchSynthError

    from .errors import InputError

    return InputError, MaskError, PatchSynthError


def _process_settings() -> None:
    """What the command sets for its own process, before any command imports torch.

    torch's OpenMP workers spin while they wait; on a machine whose cores are shared with
    another process (or with Numba) that made steps several times slower. Set
    OMP_WAIT_POLICY yourself to choose otherwise.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def _guarded(action):
    """Run ``action()``; bad input -> message + exit 2, anything else -> message + exit 1."""
    _process_settings()
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        warnings.showwarning = lambda message, *args, **kwargs: print(f"warning: {message}", file=sys.stderr)
        return _exit_codes(action)


def _exit_codes(action):
    try:
        return action()
    except typer.Exit:
        raise
    except _input_errors() as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise typer.Exit(2) from None
    except MemoryError:
        print("error: out of memory; use a smaller --size or --out-size, or close other programs", file=sys.stderr)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        print("interrupted: run the same command again to resume from the run folder", file=sys.stderr)
        raise typer.Exit(130) from None
    except Exception as exc:  # noqa: BLE001 - the CLI's last line of defence
        traceback.print_exc(file=sys.stderr)
        print(f"internal error: {exc}", file=sys.stderr)
        raise typer.Exit(1) from None


@dataclass
class _Paths:
    content: Path | None
    style: Path | None
    output: Path | None


@app.command()
def run(
    ctx: typer.Context,
    content: Optional[Path] = typer.Argument(None, help="Content photo (PNG, JPEG, TIFF or WebP)."),
    style: Optional[Path] = typer.Argument(None, help="Style exemplar (a painting)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Output file; .tif (16-bit), .png or .jpg."),
    size: int = typer.Option(NNST.size, help="Long side of the NNST result in pixels."),
    out_size: Optional[int] = typer.Option(None, help="Long side of the poster; adds 4K patch synthesis."),
    guide: Optional[Path] = typer.Option(None, help="Masks folder (content.png + style.png label maps)."),
    guide_weight: float = typer.Option(NNST.guide_weight, help="Weight of the mask term vs cosine (0..1)."),
    guide_mode: GuideMode = typer.Option(GuideMode.soft, help="soft: penalty; hard: same label only."),
    nnst_weight: float = typer.Option(POSTER.nnst_weight, help="Poster: weight of the NNST result as guide."),
    mask_weight: float = typer.Option(POSTER.mask_weight, help="Poster: weight of the mask labels as guide."),
    uniformity: float = typer.Option(POSTER.uniformity, help="Poster: penalty on reusing exemplar patches."),
    render: Render = typer.Option(Render.copy, help="Poster pixels: copy matched exemplar pixels, or vote."),
    alpha: float = typer.Option(NNST.alpha, help="Stylization: 0 keeps the most content, 1 the most style."),
    color: bool = typer.Option(NNST.color, "--color/--no-color", help="Lab color post-processing."),
    rotate: bool = typer.Option(NNST.rotate, "--rotate/--no-rotate", help="Also match the style rotated."),
    steps: int = typer.Option(NNST.steps, help="Adam steps per scale."),
    split_steps: int = typer.Option(NNST.split_steps, help="Adam steps of the feature-splitting pass."),
    exact: bool = typer.Option(NNST.exact, "--exact", help="Reference mode: exhaustive fp32 search."),
    device: Device = typer.Option(Device.auto, help="auto, cpu or cuda."),
    seed: int = typer.Option(NNST.seed, help="Random seed; the same seed gives the same result."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output file."),
    dpi: int = typer.Option(300, help="DPI tag written to TIFF and PNG outputs."),
    jpeg_quality: int = typer.Option(95, help="JPEG quality (1..100)."),
    bit_depth: Optional[int] = typer.Option(None, help="8 or 16 bits; default 16 for TIFF, 8 otherwise."),
    weights: Optional[Path] = typer.Option(None, envvar="NNST_HR_WEIGHTS", help="VGG16 weights file."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output."),
    config: Optional[Path] = typer.Option(
        None, help="A run folder's config.json: rerun with its inputs and parameters; options given here win."),
) -> None:
    """Stylize CONTENT after STYLE and write OUTPUT (and a resumable OUTPUT.run/ folder)."""

    def action():
        from .errors import InputError
        from .run import RunOptions, read_run_config, run_files

        def given(name: str) -> bool:
            # by name: typer ships its own copy of click, with its own ParameterSource enum
            source = ctx.get_parameter_source(name)
            return config is None or (source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP"))

        def pick(base, values: dict):
            return replace(base, **{name: value for name, value in values.items() if given(name)})

        base = read_run_config(config) if config is not None else {"options": RunOptions()}
        paths = pick(_Paths(base.get("content"), base.get("style"), base.get("output")),
                     {"content": content, "style": style, "output": output})
        missing = [label for label, value in (("CONTENT", paths.content), ("STYLE", paths.style),
                                              ("--output", paths.output)) if value is None]
        if missing:
            raise InputError(f"missing {', '.join(missing)}: give them, or --config RUN/config.json of an earlier run")
        options = base["options"]
        options = pick(options, {"guide": guide, "dpi": dpi, "jpeg_quality": jpeg_quality, "bit_depth": bit_depth})
        options = replace(
            options,
            nnst=pick(options.nnst, {
                "size": size, "alpha": alpha, "color": color, "rotate": rotate, "steps": steps,
                "split_steps": split_steps, "exact": exact, "device": device.value, "seed": seed,
                "guide_weight": guide_weight, "guide_mode": guide_mode.value,
            }),
            poster=pick(options.poster, {"out_size": out_size, "nnst_weight": nnst_weight,
                                         "mask_weight": mask_weight, "uniformity": uniformity,
                                         "render": render.value}),
            overwrite=overwrite, weights=weights, quiet=quiet,
        )
        run_files(paths.content, paths.style, paths.output, options)

    _guarded(action)


@app.command("weights")
def weights_command(
    weights: Optional[Path] = typer.Option(None, envvar="NNST_HR_WEIGHTS", help="VGG16 weights file to check."),
) -> None:
    """Find (and if needed fetch and convert) the VGG16 weights; print where they came from."""

    def action():
        from .weights import describe

        print(describe(weights))

    _guarded(action)


@masks_app.command("check")
def masks_check(
    folder: Path = typer.Argument(..., help="Masks folder."),
    content: Optional[Path] = typer.Option(None, help="Content image, to check sizes against."),
    style: Optional[Path] = typer.Option(None, help="Style image, to check sizes against."),
) -> None:
    """List the labels, their colors and areas, and anything unmatched or suspicious."""

    def action():
        from guidance import check_masks

        report = check_masks(folder, content, style)
        print(report.text)
        if not report.usable:
            raise typer.Exit(2) from None

    _guarded(action)
