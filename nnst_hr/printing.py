"""Print production: fit the content to a print size before NNST, the poster to its exact pixels after, and the proof.

:mod:`nnst_hr.printsize` does the arithmetic; this module applies it to arrays.

* ``fit="crop"`` (default): the content (and its content label map with ``--guide``) is cropped,
  centred, to the print's aspect before NNST, so nothing is stretched and nothing is invented.
* ``fit="pad"``: the content (and its label map) is extended to the print's aspect by mirroring
  it at its edges (``numpy.pad(mode="reflect")``) before NNST, so the stylization continues
  the picture's own structure into the margin instead of a flat band.
* The poster's size follows NNST's result, whose sides are rounded at NNST's size; the last
  few pixels of difference to the print's exact pixel count are removed (centred crop) or
  added (edge replication) by :func:`fit_to_print`.
* A bleed (``bleed_mm``) makes the print that much larger on every side
  (:func:`~nnst_hr.printsize.bled`): the content is fitted to the *bled* aspect and the poster
  has the bled pixels, so the margin the shop trims off holds picture, not paper.
* The proof is the final image at ``PROOF_LONG_SIDE`` px at most (Lanczos), a JPEG with the sRGB
  profile at a whole DPI (as JPEG stores it) that describes the same physical print size. With a
  bleed, the trim line is drawn on it (:func:`draw_trim_line`): what lies outside it is cut off.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .config import MIN_SIZE, option_label
from .errors import InputError
from .printsize import (
    MAX_DPI,
    MM_PER_INCH,
    PrintSize,
    bled,
    check_bleed,
    crop_box,
    made_from,
    mm_to_pixels,
    orientation_of,
    pad_widths,
    parse_print_size,
    print_pixels,
    trim_box,
)

__all__ = ["FITS", "PROOF_LONG_SIDE", "PrintPlan", "content_region", "draw_trim_line", "fit_content", "fit_labels",
           "fit_to_print", "plan_print", "proof_dpi", "proof_image", "scale_box", "write_proof"]

FITS = ("crop", "pad")
PROOF_LONG_SIDE = 1600  # px, long side of proof.jpg
PROOF_QUALITY = 90  # JPEG quality of the proof
PROOF_ROWS = 512  # rows converted to 8 bits at a time for the proof (no full-size float temporaries)
CM_PER_MM = 0.1
TRIM_DASH = 6  # px of each of the trim line's black and white dashes on the proof: seen on light and dark picture


@dataclass(frozen=True)
class PrintPlan:
    """How a content of ``content_shape`` becomes a print.

    ``pixels`` is the output's ``(height, width)``, the bleed included; ``box`` the crop ``(top,
    left, height, width)`` (``fit="crop"``) or ``pads`` the padding ``((top, bottom), (left,
    right))`` (``fit="pad"``) applied to the content before NNST, to the bled aspect.
    """

    size: PrintSize
    dpi: int
    fit: str
    orientation: str
    content_shape: tuple[int, int]
    pixels: tuple[int, int]
    box: tuple[int, int, int, int] | None
    pads: tuple[tuple[int, int], tuple[int, int]] | None
    bleed_mm: float = 0.0  # added on every side of the print; the shop trims it off

    def describe(self) -> str:
        """One line for the log: print size, pixels, DPI and what happened to the content."""
        height, width = self.pixels
        sides = sorted((self.size.short_mm, self.size.long_mm), reverse=self.orientation == "landscape")
        cm = " x ".join(f"{v * CM_PER_MM:.1f}" for v in sides) + " cm"
        if self.bleed_mm:  # the trim size first: that is the print ordered
            cm += f", + {self.bleed_mm:g} mm bleed a side: " + " x ".join(
                f"{(v + 2 * self.bleed_mm) * CM_PER_MM:.1f}" for v in sides) + " cm"
        fitted = self.fitted_shape
        action = (f"content cropped to {fitted[1]}x{fitted[0]}" if self.fit == "crop"
                  else f"content padded (mirrored) to {fitted[1]}x{fitted[0]}")
        if fitted == tuple(self.content_shape):
            action = "content already at the print's aspect"
        return (f"print {self.size.name} {self.orientation} ({cm}): {width} x {height} px at {self.dpi} dpi; "
                f"{action}")

    @property
    def trim(self) -> tuple[int, int, int, int]:
        """``(top, left, height, width)`` of the trim in the print's pixels (the whole print without a bleed)."""
        return trim_box(self.pixels, self.bleed_mm, self.dpi)

    @property
    def fitted_shape(self) -> tuple[int, int]:
        """The content's ``(height, width)`` after the crop or pad."""
        if self.box is not None:
            return self.box[2], self.box[3]
        (top, bottom), (left, right) = self.pads
        return self.content_shape[0] + top + bottom, self.content_shape[1] + left + right

    def key(self) -> dict:
        """What the NNST stage's input depends on (for the run folder's resume key): the crop or pad."""
        # JSON-native (lists, not tuples) so it compares equal to the key read back from config.json;
        # not the print size: A2 and A1 share a crop
        box = list(self.box) if self.box is not None else None
        pads = [list(p) for p in self.pads] if self.pads is not None else None
        return {"fit": self.fit, "box": box, "pads": pads}


