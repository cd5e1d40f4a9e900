"""Guide channels: label maps turned into soft one-hot channels on any grid.

NNST adds ``w_guide * sum((guide_c - guide_s) ** 2)`` to its feature distance, one guide channel
per label. A channel is the share of each grid cell covered by its label, so guides are one-hot
inside regions and soft along boundaries, whatever the grid size (the feature grid
``(H // 4, W // 4)``, or each VGG layer's size for feature splitting).

Grid cells tile the whole image: cell ``(i, j)`` of an ``(h, w)`` grid covers the pixel area
``[i * H / h, (i + 1) * H / h) x [j * W / w, (j + 1) * W / w)``, pixels counted by the fraction
of them inside it (area averaging, as ``cv2.INTER_AREA`` when shrinking). The hypercolumns of
cell row ``i`` sample pixel row ``round(i * (H - 1) / (h - 1))`` (``align_corners=True``,
``nnst_hr.nnf``; columns alike): a row inside the cell's span (by at least three quarters of
it), but up to 2 px from its centre near the image's borders.

A cell's label, for ``--guide-mode hard`` and for the ``label_agreement`` score alike, is
:func:`hard_labels_at`: the majority of these same shares.
"""

import numbers

import numpy as np
from scipy import sparse

from guidance.errors import MaskError

TIE_TOLERANCE = 1e-9  # shares this close count as a tie (they differ by float rounding only)


def area_weights(n_in: int, n_out: int) -> sparse.csr_matrix:
    """1-D area-averaging weights from ``n_in`` pixels to ``n_out`` cells.

    Parameters
    ----------
    n_in : int
        Pixels along the axis.
    n_out : int
        Cells along the axis, fewer or more than ``n_in``.

    Returns
    -------
    float64 CSR (n_out, n_in): entry ``(i, y)`` is the length of pixel ``[y, y + 1)`` inside cell
    ``[i * n_in / n_out, (i + 1) * n_in / n_out)`` divided by the cell's length. Rows sum to 1;
    ``n_out == n_in`` gives the identity.

    Examples
    --------
    >>> area_weights(3, 2).toarray()
    array([[0.66666667, 0.33333333, 0.        ],
           [0.        , 0.33333333, 0.66666667]])
    """
    cell = n_in / n_out
    start = np.arange(n_out) * cell
    span = int(np.ceil(cell)) + 1  # pixels a cell can touch
    rows = np.repeat(np.arange(n_out), span)
    cols = (np.floor(start)[:, None] + np.arange(span)).ravel().astype(np.int64)
    lo = np.maximum(cols, np.repeat(start, span))
    hi = np.minimum(cols + 1, np.repeat(start + cell, span))
    overlap = (hi - lo) / cell
    keep = (overlap > 0) & (cols < n_in)
    return sparse.csr_matrix((overlap[keep], (rows[keep], cols[keep])), shape=(n_out, n_in))


def guide_channels(labels: np.ndarray, n_labels: int, out_hw: tuple[int, int]) -> np.ndarray:
    """Area-averaged one-hot guide channels of a label map.

    Parameters
    ----------
    labels : int (H, W)
        Label per pixel in ``0 .. n_labels - 1``; ``-1`` (unguided) adds to no channel.
    n_labels : int
        Number of channels.
    out_hw : (h, w)
        Grid size; any size, smaller or larger than ``(H, W)``.

    Returns
    -------
    float32 (n_labels, h, w): channel ``c`` is the share of each cell covered by label ``c``.
    Exactly one-hot when ``out_hw == (H, W)``; channels sum to 1 in cells without unguided
    pixels, to the guided share otherwise.

    Raises
    ------
    MaskError
        ``labels`` not an integer ``(H, W)`` map in ``-1 .. n_labels - 1``, ``n_labels`` not an integer
        ``>= 0``, or ``out_hw`` not two positive integers.

    Examples
    --------
    >>> labels = np.array([[0, 0, 1, 1], [0, 0, 1, -1]])
    >>> guide_channels(labels, 2, (1, 2))[:, 0]
    array([[1.  , 0.  ],
           [0.  , 0.75]], dtype=float32)
    """
    labels = _checked_labels(labels)
    if not (isinstance(n_labels, numbers.Integral) and not isinstance(n_labels, bool) and n_labels >= 0):
        raise MaskError(f"n_labels must be an integer >= 0, e.g. MaskPair.n_labels; got {n_labels!r}")
    high = int(labels.max())
    if high >= n_labels:  # added to no channel, silently
        raise MaskError(f"labels go up to {high}, but n_labels is {n_labels} (labels 0 .. {n_labels - 1}); "
                        f"give the n_labels of the MaskPair the labels came from")
    return _area_average(labels, n_labels, _checked_grid(out_hw)).astype(np.float32)


