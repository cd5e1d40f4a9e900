"""See and prune an experiment's stage cache (``nnst-hr cache info`` / ``nnst-hr cache prune``).

A shared cache only grows: every record of every setting ever tried stays. :func:`survey` lists
what a cache folder holds, without changing it: the entries by stage kind (their key's prefix),
and what no experiment will ever read again, the *junk*:

- ``orphan``: an ``.npz`` (and/or its ``.sha256`` sidecar) with no ``.json``, left by a write
  killed between the two (an entry exists once its json does, so it reads as missing forever);
- ``unreadable``: a json that does not parse, names another key, or whose ``.npz`` or sidecar
  is missing (checksums are not verified here: that reads every byte; an experiment that reads a
  damaged entry removes it);
- ``old_format``: an entry written under another :data:`~.cache.FORMAT`;
- ``temporary``: the hidden ``.<name>.<hex>.tmp<suffix>`` file of a write that was killed
  (:func:`nnst_hr.files.atomic_output`);
- ``stale_checkpoints``: the per-scale states (``checkpoints/<key>/``, :class:`~.cache.Checkpoints`)
  of a task whose record is stored (the executor removes them as it stores it; a kill between the
  two, or a Dask worker still running a stage its interrupted client had given up, leaves them).

The states of a task whose record is not stored (``checkpoints``: an interrupted NNST, from which
the plan run again resumes) are an item like an entry: they stay while a ``keep`` plan reads
their key, or while used within ``older_than`` (their newest file's modification time).

An entry of an older *stage* version or package version cannot be told from its file: the
versions are hashed into its key. It is simply a key that no current plan's graph reads, which
is what :func:`prune` with ``keep`` (plan files) removes: every entry that none of the plans'
graphs reads (built as the experiment builds them, reading and hashing their input files, running
nothing), and the junk. ``older_than`` (seconds) removes entries not used for that long instead,
or, with ``keep``, only those of the entries outside the plans (``--keep a.toml --older-than 30``:
anything the plans read stays, and so does anything else used in the last 30 days). An entry's
last use is its json's mtime, which the cache sets on each write and reuse (:mod:`.cache`).

Deleting an entry removes its json first (an entry half deleted reads as missing, never as a
corrupt hit), then the ``.npz``, then the sidecar. A prune that deletes holds the cache lock
exclusively (:func:`~.cache.cache_lock`): it is refused while an experiment runs on the cache,
and an experiment started meanwhile is refused. Only files named as a cache names them are
ever deleted, and a folder holding anything else is refused whole (:func:`cache_folder`).

Examples
--------
>>> found = survey(cache_folder("results"))                         # doctest: +SKIP
>>> found.totals()["total"]                                          # doctest: +SKIP
{'count': 52, 'bytes': 1843200}
>>> pruning = prune("results", keep=["plan.toml"], apply=True)       # doctest: +SKIP
>>> pruning.freed_bytes                                              # doctest: +SKIP
1024000
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ..disk import format_bytes
from ..errors import InputError, path_refused
from ..integrity import SIDECAR_SUFFIX, checksum_ok
from .cache import CACHE_ID, CHECKPOINTS, DEFAULT_FOLDER, FORMAT, LOCK_NAME, cache_lock

# kinds of what is never read again
JUNK = ("orphan", "unreadable", "old_format", "corrupt", "temporary", "stale_checkpoints")
JUNK_LABELS = {"orphan": "orphans (.npz, no .json)", "unreadable": "unreadable entries", "corrupt": "corrupt entries",
               "old_format": "old-format entries", "temporary": "temporary files (killed writes)",
               "stale_checkpoints": "checkpoints of stored tasks"}
JUNK_WHY = {"orphan": "orphan (no .json)", "unreadable": "unreadable", "old_format": "old format",
            "corrupt": "corrupt (its checksum does not match)",
            "temporary": "temporary file of a killed write",
            "stale_checkpoints": "checkpoints of a task whose record is stored"}
_KEY = r"[a-z_]+-[0-9a-f]{8,64}"
_SUFFIXES = r"\.npz|\.json|\.npz\.sha256"
ENTRY_FILE = re.compile(rf"^(?P<key>{_KEY})(?P<suffix>{_SUFFIXES})$")
# atomic_output's temporary: ".<name>.<8 hex>.tmp<name's suffix>"
TEMPORARY_FILE = re.compile(rf"^\.{_KEY}(?:{_SUFFIXES})\.[0-9a-f]{{8}}\.tmp(?:\.npz|\.json|\.sha256)?$")
# a task's per-scale state (nnst_hr.run's checkpoint names), its sidecar, or the temporary of a killed write
CHECKPOINT_FILE = re.compile(r"^(?:scale\d+\.npz(?:\.sha256)?|\.scale\d+\.npz(?:\.sha256)?\.[0-9a-f]{8}\.tmp"
                             r"(?:\.npz|\.sha256)?)$")
KEY_FOLDER = re.compile(rf"^{_KEY}$")
DAY_S = 86400.0


@dataclass(frozen=True)
class Item:
    """One entry (its files) or one piece of junk in a cache folder."""

    name: str  # the key; a temporary file's own name
    kind: str  # the stage ("nnst", "poster_color", ...) for an entry, else one of JUNK
    files: tuple[Path, ...]  # in deletion order: the json first, then the .npz, then the sidecar
    bytes: int
    last_used: float  # seconds since the epoch: the json's mtime (else the newest file's)

    @property
    def is_junk(self) -> bool:
        return self.kind in JUNK


@dataclass
class Survey:
    """What a cache folder holds (see the module docstring)."""

    folder: Path
    items: list[Item]
    in_use: bool  # an experiment holds the cache lock now
    verified: bool = False  # every entry's checksum was checked (else none is counted corrupt)

    @property
    def junk_kinds(self) -> tuple[str, ...]:
        """The kinds of junk this survey looked for ("corrupt" only when verified)."""
        return JUNK if self.verified else tuple(k for k in JUNK if k != "corrupt")

    def totals(self) -> dict[str, dict[str, int]]:
        """``{stage kind or junk kind or "total": {"count": n, "bytes": b}}``, stages first (by name)."""
        counts, sizes = Counter(), Counter()
        for item in self.items:
            counts[item.kind] += 1
            sizes[item.kind] += item.bytes
        kinds = sorted(k for k in counts if k not in JUNK) + list(self.junk_kinds)
        out = {kind: {"count": counts[kind], "bytes": sizes[kind]} for kind in kinds}
        out["total"] = {"count": sum(counts.values()), "bytes": sum(sizes.values())}
        return out

    def to_json(self) -> dict:
        totals = self.totals()
        return {"folder": str(self.folder), "in_use": self.in_use,
                "stages": {k: v for k, v in totals.items() if k not in JUNK and k != "total"},
                **{k: totals[k] for k in self.junk_kinds}, "total": totals["total"]}


def cache_folder(path: str | os.PathLike) -> Path:
    """The cache folder that ``path`` names: itself, or its ``cache/`` (a results folder).

    Raises :class:`InputError` (one line) when it is missing, or holds anything a cache does not
    (another file, a folder): nothing there is then listed nor deleted.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise InputError(f"{path} is a file, not a folder; give a cache folder or the results folder holding it")
    if not path.is_dir():
        refused = path_refused(path)  # a link loop said "no such folder"
        raise InputError(refused or f"{path}: no such folder; give a cache folder or the results folder holding it")
    if (path / DEFAULT_FOLDER).is_dir():
        path = path / DEFAULT_FOLDER
    elif (path / "results.csv").is_file():
        raise InputError(f"{path} is a results folder without a {DEFAULT_FOLDER}/ (its experiment ran with "
                         "--cache DIR?); give that cache folder")
    strangers = sorted(_stranger(p) for p in path.iterdir() if not _cache_file(p) and not _checkpoints_root(p))
    root = path / CHECKPOINTS
    if _checkpoints_root(root):
        strangers += sorted(f"{CHECKPOINTS}/{name}" for name in _checkpoint_strangers(root))
    if strangers:
        shown = ", ".join(strangers[:3]) + (f" and {len(strangers) - 3} more" if len(strangers) > 3 else "")
        raise InputError(f"{path} does not look like a stage cache (it holds {shown}); give a cache folder "
                         f"(results/{DEFAULT_FOLDER}) or the results folder holding it")
    return path


