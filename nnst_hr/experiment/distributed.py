"""Run an experiment's task graph on a Dask cluster (``dask.distributed``), same contract as ``execute``.

:func:`execute_dask` submits each task of the graph that the cache does not hold as one Dask task
under a Dask key of this call's own (``<key>-<call>.<attempt>``), upstream futures standing in for
:class:`~.graph.TaskRef` arguments: no task of another call (an interrupted one's that the scheduler
still holds, another client's) is taken for it, as Dask takes the first task given a key with the
data that one reads, and warns of deadlocks where they differ. Workers need no shared filesystem:
input bytes are scattered once per unique content (Dask key ``bytes-<sha256>-<call>``), and a
cached record that a submitted task reads is read from the cache and scattered as data
(``cached-<key>-<call>``), one at a time. Every stored record comes back to
the client, which alone writes the cache, as each future completes, and is let go once written.
A not-stored task reading only data (``Task.store`` false: the inputs stage, decoding the
images) is computed inside each task that reads it, on that task's worker (an :class:`_Inline`
argument, outside the reader's figures), and its bytes are scattered to every worker: its
readers depend on nothing that lies on one worker, so the scheduler places them by load (a
pair's NNST runs start on every free worker at once) and no decoded record is held on a worker
between tasks nor moved between them. The task itself still runs once, first (Dask priority),
to report its figures or its bad-input failure as a worker event; its record is dropped there.
The client keeps a future, and scattered data, only while a task that reads it has no outcome
yet; dropping it lets the scheduler free it. So the client's memory does not grow with the
plan, nor does the cluster's with the tasks already done. Records tell Dask their size
(``_Output.__sizeof__``), for its transfer estimates and its memory manager.
A plan run in this process and then on a cluster (or the other way round) reuses everything:
the cache keys are the same.

Faults:

- A stage raising a bad-input error (:func:`~.execute.input_errors`) fails its key and every key
  downstream, as in process; the other runs go on. The error is caught on the worker and returned
  as a value, so Dask only ever sees the tasks of bugs fail (those propagate).
- A lost worker: Dask reruns what it was computing elsewhere. A task that kills
  ``distributed.scheduler.allowed-failures`` + 1 workers in a row (out of memory, usually) fails
  its runs with a message instead of the plan. Scattered data lost with a worker cannot be recomputed
  by Dask; the tasks that needed it come back cancelled and are resubmitted with the data
  scattered again (a stored upstream from the cache; the inputs' bytes, on every worker, are lost
  only with all of them).
- A task that takes ``checkpoints=`` (NNST) keeps its per-scale states in the cache folder
  (:meth:`~.cache.Cache.checkpoints`) where its worker sees that folder (a local cluster, or a
  shared filesystem mounted at the same path: told by the cache's random id, :data:`~.cache.CACHE_ID`);
  a worker that does not see it keeps none. A task run again (after a lost worker, or in a plan
  started again) resumes at the scale it was in; the client removes the states once it has
  written the record. The workers write only there; the client still alone writes the records.
- A call that ends before its tasks do (Ctrl-C, SIGTERM, an exception, its client gone) releases
  what it submitted: the scheduler drops it at once and tells the workers to let go of what they
  run of it. A stage running on a worker stops at its next step: its reporter (given to every
  stage that takes a ``progress=``, reports sent or not) reads, at most every
  :data:`~.progress.STOP_CHECK_S` seconds, whether the worker still runs the task for anyone (its
  state in the worker's own task table: no message, and a client killed without a word counts, as
  the scheduler lets go of a lost client's tasks), and raises :class:`~.progress.StageStopped`,
  which :func:`run_task` returns as a :class:`_Stopped` (no failure, no retry, no record; Dask
  drops it). The states its scales saved stay in the cache; the plan started again resumes from
  them, and from the stages already written, on workers that are free at once. A stage without
  steps (color, scores) runs to its end, its record dropped.

Progress: ``on_event`` gets ``"start"`` when a worker starts a task (a worker event relayed by the
scheduler; with the worker's address ``worker`` and name ``worker_name``), ``"done"`` with
``seconds``, ``peak_memory``, ``peak_gpu_memory`` (measured on the worker) and ``worker``,
``"cached"`` and ``"failed"`` as :func:`~.execute.execute` sends them, each task's after its
upstream's outcome. A task rerun after a lost worker sends ``"start"`` again. Worker events carry
their call's token: a call takes only its own (not those of an interrupted call's stage still
running, nor another client's, whose keys may be the same). The steps inside a
stage come the same way: with ``progress`` given, a stage that takes a ``progress=`` reporter gets
a :class:`~.progress.RelayProgress` on the worker, which sends a report of a few scalars (fraction
done, the step, time left) on :data:`STEP_TOPIC` at most every 2 s and at each part's last step;
the client hands each to the reporter that ``progress(task)`` returned as the task started
(:meth:`~.progress.StageProgress.relayed`). A report that cannot be sent is dropped: it never
fails the task, nor does it change a key or a record (the reporter is no task argument). Without
``progress`` the stage gets one that sends nothing: it only stops the stage (see Faults).

Starting a cluster by hand (one scheduler, any number of workers, no shared filesystem)::

    dask scheduler --port 8786                                      # on the scheduler host
    dask worker tcp://HOST:8786 --nthreads 1 --resources GPU=1      # one per GPU (CUDA_VISIBLE_DEVICES=i)
    dask worker tcp://HOST:8786 --nthreads 1 --nworkers 4           # CPU workers (posters, scores)
    nnst-hr experiment plan.toml -o results/ --scheduler tcp://HOST:8786

Every worker needs ``nnst-hr`` installed (the stage functions travel by reference) and the VGG16
weights in its cache. NNST tasks of a plan with ``device = "cuda"`` ask for one ``GPU`` resource,
so a GPU worker runs one NNST at a time.

Examples
--------
>>> from distributed import Client
>>> with local_cluster(2) as cluster, Client(cluster) as client:      # doctest: +SKIP
...     results = execute_dask(graph, Cache("results/cache"), client=client)
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import queue
import signal
import socket
import sys
import threading
import time
import uuid
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import CancelledError
from contextlib import contextmanager
from dataclasses import dataclass
from typing import NamedTuple

from ..errors import InputError
from ..logs import PACKAGES
from ..memory import release_freed_memory
from .cache import Cache
from .execute import (
    Failure,
    PeakMemory,
    Results,
    execute,
    input_errors,
    needed,
    resumed_info,
    takes_checkpoints,
    takes_progress,
)
from .graph import Graph, TaskRef
from .progress import StageStopped

CONNECT_TIMEOUT_S = 10.0  # how long to try an existing scheduler before giving up (exit 2)
CLOSE_TIMEOUT_S = 5.0  # how long to close a client that failed to connect (it holds no work)
WORKER_WAIT_S = 30.0  # how long to wait for a first worker on an existing cluster
POLL_S = 0.05  # main loop period: finished futures and worker events are handled at this rate
MAX_RESUBMITS = 3  # resubmissions of one task after its scattered data was lost with workers
EVENT_TOPIC = "nnst-hr-task"  # worker event topic: a task started, a task ended (its figures or failure)
STEP_TOPIC = "nnst-hr-step"  # worker event topic: a stage's progress report (RelayProgress)
MAX_WAITING_REPORTS = 8  # reports kept for a task whose "start" is not reported yet (the latest ones)
END_EVENT_WAIT_S = 10.0  # how long a finished not-stored task waits for its "end" event before it is done without
INSTALL_HINT = "install the Dask extra: pip install 'nnst-hr[dask]'"


# --------------------------------------------------------------------------- on the worker


@dataclass(frozen=True)
class _Output:
    """What a task returns on the cluster: its record and how it was computed."""

    record: dict
    info: dict

    def __sizeof__(self) -> int:
        # what Dask's ``sizeof`` (``sys.getsizeof`` for an unknown type) sees: the record's arrays,
        # not 56 bytes, so the scheduler weighs moving it and a worker's memory manager counts it
        return object.__sizeof__(self) + sum(_nbytes(value) for value in self.record.values())


def _nbytes(value) -> int:
    return int(value.nbytes) if hasattr(value, "nbytes") else sys.getsizeof(value)


@dataclass(frozen=True)
class _Failed:
    """A bad-input failure returned as a value (and passed on by every task downstream)."""

    message: str
    stage: str
    key: str = ""  # the task that raised it


class _Inline(NamedTuple):
    """A not-stored upstream task computed inside the task that reads it, on its worker.

    A NamedTuple: Dask replaces the futures among ``args`` (scattered bytes) by their values.
    """

    func: Callable
    key: str
    stage: str
    args: tuple


def _unwrap(value):
    """Replace upstream :class:`_Output` values (top level or inside lists/tuples/dicts) by records."""
    if isinstance(value, _Output):
        return value.record
    if type(value) in (list, tuple):
        return type(value)(_unwrap(item) for item in value)
    if type(value) is dict:
        return {name: _unwrap(item) for name, item in value.items()}
    return value


def _upstream_failure(value) -> _Failed | _Stopped | None:
    """The first :class:`_Failed` or :class:`_Stopped` upstream value among ``value``, else None."""
    if isinstance(value, (_Failed, _Stopped)):
        return value
    items = value.values() if type(value) is dict else value if type(value) in (list, tuple) else ()
    return next((failed for item in items if (failed := _upstream_failure(item)) is not None), None)


def _message(exc: BaseException) -> str:
    """A bad-input error as the in-process executor words it."""
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


@dataclass(frozen=True)
class _Stopped:
    """A stage stopped on its worker because its call no longer wanted it (its readers stop too, unrun)."""

    key: str


def _computed(value):
    """``value`` with each :class:`_Inline` replaced by its record, or by a :class:`_Failed`
    naming it where it raised a bad-input error."""
    if isinstance(value, _Inline):
        try:
            return value.func(*_computed(value.args))
        except input_errors() as exc:
            return _Failed(_message(exc), value.stage, value.key)
    if type(value) in (list, tuple):
        return type(value)(_computed(item) for item in value)
    if type(value) is dict:
        return {name: _computed(item) for name, item in value.items()}
    return value


def run_task(func: Callable, key: str, stage: str, *args, relay: bool = False, keep: bool = True,
             call: str = "", checkpoints=None, dask_key: str = "") -> _Output | _Failed | _Stopped:
    """Run one stage on a worker: announce it, time it, turn a bad-input error into a value, stop
    it when its call has ended.

    An upstream :class:`_Failed` among ``args`` is returned as is (the stage is not run), so a
    failure reaches every task downstream of it with the stage that failed; an upstream
    :class:`_Stopped` stops this task too, unrun. An :class:`_Inline`
    among ``args`` (a not-stored upstream: the inputs) is computed here first, outside the
    stage's figures (as in process, where it was computed before); its bad-input error is such
    an upstream failure. The outcome (the info or the failure, not the record) is also sent as
    an ``"end"`` event: the client learns it for a task whose record it never gathers
    (``store=False``). A stage that takes a ``progress=`` reporter gets a
    :class:`~.progress.RelayProgress` (not a task argument: the record does not depend on it),
    which sends its steps on :data:`STEP_TOPIC` where ``relay`` is true, and raises
    :class:`~.progress.StageStopped` at a step once this worker no longer runs ``dask_key`` (the
    task's Dask key) for any client (:func:`_call_ended`): the stage stops there and a
    :class:`_Stopped` is returned (and an ``"end"`` event with ``stopped``), as it is without
    running the stage when the call ended before it began. ``keep`` false: the record is let go
    once computed (a not-stored task whose readers compute it themselves), only the info returns.
    ``call``: the submitting call's token, sent in each event (a client takes only its call's).
    ``checkpoints``: the task's store of per-scale states (:class:`~.cache.Checkpoints`), given to
    the stage where this worker sees the client's cache folder (:meth:`~.cache.Checkpoints.reachable`;
    else the stage runs without: no resume, nothing written); not a task argument either.
    """
    worker = _current_worker()
    ended = _call_ended(worker, dask_key)
    if ended():  # its call ended while it waited for a worker: not even its inputs are decoded
        return _stopped(worker, call, key)
    with _messages_to_client(worker, call, key):
        return _run_stage(worker, func, key, stage, args, relay, keep, call, checkpoints, ended)


def _run_stage(worker, func, key, stage, args, relay, keep, call, checkpoints, ended) -> _Output | _Failed | _Stopped:
    """:func:`run_task` from its upstream on: decode the inlined inputs, run the stage, say how it ended."""
    failed = _upstream_failure(args)
    if failed is None:
        args = _computed(args)
        failed = _upstream_failure(args)
    if isinstance(failed, _Stopped) or ended():
        return _stopped(worker, call, key)
    if failed is not None:
        _log(worker, call, {"kind": "end", "key": key, "failed": [failed.message, failed.stage, failed.key]})
        return failed
    _log(worker, call, {"kind": "start", "key": key, "worker": worker.address if worker else "",
                  "worker_name": str(worker.name) if worker else "", "pid": os.getpid()})
    kwargs = {"progress": _relay(worker, key, stage, call, relay, ended)} if worker is not None and takes_progress(
        func) else {}
    if checkpoints is not None and not checkpoints.reachable():
        checkpoints = None
    if checkpoints is not None:
        kwargs["checkpoints"] = checkpoints
    release_freed_memory()  # the stage's peak starts from what is live, not what the last one freed
    start = time.perf_counter()
    try:
        with PeakMemory() as memory:
            record = func(*_unwrap(args), **kwargs)
    except input_errors() as exc:
        failed = _Failed(_message(exc), stage, key)
        _log(worker, call, {"kind": "end", "key": key, "failed": [failed.message, failed.stage, failed.key]})
        return failed
    except StageStopped:
        return _stopped(worker, call, key)
    info = {"seconds": time.perf_counter() - start, "peak_memory": int(memory.peak), "peak_gpu_memory": memory.gpu_peak,
            "worker": worker.address if worker is not None else socket.gethostname(), **resumed_info(checkpoints)}
    _log(worker, call, {"kind": "end", "key": key, "info": info})
    return _Output(record if keep else {}, info)


_task_messages = threading.local()  # .send(level, text) while this thread runs a task: to the client


@contextmanager
def _messages_to_client(worker, call: str, key: str) -> Iterator[None]:
    """While a task runs on this thread, send its warnings and the packages' log messages (info and
    up) to the client as ``"message"`` events, which prints them as it prints its own: on a worker
    they went to the worker's stderr, Python's warnings with their source line and the info lines
    (colours converted, color post-processing skipped) nowhere, and on a cluster of one's own never
    reached the user at all."""
    if worker is None:
        yield
        return
    _install_message_hooks()
    _task_messages.send = lambda level, text: _log(worker, call, {"kind": "message", "key": key, "level": level,
                                                                  "text": text})
    try:
        yield
    finally:
        _task_messages.send = None


class _ToClient(logging.Handler):
    """Sends the packages' records of a running task to its client; others at warning and up go
    to stderr, as Python's last-resort handler (which this handler replaces) printed them."""

    def emit(self, record: logging.LogRecord) -> None:
        send = getattr(_task_messages, "send", None)
        if send is not None and record.name != __name__:  # not _log's own "not sent": it would loop
            send(record.levelname.lower(), record.getMessage())
        elif record.levelno >= logging.WARNING:
            print(record.getMessage(), file=sys.stderr)


