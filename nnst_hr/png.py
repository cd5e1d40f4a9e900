"""A small PNG codec, for the 16-bit colour PNGs that Pillow cannot handle.

Pillow reads 16-bit RGB, RGBA and grey + alpha PNGs truncated to 8 bits per
sample, and writes 16-bit PNGs only in grey. :mod:`nnst_hr.io` therefore reads
and writes those files here, and leaves every other PNG to Pillow.

The codec covers non-interlaced PNGs of 8 or 16 bits per sample in grey, grey +
alpha, RGB and RGBA (colour types 0, 4, 2 and 6). Palette images, bit depths
below 8 and interlacing are not supported. Pixels are unsigned integer arrays of
shape ``(H, W, C)`` (C = 1 grey, 2 grey + alpha, 3 RGB, 4 RGBA), ``uint8`` or
``uint16`` in native byte order, rows top to bottom as stored: applying an EXIF
orientation is the caller's business, :func:`decode` only returns the ``eXIf``
chunk. Bad data raises :class:`ValueError` with a short description; callers
add the file name.

Examples
--------
>>> import numpy as np
>>> from nnst_hr import png
>>> pixels = np.arange(24, dtype=np.uint16).reshape(2, 4, 3) * 2000
>>> data = png.encode(pixels, dpi=300)
>>> png.read_header(data)
Header(width=4, height=2, bit_depth=16, colour_type=2, interlaced=False)
>>> decoded, exif = png.decode(data)
>>> bool(np.array_equal(decoded, pixels)), decoded.dtype, exif
(True, dtype('uint16'), None)
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from typing import NamedTuple

import numba
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
    "decode",
    "encode",
    "read_header",
]

SIGNATURE = b"\x89PNG\r\n\x1a\n"
GREY, RGB, GREY_ALPHA, RGBA = 0, 2, 4, 6  # PNG colour types
SAMPLES_PER_PIXEL = {GREY: 1, RGB: 3, GREY_ALPHA: 2, RGBA: 4}
BIT_DEPTHS = (8, 16)
HEADER_BYTES = len(SIGNATURE) + 8 + 13  # signature, IHDR length and type, IHDR body
COMPRESSION_LEVEL = 6
IDAT_BYTES = 1 << 23  # compressed data per IDAT chunk
METRES_PER_INCH = 0.0254
NONE, SUB, UP, AVERAGE, PAETH = range(5)  # PNG row filters
ADAPTIVE = -1  # pick a filter per row


class Header(NamedTuple):
    """The fields of a PNG's IHDR chunk that matter here."""

    width: int
    height: int
    bit_depth: int
    colour_type: int
    interlaced: bool


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


def decode(data: bytes) -> tuple[np.ndarray, bytes | None]:
    """Decode a PNG file's bytes.

    The image data is inflated to exactly the size that the header declares:
    check :func:`read_header`'s width and height against a pixel limit first.

    Parameters
    ----------
    data : bytes
        The whole file.

    Returns
    -------
    pixels : numpy.ndarray
        ``uint8`` or ``uint16`` (the file's bit depth), shape ``(H, W, C)``.
    exif : bytes or None
        The body of the ``eXIf`` chunk (a TIFF-structured EXIF block), if any.

    Raises
    ------
    ValueError
        Not a PNG, an unsupported layout, or corrupt or truncated data.
    """
    header = read_header(data)
    if header is None:
        raise ValueError("no PNG signature and header")
    width, height, depth, colour, interlaced = header
    if depth not in BIT_DEPTHS or colour not in SAMPLES_PER_PIXEL or interlaced:
        raise ValueError(f"unsupported PNG layout: bit depth {depth}, colour type {colour}, interlaced {interlaced}")
    if width == 0 or height == 0:  # also keeps the size passed to _inflate positive (0 means unlimited)
        raise ValueError(f"image of {width} x {height} pixels")
    idat, exif = [], None
    for kind, body in _chunks(data):
        if kind == b"IDAT":
            idat.append(body)
        elif kind == b"eXIf":
            exif = body
    samples = SAMPLES_PER_PIXEL[colour]
    bpp = samples * depth // 8
    stride = width * bpp
    raw = _inflate(b"".join(idat), height * (stride + 1))
    rows = _unfilter_rows(np.frombuffer(raw, np.uint8), height, stride, bpp)
    dtype = np.dtype(">u2") if depth == 16 else np.dtype(np.uint8)
    pixels = rows.view(dtype).reshape(height, width, samples)
    return pixels.astype(dtype.newbyteorder("=")), exif


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


def _inflate(compressed: bytes, size: int) -> bytes:
    """zlib-decompress exactly ``size`` (> 0) bytes; never more, so a crafted stream cannot exhaust memory."""
    try:
        raw = zlib.decompressobj().decompress(compressed, size)
    except zlib.error as exc:
        raise ValueError(str(exc)) from exc
    if len(raw) < size:
        raise ValueError(f"{len(raw)} of {size} bytes of image data")
    return raw


