"""Image reading and writing: round trips, orientation, colour modes, errors, atomic writes."""

from __future__ import annotations

import doctest
import io
import json
import logging
import os
import struct
import subprocess
import sys
import warnings
import zlib
from pathlib import Path

import imagecodecs
import numpy as np
import pytest
import tifffile
from helpers import image_file, needs_weights
from icc_profiles import cmyk_profile, ink_to_srgb, without_tag
from PIL import Image, ImageOps, features

from nnst_hr import icc, png
from nnst_hr.errors import InputError
from nnst_hr.files import (
    DECODE_VERSION,
    atomic_output,
    atomic_write_bytes,
    check_output_path,
    decode_image,
    read_image,
    read_image_shape,
    write_image,
)

H, W = 24, 40


def structured(height=H, width=W, channels=3, seed=0) -> np.ndarray:
    """Float image in [0, 1] with gradients, edges and noise, so every PNG filter gets chosen somewhere."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    base = np.stack([x, y, (x + y) / 2, 1 - x][:channels], axis=-1)
    base[height // 3 :, width // 2 :] = 1 - base[height // 3 :, width // 2 :]
    noise_rows = rng.random(height) < 0.3
    base[noise_rows] = rng.random((noise_rows.sum(), width, channels))
    return base.astype(np.float32)


def quantised(image: np.ndarray, bits: int) -> np.ndarray:
    top = np.float32(2**bits - 1)
    return np.rint(image * top).astype(np.float32) / top


def codes(image: np.ndarray, dtype) -> np.ndarray:
    return np.rint(image * np.iinfo(dtype).max).astype(dtype)


def png_filter_types(path) -> set[int]:
    """The filter byte of every row of a non-interlaced PNG (to show which filters a file exercises)."""
    data = path.read_bytes()
    pos, idat, header = 8, b"", None
    while pos < len(data):
        length, kind = struct.unpack_from(">I4s", data, pos)
        body = data[pos + 8 : pos + 8 + length]
        header = struct.unpack(">IIBBBBB", body) if kind == b"IHDR" else header
        idat += body if kind == b"IDAT" else b""
        pos += 12 + length
    width, height, depth, colour = header[:4]
    stride = width * png.SAMPLES_PER_PIXEL[colour] * depth // 8
    raw = zlib.decompress(idat)
    return {raw[row * (stride + 1)] for row in range(height)}


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png16_file(width: int, height: int, raw: bytes, colour_type: int = png.RGB, interlaced: bool = False) -> bytes:
    """A 16-bit PNG whose inflated image data is ``raw`` (filter bytes included)."""
    header = struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, int(interlaced))
    chunks = png_chunk(b"IHDR", header) + png_chunk(b"IDAT", zlib.compress(raw)) + png_chunk(b"IEND", b"")
    return png.SIGNATURE + chunks


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("name, bits", [("a.png", 8), ("a.png", 16), ("a.tif", 8), ("a.tif", 16), ("a.tiff", None)])
def test_lossless_round_trip(tmp_path, name, bits):
    image = structured()
    path = write_image(tmp_path / name, image, bit_depth=bits)
    np.testing.assert_array_equal(read_image(path), quantised(image, bits or 16))


def test_png8_is_read_identically_by_pillow(tmp_path):
    image = structured()
    path = write_image(tmp_path / "a.png", image, dpi=150)
    with Image.open(path) as pillow:
        assert pillow.mode == "RGB" and pillow.info["dpi"] == pytest.approx((150, 150), abs=0.02)
        np.testing.assert_array_equal(np.asarray(pillow), codes(image, np.uint8))


def test_png16_is_a_valid_png_for_pillow(tmp_path):
    """Pillow decodes 16-bit colour to the high byte of each sample: an independent check of our encoder."""
    image = structured()
    path = write_image(tmp_path / "a.png", image, bit_depth=16, dpi=72)
    with Image.open(path) as pillow:
        assert pillow.size == (W, H) and pillow.info["dpi"] == pytest.approx((72, 72), abs=0.02)
        np.testing.assert_array_equal(np.asarray(pillow), codes(image, np.uint16) >> 8)


def test_tiff_is_16bit_deflate_with_dpi(tmp_path):
    image = structured()
    path = write_image(tmp_path / "a.tif", image, dpi=600)
    with tifffile.TiffFile(path) as tif:
        page = tif.pages.first
        assert page.dtype == np.uint16 and page.photometric == tifffile.PHOTOMETRIC.RGB
        assert page.compression == tifffile.COMPRESSION.ADOBE_DEFLATE
        assert page.resolution == (600, 600) and page.resolutionunit == tifffile.RESUNIT.INCH
        np.testing.assert_array_equal(page.asarray(), codes(image, np.uint16))


def test_jpeg_quality_option(tmp_path):
    image = structured(64, 64)
    image[:] = np.clip(image, 0.1, 0.9)
    errors, sizes = {}, {}
    for quality in (30, 95):
        path = write_image(tmp_path / f"q{quality}.jpg", image, jpeg_quality=quality, dpi=200)
        errors[quality] = np.sqrt(np.mean((read_image(path) - image) ** 2))
        sizes[quality] = path.stat().st_size
        with Image.open(path) as pillow:
            assert pillow.format == "JPEG" and pillow.info["dpi"] == (200, 200)
    assert sizes[30] < sizes[95] and errors[95] < errors[30]
    assert errors[95] < 0.03


def test_a_jpeg_of_noise_is_written(tmp_path):
    """Pillow's optimizing JPEG encoder overflows its buffer on noise ("broken data stream"): the
    image is written with standard Huffman tables instead, and decodes to the same quality."""
    noise = np.random.default_rng(0).random((300, 400, 3)).astype(np.float32)
    with pytest.raises(OSError, match="broken data stream"):  # the failure this guards against
        Image.fromarray(codes(noise, np.uint8)).save(io.BytesIO(), format="JPEG", quality=90, subsampling=0,
                                                     optimize=True)
    path = write_image(tmp_path / "noise.jpg", noise, jpeg_quality=90, dpi=150)
    with Image.open(path) as pillow:
        assert pillow.format == "JPEG" and pillow.info["dpi"] == (150, 150) and pillow.info["icc_profile"]
    assert np.sqrt(np.mean((read_image(path) - noise) ** 2)) < 0.1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["noise.jpg"]  # no temporary file left


def test_webp_is_read(tmp_path):
    image = structured()
    path = tmp_path / "a.webp"
    Image.fromarray(codes(image, np.uint8)).save(path, lossless=True)
    np.testing.assert_array_equal(read_image(path), quantised(image, 8))


def test_format_comes_from_content_not_name(tmp_path):
    image = structured()
    path = tmp_path / "actually_a_png.jpg"
    Image.fromarray(codes(image, np.uint8)).save(path, format="PNG")
    np.testing.assert_array_equal(read_image(path), quantised(image, 8))


# --------------------------------------------------------------------------- the PNG codec


@pytest.mark.parametrize("filter_type", range(5))
def test_png_encoder_filters_are_decoded_by_pillow(tmp_path, filter_type):
    pixels = codes(structured(channels=4), np.uint8)
    path = tmp_path / "f.png"
    path.write_bytes(png.encode(pixels, dpi=300, filter_type=filter_type))
    assert png_filter_types(path) == {filter_type}
    with Image.open(path) as pillow:
        np.testing.assert_array_equal(np.asarray(pillow), pixels)
    decoded, metadata = png.decode(path.read_bytes())
    np.testing.assert_array_equal(decoded, pixels)
    assert metadata.exif is None


@pytest.mark.parametrize("mode, dtype", [("I;16", np.uint16), ("L", np.uint8), ("RGB", np.uint8), ("RGBA", np.uint8)])
def test_png_decoder_matches_pillow_on_pillow_files(tmp_path, mode, dtype):
    """Pillow's encoder picks filters adaptively: the decoder must undo all five, at 8 and 16 bits."""
    channels = {"I;16": 1, "L": 1, "RGB": 3, "RGBA": 4}[mode]
    pixels = codes(structured(48, 64, channels=channels), dtype)
    path = tmp_path / "p.png"
    Image.fromarray(pixels[..., 0] if channels == 1 else pixels).save(path)
    assert len(png_filter_types(path)) >= 3
    with Image.open(path) as pillow:
        reference = np.asarray(pillow)
    decoded, _ = png.decode(path.read_bytes())
    assert decoded.dtype == dtype
    np.testing.assert_array_equal(decoded.reshape(reference.shape), reference)


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_png_round_trip_every_layout(channels, dtype):
    pixels = codes(structured(channels=channels), dtype)
    data = png.encode(pixels, dpi=300)
    colour = {1: png.GREY, 2: png.GREY_ALPHA, 3: png.RGB, 4: png.RGBA}[channels]
    assert png.read_header(data) == png.Header(W, H, np.dtype(dtype).itemsize * 8, colour, False)
    decoded, metadata = png.decode(data)
    assert decoded.dtype == dtype and metadata.exif is None and metadata.dpi == pytest.approx(300, abs=0.01)
    np.testing.assert_array_equal(decoded, pixels)