def _install_message_hooks() -> None:
    """Once per worker process: :class:`_ToClient` on the packages' loggers (at info: their own
    level is unset, so the root's warning dropped info), and a ``warnings.showwarning`` that sends
    a task's warnings to its client (once per message and place, Python's default filter)."""
    if getattr(_install_message_hooks, "done", False):
        return
    for name in PACKAGES:
        package = logging.getLogger(name)
        if package.level == logging.NOTSET:
            package.setLevel(logging.INFO)
        package.addHandler(_ToClient(logging.INFO))
    shown = warnings.showwarning

    def showwarning(message, category, filename, lineno, file=None, line=None):
        send = getattr(_task_messages, "send", None)
        if send is None:
            return shown(message, category, filename, lineno, file, line)
        send("warning", str(message))

    warnings.showwarning = showwarning
    _install_message_hooks.done = True


def _show_message(event: dict) -> None:
    """A worker's message (:func:`_messages_to_client`) printed here as this process prints its own:
    a warning through ``warnings`` (the command line's ``warning:`` line, each text once), a log
    record through this module's logger (the command line's ``info:`` line, once)."""
    text, level = str(event.get("text", "")), str(event.get("level", "warning"))
    if level == "warning":
        warnings.warn(text, UserWarning, stacklevel=1)
    else:
        number = logging.getLevelName(level.upper())
        logging.getLogger(__name__).log(number if isinstance(number, int) else logging.INFO, "%s", text)


