"""Checks before the first heavy stage: will the run fit in memory, and its files on disk?

:func:`check_resources` refuses (``InputError``, exit 2) a run that would be killed by the
kernel, fail with CUDA out of memory, or fill the disk, before minutes of computing.
"""

from __future__ import annotations

from pathlib import Path

from .disk import check_disk_space, estimate_run_bytes
from .files import DEFAULT_BIT_DEPTH
from .memory import PeakEstimate, check_fits, long_side_shape


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else 0


def check_resources(output: Path, folder: Path, content_shape: tuple[int, int], style_shape: tuple[int, int],
                    options, device: str, *, nnst_done: bool = False, synthesis_done: bool = False) -> PeakEstimate:
    """Refuse a run that cannot fit in memory or on the disk holding ``output``.

    ``folder`` is the run folder (its files are replaced in place by a resumed run);
    ``options`` a :class:`nnst_hr.run.RunOptions`; ``device`` ``"cpu"`` or ``"cuda"``;
    ``nnst_done`` / ``synthesis_done``: the stages a resumed run takes from ``folder``
    (:mod:`nnst_hr.run` decides), which the memory check leaves out.
    """
    nnst, poster = options.nnst, options.poster
    # --cmyk: the output written as ink, of the output's bits (a TIFF's 16 by default)
    press_bits = (options.bit_depth or DEFAULT_BIT_DEPTH["TIFF"]) if options.cmyk is not None else None
    estimate = check_fits(content_shape, style_shape, nnst.size, poster.out_size, rotate=nnst.rotate,
                          device=device, max_search_size=poster.max_search_size, nnst_done=nnst_done,
                          synthesis_done=synthesis_done, poster_option=_print_option(options), press_bits=press_bits)
    nnst_shape = long_side_shape(content_shape, nnst.size)
    out_shape = long_side_shape(content_shape, poster.out_size) if poster.out_size else None
    needed = estimate_run_bytes(nnst_shape, out_shape, output.suffix, options.bit_depth, len(nnst.scales()),
                                channels=4 if options.cmyk is not None else 3)
    check_disk_space(output, needed, already_written=_folder_bytes(folder))
    return estimate


def _print_option(options):
    """With ``--print`` the poster's size comes from ``--dpi`` (``--out-size`` is refused): the memory
    check's suggestion is the DPI whose print is about the poster size that fits. None otherwise."""
    if options.print_size is None:
        return None
    out_size, dpi = options.poster.out_size, options.dpi

    def lower_dpi(long_side: int) -> str:
        # a print's pixels are proportional to its DPI
        return f"--dpi {max(1, int(dpi * long_side // out_size))} (or a smaller --print)"

    return lower_dpi