def test_png_module_example():
    assert doctest.testmod(png, raise_on_error=True).attempted > 0


def test_png16_rgba_and_grey_alpha_are_read_at_full_precision(tmp_path):
    for channels in (2, 4):
        pixels = codes(structured(channels=channels), np.uint16)
        pixels[..., -1] = 65535
        path = tmp_path / f"{channels}.png"
        path.write_bytes(png.encode(pixels, dpi=300))
        expected = pixels[..., :-1].astype(np.float32) / np.float32(65535)
        np.testing.assert_array_equal(read_image(path), np.broadcast_to(expected, (H, W, 3)))


ADAM7 = (  # x0, y0, dx, dy of each pass
    (0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2),
)


def adam7_png16(pixels: np.ndarray) -> bytes:
    """An Adam7-interlaced 16-bit PNG of ``pixels`` (H, W, C): the seven passes, filter 0 (reference encoder)."""
    raw = b"".join(b"\0" + row.astype(">u2").tobytes()
                   for x0, y0, dx, dy in ADAM7 for row in pixels[y0::dy, x0::dx] if row.size)
    colour_type = {2: png.GREY_ALPHA, 3: png.RGB, 4: png.RGBA}[pixels.shape[2]]
    return png16_file(pixels.shape[1], pixels.shape[0], raw, colour_type, interlaced=True)


@pytest.mark.parametrize("channels", [2, 3, 4])
def test_interlaced_png16_is_read_at_full_precision_without_libpng_noise(tmp_path, caplog, channels):
    pixels = np.random.default_rng(channels).integers(0, 65536, (H, W, channels), dtype=np.uint16)
    if channels != 3:
        pixels[..., -1] = 65535  # opaque alpha
    path = tmp_path / "interlaced.png"
    path.write_bytes(adam7_png16(pixels))
    assert png.read_header(path.read_bytes()).interlaced
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        image = read_image(path)
    colour = pixels[..., :1 if channels == 2 else 3].astype(np.float32) / np.float32(65535)
    np.testing.assert_array_equal(image, np.broadcast_to(colour, (H, W, 3)))
    assert not caplog.records  # libpng's interlace notice is dropped ...
    logging.getLogger("imagecodecs").warning("PNG warning: later")
    assert [r.getMessage() for r in caplog.records] == ["PNG warning: later"]  # ... and the logger left as it was


# --------------------------------------------------------------------------- orientation


def oriented_file(tmp_path, fmt, orientation, stored) -> os.PathLike:
    path = tmp_path / f"o{orientation}.{fmt}"
    pixels = codes(stored, np.uint8)
    if fmt == "tif":
        tifffile.imwrite(path, pixels, photometric="rgb", extratags=[(274, "H", 1, orientation, True)])
        return path
    exif = Image.Exif()
    exif[274] = orientation
    options = {"jpg": {"quality": 95}, "png": {}, "webp": {"lossless": True}}[fmt]
    Image.fromarray(pixels).save(path, exif=exif.tobytes(), **options)
    return path


