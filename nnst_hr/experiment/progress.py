"""Progress of an experiment plan on stderr: its stages, the steps of the running ones, time left.

:class:`PlanProgress` is the executor's ``on_event`` (a line per stage event: ``run 3 of 8: nnst
...``, ``run 3 of 8: nnst done in 41s; plan: 3m02s so far, about 5m left``) and, through
:meth:`PlanProgress.reporter`, gives each task it is told of as it starts a :class:`StageProgress`.
In process, that is the ``progress=`` which :func:`~.stages.nnst` and :func:`~.stages.poster` pass
on to ``synthesize_nnst`` and ``synthesize_poster_stage``, which report their steps into it. On
Dask (:mod:`.distributed`) the stage runs on a worker with a :class:`RelayProgress` instead, which
sends a small report (fraction done, step text, time left) at most every ``REPORT_INTERVAL_S``
seconds and at each stage's last step, as a Dask worker event; the client hands each report to
the task's :class:`StageProgress` (:meth:`StageProgress.relayed`), so both paths show the same.
It also stops the stage (:class:`StageStopped`) once the call that submitted it has ended.

On a terminal the plan and each running stage are live :mod:`rich` bars (stages done and the
plan's time left; a stage's scale and step, time so far and left; a stage run on a worker is
labelled with it), with the stage events' lines printed above them. Elsewhere (logs, pipes, CI) a
stage's steps are plain lines, at most one every ``REPORT_INTERVAL_S`` seconds per stage::

    run 3 of 8: nnst: scale 64px: step 12/50, loss 0.1234, about 8s left; plan about 4m10s left
    run 4 of 8: nnst [worker 1]: scale 64px: step 30/50, loss 0.1104, about 5s left; plan about 4m02s left

The plan's time left weighs each task with ``nnst-hr run``'s cost model (:func:`task_work`: its
terms in :mod:`nnst_hr.workplan` at the inputs' sizes, read from their headers, in prior-seconds).
Per stage kind, the seconds its computed tasks took over their work is a speed factor, times the
work of those still to run; a running stage that reports its steps counts its own estimate of what
is left (also one on a worker), another running one its kind's estimate less the time it has run,
and the first tasks of a kind set that kind's factor from their own estimates. A task resumed from
saved scales counts the work of the scales it ran, not the whole task's. A kind not measured
yet takes the pooled factor of the kinds measured on its device, as a run scales the priors of its
terms; until one has been, the time left is not known. Once any kind has been measured, a CPU
device none has run on (torch's, or the poster's Numba synthesis, a device of its own) takes its
priors as they are; a GPU's kinds wait for one of theirs. Stages run at once on a cluster: the sum
is divided by the most workers seen running stages at once (1 in process), but is never less than
the longest task's time left.
"""

from __future__ import annotations

import atexit
import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Collection
from dataclasses import replace
from typing import TextIO

from rich.console import Console
from rich.progress import BarColumn, ProgressColumn, TaskID, TextColumn
from rich.progress import Progress as Bars
from rich.table import Column
from rich.text import Text

from ..config import NNSTConfig
from ..files import image_shape
from ..memory import long_side_shape
from ..nnst import nnst_work, scale_checkpoint_name
from ..poster import poster_stages, scaled_shape
from ..progress import FINISHED_BAR, REFRESH_INTERVAL_S, REPORT_INTERVAL_S, Progress, Stage, format_seconds
from ..scores import NETWORK_MAX_SIDE, SWD_MAX_SAMPLES, SWD_PROJECTIONS
from ..workplan import NUMBA, VGG_FP32, match_work, output_stage, work
from . import stages
from .execute import needed
from .graph import Graph, Task

BARS_PER_SECOND = 4  # redraws of the live bars (the elapsed times tick between reports)
BAR_WIDTH = 12  # characters: leaves room for the step and the times on an 80-column terminal
MODELLED = frozenset({"nnst", "color", "poster", "poster_color", "scores", "press"})  # kinds with work in prior-seconds
SCORE_PASSES = 2  # the scores' per-pixel passes over the result (SSIM, color, detail), in `output` units
SCORE_NETWORK_EXTRA = 0.3  # the Gram matrices and LPIPS distances on the VGG features, per unit of those passes
SWD_UNITS = 0.13  # the color SWD's `output` units per sample and projection (projecting and sorting them)
MIN_WORK = 1e-9  # prior-seconds of a task that does nothing (color off): a rate needs work > 0
STOP_CHECK_S = 0.5  # a stage on a worker asks whether its call still wants it at most this often