def _stranger(path: Path) -> str:
    """How the refusal names what a cache does not hold: ``name/`` a folder; a link (to a file, or
    nowhere) named as a cache names its files is marked, else it reads as an entry."""
    if path.is_symlink():
        return f"{path.name} (a link)"
    return path.name + ("/" if path.is_dir() else "")


def _cache_file(path: Path) -> bool:
    if path.is_symlink() or not path.is_file():
        return False
    return path.name == LOCK_NAME or bool(ENTRY_FILE.match(path.name) or TEMPORARY_FILE.match(path.name))


def _checkpoints_root(path: Path) -> bool:
    return path.name == CHECKPOINTS and path.is_dir() and not path.is_symlink()


def _checkpoint_strangers(root: Path) -> list[str]:
    """What ``checkpoints/`` holds besides the cache's id and tasks' folders of states (relative names)."""
    out = []
    for path in root.iterdir():
        if path.name == CACHE_ID and path.is_file() and not path.is_symlink():
            continue
        if not (KEY_FOLDER.match(path.name) and path.is_dir() and not path.is_symlink()):
            out.append(_stranger(path))
            continue
        out += [f"{path.name}/{_stranger(f)}" for f in path.iterdir()
                if f.is_symlink() or not f.is_file() or not CHECKPOINT_FILE.match(f.name)]
    return out


