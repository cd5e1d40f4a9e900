"""Progress of a long run on stderr: stage, step, rate and the estimated time left.

The time left comes from a work plan: each stage is a number of steps and a cost
per step (proportional to its pixel count), so the estimate holds across scales
whose steps differ in cost by 16x. A stage that is not made of equal steps (the
poster's coarse-to-fine synthesis) reports the fraction of it that is done instead.

On a terminal the stages are drawn as live :mod:`rich` bars; elsewhere (CI, logs,
files) they are written as plain lines, at most one every ``REPORT_INTERVAL_S``
seconds plus each stage's last step.

Examples
--------
>>> import io
>>> out = io.StringIO()
>>> progress = Progress(stream=out)
>>> progress.plan([("scale 64px", 2, 1.0)])
>>> progress.start("scale 64px")
>>> progress.step(0, loss=0.5)
>>> out.getvalue()
'scale 64px: step 1/2, loss 0.5000\\n'
"""

from __future__ import annotations

import atexit
import time
from typing import TextIO

from rich.console import Console
from rich.progress import BarColumn, TaskID, TextColumn
from rich.progress import Progress as Bars

REPORT_INTERVAL_S = 2.0  # at most one plain line per this many seconds (plus stage ends)
REFRESH_INTERVAL_S = 0.1  # at most one redraw of the live bars per this many seconds (plus stage ends)


def format_seconds(seconds: float) -> str:
    """A duration as a short text.

    Parameters
    ----------
    seconds : float
        The duration; negative values count as 0.

    Returns
    -------
    str
        Seconds, minutes and seconds, or hours and minutes.

    Examples
    --------
    >>> format_seconds(75.4), format_seconds(3725), format_seconds(9)
    ('1m15s', '1h02m', '9s')
    """
    seconds = max(0, int(round(seconds)))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


def format_rate(seconds_per_step: float) -> str:
    """Steps per second, or seconds per step when a step takes a second or more.

    Parameters
    ----------
    seconds_per_step : float
        The measured time of one step.

    Returns
    -------
    str
        The rate with one decimal and its unit.

    Examples
    --------
    >>> format_rate(0.25), format_rate(2.5)
    ('4.0 steps/s', '2.5 s/step')
    """
    if seconds_per_step >= 1.0:
        return f"{seconds_per_step:.1f} s/step"
    return f"{1.0 / max(seconds_per_step, 1e-9):.1f} steps/s"


def _loss_text(loss) -> str:
    """``", loss 0.1234"``; reads a tensor's value (a host sync on a GPU), so only when shown."""
    return "" if loss is None else f", loss {float(loss):.4f}"


