"""Reading and writing images, and writing any file atomically.

Images cross this module's boundary as NumPy ``float32`` arrays of shape
``(H, W, 3)``: sRGB in ``[0, 1]``, rows top to bottom as the image is meant to
be *displayed* (EXIF orientation already applied). A file with an embedded RGB,
grey or CMYK ICC profile (Display P3, Adobe RGB, a press's CMYK, ...) is converted to sRGB
(:mod:`nnst_hr.icc`); one without a profile is taken as sRGB, as browsers and most viewers
take it, and CMYK without a profile gets the uncalibrated formula (with a warning).

Reading accepts PNG, JPEG, TIFF and WebP at 8 or 16 bits per sample. Grey
becomes RGB, palette and CMYK images are converted, and an alpha channel is
composited on white (with a warning when it is not fully opaque). 16-bit colour
PNGs are decoded by :mod:`nnst_hr.png` and TIFFs by tifffile, because Pillow
truncates 16-bit colour to 8 bits. :func:`decode_image` decodes a file's bytes the
same way (one decoder; the bytes of an experiment's inputs are never written to disk).

Writing follows the output's extension: PNG (8 or 16 bit, the 16-bit ones
encoded by :mod:`nnst_hr.png`), JPEG (8 bit) or TIFF (16 bit by default,
deflate-compressed). Every write goes to a temporary file in the destination
folder that is renamed into place only once complete, so an interrupted run
never leaves a half-written file nor destroys an existing one.

Examples
--------
>>> import tempfile
>>> import numpy as np
>>> from nnst_hr.files import read_image, write_image
>>> image = np.zeros((32, 48, 3), np.float32)
>>> with tempfile.TemporaryDirectory() as folder:
...     path = write_image(Path(folder) / "black.tif", image)
...     print(read_image(path).shape, path.name)
(32, 48, 3) black.tif
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import secrets
import stat
import struct
import warnings
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import numpy as np
import tifffile
from PIL import Image

from nnst_hr import icc, png
from nnst_hr.config import option_label
from nnst_hr.disk import disk_full_message, is_disk_full
from nnst_hr.errors import PATH_FIXES, DiskFullError, InputError
from nnst_hr.icc import srgb_profile
from nnst_hr.lock import file_in_the_way

# Values farther than this outside [0, 1] are not sRGB in [0, 1] (0..255 or 0..65535 floats); a result's
# unclipped state (``on_checkpoint``) strays a little outside, never this far.
RANGE_SLACK = 1.0

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "EXIF_ORIENTATION_TAG",
    "TRANSPOSING_ORIENTATIONS",
    "apply_orientation",
    "atomic_output",
    "atomic_write_bytes",
    "bytes_file",
    "check_output_file",
    "check_output_path",
    "check_write_options",
    "decode_image",
    "empty_file_message",
    "exists_message",
    "exif_orientation",
    "image_shape",
    "load_npz",
    "load_states",
    "read_image",
    "read_image_shape",
    "save_npz",
    "save_state",
    "srgb_profile",
    "write_image",
]

DEFAULT_MAX_PIXELS = 100_000_000  # about 1.2 GB as float32 RGB: refuse larger (decompression bombs)
DEFAULT_DPI = 300
MAX_DPI = 65535  # JPEG's JFIF stores the density in 16 bits (PNG's pHYs overflows at about 10**8)
DEFAULT_JPEG_QUALITY = 95
NAME_MAX = 255  # bytes in a file name (ext4, XFS, Btrfs, ZFS, APFS): the temporaries' names stay within it
WRITE_ROWS = 256  # rows converted to code values at a time (bounds the write path's temporaries)

READ_FORMATS = ("PNG", "JPEG", "MPO", "TIFF", "WEBP")  # Pillow's names; MPO is a camera JPEG
OUTPUT_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF", ".tiff": "TIFF"}
BIT_DEPTHS = {"PNG": (8, 16), "JPEG": (8,), "TIFF": (8, 16)}
DEFAULT_BIT_DEPTH = {"PNG": 8, "JPEG": 8, "TIFF": 16}
# What read_image makes of the same bytes; in the keys of results computed from them (run folders' NNST key;
# the experiment's inputs stage has its own number). Bump it when decoding changes the pixels: 2, ICC profiles
# read with black-point compensation (a CMYK input's darks changed).
DECODE_VERSION = 2

EXIF_ORIENTATION_TAG = 274
ICC_PROFILE_TAG = 34675  # TIFF's InterColorProfile
INK_SET_TAG, INK_SET_CMYK = 332, 1  # TIFF's InkSet: 1 = CMYK (the default), 2 = other inks, named by InkNames
TRANSPOSING_ORIENTATIONS = (5, 6, 7, 8)  # EXIF orientations that swap width and height
TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")  # classic and BigTIFF
PNG_COLOUR_TYPES_16BIT = (png.RGB, png.GREY_ALPHA, png.RGBA)  # Pillow truncates these to 8 bits

# Pillow errors on bad data come in many types; these are the ones its decoders raise (RuntimeError: its
# AVIF/HEIF plugins; TypeError: tifffile on a tag of the wrong type or count, a tuple where a number belongs).
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error, IndexError, RuntimeError,
                  TypeError)
logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------- reading


def read_image(path: str | os.PathLike, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read an image file as display-oriented sRGB.

    Parameters
    ----------
    path : str or PathLike
        A PNG, JPEG, TIFF or WebP file, 8 or 16 bits per sample. The format is
        recognised from the file's content, not its name.
    max_pixels : int
        Images with more pixels than this are refused before decoding. Pillow's
        own limit (``2 * PIL.Image.MAX_IMAGE_PIXELS``) still applies to the
        formats that Pillow decodes.

    Returns
    -------
    numpy.ndarray
        ``float32``, shape ``(H, W, 3)``, sRGB values in ``[0, 1]`` (converted
        from the file's embedded ICC profile, if it has one), EXIF orientation
        applied. Grey is repeated into three channels; transparency is
        composited on white.

    Raises
    ------
    InputError
        Missing, unreadable, corrupt, unsupported or too large.

    Warns
    -----
    UserWarning
        Transparency composited on white; CMYK without a colour profile
        converted without colour management; an embedded colour profile that
        cannot be used (the pixels are then taken as sRGB, CMYK converted without
        colour management); only the first frame of a multi-frame file used;
        16-bit data read at 8 bits.
    """
    path = _readable_file(path)
    with open(path, "rb") as file:
        head = file.read(png.HEADER_BYTES)
    return _decode(path, head, path, max_pixels)