def check_print_options(spec: str, dpi: int, fit: str, bleed_mm: float = 0.0) -> PrintSize:
    """The parsed print size, after checking ``spec``, ``dpi``, ``fit`` and ``bleed_mm`` (before any work).

    Raises
    ------
    InputError
        A bad spec, DPI, fit or bleed, a print of fewer than ``MIN_SIZE`` px a side at ``dpi``,
        or one (with its bleed) longer than a poster may be.
    """
    if fit not in FITS:
        raise InputError(f"{option_label('--fit')} {fit!r} is not known; use crop or pad")
    size = parse_print_size(spec)
    bleed = check_bleed(size, bleed_mm)
    height, width = print_pixels(size, dpi, "portrait")  # refuses a DPI out of range
    print_pixels(bled(size, bleed), dpi, "portrait")  # refuses a bled print longer than MAX_OUT_SIZE
    if width < MIN_SIZE:
        # NNST and the poster stage need MIN_SIZE px a side: a smaller print was written as a
        # few pixels of colour, not a stylized picture
        raise InputError(f"{option_label('--print')} {size.name} at {dpi} dpi is {width}x{height} px, below the "
                         f"{MIN_SIZE} px a poster needs on each side; {_larger_print_hint(size)}")
    return size


def _larger_print_hint(size: PrintSize) -> str:
    """The fix for a print too small in pixels: the lowest DPI that gives ``MIN_SIZE`` px, if there is one."""
    # the closed form, less one for float rounding at the boundary, then up to the first that gives MIN_SIZE
    dpi = max(1, math.ceil((MIN_SIZE - 0.5) * MM_PER_INCH / size.short_mm) - 1)
    while dpi <= MAX_DPI and mm_to_pixels(size.short_mm, dpi) < MIN_SIZE:
        dpi += 1
    if dpi > MAX_DPI:
        return "use a larger print"
    return f"use a larger print or {option_label('--dpi')} {dpi} or more"


def plan_print(content_shape: tuple[int, int], spec: str, dpi: int, fit: str = "crop",
               bleed_mm: float = 0.0) -> PrintPlan:
    """Plan a print of ``spec`` (see :func:`~nnst_hr.printsize.parse_print_size`) at ``dpi``, ``bleed_mm``
    larger on every side.

    Raises
    ------
    InputError
        A bad spec, DPI, fit or bleed.

    Examples
    --------
    >>> plan = plan_print((900, 1600), "A2", 300)
    >>> plan.orientation, plan.pixels, plan.box
    ('landscape', (4961, 7016), (0, 163, 900, 1273))
    >>> plan = plan_print((900, 1600), "A2", 300, bleed_mm=3)  # 426 x 600 mm
    >>> plan.pixels, plan.box, plan.trim
    ((5031, 7087), (0, 166, 900, 1268), (35, 35, 4961, 7017))
    """
    size = check_print_options(spec, dpi, fit, bleed_mm)
    orientation = orientation_of(content_shape)
    pixels = print_pixels(bled(size, float(bleed_mm)), dpi, orientation)
    box = crop_box(content_shape, pixels) if fit == "crop" else None
    pads = pad_widths(content_shape, pixels) if fit == "pad" else None
    return PrintPlan(size, dpi, fit, orientation, tuple(content_shape[:2]), pixels, box, pads, float(bleed_mm))


def _fit(array: np.ndarray, plan: PrintPlan) -> np.ndarray:
    if array.shape[:2] != plan.content_shape:
        raise ValueError(f"expected an array of {plan.content_shape}, got {array.shape[:2]}")
    if plan.box is not None:
        top, left, height, width = plan.box
        return np.ascontiguousarray(array[top:top + height, left:left + width])
    widths = plan.pads + ((0, 0),) * (array.ndim - 2)
    return np.pad(array, widths, mode="reflect") if min(array.shape[:2]) > 1 else np.pad(array, widths, mode="edge")


