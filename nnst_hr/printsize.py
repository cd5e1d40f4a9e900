"""Print sizes: paper names and ``WxH`` specs to pixels at a DPI, and the crop or pad that fits content.

Pure arithmetic on sizes; :mod:`nnst_hr.printing` applies it to arrays.

Rounding rules (stated once, tested in closed form):

* A print side of ``L`` millimetres at ``dpi`` dots per inch is ``floor(L / 25.4 * dpi + 0.5)``
  pixels: the nearest pixel, halves rounded up. A2 (420 x 594 mm) at 300 dpi is
  4960.63 x 7015.75 -> 4961 x 7016 px.
* Inches and centimetres are converted to millimetres exactly (25.4 and 10) before rounding.
* A bleed of ``B`` mm adds ``2 B`` to both sides before rounding: A4 (210 x 297 mm) with 3 mm
  at 300 dpi is 216 x 303 mm -> 2551.2 x 3578.7 -> 2551 x 3579 px. The trim (the print's own
  edge, where the shop cuts) lies ``mm_to_pixels(B, dpi)`` px inside each edge (:func:`trim_box`).
* Orientation comes from the content: portrait when it is taller than wide *or square*
  (prints are portrait by convention), landscape otherwise.
* Crop (``fit="crop"``): the largest box of the print's aspect inside the content, centred;
  its free side is ``floor(other side * aspect + 0.5)`` px and the spare pixels are split with
  the odd one at the bottom / right (``top = (H - h) // 2``).
* Pad (``fit="pad"``): the smallest canvas of the print's aspect around the content; its
  free side is rounded the same way and split the same way (``top = (h - H) // 2``).

Examples
--------
>>> size = parse_print_size("A2")
>>> print_pixels(size, 300, "portrait")
(7016, 4961)
>>> print_pixels(parse_print_size("24x36in"), 150, "landscape")
(3600, 5400)
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

from .config import MAX_OUT_SIZE, MIN_SIZE, option_label
from .errors import InputError

__all__ = [
    "ISO_216_MM",
    "MM_PER_UNIT",
    "PrintSize",
    "bled",
    "check_bleed",
    "crop_box",
    "made_from",
    "orientation_of",
    "pad_widths",
    "parse_print_size",
    "print_pixels",
    "trim_box",
]

ISO_216_MM = {  # ISO 216 A series, short x long side in millimetres
    "A0": (841, 1189),
    "A1": (594, 841),
    "A2": (420, 594),
    "A3": (297, 420),
    "A4": (210, 297),
    "A5": (148, 210),  # flyers and test prints
    "A6": (105, 148),
}
MM_PER_UNIT = {"mm": 1.0, "cm": 10.0, "in": 25.4}
MM_PER_INCH = 25.4
MIN_DPI, MAX_DPI = 1, 10_000  # beyond this range a DPI is a typo, not a print
# the largest bleed, as a fraction of the print's short side: shops ask for 2 to 5 mm; a quarter of
# each side cut off is a typo (mm for cm), not a bleed
MAX_BLEED_FRACTION = 0.25
_SPEC = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*[x×]\s*(\d+(?:\.\d+)?)\s*(mm|cm|in)\s*$", re.IGNORECASE)

Orientation = Literal["portrait", "landscape"]


@dataclass(frozen=True)
class PrintSize:
    """A print's sides in millimetres, ``short_mm <= long_mm``, and the spec it came from."""

    name: str
    short_mm: float
    long_mm: float


def parse_print_size(spec: str) -> PrintSize:
    """``"A6"`` .. ``"A0"`` (ISO 216) or ``"WxH"`` + ``in``/``cm``/``mm`` -> :class:`PrintSize`.

    The two sides may be given in either order; the orientation follows the content.

    Raises
    ------
    InputError
        An unknown name, a malformed spec, or a side that is not positive.

    Examples
    --------
    >>> parse_print_size("a1")
    PrintSize(name='A1', short_mm=594.0, long_mm=841.0)
    >>> parse_print_size("70x50cm")
    PrintSize(name='70x50cm', short_mm=500.0, long_mm=700.0)
    """
    text = str(spec).strip()
    if text.upper() in ISO_216_MM:
        short, long = ISO_216_MM[text.upper()]
        return PrintSize(text.upper(), float(short), float(long))
    match = _SPEC.match(text)
    if match is None:
        names = "|".join(reversed(ISO_216_MM))
        raise InputError(f"{option_label('--print')} {spec!r} is not a print size; use {names} or WxH with in, cm "
                         "or mm (e.g. 24x36in, 50x70cm)")
    unit = MM_PER_UNIT[match.group(3).lower()]
    a, b = float(match.group(1)) * unit, float(match.group(2)) * unit
    if min(a, b) <= 0:
        raise InputError(f"{option_label('--print')} {spec!r}: both sides must be positive")
    if not math.isfinite(max(a, b)):  # hundreds of digits parse as inf, which has no pixel count
        raise InputError(f"{option_label('--print')} {spec!r}: a side is too large to be a print; give its size in "
                         "in, cm or mm")
    return PrintSize(text.replace(" ", "").lower(), min(a, b), max(a, b))


