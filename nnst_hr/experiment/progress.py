"""Progress of an experiment plan on stderr: its stages, the steps of the one running here, time left.

:class:`PlanProgress` is the executor's ``on_event`` (a line per stage event: ``run 3 of 8: nnst
...``, ``run 3 of 8: nnst done in 41s; plan: 3m02s so far, about 5m left``) and, through
:meth:`PlanProgress.reporter`, gives each task run in this process a :class:`StageProgress`:
the ``progress=`` that :func:`~.stages.nnst` and :func:`~.stages.poster` pass on to
``synthesize_nnst`` and ``synthesize_poster_stage``, which report their steps into it.

On a terminal the plan and the running stage are two live :mod:`rich` bars (stages done and the
plan's time left; the stage's scale and step, rate and time left), with the stage events' lines
printed above them. Elsewhere (logs, pipes, CI) a stage's steps are plain lines, at most one every
``REPORT_INTERVAL_S`` seconds::

    run 3 of 8: nnst: scale 64px: step 12/50, loss 0.1234, about 8s left; plan about 4m10s left

The plan's time left is, per stage kind, the seconds per unit of work (:func:`task_work`: pixels
x steps) of the tasks of that kind computed so far, times the work of those still to run; the
stage running in this process counts its own estimate of what is left, and the first task of a
kind sets that kind's rate from it. Until every kind still to run has a rate, it is not known.

On Dask (:mod:`.distributed`) the stages run in other processes: the plan's lines and bar are
shown, a stage's steps are not.
"""

from __future__ import annotations

import atexit
import time
from collections import Counter
from typing import TextIO

from rich.console import Console
from rich.progress import BarColumn, ProgressColumn, TaskID, TextColumn
from rich.progress import Progress as Bars
from rich.table import Column
from rich.text import Text

from ..nnst import SPLIT_STEP_COST
from ..progress import REFRESH_INTERVAL_S, REPORT_INTERVAL_S, Progress, format_seconds
from . import stages
from .execute import needed
from .graph import Graph, Task

BARS_PER_SECOND = 4  # redraws of the live bars (the elapsed times tick between reports)
BAR_WIDTH = 12  # characters: leaves room for the step and the times on an 80-column terminal


def task_work(graph: Graph, task: Task) -> float:
    """A task's work relative to the other tasks of its stage: pixels x steps (1 where not known).

    Pixels are the long side squared (a pair's aspect ratio is not read). Estimating a task from
    the seconds per unit of work of its kind, rather than the kind's mean, holds when runs differ
    in size or steps: a 256 px NNST is 4x the work of a 128 px one.

    Parameters
    ----------
    graph : Graph
        The plan's graph (``graph.specs`` gives a run's configs).
    task : Task
        One of its tasks.

    Returns
    -------
    float
        Positive; 1 for ``inputs`` and for a task of a graph without run specs.
    """
    specs = getattr(graph, "specs", None)
    if not specs or not task.run_ids:
        return 1.0
    spec = specs[task.run_ids[0]]
    nnst, poster = spec.nnst, spec.poster
    if task.stage == "nnst":
        sides = nnst.scales()
        steps = sum(nnst.steps_at(len(sides) - 1 - i) * side**2 for i, side in enumerate(sides))
        # + one pass at full size: the final matching, so that 0 steps are not 0 work
        return float(steps + SPLIT_STEP_COST * nnst.split_steps * nnst.size**2 + nnst.size**2)
    if task.stage == "color":
        return float(nnst.size**2 * max(1, nnst.color_iterations))
    if task.stage == "poster":
        return float(poster.out_size**2 * poster.search_vote_iters * max(1, poster.patchmatch_iters))
    if task.stage == "poster_color":
        return float(poster.out_size**2 * max(1, nnst.color_iterations))
    if task.stage == "scores":
        return float((poster.out_size if stages.has_poster(nnst, poster) else nnst.size) ** 2)
    return 1.0


