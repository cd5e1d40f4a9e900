"""``run_plan``: a plan file to a results folder (validate, read inputs, graph, execute, report).

Progress is one line per stage event: ``run k of N``, the stage, and the time left for the
whole plan, estimated from the stages measured so far (mean seconds per stage kind times the
tasks of that kind still to run).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from ..errors import InputError
from ..lock import run_lock
from ..progress import format_seconds
from .cache import Cache
from .distributed import executor_from_options
from .execute import needed
from .graph import build_graph, read_inputs
from .plan import load_plan
from .report import write_report

CACHE_FOLDER = "cache"  # results/<this>: the stage records


class PlanProgress:
    """``on_event`` for :func:`execute` that prints ``run k of N`` and the plan's time left."""

    def __init__(self, graph, cache: Cache, stream: TextIO | None = None, enabled: bool = True):
        self.n_runs = len(graph.runs)
        self.todo: dict[str, int] = {}
        for task in needed(graph, cache):
            self.todo[task.stage] = self.todo.get(task.stage, 0) + 1
        self.spent: dict[str, list[float]] = {}
        self.stream, self.enabled = stream or sys.stderr, enabled
        self.start = time.perf_counter()
        self._print(f"{self.n_runs} runs, {sum(self.todo.values())} of {len(graph)} stages to compute "
                    f"({', '.join(f'{n} {s}' for s, n in self.todo.items()) or 'all cached'})")

    def _print(self, text: str) -> None:
        if self.enabled:
            print(text, file=self.stream, flush=True)

    def time_left(self) -> float | None:
        """Seconds left: tasks to run x mean seconds of their stage; None until each stage ran once."""
        if any(n and s not in self.spent for s, n in self.todo.items()):
            return None
        return sum(n * sum(self.spent[s]) / len(self.spent[s]) for s, n in self.todo.items() if n)

    def __call__(self, event: str, task, info: dict) -> None:
        k = min(task.run_ids) + 1
        head = f"run {k} of {self.n_runs}: {task.stage}"
        if event == "start":
            self._print(f"{head} ...")
            return
        if event == "cached":
            return
        self.todo[task.stage] = max(0, self.todo.get(task.stage, 0) - 1)
        if event == "failed":
            if not info.get("upstream"):
                self._print(f"{head} failed: {info['message']} (runs {', '.join(str(r + 1) for r in task.run_ids)})")
            return
        self.spent.setdefault(task.stage, []).append(info["seconds"])
        left = self.time_left()
        waiting = next((s for s, n in self.todo.items() if n and s not in self.spent), None)
        self._print(f"{head} done in {format_seconds(info['seconds'])}; "
                    f"plan: {format_seconds(time.perf_counter() - self.start)} so far, "
                    + (f"about {format_seconds(left)} left" if left is not None
                       else f"time left known after the first {waiting} stage"))


@dataclass
class Summary:
    results: Path
    runs: int
    failed: int
    rows: list


def run_plan(plan_path: str | Path, out_dir: str | Path, *, cache_dir: str | Path | None = None,
             quiet: bool = False, on_event: Callable | None = None, stream: TextIO | None = None,
             workers: int | None = None, scheduler: str | None = None) -> Summary:
    """Run every stage of the plan not yet in the cache and write the report into ``out_dir``.

    ``workers`` (a local Dask cluster of that many processes) or ``scheduler`` (an existing
    cluster's address) run the stages on Dask (:mod:`.distributed`); neither, in this process.

    Raises :class:`InputError` (before any work) for a bad plan, or when another process is
    writing ``out_dir``; runs failing on their inputs are recorded as failed, the others go on.
    """
    plan = load_plan(plan_path)
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"{out_dir} is a file; give a folder for the results (-o results/)")
    try:
        inputs = read_inputs(plan)
    except OSError as exc:
        raise InputError(f"cannot read an input: {exc}") from None
    graph = build_graph(plan, inputs)
    with run_lock(out_dir, parents=True):  # one process writes a results folder (another one is refused)
        cache = Cache(Path(cache_dir) if cache_dir is not None else out_dir / CACHE_FOLDER)
        with executor_from_options(workers, scheduler) as run_graph:  # a cluster not there: InputError, no work
            progress = PlanProgress(graph, cache, stream=stream, enabled=not quiet)

            def events(event, task, info):
                progress(event, task, info)
                if on_event is not None:
                    on_event(event, task, info)

            results = run_graph(graph, cache, on_event=events)
        rows = write_report(out_dir, plan, graph, results, cache)
        failed = sum(row["status"] != "ok" for row in rows)
        if not quiet:
            print(f"wrote {out_dir / 'results.csv'}, sheet.png, report.html: {len(rows)} runs, {failed} failed",
                  file=stream or sys.stderr, flush=True)
    return Summary(out_dir / "results.csv", len(rows), failed, rows)