def _log(worker, call: str, event: dict) -> None:
    """Send a task event of ``call`` to the client; one that cannot be sent is lost, never the task
    (the client settles a not-stored task whose "end" did not come after :data:`END_EVENT_WAIT_S`)."""
    if worker is None:
        return
    try:
        worker.log_event(EVENT_TOPIC, {**event, "call": call})
    except Exception as exc:  # a lost event only costs the client its figures
        logging.getLogger(__name__).warning("task event of %s not sent: %s", event.get("key"), exc)


def _stopped(worker, call: str, key: str) -> _Stopped:
    """``key`` stopped for its ended call: said in an ``"end"`` event (nobody may read it: a trace)."""
    _log(worker, call, {"kind": "end", "key": key, "stopped": True})
    return _Stopped(key)


def _relay(worker, key: str, stage: str, call: str = "", send: bool = True, stopped: Callable | None = None):
    """The reporter of a stage's steps on ``worker``: reports go to :data:`STEP_TOPIC` under ``key``
    and ``call`` (none with ``send`` false); it stops the stage once ``stopped()`` says so."""
    from .progress import RelayProgress

    return RelayProgress(stage, (lambda report: worker.log_event(STEP_TOPIC, {"key": key, "call": call, **report}))
                         if send else None, stopped=stopped)


