"""Run a task graph in this process, skipping what the cache holds (see ARCHITECTURE.md, "The experiment graph").

``execute(graph, cache)`` walks the graph in order; a key already in the cache is loaded, not
run (a finished plan run again does no work); each computed record is written to the cache as
soon as it exists (an interrupted plan resumes from the stages written). A stage that raises
a bad-input error gives a :class:`Failure` for its key and every key downstream; any other
exception is a bug and propagates.

Memory: ``peak_memory`` is the largest rise of this process's resident set size (RSS) above its
value when the stage started, sampled every :data:`MEMORY_SAMPLE_S` by a thread (psutil); it
counts torch's and NumPy's allocations alike, but not memory freed and reused inside the stage
below the starting RSS, and not GPU memory. Without psutil it is the rise of the process's peak
RSS (``getrusage`` maxrss), 0 for a stage that stays below an earlier peak.
"""

from __future__ import annotations

import inspect
import resource
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

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
    """Context manager: ``.peak`` = the largest RSS rise (bytes) while the block ran."""

    def __init__(self, period: float = MEMORY_SAMPLE_S):
        self.period, self.peak = period, 0
        try:
            import psutil

            self._process = psutil.Process()
        except ImportError:
            self._process = None

    def _sample(self):
        while not self._stop.wait(self.period):
            self.peak = max(self.peak, self._process.memory_info().rss - self._start)

    def __enter__(self):
        if self._process is None:
            self._start = _maxrss()
            return self
        self._start = self._process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        if self._process is None:
            self.peak = max(0, _maxrss() - self._start)
            return False
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._process.memory_info().rss - self._start, 0)
        return False


def _maxrss() -> int:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024  # Linux reports KiB


def execute(graph: Graph, cache: Cache, *, on_event: Callable | None = None,
            progress: Callable | None = None) -> dict:
    """Run every task of ``graph`` not in ``cache``; returns ``{key: Record | Failure}``.

    ``on_event(event, task, info)``: event in ``"cached"``, ``"start"``, ``"done"``,
    ``"failed"``; ``info`` has ``seconds`` and ``peak_memory`` (bytes) for computed and cached
    records (the figures measured when it was computed), ``message`` for failures.
    ``progress(task)``, called as each task starts (before its ``"start"``): a reporter of its steps
    (:class:`~nnst_hr.progress.Progress`) or None, passed as ``progress=`` to the stage functions
    that take one (:func:`~.stages.nnst`, :func:`~.stages.poster`); it is no task argument, so
    keys and records do not depend on it.
    """
    errors = input_errors()
    emit = on_event or (lambda *args: None)
    results: dict = {}
    for key, task in graph.items():
        failed = next((results[k] for k in task.upstream() if isinstance(results.get(k), Failure)), None)
        if failed is not None:
            results[key] = failed
            emit("failed", task, {"message": failed.message, "stage": failed.stage, "upstream": True})
            continue
        record = cache.get(key)
        if record is not None:
            results[key] = record
            emit("cached", task, dict(cache.meta(key)))
            continue
        args = tuple(results[a.key] if isinstance(a, TaskRef) else a for a in task.args)
        kwargs = _progress_kwargs(task, progress)
        emit("start", task, {})
        start = time.perf_counter()
        try:
            with PeakMemory() as memory:
                record = task.func(*args, **kwargs)
        except errors as exc:
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            results[key] = Failure(message, task.stage)
            emit("failed", task, {"message": message, "stage": task.stage, "upstream": False})
            continue
        info = {"seconds": time.perf_counter() - start, "peak_memory": int(memory.peak)}
        cache.put(key, record, meta=info)
        results[key] = record
        emit("done", task, info)
    return results


def _progress_kwargs(task: Task, progress: Callable | None) -> dict:
    """``{"progress": reporter}`` for a stage function that takes one, else ``{}``."""
    reporter = progress(task) if progress is not None else None
    if reporter is None or "progress" not in inspect.signature(task.func).parameters:
        return {}
    return {"progress": reporter}


def needed(graph: Graph, cache: Cache) -> list[Task]:
    """The tasks :func:`execute` would run (not in the cache)."""
    return [task for key, task in graph.items() if not cache.has(key)]
