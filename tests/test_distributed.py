"""execute_dask on a local cluster of worker processes on 127.0.0.1: same records as in process, faults,
the steps of the stages relayed from the workers to the client's progress.

The stages here are tiny module-level functions (the real NNST would be too slow for fault tests);
each appends its tag to a log file so the tests can count executions across worker processes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("distributed")

from distributed import Client  # noqa: E402
from helpers import RESUME_PLAN, CountingCache  # noqa: E402

from nnst_hr.errors import InputError  # noqa: E402
from nnst_hr.experiment import distributed as distributed_module  # noqa: E402
from nnst_hr.experiment import progress as plan_progress  # noqa: E402
from nnst_hr.experiment.cache import CACHE_ID, CHECKPOINTS, Cache, Checkpoints  # noqa: E402
from nnst_hr.experiment.distributed import (  # noqa: E402
    EVENT_TOPIC,
    STEP_TOPIC,
    _DaskRun,
    _Failed,
    _Output,
    _Stopped,
    execute_dask,
    executor_from_options,
    local_cluster,
    run_task,
)
from nnst_hr.experiment.execute import Failure, execute  # noqa: E402
from nnst_hr.experiment.graph import Graph, Task, TaskRef  # noqa: E402
from nnst_hr.experiment.progress import RelayProgress, StageStopped  # noqa: E402

SLOW_S = 1.5  # how long the slow stage runs: long enough to kill its worker in the middle


# --------------------------------------------------------------------------- tiny stages


def _log(log: str, tag: str) -> None:
    with open(log, "a") as f:
        f.write(tag + "\n")


def decode(data: bytes, log: str, tag: str, sleep_s: float = 0.0) -> dict:
    _log(log, tag)
    time.sleep(sleep_s)
    if data.startswith(b"BAD"):
        raise InputError(f"{tag}: not an image (starts with {data[:3]!r}); pass a PNG or JPEG file")
    return {"x": np.frombuffer(data, np.uint8).astype(np.float32), "n": len(data)}


def scale(inputs: dict, factor: float, log: str, tag: str, sleep_s: float = 0.0) -> dict:
    _log(log, tag)
    time.sleep(sleep_s)
    if sleep_s:
        _log(log, f"{tag}:end")  # a slow stage's end: whether it returned
    return {"y": inputs["x"] * np.float32(factor), "factor": factor}


def total(a: dict, b: dict, log: str, tag: str) -> dict:
    _log(log, tag)
    return {"sum": float(a["y"].sum() + b["y"].sum()), "label": tag}


def broken(inputs: dict, log: str, tag: str) -> dict:
    raise RuntimeError("a bug, not bad input")


def stepped(inputs: dict, log: str, tag: str, steps: int = 6, step_s: float = 0.05, *, progress=None) -> dict:
    """``scale``'s record, made in ``steps`` steps reported to ``progress`` (a stage with steps)."""
    _log(log, tag)
    if progress is not None:
        progress.plan([("scale 8px", steps, 1.0)])
        progress.start("scale 8px")
    for i in range(steps):
        time.sleep(step_s)
        if progress is not None:
            progress.step(i, loss=1.0 / (i + 1))
    return {"y": inputs["x"] * np.float32(2), "steps": steps}


def _key(stage: str, tag: str) -> str:
    return f"{stage}-{hashlib.sha256(tag.encode()).hexdigest()[:32]}"


def make_graph(log: Path, contents: list[bytes], style: bytes, *, slow: str = "", slow_decode: bool = False) -> Graph:
    """Per pair i: decode(content_i), decode(style) (shared), scale x2 each, total -> 3 + 2 per pair tasks."""
    graph = Graph()
    graph.keys_by_tag = keys = {}
    log = str(log)

    def add(stage, tag, func, args, run_ids):
        # content-addressed like the real graph: the tag, the data's digest and the upstream keys
        # (and the log: a test's keys are its own, Dask's client may hold an earlier test's results)
        ident = [tag, log] + [hashlib.sha256(a).hexdigest() if isinstance(a, bytes) else a.key
                         for a in args if isinstance(a, (bytes, TaskRef))]
        key = _key(stage, "/".join(ident))
        keys[stage, tag] = key
        if key not in graph:
            graph[key] = Task(key, stage, func, tuple(args), {}, tuple(run_ids))
        return key

    runs = list(range(len(contents)))
    s_in = add("inputs", "style", decode, (style, log, "inputs:style", SLOW_S if slow_decode else 0.0), runs)
    s_sc = add("nnst", "style", scale, (TaskRef(s_in), 2.0, log, "nnst:style", SLOW_S if slow == "style" else 0.0),
               runs)
    for i, content in enumerate(contents):
        c_in = add("inputs", f"c{i}", decode, (content, log, f"inputs:c{i}"), [i])
        c_sc = add("nnst", f"c{i}", scale, (TaskRef(c_in), 0.5 + i, log, f"nnst:c{i}",
                                            SLOW_S if slow == f"c{i}" else 0.0), [i])
        add("scores", f"c{i}", total, (TaskRef(c_sc), TaskRef(s_sc), log, f"scores:c{i}"), [i])
    return graph


def tag_of(task: Task) -> str:
    return next(arg for arg in task.args if isinstance(arg, str) and ":" in arg)


def executions(log: Path) -> list[str]:
    return log.read_text().split() if log.exists() else []


def files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def assert_clean_cache(folder: Path, graph: Graph) -> None:
    """One complete entry (npz, its checksum, json) per key, nothing else: no temporary or partial file."""
    names = sorted(p.name for p in files_under(folder))
    assert names == sorted(f"{k}{suffix}" for k in graph for suffix in (".npz", ".npz.sha256", ".json"))


class Recorder:
    def __init__(self, then=None):
        self.events: list[tuple[str, str, dict]] = []
        self.then = then

    def __call__(self, event, task, info):
        self.events.append((event, task.key, info))
        if self.then is not None:
            self.then(event, task, info)

    def keys(self, event: str) -> list[str]:
        return [key for e, key, _ in self.events if e == event]


@pytest.fixture(scope="module")
def client():
    with local_cluster(2) as cluster, Client(cluster, set_as_default=False) as client:
        yield client


@pytest.fixture
def two_workers(client):
    client.wait_for_workers(2, timeout=60)
    return client


@pytest.fixture
def own_workers():
    """A cluster of its own, for a test that SIGKILLs workers: their nannies' restarts can take over a
    minute on a loaded machine, and the shared cluster's later tests then found one worker."""
    with local_cluster(2) as cluster, Client(cluster, set_as_default=False) as client:
        client.wait_for_workers(2, timeout=60)
        yield client


CONTENTS = [bytes(range(7, 107)), bytes(range(50, 250))]
STYLE = bytes(range(200, 0, -1))


# --------------------------------------------------------------------------- tests


def test_run_task_turns_bad_input_into_a_value_and_passes_upstream_failures_on(tmp_path):
    log = str(tmp_path / "log")
    failed = run_task(decode, "inputs-00", "inputs", b"BAD data", log, "c")
    assert isinstance(failed, _Failed) and failed.stage == "inputs" and "not an image" in failed.message
    assert run_task(scale, "nnst-00", "nnst", failed, 2.0, log, "s") is failed  # not run
    assert executions(tmp_path / "log") == ["c"]
    ok = run_task(decode, "inputs-01", "inputs", b"\x01\x02", log, "d")
    assert isinstance(ok, _Output) and ok.info["seconds"] >= 0 and ok.info["peak_memory"] >= 0
    assert run_task(scale, "nnst-01", "nnst", ok, 3.0, log, "e").record["y"].tolist() == [3.0, 6.0]


