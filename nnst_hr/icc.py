"""Colour profiles: pixels tagged with an embedded ICC profile converted to sRGB, and the sRGB profile written.

NNST, patch synthesis and the colour transfer all treat pixels as sRGB, and every file written
says so (:func:`srgb_profile`). A photo from a phone (Display P3) or a camera set to Adobe RGB,
or a scan in ProPhoto RGB, stores other numbers for the same colours: read as sRGB, its
colours come out wrong (P3 and Adobe RGB look dull, ProPhoto very dull). :func:`to_srgb`
converts such pixels with LittleCMS (``imagecodecs.cms_transform``, in float32), so the style's
palette and the content's colours are the ones the painter and the photographer saw.

CMYK files (print scans, Photoshop CMYK JPEGs and TIFFs) hold amounts of ink, not light: what
colour an amount of ink gives depends on the press, paper and inks that their profile describes.
:func:`cmyk_to_srgb` converts them through the embedded CMYK profile; without one (or with an
unusable one) only :func:`naive_cmyk_to_srgb` is left, the uncalibrated formula that viewers use
(LittleCMS has no built-in CMYK profile, and none is shipped or downloaded).

Rendering intent: relative colorimetric (:data:`INTENT`); colours outside sRGB's gamut are
clipped per channel. Profiles that describe sRGB itself (the usual case: cameras, browsers,
this program's own outputs) are recognised by what they do, not by their name, and leave the
pixels untouched, so reading a file this program wrote gives back exactly what it wrote.

Examples
--------
>>> import numpy as np
>>> import imagecodecs
>>> pixels = np.array([[[0.0, 1.0, 0.0]]], np.float32)          # Adobe RGB's pure green
>>> srgb = to_srgb(pixels, imagecodecs.cms_profile("adobergb"))
>>> srgb.round(2).tolist()                                         # outside sRGB: clipped
[[[0.0, 1.0, 0.0]]]
>>> is_srgb(srgb_profile())
True
"""

from __future__ import annotations

import functools
import hashlib
import io
import struct

import imagecodecs
import numpy as np

__all__ = ["INTENT", "ProfileError", "cmyk_to_srgb", "describe", "is_srgb", "naive_cmyk_to_srgb", "srgb_profile",
           "to_srgb"]

INTENT = imagecodecs.CMS.INTENT.RELATIVE_COLORIMETRIC  # keeps in-gamut colours exact; clips the rest
SRGB_TOLERANCE = 1 / 65535  # a profile whose transform to sRGB moves no probe further than this is sRGB
PROBE_STEPS = 9  # the probe grid's steps per channel (9^3 colours)
PROFILE_DATE = (2026, 1, 1, 0, 0, 0)  # the creation time written into srgb_profile (year ... second)
DATE_FIELD, PROFILE_ID_FIELD = slice(24, 36), slice(84, 100)  # bytes of the profile header
COLOUR_SPACES = {b"RGB ": ("rgb", 3), b"GRAY": ("gray", 1), b"CMYK": ("cmyk", 4)}  # ICC space -> lcms, channels
INK_PERCENT = 100.0  # LittleCMS's float CMYK is percent ink (0..100), unlike its float RGB and grey (0..1)


class ProfileError(ValueError):
    """An embedded profile that cannot be used (unreadable, or for other channels than the pixels')."""


@functools.cache
def srgb_profile() -> bytes:
    """The ICC profile embedded in every written image: sRGB (IEC 61966-2.1), made by LittleCMS via Pillow.

    Pixels are treated as sRGB throughout; the profile says so to print shops and colour-managed viewers.
    LittleCMS stamps a profile with the time it was made; the stamp is set to :data:`PROFILE_DATE`
    so that the same run writes the same bytes every time.
    """
    from PIL import ImageCms

    profile = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    profile[DATE_FIELD] = struct.pack(">6H", *PROFILE_DATE)
    profile[PROFILE_ID_FIELD] = bytes(16)  # an MD5 that covers the date; zero means "not computed" (ICC.1 7.2.18)
    return bytes(profile)


def describe(profile: bytes) -> str:
    """The profile's description (``desc`` tag), or ``"an unnamed profile"``.

    Examples
    --------
    >>> describe(srgb_profile())
    'sRGB built-in'
    """
    from PIL import ImageCms

    try:
        name = ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(profile))).strip()
    except (OSError, ImageCms.PyCMSError):
        name = ""
    return name or "an unnamed profile"


def is_srgb(profile: bytes) -> bool:
    """Whether converting with ``profile`` to sRGB leaves every colour where it is (within 1/65535).

    Raises
    ------
    ProfileError
        The profile cannot be read, or is not an RGB, grey or CMYK profile.
    """
    return _is_srgb(hashlib.sha256(profile).digest(), profile)


@functools.lru_cache(maxsize=16)
def _is_srgb(digest: bytes, profile: bytes) -> bool:
    space, channels = _colour_space(profile)
    if channels != 3:
        return False
    steps = np.linspace(0, 1, PROBE_STEPS, dtype=np.float32)
    probe = np.stack(np.meshgrid(steps, steps, steps, indexing="ij"), axis=-1).reshape(1, -1, 3)
    moved = _transform(probe, profile, space)
    return bool(np.abs(moved - probe).max() <= SRGB_TOLERANCE)