logger = logging.getLogger(__name__)
Shape = tuple[int, int]  # (height, width)


def task_work(graph: Graph, task: Task, shapes: dict | None = None) -> float:
    """A task's work in prior-seconds: its seconds on the reference machine by ``nnst-hr run``'s model.

    The terms are those a run plans for its time left (:mod:`nnst_hr.workplan`): for ``nnst``,
    each scale's steps and setup (whose search grows with content cells x style cells), feature
    splitting and the final fp32 match (:func:`nnst_hr.nnst.nnst_work`); the poster's synthesis
    and finish (:func:`nnst_hr.poster.poster_stages`); color post-processing and the scores per
    pixel, the scores' objective as one more fp32 match. The inputs' sizes are read from their
    headers (:func:`input_shapes`), the content as the run's print fits it (crop or pad) and the
    final image at the print's pixels; where a header cannot be read, both inputs count as squares
    of the run's size. Each term is weighed by its prior, so a kind's measured seconds over its
    work is a speed factor (1 on the reference machine), and kinds on one device share it.

    Parameters
    ----------
    graph : Graph
        The plan's graph (``graph.specs`` gives a run's configs, its ``inputs`` task the bytes).
    task : Task
        One of its tasks.
    shapes : dict, optional
        A cache of :func:`input_shapes` by inputs key, shared between calls.

    Returns
    -------
    float
        Positive; 1 for ``inputs`` and for a task of a graph without run specs (no model).
    """
    stages_ = task_stages(graph, task, shapes)
    if stages_ is None:
        return 1.0
    return max(MIN_WORK, _prior_seconds(stages_))


def resumed_stages(graph: Graph, task: Task, resumed: Collection[str], shapes: dict | None = None) -> list[Stage]:
    """The parts of ``task``'s work plan (:func:`task_stages`) that it resumed instead of running.

    Parameters
    ----------
    graph, task, shapes
        As for :func:`task_work`.
    resumed : collection of str
        The saved states it started from (``"scale0"``: after the coarsest scale, as a ``"done"``
        event's ``resumed`` names them), or the names of the stages it skipped (``"scale 64px"``,
        as :meth:`~nnst_hr.progress.Progress.skip` names them).

    Returns
    -------
    list of Stage
        In the plan's order (an NNST task's states are named by their scale's index in it).
    """
    stages_ = (task_stages(graph, task, shapes) if resumed else None) or []
    return [stage for i, stage in enumerate(stages_)
            if stage.name in resumed or (task.stage == "nnst" and scale_checkpoint_name(i) in resumed)]


def resumed_work(graph: Graph, task: Task, resumed: Collection[str], shapes: dict | None = None) -> float:
    """The work, in prior-seconds, of the parts of ``task`` it resumed (:func:`resumed_stages`); 0 for none.

    ``task_work(...) - resumed_work(...)`` is what the task ran.
    """
    return _prior_seconds(resumed_stages(graph, task, resumed, shapes))


def _prior_seconds(stages_: list[Stage]) -> float:
    return sum(units * part.prior for stage in stages_ for part, units in stage.work(setup=True))


def task_device(graph: Graph, task: Task) -> str | None:
    """The device a task's work runs on (``"cpu"``, ``"cuda"``, ``"numba"`` for the poster's
    synthesis: :data:`~nnst_hr.workplan.NUMBA`), None for a task without a model.

    The plan's client decides it as a run would: ``auto`` is CUDA when this process sees a GPU
    (a Dask client without one, over GPU workers, counts them as CPUs: only the sharing of
    speeds between kinds is then off, not each kind's own).
    """
    if not getattr(graph, "specs", None) or not task.run_ids or task.stage not in MODELLED:
        return None
    if task.stage == "poster":
        return NUMBA  # as poster_stages says
    if task.stage in ("poster_color", "press"):
        return "cpu"  # render (Numba) and color (torch), or LittleCMS, on the worker's CPU
    return _device(graph.specs[task.run_ids[0]].nnst.device)


