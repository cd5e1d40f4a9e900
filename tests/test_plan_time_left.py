"""The experiment plan's time left weighs each task with ``nnst-hr run``'s cost model (``nnst_hr.workplan``).

No stage runs here: the graphs are built from small image files, and the plan's progress is fed
stage events with a fake clock.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import tomllib
from PIL import Image

from nnst_hr.config import NNSTConfig
from nnst_hr.experiment import progress as plan_progress
from nnst_hr.experiment.cache import Cache
from nnst_hr.experiment.graph import build_graph, read_inputs
from nnst_hr.experiment.plan import parse_plan
from nnst_hr.experiment.progress import PlanProgress, resumed_work, task_stages, task_work
from nnst_hr.files import EXIF_ORIENTATION_TAG, decode_image, image_shape, write_image
from nnst_hr.matching import APPROX_MIN_WORK
from nnst_hr.nnst import nnst_work
from nnst_hr.optimize import refresh_interval
from nnst_hr.poster import poster_stages
from nnst_hr.workplan import PRIORS, nnst_stages

FAST = "steps = 4\nsplit_steps = 4\ndevice = \"cpu\"\nrotate = false\n"


def _png(path: Path, height: int, width: int) -> Path:
    rng = np.random.default_rng(height * 1000 + width)
    write_image(path, rng.random((height, width, 3)).astype(np.float32), overwrite=True)
    return path


def _graph(folder: Path, pairs: list[tuple[str, str]], axes: str = "", fixed: str = FAST):
    text = "".join(f'[[pair]]\ncontent = "{c}"\nstyle = "{s}"\n' for c, s in pairs)
    plan = parse_plan(tomllib.loads(text + "[axes]\n" + axes + "[fixed]\n" + fixed), folder)
    return build_graph(plan, read_inputs(plan))


def _tasks(graph, stage: str) -> list:
    return [task for task in graph.values() if task.stage == stage]


def _total(stages) -> float:
    return sum(units * work.prior for stage in stages for work, units in stage.work(setup=True))


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("plan_time_left")
    _png(base / "wide.png", 300, 400)  # 3:4
    _png(base / "wide_large.png", 600, 800)  # the same aspect, twice the pixels a side
    _png(base / "square.png", 400, 400)
    _png(base / "style.png", 400, 400)
    return base


def test_an_nnst_tasks_work_is_the_runs_workplan_total(folder):
    graph = _graph(folder, [("wide.png", "style.png")], "size = [128, 512]\n")
    small, large = _tasks(graph, "nnst")
    config = NNSTConfig(steps=4, split_steps=4, rotate=False)

    def plan(size: int, scales: list[int]) -> float:
        # a 400 x 300 content and a 400 x 400 style at `size`, halved per scale (by hand, not nnst_work)
        contents = [(size * 3 // 4 >> s, size >> s) for s in scales]
        styles = [(size >> s, size >> s) for s in scales]
        refresh = refresh_interval(config.split_refresh, config.split_steps, size, config.split_sample)
        return _total(nnst_stages(contents, styles, NNSTConfig(size=size, steps=4, split_steps=4, rotate=False),
                                  device="cpu", bf16=True, search_bf16=True, refresh=refresh,
                                  approx_min_work=APPROX_MIN_WORK))

    expected = plan(512, [3, 2, 1, 0]) / plan(128, [1, 0])
    assert task_work(graph, large) / task_work(graph, small) == pytest.approx(expected, rel=1e-9)
    # between the long side (4x) and the pixels squared: steps grow with pixels, searches with pixels
    # squared, and each pass and step has a fixed part that weighs most at 128 px
    assert 4 < expected < 16**2


def test_the_aspect_ratio_changes_the_work_and_the_files_resolution_does_not(folder):
    graph = _graph(folder, [("wide.png", "style.png"), ("square.png", "style.png"), ("wide_large.png", "style.png")],
                   fixed=FAST + "size = 128\nout_size = 512\n")
    for stage in ("nnst", "color", "poster", "poster_color", "scores"):
        wide, square, wide_large = (task_work(graph, task) for task in _tasks(graph, stage))
        assert wide < square, stage  # the same long side, fewer pixels
        assert wide == pytest.approx(wide_large, rel=1e-12), stage  # both resized to 128 px: the same work


def test_image_shape_reads_the_shape_decode_gives_from_the_header():
    stored = np.zeros((40, 64, 3), np.uint8)
    for orientation, shape in ((1, (40, 64)), (6, (64, 40)), (3, (40, 64))):
        exif = Image.Exif()
        exif[EXIF_ORIENTATION_TAG] = orientation
        buffer = io.BytesIO()
        Image.fromarray(stored).save(buffer, "JPEG", exif=exif.tobytes())
        data = buffer.getvalue()
        assert image_shape(data) == decode_image(data, "x.jpg").shape[:2] == shape
    assert image_shape(b"not an image") is None
    assert image_shape(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20) is None  # a truncated header


def test_an_unreadable_header_falls_back_to_square_inputs_of_the_runs_size(folder, monkeypatch):
    graph = _graph(folder, [("wide.png", "style.png")], fixed=FAST + "size = 128\n")
    square = _graph(folder, [("square.png", "style.png")], fixed=FAST + "size = 128\n")
    (task,), (control,) = _tasks(graph, "nnst"), _tasks(square, "nnst")
    read = task_work(graph, task)
    monkeypatch.setattr(plan_progress, "image_shape", lambda data: None)
    fallback = task_work(graph, task)
    assert fallback != read and fallback == pytest.approx(task_work(square, control), rel=1e-12)


def _speed(term: str) -> float:
    """A machine unlike the priors': each term at its own speed (search 4x slower than priors, VGG 2-3x)."""
    return {"step": 3.0, "split": 2.5, "features": 2.0, "split setup": 2.0, "match": 4.0, "search": 4.0,
            "output": 2.0}.get(term, 1.5)


