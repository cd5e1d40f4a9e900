"""Weighted, mirror-padded feature stacks: what the patch distance compares.

The energy of a patch pair is a weighted sum of squared channel differences. Multiplying every
channel by the square root of its weight once, here, turns it into a plain sum of squares in the
inner loop. The stack is padded by the patch radius with mirrored pixels (numpy's ``"reflect"``) on
every side, so a source patch centred anywhere in the image, border included, is read without
bounds checks. (Target patches are clipped to the target instead, see
:func:`patchsynth.patchmatch.patch_extent`; the target uses the same layout.)

Layout: ``float32 (H + 2r, W + 2r, C)`` with the style channels first, then the guide channels.
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
def write_channels(padded, radius, image, first, scale):
    """Write ``image * scale`` (``(H, W, k)``, ``scale (k,)``) into channels ``first .. first + k`` of the interior."""
    for y in numba.prange(image.shape[0]):
        for x in range(image.shape[1]):
            for c in range(image.shape[2]):
                padded[y + radius, x + radius, first + c] = image[y, x, c] * scale[c]


def feature_stack(style, guides, style_scale, guide_scale, radius):
    """A padded, weighted feature stack of ``style`` and ``guides``.

    Parameters
    ----------
    style : float32 (H, W, Cs) or None
        Style channels; ``None`` leaves them zero (a target before its first vote).
    guides : float32 (H, W, Cg)
    style_scale, guide_scale : float32 (Cs,), (Cg,)
        Square roots of the channel weights.
    radius : int
        Patch radius ``r``.

    Returns
    -------
    float32 (H + 2r, W + 2r, Cs + Cg)
    """
    h, w = guides.shape[:2]
    cs = style_scale.shape[0]
    padded = np.zeros((h + 2 * radius, w + 2 * radius, cs + guides.shape[2]), dtype=np.float32)
    if style is not None:
        write_channels(padded, radius, style, 0, style_scale)
    write_channels(padded, radius, guides, cs, guide_scale)
    fill_border(padded, radius)
    return padded


def pad(image, radius):
    """``image`` (``(H, W, C)``) mirror-padded by ``radius``, as a new ``float32`` array."""
    return feature_stack(None, image, np.zeros(0, np.float32), np.ones(image.shape[2], np.float32), radius)
