"""ICC profiles built for the tests, and the textbook colorimetry that says what they should do.

No CMYK profile ships with LittleCMS, Pillow or CI's machine, so :func:`cmyk_profile` builds one:
an ICC output ('prtr') profile whose A2B0 table maps ink to CIELAB (or CIE XYZ) by a closed form
(:func:`ink_to_srgb` gives the sRGB colour it means), as ICC v2 or v4, and whose B2A0 table maps
colour back to ink by a stated separation (:func:`separate`: black from the lightness, then the
three colour inks that make up the rest). A converter that reads the profile right reproduces that
closed form; one that inverts the ink, scales it wrongly, misreads the connection space's encoding
or ignores the profile does not.
"""

from __future__ import annotations

import struct

import numpy as np

D65 = (0.3127, 0.3290)
D50_XYZ = np.array([0.9642, 1.0, 0.8249])  # the ICC profile connection space's white (ICC.1 7.2.16)
SRGB_PRIMARIES = ((0.64, 0.33), (0.30, 0.60), (0.15, 0.06))
BRADFORD = np.array([[0.8951, 0.2664, -0.1614], [-0.7502, 1.7135, 0.0367], [0.0389, -0.0685, 1.0296]])

# The press the CMYK profile describes: how much of the red, green and blue light each ink absorbs
# at full coverage (real inks absorb some of their neighbours' thirds too), and its dot gain.
INK_ABSORPTION = np.array([[0.95, 0.15, 0.02],   # cyan
                           [0.10, 0.90, 0.10],   # magenta
                           [0.02, 0.20, 0.90],   # yellow
                           [0.90, 0.90, 0.90]])  # black
DOT_GAIN = 1.3  # printed coverage = 1 - (1 - ink) ** DOT_GAIN: a 50 % dot prints as 59 %
BLACK_INK = np.array([1.0, 1.0, 1.0, 1.0])  # the press's darkest, 400 %: what the profile's B2A0 gives PCS zero
CMYK_GRID = 9  # A2B0 grid points per ink: 9^4 nodes
INVERSE_GRID = 33  # B2A0 grid points per PCS channel: 33^3 nodes (with A2B0, a 330 kB profile)
CURVE_POINTS = 257  # entries of B2A0's L* input curve, which stretches L* 0..100 over the whole grid
# The separation (B2A0): no black in colours whose lightest linear channel is above BLACK_START; below it,
# black rises linearly to full where the lightest channel is the press's black's (black_point's colour)
BLACK_START = 0.25
NEWTON_STEPS = 40  # iterations of the colour inks' solve (converged to 1e-12 in gamut in under 10)
LAB_L_SCALE, LAB_AB_OFFSET = 65280 / 100, 128  # lut16 encodes PCS Lab as L * 652.8, (a + 128) * 256 (ICC.1:2001 6.5.7)
XYZ_SCALE = 32768  # lut16 encodes PCS XYZ as u1Fixed15: 1.0 = 0x8000 (ICC.1:2001 6.5.7, the same in v4)
VERSIONS = {2: 0x02100000, 4: 0x04200000}  # header version field (BCD) of the profiles built here


def xy_to_xyz(x: float, y: float) -> np.ndarray:
    """XYZ of chromaticity xy at Y = 1."""
    return np.array([x / y, 1.0, (1 - x - y) / y])


def rgb_to_xyz(primaries, white=D65) -> np.ndarray:
    """The RGB -> XYZ matrix of a colour space from its primaries' and white's xy (the textbook derivation)."""
    xyz = np.stack([xy_to_xyz(*xy) for xy in primaries], axis=-1)
    return xyz * np.linalg.solve(xyz, xy_to_xyz(*white))


def srgb_encode(linear: np.ndarray) -> np.ndarray:
    linear = np.clip(linear, 0, 1)
    return np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * linear ** (1 / 2.4) - 0.055)


def bradford(source_xyz: np.ndarray, target_xyz: np.ndarray) -> np.ndarray:
    """The 3 x 3 von Kries adaptation in Bradford's cone space from one white's XYZ to another's."""
    cones = np.diag((BRADFORD @ target_xyz) / (BRADFORD @ source_xyz))
    return np.linalg.inv(BRADFORD) @ cones @ BRADFORD


def ink_linear(ink: np.ndarray) -> np.ndarray:
    """The profile's closed form: ink ``(..., 4)`` in [0, 1] (0 = none) -> linear sRGB ``(..., 3)`` reflected."""
    coverage = 1 - (1 - np.asarray(ink, np.float64)) ** DOT_GAIN
    reflected = np.ones(coverage.shape[:-1] + (3,))
    for channel, absorption in enumerate(INK_ABSORPTION):
        reflected = reflected * (1 - coverage[..., channel : channel + 1] * absorption)
    return reflected


