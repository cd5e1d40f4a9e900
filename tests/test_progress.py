"""Progress reports: the time left comes from measured steps, weighted by the planned cost; live bars
on a terminal, plain lines elsewhere. An experiment plan's progress shows the steps of the stage
running in the process, or those relayed from Dask workers (one bar or labelled line per running
stage), and the plan's time left from the work of each stage kind."""

from __future__ import annotations

import io
import re
from types import SimpleNamespace

import pytest
from rich.console import Console

from nnst_hr import progress as progress_module
from nnst_hr.config import NNSTConfig, PosterConfig
from nnst_hr.experiment import progress as plan_module
from nnst_hr.experiment.cache import Cache
from nnst_hr.experiment.graph import Graph, Task
from nnst_hr.experiment.progress import PlanProgress, RelayProgress
from nnst_hr.progress import Progress, Stage, Work

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


BAR_COLOURS = re.compile(r"\x1b\[(\d+)m━")  # the colour code before each run of bar characters
EMPTY_BAR = "90"  # bright black: the empty part of a bar on a 16-colour terminal


def test_a_finished_bar_is_not_drawn_in_the_empty_bars_colour_on_a_16_colour_terminal(clock, tmp_path):
    """rich's default finished colour (an olive green) is grey in 16 colours, as the empty part of a bar:
    every stage's bar looked reset to zero at its end (TERM=xterm without COLORTERM)."""
    def terminal(out: io.StringIO) -> Console:
        return Console(file=out, force_terminal=True, width=120, color_system="standard")

    out = io.StringIO()
    p = Progress(console=terminal(out))
    p.plan([("a", 2, 1.0)])
    p.start("a")
    p.step(0)
    p.step(1)  # the last step: the bar is drawn finished and left on screen
    colours = BAR_COLOURS.findall(out.getvalue())
    assert colours[0] == EMPTY_BAR and colours[-1] != EMPTY_BAR, colours

    out = io.StringIO()
    plan = PlanProgress(two_nnst_graph(), Cache(tmp_path), console=terminal(out))
    run_two_nnst(plan, clock)
    plan("done", list(plan.graph.values())[1], {"seconds": 1.0, "peak_memory": 0})
    plan.close()
    finished = re.findall(r"plan\s*\x1b\[(\d+)m━+\x1b\[0m\s*2 of 2 stages", out.getvalue())
    assert finished and EMPTY_BAR not in finished, finished


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


# --------------------------------------------------------------------------- an experiment plan


@pytest.fixture
def plan_clock(clock, monkeypatch):
    """``clock``, the plan's step reports not throttled either, and each task's work its pixels.

    These tests are about the plan's mechanics (rates, running stages, workers); the cost model
    that weighs the tasks is tests/test_plan_time_left.py's.
    """
    monkeypatch.setattr(plan_module, "REPORT_INTERVAL_S", 0.0)
    monkeypatch.setattr(plan_module, "REFRESH_INTERVAL_S", 0.0)
    monkeypatch.setattr(plan_module, "task_work",
                        lambda graph, task, shapes=None: float(graph.specs[task.run_ids[0]].nnst.size ** 2))
    return clock


def two_nnst_graph() -> Graph:
    """Two runs, one NNST task each: 32 px, then 64 px (4x the pixel-steps)."""
    graph = Graph()
    for run, size in enumerate((32, 64)):
        key = f"nnst-{run:032x}"
        graph[key] = Task(key, "nnst", None, (), {}, (run,))
        graph.runs.append({"nnst": key})
        graph.specs.append(SimpleNamespace(nnst=NNSTConfig(size=size, steps=3, split_steps=0), poster=PosterConfig()))
    return graph


def run_two_nnst(plan: PlanProgress, clock: dict) -> None:
    """The 32 px NNST: steps at 1, 2, 3 s, done in 3 s; the 64 px one starts at 4 s, its first step at 5 s."""
    small, large = plan.graph.values()
    stage = plan.reporter(small)  # as the executor does: the reporter, then "start"
    plan("start", small, {})
    stage.plan([("scale 32px", 3, 1.0)])
    stage.start("scale 32px")
    for i, t in enumerate((1.0, 2.0, 3.0)):
        clock["t"] = t
        stage.step(i)
    plan("done", small, {"seconds": 3.0, "peak_memory": 0})
    clock["t"] = 4.0
    stage = plan.reporter(large)
    plan("start", large, {})
    stage.plan([("scale 64px", 3, 4.0)])
    stage.start("scale 64px")
    clock["t"] = 5.0
    stage.step(0)