def test_a_relay_stops_its_stage_at_a_step_once_its_call_ended_checking_at_most_every_stop_check_s(monkeypatch):
    checks, ended = [], [False]

    def stopped():
        checks.append(time.perf_counter())
        return ended[0]

    relay = RelayProgress("nnst", None, stopped=stopped)  # quiet: sends nothing, still stops
    relay.plan([("scale 8px", 10_000, 1.0)])
    relay.start("scale 8px")
    began = time.perf_counter()
    for i in range(3000):
        relay.step(i)
    took = time.perf_counter() - began
    assert 1 <= len(checks) <= 1 + took / plan_progress.STOP_CHECK_S  # the first step, then throttled
    monkeypatch.setattr(plan_progress, "STOP_CHECK_S", 0.0)
    ended[0] = True
    relay.step(9_999)  # a part's last step: its checkpoint follows, it is not stopped there
    with pytest.raises(StageStopped):
        relay.step(3000)
    assert issubclass(StageStopped, BaseException) and not issubclass(StageStopped, Exception)
    unchecked = RelayProgress("nnst", None)  # no stop given: never stops
    unchecked.plan([("scale 8px", 10, 1.0)])
    unchecked.start("scale 8px")
    for i in range(10):
        unchecked.step(i)


class _FakeWorker:
    """What run_task reads of its worker: the task table (a Dask key's state) and the event log."""

    address, name = "tcp://127.0.0.1:1", "fake"

    def __init__(self, tasks: dict[str, str]):
        self.state = SimpleNamespace(tasks={key: SimpleNamespace(state=state) for key, state in tasks.items()})
        self.events: list[tuple[str, dict]] = []

    def log_event(self, topic: str, event: dict) -> None:
        self.events.append((topic, event))


@pytest.mark.parametrize("relay", [True, False])
@pytest.mark.parametrize("cancel_at", [3, None])
def test_run_task_stops_a_stage_whose_worker_let_go_of_it_at_its_next_step(monkeypatch, relay, cancel_at):
    """The worker's table says the task is cancelled (its call has ended) from step 3 on: the stage
    stops there, with or without its steps sent; a task still wanted (None) runs to its end."""
    worker = _FakeWorker({"nnst-0-abc.1": "executing"})
    monkeypatch.setattr(distributed_module, "_current_worker", lambda: worker)
    monkeypatch.setattr(plan_progress, "STOP_CHECK_S", 0.0)
    done = []

    def stage(x, *, progress=None):
        progress.plan([("scale 8px", 10, 1.0)])
        progress.start("scale 8px")
        for i in range(10):
            if i == cancel_at:
                worker.state.tasks["nnst-0-abc.1"].state = "cancelled"
            progress.step(i)
            done.append(i)
        return {"x": x}

    out = run_task(stage, "nnst-0", "nnst", 1.0, relay=relay, call="abc", dask_key="nnst-0-abc.1")
    ends = [event for topic, event in worker.events if topic == EVENT_TOPIC and event["kind"] == "end"]
    if cancel_at is None:
        assert isinstance(out, _Output) and done == list(range(10)) and "info" in ends[0]
    else:
        assert out == _Stopped("nnst-0") and done == [0, 1, 2]
        assert ends == [{"kind": "end", "key": "nnst-0", "stopped": True, "call": "abc"}]
    assert any(topic == STEP_TOPIC for topic, _ in worker.events) == relay
    # a call that ended before its stage began (while the inputs were decoded): not run at all
    worker.state.tasks["nnst-0-abc.2"] = SimpleNamespace(state="cancelled")
    done.clear()
    assert run_task(stage, "nnst-0", "nnst", 1.0, call="abc", dask_key="nnst-0-abc.2") == _Stopped("nnst-0")
    assert done == []
    # a reader of a stopped task (still wanted itself) is not run either: stopped in turn
    worker.state.tasks["color-0-abc.1"] = SimpleNamespace(state="executing")
    assert run_task(stage, "color-0", "color", _Stopped("nnst-0"), dask_key="color-0-abc.1") == _Stopped("color-0")
    assert done == []


def test_same_records_and_keys_as_in_process_and_each_reuses_the_other(two_workers, tmp_path):
    client = two_workers
    graph = make_graph(tmp_path / "log", CONTENTS, STYLE)
    scattered: list[str] = []
    scatter = client.scatter

    def counting_scatter(data, **kwargs):
        scattered.extend(name.rsplit("-", 1)[0] for name in data)  # "bytes-<sha>-<call>" -> "bytes-<sha>"
        return scatter(data, **kwargs)

    client.scatter = counting_scatter
    try:
        events = Recorder()
        remote = execute_dask(graph, Cache(tmp_path / "dask"), client=client, on_event=events)
    finally:
        del client.scatter
    # input bytes scattered once per unique content, nothing else needed scattering
    assert sorted(scattered) == sorted({"bytes-" + hashlib.sha256(b).hexdigest()[:32] for b in CONTENTS + [STYLE]})
    assert sorted(events.keys("done")) == sorted(graph) and len(executions(tmp_path / "log")) == len(graph)
    assert set(events.keys("start")) == set(graph)
    local = execute(graph, Cache(tmp_path / "local"))
    assert list(remote) == list(local) == list(graph)
    for key in graph:
        assert sorted(remote[key]) == sorted(local[key])
        for name, value in local[key].items():
            np.testing.assert_array_equal(remote[key][name], value)
    # the closed form of one score: sum(content * f) + sum(style * 2)
    c0 = graph.keys_by_tag["scores", "c0"]
    assert remote[c0]["sum"] == pytest.approx(0.5 * sum(CONTENTS[0]) + 2.0 * sum(STYLE))
    # each cache serves the other executor: no execution at all
    n = len(executions(tmp_path / "log"))
    again = Recorder()
    execute_dask(graph, Cache(tmp_path / "local"), client=client, on_event=again)
    execute(graph, Cache(tmp_path / "dask"), on_event=again)
    assert len(executions(tmp_path / "log")) == n
    assert [e for e, _, _ in again.events] == ["cached"] * 2 * len(graph)
    assert_clean_cache(tmp_path / "dask", graph)


def test_cached_upstream_records_go_to_the_workers_as_data(two_workers, tmp_path):
    graph = make_graph(tmp_path / "log", CONTENTS, STYLE)
    cache = Cache(tmp_path / "results")
    first = [k for k, task in graph.items() if task.stage in ("inputs", "nnst")]
    execute(_sub(graph, first), cache)
    events = Recorder()
    results = execute_dask(graph, cache, client=two_workers, on_event=events)
    assert sorted(events.keys("cached")) == sorted(first)
    assert sorted(events.keys("done")) == sorted(k for k in graph if k not in first)
    assert results[graph.keys_by_tag["scores", "c1"]]["sum"] == pytest.approx(1.5 * sum(CONTENTS[1]) + 2.0 * sum(STYLE))


def _sub(graph: Graph, keys: list[str]) -> Graph:
    sub = Graph()
    for key in keys:
        sub[key] = graph[key]
    return sub


