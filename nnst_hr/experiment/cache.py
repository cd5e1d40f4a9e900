"""A content-addressed store of stage records: ``<folder>/<key>.npz`` + ``<folder>/<key>.json``.

Arrays go into the ``.npz`` (written by :func:`nnst_hr.files.save_npz`: atomically, with a
SHA-256 sidecar), scalars into the ``.json``, which is written last: an entry exists once its
json does. An interrupted write leaves no entry, and :meth:`Cache.get` returns ``None`` for a
missing, truncated or corrupted one (it is recomputed, never loaded as garbage);
:meth:`Cache.valid` checks an entry the same way without loading it (the executors check every
key, and load a record only for a task that reads it).

Last use: an entry's json's modification time is its last use. It is set when the entry is
written, and :meth:`Cache.valid` and :meth:`Cache.get` set it again when they find the entry
intact (``os.utime``: one system call, metadata only, so a reader racing a writer or another
reader sees the same bytes either way); ``nnst-hr cache prune --older-than`` reads it.

Checkpoints: a long stage (NNST) keeps the state after each of its scales in
``<folder>/checkpoints/<key>/<scale>.npz`` (:class:`Checkpoints`: atomic, with a SHA-256 sidecar,
as ``nnst-hr run`` keeps them), so that a plan interrupted inside it starts that task again at
the scale it was in. The folder is named by the task's key: a changed setting never resumes from
another setting's states. The executor removes it once the task's record is in the cache;
``nnst-hr cache prune`` removes those left behind (:mod:`.housekeeping`).

Sharing: an experiment holds :func:`cache_lock` shared on the cache folder while it runs (any
number of experiments at once), ``nnst-hr cache prune --yes`` holds it exclusive: a prune never
deletes an entry that a running experiment checked or is about to read, and an experiment does
not start while a prune deletes (each refuses at once, naming the other).

Examples
--------
>>> cache = Cache(tmp_path / "cache")                              # doctest: +SKIP
>>> cache.put("nnst-0f3a", {"raw": image, "objective": 0.41})      # doctest: +SKIP
>>> cache.get("nnst-0f3a")["objective"]                            # doctest: +SKIP
0.41
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import secrets
import shutil
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..files import atomic_output, atomic_write_bytes, load_npz, load_states, save_npz, save_state
from ..integrity import is_intact
from ..lock import create_folder, open_locked

FORMAT = 2  # layout of an entry; a different number reads as missing
KEY_PATTERN = re.compile(r"^[a-z_]+-[0-9a-f]{8,64}$")
ENTRY_SUFFIXES = ("npz", "json", "npz.sha256")  # an entry's files: <key>.<suffix>
DEFAULT_FOLDER = "cache"  # results/<this>: an experiment's cache unless --cache names another
LOCK_NAME = ".lock"  # flock'ed by cache_lock: shared by experiments, exclusive by a prune
CHECKPOINTS = "checkpoints"  # <folder>/<this>/<key>/: the per-scale states of tasks not finished yet
CACHE_ID = "cache-id"  # <folder>/<CHECKPOINTS>/<this>: a random id, by which a Dask worker knows the folder


class Cache:
    """Stage records by key under ``folder`` (created on first write)."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)

    def _paths(self, key: str) -> tuple[Path, Path]:
        if not KEY_PATTERN.match(key):
            raise ValueError(f"not a stage key: {key!r}")
        return self.folder / f"{key}.npz", self.folder / f"{key}.json"

    def check_folder(self) -> None:
        """Refuse (:class:`InputError`), before any work, a folder where an entry's file goes: the
        stage was computed, then could not be stored (and the experiment ended there, every time)."""
        if not self.folder.is_dir():
            return
        for path in self.folder.iterdir():
            key, dot, suffix = path.name.partition(".")
            if dot and KEY_PATTERN.match(key) and suffix in ENTRY_SUFFIXES and path.is_dir():
                raise InputError(f"{path} is a folder where the stage cache keeps a file; move it away")
            if path.name == CHECKPOINTS and not path.is_dir():
                raise InputError(f"{path} is a file where the stage cache keeps its checkpoints; move it away")

    def has(self, key: str) -> bool:
        """True when an entry for ``key`` was completely written (not checked for corruption)."""
        return self._paths(key)[1].is_file()

    def valid(self, key: str) -> bool:
        """True when ``key``'s entry is complete and intact (checksum checked, arrays not loaded).

        A corrupted entry is removed, as :meth:`get` does: it reads as missing from then on.
        """
        entry = self._entry(key)
        if entry is None:
            return False
        npz_path = self._paths(key)[0]
        if not is_intact(npz_path):
            return False
        try:
            with np.load(npz_path, allow_pickle=False) as data:
                if sorted(data.files) != entry.get("arrays"):
                    return False
        except (OSError, ValueError, zipfile.BadZipFile):
            return False
        self._touch(key)
        return True

    def _touch(self, key: str) -> None:
        """Mark ``key`` used now (its json's mtime); a read-only cache or a vanished entry is no error."""
        try:
            os.utime(self._paths(key)[1])
        except OSError:
            pass

    def put(self, key: str, record: dict, meta: dict | None = None) -> None:
        """Store ``record`` (arrays and scalars); ``meta`` (seconds, peak memory) rides along."""
        npz_path, json_path = self._paths(key)
        self.folder.mkdir(parents=True, exist_ok=True)
        arrays = {k: v for k, v in record.items() if isinstance(v, np.ndarray)}
        scalars = {k: _scalar(v) for k, v in record.items() if not isinstance(v, np.ndarray)}
        save_npz(npz_path, **arrays)
        entry = {"format": FORMAT, "key": key, "scalars": scalars, "arrays": sorted(arrays), "meta": meta or {}}
        with atomic_output(json_path, overwrite=True) as tmp:
            tmp.write_text(json.dumps(entry, sort_keys=True) + "\n")

    def meta(self, key: str) -> dict:
        """The ``meta`` stored with ``key`` ({} when missing or unreadable)."""
        entry = self._entry(key)
        return entry.get("meta", {}) if entry else {}

    def _entry(self, key: str) -> dict | None:
        json_path = self._paths(key)[1]
        try:
            entry = json.loads(json_path.read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(entry, dict) or entry.get("format") != FORMAT or entry.get("key") != key:
            return None
        return entry

    def checkpoints(self, key: str, *, shared: bool = False) -> Checkpoints | None:
        """The store of ``key``'s per-scale states (see the module docstring).

        ``shared``: for a process that may not see this folder (a Dask worker): the store carries
        this cache's id (:data:`CACHE_ID`, made on first use) and is used only where the same id
        is found (:meth:`Checkpoints.reachable`); None when the id cannot be written (a read-only
        cache), so that the task runs without checkpoints.
        """
        self._paths(key)  # refuses a malformed key (it names a folder)
        root = self.folder / CHECKPOINTS
        if not shared:
            return Checkpoints(root / key)
        root = root.absolute()  # a worker's working folder is not this process's
        path = root / CACHE_ID
        try:
            if not path.is_file():
                root.mkdir(parents=True, exist_ok=True)
                try:
                    atomic_write_bytes(path, (secrets.token_hex(16) + "\n").encode(), overwrite=False)
                except InputError:  # another process made it meanwhile: its id is the one
                    pass
            cache_id = path.read_text().strip()
        except OSError:
            return None
        return Checkpoints(root / key, cache_id) if cache_id else None

    def drop_checkpoints(self, key: str) -> None:
        """Remove ``key``'s per-scale states (its record is in the cache: they are never read again)."""
        self._paths(key)
        root = self.folder / CHECKPOINTS
        shutil.rmtree(root / key, ignore_errors=True)
        try:
            root.rmdir()  # only when empty: no other task's states, nor the id a Dask run made
        except OSError:
            pass

    def get(self, key: str) -> dict | None:
        """The record stored under ``key``, or None (missing, truncated, checksum mismatch)."""
        entry = self._entry(key)
        if entry is None:
            return None
        arrays = load_npz(self._paths(key)[0])
        if arrays is None or sorted(arrays) != entry.get("arrays"):
            return None
        self._touch(key)
        return {**entry["scalars"], **arrays}


class Checkpoints:
    """One task's per-scale states in ``folder`` (``<scale>.npz``), as ``nnst-hr run`` keeps its own.

    The stage that takes it (``checkpoints=``, given by the executor; not a task argument) passes
    :meth:`load` as ``synthesize_nnst``'s ``start_from`` and :meth:`save` as its ``on_checkpoint``.
    A state that is truncated or corrupt is removed with one warning and its scale recomputed
    (``nnst_hr.files.load_npz``). Picklable: it travels to a Dask worker, which uses it only
    where it sees the same cache (``cache_id``, :meth:`reachable`).
    """

    def __init__(self, folder: str | os.PathLike, cache_id: str | None = None):
        self.folder = Path(folder)
        self.cache_id = cache_id  # the cache's id (CACHE_ID) where it was made; None: this process's own cache
        self.resumed: list[str] = []  # the states that the latest load returned

    def reachable(self) -> bool:
        """Whether this process sees the cache the store was made for (always, without a ``cache_id``)."""
        if self.cache_id is None:
            return True
        try:
            return (self.folder.parent / CACHE_ID).read_text().strip() == self.cache_id
        except (OSError, UnicodeDecodeError):
            return False

    def load(self) -> dict[str, np.ndarray]:
        """``{scale name: float32 (H, W, 3) state}`` of the intact states (``start_from``)."""
        states = load_states(self.folder)
        self.resumed = sorted(states)
        return states

    def save(self, name: str, image: np.ndarray) -> None:
        """Keep the state after scale ``name`` (``on_checkpoint``): atomically, with its checksum."""
        save_state(self.folder, name, image)

    def __repr__(self) -> str:
        return f"Checkpoints({str(self.folder)!r})"


@contextmanager
def cache_lock(folder: str | os.PathLike, *, exclusive: bool) -> Iterator[None]:
    """Hold ``folder``'s cache lock for the block: shared (an experiment) or exclusive (a prune).

    ``folder`` is created if missing. The lock is ``fcntl.flock`` on ``folder/.lock``: the kernel
    drops it when the process ends, however it ends. Taking it never waits: a conflict raises
    :class:`~nnst_hr.errors.InputError` at once. On release, a holder that can take the lock
    exclusively (no one else holds it) removes the lock file, and the folder if this call created
    it and it is empty; as in :func:`nnst_hr.lock.run_lock`, a process that locked a file just
    removed tries again. Shared, in a folder this process may not write to (a read-only cache),
    it holds nothing: this process cannot prune that folder either.
    """
    folder = Path(folder)
    created = not folder.exists()
    path = folder / LOCK_NAME
    if path.is_dir():
        raise InputError(f"{path} is a folder where the stage cache keeps its lock file; move it away")
    create_folder(folder, parents=True, option="--cache")
    try:
        fd = open_locked(path, shared=not exclusive, flags=os.O_RDONLY)  # flock needs no write access
    except BlockingIOError:
        if exclusive:
            raise InputError(f"{folder} is in use by a running experiment; prune it once the experiment "
                             "has finished") from None
        raise InputError(f"{folder} is being pruned (nnst-hr cache prune); run the experiment again once "
                         "the prune has finished") from None
    except OSError as exc:
        if exclusive or exc.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise
        fd = None  # a folder this process cannot write to: it cannot prune it either
    if fd is None:
        yield
        return
    try:
        yield
    finally:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # no one else holds it: tidy up
            path.unlink(missing_ok=True)
            if created:
                folder.rmdir()  # only when empty: an experiment refused before writing leaves no folder
        except OSError:  # held by another process, or the folder holds entries: leave both
            pass
        finally:
            os.close(fd)


def _scalar(value):
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"a stage record holds arrays and scalars, not {type(value).__name__}")
