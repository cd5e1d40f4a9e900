"""Benchmark the time left that ``nnst-hr run`` prints: estimate / actual at 10, 25 and 50 % of a run.

Each case runs ``python -m nnst_hr run`` in a child process with stderr piped (plain progress lines,
at most one every 2 s plus each stage's end). Every line is stamped when it arrives; the run lasts
from the child's start to its exit. At each mark (10 %, 25 %, 50 % of that time) the latest line
with an estimate (``about 1m05s left``) is compared with the time that was actually left from that
line's arrival to the exit. A ratio of 1 is exact; below 1 the estimate was too short.

    python bench/time_left.py                        # every case
    python bench/time_left.py --cases 128 poster     # some of them
    python bench/time_left.py --root /tmp/old        # another checkout's code (PYTHONPATH)
    python bench/time_left.py --replay /tmp/old      # this estimator against another, on the same runs

On a machine shared with other work the absolute times move from run to run (two runs of one case
on an idle machine: 68 s and 85 s); the ratios are measured within one run, but a change of load
during a run still moves them. So two estimators are compared on the same run: ``--replay``
records every call the run makes to its :class:`~nnst_hr.progress.Progress` (the plan, each stage
and step, with its time) and plays the calls back into this checkout's ``Progress`` and into
the other checkout's, each on a clock set to the recorded times. Printed per estimator: the
ratios at the marks, the first estimate's and the mean |log(estimate / actual)| over all reports.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import pickle
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONTENT = "samples/content/astronaut.png"
STYLE = "samples/style/turner_shipwreck-of-the-minotaur_oil.jpg"
MARKS = (0.10, 0.25, 0.50)
CASES = {  # name -> options of `nnst-hr run`
    "128": ["--size", "128", "--steps", "100", "--split-steps", "100"],
    "256": ["--size", "256", "--steps", "50", "--split-steps", "50"],
    "512": ["--size", "512", "--steps", "20", "--split-steps", "20"],
    "256-exact": ["--size", "256", "--exact", "--steps", "30", "--split-steps", "30"],
    "256-default": ["--size", "256"],
    "poster": ["--size", "256", "--out-size", "1024", "--steps", "30", "--split-steps", "30"],
}
REPLAY_MARKS = (0.10, 0.25, 0.50, 0.75)
# runs `nnst-hr run` in the child, keeping its Progress calls (time, method, arguments) for the replay;
# stages and work are kept as plain tuples, rebuilt with each replayed module's own classes
RECORDER = """
import atexit, pickle, sys, time
from nnst_hr import progress
from nnst_hr.cli import app

def plain(value):
    if isinstance(value, progress.Stage):
        return ("Stage", value.name, value.steps, [plain(w) for w in value.step], [plain(w) for w in value.setup])
    if isinstance(value, progress.Work):
        return ("Work", value.term, value.units, value.prior, value.every, value.device)
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value

calls, path, start = [], sys.argv[1], time.perf_counter()
atexit.register(lambda: pickle.dump({"start": start, "end": time.perf_counter(), "calls": calls}, open(path, "wb")))
for name in ("plan", "then", "start", "step", "skip", "fraction"):
    def record(self, *args, _name=name, _method=getattr(progress.Progress, name), **kwargs):
        calls.append((time.perf_counter(), _name, plain(list(args))))
        return _method(self, *args, **kwargs)
    setattr(progress.Progress, name, record)
