"""``run_plan``: a plan file to a results folder (validate, read inputs, graph, execute, report).

Progress (:mod:`.progress`, on stderr; nothing with ``quiet``): a line per stage event (``run k
of N``, the stage, the plan's time so far and left) and, for each running stage, in this process
or relayed from a Dask worker, its steps (scale, step k/N, the stage's and the plan's time left):
live bars on a terminal (the plan's, and one per running stage), plain lines at most every 2 s
per stage elsewhere. The plan's time left weighs each task with the run's cost model
(:mod:`nnst_hr.workplan`), at a speed measured per stage kind.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from ..errors import InputError
from ..lock import LOCK_NAME as LOCK
from ..lock import file_in_the_way, run_lock
from .cache import CHECKPOINTS, DEFAULT_FOLDER, Cache, cache_lock
from .distributed import check_cluster_options, executor_from_options
from .graph import build_graph, read_inputs
from .plan import Plan, load_plan
from .progress import PlanProgress
from .report import REPORT_FILES, RUNS_FOLDER, check_results_folder, write_report

CACHE_FOLDER = DEFAULT_FOLDER  # results/<this>: the stage records


def _within(path: Path, folder: Path) -> bool:
    path, folder = path.resolve(), folder.resolve()
    return path == folder or folder in path.parents


def check_cache_apart(out_dir: Path, cache_folder: Path) -> None:
    """Refuse (:class:`InputError`), before any work, a ``--cache`` that is the results folder, lies in its
    ``runs/`` or holds it: the cache then held the report (or the report the cache), and ``cache info`` and
    ``cache prune`` refused both folders ever after (a cache holds only its entries)."""
    if _within(cache_folder, out_dir):
        what = ("is the results folder" if _within(out_dir, cache_folder) else
                f"is in {out_dir / RUNS_FOLDER}, where the experiment writes each run's images"
                if _within(cache_folder, out_dir / RUNS_FOLDER) else None)
    else:
        what = f"holds the results folder {out_dir}" if _within(out_dir, cache_folder) else None
    if what is not None:
        raise InputError(f"--cache {cache_folder} {what}, and a stage cache holds only its entries; leave out "
                         f"--cache (then {out_dir / CACHE_FOLDER}) or give a folder apart from -o {out_dir}")


def check_inputs_apart(plan: Plan, out_dir: Path, cache_folder: Path) -> None:
    """Refuse (:class:`InputError`), before any work, inputs where the experiment writes, and masks
    folders holding what it writes.

    In danger: ``runs/`` (each run's images, under run ids that follow the plan's order), the
    report files, the cache folder (entries only: ``cache prune`` refuses a folder holding anything
    else, and deletes entries); and a masks folder holding the results or the cache, every file of
    which is read into the stage keys, so each run changed the keys of the next. Anything else in
    the results folder (``results/inputs/``, ``results/masks/``) is never written: allowed.
    """
    areas = [(out_dir / RUNS_FOLDER, f"{out_dir / RUNS_FOLDER}, where the experiment writes each run's images"),
             *((out_dir / name, f"{out_dir / name}, which the experiment writes") for name in (*REPORT_FILES, LOCK)),
             (cache_folder, f"the stage cache {cache_folder}, which holds only its entries")]
    fix = f"move it out (e.g. to {out_dir / 'inputs'}) or choose another -o"
    for pair in plan.pairs:
        for what, path in (("content", pair.content), ("style", pair.style), ("guide", pair.guide)):
            for area, says in areas if path is not None else ():
                if _within(path, area):
                    raise InputError(f"{pair.where}.{what}: {path} is in {says}; {fix}")
        if pair.guide is None:
            continue
        for folder, option in ((out_dir, "-o"), (cache_folder, "--cache")):
            if _within(folder, pair.guide):
                raise InputError(f"{pair.where}.guide: the masks folder {pair.guide} holds {option} {folder}, and "
                                 "every file in it is read for each run (what the experiment writes there changed "
                                 f"what the next one reads); choose {option} outside it")


def unwritable_folder(folder: Path) -> Path | None:
    """The folder that stops this process writing in ``folder`` (``folder`` itself, or the nearest
    existing folder above it, where it would be created), or None when it can be written.

    ``os.access`` with the effective ids: it answers as the kernel will for a write (permissions,
    an immutable folder, a read-only file system), and as root passes a folder mode 555.
    """
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    effective = os.access in os.supports_effective_ids
    return None if os.access(existing, os.W_OK | os.X_OK, effective_ids=effective) else existing


def check_writable(out_dir: Path, cache: Cache, keys: list[str]) -> None:
    """Refuse (:class:`InputError`), before any work, a results folder or a stage cache this process
    cannot write: the stages ran, then their records could not be stored (the message named -o for
    the cache). A read-only cache that already holds every stage's entry (``keys``) is read only."""
    folders = [(out_dir, "-o", "a results folder")]
    if any(not cache.has(key) for key in keys):
        folders += [(cache.folder, "--cache", "a stage cache folder"),
                    *([(cache.folder / CHECKPOINTS, "--cache", "a stage cache folder")]
                      if (cache.folder / CHECKPOINTS).is_dir() else [])]
    for folder, option, what in folders:
        blocking = unwritable_folder(folder)
        if blocking is not None:
            where = f"{blocking} is" if blocking == folder else f"{blocking}, where it would be created, is"
            raise InputError(f"{option} {folder}: {where} not writable by this process; give {option} DIR, "
                             f"{what} you can write to, or fix its permissions")


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity mask: a batch job's share, not the machine's)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def check_workers(workers: int | None) -> None:
    """Refuse (:class:`InputError`), before any work, a local cluster of more workers than cores.

    Each worker is a process that runs one stage on one core and holds its own torch: more of
    them than cores add only memory (``--workers 1000000`` started processes until it hung).
    """
    cores = usable_cores()
    if workers is not None and workers > cores:
        raise InputError(f"--workers {workers}: this machine has {cores} CPU cores for this process, and each worker "
                         f"runs one stage on one core (more add only memory); use --workers {cores} or fewer")