@pytest.mark.parametrize("fmt", ["jpg", "png", "webp", "tif"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_matches_pillow(tmp_path, fmt, orientation):
    path = oriented_file(tmp_path, fmt, orientation, structured())
    with Image.open(path) as pillow:
        reference = np.asarray(ImageOps.exif_transpose(pillow).convert("RGB")).astype(np.float32) / 255
    result = read_image(path)
    assert result.shape == reference.shape == ((H, W, 3) if orientation < 5 else (W, H, 3))
    np.testing.assert_array_equal(result, reference)


def test_orientation_6_means_rotate_clockwise(tmp_path):
    stored = structured()
    result = read_image(oriented_file(tmp_path, "png", 6, stored))
    np.testing.assert_array_equal(result[0, -1], quantised(stored, 8)[0, 0])  # top-left goes to top-right
    np.testing.assert_array_equal(result, np.rot90(quantised(stored, 8), -1))


@pytest.mark.parametrize("orientation", [1, 3, 6, 7])
def test_png16_exif_orientation_matches_pillow(tmp_path, orientation):
    """A 16-bit colour PNG goes through nnst_hr.png; its eXIf chunk must be honoured like Pillow's."""
    exif = Image.Exif()
    exif[274] = orientation
    data = png.encode(codes(structured(), np.uint8).astype(np.uint16) * 257, dpi=300)  # c * 257 / 65535 == c / 255
    ihdr_end = png.HEADER_BYTES + 4
    path = tmp_path / "o16.png"
    path.write_bytes(data[:ihdr_end] + png_chunk(b"eXIf", exif.tobytes()[len(b"Exif\0\0") :]) + data[ihdr_end:])
    with Image.open(oriented_file(tmp_path, "png", orientation, structured())) as pillow:  # the same at 8 bits
        reference = np.asarray(ImageOps.exif_transpose(pillow)).astype(np.float32) / 255
    np.testing.assert_array_equal(read_image(path), reference)


# --------------------------------------------------------------------------- colour modes


def test_alpha_is_composited_on_white_with_a_warning(tmp_path):
    rgba = structured(channels=4)
    rgba[..., 3] = np.linspace(0, 1, W)[None, :]
    path = tmp_path / "a.png"
    Image.fromarray(codes(rgba, np.uint8)).save(path)
    q = quantised(rgba, 8)
    with pytest.warns(UserWarning, match="composited on white"):
        result = read_image(path)
    expected = q[..., :3] * q[..., 3:] + (1 - q[..., 3:])
    np.testing.assert_allclose(result, expected, atol=1e-6)
    assert np.all(result[:, 0] == 1)  # fully transparent column is white


def test_opaque_alpha_is_dropped_silently(tmp_path):
    rgba = structured(channels=4)
    rgba[..., 3] = 1
    path = tmp_path / "a.png"
    Image.fromarray(codes(rgba, np.uint8)).save(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = read_image(path)
    np.testing.assert_array_equal(result, quantised(rgba[..., :3], 8))


def test_associated_alpha_tiff_is_unpremultiplied(tmp_path):
    colour, alpha = structured(), np.full((H, W, 1), 0.5, np.float32)
    premultiplied = np.concatenate([colour * alpha, alpha], axis=-1)
    path = tmp_path / "a.tif"
    tifffile.imwrite(path, codes(premultiplied, np.uint16), photometric="rgb", extrasamples=[1])
    q = quantised(premultiplied, 16)
    with pytest.warns(UserWarning, match="composited"):
        result = read_image(path)
    np.testing.assert_allclose(result, q[..., :3] + (1 - q[..., 3:]), atol=1e-6)


@pytest.mark.parametrize("fmt, bits", [("png", 8), ("png", 16), ("jpg", 8), ("tif", 16), ("tif-miniswhite", 8)])
def test_grey_becomes_rgb(tmp_path, fmt, bits):
    grey = structured(channels=1)[..., 0]
    dtype = np.uint16 if bits == 16 else np.uint8
    path = tmp_path / f"g.{fmt.split('-')[0]}"
    if fmt == "tif":
        tifffile.imwrite(path, codes(grey, dtype), photometric="minisblack")
    elif fmt == "tif-miniswhite":
        tifffile.imwrite(path, codes(1 - grey, dtype), photometric="miniswhite")
    else:
        Image.fromarray(codes(grey, dtype)).save(path)
    result = read_image(path)
    assert result.shape == (H, W, 3)
    np.testing.assert_array_equal(result[..., 0], result[..., 2])
    if fmt == "jpg":  # lossy: the reference is Pillow's decoding of the same file
        with Image.open(path) as pillow:
            expected = np.asarray(pillow).astype(np.float32) / 255
    elif fmt == "tif-miniswhite":
        expected = 1 - quantised(1 - grey, bits)
    else:
        expected = quantised(grey, bits)
    np.testing.assert_allclose(result[..., 1], expected, atol=1e-6)


@pytest.mark.parametrize("fmt, dtype", [("jpg", np.uint8), ("tif", np.uint8), ("tif", np.uint16)])
def test_cmyk_without_a_profile_is_converted_naively_with_a_warning(tmp_path, fmt, dtype):
    """No CMYK profile ships with LittleCMS or this program: (1 - C)(1 - K) ..., as viewers do, and a warning."""
    path = cmyk_file(tmp_path, fmt, inks(), None, dtype)
    with pytest.warns(UserWarning, match=f"{path} is CMYK without a colour profile; converted to RGB without"):
        result = read_image(path)
    ink = stored_ink(path, dtype)
    expected = (1 - ink[..., :3]) * (1 - ink[..., 3:])
    np.testing.assert_allclose(result, expected, atol=1e-6)
    np.testing.assert_allclose(result[0, 8], [0, 1, 1], atol=1e-6)  # the cyan solid
    with Image.open(path) as pillow:  # Pillow's conversion, 8 bits: the same within rounding (16 bits: truncation)
        rounding = (0.5 if dtype == np.uint8 else 1.5) / 255
        np.testing.assert_allclose(result, np.asarray(pillow.convert("RGB")) / 255, atol=rounding + 1e-6)


def test_palette_with_transparency(tmp_path):
    palette_image = Image.fromarray(codes(structured(), np.uint8)).quantize(16)
    palette_image.info["transparency"] = 0
    path = tmp_path / "p.png"
    palette_image.save(path, transparency=0)
    with Image.open(path) as pillow:
        indices = np.asarray(pillow)
        rgb = np.asarray(pillow.convert("RGB")).astype(np.float32) / 255
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = read_image(path)
    np.testing.assert_array_equal(result[indices == 0], 1)
    np.testing.assert_array_equal(result[indices != 0], rgb[indices != 0])


def test_lzw_tiff_falls_back_to_pillow(tmp_path):
    image = structured()
    path = tmp_path / "lzw.tif"
    Image.fromarray(codes(image, np.uint8)).save(path, compression="tiff_lzw")
    np.testing.assert_array_equal(read_image(path), quantised(image, 8))


def test_float_tiff_is_clipped_and_multipage_warns(tmp_path):
    image = structured() * 1.5 - 0.25
    path = tmp_path / "f.tif"
    with tifffile.TiffWriter(path) as tif:
        tif.write(image, photometric="rgb")
        tif.write(np.zeros_like(image), photometric="rgb")
    with pytest.warns(UserWarning, match="2 pages"):
        result = read_image(path)
    np.testing.assert_array_equal(result, np.clip(image, 0, 1))


# --------------------------------------------------------------------------- reading errors


def save_with_pillow(path, fmt="PNG"):
    Image.fromarray(codes(structured(), np.uint8)).save(path, format=fmt)


def write_png16(path):
    write_image(path, structured(), bit_depth=16)


def write_tiff(path):
    write_image(path.with_suffix(".tif"), structured()).rename(path)


def truncated(write):
    def make(path):
        write(path)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])

    return make


def bad_crc_png16(path):
    write_png16(path)
    data = bytearray(path.read_bytes())
    data[60] ^= 0xFF  # inside the IDAT chunk
    path.write_bytes(bytes(data))


def patched_tiff(path, tag: int, *, value: int | None = None, count: int | None = None) -> None:
    """A 24 x 40 RGB TIFF whose IFD entry ``tag`` has its value or count replaced (a corrupt header)."""
    tifffile.imwrite(path, codes(structured(), np.uint8), photometric="rgb")
    data = bytearray(path.read_bytes())
    ifd = struct.unpack_from("<I", data, 4)[0]
    for entry in range(ifd + 2, ifd + 2 + 12 * struct.unpack_from("<H", data, ifd)[0], 12):
        code, kind = struct.unpack_from("<HH", data, entry)
        if code == tag and count is not None:
            struct.pack_into("<I", data, entry + 4, count)
        if code == tag and value is not None:
            struct.pack_into("<H" if kind == 3 else "<I", data, entry + 8, value)
    path.write_bytes(bytes(data))


def avif_without_an_image(path):
    """An AVIF whose item list is emptied: Pillow's AVIF plugin raises a RuntimeError, not an OSError."""
    buffer = io.BytesIO()
    Image.fromarray(codes(structured(), np.uint8)).save(buffer, format="AVIF")
    data = bytearray(buffer.getvalue())
    count = data.index(b"iinf") + 8  # after the box type and the version and flags: a 16-bit entry count
    data[count : count + 2] = b"\x00\x00"
    path.write_bytes(bytes(data))


def png8_bomb(path):
    """An 8-bit PNG whose header claims 100000 x 100000 pixels: Pillow refuses it when it opens it."""
    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, png.RGB, 0, 0, 0)
    path.write_bytes(png.SIGNATURE + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", zlib.compress(b""))
                     + png_chunk(b"IEND", b""))


