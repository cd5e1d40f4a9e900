"""Patch distances and the PatchMatch search (Barnes et al. 2009) with a uniformity penalty.

Feature stacks are the padded, weighted arrays of :mod:`patchsynth.features`, viewed as 2-D
``(H + 2r, (W + 2r) * C)`` so that one patch row is one contiguous run of ``p * C`` bytes. The
patch centred on target pixel ``(y, x)`` starts at padded row ``y`` and column ``x * C``; the same
holds for a source centre. The distance is the sum of squared differences over the patch, clipped
to the target at its border (the source is mirror-padded, so every centre has a whole patch), and
is abandoned as soon as it exceeds the cost to beat.

A sweep visits every target pixel once and tries, in order: the two neighbours already visited
(propagation, Gauss-Seidel), ``GLOBAL_SAMPLES`` centres drawn from the whole source, and random
centres around the best after propagation at radii ``search_radius, search_radius / 2, ..., 1``
(random search). A candidate replaces the current centre when its distance plus its uniformity penalty
(:mod:`patchsynth.uniformity`) is lower.

Candidate records: far random candidates are cache misses, and almost all of them lose. Every
source centre has one 16-byte record, ``uint32 [summed occupancy, sums of channels 0-1, 2-3, 4-5]``
(channel sums of its patch, 16 bits each), so a single cache line gives its penalty, whether it is
allowed, and a lower bound of its distance: for ``n`` values, ``sum (a - b)^2 >= (sum a - sum
b)^2 / n`` (Cauchy-Schwarz), per channel. A candidate whose penalty plus bound cannot beat the
current cost is dropped without reading its patch; only the few that pass read the source.

Parallelism: the target is cut into strips of ``STRIP_ROWS`` rows, each scanned serially like
ebsynth's one-strip-per-thread scheme. Even strips run in parallel, then odd strips, so a strip
reads its neighbours' boundary rows while nobody writes them. Strips, random numbers and the
frozen occupancy do not depend on the thread count or timing, so a seed fixes the result.
An even strip starts its scan from rows that its odd neighbour rewrites later in the sweep, so
the field breaks where they meet: with straight boundaries that drew a line across a poster every
128 rows (patch jumps 8-11x the median there). Each column's boundaries are therefore moved down
by a random 0 to ``STRIP_DITHER - 1`` rows, drawn anew every sweep: the breaks scatter into the
texture.

Speed: the per-candidate functions are inlined and read single elements of flat views. A slice, or
an array passed to a function numba did not inline, costs an atomic reference-count update on the
array, which the threads fight over: removing them took 37 % off a sweep.
"""

import numba
import numpy as np

from .field import draw_pair, pixel_state
from .uniformity import FORBIDDEN

#: Rows per strip; each strip is scanned serially and strips run in parallel. Taller strips carry
#: propagation further down per sweep: 64 rows ended 3-4 % lower in error than 16 at the same cost.
STRIP_ROWS = 64
#: Spread of each column's strip boundaries, in rows (at most ``STRIP_ROWS``, so a pixel's
#: neighbours lie in its own strip or in an adjacent one, which runs in the other phase).
STRIP_DITHER = 16
#: Uniform samples from the whole source per pixel and sweep, on top of the radius sequence.
GLOBAL_SAMPLES = 1
#: 32-bit words per candidate record: summed occupancy, then two 16-bit channel sums per word.
RECORD_WORDS = 4
#: Channels whose patch sums bound the distance (the first ones: style, then guides).
BOUND_CHANNELS = 2 * (RECORD_WORDS - 1)
#: Largest patch side whose 8-bit channel sums fit 16 bits; larger patches go without the bound.
BOUND_MAX_PATCH = 15