def test_bad_input_fails_its_run_alone_and_a_bug_propagates(two_workers, tmp_path):
    graph = make_graph(tmp_path / "log", [b"BAD not an image", CONTENTS[1]], STYLE)
    events = Recorder()
    cache = Cache(tmp_path / "results")
    results = execute_dask(graph, cache, client=two_workers, on_event=events)
    bad = [graph.keys_by_tag["inputs", "c0"], graph.keys_by_tag["nnst", "c0"], graph.keys_by_tag["scores", "c0"]]
    for key in bad:
        assert isinstance(results[key], Failure)
        assert results[key].stage == "inputs" and results[key].message.startswith("inputs:c0: not an image")
        assert not cache.has(key)
    assert sorted(events.keys("failed")) == sorted(bad)
    assert [info["upstream"] for e, k, info in events.events if e == "failed" and k == bad[0]] == [False]
    good = [k for k in graph if k not in bad]
    assert all(isinstance(results[k], dict) and cache.has(k) for k in good)
    assert "scores:c0" not in executions(tmp_path / "log")  # downstream of a failure is not run

    inputs = graph[graph.keys_by_tag["inputs", "c1"]]
    key = _key("nnst", "broken")
    bug = _sub(graph, [inputs.key])
    bug[key] = Task(key, "nnst", broken, (TaskRef(inputs.key), str(tmp_path / "log2"), "x"), {}, (0,))
    with pytest.raises(RuntimeError, match="a bug"):
        execute_dask(bug, Cache(tmp_path / "bug"), client=two_workers)


def killer(slow: str) -> tuple[list[int], Recorder]:
    """A recorder of events that SIGKILLs the worker running ``slow`` a while after it starts (once)."""
    killed: list[int] = []

    def kill(event, task, info):
        if event == "start" and task.key == slow and not killed:
            time.sleep(SLOW_S / 3)
            killed.append(info["pid"])
            os.kill(info["pid"], signal.SIGKILL)

    return killed, Recorder(kill)


def test_worker_killed_in_the_middle_of_a_stage(own_workers, tmp_path):
    """The worker running the slow stage is SIGKILLed mid-stage: Dask reruns it; every key done once."""
    graph = make_graph(tmp_path / "log", CONTENTS, STYLE, slow="c1")
    slow = graph.keys_by_tag["nnst", "c1"]
    killed, events = killer(slow)
    results = execute_dask(graph, Cache(tmp_path / "results"), client=own_workers, on_event=events)
    assert killed and executions(tmp_path / "log").count("nnst:c1") >= 2  # it was running, and ran again
    assert all(isinstance(results[k], dict) for k in graph)
    assert sorted(events.keys("done")) == sorted(graph)  # each key once
    assert results[graph.keys_by_tag["scores", "c1"]]["sum"] == pytest.approx(1.5 * sum(CONTENTS[1]) + 2.0 * sum(STYLE))
    assert_clean_cache(tmp_path / "results", graph)


def test_scattered_input_lost_with_its_worker_is_scattered_again(own_workers, tmp_path):
    """Kill the worker that holds the scattered style bytes while they are being decoded."""
    client = own_workers
    graph = make_graph(tmp_path / "log", CONTENTS, STYLE, slow_decode=True)
    style_key = "bytes-" + hashlib.sha256(STYLE).hexdigest()[:32]
    scattered: list[str] = []
    scatter = client.scatter
    killed = []

    def counting_scatter(data, **kwargs):
        scattered.extend(name.rsplit("-", 1)[0] for name in data)  # "bytes-<sha>-<call>" -> "bytes-<sha>"
        return scatter(data, **kwargs)

    def kill(event, task, info):
        if event == "start" and task.key == graph.keys_by_tag["inputs", "style"] and not killed:
            holder = next(workers[0] for name, workers in client.who_has().items() if name.startswith(style_key))
            pid = client.run(os.getpid, workers=[holder])[holder]
            killed.append(pid)
            os.kill(pid, signal.SIGKILL)

    client.scatter = counting_scatter
    try:
        events = Recorder(kill)
        results = execute_dask(graph, Cache(tmp_path / "results"), client=client, on_event=events)
    finally:
        del client.scatter
    assert killed and scattered.count(style_key) == 2
    assert sorted(events.keys("done")) == sorted(graph)
    assert results[graph.keys_by_tag["scores", "c0"]]["sum"] == pytest.approx(0.5 * sum(CONTENTS[0]) + 2.0 * sum(STYLE))
    assert_clean_cache(tmp_path / "results", graph)


def _tasks_of(client, graph: Graph) -> list[str]:
    """The Dask keys of ``graph``'s tasks that the scheduler holds (any call's)."""
    prefixes = tuple(graph)
    return client.run_on_scheduler(lambda dask_scheduler: [k for k in dask_scheduler.tasks
                                                           if str(k).startswith(prefixes)])


def _collisions(caplog) -> list[str]:
    """The scheduler's warnings of a key submitted again as another task (Dask keeps the first)."""
    return [r.getMessage() for r in caplog.records if "Detected different `run_spec`" in r.getMessage()]


def test_interrupted_client_resumes_from_the_stages_written(two_workers, tmp_path, caplog):
    graph = make_graph(tmp_path / "log", CONTENTS, STYLE, slow="c1")
    cache = Cache(tmp_path / "results")

    def interrupt(event, task, info):
        if event == "done" and len(events.keys("done")) == 3:
            raise KeyboardInterrupt

    events = Recorder(interrupt)
    with pytest.raises(KeyboardInterrupt):
        execute_dask(graph, cache, client=two_workers, on_event=events)
    written = [k for k in graph if cache.has(k)]
    assert sorted(written) == sorted(events.keys("done")) and 3 <= len(written) < len(graph)
    # what it submitted is let go at once: the scheduler drops it while the slow stage still runs
    # (a stage without steps is not stopped: it returns and its record is dropped)
    deadline = time.monotonic() + 30
    while _tasks_of(two_workers, graph) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not _tasks_of(two_workers, graph) and "nnst:c1:end" not in executions(tmp_path / "log")
    resumed = Recorder()
    with caplog.at_level(logging.WARNING, logger="distributed.scheduler"):
        results = execute_dask(graph, cache, client=two_workers, on_event=resumed)
    assert not _collisions(caplog)
    assert sorted(resumed.keys("cached")) == sorted(written)
    assert sorted(resumed.keys("done")) == sorted(k for k in graph if k not in written)
    assert sorted(resumed.keys("start")) == sorted(resumed.keys("done"))  # its own tasks' starts, each once
    log = executions(tmp_path / "log")
    for key in written:  # a stage written before the interruption never ran again
        assert log.count(tag_of(graph[key])) == 1
    assert all(isinstance(results[k], dict) for k in graph)
    assert_clean_cache(tmp_path / "results", graph)