def check_devices(plan: Plan) -> None:
    """Refuse (:class:`InputError`), before any work, ``device = "cuda"`` on a machine without CUDA,
    naming where the plan sets it (each run failed with "device cuda was asked for", naming no key)."""
    places = [("fixed.device", plan.fixed.get("device")),
              *((f"axes.device[{i}]", value) for i, value in enumerate(plan.axes.get("device", ()))),
              *((f"{pair.where}.device", pair.options.get("device")) for pair in plan.pairs)]
    wanted = [where for where, value in places if value == "cuda"]
    if not wanted:
        return
    import torch

    if not torch.cuda.is_available():
        raise InputError(f"{wanted[0]}: cuda, but no CUDA GPU is available on this machine; use device = \"cpu\" "
                         "or \"auto\", or run the plan on a cluster with GPUs (--scheduler)")


def check_memory(plan: Plan, inputs: list, workers: int | None = None) -> None:
    """Refuse (:class:`InputError`), before any work, a run whose peak memory cannot fit on this machine
    (:func:`nnst_hr.memory.check_fits`, as ``nnst-hr run`` does): ``size = 100000000`` was a torch
    traceback or an allocation failure after the earlier runs' work.

    ``workers`` (a local cluster of that many processes) run up to that many stages at once, each
    in its own process: then the ``workers`` largest stages must fit together
    (:func:`check_concurrent`); each passed alone, and the workers were killed by the kernel.
    """
    from ..config import values_from
    from ..device import resolve_device
    from ..files import image_shape
    from ..memory import BASE_BYTES, check_fits, estimate_peak_bytes, long_side_shape, press_write_bytes
    from .graph import PRESS_BITS
    from .stages import NNST_PARAMS, POSTER_PARAMS, has_poster, subset

    seen, pair_shapes, ram, gpu = set(), {}, {}, {}
    for run in plan.runs():
        if run.pair_index not in pair_shapes:  # headers read once per pair, not once per run
            pair = inputs[run.pair_index]
            pair_shapes[run.pair_index] = image_shape(pair.content), image_shape(pair.style)
        shapes = pair_shapes[run.pair_index]
        if None in shapes:  # undecodable: the inputs stage fails that run with its own message
            continue
        print_plan = None
        if run.print_size is not None:  # NNST reads the content as the print fits it (a pad's is larger)
            try:
                print_plan = run.print_plan(shapes[0])
            except InputError as exc:
                raise InputError(f"run {run.index + 1} ({run.pair.name}): {exc}") from None
            shapes = print_plan.fitted_shape, shapes[1]
        device = resolve_device(run.nnst.device).type if run.nnst.device != "cuda" else "cuda"
        sizes = dict(rotate=run.nnst.rotate, device=device, max_search_size=run.poster.max_search_size)
        press_bits = PRESS_BITS if run.cmyk is not None else None  # the press stage: the final image and its ink
        if workers is not None:  # each stage once, as the graph has it (runs share their common stages); a
            # print's fit is another input (A3 and A2 may share one: counted twice, on the safe side)
            fitted = (run.print_size, run.fit) if run.print_size is not None else None
            nnst = (run.pair_index, fitted, repr(subset(run.nnst, NNST_PARAMS)))
            peak = estimate_peak_bytes(*shapes, run.nnst.size, run.poster.out_size, **sizes)
            ram[nnst], gpu[nnst] = peak.nnst - peak.gpu, peak.gpu
            if has_poster(run.nnst, run.poster):
                ram[(*nnst, repr(subset(run.poster, POSTER_PARAMS)))] = peak.poster
            if press_bits is not None:  # a stage of its own, in a worker holding the final image and its ink
                final = (print_plan.pixels if print_plan is not None
                         else long_side_shape(shapes[0], run.poster.out_size or run.nnst.size))
                ram[(*nnst, repr(subset(run.poster, POSTER_PARAMS)), str(run.cmyk))] = (
                    BASE_BYTES + press_write_bytes(final, press_bits))
        key = (shapes, run.nnst.size, run.poster.out_size, run.nnst.rotate, run.poster.max_search_size, device,
               press_bits)
        if key in seen:
            continue
        seen.add(key)
        try:
            with values_from("plan"):
                check_fits(*shapes, run.nnst.size, run.poster.out_size, **sizes, press_bits=press_bits)
        except InputError as exc:
            raise InputError(f"run {run.index + 1} ({run.pair.name}): {exc}") from None
    if workers is not None:
        from ..memory import available_gpu_bytes, available_ram_bytes

        check_concurrent(list(ram.values()), workers, available_ram_bytes(), "memory")
        if any(gpu.values()):
            check_concurrent(list(gpu.values()), workers, available_gpu_bytes(), "GPU memory")


