"""Embedded colour profiles: conversion to sRGB checked against the closed-form colorimetry."""

from __future__ import annotations

import imagecodecs
import numpy as np
import pytest
from PIL import ImageCms

from nnst_hr import icc

D65 = (0.3127, 0.3290)
SRGB_PRIMARIES = ((0.64, 0.33), (0.30, 0.60), (0.15, 0.06))
ADOBE_PRIMARIES = ((0.64, 0.33), (0.21, 0.71), (0.15, 0.06))
ADOBE_GAMMA = 563 / 256


def rgb_to_xyz(primaries, white=D65) -> np.ndarray:
    """The RGB -> XYZ matrix of a colour space from its primaries' and white's xy (the textbook derivation)."""
    xyz = np.array([[x / y, 1.0, (1 - x - y) / y] for x, y in primaries]).T
    wx, wy = white
    scale = np.linalg.solve(xyz, [wx / wy, 1.0, (1 - wx - wy) / wy])
    return xyz * scale


def srgb_encode(linear: np.ndarray) -> np.ndarray:
    linear = np.clip(linear, 0, 1)
    return np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * linear ** (1 / 2.4) - 0.055)


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
