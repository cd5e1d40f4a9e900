"""Find the label colors of color-coded masks and snap every pixel to one of them.

Hand-painted masks are not clean: brush edges are anti-aliased and files are often saved as
JPEG, so one label is a tight cloud of colors around the painted one, and boundaries hold blends
of two labels. The palette is therefore read from *flat* pixels only (region interiors, where
the 3x3 neighbourhood is nearly constant), whose colors cluster tightly around each label:

1. every flat color, most frequent first, seeds a cluster that takes the not yet clustered flat
   colors within :data:`MERGE_RADIUS` of it;
2. the cluster is a label when it covers at least :data:`MIN_LABEL_SHARE` of some mask and is
   peaked (most of its pixels lie within :data:`PEAK_RADIUS` of the seed). A smooth gradient
   (an airbrush, a photo) spreads evenly over the cluster and so never becomes a label.

Every pixel then takes the nearest label color. Pixels far from all of them are *unknown*
unless they are edge blends (see :func:`snap_to_palette`); the caller reports them.

Colors are 8-bit RGB throughout; distances are Euclidean in RGB.
"""

from collections.abc import Sequence
from itertools import combinations

import numpy as np

FLAT_RANGE = 24  # a pixel is flat when every channel varies by at most this over its 3x3 window
MERGE_RADIUS = 40.0  # flat colors this close to a label's color belong to it (JPEG noise is ~10)
PEAK_RADIUS = 8.0  # a label's pixels crowd within this distance of its color...
PEAK_SHARE = 0.5  # ...at least this share of them; a gradient's do not
MIN_LABEL_SHARE = 1e-3  # a label covers at least this share of the content or of the style mask
SNAP_RADIUS = MERGE_RADIUS  # farther than this from every label and every blend of two: unknown
MAX_SEEDS = 256  # clusters tried before giving up on the remaining flat colors


def flat_pixels(rgb: np.ndarray) -> np.ndarray:
    """Pixels whose 3x3 neighbourhood is nearly one color (region interiors).

    Parameters
    ----------
    rgb : uint8 (H, W, 3)

    Returns
    -------
    bool (H, W): every channel's max - min over the 3x3 window is at most :data:`FLAT_RANGE`.
    """
    padded = np.pad(rgb, ((1, 1), (1, 1), (0, 0)), mode="edge")
    steady = _window_3x3(padded, np.maximum) - _window_3x3(padded, np.minimum) <= FLAT_RANGE
    return steady[..., 0] & steady[..., 1] & steady[..., 2]


def find_palette(masks: Sequence[np.ndarray], flats: Sequence[np.ndarray],
                 max_labels: int) -> tuple[np.ndarray, np.ndarray]:
    """The label colors shared by a set of masks (content and style), in lexicographic order.

    Parameters
    ----------
    masks : sequence of uint8 (H_i, W_i, 3)
        Clustered together, so the same painted color gets one palette entry in every mask.
    flats : sequence of bool (H_i, W_i)
        :func:`flat_pixels` of each mask.
    max_labels : int
        Stop once more labels than this are found (the input is then not a label map).

    Returns
    -------
    colors : uint8 (L, 3)
        One color per label: the most frequent flat color of its cluster (the exact painted
        color for a PNG, within a few levels of it for a JPEG). At most ``max_labels + 1`` rows.
    shares : float64 (len(masks), L)
        Share of each mask's pixels that are flat and belong to each label; 0 where a label is
        absent from a mask.

    Examples
    --------
    >>> red, blue = np.array([200, 0, 0], np.uint8), np.array([0, 0, 200], np.uint8)
    >>> mask = np.where(np.arange(40)[:, None, None] < 30, red, blue) * np.ones((1, 40, 1), np.uint8)
    >>> colors, shares = find_palette([mask], [flat_pixels(mask)], max_labels=8)
    >>> colors.tolist()
    [[0, 0, 200], [200, 0, 0]]
    """
    colors, weights = _flat_color_weights(masks, flats)
    distinct = colors.astype(np.float32)
    total = weights.sum(axis=0)
    remaining = np.ones(len(colors), bool)
    found_colors, found_shares = [], []
    for _ in range(MAX_SEEDS):
        # No cluster of what is left can reach MIN_LABEL_SHARE of any mask.
        if not remaining.any() or weights[:, remaining].sum(axis=1).max() < MIN_LABEL_SHARE:
            break
        seed = np.flatnonzero(remaining)[np.argmax(total[remaining])]
        distance = np.linalg.norm(distinct - distinct[seed], axis=1)
        members = remaining & (distance <= MERGE_RADIUS)
        remaining &= ~members
        share = weights[:, members].sum(axis=1)
        peak = total[members & (distance <= PEAK_RADIUS)].sum() / total[members].sum()
        if share.max() >= MIN_LABEL_SHARE and peak >= PEAK_SHARE:
            found_colors.append(colors[seed])
            found_shares.append(share)
            if len(found_colors) > max_labels:
                break
    if not found_colors:
        return np.zeros((0, 3), np.uint8), np.zeros((len(masks), 0))
    order = np.lexsort(np.array(found_colors).T[::-1])
    return np.array(found_colors, np.uint8)[order], np.array(found_shares).T[:, order]


