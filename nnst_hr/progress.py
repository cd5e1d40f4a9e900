"""Progress of a long run on stderr: stage, step, rate and the estimated time left of the whole run.

The time left comes from a work plan: the run's stages (:class:`Stage`) in the order they run,
each a setup (what happens before its first step is reported) and a number of steps, both made
of kinds of work (:class:`Work`): a ``term`` such as a hypercolumn step, the lattice searches of a
feature-splitting step or a poster iteration, and its ``units`` (pixels, multiply-adds), which
follow what the code does. A term's seconds per unit start as its ``prior`` and are replaced by
what it measures as soon as some of it has been done; the terms not measured yet keep their
priors, scaled by how fast the measured terms of their device run against their own priors. So
the estimate holds across scales whose steps differ in cost by 16x, across steps that search and
steps that do not, and for stages still to come (a poster after the NNST stage).

What a report measures is the time since the previous report, and the work in between: a step, a
stage's setup (with any stage that reports nothing, such as the final match), or a fraction of a
stage. A report of several terms measures the ones not yet measured alone: each gets its share of
the time the others do not account for. A term's rate is the mean of its measures in the latest
stage that did some of it (the latest scale's steps, not the smaller scales' before it); in a
stage that reports fractions (the poster's coarse-to-fine synthesis, whose small levels cost more
per pixel) it is the latest measure alone. The first step of each stage is not measured: it also
sets up kernels for the stage's image size.

A step's cost is not quite proportional to its units: a fixed part dominates small images and
caches fail large ones, by amounts that differ from machine to machine. So once a term has been
measured alone in two stages of different sizes (the 64 and 128 px scales), its time per step is
taken as the line through those two measures (a fixed part plus a part per unit) and extrapolated
to the stages still to come, and the terms not measured yet are scaled by how fast the measured
ones are expected to run there, not by how fast they ran on the small images. Until then, while a
term measured alone at one size has work of another size ahead, the time left is not known: how
its cost grows with size is the machine's (the first estimate, from the 64 px steps alone, was
half the truth on one machine and right on another), and the second scale's steps tell it a few
seconds later.

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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TextIO

from rich.console import Console
from rich.progress import BarColumn, TaskID, TextColumn
from rich.progress import Progress as Bars

REPORT_INTERVAL_S = 2.0  # at most one plain line per this many seconds (plus stage ends)
REFRESH_INTERVAL_S = 0.1  # at most one redraw of the live bars per this many seconds (plus stage ends)
# a finished bar's colour: rich's default (an olive green) becomes grey on a 16-colour terminal (TERM=xterm),
# the colour of an empty bar, so each finished stage looked reset to zero
FINISHED_BAR = "green"
MIN_SHARE = 0.1  # a report of several terms gives the ones it measures at least this share of its prediction
FIT_LIMIT = 2.0  # a rate extrapolated across sizes stays within this factor of the one measured


@dataclass(frozen=True)
class Work:
    """An amount of one kind of work.

    Parameters
    ----------
    term : str
        The kind of work (``"step"``, ``"search"``, ``"poster"``...); all work of a term shares
        one rate.
    units : float
        How much of it, in units whose cost is about proportional to its time (pixels of a VGG
        pass, multiply-adds of a search).
    prior : float or None
        Seconds per unit before any of the term has been measured (on the project's reference
        machine); None: not known until measured.
    every : int
        In a stage's steps: done by the steps whose index is a multiple of ``every`` (a search
        every 2nd step), 1 for every step.
    device : str
        Where it runs (``"cpu"``, ``"cuda"``, ``"numba"``: compiled kernels on the CPU): the
        measured terms of a device scale the priors of that device's other terms.

    Examples
    --------
    >>> Work("search", 10.0, every=2).steps(0, 5)  # steps 0, 2 and 4
    3
    """

    term: str
    units: float
    prior: float | None = None
    every: int = 1
    device: str = "cpu"

    def steps(self, first: float, stop: float) -> float:
        """How many of the steps ``first .. stop - 1`` do this work (fractional bounds: in proportion)."""
        if first != int(first) or stop != int(stop):
            return (stop - first) / self.every
        return -(-int(stop) // self.every) + (-int(first) // self.every)


@dataclass(frozen=True)
class Stage:
    """A stage of a work plan: ``setup``, then ``steps`` steps that each do ``step``.

    Parameters
    ----------
    name : str
        What :meth:`Progress.start`, :meth:`Progress.fraction` and :meth:`Progress.skip` call it.
    steps : int
        Its steps (0: a stage that reports nothing, done when a later one is reported; 1 for a
        stage that reports fractions).
    step : tuple of Work
        The work of one step (a part with ``every > 1`` only in some steps).
    setup : tuple of Work
        The work before its first step is reported (before :meth:`Progress.start`, or before the
        first fraction).
    """

    name: str
    steps: int = 0
    step: tuple[Work, ...] = ()
    setup: tuple[Work, ...] = ()

    def work(self, first: float = 0.0, stop: float | None = None, setup: bool = False) -> list[tuple[Work, float]]:
        """``(work, units)`` of steps ``first .. stop - 1`` (all by default), and of the setup when ``setup``."""
        stop = self.steps if stop is None else stop
        parts = [(w, w.units) for w in self.setup] if setup else []
        return parts + [(w, w.units * n) for w in self.step if (n := w.steps(first, stop)) > 0]


@dataclass
class _Measure:
    """Seconds and units of one term measured in ``stage``.

    ``alone``: some of the term was measured in a report of it alone; ``prior`` and ``device``
    are its :class:`Work`'s; ``each``: the units of one step (or setup) of it in ``stage``;
    ``solo``: all of it in ``stage`` was measured alone; ``before``: ``(each, seconds)`` of one
    step of it in an earlier stage of another size, measured alone (the other point of the line
    :meth:`Progress._rate` extrapolates).
    """

    seconds: float
    units: float
    stage: str
    alone: bool
    prior: float | None
    device: str
    each: float = 0.0
    solo: bool = True
    before: tuple[float, float] | None = None


def _as_stage(stage: Stage | tuple[str, int, float]) -> Stage:
    """A :class:`Stage`; ``(name, steps, cost_per_step)`` is a stage of steps of the term ``"step"`` without a prior."""
    if isinstance(stage, Stage):
        return stage
    name, steps, cost = stage
    return Stage(name, steps, step=(Work("step", float(cost)),))


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
    """Stage and step reporter with an estimate of the whole run's time left.

    ``plan(stages)`` declares the work of the stages a computation reports (:class:`Stage`, or
    ``(stage, steps, cost_per_step)``); ``then(stages)`` the stages that follow it (kept by a later
    ``plan``); ``start(stage)`` opens a stage; ``step(i, loss)`` reports step ``i`` (0-based) of
    the current stage; ``skip(stage)`` marks a stage done without running it (resumed runs);
    ``fraction(stage, done, detail)`` reports a stage of unequal steps by the fraction done;
    ``message(text)`` prints a line (above the live bars on a terminal). ``left_s`` is the latest
    estimate of the seconds left in the plan and the stages after it (None until known).

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
        self.current: str | None = None
        self.last_report = 0.0
        self.last_step_time = 0.0
        self.stage_time = 0.0  # the current stage's measured time and steps, for its rate
        self.stage_steps = 0
        self.left_s: float | None = None  # seconds left as of the latest report (None: not known yet)
        self._planned: list[Stage] = []  # from plan()
        self._after: list[Stage] = []  # from then()
        self._stages: list[Stage] = []  # both, in the order they run
        self._index = -1  # the current stage in _stages (-1: none started)
        self._done = 0.0  # steps of the current stage done (a fraction of its one step for fractions)
        self._skipped: set[int] = set()
        self._planned_stage = False  # whether the current stage is one of _stages
        self._last: float | None = None  # time of the latest report
        self._measured: dict[str, _Measure] = {}
        self._bars: Bars | None = None
        self._task: TaskID | None = None
        self._last_refresh = 0.0

    @property
    def live(self) -> bool:
        """Whether the stages are drawn as live bars (an enabled reporter on a terminal that can redraw)."""
        return self.enabled and self.console.is_terminal and not self.console.is_dumb_terminal

    # ---- the plan
    def plan(self, stages: Sequence[Stage | tuple[str, int, float]]) -> None:
        """Declare the work of the stages to report, in the order they run.

        Parameters
        ----------
        stages : list of Stage or (str, int, float)
            The stages; ``(name, steps, cost_per_step)`` is a stage of equal steps of relative
            cost ``cost_per_step`` (e.g. its pixels), whose rate is not known before it is measured.
        """
        self._planned = [_as_stage(s) for s in stages]
        self._restart()

    def then(self, stages: Sequence[Stage | tuple[str, int, float]]) -> None:
        """Declare the stages that run after the planned ones (a later :meth:`plan` keeps them).

        Parameters
        ----------
        stages : list of Stage or (str, int, float)
            As for :meth:`plan`; the time left counts them until they are reported.
        """
        self._after = [_as_stage(s) for s in stages]
        self._restart()

    def _restart(self) -> None:
        self._stages = self._planned + self._after
        self._index, self._done, self._skipped = -1, 0.0, set()
        self._planned_stage = False

    @property
    def total_cost(self) -> float:
        """Estimated seconds of all the stages of the plan (units where no rate is known yet)."""
        return self._cost([part for stage in self._stages for part in stage.work(setup=True)])

    @property
    def done_cost(self) -> float:
        """Estimated seconds of the work done (skipped stages included), on :attr:`total_cost`'s scale."""
        parts = [part for stage in self._stages[:max(self._index, 0)] for part in stage.work(setup=True)]
        if 0 <= self._index < len(self._stages):
            parts += self._stages[self._index].work(0.0, self._done, setup=True)
        return self._cost(parts)

    def _cost(self, parts: Iterable[tuple[Work, float]]) -> float:
        return sum(units * (self._rate(work) or work.prior or 1.0) for work, units in parts)

    def skip(self, stage: str) -> None:
        """Count a planned ``stage`` as done without running it (resumed from a checkpoint)."""
        self._skip(stage)
        self.message(f"{stage}: resumed from checkpoint")

    def _skip(self, stage: str) -> None:
        i = self._find(stage)
        if i is not None:
            self._skipped.add(i)

    def _find(self, stage: str) -> int | None:
        """Index of the next planned stage named ``stage`` (the current one if it has that name)."""
        for i in range(max(self._index, 0), len(self._stages)):
            if self._stages[i].name == stage and i not in self._skipped:
                return i
        return None

    # ---- reports
    def start(self, stage: str) -> None:
        """Open ``stage`` (a planned one; an unplanned one counts its steps but adds no work)."""
        now = time.perf_counter()
        i = self._find(stage)
        if i is not None and i != self._index:
            self._reach(now, i, 0.0)
        self._planned_stage = i is not None
        self._last = now
        self._begin(stage, now, self._stages[i].steps if i is not None else None)
        self.left_s = self._time_left()

    def _reach(self, now: float, index: int, done: float) -> None:
        """Measure the work from the latest report up to ``done`` steps of stage ``index``, which becomes current."""
        parts = []
        if 0 <= self._index < len(self._stages) and self._index not in self._skipped:
            parts += self._stages[self._index].work(self._done)
        for i in range(self._index + 1, index):
            if i not in self._skipped:
                parts += self._stages[i].work(setup=True)
        parts += self._stages[index].work(0.0, done, setup=True)
        self._measure(parts, now, self._stages[index].name)
        self._index, self._done = index, done

    def _begin(self, stage: str, now: float, total: float | None) -> None:
        self.current = stage
        self.last_step_time = now
        self.stage_time, self.stage_steps = 0.0, 0
        if self.live:
            self._open_bar(stage, total)

    def step(self, index: int, loss=None) -> None:
        """Report that step ``index`` (0-based) of the current stage is done.

        Parameters
        ----------
        index : int
            The step; the stage's first (index 0) is left out of the rates, as it sets up kernels.
        loss : float or 0-d tensor, optional
            Shown beside the step; read (``float(loss)``, a host sync on a GPU) only when a line or
            a bar refresh shows it.
        """
        now = time.perf_counter()
        steps = index + 1
        if self._planned_stage:
            stage = self._stages[self._index]
            steps = stage.steps
            if index > 0:
                # a stage's first step also sets up kernels for its image size: the run's first step
                # took up to 50x a later one, and counting it announced "50m left" for a 1-minute run
                self._measure(stage.work(self._done, index + 1), now, stage.name)
            self._done = float(index + 1)
        if index > 0:
            self.stage_time += now - self.last_step_time
            self.stage_steps += 1
        self.last_step_time = self._last = now
        self.left_s = self._time_left()
        last = index + 1 == steps
        if not self._due(now, last):
            return
        rate = format_rate(self.stage_time / self.stage_steps) if self.stage_steps else ""
        self._show(now, last, steps, index + 1, f"step {index + 1}/{steps}{_loss_text(loss)}", rate)

    def fraction(self, stage: str, done: float, detail: str = "") -> None:
        """Report that a fraction ``done`` (0..1) of ``stage`` is complete.

        For stages whose steps differ in cost (coarse-to-fine levels), reported after each step.
        The stage's rate is that of the latest report alone: an average since the stage began
        counts its setup and the small levels' higher cost per pixel (it predicted 8 h for a
        3-minute 8K poster). An unplanned stage is one of unknown cost, known once measured; a
        report that does not advance the fraction gives no estimate.

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
            i = self._find(stage)
            if i is None:
                i = self._index + 1
                self._stages.insert(i, Stage(stage, 1, step=(Work(stage, 1.0),)))
            steps = self._stages[i].steps
            self._reach(now, i, done * steps)
            self._planned_stage = True
            self._begin(stage, now, total=1.0)
            self.left_s = self._time_left()
        else:
            steps = self._stages[self._index].steps if self._planned_stage else 1
            self.left_s = None
            if self._planned_stage and done * steps > self._done:
                self._measure(self._stages[self._index].work(self._done, done * steps), now, stage, latest=True)
                self._done = done * steps
                self.left_s = self._time_left()
        self._last = now
        last = done >= 1.0
        if self._due(now, last):
            self._show(now, last, 1.0, min(done, 1.0), detail, "")

    # ---- the estimate
    def _rate(self, work: Work, speeds: dict[str, float] | None = None) -> float | None:
        """Seconds per unit of ``work``'s term: measured, else its prior scaled to its device's speed.

        A term measured alone in two stages of different sizes gets the line through them at
        ``work``'s size (see the module docstring). ``speeds``: the device speeds to use
        (:meth:`_speed`), else those measured.
        """
        measured = self._measured.get(work.term)
        if measured is not None:
            rate = measured.seconds / measured.units
            if measured.solo and measured.before is not None and work.units > 0 and work.units != measured.each:
                (each, seconds), now = measured.before, rate * measured.each
                slope = (now - seconds) / (measured.each - each)
                fitted = now + (work.units - measured.each) * slope
                if slope > 0 and fitted > 0:
                    # two noisy means far apart in size can tilt the line: never more than FIT_LIMIT off
                    return min(max(fitted / work.units, rate / FIT_LIMIT), rate * FIT_LIMIT)
            return rate
        if work.prior is None:
            return None
        speed = speeds[work.device] if speeds is not None and work.device in speeds else self._speed(work.device)
        return work.prior * speed

    def _speed(self, device: str, ahead: Sequence[tuple[Work, float]] = ()) -> float:
        """Measured seconds over prior seconds of the measured terms that run on ``device`` (1 if none).

        Each term weighs what it measured; one with work in ``ahead`` (the work still to do) at the
        ratio its rate (extrapolated to those sizes) has to its prior there.
        """
        coming: dict[str, list[float]] = {}
        for work, units in ahead:
            measured = self._measured.get(work.term)
            if measured is not None and measured.before is not None and work.prior is not None:
                part = coming.setdefault(work.term, [0.0, 0.0])
                part[0] += self._rate(work) * units
                part[1] += work.prior * units
        seconds = expected = 0.0
        for term, measured in self._measured.items():
            if measured.device == device and measured.prior is not None:
                prior = measured.prior * measured.units
                fitted, prior_ahead = coming.get(term, (0.0, 0.0))
                seconds += fitted / prior_ahead * prior if prior_ahead > 0 else measured.seconds
                expected += prior
        return seconds / expected if expected > 0 else 1.0

    def _measure(self, parts: list[tuple[Work, float]], now: float, stage: str, latest: bool = False) -> None:
        """Take the time since the latest report as the time of ``parts`` (see the module docstring)."""
        if self._last is None or now <= self._last:
            return
        seconds = now - self._last
        units: dict[str, float] = {}
        kinds: dict[str, Work] = {}
        for work, amount in parts:
            if amount > 0:
                units[work.term] = units.get(work.term, 0.0) + amount
                kinds.setdefault(work.term, work)
        if len(units) == 1:
            (term, amount), = units.items()
            self._add(kinds[term], seconds, amount, stage, alone=True, latest=latest)
            return
        known = [t for t in units if t in self._measured and self._measured[t].alone]
        rest = [t for t in units if t not in known]
        rates = {t: self._rate(kinds[t]) for t in rest}
        if not rest or (len(rest) > 1 and None in rates.values()):
            return  # nothing left to measure, or no way to share the time between unknown rates
        shares = {t: 1.0 if rate is None else units[t] * rate for t, rate in rates.items()}
        total = sum(shares.values())
        explained = sum(units[t] * self._rate(kinds[t]) for t in known)
        left = max(seconds - explained, MIN_SHARE * seconds)
        for t in rest:
            self._add(kinds[t], left * shares[t] / total if total > 0 else left / len(rest), units[t], stage,
                      alone=False, latest=latest)

    def _add(self, work: Work, seconds: float, units: float, stage: str, alone: bool, latest: bool) -> None:
        """Add a measure of ``work``'s term; the first of a new stage (or each, with ``latest``) replaces the others."""
        measured = self._measured.get(work.term)
        if measured is None or measured.stage != stage or latest:
            was_alone = measured is not None and measured.alone
            before = None
            if measured is not None and not latest:
                before = measured.before
                if measured.solo and measured.units > 0 and measured.each not in (0.0, work.units):
                    before = (measured.each, measured.seconds * measured.each / measured.units)
            measured = self._measured[work.term] = _Measure(0.0, 0.0, stage, was_alone, work.prior, work.device,
                                                            each=work.units, before=before)
        measured.seconds += seconds
        measured.units += units
        measured.alone = measured.alone or alone
        measured.solo = measured.solo and alone

    def _time_left(self) -> float | None:
        """Seconds left: the rest of the current stage and every stage after it, at each term's rate."""
        if not self._measured:
            return None
        parts = []
        if 0 <= self._index < len(self._stages):
            parts += self._stages[self._index].work(self._done)
        for i in range(self._index + 1, len(self._stages)):
            if i not in self._skipped:
                parts += self._stages[i].work(setup=True)
        if any(self._unfitted(work) for work, _ in parts):
            return None
        speeds = {device: self._speed(device, parts) for device in {work.device for work, _ in parts}}
        left = 0.0
        for work, units in parts:
            rate = self._rate(work, speeds)
            if rate is None:
                return None
            left += rate * units
        return left

    def _unfitted(self, work: Work) -> bool:
        """Whether ``work``'s term was measured alone at one size only, and ``work`` is of another size.

        Only for a term of the cost model (one with a prior); a term without one has the caller's
        own units, taken as proportional to its time.
        """
        measured = self._measured.get(work.term)
        return (work.prior is not None and measured is not None and measured.solo and measured.before is None
                and work.units > 0 and work.units != measured.each)

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
                TextColumn("{task.description}"), BarColumn(finished_style=FINISHED_BAR),
                TextColumn("{task.fields[steps]}"),
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
