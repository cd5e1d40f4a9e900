"""Antialiased image pyramids.

ebsynth builds its pyramid by point sampling, which aliases fine texture into the coarse levels.
Here every level is resampled from the next finer one with a triangle (tent) filter whose support
scales with the reduction factor, the separable filter behind Pillow's antialiased bilinear
``resize``. Halving then weights the four nearest rows by ``[1, 3, 3, 1] / 8``.

All images are ``float32`` arrays of shape ``(H, W, C)``; pixel ``i`` covers ``[i, i + 1)`` in
continuous coordinates, so pixel centres sit at ``i + 0.5`` and resizing keeps the image's extent.
"""

import math

import numba
import numpy as np

#: The coarsest level keeps its smaller side at this many pixels or more (ebsynth's rule).
MIN_LEVEL_SIDE = 11


def level_shapes(shape, levels):
    """Shapes ``(h, w)`` of a pyramid, finest first: level ``l`` is ``shape`` scaled by ``2**-l``.

    Parameters
    ----------
    shape : (int, int)
        ``(H, W)`` of the finest level.
    levels : int
        Number of levels.

    Returns
    -------
    list of (int, int)
        Rounded, at least 1 pixel per side.

    Examples
    --------
    >>> level_shapes((100, 60), 3)
    [(100, 60), (50, 30), (25, 15)]
    """
    return [
        (max(1, round(shape[0] / 2**level)), max(1, round(shape[1] / 2**level)))
        for level in range(levels)
    ]


def max_levels(*shapes, patch_size=5):
    """The number of levels that keeps the smaller side of every shape at ``MIN_LEVEL_SIDE`` or more,
    and at two patches and one pixel (``2 * patch_size + 1``, ebsynth's 11 for its patch of 5) for larger
    patches: a coarsest level that a patch hardly fits had next to no centres to search.

    >>> max_levels((1024, 700)), max_levels((1024, 700), patch_size=31)
    (6, 4)
    """
    min_side = max(MIN_LEVEL_SIDE, 2 * patch_size + 1)
    smallest = min(min(shape[:2]) for shape in shapes)
    if smallest < min_side:
        return 1
    return 1 + int(math.floor(math.log2(smallest / min_side)))


def _tent_taps(size_in, size_out):
    """Source indices and weights ``(size_out, taps)`` of the antialiased tent filter along one axis."""
    scale = size_in / size_out
    support = max(scale, 1.0)
    taps = int(math.ceil(support)) * 2 + 1
    centre = (np.arange(size_out) + 0.5) * scale - 0.5
    first = np.floor(centre - support).astype(np.int64) + 1
    index = first[:, None] + np.arange(taps)[None, :]
    weight = np.maximum(0.0, 1.0 - np.abs(index - centre[:, None]) / support)
    weight /= weight.sum(axis=1, keepdims=True)
    # Mirror the taps that fall outside (reflect-101, like numpy's "reflect"): it keeps constants
    # constant and does not darken or brighten the border.
    index = np.abs(index)
    index = np.where(index > size_in - 1, 2 * (size_in - 1) - index, index)
    return np.clip(index, 0, size_in - 1).astype(np.int32), weight.astype(np.float32)


@numba.njit(cache=True, parallel=True)
def _resample_rows(image, index, weight):
    out = np.zeros((index.shape[0], image.shape[1], image.shape[2]), dtype=np.float32)
    for y in numba.prange(index.shape[0]):
        for t in range(index.shape[1]):
            w = weight[y, t]
            if w == 0.0:
                continue
            row = image[index[y, t]]
            for x in range(image.shape[1]):
                for c in range(image.shape[2]):
                    out[y, x, c] += w * row[x, c]
    return out


@numba.njit(cache=True, parallel=True)
def _resample_columns(image, index, weight):
    out = np.zeros((image.shape[0], index.shape[0], image.shape[2]), dtype=np.float32)
    for y in numba.prange(image.shape[0]):
        for x in range(index.shape[0]):
            for t in range(index.shape[1]):
                w = weight[x, t]
                for c in range(image.shape[2]):
                    out[y, x, c] += w * image[y, index[x, t], c]
    return out


def resize(image, shape):
    """Resize ``image`` (``float32 (H, W, C)``) to ``shape = (h, w)`` with an antialiased tent filter.

    Downsampling averages over the footprint of each output pixel (no aliasing); upsampling is
    bilinear. Returns a new ``float32 (h, w, C)`` array.

    Parameters
    ----------
    image : numpy.ndarray
        ``float32 (H, W, C)``.
    shape : (int, int)
        ``(h, w)`` of the result.

    Returns
    -------
    numpy.ndarray
        A new ``float32 (h, w, C)`` array.

    Examples
    --------
    >>> checker = (np.indices((8, 8)).sum(0) % 2).astype(np.float32)[..., None]
    >>> float(np.abs(resize(checker, (4, 4)) - 0.5).max())
    0.0
    """
    image = np.ascontiguousarray(image, dtype=np.float32)
    h, w = shape
    if h != image.shape[0]:
        image = _resample_rows(image, *_tent_taps(image.shape[0], h))
    if w != image.shape[1]:
        image = _resample_columns(image, *_tent_taps(image.shape[1], w))
    return image


def pyramid(image, shapes):
    """Resample ``image`` to each of ``shapes`` (finest first), each level from the one before it.

    ``shapes[0]`` may equal the image's own shape, in which case the image itself is the first level
    (not a copy).

    Parameters
    ----------
    image : numpy.ndarray
        ``float32 (H, W, C)``.
    shapes : list of (int, int)
        ``(h, w)`` of every level, finest first (see :func:`level_shapes`).

    Returns
    -------
    list of numpy.ndarray
        One ``float32 (h, w, C)`` array per shape.
    """
    levels = []
    current = image
    for shape in shapes:
        current = resize(current, shape)
        levels.append(current)
    return levels