def test_two_clients_run_one_plan_at_once_each_with_its_own_tasks(two_workers, tmp_path, caplog):
    """Two clients of one cluster run the same plan at the same time (two experiments sharing a
    cluster, each with its own cache): no task of one is taken for the other's (whose data it
    would read), each gets its own events, and both get the records computed in process."""
    graph = make_graph(tmp_path / "log", CONTENTS, STYLE, slow="c1")
    expected = execute(graph, Cache(tmp_path / "in-process"))
    outcomes: dict = {}

    def run(name, client):
        events = Recorder()
        outcomes[name] = execute_dask(graph, Cache(tmp_path / name), client=client, on_event=events), events

    with Client(two_workers.scheduler.address, set_as_default=False) as other, \
            caplog.at_level(logging.WARNING, logger="distributed.scheduler"):
        threads = [threading.Thread(target=run, args=(name, client), daemon=True)
                   for name, client in (("a", two_workers), ("b", other))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert not any(thread.is_alive() for thread in threads)
    assert not _collisions(caplog)
    for name in ("a", "b"):
        results, events = outcomes[name]
        assert sorted(events.keys("start")) == sorted(events.keys("done")) == sorted(graph)  # each once
        for key in graph:
            assert sorted(results[key]) == sorted(expected[key])
        assert results[graph.keys_by_tag["scores", "c1"]]["sum"] == expected[graph.keys_by_tag["scores", "c1"]]["sum"]
        assert_clean_cache(tmp_path / name, graph)


def test_a_record_lost_before_it_is_handled_is_waited_for_again(two_workers, tmp_path):
    """A future that finished and was lost again before the client handled it (Dask's client
    sets it "lost" when the scheduler reports its data lost, and finishes it once it is computed
    again) is waited for again, not dropped with its key never settled."""
    graph = make_graph(tmp_path / "log", CONTENTS[:1], STYLE)
    run = _DaskRun(graph, Cache(tmp_path / "results"), two_workers, Recorder(), None)
    handle, lost = run.handle, []

    def losing(future):
        if not lost:
            lost.append(future.key)
            state, loop = future._state, two_workers.loop
            state.lose()
            loop.add_callback(lambda: loop.call_later(0.3, state.finish))  # computed again
        handle(future)

    run.handle = losing
    done = []
    thread = threading.Thread(target=lambda: done.append(run.run()), daemon=True)
    thread.start()
    thread.join(timeout=60)
    assert lost and done  # it came back, and the call returned
    assert sorted(run.emit.keys("done")) == sorted(graph)
    assert done[0][graph.keys_by_tag["scores", "c0"]]["sum"] == pytest.approx(0.5 * sum(CONTENTS[0]) + 2.0 * sum(STYLE))


def not_stored(graph: Graph) -> Graph:
    """``graph`` with its inputs tasks not stored, as the real graph's."""
    out = Graph()
    out.keys_by_tag = graph.keys_by_tag
    for key, task in graph.items():
        out[key] = dataclasses.replace(task, store=task.stage != "inputs")
    return out


@pytest.mark.parametrize("n_pairs", [2, 8])
def test_the_client_holds_records_while_needed_and_never_a_not_stored_one(two_workers, tmp_path, n_pairs):
    """Records gathered are written and let go: what the client holds at once does not grow with
    the plan; a not-stored record (the inputs) stays on the workers and is never gathered."""
    contents = [bytes(range(i, i + 100)) for i in range(n_pairs)]
    graph = not_stored(make_graph(tmp_path / "log", contents, STYLE))
    cache = CountingCache(tmp_path / "results")
    events = Recorder()
    results = execute_dask(graph, cache, client=two_workers, on_event=events)
    assert sorted(events.keys("done")) == sorted(graph)  # the not-stored ones report too, once
    assert all(info["seconds"] >= 0 for e, _, info in events.events if e == "done")
    stored = [k for k, task in graph.items() if task.store]
    assert_clean_cache(tmp_path / "results", _sub(graph, stored))  # no inputs record was written
    assert cache.peak <= 3  # the one being written, and at most two gathered beside it
    assert cache.alive() == 0  # nothing is held once the call returns
    for i, content in enumerate(contents):
        assert results[graph.keys_by_tag["scores", f"c{i}"]]["sum"] == pytest.approx(
            (0.5 + i) * sum(content) + 2.0 * sum(STYLE))
    # a not-stored record asked of the results is computed again from its arguments
    np.testing.assert_array_equal(results[graph.keys_by_tag["inputs", "c0"]]["x"], np.frombuffer(contents[0], np.uint8))
    # run again in this process: everything stored is cached, so no input is decoded
    again = Recorder()
    n = len(executions(tmp_path / "log"))
    execute(graph, cache, on_event=again)
    assert sorted(again.keys("cached")) == sorted(stored) and len(executions(tmp_path / "log")) == n


def test_a_not_stored_record_lost_with_its_worker_is_computed_again(own_workers, tmp_path):
    """Kill the worker running a stage that reads a not-stored record: the stage runs again on
    the other worker, which computes the record again (from its own copy of the bytes); every
    key reports once. (On a cluster of its own: on the shared one, the next test's three tasks
    once all went to the surviving worker while the killed one's nanny was still restarting it.)"""
    graph = not_stored(make_graph(tmp_path / "log", CONTENTS, STYLE, slow="c1"))
    slow = graph.keys_by_tag["nnst", "c1"]
    killed, events = killer(slow)
    results = execute_dask(graph, Cache(tmp_path / "results"), client=own_workers, on_event=events)
    assert killed and executions(tmp_path / "log").count("nnst:c1") >= 2
    assert sorted(events.keys("done")) == sorted(graph)  # each key once
    assert results[graph.keys_by_tag["scores", "c1"]]["sum"] == pytest.approx(1.5 * sum(CONTENTS[1]) + 2.0 * sum(STYLE))
    assert_clean_cache(tmp_path / "results", _sub(graph, [k for k, task in graph.items() if task.store]))


def test_a_bad_not_stored_input_fails_its_run_alone(two_workers, tmp_path):
    graph = not_stored(make_graph(tmp_path / "log", [b"BAD not an image", CONTENTS[1]], STYLE))
    events = Recorder()
    results = execute_dask(graph, Cache(tmp_path / "results"), client=two_workers, on_event=events)
    bad = [graph.keys_by_tag["inputs", "c0"], graph.keys_by_tag["nnst", "c0"], graph.keys_by_tag["scores", "c0"]]
    assert [k for k in events.keys("failed")] == bad  # upstream first
    assert [info["upstream"] for e, k, info in events.events if e == "failed"] == [False, True, True]
    for key in bad:
        assert results.failure(key) == Failure("inputs:c0: not an image (starts with b'BAD'); pass a PNG or JPEG file",
                                               "inputs")
    assert sorted(events.keys("done")) == sorted(k for k in graph if k not in bad)


def placed(inputs: dict, inputs_key: str, log: str, tag: str) -> dict:
    """A reader that logs ``tag``, its worker and whether that worker holds ``inputs_key``'s
    decoded record (in Dask's data, as a task's result), busy long enough to be running while
    the others are placed."""
    from distributed import get_worker

    worker = get_worker()
    held = any(getattr(value, "record", None) for key, value in list(worker.data.items()) if key == inputs_key)
    _log(log, f"{tag}:{worker.address}:{'held' if held else 'none'}")
    time.sleep(1.0)
    return {"y": inputs["x"] * np.float32(2)}


async def _work_stealing(on: bool, dask_scheduler=None) -> None:
    stealing = dask_scheduler.extensions["stealing"]
    await (stealing.start() if on else stealing.stop())


def test_readers_of_a_not_stored_record_are_placed_by_load_and_no_worker_holds_it(two_workers, tmp_path):
    """Three readers of one not-stored record (NNST runs of one pair), Dask's work stealing off:
    both workers run some (the scheduler places them by load, not next to a decoded record; a
    reader computes the record itself), and no worker holds the decoded record as Dask data."""
    log = str(tmp_path / "log")
    graph = Graph()
    # key prefixes of their own: the scheduler has no duration for them from the other tests
    inputs = _key("placedinputs", log)
    graph[inputs] = Task(inputs, "inputs", decode, (CONTENTS[0], log, "inputs:c0"), {}, (0, 1, 2), store=False)
    for i in range(3):
        key = _key("placednnst", f"{log}/{i}")
        graph[key] = Task(key, "nnst", placed, (TaskRef(inputs), inputs, log, f"nnst:{i}"), {}, (i,))
    workers = sorted(two_workers.scheduler_info(n_workers=-1)["workers"])
    two_workers.run_on_scheduler(_work_stealing, False)
    try:
        events = Recorder()
        results = execute_dask(graph, Cache(tmp_path / "results"), client=two_workers, on_event=events)
    finally:
        two_workers.run_on_scheduler(_work_stealing, True)
    # "nnst:<i>:<worker address>:<held|none>"
    runs = [line.split(":", 2)[2].rsplit(":", 1) for line in executions(tmp_path / "log") if line.startswith("nnst:")]
    assert len(runs) == 3
    assert sorted({address for address, _ in runs}) == workers  # both workers ran readers
    assert [held for _, held in runs] == ["none"] * 3  # no decoded record among the workers' data
    assert sorted(events.keys("done")) == sorted(graph) and events.keys("done")[0] == inputs
    for key in graph:
        if key != inputs:
            np.testing.assert_array_equal(results[key]["y"], np.frombuffer(CONTENTS[0], np.uint8) * np.float32(2))


def crash(inputs: dict, log: str, tag: str) -> dict:
    _log(log, tag)
    os._exit(1)  # the worker process dies, as when it runs out of memory


def _allowed_failures(n: int, dask_scheduler=None) -> int:
    old, dask_scheduler.allowed_failures = dask_scheduler.allowed_failures, n
    return old


def test_a_stage_that_kills_its_workers_fails_its_runs_not_the_plan(own_workers, tmp_path):
    log = tmp_path / "log"
    graph = make_graph(log, CONTENTS, STYLE)
    c1 = graph.keys_by_tag["nnst", "c1"]
    graph[c1] = Task(c1, "nnst", crash, (TaskRef(graph.keys_by_tag["inputs", "c1"]), str(log), "crash"), {}, (1,))
    cache = Cache(tmp_path / "results")
    # the other stages first: Dask counts a death against every task queued on that worker, and
    # with no failure allowed an innocent task queued beside the crash would fail with it
    execute(_sub(graph, [k for k in graph if k not in (c1, graph.keys_by_tag["scores", "c1"])]), cache)
    old = own_workers.run_on_scheduler(_allowed_failures, 0)  # the first death is a KilledWorker
    try:
        results = execute_dask(graph, cache, client=own_workers)
    finally:
        own_workers.run_on_scheduler(_allowed_failures, old)
    assert executions(log).count("crash") == 1
    for key in (c1, graph.keys_by_tag["scores", "c1"]):
        assert isinstance(results[key], Failure) and results[key].stage == "nnst"
        assert "killed 1 worker(s)" in results[key].message
        assert not cache.has(key)
    assert isinstance(results[graph.keys_by_tag["scores", "c0"]], dict)


def test_a_gpu_task_on_a_cluster_without_gpu_workers_is_refused_before_any_work(two_workers, tmp_path):
    graph = make_graph(tmp_path / "log", CONTENTS[:1], STYLE)
    key = graph.keys_by_tag["nnst", "c0"]
    graph[key] = dataclasses.replace(graph[key], resources={"GPU": 1})
    with pytest.raises(InputError, match="GPU=1"):
        execute_dask(graph, Cache(tmp_path / "results"), client=two_workers)
    assert executions(tmp_path / "log") == [] and not (tmp_path / "results").exists()


def test_plan_progress_on_a_cluster_shows_each_stage_event(two_workers, tmp_path):
    from nnst_hr.experiment.progress import PlanProgress

    graph = make_graph(tmp_path / "log", CONTENTS[:1], STYLE)
    graph.runs.append({})
    cache, out = Cache(tmp_path / "results"), io.StringIO()
    execute_dask(graph, cache, client=two_workers, on_event=PlanProgress(graph, cache, stream=out))
    lines = out.getvalue().splitlines()
    assert lines[0] == "1 run, 5 of 5 stages to compute (2 inputs, 2 nnst, 1 scores)"
    # each start names the worker (a LocalCluster's are named 0, 1)
    starts = [re.sub(r" \[worker [01]\] \.\.\.$", " ...", line) for line in lines if line.endswith(" ...")]
    assert sorted(starts) == sorted(f"run 1 of 1: {task.stage} ..." for task in graph.values())
    assert sum(" done in " in line for line in lines) == 5 and lines[-1].endswith("about 0s left")


def stepped_graph(log: Path, n: int = 2) -> Graph:
    """``make_graph`` of ``n`` pairs whose content nnst stages report steps (``stepped``); one run per pair."""
    graph = make_graph(log, [bytes(range(i, i + 90)) for i in range(n)], STYLE)
    for i in range(n):
        key = graph.keys_by_tag["nnst", f"c{i}"]
        graph[key] = dataclasses.replace(graph[key], func=stepped, args=graph[key].args[:1] + graph[key].args[2:4])
        graph.runs.append({})
    return graph


def _plain_plan(graph: Graph, cache: Cache):
    from nnst_hr.experiment.progress import PlanProgress

    out = io.StringIO()
    return out, PlanProgress(graph, cache, stream=out)


def test_steps_of_stages_on_the_workers_reach_the_client_labelled_with_run_and_worker(two_workers, tmp_path):
    graph = stepped_graph(tmp_path / "log")
    out, plan = _plain_plan(graph, Cache(tmp_path / "shown"))
    shown = execute_dask(graph, Cache(tmp_path / "shown"), client=two_workers, on_event=plan, progress=plan.reporter)
    lines = out.getvalue().splitlines()
    for run in (1, 2):
        # the first step (nothing measured yet) and the last (always sent), from the worker running it
        steps = [line for line in lines if line.startswith(f"run {run} of 2: nnst [worker ") and ": step " in line]
        assert re.fullmatch(rf"run {run} of 2: nnst \[worker [01]\]: scale 8px: step 1/6, loss 1\.0000"
                            r"(; plan about \d+s left)?", steps[0])  # the plan's, once an earlier stage has ended
        assert re.fullmatch(rf"run {run} of 2: nnst \[worker [01]\]: scale 8px: step 6/6, loss 0\.1667, "
                            r"about 0s left(; plan about \d+s left)?", steps[-1])
        assert 2 <= len(steps) <= 4  # throttled on the worker: 6 steps in 0.3 s
    # between the stage's start and its end (run 2's one nnst; run 1 also has the style's)
    steps = [i for i, line in enumerate(lines) if line.startswith("run 2 of 2: nnst [worker ") and ": step " in line]
    start = next(i for i, line in enumerate(lines) if re.fullmatch(r"run 2 of 2: nnst \[worker [01]\] \.\.\.", line))
    assert start < steps[0] and steps[-1] < lines.index(next(line for line in lines if line.startswith(
        "run 2 of 2: nnst done in")))
    # the same keys and records as without progress (the reporter is no task argument)
    quiet = execute(graph, Cache(tmp_path / "quiet"))
    assert [p.name for p in files_under(tmp_path / "quiet")] == [p.name for p in files_under(tmp_path / "shown")]
    for key in graph:
        for name, value in quiet[key].items():
            np.testing.assert_array_equal(shown[key][name], value)


def noisy(inputs: dict, log: str, tag: str) -> dict:
    """``scale``'s record x2, warning and logging an info line as stages do (a style upsampled, colours converted)."""
    warnings.warn(f"the style of {log} is upsampled", UserWarning, stacklevel=2)
    logging.getLogger("nnst_hr.color").info("color skipped for %s", log)
    return {"y": inputs["x"] * np.float32(2)}


def test_warnings_and_info_lines_of_a_stage_on_a_worker_reach_the_client(two_workers, tmp_path, caplog):
    # They went to the worker's stderr (a warning with its file and source line, info nowhere).
    graph = make_graph(tmp_path / "log", CONTENTS[:1], STYLE)
    key = graph.keys_by_tag["nnst", "c0"]
    graph[key] = dataclasses.replace(graph[key], func=noisy, args=graph[key].args[:1] + graph[key].args[2:4])
    log = str(tmp_path / "log")
    with warnings.catch_warnings(record=True) as shown, caplog.at_level(logging.INFO, logger="nnst_hr"):
        warnings.simplefilter("always")
        execute_dask(graph, Cache(tmp_path / "results"), client=two_workers)
    assert [str(w.message) for w in shown] == [f"the style of {log} is upsampled"]
    assert [(r.levelno, r.getMessage()) for r in caplog.records if r.name.startswith("nnst_hr")] == [
        (logging.INFO, f"color skipped for {log}")]


def _break_step_reports(dask_worker=None) -> None:
    send = dask_worker.log_event

    def log_event(topic, msg):
        if topic == STEP_TOPIC:
            raise OSError("the relay is down")
        return send(topic, msg)

    dask_worker.log_event = log_event


def _mend_step_reports(dask_worker=None) -> None:
    del dask_worker.log_event  # the instance's patch: the class's method again


def test_a_relay_that_raises_fails_no_task(two_workers, tmp_path):
    graph = stepped_graph(tmp_path / "log")
    out, plan = _plain_plan(graph, Cache(tmp_path / "results"))
    two_workers.run(_break_step_reports)
    try:
        results = execute_dask(graph, Cache(tmp_path / "results"), client=two_workers, on_event=plan,
                               progress=plan.reporter)
    finally:
        two_workers.run(_mend_step_reports)
    assert all(isinstance(results[k], dict) for k in graph)
    expected = 2.0 * sum(range(1, 91)) + 2.0 * sum(STYLE)
    assert results[graph.keys_by_tag["scores", "c1"]]["sum"] == pytest.approx(expected)
    text = out.getvalue()
    assert ": step " not in text and text.count(" done in ") == len(graph)


def test_workers_option_runs_on_local_single_threaded_processes(tmp_path):
    graph = make_graph(tmp_path / "log", CONTENTS[:1], STYLE)
    pids, reporters = [], []
    with executor_from_options(workers=1) as run:
        results = run(graph, Cache(tmp_path / "results"), progress=reporters.append,
                      on_event=lambda event, task, info: pids.append(info["pid"]) if event == "start" else None)
    assert set(pids) and os.getpid() not in pids  # another process
    assert sorted(task.key for task in reporters) == sorted(graph)  # asked for as each task starts
    assert all(isinstance(results[k], dict) for k in graph)
    assert results[graph.keys_by_tag["scores", "c0"]]["sum"] == pytest.approx(
        0.5 * sum(CONTENTS[0]) + 2.0 * sum(STYLE))


def test_local_workers_let_go_of_a_stopped_stage_without_a_warning():
    """Ctrl-C on `--workers 2` printed Dask's "Async instruction for <Task cancelled ...> ended with
    CancelledError" from each worker running a stage, above the plan's one line."""
    from nnst_hr.experiment.distributed import dask_client

    def level(dask_worker=None):
        return logging.getLogger("distributed.worker.state_machine").getEffectiveLevel()

    with dask_client(workers=1) as client:
        assert set(client.run(level).values()) == {logging.ERROR}


def test_local_workers_leave_ctrl_c_to_the_client():
    """A terminal's Ctrl-C reaches the workers too (one process group): each printed a traceback as it
    died under its stage, above the plan's one line. They ignore it; the client stops and closes them."""
    from nnst_hr.experiment.distributed import dask_client

    def handler(dask_worker=None):
        return signal.getsignal(signal.SIGINT) is signal.SIG_IGN

    # as in a terminal's foreground (a shell's background job starts with SIGINT ignored already)
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with dask_client(workers=1) as client:
            assert set(client.run(handler).values()) == {True}
            assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # this process still takes it
    finally:
        signal.signal(signal.SIGINT, before)


def test_closing_a_local_cluster_that_holds_data_says_nothing(caplog):
    """Ctrl-C closed the cluster with data still on it: the scheduler printed a dated warning and an
    error ("lose already computed task(s)", "lose scattered data, which can't be recovered")."""
    from nnst_hr.experiment.distributed import _close_quietly

    cluster = local_cluster(1)
    with Client(cluster, set_as_default=False) as client:
        client.wait_for_workers(1, timeout=60)
        held = client.submit(len, client.scatter(b"x" * 100))
        assert held.result() == 100
        with caplog.at_level(logging.WARNING, logger="distributed"):
            _close_quietly(cluster)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_scheduler_is_an_input_error_naming_the_address(tmp_path, capsys):
    import typer

    from nnst_hr.cli import _guarded

    address = f"tcp://127.0.0.1:{_free_port()}"
    start = time.monotonic()

    def action():
        with executor_from_options(scheduler=address, connect_timeout=1.0):
            raise AssertionError("connected to nothing")

    with pytest.raises(typer.Exit) as exit_info:
        _guarded(action)
    assert exit_info.value.exit_code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and address in err[0] and "dask scheduler" in err[0]
    assert time.monotonic() - start < 30
    with pytest.raises(InputError, match="exclude each other"):
        with executor_from_options(workers=2, scheduler=address):
            pass
    with pytest.raises(InputError, match="1 or more"):
        with executor_from_options(workers=0):
            pass
    with executor_from_options() as run:
        assert run is execute


# --------------------------------------------------------------------------- the real experiment graph

REAL_PLAN = """
[[pair]]
content = "c.png"
style = "s.png"

[[pair]]
content = "bad.png"
style = "s.png"

[axes]
color = [true, false]

[fixed]
size = 32
steps = 1
split_steps = 1
rotate = false
"""


@pytest.fixture
def real_plan(tmp_path) -> Path:
    from nnst_hr.files import write_image

    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:48, 0:48] / 48
    write_image(tmp_path / "c.png", (np.stack([x, y, 1 - x], -1) * 0.8 + rng.random((48, 48, 3)) * 0.2)
                .astype(np.float32), overwrite=True)
    write_image(tmp_path / "s.png", (np.stack([0.5 + 0.5 * np.sin(x * 20), y, 0.3 + 0 * x], -1) * 0.9)
                .astype(np.float32), overwrite=True)
    (tmp_path / "bad.png").write_bytes(b"this is not an image")
    (tmp_path / "plan.toml").write_text(REAL_PLAN)
    return tmp_path / "plan.toml"


