"""Run a task graph in this process, skipping what the cache holds (see ARCHITECTURE.md, "The experiment graph").

``execute(graph, cache)`` walks the graph in order; a key already in the cache is not run (a
finished plan run again does no work); each computed record is written to the cache as soon as
it exists (an interrupted plan resumes from the stages written). A task with ``store=False``
(the inputs stage) is never written: it runs when a task that reads it runs, and not at all
when none does. A stage that raises a bad-input error gives a :class:`Failure` for its key and
every key downstream; any other exception is a bug and propagates.

Memory is bounded by the graph's width, not its length: a record is held only while a task
that reads it is still to come (consumers are counted in the graph), a cached record is loaded
only when a task that reads it runs, and the :class:`Results` returned hold only the failures
(a record is read from the cache when asked for, one at a time).

Checkpoints: a stage function that takes ``checkpoints=`` (:func:`~.stages.nnst`) gets its task's
store of per-scale states in the cache (:meth:`Cache.checkpoints`, under the task's key; no task
argument, as ``progress=`` is none): a task interrupted inside it (Ctrl-C, SIGTERM, SIGKILL)
starts again at the scale it was in. The store is removed once the task's record is in the
cache. The ``"done"`` info of a task that resumed names the states it started from
(``resumed``), whose time its ``seconds`` does not count.

Memory: ``peak_memory`` is the largest rise of this process's resident set size (RSS) above its
value when the stage started, sampled every :data:`MEMORY_SAMPLE_S` by a thread (psutil); it
counts torch's and NumPy's allocations alike, but not memory freed and reused inside the stage
below the starting RSS, and not GPU memory. Without psutil it is the rise of the process's peak
RSS (``getrusage`` maxrss), 0 for a stage that stays below an earlier peak. ``peak_gpu_memory`` is
torch's peak of allocated CUDA memory on the current device while the stage ran
(``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``), or None when the process
did not use CUDA: it is read only where torch is already imported and CUDA initialised, so a CPU
plan never imports torch or starts CUDA for it. Unlike ``peak_memory`` it is not a rise: tensors
held from before the stage count.
"""

from __future__ import annotations

import inspect
import resource
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

from ..memory import release_freed_memory
from .cache import Cache
from .graph import Graph, Task, TaskRef

MEMORY_SAMPLE_S = 0.02  # RSS sampling period of the peak-memory thread


@dataclass
class Failure:
    message: str  # one line, as the CLI would print it
    stage: str


def input_errors() -> tuple[type[Exception], ...]:
    """The exception types that mean bad input (a failed run), not a bug."""
    from guidance import MaskError
    from patchsynth import PatchSynthError

    from ..errors import InputError

    return InputError, MaskError, PatchSynthError


class PeakMemory:
    """Context manager: ``.peak`` = the largest RSS rise (bytes) while the block ran.

    ``.gpu_peak``: the peak CUDA memory allocated by torch while the block ran (bytes), or None
    when CUDA was not initialised by the end of the block (see the module docstring).
    """

    def __init__(self, period: float = MEMORY_SAMPLE_S):
        self.period, self.peak = period, 0
        self.gpu_peak: int | None = None
        try:
            import psutil

            self._process = psutil.Process()
        except ImportError:
            self._process = None

    def _sample(self):
        while not self._stop.wait(self.period):
            self.peak = max(self.peak, self._process.memory_info().rss - self._start)

    def __enter__(self):
        cuda = _cuda_in_use()
        if cuda is not None:
            cuda.reset_peak_memory_stats()
        if self._process is None:
            self._start = _maxrss()
            return self
        self._start = self._process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        # CUDA first initialised inside the block: its peak since then is the block's
        cuda = _cuda_in_use()
        self.gpu_peak = int(cuda.max_memory_allocated()) if cuda is not None else None
        if self._process is None:
            self.peak = max(0, _maxrss() - self._start)
            return False
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._process.memory_info().rss - self._start, 0)
        return False


