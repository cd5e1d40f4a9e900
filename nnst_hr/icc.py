"""Colour profiles: pixels tagged with an embedded ICC profile converted to sRGB, and the sRGB profile written.

NNST, patch synthesis and the colour transfer all treat pixels as sRGB, and every file written
says so (:func:`srgb_profile`: an ICC v2 profile, built here, that print RIPs read). A photo
from a phone (Display P3) or a camera set to Adobe RGB, or a scan in ProPhoto RGB, stores other
numbers for the same colours: read as sRGB, its colours come out wrong (P3 and Adobe RGB look
dull, ProPhoto very dull). :func:`to_srgb` converts such pixels with LittleCMS
(``imagecodecs.cms_transform``, in float32), so the style's palette and the content's colours
are the ones the painter and the photographer saw.

CMYK files (print scans, Photoshop CMYK JPEGs and TIFFs) hold amounts of ink, not light: what
colour an amount of ink gives depends on the press, paper and inks that their profile describes.
:func:`cmyk_to_srgb` converts them through the embedded CMYK profile; without one (or with an
unusable one) only :func:`naive_cmyk_to_srgb` is left, the uncalibrated formula that viewers use
(LittleCMS has no built-in CMYK profile, and none is shipped or downloaded).

Writing for a press (``run --cmyk PROFILE``): :func:`check_output_profile` refuses, before any
work, a file that is no CMYK output profile with a colour -> ink table, and :func:`srgb_to_cmyk`
separates the sRGB poster into that press's ink through it, with the same intent and
compensation as reading (sRGB's black to the press's darkest ink).

Rendering intent: relative colorimetric (:data:`INTENT`), with black-point compensation
(:data:`BPC`); colours outside sRGB's gamut are clipped per channel. The intent maps the medium's
white (the paper's) to sRGB's white; compensation does the same at the dark end, scaling CIE XYZ
so that the profile's black point (a press's darkest ink) becomes sRGB's black, as Photoshop's
default CMYK -> RGB conversions do: a painting's darkest is black, not the press's limit.
Matrix/TRC RGB and grey profiles have their black at zero, which compensation leaves alone.
Profiles that describe sRGB itself (the usual case: cameras, browsers, this program's own
outputs) are recognised by what they do, not by their name, and leave the pixels untouched, so
reading a file this program wrote gives back exactly what it wrote.

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
import math
import struct

import imagecodecs
import numpy as np

__all__ = ["BPC", "INTENT", "ProfileError", "check_output_profile", "cmyk_to_srgb", "describe", "is_srgb",
           "naive_cmyk_to_srgb", "near_srgb", "rgb_display_profile", "srgb_deviation", "srgb_profile",
           "srgb_to_cmyk", "to_srgb"]

INTENT = imagecodecs.CMS.INTENT.RELATIVE_COLORIMETRIC  # keeps in-gamut colours exact; clips the rest
BPC = imagecodecs.CMS.FLAGS.BLACKPOINTCOMPENSATION  # the profile's black to sRGB's black, as INTENT does white
SRGB_TOLERANCE = 16 / 65535  # a profile whose transform to sRGB moves no probe further than this is sRGB (is_srgb)
PROBE_STEPS = 9  # the probe grid's steps per channel (9^3 colours)
# a profile whose transform to sRGB moves no probe colour by a whole 8-bit step is an sRGB variant (near_srgb):
# its conversion is done, but it is nothing to tell the user about
NEAR_SRGB = 1 / 255
PROFILE_DATE = (2026, 1, 1, 0, 0, 0)  # the creation time written into srgb_profile (year ... second)
COLOUR_SPACES = {b"RGB ": ("rgb", 3), b"GRAY": ("gray", 1), b"CMYK": ("cmyk", 4)}  # ICC space -> lcms, channels
INK_PERCENT = 100.0  # LittleCMS's float CMYK is percent ink (0..100), unlike its float RGB and grey (0..1)

# The sRGB profile written (:func:`srgb_profile`): ICC v2, matrix/TRC, as cameras and print workflows embed it.
SRGB_DESCRIPTION = "sRGB IEC61966-2.1"  # the 'desc' text: the name RIPs and editors know the standard profile by
SRGB_COPYRIGHT = "No copyright, use freely"  # the 'cprt' text
ICC_VERSION = 0x02100000  # profile format 2.1.0 (BCD): readable by v2-only RIPs, older Photoshop and Windows
DISPLAY_CLASS, RGB_SPACE, XYZ_PCS = b"mntr", b"RGB ", b"XYZ "  # a monitor profile: RGB <-> CIE XYZ
NO_SIGNATURE = bytes(4)  # preferred CMM, platform, device maker, model and creator: zero means "none" (ICC.1 6.1)
HEADER_INTENT = 0  # perceptual, the usual default (a matrix/TRC profile has one transform for all intents)
# header flags (ICC.1 7.2.11): bit 0 set, the profile is embedded in a file; bit 1 clear, it may be used on its own
EMBEDDED_FLAGS, STANDALONE_FLAGS = 1, 0
D50 = (0.9642, 1.0, 0.8249)  # the profile connection space's illuminant, XYZ (ICC.1 6.3.4.3)
SRGB_WHITE = (0.3127, 0.3290)  # D65, sRGB's white, xy (IEC 61966-2.1)
SRGB_PRIMARIES = ((0.64, 0.33), (0.30, 0.60), (0.15, 0.06))  # red, green, blue, xy (ITU-R BT.709)
BRADFORD = ((0.8951, 0.2664, -0.1614),  # XYZ -> cone responses: the chromatic adaptation ICC.1 and LittleCMS use
            (-0.7502, 1.7135, 0.0367),
            (0.0389, -0.0685, 1.0296))
SRGB_CURVE = (2.4, 0.055, 12.92, 0.04045)  # sRGB EOTF: ((V + 0.055) / 1.055)^2.4 above 0.04045, V / 12.92 below
CURVE_ENTRIES = 1024  # points of the 'curv' table, as in the common v2 sRGB profiles (linear interpolation between)
TAG_ENTRY, HEADER_SIZE = 12, 128  # bytes of one tag-table entry (signature, offset, size) and of the header
OUTPUT_CLASS = b"prtr"  # an output device profile (ICC.1 7.2.5): a press, a printer
# the colour -> ink tables INTENT may use: relative colorimetric's own (B2A1), else the perceptual one,
# which LittleCMS takes in its place (as ICC.1 8.4 allows a profile to have only B2A0)
TO_DEVICE_TAGS = (b"B2A1", b"B2A0")
SEPARATE_ROWS = 256  # rows converted to ink at a time (no full-size float64 or lcms temporaries)
DEVICE_CLASSES = {b"scnr": "an input (scanner, camera)", b"mntr": "a display", b"prtr": "an output",
                  b"link": "a device link", b"spac": "a colour space conversion", b"abst": "an abstract",
                  b"nmcl": "a named colour"}  # ICC.1 7.2.5, for messages


class ProfileError(ValueError):
    """An embedded profile that cannot be used (unreadable, or for other channels than the pixels')."""


@functools.cache
def srgb_profile() -> bytes:
    """The ICC profile embedded in every written image: ICC v2 "sRGB IEC61966-2.1", built here.

    Pixels are treated as sRGB throughout; the profile says so to print shops and colour-managed
    viewers. It is a version 2.1 display profile, like the one cameras and print workflows embed,
    because RIPs, older Photoshop/InDesign and Windows viewers read v4 profiles poorly or not at
    all: the sRGB primaries adapted to D50 by Bradford (``rXYZ``, ``gXYZ``, ``bXYZ``, rounded as
    LittleCMS rounds its own sRGB's), the display's white D65 in ``wtpt`` (as the common v2 sRGB
    profiles have it, and as LittleCMS reads a v2 display profile: colorants already adapted, wtpt
    the display's own white), and one :data:`CURVE_ENTRIES`-point ``curv`` table of the sRGB curve
    shared by the three channels (parametric curves and ``chad`` are v4). Its date is
    :data:`PROFILE_DATE`, not the clock, so the same run writes the same bytes every time. Its header
    flags say it is embedded (ICC.1 7.2.11), as it is in every file written.

    Examples
    --------
    >>> profile = srgb_profile()
    >>> profile[8:12].hex(), profile[12:24], len(profile)
    ('02100000', b'mntrRGB XYZ ', 2524)
    """
    return rgb_display_profile(_srgb_colorants(), _white_xyz(SRGB_WHITE), _srgb_curve(CURVE_ENTRIES),
                               SRGB_DESCRIPTION, SRGB_COPYRIGHT, PROFILE_DATE, embedded=True)


def rgb_display_profile(colorants: np.ndarray, white: np.ndarray, linear: np.ndarray, description: str,
                        copyright_text: str, date: tuple[int, ...], embedded: bool = False) -> bytes:
    """An ICC v2 matrix/TRC display profile ('mntr', RGB to XYZ) with the nine tags ICC.1:2001 requires.

    Parameters
    ----------
    colorants : numpy.ndarray
        ``(3, 3)``: the XYZ (D50-adapted) of full red, green and blue, as columns.
    white : numpy.ndarray
        The display's white, XYZ (``wtpt``).
    linear : numpy.ndarray
        The tone curve shared by the three channels: linear light (0..1) at evenly spaced code values.
    description, copyright_text : str
        ASCII texts of the ``desc`` and ``cprt`` tags.
    date : tuple of int
        Creation date and time written in the header: year, month, day, hour, minute, second.
    embedded : bool
        Set the header's "embedded" flag (bit 0, ICC.1 7.2.11): for a profile written into an image.
    """
    curve = _curve_tag(linear)
    tags = [
        (b"desc", _text_description_tag(description)),
        (b"cprt", _text_tag(copyright_text)),
        (b"wtpt", _xyz_tag(white)),
        (b"rXYZ", _xyz_tag(colorants[:, 0])),
        (b"gXYZ", _xyz_tag(colorants[:, 1])),
        (b"bXYZ", _xyz_tag(colorants[:, 2])),
        (b"rTRC", curve),  # the same bytes three times: stored once, the three entries point to it
        (b"gTRC", curve),
        (b"bTRC", curve),
    ]
    return _icc_profile(tags, date, EMBEDDED_FLAGS if embedded else STANDALONE_FLAGS)


def _srgb_curve(entries: int) -> np.ndarray:
    """The sRGB EOTF (code value -> linear light) at ``entries`` evenly spaced code values, float64."""
    exponent, offset, slope, knee = SRGB_CURVE
    code = np.linspace(0.0, 1.0, entries)
    return np.where(code <= knee, code / slope, ((code + offset) / (1 + offset)) ** exponent)


def _white_xyz(xy: tuple[float, float]) -> np.ndarray:
    """XYZ (Y = 1) of chromaticity ``xy``."""
    x, y = xy
    return np.array([x / y, 1.0, (1 - x - y) / y])


def _srgb_colorants() -> np.ndarray:
    """sRGB's RGB -> XYZ matrix adapted from D65 to D50 by Bradford; its columns are the colorant tags.

    Rounded to s15Fixed16 as LittleCMS rounds its built-in sRGB's: the two profiles' matrices are the same.
    """
    xyz = np.stack([_white_xyz(xy) for xy in SRGB_PRIMARIES], axis=1)  # primaries at Y = 1, as columns
    white = _white_xyz(SRGB_WHITE)
    to_xyz = xyz * np.linalg.solve(xyz, white)  # scaled so that RGB = 1 gives the white
    bradford = np.array(BRADFORD)
    cones = np.diag((bradford @ np.array(D50)) / (bradford @ white))
    return np.rint(np.linalg.inv(bradford) @ cones @ bradford @ to_xyz * 65536) / 65536


def _s15fixed16(values) -> bytes:
    """Signed 15.16 fixed point, big-endian (ICC.1 5.3.6)."""
    return b"".join(struct.pack(">i", round(value * 65536)) for value in values)


def _xyz_tag(xyz) -> bytes:
    """An XYZType tag (ICC.1 6.5.26): one XYZ number."""
    return b"XYZ " + bytes(4) + _s15fixed16(xyz)


def _curve_tag(linear: np.ndarray) -> bytes:
    """A curveType tag (ICC.1 6.5.3): ``linear`` (0..1 at evenly spaced inputs) as 16-bit values."""
    return b"curv" + bytes(4) + struct.pack(">I", len(linear)) + np.rint(linear * 65535).astype(">u2").tobytes()


def _text_tag(text: str) -> bytes:
    """A v2 textType tag (ICC.1:2001 6.5.18): NUL-terminated ASCII."""
    return b"text" + bytes(4) + text.encode("ascii") + b"\0"


def _text_description_tag(text: str) -> bytes:
    """A v2 textDescriptionType tag (ICC.1:2001 6.5.17): ASCII, with empty Unicode and ScriptCode parts."""
    ascii_text = text.encode("ascii") + b"\0"
    return (b"desc" + bytes(4) + struct.pack(">I", len(ascii_text)) + ascii_text
            + struct.pack(">IIHB", 0, 0, 0, 0) + bytes(67))  # Unicode language, count; ScriptCode code, count, text


def _icc_header(size: int, date: tuple[int, ...], flags: int = STANDALONE_FLAGS) -> bytes:
    """The 128-byte profile header (ICC.1:2001 6.1), field by field with their offsets."""
    return b"".join([
        struct.pack(">I", size),  # 0: profile size in bytes
        NO_SIGNATURE,  # 4: preferred CMM
        struct.pack(">I", ICC_VERSION),  # 8: profile format version
        DISPLAY_CLASS, RGB_SPACE, XYZ_PCS,  # 12, 16, 20: device class, data colour space, connection space
        struct.pack(">6H", *date),  # 24: creation date and time
        b"acsp",  # 36: profile file signature
        NO_SIGNATURE,  # 40: primary platform
        struct.pack(">I", flags),  # 44: flags: bit 0 embedded in a file, bit 1 only usable with its file's data
        NO_SIGNATURE, NO_SIGNATURE,  # 48, 52: device manufacturer and model
        bytes(8),  # 56: device attributes: none
        struct.pack(">I", HEADER_INTENT),  # 64: rendering intent
        _s15fixed16(D50),  # 68: connection space illuminant
        NO_SIGNATURE,  # 80: creator
        bytes(44),  # 84: reserved, zero (v4 puts the profile ID in the first 16)
    ])


def _icc_profile(tags: list[tuple[bytes, bytes]], date: tuple[int, ...], flags: int = STANDALONE_FLAGS) -> bytes:
    """Header, tag table and tag data, each tag 4-byte aligned; identical tag bodies are stored once."""
    table, data, offsets = b"", b"", {}
    start = HEADER_SIZE + 4 + TAG_ENTRY * len(tags)
    for signature, body in tags:
        if body not in offsets:
            offsets[body] = start + len(data)
            data += body + bytes(-len(body) % 4)
        table += signature + struct.pack(">II", offsets[body], len(body))
    size = start + len(data)
    return _icc_header(size, date, flags) + struct.pack(">I", len(tags)) + table + data


def describe(profile: bytes) -> str:
    """The profile's description (``desc`` tag), or ``"an unnamed profile"``.

    Examples
    --------
    >>> describe(srgb_profile())
    'sRGB IEC61966-2.1'
    """
    from PIL import ImageCms

    try:
        name = ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(profile))).strip()
    except (OSError, ImageCms.PyCMSError):
        name = ""
    return name or "an unnamed profile"