def _device(name: str) -> str:
    if name != "auto":
        return name
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"  # is_available does not start CUDA


def input_shapes(graph: Graph, run_id: int, shapes: dict | None = None) -> tuple[Shape, Shape] | None:
    """``(content, style)`` shapes ``(height, width)`` of a run's inputs, from their files' headers.

    The graph's ``inputs`` task holds the files' bytes (a Dask client has them too: it scatters
    them), so nothing is read from disk; :func:`nnst_hr.files.image_shape` applies the EXIF
    orientation. None when either header cannot be read.
    """
    key = graph.runs[run_id].get("inputs") if run_id < len(graph.runs) else None
    if key is None or key not in graph:
        return None
    if shapes is not None and key in shapes:
        return shapes[key]
    content, style = graph[key].args[:2]
    found = (image_shape(content), image_shape(style)) if isinstance(content, bytes) else (None, None)
    result = None if None in found else found
    if shapes is not None:
        shapes[key] = result
    return result


def task_stages(graph: Graph, task: Task, shapes: dict | None = None) -> list[Stage] | None:
    """The work plan of a task (what :func:`task_work` sums), None without a model (``inputs``).

    Parameters
    ----------
    graph, task, shapes
        As for :func:`task_work`.

    Returns
    -------
    list of Stage or None
        The stages of :mod:`nnst_hr.workplan` that the task does, on :func:`task_device`.
    """
    device = task_device(graph, task)
    if device is None:
        return None
    spec = graph.specs[task.run_ids[0]]
    nnst, poster = spec.nnst, spec.poster
    found = input_shapes(graph, task.run_ids[0], shapes)
    content, style = found or ((nnst.size, nnst.size),) * 2  # a header not read: the old long side squared
    # with a print, every stage runs on the content as the print fits it (a crop is smaller, a pad larger)
    # and the final image has the print's pixels: as the graph plans it (graph._print_plan)
    # a spec is any object with nnst and poster (scripts and tests build graphs by hand): no print_size, no print
    print_plan = spec.print_plan(content) if getattr(spec, "print_size", None) is not None else None
    if print_plan is not None:
        content = print_plan.fitted_shape
    nnst_shape = long_side_shape(content, nnst.size)
    # bf16 as fast mode asks: whether the device has it is the workers' to say (the ratio of
    # fast to exact runs in one plan is then off on a CPU without it, not a kind's speed)
    bf16 = nnst.bf16 and not nnst.exact
    if task.stage == "nnst":
        inputs = graph.get(graph.runs[task.run_ids[0]].get("inputs"))
        guided = inputs is not None and inputs.args[2] is not None
        return nnst_work(content, style, nnst, device=device, bf16=bf16,
                         hard_guides=guided and nnst.guide_mode == "hard")
    if task.stage == "color":
        return [_color_stage("color", nnst_shape, nnst, device)]
    posters = poster_stages(nnst_shape, poster) if stages.has_poster(nnst, poster) else []
    if task.stage == "poster":
        return posters[:1]
    if task.stage == "poster_color":
        return posters[1:]
    final = scaled_shape(nnst_shape, poster.out_size / max(nnst_shape)) if posters else nnst_shape
    if print_plan is not None:
        final = print_plan.pixels  # the final image brought to the print's exact pixels (stages.to_print)
    if task.stage == "press":  # the final image separated into ink: a pass over its pixels, as a run's output
        return [output_stage("press", final[0] * final[1], device)]
    return [_scores_stage(nnst_shape, long_side_shape(style, nnst.size), final, nnst, device, source_style=style)]


def _color_stage(name: str, shape: tuple[int, int], config: NNSTConfig, device: str) -> Stage:
    """Color post-processing of ``shape``: the run's ``output`` term, in proportion to its iterations."""
    iterations = max(1, config.color_iterations) / max(1, NNSTConfig().color_iterations)
    return output_stage(name, shape[0] * shape[1] * iterations if config.color else 0.0, device)


