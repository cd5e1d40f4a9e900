"""Uniform use of the source: ebsynth's occupancy penalty (Kaspar et al. 2015).

Every target pixel's patch covers ``p * p`` source pixels; the *occupancy* of a source pixel is
how many target patches cover it. A candidate source patch pays

    ``uniformity * (occupancy summed over the candidate's patch) / (p * p * fair_share)``,

with ``fair_share = p * p * (target pixels) / (allowed source centres)``, the occupancy every source
pixel would have if all were used equally; the penalty is therefore ``uniformity`` for a patch used
exactly its fair share. ``uniformity`` is on the scale of the patch error, a sum of weighted
squared differences of ``[0, 1]`` values over the patch: ebsynth's default 3500 on its 0..255 scale
is ``3500 / 255**2 = 0.054`` here.

ebsynth sums the occupancy over the candidate's patch for every test (two 25-value sums per accept
test) and updates it on every accept. Here the penalty of every centre is computed once per
PatchMatch sweep, making the test one read; freezing it for a sweep also keeps the sweep free of
write races, so results do not depend on thread timing. The same map marks forbidden centres
with an infinite penalty, so one random access answers both questions.
"""

import numba
import numpy as np


@numba.njit(cache=True)
def _usage(field, source_shape):
    usage = np.zeros(source_shape, dtype=np.float32)
    for y in range(field.shape[0]):
        for x in range(field.shape[1]):
            usage[field[y, x, 0], field[y, x, 1]] += 1.0
    return usage


@numba.njit(cache=True, parallel=True)
def _box_rows(image, radius):
    h, w = image.shape
    out = np.zeros_like(image)
    for y in numba.prange(h):
        for dy in range(-radius, radius + 1):
            sy = y + dy
            if 0 <= sy < h:
                for x in range(w):
                    out[y, x] += image[sy, x]
    return out


@numba.njit(cache=True, parallel=True)
def _box_columns(image, radius):
    h, w = image.shape
    out = np.zeros_like(image)
    for y in numba.prange(h):
        for x in range(w):
            total = 0.0
            for sx in range(max(0, x - radius), min(w, x + radius + 1)):
                total += image[y, sx]
            out[y, x] = total
    return out


def _box(image, radius):
    return _box_columns(_box_rows(image, radius), radius)


def usage(field, source_shape):
    """How many target pixels use each source centre: ``float32 (Hs, Ws)``."""
    return _usage(field, (int(source_shape[0]), int(source_shape[1])))


def patch_occupancy(field, source_shape, patch_size):
    """Occupancy summed over the patch of every source centre, ``float32 (Hs, Ws)``.

    ``occupancy = box(usage)`` (a centre's patch covers its ``p x p`` neighbourhood), and the sum
    over a candidate's patch is one more ``p x p`` box. Pixels outside the source count as empty.
    """
    radius = patch_size // 2
    return _box(_box(usage(field, source_shape), radius), radius)


def penalty_scale(uniformity, patch_size, target_pixels, valid_centres):
    """The factor that turns summed occupancy into the penalty, ``uniformity / (p**2 * fair_share)``."""
    fair_share = patch_size**2 * target_pixels / max(valid_centres, 1)
    return np.float32(uniformity / (patch_size**2 * fair_share))


@numba.njit(cache=True, parallel=True)
def _penalize(occupancy, scale, valid):
    out = np.empty_like(occupancy)
    for y in numba.prange(occupancy.shape[0]):
        for x in range(occupancy.shape[1]):
            out[y, x] = occupancy[y, x] * scale if valid[y, x] else np.float32(np.inf)
    return out


def penalty(field, valid, patch_size, uniformity, valid_count):
    """Penalty of every source centre for the next sweep: ``float32 (Hs, Ws)``, ``inf`` where not valid.

    Parameters
    ----------
    field : int32 (Ht, Wt, 2)
        Current field; its usage of the source sets the occupancy.
    valid : bool (Hs, Ws)
        Allowed centres.
    patch_size : int
    uniformity : float
        Penalty of a patch used exactly its fair share; 0 leaves only the ``inf`` marks.
    valid_count : int
        Number of allowed centres (the fair share divides the target among them).
    """
    if uniformity == 0.0:
        return np.where(valid, np.float32(0.0), np.float32(np.inf)).astype(np.float32)
    scale = penalty_scale(uniformity, patch_size, field.shape[0] * field.shape[1], valid_count)
    return _penalize(patch_occupancy(field, valid.shape, patch_size), scale, valid)