def check_concurrent(peaks: list[int], workers: int, available: int | None, what: str = "memory") -> None:
    """Refuse (:class:`InputError`) ``workers`` stages at once whose peaks (bytes, one per stage) cannot fit
    together in ``available`` bytes (None: unknown, no check), naming the most workers that fit.

    The ``workers`` largest, not ``workers`` times the largest: a plan's stages are not all of one
    size, and no more than it has run at once.

    >>> check_concurrent([3 * 2**30, 2 * 2**30, 2**30], 3, 4 * 2**30)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    nnst_hr.errors.InputError: --workers 3 runs up to 3 stages at once, which need about 6.0 GB of memory ...
    >>> check_concurrent([2**30] * 3, 3, 4 * 2**30)  # 3 x 1 GiB fit in 4 GiB
    """
    from ..disk import format_bytes
    from ..memory import HEADROOM

    largest = sorted(peaks, reverse=True)[:workers]
    if available is None or sum(largest) * HEADROOM <= available:
        return
    fitting = max([k for k in range(1, len(largest)) if sum(largest[:k]) * HEADROOM <= available], default=1)
    raise InputError(f"--workers {workers} runs up to {len(largest)} stages at once, which need about "
                     f"{format_bytes(sum(largest))} of {what} together but {format_bytes(available)} are "
                     f"available: use --workers {fitting}, or a smaller size or out_size in the plan")


