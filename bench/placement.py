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

``--readers color`` or ``--readers poster``: the readers of a CACHED record instead. The plan's
axis is then a colour setting (``color_iterations``) or a poster one (``patch_size``, posters at
twice the NNST size) over one NNST setting, whose inputs and NNST tasks are computed first in
this process: the measured run finds the NNST record in the cache and sends it to the cluster
for its readers (``--alphas`` of them). The waiting seconds are then those of a reader of the
cached record (ready from the plan's start), and the cached record's copies are listed: on
which workers, first and last seen by the 0.2 s sampler.

``--bandwidth B``: the bytes per second the scheduler assumes between workers (Dask's default
100 MB/s): a low one makes the small records of this plan weigh as a large record does on a
real network (a 64 px record is 30 KB; an NNST record at 2048 px, or a poster's, 50-200 MB).

``--gpu``: NNST tasks ask for a ``GPU`` resource that each worker offers (the placement of a GPU
cluster, on the CPU).

    python bench/placement.py                          # 1 pair x 4 alphas, 64 px, 10 steps
    python bench/placement.py --pairs 2 --gpu
    python bench/placement.py --readers poster         # 4 posters of one cached NNST record
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONTENTS = [ROOT / "samples/content/coffee.png", ROOT / "samples/content/astronaut.png"]
STYLES = [ROOT / "samples/style/cozens_grotto-in-the-campagna_watercolor.jpg",
          ROOT / "samples/style/potter_jeremy-fisher-plate_watercolor.jpg"]
SAMPLE_S = 0.2
GRID_S = 0.05


def plan_text(pairs: int, alphas: int, size: int, steps: int, readers: str = "") -> str:
    """``alphas`` values of NNST's alpha, or (``readers``) of a colour or a poster setting."""
    text = "".join(f'[[pair]]\ncontent = "{CONTENTS[i]}"\nstyle = "{STYLES[i]}"\n\n' for i in range(pairs))
    fixed = f"size = {size}\nsteps = {steps}\nsplit_steps = {steps}\n"
    if readers == "color":
        axis = f"color_iterations = {list(range(1, alphas + 1))}"
    elif readers == "poster":
        axis, fixed = f"patch_size = {list(range(3, 2 * alphas + 3, 2))}", fixed + f"out_size = {2 * size}\n"
    else:
        axis = f"alpha = {[round(0.1 + 0.8 * i / max(alphas - 1, 1), 3) for i in range(alphas)]}"
    return text + f"[axes]\n{axis}\n\n[fixed]\n{fixed}"


def task_key(dask_key) -> str:
    """The task key of an ``execute_dask`` Dask key ``<key>-<call>.<attempt>`` (another key as it is)."""
    return re.sub(r"-[0-9a-f]{8}\.[0-9]+$", "", str(dask_key))


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
    parser.add_argument("--readers", choices=("color", "poster"), default="",
                        help="measure the readers of a cached NNST record (the axis: a colour or a poster setting)")
    parser.add_argument("--bandwidth", default="", help="bytes/s the scheduler assumes, e.g. 100kB")
    args = parser.parse_args()

    import dask
    from distributed import Client, get_task_stream

    from nnst_hr.experiment.cache import Cache
    from nnst_hr.experiment.distributed import execute_dask, local_cluster
    from nnst_hr.experiment.execute import execute
    from nnst_hr.experiment.graph import Graph, build_graph, read_inputs
    from nnst_hr.experiment.plan import load_plan

    options = {"resources": {"GPU": 1}} if args.gpu else {}
    if args.bandwidth:  # read by the scheduler (in this process) as it starts
        dask.config.set({"distributed.scheduler.bandwidth": args.bandwidth})
    with tempfile.TemporaryDirectory() as tmp, local_cluster(2, **options) as cluster, \
            Client(cluster, set_as_default=False) as client:
        tmp = Path(tmp)
        (tmp / "plan.toml").write_text(plan_text(args.pairs, args.alphas, args.size, args.steps, args.readers))
        plan = load_plan(tmp / "plan.toml")
        graph = build_graph(plan, read_inputs(plan))
        if args.gpu:
            for key, task in list(graph.items()):
                if task.stage == "nnst":
                    graph[key] = dataclasses.replace(task, resources={"GPU": 1})
        runs = plan.runs()
        axis = next(iter(plan.axes))
        label = {key: task.stage + ("" if task.stage in ("inputs", "nnst") and args.readers
                                    else "" if task.stage == "inputs"
                                    else f" {axis}={runs[task.run_ids[0]].params[axis]}")
                 + f" p{runs[task.run_ids[0]].pair_index}" for key, task in graph.items()}
        cache = Cache(tmp / "cache")
        if args.readers:  # the NNST records in the cache before the measured run
            first = Graph()
            first.update({key: task for key, task in graph.items() if task.stage in ("inputs", "nnst")})
            execute(first, cache)
        watched = args.readers or "nnst"  # the stage whose placement is measured
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
                times.append(time.time())
                stop.wait(SAMPLE_S)

        times: list[float] = []

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        with get_task_stream(client=client) as stream:
            t0 = time.time()
            execute_dask(graph, cache, client=client)
        stop.set()
        sampler.join()
        sent = client.run(lambda dask_worker: dask_worker.transfer_outgoing_bytes_total)
        steals = client.get_events("stealing")
        logs = client.run(transitions)

        rows = []  # (start, stop, worker, key)
        for item in stream.data:
            key = task_key(item["key"] if isinstance(item["key"], str) else item["key"][0])
            compute = [s for s in item["startstops"] if s["action"] == "compute"]
            if key in graph and compute:
                rows.append((compute[0]["start"] - t0, compute[0]["stop"] - t0, names[item["worker"]], key))
        rows.sort()
        print(f"plan: {args.pairs} pair(s) x {args.alphas} {axis}, NNST {args.size} px x {args.steps} steps"
              f"{', GPU resource' if args.gpu else ''}{', NNST cached' if args.readers else ''}"
              f"{f', bandwidth {args.bandwidth}/s' if args.bandwidth else ''}; "
              f"{len(rows)} of {len(graph)} tasks run on 2 workers")
        print(f"{'start':>7} {'stop':>7}  worker  task")
        for start, end, worker, key in rows:
            print(f"{start:7.2f} {end:7.2f}  {worker:6}  {label[key]}")
        for stage in dict.fromkeys(graph[row[3]].stage for row in rows):
            ran = [row[2] for row in rows if graph[row[3]].stage == stage]
            print(f"{stage} tasks per worker:", {w: ran.count(w) for w in sorted(names.values())})
        nnst = [row for row in rows if graph[row[3]].stage == watched]

        # an NNST task counts as waiting from the end of its pair's inputs task (its readers
        # may start before: they decode the inputs themselves); a reader of a cached record
        # from the plan's start
        decoded = {graph[key].run_ids: end for _, end, _, key in rows if graph[key].stage == "inputs"}
        ready = {key: 0.0 if args.readers else
                 min((end for ids, end in decoded.items() if set(graph[key].run_ids) <= set(ids)), default=0.0)
                 for _, _, _, key in nnst}
        idle = 0.0
        for i in range(int(rows[-1][1] / GRID_S) + 1):
            t = i * GRID_S
            waiting = [key for start, _, _, key in nnst if start > t >= ready[key]]
            busy = {worker for start, end, worker, _ in rows if start <= t < end}
            if waiting and len(busy) < len(names):
                idle += GRID_S
        print(f"seconds with a {watched} task waiting and a worker idle: {idle:.2f} (of {rows[-1][1]:.2f})")
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
            size = max((v for s in samples for w in s for k, v in s[w].items() if task_key(k) == key), default=0)
            spans = []
            for address, log in logs.items():
                got = [t - t0 for k, _, to, t in log if task_key(k) == key and to == "memory"]
                gone = [t - t0 for k, frm, _, t in log if task_key(k) == key and frm == "memory"]
                if got:
                    spans.append(f"{names[address]} {min(got):.2f}-{max(gone, default=float('nan')):.2f} s")
            print(f"{label[key]} record: {size / mib:.1f} MiB, held on " + (", ".join(spans) or "no worker"))
        # cached records sent to the cluster (Dask keys "cached-<key>-<call>"), as the sampler saw them
        copies: dict = {}
        for when, sample_ in zip(times, samples, strict=True):
            for address, data in sample_.items():
                for name, size in data.items():
                    if str(name).startswith("cached-"):
                        key = str(name)[len("cached-"):].rsplit("-", 1)[0]
                        first_seen, _, _ = copies.get((key, address), (when, when, size))
                        copies[key, address] = (first_seen, when, size)
        for key in dict.fromkeys(key for key, _ in copies):
            spans = [f"{names[address]} {first - t0:.2f}-{last - t0:.2f} s"
                     for (k, address), (first, last, _) in sorted(copies.items(), key=lambda item: names[item[0][1]])
                     if k == key]
            size = max(size for (k, _), (_, _, size) in copies.items() if k == key)
            print(f"cached {label[key]} record: {size / mib:.2f} MiB, held on " + ", ".join(spans))


if __name__ == "__main__":
    main()