def _checkpoint_items(folder: Path, stored: set[str]) -> list[Item]:
    """Each task's folder of states in ``folder/checkpoints/``: its files, then the folder itself."""
    root = folder / CHECKPOINTS
    items = []
    for path in sorted(root.iterdir()) if _checkpoints_root(root) else ():
        if not KEY_FOLDER.match(path.name) or not path.is_dir() or path.is_symlink():
            continue
        stats = []
        for file in sorted(path.iterdir()):
            try:
                stats.append((file, file.stat()))
            except FileNotFoundError:  # removed since listed
                continue
        last = max((st.st_mtime for _, st in stats), default=path.stat().st_mtime)
        kind = "stale_checkpoints" if path.name in stored else "checkpoints"
        items.append(Item(path.name, kind, (*(f for f, _ in stats), path), sum(st.st_size for _, st in stats), last))
    return items


def survey(folder: str | os.PathLike, *, check_in_use: bool = True, verify: bool = False) -> Survey:
    """Every entry and piece of junk in ``folder`` (a checked cache folder: :func:`cache_folder`).

    ``check_in_use``: try the cache lock to tell whether an experiment runs on it (pass False when
    holding it: this process's own lock would read as another's). ``verify``: read every entry's
    arrays and count those whose checksum does not match as "corrupt" (this reads every byte; an
    experiment finds such an entry only when it reads it). Nothing is changed either way.
    """
    folder = Path(folder)
    by_key: dict[str, dict[str, os.stat_result]] = {}
    items = []
    for path in folder.iterdir():
        try:
            stat = path.stat()
        except FileNotFoundError:  # removed since listed
            continue
        match = ENTRY_FILE.match(path.name)
        if match:
            by_key.setdefault(match["key"], {})[match["suffix"]] = stat
        elif TEMPORARY_FILE.match(path.name):
            items.append(Item(path.name, "temporary", (path,), stat.st_size, stat.st_mtime))
    for key, files in sorted(by_key.items()):
        order = [s for s in (".json", ".npz", ".npz" + SIDECAR_SUFFIX) if s in files]
        paths = tuple(folder / f"{key}{s}" for s in order)
        size = sum(files[s].st_size for s in order)
        last = files[".json"].st_mtime if ".json" in files else max(st.st_mtime for st in files.values())
        kind = _classify(folder, key, files)
        if verify and kind not in JUNK and not checksum_ok(folder / f"{key}.npz"):
            kind = "corrupt"
        items.append(Item(key, kind, paths, size, last))
    stored = {item.name for item in items if not item.is_junk}
    items += _checkpoint_items(folder, stored)
    return Survey(folder, sorted(items, key=lambda i: (i.is_junk, i.kind, i.name)), check_in_use and _in_use(folder),
                  verified=verify)