def fit_content(image: np.ndarray, plan: PrintPlan) -> np.ndarray:
    """The content ``(H, W, C)`` cropped or mirror-padded to the print's aspect (see the module docstring)."""
    return _fit(image, plan)


def fit_labels(masks, plan: PrintPlan):
    """A :class:`guidance.MaskPair` whose content label map got the content's crop or pad (None stays None)."""
    if masks is None:
        return None
    return dataclasses.replace(masks, content=_fit(masks.content, plan))


def content_region(plan: PrintPlan, shape: tuple[int, int]) -> tuple[int, int, int, int]:
    """``(top, left, height, width)`` of the content's own pixels in an image of ``shape`` (H, W) made by ``plan``.

    A crop's whole image is content (the box of it that :func:`fit_content` kept); a pad's
    margins are mirrored copies, and the content is the box inside them: the pads, scaled from
    the fitted content to ``shape``, each edge rounded to the nearest pixel (halves up).

    >>> plan = plan_print((100, 300), "4x8in", 10, "pad")  # a wide content padded to a 1:2 landscape
    >>> plan.pads, plan.fitted_shape
    (((25, 25), (0, 0)), (150, 300))
    >>> content_region(plan, (300, 600))  # the print at twice the fitted content's pixels
    (50, 0, 200, 600)
    """
    height, width = shape[:2]
    if plan.pads is None:
        return 0, 0, height, width
    (top, _), (left, _) = plan.pads
    (fitted_h, fitted_w), (content_h, content_w) = plan.fitted_shape, plan.content_shape
    y0, y1 = (math.floor(v * height / fitted_h + 0.5) for v in (top, top + content_h))
    x0, x1 = (math.floor(v * width / fitted_w + 0.5) for v in (left, left + content_w))
    return y0, x0, y1 - y0, x1 - x0


def fit_to_print(image: np.ndarray, plan: PrintPlan) -> np.ndarray:
    """``image`` at exactly ``plan.pixels``: a centred crop of surplus rows/columns, edge copies for missing ones.

    The difference comes from rounding NNST's size (and the content's crop or pad): a pixel of
    NNST's result, whose short side may be as small as ``MIN_SIZE``, is scaled up to the print; an
    aspect beyond that (:func:`~nnst_hr.printsize.made_from`) means the image does not belong to the
    plan. (An absolute 1 % of the print refused a 46 px NNST result's poster, 9 px off at A4 70 dpi.)
    """
    target = plan.pixels
    if not made_from(image.shape[:2], target):
        raise ValueError(f"image of {image.shape[:2]} does not match the print's {target} px")
    out = image
    for axis, want in enumerate(target):
        have = out.shape[axis]
        if have > want:
            start = (have - want) // 2
            out = out[start:start + want] if axis == 0 else out[:, start:start + want]
        elif have < want:
            before = (want - have) // 2
            widths = [(0, 0)] * out.ndim
            widths[axis] = (before, want - have - before)
            out = np.pad(out, widths, mode="edge")
    return out


def proof_image(image: np.ndarray, long_side: int = PROOF_LONG_SIDE) -> Image.Image:
    """An 8-bit RGB Pillow image of ``image`` (float ``(H, W, 3)`` in [0, 1]) with ``long_side`` px (Lanczos).

    Never upsamples. Converted to 8 bits in bands, so no full-size float copy is made.
    """
    height, width = image.shape[:2]
    codes = np.empty((height, width, 3), np.uint8)
    for y0 in range(0, height, PROOF_ROWS):
        codes[y0:y0 + PROOF_ROWS] = np.rint(np.clip(image[y0:y0 + PROOF_ROWS], 0, 1) * 255)
    scale = min(1.0, long_side / max(height, width))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    pillow = Image.fromarray(codes)
    del codes
    return pillow if size == (width, height) else pillow.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)


def proof_dpi(shape: tuple[int, int], dpi: float, long_side: int = PROOF_LONG_SIDE) -> tuple[float, int]:
    """``(DPI, long side in px)`` of the proof of an image of ``shape`` at ``dpi``: a whole DPI and its long side.

    JPEG stores its DPI as a whole number: the proof of an A2 print at 300 dpi, 1600 px at 68.4 dpi, said
    68 dpi, 0.6 % larger than the print. So the proof's DPI is the whole number at most ``long_side``
    allows, and its size follows from it (at most half a pixel off the print's physical size).

    >>> proof_dpi((4961, 7016), 300)  # A2: 7016 * 68 / 300 = 1590.3 px
    (68, 1590)
    >>> proof_dpi((400, 1200), 300)  # small enough: as it is
    (300, 1200)
    """
    longest = max(shape)
    if longest <= long_side:
        return dpi, longest
    whole = math.floor(dpi * long_side / longest)
    if whole < 1:  # a huge image at a few dpi: no whole DPI fits; the JPEG rounds the exact one
        return dpi * long_side / longest, long_side
    return whole, round(longest * whole / dpi)