def test_plan_lines_show_each_step_and_time_the_plan_by_pixel_steps(plan_clock, tmp_path):
    out = io.StringIO()
    plan = PlanProgress(two_nnst_graph(), Cache(tmp_path), console=console(out, terminal=False))
    run_two_nnst(plan, plan_clock)
    # the 64 px NNST is 4x the work of the 32 px one: 4 x 3 s (a mean of the kind would say 3 s);
    # during the first, its own estimate (3 s in all) sets the rate; during the second, what is left of its 12 s
    assert out.getvalue().splitlines() == [
        "2 runs, 2 of 2 stages to compute (2 nnst)",
        "run 1 of 2: nnst ...",
        "run 1 of 2: nnst: scale 32px: step 1/3",
        "run 1 of 2: nnst: scale 32px: step 2/3, about 1s left; plan about 13s left",
        "run 1 of 2: nnst: scale 32px: step 3/3, about 0s left; plan about 12s left",
        "run 1 of 2: nnst done in 3s; plan: 3s so far, about 12s left",
        "run 2 of 2: nnst ...",
        "run 2 of 2: nnst: scale 64px: step 1/3; plan about 11s left",
    ]


def test_plan_lines_name_one_run_in_the_singular(plan_clock, tmp_path):
    graph = two_nnst_graph()
    first, second = graph.values()
    shared = Task("scores-" + "0" * 32, "scores", None, (), {}, (0, 1))  # a stage two runs read
    graph[shared.key] = shared
    out = io.StringIO()
    plan = PlanProgress(graph, Cache(tmp_path), console=console(out, terminal=False))
    plan("start", first, {})
    plan("failed", first, {"message": "bad input"})
    plan("start", shared, {})
    plan("failed", shared, {"message": "bad input"})
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("2 runs, 3 of 3 stages to compute")
    assert lines[2] == "run 1 of 2: nnst failed: bad input (run 1)"
    assert lines[4].endswith("scores failed: bad input (runs 1, 2)")
    del graph[second.key], graph[shared.key]
    graph.runs.pop()
    graph.specs.pop()
    out = io.StringIO()
    PlanProgress(graph, Cache(tmp_path), console=console(out, terminal=False))
    assert out.getvalue().splitlines()[0] == "1 run, 1 of 1 stages to compute (1 nnst)"


def test_plan_step_lines_are_throttled(plan_clock, monkeypatch, tmp_path):
    monkeypatch.setattr(plan_module, "REPORT_INTERVAL_S", 2.0)
    out = io.StringIO()
    plan = PlanProgress(two_nnst_graph(), Cache(tmp_path), console=console(out, terminal=False))
    run_two_nnst(plan, plan_clock)
    steps = [line for line in out.getvalue().splitlines() if ": step " in line]
    assert steps == ["run 1 of 2: nnst: scale 32px: step 1/3", "run 1 of 2: nnst: scale 32px: step 3/3, about 0s "
                     "left; plan about 12s left", "run 2 of 2: nnst: scale 64px: step 1/3; plan about 11s left"]


def test_a_quiet_plan_writes_nothing_and_gives_stages_no_reporter(plan_clock, tmp_path):
    out = io.StringIO()
    plan = PlanProgress(two_nnst_graph(), Cache(tmp_path), enabled=False, console=console(out, terminal=True))
    small = next(iter(plan.graph.values()))
    plan("start", small, {})
    assert plan.reporter(small) is None
    plan("done", small, {"seconds": 3.0, "peak_memory": 0})
    plan.close()
    assert out.getvalue() == ""


