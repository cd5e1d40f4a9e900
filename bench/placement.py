"""Where Dask places the stages of a small plan, and which records the workers hold and move.

A plan of ``--pairs`` sample pairs x ``--alphas`` NNST settings (tiny NNST) runs with
``execute_dask`` on a local cluster of 2 single-threaded workers (torch and the stages imported
on both first, so imports do not blur placement). Printed:

- each stage task's worker and its start and stop (seconds from the plan's start, from Dask's
  task stream), and the NNST tasks per worker;
- the seconds during which an NNST task waited (counted from the end of its pair's inputs task)
  while a worker computed nothing: the cost of poor placement;
- work-stealing moves (the scheduler's "stealing" events);
- bytes the workers sent each other (their transfer counters) and the most bytes of records a
  worker held at once (sampled every 0.2 s; Dask's ``sizeof`` of each record);
- for each pair's inputs task: on which workers its record was held, and from when to when.

``--gpu``: NNST tasks ask for a ``GPU`` resource that each worker offers (the placement of a GPU
cluster, on the CPU).

    python bench/placement.py                          # 1 pair x 4 alphas, 64 px, 10 steps
    python bench/placement.py --pairs 2 --gpu
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# `python bench/placement.py` puts bench/ first on the path, where bench/patchsynth.py would
# shadow the patchsynth package
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
CONTENTS = [ROOT / "samples/content/coffee.png", ROOT / "samples/content/astronaut.png"]
STYLES = [ROOT / "samples/style/cozens_grotto-in-the-campagna_watercolor.jpg",
          ROOT / "samples/style/potter_jeremy-fisher-plate_watercolor.jpg"]
SAMPLE_S = 0.2
GRID_S = 0.05


def plan_text(pairs: int, alphas: int, size: int, steps: int) -> str:
    text = "".join(f'[[pair]]\ncontent = "{CONTENTS[i]}"\nstyle = "{STYLES[i]}"\n\n' for i in range(pairs))
    values = [round(0.1 + 0.8 * i / max(alphas - 1, 1), 3) for i in range(alphas)]
    return text + f"[axes]\nalpha = {values}\n\n[fixed]\nsize = {size}\nsteps = {steps}\nsplit_steps = {steps}\n"


def held(dask_worker=None) -> dict:
    """``{key: bytes}`` of the records in a worker's data."""
    from dask.sizeof import sizeof

    return {key: sizeof(getattr(value, "record", value)) for key, value in list(dask_worker.data.items())}


