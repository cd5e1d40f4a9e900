"""The ``nnst-hr`` command line: a thin layer over :mod:`nnst_hr.run`.

Exit codes: 0 success, 2 bad input (one-line message, no traceback), 1 internal error.
"""

from __future__ import annotations

import sys
import traceback
import warnings
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


class Fit(str, Enum):
    crop = "crop"
    pad = "pad"


class GuideMode(str, Enum):
    soft = "soft"
    hard = "hard"


def _input_errors() -> tuple[type[Exception], ...]:
    from guidance import MaskError
    from patchsynth import PatchSynthError

    from .errors import InputError

    return InputError, MaskError, PatchSynthError


def _guarded(action):
    """Run ``action()``; bad input -> message + exit 2, anything else -> message + exit 1."""
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


@app.command()
def run(
    content: Path = typer.Argument(..., help="Content photo (PNG, JPEG, TIFF or WebP)."),
    style: Path = typer.Argument(..., help="Style exemplar (a painting)."),
    output: Path = typer.Option(..., "--output", "-o", help="Output file; .tif (16-bit), .png or .jpg."),
    size: int = typer.Option(NNST.size, help="Long side of the NNST result in pixels."),
    out_size: Optional[int] = typer.Option(None, help="Long side of the poster; adds 4K patch synthesis."),
    guide: Optional[Path] = typer.Option(None, help="Masks folder (content.png + style.png label maps)."),
    guide_weight: float = typer.Option(NNST.guide_weight, help="Weight of the mask term vs cosine (0..1)."),
    guide_mode: GuideMode = typer.Option(GuideMode.soft, help="soft: penalty; hard: same label only."),
    nnst_weight: float = typer.Option(POSTER.guide_weight, help="Poster: weight of the NNST result as guide."),
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
    dpi: int = typer.Option(300, help="DPI written to the output (TIFF, PNG, JPEG); with --print, sets its pixels."),
    jpeg_quality: int = typer.Option(95, help="JPEG quality (1..100)."),
    bit_depth: Optional[int] = typer.Option(None, help="8 or 16 bits; default 16 for TIFF, 8 otherwise."),
    weights: Optional[Path] = typer.Option(None, envvar="NNST_HR_WEIGHTS", help="VGG16 weights file."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output."),
    # --- print production (nnst_hr.printing)
    print_size: Optional[str] = typer.Option(
        None, "--print", help="Print size: A3, A2, A1, A0 or WxH in in/cm/mm (24x36in, 50x70cm); sets the "
        "output size from --dpi and the content's orientation."),
    fit: Fit = typer.Option(Fit.crop, help="--print: crop the content to the print's aspect, or pad it (mirrored)."),
) -> None:
    """Stylize CONTENT after STYLE and write OUTPUT (and a resumable OUTPUT.run/ folder)."""

    def action():
        from .run import RunOptions, run_files

        options = RunOptions(
            nnst=NNSTConfig(
                size=size, alpha=alpha, color=color, rotate=rotate, steps=steps, split_steps=split_steps,
                exact=exact, device=device.value, seed=seed, guide_weight=guide_weight,
                guide_mode=guide_mode.value,
            ),
            poster=PosterConfig(out_size=out_size, guide_weight=nnst_weight, mask_weight=mask_weight,
                                uniformity=uniformity, render=render.value),
            guide=guide, overwrite=overwrite, dpi=dpi, jpeg_quality=jpeg_quality,
            bit_depth=bit_depth, weights=weights, quiet=quiet,
            print_size=print_size, fit=fit.value,
        )
        if print_size is not None and out_size is not None:
            from .errors import InputError

            raise InputError("--print sets the output size; leave out --out-size")
        run_files(content, style, output, options)

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