def test_a_plan_on_a_terminal_gets_a_plan_bar_and_a_stage_bar(plan_clock, tmp_path):
    out = io.StringIO()
    plan = PlanProgress(two_nnst_graph(), Cache(tmp_path), console=console(out, terminal=True))
    run_two_nnst(plan, plan_clock)
    plan.close()
    raw = out.getvalue()
    text = ANSI.sub("", raw).replace("\r", "\n")  # each redraw starts at the line's beginning
    assert HIDE_CURSOR in raw and "━" in text and raw.endswith(SHOW_CURSOR)
    assert re.search(r"^run 1 of 2: nnst\s.*scale 32px: step 2/3\s.*about 1s left\s*$", text, re.MULTILINE)
    assert re.search(r"^plan\s.*0 of 2 stages\s.*about 13s left\s*$", text, re.MULTILINE)
    assert re.search(r"^plan\s.*1 of 2 stages\s.*about 11s left\s*$", text, re.MULTILINE)
    lines = text.splitlines()
    assert "run 1 of 2: nnst done in 3s; plan: 3s so far, about 12s left" in lines  # above the bars
    assert "run 1 of 2: nnst ..." not in lines and not any(": step " in line and "; plan" in line for line in lines)


# --------------------------------------------------------------------------- steps relayed from Dask workers


def test_a_relay_sends_a_few_scalars_throttled_keeping_each_part_end_and_survives_a_failing_send(clock):
    sent: list[dict] = []
    relay = RelayProgress("nnst", sent.append, interval=2.0)  # began at 0
    relay.plan([("scale 32px", 4, 1.0), ("feature splitting", 2, 4.0)])
    relay.start("scale 32px")
    for i, t in enumerate((1.0, 1.5, 2.0, 2.5)):  # the first is sent, the next two within 2 s, the last is an end
        clock["t"] = t
        relay.step(i, loss=0.5)
    relay.start("feature splitting")
    for i, t in enumerate((3.5, 4.5)):
        clock["t"] = t
        relay.step(i, loss=0.25)
    relay.message("nnst: a message")
    # 3 units of cost in 1.5 s measured by the scale's last step: 8 units left are 4 s
    assert sent == [
        {"done": 1 / 12, "detail": "scale 32px: step 1/4, loss 0.5000", "left": None, "elapsed": 1.0},
        {"done": 4 / 12, "detail": "scale 32px: step 4/4, loss 0.5000", "left": 4.0, "elapsed": 2.5},
        {"done": 1.0, "detail": "feature splitting: step 2/2, loss 0.2500", "left": 0.0, "elapsed": 4.5},
        {"message": "nnst: a message"},
    ]
    assert all(type(v) in (float, str, type(None)) for report in sent for v in report.values())

    def broken(report):
        raise OSError("the scheduler is gone")

    relay = RelayProgress("nnst", broken)
    relay.plan([("scale 32px", 2, 1.0)])
    relay.start("scale 32px")
    relay.step(0)
    relay.step(1)
    relay.message("x")
    assert relay.failed == 3


def three_nnst_graph() -> Graph:
    """Three runs, one NNST task each: 32, 64 and 32 px."""
    graph = two_nnst_graph()
    key = f"nnst-{2:032x}"
    graph[key] = Task(key, "nnst", None, (), {}, (2,))
    graph.runs.append({"nnst": key})
    graph.specs.append(SimpleNamespace(nnst=NNSTConfig(size=32, steps=3, split_steps=0), poster=PosterConfig()))
    return graph


def run_two_on_workers(plan: PlanProgress, clock: dict) -> None:
    """Runs 1 and 2 start on workers 0 and 1 at 0 s; at 4 s each relays a step; at 5 s run 1 ends."""
    small, large, _ = plan.graph.values()
    reporters = {}
    for task, name in ((small, "0"), (large, "tcp://127.0.0.1:8788")):  # a worker without a name of its own
        reporters[task.key] = plan.reporter(task)
        plan("start", task, {"worker": f"tcp://127.0.0.1:{8787 + len(reporters)}", "worker_name": name, "pid": 1})
    clock["t"] = 4.0
    reporters[small.key].relayed({"done": 0.5, "detail": "scale 32px: step 2/3, loss 0.5000", "left": 3.0,
                                  "elapsed": 1.0})
    reporters[large.key].relayed({"done": 0.25, "detail": "scale 64px: step 1/3, loss 0.7000", "left": 4.0,
                                  "elapsed": 4.0})
    reporters[small.key].relayed({"message": "nnst: resumed"})
    clock["t"] = 5.0
    plan("done", small, {"seconds": 4.0, "peak_memory": 0, "worker": "tcp://127.0.0.1:8788"})