BAD_INPUTS = {  # case: (how to make the file, expected message)
    "missing": (lambda path: None, "no such file"),
    "folder": (lambda path: path.mkdir(), "is a folder"),
    "empty": (lambda path: path.write_bytes(b""), "is empty"),
    "text named .png": (lambda path: path.write_text("hello, not an image\n"), "not an image"),
    "truncated png": (truncated(save_with_pillow), "truncated or corrupt"),
    "truncated png16": (truncated(write_png16), "truncated or corrupt"),
    "bad crc png16": (bad_crc_png16, "truncated or corrupt"),
    "truncated jpeg": (truncated(lambda path: save_with_pillow(path, "JPEG")), "truncated or corrupt"),
    "truncated tiff": (truncated(write_tiff), "truncated or corrupt"),
    "gif": (lambda path: save_with_pillow(path, "GIF"), "GIF image"),
    "png16 of zero height": (lambda path: path.write_bytes(png16_file(4, 0, b"")), "0 pixels"),
    "png16 bad filter byte": (lambda path: path.write_bytes(png16_file(1, 1, b"\x07" + bytes(6))), "filter"),
    "png8 bomb": (png8_bomb, "too many pixels"),
    "icclab tiff": (lambda path: tifffile.imwrite(path, codes(structured(), np.uint8), photometric="icclab"),
                    r"is a TIFF whose colour space or layout \(ICCLAB, 3 x 8-bit samples\) cannot be read; convert"),
    "tiff of photometric 99": (lambda path: patched_tiff(path, 262, value=99), r"\(99, 3 x 8-bit samples\)"),
    "float tiff of 0..255 values": (lambda path: tifffile.imwrite(path, structured() * 255, photometric="rgb"),
                                    r"float samples from 0 to 254\.873, not in \[0, 1\]; .*divided by 255"),
    # tifffile decoded these to an empty array (a failure far from the file) or raised a TypeError
    "tiff of zero width": (lambda path: patched_tiff(path, 256, value=0), f"0 x {H} pixels"),
    "tiff with two heights": (lambda path: patched_tiff(path, 257, count=2), "truncated or corrupt"),
    "tiff with two widths": (lambda path: patched_tiff(path, 256, count=2), "no valid size"),
    "tiff with two bit depths for three samples": (lambda path: patched_tiff(path, 258, count=2), "no pixel data"),
}
if features.check("avif"):
    BAD_INPUTS["avif"] = (lambda path: save_with_pillow(path, "AVIF"), "is an AVIF image; supported formats")
    BAD_INPUTS["avif without an image"] = (avif_without_an_image, "truncated or corrupt")


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_gives_one_line_error_naming_the_file(tmp_path, case):
    make, message = BAD_INPUTS[case]
    path = tmp_path / "input.png"
    make(path)
    with pytest.raises(InputError, match=message) as error:
        read_image(path)
    assert str(path) in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_the_shape_of_a_bad_input_is_one_line_error_or_a_shape_of_pixels(tmp_path, case):
    make, _ = BAD_INPUTS[case]
    path = tmp_path / "input.png"
    make(path)
    try:
        shape = read_image_shape(path)
    except InputError as error:
        assert str(path) in str(error) and "\n" not in str(error)
    else:  # a fault that shows only in the pixels
        assert len(shape) == 2 and min(shape) >= 1


def test_a_decoders_log_lines_about_a_bad_file_stay_off_stderr(tmp_path, caplog):
    """tifffile logs what it finds wrong; with logging not configured Python printed it above our line."""
    path = tmp_path / "a.tif"
    patched_tiff(path, 257, value=60_000)  # strips too few for the height: tifffile logs warnings
    with caplog.at_level(logging.WARNING, logger="tifffile"), pytest.raises(InputError):
        read_image(path)
    assert any(record.name == "tifffile" for record in caplog.records)  # a program that configures logging sees them
    # the command prints its one line alone; the library leaves the decoders' loggers as it found them
    script = ("import logging, sys; import nnst_hr.files\n"
              "assert not logging.getLogger('tifffile').handlers\n"
              "from nnst_hr.cli import app; app(['run', sys.argv[1], sys.argv[1], '-o', sys.argv[2]])")
    done = subprocess.run([sys.executable, "-c", script, str(path), str(tmp_path / "out.png")], capture_output=True,
                          text=True, timeout=120, cwd=Path(__file__).parent.parent)
    assert done.returncode == 2 and "truncated or corrupt" in done.stderr, done.stderr
    assert len(done.stderr.splitlines()) == 1, done.stderr


def test_a_link_loop_or_a_name_too_long_is_an_input_error(tmp_path):
    """Path.exists() raised the OSError of a name over 255 bytes; a link loop was "no such file"."""
    loop, long = tmp_path / "loop.png", tmp_path / ("x" * 300 + ".png")
    loop.symlink_to(loop)
    for path, reason, fix in ((loop, "symbolic links", "fix or remove the symbolic link"),
                              (long, "too long", "give a shorter path")):
        with pytest.raises(InputError, match=reason) as error:
            read_image(path)
        assert str(error.value).startswith(f"{path}: ") and str(error.value).endswith(f"; {fix}")


def test_an_output_name_near_the_file_system_limit_is_written(tmp_path):
    """The temporary's name (the output's, with ``.<8 hex>.tmp<suffix>`` around it) was too long."""
    path = tmp_path / ("x" * 251 + ".tif")  # 255 bytes, the most ext4, XFS or APFS allow
    write_image(path, structured())
    atomic_write_bytes(path.with_name("y" * 251 + ".png"), b"data", overwrite=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name, "y" * 251 + ".png"]
    np.testing.assert_array_equal(read_image(path), quantised(structured(), 16))