def _scores_stage(nnst_shape, style_shape, final_shape, config: NNSTConfig, device: str,
                  source_style=None) -> Stage:
    """The scores of a run (:func:`nnst_hr.scores.score_image`) in the run's terms.

    ``objective`` is an exhaustive fp32 match at NNST's size (as the final match); LPIPS and the
    Gram distances a fp32 VGG pass of the result, the content and the style (at most
    ``NETWORK_MAX_SIDE``) and their own products on its features; SSIM, color and detail a few
    passes per pixel of the result; the color SWD its samples of the result and the style as
    read (``source_style``, default ``style_shape``).
    """
    exact = replace(config, exact=True)  # never shortlisted, whatever the threshold
    setup = match_work(nnst_shape, style_shape, exact, device, fp32=True, approx_min_work=math.inf)
    side = min(max(final_shape), NETWORK_MAX_SIDE)
    net = [long_side_shape(shape, side) for shape in (final_shape, nnst_shape, style_shape)]
    pixels = final_shape[0] * final_shape[1]
    samples = sum(min(h * w, SWD_MAX_SAMPLES) for h, w in (final_shape, source_style or style_shape))
    network = sum(h * w for h, w in net) * VGG_FP32 * (1 + SCORE_NETWORK_EXTRA)
    return Stage("scores", setup=setup + (work("features", network, device),
                                          work("output", SCORE_PASSES * pixels + SWD_UNITS * SWD_PROJECTIONS * samples,
                                               device)))


def _state(progress: Progress, stage: str, total: float, completed: float, detail: str) -> tuple[float, str]:
    """(fraction of the whole stage done, the step's text under the stage's name) of a reporter."""
    done = progress.done_cost / progress.total_cost if progress.total_cost > 0 else completed / total
    return done, detail if progress.current == stage else f"{progress.current}: {detail}"


class StageProgress(Progress):
    """The reporter of one running task: its steps go to the plan's display.

    In process it is the stage's ``progress=``: it keeps :class:`~nnst_hr.progress.Progress`'s
    estimate of the stage's time left (:attr:`left_s`: cost-weighted steps, or the latest rate of a
    fraction) and draws nothing itself. For a stage run on a Dask worker it is fed the reports of
    the worker's :class:`RelayProgress` (:meth:`relayed`).

    Parameters
    ----------
    owner : PlanProgress
        The plan's display.
    task : Task
        The task being run.
    """

    def __init__(self, owner: PlanProgress, task: Task):
        super().__init__(enabled=owner.enabled, console=owner.console)
        self.owner, self.task = owner, task
        self.began = time.perf_counter()
        self.done = 0.0  # fraction of the whole stage done, as of the latest report shown
        self.detail = ""
        self.worker = ""  # the worker running it ("" in this process)
        self.skipped: list[str] = []  # the parts it resumed instead of running ("scale 64px")

    def skip(self, stage: str) -> None:
        self.skipped.append(stage)
        super().skip(stage)

    @property
    def live(self) -> bool:
        return False  # the plan's display draws this stage's bar

    def _due(self, now: float, last: bool) -> bool:
        return self.owner.step_due(now)

    def _show(self, now: float, last: bool, total: float, completed: float, detail: str, rate: str) -> None:
        self.done, self.detail = _state(self, self.task.stage, total, completed, detail)
        self.owner.show_step(self)

    def message(self, text: str) -> None:
        """Show a stage's message (the poster's way of working) under the stage's name."""
        self.owner.stage_message(self, text.removeprefix(f"{self.task.stage}: "))

    def relayed(self, report: dict) -> None:
        """Show a report of this stage sent from the worker running it (see :class:`RelayProgress`).

        Parameters
        ----------
        report : dict
            ``{"message": text}`` (with ``skipped``: the part it names was resumed), or ``done``
            (fraction of the stage), ``detail`` (its step), ``left`` (seconds, or None) and
            ``elapsed`` (seconds since the stage began on the worker).
        """
        if "skipped" in report:
            self.skipped.append(str(report["skipped"]))
        if "message" in report:
            self.message(str(report["message"]))
            return
        self.done, self.detail = float(report.get("done") or 0.0), str(report.get("detail") or "")
        self.left_s = None if report.get("left") is None else float(report["left"])
        # the worker's own duration, not the clocks': worker and client clocks may differ
        self.began = time.perf_counter() - float(report.get("elapsed") or 0.0)
        self.owner.show_step(self)


class StageStopped(BaseException):
    """Raised inside a stage on a Dask worker, at a step, once the call that submitted it has ended.

    A ``BaseException``, as asyncio's ``CancelledError``: no ``except Exception`` in a stage
    takes it for a fault of its own. :func:`~.distributed.run_task` turns it into "stopped".
    """