def test_relayed_steps_are_lines_of_their_run_and_worker_and_the_plan_counts_the_workers(plan_clock, tmp_path):
    out = io.StringIO()
    plan = PlanProgress(three_nnst_graph(), Cache(tmp_path), console=console(out, terminal=False))
    run_two_on_workers(plan, plan_clock)
    # run 1's step alone: its kind's rate from its own estimate (1 s run + 3 s left per 32 px), so
    # run 2 (4x the work, 4 s run) has 12 s left, the longest task: more than the 19 s over 2 workers.
    # Both: (1 + 3) + (4 + 4) s for 5 units of work: run 3 takes 2.4 s; (3 + 4 + 2.4) / 2 = 4.7 s
    assert out.getvalue().splitlines() == [
        "3 runs, 3 of 3 stages to compute (3 nnst)",
        "run 1 of 3: nnst [worker 0] ...",
        "run 2 of 3: nnst [worker 127.0.0.1:8788] ...",
        "run 1 of 3: nnst [worker 0]: scale 32px: step 2/3, loss 0.5000, about 3s left; plan about 12s left",
        "run 2 of 3: nnst [worker 127.0.0.1:8788]: scale 64px: step 1/3, loss 0.7000, about 4s left; "
        "plan about 5s left",
        "run 1 of 3: nnst [worker 0]: resumed",
        "run 1 of 3: nnst done in 4s; plan: 5s so far, about 4s left",
    ]
    assert plan.width == 2 and list(plan.stages) == [plan.graph.runs[1]["nnst"]]


def test_relayed_steps_on_a_terminal_get_a_bar_per_running_stage(plan_clock, tmp_path):
    out = io.StringIO()
    plan = PlanProgress(three_nnst_graph(), Cache(tmp_path), console=console(out, terminal=True))
    run_two_on_workers(plan, plan_clock)
    assert len(plan._stage_bars) == 1  # run 1's bar went with its end
    plan.close()
    text = ANSI.sub("", out.getvalue()).replace("\r", "\n")
    frame = re.compile(r"^plan\s.*0 of 3 stages, 2 running\s.*about 5s left\s*\n"
                       r"run 1 of 3: nnst \[worker 0\]\s.*step 2/3, loss 0\.5000\s.*about 3s left\s*\n"
                       r"run 2 of 3: nnst \[worker 127\.0\.0\.1:8788\]\s.*step 1/3, loss 0\.7000\s.*about 4s left\s*$",
                       re.MULTILINE)
    assert frame.search(text), text
    lines = text.splitlines()
    assert "run 1 of 3: nnst done in 4s; plan: 5s so far, about 4s left" in lines
    assert not any(line.endswith(" ...") for line in lines)  # each stage's bar shows it started


# --------------------------------------------------------------------------- the work plan's cost model

TRUE_RATES = {"features": 0.5, "match": 2.0, "step": 1.0, "split setup": 0.3, "split": 2.0, "search": 1.0,
              "poster setup": 0.2, "poster": 0.05}  # seconds per unit the fake run takes


def mixed_plan(search_prior: float, device: str = "cpu") -> list[Stage]:
    """Two scales (setup: features and a match), feature splitting (a search every 2nd step), a final match.

    Every prior is a third of the true rate (a machine 3x slower than the reference), but the search's.
    """
    def work(term, units, every=1):
        prior = search_prior if term == "search" else TRUE_RATES[term] / 3
        return Work(term, units, prior=prior, every=every, device=device)

    return [
        Stage("scale 1", 3, step=(work("step", 1.0),), setup=(work("features", 2.0), work("match", 1.0))),
        Stage("scale 2", 3, step=(work("step", 4.0),), setup=(work("features", 8.0), work("match", 16.0))),
        Stage("split", 6, step=(work("split", 4.0), work("search", 3.0, every=2)), setup=(work("split setup", 10.0),)),
        Stage("final match", setup=(work("features", 8.0), work("match", 16.0))),
    ]