def test_pillows_own_warnings_name_the_file_once(tmp_path):
    """Pillow's "Corrupt EXIF data..." named no file: the CLI said only `warning: Corrupt EXIF data...`."""
    path = tmp_path / "photo.jpg"
    Image.fromarray(codes(structured(), np.uint8)).save(path, exif=b"Exif\x00\x00MM\x00*\x00\x00\xff\xff\xff\xff")
    with pytest.warns(UserWarning) as caught:
        image = read_image(path)
    assert [str(w.message) for w in caught] == [
        f"{path}: Corrupt EXIF data. Expecting to read 2 bytes but only got 0. (Pillow's warning; the image is "
        "read anyway)"]
    assert caught[0].filename == __file__  # it points at the caller, as read_image's own warnings do
    plain = tmp_path / "plain.jpg"
    Image.fromarray(codes(structured(), np.uint8)).save(plain)
    np.testing.assert_array_equal(image, read_image(plain))


@pytest.mark.parametrize("name", ["a.png", "a16.png", "a.tif", "a.jpg", "a.webp"])
def test_too_many_pixels_is_refused(tmp_path, name):
    path = tmp_path / name
    if name == "a16.png":
        write_png16(path)
    elif name == "a.tif":
        write_image(path, structured())
    else:
        Image.fromarray(codes(structured(), np.uint8)).save(path)
    with pytest.raises(InputError, match="pixels") as error:
        read_image(path, max_pixels=H * W - 1)
    assert str(path) in str(error.value)
    assert read_image(path, max_pixels=H * W).shape == (H, W, 3)


# --------------------------------------------------------------------------- decoding bytes

SHOWN = "photos/holiday.png"  # the name decode_image is given: what its messages must say


def lzw_tiff(path):
    Image.fromarray(codes(structured(), np.uint8)).save(path, format="TIFF", compression="tiff_lzw")


def float_tiff(path):
    tifffile.imwrite(path, structured() * 1.5 - 0.2, photometric="rgb")


DECODED = {  # how to make the file: each route of the decoder
    "png8": save_with_pillow,
    "png16": write_png16,
    "tiff16": write_tiff,
    "tiff lzw (Pillow)": lzw_tiff,
    "tiff float": float_tiff,
    "jpeg oriented": lambda path: oriented_file(path.parent, "jpg", 6, structured()).rename(path),
    "webp oriented": lambda path: oriented_file(path.parent, "webp", 8, structured()).rename(path),
    "grey png": lambda path: Image.fromarray(codes(structured()[..., 0], np.uint8)).save(path, format="PNG"),
}


@pytest.mark.parametrize("case", list(DECODED))
def test_decoding_the_bytes_equals_reading_the_file(tmp_path, case):
    path = tmp_path / "input.png"
    DECODED[case](path)
    expected = read_image(path)
    np.testing.assert_array_equal(decode_image(path.read_bytes(), SHOWN), expected)
    assert expected.dtype == np.float32 and expected.shape[-1] == 3


@pytest.mark.parametrize("case", [case for case in BAD_INPUTS if case not in ("missing", "folder")])
def test_decoding_bad_bytes_gives_the_file_error_naming_the_given_name(tmp_path, case):
    make, message = BAD_INPUTS[case]
    path = tmp_path / "input.png"
    make(path)
    with pytest.raises(InputError, match=message) as from_bytes:
        decode_image(path.read_bytes(), SHOWN)
    with pytest.raises(InputError) as from_file:
        read_image(path)
    assert str(from_bytes.value) == str(from_file.value).replace(str(path), SHOWN)
    assert SHOWN in str(from_bytes.value) and str(tmp_path) not in str(from_bytes.value)


def test_decoding_warns_and_refuses_naming_the_given_name(tmp_path):
    rgba = structured(channels=4)
    rgba[..., 3] = 0.5
    path = tmp_path / "a.png"
    Image.fromarray(codes(rgba, np.uint8)).save(path)
    with pytest.warns(UserWarning, match=f"^{SHOWN} has transparent pixels") as caught:
        decode_image(path.read_bytes(), SHOWN)
    assert caught[0].filename == __file__  # the warning points at the caller, as read_image's does
    with pytest.raises(InputError, match=f"^{SHOWN} has {W} x {H} = {W * H:,} pixels"):
        decode_image(path.read_bytes(), SHOWN, max_pixels=H * W - 1)


# --------------------------------------------------------------------------- writing errors


@pytest.mark.parametrize(
    "name, options, message",
    [
        ("a.webp", {}, "cannot write '.webp'"),
        ("a.jpg", {"bit_depth": 16}, "8 bits"),
        ("a.png", {"bit_depth": 12}, "8 or 16 bits"),
        ("a.jpg", {"jpeg_quality": 0}, "quality"),
        ("a.tif", {"dpi": 0}, "dpi"),
        ("missing/a.png", {}, "does not exist"),
    ],
)
def test_bad_output_settings_are_refused(tmp_path, name, options, message):
    with pytest.raises(InputError, match=message):
        write_image(tmp_path / name, structured(), **options)
    assert list(tmp_path.iterdir()) == []


def test_check_output_path_refuses_early(tmp_path):
    existing = tmp_path / "out.png"
    existing.write_bytes(b"old")
    with pytest.raises(InputError, match="--overwrite"):
        check_output_path(existing, overwrite=False)
    assert check_output_path(existing, overwrite=True) == existing
    (tmp_path / "dir.png").mkdir()
    with pytest.raises(InputError, match="is a folder"):
        check_output_path(tmp_path / "dir.png", overwrite=True)
    with pytest.raises(InputError, match="8 bits"):
        check_output_path(tmp_path / "new.jpg", overwrite=False, bit_depth=16)
    with pytest.raises(InputError, match="cannot write"):
        check_output_path(tmp_path / "new.bmp", overwrite=False)


def test_existing_output_is_refused_without_overwrite(tmp_path):
    """From Python the fix is overwrite=True: the message said only "--overwrite", the command line's option."""
    path = tmp_path / "out.png"
    path.write_bytes(b"precious")
    for attempt in (lambda: write_image(path, structured()), lambda: atomic_write_bytes(path, b"", overwrite=False),
                    lambda: check_output_path(path, overwrite=False)):
        with pytest.raises(InputError, match=r"pass --overwrite \(overwrite=True in Python\)"):
            attempt()
    assert path.read_bytes() == b"precious"
    write_image(path, structured(), overwrite=True)
    np.testing.assert_array_equal(read_image(path), quantised(structured(), 8))


@pytest.mark.parametrize(("image", "message"), [
    (np.zeros((H, W, 2), np.float32), r"shape \(24, 40, 2\): give float \(H, W, 3\)"),
    (np.zeros((3, H, W), np.float32), r"channels first: .*np\.moveaxis\(image, 0, 2\)"),
    (np.zeros((H, W), np.float32), r"one grey channel: .*np\.repeat"),
    (np.zeros((H, W, 3), np.uint8), r"of type uint8: .*image\.astype\(np\.float32\) / 255$"),
    (np.zeros((H, W, 3), np.uint16), r"of type uint16: .*image\.astype\(np\.float32\) / 65535$"),
    (np.full((H, W, 3), 200, np.int64), r"of type int64: .*image\.astype\(np\.float32\) / 255$"),
    (np.full((2, 2, 3), np.nan, np.float32), "NaN or infinite values"),
    (np.full((2, 2, 3), 255.0, np.float32), "values from 255 to 255: .*divide by 255"),
])
def test_arrays_that_are_no_float_rgb_are_one_input_error_naming_the_conversion(tmp_path, image, message):
    """A uint8 image was a bare ValueError ("expected a float image") with no conversion; nothing is written."""
    with pytest.raises(InputError, match=message):
        write_image(tmp_path / "a.png", image)
    assert list(tmp_path.iterdir()) == []