def _call_ended(worker, dask_key: str) -> Callable[[], bool]:
    """``ended()``: whether ``worker`` no longer runs the task ``dask_key`` for any client.

    The scheduler tells a worker to let go of a task that no client wants any more (its futures
    released, or its client lost: closed, killed, its connection gone); one running then stays
    in the worker's task table as ``"cancelled"`` until it returns, its result dropped. Read in
    the worker's own table (a dict look-up, no message): cheap enough for every step. Always
    false off a worker, or without a key (a test calling :func:`run_task` directly).
    """
    if worker is None or not dask_key:
        return lambda: False
    tasks = worker.state.tasks

    def ended() -> bool:
        state = tasks.get(dask_key)
        return state is None or state.state in ("cancelled", "released", "forgotten")

    return ended


def _current_worker():
    from distributed import get_worker

    try:
        return get_worker()
    except ValueError:  # not on a worker (a test calling run_task directly)
        return None


# --------------------------------------------------------------------------- on the client


def _data_key(value: bytes) -> str:
    return f"bytes-{hashlib.sha256(value).hexdigest()[:32]}"


class _DaskRun:
    """The state of one :func:`execute_dask` call (see there)."""

    def __init__(self, graph: Graph, cache: Cache, client, on_event: Callable | None, progress: Callable | None):
        from distributed import as_completed

        self.graph, self.cache, self.client = graph, cache, client
        self.emit = on_event or (lambda *args: None)
        self.progress = progress
        self.reporters: dict = {}  # key -> the reporter progress(task) gave as the task started (or None)
        self.waiting_reports: dict[str, list[dict]] = {}  # key -> reports that came before its "start"
        self.failures: dict[str, Failure] = {}
        self.settled: set[str] = set()  # cached, done or failed, and reported
        self.stored: set[str] = set()  # keys whose record the cache holds (cached or written here)
        self.remaining: Counter = Counter()  # readers of each key among the tasks run, not yet settled
        self.futures: dict = {}  # task key -> its latest Future, kept while a reader is not settled
        self.task_of: dict[str, str] = {}  # Dask key -> task key
        self.attempts: Counter = Counter()  # submissions of each key (each takes a new Dask key)
        self.data: dict = {}  # data key -> Future of scattered bytes or cached record
        self.data_readers: dict[str, set[str]] = {}  # data key -> tasks not settled that read it
        self.token, self.scatters = uuid.uuid4().hex[:8], 0
        self.resubmits: dict[str, int] = {}
        self.done: set[str] = set()  # keys whose "done" was sent (a rerun is not reported twice)
        self.events: queue.Queue = queue.Queue()  # worker events, from the client's thread
        self.ends: dict[str, dict] = {}  # key -> its "end" event (the outcome of a not-stored task)
        self.finished: dict[str, float] = {}  # not-stored key -> when its future finished (monotonic)
        self.outcomes: dict[str, tuple] = {}  # key -> outcome waiting for its upstream to be settled
        self.lost: set[str] = set()  # keys that came back cancelled (their scattered data was lost)
        self.deferred: list[dict] = []  # start events waiting for their upstream's outcome
        self.order = {key: i for i, key in enumerate(graph)}
        self.pending = as_completed(loop=client.loop)
        # not-stored tasks reading only data (the inputs): each reader computes them where it
        # runs (an _Inline argument), so no reader waits on the worker holding them
        self.inlined = {key for key, task in graph.items() if not task.store and not _refs(task.args)}
        self.broadcast: set[str] = set()  # data keys an inlined task reads: scattered to every worker

    # ---- submission
    def _live(self, key: str) -> bool:
        future = self.futures.get(key)
        return future is not None and future.status in ("pending", "finished")

    def _expand(self, keys: list[str]) -> tuple[list[str], set[str]]:
        """``keys`` plus the upstream tasks they need run again, in graph order, and the stored
        upstream keys whose records go to the cluster as data (read from the cache).

        An upstream with a live future is read from it; a stored one from the cache; an inlined
        one is computed by the reader; another not-stored one without a live future (lost with
        a worker) is run again.
        """
        chosen: set[str] = set()
        as_data: set[str] = set()

        def visit(key: str) -> None:
            chosen.add(key)
            for ref in set(_refs(self.graph[key].args)):
                if ref in chosen or ref in as_data or ref in self.failures or ref in self.inlined or self._live(ref):
                    continue
                if ref in self.stored:
                    as_data.add(ref)
                else:
                    visit(ref)

        for key in keys:
            if key not in chosen:
                visit(key)
        return sorted(chosen, key=self.order.__getitem__), as_data

    def _payload(self, key: str, value, as_data: set[str], wanted: dict, inline: bool = False):
        """``value`` with its bytes and cached records replaced by data keys, and the TaskRefs
        to an inlined task by an :class:`_Inline` of its arguments; the bytes are collected in
        ``wanted``, those an inlined task reads (``inline``) also in :attr:`broadcast`."""
        if isinstance(value, (bytes, bytearray)):
            data_key = _data_key(bytes(value))
            wanted[data_key] = bytes(value)
            if inline:
                self.broadcast.add(data_key)
        elif isinstance(value, TaskRef):
            if value.key in self.inlined:
                task = self.graph[value.key]
                return _Inline(task.func, task.key, task.stage, self._payload(key, task.args, as_data, wanted, True))
            if value.key not in as_data:
                return value
            data_key = f"cached-{value.key}"
        elif type(value) in (list, tuple):
            return type(value)(self._payload(key, item, as_data, wanted, inline) for item in value)
        elif type(value) is dict:
            return {name: self._payload(key, item, as_data, wanted, inline) for name, item in value.items()}
        else:
            return value
        self.data_readers.setdefault(data_key, set()).add(key)
        return _DataKey(data_key)

    def _scatter(self, data: dict) -> None:
        """Scatter ``{data key: value}`` under Dask keys unique to this call and attempt (a key
        released a moment ago by an earlier call, or lost, can still be forgotten by the
        scheduler after it is scattered again). The data an inlined task reads goes to every
        worker: its readers are placed as if they read nothing (by the workers' load, not by
        where one copy lies)."""
        for broadcast in (False, True):
            part = {k: v for k, v in data.items() if (k in self.broadcast) == broadcast}
            if not part:
                continue
            self.scatters += 1
            names = {f"{k}-{self.token}.{self.scatters}": k for k in part}
            scattered = self.client.scatter({name: part[k] for name, k in names.items()}, hash=False,
                                            broadcast=broadcast)
            self.data.update({names[name]: future for name, future in scattered.items()})

    def _scattered(self, data_key: str) -> bool:
        return data_key in self.data and self.data[data_key].status == "finished"

    def _futures_for(self, value):
        if isinstance(value, _DataKey):
            return self.data[value.key]
        if isinstance(value, _Inline):
            return value._replace(args=self._futures_for(value.args))
        if isinstance(value, TaskRef):
            return self.futures[value.key]
        if type(value) in (list, tuple):
            return type(value)(self._futures_for(item) for item in value)
        if type(value) is dict:
            return {name: self._futures_for(item) for name, item in value.items()}
        return value

    def submit(self, keys: list[str]) -> None:
        """Scatter what ``keys`` need (once per data key) and submit them, upstream first (the
        inlined tasks before all: see :attr:`inlined`).

        A key downstream of a failure already known (a resubmission) fails without running.
        Cached records go one at a time (read, scattered, let go): the client never holds more
        than one.
        """
        keys, as_data = self._expand([key for key in keys if not self._fails_upstream(key)])
        wanted: dict = {}
        payloads = {key: self._payload(key, self.graph[key].args, as_data, wanted, key in self.inlined) for key in keys}
        missing = {k: v for k, v in wanted.items() if not self._scattered(k)}
        if missing:
            self._scatter(missing)
        for ref in sorted(as_data, key=self.order.__getitem__):
            if self._scattered(f"cached-{ref}"):
                continue
            record = self.cache.get(ref)
            if record is None:  # its entry went bad since it was checked: computed again
                self.stored.discard(ref)
                self.submit(keys)
                return
            self._scatter({f"cached-{ref}": record})
        # the inlined tasks first, and before any other on a worker (priority): they check the
        # inputs and report their figures, which their readers' events wait for
        for key in sorted(keys, key=lambda k: k not in self.inlined):
            task = self.graph[key]
            self.attempts[key] += 1
            # a Dask key of this call and attempt: a resubmission's is new (the client keeps the
            # cancelled one's state a while), and so is a later call's (see the module docstring)
            dask_key = f"{key}-{self.token}.{self.attempts[key]}"
            relay = self.progress is not None and takes_progress(task.func)  # else its reporter only stops it
            store = self.cache.checkpoints(key, shared=True) if takes_checkpoints(task.func) else None
            future = self.client.submit(run_task, task.func, key, task.stage, *self._futures_for(payloads[key]),
                                        key=dask_key, resources=task.resources or None, pure=False, relay=relay,
                                        keep=key not in self.inlined, priority=int(key in self.inlined),
                                        call=self.token, checkpoints=store, dask_key=dask_key)
            self.futures[key] = future
            self.task_of[dask_key] = key
            self.finished.pop(key, None)
            self.pending.add(future)

    def _fails_upstream(self, key: str) -> bool:
        task = self.graph[key]
        failed = next((self.failures[ref] for ref in _refs(task.args) if ref in self.failures), None)
        if failed is not None:
            self._settle(key, ("failed", failed, True))
        return failed is not None

    # ---- completion
    def handle(self, future) -> None:
        key = self.task_of[future.key]
        if self.futures.get(key) is not future:
            return  # a future replaced by a resubmission
        if (key in self.settled or key in self.outcomes) and future.status != "cancelled":
            return  # a not-stored task run again for a lost reader: its outcome is known
        if future.status not in ("finished", "error", "cancelled"):
            # done, then lost before it was handled (its worker left, or gathering it failed and it
            # is computed again): it comes back when it is done again
            self.pending.add(future)
            return
        task = self.graph[key]
        if future.status == "finished" and not task.store:
            # its record stays on the cluster for its readers (an inlined one's is not even kept:
            # they compute it themselves); its outcome comes as an "end" event
            self.finished[key] = time.monotonic()
        elif future.status == "finished":
            try:
                output = future.result()
            except CancelledError:  # lost with a worker (and its scattered inputs) before it came back
                self._lost(key)
                return
            if isinstance(output, _Failed):
                self._failed(key, output)
            elif isinstance(output, _Stopped):  # its worker let go of it while this call still wanted it
                self._lost(key)
                return
            else:  # written when reported (a not-stored upstream may not have reported yet)
                self.outcomes[key] = ("done", output.info, output.record)
        elif future.status == "error":
            self._handle_error(future, task)
        elif future.status == "cancelled":
            self._lost(key)
        self.flush_outcomes()

    def _failed(self, key: str, failed: _Failed) -> None:
        """``key`` came back failed; the task that raised it (a not-stored one may not have
        reported yet) fails first."""
        failure = Failure(failed.message, failed.stage)
        origin = failed.key if failed.key in self.graph else key
        if origin != key and origin not in self.settled:
            self.outcomes[origin] = ("failed", failure, False)
        self.outcomes[key] = ("failed", failure, origin != key or failed.stage != self.graph[key].stage)

    def _lost(self, key: str) -> None:
        self.resubmits[key] = self.resubmits.get(key, 0) + 1
        if self.resubmits[key] > MAX_RESUBMITS:
            raise RuntimeError(f"task {key} lost its data with a worker {MAX_RESUBMITS} times; "
                               "check the cluster's workers (memory, network)")
        self.lost.add(key)

    def _handle_error(self, future, task) -> None:
        from distributed.scheduler import KilledWorker

        exc = future.exception()
        if not isinstance(exc, KilledWorker):
            raise exc
        # the task that killed the workers (its dependents come back with the same exception)
        origin = self.graph.get(self.task_of.get(exc.task, exc.task), task)
        message = (f"the {origin.stage} stage killed {exc.allowed_failures + 1} worker(s) in a row (out of memory?):"
                   " use a smaller size or workers with more memory")
        self.outcomes[task.key] = ("failed", Failure(message, origin.stage), origin is not task)

    def take_ends(self) -> None:
        """The outcomes of finished not-stored tasks whose "end" event came (or never will)."""
        now = time.monotonic()
        for key, since in list(self.finished.items()):
            if key in self.settled or key in self.outcomes:
                del self.finished[key]
                continue
            if key not in self.ends and now - since < END_EVENT_WAIT_S:
                continue
            del self.finished[key]
            event = self.ends.pop(key, None)
            if event is not None and event.get("stopped"):  # as a stored task's _Stopped (see handle)
                self._lost(key)
            elif event is not None and "failed" in event:
                self._failed(key, _Failed(*event["failed"]))
            else:  # an event lost with the scheduler's or client's connection: no figures
                self.outcomes[key] = ("done", (event or {}).get("info") or {"seconds": 0.0, "peak_memory": 0})

    def flush_outcomes(self) -> None:
        """Report and settle the outcomes whose upstream is settled, upstream first (each after
        its "start")."""
        for key in sorted(self.outcomes, key=self.order.__getitem__):
            if all(ref in self.settled for ref in _refs(self.graph[key].args)):
                self.flush_starts()
                self._settle(key, self.outcomes.pop(key))

    def _settle(self, key: str, outcome: tuple) -> None:
        """Report ``key``'s outcome and let go of what only it still needed (futures, scattered data)."""
        if key in self.settled:
            return
        task = self.graph[key]
        if outcome[0] == "done":
            if len(outcome) > 2:  # a stored task's record: to the cache, and let go
                self.cache.put(key, outcome[2], meta=outcome[1])
                self.stored.add(key)
                if takes_checkpoints(task.func):
                    self.cache.drop_checkpoints(key)  # written by the worker, where it sees the cache
            if key not in self.done:
                self.done.add(key)
                self.emit("done", task, dict(outcome[1]))
        else:
            _, failure, upstream = outcome
            self.failures[key] = failure
            self.emit("failed", task, {"message": failure.message, "stage": failure.stage, "upstream": upstream})
        self.settled.add(key)
        self.reporters.pop(key, None)
        self.waiting_reports.pop(key, None)
        for ref in set(_refs(task.args)):
            self.remaining[ref] -= 1
            if self.remaining[ref] <= 0 and ref in self.settled:
                self.futures.pop(ref, None)
        if self.remaining[key] <= 0 or key in self.failures:
            self.futures.pop(key, None)
        for data_key in [k for k, readers in self.data_readers.items() if key in readers]:
            self.data_readers[data_key].discard(key)
            if not self.data_readers[data_key]:
                del self.data_readers[data_key]
                self.data.pop(data_key, None)

    def recover(self) -> None:
        """Resubmit the tasks that came back cancelled (their data was lost), with what they need."""
        lost, self.lost = self.lost, set()
        # a task waiting on a lost one is cancelled too but may not have come back yet
        again = [key for key in self.graph if key not in self.settled and key not in self.outcomes
                 and (key in lost or (key in self.futures and self.futures[key].status == "cancelled"))]
        for key in again:
            self.futures.pop(key, None)
        self.submit(again)

    def collect_events(self) -> None:
        """Take the worker events the client's thread received."""
        while True:
            try:
                event = self.events.get_nowait()
            except queue.Empty:
                return
            if event.get("call") != self.token:
                continue  # another call's: an interrupted one's stage still running, another client's
            if event.get("kind") == "end":
                task = self.graph.get(event.get("key"))
                if task is not None and not task.store:  # a stored task's outcome comes with its record
                    self.ends[task.key] = event
            elif event.get("kind") == "step":
                self._report(event)
            elif event.get("kind") == "message":
                _show_message(event)
            else:
                self.deferred.append(event)

    def _report(self, event: dict) -> None:
        """Hand a stage's progress report to its reporter; keep it while its "start" is not reported."""
        key = event.get("key")
        if key not in self.graph or key in self.settled:
            return  # late (the task has its outcome), or another client's
        report = {name: value for name, value in event.items() if name not in ("key", "kind", "call")}
        if key in self.reporters:
            if self.reporters[key] is not None:
                self.reporters[key].relayed(report)
            return
        waiting = self.waiting_reports.setdefault(key, [])
        waiting.append(report)
        del waiting[:-MAX_WAITING_REPORTS]

    def flush_starts(self) -> None:
        """Send "start" for the events whose upstream is settled (the order a reader expects)."""
        waiting = []
        for event in self.deferred:
            key = event.get("key")
            if key not in self.futures or key in self.settled:
                continue  # reported, or failed or resubmitted meanwhile
            if any(ref not in self.settled for ref in _refs(self.graph[key].args)):
                waiting.append(event)
                continue
            task = self.graph[key]
            # as in process: the task's reporter, then its "start" (a rerun gets a new one)
            self.reporters[key] = self.progress(task) if self.progress is not None else None
            self.emit("start", task, {k: v for k, v in event.items() if k not in ("key", "kind", "call")})
            for report in self.waiting_reports.pop(key, []):
                self._report({"key": key, **report})
        self.deferred = waiting

    def busy(self) -> bool:
        return not self.pending.is_empty() or bool(self.finished) or bool(self.outcomes)

    def step(self) -> bool:
        """Handle the futures finished and the events come since the last step -> whether any future was.

        A method of its own: no future outlives it in a local variable (a future the client
        still references keeps its data on the cluster).
        """
        batch = self.pending.next_batch(block=False)
        self.collect_events()
        for future in sorted(batch, key=lambda f: self.order[self.task_of[f.key]]):  # upstream first
            self.handle(future)
        self.take_ends()
        self.flush_outcomes()
        self.flush_starts()
        if self.lost:
            self.recover()
        return bool(batch)

    # ---- the whole call
    def run(self) -> Results:
        for key, task in self.graph.items():
            if task.store and self.cache.valid(key):  # checked, not loaded: loaded only for a reader
                self.stored.add(key)
                self.settled.add(key)
                self.emit("cached", task, dict(self.cache.meta(key)))
        todo = [task.key for task in needed(self.graph, self.cache, present=self.stored.__contains__)]
        if not todo:
            return Results(self.graph, self.cache, self.failures)
        self.remaining = Counter(ref for key in todo for ref in set(_refs(self.graph[key].args))
                                 if ref not in self.inlined)  # an inlined task's future is read by none
        self._check_resources(todo)
        self.client.subscribe_topic(EVENT_TOPIC, lambda event: self.events.put(event[1]))
        if self.progress is not None:
            self.client.subscribe_topic(STEP_TOPIC, lambda event: self.events.put({**event[1], "kind": "step"}))
        try:
            self.submit(todo)
            while self.busy():
                if not self.step():
                    time.sleep(POLL_S)
        finally:
            self.client.unsubscribe_topic(EVENT_TOPIC)
            if self.progress is not None:
                self.client.unsubscribe_topic(STEP_TOPIC)
            self._release()
        return Results(self.graph, self.cache, self.failures)

    def _release(self) -> None:
        """Let go of every future the call holds: the scheduler forgets what no client wants, so an
        interrupted plan leaves no work queued on the cluster.

        Released explicitly, not only dropped: Dask's tracking of a future not finished yet
        (:attr:`pending`, ``as_completed``) holds it until it finishes, and so the task, its
        readers and their upstream records stayed on the cluster and ran to the end.
        """
        held = [*self.futures.values(), *self.data.values()]
        self.pending.clear()
        self.futures.clear()
        self.data.clear()
        for future in held:
            try:
                future.release()  # asynchronous (the client's event loop); a second call does nothing
            except RuntimeError:  # the client's event loop is closed: it has nothing left to release
                pass

    def _check_resources(self, keys: list[str]) -> None:
        """Refuse, before any work, a resource that no worker of the cluster offers (it would wait forever)."""
        asked = {name for key in keys for name in self.graph[key].resources}
        if not asked:
            return
        workers = self.client.scheduler_info(n_workers=-1).get("workers", {}).values()
        offered = {name for worker in workers for name in (worker.get("resources") or {})}
        for name in sorted(asked - offered):
            raise InputError(f"the plan's NNST runs ask for a {name} worker (device = \"cuda\") and no worker of the "
                             f"cluster offers one: start one with `dask worker SCHEDULER --resources {name}=1` "
                             "or set device = \"cpu\"")


