"""``run_plan``: a plan file to a results folder (validate, read inputs, graph, execute, report).

Progress (:mod:`.progress`, on stderr; nothing with ``quiet``): a line per stage event (``run k
of N``, the stage, the plan's time so far and left) and, for each running stage, in this process
or relayed from a Dask worker, its steps (scale, step k/N, the stage's and the plan's time left):
live bars on a terminal (the plan's, and one per running stage), plain lines at most every 2 s
per stage elsewhere. The plan's time left weighs each task with the run's cost model
(:mod:`nnst_hr.workplan`), at a speed measured per stage kind.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from ..errors import InputError
from ..lock import file_in_the_way, run_lock
from .cache import DEFAULT_FOLDER, Cache, cache_lock
from .distributed import executor_from_options
from .graph import build_graph, read_inputs
from .plan import load_plan
from .progress import PlanProgress
from .report import check_results_folder, write_report

CACHE_FOLDER = DEFAULT_FOLDER  # results/<this>: the stage records


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
    for folder, option, use in ((out_dir, "-o", "the results (-o results/)"),
                                (cache_dir, "--cache", "the stage cache (--cache DIR)")):
        blocking = file_in_the_way(folder) if folder is not None else None
        if blocking is not None and blocking == Path(folder):
            raise InputError(f"{folder} is a file; give a folder for {use}")
        if blocking is not None:  # a parent: mkdir fails on it
            raise InputError(f"{option} {folder}: {blocking} is a file, not a folder; give a folder for {use}")
    check_results_folder(out_dir, plan)
    graph = build_graph(plan, read_inputs(plan))
    cache = Cache(Path(cache_dir) if cache_dir is not None else out_dir / CACHE_FOLDER)
    cache.check_folder()
    # one process writes a results folder (another one is refused); the cache is shared with other
    # experiments, but not with a prune (cache.cache_lock)
    with run_lock(out_dir, parents=True), cache_lock(cache.folder, exclusive=False):
        with (executor_from_options(workers, scheduler) as run_graph,  # a cluster not there: InputError, no work
              PlanProgress(graph, cache, stream=stream, enabled=not quiet) as progress):

            def events(event, task, info):
                progress(event, task, info)
                if on_event is not None:
                    on_event(event, task, info)

            # quiet: no reporters, and workers send no step reports
            results = run_graph(graph, cache, on_event=events, progress=progress.reporter if not quiet else None)
        rows = write_report(out_dir, plan, graph, results, cache)
        failed = sum(row["status"] != "ok" for row in rows)
        if not quiet:
            print(f"wrote {out_dir / 'results.csv'}, sheet.png, report.html: {len(rows)} runs, {failed} failed",
                  file=stream or sys.stderr, flush=True)
    return Summary(out_dir / "results.csv", len(rows), failed, rows)