def test_bad_arrays_and_the_caller_array_is_not_modified(tmp_path):
    image = structured() * 2 - 0.5
    original = image.copy()
    write_image(tmp_path / "a.png", image)
    np.testing.assert_array_equal(image, original)
    np.testing.assert_array_equal(read_image(tmp_path / "a.png"), quantised(np.clip(original, 0, 1), 8))


# --------------------------------------------------------------------------- atomic writes


def failing_after_partial_write(path, *args, **kwargs):
    with open(path, "wb") as file:
        file.write(b"half an image")
    raise OSError("disk full")


def failing_encoder(*args, **kwargs):
    raise MemoryError("no memory left")


@pytest.mark.parametrize("name, error", [("out.tif", "disk full"), ("out.png", "no memory left")])
def test_failing_write_leaves_existing_output_intact(tmp_path, monkeypatch, name, error):
    path = tmp_path / name
    write_image(path, structured(seed=1), bit_depth=16)
    before = path.read_bytes()
    monkeypatch.setattr(tifffile, "imwrite", failing_after_partial_write)
    monkeypatch.setattr(png, "encode", failing_encoder)
    with pytest.raises((OSError, MemoryError), match=error):
        write_image(path, structured(seed=2), bit_depth=16, overwrite=True)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [name]


def test_interrupted_block_leaves_nothing_behind(tmp_path):
    path = tmp_path / "config.json"
    path.write_text("old")
    with pytest.raises(KeyboardInterrupt):
        with atomic_output(path, overwrite=True) as tmp:
            assert tmp.parent == tmp_path and tmp.exists()
            tmp.write_text("partial")
            raise KeyboardInterrupt
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["config.json"]


def test_atomic_output_keeps_the_suffix_for_writers_that_append_one(tmp_path):
    path = tmp_path / "nnf.npz"
    with atomic_output(path, overwrite=False) as tmp:
        assert tmp.suffix == ".npz"
        np.savez(tmp, nnf=np.arange(6).reshape(2, 3))
    with np.load(path) as data:
        np.testing.assert_array_equal(data["nnf"], np.arange(6).reshape(2, 3))
    assert [p.name for p in tmp_path.iterdir()] == ["nnf.npz"]


def test_file_appearing_during_write_is_not_clobbered(tmp_path):
    path = tmp_path / "out.json"
    with pytest.raises(InputError, match="already exists"):
        with atomic_output(path, overwrite=False) as tmp:
            tmp.write_text("new")
            path.write_text("someone else's")
    assert path.read_text() == "someone else's"
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_atomic_write_bytes_permissions_follow_umask(tmp_path):
    umask = os.umask(0o022)
    try:
        path = atomic_write_bytes(tmp_path / "timings.json", b"{}", overwrite=False)
    finally:
        os.umask(umask)
    assert path.read_bytes() == b"{}"
    assert path.stat().st_mode & 0o777 == 0o644
    with pytest.raises(InputError, match="--overwrite"):
        atomic_write_bytes(path, b"[]", overwrite=False)
    assert atomic_write_bytes(path, b"[]", overwrite=True).read_bytes() == b"[]"


def test_reading_never_writes(tmp_path):
    path = write_image(tmp_path / "in.png", structured(), bit_depth=16)
    before = (path.read_bytes(), path.stat().st_mtime_ns, sorted(tmp_path.iterdir()))
    read_image(path)
    assert before == (path.read_bytes(), path.stat().st_mtime_ns, sorted(tmp_path.iterdir()))


def test_png16_bomb_is_refused_from_its_header(tmp_path):
    """A tiny 16-bit PNG declaring 10^10 pixels is refused before anything is inflated."""
    path = tmp_path / "bomb.png"
    path.write_bytes(png16_file(100_000, 100_000, bytes(1000)))
    with pytest.raises(InputError, match="pixels"):
        read_image(path)


# --------------------------------------------------------------------------- embedded colour profiles


ADOBE = imagecodecs.cms_profile("adobergb")


def tagged_file(tmp_path, fmt: str, pixels: np.ndarray, profile: bytes | None) -> Path:
    """``pixels`` (integer codes) in a file of format ``fmt`` with ``profile`` embedded (or none)."""
    path = tmp_path / f"{'tagged' if profile else 'plain'}.{fmt}"
    if fmt == "tif":
        tifffile.imwrite(path, pixels, photometric="rgb" if pixels.ndim == 3 else "minisblack",
                         iccprofile=profile)
    elif fmt == "png16":
        path = path.with_suffix(".png")
        path.write_bytes(png.encode(pixels, dpi=72, icc_profile=profile))
    else:
        options = {"jpg": {"quality": 100, "subsampling": 0}, "png": {}, "webp": {"lossless": True}}[fmt]
        Image.fromarray(pixels).save(path, **options, **({"icc_profile": profile} if profile else {}))
    return path


@pytest.mark.parametrize("fmt, dtype", [("jpg", np.uint8), ("png", np.uint8), ("webp", np.uint8),
                                        ("png16", np.uint16), ("tif", np.uint16), ("tif", np.uint8)])
def test_an_embedded_profile_is_converted_to_srgb_in_every_format(tmp_path, fmt, dtype, caplog):
    pixels = codes(structured(), dtype)
    plain = read_image(tagged_file(tmp_path, fmt, pixels, None))
    with caplog.at_level(logging.INFO, logger="nnst_hr.files"):
        tagged = read_image(tagged_file(tmp_path, fmt, pixels, ADOBE))
    np.testing.assert_allclose(tagged, icc.to_srgb(plain, ADOBE), atol=1e-6)
    assert np.abs(tagged - plain).max() > 0.05  # the profile made a difference
    assert "colours converted from Adobe RGB (compatible) to sRGB" in caplog.text


def _sample_profile() -> bytes:
    """The ``sRGB IEC61966-2.1`` profile of samples/content/astronaut.png (scikit-image's), as many PNGs carry it:
    sRGB whose colorants were rounded otherwise than LittleCMS's (its green moves by 0.45/255)."""
    with Image.open(Path(__file__).parent.parent / "samples" / "content" / "astronaut.png") as image:
        return image.info["icc_profile"]


