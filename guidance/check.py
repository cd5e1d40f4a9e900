"""``nnst-hr masks check``: what a mask folder holds and whether it can guide a transfer."""

from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from guidance.errors import MaskError
from guidance.masks import Label, MaskPair, load_masks
from guidance.palette import MIN_LABEL_SHARE
from nnst_hr.errors import InputError
from nnst_hr.files import exif_orientation, read_image_shape


@dataclass
class MaskReport:
    """The outcome of :func:`check_masks`.

    Attributes
    ----------
    usable : bool
        The masks can guide a transfer (warnings allowed); the CLI exits 2 otherwise.
    text : str
        Human-readable report: a table of labels (guide channel, color or region name, area on
        each side, notes), then warnings and problems.
    problems : list of str
        Why the masks cannot be used (empty when usable).
    warnings : list of str
        Unmatched labels, tiny regions, unknown colors: usable, but worth a look.
    pair : MaskPair or None
        The loaded masks when usable.
    """

    usable: bool
    text: str
    problems: list[str]
    warnings: list[str]
    pair: MaskPair | None


def check_masks(mask_dir, content_path=None, style_path=None) -> MaskReport:
    """Load a mask folder as a run would and report on it.

    Parameters
    ----------
    mask_dir : str or Path
        The mask folder (see :func:`guidance.masks.load_masks`).
    content_path, style_path : str or Path or None
        The images; when given, masks are checked and resized against their (EXIF-oriented) size.

    Examples
    --------
    >>> report = check_masks("samples/guided/louvre_to_house")
    >>> report.usable, report.pair.n_labels
    (True, 4)
    """
    problems: list[str] = []
    shapes = {}
    for side, path in (("content", content_path), ("style", style_path)):
        if path is not None:
            try:
                shapes[side] = image_shape(Path(path))
            except MaskError as err:
                problems.append(str(err))
    pair = None
    if not problems:
        try:
            pair = load_masks(mask_dir, shapes.get("content"), shapes.get("style"))
        except MaskError as err:
            problems.append(str(err))
    warnings = pair.warnings if pair is not None else []
    text = _format(Path(mask_dir), pair, problems, warnings)
    return MaskReport(not problems, text, problems, warnings, pair)


def problem_line(report: MaskReport) -> str:
    """One line for an unusable ``report``: its first problem (which names the fix), and how many more
    the report lists.

    Examples
    --------
    >>> problem_line(MaskReport(False, "", ["no content mask in m: add content.png", "x"], [], None))
    'no content mask in m: add content.png (and 1 more problem in the report)'
    """
    more = len(report.problems) - 1
    return report.problems[0] + (f" (and {more} more problem{'s' * (more > 1)} in the report)" if more else "")


def image_shape(path: Path) -> tuple[int, int]:
    """``(H, W)`` of an image as displayed (EXIF orientation applied), without decoding pixels.

    Parameters
    ----------
    path : Path
        An image file as a run reads it (:func:`nnst_hr.files.read_image`).

    Returns
    -------
    (int, int)
        ``(H, W)`` as :func:`nnst_hr.files.read_image` would return it.

    Raises
    ------
    MaskError
        The file is missing, not an image, or one a run refuses (a GIF or BMP, too many pixels):
        a check that passed it was followed by a run that refused it.
    """
    try:
        return read_image_shape(path)
    except InputError as err:
        raise MaskError(str(err)) from None


def _mask_shape(path: Path) -> tuple[int, int]:
    """``(H, W)`` of a mask file as the loader read it (EXIF orientation applied; any format it reads)."""
    with Image.open(path) as image:
        width, height = image.size
        return (width, height) if exif_orientation(image) in (5, 6, 7, 8) else (height, width)


def _format(mask_dir: Path, pair: MaskPair | None, problems: list[str], warnings: list[str]) -> str:
    """The report: sources, a table of labels, the unguided share, warnings, verdict."""
    lines = [f"Masks in {mask_dir}"]
    if pair is not None:
        for side, source, labels in (("content", pair.content_source, pair.content),
                                     ("style", pair.style_source, pair.style)):
            # an index map's labels are named by their values (masks._index_name), a color map's by their colors
            indexed = all(label.name.isdigit() for label in pair.labels if not label.unguided)
            form = "grey region masks" if source.is_dir() else "index map" if indexed else "color label map"
            size = f"{labels.shape[1]}x{labels.shape[0]}"
            if not source.is_dir():  # a mask of another size than its image: both sizes, not the image's alone
                height, width = _mask_shape(source)
                size = f"{width}x{height}" + (f", resized to {size}" if (height, width) != labels.shape else "")
            lines.append(f"  {side}: {source} ({form}, {size})")
        lines += ["", f"{'channel':>7}  {'label':<16} {'content':>8} {'style':>8}  notes"]
        for label in pair.labels:
            channel = "-" if label.unguided else str(label.index)
            note = _note(label)
            lines.append(f"{channel:>7}  {label.name:<16} {label.content_area:>8.1%} "
                         f"{label.style_area:>8.1%}  {note}".rstrip())
        lines.append(f"unguided content: {(pair.content < 0).mean():.1%}")
    if warnings:
        lines += ["", "Warnings:"] + [f"  - {w}" for w in warnings]
    if problems:
        lines += ["", "The masks cannot be used:"] + [f"  - {p}" for p in problems]
    else:
        lines += ["", f"OK: {pair.n_labels} labels guide the transfer."]
    return "\n".join(lines)


def _note(label: Label) -> str:
    """The notes column of a label's row: how it is matched, and whether a side is suspiciously small."""
    if label.content_area == label.style_area == 0:
        return "no pixel left at the image sizes"
    if label.style_area == 0:
        return "no style counterpart: matched against the whole style"
    if label.content_area == 0:
        return "style only"
    small = [side for side, area in (("content", label.content_area), ("style", label.style_area))
             if area < MIN_LABEL_SHARE]
    return f"under {MIN_LABEL_SHARE:.1%} of the {' and '.join(small)}" if small else ""
