"""Progress reports: the time left comes from measured steps, weighted by the planned cost; live bars
on a terminal, plain lines elsewhere."""

from __future__ import annotations

import io
import re

import pytest
from rich.console import Console

from nnst_hr import progress as progress_module
from nnst_hr.progress import Progress

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
SHOW_CURSOR = "\x1b[?25h"
HIDE_CURSOR = "\x1b[?25l"


@pytest.fixture
def clock(monkeypatch):
    """A settable ``time.perf_counter``; reports are not throttled unless a test says so."""
    monkeypatch.setenv("TERM", "xterm")  # a terminal that can redraw, whatever runs the tests
    now = {"t": 0.0}
    monkeypatch.setattr(progress_module.time, "perf_counter", lambda: now["t"])
    monkeypatch.setattr(progress_module, "REPORT_INTERVAL_S", 0.0)
    monkeypatch.setattr(progress_module, "REFRESH_INTERVAL_S", 0.0)
    return now


def console(out: io.StringIO, terminal: bool) -> Console:
    return Console(file=out, force_terminal=terminal, width=120, color_system=None)


def run_plan(p: Progress, clock: dict) -> None:
    """Stage a: steps at 100 (after a warm-up), 101, 102; stage b: its first step at 110."""
    p.plan([("a", 3, 1.0), ("b", 2, 4.0)])  # a step of b costs 4 of a's
    clock["t"] = 0.0
    p.start("a")
    for i, t in enumerate((100.0, 101.0, 102.0)):
        clock["t"] = t
        p.step(i)
    p.start("b")
    clock["t"] = 110.0
    p.step(0)


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


def test_plain_lines_are_throttled_but_keep_each_stage_end(clock, monkeypatch):
    monkeypatch.setattr(progress_module, "REPORT_INTERVAL_S", 2.0)
    out = io.StringIO()
    p = Progress(console=console(out, terminal=False))
    p.plan([("a", 4, 1.0)])
    clock["t"] = 10.0
    p.start("a")
    for i, t in enumerate((11.0, 11.5, 12.0, 12.5)):  # step 1 reported; 2, 3 within 2 s of it; 4 is the end
        clock["t"] = t
        p.step(i)
    assert out.getvalue().splitlines() == ["a: step 1/4", "a: step 4/4, about 0s left"]


def test_a_console_that_is_not_a_terminal_gets_the_plain_lines_without_control_codes(clock):
    out = io.StringIO()
    run_plan(Progress(console=console(out, terminal=False)), clock)
    assert "\x1b" not in out.getvalue()
    assert out.getvalue().splitlines()[-1] == "b: step 1/2, about 4s left"


def test_a_terminal_gets_live_bars_with_stage_step_rate_and_time_left(clock):
    out = io.StringIO()
    p = Progress(console=console(out, terminal=True))
    run_plan(p, clock)
    p.message("between the bars")
    raw = out.getvalue()
    text = ANSI.sub("", raw)
    assert HIDE_CURSOR in raw and "━" in text  # drawn as a bar, redrawn in place
    assert re.search(r"a\s.*step 3/3\s+1\.0 s/step\s+about 8s left", text)  # a's steps: 1 s each
    assert re.search(r"b\s.*step 1/2\s+about 4s left", text)  # b's first step gives no rate yet
    assert "a: step" not in text  # not the plain lines
    assert "between the bars" in text.splitlines()
    # a's bar ended with its last step and gave the cursor back; b's is still live until closed
    assert raw.count(SHOW_CURSOR) == 1 and p._bars is not None
    p.close()
    assert out.getvalue().endswith(SHOW_CURSOR) and p._bars is None


def test_a_dumb_terminal_gets_the_plain_lines(clock, monkeypatch):
    monkeypatch.setenv("TERM", "dumb")  # cannot move the cursor back to redraw a bar
    out = io.StringIO()
    run_plan(Progress(console=console(out, terminal=True)), clock)
    assert out.getvalue().splitlines()[-1] == "b: step 1/2, about 4s left"


def test_disabled_reports_nothing_even_on_a_terminal(clock):
    out = io.StringIO()
    p = Progress(enabled=False, console=console(out, terminal=True))
    run_plan(p, clock)
    p.fraction("poster", 0.5, "level 1/2")
    p.message("x")
    assert out.getvalue() == ""


def test_fraction_time_left_comes_from_the_latest_rate(clock):
    out = io.StringIO()
    p = Progress(console=console(out, terminal=False))
    for t, done, detail in ((0.0, 0.2, "level 1/2"), (2.0, 0.3, "level 1/2"), (12.0, 0.7, "level 2/2"),
                            (15.0, 0.7, "level 2/2"), (18.0, 1.0, "level 2/2")):
        clock["t"] = t
        p.fraction("poster", done, detail)
    # 0.2 -> 0.3 took 2 s: 0.7 left at 0.05/s is 14 s;
    # 0.3 -> 0.7 took 10 s: 0.3 left at 0.04/s is 7.5 s; no progress gives no estimate
    assert out.getvalue().splitlines() == [
        "poster: level 1/2", "poster: level 1/2, about 14s left", "poster: level 2/2, about 8s left",
        "poster: level 2/2", "poster: level 2/2, about 0s left",
    ]


def test_fraction_on_a_terminal_fills_one_bar_per_stage(clock):
    out = io.StringIO()
    p = Progress(console=console(out, terminal=True))
    for t, done in ((0.0, 0.25), (1.0, 0.5), (2.0, 1.0)):
        clock["t"] = t
        p.fraction("poster", done, f"at {done}")
    text = ANSI.sub("", out.getvalue())
    assert "poster" in text and "at 0.5" in text and "about 2s left" in text
    assert p._bars is None and out.getvalue().endswith(SHOW_CURSOR)  # done == 1 ends the stage