def srgb_to_pcs() -> np.ndarray:
    """Linear sRGB -> the profile connection space's XYZ (D50, Bradford-adapted), as LittleCMS's sRGB does it."""
    return bradford(xy_to_xyz(*D65), D50_XYZ) @ rgb_to_xyz(SRGB_PRIMARIES)


def black_point() -> float:
    """The luminance Y (white = 1) of :func:`cmyk_profile`'s black point, as LittleCMS detects it.

    For a CMYK output profile read relative colorimetric, ``cmsDetectBlackPoint`` (lcms2's cmssamp.c,
    ``BlackPointUsingPerceptualBlack``) sends L* = 0 through the profile's B2A0 and back through its
    A2B0, and keeps the L* of what comes back, made neutral (a* = b* = 0): the darkest ink the
    profile's own separation prints. (A v4 profile's round trip starts at ICC's perceptual reference
    black instead, L* 1.6: ``_cmsLinkProfiles`` forces compensation for v4 perceptual.) Either is
    :data:`BLACK_INK` here, at a node of the A2B0 grid.
    """
    return float((srgb_to_pcs() @ ink_linear(BLACK_INK))[1])


def compensate_black(linear: np.ndarray, black: float) -> np.ndarray:
    """LittleCMS's black-point compensation into sRGB, in linear sRGB: ``(linear - black) / (1 - black)``.

    lcms2 (cmscnvrt.c, ``ComputeBlackPointCompensation``) scales XYZ per channel so that the source's
    black point goes to the destination's and D50 stays: ``XYZ' = (XYZ - bp) (D50 - bp') / (D50 - bp) + bp'``.
    sRGB's black point bp' is 0, and the source's is neutral, ``bp = black * D50``, so
    ``XYZ' = (XYZ - black * D50) / (1 - black)``; sRGB's matrix is linear and takes D50 to (1, 1, 1),
    hence the same scale and offset on each linear sRGB channel. Colours darker than the black point in
    a channel come out negative, and are clipped.
    """
    return (linear - black) / (1 - black)


def ink_to_srgb(ink: np.ndarray, bpc: bool = True) -> np.ndarray:
    """The sRGB colour ``(..., 3)`` that :func:`cmyk_profile` gives ink ``(..., 4)``, by the closed form,
    with LittleCMS's black-point compensation (``bpc``) or without."""
    linear = ink_linear(ink)
    return srgb_encode(compensate_black(linear, black_point()) if bpc else linear)


def xyz_to_lab(xyz: np.ndarray, white: np.ndarray = D50_XYZ) -> np.ndarray:
    """CIE 1976 L*a*b* of XYZ ``(..., 3)`` relative to ``white``."""
    t = xyz / white
    f = np.where(t > (6 / 29) ** 3, np.cbrt(t), t / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], axis=-1)


def cmyk_profile(grid: int = CMYK_GRID, description: str = "Test press CMYK", pcs: bytes = b"Lab ",
                 version: int = 2, black_start: float = BLACK_START) -> bytes:
    """An ICC CMYK output profile whose A2B0 is :func:`ink_to_srgb` sampled on ``grid``^4 nodes.

    The nodes hold the Lab (``pcs`` ``b"Lab "``) or XYZ (``b"XYZ "``) of the closed form's sRGB colour,
    D50 as the profile connection space is, adapted from D65 by Bradford as LittleCMS's sRGB profile is;
    media white is D50, so relative colorimetric changes nothing; its black point is :data:`BLACK_INK`'s
(:func:`black_point`). ``version`` 2 (ICC.1:2001: ``desc``
    and ``cprt`` as textDescriptionType and textType) or 4 (ICC.1:2010: both multiLocalizedUnicodeType);
    the table is a lut16 ('mft2') in both, as many real v4 CMYK profiles keep it. B2A0 (PCS -> ink)
    is :func:`separate` on an :data:`INVERSE_GRID`^3 grid of the PCS (through input curves: a Lab
    PCS's L* stretched so that L* 100, the paper, is a node; an XYZ PCS's cube roots, so that the
    darkest nodes are darker than the press prints): writing CMYK uses it, and reading uses it to
    find the black point: the darkest PCS colours -> :data:`BLACK_INK` (v2: L* = 0; v4: ICC's
    perceptual reference black, L* 1.6, see :func:`black_point`). ``black_start``: where the
    separation's black starts (:func:`separate`): another press's B2A0 for the same inks.
    """
    steps = np.linspace(0, 1, grid)
    ink = np.stack(np.meshgrid(steps, steps, steps, steps, indexing="ij"), axis=-1)  # cyan varies slowest
    xyz = ink_linear(ink) @ srgb_to_pcs().T
    if pcs == b"XYZ ":
        codes = xyz * XYZ_SCALE
    else:
        lab = xyz_to_lab(xyz)
        codes = np.stack([lab[..., 0] * LAB_L_SCALE, (lab[..., 1] + LAB_AB_OFFSET) * 256,
                          (lab[..., 2] + LAB_AB_OFFSET) * 256], axis=-1)
    inverse, curves = _inverse_table(pcs, black_start)
    if version == 4:
        texts = [(b"desc", _mluc(description)), (b"cprt", _mluc("No copyright, test data"))]
    else:
        texts = [(b"desc", _text_description(description)),
                 (b"cprt", b"text" + bytes(4) + b"No copyright, test data\0")]
    tags = [
        *texts,
        (b"wtpt", b"XYZ " + bytes(4) + b"".join(map(_s15fixed16, D50_XYZ))),
        (b"A2B0", _lut16(codes, grid, 4, 3)),
        (b"B2A0", _lut16(inverse * 65535, INVERSE_GRID, 3, 4, curves)),
    ]
    return _profile(b"prtr", b"CMYK", pcs, tags, VERSIONS[version])


