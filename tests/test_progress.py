"""Progress reports: the time left comes from measured steps, weighted by the planned cost."""

from __future__ import annotations

import io

from nnst_hr import progress as progress_module
from nnst_hr.progress import Progress


def test_time_left_leaves_out_each_stage_first_step_and_weights_by_cost(monkeypatch):
    # start a, a's steps at 100 (after a warm-up), 101, 102; start b, b's first step at 110
    clock = iter([0.0, 100.0, 101.0, 102.0, 102.0, 110.0])
    monkeypatch.setattr(progress_module.time, "perf_counter", lambda: next(clock))
    monkeypatch.setattr(progress_module, "REPORT_INTERVAL_S", 0.0)
    out = io.StringIO()
    p = Progress(stream=out)
    p.plan([("a", 3, 1.0), ("b", 2, 4.0)])  # a step of b costs 4 of a's
    p.start("a")
    for i in range(3):
        p.step(i)
    p.start("b")
    p.step(0)
    # 1 s per unit of cost, from a's second and third steps only; b's first step (8 s) is not
    # measured either, so 4 units are left after it
    assert out.getvalue().splitlines() == [
        "a: step 1/3", "a: step 2/3, about 9s left", "a: step 3/3, about 8s left", "b: step 1/2, about 4s left",
    ]
