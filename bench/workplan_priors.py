"""Measure each term of the NNST work plan (``nnst_hr.workplan``) alone: seconds per unit against its prior.

The plan's priors say how many seconds a unit of each term costs (a pixel of a hypercolumn step, a
search unit of a match); :class:`~nnst_hr.progress.Progress` scales the terms it has not measured
yet by the speed of those it has, so priors whose ratios drift with the image size make the time
left of a plan drift too. This bench runs :func:`~nnst_hr.nnst.synthesize_nnst` at several sizes,
stamps every part of it (a scale's features and its search, each step, the feature-splitting
setup, its steps with and without a lattice search, the final fp32 match) and prints, per size
and term, the seconds per unit measured over the prior: a column of equal ratios means the priors
are right up to the machine's speed.

    python bench/workplan_priors.py                           # 128 to 512 px, 8 + 8 steps
    python bench/workplan_priors.py --sizes 64 128 --steps 2  # a smoke test

Run it on an idle machine: the ratios compare terms measured seconds apart.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CONTENT = ROOT / "samples/content/coffee.png"
STYLE = ROOT / "samples/style/cozens_grotto-in-the-campagna_watercolor.jpg"
TERMS = ("features", "match", "step", "split setup", "split", "search")


class Stamps:
    """A silent :class:`~nnst_hr.progress.Progress` stand-in that stamps each call."""

    def __init__(self):
        self.stages = []
        self.events: list[tuple[float, str, object]] = []

    def plan(self, stages):
        self.stages = list(stages)

    def start(self, stage):
        self.events.append((time.perf_counter(), "start", stage))

    def step(self, index, loss=None):
        self.events.append((time.perf_counter(), "step", index))

    def skip(self, stage):
        pass


def measure(content, style, config, weights) -> dict[str, list[tuple[float, float]]]:
    """``{term: [(seconds, units), ...]}`` of one :func:`synthesize_nnst` call, each part timed alone."""
    from nnst_hr import nnst

    stamps = Stamps()
    timed: list[tuple[str, float, float]] = []  # (name, start, end) of each _Stylizer._time
    searches: list[tuple[float, float]] = []  # (start, end) of each _Stylizer.search
    time_part, search = nnst._Stylizer._time, nnst._Stylizer.search

    def record_part(self, name, start):
        time_part(self, name, start)
        timed.append((name, start, time.perf_counter()))

    def record_search(self, *args, **kwargs):
        start = time.perf_counter()
        found = search(self, *args, **kwargs)
        searches.append((start, time.perf_counter()))
        return found

    nnst._Stylizer._time, nnst._Stylizer.search = record_part, record_search
    try:
        nnst.synthesize_nnst(content, style, config, weights=weights, progress=stamps)
    finally:
        nnst._Stylizer._time, nnst._Stylizer.search = time_part, search

    out: dict[str, list[tuple[float, float]]] = {term: [] for term in TERMS}
    # each scale's setup and the final match: features, then matching (as _Stylizer.match times them)
    setups = [stage for stage in stamps.stages if stage.setup and stage.name != "feature splitting"]
    pairs = [(a, b) for a, b in zip(timed, timed[1:], strict=False) if a[0] == "features" and b[0] == "matching"]
    for stage, (features, matching) in zip(setups, pairs, strict=True):
        out["features"].append((features[2] - features[1], stage.setup[0].units))
        out["match"].append((matching[2] - matching[1], stage.setup[1].units))

    # steps: the time between consecutive steps of a stage; the first one (it also warms kernels
    # up for the stage's size) is left out, as Progress leaves it out
    stages = {stage.name: stage for stage in stamps.stages}
    current, previous = None, None
    for when, kind, what in stamps.events:
        if kind == "start":
            current, previous = stages[what], None
            if current.name == "feature splitting":
                before = max(end for name, _, end in timed if name.startswith("optimize_"))
                out["split setup"].append((when - before, current.setup[0].units))
            continue
        if previous is not None and current.name == "feature splitting":
            split, lattice = current.step
            searched = sum(end - start for start, end in searches if previous <= start and end <= when)
            out["split"].append((when - previous - searched, split.units))
            if lattice.steps(what, what + 1):
                out["search"].append((searched, lattice.units))
        elif previous is not None:
            out["step"].append((when - previous, current.step[0].units))
        previous = when
    return out


def main(argv=None):
    from nnst_hr.config import NNSTConfig
    from nnst_hr.files import read_image
    from nnst_hr.weights import resolve_weights
    from nnst_hr.workplan import PRIORS

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256, 384, 512])
    parser.add_argument("--steps", type=int, default=8, help="hypercolumn steps per scale and feature-splitting steps")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    content, style = read_image(CONTENT), read_image(STYLE)
    weights = resolve_weights().path
    # once at 64 px first: the first VGG passes of a process set up oneDNN's kernels
    measure(content, style, replace(NNSTConfig(), size=64, steps=1, split_steps=1), weights)
    rows = []
    for size in args.sizes:
        config = replace(NNSTConfig(), size=size, steps=args.steps, split_steps=args.steps, seed=args.seed)
        parts = measure(content, style, config, weights)
        for term in TERMS:
            if parts.get(term):
                seconds = sum(s for s, _ in parts[term])
                units = sum(u for _, u in parts[term])
                rows.append((size, term, len(parts[term]), seconds, units, seconds / units / PRIORS[term]))
        print(f"size {size}: done", file=sys.stderr, flush=True)

    print(f"{'size':>5} {'term':<12} {'parts':>5} {'seconds':>8} {'units':>10} {'s/unit / prior':>14}")
    for size, term, n, seconds, units, ratio in rows:
        print(f"{size:>5} {term:<12} {n:>5} {seconds:>8.2f} {units:>10.3g} {ratio:>14.3f}")
    by_size = {}
    for size, term, _, seconds, units, _ in rows:
        total = by_size.setdefault(size, [0.0, 0.0])
        total[0] += seconds
        total[1] += units * PRIORS[term]
    print("whole NNST, seconds / prior seconds: "
          + ", ".join(f"{size} px {s / p:.3f}" for size, (s, p) in by_size.items()))
    return np.array([r[-1] for r in rows])


if __name__ == "__main__":
    main()