@numba.njit(cache=True, fastmath=True, inline="always")
def patch_distance(target, source, t_start, s_start, t_stride, s_stride, extent, bound):
    """Sum of squared differences of two 8-bit patches, abandoned once it reaches ``bound``.

    ``target`` and ``source`` are the flat ``uint8`` views of 2-D feature views, ``t_stride`` and
    ``s_stride`` their row lengths; ``t_start`` and ``s_start`` the offsets of each patch's first
    row and column; ``extent = (i0, i1, j0, j1)`` the rows and columns (times the channel count)
    of the patch that are compared.
    """
    i0, i1, j0, j1 = extent
    # Unsigned offsets spare numba's negative-index wraparound, which keeps the loop from being
    # vectorized; explicit int32 (a row of p * C squares of at most 255 fits) keeps numba from
    # widening to int64. Together: 30 % less time per patch than row slices (microbenchmark).
    n = np.uint64(j1 - j0)
    t = np.uint64(t_start + i0 * t_stride + j0)
    s = np.uint64(s_start + i0 * s_stride + j0)
    total = 0
    for _ in range(i0, i1):
        row = np.int32(0)
        for j in range(n):
            d = np.int32(np.int32(target[t + j]) - np.int32(source[s + j]))
            row = np.int32(row + np.int32(d * d))
        total += row
        if total >= bound:
            return total
        t += np.uint64(t_stride)
        s += np.uint64(s_stride)
    return total


@numba.njit(cache=True, inline="always")
def patch_extent(y, x, h, w, patch_size, channels):
    """The part of the patch centred on target pixel ``(y, x)`` that lies inside the target.

    A border pixel's patch is clipped to the target, so a crop of the source matches the
    source exactly up to its border. Returns ``(i0, i1, j0, j1)``, columns times ``channels``.
    """
    radius = patch_size // 2
    return (max(0, radius - y), min(patch_size, h - y + radius),
            max(0, radius - x) * channels, min(patch_size, w - x + radius) * channels)


@numba.njit(cache=True, parallel=True, fastmath=True)
def field_distances(target, source, field, patch_size, channels, unit):
    """Patch distance of every target pixel to its centre in ``field``: ``float32 (Ht, Wt)``.

    ``unit`` converts squared 8-bit steps to energy (:func:`patchsynth.features.quantization`).
    """
    h, w = field.shape[:2]
    out = np.empty((h, w), dtype=np.float32)
    t, s = target.reshape(-1), source.reshape(-1)
    t_stride, s_stride = target.shape[1], source.shape[1]
    # No early exit; a finite bound, because fastmath code may assume there are no infinities.
    unbounded = np.iinfo(np.int64).max
    for y in numba.prange(h):
        for x in range(w):
            out[y, x] = unit * patch_distance(
                t, s, y * t_stride + x * channels,
                field[y, x, 0] * s_stride + field[y, x, 1] * channels, t_stride, s_stride,
                patch_extent(y, x, h, w, patch_size, channels), unbounded,
            )
    return out