app(args=sys.argv[2:], prog_name="nnst-hr")
"""
LEFT = re.compile(r"about (?:(\d+)h(\d+)m|(\d+)m(\d+)s|(\d+)s) left")


def parse_left(line: str) -> float | None:
    """Seconds of the first ``about ... left`` in ``line`` (as :func:`nnst_hr.progress.format_seconds` writes them).

    >>> parse_left("scale 64px: step 3/50, about 1m05s left"), parse_left("poster: level 1/5")
    (65.0, None)
    """
    match = LEFT.search(line)
    if match is None:
        return None
    h, hm, m, ms, s = (int(g) if g else 0 for g in match.groups())
    return float(h * 3600 + hm * 60 + m * 60 + ms + s)


def run_case(options: list[str], root: Path, folder: Path,
             trace: Path | None = None) -> tuple[float, list[tuple[float, str]]]:
    """Run ``nnst-hr run`` with ``options``; its wall time and its stderr lines with their arrival times.

    ``trace``: also keep the run's Progress calls there (:data:`RECORDER`).
    """
    env = {**os.environ, "PYTHONPATH": str(root)}
    head = [sys.executable, "-m", "nnst_hr"] if trace is None else [sys.executable, "-c", RECORDER, str(trace)]
    cmd = [*head, "run", str(ROOT / CONTENT), str(ROOT / STYLE), "-o", str(folder / "out.png"), "--overwrite", *options]
    start = time.perf_counter()
    child = subprocess.Popen(cmd, cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines: list[tuple[float, str]] = []

    def read() -> None:
        for line in child.stderr:
            lines.append((time.perf_counter() - start, line.rstrip("\n")))

    reader = threading.Thread(target=read)
    reader.start()
    code = child.wait()
    wall = time.perf_counter() - start
    reader.join()
    if code:
        raise SystemExit(f"{' '.join(cmd)} failed ({code}):\n" + "\n".join(line for _, line in lines[-20:]))
    return wall, lines


def ratios(wall: float, lines: list[tuple[float, str]]) -> list[tuple[float, float, float, str] | None]:
    """Per mark: (estimate, actual time left, ratio, line) of the latest estimate shown by then, or None."""
    estimates = [(t, left, line) for t, line in lines if (left := parse_left(line)) is not None]
    out = []
    for mark in MARKS:
        shown = [e for e in estimates if e[0] <= mark * wall]
        if not shown:
            out.append(None)
            continue
        t, left, line = shown[-1]
        actual = wall - t
        out.append((left, actual, left / actual if actual > 0 else float("nan"), line))
    return out


def load_progress(root: Path, name: str):
    """``root``'s ``nnst_hr/progress.py`` as a module of its own named ``name`` (it imports only rich)."""
    spec = importlib.util.spec_from_file_location(name, root / "nnst_hr" / "progress.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def replay(module, trace: dict) -> list[tuple[float, float]]:
    """Play ``trace``'s calls into ``module.Progress`` on a clock set to their times: (time, estimate) after each."""

    def build(value):
        if isinstance(value, tuple) and value and value[0] == "Stage":
            return module.Stage(value[1], value[2], step=tuple(map(build, value[3])), setup=tuple(map(build, value[4])))
        if isinstance(value, tuple) and value and value[0] == "Work":
            return module.Work(*value[1:])
        return [build(v) for v in value] if isinstance(value, list) else value

    clock = {"t": 0.0}
    real = module.time.perf_counter
    module.time.perf_counter = lambda: clock["t"]  # the module's own `time`: nothing else sees it
    try:
        progress, shown = module.Progress(enabled=False), []
        for t, name, args in trace["calls"]:
            clock["t"] = t
            getattr(progress, name)(*build(args))
            if progress.left_s is not None:
                shown.append((t, progress.left_s))
    finally:
        module.time.perf_counter = real
    return shown


def replay_summary(shown: list[tuple[float, float]], start: float, end: float) -> str:
    """Ratios at :data:`REPLAY_MARKS`, the first estimate's (and when), mean |log ratio| of all."""
    cells = []
    for mark in REPLAY_MARKS:
        before = [(t, left) for t, left in shown if t - start <= mark * (end - start)]
        cells.append("  -  " if not before else f"{before[-1][1] / (end - before[-1][0]):5.2f}")
    logs = [abs(math.log(left / (end - t))) for t, left in shown if end - t > 1 and left > 0]
    first = "-"
    if shown:
        (t, left), span = shown[0], end - start
        first = f"{left / (end - t):5.2f} at {(t - start) / span:3.0%}"
    return " ".join(cells) + f"   first {first}   mean |log| {sum(logs) / max(len(logs), 1):.3f}"


def main_replay(cases: list[str], baseline: Path) -> None:
    """Each case run once (this checkout), its Progress calls replayed into this estimator and ``baseline``'s."""
    ours, theirs = load_progress(ROOT, "progress_this"), load_progress(baseline.resolve(), "progress_baseline")
    marks = " ".join(f"{int(m * 100):>4d}%" for m in REPLAY_MARKS)
    print(f"{'case':12s} {'wall':>6s}  estimator  {marks}")
    for name in cases:
        with tempfile.TemporaryDirectory() as tmp:
            run_case(CASES[name], ROOT, Path(tmp), trace=Path(tmp) / "trace.pkl")
            with open(Path(tmp) / "trace.pkl", "rb") as file:
                trace = pickle.load(file)
        start, end = trace["start"], trace["end"]
        for label, module in (("this", ours), ("baseline", theirs)):
            print(f"{name:12s} {end - start:5.0f}s  {label:9s}  {replay_summary(replay(module, trace), start, end)}",
                  flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--root", type=Path, default=ROOT, help="checkout whose nnst_hr runs (default: this one)")
    parser.add_argument("--verbose", action="store_true", help="also print the line behind each ratio")
    parser.add_argument("--replay", type=Path, metavar="CHECKOUT",
                        help="compare this checkout's estimator with CHECKOUT's on the same runs (see above)")
    args = parser.parse_args()
    if args.replay is not None:
        main_replay(args.cases, args.replay)
        return
    print(f"{'case':12s} {'wall':>6s}  " + "  ".join(f"{int(m * 100):>3d}%: est/actual = ratio " for m in MARKS))
    for name in args.cases:
        with tempfile.TemporaryDirectory() as tmp:
            wall, lines = run_case(CASES[name], args.root.resolve(), Path(tmp))
        cells = []
        for result in ratios(wall, lines):
            cells.append("     (no estimate yet)    " if result is None else
                         f"{result[0]:6.0f}/{result[1]:6.0f} = {result[2]:5.2f}   ")
        print(f"{name:12s} {wall:5.0f}s  " + "  ".join(cells), flush=True)
        if args.verbose:
            for mark, result in zip(MARKS, ratios(wall, lines), strict=True):
                if result is not None:
                    print(f"    {int(mark * 100)}%: {result[3]}")


if __name__ == "__main__":
    main()
