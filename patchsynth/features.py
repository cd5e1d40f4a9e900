"""Weighted, 8-bit, mirror-padded feature stacks: what the patch distance compares.

The energy of a patch pair is a weighted sum of squared channel differences. Multiplying every
channel by the square root of its weight once, here, turns it into a plain sum of squares in the
inner loop. The weighted values are stored as ``uint8`` (like ebsynth's images): the channel
with the largest weight spans 0..255 and the distance in these steps times :func:`quantization`'s
``unit`` is the energy on ``[0, 1]`` values. PatchMatch reads the source at random places, so it
is bound by memory latency; a quarter of the bytes keeps far more of the source in cache. The
stack is padded by the patch radius with mirrored pixels (numpy's ``"reflect"``) on every side, so
a source patch centred anywhere in the image, border included, is read without bounds checks.
(Target patches are clipped to the target instead, see :func:`patchsynth.patchmatch.patch_extent`;
the target uses the same layout.)

Layout: ``uint8 (H + 2r, W + 2r, C)`` with the style channels first, then the guide channels.
"""

import numba
import numpy as np


@numba.njit(cache=True, parallel=True)
def fill_border(padded, radius):
    """Mirror the interior of ``padded`` (``(H + 2r, W + 2r, C)``) into its ``radius``-wide border, in place."""
    hp, wp = padded.shape[:2]
    h = hp - 2 * radius
    w = wp - 2 * radius
    for y in numba.prange(hp):
        sy = min(abs(y - radius), 2 * (h - 1) - (y - radius)) if h > 1 else 0
        sy = max(sy, 0) + radius
        for x in range(wp):
            sx = min(abs(x - radius), 2 * (w - 1) - (x - radius)) if w > 1 else 0
            sx = max(sx, 0) + radius
            if sy != y or sx != x:
                for c in range(padded.shape[2]):
                    padded[y, x, c] = padded[sy, sx, c]


@numba.njit(cache=True, parallel=True)
def write_channels(padded, radius, image, first, factor):
    """Quantize ``image * factor`` (``(H, W, k)``, ``factor (k,)``) into channels ``first .. first + k``
    of the interior."""
    for y in numba.prange(image.shape[0]):
        for x in range(image.shape[1]):
            for c in range(image.shape[2]):
                value = image[y, x, c] * factor[c] + np.float32(0.5)
                padded[y + radius, x + radius, first + c] = min(max(value, 0.0), 255.0)


def quantization(style_scale, guide_scale):
    """8-bit factors of the style and guide channels and the energy of one step squared.

    Parameters
    ----------
    style_scale, guide_scale : float32 (Cs,), (Cg,)
        Square roots of the channel weights.

    Returns
    -------
    style_factor, guide_factor : float32 (Cs,), (Cg,)
        Multipliers from ``[0, 1]`` values to stored steps.
    unit : float
        Energy of a squared difference of one step.
    """
    top = max(float(style_scale.max(initial=0.0)), float(guide_scale.max(initial=0.0)), 1e-12)
    factor = np.float32(255.0 / top)
    return style_scale * factor, guide_scale * factor, (top / 255.0) ** 2


def feature_stack(style, guides, style_factor, guide_factor, radius):
    """A padded, weighted, 8-bit feature stack of ``style`` and ``guides``.

    Parameters
    ----------
    style : float32 (H, W, Cs) or None
        Style channels; ``None`` leaves them zero (a target before its first vote).
    guides : float32 (H, W, Cg)
    style_factor, guide_factor : float32 (Cs,), (Cg,)
        Multipliers to stored steps (:func:`quantization`).
    radius : int
        Patch radius ``r``.

    Returns
    -------
    uint8 (H + 2r, W + 2r, Cs + Cg)
    """
    h, w = guides.shape[:2]
    cs = style_factor.shape[0]
    padded = np.zeros((h + 2 * radius, w + 2 * radius, cs + guides.shape[2]), dtype=np.uint8)
    if style is not None:
        write_channels(padded, radius, style, 0, style_factor)
    write_channels(padded, radius, guides, cs, guide_factor)
    fill_border(padded, radius)
    return padded


def pad(image, radius):
    """``image`` (``float32 (H, W, C)``) mirror-padded by ``radius`` (numpy's ``"reflect"``)."""
    return np.pad(image, ((radius, radius), (radius, radius), (0, 0)), mode="reflect")