def _cuda_in_use():
    """``torch.cuda`` where torch is imported and CUDA initialised, else None (imports nothing)."""
    torch = sys.modules.get("torch")
    cuda = getattr(torch, "cuda", None)
    return cuda if cuda is not None and cuda.is_initialized() else None


def _maxrss() -> int:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024  # Linux reports KiB


def consumers(graph: Graph) -> Counter:
    """``{key: how many tasks of graph read its record}`` (a task reading it twice counts once)."""
    return Counter(ref for task in graph.values() for ref in set(task.upstream()))


class Results(Mapping):
    """``{key: Record | Failure}`` for every key of an executed graph, holding only the failures.

    ``results[key]`` reads a record from the cache when asked for; a record that is not stored
    (``Task.store`` false: the inputs stage) is recomputed from its task's arguments (the stages
    are pure: the same record). Use :meth:`failure` to ask whether a key failed without loading.
    """

    def __init__(self, graph: Graph, cache: Cache, failures: dict[str, Failure]):
        self.graph, self.cache, self.failures = graph, cache, failures

    def failure(self, key: str) -> Failure | None:
        """The :class:`Failure` of ``key``, or None when it has a record."""
        return self.failures.get(key)

    def __getitem__(self, key: str):
        if key in self.failures:
            return self.failures[key]
        task = self.graph[key]
        if not task.store:
            return task.func(*(self[a.key] if isinstance(a, TaskRef) else a for a in task.args))
        record = self.cache.get(key)
        if record is None:
            raise KeyError(f"{key}: no record in {self.cache.folder} (removed since the plan ran?)")
        return record

    def __contains__(self, key) -> bool:
        return key in self.graph

    def __iter__(self) -> Iterator[str]:
        return iter(self.graph)

    def __len__(self) -> int:
        return len(self.graph)


def execute(graph: Graph, cache: Cache, *, on_event: Callable | None = None,
            progress: Callable | None = None) -> Results:
    """Run every task of ``graph`` not in ``cache``; returns :class:`Results` (``{key: Record | Failure}``).

    ``on_event(event, task, info)``: event in ``"cached"``, ``"start"``, ``"done"``,
    ``"failed"``; ``info`` has ``seconds``, ``peak_memory`` and ``peak_gpu_memory`` (bytes; None
    without CUDA) for computed and cached records (the figures measured when it was computed),
    ``message`` for failures. A task with
    ``store=False`` that no running task reads sends no event.
    ``progress(task)``, called as each task starts (before its ``"start"``): a reporter of its steps
    (:class:`~nnst_hr.progress.Progress`) or None, passed as ``progress=`` to the stage functions
    that take one (:func:`~.stages.nnst`, :func:`~.stages.poster`); it is no task argument, so
    keys and records do not depend on it.
    """
    return _LocalRun(graph, cache, on_event, progress).run()