def to_srgb(pixels: np.ndarray, profile: bytes) -> np.ndarray:
    """Pixels encoded in ``profile``'s colour space, as sRGB.

    Parameters
    ----------
    pixels : numpy.ndarray
        float32 ``(H, W, C)`` in ``[0, 1]``: C = 3 or 4 (RGB, RGB + alpha) for an RGB
        profile, 1 or 2 (grey, grey + alpha) for a grey one. Alpha is kept as it is.
    profile : bytes
        The ICC profile embedded in the file.

    Returns
    -------
    numpy.ndarray
        float32 ``(H, W, 3 or 4)`` in ``[0, 1]``; ``pixels`` itself when the profile is
        sRGB's (grey pixels under a grey profile become RGB).

    Raises
    ------
    ProfileError
        The profile cannot be read, or its colour space does not match the pixels' (a CMYK
        profile among them: CMYK pixels go to :func:`cmyk_to_srgb`).
    """
    space, channels = _colour_space(profile)
    colour = pixels.shape[-1] - (pixels.shape[-1] in (2, 4))
    if colour != channels:
        raise ProfileError(f"a {space.upper()} profile on an image with {colour} colour channel(s)")
    if channels == 3 and is_srgb(profile):
        return pixels
    colours = pixels[..., :3] if channels == 3 else pixels[..., 0]  # lcms takes grey as (H, W)
    converted = np.clip(_transform(colours, profile, space), 0, 1)
    if colour != pixels.shape[-1]:
        converted = np.concatenate([converted, pixels[..., -1:]], axis=-1)
    return converted


def cmyk_to_srgb(ink: np.ndarray, profile: bytes) -> np.ndarray:
    """CMYK pixels converted to sRGB through their CMYK profile.

    Parameters
    ----------
    ink : numpy.ndarray
        float32 ``(H, W, 4 or 5)`` in ``[0, 1]``: cyan, magenta, yellow and black ink, 0 = none
        and 1 = full ink (as TIFF stores them; Adobe CMYK JPEGs store 1 - ink and Pillow undoes
        that), then alpha if C = 5. Alpha is kept as it is.
    profile : bytes
        The CMYK ICC profile embedded in the file.

    Returns
    -------
    numpy.ndarray
        float32 ``(H, W, 3 or 4)`` in ``[0, 1]``.

    Raises
    ------
    ProfileError
        The profile cannot be read, or is not a CMYK profile.
    """
    space, _ = _colour_space(profile)
    if space != "cmyk":
        raise ProfileError(f"a {space.upper()} profile on a CMYK image")
    converted = np.clip(_transform(ink[..., :4] * np.float32(INK_PERCENT), profile, space), 0, 1)
    if ink.shape[-1] == 5:
        converted = np.concatenate([converted, ink[..., 4:]], axis=-1)
    return converted


def naive_cmyk_to_srgb(ink: np.ndarray) -> np.ndarray:
    """CMYK pixels as sRGB without a profile: red = (1 - C)(1 - K), green = (1 - M)(1 - K), blue = (1 - Y)(1 - K).

    The formula browsers and Pillow use: ideal inks that each absorb one third of the spectrum
    and add up without dot gain. Real presses print darker and duller than it says, by how much
    only a profile knows.

    Parameters
    ----------
    ink : numpy.ndarray
        ``(H, W, 4 or 5)`` as :func:`cmyk_to_srgb` takes it.

    Returns
    -------
    numpy.ndarray
        float32 ``(H, W, 3 or 4)`` in ``[0, 1]``, alpha kept.

    Examples
    --------
    >>> naive_cmyk_to_srgb(np.array([[[1.0, 0.0, 0.0, 0.5]]], np.float32)).tolist()   # cyan, half black
    [[[0.0, 0.5, 0.5]]]
    """
    ink = np.asarray(ink, np.float32)
    converted = (1 - ink[..., :3]) * (1 - ink[..., 3:4])
    return np.concatenate([converted, ink[..., 4:]], axis=-1)


def _colour_space(profile: bytes) -> tuple[str, int]:
    """lcms's name and channel count of the profile's data colour space (header bytes 16-19)."""
    if len(profile) < 128 or profile[36:40] != b"acsp":
        raise ProfileError("not an ICC profile")
    try:
        return COLOUR_SPACES[profile[16:20]]
    except KeyError:
        kind = profile[16:20].decode("latin-1").strip() or "unknown"
        raise ProfileError(f"a {kind} profile (RGB, grey or CMYK expected)") from None


def _transform(pixels: np.ndarray, profile: bytes, space: str) -> np.ndarray:
    try:
        return imagecodecs.cms_transform(np.ascontiguousarray(pixels, np.float32), profile, _lcms_srgb(),
                                         colorspace=space, outcolorspace="rgb", intent=INTENT)
    except (imagecodecs.CmsError, ValueError) as exc:
        raise ProfileError(f"the profile cannot be used ({exc})") from exc


@functools.cache
def _lcms_srgb() -> bytes:
    return imagecodecs.cms_profile("srgb")