def test_real_plan_on_the_cluster_then_in_process_reuses_everything(two_workers, real_plan, tmp_path):
    import csv

    from nnst_hr.experiment import run_plan

    out = tmp_path / "results"
    events = Recorder()
    summary = run_plan(real_plan, out, quiet=True, on_event=events, scheduler=two_workers.scheduler.address)
    with open(summary.results, newline="") as f:
        rows = list(csv.DictReader(f))
    assert sorted(row["run"] for row in rows) == sorted({row["run"] for row in rows})  # each run once
    assert len(rows) == 4 and summary.failed == 2
    for row in rows:
        if row["pair"] == "1":  # bad.png: failed alone, with the decoder's message
            assert row["status"] != "ok" and "bad.png" in row["message"]
        else:
            assert row["status"] == "ok" and float(row["objective"]) > 0
    computed = events.keys("done")
    assert sorted(computed) == sorted(set(computed))  # each stage once
    assert {events_task.split("-")[0] for events_task in computed} == {"inputs", "nnst", "color", "scores"}
    # the inputs stage is not stored: no decoded image in the cache
    # and of the NNST tasks' checkpoints, only the cache's id (by which the workers knew it) is left
    assert sorted({p.name.split("-")[0] for p in (out / "cache").iterdir()}) == ["checkpoints", "color", "nnst",
                                                                                  "scores"]
    assert os.listdir(out / "cache" / CHECKPOINTS) == [CACHE_ID]
    # the same plan in this process: nothing computed again (the failed run's inputs are retried;
    # the good pair's are not decoded at all, since every stage that reads them is cached)
    again = Recorder()
    run_plan(real_plan, out, quiet=True, on_event=again)
    assert again.keys("done") == [] and sorted(again.keys("cached")) == sorted(
        key for key in computed if not key.startswith("inputs-"))
    assert [key.split("-")[0] for key in again.keys("start")] == ["inputs"]
    assert [p for p in files_under(out) if p.name.startswith(".") or "tmp" in p.name] == []


