"""Benchmark the experiment plan's time left: estimate / actual at 25 and 50 % of a mixed-size plan.

A plan of runs at two NNST sizes (and their posters) is run in this process, recording when each
stage starts and ends. The events are then replayed into :class:`~nnst_hr.experiment.progress.PlanProgress`
with a fake clock, once with the tasks weighed by the run's cost model (``task_work``, now) and
once by the former pixels x steps (long side squared, feature splitting at 1.3 steps a pixel): at
each mark the plan's time left is compared with the time that was actually left. The replay
leaves out the running stages' own estimates (kinds' rates only). Run it on an idle machine.

    python bench/plan_time_left.py                          # 128 and 384 px, 20 steps
    python bench/plan_time_left.py --sizes 64 128 --steps 2  # a smoke test
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from plans import plan_toml

MARKS = (0.25, 0.50)


def pixel_steps(graph, task, shapes=None) -> float:
    """The former weight of a task: pixels x steps, the long side squared for pixels."""
    if not getattr(graph, "specs", None) or not task.run_ids:
        return 1.0
    spec = graph.specs[task.run_ids[0]]
    nnst, poster = spec.nnst, spec.poster
    if task.stage == "nnst":
        sides = nnst.scales()
        steps = sum(nnst.steps_at(len(sides) - 1 - i) * side**2 for i, side in enumerate(sides))
        return float(steps + 1.3 * nnst.split_steps * nnst.size**2 + nnst.size**2)
    if task.stage == "color":
        return float(nnst.size**2 * max(1, nnst.color_iterations))
    if task.stage == "poster":
        return float(poster.out_size**2 * poster.search_vote_iters * max(1, poster.patchmatch_iters))
    if task.stage == "poster_color":
        return float(poster.out_size**2 * max(1, nnst.color_iterations))
    if task.stage == "scores":
        return float((poster.out_size or nnst.size) ** 2)
    return 1.0


def replay(graph, events: list[tuple[float, str, str, float]], wall: float, weigh, folder: Path) -> list[float | None]:
    """Estimate / actual time left at each mark, with the tasks weighed by ``weigh``."""
    from nnst_hr.experiment import progress as plan_progress
    from nnst_hr.experiment.cache import Cache

    now = {"t": 0.0}
    real_clock, real_work = plan_progress.time.perf_counter, plan_progress.task_work
    plan_progress.time.perf_counter, plan_progress.task_work = (lambda: now["t"]), weigh
    try:
        progress = plan_progress.PlanProgress(graph, Cache(folder), enabled=False)
        out, pending = [], list(events)
        for mark in MARKS:
            while pending and pending[0][0] <= mark * wall:
                now["t"], event, key, seconds = pending.pop(0)
                progress(event, graph[key], {"seconds": seconds})
            now["t"] = mark * wall
            left = progress.time_left()
            out.append(None if left is None else left / (wall - mark * wall))
        return out
    finally:
        plan_progress.time.perf_counter, plan_progress.task_work = real_clock, real_work


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs=2, default=(128, 384))
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--out-size", type=int, default=768)
    args = parser.parse_args()

    from nnst_hr.experiment import run_plan
    from nnst_hr.experiment.graph import build_graph, read_inputs
    from nnst_hr.experiment.plan import load_plan
    from nnst_hr.experiment.progress import task_work

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        plan_path = tmp / "plan.toml"
        fixed = {"steps": args.steps, "split_steps": args.steps, "out_size": args.out_size}
        plan_path.write_text(plan_toml({"size": list(args.sizes)}, fixed))
        events: list[tuple[float, str, str, float]] = []
        start = time.perf_counter()

        def record(event, task, info):
            if event in ("start", "done"):
                events.append((time.perf_counter() - start, event, task.key, info.get("seconds", 0.0)))

        run_plan(plan_path, tmp / "results", quiet=True, on_event=record)
        wall = time.perf_counter() - start
        plan = load_plan(plan_path)
        graph = build_graph(plan, read_inputs(plan))  # the same keys as the run's
        old = replay(graph, events, wall, pixel_steps, tmp / "old")
        new = replay(graph, events, wall, task_work, tmp / "new")

    def show(ratios):
        return "  ".join("-" if r is None else f"{r:.2f}" for r in ratios)

    marks = "  ".join(f"{m:.0%}" for m in MARKS)
    print(f"plan: sizes {args.sizes}, {args.steps} + {args.steps} steps, posters {args.out_size} px: {wall:.0f} s")
    print(f"estimate / actual time left at {marks}")
    print(f"  pixels x steps (before): {show(old)}")
    print(f"  cost model (now):        {show(new)}")
    print("each task: seconds / the cost model's prior seconds (1 = the priors' machine)")
    for _, event, key, seconds in events:
        if event == "done" and seconds > 0:
            task = graph[key]
            size = graph.specs[task.run_ids[0]].nnst.size if task.run_ids else 0
            print(f"  {task.stage:>13} {size:5d} px: {seconds:7.2f} s / {task_work(graph, task):7.2f} s"
                  f" = {seconds / task_work(graph, task):.2f}")


if __name__ == "__main__":
    main()