@dataclass(frozen=True)
class _DataKey:
    key: str


def _refs(value) -> list[str]:
    """The upstream keys of a task's arguments (TaskRefs, also inside lists, tuples and dicts)."""
    if isinstance(value, TaskRef):
        return [value.key]
    items = value.values() if type(value) is dict else value if type(value) in (list, tuple) else ()
    return [key for item in items for key in _refs(item)]


def execute_dask(graph: Graph, cache: Cache, *, client, on_event: Callable | None = None,
                 progress: Callable | None = None) -> dict:
    """Run every task of ``graph`` not in ``cache`` on ``client``'s cluster -> ``{key: Record | Failure}``.

    The same contract as :func:`~.execute.execute`: cached keys are not run, each computed
    record is written to ``cache`` (by this process, as its future completes), bad-input
    failures fail their key and everything downstream, anything else propagates.

    Parameters
    ----------
    graph : Graph
        ``{key: Task}`` in a topological order.
    cache : Cache
        Where records are read from and written to (only by this process).
    client : distributed.Client
        A connected client; its workers need ``nnst-hr`` importable.
    on_event : callable, optional
        ``on_event(event, task, info)``, event in ``"cached"``, ``"start"``, ``"done"``, ``"failed"``.
    progress : callable, optional
        ``progress(task)``, called as each task's ``"start"`` is reported (before it): a reporter
        with a ``relayed(report)`` method (:class:`~.progress.StageProgress`) or None. It gets
        the reports of the stage's steps sent from the worker (see the module docstring). None:
        the workers send no reports.

    Returns
    -------
    dict
        ``{key: record or Failure}`` for every key of ``graph``, in graph order.

    Raises
    ------
    InputError
        A task asks for a resource (``GPU``) that no worker offers.
    """
    return _DaskRun(graph, cache, client, on_event, progress).run()


