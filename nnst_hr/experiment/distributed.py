"""Run an experiment's task graph on a Dask cluster (``dask.distributed``), same contract as ``execute``.

:func:`execute_dask` submits each task of the graph that the cache does not hold as one Dask task
under its own key, upstream futures standing in for :class:`~.graph.TaskRef` arguments. Workers
need no shared filesystem: input bytes are scattered once per unique content (Dask key
``bytes-<sha256>-<call>``), records the cache already holds are scattered as data
(``cached-<key>-<call>``), and every record comes back to the client, which alone writes the
cache, as each future completes.
A plan run in this process and then on a cluster (or the other way round) reuses everything:
the keys are the same.

Faults:

- A stage raising a bad-input error (:func:`~.execute.input_errors`) fails its key and every key
  downstream, as in process; the other runs go on. The error is caught on the worker and returned
  as a value, so Dask only ever sees the tasks of bugs fail (those propagate).
- A lost worker: Dask reruns what it was computing elsewhere. A task that kills
  ``distributed.scheduler.allowed-failures`` + 1 workers in a row (out of memory, usually) fails
  its runs with a message instead of the plan. Scattered data lost with a worker cannot be recomputed
  by Dask; the tasks that needed it come back cancelled and are resubmitted with the data
  scattered again.
- An interrupted client releases what it submitted (the scheduler drops it); the stages already
  written are reused when the plan is started again.

Progress: ``on_event`` gets ``"start"`` when a worker starts a task (a worker event relayed by the
scheduler), ``"done"`` with ``seconds``, ``peak_memory`` (measured on the worker) and ``worker``,
``"cached"`` and ``"failed"`` as :func:`~.execute.execute` sends them. A task rerun after a lost
worker sends ``"start"`` again.

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

import hashlib
import logging
import os
import queue
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import CancelledError
from contextlib import contextmanager
from dataclasses import dataclass

from ..errors import InputError
from .cache import Cache
from .execute import Failure, PeakMemory, execute, input_errors
from .graph import Graph, TaskRef

CONNECT_TIMEOUT_S = 10.0  # how long to try an existing scheduler before giving up (exit 2)
WORKER_WAIT_S = 30.0  # how long to wait for a first worker on an existing cluster
POLL_S = 0.05  # main loop period: finished futures and worker events are handled at this rate
MAX_RESUBMITS = 3  # resubmissions of one task after its scattered data was lost with workers
EVENT_TOPIC = "nnst-hr-task"  # worker event topic of "a task started"
INSTALL_HINT = "install the Dask extra: pip install 'nnst-hr[dask]'"


# --------------------------------------------------------------------------- on the worker


@dataclass(frozen=True)
class _Output:
    """What a task returns on the cluster: its record and how it was computed."""

    record: dict
    info: dict


@dataclass(frozen=True)
class _Failed:
    """A bad-input failure returned as a value (and passed on by every task downstream)."""

    message: str
    stage: str


def _unwrap(value):
    """Replace upstream :class:`_Output` values (top level or inside lists/tuples/dicts) by records."""
    if isinstance(value, _Output):
        return value.record
    if type(value) in (list, tuple):
        return type(value)(_unwrap(item) for item in value)
    if type(value) is dict:
        return {name: _unwrap(item) for name, item in value.items()}
    return value


def _upstream_failure(value) -> _Failed | None:
    if isinstance(value, _Failed):
        return value
    items = value.values() if type(value) is dict else value if type(value) in (list, tuple) else ()
    return next((failed for item in items if (failed := _upstream_failure(item)) is not None), None)


def run_task(func: Callable, key: str, stage: str, *args) -> _Output | _Failed:
    """Run one stage on a worker: announce it, time it, turn a bad-input error into a value.

    An upstream :class:`_Failed` among ``args`` is returned as is (the stage is not run), so a
    failure reaches every task downstream of it with the stage that failed.
    """
    failed = _upstream_failure(args)
    if failed is not None:
        return failed
    worker = _current_worker()
    if worker is not None:
        worker.log_event(EVENT_TOPIC, {"key": key, "worker": worker.address, "pid": os.getpid()})
    start = time.perf_counter()
    try:
        with PeakMemory() as memory:
            record = func(*_unwrap(args))
    except input_errors() as exc:
        return _Failed(str(exc).splitlines()[0] if str(exc) else type(exc).__name__, stage)
    info = {"seconds": time.perf_counter() - start, "peak_memory": int(memory.peak),
            "worker": worker.address if worker is not None else socket.gethostname()}
    return _Output(record, info)


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

    def __init__(self, graph: Graph, cache: Cache, client, on_event: Callable | None):
        from distributed import as_completed

        self.graph, self.cache, self.client = graph, cache, client
        self.emit = on_event or (lambda *args: None)
        self.results: dict = {}
        self.futures: dict = {}  # task key -> Future of a submitted task not yet handled
        self.task_of: dict[str, str] = {}  # Dask key -> task key
        self.data: dict = {}  # data key -> Future of scattered bytes or cached record
        self.token, self.scatters = uuid.uuid4().hex[:8], 0
        self.resubmits: dict[str, int] = {}
        self.done: set[str] = set()  # keys whose "done" was sent (a rerun is not reported twice)
        self.events: queue.Queue = queue.Queue()  # "task started" worker events, from the client's thread
        self.lost: set[str] = set()  # keys that came back cancelled (their scattered data was lost)
        self.deferred: list[dict] = []  # start events waiting for their upstream's "done"
        self.order = {key: i for i, key in enumerate(graph)}
        self.pending = as_completed(loop=client.loop)

    # ---- submission
    def _payload(self, value, wanted: dict):
        """``value`` with its bytes replaced by data keys (collected in ``wanted``)."""
        if isinstance(value, (bytes, bytearray)):
            key = _data_key(bytes(value))
            wanted[key] = bytes(value)
            return _DataKey(key)
        if isinstance(value, TaskRef):
            if value.key in self.results:  # cached or computed earlier: pass the record as data
                key = f"cached-{value.key}"
                wanted[key] = self.results[value.key]
                return _DataKey(key)
            return value
        if type(value) in (list, tuple):
            return type(value)(self._payload(item, wanted) for item in value)
        if type(value) is dict:
            return {name: self._payload(item, wanted) for name, item in value.items()}
        return value

    def _futures_for(self, value):
        if isinstance(value, _DataKey):
            return self.data[value.key]
        if isinstance(value, TaskRef):
            return self.futures[value.key]
        if type(value) in (list, tuple):
            return type(value)(self._futures_for(item) for item in value)
        if type(value) is dict:
            return {name: self._futures_for(item) for name, item in value.items()}
        return value

    def submit(self, keys: list[str]) -> None:
        """Scatter what ``keys`` need (once per data key) and submit them, upstream first.

        A key downstream of a failure already known (a resubmission) fails without running.
        """
        keys = [key for key in keys if not self._fails_upstream(key)]
        wanted: dict = {}
        payloads = {key: self._payload(self.graph[key].args, wanted) for key in keys}
        missing = {k: v for k, v in wanted.items() if k not in self.data or self.data[k].status != "finished"}
        if missing:
            # Dask keys unique to this call and attempt: a key released a moment ago by an earlier
            # call (or lost) can still be forgotten by the scheduler after it is scattered again
            self.scatters += 1
            names = {f"{k}-{self.token}.{self.scatters}": k for k in missing}
            scattered = self.client.scatter({name: missing[k] for name, k in names.items()}, hash=False)
            self.data.update({names[name]: future for name, future in scattered.items()})
        for key in keys:
            task = self.graph[key]
            # a resubmission takes a new Dask key: the client keeps the cancelled one's state a while
            dask_key = f"{key}-retry{self.resubmits[key]}" if self.resubmits.get(key) else key
            future = self.client.submit(run_task, task.func, key, task.stage, *self._futures_for(payloads[key]),
                                        key=dask_key, resources=task.resources or None, pure=False)
            self.futures[key] = future
            self.task_of[dask_key] = key
            self.pending.add(future)

    def _fails_upstream(self, key: str) -> bool:
        task = self.graph[key]
        failed = next((self.results[ref] for ref in _refs(task.args) if isinstance(self.results.get(ref), Failure)),
                      None)
        if failed is not None:
            self.results[key] = failed
            self.emit("failed", task, {"message": failed.message, "stage": failed.stage, "upstream": True})
        return failed is not None

    # ---- completion
    def handle(self, future) -> None:
        key = self.task_of[future.key]
        if self.futures.get(key) is not future:
            return  # a future replaced by a resubmission
        task = self.graph[key]
        if future.status == "finished":
            try:
                output = future.result()
            except CancelledError:  # lost with a worker (and its scattered inputs) before it came back
                self._lost(key)
                return
            del self.futures[key]
            if isinstance(output, _Failed):
                self.results[key] = Failure(output.message, output.stage)
                self.emit("failed", task, {"message": output.message, "stage": output.stage,
                                           "upstream": output.stage != task.stage})
                return
            self.cache.put(key, output.record, meta=output.info)
            self.results[key] = output.record
            if key not in self.done:
                self.done.add(key)
                self.emit("done", task, dict(output.info))
        elif future.status == "error":
            self._handle_error(future, task)
        elif future.status == "cancelled":
            self._lost(key)

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
        del self.futures[task.key]
        self.results[task.key] = Failure(message, origin.stage)
        self.emit("failed", task, {"message": message, "stage": origin.stage, "upstream": origin is not task})

    def recover(self) -> None:
        """Resubmit the tasks that came back cancelled (their data was lost), with what they need."""
        lost, self.lost = self.lost, set()
        for key in lost:
            self.futures.pop(key, None)
        # a task waiting on a lost one is cancelled too but may not have come back yet
        again = [key for key in self.graph if key not in self.results
                 and (key in lost or (key in self.futures and self.futures[key].status == "cancelled"))]
        for key in again:
            self.futures.pop(key, None)
        self.submit(again)

    def collect_events(self) -> None:
        """Take the "task started" events the client's thread received."""
        while True:
            try:
                self.deferred.append(self.events.get_nowait())
            except queue.Empty:
                return

    def flush_starts(self) -> None:
        """Send "start" for the events whose upstream "done" was sent (the order a reader expects)."""
        waiting = []
        for event in self.deferred:
            key = event.get("key")
            if key not in self.futures:
                continue  # handled, failed or resubmitted meanwhile
            if any(ref not in self.results for ref in _refs(self.graph[key].args)):
                waiting.append(event)
                continue
            self.emit("start", self.graph[key], {k: v for k, v in event.items() if k != "key"})
        self.deferred = waiting

    # ---- the whole call
    def run(self) -> dict:
        todo = []
        for key, task in self.graph.items():
            record = self.cache.get(key)
            if record is not None:
                self.results[key] = record
                self.emit("cached", task, dict(self.cache.meta(key)))
            else:
                todo.append(key)
        if not todo:
            return self.results
        self._check_resources(todo)
        self.client.subscribe_topic(EVENT_TOPIC, lambda event: self.events.put(event[1]))
        try:
            self.submit(todo)
            while not self.pending.is_empty():
                batch = self.pending.next_batch(block=False)
                self.collect_events()
                for future in sorted(batch, key=lambda f: self.order[self.task_of[f.key]]):  # upstream first
                    self.flush_starts()
                    self.handle(future)
                self.flush_starts()
                if self.lost:
                    self.recover()
                if not batch:
                    time.sleep(POLL_S)
        finally:
            # dropping the futures releases them: the scheduler forgets what no client wants
            # (an interrupted plan leaves no work queued on the cluster)
            self.client.unsubscribe_topic(EVENT_TOPIC)
            self.pending.clear()
            self.futures.clear()
            self.data.clear()
        return {key: self.results[key] for key in self.graph}

    def _check_resources(self, keys: list[str]) -> None:
        """Refuse, before any work, a resource that no worker of the cluster offers (it would wait forever)."""
        needed = {name for key in keys for name in self.graph[key].resources}
        if not needed:
            return
        workers = self.client.scheduler_info(n_workers=-1).get("workers", {}).values()
        offered = {name for worker in workers for name in (worker.get("resources") or {})}
        for name in sorted(needed - offered):
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


