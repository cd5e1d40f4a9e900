"""Benchmark ``nnst-hr experiment`` against the same runs made one by one.

A 2 x 3 plan (two NNST settings: alpha; three poster settings: uniformity) on a sample pair,
run with a fresh cache, timed against the same six runs made separately with
``nnst_hr.run.run_files`` (what six ``nnst-hr run`` calls do, without six interpreter starts).
The plan should cost about two NNST runs plus six poster stages, not six NNST runs; it also
scores every result, which the separate runs do not.

    python bench/experiment.py                       # 128 px NNST, 10 steps, 256 px posters
    python bench/experiment.py --size 256 --steps 50 --out-size 512
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import Counter
from pathlib import Path

from plans import CONTENT, STYLE, plan_toml, schedule

ALPHAS = (0.25, 0.75)  # the two NNST settings
UNIFORMITIES = (5e-4, 1e-3, 2e-3)  # the three poster settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128)  # two scales: alpha acts from the second
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--out-size", type=int, default=256)
    args = parser.parse_args()

    from nnst_hr.config import NNSTConfig, PosterConfig
    from nnst_hr.experiment import run_plan
    from nnst_hr.run import RunOptions, run_files

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        # warm-up outside the timings: Numba's compile cache and the VGG weights' page cache
        run_files(CONTENT, STYLE, tmp / "warm.png", RunOptions(
            nnst=NNSTConfig(size=64, steps=1, split_steps=1), poster=PosterConfig(out_size=128), quiet=True))

        plan = tmp / "plan.toml"
        plan.write_text(plan_toml({"alpha": list(ALPHAS), "uniformity": list(UNIFORMITIES)},
                                  schedule(args.size, args.steps, args.out_size)))
        stages: Counter = Counter()
        seconds: Counter = Counter()

        def count(event, task, info):
            if event == "done":
                stages[task.stage] += 1
                seconds[task.stage] += info["seconds"]

        start = time.perf_counter()
        summary = run_plan(plan, tmp / "results", quiet=True, on_event=count)
        plan_seconds = time.perf_counter() - start
        assert summary.failed == 0

        start = time.perf_counter()
        for alpha in ALPHAS:
            for uniformity in UNIFORMITIES:
                run_files(CONTENT, STYLE, tmp / f"separate_{alpha}_{uniformity}.png", RunOptions(
                    nnst=NNSTConfig(size=args.size, steps=args.steps, split_steps=args.steps, alpha=alpha),
                    poster=PosterConfig(out_size=args.out_size, uniformity=uniformity), quiet=True))
        separate_seconds = time.perf_counter() - start

    print(f"plan 2 x 3 at {args.size} px, {args.steps} steps, posters {args.out_size} px")
    print("  stages run: " + ", ".join(f"{s} {n} ({seconds[s]:.1f} s)" for s, n in stages.items()))
    print(f"experiment (stages once, with scores): {plan_seconds:.1f} s")
    print(f"six separate runs (run_files):         {separate_seconds:.1f} s")
    print(f"ratio separate / experiment:            {separate_seconds / plan_seconds:.2f}")


if __name__ == "__main__":
    main()
