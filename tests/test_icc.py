"""Embedded colour profiles: conversion to sRGB checked against the closed-form colorimetry."""

from __future__ import annotations

import datetime
import hashlib
import io
import shutil
import struct
import subprocess
from pathlib import Path

import imagecodecs
import numpy as np
import pytest
import tifffile
from icc_profiles import (
    BLACK_INK,
    CMYK_GRID,
    D65,
    SRGB_PRIMARIES,
    VERSIONS,
    black_point,
    cmyk_profile,
    ink_to_srgb,
    rgb_to_xyz,
    srgb_encode,
    without_tag,
)
from PIL import Image, ImageCms

from nnst_hr import icc
from nnst_hr.files import read_image

ADOBE_PRIMARIES = ((0.64, 0.33), (0.21, 0.71), (0.15, 0.06))
ADOBE_GAMMA = 563 / 256
CMYK = cmyk_profile()
# The profile's own table error between its nodes (measured 3.16 / 255 on 5000 random inks, 2.97 without
# black-point compensation): the interpolated Lab of a 9^4 grid, not the closed form. At the nodes LittleCMS
# is within 0.03 / 255.
CMYK_INTERPOLATION = 3.5 / 255
# At the nodes, by connection space: XYZ's u1Fixed15 rounding (1/65536 per channel) moves linear red by up
# to 5.2 / 65536 (sRGB's matrix), 1.0e-3 after sRGB's slope of 12.92 near black, where compensation puts the
# darkest inks (measured 0.95e-3; Lab's 16-bit L* is finer there: 0.13e-3).
NODE_TOLERANCE = {b"Lab ": 1e-3, b"XYZ ": 1.5e-3}
P3 = dict(whitepoint=D65, primaries=[0.68, 0.32, 0.265, 0.69, 0.15, 0.06], gamma=2.2)  # Display P3's gamut