def _actual(graph, task) -> float:
    """The seconds a task takes on that machine (inputs: 0.1 s)."""
    stages = task_stages(graph, task)
    if stages is None:
        return 0.1
    return sum(units * work.prior * _speed(work.term) for stage in stages for work, units in stage.work(setup=True))


class Clock:
    def __init__(self, monkeypatch):
        self.t = 0.0
        monkeypatch.setattr(plan_progress.time, "perf_counter", lambda: self.t)

    def run(self, progress: PlanProgress, task, seconds: float) -> None:
        progress("start", task, {})
        self.t += seconds
        progress("done", task, {"seconds": seconds})


def _pixel_steps(config: NNSTConfig) -> float:
    """The former weight of an NNST task: pixels x steps (long side squared), splitting at 1.3 steps."""
    sides = config.scales()
    steps = sum(config.steps_at(len(sides) - 1 - i) * side**2 for i, side in enumerate(sides))
    return steps + 1.3 * config.split_steps * config.size**2 + config.size**2


def test_after_the_small_run_the_large_runs_time_left_is_known_within_a_third(folder, tmp_path, monkeypatch):
    fixed = 'steps = 20\nsplit_steps = 20\ndevice = "cpu"\nout_size = 1024\n'  # 4 rotations (the default)
    graph = _graph(folder, [("wide.png", "style.png")], "size = [128, 512]\n", fixed)
    clock = Clock(monkeypatch)
    progress = PlanProgress(graph, Cache(tmp_path / "cache"), enabled=False)
    first = [key for key in graph if 0 in graph[key].run_ids]  # the inputs, then run 1's stages
    for key in first:
        clock.run(progress, graph[key], _actual(graph, graph[key]))
    left = sum(_actual(graph, task) for key, task in graph.items() if key not in first)
    assert progress.time_left() == pytest.approx(left, rel=1 / 3)
    # negative control: pixels x steps from the small NNST misses the large one by more than that (each
    # step's fixed part weighs on the 128 px run; at 512 px the setups' searches grow with pixels squared)
    small, large = _tasks(graph, "nnst")
    specs = [graph.specs[task.run_ids[0]].nnst for task in (small, large)]
    former = _actual(graph, small) * _pixel_steps(specs[1]) / _pixel_steps(specs[0])
    assert not former == pytest.approx(_actual(graph, large), rel=1 / 3)


