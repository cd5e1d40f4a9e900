"""Disk space: refuse a run whose files will not fit, and name a full disk in one line.

Writes go through :func:`nnst_hr.files.atomic_output`, which removes its temporary file on any
error and maps ``ENOSPC``/``EDQUOT`` to :class:`~nnst_hr.errors.DiskFullError` with
:func:`disk_full_message`. :func:`check_disk_space` refuses a run before its first heavy
stage when the output and the run folder cannot fit (estimated by :func:`estimate_run_bytes`).

Examples
--------
>>> estimate_output_bytes((2304, 4096), ".tif", None) // 2**20   # 16-bit RGB, uncompressed bound
54
"""

from __future__ import annotations

import errno
import math
import os
import shutil
from pathlib import Path

from .errors import InputError

DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)  # no space left; disk quota exceeded
MB = 2**20
MARGIN_BYTES = 16 * MB  # config.json, timings.json, sidecars, and the file system's own blocks


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` is an ``OSError`` for a full disk or an exceeded quota."""
    return isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS


def disk_full_message(path: str | os.PathLike, needed_bytes: int | None) -> str:
    """``the disk holding FOLDER is full (writing NAME): free N MB or choose another -o``."""
    path = Path(path)
    need = f"free at least {max(1, math.ceil(needed_bytes / MB))} MB" if needed_bytes else "free some space"
    return (f"the disk holding {path.parent.resolve()} is full (writing {path.name}): "
            f"{need} or choose another -o on another disk")


def estimate_output_bytes(shape: tuple[int, int], suffix: str, bit_depth: int | None) -> int:
    """Upper bound of an image file's size: its uncompressed samples (compression only shrinks it).

    ``shape`` is ``(H, W)``; 16-bit samples for ``.tif`` by default or ``bit_depth=16``.
    """
    bits = bit_depth or (16 if suffix.lower() in (".tif", ".tiff") else 8)
    return shape[0] * shape[1] * 3 * bits // 8 + 64 * 1024


def estimate_run_bytes(nnst_shape: tuple[int, int], out_shape: tuple[int, int] | None,
                       output_suffix: str, bit_depth: int | None, n_scales: int) -> int:
    """Bytes a run writes: the output, and the run folder's images, states and checkpoints.

    Run folder: ``nnst.png`` and ``nnst_raw.png`` (8-bit bound), ``nnst_state.npz`` (two float32
    images), one float32 checkpoint per scale (each at most the full size), ``nnf.npz``
    (int32 on the 1/4 grid) and, with a poster, ``poster_state.npz`` (float32 image and
    int32 field at the poster size).
    """
    h, w = nnst_shape
    folder = 2 * (h * w * 3) + 2 * (h * w * 3 * 4) + n_scales * h * w * 3 * 4 + (h // 4) * (w // 4) * 3 * 4
    final = out_shape or nnst_shape
    if out_shape is not None:
        folder += out_shape[0] * out_shape[1] * (3 * 4 + 2 * 4)
    return folder + estimate_output_bytes(final, output_suffix, bit_depth) + MARGIN_BYTES


def free_bytes(folder: str | os.PathLike) -> int:
    """Bytes available to this user on the disk holding ``folder``."""
    return shutil.disk_usage(folder).free


def check_disk_space(output: str | os.PathLike, needed_bytes: int, *, already_written: int = 0) -> None:
    """Refuse (:class:`InputError`) when ``needed_bytes - already_written`` exceed the free space.

    ``already_written``: bytes of the run folder that a resumed run will replace in place
    (they are freed as their files are replaced).
    """
    output = Path(output)
    missing = needed_bytes - already_written - free_bytes(output.parent)
    if missing > 0:
        raise InputError(
            f"{output}: the disk holding {output.parent.resolve()} has {free_bytes(output.parent) // MB} MB free "
            f"but the output and its run folder need about {math.ceil((needed_bytes - already_written) / MB)} MB: "
            f"free {math.ceil(missing / MB)} MB or choose another -o on another disk"
        )