def summary_line(out_dir: Path, runs: int, failed: int) -> str:
    """The experiment's last line (it said "1 runs").

    >>> summary_line(Path("results"), 1, 0)
    'wrote results/results.csv, sheet.png, report.html: 1 run, 0 failed'
    >>> summary_line(Path("results"), 8, 2)
    'wrote results/results.csv, sheet.png, report.html: 8 runs, 2 failed'
    """
    return f"wrote {out_dir / 'results.csv'}, sheet.png, report.html: {runs} run{'s' * (runs != 1)}, {failed} failed"


def failed_runs_line(out_dir: Path, runs: int, failures: list[tuple[str, str, str]]) -> str:
    """The command's error line for a plan some of whose runs failed (``failures``: run id, its pair's
    table, its message; the first in the plan's order is named). It exits 2 then: ``experiment plan.toml
    && upload`` went on with a plan whose every run had failed.

    >>> failed_runs_line(Path("results"), 8, [("run005", "pair[1]", "inputs: bad.png: not an image"),
    ...                                       ("run006", "pair[1]", "inputs: bad.png: not an image")])
    '2 of 8 runs failed (first: run005, pair[1]: inputs: bad.png: not an image); results/report.html lists \
them all; fix what failed and run the same command again (the runs done are taken from the cache)'
    """
    run, where, message = failures[0]
    first = "first: " if len(failures) > 1 else ""
    return (f"{len(failures)} of {runs} run{'s' * (runs != 1)} failed ({first}{run}, {where}: {message}); "
            f"{out_dir / 'report.html'} lists them all; fix what failed and run the same command again (the runs "
            "done are taken from the cache)")


@dataclass
class Summary:
    results: Path
    runs: int
    failed: int
    rows: list

    def failed_line(self) -> str | None:
        """:func:`failed_runs_line` of the failed runs; None where none failed."""
        failures = [(row["run"], row["spec"].pair.where, row["message"]) for row in self.rows if row["status"] != "ok"]
        return failed_runs_line(self.results.parent, self.runs, failures) if failures else None


def run_plan(plan_path: str | Path, out_dir: str | Path, *, cache_dir: str | Path | None = None,
             quiet: bool = False, on_event: Callable | None = None, stream: TextIO | None = None,
             workers: int | None = None, scheduler: str | None = None) -> Summary:
    """Run every stage of the plan not yet in the cache and write the report into ``out_dir``.

    ``workers`` (a local Dask cluster of that many processes) or ``scheduler`` (an existing
    cluster's address) run the stages on Dask (:mod:`.distributed`); neither, in this process.

    Raises :class:`InputError` (before any work) for a bad plan, or when another process is
    writing ``out_dir``; runs failing on their inputs are recorded as failed, the others go on.
    """
    check_cluster_options(workers, scheduler)  # option errors first: before the plan's warnings
    check_workers(workers)
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
    cache = Cache(Path(cache_dir) if cache_dir is not None else out_dir / CACHE_FOLDER)
    check_cache_apart(out_dir, cache.folder)
    check_inputs_apart(plan, out_dir, cache.folder)
    if scheduler is None:  # a cluster's workers may have the GPU this machine lacks
        check_devices(plan)
    inputs = read_inputs(plan)
    if scheduler is None:
        check_memory(plan, inputs, workers)
    graph = build_graph(plan, inputs)
    cache.check_folder()
    check_writable(out_dir, cache, [key for key, task in graph.items() if task.store])
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
            print(summary_line(out_dir, len(rows), failed), file=stream or sys.stderr, flush=True)
    return Summary(out_dir / "results.csv", len(rows), failed, rows)