def poster_plan(device: str = "cpu") -> list[Stage]:
    return [Stage("poster", 1, step=(Work("poster", 400.0, prior=TRUE_RATES["poster"] / 3, device=device),),
                  setup=(Work("poster setup", 10.0, prior=TRUE_RATES["poster setup"] / 3, device=device),))]


def true_seconds(parts) -> float:
    return sum(TRUE_RATES[work.term] * units for work, units in parts)


MEASURED_TWICE = 6  # simulate()'s report of mixed_plan's scale 2's second step: steps measured at two sizes


def simulate(p: Progress, clock: dict, stages: list[Stage]) -> list[tuple[str, float | None, float]]:
    """Run ``stages`` at :data:`TRUE_RATES` as nnst.py and poster.py report them; after each report
    (stage, its time left, the true time left)."""
    reports, pending = [], 0.0  # (seconds since the previous report, the report)
    for stage in stages:
        pending += true_seconds(stage.work(0.0, 0.0, setup=True))
        if stage.name == "poster":
            for done in (0.25, 0.5, 0.75, 1.0):
                pending += true_seconds(stage.work(done - 0.25, done))
                reports.append((pending, stage.name, lambda d=done: p.fraction("poster", d)))
                pending = 0.0
        elif stage.steps:
            reports.append((pending, stage.name, lambda s=stage.name: p.start(s)))
            pending = 0.0
            for i in range(stage.steps):
                reports.append((true_seconds(stage.work(i, i + 1)), stage.name, lambda i=i: p.step(i)))
    total = sum(seconds for seconds, _, _ in reports) + pending
    out = []
    for seconds, name, report in reports:
        clock["t"] += seconds
        report()
        out.append((name, p.left_s, total - clock["t"]))
    return out


def test_a_plan_of_search_and_plain_steps_and_setups_gives_the_right_time_left_once_calibrated(clock):
    p = Progress(enabled=False)
    stages = mixed_plan(search_prior=2 * TRUE_RATES["search"] / 3)  # the search's prior twice too slow
    p.plan(stages)
    shown = simulate(p, clock, stages)
    # not known until the steps have been measured at two sizes (scale 2's second step): how their
    # cost grows with size is the machine's
    assert [left for _, left, _ in shown[:MEASURED_TWICE]] == [None] * MEASURED_TWICE
    # from then on every term but the search runs at the measured speed (3x the priors): the only
    # error is the search's prior, 1 s per unit too slow on 3 steps of 3 units
    for name, left, true in shown[MEASURED_TWICE:]:
        if name != "split":
            assert left == pytest.approx(true + 9.0)
    split = [(left, true) for name, left, true in shown if name == "split"]
    # its start, first step (a search, not measured) and first plain step keep the search's prior
    # for the search steps left; its next search step (index 2) measures it: exact from then on
    errors = [left - true for left, true in split]
    assert errors[:3] == pytest.approx([9.0, 6.0, 6.0])
    assert errors[3:] == pytest.approx([0.0] * (len(errors) - 3))


def test_a_search_step_measures_the_search_alone_once_a_plain_step_measured_the_rest(clock):
    p = Progress(enabled=False)
    p.plan([Stage("split", 5, step=(Work("split", 4.0, prior=1.0), Work("search", 3.0, prior=1.0, every=2)))])
    p.start("split")
    for i, seconds in enumerate((0.0, 8.0, 11.0)):  # step 1: split 2 s/unit; step 2: + search 1 s/unit
        clock["t"] += seconds
        p.step(i)
    assert p.left_s == pytest.approx(8.0 + 11.0)  # a plain step and a search step left


