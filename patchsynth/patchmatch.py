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

Parallelism: the target is cut into strips of ``STRIP_ROWS`` rows, each scanned serially like
ebsynth's one-strip-per-thread scheme. Even strips run in parallel, then odd strips, so a strip
reads its neighbours' boundary rows while nobody writes them. Strips, random numbers and the
frozen occupancy do not depend on the thread count or timing, so a seed fixes the result.
"""

import numba
import numpy as np

from .field import next_int, pixel_state

#: Rows per strip; each strip is scanned serially and strips run in parallel.
STRIP_ROWS = 16
#: Uniform samples from the whole source per pixel and sweep, on top of the radius sequence.
GLOBAL_SAMPLES = 1


@numba.njit(cache=True, fastmath=True)
def patch_distance(target, source, ty, tx, sy, sx, extent, bound):
    """Sum of squared differences of two 8-bit patches, abandoned once it reaches ``bound``.

    ``target`` and ``source`` are 2-D ``uint8`` feature views; ``(ty, tx)`` and ``(sy, sx)`` the first row
    and first column (already times the channel count) of each patch; ``extent = (i0, i1, j0,
    j1)`` the rows and columns (times the channel count) of the patch that are compared.
    """
    i0, i1, j0, j1 = extent
    total = 0
    for i in range(i0, i1):
        t = target[ty + i]
        s = source[sy + i]
        for j in range(j0, j1):
            d = np.int32(t[tx + j]) - np.int32(s[sx + j])
            total += d * d
        if total >= bound:
            return total
    return total


@numba.njit(cache=True)
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
    for y in numba.prange(h):
        for x in range(w):
            out[y, x] = unit * patch_distance(
                target, source, y, x * channels, field[y, x, 0], field[y, x, 1] * channels,
                patch_extent(y, x, h, w, patch_size, channels), np.inf,
            )
    return out


@numba.njit(cache=True, fastmath=True)
def _candidate_cost(target, source, penalty, y, x, qy, qx, channels, extent, unit, best):
    """Cost of source centre ``(qy, qx)`` for target pixel ``(y, x)``, or ``inf`` if it cannot win."""
    cost = penalty[qy, qx]
    if cost >= best:
        return np.float32(np.inf), np.float32(0.0)
    d = unit * patch_distance(target, source, y, x * channels, qy, qx * channels, extent,
                              (best - cost) / unit)
    return cost + d, d


@numba.njit(cache=True)
def _random_candidates(state, cy, cx, hs, ws, search_radius, out):
    """Random-search candidates of one pixel into ``out`` (``(n, 2)``); returns their count.

    ``GLOBAL_SAMPLES`` centres from the whole source, then one in each window of radius
    ``search_radius, search_radius // 2, ..., 1`` around ``(cy, cx)``, clamped to the source.
    """
    n = 0
    for _ in range(GLOBAL_SAMPLES):
        state, qy = next_int(state, hs)
        state, qx = next_int(state, ws)
        out[n, 0] = qy
        out[n, 1] = qx
        n += 1
    radius = search_radius
    while radius >= 1:
        state, ry = next_int(state, 2 * radius + 1)
        state, rx = next_int(state, 2 * radius + 1)
        out[n, 0] = min(max(cy + ry - radius, 0), hs - 1)
        out[n, 1] = min(max(cx + rx - radius, 0), ws - 1)
        radius //= 2
        n += 1
    return n


@numba.njit(cache=True, fastmath=True)
def _sweep_strip(target, source, field, distance, penalty, patch_size, channels, unit,
                 y0, y1, reverse, search_radius, key):
    h, w = field.shape[:2]
    hs, ws = penalty.shape
    step = -1 if reverse else 1
    # Room for the global samples and one radius per bit of an int64.
    candidates = np.empty((GLOBAL_SAMPLES + 64, 2), dtype=np.int64)
    touched = 0.0
    for i in range(y1 - y0):
        y = y1 - 1 - i if reverse else y0 + i
        for j in range(w):
            x = w - 1 - j if reverse else j
            cy = field[y, x, 0]
            cx = field[y, x, 1]
            best_d = distance[y, x]
            best = best_d + penalty[cy, cx]
            state = pixel_state(key, y, x)
            extent = patch_extent(y, x, h, w, patch_size, channels)
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
                cost, d = _candidate_cost(target, source, penalty, y, x, qy, qx,
                                          channels, extent, unit, best)
                if cost < best:
                    best, best_d, cy, cx = cost, d, qy, qx
            n = _random_candidates(state, cy, cx, hs, ws, search_radius, candidates)
            # Random candidates are cache misses; touching them all first lets the CPU fetch
            # them in parallel instead of one after another inside the distance loop.
            for k in range(n):
                qy = candidates[k, 0]
                qx = candidates[k, 1] * channels
                touched += (penalty[qy, candidates[k, 1]] + source[qy + extent[0], qx + extent[2]]
                            + source[qy + extent[0], qx + extent[3] - 1])
            for k in range(n):
                qy = candidates[k, 0]
                qx = candidates[k, 1]
                if qy == cy and qx == cx:
                    continue
                cost, d = _candidate_cost(target, source, penalty, y, x, qy, qx,
                                          channels, extent, unit, best)
                if cost < best:
                    best, best_d, cy, cx = cost, d, qy, qx
            field[y, x, 0] = cy
            field[y, x, 1] = cx
            distance[y, x] = best_d
    return touched


@numba.njit(cache=True, parallel=True)
def sweep(target, source, field, distance, penalty, patch_size, channels, unit,
          reverse, search_radius, key):
    """One PatchMatch sweep over the whole target, updating ``field`` and ``distance`` in place.

    Parameters
    ----------
    target, source : uint8 2-D
        Padded feature views ``(H + 2r, (W + 2r) * C)``.
    field : int32 (Ht, Wt, 2)
        Current centres; must be valid.
    distance : float32 (Ht, Wt)
        Patch distance of each current centre (:func:`field_distances`).
    unit : float
        Energy of one squared 8-bit step (:func:`patchsynth.features.quantization`).
    penalty : float32 (Hs, Ws)
        Uniformity penalty of each source centre, ``inf`` where forbidden, frozen for the sweep
        (:func:`patchsynth.uniformity.penalty`).
    reverse : bool
        Scan bottom-up and right-to-left (alternate it between sweeps, as ebsynth does).
    search_radius : int
        Largest random-search radius, in source pixels.
    key : uint64
        Random stage key; one per sweep.
    """
    h = field.shape[0]
    strips = (h + STRIP_ROWS - 1) // STRIP_ROWS
    # Keeps the prefetching loads of each strip alive (the compiler drops unused loads).
    touched = np.zeros(strips, dtype=np.float64)
    for parity in range(2):
        for k in numba.prange((strips - parity + 1) // 2):
            s = 2 * k + parity
            y0 = s * STRIP_ROWS
            y1 = min(h, y0 + STRIP_ROWS)
            touched[s] = _sweep_strip(target, source, field, distance, penalty, patch_size,
                                      channels, unit, y0, y1, reverse, search_radius, key)
    return touched