class RelayProgress(Progress):
    """The reporter a stage run on a Dask worker gets: it sends its steps to the client, throttled,
    and stops the stage once its call has ended.

    It draws nothing. Each report is a dict of a few scalars (see :meth:`StageProgress.relayed`),
    sent at most every ``interval`` seconds and at each of the stage's parts' last step (a scale,
    feature splitting, the poster's end), and each :meth:`message`. ``send`` failing (the
    scheduler gone, a full queue) is logged and forgotten: a report lost never fails the stage.
    At a step (not a part's last, which its checkpoint follows), at most every
    :data:`STOP_CHECK_S` seconds, it calls ``stopped()`` and raises :class:`StageStopped` when
    that is true.

    Parameters
    ----------
    stage : str
        The task's stage (``"nnst"``): a part of it named otherwise is named in the step's text.
    send : callable or None
        ``send(report)``; on a worker, a :meth:`distributed.Worker.log_event` of it. None sends
        nothing (``--quiet``: the reporter only stops the stage).
    interval : float, optional
        Seconds between reports; default ``REPORT_INTERVAL_S``.
    stopped : callable, optional
        ``stopped() -> bool``: whether the stage's call has ended (cheap: no message to the scheduler).
    """

    def __init__(self, stage: str, send: Callable[[dict], None] | None, interval: float | None = None,
                 stopped: Callable[[], bool] | None = None):
        super().__init__(enabled=False)
        self.stage, self.send, self.stopped = stage, send, stopped
        self.interval = REPORT_INTERVAL_S if interval is None else interval
        self.began = time.perf_counter()
        self.last_sent = self.last_check = float("-inf")
        self.failed = 0  # reports that could not be sent

    def _due(self, now: float, last: bool) -> bool:
        if self.stopped is not None and not last and now - self.last_check >= STOP_CHECK_S:
            self.last_check = now
            if self.stopped():
                raise StageStopped(f"{self.stage}: its call has ended")
        if self.send is None or (not last and now - self.last_sent < self.interval):
            return False
        self.last_sent = now
        return True

    def _show(self, now: float, last: bool, total: float, completed: float, detail: str, rate: str) -> None:
        done, detail = _state(self, self.stage, total, completed, detail)
        self._send({"done": float(done), "detail": detail, "left": self.left_s, "elapsed": now - self.began})

    def message(self, text: str) -> None:
        """Send a stage's message (the poster's way of working)."""
        if self.send is not None:
            self._send({"message": str(text)})

    def skip(self, stage: str) -> None:
        """Send that a part was resumed: the plan's time left counts the work of the parts run."""
        self._skip(stage)
        if self.send is not None:
            self._send({"message": f"{stage}: resumed from checkpoint", "skipped": str(stage)})

    def _send(self, report: dict) -> None:
        try:
            self.send(report)
        except Exception as exc:  # progress is never worth a failed stage
            self.failed += 1
            if self.failed == 1:
                logger.warning("progress of a %s stage not sent (%s); the stage goes on", self.stage, exc)


class _Elapsed(ProgressColumn):
    """A bar's time since it started, as :func:`~nnst_hr.progress.format_seconds` writes it."""

    def render(self, task) -> Text:
        return Text(format_seconds(task.elapsed or 0.0))