def test_the_time_left_includes_the_stages_after_the_plan(clock):
    p = Progress(enabled=False)
    p.then(poster_plan())  # run.py's stages after the NNST stage, before it plans its own
    stages = mixed_plan(search_prior=TRUE_RATES["search"] / 3)
    p.plan(stages)
    shown = simulate(p, clock, stages + poster_plan())
    poster = true_seconds(poster_plan()[0].work(setup=True))
    assert poster > 10.0
    # the poster's priors, scaled like the NNST's to the measured speed, make every estimate exact
    # from the first one on; the NNST's stages alone would leave out the poster's 22 s
    for _, left, true in shown[MEASURED_TWICE:]:
        assert left == pytest.approx(true)
    assert shown[MEASURED_TWICE][1] > poster
    assert [name for name, _, _ in shown][-4:] == ["poster"] * 4 and shown[-1][1] == pytest.approx(0.0)


def test_terms_on_another_device_keep_their_priors_until_measured(clock):
    p = Progress(enabled=False)
    p.then(poster_plan(device="cpu"))
    stages = mixed_plan(search_prior=TRUE_RATES["search"] / 3, device="cuda")
    p.plan(stages)
    shown = simulate(p, clock, stages + poster_plan())
    # the NNST's speed (3x its priors) is not the poster's CPU's: its priors stand, a third of the truth
    poster = true_seconds(poster_plan()[0].work(setup=True))
    name, left, true = shown[MEASURED_TWICE]
    assert name == "scale 2" and left == pytest.approx(true - poster * 2 / 3)


def test_the_plan_counts_skipped_stages_as_done(clock):
    p = Progress(enabled=False)
    stages = mixed_plan(search_prior=TRUE_RATES["search"] / 3)
    p.plan(stages)
    p.skip("scale 1")
    shown = simulate(p, clock, stages[1:])
    for _, left, true in shown[2:]:
        assert left == pytest.approx(true)