def separate(linear: np.ndarray, black_start: float = BLACK_START) -> np.ndarray:
    """The profile's separation: linear sRGB reflected ``(..., 3)`` (D50-relative, no black-point scaling) ->
    ink ``(..., 4)`` in [0, 1], the inverse of :func:`ink_linear` for colours the press prints.

    Black coverage is 0 where the lightest channel is above ``black_start``, full at the press's
    black, linear between; cyan, magenta and yellow coverage then solve ``ink_linear = linear`` (Newton
    on the logarithm of the reflectance, clipped to [0, 1]: a colour out of gamut gets the nearest
    coverage it can); the coverage is turned into ink by undoing the dot gain.
    """
    target = np.clip(np.asarray(linear, np.float64), 1e-6, 1)
    lightest = target.max(axis=-1, keepdims=True)
    black_lightest = ink_linear(BLACK_INK).max()
    black = np.clip((black_start - lightest) / (black_start - black_lightest), 0, 1)
    rest = np.log(np.clip(target / (1 - black * INK_ABSORPTION[3]), 1e-6, 1))  # what the colour inks must make
    colour = np.full(target.shape, 0.5)
    absorption = INK_ABSORPTION[:3]  # (ink, channel)
    for _ in range(NEWTON_STEPS):
        left = 1 - colour[..., :, None] * absorption  # (..., ink, channel)
        error = np.log(left).sum(axis=-2) - rest
        jacobian = np.swapaxes(-absorption / left, -1, -2)  # (..., channel, ink)
        colour = np.clip(colour - np.linalg.solve(jacobian, error[..., None])[..., 0], 0, 1)
    coverage = np.concatenate([colour, black], axis=-1)
    return 1 - (1 - coverage) ** (1 / DOT_GAIN)


def srgb_to_ink(srgb: np.ndarray, bpc: bool = True, black_start: float = BLACK_START) -> np.ndarray:
    """The ink ``(..., 4)`` :func:`cmyk_profile` gives sRGB colour ``(..., 3)`` (relative colorimetric, with
    LittleCMS's black-point compensation, ``bpc``, or without): :func:`ink_to_srgb`'s inverse in gamut.

    Compensation into the press is the reverse of :func:`compensate_black`'s: sRGB's black to the
    press's, ``linear -> black + (1 - black) linear``."""
    linear = srgb_decode(np.asarray(srgb, np.float64))
    black = black_point()
    return separate(black + (1 - black) * linear if bpc else linear, black_start)


def srgb_decode(encoded: np.ndarray) -> np.ndarray:
    encoded = np.clip(encoded, 0, 1)
    return np.where(encoded <= 0.04045, encoded / 12.92, ((encoded + 0.055) / 1.055) ** 2.4)


def lab_to_xyz(lab: np.ndarray, white: np.ndarray = D50_XYZ) -> np.ndarray:
    """CIE XYZ of L*a*b* ``(..., 3)`` relative to ``white``: :func:`xyz_to_lab`'s inverse."""
    fy = (lab[..., 0] + 16) / 116
    f = np.stack([fy + lab[..., 1] / 500, fy, fy - lab[..., 2] / 200], axis=-1)
    return white * np.where(f > 6 / 29, f ** 3, 3 * (6 / 29) ** 2 * (f - 4 / 29))


