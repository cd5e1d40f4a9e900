"""Fields (nearest-neighbour fields) and the random numbers that seed them.

A field is an ``int32`` array ``(Ht, Wt, 2)``: for each target pixel the ``(y, x)`` of the centre
of the source patch it copies, ``0 <= y < Hs``, ``0 <= x < Ws``. A centre is *valid* when
``valid[y, x]`` is true: its whole patch lies inside the allowed source pixels (see
:func:`valid_centres`).

Random numbers come from a counter-based generator (SplitMix64 of a key built from the seed, the
stage and the pixel), so every pixel draws the same numbers whatever the thread count or the order
in which threads visit pixels: a fixed seed gives a fixed result.
"""

import numba
import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S33 = np.uint64(33)
_S32 = np.uint64(32)
_LOW32 = np.uint64(0xFFFFFFFF)


@numba.njit(cache=True)
def mix(state):
    """SplitMix64 finaliser: a well-scrambled ``uint64`` from any ``uint64``."""
    z = state + _GOLDEN
    z = (z ^ (z >> _S30)) * _MIX1
    z = (z ^ (z >> _S27)) * _MIX2
    return z ^ (z >> _S31)


@numba.njit(cache=True)
def pixel_state(key, y, x):
    """The generator state of pixel ``(y, x)`` for a stage ``key`` (a ``uint64``)."""
    return mix(key ^ mix(np.uint64(y) * np.uint64(0x100000001B3) + np.uint64(x)))


@numba.njit(cache=True)
def next_int(state, n):
    """Advance ``state``; return ``(new_state, r)`` with ``r`` uniform in ``[0, n)``."""
    state = state + _GOLDEN
    return state, np.int64(mix(state) >> _S33) % n


@numba.njit(cache=True)
def draw_pair(state, counter, ny, nx):
    """Draw ``counter`` of a pixel's ``state``: ``(a, b)`` uniform in ``[0, ny)`` and ``[0, nx)``.

    One hash gives both numbers, its two 32-bit halves scaled by a multiply and a shift (Lemire's
    reduction) instead of a division; ``ny`` and ``nx`` must be below ``2**32``.
    """
    z = mix(state + np.uint64(counter + 1) * _GOLDEN)
    return (np.int64(((z >> _S32) * np.uint64(ny)) >> _S32),
            np.int64(((z & _LOW32) * np.uint64(nx)) >> _S32))


def stage_key(seed, *counters):
    """A ``uint64`` key for one random stage (level, iteration, sweep...) of a seeded run."""
    key = seed & 0xFFFFFFFFFFFFFFFF
    for counter in counters:
        key = (key * 0x100000001B3 + counter + 1) & 0xFFFFFFFFFFFFFFFF
    return np.uint64(key)


def valid_centres(mask, patch_size):
    """Which source pixels may be patch centres: their whole patch is allowed.

    Parameters
    ----------
    mask : bool (Hs, Ws)
        Allowed source pixels.
    patch_size : int
        Odd patch side ``p``.

    Returns
    -------
    bool (Hs, Ws)
        ``mask`` eroded by a ``p x p`` square, with the image mirrored at its border the way the
        features are (see :mod:`patchsynth.features`).
    """
    radius = patch_size // 2
    padded = np.pad(mask, radius, mode="reflect") if radius else mask
    h, w = mask.shape
    rows = np.ones((padded.shape[0], w), dtype=bool)
    for dx in range(patch_size):
        rows &= padded[:, dx : dx + w]
    out = np.ones((h, w), dtype=bool)
    for dy in range(patch_size):
        out &= rows[dy : dy + h]
    return out


@numba.njit(cache=True, parallel=True)
def random_field(shape, candidates, source_width, key):
    """A field whose entries are drawn uniformly from ``candidates`` (flat indices ``y * Ws + x``)."""
    field = np.empty((shape[0], shape[1], 2), dtype=np.int32)
    n = candidates.shape[0]
    for y in numba.prange(shape[0]):
        for x in range(shape[1]):
            _, r = next_int(pixel_state(key, y, x), n)
            index = candidates[r]
            field[y, x, 0] = index // source_width
            field[y, x, 1] = index % source_width
    return field


@numba.njit(cache=True, parallel=True)
def _rescale(field, out_shape, scale_y, scale_x, cell_y, cell_x, valid, candidates, key):
    h, w = field.shape[:2]
    hs, ws = valid.shape
    out = np.empty((out_shape[0], out_shape[1], 2), dtype=np.int32)
    for y in numba.prange(out_shape[0]):
        i = min(h - 1, int((y + 0.5) / cell_y))
        # Offset of this pixel from the centre of its coarse cell, in output pixels: a source
        # patch keeps its neighbours' offsets, so the upsampled field stays coherent.
        off_y = y + 0.5 - (i + 0.5) * cell_y
        for x in range(out_shape[1]):
            j = min(w - 1, int((x + 0.5) / cell_x))
            off_x = x + 0.5 - (j + 0.5) * cell_x
            sy = int(np.floor((field[i, j, 0] + 0.5) * scale_y + off_y))
            sx = int(np.floor((field[i, j, 1] + 0.5) * scale_x + off_x))
            sy = min(max(sy, 0), hs - 1)
            sx = min(max(sx, 0), ws - 1)
            if not valid[sy, sx]:
                _, r = next_int(pixel_state(key, y, x), candidates.shape[0])
                sy = candidates[r] // ws
                sx = candidates[r] % ws
            out[y, x, 0] = sy
            out[y, x, 1] = sx
    return out


def rescale_field(field, source_shape, out_shape, valid, candidates, key):
    """Resample a field to another target and source resolution.

    Parameters
    ----------
    field : int32 (h, w, 2)
        ``(y, x)`` centres in a source of shape ``source_shape = (Hs, Ws)``.
    source_shape : tuple
        The source resolution ``field`` refers to.
    out_shape : tuple
        Target shape ``(Ht, Wt)`` of the result.
    valid : bool (Hs', Ws')
        Valid centres in the new source resolution (:func:`valid_centres`).
    candidates : int32 (n,)
        Flat indices of the valid centres; an entry that lands on an invalid centre is replaced by
        a random one of them.
    key : uint64
        Random stage key (:func:`stage_key`).

    Returns
    -------
    int32 (Ht, Wt, 2)
        Each output pixel takes its cell's source position, scaled to the new source, plus its
        offset from the cell centre, so a field doubled in size maps ``2 x 2`` blocks to ``2 x 2``
        blocks as ebsynth's upsampling does.
    """
    scale_y = valid.shape[0] / source_shape[0]
    scale_x = valid.shape[1] / source_shape[1]
    cell_y = out_shape[0] / field.shape[0]
    cell_x = out_shape[1] / field.shape[1]
    return _rescale(
        np.ascontiguousarray(field, dtype=np.int32),
        (int(out_shape[0]), int(out_shape[1])),
        scale_y, scale_x, cell_y, cell_x, valid, candidates, key,
    )
