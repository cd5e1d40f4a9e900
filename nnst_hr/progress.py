"""Progress of a long run on stderr: stage, step, and the estimated time left.

The time left comes from a work plan: each stage is a number of steps and a cost
per step (proportional to its pixel count), so the estimate holds across scales
whose steps differ in cost by 16x.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

REPORT_INTERVAL_S = 2.0  # at most one progress line per this many seconds (plus stage ends)


def format_seconds(seconds: float) -> str:
    """``75.4 -> '1m15s'``, ``3725 -> '1h02m'``."""
    seconds = max(0, int(round(seconds)))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


class Progress:
    """Stage and step reporter with a cost-weighted estimate of the time left.

    ``plan([(stage, steps, cost_per_step), ...])`` declares the work; ``start(stage)``
    opens a stage; ``step(i, loss)`` reports step ``i`` (0-based) of the current stage;
    ``skip(stage)`` marks a stage done without running it (resumed runs).
    """

    def __init__(self, enabled: bool = True, stream: TextIO | None = None, prefix: str = ""):
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.prefix = prefix
        self.stages: dict[str, tuple[int, float]] = {}
        self.done_cost = 0.0
        self.measured_cost = 0.0
        self.measured_time = 0.0
        self.current: str | None = None
        self.last_report = 0.0
        self.last_step_time = 0.0

    def plan(self, stages: list[tuple[str, int, float]]) -> None:
        self.stages = {name: (steps, float(cost)) for name, steps, cost in stages}
        self.done_cost = 0.0

    @property
    def total_cost(self) -> float:
        return sum(steps * cost for steps, cost in self.stages.values())

    def skip(self, stage: str) -> None:
        steps, cost = self.stages.get(stage, (0, 0.0))
        self.done_cost += steps * cost
        self.message(f"{stage}: resumed from checkpoint")

    def start(self, stage: str) -> None:
        self.current = stage
        self.last_step_time = time.perf_counter()

    def step(self, index: int, loss=None) -> None:
        """Report step ``index``; ``loss`` (a float or 0-d tensor) is read only when a line is printed."""
        now = time.perf_counter()
        steps, cost = self.stages.get(self.current, (index + 1, 0.0))
        self.done_cost += cost
        if index > 0:
            # a stage's first step also sets up kernels for its image size: the run's first step
            # took up to 50x a later one, and counting it announced "50m left" for a 1-minute run
            self.measured_cost += cost
            self.measured_time += now - self.last_step_time
        self.last_step_time = now
        last = index + 1 == steps
        if not self.enabled or (now - self.last_report < REPORT_INTERVAL_S and not last):
            return
        self.last_report = now
        left = ""
        if self.measured_cost > 0:
            remaining = (self.total_cost - self.done_cost) * self.measured_time / self.measured_cost
            left = f", about {format_seconds(remaining)} left"
        loss_text = f", loss {float(loss):.4f}" if loss is not None else ""
        self.message(f"{self.current}: step {index + 1}/{steps}{loss_text}{left}")

    def message(self, text: str) -> None:
        if self.enabled:
            print(f"{self.prefix}{text}", file=self.stream, flush=True)