def execute_dask(graph: Graph, cache: Cache, *, client, on_event: Callable | None = None) -> dict:
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

    Returns
    -------
    dict
        ``{key: record or Failure}`` for every key of ``graph``, in graph order.

    Raises
    ------
    InputError
        A task asks for a resource (``GPU``) that no worker offers.
    """
    return _DaskRun(graph, cache, client, on_event).run()


# --------------------------------------------------------------------------- choosing the executor


def _require_dask():
    try:
        import distributed
    except ImportError:
        raise InputError(f"--workers and --scheduler need Dask: {INSTALL_HINT}") from None
    return distributed


@contextmanager
def dask_client(workers: int | None = None, scheduler: str | None = None, *,
                connect_timeout: float | None = None) -> Iterator:
    """A ``distributed.Client`` for ``--workers N`` or ``--scheduler ADDRESS``, closed on exit.

    ``workers``: a local cluster of that many single-threaded worker processes on 127.0.0.1
    (no dashboard), shut down on exit. ``scheduler``: an existing cluster; an address that does
    not answer within ``connect_timeout`` seconds (default :data:`CONNECT_TIMEOUT_S`) is an
    :class:`InputError` naming it.
    """
    if workers is not None and scheduler is not None:
        raise InputError("--workers and --scheduler exclude each other: --workers N starts a local cluster, "
                         "--scheduler ADDRESS uses an existing one")
    if workers is not None and workers < 1:
        raise InputError(f"--workers must be 1 or more (got {workers})")
    distributed = _require_dask()
    if scheduler is not None:
        try:
            client = distributed.Client(scheduler, timeout=connect_timeout or CONNECT_TIMEOUT_S, set_as_default=False)
        except (OSError, TimeoutError, ValueError) as exc:
            raise InputError(f"cannot reach the Dask scheduler at {scheduler} ({_first_line(exc)}): start it "
                             f"with `dask scheduler` and workers with `dask worker {scheduler}`, or fix --scheduler"
                             ) from None
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
            yield client
    finally:
        _close_quietly(cluster)


def local_cluster(n_workers: int, **worker_options):
    """A ``distributed.LocalCluster`` of ``n_workers`` single-threaded processes, all on 127.0.0.1.

    No dashboard; the scheduler's small HTTP server (health checks) takes a free port on
    127.0.0.1 instead of 8787, so it never collides with another cluster.
    """
    from distributed import LocalCluster

    return LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                        dashboard_address=None, scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
                        **worker_options)


def _close_quietly(cluster) -> None:
    """Close a local cluster without the nannies' "worker still alive, killing" warnings (torch
    workers are slow to stop; killing them is the intended end)."""
    nanny = logging.getLogger("distributed.nanny")
    level = nanny.level
    nanny.setLevel(logging.ERROR)
    try:
        cluster.close()
    finally:
        nanny.setLevel(level)


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
    used in this process only: a worker's steps are not reported.

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
            return execute_dask(graph, cache, client=client, on_event=on_event)

        yield run
