"""Embedded colour profiles: conversion to sRGB checked against the closed-form colorimetry."""

from __future__ import annotations

import imagecodecs
import numpy as np
import pytest
from icc_profiles import (
    CMYK_GRID,
    D65,
    SRGB_PRIMARIES,
    cmyk_profile,
    ink_to_srgb,
    rgb_to_xyz,
    srgb_encode,
    without_tag,
)
from PIL import Image, ImageCms

from nnst_hr import icc

ADOBE_PRIMARIES = ((0.64, 0.33), (0.21, 0.71), (0.15, 0.06))
ADOBE_GAMMA = 563 / 256
CMYK = cmyk_profile()
# The profile's own table error between its nodes (measured 2.97 / 255 on 5000 random inks): the
# interpolated Lab of a 9^4 grid, not the closed form. At the nodes LittleCMS is within 0.03 / 255.
CMYK_INTERPOLATION = 3.5 / 255


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
    wide = imagecodecs.cms_profile("rgb", whitepoint=D65, primaries=[0.68, 0.32, 0.265, 0.69, 0.15, 0.06],
                                   gamma=2.2)
    assert not icc.is_srgb(wide)
    assert not np.array_equal(icc.to_srgb(colours(), wide), colours())


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


def test_cmyk_between_nodes_is_within_the_tables_interpolation():
    ink = colours(5000, channels=4)
    np.testing.assert_allclose(icc.cmyk_to_srgb(ink, CMYK), ink_to_srgb(ink), atol=CMYK_INTERPOLATION)


def test_cmyk_float_is_read_as_a_fraction_of_full_ink():
    """LittleCMS's float CMYK is 0..100 % ink; its 16-bit CMYK is 0..65535, which cannot be misread."""
    ink = colours(500, channels=4)
    codes = np.rint(ink * 65535).astype(np.uint16)
    reference = imagecodecs.cms_transform(codes, CMYK, imagecodecs.cms_profile("srgb"), colorspace="cmyk",
                                          outcolorspace="rgb", outdtype=np.float32, intent=icc.INTENT)
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
