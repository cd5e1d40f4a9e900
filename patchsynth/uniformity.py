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
test) and updates it on every accept. Here the summed occupancy of every centre is computed once
per PatchMatch sweep, as an integer, making the test one read and a multiply by
:func:`penalty_scale`; freezing it for a sweep also keeps the sweep free of write races, so results
do not depend on thread timing. It is written into the first word of the source's candidate
records (:mod:`patchsynth.patchmatch`), where ``FORBIDDEN`` marks the centres outside
``source_mask``, so one random access answers both questions.
"""

import numba
import numpy as np

#: Summed occupancy that marks a forbidden centre.
FORBIDDEN = np.uint32(0xFFFFFFFF)
#: Usage counts saturate here, so that ``p**4`` times a count fits the ``int32`` sums (for p = 5,
#: 3.4 million uses of one centre: far beyond the point where its penalty excludes it anyway).
_USAGE_LIMIT = 2**31 - 1


@numba.njit(cache=True)
def _usage(field, source_shape, limit):
    usage = np.zeros(source_shape, dtype=np.int32)
    for y in range(field.shape[0]):
        for x in range(field.shape[1]):
            qy, qx = field[y, x, 0], field[y, x, 1]
            usage[qy, qx] = min(usage[qy, qx] + 1, limit)
    return usage


@numba.njit(cache=True, parallel=True)
def _box(image, radius):
    """Sum over the ``(2 radius + 1)^2`` box around every pixel; pixels outside count as 0."""
    h, w = image.shape
    rows = np.zeros_like(image)
    for y in numba.prange(h):
        for sy in range(max(0, y - radius), min(h, y + radius + 1)):
            for x in range(w):
                rows[y, x] += image[sy, x]
    out = np.empty_like(image)
    for y in numba.prange(h):
        total = 0
        for x in range(min(w, radius)):
            total += rows[y, x]
        # A running sum along the row: add the pixel entering the box, drop the one leaving it.
        for x in range(w):
            if x + radius < w:
                total += rows[y, x + radius]
            if x - radius - 1 >= 0:
                total -= rows[y, x - radius - 1]
            out[y, x] = total
    return out


def usage(field, source_shape, limit=_USAGE_LIMIT):
    """How many target pixels use each source centre, at most ``limit``: ``int32 (Hs, Ws)``."""
    return _usage(field, (int(source_shape[0]), int(source_shape[1])), limit)


def patch_occupancy(field, source_shape, patch_size):
    """Occupancy summed over the patch of every source centre, ``int32 (Hs, Ws)``.

    ``occupancy = box(usage)`` (a centre's patch covers its ``p x p`` neighbourhood), and the sum
    over a candidate's patch is one more ``p x p`` box. Pixels outside the source count as empty.
    """
    radius = patch_size // 2
    return _box(_box(usage(field, source_shape, _USAGE_LIMIT // patch_size**4), radius), radius)


def penalty_scale(uniformity, patch_size, target_pixels, valid_centres):
    """The factor that turns summed occupancy into the penalty, ``uniformity / (p**2 * fair_share)``."""
    fair_share = patch_size**2 * target_pixels / max(valid_centres, 1)
    return np.float32(uniformity / (patch_size**2 * fair_share))


@numba.njit(cache=True, parallel=True)
def _store(occupancy, valid, records):
    for y in numba.prange(occupancy.shape[0]):
        for x in range(occupancy.shape[1]):
            if valid[y, x]:
                records[y, x, 0] = occupancy[y, x]
            else:
                records[y, x, 0] = FORBIDDEN


def store_occupancy(field, valid, patch_size, records):
    """Write the summed occupancy of every source centre into ``records[..., 0]``.

    Parameters
    ----------
    field : int32 (Ht, Wt, 2)
        Current field; its usage of the source sets the occupancy.
    valid : bool (Hs, Ws)
        Allowed centres; the others get ``FORBIDDEN``.
    patch_size : int
    records : uint32 (Hs, Ws, k)
        The source's candidate records (:func:`patchsynth.patchmatch.candidate_records`).
    """
    _store(patch_occupancy(field, valid.shape, patch_size), valid, records)
