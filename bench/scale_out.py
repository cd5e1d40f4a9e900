"""Benchmark ``nnst-hr experiment`` on a local Dask cluster against the same plan in this process.

One small plan (a sample pair; 2 alphas x 2 poster uniformities: 2 NNST, 4 poster stages) is run
with a fresh cache three ways: in this process, on a local cluster of 2 single-threaded worker
processes, and on a cluster of 1 worker. Printed:

- the wall time of the plan in process and on 2 workers (cluster start-up timed apart);
- the per-task overhead of the cluster path, from the 1-worker run where nothing overlaps:
  (wall time - the stage seconds the worker measured) / tasks. It covers scattering, scheduling,
  the start event, moving records between processes and writing the cache on the client;
- the bytes moved per run on 2 workers: input bytes scattered, bytes moved between workers
  (their outgoing transfer counters: records a task read from another worker, and the input
  bytes copied to every worker) and records gathered by the client (pickled sizes: each
  computed record of a stored stage comes back once, to be written to the cache; a not-stored
  one, the inputs, is decoded by each task that reads it, where it runs, and never moves).

On 2 cores no speed-up is expected: the figure to watch is the overhead (goal: under 1 s a stage).

    python bench/scale_out.py                        # 64 px NNST, 5 steps, 128 px posters
    python bench/scale_out.py --size 128 --steps 10 --out-size 256
"""

from __future__ import annotations

import argparse
import pickle
import tempfile
import time
from pathlib import Path

from plans import plan_toml, schedule

ALPHAS = (0.25, 0.75)  # the two NNST settings
UNIFORMITIES = (5e-4, 2e-3)  # the two poster settings


class Stages:
    """``on_event`` collecting the stage seconds of computed tasks."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    def __call__(self, event, task, info):
        if event == "done":
            self.seconds[task.key] = info["seconds"]


def timed_plan(plan: Path, out: Path, **executor) -> tuple[float, Stages]:
    from nnst_hr.experiment import run_plan

    stages = Stages()
    start = time.perf_counter()
    run_plan(plan, out, quiet=True, on_event=stages, **executor)
    return time.perf_counter() - start, stages


def outgoing_bytes(client) -> int:
    return sum(client.run(lambda dask_worker: dask_worker.transfer_outgoing_bytes_total).values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--out-size", type=int, default=128)
    args = parser.parse_args()

    from distributed import Client

    from nnst_hr.experiment.cache import Cache
    from nnst_hr.experiment.distributed import local_cluster
    from nnst_hr.experiment.graph import build_graph, read_inputs
    from nnst_hr.experiment.plan import load_plan
    from nnst_hr.experiment.stages import NOT_STORED

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        plan_path = tmp / "plan.toml"
        plan_path.write_text(plan_toml({"alpha": list(ALPHAS), "uniformity": list(UNIFORMITIES)},
                                       schedule(args.size, args.steps, args.out_size)))
        plan = load_plan(plan_path)
        graph = build_graph(plan, read_inputs(plan))
        n_runs, n_tasks = len(graph.runs), len(graph)
        print(f"plan: {n_runs} runs, {n_tasks} stages; NNST {args.size} px x {args.steps} steps, "
              f"posters {args.out_size} px")

        local_s, local = timed_plan(plan_path, tmp / "local")
        print(f"in process:             {local_s:7.1f} s  (stages {sum(local.seconds.values()):.1f} s)")

        start = time.perf_counter()
        with local_cluster(2) as two, Client(two, set_as_default=False) as client:
            startup_s = time.perf_counter() - start
            before = outgoing_bytes(client)
            two_s, on_two = timed_plan(plan_path, tmp / "two", scheduler=two.scheduler_address)
            transferred = outgoing_bytes(client) - before
        print(f"2 workers:              {two_s:7.1f} s  (stages {sum(on_two.seconds.values()):.1f} s on the "
              f"workers; cluster start {startup_s:.1f} s apart)")

        with local_cluster(1) as one, Client(one, set_as_default=False):
            one_s, on_one = timed_plan(plan_path, tmp / "one", scheduler=one.scheduler_address)
        overhead = (one_s - sum(on_one.seconds.values())) / len(on_one.seconds)
        print(f"1 worker:               {one_s:7.1f} s  (stages {sum(on_one.seconds.values()):.1f} s)")
        print(f"per-task overhead:      {overhead:7.3f} s  per stage on the cluster path "
              f"({len(on_one.seconds)} stages; goal < 1 s)")

        inputs = {}
        for task in graph.values():
            for arg in task.args:
                for data in (arg.values() if isinstance(arg, dict) else [arg]):
                    if isinstance(data, bytes):
                        inputs[hash(data)] = len(data)
        cache = Cache(tmp / "two" / "cache")
        by_stage: dict[str, int] = {}
        for key, task in graph.items():  # each stored record comes back to the client once
            if task.store:
                by_stage[task.stage] = by_stage.get(task.stage, 0) + len(pickle.dumps(cache.get(key), protocol=5))
        gathered = sum(by_stage.values())
        total = sum(inputs.values()) + transferred + gathered
        mib = 2**20
        print(f"bytes moved per run:    {total / n_runs / mib:7.2f} MiB  (inputs scattered "
              f"{sum(inputs.values()) / mib:.2f} MiB, between workers {transferred / mib:.2f} MiB, "
              f"records gathered {gathered / mib:.2f} MiB; {n_runs} runs)")
        print("records gathered by stage: " + ", ".join(f"{stage} {size / mib:.2f} MiB"
                                                         for stage, size in by_stage.items())
              + "".join(f", {stage} not stored (decoded where read)" for stage in sorted(NOT_STORED)))
        print(f"ratio 2 workers / in process: {two_s / local_s:.2f}")


if __name__ == "__main__":
    main()
