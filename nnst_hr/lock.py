"""One process at a time per folder: ``run_lock(folder)``.

A run folder (or an experiment folder) is written by one process only. The lock is a file
``folder/lock`` holding the owner's pid and host, locked with ``fcntl.flock``: the kernel
drops the lock when its process ends, however it ends, so a killed run never leaves the
folder locked; a lock file left behind is simply taken over. A second process refuses at
once with :class:`~nnst_hr.errors.InputError` naming the owner, before writing anything.

Examples
--------
>>> with run_lock(output.with_suffix(".run")):     # doctest: +SKIP
...     ...                                        # only this process writes there
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import InputError

LOCK_NAME = "lock"


def _owner(path: Path) -> str:
    try:
        text = path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return "another process"
    fields = dict(part.split("=", 1) for part in text.split() if "=" in part)
    return f"process {fields.get('pid', '?')} on {fields.get('host', '?')}"


@contextmanager
def run_lock(folder: str | os.PathLike, name: str = LOCK_NAME, *, parents: bool = False) -> Iterator[Path]:
    """Hold an exclusive lock on ``folder`` (created if missing) for the block.

    Parameters
    ----------
    folder : str or PathLike
        The folder only one process may write to. If this call creates it and it is
        still empty when the block ends (a run refused before writing anything), it is
        removed again.
    name : str
        Name of the lock file inside ``folder``.
    parents : bool
        Also create missing parent folders; without it a missing parent is refused.

    Yields
    ------
    pathlib.Path
        The lock file (``pid=... host=...``), removed when the block ends.

    Raises
    ------
    InputError
        Another live process holds the lock (the message names its pid and host), or
        the parent folder is missing.

    Notes
    -----
    The file is removed on release (:func:`open_locked` says why that is safe).
    """
    folder = Path(folder)
    created = not folder.exists()
    blocking = file_in_the_way(folder)
    if blocking is not None:
        raise InputError(f"{blocking} is a file where a folder is needed; move it away or choose another -o")
    if not parents and not folder.parent.is_dir():
        raise InputError(f"{folder}: the folder {folder.parent} does not exist; create it first")
    path = folder / name
    if path.is_dir():
        raise InputError(f"{path} is a folder where the lock file goes; move it away or choose another -o")
    create_folder(folder, parents=parents, option="-o")
    try:
        fd = open_locked(path)
    except BlockingIOError:
        raise InputError(
            f"{folder} is in use by {_owner(path)}; wait for it to finish (or stop it), or choose another -o"
        ) from None
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"pid={os.getpid()} host={socket.gethostname()}\n".encode())
        yield path
    finally:
        path.unlink(missing_ok=True)  # before unlocking: a process that opened it then retries on a new file
        os.close(fd)
        if created:
            _remove_if_empty(folder)


def create_folder(folder: str | os.PathLike, *, parents: bool, option: str) -> None:
    """``mkdir`` (``exist_ok``); a file system that refuses it is an :class:`InputError` naming ``option``,
    the option that chose the place (``-o``, ``--cache``).

    A pseudo file system (/proc) refuses a new folder with "No such file or directory", the folder
    above it there: that was a traceback. A refused permission named -o for a ``--cache`` too. A
    full disk, a link loop or a name too long go through: the command says those in one line already.
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=parents, exist_ok=True)
    except OSError as exc:
        above = next((p for p in folder.parents if p.exists()), None)  # where mkdir was refused
        if above is None or not above.is_dir():  # a file in the way: the callers check that first
            raise
        if exc.errno == errno.ENOENT:
            raise InputError(f"cannot create {folder} ({exc.strerror}, though {above} exists: a file system that "
                             f"takes no new files, as /proc); choose another {option}") from None
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise InputError(f"cannot create {folder} ({exc.strerror}); choose another {option} or fix the "
                             f"permissions of {above}") from None
        raise


def file_in_the_way(folder: str | os.PathLike) -> Path | None:
    """The file (anything not a folder) at ``folder`` or at the nearest of its parents that exists:
    what keeps ``folder`` from being a folder or from being created (``mkdir`` fails on it). None
    when there is none.

    Examples
    --------
    >>> file_in_the_way("/") is None
    True
    """
    for path in (Path(folder), *Path(folder).parents):
        if path.exists() or path.is_symlink():
            return None if path.is_dir() else path
    return None


def open_locked(path: Path, *, shared: bool = False, flags: int = os.O_RDWR) -> int:
    """Open ``path`` (created if missing) and ``flock`` it without waiting: the descriptor.

    ``flock`` locks an open file, not a name, and a holder removes the file on release: after
    locking, the open file is checked to still be the one at ``path``, and a process that
    locked a file just removed tries again.

    Raises
    ------
    BlockingIOError
        Another process holds a conflicting lock (``shared``: an exclusive one).
    """
    while True:
        fd = os.open(path, flags | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)  # the previous holder removed the file between our open and flock


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:  # not empty (or already gone): keep it
        pass
