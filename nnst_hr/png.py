"""PNG files with 16-bit colour, a DPI and an ICC profile: imagecodecs for pixels, chunks here.

Pillow reads 16-bit RGB, RGBA and grey + alpha PNGs truncated to 8 bits per
sample, and writes 16-bit PNGs only in grey. :mod:`nnst_hr.files` therefore reads
and writes those files here. The pixels are coded by ``imagecodecs`` (libpng);
this module adds and reads the ancillary chunks libpng's simple interface leaves
out: ``pHYs`` (resolution), ``iCCP`` (colour profile) and ``eXIf`` (orientation).

Pixels are unsigned integer arrays of shape ``(H, W, C)`` (C = 1 grey, 2 grey +
alpha, 3 RGB, 4 RGBA), ``uint8`` or ``uint16`` in native byte order, rows top to
bottom as stored: applying an EXIF orientation is the caller's business,
:func:`decode` only returns the ``eXIf`` chunk. Bad data raises
:class:`ValueError` with a short description; callers add the file name.

Examples
--------
>>> import numpy as np
>>> from nnst_hr import png
>>> pixels = np.arange(24, dtype=np.uint16).reshape(2, 4, 3) * 2000
>>> data = png.encode(pixels, dpi=300, icc_profile=b"profile bytes")
>>> png.read_header(data)
Header(width=4, height=2, bit_depth=16, colour_type=2, interlaced=False)
>>> decoded, metadata = png.decode(data)
>>> bool(np.array_equal(decoded, pixels)), decoded.dtype, metadata.exif
(True, dtype('uint16'), None)
>>> info = png.read_metadata(data)
>>> round(info.dpi, 1), info.icc_profile
(300.0, b'profile bytes')
"""

from __future__ import annotations

import logging
import struct
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NamedTuple

import imagecodecs
import numpy as np

__all__ = [
    "GREY",
    "GREY_ALPHA",
    "HEADER_BYTES",
    "RGB",
    "RGBA",
    "SAMPLES_PER_PIXEL",
    "SIGNATURE",
    "Header",
    "Metadata",
    "decode",
    "encode",
    "read_header",
    "read_metadata",
]

SIGNATURE = b"\x89PNG\r\n\x1a\n"
GREY, RGB, GREY_ALPHA, RGBA = 0, 2, 4, 6  # PNG colour types
SAMPLES_PER_PIXEL = {GREY: 1, RGB: 3, GREY_ALPHA: 2, RGBA: 4}
HEADER_BYTES = len(SIGNATURE) + 8 + 13  # signature, IHDR length and type, IHDR body
IHDR_END = HEADER_BYTES + 4  # after IHDR's CRC: where ancillary chunks that precede IDAT go
COMPRESSION_LEVEL = 6  # zlib level (libpng's default)
METRES_PER_INCH = 0.0254
PHYS_METRE = 1  # pHYs unit specifier: pixels per metre
ICC_NAME = b"ICC profile"  # iCCP profile name (1-79 Latin-1 bytes; the name is informative only)
# PNG row filter 0..4 (None, Sub, Up, Average, Paeth) -> libpng's filter flags
LIBPNG_FILTERS = (imagecodecs.PNG.FILTER.NONE, imagecodecs.PNG.FILTER.SUB, imagecodecs.PNG.FILTER.UP,
                  imagecodecs.PNG.FILTER.AVG, imagecodecs.PNG.FILTER.PAETH)
ADAPTIVE = imagecodecs.PNG.FILTER.ALL  # libpng picks a filter per row (smallest sum of absolute residuals)


class Header(NamedTuple):
    """The fields of a PNG's IHDR chunk that matter here."""

    width: int
    height: int
    bit_depth: int
    colour_type: int
    interlaced: bool


class Metadata(NamedTuple):
    """Ancillary chunks of a PNG: resolution (dots per inch), ICC profile and raw EXIF, each None if absent."""

    dpi: float | None
    icc_profile: bytes | None
    exif: bytes | None


def read_header(data: bytes) -> Header | None:
    """The IHDR fields of a PNG from its first 29 bytes, or None if ``data`` does not start like a PNG.

    The IHDR chunk must come first, as the PNG standard requires. Its CRC is
    not checked here (:func:`decode` checks every chunk's).

    Parameters
    ----------
    data : bytes
        The file's bytes; the first 29 are read.

    Returns
    -------
    Header or None
        Width, height, bit depth, colour type and interlace method.
    """
    if len(data) < HEADER_BYTES or not data.startswith(SIGNATURE):
        return None
    length, kind = struct.unpack_from(">I4s", data, len(SIGNATURE))
    if length != 13 or kind != b"IHDR":
        return None
    width, height, depth, colour, _, _, interlace = struct.unpack_from(">IIBBBBB", data, len(SIGNATURE) + 8)
    return Header(width, height, depth, colour, bool(interlace))


# --------------------------------------------------------------------------- decoding