@pytest.mark.parametrize("profile, said", [
    (_sample_profile, False),
    (lambda: ADOBE, True),  # negative controls: real conversions are still told
    (lambda: imagecodecs.cms_profile("rgb", whitepoint=[0.3127, 0.329, 1],
                                                     primaries=[0.68, 0.32, 0.265, 0.69, 0.15, 0.06], gamma=2.2),
     True),
])
def test_an_srgb_variant_profile_is_converted_without_a_line(tmp_path, caplog, profile, said):
    """Reading astronaut.png said "colours converted from sRGB IEC61966-2.1 to sRGB"."""
    pixels = codes(structured(), np.uint8)
    plain = read_image(tagged_file(tmp_path, "png", pixels, None))
    with caplog.at_level(logging.INFO, logger="nnst_hr.files"):
        tagged = read_image(tagged_file(tmp_path, "png", pixels, profile()))
    np.testing.assert_allclose(tagged, icc.to_srgb(plain, profile()), atol=1e-6)  # converted all the same
    assert not icc.is_srgb(profile()) and (np.abs(tagged - plain).max() < 1 / 255) == (not said)
    assert ("colours converted from" in caplog.text) == said, caplog.text

def test_profile_conversion_agrees_with_pillow_imagecms(tmp_path):
    """An independent path: Pillow's own LittleCMS binding, 8 bits in and out, relative colorimetric."""
    from PIL import ImageCms

    pixels = codes(structured(), np.uint8)
    path = tagged_file(tmp_path, "png", pixels, ADOBE)
    reference = ImageCms.profileToProfile(Image.fromarray(pixels), ImageCms.ImageCmsProfile(io.BytesIO(ADOBE)),
                                          ImageCms.createProfile("sRGB"),
                                          renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC)
    np.testing.assert_allclose(read_image(path), np.asarray(reference) / 255, atol=1.5 / 255)


def test_grey_with_a_grey_profile(tmp_path):
    grey = codes(structured(channels=1), np.uint8)[..., 0]
    profile = imagecodecs.cms_profile("gray", gamma=2.2)
    image = read_image(tagged_file(tmp_path, "png", grey, profile))
    linear = (grey / 255.0) ** 2.2
    expected = np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * linear ** (1 / 2.4) - 0.055)
    np.testing.assert_allclose(image, np.repeat(expected[..., None], 3, axis=-1), atol=2e-3)


@pytest.mark.parametrize("profile, reason", [
    (b"\0" * 200, "not an ICC profile"),
    (imagecodecs.cms_profile("gray", gamma=2.2), "a GRAY profile on an image with 3"),
    (cmyk_profile(), "a CMYK profile on an image with 3"),
])
def test_an_unusable_profile_is_ignored_with_a_warning(tmp_path, profile, reason):
    pixels = codes(structured(), np.uint8)
    path = tagged_file(tmp_path, "png", pixels, profile)
    with pytest.warns(UserWarning, match=f"{path}: its embedded colour profile is ignored \\({reason}"):
        image = read_image(path)
    np.testing.assert_array_equal(image, pixels / np.float32(255))


def jpeg_icc_profile(data: bytes) -> bytes:
    """The ICC profile in a JPEG's APP2 'ICC_PROFILE' segments (ICC.1 B.4), read by hand, chunks in order."""
    pos, chunks = 2, {}
    while data[pos + 1] != 0xDA:  # up to the start of scan
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        payload = data[pos + 4 : pos + 2 + length]
        if data[pos + 1] == 0xE2 and payload.startswith(b"ICC_PROFILE\0"):
            chunks[payload[12]] = payload[14:]
        pos += 2 + length
    return b"".join(chunks[number] for number in sorted(chunks))


@pytest.mark.parametrize("name, bits", [("a.png", 8), ("a.png", 16), ("a.jpg", 8), ("a.tif", 8), ("a.tif", 16)])
def test_written_files_embed_the_same_srgb_profile_every_time(tmp_path, name, bits):
    """The profile holds a fixed date, no clock: reruns write identical bytes, and the profile every reader
    finds (PNG iCCP, JPEG APP2, TIFF tag 34675) is :func:`icc.srgb_profile`, byte for byte."""
    profile = icc.srgb_profile()
    first = write_image(tmp_path / name, structured(), bit_depth=bits).read_bytes()
    path = write_image(tmp_path / name, structured(), bit_depth=bits, overwrite=True)
    assert path.read_bytes() == first
    with Image.open(path) as image:
        assert image.info["icc_profile"] == profile
    if name.endswith(".png"):
        assert png.read_metadata(first).icc_profile == profile
    elif name.endswith(".jpg"):
        assert jpeg_icc_profile(first) == profile
    else:
        with tifffile.TiffFile(path) as tif:
            assert bytes(tif.pages.first.tags[34675].value) == profile
    assert profile[24:36] == struct.pack(">6H", 2026, 1, 1, 0, 0, 0)  # not today's date
    if name != "a.jpg":  # recognised as sRGB, so read back exactly as written
        np.testing.assert_array_equal(read_image(path), codes(structured(), f"uint{bits}") / np.float32(2**bits - 1))


# --------------------------------------------------------------------------- CMYK


CMYK = cmyk_profile()
CMYK_INTERPOLATION = 3.5 / 255  # the profile's table between its nodes (see test_icc.py)