def decode_image(data: bytes, name: str | os.PathLike, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode an image file's bytes exactly as :func:`read_image` reads the file.

    Parameters
    ----------
    data : bytes
        The whole file: PNG, JPEG, TIFF or WebP, 8 or 16 bits per sample.
    name : str or PathLike
        The file's path as the user gave it; it only names the file in errors and warnings.
    max_pixels : int
        As in :func:`read_image`.

    Returns
    -------
    numpy.ndarray
        As :func:`read_image`: ``float32`` ``(H, W, 3)`` in ``[0, 1]``, EXIF orientation applied.

    Raises
    ------
    InputError
        Empty, corrupt, unsupported or too large; the message names ``name``.

    Warns
    -----
    UserWarning
        As :func:`read_image`.

    Examples
    --------
    >>> import io
    >>> buffer = io.BytesIO()
    >>> Image.new("RGB", (4, 2), (255, 0, 0)).save(buffer, format="PNG")
    >>> decode_image(buffer.getvalue(), "red.png")[0, 0]
    array([1., 0., 0.], dtype=float32)
    """
    data = bytes(data)
    if not data:
        raise InputError(empty_file_message(name))
    return _decode(data, data[: png.HEADER_BYTES], name, max_pixels)


def _decode(source: Path | bytes, head: bytes, path: str | os.PathLike, max_pixels: int) -> np.ndarray:
    """The decoder behind :func:`read_image` and :func:`decode_image`: ``source`` is the file or its
    bytes, ``head`` its first bytes (they route it), ``path`` names it in messages."""
    if head.startswith(TIFF_MAGIC):
        decoded = _read_tiff(source, path, max_pixels)
    elif _is_16bit_colour_png(head):
        decoded = _read_png(source, path, max_pixels)
    else:
        decoded = _read_with_pillow(source, path, max_pixels)
    if decoded.pixels.ndim != 3 or 0 in decoded.pixels.shape:  # a decoder that returned no pixel data
        raise _corrupt(path, "it holds no pixel data")
    in_srgb = _cmyk_in_srgb if decoded.cmyk else _in_srgb
    pixels = apply_orientation(in_srgb(decoded.pixels, decoded.icc_profile, path), decoded.orientation)
    return np.ascontiguousarray(_to_rgb(pixels, path), dtype=np.float32)


def image_shape(data: bytes) -> tuple[int, int] | None:
    """The ``(height, width)`` that :func:`decode_image` gives ``data``, from its header alone.

    Pillow's ``open`` reads the header, not the pixels; an EXIF orientation that turns the image
    a quarter swaps the two. For speed estimates (the experiment plan's time left), not checks.

    Parameters
    ----------
    data : bytes
        An image file's bytes.

    Returns
    -------
    (int, int) or None
        Display-oriented; None when the header cannot be read.

    Examples
    --------
    >>> buffer = io.BytesIO()
    >>> Image.new("RGB", (48, 32)).save(buffer, "PNG")
    >>> image_shape(buffer.getvalue()), image_shape(b"not an image")
    ((32, 48), None)
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
                # a PNG's getexif() decodes the pixels to look for an eXIf chunk after them
                orientation = (_exif_orientation(image.info.get("exif")) if image.format == "PNG"
                               else exif_orientation(image))
    except (Image.UnidentifiedImageError, Image.DecompressionBombError, *_DECODE_ERRORS):
        return None
    return (width, height) if orientation in TRANSPOSING_ORIENTATIONS else (height, width)


def read_image_shape(path: str | os.PathLike, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[int, int]:
    """The ``(height, width)`` that :func:`read_image` gives ``path``, from its header alone.

    The file is refused as :func:`read_image` refuses it when that shows in its header: missing,
    a folder, unreadable, empty, not an image, a format it does not read (GIF, BMP), too many
    pixels. Pixels that do not decode show only when :func:`read_image` decodes them.

    Raises
    ------
    InputError
        With :func:`read_image`'s message.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     Image.new("RGB", (48, 32)).save(Path(folder) / "a.png")
    ...     read_image_shape(Path(folder) / "a.png")
    (32, 48)
    """
    path = _readable_file(path)
    with open(path, "rb") as file:
        head = file.read(png.HEADER_BYTES)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # read_image warns, once, when it reads the pixels
            if head.startswith(TIFF_MAGIC):
                with tifffile.TiffFile(path) as tif:
                    page = tif.pages.first
                    width, height = page.imagewidth, page.imagelength
                    orientation = int(page.tags.valueof(EXIF_ORIENTATION_TAG, default=1))
            else:
                with Image.open(path) as image:
                    _check_format(image, path)
                    width, height = image.size
                    orientation = exif_orientation(image)
    except InputError:
        raise
    except Image.DecompressionBombError as exc:
        raise _pillow_bomb(path, exc) from exc
    except Image.UnidentifiedImageError as exc:
        raise _not_an_image(path) from exc
    except (tifffile.TiffFileError, *_DECODE_ERRORS) as exc:
        raise _corrupt(path, exc) from exc
    _check_pixel_count(path, width, height, max_pixels)
    return (width, height) if orientation in TRANSPOSING_ORIENTATIONS else (height, width)


class _Decoded(NamedTuple):
    pixels: np.ndarray  # float32 (H, W, C), C in 1..4 (1..5 if cmyk), rows as stored
    orientation: int  # EXIF orientation 1..8
    icc_profile: bytes | None  # the embedded profile of the colour channels, if any
    cmyk: bool = False  # pixels are ink (C, M, Y, K [, alpha]), 0 = no ink, 1 = full ink


def _in_srgb(pixels: np.ndarray, profile: bytes | None, path) -> np.ndarray:
    """``pixels`` converted from their embedded profile to sRGB; a profile that cannot be used is ignored
    with a warning (the pixels are then taken as sRGB, as without a profile)."""
    if not profile:
        return pixels
    try:
        converted = icc.to_srgb(pixels, profile)
    except icc.ProfileError as exc:
        warnings.warn(f"{path}: its embedded colour profile is ignored ({exc}); colours are read as sRGB",
                      stacklevel=5)
        return pixels
    if converted is not pixels:
        # an sRGB variant (its colorants rounded otherwise) changes no colour by an 8-bit step: nothing to tell
        log = logger.debug if icc.near_srgb(profile) else logger.info
        log("%s: colours converted from %s to sRGB", path, icc.describe(profile))
    return converted


def _cmyk_in_srgb(ink: np.ndarray, profile: bytes | None, path) -> np.ndarray:
    """CMYK ``ink`` converted to sRGB through its embedded profile; without a usable one, by the
    uncalibrated formula (:func:`nnst_hr.icc.naive_cmyk_to_srgb`), with a warning."""
    unmanaged = "converted to RGB without colour management (convert it to sRGB for exact colours)"
    if not profile:
        warnings.warn(f"{path} is CMYK without a colour profile; {unmanaged}", stacklevel=5)
        return icc.naive_cmyk_to_srgb(ink)
    try:
        converted = icc.cmyk_to_srgb(ink, profile)
    except icc.ProfileError as exc:
        warnings.warn(f"{path}: its embedded colour profile is ignored ({exc}); CMYK {unmanaged}", stacklevel=5)
        return icc.naive_cmyk_to_srgb(ink)
    logger.info("%s: colours converted from %s to sRGB", path, icc.describe(profile))
    return converted


def _opened(source: Path | bytes, path: str | os.PathLike) -> Path | io.BytesIO:
    """What Pillow and tifffile open: the file, or an in-memory file over its bytes named ``path``."""
    return bytes_file(source, path) if isinstance(source, bytes) else source


class _NamedBytesIO(io.BytesIO):
    def __init__(self, data: bytes, name: str):
        super().__init__(data)
        self._name = name

    def __repr__(self) -> str:
        return repr(self._name)


def bytes_file(data: bytes, name: str | os.PathLike) -> io.BytesIO:
    """An in-memory binary file over ``data`` whose repr is ``name``'s.

    Decoders that open it (Pillow) name it by its repr in their errors: these then name the
    user's file, not ``<_io.BytesIO object at 0x...>``.

    Examples
    --------
    >>> bytes_file(b"GIF89a", "masks/content.png")
    'masks/content.png'
    """
    return _NamedBytesIO(data, os.fspath(name))


def _readable_file(path: str | os.PathLike) -> Path:
    path = Path(path)
    try:
        info = path.stat()
    except (FileNotFoundError, NotADirectoryError):
        raise InputError(f"{path}: no such file; check the path") from None
    except OSError as exc:  # a name too long, a symbolic link loop: Path.exists() raised these
        raise InputError(f"{path}: {exc.strerror or exc}; {PATH_FIXES.get(exc.errno, 'check the path')}") from None
    if stat.S_ISDIR(info.st_mode):
        raise InputError(f"{path} is a folder, not an image; give the path of an image file")
    refuse_special_file(path)  # a pipe (`<(curl ...)`) or /dev/zero said "is empty"
    if not os.access(path, os.R_OK):
        raise InputError(f"{path}: permission denied; make the file readable")
    if info.st_size == 0:
        raise InputError(empty_file_message(path))
    return path


def empty_file_message(name: str | os.PathLike) -> str:
    """What is wrong with an image file of no bytes, and the fix: the words of :func:`read_image`,
    :func:`decode_image` and the mask readers (:mod:`guidance.masks`), which name it ``mask ...``.

    >>> empty_file_message("masks/content.png")
    'masks/content.png is empty; give a PNG, JPEG, TIFF or WebP image'
    """
    return f"{os.fspath(name)} is empty; give a PNG, JPEG, TIFF or WebP image"


def _check_pixel_count(path: Path, width: int, height: int, max_pixels: int) -> None:
    """Refuse a size from a file's header: more than ``max_pixels``, or no pixels at all (a corrupt
    header; tifffile then decoded an empty array, which failed far from the file)."""
    if not (isinstance(width, int) and isinstance(height, int) and width > 0 and height > 0):
        size = (f"{width} x {height} pixels" if isinstance(width, int) and isinstance(height, int)
                else "no valid size")
        raise _corrupt(path, f"its header gives {size}")
    if width * height > max_pixels:
        raise InputError(
            f"{path} has {width} x {height} = {width * height:,} pixels, more than the limit of "
            f"{max_pixels:,}; downscale it first or raise the pixel limit"
        )


def _pillow_bomb(path: Path, exc: Image.DecompressionBombError) -> InputError:
    return InputError(f"{path} has too many pixels ({exc}); downscale it first")


def _not_an_image(path: Path) -> InputError:
    return InputError(f"{path} is not an image that can be read (PNG, JPEG, TIFF or WebP expected); "
                      "check the file or convert it")


CORRUPT_DETAIL_CHARS = 200  # a decoder's error can quote a whole tag's values: the line keeps its start


def _corrupt(path: Path, detail: object) -> InputError:
    text = " ".join(str(detail).split())
    if len(text) > CORRUPT_DETAIL_CHARS:
        text = text[: CORRUPT_DETAIL_CHARS - 3] + "..."
    return InputError(f"{path} is truncated or corrupt ({text}); re-export or re-download it")


def _is_16bit_colour_png(head: bytes) -> bool:
    """Whether the file starting with ``head`` is a PNG that :mod:`nnst_hr.png` should read.

    These are the PNGs with 16-bit RGB, RGBA or grey + alpha (interlaced or not),
    which Pillow truncates to 8 bits.
    """
    header = png.read_header(head)
    return header is not None and header.bit_depth == 16 and header.colour_type in PNG_COLOUR_TYPES_16BIT


@contextmanager
def _pillow_warnings_named(path: Path) -> Iterator[None]:
    """Hold the block's warnings and, when it ends without an error, issue them again: Pillow's own ones
    ("Corrupt EXIF data...", "Tag data larger than file") named no file; they are said naming ``path``,
    once each. Pillow's DecompressionBombWarning is dropped: our own pixel limit applies."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        yield
    said = set()
    for warning in caught:
        if f"{os.sep}PIL{os.sep}" not in warning.filename:  # ours, pointing at the caller already
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
            continue
        text = f"{path}: {' '.join(str(warning.message).split())} (Pillow's warning; the image is read anyway)"
        if text not in said:
            said.add(text)
            warnings.warn(text, UserWarning, stacklevel=6)  # the caller of read_image or decode_image


def _read_with_pillow(source: Path | bytes, path: Path, max_pixels: int) -> _Decoded:
    try:
        with _pillow_warnings_named(path), Image.open(_opened(source, path)) as image:
            return _pillow_pixels(image, path, max_pixels)
    except InputError:
        raise
    except Image.DecompressionBombError as exc:
        raise _pillow_bomb(path, exc) from exc
    except Image.UnidentifiedImageError as exc:
        raise _not_an_image(path) from exc
    except _DECODE_ERRORS as exc:
        raise _corrupt(path, exc) from exc


def _pillow_pixels(image: Image.Image, path: Path, max_pixels: int) -> _Decoded:
    """Decode an opened Pillow image: float32 ``(H, W, C)``, C in 1..4, EXIF orientation, ICC profile."""
    _check_format(image, path)
    _check_pixel_count(path, image.width, image.height, max_pixels)
    if image.format != "MPO" and getattr(image, "n_frames", 1) > 1:  # MPO's extra frames are previews
        warnings.warn(f"{path} has {image.n_frames} frames; using the first", stacklevel=5)
    orientation = exif_orientation(image)
    profile = image.info.get("icc_profile")
    image.load()
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):  # single channel, more than 8 bits
        samples = np.asarray(image)[..., None]
        if image.mode == "F":
            _check_finite(samples, path)
            return _Decoded(np.clip(samples, 0, 1).astype(np.float32), orientation, profile)
        return _Decoded(np.clip(samples, 0, 65535).astype(np.float32) / np.float32(65535), orientation, profile)
    if image.mode == "CMYK":  # ink, 0 = none: Pillow undoes the 1 - ink that (Adobe) CMYK JPEGs store
        samples = np.asarray(image).astype(np.float32) / np.float32(255)
        return _Decoded(samples, orientation, profile, cmyk=True)
    try:
        image = image.convert(_pillow_target_mode(image))
    except ValueError as exc:
        raise InputError(f"{path}: colour mode {image.mode} is not supported; convert it to sRGB") from exc
    samples = np.asarray(image).astype(np.float32) / np.float32(255)
    return _Decoded(samples.reshape(image.height, image.width, -1), orientation, profile)


def _check_format(image: Image.Image, path: Path) -> None:
    if image.format not in READ_FORMATS:
        name = image.format or "unknown"
        raise InputError(
            f"{path} is {'an' if name[0] in 'AEIOU' else 'a'} {name} image; supported formats are "
            "PNG, JPEG, TIFF and WebP: convert it first"
        )


def _pillow_target_mode(image: Image.Image) -> str:
    """8-bit mode to convert to: L, LA, RGB or RGBA, keeping transparency where there is some."""
    if image.mode in ("LA", "La"):
        return "LA"
    if image.mode in ("RGBA", "RGBa", "PA") or "transparency" in image.info:
        return "RGBA"
    if image.mode in ("1", "L"):
        return "L"
    return "RGB"


def _read_png(source: Path | bytes, path: Path, max_pixels: int) -> _Decoded:
    data = source if isinstance(source, bytes) else source.read_bytes()
    header = png.read_header(data)
    if header is not None:  # None only if the file changed since it was routed here; decode reports it
        _check_pixel_count(path, header.width, header.height, max_pixels)  # before inflating anything
    try:
        pixels, metadata = png.decode(data)
    except ValueError as exc:
        raise _corrupt(path, exc) from exc
    return _Decoded(_unit_range(pixels, path), _exif_orientation(metadata.exif), metadata.icc_profile)


def _exif_orientation(exif_bytes: bytes | None) -> int:
    """The orientation tag (1..8) of a raw EXIF block; 1 when absent or unreadable."""
    if exif_bytes is None:
        return 1
    exif = Image.Exif()
    try:
        exif.load(exif_bytes)
    except _DECODE_ERRORS:
        return 1
    return int(exif.get(EXIF_ORIENTATION_TAG, 1))


def _read_tiff(source: Path | bytes, path: Path, max_pixels: int) -> _Decoded:
    """Read the first page of a TIFF with tifffile, or with Pillow where tifffile cannot.

    tifffile reads grey, RGB and CMYK at any bit depth; palette, YCbCr, other inks than CMYK and
    compressions it has no codec for (LZW, JPEG without imagecodecs) go to Pillow.
    """
    try:
        with tifffile.TiffFile(_opened(source, path)) as tif:
            page = tif.pages.first
            _check_pixel_count(path, page.imagewidth, page.imagelength, max_pixels)
            if len(tif.pages) > 1:
                warnings.warn(f"{path} has {len(tif.pages)} pages; using the first", stacklevel=4)
            orientation = int(page.tags.valueof(EXIF_ORIENTATION_TAG, default=1))
            if page.photometric not in (
                tifffile.PHOTOMETRIC.MINISBLACK,
                tifffile.PHOTOMETRIC.MINISWHITE,
                tifffile.PHOTOMETRIC.RGB,
            ) and not _is_cmyk(page):
                return _read_tiff_of_pillow(source, path, max_pixels, page)
            try:
                samples = page.asarray()
            except ValueError as exc:
                if "imagecodecs" not in str(exc):
                    raise
                return _read_tiff_with_pillow(source, path, max_pixels, page.bitspersample)
            return _Decoded(_tiff_pixels(page, samples, path), orientation, page.tags.valueof(ICC_PROFILE_TAG),
                            cmyk=_is_cmyk(page))
    except InputError:
        raise
    except (tifffile.TiffFileError, *_DECODE_ERRORS) as exc:  # imagecodecs' errors are RuntimeErrors
        raise _corrupt(path, exc) from exc


def _is_cmyk(page: tifffile.TiffPage) -> bool:
    """Whether a TIFF page holds CMYK ink: photometric SEPARATED, the CMYK ink set (the default), 4 inks."""
    return (
        page.photometric == tifffile.PHOTOMETRIC.SEPARATED
        and page.tags.valueof(INK_SET_TAG, default=INK_SET_CMYK) == INK_SET_CMYK
        and page.samplesperpixel - len(page.extrasamples) == 4
    )


def _read_tiff_of_pillow(source: Path | bytes, path: Path, max_pixels: int, page: tifffile.TiffPage) -> _Decoded:
    """A TIFF page that only Pillow reads (palette, YCbCr, CIELab); one Pillow does not read either was
    "not an image that can be read (PNG, JPEG, TIFF or WebP expected)", of a TIFF."""
    try:
        return _read_with_pillow(source, path, max_pixels)
    except InputError as exc:
        if not isinstance(exc.__cause__, Image.UnidentifiedImageError):
            raise
        photometric = getattr(page.photometric, "name", page.photometric)  # a value tifffile does not know: as is
        kind = f"{photometric}, {page.samplesperpixel} x {page.bitspersample}-bit samples"
        raise InputError(f"{path} is a TIFF whose colour space or layout ({kind}) cannot be read; convert it to "
                         "8 or 16-bit RGB") from exc


def _read_tiff_with_pillow(source: Path | bytes, path: Path, max_pixels: int, bits: int) -> _Decoded:
    if bits > 8:
        warnings.warn(
            f"{path} uses a compression that only Pillow can decode here; its {bits}-bit samples are read "
            "at 8 bits (install imagecodecs for full precision)",
            stacklevel=5,
        )
    return _read_with_pillow(source, path, max_pixels)


def _tiff_pixels(page: tifffile.TiffPage, samples: np.ndarray, path: Path) -> np.ndarray:
    """Float32 ``(H, W, C)`` from a tifffile page, alpha made straight (unassociated)."""
    if page.axes == "SYX":
        samples = np.moveaxis(samples, 0, -1)
    elif page.axes == "YX":
        samples = samples[..., None]
    elif page.axes != "YXS":
        raise InputError(f"{path}: TIFF layout {page.axes} is not a 2-D image; export a single flat image")
    pixels = _unit_range(samples, path)
    if page.photometric == tifffile.PHOTOMETRIC.MINISWHITE:
        pixels[..., :1] = 1 - pixels[..., :1]
    colour = {tifffile.PHOTOMETRIC.RGB: 3, tifffile.PHOTOMETRIC.SEPARATED: 4}.get(page.photometric, 1)
    extras = tuple(page.extrasamples)
    has_alpha = int(pixels.shape[-1] > colour and bool(extras) and extras[0] in (1, 2))
    if pixels.shape[-1] > colour + has_alpha:
        warnings.warn(f"{path}: ignoring {pixels.shape[-1] - colour - has_alpha} extra channel(s)", stacklevel=6)
    pixels = pixels[..., : colour + has_alpha]
    if has_alpha and extras[0] == tifffile.EXTRASAMPLE.ASSOCALPHA:
        alpha = pixels[..., -1:]
        safe = np.where(alpha > 0, alpha, 1)
        pixels[..., :-1] = np.clip(pixels[..., :-1] / safe, 0, 1)
    return pixels


def _unit_range(samples: np.ndarray, path: Path) -> np.ndarray:
    """Integer or float samples to float32 in ``[0, 1]`` (unsigned integers scaled by their maximum)."""
    if samples.dtype == bool:
        return samples.astype(np.float32)
    if samples.dtype.kind == "u":
        return samples.astype(np.float32) / np.float32(np.iinfo(samples.dtype).max)
    if samples.dtype.kind == "f":
        _check_finite(samples, path)
        return np.clip(samples, 0, 1).astype(np.float32)
    raise InputError(f"{path}: samples of type {samples.dtype} are not supported; export 8 or 16-bit unsigned samples")


def _check_finite(samples: np.ndarray, path: Path) -> None:
    """Refuse float samples that are NaN or infinite (no colour is meant by them), or far outside
    ``[0, 1]`` (0..255 or 0..65535 floats: clipped, they were a white image, and no error)."""
    bad = int(np.count_nonzero(~np.isfinite(samples)))
    if bad:
        raise InputError(
            f"{path} has {bad:,} NaN or infinite sample(s); re-export it with finite values "
            "(e.g. as an 8 or 16-bit integer image)"
        )
    low, high = (float(samples.min()), float(samples.max())) if samples.size else (0.0, 0.0)
    if low < -RANGE_SLACK or high > 1 + RANGE_SLACK:
        raise InputError(
            f"{path} has float samples from {low:g} to {high:g}, not in [0, 1]; re-export it scaled to [0, 1] "
            "(8-bit values divided by 255) or as an 8 or 16-bit integer image"
        )


def exif_orientation(image: Image.Image) -> int:
    """The EXIF orientation of an opened Pillow image.

    Parameters
    ----------
    image : PIL.Image.Image
        Any image Pillow opened; only its metadata is read.

    Returns
    -------
    int
        1..8 as stored (see :func:`apply_orientation`); 1 when the image has none.

    Examples
    --------
    >>> exif = Image.Exif()
    >>> exif[EXIF_ORIENTATION_TAG] = 6
    >>> image = Image.new("RGB", (4, 2))
    >>> image.info["exif"] = exif.tobytes()
    >>> exif_orientation(image), exif_orientation(Image.new("RGB", (4, 2)))
    (6, 1)
    """
    return image.getexif().get(EXIF_ORIENTATION_TAG, 1)


def apply_orientation(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """Rotate/flip stored rows into display order, as EXIF orientation 1..8 prescribes.

    Matches ``PIL.ImageOps.exif_transpose``; orientations in :data:`TRANSPOSING_ORIENTATIONS`
    swap the height and width.

    Parameters
    ----------
    pixels : numpy.ndarray
        ``(H, W, ...)`` as stored in the file.
    orientation : int
        The EXIF orientation tag; values other than 2..8 leave ``pixels`` as they are.

    Returns
    -------
    numpy.ndarray
        A view of ``pixels`` in display order, ``(W, H, ...)`` for the transposing orientations.

    Examples
    --------
    >>> stored = np.arange(6).reshape(2, 3)
    >>> apply_orientation(stored, 6)  # the camera was turned clockwise: rotate clockwise
    array([[3, 0],
           [4, 1],
           [5, 2]])
    """
    if orientation == 2:
        return pixels[:, ::-1]
    if orientation == 3:
        return pixels[::-1, ::-1]
    if orientation == 4:
        return pixels[::-1]
    if orientation == 5:
        return pixels.swapaxes(0, 1)
    if orientation == 6:
        return np.rot90(pixels, -1)
    if orientation == 7:
        return pixels[::-1, ::-1].swapaxes(0, 1)
    if orientation == 8:
        return np.rot90(pixels, 1)
    return pixels


def _to_rgb(pixels: np.ndarray, path: Path) -> np.ndarray:
    """``(H, W, C)`` with C = 1 (grey), 2 (grey + alpha), 3 (RGB) or 4 (RGBA) to ``(H, W, 3)``."""
    if pixels.shape[-1] in (2, 4):
        colour, alpha = pixels[..., :-1], pixels[..., -1:]
        if np.any(alpha < 1):
            warnings.warn(f"{path} has transparent pixels; they are composited on white", stacklevel=4)
            colour = colour * alpha + (1 - alpha)
        pixels = colour
    if pixels.shape[-1] == 1:
        pixels = np.repeat(pixels, 3, axis=-1)
    return pixels


# --------------------------------------------------------------------------- writing


def check_output_path(
    path: str | os.PathLike, *, overwrite: bool, bit_depth: int | None = None,
    jpeg_quality: int = DEFAULT_JPEG_QUALITY, dpi: float = DEFAULT_DPI,
) -> Path:
    """Refuse an image output early, before minutes of computing.

    Checks that the extension is a format :func:`write_image` writes (and
    supports ``bit_depth``), that ``jpeg_quality`` and ``dpi`` are valid, that the
    folder exists and is writable, and that the file does not exist unless ``overwrite``.

    Parameters
    ----------
    path : str or PathLike
        The output image.
    overwrite : bool
        Whether an existing file may be replaced.
    bit_depth : int, optional
        8 or 16; default: the format's default.
    jpeg_quality, dpi
        As :func:`write_image` takes them.

    Returns
    -------
    pathlib.Path
        ``path`` as a :class:`~pathlib.Path`.

    Raises
    ------
    InputError
        With a message naming the file and the fix.
    """
    path = check_output_file(path)
    _bit_depth(path, bit_depth)
    check_write_options(jpeg_quality, dpi)
    _check_destination(path, overwrite)
    return path


def check_output_file(path: str | os.PathLike) -> Path:
    """Refuse a path that cannot be an output file whatever the options: a folder (``.`` and ``/``
    too), or one whose folder is missing or is a file (:class:`InputError` naming the fix)."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path} is a folder; give a file name, e.g. {path / 'poster.tif'}")
    special = special_file_kind(path)
    if special is not None:  # /dev/null said "no extension", and a FIFO.png with --overwrite was replaced by a file
        raise InputError(f"{path} is {special}, not a file; give an image file's path (.png, .jpg or .tif): an "
                         "output is written whole, then renamed into place")
    _check_folder(path)
    return path


SPECIAL_FILES = ((stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                 (stat.S_ISFIFO, "a pipe (FIFO)"), (stat.S_ISSOCK, "a socket"))  # (test of st_mode, words)


def refuse_special_file(path: str | os.PathLike, label: str = "") -> None:
    """Refuse (:class:`InputError`) a device or a pipe given for a file the command reads (``label``: the
    option, "--cmyk "): reading a FIFO waited for a writer forever, /dev/zero filled the memory, and the
    inputs are read more than once (their checksums, a resumed run)."""
    special = special_file_kind(path)
    if special is not None:
        raise InputError(f"{label}{path} is {special}, not a file; save it to a file and give its path")


def special_file_kind(path: str | os.PathLike) -> str | None:
    """What ``path`` is (links followed) when it is neither a regular file, a folder nor missing:
    "a character device" (/dev/null), "a pipe (FIFO)", ...; None otherwise.

    >>> special_file_kind("/dev/null"), special_file_kind("/no/such/file")
    ('a character device', None)
    """
    try:
        mode = os.stat(path).st_mode
    except OSError:  # missing, or a path the file system refuses: the caller's other checks say so
        return None
    return next((words for test, words in SPECIAL_FILES if test(mode)), None)


def check_write_options(jpeg_quality: int, dpi: float) -> None:
    """Refuse (:class:`InputError`) a JPEG quality or DPI that :func:`write_image` cannot write."""
    if not 1 <= jpeg_quality <= 100:
        raise InputError(f"{option_label('--jpeg-quality')} {jpeg_quality} is out of range; use 1 to 100")
    if not 0 < dpi <= MAX_DPI:
        raise InputError(f"{option_label('--dpi')} {dpi} is out of range; use a positive value up to {MAX_DPI}")


def write_image(
    path: str | os.PathLike,
    image: np.ndarray,
    *,
    overwrite: bool = False,
    bit_depth: int | None = None,
    jpeg_quality: int = DEFAULT_JPEG_QUALITY,
    dpi: float = DEFAULT_DPI,
) -> Path:
    """Write an sRGB image atomically, in the format its extension names.

    Parameters
    ----------
    path : str or PathLike
        ``.png``, ``.jpg``/``.jpeg`` or ``.tif``/``.tiff``.
    image : numpy.ndarray
        Float, shape ``(H, W, 3)``, sRGB; values are clipped to ``[0, 1]`` and
        rounded to the nearest code value. Not modified.
    overwrite : bool
        Replace an existing file (only once the new one is complete).
    bit_depth : {8, 16} or None
        Bits per sample; default 8 for PNG and JPEG, 16 for TIFF. JPEG is 8 only.
    jpeg_quality : int
        1..100, JPEG only; chroma is not subsampled (4:4:4).
    dpi : float
        Resolution stored in the file (TIFF resolution tags, PNG pHYs, JPEG JFIF).
        Every format also gets the sRGB ICC profile (:func:`srgb_profile`): TIFF
        tag 34675, PNG iCCP, JPEG APP2.

    Returns
    -------
    pathlib.Path
        The written file.

    Raises
    ------
    InputError
        Bad extension, bit depth, quality or dpi; existing file without
        ``overwrite``; missing folder; values far outside [0, 1] (0..255 floats).
        ``image`` not a finite ``(H, W, 3)`` float array (the message names the conversion, e.g.
        ``/ 255`` for uint8).
    """
    path = Path(path)
    bits = _bit_depth(path, bit_depth)
    image = np.asarray(image)
    _check_image_to_write(image)
    check_write_options(jpeg_quality, dpi)
    codes = _code_values(image, bits)
    profile = srgb_profile()
    fmt = OUTPUT_FORMATS[path.suffix.lower()]
    with atomic_output(path, overwrite=overwrite, expected_bytes=codes.nbytes) as tmp:
        if fmt == "TIFF":
            _write_tiff(tmp, codes, "rgb", profile, dpi)
        elif fmt == "PNG" and bits == 16:
            tmp.write_bytes(png.encode(codes, dpi=dpi, icc_profile=profile))
        elif fmt == "PNG":
            Image.fromarray(codes).save(tmp, format="PNG", dpi=(dpi, dpi), icc_profile=profile)
        else:
            _write_jpeg(tmp, codes, jpeg_quality, dpi, profile)
    return path


def _write_jpeg(path: Path, codes: np.ndarray, quality: int, dpi: float, profile: bytes) -> None:
    """A JPEG with optimized Huffman tables, or standard ones where Pillow cannot: it gives the
    optimizing encoder a buffer of one byte per pixel, which very noisy images overflow (an
    ``OSError`` without an errno, "broken data stream"); a full disk has its errno and is raised."""
    options = {"format": "JPEG", "quality": quality, "subsampling": 0, "dpi": (dpi, dpi), "icc_profile": profile}
    try:
        Image.fromarray(codes).save(path, optimize=True, **options)
    except OSError as exc:
        if exc.errno is not None:
            raise
        Image.fromarray(codes).save(path, optimize=False, **options)


def software() -> str:
    """The TIFF ``Software`` tag's text: this program and its version (tifffile writes its own name otherwise)."""
    from nnst_hr import __version__

    return f"nnst-hr {__version__}"


def write_cmyk_tiff(
    path: str | os.PathLike,
    ink: np.ndarray,
    profile: bytes,
    *,
    overwrite: bool = False,
    bit_depth: int | None = None,
    dpi: float = DEFAULT_DPI,
) -> Path:
    """Write a press's ink atomically as a CMYK TIFF with its output profile embedded.

    Parameters
    ----------
    path : str or PathLike
        ``.tif``/``.tiff``.
    ink : numpy.ndarray
        ``(H, W, 4)``: cyan, magenta, yellow, black, 0 = none (:func:`nnst_hr.icc.srgb_to_cmyk`):
        float in ``[0, 1]``, rounded to the nearest code value, or code values already (uint8 for
        8 bits, uint16 for 16). Not modified.
    profile : bytes
        The CMYK output profile the ink was separated with: tag 34675, so that RIPs and
        :func:`read_image` know what the ink means.
    overwrite, bit_depth, dpi
        As :func:`write_image` (16 bits by default).

    The TIFF is photometric SEPARATED with InkSet CMYK (tag 332 = 1), zlib with a predictor, and
    carries the DPI as resolution tags.

    Raises
    ------
    InputError
        Not a TIFF path, bad bit depth or dpi, an existing file without ``overwrite``, a missing folder.
    """
    path = Path(path)
    if OUTPUT_FORMATS.get(path.suffix.lower()) != "TIFF":
        raise InputError(f"{path}: CMYK is written as TIFF only; end the name with .tif")
    bits = _bit_depth(path, bit_depth)
    ink = np.asarray(ink)
    codes_type = np.uint16 if bits == 16 else np.uint8
    if ink.ndim != 3 or ink.shape[-1] != 4 or not (ink.dtype.kind == "f" or ink.dtype == codes_type):
        raise ValueError(f"ink must be float or {np.dtype(codes_type)} (H, W, 4), got {ink.dtype} {ink.shape}")
    check_write_options(DEFAULT_JPEG_QUALITY, dpi)
    codes = np.ascontiguousarray(ink) if ink.dtype == codes_type else _code_values(ink, bits)
    with atomic_output(path, overwrite=overwrite, expected_bytes=codes.nbytes) as tmp:
        _write_tiff(tmp, codes, "separated", profile, dpi, extratags=[(INK_SET_TAG, "H", 1, INK_SET_CMYK, True)])
    return path


def _write_tiff(path: Path, codes: np.ndarray, photometric: str, profile: bytes, dpi: float, extratags=()) -> None:
    """Code values as a zlib-compressed TIFF with its colour profile, DPI and this program as its Software."""
    tifffile.imwrite(path, codes, photometric=photometric, compression="zlib", predictor=True,
                     resolution=(dpi, dpi), resolutionunit="INCH", iccprofile=profile, metadata=None,
                     software=software(), extratags=extratags)


def _check_image_to_write(image: np.ndarray) -> None:
    """Refuse (:class:`InputError`) an image :func:`write_image` cannot write, naming the conversion: a uint8
    array was a bare ValueError with no hint, and 0..255 floats were clipped to a white image."""
    check_float_image(image, "the image", want="float (H, W, 3) sRGB in [0, 1]",
                      rgba_fix="image[..., :3] composited on a background", range_want="floats in [0, 1]")


def check_float_image(image: np.ndarray, name: str, *, want: str, rgba_fix: str, range_want: str | None = None) -> None:
    """Refuse (:class:`InputError`) an array that is not a finite floating-point ``(H, W, 3)`` image near
    [0, 1], in one line naming the conversion (``want``: what to give; ``rgba_fix``: how to drop an alpha
    channel; ``range_want``: what to give instead of values out of range, default ``want``).

    The checks of the API's images (:func:`nnst_hr.tensors.check_image`) and of :func:`write_image`'s.

    >>> check_float_image(np.zeros((2, 2, 3), np.uint8), "the image", want="floats", rgba_fix="")
    Traceback (most recent call last):
    ...
    nnst_hr.errors.InputError: the image is of type uint8: give floats, e.g. image.astype(np.float32) / 255
    """
    shape = image.shape
    if image.ndim == 2:
        raise InputError(f"{name} has shape {shape}, one grey channel: give {want}, "
                         f"e.g. np.repeat(image[..., None], 3, axis=2)")
    if image.ndim == 3 and shape[2] != 3 and shape[0] == 3:
        raise InputError(f"{name} has shape {shape}, channels first: give {want}, e.g. np.moveaxis(image, 0, 2)")
    if image.ndim == 3 and shape[2] == 4:
        raise InputError(f"{name} has shape {shape}, RGBA: give {want}, e.g. {rgba_fix}")
    if image.ndim != 3 or shape[2] != 3:
        raise InputError(f"{name} has shape {shape}: give {want}")
    if image.dtype.kind != "f":
        scale = f" / {_integer_scale(image)}" if image.dtype.kind in "ui" else ""
        raise InputError(f"{name} is of type {image.dtype}: give {want}, e.g. image.astype(np.float32){scale}")
    if image.size == 0:
        raise InputError(f"{name} has shape {shape}, no pixels: give {want}")
    low, high = float(image.min()), float(image.max())  # NaN and inf propagate; no temporary the size of image
    if not (np.isfinite(low) and np.isfinite(high)):
        raise InputError(f"{name} has NaN or infinite values: give {want}, e.g. np.nan_to_num(image)")
    if low < -RANGE_SLACK or high > 1 + RANGE_SLACK:  # 0..255 floats were clipped to a white image, no error
        raise InputError(f"{name} has values from {low:g} to {high:g}: give {range_want or want} "
                         f"(8-bit values: divide by 255; 16-bit: by 65535)")


def _integer_scale(image: np.ndarray) -> int:
    """The full scale of an integer image: its type's for 8 and 16 bits; for wider types (an int64 array
    of 8-bit values, as arithmetic gives them) 255 or 65535 when its values fit, else its type's."""
    top = np.iinfo(image.dtype).max
    if top <= 65535 or image.size == 0:
        return top
    high = int(image.max())
    return 255 if high <= 255 else 65535 if high <= 65535 else top


def _code_values(image: np.ndarray, bits: int) -> np.ndarray:
    """``image`` clipped to [0, 1] and rounded to ``bits``-bit code values, C-contiguous.

    Works in bands of :data:`WRITE_ROWS` rows, so a 70 MP poster needs no full-size
    float temporaries (each would be 840 MB). ``image`` is finite (:func:`_check_image_to_write`).
    """
    codes = np.empty(image.shape, np.uint16 if bits == 16 else np.uint8)
    for y0 in range(0, image.shape[0], WRITE_ROWS):
        band = image[y0 : y0 + WRITE_ROWS]
        codes[y0 : y0 + WRITE_ROWS] = np.rint(np.clip(band, 0, 1) * (2**bits - 1))
    return codes


def _bit_depth(path: Path, bit_depth: int | None) -> int:
    """The output bit depth for ``path``'s format, checking extension and depth."""
    fmt = OUTPUT_FORMATS.get(path.suffix.lower())
    if fmt is None:
        kind = f"'{path.suffix}' files" if path.suffix else "a file without an extension"
        raise InputError(f"{path}: cannot write {kind}; end the name with .png, .jpg or .tif")
    if bit_depth is None:
        return DEFAULT_BIT_DEPTH[fmt]
    if bit_depth not in BIT_DEPTHS[fmt]:
        allowed = " or ".join(map(str, BIT_DEPTHS[fmt]))
        hint = "; use .png or .tif for 16 bits" if fmt == "JPEG" else ""
        raise InputError(f"{path}: {fmt} can be written with {allowed} bits, not {bit_depth}{hint}")
    return bit_depth


def _check_folder(path: Path) -> None:
    folder = path.parent
    if not folder.is_dir():
        blocking = file_in_the_way(folder)
        if blocking is not None:
            raise InputError(f"{path}: {blocking} is a file, not a folder; choose another folder")
        raise InputError(f"{path}: the folder {folder} does not exist; create it first")


def exists_message(path: str | os.PathLike) -> str:
    """The refusal of an existing output without ``overwrite``. The command line (``--overwrite``) and the
    Python API (``overwrite=True``) reach the same functions, and a call from Python sets no naming
    (:func:`nnst_hr.config.values_from`) that tells them apart, so the message names both fixes.

    >>> exists_message("out.png")
    'out.png already exists; pass --overwrite (overwrite=True in Python) to replace it or choose another name'
    """
    return f"{path} already exists; pass --overwrite (overwrite=True in Python) to replace it or choose another name"


def _check_destination(path: Path, overwrite: bool) -> None:
    _check_folder(path)
    folder = path.parent
    if path.is_dir():
        raise InputError(f"{path} is a folder; give a file name")
    if path.exists() and not overwrite:
        raise InputError(exists_message(path))
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(f"{path}: the folder {folder} is not writable; choose another folder")


@contextmanager
def atomic_output(
    path: str | os.PathLike, *, overwrite: bool, suffix: str | None = None,
    expected_bytes: int | None = None,
) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it into place if the block succeeds.

    The temporary file (hidden, in the destination folder so the rename is
    atomic) already exists, empty, when the block starts. If the block raises,
    or is interrupted, it is deleted and ``path`` is untouched. On success it is
    flushed to disk and renamed to ``path``: readers see either the old file or
    the complete new one, never a partial one.

    Parameters
    ----------
    path : str or PathLike
        Final destination.
    overwrite : bool
        Replace an existing ``path``. Without it an existing file is refused, both
        before the block runs and at the rename (no race with another writer).
    suffix : str or None
        Ending of the temporary name; default ``path``'s suffix, so writers that
        infer the format from the name (or append one, like ``numpy.savez``) see it.
    expected_bytes : int or None
        About how large the file will be; only used in the message of a full disk.

    Raises
    ------
    InputError
        Missing folder, or existing file without ``overwrite``.
    DiskFullError
        The disk or the quota filled up (``ENOSPC``, ``EDQUOT``) during the block or the
        flush: the temporary file is removed, ``path`` is untouched, and the message says
        how much to free.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     with atomic_output(Path(folder) / "nnf.npz", overwrite=True) as tmp:
    ...         np.savez(tmp, nnf=np.zeros((4, 4, 3), np.int32))
    ...     print([p.name for p in Path(folder).iterdir()])  # no temporary file left beside it
    ['nnf.npz']
    """
    path = Path(path)
    _check_destination(path, overwrite)
    tmp = _create_temporary(path, path.suffix if suffix is None else suffix)
    try:
        yield tmp
        _fsync(tmp)
        _publish(tmp, path, overwrite)
    except OSError as exc:
        written = tmp.stat().st_size if tmp.exists() else 0
        tmp.unlink(missing_ok=True)
        if is_disk_full(exc):
            needed = max(written, expected_bytes or 0)
            raise DiskFullError(disk_full_message(path, needed), path) from exc
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync(path.parent)


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, overwrite: bool) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_output`); returns the path.

    Parameters
    ----------
    path : str or PathLike
        Final destination.
    data : bytes
        The whole content.
    overwrite : bool
        Replace an existing ``path``.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    with atomic_output(path, overwrite=overwrite) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def _create_temporary(path: Path, suffix: str) -> Path:
    """Create an empty, hidden, uniquely named file in ``path``'s folder (permissions follow the umask).

    Its name is ``path``'s with 14 bytes and ``suffix`` added, ``path``'s cut where that would pass
    :data:`NAME_MAX`: an output whose own name fits failed with "File name too long" for its temporary.
    """
    room = NAME_MAX - len(f"..{0:08x}.tmp{suffix}".encode())
    name = path.name.encode()[: max(room, 1)].decode(errors="ignore")
    while True:
        tmp = path.with_name(f".{name}.{secrets.token_hex(4)}.tmp{suffix}")
        try:
            os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
        except FileExistsError:
            continue
        return tmp


def _publish(tmp: Path, path: Path, overwrite: bool) -> None:
    """Rename ``tmp`` to ``path``; without ``overwrite``, fail rather than replace a file that appeared."""
    if overwrite:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)  # atomic and refuses an existing target
    except FileExistsError as exc:
        raise InputError(exists_message(path)) from exc
    except OSError:  # a file system without hard links
        if path.exists():
            raise InputError(exists_message(path)) from None
        os.replace(tmp, path)
        return
    tmp.unlink()


def _fsync(path: Path) -> None:
    """Flush a file, or a folder's entries, to disk (folders only where the OS allows opening them)."""
    if path.is_dir() and os.name != "posix":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_npz(path: str | os.PathLike, /, *, compressed: bool = False, overwrite: bool = True,
             **arrays: np.ndarray) -> Path:
    """Write ``arrays`` to the ``.npz`` file ``path`` atomically, then its SHA-256 sidecar.

    Every ``.npz`` of a run folder (results, checkpoints, fields) is written here. Load it
    with :func:`load_npz`, which refuses a file whose checksum does not match (see
    :mod:`nnst_hr.integrity`).

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     path = save_npz(Path(folder) / "state.npz", image=np.zeros((2, 3, 3), np.float32))
    ...     sorted(load_npz(path)), path.with_name("state.npz.sha256").is_file()
    (['image'], True)
    """
    from nnst_hr.integrity import write_checksum

    path = Path(path)
    expected = sum(np.asarray(a).nbytes for a in arrays.values())
    with atomic_output(path, overwrite=overwrite, expected_bytes=expected) as tmp:
        with open(tmp, "wb") as fh:
            (np.savez_compressed if compressed else np.savez)(fh, **arrays)
    write_checksum(path)
    return path


def load_npz(path: str | os.PathLike, keys: tuple[str, ...] = ()) -> dict[str, np.ndarray] | None:
    """The arrays of an ``.npz`` written by :func:`save_npz`; None (after a warning) if it is
    missing, truncated or corrupt, or lacks one of ``keys`` (another version wrote it), so that
    the caller recomputes it."""
    from nnst_hr.integrity import is_intact, remove

    if not is_intact(path):
        return None
    try:
        with np.load(Path(path), allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        reason = f"cannot be read ({exc})"
    else:
        missing = [key for key in keys if key not in arrays]
        if not missing:
            return arrays
        reason = f"lacks {', '.join(missing)} (another version wrote it)"
    warnings.warn(f"{path} {reason}; recomputing it", stacklevel=2)
    remove(path)
    return None


def load_states(folder: str | os.PathLike) -> dict[str, np.ndarray]:
    """The per-scale NNST states kept in ``folder`` by :func:`save_state` (``synthesize_nnst``'s ``start_from``).

    A truncated or corrupt state is left out (:func:`load_npz` warns and removes it): its scale is recomputed.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return {}
    states = {path.stem: load_npz(path, keys=("image",)) for path in sorted(folder.glob("*.npz"))}
    return {name: state["image"] for name, state in states.items() if state is not None}


def save_state(folder: str | os.PathLike, name: str, image: np.ndarray) -> None:
    """Keep the NNST state after scale ``name`` as ``folder/<name>.npz`` (atomic, checksummed; ``on_checkpoint``)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_npz(folder / f"{name}.npz", image=image)