def transitions(dask_worker=None) -> list:
    """The worker's task transitions: (key, from, to, time)."""
    return [(e[0], e[1], e[2], e[-1]) for e in dask_worker.state.log if len(e) == 7 and isinstance(e[0], str)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=1, choices=(1, 2))
    parser.add_argument("--alphas", type=int, default=4)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--gpu", action="store_true", help="NNST tasks ask for a GPU resource (each worker has 1)")
    args = parser.parse_args()

    from distributed import Client, get_task_stream

    from nnst_hr.experiment.cache import Cache
    from nnst_hr.experiment.distributed import execute_dask, local_cluster
    from nnst_hr.experiment.graph import build_graph, read_inputs
    from nnst_hr.experiment.plan import load_plan

    options = {"resources": {"GPU": 1}} if args.gpu else {}
    with tempfile.TemporaryDirectory() as tmp, local_cluster(2, **options) as cluster, \
            Client(cluster, set_as_default=False) as client:
        tmp = Path(tmp)
        (tmp / "plan.toml").write_text(plan_text(args.pairs, args.alphas, args.size, args.steps))
        plan = load_plan(tmp / "plan.toml")
        graph = build_graph(plan, read_inputs(plan))
        if args.gpu:
            for key, task in list(graph.items()):
                if task.stage == "nnst":
                    graph[key] = dataclasses.replace(task, resources={"GPU": 1})
        runs = plan.runs()
        label = {key: task.stage + ("" if task.stage == "inputs" else f" a={runs[task.run_ids[0]].nnst.alpha}")
                 + f" p{runs[task.run_ids[0]].pair_index}" for key, task in graph.items()}
        client.wait_for_workers(2)
        workers = client.scheduler_info(n_workers=-1)["workers"]
        names = {address: f"w{info['name']}" for address, info in workers.items()}
        client.run(lambda: __import__("nnst_hr.experiment.stages"))
        sent_before = client.run(lambda dask_worker: dask_worker.transfer_outgoing_bytes_total)

        samples: list[dict] = []
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                samples.append(client.run(held))
                stop.wait(SAMPLE_S)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        with get_task_stream(client=client) as stream:
            t0 = time.time()
            execute_dask(graph, Cache(tmp / "cache"), client=client)
        stop.set()
        sampler.join()
        sent = client.run(lambda dask_worker: dask_worker.transfer_outgoing_bytes_total)
        steals = client.get_events("stealing")
        logs = client.run(transitions)

        rows = []  # (start, stop, worker, key)
        for item in stream.data:
            key = item["key"] if isinstance(item["key"], str) else item["key"][0]
            compute = [s for s in item["startstops"] if s["action"] == "compute"]
            if key in graph and compute:
                rows.append((compute[0]["start"] - t0, compute[0]["stop"] - t0, names[item["worker"]], key))
        rows.sort()
        print(f"plan: {args.pairs} pair(s) x {args.alphas} alphas, NNST {args.size} px x {args.steps} steps"
              f"{', GPU resource' if args.gpu else ''}; {len(graph)} tasks on 2 workers")
        print(f"{'start':>7} {'stop':>7}  worker  task")
        for start, end, worker, key in rows:
            print(f"{start:7.2f} {end:7.2f}  {worker:6}  {label[key]}")
        nnst = [row for row in rows if graph[row[3]].stage == "nnst"]
        print("NNST tasks per worker:", {w: sum(row[2] == w for row in nnst) for w in sorted(names.values())})

        # an NNST task counts as waiting from the end of its pair's inputs task (its readers
        # may start before: they decode the inputs themselves)
        decoded = {graph[key].run_ids: end for _, end, _, key in rows if graph[key].stage == "inputs"}
        ready = {key: min((end for ids, end in decoded.items() if set(graph[key].run_ids) <= set(ids)), default=0.0)
                 for _, _, _, key in nnst}
        idle = 0.0
        for i in range(int(rows[-1][1] / GRID_S) + 1):
            t = i * GRID_S
            waiting = [key for start, _, _, key in nnst if start > t >= ready[key]]
            busy = {worker for start, end, worker, _ in rows if start <= t < end}
            if waiting and len(busy) < len(names):
                idle += GRID_S
        print(f"seconds with an NNST task waiting and a worker idle: {idle:.2f} (of {rows[-1][1]:.2f})")
        moves = [(when, entry) for when, entry in steals if entry[0] == "confirm"]
        print(f"work-stealing moves: {len(moves)}" + "".join(
            f"\n  {when - t0:6.2f}  {label.get(entry[1], entry[1])}" for when, entry in moves))
        mib = 2**20
        print("bytes sent between workers: " + ", ".join(
            f"{names[w]} {(sent[w] - sent_before[w]) / mib:.2f} MiB" for w in sorted(sent, key=names.get)))
        peak = {names[w]: max((sum(s.get(w, {}).values()) for s in samples), default=0) for w in names}
        print("most bytes of records held at once: "
              + ", ".join(f"{w} {v / mib:.1f} MiB" for w, v in sorted(peak.items())))
        for key, task in graph.items():
            if task.stage != "inputs":
                continue
            size = max((s[w].get(key, 0) for s in samples for w in s), default=0)
            spans = []
            for address, log in logs.items():
                got = [t - t0 for k, _, to, t in log if k == key and to == "memory"]
                gone = [t - t0 for k, frm, _, t in log if k == key and frm == "memory"]
                if got:
                    spans.append(f"{names[address]} {min(got):.2f}-{max(gone, default=float('nan')):.2f} s")
            print(f"{label[key]} record: {size / mib:.1f} MiB, held on " + (", ".join(spans) or "no worker"))


if __name__ == "__main__":
    main()