# --------------------------------------------------------------------------- choosing the executor


def _require_dask():
    try:
        import distributed
    except ImportError:
        raise InputError(f"--workers and --scheduler need Dask: {INSTALL_HINT}") from None
    return distributed


def check_cluster_options(workers: int | None, scheduler: str | None) -> None:
    """Refuse (:class:`InputError`) ``--workers`` with ``--scheduler``, and fewer than one worker."""
    if workers is not None and scheduler is not None:
        raise InputError("--workers and --scheduler exclude each other: --workers N starts a local cluster, "
                         "--scheduler ADDRESS uses an existing one")
    if workers is not None and workers < 1:
        raise InputError(f"--workers must be 1 or more (got {workers})")


@contextmanager
def dask_client(workers: int | None = None, scheduler: str | None = None, *,
                connect_timeout: float | None = None) -> Iterator:
    """A ``distributed.Client`` for ``--workers N`` or ``--scheduler ADDRESS``, closed on exit.

    ``workers``: a local cluster of that many single-threaded worker processes on 127.0.0.1
    (no dashboard), shut down on exit. ``scheduler``: an existing cluster; an address that does
    not answer within ``connect_timeout`` seconds (default :data:`CONNECT_TIMEOUT_S`) is an
    :class:`InputError` naming it.
    """
    check_cluster_options(workers, scheduler)
    distributed = _require_dask()
    if scheduler is not None:
        client = _connect(scheduler, connect_timeout or CONNECT_TIMEOUT_S)
        with client:
            try:
                client.wait_for_workers(1, timeout=WORKER_WAIT_S)
            except (TimeoutError, OSError):
                raise InputError(f"the Dask scheduler at {scheduler} has no workers: start some with "
                                 f"`dask worker {scheduler} --nthreads 1`") from None
            yield client
        return
    cluster = local_cluster(workers, resources=_local_resources())
    try:
        with distributed.Client(cluster, set_as_default=False) as client:
            client.run(_quiet_stopped_tasks)
            client.run(_leave_ctrl_c_to_the_client)
            yield client
    finally:
        _close_quietly(cluster)


