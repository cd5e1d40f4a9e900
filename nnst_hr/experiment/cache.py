"""A content-addressed store of stage records: ``<folder>/<key>.npz`` + ``<folder>/<key>.json``.

Arrays go into the ``.npz`` (written by :func:`nnst_hr.files.save_npz`: atomically, with a
SHA-256 sidecar), scalars into the ``.json``, which is written last: an entry exists once its
json does. An interrupted write leaves no entry, and :meth:`Cache.get` returns ``None`` for a
missing, truncated or corrupted one (it is recomputed, never loaded as garbage);
:meth:`Cache.valid` checks an entry the same way without loading it (the executors check every
key, and load a record only for a task that reads it).

Examples
--------
>>> cache = Cache(tmp_path / "cache")                              # doctest: +SKIP
>>> cache.put("nnst-0f3a", {"raw": image, "objective": 0.41})      # doctest: +SKIP
>>> cache.get("nnst-0f3a")["objective"]                            # doctest: +SKIP
0.41
"""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path

import numpy as np

from ..files import atomic_output, load_npz, save_npz
from ..integrity import is_intact

FORMAT = 2  # layout of an entry; a different number reads as missing
KEY_PATTERN = re.compile(r"^[a-z_]+-[0-9a-f]{8,64}$")


class Cache:
    """Stage records by key under ``folder`` (created on first write)."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)

    def _paths(self, key: str) -> tuple[Path, Path]:
        if not KEY_PATTERN.match(key):
            raise ValueError(f"not a stage key: {key!r}")
        return self.folder / f"{key}.npz", self.folder / f"{key}.json"

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
                return sorted(data.files) == entry.get("arrays")
        except (OSError, ValueError, zipfile.BadZipFile):
            return False

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

    def get(self, key: str) -> dict | None:
        """The record stored under ``key``, or None (missing, truncated, checksum mismatch)."""
        entry = self._entry(key)
        if entry is None:
            return None
        arrays = load_npz(self._paths(key)[0])
        if arrays is None or sorted(arrays) != entry.get("arrays"):
            return None
        return {**entry["scalars"], **arrays}


def _scalar(value):
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"a stage record holds arrays and scalars, not {type(value).__name__}")