def test_a_resumed_task_sets_its_kinds_speed_by_the_scales_it_ran(folder, tmp_path, monkeypatch):
    graph = _graph(folder, [("wide.png", "style.png")], "size = [256, 512]\n")
    clock = Clock(monkeypatch)
    progress = PlanProgress(graph, Cache(tmp_path / "cache"), enabled=False)
    small, large = _tasks(graph, "nnst")
    plan = task_stages(graph, small)
    assert [stage.name for stage in plan[:3]] == ["scale 64px", "scale 128px", "scale 256px"]
    ran = _total(plan[2:])  # the finest scale, feature splitting and the final match
    assert resumed_work(graph, small, ["scale0", "scale1"]) == pytest.approx(_total(plan[:2]), rel=1e-12)
    assert resumed_work(graph, small, ["scale 64px", "scale 128px"]) == pytest.approx(_total(plan[:2]), rel=1e-12)
    # the first NNST resumed from its two coarse scales, at 3x the priors: its kind's speed is 3, and the
    # other stages' time left that speed times their whole work
    for inputs in _tasks(graph, "inputs"):
        clock.run(progress, inputs, 0.1)
    progress("start", small, {})
    clock.t += 3.0 * ran
    progress("done", small, {"seconds": 3.0 * ran, "resumed": ["scale0", "scale1"]})
    assert progress.spent["nnst"] == pytest.approx([3.0 * ran, ran], rel=1e-12)
    rest = {key: task for key, task in graph.items() if task.stage != "inputs" and key != small.key}
    assert progress.time_left() == pytest.approx(sum(3.0 * task_work(graph, task) for task in rest.values()),
                                                 rel=1e-9)
    # the whole task's work would have missed the speed by more than the rel above (the old code set none)
    assert ran < 0.9 * task_work(graph, small)


def test_a_running_resumed_task_sets_its_kinds_first_speed_by_the_scales_it_runs(folder, tmp_path, monkeypatch):
    graph = _graph(folder, [("wide.png", "style.png")], "size = [256, 512]\n")
    clock = Clock(monkeypatch)
    speeds = {}
    for how in ("in process", "relayed"):
        progress = PlanProgress(graph, Cache(tmp_path / how.replace(" ", "_")), enabled=True, stream=io.StringIO())
        small, large = _tasks(graph, "nnst")
        for inputs in _tasks(graph, "inputs"):
            clock.run(progress, inputs, 0.1)
        stage = progress.reporter(small)
        progress("start", small, {})
        if how == "in process":
            stage.plan(task_stages(graph, small))
            stage.skip("scale 64px")
            stage.skip("scale 128px")
        else:  # a worker's RelayProgress, its reports handed to the stage as the client does
            relay = plan_progress.RelayProgress("nnst", stage.relayed, interval=0.0)
            relay.plan(task_stages(graph, small))
            relay.skip("scale 64px")
            relay.skip("scale 128px")
        assert stage.skipped == ["scale 64px", "scale 128px"]
        clock.t += 2.0
        stage.left_s = 4.0  # its own estimate: 6 s for the scales it runs
        speeds[how] = progress.time_left()
    # every other stage at the speed of the scales it runs (color and scores borrow NNST's: one CPU)
    rest = sum(task_work(graph, task) for task in graph.values() if task.stage != "inputs" and task != small)
    expected = 4.0 + 6.0 / _total(task_stages(graph, small)[2:]) * rest
    assert speeds == pytest.approx({"in process": expected, "relayed": expected}, rel=1e-9)