def is_srgb(profile: bytes) -> bool:
    """Whether converting with ``profile`` to sRGB leaves every colour where it is (within 16/65535).

    The tolerance is that of an ICC v2 sRGB profile (:func:`srgb_profile`, and cameras'): its curve
    is a table of 16-bit values, which LittleCMS evaluates in 16 bits even for float pixels, so
    colours move by up to 1/65535 of linear light, times 12.92 (the sRGB encoding's slope near black).
    That is 1/16 of an 8-bit step; other colour spaces move some colours by hundreds of 16-bit steps.

    Raises
    ------
    ProfileError
        The profile cannot be read, or is not an RGB, grey or CMYK profile.
    """
    return _colour_space(profile)[1] == 3 and srgb_deviation(profile) <= SRGB_TOLERANCE


def near_srgb(profile: bytes) -> bool:
    """Whether ``profile`` is an sRGB variant: RGB or grey, and converting with it to sRGB moves no colour
    by a whole 8-bit step (:data:`NEAR_SRGB`). Such profiles differ from sRGB only in how their colorants
    were rounded or adapted, as the ``sRGB IEC61966-2.1`` profile many PNGs carry: its green moves by
    0.45/255, while Display P3 or Adobe RGB move colours by tens of 8-bit steps.

    >>> near_srgb(srgb_profile()), near_srgb(imagecodecs.cms_profile("adobergb"))
    (True, False)
    """
    return _colour_space(profile)[1] != 4 and srgb_deviation(profile) < NEAR_SRGB