def _connect(scheduler: str, timeout: float):
    """A ``distributed.Client`` connected to the scheduler at ``scheduler``.

    Any failure to connect is an :class:`InputError` naming the address: no answer within
    ``timeout`` seconds, a malformed address or one whose protocol needs a configuration
    (``tls://``, ``ucx://``), or a server there that is not a Dask scheduler (its reply read
    as a message length raised ``MemoryError``). The client is then closed at once (see
    :func:`_client_type`).
    """
    try:
        return _client_type()(scheduler, timeout=timeout, set_as_default=False)
    except Exception as exc:  # noqa: BLE001 - whatever Dask raises here, the address is the fault
        reason = "what answers there is not a Dask scheduler" if isinstance(exc, MemoryError) else _first_line(exc)
    # raised outside the except clause: the failed client's frames are not kept alive as its context
    raise InputError(f"cannot reach the Dask scheduler at {scheduler} ({reason}): start it with `dask scheduler` "
                     f"and workers with `dask worker {scheduler}`, or fix --scheduler")


@functools.cache
def _client_type():
    """``distributed.Client`` closing itself when it fails to start.

    Dask leaves a client that failed in its constructor half started (unless the failure was an
    ``OSError``): its ``__del__`` closed it at interpreter exit, once its event loop had stopped,
    which waited 20 s and then printed a ``TimeoutError`` traceback after the error line.
    """
    import distributed

    class _Client(distributed.Client):
        def start(self, **kwargs):
            try:
                super().start(**kwargs)
            except BaseException:
                _close_failed(self)
                raise

    return _Client