def _classify(folder: Path, key: str, files: dict) -> str:
    if ".json" not in files:
        return "orphan"
    try:
        entry = json.loads((folder / f"{key}.json").read_text())
    except (OSError, ValueError):
        return "unreadable"
    if not isinstance(entry, dict):
        return "unreadable"
    if entry.get("format") != FORMAT:
        return "old_format"
    if entry.get("key") != key or ".npz" not in files or ".npz" + SIDECAR_SUFFIX not in files:
        return "unreadable"
    return key.rsplit("-", 1)[0]


def _in_use(folder: Path) -> bool:
    """Whether an experiment holds the cache lock now (tried without creating the lock file)."""
    try:
        fd = os.open(folder / LOCK_NAME, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # also drops the lock taken to test
    return False


def plan_keys(plans: Iterable[str | os.PathLike]) -> set[str]:
    """The stage keys the plans' graphs read, built as ``nnst-hr experiment`` builds them.

    Reads (and hashes) every input file; nothing runs. A plan that is invalid or whose inputs are
    missing raises :class:`InputError` naming it: it is not taken as keeping nothing.
    """
    from .graph import build_graph, read_inputs
    from .plan import load_plan

    keys: set[str] = set()
    for path in plans:
        try:
            plan = load_plan(path)
            inputs = read_inputs(plan)
        except InputError as exc:
            message = str(exc)
            raise InputError(f"--keep {message if message.startswith(str(path)) else f'{path}: {message}'}") from None
        except OSError as exc:
            raise InputError(f"--keep {path}: cannot read an input: {exc}") from None
        keys.update(build_graph(plan, inputs))
    return keys


@dataclass
class Pruning:
    """What :func:`prune` found to remove (and removed, when ``deleted``)."""

    folder: Path
    remove: list[tuple[Item, str]]  # (item, why)
    kept: list[Item] = field(default_factory=list)
    deleted: bool = False
    in_use: bool = False

    @property
    def freed_bytes(self) -> int:
        return sum(item.bytes for item, _ in self.remove)

    def to_json(self) -> dict:
        return {"folder": str(self.folder), "deleted": self.deleted, "in_use": self.in_use,
                "remove": [{"name": i.name, "kind": i.kind, "bytes": i.bytes, "why": why,
                            "files": [p.name for p in i.files]} for i, why in self.remove],
                "freed_bytes": self.freed_bytes, "kept": {"count": len(self.kept),
                                                          "bytes": sum(i.bytes for i in self.kept)}}


def select(found: Survey, keep: set[str] | None = None, older_than: float | None = None,
           now: float | None = None) -> Pruning:
    """Split ``found`` into what goes and what stays (pure: deletes nothing).

    Junk always goes. An entry goes when it is in none of ``keep`` (keys; None: no plan given)
    and, with ``older_than`` (seconds), unused for longer than that; with neither, every entry stays.
    """
    now = time.time() if now is None else now
    remove, kept = [], []
    for item in found.items:
        if item.is_junk:
            remove.append((item, JUNK_WHY[item.kind]))
            continue
        unread = keep is not None and item.name not in keep
        idle = older_than is not None and now - item.last_used > older_than
        if (unread or idle) and (keep is None or unread) and (older_than is None or idle):
            why = [w for w, yes in (("in no --keep plan", unread),
                                    (f"unused for {(now - item.last_used) / DAY_S:.1f} days", idle)) if yes]
            remove.append((item, ", ".join(why)))
        else:
            kept.append(item)
    return Pruning(found.folder, remove, kept, in_use=found.in_use)


def delete(items: Iterable[Item]) -> None:
    """Remove the items' files, each entry json first, a task's states' folder last (call it holding
    the cache lock exclusively)."""
    for item in items:
        for path in item.files:
            if not path.is_dir() or path.is_symlink():
                path.unlink(missing_ok=True)
                continue
            try:
                path.rmdir()
            except OSError:  # a file written into it meanwhile (a Dask stage still running): left
                pass


def prune(path: str | os.PathLike, keep: Iterable[str | os.PathLike] = (), older_than_days: float | None = None,
          *, apply: bool = False, verify: bool = False) -> Pruning:
    """Find (and with ``apply``, delete) what the cache at ``path`` holds that no one will read.

    ``keep``: plan files whose graphs' entries stay; ``older_than_days``: entries unused for
    longer go (see :func:`select`). Without ``apply`` nothing is changed (a dry run). ``verify``:
    corrupt entries go too (:func:`survey`).

    Raises :class:`InputError`: not a cache folder, a ``keep`` plan that cannot be read, or (with
    ``apply``) an experiment running on the cache.
    """
    # `not >= 0` also refuses NaN, which no age exceeds: it would have kept every entry silently
    if older_than_days is not None and not older_than_days >= 0:
        raise InputError(f"--older-than must be a number of days, 0 or more; got {older_than_days:g}")
    folder = cache_folder(path)
    keep = list(keep)
    keys = plan_keys(keep) if keep else None  # before the lock: hashing inputs can take a while
    older_than = None if older_than_days is None else older_than_days * DAY_S
    if not apply:
        return select(survey(folder, verify=verify), keys, older_than)
    with cache_lock(folder, exclusive=True):
        pruning = select(survey(folder, check_in_use=False, verify=verify), keys, older_than)
        delete(item for item, _ in pruning.remove)
    pruning.deleted = True
    return pruning


def human_bytes(size: int) -> str:
    """``1536 -> '1.5 kB'``: :func:`nnst_hr.disk.format_bytes`, the one format of sizes on the command line."""
    return format_bytes(size)


def info_rows(found: Survey) -> list[tuple[str, str, str]]:
    """The rows of ``nnst-hr cache info``'s table: (what, count, size), the total last."""
    totals = found.totals()
    return [(JUNK_LABELS.get(kind, kind), str(t["count"]), human_bytes(t["bytes"])) for kind, t in totals.items()]


def text_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    """Plain aligned columns (the first left-aligned, the others right-aligned), for pipes and logs."""
    table = [header, *rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in
                               enumerate(zip(row, widths, strict=True))).rstrip() for row in table)


def pruning_lines(pruning: Pruning) -> list[str]:
    """``nnst-hr cache prune``'s report: a line per item removed (or to remove), then a summary."""
    verb = "removed" if pruning.deleted else "would remove"
    lines = [f"{verb} {item.name} ({item.kind}, {human_bytes(item.bytes)}): {why}" for item, why in pruning.remove]
    entries = sum(not item.is_junk for item, _ in pruning.remove)
    kept = sum(item.bytes for item in pruning.kept)
    lines.append(f"{'freed' if pruning.deleted else 'would free'} {human_bytes(pruning.freed_bytes)}: "
                 f"{entries} entries and {len(pruning.remove) - entries} leftovers; "
                 f"{len(pruning.kept)} entries ({human_bytes(kept)}) kept")
    if not pruning.deleted:
        lines.append("(a dry run: nothing was deleted; add --yes to delete"
                     + (", once the experiment running on this cache has finished)" if pruning.in_use else ")"))
    return lines