def srgb_deviation(profile: bytes) -> float:
    """The largest change of a colour converted with ``profile`` to sRGB, over a grid of colours
    (:data:`PROBE_STEPS` per channel; a grey profile: its greys against the same sRGB greys); inf for CMYK.

    Raises
    ------
    ProfileError
        The profile cannot be read, or is not an RGB, grey or CMYK profile.
    """
    return _srgb_deviation(hashlib.sha256(profile).digest(), profile)


@functools.lru_cache(maxsize=16)
def _srgb_deviation(digest: bytes, profile: bytes) -> float:
    space, channels = _colour_space(profile)
    steps = np.linspace(0, 1, PROBE_STEPS, dtype=np.float32)
    if channels == 1:  # lcms takes grey as (H, W) and gives RGB
        probe = np.repeat(steps.reshape(1, -1, 1), 3, axis=-1)
        return float(np.abs(_transform(steps.reshape(1, -1), profile, space) - probe).max())
    if channels != 3:
        return math.inf
    probe = np.stack(np.meshgrid(steps, steps, steps, indexing="ij"), axis=-1).reshape(1, -1, 3)
    return float(np.abs(_transform(probe, profile, space) - probe).max())


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


def tag_signatures(profile: bytes) -> list[bytes]:
    """The signatures in the profile's tag table (ICC.1 7.3), as far as the profile holds them."""
    count = int.from_bytes(profile[HEADER_SIZE:HEADER_SIZE + 4], "big")
    table = profile[HEADER_SIZE + 4:HEADER_SIZE + 4 + TAG_ENTRY * count]
    return [table[i:i + 4] for i in range(0, len(table) - TAG_ENTRY + 1, TAG_ENTRY)]