class PlanProgress:
    """``on_event`` for an executor that shows the plan's stages, and the steps of the running ones.

    Parameters
    ----------
    graph : Graph
        The plan's tasks.
    cache : Cache
        The tasks it holds are not to be computed.
    stream : file-like, optional
        Where to write; default ``sys.stderr`` (looked up at each write).
    enabled : bool
        False writes nothing (``--quiet``) and gives stages no reporter.
    console : rich.console.Console, optional
        Overrides ``stream``; live bars when it is a terminal that can redraw (``TERM=dumb``
        gets the plain lines).
    """

    def __init__(self, graph: Graph, cache, stream: TextIO | None = None, enabled: bool = True,
                 console: Console | None = None):
        self.graph = graph
        self.n_runs = len(graph.runs)
        self.todo = {task.key: task for task in needed(graph, cache)}  # to compute, not yet done or failed
        self.n_todo = len(self.todo)
        self._shapes: dict = {}  # the inputs' shapes, by inputs key (task_work's cache)
        self.work = {key: task_work(graph, task, self._shapes) for key, task in self.todo.items()}
        # a kind's device: kinds measured on it lend their speed to the kinds not measured yet
        self.devices = {task.stage: task_device(graph, task) for task in self.todo.values()}
        self.spent: dict[str, list[float]] = {}  # stage -> [seconds, work] of its tasks computed so far
        self.running: dict[str, tuple[float, str]] = {}  # started, not yet ended -> (when, worker or "")
        self.width = 1  # the most workers seen running stages at once (1 in process)
        self.stages: dict[str, StageProgress] = {}  # the running tasks' reporters, by key
        self.enabled = enabled
        self.console = console or Console(file=stream, stderr=stream is None, highlight=False)
        self.start = time.perf_counter()
        self.last_step = float("-inf")
        self._said: dict[str, str] = {}  # stage kind -> its latest message (plain lines)
        self._bars: Bars | None = None
        self._plan_bar: TaskID | None = None
        self._stage_bars: dict[str, TaskID] = {}  # a running task's bar, by key
        kinds = Counter(task.stage for task in self.todo.values())
        # as wide as the long stages' names: the bars keep their place from one to the next
        self._head_width = max((len(f"run {self.n_runs} of {self.n_runs}: {s}") for s in kinds
                                if s in ("nnst", "poster")), default=0)
        self._print(f"{self.n_runs} run{'s' * (self.n_runs != 1)}, {self.n_todo} of {len(graph)} stages to compute "
                    f"({', '.join(f'{n} {s}' for s, n in kinds.items()) or 'all cached'})")

    @property
    def live(self) -> bool:
        """Whether the plan is drawn as live bars (enabled, on a terminal that can redraw)."""
        return self.enabled and self.console.is_terminal and not self.console.is_dumb_terminal

    # ---- the executor's side
    def __call__(self, event: str, task: Task, info: dict) -> None:
        if event == "cached":
            return
        if event == "start":
            worker = _worker_label(info)
            self.running[task.key] = (time.perf_counter(), worker)
            self.width = max(self.width, len({where for _, where in self.running.values()}))
            stage = self.stages.get(task.key)
            if stage is not None and worker:
                stage.worker = worker
                if task.key in self._stage_bars:
                    self._bars.update(self._stage_bars[task.key], description=self._head(task, worker))
            if stage is None or not self.live:  # on a terminal the stage's bar shows it
                self._print(f"{self._head(task, worker)} ...")
            self._update_plan()
            return
        self.running.pop(task.key, None)
        self.todo.pop(task.key, None)
        self._end_stage(task.key)
        head = self._head(task)
        if event == "failed":
            if not info.get("upstream"):
                runs = f"run{'s' * (len(task.run_ids) != 1)} {', '.join(str(r + 1) for r in task.run_ids)}"
                self._print(f"{head} failed: {info['message']} ({runs})")
            self._update_plan()
            return
        # a resumed task's seconds are those of the scales it ran
        ran = self._work_run(task, info.get("resumed") or ())
        if ran > 0:
            spent = self.spent.setdefault(task.stage, [0.0, 0.0])
            spent[0] += info["seconds"]
            spent[1] += ran
        # the scales as the step lines name them ("scale 64px"), not the states' names ("scale0")
        resumed = [stage.name for stage in resumed_stages(self.graph, task, info.get("resumed") or (), self._shapes)]
        self._print(f"{head} done in {format_seconds(info['seconds'])}"
                    f"{' (' + ', '.join(resumed) + ' resumed from checkpoints)' if resumed else ''}; "
                    f"plan: {format_seconds(time.perf_counter() - self.start)} so far, {self._left_text()}")
        self._update_plan()

    def reporter(self, task: Task) -> StageProgress | None:
        """The reporter of ``task``'s steps, about to run (None when disabled).

        The executor's ``progress``, called before the task's ``"start"``: it opens the stage's
        bar on a terminal. In process the stage reports into it; on Dask the client feeds it the
        worker's reports (:meth:`StageProgress.relayed`).
        """
        if not self.enabled:
            return None
        stage = self.stages[task.key] = StageProgress(self, task)
        if self.live:
            self._open()
            if task.key in self._stage_bars:  # run again (its worker was lost)
                self._bars.remove_task(self._stage_bars.pop(task.key))
            self._stage_bars[task.key] = self._bars.add_task(self._head(task), total=None, detail="", left="")
        return stage

    def time_left(self) -> float | None:
        """Seconds left for the tasks still to compute; None while a stage kind among them has no rate.

        Returns
        -------
        float or None
            Each running stage's own estimate, plus each other task's work times the seconds per
            unit of work of its kind (less what a running one has run), divided by the most
            workers seen running at once, and at least the longest task's (see the module docstring).
        """
        return self._estimate()[0]

    def _estimate(self) -> tuple[float | None, str | None]:
        """(:meth:`time_left`, the first stage kind still to compute that has no rate, or None)."""
        now = time.perf_counter()
        rates = {stage: seconds / work for stage, (seconds, work) in self.spent.items() if work > 0}
        own = {key: stage.left_s for key, stage in self.stages.items()
               if key in self.todo and stage.left_s is not None}
        first: dict[str, list[float]] = {}  # a kind with no task done: [seconds, work] of its running ones
        for key, left in own.items():
            if self.todo[key].stage not in rates:
                kind = first.setdefault(self.todo[key].stage, [0.0, 0.0])
                kind[0] += self._ran(key, now) + left
                kind[1] += self._work_run(self.todo[key], self.stages[key].skipped)
        rates.update({stage: seconds / work for stage, (seconds, work) in first.items() if work > 0})
        rates.update(self._borrowed(rates, first))
        total = longest = 0.0
        for key, task in self.todo.items():
            if key in own:
                left = own[key]
            elif task.stage not in rates:
                return None, task.stage
            else:
                left = rates[task.stage] * self.work[key]
                if key in self.running or key in self.stages:  # running, no estimate of its own yet
                    left = max(0.0, left - self._ran(key, now))
            total += left
            longest = max(longest, left)
        return max(total / self.width, longest), None

    def _borrowed(self, rates: dict[str, float], first: dict[str, list[float]]) -> dict[str, float]:
        """Rates of the kinds still to run that have none: their device's measured speed.

        A modelled kind's work is in prior-seconds, so its rate is how fast this machine runs
        against the priors' machine; the kinds measured on a device (done, or running with an
        estimate of their own) pool theirs, as :class:`~nnst_hr.progress.Progress` scales the
        priors of a run's terms not measured yet. The priors are one 2-core CPU's: a GPU none of
        them ran on has no speed (it is 10x or more away), a CPU device takes the priors as they
        are once any kind has been measured, as a run does. Torch and the poster's Numba kernels
        lend each other nothing: how fast each runs against its priors differs by machine.
        """
        pooled: dict[str, list[float]] = {}
        for stage, (seconds, units) in [*self.spent.items(), *first.items()]:
            device = self.devices.get(stage)
            if device is not None and units > 0:
                pool = pooled.setdefault(device, [0.0, 0.0])
                pool[0] += seconds
                pool[1] += units
        out = {}
        for stage, device in self.devices.items():
            if stage not in rates and device in pooled:
                out[stage] = pooled[device][0] / pooled[device][1]
            elif stage not in rates and device in ("cpu", NUMBA) and pooled:
                out[stage] = 1.0
        return out

    def _work_run(self, task: Task, resumed: Collection[str]) -> float:
        """The work of ``task`` less that of the parts it resumed (:func:`resumed_work`)."""
        whole = self.work.get(task.key) or task_work(self.graph, task, self._shapes)
        return max(0.0, whole - resumed_work(self.graph, task, resumed, self._shapes)) if resumed else whole

    def _ran(self, key: str, now: float) -> float:
        """Seconds a running task has run (as its stage's reports say, else since its "start")."""
        stage = self.stages.get(key)
        return now - (stage.began if stage is not None else self.running[key][0])

    def _left_text(self) -> str:
        left, waiting = self._estimate()
        return _about(left) if left is not None else f"time left known after the first {waiting} stage"

    def close(self) -> None:
        """Stop the live bars (they stay on screen) and give the terminal back its cursor."""
        if self._bars is not None:
            self._bars.stop()
            atexit.unregister(self.close)
            self._bars = self._plan_bar = None
            self._stage_bars = {}

    def __enter__(self) -> PlanProgress:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # ---- the stages' side (StageProgress)
    def step_due(self, now: float) -> bool:
        """Whether a step of a stage run here is shown: a bar update, or a plain line (throttled)."""
        if now - self.last_step < (REFRESH_INTERVAL_S if self.live else REPORT_INTERVAL_S):
            return False
        self.last_step = now
        return True

    def show_step(self, stage: StageProgress) -> None:
        """Show a running stage's latest step: its bar and the plan's, or a plain line."""
        if self.live:
            bar = self._stage_bars.get(stage.task.key)
            if bar is not None:
                self._bars.update(bar, total=1.0, completed=stage.done, detail=stage.detail,
                                  left=_about(stage.left_s))
            self._update_plan()
            return
        left = self.time_left()
        self._print(f"{self._head(stage.task, stage.worker)}: {stage.detail}"
                    + (f", {_about(stage.left_s)}" if stage.left_s is not None else "")
                    + (f"; plan {_about(left)}" if left is not None else ""))

    def stage_message(self, stage: StageProgress, text: str) -> None:
        """A stage's message: under its name on its bar, or a plain line unless its kind's last one said it."""
        if self.live:
            bar = self._stage_bars.get(stage.task.key)
            if bar is not None:
                self._bars.update(bar, detail=text)
            return
        if self._said.get(stage.task.stage) != text:  # a sweep's posters are all made the same way
            self._said[stage.task.stage] = text
            self._print(f"{self._head(stage.task, stage.worker)}: {text}")

    # ---- drawing
    def _head(self, task: Task, worker: str = "") -> str:
        head = f"run {min(task.run_ids) + 1} of {self.n_runs}: {task.stage}"
        return f"{head} [{worker}]" if worker else head

    def _print(self, text: str) -> None:
        if not self.enabled:
            return
        if self._bars is not None:
            self._bars.console.print(text, markup=False, highlight=False, soft_wrap=True)
            return
        print(text, file=self.console.file, flush=True)

    def _open(self) -> None:
        if self._bars is not None:
            return
        # the table spans the terminal; on a narrow one the details are cut, not the times
        detail = Column(no_wrap=True, overflow="ellipsis", ratio=1)
        self._bars = Bars(
            # not markup: "[worker 0]" is text
            TextColumn("{task.description}", markup=False,
                       table_column=Column(no_wrap=True, min_width=self._head_width)),
            BarColumn(bar_width=BAR_WIDTH, finished_style=FINISHED_BAR),
            TextColumn("{task.fields[detail]}", markup=False, table_column=detail),
            _Elapsed(table_column=Column(no_wrap=True)),
            TextColumn("{task.fields[left]}", table_column=Column(no_wrap=True)),
            console=self.console, refresh_per_second=BARS_PER_SECOND, expand=True,
        )
        self._bars.start()
        atexit.register(self.close)  # an interrupted plan still gets its cursor back
        self._plan_bar = self._bars.add_task("plan", total=max(1, self.n_todo), detail="", left="")

    def _update_plan(self) -> None:
        """Redraw the bars with the plan's: stages done (and the running stages' fractions), time left."""
        if not self.live:
            return
        self._open()
        finished = self.n_todo - len(self.todo)
        detail = f"{finished} of {self.n_todo} stages"
        if len(self.running) > 1:  # on Dask: several at once
            detail += f", {len(self.running)} running"
        left, waiting = self._estimate()
        if left is None:
            detail += f"; time left known after the first {waiting} stage"
        running = sum(stage.done for key, stage in self.stages.items() if key in self.todo)
        self._bars.update(self._plan_bar, completed=finished + running, detail=detail, left=_about(left))
        self._bars.refresh()

    def _end_stage(self, key: str) -> None:
        self.stages.pop(key, None)
        bar = self._stage_bars.pop(key, None)
        if self._bars is not None and bar is not None:
            self._bars.remove_task(bar)


def _worker_label(info: dict) -> str:
    """``"worker NAME"`` for a task started on a Dask worker (its name, else its address), or ``""``."""
    name = str(info.get("worker_name") or info.get("worker") or "").removeprefix("tcp://")
    return f"worker {name}" if name else ""


def _about(seconds: float | None) -> str:
    return "" if seconds is None else f"about {format_seconds(seconds)} left"