def check_bleed(size: PrintSize, bleed_mm: float) -> float:
    """``bleed_mm`` as a float, after checking it is finite, not negative and at most
    :data:`MAX_BLEED_FRACTION` of ``size``'s short side.

    Raises
    ------
    InputError
        A bleed out of that range, naming the range.

    >>> check_bleed(parse_print_size("A4"), 3)
    3.0
    """
    bleed = float(bleed_mm)
    largest = MAX_BLEED_FRACTION * size.short_mm
    if not (math.isfinite(bleed) and 0 <= bleed <= largest):
        raise InputError(f"{option_label('--bleed')} {bleed_mm} mm is out of range for {size.name}; use 0 to "
                         f"{largest:g} mm (3 mm is usual; ask the print shop)")
    return bleed


def bled(size: PrintSize, bleed_mm: float) -> PrintSize:
    """``size`` with ``bleed_mm`` added on every side: each side ``2 * bleed_mm`` longer (same name).

    >>> bled(parse_print_size("A4"), 3)
    PrintSize(name='A4', short_mm=216.0, long_mm=303.0)
    """
    return PrintSize(size.name, size.short_mm + 2 * bleed_mm, size.long_mm + 2 * bleed_mm)


def trim_box(pixels: tuple[int, int], bleed_mm: float, dpi: float) -> tuple[int, int, int, int]:
    """``(top, left, height, width)`` of the trim (the print's own area) in a bled print of ``pixels`` (H, W).

    The bleed is ``mm_to_pixels(bleed_mm, dpi)`` px on each side, the same on all four, so the trim
    is centred; its sides are within a pixel of the trim size's own pixel count.

    >>> trim_box((3579, 2551), 3, 300)  # A4 + 3 mm at 300 dpi: 35 px of bleed, a 2481 x 3509 px trim
    (35, 35, 3509, 2481)
    """
    height, width = pixels
    edge = mm_to_pixels(bleed_mm, dpi)
    return edge, edge, height - 2 * edge, width - 2 * edge


def mm_to_pixels(mm: float, dpi: float) -> int:
    """Nearest pixel count (halves up) of ``mm`` millimetres at ``dpi``."""
    return math.floor(mm / MM_PER_INCH * dpi + 0.5)


def print_pixels(size: PrintSize, dpi: float, orientation: Orientation) -> tuple[int, int]:
    """``(height, width)`` in pixels of ``size`` printed at ``dpi`` in ``orientation``.

    Raises
    ------
    InputError
        A DPI outside ``MIN_DPI .. MAX_DPI``, a side that rounds to no pixel, or one longer than
        ``MAX_OUT_SIZE`` (the largest poster), naming the highest DPI within it.

    Examples
    --------
    >>> print_pixels(parse_print_size("A2"), 300, "landscape")
    (4961, 7016)
    """
    if not MIN_DPI <= dpi <= MAX_DPI:
        raise InputError(f"{option_label('--dpi')} {dpi} is out of range; use {MIN_DPI} to {MAX_DPI} (300 is usual "
                         "for prints)")
    if orientation not in ("portrait", "landscape"):
        raise ValueError(f"orientation must be 'portrait' or 'landscape', got {orientation!r}")
    short, long = mm_to_pixels(size.short_mm, dpi), mm_to_pixels(size.long_mm, dpi)
    if short < 1:
        raise InputError(f"{option_label('--print')} {size.name} at {dpi} dpi is less than a pixel wide; use a larger "
                         "size or DPI")
    if long > MAX_OUT_SIZE:
        raise InputError(f"{option_label('--print')} {size.name} at {dpi} dpi is {long} px long, more than the "
                         f"{MAX_OUT_SIZE} px a poster may have; {smaller_print_hint(size)}")
    return (long, short) if orientation == "portrait" else (short, long)


