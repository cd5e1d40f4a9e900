"""SHA-256 sidecars: a checkpoint or cache entry is used only if its bytes are the ones written.

Every resumable file ``F`` gets a sidecar ``F.sha256`` (``sha256sum`` format), written
*after* ``F`` is complete. :func:`is_intact` accepts ``F`` only when both exist and the
digest matches; otherwise (truncated by a full disk or a copy, corrupted, or ``F`` left
without its sidecar by a kill between the two writes) it warns once, removes both and
returns False, so the caller recomputes instead of loading garbage.

Examples
--------
>>> path = tmp_path / "state.npz"                                      # doctest: +SKIP
>>> save_npz(path, image=image)            # nnst_hr.files: atomic write + sidecar  # doctest: +SKIP
>>> is_intact(path)                                                     # doctest: +SKIP
True
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

SIDECAR_SUFFIX = ".sha256"


def sidecar(path: str | os.PathLike) -> Path:
    """``nnf.npz -> nnf.npz.sha256``."""
    path = Path(path)
    return path.with_name(path.name + SIDECAR_SUFFIX)


def write_checksum(path: str | os.PathLike) -> Path:
    """Write ``path``'s SHA-256 to its sidecar (atomically); call it once ``path`` is complete."""
    from .files import atomic_write_bytes, sha256_file

    path = Path(path)
    return atomic_write_bytes(sidecar(path), f"{sha256_file(path)}  {path.name}\n".encode(), overwrite=True)


def is_intact(path: str | os.PathLike) -> bool:
    """Whether ``path`` exists with a sidecar whose digest matches its bytes.

    A file that exists but fails the check is removed (with its sidecar) after a one-line
    ``UserWarning`` naming it, so that it is recomputed. A missing file returns False
    silently (a stray sidecar is removed).
    """
    from .files import sha256_file

    path = Path(path)
    check = sidecar(path)
    if not path.is_file():
        check.unlink(missing_ok=True)
        return False
    expected = _recorded_digest(path)
    if expected == sha256_file(path):
        return True
    if expected is None:
        reason = "has no checksum (its write was interrupted, or an older version wrote it)"
    else:
        reason = "is truncated or corrupt (checksum mismatch)"
    warnings.warn(f"{path} {reason}; recomputing it", stacklevel=2)
    path.unlink(missing_ok=True)
    check.unlink(missing_ok=True)
    return False


def checksum_ok(path: str | os.PathLike) -> bool:
    """Whether ``path`` exists with a sidecar whose digest matches its bytes; unlike :func:`is_intact`
    it changes nothing (for reports: ``nnst-hr cache info --verify``)."""
    from .files import sha256_file

    path = Path(path)
    return path.is_file() and _recorded_digest(path) == sha256_file(path)


def _recorded_digest(path: Path) -> str | None:
    """The digest in ``path``'s sidecar: None without a sidecar, "" when it cannot be read."""
    check = sidecar(path)
    try:
        return check.read_text().split()[0] if check.is_file() else None
    except (OSError, UnicodeDecodeError, IndexError):
        return ""


def remove(path: str | os.PathLike) -> None:
    """Remove ``path`` and its sidecar (either may be missing)."""
    Path(path).unlink(missing_ok=True)
    sidecar(path).unlink(missing_ok=True)