class _LocalRun:
    """The state of one :func:`execute` call."""

    def __init__(self, graph: Graph, cache: Cache, on_event: Callable | None, progress: Callable | None):
        self.graph, self.cache, self.progress = graph, cache, progress
        self.emit = on_event or (lambda *args: None)
        self.errors = input_errors()
        self.failures: dict[str, Failure] = {}
        self.remaining = consumers(graph)  # readers of each key not yet settled
        self.live: dict[str, dict] = {}  # records that a reader still to come will read
        self.settled: set[str] = set()

    def run(self) -> Results:
        for key, task in self.graph.items():
            if key in self.settled:
                continue
            failed = next((self.failures[k] for k in task.upstream() if k in self.failures), None)
            if failed is not None:
                self._fail(task, failed, upstream=True)
            elif not task.store:
                continue  # run by the first reader that runs (_record)
            elif self.cache.valid(key):
                self.emit("cached", task, dict(self.cache.meta(key)))
                self._settle(task)
            else:
                self._compute(task)
        return Results(self.graph, self.cache, self.failures)

    def _record(self, key: str) -> dict | None:
        """The record of ``key`` for a reader about to run (None: it failed)."""
        if key in self.failures:
            return None
        if key in self.live:
            return self.live[key]
        task = self.graph[key]
        record = self.cache.get(key) if task.store else None
        if record is None:  # not stored, or its entry went bad since it was checked
            return self._compute(task)
        self._hold(key, record)
        return record

    def _hold(self, key: str, record: dict) -> None:
        if self.remaining[key] > 0:
            self.live[key] = record

    def _compute(self, task: Task) -> dict | None:
        args = []
        for arg in task.args:
            if isinstance(arg, TaskRef):
                record = self._record(arg.key)
                if record is None:
                    self._fail(task, self.failures[arg.key], upstream=True)
                    return None
                arg = record
            args.append(arg)
        kwargs = _progress_kwargs(task, self.progress)
        store = self.cache.checkpoints(task.key) if takes_checkpoints(task.func) else None
        if store is not None:
            kwargs["checkpoints"] = store
        self.emit("start", task, {})
        release_freed_memory()  # the stage's peak starts from what is live, not what the last one freed
        start = time.perf_counter()
        try:
            with PeakMemory() as memory:
                record = task.func(*args, **kwargs)
        except self.errors as exc:
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            self._fail(task, Failure(message, task.stage), upstream=False)
            return None
        info = {"seconds": time.perf_counter() - start, "peak_memory": int(memory.peak),
                "peak_gpu_memory": memory.gpu_peak, **resumed_info(store)}
        if task.store:
            self.cache.put(task.key, record, meta=info)
            if store is not None:
                self.cache.drop_checkpoints(task.key)  # the record holds all they could give
        self.emit("done", task, info)
        self._settle(task)
        self._hold(task.key, record)
        return record

    def _fail(self, task: Task, failure: Failure, upstream: bool) -> None:
        self.failures[task.key] = failure
        self.emit("failed", task, {"message": failure.message, "stage": failure.stage, "upstream": upstream})
        self._settle(task)

    def _settle(self, task: Task) -> None:
        """``task`` is done with: each record it reads has one reader fewer, and is let go at none."""
        if task.key in self.settled:
            return
        self.settled.add(task.key)
        for ref in set(task.upstream()):
            self.remaining[ref] -= 1
            if self.remaining[ref] == 0:
                self.live.pop(ref, None)
                if not self.graph[ref].store:
                    self._settle(self.graph[ref])  # never run, or run and read by all: its upstream is free


def takes_progress(func: Callable) -> bool:
    """Whether a stage function takes a ``progress=`` reporter of its steps."""
    return "progress" in inspect.signature(func).parameters


def takes_checkpoints(func: Callable) -> bool:
    """Whether a stage function takes a ``checkpoints=`` store of its per-scale states."""
    return "checkpoints" in inspect.signature(func).parameters


def resumed_info(store) -> dict:
    """``{"resumed": [state names]}`` when a stage started from the saved states of ``store``, else ``{}``."""
    return {"resumed": list(store.resumed)} if store is not None and store.resumed else {}


def _progress_kwargs(task: Task, progress: Callable | None) -> dict:
    """``{"progress": reporter}`` for a stage function that takes one, else ``{}``."""
    reporter = progress(task) if progress is not None else None
    if reporter is None or not takes_progress(task.func):
        return {}
    return {"progress": reporter}


def needed(graph: Graph, cache: Cache, present: Callable[[str], bool] | None = None) -> list[Task]:
    """The tasks :func:`execute` would run: stored ones the cache lacks, and the not-stored ones they read.

    ``present(key)`` says whether the cache holds ``key`` (default :meth:`Cache.has`, which does
    not read the entry; :meth:`Cache.valid` also checks it).
    """
    present = present or cache.has
    run = {key: task.store and not present(key) for key, task in graph.items()}
    for key, task in reversed(graph.items()):  # readers first: a not-stored task runs if a reader runs
        if run[key]:
            for ref in task.upstream():
                run[ref] = run[ref] or not graph[ref].store
    return [task for key, task in graph.items() if run[key]]