def smaller_print_hint(size: PrintSize, long_side: int = MAX_OUT_SIZE) -> str:
    """The fix for a print longer than ``long_side`` px: the highest DPI within it, if there is one.

    >>> smaller_print_hint(parse_print_size("A0"), 65500)
    'use a smaller print or --dpi 1399 or less'
    """
    # the closed form, plus one for float rounding at the boundary, then down to the first within long_side
    dpi = min(MAX_DPI, math.floor((long_side + 0.5) * MM_PER_INCH / size.long_mm) + 1)
    while dpi >= MIN_DPI and mm_to_pixels(size.long_mm, dpi) > long_side:
        dpi -= 1
    if dpi < MIN_DPI:
        return "use a smaller print"
    return f"use a smaller print or {option_label('--dpi')} {dpi} or less"


def orientation_of(shape: tuple[int, int]) -> Orientation:
    """``"landscape"`` if ``shape = (height, width)`` is wider than tall, else ``"portrait"``."""
    height, width = shape[:2]
    return "landscape" if width > height else "portrait"


def _free_side(side: int, aspect: float) -> int:
    return max(1, math.floor(side * aspect + 0.5))


def crop_box(shape: tuple[int, int], target: tuple[int, int]) -> tuple[int, int, int, int]:
    """The largest centred box of ``target``'s aspect inside ``shape``: ``(top, left, height, width)``.

    Both shapes are ``(height, width)``.

    Examples
    --------
    >>> crop_box((100, 300), (200, 100))   # a wide image cropped to a 1:2 portrait
    (0, 125, 100, 50)
    """
    (height, width), (th, tw) = shape[:2], target[:2]
    if width * th > tw * height:  # content wider than the target: keep the full height
        box_h, box_w = height, min(width, _free_side(height, tw / th))
    else:
        box_h, box_w = min(height, _free_side(width, th / tw)), width
    return (height - box_h) // 2, (width - box_w) // 2, box_h, box_w


def pad_widths(shape: tuple[int, int], target: tuple[int, int]) -> tuple[tuple[int, int], tuple[int, int]]:
    """Padding ``((top, bottom), (left, right))`` that brings ``shape`` to ``target``'s aspect.

    The smallest canvas of that aspect containing ``shape``, content centred (as :func:`crop_box`).

    Examples
    --------
    >>> pad_widths((100, 300), (200, 100))  # a wide image padded to a 1:2 portrait
    ((250, 250), (0, 0))
    """
    (height, width), (th, tw) = shape[:2], target[:2]
    if width * th > tw * height:  # content wider: add rows
        canvas_h, canvas_w = max(height, _free_side(width, th / tw)), width
    else:
        canvas_h, canvas_w = height, max(width, _free_side(height, tw / th))
    top, left = (canvas_h - height) // 2, (canvas_w - width) // 2
    return (top, canvas_h - height - top), (left, canvas_w - width - left)


def made_from(shape: tuple[int, int], image_shape: tuple[int, int], through: int | None = MIN_SIZE) -> bool:
    """Whether an image of ``image_shape`` (H, W) can have been made from a picture of ``shape``.

    The same aspect, up to what rounding moves on the way: every resize rounds a side to a whole
    pixel (and a print's crop or pad, and its exact pixels, round once more), moving the aspect by
    at most a pixel of the grid it rounds to, relative to that grid's short side. The coarsest grid
    on the way is the smaller of the two pictures, or an NNST result of ``through`` px on its long
    side where one may lie between them (default ``MIN_SIZE``, the smallest ``--size``; None: none
    does, as from a print's fitted content to its exact pixels). So the slack is one pixel of the
    coarsest grid plus one of the image, relative: a 48x64 picture and a 56x64 image differ by 15 %,
    against 5 % that rounding at 32 px can explain (an absolute 8 px let it through).

    >>> made_from((768, 1024), (3072, 4096)), made_from((576, 1024), (4961, 7016)), made_from((724, 1024), (4961, 7016))
    (True, False, True)
    >>> made_from((48, 64), (49, 64)), made_from((48, 64), (56, 64))
    (True, False)
    """
    (h, w), (height, width) = shape[:2], image_shape[:2]
    if min(h, w, height, width) < 1:
        return False
    image_short = min(height, width) / max(height, width)  # short / long side of the image
    coarsest = min(max(h, w), max(height, width), *(() if through is None else (through,)))
    slack = 1 / (coarsest * image_short) + 1 / min(height, width)
    return abs(math.log(h * width / (w * height))) <= slack
