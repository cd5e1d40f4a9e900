"""The nearest-neighbor field (NNF) that NNST hands to the 4K stage.

Format (``ARCHITECTURE.md``): ``int32 (h, w, 3)`` on the output's feature grid;
``[..., 0]`` = rotation ``k`` (style turned ``k * 90`` degrees counter-clockwise),
``[..., 1:3]`` = ``(y, x)`` pixel coordinates of the matched feature's centre in the
rotated style image, at the style size NNST used. Feature cell ``i`` of a grid of
``n`` cells over ``N`` pixels sits at pixel ``i * (N - 1) / (n - 1)``: the hypercolumns
are resized with ``align_corners=True``, so that is where the cell samples the image.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np
import torch

from .errors import InputError
from .files import refuse_special_file, save_npz
from .hypercolumns import FEATURE_STRIDE


def cell_to_pixel(index: np.ndarray, cells: int, pixels: int) -> np.ndarray:
    """Pixel coordinate (rounded) of feature cell ``index`` on an axis of ``cells`` over ``pixels``."""
    if cells <= 1:
        return np.zeros_like(index)
    return np.rint(index * ((pixels - 1) / (cells - 1))).astype(np.int32)


def pixel_to_cell(pixel: np.ndarray, cells: int, pixels: int) -> np.ndarray:
    """The feature cell whose pixel (:func:`cell_to_pixel`) is nearest ``pixel``: its inverse on a field's points.

    A cell's pixels lie ``(pixels - 1) / (cells - 1) >= 1`` apart, so rounding back recovers
    the cell exactly for every pixel :func:`cell_to_pixel` gives; other pixels go to the
    nearest cell.

    >>> cells = np.arange(5)
    >>> pixel_to_cell(cell_to_pixel(cells, 5, 23), 5, 23).tolist()
    [0, 1, 2, 3, 4]
    """
    if cells <= 1 or pixels <= 1:
        return np.zeros_like(pixel)
    return np.rint(np.asarray(pixel) * ((cells - 1) / (pixels - 1))).astype(np.int32)


def indices_to_field(
    indices: torch.Tensor,
    grid: tuple[int, int],
    style_grids: list[tuple[int, int]],
    style_sizes: list[tuple[int, int]],
    rotation_ids: list[int],
) -> np.ndarray:
    """Turn flat key indices into the NNF.

    Parameters
    ----------
    indices : (h * w,) int64, rows of the stacked style keys (rotation blocks in order)
    grid : (h, w) of the output's feature grid
    style_grids : feature grid (h_k, w_k) of each stacked rotation
    style_sizes : pixel size (H_k, W_k) of each rotated style image
    rotation_ids : the rotation k of each block (``[0]`` or ``[0, 1, 2, 3]``)

    Returns
    -------
    np.ndarray int32 (h, w, 3): k, y, x
    """
    idx = indices.cpu().numpy().astype(np.int64)
    out = np.zeros((idx.size, 3), np.int32)
    start = 0
    for (gh, gw), (ph, pw), k in zip(style_grids, style_sizes, rotation_ids, strict=True):
        stop = start + gh * gw
        sel = (idx >= start) & (idx < stop)
        local = idx[sel] - start
        out[sel, 0] = k
        out[sel, 1] = cell_to_pixel(local // gw, gh, ph)
        out[sel, 2] = cell_to_pixel(local % gw, gw, pw)
        start = stop
    return out.reshape(grid[0], grid[1], 3)


def save_field(path: str | os.PathLike, field: np.ndarray, content_size, style_size, *, overwrite: bool = True) -> None:
    """Write ``nnf.npz`` (arrays ``nnf``, ``content_size``, ``style_size``, ``stride``) atomically.

    Parameters
    ----------
    path : str or PathLike
        Destination, usually ``RUN/nnf.npz``.
    field : numpy.ndarray
        ``int32 (h, w, 3)``: rotation index, then ``(y, x)`` in the rotated style.
    content_size, style_size : (int, int)
        ``(height, width)`` of the content and (unrotated) style as NNST used them.
    overwrite : bool
        Replace an existing file.
    """
    save_npz(
        path,
        compressed=True,
        overwrite=overwrite,
        nnf=field.astype(np.int32),
        content_size=np.asarray(content_size, np.int32),
        style_size=np.asarray(style_size, np.int32),
        stride=np.int32(FEATURE_STRIDE),
    )


FIELD_ARRAYS = ("nnf", "content_size", "style_size")  # what :func:`load_field` needs of an nnf.npz


def load_field(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read ``nnf.npz`` back as a dict of arrays (no pickles allowed).

    Parameters
    ----------
    path : str or PathLike
        A file written by :func:`save_field`.

    Returns
    -------
    dict of str to numpy.ndarray
        ``nnf``, ``content_size`` and ``style_size`` (two integers each), and ``stride``.

    Raises
    ------
    InputError
        A missing or empty file, a folder, a file that is not an ``.npz`` archive or lacks
        those arrays (one line naming the file and the fix).
    """
    path = Path(path)
    give = "give the nnf.npz of a run folder (OUTPUT.run/nnf.npz)"
    if not path.exists():
        raise InputError(f"{path}: no such file; {give}")
    refuse_special_file(path)
    if path.is_dir():
        raise InputError(f"{path} is a folder; " + (f"give {path / 'nnf.npz'}" if (path / "nnf.npz").is_file()
                                                   else give))
    if path.stat().st_size == 0:
        raise InputError(f"{path} is empty; {give}")
    if not zipfile.is_zipfile(path):  # numpy's own error for a PNG was about pickled data
        raise InputError(f"{path} is not an .npz archive (or is truncated); {give}")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise InputError(f"{path} is truncated or corrupt ({exc}); {give}") from None
    missing = [name for name in FIELD_ARRAYS if name not in arrays]
    if missing:
        raise InputError(f"{path} lacks {', '.join(missing)}: not an nnf.npz; {give}")
    for name in FIELD_ARRAYS[1:]:
        size = arrays[name]
        if size.shape != (2,) or not np.issubdtype(size.dtype, np.integer) or (size < 1).any():
            raise InputError(f"{path}: its {name} is {size.tolist()!r}, not a height and width; {give}")
    return arrays