def test_a_kind_not_measured_borrows_its_devices_speed_and_only_its_devices(folder, tmp_path, monkeypatch):
    clock = Clock(monkeypatch)
    for device in ("cpu", "cuda"):
        graph = _graph(folder, [("wide.png", "style.png")], fixed=FAST.replace('"cpu"', f'"{device}"')
                       + "size = 128\nout_size = 256\n")
        progress = PlanProgress(graph, Cache(tmp_path / device), enabled=False)
        (inputs,), (nnst,) = _tasks(graph, "inputs"), _tasks(graph, "nnst")
        clock.run(progress, inputs, 0.1)
        assert progress.time_left() is None  # no modelled kind measured yet
        clock.run(progress, nnst, 3.0 * task_work(graph, nnst))
        # color and scores on NNST's device at its speed, and poster_color too when that is the
        # CPU; the poster's Numba synthesis (and a CPU kind after a GPU's) at its priors
        speed = {"color": 3.0, "scores": 3.0, "poster": 1.0, "poster_color": 3.0 if device == "cpu" else 1.0}
        rest = [task for task in graph.values() if task.stage not in ("inputs", "nnst")]
        expected = sum(speed[task.stage] * task_work(graph, task) for task in rest)
        assert progress.time_left() == pytest.approx(expected, rel=1e-9), device
    # negative control: a GPU's kinds none of which has run have no speed, whatever the CPU's
    progress = PlanProgress(graph, Cache(tmp_path / "gpu-unknown"), enabled=False)
    clock.run(progress, inputs, 0.1)
    (poster,) = _tasks(graph, "poster")
    clock.run(progress, poster, 2.0 * task_work(graph, poster))
    assert progress.time_left() is None


def test_priors_cover_every_term_the_plan_uses(folder):
    graph = _graph(folder, [("wide.png", "style.png")], fixed=FAST + "size = 128\nout_size = 256\n")
    terms = {work.term for task in graph.values() for stage in task_stages(graph, task) or []
             for work, _ in stage.work(setup=True)}
    assert terms <= set(PRIORS) and {"step", "match", "search", "poster", "output"} <= terms


@pytest.mark.parametrize("printed", [True, False])
def test_a_print_plans_tasks_are_weighed_on_the_content_as_the_print_fits_it(folder, printed):
    """A 400 x 300 content printed square (4 x 4 in at 64 dpi: 256 x 256 px) is cropped to 300 x 300 before NNST:
    every stage runs on that, and the final image has the print's pixels; without a print (the negative control)
    the content's own 3:4 and the poster's 256 px long side."""
    fixed = FAST + "size = 128\n" + ('print = "4x4in"\ndpi = 64\n' if printed else "out_size = 256\n")
    graph = _graph(folder, [("wide.png", "style.png")], fixed=fixed)
    nnst, poster = graph.specs[0].nnst, graph.specs[0].poster
    assert poster.out_size == 256
    content = (300, 300) if printed else (300, 400)  # the crop, by hand: the short side squared
    nnst_shape = (128, 128) if printed else (96, 128)
    final = (256, 256) if printed else (192, 256)
    posters = poster_stages(nnst_shape, poster)
    expected = {
        "nnst": nnst_work(content, (400, 400), nnst, device="cpu", bf16=True),
        "color": [plan_progress._color_stage("color", nnst_shape, nnst, "cpu")],
        "poster": posters[:1], "poster_color": posters[1:],
        "scores": [plan_progress._scores_stage(nnst_shape, (128, 128), final, nnst, "cpu", source_style=(400, 400))]}
    for stage, stages in expected.items():
        (task,) = _tasks(graph, stage)
        assert task_work(graph, task) == pytest.approx(_total(stages), rel=1e-12), stage


def test_the_scores_count_the_color_swd_samples_of_the_style_as_read_up_to_their_cap():
    nnst = NNSTConfig(size=64, device="cpu")

    def output_units(source_style):
        stage = plan_progress._scores_stage((64, 64), (64, 64), (256, 256), nnst, "cpu", source_style=source_style)
        return sum(units for work, units in stage.work(setup=True) if work.term == "output")

    cap = plan_progress.SWD_MAX_SAMPLES
    # a style read at 1024 or 4096 px gives the SWD its cap of samples either way; one of 100 px its pixels
    assert output_units((1024, 1024)) == output_units((4096, 4096))
    small = output_units((100, 100))
    per_sample = plan_progress.SWD_UNITS * plan_progress.SWD_PROJECTIONS
    assert output_units((1024, 1024)) - small == pytest.approx((cap - 100 * 100) * per_sample)