def hard_labels_at(labels: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """The majority label of each grid cell (for ``--guide-mode hard``).

    Parameters
    ----------
    labels : int (H, W), ``-1`` = unguided
    out_hw : (h, w)

    Returns
    -------
    int32 (h, w): the label (or ``-1``) covering the largest share of each cell, by the same
    area weights as :func:`guide_channels`. Ties go to ``-1``, then to the lower label.
    :class:`MaskError` as :func:`guide_channels`.

    Examples
    --------
    >>> hard_labels_at(np.array([[0, 0, 1], [-1, 1, 1]]), (1, 1))
    array([[1]], dtype=int32)
    """
    labels = _checked_labels(labels)
    n_labels = int(labels.max()) + 1
    channels = _area_average(labels, n_labels, _checked_grid(out_hw))
    shares = np.concatenate([1.0 - channels.sum(axis=0, keepdims=True), channels])
    # The first share within rounding of the largest, so that exact ties break by label order.
    return ((shares >= shares.max(axis=0) - TIE_TOLERANCE).argmax(axis=0) - 1).astype(np.int32)


def _checked_labels(labels) -> np.ndarray:
    """``labels`` as an array, refused (:class:`MaskError`) unless an integer ``(H, W)`` map with both sides
    positive and no label below -1: a float map's fractional labels and a -2 added to no channel, silently,
    and an empty map divided by zero."""
    labels = np.asarray(labels)
    if labels.ndim != 2 or min(labels.shape) < 1:
        raise MaskError(f"labels must be an (H, W) label map, got shape {labels.shape}")
    if labels.dtype.kind not in "iu":
        raise MaskError(f"labels must hold integers (-1: unguided), got {labels.dtype}; "
                        f"e.g. labels.astype(np.int32)")
    if int(labels.min()) < -1:
        raise MaskError(f"labels must be -1 (unguided) or a label index 0, 1, ...; got {int(labels.min())}")
    return labels


def _checked_grid(out_hw) -> tuple[int, int]:
    """``out_hw`` as ``(h, w)``, refused (:class:`MaskError`) unless two positive integers: a zero side was
    a ZeroDivisionError in :func:`area_weights`."""
    ok = (isinstance(out_hw, tuple | list) and len(out_hw) == 2
          and all(isinstance(v, numbers.Integral) and not isinstance(v, bool) and v > 0 for v in out_hw))
    if not ok:
        raise MaskError(f"out_hw must be (h, w) of the grid, two positive integers, e.g. features.shape[-2:]; "
                        f"got {out_hw!r}")
    return int(out_hw[0]), int(out_hw[1])


def _area_average(labels: np.ndarray, n_labels: int, out_hw: tuple[int, int]) -> np.ndarray:
    """float64 (n_labels, h, w) share of each cell covered by each label."""
    rows = area_weights(labels.shape[0], out_hw[0])
    cols = area_weights(labels.shape[1], out_hw[1])
    shares = np.empty((n_labels, *out_hw))
    for label in range(n_labels):
        region = (labels == label).astype(np.float32)
        shares[label] = (cols @ (rows @ region).T).T
    return shares


def rotate_guides(guides: np.ndarray, k: int) -> np.ndarray:
    """Rotate guides like the style image: ``k`` counter-clockwise quarter turns.

    Parameters
    ----------
    guides : (..., h, w)
        Guide channels ``(L, h, w)`` or a label map ``(h, w)``.
    k : int
        Rotation index, as ``numpy.rot90(image, k)`` on the style image.

    Returns
    -------
    Contiguous array (..., h, w) for even ``k``, (..., w, h) for odd ``k``.
    """
    return np.ascontiguousarray(np.rot90(guides, k, axes=(-2, -1)))