def check_output_profile(profile: bytes) -> str:
    """The description (:func:`describe`) of a CMYK output profile that can separate sRGB into ink.

    Raises
    ------
    ProfileError
        What the profile is instead, as words to follow "the file is": not an ICC profile, another
        colour space or device class, no colour -> ink table (B2A0/B2A1: the profile can read the
        press's CMYK, not make it), or a table LittleCMS cannot use.

    Examples
    --------
    >>> check_output_profile(srgb_profile())
    Traceback (most recent call last):
    ...
    nnst_hr.icc.ProfileError: an RGB profile, not a CMYK one
    """
    space, _ = _colour_space(profile)
    if space != "cmyk":
        raise ProfileError(f"an {space.upper()} profile, not a CMYK one" if space == "rgb"
                           else f"a {space} profile, not a CMYK one")
    device_class = profile[12:16]
    if device_class != OUTPUT_CLASS:
        kind = DEVICE_CLASSES.get(device_class, f"a '{device_class.decode('latin-1')}'")
        raise ProfileError(f"{kind} profile, not an output (press) profile")
    if not set(TO_DEVICE_TAGS) & set(tag_signatures(profile)):
        raise ProfileError("a CMYK profile without a colour -> ink table (B2A0): it reads CMYK but cannot make it")
    srgb_to_cmyk(np.zeros((1, 2, 3), np.float32) + np.float32([0, 1])[None, :, None], profile)  # lcms reads it
    return describe(profile)