def test_a_plan_whose_runs_fail_on_a_cluster_exits_2_naming_the_first(two_workers, real_plan, tmp_path):
    """As in process: it exited 0 with a warning. Only the failing pair: its runs fail at their inputs.
    (``--workers N`` runs the same code on a cluster of its own, which takes long to start.)"""
    from typer.testing import CliRunner

    from nnst_hr.cli import app

    real_plan.write_text(REAL_PLAN.replace('[[pair]]\ncontent = "c.png"\nstyle = "s.png"\n', "", 1))
    out = tmp_path / "results"
    result = CliRunner().invoke(app, ["experiment", str(real_plan), "-o", str(out), "-q", "--scheduler",
                                        two_workers.scheduler.address])
    assert result.exit_code == 2, result.output
    assert result.stderr.splitlines() == [
        f"error: 2 of 2 runs failed (first: run001, pair[0]: inputs: {tmp_path / 'bad.png'} is not an image that can "
        "be read (PNG, JPEG, TIFF or WebP expected); check the file or convert it); "
        f"{out / 'report.html'} lists them all; fix what failed and run the same command again (the runs done are "
        "taken from the cache)"]
    assert (out / "results.csv").is_file() and (out / "report.html").is_file()


STEPPED_PLAN = """
[[pair]]
content = "c.png"
style = "s.png"

[axes]
seed = [0, 1]

[fixed]
size = 32
steps = 3
split_steps = 2
rotate = false
"""