def _close_failed(client) -> None:
    """Close a client that failed to start, while its event loop still runs; never raise."""
    try:
        client.close(timeout=CLOSE_TIMEOUT_S)
    except Exception:  # noqa: BLE001 - a close that fails too must not hide why the connection failed
        pass
    finally:
        client.status = "closed"  # whatever happened, its __del__ has nothing left to close
        client._loop_runner.stop()  # close() skips it for a client Dask already marked closed


def local_cluster(n_workers: int, **worker_options):
    """A ``distributed.LocalCluster`` of ``n_workers`` single-threaded processes, all on 127.0.0.1.

    No dashboard; the scheduler's small HTTP server (health checks) takes a free port on
    127.0.0.1 instead of 8787, so it never collides with another cluster.
    """
    from distributed import LocalCluster

    return LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                        dashboard_address=None, scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
                        **worker_options)


def _quiet_stopped_tasks() -> None:
    """On a worker of this process's local cluster: no warning as it lets go of a task stopped for
    its ended call (Ctrl-C printed Dask's "Async instruction for <Task cancelled ...> ended with
    CancelledError" once per running stage, above the one line saying the plan stopped). Workers
    of a cluster of the user's own keep their logging."""
    logging.getLogger("distributed.worker.state_machine").setLevel(logging.ERROR)


def _leave_ctrl_c_to_the_client() -> None:
    """On a worker of this process's local cluster: ignore SIGINT. A terminal's Ctrl-C reaches every
    process of its group, the workers too, and each printed a KeyboardInterrupt or broken-pipe
    traceback as it died under its stage; this process stops the plan and closes them (SIGTERM).
    Run in the worker's main thread (its event loop's), where a handler can be set."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _close_quietly(cluster) -> None:
    """Close a local cluster without the nannies' "worker still alive, killing" warnings (torch
    workers are slow to stop; killing them is the intended end), nor the scheduler's "Removing worker
    ... caused the cluster to lose already computed task(s)" / "scattered data, which can't be
    recovered" (a warning and an error, dated, after Ctrl-C: the cluster goes, nothing is recomputed)."""
    quieted = {"distributed.nanny": logging.ERROR, "distributed.scheduler": logging.CRITICAL}
    levels = {name: logging.getLogger(name).level for name in quieted}
    for name, level in quieted.items():
        logging.getLogger(name).setLevel(level)
    try:
        cluster.close()
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


def _local_resources() -> dict | None:
    """Each local worker may run one NNST on this machine's GPU (CUDA NNST tasks ask for ``GPU``)."""
    import torch

    return {"GPU": 1} if torch.cuda.is_available() else None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@contextmanager
def executor_from_options(workers: int | None = None, scheduler: str | None = None, **client_options) -> Iterator:
    """The executor for ``nnst-hr experiment``'s options: ``execute`` or ``execute_dask`` on a cluster.

    Yields a callable ``run(graph, cache, *, on_event=None, progress=None) -> results``. Neither
    option: runs in this process. The cluster is connected to (or started) on entry, before any
    stage runs. ``progress`` (the reporter of a task's steps, see :func:`~.execute.execute`) is
    given the steps of the stages run in this process, or relayed from the workers
    (:func:`execute_dask`).

    Examples
    --------
    >>> with executor_from_options(workers=2) as run:                  # doctest: +SKIP
    ...     results = run(graph, cache, on_event=progress)
    """
    if workers is None and scheduler is None:
        yield execute
        return
    with dask_client(workers, scheduler, **client_options) as client:
        def run(graph: Graph, cache: Cache, *, on_event: Callable | None = None, progress=None) -> dict:
            return execute_dask(graph, cache, client=client, on_event=on_event, progress=progress)

        yield run