def colours(n: int = 500, channels: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((1, n, channels)).astype(np.float32)


def test_adobe_rgb_matches_closed_form():
    pixels = colours()
    matrix = np.linalg.inv(rgb_to_xyz(SRGB_PRIMARIES)) @ rgb_to_xyz(ADOBE_PRIMARIES)
    expected = srgb_encode(pixels.astype(np.float64) ** ADOBE_GAMMA @ matrix.T)
    converted = icc.to_srgb(pixels, imagecodecs.cms_profile("adobergb"))
    assert converted.dtype == np.float32 and converted.shape == pixels.shape
    np.testing.assert_allclose(converted, expected, atol=2e-3)
    assert np.abs(converted - pixels).max() > 0.1  # negative control: reading it as sRGB would be far off


def test_grey_profile_becomes_srgb_grey_and_keeps_alpha():
    pixels = colours(channels=2)
    converted = icc.to_srgb(pixels, imagecodecs.cms_profile("gray", gamma=2.2))
    assert converted.shape == (1, 500, 4)
    expected = srgb_encode(pixels[..., :1].astype(np.float64) ** 2.2)
    np.testing.assert_allclose(converted[..., :3], np.repeat(expected, 3, axis=-1), atol=2e-3)
    np.testing.assert_array_equal(converted[..., 3], pixels[..., 1])


@pytest.mark.parametrize("profile", [
    pytest.param(lambda: icc.srgb_profile(), id="ours"),
    pytest.param(lambda: imagecodecs.cms_profile("srgb"), id="lcms"),
    pytest.param(lambda: ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes(), id="pillow"),
])
def test_srgb_profiles_leave_pixels_untouched(profile):
    pixels = colours(channels=4)
    assert icc.is_srgb(profile())
    assert icc.to_srgb(pixels, profile()) is pixels


def test_a_profile_with_other_primaries_is_not_srgb():
    wide = imagecodecs.cms_profile("rgb", **P3)
    assert not icc.is_srgb(wide)
    assert not np.array_equal(icc.to_srgb(colours(), wide), colours())


@pytest.mark.parametrize("profile", [
    pytest.param(lambda: imagecodecs.cms_profile("adobergb"), id="adobe-rgb"),
    pytest.param(lambda: imagecodecs.cms_profile("rgb", **P3), id="p3"),
    pytest.param(lambda: imagecodecs.cms_profile("gray", gamma=2.2), id="grey"),
])
def test_black_point_compensation_leaves_matrix_profiles_alone(profile, monkeypatch):
    """Matrix/TRC profiles' black is zero, as sRGB's: compensation (on for every input) changes no bit."""
    pixels = colours(channels=1 if b"GRAY" in profile()[16:20] else 3)
    pixels[0, 0] = 0
    compensated = icc.to_srgb(pixels, profile())
    monkeypatch.setattr(icc, "BPC", 0)
    np.testing.assert_array_equal(compensated, icc.to_srgb(pixels, profile()))


def test_black_point_compensation_takes_a_raised_black_to_black(monkeypatch):
    """An RGB profile whose black is not zero (sRGB's primaries, linear light 0.02 + 0.98 t^2.2, as a table):
    compensation scales XYZ so that its black is sRGB's, which leaves exactly t^2.2. Negative control: the same
    profile without compensation reads as its raised black."""
    t = np.linspace(0, 1, 1024)
    raised = imagecodecs.cms_profile("rgb", whitepoint=D65, primaries=[c for xy in SRGB_PRIMARIES for c in xy],
                                     transferfunction=np.rint((0.02 + 0.98 * t**2.2) * 65535).astype(np.uint16))
    pixels = colours()
    pixels[0, 0] = 0
    compensated = icc.to_srgb(pixels, raised)
    np.testing.assert_allclose(compensated, srgb_encode(pixels.astype(np.float64) ** 2.2), atol=2e-3)
    np.testing.assert_allclose(compensated[0, 0], 0, atol=1e-6)
    monkeypatch.setattr(icc, "BPC", 0)
    plain = icc.to_srgb(pixels, raised)
    np.testing.assert_allclose(plain, srgb_encode(0.02 + 0.98 * pixels.astype(np.float64) ** 2.2), atol=2e-3)
    assert plain[0, 0].min() > 0.15  # sRGB of linear 0.02


def test_out_of_gamut_colours_are_clipped_to_unit_range():
    converted = icc.to_srgb(np.array([[[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]], np.float32),
                            imagecodecs.cms_profile("adobergb"))
    assert converted.min() >= 0 and converted.max() <= 1
    np.testing.assert_allclose(converted[0, 0], [0, 1, 0], atol=1e-6)  # Adobe green is beyond sRGB green


@pytest.mark.parametrize("profile, message", [
    (b"not a profile", "not an ICC profile"),
    (imagecodecs.cms_profile("lab4"), "Lab profile"),
])
def test_unusable_profiles_are_refused(profile, message):
    with pytest.raises(icc.ProfileError, match=message):
        icc.to_srgb(colours(), profile)


def test_channel_mismatch_is_refused():
    with pytest.raises(icc.ProfileError, match="GRAY profile on an image with 3"):
        icc.to_srgb(colours(), imagecodecs.cms_profile("gray", gamma=2.2))


def test_description():
    assert icc.describe(imagecodecs.cms_profile("adobergb")) == "Adobe RGB (compatible)"
    assert icc.describe(b"junk") == "an unnamed profile"


# --------------------------------------------------------------------------- CMYK


def grid_inks(n: int = 500, seed: int = 0) -> np.ndarray:
    """``(1, n, 4)`` inks on the nodes of the profile's A2B0 grid, where its table is the closed form."""
    return (np.random.default_rng(seed).integers(0, CMYK_GRID, (1, n, 4)) / (CMYK_GRID - 1)).astype(np.float32)


def test_cmyk_profile_matches_closed_form_at_its_nodes():
    ink = grid_inks()
    ink[0, :16] = np.stack(np.meshgrid(*[[0, 1]] * 4, indexing="ij"), axis=-1).reshape(16, 4)  # paper, solids
    converted = icc.cmyk_to_srgb(ink, CMYK)
    assert converted.dtype == np.float32 and converted.shape == (1, 500, 3)
    np.testing.assert_allclose(converted, ink_to_srgb(ink), atol=1e-3)
    np.testing.assert_allclose(converted[0, 0], [1, 1, 1], atol=1e-4)  # no ink: the paper, white
    # negative controls: the uncalibrated formula, and ink read inverted (as stored in Adobe JPEGs)
    assert np.abs(icc.naive_cmyk_to_srgb(ink) - converted).max() > 0.25
    assert np.abs(icc.cmyk_to_srgb(1 - ink, CMYK) - converted).max() > 0.5


@pytest.mark.parametrize("pcs", [b"Lab ", b"XYZ "])
@pytest.mark.parametrize("version", [2, 4])
def test_cmyk_profiles_with_either_connection_space_and_version_match_the_closed_form(pcs, version):
    """Real CMYK profiles come as v2 and v4, with Lab or XYZ tables (FOGRA39 from Argyll: v2 Lab; Ghostscript's
    ps_cmyk.icc: v4 XYZ): each reads as the closed form at the nodes, black-point compensation included (a v4
    profile's black point is found from ICC's perceptual black, a v2's from L* = 0: the same ink here)."""
    profile = cmyk_profile(pcs=pcs, version=version)
    assert profile[8:12] == VERSIONS[version].to_bytes(4, "big") and profile[20:24] == pcs
    assert ImageCms.getOpenProfile(io.BytesIO(profile)).profile.version == pytest.approx({2: 2.1, 4: 4.2}[version])
    assert icc.describe(profile) == "Test press CMYK"  # v2 textDescription or v4 mluc
    ink = grid_inks()
    converted = icc.cmyk_to_srgb(ink, profile)
    np.testing.assert_allclose(converted, ink_to_srgb(ink), atol=NODE_TOLERANCE[pcs])
    # negative control: the same table under the other connection space is far off
    other = profile[:20] + (b"XYZ " if pcs == b"Lab " else b"Lab ") + profile[24:]
    assert np.abs(icc.cmyk_to_srgb(ink, other) - converted).max() > 0.25


def darkest_inks() -> np.ndarray:
    """``(1, 81, 4)``: full black under every node of cyan, magenta and yellow from 50 % to 100 %."""
    steps = np.linspace(0.5, 1, CMYK_GRID // 2 + 1)
    cmy = np.stack(np.meshgrid(steps, steps, steps, indexing="ij"), axis=-1).reshape(-1, 3)
    return np.concatenate([cmy, np.ones((len(cmy), 1))], axis=-1)[None].astype(np.float32)


def test_cmyk_black_point_is_compensated(monkeypatch):
    """The profile's black point (400 % ink, Y = 0.0064, :func:`icc_profiles.black_point`) goes to sRGB's black
    and paper stays white: LittleCMS's compensation, as a closed form (:func:`icc_profiles.compensate_black`),
    at the darkest inks. Negative control: the same profile read without compensation is the plain closed form
    there, and far from the compensated one."""
    ink = darkest_inks()
    assert black_point() == pytest.approx(0.0064, abs=1e-4) and (ink[0] == BLACK_INK).all(-1).any()
    compensated = icc.cmyk_to_srgb(ink, CMYK)
    np.testing.assert_allclose(compensated, ink_to_srgb(ink), atol=1e-3)
    np.testing.assert_allclose(icc.cmyk_to_srgb(np.zeros((1, 1, 4), np.float32), CMYK), 1, atol=1e-4)  # paper
    monkeypatch.setattr(icc, "BPC", 0)
    plain = icc.cmyk_to_srgb(ink, CMYK)
    np.testing.assert_allclose(plain, ink_to_srgb(ink, bpc=False), atol=1e-3)
    assert (np.abs(plain - ink_to_srgb(ink)).max(axis=-1) > 0.015).all()  # every darkest ink: 15 tolerances
    np.testing.assert_allclose(icc.cmyk_to_srgb(np.zeros((1, 1, 4), np.float32), CMYK), 1, atol=1e-4)


def test_cmyk_between_nodes_is_within_the_tables_interpolation():
    ink = colours(5000, channels=4)
    np.testing.assert_allclose(icc.cmyk_to_srgb(ink, CMYK), ink_to_srgb(ink), atol=CMYK_INTERPOLATION)


def test_cmyk_float_is_read_as_a_fraction_of_full_ink():
    """LittleCMS's float CMYK is 0..100 % ink; its 16-bit CMYK is 0..65535, which cannot be misread."""
    ink = colours(500, channels=4)
    codes = np.rint(ink * 65535).astype(np.uint16)
    reference = imagecodecs.cms_transform(codes, CMYK, imagecodecs.cms_profile("srgb"), colorspace="cmyk",
                                          outcolorspace="rgb", outdtype=np.float32, intent=icc.INTENT,
                                          flags=icc.BPC)
    np.testing.assert_allclose(icc.cmyk_to_srgb(codes / np.float32(65535), CMYK), np.clip(reference, 0, 1),
                               atol=1e-4)


def test_cmyk_keeps_alpha():
    ink = colours(channels=5)
    converted = icc.cmyk_to_srgb(ink, CMYK)
    assert converted.shape == (1, 500, 4)
    np.testing.assert_array_equal(converted[..., 3], ink[..., 4])
    np.testing.assert_array_equal(converted[..., :3], icc.cmyk_to_srgb(ink[..., :4], CMYK))


def test_naive_cmyk_agrees_with_pillow():
    """Pillow's CMYK -> RGB (what viewers do without a profile), 8 bits: within rounding."""
    codes = np.random.default_rng(0).integers(0, 256, (1, 500, 4), dtype=np.uint8)
    pillow = np.asarray(Image.fromarray(codes, "CMYK").convert("RGB")) / 255
    np.testing.assert_allclose(icc.naive_cmyk_to_srgb(codes / np.float32(255)), pillow, atol=0.5 / 255 + 1e-6)


@pytest.mark.parametrize("convert, pixels, profile, message", [
    (icc.cmyk_to_srgb, colours(channels=4), imagecodecs.cms_profile("adobergb"), "a RGB profile on a CMYK image"),
    (icc.cmyk_to_srgb, colours(channels=4), b"junk", "not an ICC profile"),
    (icc.to_srgb, colours(), CMYK, "a CMYK profile on an image with 3"),
    (icc.to_srgb, colours(channels=4), CMYK, "a CMYK profile on an image with 3"),  # RGBA, not CMYK
])
def test_cmyk_profile_and_pixels_must_match(convert, pixels, profile, message):
    with pytest.raises(icc.ProfileError, match=message):
        convert(pixels, profile)


def test_a_cmyk_profile_without_a_table_is_refused():
    with pytest.raises(icc.ProfileError, match="cannot be used"):
        icc.cmyk_to_srgb(colours(channels=4), without_tag(CMYK, b"A2B0"))


# Extras, where this machine has them (CI does not: the tests above are the evidence): real CMYK profiles read
# from TIFF and JPEG files agree with LittleCMS's own command-line appliers, relative colorimetric with black
# point compensation (-b) as ours. Measured (notes/measurements.md): within 0.1 / 255 of tificc's 16-bit output.
REAL_CMYK_PROFILES = [
    "/usr/share/color/icc/colord/FOGRA39L_coated.icc",  # colord's CMYK set (not in Debian 12's colord-data)
    "/usr/share/color/icc/ghostscript/default_cmyk.icc",  # Ghostscript (libgs-common): Artifex SWOP, v2, Lab
    "/usr/share/color/icc/ghostscript/ps_cmyk.icc",  # Ghostscript: PostScript's formula as a v4 XYZ profile
]


def real_cmyk_profile(path: str) -> bytes:
    if not Path(path).is_file():
        pytest.skip(f"{path} is not installed")
    if not (shutil.which("tificc") and shutil.which("jpgicc")):
        pytest.skip("LittleCMS's tificc and jpgicc (liblcms2-utils) are not installed")
    return Path(path).read_bytes()


@pytest.mark.parametrize("path", REAL_CMYK_PROFILES)
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_real_cmyk_profile_tiff_agrees_with_tificc(tmp_path, path, dtype):
    profile = real_cmyk_profile(path)
    ink = np.random.default_rng(0).integers(0, np.iinfo(dtype).max + 1, (64, 64, 4)).astype(dtype)
    source, reference = tmp_path / "cmyk.tif", tmp_path / "srgb.tif"
    tifffile.imwrite(source, ink, photometric="separated", iccprofile=profile)
    subprocess.run(["tificc", "-t1", "-b", "-c0", "-w16", source, reference], check=True, capture_output=True)
    np.testing.assert_allclose(read_image(source), tifffile.imread(reference) / 65535, atol=0.25 / 255)


@pytest.mark.parametrize("path", REAL_CMYK_PROFILES)
def test_real_cmyk_profile_adobe_jpeg_agrees_with_jpgicc(tmp_path, path):
    """Pillow writes CMYK JPEGs as Photoshop does (1 - ink, APP14 "Adobe"); jpgicc undoes that on its own. Its
    output is a JPEG again (quality 100), so flat 16 x 16 blocks are compared at their centres."""
    profile = real_cmyk_profile(path)
    ink = np.random.default_rng(0).integers(0, 256, (8, 8, 4), dtype=np.uint8)
    source, reference = tmp_path / "cmyk.jpg", tmp_path / "srgb.jpg"
    Image.fromarray(np.repeat(np.repeat(ink, 16, 0), 16, 1), "CMYK").save(source, quality=100, subsampling=0,
                                                                           icc_profile=profile)
    subprocess.run(["jpgicc", "-t1", "-b", "-c0", "-q100", source, reference], check=True, capture_output=True)
    centres = (slice(8, None, 16), slice(8, None, 16))
    ours = read_image(source)[centres]
    np.testing.assert_allclose(ours, np.asarray(Image.open(reference).convert("RGB"))[centres] / 255, atol=1 / 255)
    assert np.abs(ours - icc.cmyk_to_srgb(1 - ink / np.float32(255), profile)).max() > 0.1  # ink read inverted


# --------------------------------------------------------------------------- the profile written: ICC v2 sRGB

V2_TYPES = {b"desc": b"desc", b"cprt": b"text", b"wtpt": b"XYZ ", b"rXYZ": b"XYZ ", b"gXYZ": b"XYZ ",
            b"bXYZ": b"XYZ ", b"rTRC": b"curv", b"gTRC": b"curv", b"bTRC": b"curv"}  # tag -> its ICC v2 type
ROUND_TRIP_16 = 16  # 16-bit codes a round trip may move (the v2 curve is a 16-bit table; measured: 0)
PROFILE_SHA256 = "40054db4d02e1678ebe48f60bfd3f1b3c81a8a7e6664feec9960df6c67da6cf5"  # the bytes every output embeds


def tag_table(profile: bytes) -> dict[bytes, tuple[int, int]]:
    """Tag signature -> (offset, size), parsed from the tag table after the 128-byte header."""
    count = int.from_bytes(profile[128:132], "big")
    entries = [struct.unpack(">4sII", profile[132 + 12 * i : 144 + 12 * i]) for i in range(count)]
    return {signature: (offset, size) for signature, offset, size in entries}


def tag(profile: bytes, signature: bytes) -> bytes:
    offset, size = tag_table(profile)[signature]
    return profile[offset : offset + size]


def xyz(profile: bytes, signature: bytes) -> tuple[int, ...]:
    """An XYZType tag's three s15Fixed16 numbers, as integers (units of 1/65536)."""
    return struct.unpack(">3i", tag(profile, signature)[8:20])


def wrong_srgb(change: str) -> bytes:
    """The written profile's builder with one thing wrong: a pure gamma 2.2 curve, or red and green swapped."""
    colorants = icc._srgb_colorants()
    curve = icc._srgb_curve(icc.CURVE_ENTRIES)
    if change == "gamma 2.2":
        curve = np.linspace(0, 1, icc.CURVE_ENTRIES) ** 2.2
    else:
        colorants = colorants[:, [1, 0, 2]]
    return icc.rgb_display_profile(colorants, icc._white_xyz(icc.SRGB_WHITE), curve, icc.SRGB_DESCRIPTION,
                                   icc.SRGB_COPYRIGHT, icc.PROFILE_DATE, embedded=True)


def every_8bit_colour() -> np.ndarray:
    levels = np.arange(256, dtype=np.uint8)
    return np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), axis=-1).reshape(256, 65536, 3)


def colours16(n: int = 200_000) -> np.ndarray:
    """Random 16-bit colours, then every grey and every level of each primary alone."""
    ramp = np.arange(65536, dtype=np.uint16)
    zeros = np.zeros_like(ramp)
    ramps = [np.stack([ramp] * 3, -1), np.stack([ramp, zeros, zeros], -1), np.stack([zeros, ramp, zeros], -1),
             np.stack([zeros, zeros, ramp], -1)]
    random = np.random.default_rng(0).integers(0, 65536, (n, 3), dtype=np.uint16)
    return np.concatenate([random, *ramps])[None]


def lcms(pixels: np.ndarray, source: bytes, target: bytes, intent=icc.INTENT) -> np.ndarray:
    return imagecodecs.cms_transform(pixels, source, target, colorspace="rgb", outcolorspace="rgb", intent=intent)


def pillow(pixels: np.ndarray, source, target) -> np.ndarray:
    return np.asarray(ImageCms.profileToProfile(Image.fromarray(pixels), source, target,
                                                renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC))


def moved(converted: np.ndarray, pixels: np.ndarray) -> int:
    return int(np.abs(converted.astype(np.int64) - pixels).max())


def test_the_written_profile_is_icc_v2():
    profile = icc.srgb_profile()
    assert len(profile) == int.from_bytes(profile[:4], "big") == 2524 and len(profile) % 4 == 0
    assert profile[8:12] == bytes.fromhex("02100000")  # version 2.1.0
    assert profile[12:24] == b"mntrRGB XYZ " and profile[36:40] == b"acsp"
    assert profile[24:36] == struct.pack(">6H", *icc.PROFILE_DATE)
    assert profile[68:80] == bytes.fromhex("0000f6d6 00010000 0000d32d")  # D50 as ICC.1 encodes it
    # flags (ICC.1 7.2.11): embedded in a file (bit 0), yet usable on its own (bit 1 clear)
    assert int.from_bytes(profile[44:48], "big") == 1
    assert profile[84:128] == bytes(44)  # reserved in v2 (v4's profile ID)
    table = tag_table(profile)
    assert {signature: tag(profile, signature)[:4] for signature in table} == V2_TYPES  # no chad, para, mluc
    assert len({table[trc] for trc in (b"rTRC", b"gTRC", b"bTRC")}) == 1  # one curve, shared
    curve = np.frombuffer(tag(profile, b"rTRC")[12:], ">u2")
    assert int.from_bytes(tag(profile, b"rTRC")[8:12], "big") == len(curve) == 1024
    assert curve[0] == 0 and curve[-1] == 65535 and np.all(np.diff(curve.astype(int)) >= 0)
    assert tag(profile, b"desc")[12:30] == b"sRGB IEC61966-2.1\0"
    assert xyz(profile, b"wtpt") == (62289, 65536, 71372)  # D65, the display's white, as v2 sRGB profiles hold it


def test_the_colorants_are_littlecms_srgbs_and_add_up_to_d50():
    """Bradford-adapted sRGB primaries, rounded as LittleCMS's built-in sRGB: white is D50 within 1/65536."""
    ours, theirs = icc.srgb_profile(), imagecodecs.cms_profile("srgb")
    colorants = [xyz(ours, signature) for signature in (b"rXYZ", b"gXYZ", b"bXYZ")]
    assert colorants == [xyz(theirs, signature) for signature in (b"rXYZ", b"gXYZ", b"bXYZ")]
    assert colorants == [(28576, 14581, 912), (25239, 46983, 6361), (9375, 3972, 46787)]
    white = np.sum(colorants, axis=0)
    assert np.abs(white - np.array([63190, 65536, 54061])).max() <= 1


def test_pillow_reads_it_as_srgb_iec61966_v2():
    profile = ImageCms.getOpenProfile(io.BytesIO(icc.srgb_profile())).profile
    assert profile.version == pytest.approx(2.1) and profile.icc_version == 0x02100000
    assert profile.profile_description == "sRGB IEC61966-2.1" and profile.copyright == icc.SRGB_COPYRIGHT
    assert (profile.device_class, profile.xcolor_space, profile.connection_space) == ("mntr", "RGB ", "XYZ ")
    assert profile.is_matrix_shaper and profile.creation_date == datetime.datetime(*icc.PROFILE_DATE)
    assert profile.media_white_point_temperature == pytest.approx(6504, abs=1)
    assert icc.describe(icc.srgb_profile()) == "sRGB IEC61966-2.1"


def test_round_trip_to_littlecms_srgb_moves_no_code_value():
    """Every 8-bit colour, and 16-bit ramps and random colours, through LittleCMS both ways (measured: 0)."""
    ours, theirs = icc.srgb_profile(), imagecodecs.cms_profile("srgb")
    pixels = every_8bit_colour()
    for source, target in ((ours, theirs), (theirs, ours)):
        assert moved(lcms(pixels, source, target), pixels) <= 1
        assert moved(lcms(colours16(), source, target), colours16()) <= ROUND_TRIP_16
    # absolute colorimetric too: LittleCMS takes a v2 display profile's white as D50, whatever wtpt holds
    assert moved(lcms(pixels, ours, theirs, imagecodecs.CMS.INTENT.ABSOLUTE_COLORIMETRIC), pixels) <= 1
    floats = colours(200_000)
    assert np.abs(lcms(floats, ours, theirs) - floats).max() <= icc.SRGB_TOLERANCE  # measured 12.8 / 65535


def test_round_trip_through_pillow_moves_no_code_value():
    """Pillow's own LittleCMS, to and from its in-memory sRGB (not a saved one), every 8-bit colour."""
    ours, theirs = ImageCms.getOpenProfile(io.BytesIO(icc.srgb_profile())), ImageCms.createProfile("sRGB")
    pixels = every_8bit_colour()
    assert moved(pillow(pixels, ours, theirs), pixels) <= 1
    assert moved(pillow(pixels, theirs, ours), pixels) <= 1


def test_the_written_profile_is_recognised_as_srgb():
    assert icc.is_srgb(icc.srgb_profile())
    pixels = colours()
    assert icc.to_srgb(pixels, icc.srgb_profile()) is pixels


@pytest.mark.parametrize("change", ["gamma 2.2", "red and green swapped"])
def test_a_wrong_v2_profile_is_not_srgb(change):
    """Negative control: the same builder and checks, one thing wrong."""
    ours, wrong, theirs = icc.srgb_profile(), wrong_srgb(change), imagecodecs.cms_profile("srgb")
    assert wrong != ours and len(wrong) == len(ours)
    assert not icc.is_srgb(wrong)
    pixels = every_8bit_colour()
    assert moved(lcms(pixels, wrong, theirs), pixels) > 5
    assert moved(pillow(pixels, ImageCms.getOpenProfile(io.BytesIO(wrong)), ImageCms.createProfile("sRGB")),
                 pixels) > 5


def test_the_builder_with_srgbs_values_is_the_written_profile():
    """So that the negative controls above differ from it only in what they change."""
    assert icc.rgb_display_profile(icc._srgb_colorants(), icc._white_xyz(icc.SRGB_WHITE),
                                   icc._srgb_curve(icc.CURVE_ENTRIES), icc.SRGB_DESCRIPTION, icc.SRGB_COPYRIGHT,
                                   icc.PROFILE_DATE, embedded=True) == icc.srgb_profile()


def test_the_profile_is_the_same_bytes_every_time():
    """No clock: fresh builds (not the cached one) give the same bytes, and so did the build this test was written on
    (a change of these bytes changes every output file: make it on purpose)."""
    first = icc.srgb_profile.__wrapped__()
    assert icc.srgb_profile.__wrapped__() == first == icc.srgb_profile()
    assert hashlib.sha256(first).hexdigest() == PROFILE_SHA256