class StageProgress(Progress):
    """The reporter a stage run in this process gets as ``progress=``: its steps go to the plan's display.

    It keeps :class:`~nnst_hr.progress.Progress`'s estimate of the stage's time left
    (:attr:`left_s`: cost-weighted steps, or the latest rate of a fraction) and draws nothing itself.

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

    @property
    def live(self) -> bool:
        return False  # the plan's display draws this stage's bar

    def _due(self, now: float, last: bool) -> bool:
        return self.owner.step_due(now)

    def _show(self, now: float, last: bool, total: float, completed: float, detail: str, rate: str) -> None:
        self.done = self.done_cost / self.total_cost if self.total_cost > 0 else completed / total
        self.detail = detail if self.current == self.task.stage else f"{self.current}: {detail}"
        self.owner.show_step(self)

    def message(self, text: str) -> None:
        """Show a stage's message (the poster's way of working) under the stage's name."""
        self.owner.stage_message(self, text.removeprefix(f"{self.task.stage}: "))


class _Elapsed(ProgressColumn):
    """A bar's time since it started, as :func:`~nnst_hr.progress.format_seconds` writes it."""

    def render(self, task) -> Text:
        return Text(format_seconds(task.elapsed or 0.0))


class PlanProgress:
    """``on_event`` for an executor that shows the plan's stages, and the steps of those run in this process.

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
        self.work = {key: task_work(graph, task) for key, task in self.todo.items()}
        self.spent: dict[str, list[float]] = {}  # stage -> [seconds, work] of its tasks computed so far
        self.running: set[str] = set()  # started elsewhere (Dask), not yet done
        self.stage: StageProgress | None = None  # the task running in this process
        self.enabled = enabled
        self.console = console or Console(file=stream, stderr=stream is None, highlight=False)
        self.start = time.perf_counter()
        self.last_step = float("-inf")
        self._said: dict[str, str] = {}  # stage kind -> its latest message (plain lines)
        self._bars: Bars | None = None
        self._plan_bar: TaskID | None = None
        self._stage_bar: TaskID | None = None
        kinds = Counter(task.stage for task in self.todo.values())
        # as wide as the long stages' names: the bars keep their place from one to the next
        self._head_width = max((len(f"run {self.n_runs} of {self.n_runs}: {s}") for s in kinds
                                if s in ("nnst", "poster")), default=0)
        self._print(f"{self.n_runs} runs, {self.n_todo} of {len(graph)} stages to compute "
                    f"({', '.join(f'{n} {s}' for s, n in kinds.items()) or 'all cached'})")

    @property
    def live(self) -> bool:
        """Whether the plan is drawn as live bars (enabled, on a terminal that can redraw)."""
        return self.enabled and self.console.is_terminal and not self.console.is_dumb_terminal

    # ---- the executor's side
    def __call__(self, event: str, task: Task, info: dict) -> None:
        if event == "cached":
            return
        head = self._head(task)
        if event == "start":
            here = self.stage is not None and self.stage.task.key == task.key
            if not here:
                self.running.add(task.key)
            if not (here and self.live):  # on a terminal the stage's bar shows it
                self._print(f"{head} ...")
            self._update_plan()
            return
        self.running.discard(task.key)
        self.todo.pop(task.key, None)
        if self.stage is not None and self.stage.task.key == task.key:
            self._end_stage()
        if event == "failed":
            if not info.get("upstream"):
                self._print(f"{head} failed: {info['message']} (runs {', '.join(str(r + 1) for r in task.run_ids)})")
            self._update_plan()
            return
        spent = self.spent.setdefault(task.stage, [0.0, 0.0])
        spent[0] += info["seconds"]
        spent[1] += self.work.get(task.key) or task_work(self.graph, task)
        self._print(f"{head} done in {format_seconds(info['seconds'])}; "
                    f"plan: {format_seconds(time.perf_counter() - self.start)} so far, {self._left_text()}")
        self._update_plan()

    def reporter(self, task: Task) -> StageProgress | None:
        """The reporter of ``task``'s steps, about to run in this process (None when disabled).

        The in-process executor's ``progress``, called before the task's ``"start"``: it opens
        the stage's bar on a terminal.
        """
        if not self.enabled:
            return None
        self.stage = StageProgress(self, task)
        if self.live:
            self._open()
            if self._stage_bar is not None:
                self._bars.remove_task(self._stage_bar)
            self._stage_bar = self._bars.add_task(self._head(task), total=None, detail="", left="")
        return self.stage

    def time_left(self) -> float | None:
        """Seconds left for the tasks still to compute; None while a stage kind among them has no rate.

        Returns
        -------
        float or None
            The running stage's own estimate, plus each other task's work times the seconds per
            unit of work of its kind (see the module docstring).
        """
        return self._estimate()[0]

    def _estimate(self) -> tuple[float | None, str | None]:
        """(:meth:`time_left`, the first stage kind still to compute that has no rate, or None)."""
        now = time.perf_counter()
        rates = {stage: seconds / work for stage, (seconds, work) in self.spent.items() if work > 0}
        stage = self.stage
        own = stage.left_s if stage is not None and stage.task.key in self.todo else None
        if own is not None and stage.task.stage not in rates:
            rates[stage.task.stage] = (now - stage.began + own) / self.work[stage.task.key]
        left = 0.0
        for key, task in self.todo.items():
            if own is not None and key == stage.task.key:
                left += own
            elif task.stage not in rates:
                return None, task.stage
            elif stage is not None and key == stage.task.key:  # running, no estimate of its own yet
                left += max(0.0, rates[task.stage] * self.work[key] - (now - stage.began))
            else:
                left += rates[task.stage] * self.work[key]
        return left, None

    def _left_text(self) -> str:
        left, waiting = self._estimate()
        return _about(left) if left is not None else f"time left known after the first {waiting} stage"

    def close(self) -> None:
        """Stop the live bars (they stay on screen) and give the terminal back its cursor."""
        if self._bars is not None:
            self._bars.stop()
            atexit.unregister(self.close)
            self._bars = self._plan_bar = self._stage_bar = None

    def __enter__(self) -> PlanProgress:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # ---- the stage's side (StageProgress)
    def step_due(self, now: float) -> bool:
        """Whether a stage's step is shown: a bar update, or a plain line (throttled across stages)."""
        if now - self.last_step < (REFRESH_INTERVAL_S if self.live else REPORT_INTERVAL_S):
            return False
        self.last_step = now
        return True

    def show_step(self, stage: StageProgress) -> None:
        """Show the running stage's latest step: its bar and the plan's, or a plain line."""
        if self.live:
            self._bars.update(self._stage_bar, total=1.0, completed=stage.done, detail=stage.detail,
                              left=_about(stage.left_s))
            self._update_plan()
            return
        left = self.time_left()
        self._print(f"{self._head(stage.task)}: {stage.detail}"
                    + (f", {_about(stage.left_s)}" if stage.left_s is not None else "")
                    + (f"; plan {_about(left)}" if left is not None else ""))

    def stage_message(self, stage: StageProgress, text: str) -> None:
        """A stage's message: under its name on its bar, or a plain line unless its kind's last one said it."""
        if self.live:
            self._bars.update(self._stage_bar, detail=text)
            return
        if self._said.get(stage.task.stage) != text:  # a sweep's posters are all made the same way
            self._said[stage.task.stage] = text
            self._print(f"{self._head(stage.task)}: {text}")

    # ---- drawing
    def _head(self, task: Task) -> str:
        return f"run {min(task.run_ids) + 1} of {self.n_runs}: {task.stage}"

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
            TextColumn("{task.description}", table_column=Column(no_wrap=True, min_width=self._head_width)),
            BarColumn(bar_width=BAR_WIDTH),
            TextColumn("{task.fields[detail]}", table_column=detail), _Elapsed(table_column=Column(no_wrap=True)),
            TextColumn("{task.fields[left]}", table_column=Column(no_wrap=True)),
            console=self.console, refresh_per_second=BARS_PER_SECOND, expand=True,
        )
        self._bars.start()
        atexit.register(self.close)  # an interrupted plan still gets its cursor back
        self._plan_bar = self._bars.add_task("plan", total=max(1, self.n_todo), detail="", left="")

    def _update_plan(self) -> None:
        """Redraw the bars with the plan's: stages done (and the running stage's fraction), time left."""
        if not self.live:
            return
        self._open()
        finished = self.n_todo - len(self.todo)
        detail = f"{finished} of {self.n_todo} stages"
        if self.running:  # on Dask: several run at once, with no bar of their own
            detail += f", {len(self.running)} running"
        left, waiting = self._estimate()
        if left is None:
            detail += f"; time left known after the first {waiting} stage"
        self._bars.update(self._plan_bar, completed=finished + (self.stage.done if self.stage else 0.0),
                          detail=detail, left=_about(left))
        self._bars.refresh()

    def _end_stage(self) -> None:
        self.stage = None
        if self._bars is not None and self._stage_bar is not None:
            self._bars.remove_task(self._stage_bar)
            self._stage_bar = None


def _about(seconds: float | None) -> str:
    return "" if seconds is None else f"about {format_seconds(seconds)} left"
