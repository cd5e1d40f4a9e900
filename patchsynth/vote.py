"""Voting: every target pixel becomes the weighted average of the overlapping source patches.

Target pixel ``(y, x)`` lies in the patches centred on its ``p * p`` neighbours ``c`` (those inside
the target); patch ``c`` copies source pixel ``field[c] + (y, x) - c`` there. Each patch is weighted
by ``1 / (1 + E_c / (p * p * N))`` (ebsynth's GPU weighting), with ``E_c`` its patch error and
``N`` the number of feature channels, so a badly matching patch counts less; ``E_c / (p * p * N)``
is its mean squared difference per value, in ``[0, 1]`` for unit weights.
"""

import numba
import numpy as np


@numba.njit(cache=True, parallel=True)
def vote(source, field, error, patch_size, error_scale):
    """Weighted average of overlapping patches.

    Parameters
    ----------
    source : float32 (Hs + 2r, Ws + 2r, C)
        Mirror-padded source channels to copy (:func:`patchsynth.features.pad`), unweighted.
    field : int32 (Ht, Wt, 2)
        ``(y, x)`` source centre of each target pixel's patch.
    error : float32 (Ht, Wt)
        Patch error of each target pixel's patch.
    patch_size : int
        Odd patch side ``p``.
    error_scale : float
        ``1 / (p * p * N)``; ``0`` gives the plain average.

    Returns
    -------
    float32 (Ht, Wt, C)
    """
    h, w = field.shape[:2]
    channels = source.shape[2]
    radius = patch_size // 2
    out = np.empty((h, w, channels), dtype=np.float32)
    # Each patch's weight once, instead of once per pixel it covers (a division each).
    weights = np.empty((h, w), dtype=np.float32)
    for y in numba.prange(h):
        for x in range(w):
            weights[y, x] = np.float32(1.0) / (np.float32(1.0) + error[y, x] * error_scale)
    for y in numba.prange(h):
        total = np.empty(channels, dtype=np.float32)
        for x in range(w):
            total[:] = 0.0
            weight_sum = np.float32(0.0)
            for dy in range(-radius, radius + 1):
                cy = y - dy
                if cy < 0 or cy >= h:
                    continue
                for dx in range(-radius, radius + 1):
                    cx = x - dx
                    if cx < 0 or cx >= w:
                        continue
                    weight = weights[cy, cx]
                    sy = field[cy, cx, 0] + dy + radius
                    sx = field[cy, cx, 1] + dx + radius
                    for c in range(channels):
                        total[c] += weight * source[sy, sx, c]
                    weight_sum += weight
            for c in range(channels):
                out[y, x, c] = total[c] / weight_sum
    return out
