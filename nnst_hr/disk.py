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
# the margin over the files' estimated bytes: a fraction of them (the file system's blocks and metadata, the
# npz and image containers), at least MIN_MARGIN_BYTES (config.json, timings.json, the checksum sidecars)
MARGIN_FRACTION = 0.1
MIN_MARGIN_BYTES = 1 * MB
BYTE_UNITS = ("B", "kB", "MB", "GB", "TB", "PB")  # powers of 1024, as every size the command line prints


def format_bytes(size: float, *, up: bool = False) -> str:
    """A byte count for a message: one decimal in the largest unit below 1024 (``B`` to ``PB``).

    ``up`` rounds up at the shown precision (for "free at least ..."). Every size the command line
    prints goes through here: an estimate from absurd sizes (``--size 10000000``) read
    "needs 4.9e34 GB"; anything of 1024 PB and more is "more than 1000 PB".

    >>> format_bytes(512), format_bytes(1536), format_bytes(300 * 2**20), format_bytes(16 * 2**30)
    ('512 B', '1.5 kB', '300.0 MB', '16.0 GB')
    >>> format_bytes(1.5 * 2**20 + 1, up=True), format_bytes(5.3e43), format_bytes(float("inf"))
    ('1.6 MB', 'more than 1000 PB', 'more than 1000 PB')
    """
    value = float(size)
    if not value < 1024 ** len(BYTE_UNITS):  # also inf and nan
        return f"more than 1000 {BYTE_UNITS[-1]}"
    for unit in BYTE_UNITS:
        if unit == "B":
            shown = math.ceil(value) if up else round(value)
            if shown < 1024:
                return f"{shown} B"
        else:
            shown = math.ceil(value * 10 - 1e-9) / 10 if up else round(value, 1)
            if shown < 1024 or unit == BYTE_UNITS[-1]:
                return f"{shown:.1f} {unit}"
        value /= 1024
    raise AssertionError  # unreachable: the last unit returns


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` is an ``OSError`` for a full disk or an exceeded quota."""
    return isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS


def disk_full_message(path: str | os.PathLike, needed_bytes: int | None) -> str:
    """``the disk holding FOLDER is full (writing NAME): free N MB or choose another -o``."""
    path = Path(path)
    need = f"free at least {format_bytes(needed_bytes, up=True)}" if needed_bytes else "free some space"
    return (f"the disk holding {path.parent.resolve()} is full (writing {path.name}): "
            f"{need} or choose another -o on another disk")


def estimate_output_bytes(shape: tuple[int, int], suffix: str, bit_depth: int | None, channels: int = 3) -> int:
    """Upper bound of an image file's size: its uncompressed samples (compression only shrinks it).

    ``shape`` is ``(H, W)``; 16-bit samples for ``.tif`` by default or ``bit_depth=16``;
    ``channels`` 4 for a CMYK TIFF (``--cmyk``).
    """
    bits = bit_depth or (16 if suffix.lower() in (".tif", ".tiff") else 8)
    return shape[0] * shape[1] * channels * bits // 8 + 64 * 1024


def margin_bytes(written: int) -> int:
    """The disk space kept free beyond ``written`` estimated bytes: :data:`MARGIN_FRACTION` of them, at least
    :data:`MIN_MARGIN_BYTES`. A fixed margin refused a 64 px run (under 1 MB) on a disk with 10 MB free,
    and was a rounding error next to a 4K poster's run folder.

    >>> margin_bytes(100 * MB) // MB, margin_bytes(1000) // MB
    (10, 1)
    """
    return max(MIN_MARGIN_BYTES, math.ceil(written * MARGIN_FRACTION))


def estimate_run_bytes(nnst_shape: tuple[int, int], out_shape: tuple[int, int] | None,
                       output_suffix: str, bit_depth: int | None, n_scales: int, channels: int = 3) -> int:
    """Bytes a run writes: the output (of ``channels``: 4 for ``--cmyk``), and the run folder's
    images, states and checkpoints.

    Run folder: ``nnst.png`` and ``nnst_raw.png`` (8-bit bound), ``nnst_state.npz`` (two float32
    images), one float32 checkpoint per scale (each at most the full size), ``nnf.npz``
    (int32 on the 1/4 grid) and, with a poster, ``poster_state.npz`` (float32 image and
    int32 field at the poster size); plus :func:`margin_bytes` of all that.
    """
    h, w = nnst_shape
    folder = 2 * (h * w * 3) + 2 * (h * w * 3 * 4) + n_scales * h * w * 3 * 4 + (h // 4) * (w // 4) * 3 * 4
    final = out_shape or nnst_shape
    if out_shape is not None:
        folder += out_shape[0] * out_shape[1] * (3 * 4 + 2 * 4)
    written = folder + estimate_output_bytes(final, output_suffix, bit_depth, channels)
    return written + margin_bytes(written)


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
            f"{output}: the disk holding {output.parent.resolve()} has {format_bytes(free_bytes(output.parent))} free "
            f"but the output and its run folder need about {format_bytes(needed_bytes - already_written, up=True)}: "
            f"free {format_bytes(missing, up=True)} or choose another -o on another disk"
        )