def _inverse_table(pcs: bytes, black_start: float = BLACK_START) -> tuple[np.ndarray, list[np.ndarray]]:
    """B2A0's grid, ``(INVERSE_GRID,) * 3 + (4,)`` ink in [0, 1], and its three input curves (code -> grid
    position, 16 bits at :data:`CURVE_POINTS` evenly spaced codes).

    A Lab PCS's L* codes 0 .. 0xFF00 (L* 0 .. 100) are stretched over the whole grid, so that the
    paper white is a node (lut16 encodes L* 100 as 0xFF00 of 0xFFFF: a grid over the codes had it
    between two nodes, and white paper got a trace of ink); a* and b* are as coded. An XYZ PCS's
    codes go through their cube root, as L* does: on a grid even in XYZ, the first node above
    black was L* 30, so ICC's perceptual black (L* 1.6, a v4 profile's black point search) was
    half way to it, not the press's black."""
    steps = np.linspace(0, 1, INVERSE_GRID)
    grid = np.stack(np.meshgrid(steps, steps, steps, indexing="ij"), axis=-1)
    codes = np.linspace(0, 1, CURVE_POINTS)
    if pcs == b"XYZ ":
        xyz = grid ** 3 * 65535 / XYZ_SCALE
        curves = [np.cbrt(codes) * 65535] * 3
    else:
        lab = np.stack([grid[..., 0] * 100, grid[..., 1] * 65535 / 256 - LAB_AB_OFFSET,
                        grid[..., 2] * 65535 / 256 - LAB_AB_OFFSET], axis=-1)
        xyz = lab_to_xyz(lab)
        curves = [np.minimum(codes * 65535 / (100 * LAB_L_SCALE), 1) * 65535, codes * 65535, codes * 65535]
    linear = xyz @ np.linalg.inv(srgb_to_pcs()).T
    return separate(linear, black_start), curves


def without_tag(profile: bytes, signature: bytes) -> bytes:
    """``profile`` with the tag ``signature`` renamed to an unknown one in its tag table, so that readers miss it."""
    table_end = 132 + 12 * int.from_bytes(profile[128:132], "big")
    return profile[:132] + profile[132:table_end].replace(signature, b"zzzz") + profile[table_end:]


def _profile(device_class: bytes, space: bytes, pcs: bytes, tags: list[tuple[bytes, bytes]],
             version: int = VERSIONS[2]) -> bytes:
    """Header, tag table and 4-byte aligned tag data (ICC.1:2001 section 6; v4's profile ID left zero, "not
    computed")."""
    start = 128 + 4 + 12 * len(tags)
    table, data = b"", b""
    for signature, body in tags:
        body += bytes(-len(body) % 4)
        table += signature + struct.pack(">II", start + len(data), len(body))
        data += body
    header = (struct.pack(">I4sI4s4s4s", start + len(data), b"", version, device_class, space, pcs)
              + bytes(12) + b"acsp" + bytes(28) + b"".join(map(_s15fixed16, D50_XYZ)) + bytes(48))
    return header + struct.pack(">I", len(tags)) + table + data


def _lut16(clut: np.ndarray, grid: int, inputs: int, outputs: int, curves: list[np.ndarray] | None = None) -> bytes:
    """An 'mft2' tag: identity matrix and output curves around ``clut`` (``grid``^inputs x outputs codes);
    identity input curves, or ``curves`` (one per input, 16-bit values at evenly spaced inputs, of one length)."""
    def table(values):
        return np.rint(np.clip(values, 0, 65535)).astype(">u2").tobytes()

    identity = np.linspace(0, 65535, 2)
    curves = curves or [identity] * inputs
    return (b"mft2" + bytes(4) + struct.pack(">BBBB", inputs, outputs, grid, 0)
            + b"".join(map(_s15fixed16, np.eye(3).ravel())) + struct.pack(">HH", len(curves[0]), 2)
            + b"".join(map(table, curves)) + table(clut) + table(identity) * outputs)


def _text_description(text: str) -> bytes:
    ascii_text = text.encode("ascii") + b"\0"
    return (b"desc" + bytes(4) + struct.pack(">I", len(ascii_text)) + ascii_text
            + struct.pack(">IIHB", 0, 0, 0, 0) + bytes(67))  # no Unicode, no ScriptCode description


def _mluc(text: str) -> bytes:
    """A v4 multiLocalizedUnicodeType tag (ICC.1:2010 10.13): one record, en-US, UTF-16BE."""
    utf16 = text.encode("utf-16-be")
    return b"mluc" + bytes(4) + struct.pack(">II2s2sII", 1, 12, b"en", b"US", len(utf16), 28) + utf16


def _s15fixed16(value: float) -> bytes:
    return struct.pack(">i", round(value * 65536))