def srgb_to_cmyk(image: np.ndarray, profile: bytes, bits: int | None = None) -> np.ndarray:
    """sRGB pixels separated into a press's ink through its CMYK output profile.

    Relative colorimetric with black-point compensation (:data:`INTENT`, :data:`BPC`), as
    reading: the paper's white is no ink, sRGB's black the press's darkest ink, colours the press
    cannot print are clipped by the profile's own table. Float throughout; converted
    :data:`SEPARATE_ROWS` rows at a time.

    Parameters
    ----------
    image : numpy.ndarray
        float32 ``(H, W, 3)`` sRGB in ``[0, 1]``.
    profile : bytes
        A CMYK output profile (:func:`check_output_profile`).
    bits : {8, 16} or None
        Return the ink as code values of this many bits (rounded to the nearest), band by band: no
        full-size float ink is made. None: float.

    Returns
    -------
    numpy.ndarray
        ``(H, W, 4)``: cyan, magenta, yellow, black ink, 0 = none; float32 in ``[0, 1]`` (as
        :func:`cmyk_to_srgb` takes it), or uint8/uint16 codes with ``bits``.

    Raises
    ------
    ProfileError
        LittleCMS cannot build the transform.
    """
    height, width = image.shape[:2]
    dtype = {None: np.float32, 8: np.uint8, 16: np.uint16}[bits]
    scale = np.float32(1 if bits is None else 2**bits - 1)
    ink = np.empty((height, width, 4), dtype)
    for y0 in range(0, height, SEPARATE_ROWS):
        band = np.ascontiguousarray(image[y0:y0 + SEPARATE_ROWS, :, :3], np.float32)
        try:
            out = imagecodecs.cms_transform(band, _lcms_srgb(), profile, colorspace="rgb", outcolorspace="cmyk",
                                            intent=INTENT, flags=BPC)
        except (imagecodecs.CmsError, ValueError) as exc:
            raise ProfileError(f"a profile LittleCMS cannot use ({exc})") from exc
        band = np.clip(out / np.float32(INK_PERCENT), 0, 1) * scale
        ink[y0:y0 + SEPARATE_ROWS] = band if bits is None else np.rint(band)
    return ink


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
                                         colorspace=space, outcolorspace="rgb", intent=INTENT, flags=BPC)
    except (imagecodecs.CmsError, ValueError) as exc:
        raise ProfileError(f"the profile cannot be used ({exc})") from exc


@functools.cache
def _lcms_srgb() -> bytes:
    return imagecodecs.cms_profile("srgb")