def snap_to_palette(rgb: np.ndarray, flat: np.ndarray, colors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Label every pixel with its nearest palette color, flagging colors that fit no label.

    Parameters
    ----------
    rgb : uint8 (H, W, 3)
    flat : bool (H, W)
        :func:`flat_pixels` of ``rgb``.
    colors : uint8 (L, 3), L >= 1

    Returns
    -------
    labels : int32 (H, W)
        Index into ``colors`` of the nearest color.
    unknown : bool (H, W)
        Pixels farther than :data:`SNAP_RADIUS` from every label color, unless they are edge
        blends: not flat, and near the RGB segment between two label colors, as anti-aliased
        and JPEG boundaries are. A wide soft gradient is flat, hence unknown, as are photos.
        Unknown pixels are labelled too, but the caller should report them.
    """
    packed = _pack(rgb)
    distinct = np.unique(packed)
    points = _unpack(distinct).astype(np.float32)
    palette = colors.astype(np.float32)
    nearest = np.zeros(len(points), np.int32)
    best = np.full(len(points), np.inf, np.float32)
    for index, color in enumerate(palette):
        distance = np.linalg.norm(points - color, axis=1)
        closer = distance < best
        nearest[closer], best[closer] = index, distance[closer]
    far = best > SNAP_RADIUS
    off_blends = far.copy()
    candidates = np.flatnonzero(far)
    for a, b in combinations(palette, 2):
        off_blends[candidates] &= _segment_distance(points[candidates], a, b) > SNAP_RADIUS
    # A lookup table from packed color to its row: linear time, where np.unique's
    # return_inverse sorts millions of pixels.
    inverse = np.empty(distinct[-1] + 1, np.int32)
    inverse[distinct] = np.arange(len(distinct))
    inverse = inverse[packed]
    return nearest[inverse], off_blends[inverse] | (far[inverse] & flat)


def _window_3x3(padded: np.ndarray, reduce) -> np.ndarray:
    """``reduce`` (np.maximum or np.minimum) over each 3x3 window of an edge-padded (H+2, W+2, C) array."""
    rows = reduce(reduce(padded[:-2], padded[1:-1]), padded[2:])
    return reduce(reduce(rows[:, :-2], rows[:, 1:-1]), rows[:, 2:])


def _pack(rgb: np.ndarray) -> np.ndarray:
    """uint8 (..., 3) colors -> uint32 (...), one integer per color (a byte view: no arithmetic)."""
    rgbx = np.zeros((*rgb.shape[:-1], 4), np.uint8)
    rgbx[..., :3] = rgb
    return rgbx.view(np.uint32)[..., 0]


def _unpack(packed: np.ndarray) -> np.ndarray:
    """Inverse of :func:`_pack`: uint32 (...) -> uint8 (..., 3)."""
    return np.ascontiguousarray(packed, np.uint32)[..., None].view(np.uint8)[..., :3]


def _flat_color_weights(masks: Sequence[np.ndarray],
                        flats: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Distinct flat colors uint8 (U, 3) and each one's share of every mask, float64 (n, U)."""
    histograms = [np.unique(_pack(mask)[flat], return_counts=True) for mask, flat in zip(masks, flats, strict=True)]
    distinct = np.unique(np.concatenate([colors for colors, _ in histograms]))
    weights = np.zeros((len(masks), len(distinct)))
    for row, ((colors, counts), mask) in enumerate(zip(histograms, masks, strict=True)):
        weights[row, np.searchsorted(distinct, colors)] = counts / (mask.shape[0] * mask.shape[1])
    return _unpack(distinct), weights


def _segment_distance(points: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance of float (N, 3) points to the RGB segment from ``a`` to ``b``."""
    direction = b - a
    t = np.clip((points - a) @ direction / (direction @ direction), 0.0, 1.0)
    return np.linalg.norm(points - a - t[:, None] * direction, axis=1)