@numba.njit(cache=True, parallel=True)
def patch_sums(stack, patch_size):
    """Packed channel sums of every patch of a padded feature stack: ``uint32 (H, W, 3)``.

    Word ``k`` holds the sums of channels ``2k`` (low 16 bits) and ``2k + 1`` (high 16 bits) over
    the ``p x p`` patch centred on each pixel of the unpadded image; channels past
    ``BOUND_CHANNELS`` are left out and absent ones count as 0. All zero (a bound of 0) for patches
    larger than ``BOUND_MAX_PATCH``.
    """
    h = stack.shape[0] - patch_size + 1
    w = stack.shape[1] - patch_size + 1
    channels = min(stack.shape[2], BOUND_CHANNELS)
    out = np.zeros((h, w, RECORD_WORDS - 1), dtype=np.uint32)
    if patch_size > BOUND_MAX_PATCH:
        return out
    for y in numba.prange(h):
        # Separable: the column sums of this row of patches, then sums of p columns.
        columns = np.zeros((stack.shape[1], channels), dtype=np.int32)
        for i in range(patch_size):
            for x in range(stack.shape[1]):
                for c in range(channels):
                    columns[x, c] += stack[y + i, x, c]
        for x in range(w):
            for c in range(channels):
                total = 0
                for j in range(patch_size):
                    total += columns[x + j, c]
                out[y, x, c // 2] |= np.uint32(total) << np.uint32(16 * (c % 2))
    return out


def candidate_records(source_stack, patch_size):
    """Zeroed occupancy plus :func:`patch_sums` of every source centre: ``uint32 (Hs, Ws, 4)``."""
    sums = patch_sums(source_stack, patch_size)
    records = np.zeros(sums.shape[:2] + (RECORD_WORDS,), dtype=np.uint32)
    records[..., 1:] = sums
    return records


@numba.njit(cache=True, inline="always")
def _bound(target_sums, y, x, records, qy, qx):
    """``sum over channels (target sum - source sum)^2`` of target pixel ``(y, x)`` and source
    centre ``(qy, qx)``; times ``unit / p^2``, a distance bound."""
    total = 0
    for k in range(RECORD_WORDS - 1):
        a = target_sums[y, x, k]
        b = records[qy, qx, k + 1]
        low = np.int64(a & np.uint32(0xFFFF)) - np.int64(b & np.uint32(0xFFFF))
        high = np.int64(a >> np.uint32(16)) - np.int64(b >> np.uint32(16))
        total += low * low + high * high
    return total


@numba.njit(cache=True, fastmath=True, inline="always")
def _candidate_cost(t, s, t_stride, s_stride, records, target_sums, full, y, x, qy, qx, channels,
                    extent, unit, bound_unit, scale, best):
    """Cost of source centre ``(qy, qx)`` for target pixel ``(y, x)``, or ``best`` if it cannot win.

    The centre's record alone rules out a forbidden centre and one whose penalty plus distance
    bound (when the target patch is ``full``) is not below ``best``; only the others read the
    source. Returns ``(cost, distance)``.
    """
    occupancy = records[qy, qx, 0]
    if occupancy == FORBIDDEN:
        return best, np.float32(0.0)
    cost = np.float32(occupancy) * scale
    lower = cost
    if full:
        lower += bound_unit * np.float32(_bound(target_sums, y, x, records, qy, qx))
    if lower >= best:
        return best, np.float32(0.0)
    d = unit * patch_distance(t, s, y * t_stride + x * channels, qy * s_stride + qx * channels,
                              t_stride, s_stride, extent, (best - cost) / unit)
    return cost + d, d


@numba.njit(cache=True, inline="always")
def _random_candidates(state, cy, cx, hs, ws, search_radius, out):
    """Random-search candidates of one pixel into ``out`` (``(n, 2)``); returns their count.

    ``GLOBAL_SAMPLES`` centres from the whole source, then one in each window of radius
    ``search_radius, search_radius // 2, ..., 1`` around ``(cy, cx)``, clamped to the source.
    """
    n = 0
    for _ in range(GLOBAL_SAMPLES):
        qy, qx = draw_pair(state, n, hs, ws)
        out[n, 0] = qy
        out[n, 1] = qx
        n += 1
    radius = search_radius
    while radius >= 1:
        ry, rx = draw_pair(state, n, 2 * radius + 1, 2 * radius + 1)
        out[n, 0] = min(max(cy + ry - radius, 0), hs - 1)
        out[n, 1] = min(max(cx + rx - radius, 0), ws - 1)
        radius //= 2
        n += 1
    return n


@numba.njit(cache=True)
def strip_offsets(key, h, w):
    """How far each of ``w`` columns moves its strip boundaries down: int64 in ``[0, STRIP_DITHER)``.

    Drawn from the generator states of row ``h``, which lies outside the target.
    """
    offsets = np.empty(w, dtype=np.int64)
    for x in range(w):
        offsets[x] = draw_pair(pixel_state(key, h, x), 0, STRIP_DITHER, 1)[0]
    return offsets


@numba.njit(cache=True, fastmath=True)
def _sweep_strip(target, source, target_sums, records, field, distance, scale, patch_size,
                 channels, unit, strip, offsets, reverse, search_radius, key):
    h, w = field.shape[:2]
    # column x of strip s: rows s * STRIP_ROWS - offsets[x] up to the next strip's start
    y0 = max(0, strip * STRIP_ROWS - STRIP_DITHER + 1)
    y1 = min(h, (strip + 1) * STRIP_ROWS)
    t, s = target.reshape(-1), source.reshape(-1)
    t_stride, s_stride = target.shape[1], source.shape[1]
    hs, ws = records.shape[:2]
    step = -1 if reverse else 1
    bound_unit = np.float32(unit / patch_size**2)
    # Room for the global samples and one radius per bit of an int64.
    candidates = np.empty((GLOBAL_SAMPLES + 64, 2), dtype=np.int64)
    touched = np.uint32(0)
    for i in range(y1 - y0):
        y = y1 - 1 - i if reverse else y0 + i
        for j in range(w):
            x = w - 1 - j if reverse else j
            if (y + offsets[x]) // STRIP_ROWS != strip:
                continue
            cy = field[y, x, 0]
            cx = field[y, x, 1]
            best_d = distance[y, x]
            best = best_d + np.float32(records[cy, cx, 0]) * scale
            state = pixel_state(key, y, x)
            extent = patch_extent(y, x, h, w, patch_size, channels)
            full = (extent[1] - extent[0] == patch_size
                    and extent[3] - extent[2] == patch_size * channels)
            # Propagation: the neighbours visited before this pixel, shifted by one.
            for n in range(2):
                ny = y - step if n == 1 else y
                nx = x - step if n == 0 else x
                if ny < 0 or ny >= h or nx < 0 or nx >= w:
                    continue
                qy = field[ny, nx, 0] + (y - ny)
                qx = field[ny, nx, 1] + (x - nx)
                if qy < 0 or qy >= hs or qx < 0 or qx >= ws or (qy == cy and qx == cx):
                    continue
                cost, d = _candidate_cost(t, s, t_stride, s_stride, records, target_sums, full,
                                          y, x, qy, qx, channels, extent, unit, bound_unit,
                                          scale, best)
                if cost < best:
                    best, best_d, cy, cx = cost, d, qy, qx
            n = _random_candidates(state, cy, cx, hs, ws, search_radius, candidates)
            # Random candidates are cache misses; touching all their records first lets the CPU
            # fetch them in parallel instead of one after another.
            for k in range(n):
                touched ^= records[candidates[k, 0], candidates[k, 1], 0]
            for k in range(n):
                qy = candidates[k, 0]
                qx = candidates[k, 1]
                if qy == cy and qx == cx:
                    continue
                cost, d = _candidate_cost(t, s, t_stride, s_stride, records, target_sums, full,
                                          y, x, qy, qx, channels, extent, unit, bound_unit,
                                          scale, best)
                if cost < best:
                    best, best_d, cy, cx = cost, d, qy, qx
            field[y, x, 0] = cy
            field[y, x, 1] = cx
            distance[y, x] = best_d
    return touched


@numba.njit(cache=True, parallel=True)
def sweep(target, source, target_sums, records, field, distance, scale, patch_size, channels,
          unit, reverse, search_radius, key):
    """One PatchMatch sweep over the whole target, updating ``field`` and ``distance`` in place.

    Parameters
    ----------
    target, source : uint8 2-D
        Padded feature views ``(H + 2r, (W + 2r) * C)``.
    target_sums : uint32 (Ht, Wt, 3)
        :func:`patch_sums` of the target's current features.
    records : uint32 (Hs, Ws, 4)
        Source candidate records (:func:`candidate_records`) with the summed occupancy of this
        sweep (:func:`patchsynth.uniformity.store_occupancy`), frozen for the sweep.
    field : int32 (Ht, Wt, 2)
        Current centres; must be valid.
    distance : float32 (Ht, Wt)
        Patch distance of each current centre (:func:`field_distances`).
    scale : float32
        Penalty per unit of summed occupancy (:func:`patchsynth.uniformity.penalty_scale`).
    unit : float
        Energy of one squared 8-bit step (:func:`patchsynth.features.quantization`).
    reverse : bool
        Scan bottom-up and right-to-left (alternate it between sweeps, as ebsynth does).
    search_radius : int
        Largest random-search radius, in source pixels.
    key : uint64
        Random stage key; one per sweep.
    """
    h, w = field.shape[:2]
    offsets = strip_offsets(key, h, w)
    strips = (h + STRIP_DITHER - 2) // STRIP_ROWS + 1
    # Keeps the prefetching loads of each strip alive (the compiler drops unused loads).
    touched = np.zeros(strips, dtype=np.uint32)
    for parity in range(2):
        for k in numba.prange((strips - parity + 1) // 2):
            s = 2 * k + parity
            touched[s] = _sweep_strip(target, source, target_sums, records, field, distance,
                                      scale, patch_size, channels, unit, s, offsets, reverse,
                                      search_radius, key)
    return touched