def inks(height=H, width=W, seed=0) -> np.ndarray:
    """Float CMYK ink ``(H, W, 4)`` in flat 8 x 8 blocks (JPEG keeps them exactly): paper and the four solids
    first, then random inks."""
    blocks = np.random.default_rng(seed).random((height // 8, width // 8, 4))
    blocks[0, :5] = np.vstack([np.zeros(4), np.eye(4)])
    return np.repeat(np.repeat(blocks, 8, axis=0), 8, axis=1).astype(np.float32)


def cmyk_file(tmp_path, fmt: str, ink: np.ndarray, profile: bytes | None, dtype=np.uint8) -> Path:
    """``ink`` as a CMYK JPEG (Adobe-inverted, as Photoshop writes it; "jpg-ycck": colour-transformed to
    YCCK, as Photoshop often writes it) or TIFF (SEPARATED, ICC in tag 34675)."""
    path = tmp_path / f"{'tagged' if profile else 'plain'}_cmyk_{np.dtype(dtype).itemsize * 8}.{fmt[:3]}"
    if fmt == "jpg":
        Image.fromarray(codes(ink, np.uint8), "CMYK").save(path, quality=100, subsampling=0,
                                                            **({"icc_profile": profile} if profile else {}))
    elif fmt == "jpg-ycck":  # libjpeg through imagecodecs, not Pillow; the ICC profile in APP2s after SOI
        data = imagecodecs.jpeg8_encode(255 - codes(ink, np.uint8), level=100, colorspace="CMYK",
                                        outcolorspace="YCCK", subsampling="444")
        path.write_bytes(data[:2] + icc_app2_segments(profile or b"") + data[2:])
    else:
        tifffile.imwrite(path, codes(ink, dtype), photometric="separated", iccprofile=profile)
    return path


def icc_app2_segments(profile: bytes, chunk: int = 65519) -> bytes:
    """``profile`` as JPEG APP2 ICC_PROFILE segments (ICC.1 B.4): numbered chunks, as a profile over 64 kB needs."""
    parts = [profile[i:i + chunk] for i in range(0, len(profile), chunk)]
    segments = [b"ICC_PROFILE\0" + bytes([n, len(parts)]) + part for n, part in enumerate(parts, 1)]
    return b"".join(b"\xff\xe2" + struct.pack(">H", 2 + len(segment)) + segment for segment in segments)


def adobe_transform(data: bytes) -> int | None:
    """The colour transform of a JPEG's APP14 "Adobe" segment (0: CMYK stored as is, 2: YCCK), None without one."""
    pos = 2
    while data[pos] == 0xFF and data[pos + 1] != 0xDA:  # segments up to the start of scan
        if data[pos + 1] == 0xEE and data[pos + 4 : pos + 9] == b"Adobe":
            return data[pos + 15]
        pos += 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
    return None


def stored_ink(path: Path, dtype) -> np.ndarray:
    """The ink a CMYK file holds, decoded without Pillow (libjpeg turns YCCK into CMYK): a JPEG's samples
    are 1 - ink (Adobe's convention)."""
    if path.suffix == ".jpg":
        return 1 - imagecodecs.jpeg8_decode(path.read_bytes()) / np.float32(255)
    return tifffile.imread(path) / np.float32(np.iinfo(dtype).max)


@pytest.mark.parametrize("fmt, dtype", [("jpg", np.uint8), ("jpg-ycck", np.uint8), ("tif", np.uint8),
                                        ("tif", np.uint16)])
def test_cmyk_is_converted_through_its_profile_in_every_format(tmp_path, fmt, dtype, caplog):
    path = cmyk_file(tmp_path, fmt, inks(), CMYK, dtype)
    with warnings.catch_warnings(), caplog.at_level(logging.INFO, logger="nnst_hr.files"):
        warnings.simplefilter("error")
        result = read_image(path)
    ink = stored_ink(path, dtype)
    if fmt.startswith("jpg"):  # the file holds inverted samples and says so (APP14 "Adobe"), as Photoshop's do
        assert adobe_transform(path.read_bytes()) == (2 if fmt == "jpg-ycck" else 0)
    if fmt == "jpg":
        np.testing.assert_allclose(ink, quantised(inks(), 8), atol=1e-6)  # q100, flat 8 x 8 blocks: no loss
    assert result.shape == (H, W, 3) and result.dtype == np.float32
    np.testing.assert_allclose(result, ink_to_srgb(ink), atol=CMYK_INTERPOLATION)
    if not ink[0, 0].any():  # YCCK is lossy even at q100: its paper may carry a trace of ink
        np.testing.assert_allclose(result[0, 0], [1, 1, 1], atol=1e-4)  # no ink: white paper
    assert np.abs(result - (1 - ink[..., :3]) * (1 - ink[..., 3:])).max() > 0.25  # the profile made a difference
    assert np.abs(result - ink_to_srgb(1 - ink)).max() > 0.5  # and the ink was not read inverted
    assert "colours converted from Test press CMYK to sRGB" in caplog.text
    np.testing.assert_array_equal(decode_image(path.read_bytes(), path), result)  # bytes: the same decoder


def test_cmyk_16bit_tiff_keeps_its_precision(tmp_path):
    """Cyan rising by 1/65535 per pixel up to 1/255: an 8-bit read would give the row one colour."""
    ink = np.zeros((H, W, 4), np.float32)
    ink[..., 0] = np.arange(W) * (65535 // 255 // (W - 1)) / np.float32(65535)
    result = read_image(cmyk_file(tmp_path, "tif", ink, CMYK, np.uint16))
    assert np.all(np.diff(result[0, :, 0]) < 0)
    np.testing.assert_allclose(result, icc.cmyk_to_srgb(ink, CMYK), atol=1e-6)


def test_cmyk_conversion_agrees_with_pillow_imagecms(tmp_path):
    """An independent path: Pillow's own LittleCMS binding, 8 bits in and out, relative colorimetric with black-point
    compensation."""
    from PIL import ImageCms

    ink = codes(structured(channels=4), np.uint8)
    reference = ImageCms.profileToProfile(Image.fromarray(ink, "CMYK"), ImageCms.ImageCmsProfile(io.BytesIO(CMYK)),
                                          ImageCms.createProfile("sRGB"), outputMode="RGB",
                                          renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC,
                                          flags=ImageCms.Flags.BLACKPOINTCOMPENSATION)
    result = read_image(cmyk_file(tmp_path, "tif", ink / np.float32(255), CMYK))
    np.testing.assert_allclose(result, np.asarray(reference) / 255, atol=1.5 / 255)


@pytest.mark.parametrize("fmt", ["jpg", "tif"])
@pytest.mark.parametrize("profile, reason", [
    (imagecodecs.cms_profile("adobergb"), "a RGB profile on a CMYK image"),
    (b"\0" * 200, "not an ICC profile"),
    (without_tag(CMYK, b"A2B0"), "the profile cannot be used"),  # no CMYK -> Lab table
])
def test_cmyk_with_an_unusable_profile_is_converted_naively_with_a_warning(tmp_path, fmt, profile, reason):
    path = cmyk_file(tmp_path, fmt, inks(), profile)
    with pytest.warns(UserWarning) as caught:
        result = read_image(path)
    assert len(caught) == 1  # one warning, naming the file, the reason and the fallback; no traceback
    message = str(caught[0].message)
    assert message.startswith(f"{path}: its embedded colour profile is ignored ({reason}")
    assert "CMYK converted to RGB without colour management" in message
    ink = stored_ink(path, np.uint8)
    np.testing.assert_allclose(result, (1 - ink[..., :3]) * (1 - ink[..., 3:]), atol=1e-6)


@needs_weights
def test_a_run_folder_made_before_decoding_changed_is_not_resumed(cli, tmp_path, monkeypatch):
    """A run folder keys its NNST result on the inputs' bytes and on DECODE_VERSION: the same CMYK file read with
    black-point compensation is another input, so a folder an older version made (its key without that number,
    or another) is recomputed, not resumed. Negative control: the folder as this version made it is resumed."""
    content = cmyk_file(tmp_path, "tif", inks(48, 64), CMYK)
    style = image_file(tmp_path / "style.png", 64, 64, seed=1)
    output = tmp_path / "out.png"
    args = ("run", content, style, "-o", output, "--size", 64, "--steps", 1, "--split-steps", 1, "--overwrite")
    assert cli(*args).exit_code == 0
    config = tmp_path / "out.run" / "config.json"
    assert json.loads(config.read_text())["nnst_key"]["decode"] == DECODE_VERSION
    assert "nnst: resumed from the run folder" in cli(*args).stderr
    made = json.loads(config.read_text())
    for old in ({key: value for key, value in made["nnst_key"].items() if key != "decode"},
                {**made["nnst_key"], "decode": DECODE_VERSION - 1}):
        config.write_text(json.dumps({**made, "nnst_key": old}))
        again = cli(*args)
        assert again.exit_code == 0, again.output
        assert "resumed" not in again.stderr