class Progress:
    """Stage and step reporter with a cost-weighted estimate of the time left.

    ``plan([(stage, steps, cost_per_step), ...])`` declares the work; ``start(stage)``
    opens a stage; ``step(i, loss)`` reports step ``i`` (0-based) of the current stage;
    ``skip(stage)`` marks a stage done without running it (resumed runs);
    ``fraction(stage, done, detail)`` reports a stage of unequal steps by the fraction done;
    ``message(text)`` prints a line (above the live bars on a terminal). ``left_s`` is the latest
    estimate of the seconds left (None until known).

    Parameters
    ----------
    enabled : bool
        False reports nothing.
    stream : file-like, optional
        Where to write; default ``sys.stderr`` (looked up at each write).
    prefix : str
        Put before every plain line.
    console : rich.console.Console, optional
        Overrides ``stream``; live bars are drawn when ``console.is_terminal`` (``TERM=dumb``
        gets the plain lines).
    """

    def __init__(self, enabled: bool = True, stream: TextIO | None = None, prefix: str = "",
                 console: Console | None = None):
        self.enabled = enabled
        self.console = console or Console(file=stream, stderr=stream is None, highlight=False)
        self.prefix = prefix
        self.stages: dict[str, tuple[int, float]] = {}
        self.done_cost = 0.0
        self.measured_cost = 0.0
        self.measured_time = 0.0
        self.current: str | None = None
        self.last_report = 0.0
        self.last_step_time = 0.0
        self.stage_time = 0.0  # the current stage's measured time and steps, for its rate
        self.stage_steps = 0
        self.last_fraction: tuple[float, float] | None = None  # (time, done) of the latest fraction
        self.left_s: float | None = None  # seconds left as of the latest report (None: not known yet)
        self._bars: Bars | None = None
        self._task: TaskID | None = None
        self._last_refresh = 0.0

    @property
    def live(self) -> bool:
        """Whether the stages are drawn as live bars (an enabled reporter on a terminal that can redraw)."""
        return self.enabled and self.console.is_terminal and not self.console.is_dumb_terminal

    def plan(self, stages: list[tuple[str, int, float]]) -> None:
        """Declare the work: ``(stage, steps, cost_per_step)`` in the order they run.

        Parameters
        ----------
        stages : list of (str, int, float)
            A stage's name, its number of steps and the relative cost of one (e.g. its pixels).
        """
        self.stages = {name: (steps, float(cost)) for name, steps, cost in stages}
        self.done_cost = 0.0

    @property
    def total_cost(self) -> float:
        return sum(steps * cost for steps, cost in self.stages.values())

    def skip(self, stage: str) -> None:
        """Count a planned ``stage`` as done without running it (resumed from a checkpoint)."""
        steps, cost = self.stages.get(stage, (0, 0.0))
        self.done_cost += steps * cost
        self.message(f"{stage}: resumed from checkpoint")

    def start(self, stage: str) -> None:
        """Open ``stage`` (a planned one; an unplanned one counts its steps but adds no cost)."""
        self._begin(stage, time.perf_counter(), self.stages.get(stage, (None, 0.0))[0])

    def _begin(self, stage: str, now: float, total: float | None) -> None:
        self.current = stage
        self.last_step_time = now
        self.stage_time, self.stage_steps = 0.0, 0
        self.last_fraction = None
        if self.live:
            self._open_bar(stage, total)

    def step(self, index: int, loss=None) -> None:
        """Report that step ``index`` (0-based) of the current stage is done.

        Parameters
        ----------
        index : int
            The step; the stage's first (index 0) is left out of the rate, as it sets up kernels.
        loss : float or 0-d tensor, optional
            Shown beside the step; read (``float(loss)``, a host sync on a GPU) only when a line or
            a bar refresh shows it.
        """
        now = time.perf_counter()
        steps, cost = self.stages.get(self.current, (index + 1, 0.0))
        self.done_cost += cost
        if index > 0:
            # a stage's first step also sets up kernels for its image size: the run's first step
            # took up to 50x a later one, and counting it announced "50m left" for a 1-minute run
            self.measured_cost += cost
            self.measured_time += now - self.last_step_time
            self.stage_time += now - self.last_step_time
            self.stage_steps += 1
        self.last_step_time = now
        self.left_s = None
        if self.measured_cost > 0:
            self.left_s = (self.total_cost - self.done_cost) * self.measured_time / self.measured_cost
        last = index + 1 == steps
        if not self._due(now, last):
            return
        rate = format_rate(self.stage_time / self.stage_steps) if self.stage_steps else ""
        self._show(now, last, steps, index + 1, f"step {index + 1}/{steps}{_loss_text(loss)}", rate)

    def fraction(self, stage: str, done: float, detail: str = "") -> None:
        """Report that a fraction ``done`` (0..1) of ``stage`` is complete.

        For stages whose steps differ in cost (coarse-to-fine levels), reported after each step.
        The time left is that of this stage alone, from the rate of the latest step: an average
        since the stage began counts its setup and the small levels' higher cost per pixel
        (it predicted 8 h for a 3-minute 8K poster).

        Parameters
        ----------
        stage : str
            The stage's name; a new name opens a new stage (a new bar on a terminal).
        done : float
            Fraction of the stage done, non-decreasing between reports of one stage.
        detail : str
            Where the stage is (e.g. ``"level 2/3, iteration 4/8"``), shown after the stage's name.
        """
        now = time.perf_counter()
        if stage != self.current:
            self._begin(stage, now, total=1.0)
        self.left_s = None
        if self.last_fraction is not None and done > self.last_fraction[1]:
            last_time, last_done = self.last_fraction
            self.left_s = (now - last_time) * (1.0 - done) / (done - last_done)
        self.last_fraction = (now, done)
        last = done >= 1.0
        if self._due(now, last):
            self._show(now, last, 1.0, min(done, 1.0), detail, "")

    def message(self, text: str) -> None:
        """Print one line (above the live bars on a terminal)."""
        if not self.enabled:
            return
        if self.live:
            console = self._bars.console if self._bars is not None else self.console
            console.print(f"{self.prefix}{text}", markup=False, highlight=False, soft_wrap=True)
            return
        print(f"{self.prefix}{text}", file=self.console.file, flush=True)

    def close(self) -> None:
        """Stop the live bars (they stay on screen) and give the terminal back its cursor."""
        if self._bars is not None:
            self._bars.stop()
            atexit.unregister(self.close)
            self._bars, self._task = None, None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _due(self, now: float, last: bool) -> bool:
        """Whether a report is shown: a bar refresh is due (on a terminal), or a plain line is."""
        if self.live:
            return last or self._bars is None or now - self._last_refresh >= REFRESH_INTERVAL_S
        return self._report_due(now, last)

    def _show(self, now: float, last: bool, total: float, completed: float, detail: str, rate: str) -> None:
        """Show the current stage at ``completed`` of ``total``: update its live bar, or write a plain line.

        A reporter that shows its stages elsewhere (the experiment's plan display) overrides this
        and :meth:`_due`; the estimate (:attr:`left_s`) stays here.
        """
        left = "" if self.left_s is None else f"about {format_seconds(self.left_s)} left"
        if self.live:
            self._update_bar(now, last, total, completed=completed, steps=detail, rate=rate, left=left)
            return
        self.message(f"{self.current}: {detail}{', ' + left if left else ''}")

    def _report_due(self, now: float, last: bool) -> bool:
        """Whether a plain line is due: a stage's last step, or ``REPORT_INTERVAL_S`` since the last line."""
        if not self.enabled or (now - self.last_report < REPORT_INTERVAL_S and not last):
            return False
        self.last_report = now
        return True

    def _open_bar(self, stage: str, total: float | None) -> None:
        if self._bars is None:
            self._bars = Bars(
                TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[steps]}"),
                TextColumn("{task.fields[rate]}"), TextColumn("{task.fields[left]}"),
                console=self.console, auto_refresh=False,
            )
            self._bars.start()
            atexit.register(self.close)  # an interrupted run still gets its cursor back
        elif self._task is not None:
            self._bars.stop_task(self._task)
        self._task = self._bars.add_task(f"{self.prefix}{stage}", total=total, steps="", rate="", left="")
        self._last_refresh = 0.0

    def _update_bar(self, now: float, last: bool, total: float | None, **fields) -> None:
        if self._bars is None:  # reported again after the stage's end
            self._open_bar(self.current, total)
        self._bars.update(self._task, **fields)
        if last:
            self.close()  # the finished bar stays on screen; the next stage opens a new one
        elif now - self._last_refresh >= REFRESH_INTERVAL_S:
            self._bars.refresh()
            self._last_refresh = now