def test_real_plan_on_the_cluster_shows_the_workers_steps_and_quiet_shows_nothing(two_workers, real_plan, tmp_path):
    from nnst_hr.experiment import run_plan

    plan = real_plan.with_name("stepped.toml")
    plan.write_text(STEPPED_PLAN)
    address = two_workers.scheduler.address
    stream = io.StringIO()
    run_plan(plan, tmp_path / "shown", stream=stream, scheduler=address)
    text, loss = stream.getvalue(), r"loss \d+\.\d{4}"
    for run in (1, 2):  # two NNST stages, one per seed; each scale's last step is always sent
        assert re.search(rf"^run {run} of 2: nnst \[worker [01]\]: scale 32px: step 3/3, {loss}, about \d+s left",
                         text, re.MULTILINE), text
        assert re.search(rf"^run {run} of 2: nnst \[worker [01]\]: feature splitting: step 2/2, {loss}, "
                         r"about \d+s left", text, re.MULTILINE), text
    assert text.index("run 2 of 2: nnst [worker") < text.index("run 2 of 2: nnst done in")
    sent = len(two_workers.get_events(STEP_TOPIC))
    quiet, events = io.StringIO(), Recorder()
    run_plan(plan, tmp_path / "quiet", stream=quiet, quiet=True, scheduler=address, on_event=events)
    assert quiet.getvalue() == "" and len(two_workers.get_events(STEP_TOPIC)) == sent  # no report even sent
    assert sum(key.startswith("nnst-") for key in events.keys("start")) == 2  # computed again, on the workers
    shown_cache, quiet_cache = Cache(tmp_path / "shown" / "cache"), Cache(tmp_path / "quiet" / "cache")
    keys = sorted(path.stem for path in (tmp_path / "shown" / "cache").glob("*.json"))
    assert len(keys) == 6 and keys == sorted(path.stem for path in (tmp_path / "quiet" / "cache").glob("*.json"))
    for key in keys:
        a, b = shown_cache.get(key), quiet_cache.get(key)
        assert a.keys() == b.keys()
        for name, value in a.items():
            np.testing.assert_array_equal(value, b[name])


def test_real_plan_on_the_cluster_resumes_nnst_at_the_scale_saved_in_the_cache(two_workers, real_plan, tmp_path):
    """The states of an NNST stopped after its first scale (in process: the same key's states wherever
    they were made) are found by the worker, which starts at the next scale, to the same records."""
    from nnst_hr.experiment import progress as plan_progress
    from nnst_hr.experiment import run_plan

    plan = real_plan.with_name("resume.toml")
    plan.write_text(RESUME_PLAN.format(seed=0))
    run_plan(plan, tmp_path / "reference", quiet=True)
    reference = tmp_path / "reference" / "cache"
    save = Checkpoints.save

    def save_then_stop(self, name, image):
        save(self, name, image)
        if name == "scale0":
            raise KeyboardInterrupt

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Checkpoints, "save", save_then_stop)
        with pytest.raises(KeyboardInterrupt):
            run_plan(plan, tmp_path / "results", quiet=True)
    cache = tmp_path / "results" / "cache"
    key = next(p.stem for p in reference.glob("nnst-*.json"))
    assert sorted(os.listdir(cache / CHECKPOINTS / key)) == ["scale0.npz", "scale0.npz.sha256"]

    stream, events = io.StringIO(), Recorder()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(plan_progress, "REPORT_INTERVAL_S", 0.0)
        run_plan(plan, tmp_path / "results", stream=stream, on_event=events, scheduler=two_workers.scheduler.address)
    text = stream.getvalue()
    resumed = r"^run 1 of 1: nnst \[worker [01]\]: scale 32px: resumed from checkpoint$"
    assert re.search(resumed, text, re.MULTILINE), text
    assert not re.search(r"scale 32px: step", text) and re.search(r"scale 64px: step 2/2", text), text
    assert [info.get("resumed") for e, k, info in events.events if e == "done" and k == key] == [["scale0"]]
    assert os.listdir(cache / CHECKPOINTS) == [CACHE_ID]  # the task's states removed once its record was written
    keys = sorted(p.stem for p in reference.glob("*.json"))
    assert keys == sorted(p.stem for p in cache.glob("*.json"))
    for stored in keys:
        a, b = Cache(cache).get(stored), Cache(reference).get(stored)
        assert a.keys() == b.keys()
        for name, value in a.items():
            np.testing.assert_array_equal(value, b[name], err_msg=f"{stored}.{name}")


def test_cli_scheduler_unreachable_exits_2_with_one_line_before_any_work(real_plan, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from nnst_hr.cli import app
    from nnst_hr.experiment import distributed as distributed_module

    monkeypatch.setattr(distributed_module, "CONNECT_TIMEOUT_S", 1.0)
    address = f"tcp://127.0.0.1:{_free_port()}"
    result = CliRunner().invoke(app, ["experiment", str(real_plan), "-o", str(tmp_path / "out"),
                                      "--scheduler", address])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and address in lines[0]
    assert not (tmp_path / "out").exists()


@pytest.fixture
def not_dask():
    """The address of a TCP server that answers every connection with an HTTP error, not Dask's protocol."""
    server = socket.create_server(("127.0.0.1", 0))
    accepted = []

    def serve():
        while True:
            try:
                conn, _ = server.accept()
            except OSError:  # the server was closed
                return
            conn.sendall(b"HTTP/1.0 400 Bad Request\r\n\r\n" * 8)
            accepted.append(conn)

    threading.Thread(target=serve, daemon=True).start()
    yield f"tcp://127.0.0.1:{server.getsockname()[1]}"
    server.close()
    for conn in accepted:
        conn.close()


@pytest.mark.parametrize("kind", ["refused", "malformed", "not dask", "tls unconfigured"])
def test_cli_process_given_a_bad_scheduler_prints_one_line_and_nothing_at_exit(real_plan, tmp_path, not_dask, kind):
    """The real command in its own process, to its exit: Dask's half-started client was closed by
    its __del__ at interpreter exit (a 20 s wait, then a TimeoutError traceback after the error line);
    a server that is not a scheduler was reported as out of memory; tls:// was an internal error."""
    address = {"refused": f"tcp://127.0.0.1:{_free_port()}", "malformed": "nonsense", "not dask": not_dask,
               "tls unconfigured": f"tls://127.0.0.1:{_free_port()}"}[kind]
    setup = "from nnst_hr.experiment import distributed; distributed.CONNECT_TIMEOUT_S = 1.0"
    command = [sys.executable, "-c", f"{setup}; from nnst_hr.cli import app; app()",
               "experiment", str(real_plan), "-o", str(tmp_path / "out"), "--scheduler", address]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"error: cannot reach the Dask scheduler at {address} (")
    assert lines[0].endswith("or fix --scheduler") and "out of memory" not in lines[0]
    assert not (tmp_path / "out").exists()