@numba.njit(cache=True, nogil=True)
def _unfilter_rows(data: np.ndarray, height: int, stride: int, bpp: int) -> np.ndarray:
    """Undo PNG's per-row filters: ``data`` holds ``height`` rows of 1 filter byte + ``stride`` bytes.

    Sequential by nature (Sub, Average and Paeth predict each byte from the
    decoded byte ``bpp`` to its left), hence compiled.
    """
    out = np.empty((height, stride), np.uint8)
    for y in range(height):
        start = y * (stride + 1)
        kind = data[start]
        if kind > PAETH:
            raise ValueError("invalid PNG filter type")
        for x in range(stride):
            a = np.int32(out[y, x - bpp]) if x >= bpp else np.int32(0)
            b = np.int32(out[y - 1, x]) if y > 0 else np.int32(0)
            c = np.int32(out[y - 1, x - bpp]) if y > 0 and x >= bpp else np.int32(0)
            if kind == NONE:
                predicted = np.int32(0)
            elif kind == SUB:
                predicted = a
            elif kind == UP:
                predicted = b
            elif kind == AVERAGE:
                predicted = (a + b) // 2
            else:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                predicted = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
            out[y, x] = (np.int32(data[start + 1 + x]) + predicted) & 0xFF
    return out


# --------------------------------------------------------------------------- encoding


def encode(pixels: np.ndarray, *, dpi: float, filter_type: int | None = None) -> bytes:
    """Encode ``pixels`` as a PNG file.

    Parameters
    ----------
    pixels : numpy.ndarray
        ``uint8`` or ``uint16``, shape ``(H, W, C)`` with C in 1..4.
    dpi : float
        Resolution stored in the ``pHYs`` chunk (as pixels per metre).
    filter_type : int or None
        0..4 (None, Sub, Up, Average, Paeth) forces that filter on every row.
        By default each row gets the filter that minimises the sum of its
        absolute residuals, libpng's heuristic.

    Returns
    -------
    bytes
        The whole file: signature, IHDR, pHYs, IDAT chunk(s) and IEND.
    """
    height, width, samples = pixels.shape
    depth = pixels.dtype.itemsize * 8
    colour = {count: colour for colour, count in SAMPLES_PER_PIXEL.items()}[samples]
    rows = pixels.astype(pixels.dtype.newbyteorder(">")).view(np.uint8).reshape(height, -1)
    pixels_per_metre = round(dpi / METRES_PER_INCH)
    filtered = _filter_rows(rows, samples * depth // 8, ADAPTIVE if filter_type is None else filter_type)
    compressed = zlib.compress(filtered.tobytes(), COMPRESSION_LEVEL)
    parts = [
        SIGNATURE,
        _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)),
        _chunk(b"pHYs", struct.pack(">IIB", pixels_per_metre, pixels_per_metre, 1)),
        *(_chunk(b"IDAT", compressed[i : i + IDAT_BYTES]) for i in range(0, len(compressed), IDAT_BYTES)),
        _chunk(b"IEND", b""),
    ]
    return b"".join(parts)


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


@numba.njit(cache=True, nogil=True)
def _filter_rows(rows: np.ndarray, bpp: int, filter_type: int) -> np.ndarray:
    """PNG-filter ``rows`` (uint8 ``(H, stride)``): returns ``(H, 1 + stride)``, filter byte first.

    ``filter_type`` 0..4 forces that filter on every row; ``ADAPTIVE`` picks,
    per row, the one with the smallest sum of absolute (signed byte) residuals.
    Compiled rather than vectorised: the same selection in NumPy takes about
    twice as long and needs full-size temporaries for the five candidates.
    """
    height, stride = rows.shape
    out = np.empty((height, stride + 1), np.uint8)
    residual = np.empty((5, stride), np.uint8)
    predictions = np.zeros(5, np.int32)  # indexed by filter type; NONE predicts 0
    for y in range(height):
        cost = np.zeros(5, np.int64)
        for x in range(stride):
            value = np.int32(rows[y, x])
            a = np.int32(rows[y, x - bpp]) if x >= bpp else np.int32(0)
            b = np.int32(rows[y - 1, x]) if y > 0 else np.int32(0)
            c = np.int32(rows[y - 1, x - bpp]) if y > 0 and x >= bpp else np.int32(0)
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            predictions[SUB] = a
            predictions[UP] = b
            predictions[AVERAGE] = (a + b) // 2
            predictions[PAETH] = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
            for kind in range(5):
                r = (value - predictions[kind]) & 0xFF
                residual[kind, x] = r
                cost[kind] += r if r < 128 else 256 - r
        best = filter_type if filter_type >= 0 else np.argmin(cost)
        out[y, 0] = best
        out[y, 1:] = residual[best]
    return out