def decode(data: bytes) -> tuple[np.ndarray, Metadata]:
    """Decode a PNG file's bytes.

    Every chunk's length and CRC is checked before libpng inflates the image
    data to the size that the header declares: check :func:`read_header`'s
    width and height against a pixel limit first.

    Parameters
    ----------
    data : bytes
        The whole file.

    Returns
    -------
    pixels : numpy.ndarray
        ``uint8`` or ``uint16`` (the file's bit depth), shape ``(H, W, C)``.
    metadata : Metadata
        The resolution, ICC profile and ``eXIf`` body (a TIFF-structured EXIF
        block) the file carries, each None if absent.

    Raises
    ------
    ValueError
        Not a PNG, an unsupported layout, or corrupt or truncated data.
    """
    header = read_header(data)
    if header is None:
        raise ValueError("no PNG signature and header")
    if header.width == 0 or header.height == 0:
        raise ValueError(f"image of {header.width} x {header.height} pixels")
    metadata = read_metadata(data)
    try:
        with _interlace_notice_dropped(header.interlaced):
            pixels = imagecodecs.png_decode(data)
    except imagecodecs.PngError as exc:
        raise ValueError(str(exc)) from exc
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    return pixels, metadata


INTERLACE_NOTICE = "Interlace handling should be turned on"  # libpng's notice for interlaced files


def _drop_interlace_notice(record: logging.LogRecord) -> bool:
    return INTERLACE_NOTICE not in record.getMessage()


@contextmanager
def _interlace_notice_dropped(active: bool):
    """Drop libpng's interlace notice from the ``imagecodecs`` logger while the block runs.

    imagecodecs reads interlaced files through ``png_read_image`` without turning on
    interlace handling first; libpng turns it on itself and decodes correctly, but logs
    a warning the user can do nothing about. The filter is removed afterwards.
    """
    logger = logging.getLogger("imagecodecs")
    if active:
        logger.addFilter(_drop_interlace_notice)
    try:
        yield
    finally:
        logger.removeFilter(_drop_interlace_notice)


def read_metadata(data: bytes) -> Metadata:
    """The resolution, ICC profile and EXIF block of a PNG file's bytes (CRCs checked).

    Raises
    ------
    ValueError
        A chunk with a bad CRC, data ending before ``IEND``, or an undecodable ``iCCP``.
    """
    dpi = icc = exif = None
    for kind, body in _chunks(data):
        if kind == b"pHYs" and len(body) == 9:
            x, y, unit = struct.unpack(">IIB", body)
            if unit == PHYS_METRE and x == y:
                dpi = x * METRES_PER_INCH
        elif kind == b"iCCP":
            icc = _read_iccp(body)
        elif kind == b"eXIf":
            exif = body
    return Metadata(dpi, icc, exif)


def _read_iccp(body: bytes) -> bytes:
    name_end = body.find(b"\0")
    if name_end < 1 or len(body) < name_end + 2 or body[name_end + 1] != 0:
        raise ValueError("malformed iCCP chunk")
    try:
        return zlib.decompress(body[name_end + 2 :])
    except zlib.error as exc:
        raise ValueError(f"iCCP chunk: {exc}") from exc


def _chunks(data: bytes) -> Iterator[tuple[bytes, bytes]]:
    """Yield ``(type, body)`` of each chunk up to IEND, checking lengths and CRCs."""
    if not data.startswith(SIGNATURE):
        raise ValueError("no PNG signature")
    pos = len(SIGNATURE)
    while pos + 12 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, pos)
        end = pos + 12 + length
        if end > len(data):
            break
        body = data[pos + 8 : end - 4]
        if zlib.crc32(kind + body) != struct.unpack_from(">I", data, end - 4)[0]:
            raise ValueError(f"bad CRC in {kind.decode('latin-1')} chunk")
        yield kind, body
        if kind == b"IEND":
            return
        pos = end
    raise ValueError("ends before the IEND chunk")


# --------------------------------------------------------------------------- encoding


def encode(
    pixels: np.ndarray, *, dpi: float, icc_profile: bytes | None = None, filter_type: int | None = None
) -> bytes:
    """Encode ``pixels`` as a PNG file.

    Parameters
    ----------
    pixels : numpy.ndarray
        ``uint8`` or ``uint16``, shape ``(H, W, C)`` with C in 1..4.
    dpi : float
        Resolution stored in the ``pHYs`` chunk (as pixels per metre, rounded).
    icc_profile : bytes or None
        An ICC profile stored, compressed, in an ``iCCP`` chunk.
    filter_type : int or None
        0..4 (None, Sub, Up, Average, Paeth) forces that filter on every row.
        By default libpng picks a filter per row.

    Returns
    -------
    bytes
        The whole file: signature, IHDR, pHYs, iCCP (if given), IDAT chunk(s) and IEND.
    """
    pixels = np.ascontiguousarray(pixels)
    if pixels.ndim != 3 or not 1 <= pixels.shape[2] <= 4 or pixels.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"expected uint8 or uint16 pixels of shape (H, W, 1..4), got {pixels.dtype} {pixels.shape}")
    flags = ADAPTIVE if filter_type is None else LIBPNG_FILTERS[filter_type]
    data = imagecodecs.png_encode(pixels[..., 0] if pixels.shape[2] == 1 else pixels,
                                  level=COMPRESSION_LEVEL, filter=flags)
    pixels_per_metre = round(dpi / METRES_PER_INCH)
    extra = _chunk(b"pHYs", struct.pack(">IIB", pixels_per_metre, pixels_per_metre, PHYS_METRE))
    if icc_profile is not None:
        extra += _chunk(b"iCCP", ICC_NAME + b"\0\0" + zlib.compress(icc_profile, COMPRESSION_LEVEL))
    return data[:IHDR_END] + extra + data[IHDR_END:]


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