# --------------------------------------------------------------------------- a call ended: its stages stop


def _hold_nnst_after_scale0(marker: str, dask_worker=None) -> None:
    """On a worker: an NNST stage, once the state of its first scale is saved, writes its Dask key
    to ``marker`` and waits (a minute at most) until the worker lets go of it (its call ended),
    then one stop check period more, so that its next step checks."""
    from distributed.worker import thread_state

    from nnst_hr.experiment.cache import Checkpoints

    save = Checkpoints.save

    def held(self, name, image):
        save(self, name, image)
        if name != "scale0":
            return
        Path(marker).write_text(thread_state.key)
        deadline = time.monotonic() + 60
        while getattr(dask_worker.state.tasks.get(thread_state.key), "state", None) == "executing" \
                and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(plan_progress.STOP_CHECK_S)

    held.original = save
    Checkpoints.save = held


def _release_nnst(dask_worker=None) -> None:
    from nnst_hr.experiment.cache import Checkpoints

    Checkpoints.save = getattr(Checkpoints.save, "original", Checkpoints.save)


def _never_stop(dask_worker=None) -> None:
    """On a worker: no stage ever reads that its call ended (the executor before the stop)."""
    distributed_module._call_ended_before = distributed_module._call_ended
    distributed_module._call_ended = lambda worker, dask_key: (lambda: False)


def _may_stop(dask_worker=None) -> None:
    distributed_module._call_ended = getattr(distributed_module, "_call_ended_before", distributed_module._call_ended)


def _executing(dask_worker=None) -> int:
    return len(dask_worker.state.executing)


def _end_event(client, dask_key: str, deadline_s: float = 60.0) -> dict | None:
    """The "end" event of the task ``dask_key`` (``<key>-<call>.<attempt>``) that its worker sent, once sent."""
    key, call = dask_key.rsplit("-", 1)[0], dask_key.rsplit("-", 1)[1].split(".")[0]
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        for _, event in client.get_events(EVENT_TOPIC):
            if event.get("kind") == "end" and event.get("key") == key and event.get("call") == call:
                return event
        time.sleep(0.1)
    return None


@pytest.mark.parametrize("stop", [True, False])
def test_real_plan_interrupted_inside_nnst_on_the_cluster_stops_it_there_and_resumes_to_the_same_bits(
        two_workers, real_plan, tmp_path, stop):
    """Ctrl-C while a worker runs the plan's NNST, its first scale saved (held there until the worker
    lets go of it): the stage stops at its next step, leaving no worker busy and its state in the
    cache; the plan started again resumes from that state, to an uninterrupted run's bits. The
    negative control (``stop`` false: the workers never read that the call ended, as before) runs
    on to its end for nobody, its record dropped."""
    from nnst_hr.experiment import run_plan

    plan = real_plan.with_name("resume.toml")
    plan.write_text(RESUME_PLAN.format(seed=0))
    address, marker, out = two_workers.scheduler.address, tmp_path / "held", tmp_path / "results"

    def interrupt(event, task, info):  # Ctrl-C once the worker's NNST holds its first scale's state
        if event == "start" and task.stage == "nnst":
            deadline = time.monotonic() + 60
            while not marker.exists() and time.monotonic() < deadline:
                time.sleep(0.02)
            raise KeyboardInterrupt

    two_workers.run(_hold_nnst_after_scale0, str(marker))
    if not stop:
        two_workers.run(_never_stop)
    try:
        with pytest.raises(KeyboardInterrupt):
            run_plan(plan, out, quiet=True, on_event=interrupt, scheduler=address)
        dask_key = marker.read_text()
        key = dask_key.rsplit("-", 1)[0]
        end = _end_event(two_workers, dask_key)
        deadline = time.monotonic() + 30
        while any(two_workers.run(_executing).values()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(two_workers.run(_executing).values())  # no worker busy with the ended call
    finally:
        two_workers.run(_release_nnst)
        two_workers.run(_may_stop)
    states = sorted(os.listdir(out / "cache" / CHECKPOINTS / key))
    assert not Cache(out / "cache").has(key)  # nothing written for a call that has ended
    if not stop:  # the old way: the stage ran its other scale and returned, for nobody
        assert "info" in end and "scale1.npz" in states
        return
    assert end["stopped"] is True and "info" not in end and "failed" not in end
    assert states == ["scale0.npz", "scale0.npz.sha256"]  # stopped in its second scale, the first one's state kept

    events = Recorder()
    run_plan(plan, out, quiet=True, on_event=events, scheduler=address)
    assert [info.get("resumed") for e, k, info in events.events if e == "done" and k == key] == [["scale0"]]
    assert os.listdir(out / "cache" / CHECKPOINTS) == [CACHE_ID]
    run_plan(plan, tmp_path / "reference", quiet=True)  # uninterrupted, in this process
    reference = tmp_path / "reference" / "cache"
    keys = sorted(p.stem for p in reference.glob("*.json"))
    assert keys == sorted(p.stem for p in (out / "cache").glob("*.json"))
    for stored in keys:
        a, b = Cache(out / "cache").get(stored), Cache(reference).get(stored)
        assert a.keys() == b.keys()
        for name, value in a.items():
            np.testing.assert_array_equal(value, b[name], err_msg=f"{stored}.{name}")


def _stop_first_attempts(dask_worker=None) -> None:
    """On a worker: every task's first attempt reads that its call ended (a worker letting go of a
    task its call still wants: never seen, handled all the same)."""
    distributed_module._call_ended_before = distributed_module._call_ended
    distributed_module._call_ended = lambda worker, dask_key: (lambda: dask_key.endswith(".1"))


def test_a_task_stopped_while_its_call_still_wants_it_is_submitted_again(two_workers, tmp_path):
    graph = not_stored(make_graph(tmp_path / "log", CONTENTS, STYLE))
    expected = execute(graph, Cache(tmp_path / "in-process"))
    (tmp_path / "log").unlink()
    two_workers.run(_stop_first_attempts)
    try:
        events = Recorder()
        results = execute_dask(graph, Cache(tmp_path / "results"), client=two_workers, on_event=events)
    finally:
        two_workers.run(_may_stop)
    assert sorted(events.keys("done")) == sorted(graph) and not events.keys("failed")  # each once
    stopped = {event["key"] for _, event in two_workers.get_events(EVENT_TOPIC) if event.get("stopped")}
    assert stopped >= set(graph)  # every task's first attempt said it stopped
    log = executions(tmp_path / "log")
    for task in graph.values():  # a first attempt ran nothing (the inputs are decoded by each reader too)
        assert log.count(tag_of(task)) == 1 or task.stage == "inputs"
    for key in graph:
        for name, value in expected[key].items():
            np.testing.assert_array_equal(results[key][name], value)