def test_the_work_plan_follows_what_nnst_does():
    from nnst_hr.hypercolumns import HYPERCOLUMN_CHANNELS
    from nnst_hr.matching import APPROX_MIN_WORK
    from nnst_hr.workplan import ROW_COST, match_work, nnst_stages, split_search_units

    cfg = NNSTConfig(size=256, steps=10, finest_steps=5, split_steps=8)
    # the lattice searches stop growing once every layer is subsampled (512 px and up) ...
    units = {size: split_search_units((size, size), (size, size * 2 // 3), cfg, fp32=False)
             for size in (256, 512, 1024)}
    assert units[512] > 1.5 * units[256] and units[1024] == pytest.approx(units[512], rel=0.05)
    # ... while a scale's search grows with content cells x style cells, until the shortlist takes over
    match = {size: match_work((size, size), (size, size), cfg, "cpu", fp32=False, approx_min_work=APPROX_MIN_WORK)[1]
             for size in (128, 256, 512)}
    # (its rows, normalized and gathered, grow with pixels: ROW_COST per row and channel; the
    # query's cells and the four rotations' of a square style)
    rows = {size: 5 * (size // 4) ** 2 * HYPERCOLUMN_CHANNELS * ROW_COST for size in (128, 256, 512)}
    assert match[256].units - rows[256] == pytest.approx(16 * (match[128].units - rows[128]))
    assert 4 * match[128].units < match[256].units < 16 * match[128].units
    assert match[512].units < 16 * match[256].units
    stages = nnst_stages([(64, 48), (128, 96), (256, 192)], [(64, 64), (128, 128), (256, 256)], cfg, device="cpu",
                         bf16=True, search_bf16=True, refresh=2, approx_min_work=APPROX_MIN_WORK)
    assert [(s.name, s.steps) for s in stages] == [("scale 64px", 10), ("scale 128px", 10), ("scale 256px", 5),
                                                   ("feature splitting", 8), ("final match", 0)]
    split = stages[3]
    assert [(w.term, w.every) for w in split.step] == [("split", 1), ("search", 2)]
    assert split.work(0, 8)[1][1] == pytest.approx(4 * split.step[1].units)  # searched at steps 0, 2, 4, 6
    # the final match is fp32: more units than the same search in bf16
    assert stages[4].setup[1].units > match_work((256, 192), (256, 256), cfg, "cpu", fp32=False,
                                                 approx_min_work=APPROX_MIN_WORK)[1].units


def test_the_runs_later_stages_include_the_poster_unless_resumed():
    from nnst_hr.run import RunOptions, later_stages

    options = RunOptions(nnst=NNSTConfig(size=256), poster=PosterConfig(out_size=1024))
    names = [stage.name for stage in later_stages((512, 384), options)]
    assert names == ["nnst finish", "poster", "poster finish", "output"]
    assert "poster" not in [stage.name for stage in later_stages((512, 384), options, poster_resumed=True)]
    poster = later_stages((512, 384), options)[1]
    # levels 1024 down to the NNST field's 64 px, 2 iterations of 2 sweeps each
    levels = sum(1024 * 768 / 4**level for level in range(5))
    assert poster.step[0].units == pytest.approx(levels * 4)
    # the poster's Numba synthesis is a device of its own: NNST's torch speed does not scale its priors
    from nnst_hr.workplan import NUMBA

    devices = {stage.name: {w.device for w in stage.step + stage.setup} for stage in later_stages((512, 384), options)}
    assert devices == {"nnst finish": {"cpu"}, "poster": {NUMBA}, "poster finish": {NUMBA}, "output": {"cpu"}}
    assert [s.name for s in later_stages((512, 384), RunOptions(nnst=NNSTConfig(size=256)))] == ["nnst finish",
                                                                                                 "output"]


def affine_run(p: Progress, clock: dict, stages: list[Stage], fixed: float) -> list[float | None]:
    """Report ``stages``' steps, each ``fixed`` s plus 1 s per unit of its work; the time left after each."""
    shown = []
    for stage in stages:
        p.start(stage.name)
        for i in range(stage.steps):
            clock["t"] += fixed + stage.step[0].units
            p.step(i)
            shown.append(p.left_s)
    return shown


def test_a_step_cost_with_a_fixed_part_is_extrapolated_from_two_sizes(clock):
    # steps of 1, 4 and 16 units take 2 s + 1 s a unit (3, 6, 18 s); the splitting step is not measured
    def stages():
        return [Stage(f"scale {u}", 3, step=(Work("step", float(u), prior=1.0),)) for u in (1, 4, 16)] + [
            Stage("split", 2, step=(Work("split", 8.0, prior=1.0),))]

    p = Progress(enabled=False)
    p.plan(stages())
    shown = affine_run(p, clock, stages()[:2], fixed=2.0)
    # after scale 4's second step: one measure per size, the line 2 + u through (1, 3) and (4, 6)
    # gives scale 16's steps their 18 s; the split's prior scales with the steps still to come
    steps = 6.0 + 3 * 18.0
    assert shown[4] == pytest.approx(steps + 2 * 8.0 * steps / (4.0 + 3 * 16.0))
    # one size measured (scale 1): not known while steps of other sizes are ahead ...
    assert shown[1:4] == [None] * 3
    # ... and proportional, 3 s a unit, when none are (negative control)
    p = Progress(enabled=False)
    p.plan(stages()[:1] + stages()[3:])
    assert affine_run(p, clock, stages()[:1], fixed=2.0)[1] == pytest.approx(3.0 * (1 + 2 * 8))


def test_the_extrapolated_rate_stays_within_a_factor_of_the_measured_one(clock):
    # the steep line through 0.1 s at 1 unit and 5 s at 1.25 units gives 64 units 1235 s, 19 s a unit
    p = Progress(enabled=False)
    stages = [Stage("a", 3, step=(Work("step", 1.0, prior=1.0),)), Stage("b", 3, step=(Work("step", 1.25, prior=1.0),)),
              Stage("c", 1, step=(Work("step", 64.0, prior=1.0),))]
    p.plan(stages)
    for stage, seconds in (("a", 0.1), ("b", 5.0)):
        p.start(stage)
        for i in range(2):
            clock["t"] += seconds
            p.step(i)
    # b's rate, 4 s a unit, at most doubled (progress.FIT_LIMIT) for c's 64 units; b's last step 5 s
    assert p.left_s == pytest.approx(5.0 + 64 * 4.0 * progress_module.FIT_LIMIT)