def scale_box(box: tuple[int, int, int, int], shape: tuple[int, int],
              scaled: tuple[int, int]) -> tuple[int, int, int, int]:
    """``box`` ``(top, left, height, width)`` in an image of ``shape`` (H, W), in the same image resized to
    ``scaled`` (H, W): each edge scaled and rounded to the nearest pixel (halves up).

    >>> scale_box((35, 35, 3509, 2481), (3579, 2551), (1600, 1140))
    (16, 16, 1568, 1108)
    """
    top, left, height, width = box
    (rows, cols), (to_rows, to_cols) = shape[:2], scaled[:2]
    y0, y1 = (math.floor(v * to_rows / rows + 0.5) for v in (top, top + height))
    x0, x1 = (math.floor(v * to_cols / cols + 0.5) for v in (left, left + width))
    return y0, x0, y1 - y0, x1 - x0


def draw_trim_line(codes: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """Draw the outline of ``box`` ``(top, left, height, width)`` on ``codes`` (uint8 ``(H, W, 3)``), in place.

    A 1 px line on the box's outermost pixels (inside it: what is outside is cut off), in
    :data:`TRIM_DASH` px dashes of black and white, so it shows on light and dark picture alike.

    >>> codes = np.full((5, 16, 3), 128, np.uint8)
    >>> draw_trim_line(codes, (1, 2, 3, 12))[1, :, 0].tolist()
    [128, 128, 0, 0, 0, 0, 0, 0, 255, 255, 255, 255, 255, 255, 128, 128]
    """
    top, left, height, width = box
    bottom, right = top + height - 1, left + width - 1
    dash = lambda n: np.where((np.arange(n) // TRIM_DASH) % 2 == 0, 0, 255).astype(np.uint8)[:, None]  # noqa: E731
    codes[top:bottom + 1, left] = dash(height)
    codes[top:bottom + 1, right] = dash(height)
    codes[top, left:right + 1] = dash(width)  # the rows last: their dashes run on through the corners
    codes[bottom, left:right + 1] = dash(width)
    return codes


def soft_proof(codes: np.ndarray, press: bytes) -> np.ndarray:
    """8-bit sRGB ``codes`` ``(H, W, 3)`` as they print: separated into ink through the press's CMYK output
    profile and that ink read back through it (:mod:`nnst_hr.icc`, both ways relative colorimetric with
    black-point compensation), so colours the press cannot print show as it prints them."""
    from .icc import cmyk_to_srgb, srgb_to_cmyk

    ink = srgb_to_cmyk(codes.astype(np.float32) / np.float32(255), press)
    return np.rint(cmyk_to_srgb(ink, press) * 255).astype(np.uint8)


def write_proof(path: str | Path, image: np.ndarray, dpi: float, long_side: int = PROOF_LONG_SIDE,
                trim: tuple[int, int, int, int] | None = None, press: bytes | None = None) -> Path:
    """Write the proof JPEG of ``image`` (sRGB profile; at most ``long_side`` px, at a whole DPI that describes
    the same physical size, :func:`proof_dpi`); with ``trim`` (``(top, left, height, width)`` in ``image``'s
    pixels, :attr:`PrintPlan.trim`), its outline drawn (:func:`draw_trim_line`); with ``press`` (a CMYK
    output profile), a soft proof (:func:`soft_proof`: per pixel, the output's ink read back)."""
    from .files import write_image

    dots, side = proof_dpi(image.shape[:2], dpi, long_side)
    codes = np.asarray(proof_image(image, side))
    if press is not None:  # at the proof's size: the conversion is per pixel, a full-size one costs GBs
        codes = soft_proof(codes, press)
    if trim is not None and tuple(trim) != (0, 0, *image.shape[:2]):
        codes = draw_trim_line(codes.copy(), scale_box(trim, image.shape[:2], codes.shape[:2]))
    pixels = codes.astype(np.float32) / np.float32(255)
    return write_image(path, pixels, overwrite=True, jpeg_quality=PROOF_QUALITY, dpi=dots)
