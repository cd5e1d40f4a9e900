"""Benchmark the time left that ``nnst-hr run`` prints: estimate / actual at 10, 25 and 50 % of a run.

Each case runs ``python -m nnst_hr run`` in a child process with stderr piped (plain progress lines,
at most one every 2 s plus each stage's end). Every line is stamped when it arrives; the run lasts
from the child's start to its exit. At each mark (10 %, 25 %, 50 % of that time) the latest line
with an estimate (``about 1m05s left``) is compared with the time that was actually left from that
line's arrival to the exit. A ratio of 1 is exact; below 1 the estimate was too short.

    python bench/time_left.py                        # every case
    python bench/time_left.py --cases 128 poster     # some of them
    python bench/time_left.py --root /tmp/old        # another checkout's code (PYTHONPATH)

On a machine shared with other work the absolute times move from run to run; the ratios are
measured within one run, but a change of load during a run still moves them.
"""

from __future__ import annotations

import argparse
import os
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


def run_case(options: list[str], root: Path, folder: Path) -> tuple[float, list[tuple[float, str]]]:
    """Run ``nnst-hr run`` with ``options``; its wall time and its stderr lines with their arrival times."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    cmd = [sys.executable, "-m", "nnst_hr", "run", str(ROOT / CONTENT), str(ROOT / STYLE),
           "-o", str(folder / "out.png"), "--overwrite", *options]
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--root", type=Path, default=ROOT, help="checkout whose nnst_hr runs (default: this one)")
    parser.add_argument("--verbose", action="store_true", help="also print the line behind each ratio")
    args = parser.parse_args()
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
