"""``nnst-hr experiment``: plan validation, stage keys, the cache, compute-once, resume, reports.

One tiny plan (32 px NNST, 1 step, 64 px posters) is run once per module and shared; the
compute-once properties are checked by counting the stage executions that ``on_event`` sees.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import CountingCache
from PIL import Image
from typer.testing import CliRunner

from nnst_hr.cli import app
from nnst_hr.config import NNSTConfig
from nnst_hr.errors import InputError
from nnst_hr.experiment import load_plan, run_plan, stages
from nnst_hr.experiment import progress as plan_progress
from nnst_hr.experiment import report as report_module
from nnst_hr.experiment.cache import Cache
from nnst_hr.experiment.execute import Failure, Results, execute, needed
from nnst_hr.experiment.graph import Graph, Task, TaskRef, build_graph, read_inputs
from nnst_hr.experiment.plan import parse_plan
from nnst_hr.files import read_image, write_image
from nnst_hr.lock import run_lock

TINY = """
[fixed]
size = 32
steps = 1
split_steps = 1
out_size = 64
rotate = false
"""
GOOD_PAIR = '[[pair]]\ncontent = "c.png"\nstyle = "s.png"\n'
BAD_PAIRS = ('[[pair]]\ncontent = "bad.png"\nstyle = "s.png"\n'
             '[[pair]]\ncontent = "c.png"\nstyle = "s.png"\nguide = "badmasks"\n')


def _image(path: Path, seed: int, stripes: bool = False) -> None:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:64, 0:64] / 64
    if stripes:
        image = np.stack([0.5 + 0.5 * np.sin(x * 20), y, 0.3 + 0 * x], -1) * 0.9 + rng.random((64, 64, 3)) * 0.1
    else:
        image = np.stack([x, y, 1 - (x + y) / 2], -1) * 0.8 + rng.random((64, 64, 3)) * 0.2
    write_image(path, image.astype(np.float32), overwrite=True)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """Inputs: a content and a style image, an unreadable image, masks of the wrong aspect ratio."""
    base = tmp_path_factory.mktemp("experiment")
    _image(base / "c.png", 0)
    _image(base / "s.png", 1, stripes=True)
    (base / "bad.png").write_bytes(b"this is not an image")
    (base / "badmasks").mkdir()
    Image.new("RGB", (20, 40), (255, 0, 0)).save(base / "badmasks" / "content_mask.png")
    Image.new("RGB", (64, 64), (255, 0, 0)).save(base / "badmasks" / "style_mask.png")
    return base


def write_plan(folder: Path, name: str, axes: str, pairs: str = GOOD_PAIR, extra: str = "") -> Path:
    path = folder / name
    path.write_text(pairs + "\n[axes]\n" + axes + "\n" + TINY + extra)
    return path


class Events:
    """``on_event`` that records (event, stage, key)."""

    def __init__(self, stop_after: str | None = None):
        self.seen: list[tuple[str, str, str]] = []
        self.stop_after = stop_after

    def __call__(self, event, task, info):
        self.seen.append((event, task.stage, task.key))
        if event == "done" and task.stage == self.stop_after:
            raise KeyboardInterrupt

    def started(self) -> Counter:
        return Counter(stage for event, stage, _ in self.seen if event == "start")

    def keys(self, event: str) -> set[str]:
        return {key for e, _, key in self.seen if e == event}


SWEEP_AXES = "color_sharpness = [5.0, 10.0]\nuniformity = [5e-4, 2e-3]\n"


@pytest.fixture(scope="module")
def first(folder):
    """The shared plan: a 2 x 2 sweep over color and poster options, plus two pairs that fail."""
    plan = write_plan(folder, "plan.toml", SWEEP_AXES, GOOD_PAIR + BAD_PAIRS)
    events = Events()
    summary = run_plan(plan, folder / "results", quiet=True, on_event=events)
    return plan, summary, events


def test_a_sweep_over_poster_and_color_options_runs_nnst_once(first):
    _, summary, events = first
    # one NNST for the good pair; 2 color values; 2 poster values; 4 poster colors and scores
    assert events.started() == Counter(inputs=3, nnst=1, color=2, poster=2, poster_color=4, scores=4)
    assert summary.runs == 12 and summary.failed == 8


def test_options_that_act_only_through_masks_split_no_stage_of_an_unguided_pair(folder, tmp_path):
    # A guide_weight / guide_mode / mask_weight axis computed an unguided pair's NNST (and poster) once
    # per value, for the same result; a guided pair's stages still differ in them.
    masks = tmp_path / "masks"
    masks.mkdir()
    for side in ("content", "style"):
        Image.fromarray(np.repeat([[0], [255]], 32, axis=0).astype(np.uint8) * np.ones((1, 64), np.uint8)
                        ).save(masks / f"{side}.png")
    pairs = GOOD_PAIR + f'[[pair]]\ncontent = "c.png"\nstyle = "s.png"\nguide = "{masks}"\n'
    axes = 'guide_weight = [0.25, 0.75]\nguide_mode = ["soft", "hard"]\nmask_weight = [0.5, 2.0]\n'
    plan = load_plan(write_plan(folder, "plan_mask_only.toml", axes, pairs))
    graph = build_graph(plan, read_inputs(plan))
    for stage, unguided_keys, guided_keys in (("nnst", 1, 4), ("poster", 1, 8)):
        by_pair = [{keys[stage] for keys, run in zip(graph.runs, graph.specs, strict=True) if run.pair_index == i}
                   for i in (0, 1)]
        assert (len(by_pair[0]), len(by_pair[1])) == (unguided_keys, guided_keys), stage


def test_a_finished_plan_run_again_does_no_work(first, folder):
    plan, _, before = first
    events = Events()
    run_plan(plan, folder / "results", quiet=True, on_event=events)
    # only the two failed inputs are tried again (their files may have been fixed); nothing else:
    # the good pair's inputs are not stored, and not decoded since every stage reading them is cached
    assert events.started() == Counter(inputs=2)
    assert events.keys("start") & before.keys("done") == set()
    assert events.keys("cached") == {key for key in before.keys("done") if not key.startswith("inputs-")}


def test_changing_one_axis_value_recomputes_only_the_stages_that_read_it(first, folder):
    plan = write_plan(folder, "plan_changed.toml", "color_sharpness = [5.0, 10.0]\nuniformity = [5e-4, 1e-3]\n")
    events, stream = Events(), io.StringIO()
    run_plan(plan, folder / "results_changed", cache_dir=folder / "results" / "cache", on_event=events, stream=stream)
    # the inputs are decoded again (not stored) for the stages that run
    assert events.started() == Counter(inputs=1, poster=1, poster_color=2, scores=2)
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("4 runs, 6 of 14 stages to compute")
    text = stream.getvalue()
    # poster_color and scores not measured yet: torch on this CPU, at its priors once the poster has run
    assert re.search(r"^run [2-4] of 4: poster done in \d+s; plan: \d+s so far, about \d+s left$", text, re.MULTILINE)
    assert re.search(r"^run 4 of 4: scores done in \d+s; plan: \d+s so far, about 0s left$", text, re.MULTILINE)


def test_two_plans_sharing_runs_share_their_results(first, folder):
    sub = folder / "other"
    sub.mkdir(exist_ok=True)
    for name in ("c.png", "s.png"):
        (sub / name).write_bytes((folder / name).read_bytes())  # same bytes, other paths: same keys
    plan = write_plan(sub, "plan.toml", "color_sharpness = [10.0]\n", extra="uniformity = 2e-3\n")
    events = Events()
    summary = run_plan(plan, sub / "results", cache_dir=folder / "results" / "cache", quiet=True, on_event=events)
    assert events.started() == Counter()
    mine = summary.rows[0]
    theirs = next(r for r in first[1].rows if r["color_sharpness"] == 10.0 and r["uniformity"] == 2e-3
                  and r["status"] == "ok")
    assert mine["scores"] == theirs["scores"]
    a = np.asarray(Image.open(sub / "results" / mine["result"]))
    b = np.asarray(Image.open(folder / "results" / theirs["result"]))
    assert np.array_equal(a, b)


def test_an_interrupted_plan_continues_from_the_finished_stages(folder, tmp_path):
    plan = write_plan(folder, "plan_interrupt.toml", "uniformity = [5e-4, 2e-3]\n", extra="seed = 7\n")
    out = tmp_path / "results"
    first = Events(stop_after="poster")
    with pytest.raises(KeyboardInterrupt):
        run_plan(plan, out, quiet=True, on_event=first)
    finished = first.keys("done")
    assert {stage for _, stage, key in first.seen if key in finished} == {"inputs", "nnst", "color", "poster"}
    written = {key for key in finished if not key.startswith("inputs-")}  # the inputs are not stored
    second = Events()
    summary = run_plan(plan, out, quiet=True, on_event=second)
    assert second.keys("start") & written == set()
    assert second.keys("cached") == written
    assert second.started() == Counter(inputs=1, poster=1, poster_color=2, scores=2)
    assert summary.failed == 0


def test_results_csv_has_a_row_per_run_with_scores_times_and_failures(first, folder):
    with open(folder / "results" / "results.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["run"] for r in rows] == [f"run{i:03d}" for i in range(1, 13)]
    ok = [r for r in rows if r["status"] == "ok"]
    assert len(ok) == 4
    for row in ok:
        assert 0.0 <= float(row["objective"]) <= 2.0  # a mean centered-cosine distance
        assert float(row["seconds.nnst"]) > 0 and int(row["peak_memory.nnst"]) >= 0
        if not torch.cuda.is_initialized():  # a CPU plan (device "auto" on a machine with a GPU is not)
            assert all(row[f"peak_gpu_memory.{stage}"] == "" for stage in report_module.STAGES)
        assert row["size"] == "32" and row["out_size"] == "64"
        assert (row["rotate"], row["color"]) == ("false", "true")  # as a plan writes them, not False / True
        assert Image.open(folder / "results" / row["result"]).size == (64, 64)
        assert Image.open(folder / "results" / row["nnst_result"]).size == (32, 32)
    failed = [r for r in rows if r["status"] == "failed"]
    assert all("bad.png" in r["message"] for r in failed[:4])
    assert all("aspect" in r["message"] for r in failed[4:])
    assert not any(r["result"] for r in failed)


def test_a_run_id_that_now_fails_makes_no_poster_or_is_gone_keeps_no_image_of_an_earlier_plan(folder, tmp_path):
    """runs/run001/result.png of an earlier plan stayed when run001 failed in the next (and its nnst.png when
    it made no poster; runs/run002/ when the plan had one run less): a picture of other settings beside a
    row saying this run failed, or beside a results.csv without the run."""
    out, run = tmp_path / "results", tmp_path / "results" / "runs" / "run001"
    run_plan(write_plan(folder, "stale1.toml", "seed = [0]"), out, quiet=True)
    assert {p.name for p in run.iterdir()} == {"result.png", "result.key", "nnst.png", "nnst.key"}
    (run / "notes.txt").write_text("mine")  # the user's own file stays
    run_plan(write_plan(folder, "stale2.toml", "seed = [0]", BAD_PAIRS), out, quiet=True)  # run001: bad.png
    assert {p.name for p in run.iterdir()} == {"notes.txt"}
    no_poster = folder / "stale3.toml"
    no_poster.write_text(GOOD_PAIR + "[axes]\nseed = [0]\n" + TINY.replace("out_size = 64", 'out_size = "none"'))
    run_plan(write_plan(folder, "stale1.toml", "seed = [0]"), out, quiet=True)
    run_plan(no_poster, out, quiet=True)
    assert {p.name for p in run.iterdir()} == {"notes.txt", "result.png", "result.key"}
    assert Image.open(run / "result.png").size == (32, 32)  # the NNST result, not the poster
    assert (run / "notes.txt").read_text() == "mine"
    # a plan of two runs, then one run again: run002's images went with it (its folder too, it held nothing else)
    run_plan(write_plan(folder, "stale4.toml", "seed = [0, 1]"), out, quiet=True)
    assert (out / "runs" / "run002" / "result.png").is_file()
    run_plan(write_plan(folder, "stale1.toml", "seed = [0]"), out, quiet=True)
    assert sorted(p.name for p in (out / "runs").iterdir()) == ["run001"]
    assert (run / "notes.txt").read_text() == "mine" and (run / "result.png").is_file()


def test_the_report_of_one_run_and_no_plot_says_run_and_has_no_legend(folder, tmp_path):
    """It said "1 runs" and showed the pairs' colour legend above "(no numeric axis with two or more values)"."""
    run_plan(write_plan(folder, "one.toml", "seed = [0]"), tmp_path, quiet=True)
    page = (tmp_path / "report.html").read_text()
    assert "<h1>one.toml: 1 run (1 ok, 0 failed)</h1>" in page
    assert "(no numeric axis with two or more values)" in page and 'class="legend"' not in page
    assert "&#9679;" not in page


def test_a_results_folder_in_use_by_another_run_is_refused_untouched(first, folder):
    plan, _, _ = first
    out = folder / "results"
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    with run_lock(out):  # held like another process's run: flock conflicts across open files
        with pytest.raises(InputError, match="process"):
            run_plan(plan, out, quiet=True)
        after = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p.name != "lock"}
    assert after == {p: t for p, t in before.items() if p.name != "lock"}


def test_the_pipeline_equals_stylize_for_the_nnst_and_color_stages(folder):
    from nnst_hr.nnst import stylize

    inputs = stages.decode_inputs((folder / "c.png").read_bytes(), (folder / "s.png").read_bytes(), None, {})
    config = NNSTConfig(size=32, steps=1, split_steps=1, rotate=False, color_sharpness=5.0)
    raw = stages.nnst(inputs, stages.subset(config, stages.NNST_PARAMS), "cpu")
    image = stages.color(inputs, raw, stages.subset(config, stages.COLOR_PARAMS))["image"]
    reference = stylize(inputs["content"], inputs["style"], config)
    np.testing.assert_array_equal(raw["raw"], reference.raw)
    np.testing.assert_array_equal(raw["field"], reference.field)
    np.testing.assert_allclose(image, reference.image, atol=1e-6)
    assert not np.allclose(image, raw["raw"], atol=1e-3)  # negative control: color did something


def test_report_html_links_only_existing_files_and_lists_every_run(first, folder):
    out = folder / "results"
    page = (out / "report.html").read_text()
    links = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert "sheet.png" in links and "results.csv" in links
    assert not any(link.startswith(("http:", "https:", "//")) for link in links)  # self-contained
    for link in links:
        assert (out / link).is_file(), link
    for i in range(1, 13):
        assert f'id="run{i:03d}"' in page
    n_scores = len(report_module.score_names(first[1].rows, "objective"))
    assert n_scores >= 2 and page.count("<svg") == n_scores * 2  # a plot per score and numeric axis
    assert page.count('class="failed"') == 8


def test_the_report_tells_pairs_of_the_same_files_apart_and_shows_each_result_first(first, folder):
    """Pairs 0 and 2 (the same files, one with masks) were both "c / s" in the legend and on the sheet;
    the result thumbnails sat at the right end of a wide table, after seconds.inputs, empty in every run."""
    out = folder / "results"
    page = (out / "report.html").read_text()
    legend = re.findall(r"&#9679; (pair \d+: [^<]*)</span>", page)
    assert legend == ["pair 0: c / s", "pair 1: bad / s", "pair 2: c / s, guide badmasks"]
    # the table's pair column said only 0, 1, 2: it names the files too, and sorts by the number
    cells = re.findall(r'<td class="l" data-v="(\d)"><span style="color:[^"]*">&#9679;</span> ([^<]*)</td>', page)
    assert sorted(set(cells)) == [("0", "0: c / s"), ("1", "1: bad / s"), ("2", "2: c / s, guide badmasks")]
    plan = load_plan(first[0])
    assert report_module.pair_details(plan.pairs[2]) == ["guide badmasks"]  # a line of its sheet row heads
    pair = replace(plan.pairs[0], options={"rotate": False})
    assert report_module.pair_details(pair) == ["rotate = false"]  # as the plan writes it (was False)
    heads = re.findall(r"<th[^>]*>([^<]*)</th>", page)
    assert heads[:3] == ["run", "status", "result"] and "seconds.inputs" not in heads
    rows = [re.findall(r'data-v="([^"]*)"', row) for row in re.findall(r'<tr class="\w+" id="run\d+">(.*?)</tr>', page)]
    assert len(rows) == 12 and all(len(row) == len(heads) for row in rows)
    for j, head in enumerate(heads):
        assert head in ("result", "message") or any(row[j] for row in rows), head  # no column empty in every run
    from nnst_hr.scores import direction_line

    plots = re.findall(r'<svg class="plot".*?</svg>', page, re.DOTALL)
    assert plots
    for plot in plots:  # each says which way its score is better (a plot of content_ssim rising is good)
        score = re.search(r'class="title">(\S+) vs ', plot).group(1)
        assert f">{direction_line(score)}</text>" in plot, score
    with open(out / "results.csv", newline="") as fh:
        failed = [r for r in csv.DictReader(fh) if r["status"] == "failed"]
    assert failed and all(r["seconds.total"] == "" for r in failed)  # was 0: nothing was timed


@pytest.mark.parametrize("score, line", [("detail_bicubic", "a baseline: the detail of a bicubic upsample"),
                                         ("detail", "closer to 1 is better"), ("content_ssim", "higher is better")])
def test_a_plot_reads_its_score_the_way_the_score_is_defined(score, line):
    """A plot of detail_bicubic said "closer to 1 is better": it is the NNST result's upsample, no poster's score."""
    rows = [{"status": "ok", "size": size, "pair": 0, "scores": {score: value}}
            for size, value in ((64, 0.4), (128, 0.6))]
    plot = report_module.svg_plot("size", score, [64, 128], rows)
    assert re.findall(r'y="26" text-anchor="middle" class="tick">([^<]*)</text>', plot) == [line]

def test_the_plots_legend_breaks_a_long_file_name_within_the_window():
    """A pair's file name without spaces (camera_2026-12-07_IMG_004711_exported_...) ran past the right edge of an
    800 px window: underscores are no break opportunity. Seen in headless Chromium; the rule is what makes it break."""
    rules = dict(re.findall(r"([^{}]+)\{([^}]*)\}", report_module.CSS.replace("\n", "")))
    assert "overflow-wrap:anywhere" in rules.get(".legend", "").split(";")


def test_a_failure_message_on_the_sheet_is_wrapped_within_its_box():
    """A path longer than the box ran past its right edge (lines broke only at spaces)."""
    font, width = report_module._font(), report_module.THUMB - 8
    text = "inputs: mask /tmp/some/rather/long/folder/of/masks/for/the/pair/content.png is 633x567 (aspect 1.116)"
    lines = report_module._wrap(text, font, width)
    assert all(font.getlength(line) <= width for line in lines), lines
    assert "".join(lines).replace(" ", "") == text.replace(" ", "")  # every character kept, in order
    assert report_module._wrap("a few short words", font, width) == ["a few short words"]


def test_the_row_heads_captions_sit_under_their_thumbnails(folder, tmp_path):
    """Under a landscape content the caption 'content' sat a square thumbnail's height down, half-way to the
    next row's head."""
    plan = load_plan(write_plan(folder, "plan_captions.toml", "alpha = [0.25]"))
    content = Image.new("RGB", (report_module.HEAD_THUMB, 30), (200, 30, 30))  # landscape
    style = Image.new("RGB", (40, report_module.HEAD_THUMB), (30, 30, 200))  # portrait
    report_module.write_sheet(tmp_path / "sheet.png", plan, [], {0: (content, style)})
    pixels = np.asarray(Image.open(tmp_path / "sheet.png").convert("RGB")).astype(int)
    top = 2 * report_module.LINE + 2 * report_module.PAD
    for thumb, x0 in ((content, report_module.PAD), (style, 2 * report_module.PAD + report_module.HEAD_THUMB)):
        band = pixels[top:, x0:x0 + report_module.HEAD_THUMB]  # the row head, below the title
        text = (np.ptp(band, axis=-1) < 30) & (band.mean(-1) < 160)  # the caption's grey, not the thumbnails
        rows = np.flatnonzero(text.any(1))
        assert rows.size, "no caption"
        assert thumb.height <= rows.min() and rows.max() <= thumb.height + 2 + report_module.LINE, rows


def test_the_contact_sheet_has_a_row_per_pair_and_row_value(first, folder):
    plan = load_plan(first[0])
    groups, columns = report_module._sheet_layout(plan, first[1].rows)
    assert len(groups) == 3 * 2 and columns == [5e-4, 2e-3]
    sheet = Image.open(folder / "results" / "sheet.png")
    cell_h = report_module.THUMB + 2 + 3 * report_module.LINE + report_module.PAD  # square thumbnails
    assert sheet.size[1] == 2 * report_module.LINE + 2 * report_module.PAD + 6 * cell_h + report_module.PAD
    # the first cell holds the first run's result, enlarged with nearest neighbours
    result = np.asarray(Image.open(folder / "results" / "runs" / "run001" / "result.png").convert("RGB"))
    pixels = np.asarray(sheet.convert("RGB"))
    assert (pixels == result[0, 0]).all(-1).sum() >= (report_module.THUMB // 64) ** 2


def test_the_report_reads_one_record_at_a_time_and_is_the_same_from_the_cache_alone(first, folder, tmp_path):
    """The report written after computing equals the one written from the cache alone (nothing
    run, no input decoded by the executor), and it reads one record at a time."""
    plan = load_plan(first[0])
    graph = build_graph(plan, read_inputs(plan))
    cache = CountingCache(folder / "results" / "cache")
    events = Events()
    results = execute(graph, cache, on_event=events)
    assert events.started() == Counter(inputs=2)  # the two bad inputs, tried again
    assert cache.gets == 0 and cache.alive() == 0  # nothing loaded: every reader was cached
    out = tmp_path / "report"
    rows = report_module.write_report(out, plan, graph, results, cache)
    assert cache.peak == 1 and cache.alive() == 0  # one record at a time, none kept
    for name in ("results.csv", "sheet.png", "report.html"):
        assert (out / name).read_bytes() == (folder / "results" / name).read_bytes(), name
    ok = [row for row in rows if row["status"] == "ok"]
    assert len(ok) == 4
    for row in ok:
        image = np.asarray(Image.open(out / row["result"]))
        np.testing.assert_array_equal(image, np.asarray(Image.open(folder / "results" / row["result"])))
        record = cache.get(row["keys"]["final"])["image"]
        np.testing.assert_array_equal(image, np.clip(np.rint(record * 255), 0, 255).astype(np.uint8))
        assert row["scores"] == cache.get(row["keys"]["scores"])


def test_a_pair_whose_inputs_failed_shows_the_images_that_decode_at_its_row_head(first, folder):
    # Its row head was blank: the masks' failure hid the content and style that read fine.
    plan = load_plan(first[0])
    graph = build_graph(plan, read_inputs(plan))
    heads = report_module.head_thumbnails(graph, execute(graph, Cache(folder / "results" / "cache")))
    def pixels(thumb):
        return None if thumb is None else np.asarray(thumb).tolist()

    content, style = (pixels(report_module._thumb(read_image(folder / name), report_module.HEAD_THUMB))
                      for name in ("c.png", "s.png"))
    # the good pair; bad.png (does not decode) with s.png; c.png with badmasks
    assert [tuple(map(pixels, heads[pair])) for pair in sorted(heads)] == [(content, style), (None, style),
                                                                           (content, style)]


# --------------------------------------------------------------------------- memory

TRACKER: list[CountingCache] = []  # the cache of the test running: the stages below count their records in it


def _tracked(record: dict) -> dict:
    TRACKER[-1].track(record)  # alive then: this record, the ones it was computed from, the ones kept
    return record


def _source(data: bytes) -> dict:
    return _tracked({"x": np.frombuffer(data, np.uint8).astype(np.float64)})


def _scaled(inputs: dict, factor: float) -> dict:
    return _tracked({"y": inputs["x"] * factor})


def _combined(inputs: dict, scaled: dict, shared: dict) -> dict:
    return _tracked({"z": inputs["x"] + scaled["y"] + shared["y"].sum()})


def _total(inputs: dict, combined: dict) -> dict:
    return {"sum": float(combined["z"].sum() + inputs["x"].sum())}


SHARED = bytes(range(200, 100, -1))


def long_graph(n: int) -> Graph:
    """``n`` runs shaped like the real graph's: a not-stored source read by every stage of its run,
    and one stage shared by all runs."""
    graph = Graph()

    def add(stage: str, name: str, func, args: tuple, store: bool = True) -> str:
        key = f"{stage}-{hashlib.sha256(name.encode()).hexdigest()[:32]}"
        graph[key] = Task(key, stage, func, args, {}, (0,), store=store)
        return key

    shared = add("nnst", "shared", _scaled, (TaskRef(add("inputs", "shared", _source, (SHARED,), False)), 2.0))
    for i in range(n):
        x = add("inputs", f"x{i}", _source, (bytes(range(i, i + 50)),), False)
        a = add("nnst", f"a{i}", _scaled, (TaskRef(x), 0.5 + i))
        b = add("color", f"b{i}", _combined, (TaskRef(x), TaskRef(a), TaskRef(shared)))
        add("scores", f"s{i}", _total, (TaskRef(x), TaskRef(b)))
    return graph


@pytest.mark.parametrize("n", [3, 12])
def test_records_held_in_process_are_bounded_by_the_graph_width_not_its_length(tmp_path, n):
    graph = long_graph(n)
    cache = CountingCache(tmp_path / "cache")
    TRACKER[:] = [cache]
    events = Events()
    results = execute(graph, cache, on_event=events)
    # at the widest point (a run's combined stage) 4 records are alive: the run's source (kept
    # for its last reader), its scaled record, the shared one (kept for the later runs) and the
    # record just computed; the same for 3 runs and 12 (all 4 n + 2 were held before)
    assert cache.peak == 4
    assert cache.alive() == 0  # the results hold no record
    assert events.started() == Counter(inputs=n + 1, nnst=n + 1, color=n, scores=n)
    assert not any(key.startswith("inputs-") and cache.has(key) for key in graph)  # not stored
    for i in range(n):
        x = np.arange(i, i + 50, dtype=np.float64)
        expected = (1.5 + i) * x.sum() + 50 * 2.0 * sum(SHARED) + x.sum()
        assert results[f"scores-{hashlib.sha256(f's{i}'.encode()).hexdigest()[:32]}"]["sum"] == pytest.approx(expected)
    # run again: every stored stage is cached, so nothing runs and nothing is loaded
    again = Events()
    cache.gets = 0
    assert needed(graph, cache) == []
    execute(graph, cache, on_event=again)
    assert again.started() == Counter() and cache.gets == 0
    assert again.keys("cached") == {key for key in graph if not key.startswith("inputs-")}


def test_results_hold_failures_and_read_records_on_demand(tmp_path):
    graph = long_graph(2)
    cache = CountingCache(tmp_path / "cache")
    TRACKER[:] = [cache]
    bad = next(key for key, task in graph.items() if task.args[0] == bytes(range(1, 51)))
    graph[bad] = Task(bad, "inputs", stages.decode_inputs, (b"not an image", b"", None, {"content": "bad.png"}), {},
                      (1,), store=False)
    results = execute(graph, cache)
    assert isinstance(results, Results) and list(results) == list(graph) and len(results) == len(graph)
    failed = [key for key in graph if results.failure(key) is not None]
    assert len(failed) == 4 and failed[0] == bad  # the source and the three stages of its run
    assert results[failed[-1]] == Failure(results.failure(bad).message, "inputs")
    assert "bad.png" in results.failure(bad).message
    assert cache.gets == 0 and isinstance(results[next(iter(graph))], dict)


# --------------------------------------------------------------------------- progress

STEPPED = (GOOD_PAIR + "[axes]\nseed = [0, 1]\n"
           "[fixed]\nsize = 32\nsteps = 3\nsplit_steps = 2\nout_size = 64\nrotate = false\n")


@pytest.fixture(scope="module")
def shown(folder, tmp_path_factory):
    """A plan with steps to show, run with every step's line (no throttle), and again with --quiet."""
    plan = folder / "plan_stepped.toml"
    plan.write_text(STEPPED)
    out = tmp_path_factory.mktemp("progress")
    stream = io.StringIO()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(plan_progress, "REPORT_INTERVAL_S", 0.0)
        run_plan(plan, out / "shown", stream=stream)
    quiet = CliRunner().invoke(app, ["experiment", str(plan), "-o", str(out / "quiet"), "--quiet"])
    return out, stream.getvalue(), quiet


def test_plain_progress_shows_the_steps_of_each_stage_and_the_time_left(shown):
    text = shown[1]
    loss = r"loss \d+\.\d{4}"
    # the first NNST: its own time left, and the plan's from it (the other kinds borrow its speed)
    assert re.search(rf"^run 1 of 2: nnst: scale 32px: step 2/3, {loss}, about \d+s left; plan about \d+s left$",
                     text, re.MULTILINE)
    assert re.search(rf"^run 1 of 2: nnst: feature splitting: step 2/2, {loss}, about \d+s left; "
                     rf"plan about \d+s left$", text, re.MULTILINE)
    assert re.search(rf"^run 2 of 2: nnst: scale 32px: step 3/3, {loss}, about \d+s left; plan about \d+s left$",
                     text, re.MULTILINE)
    assert re.search(r"^run 1 of 2: poster: level \d/\d \(\d+x\d+\), iteration \d/\d", text, re.MULTILINE)
    assert text.count("poster: searching and rendering") == 1  # said once for the plan's posters made alike
    assert text.index("run 1 of 2: nnst ...") < text.index("run 1 of 2: nnst: scale") < text.index(
        "run 1 of 2: nnst done in")


def test_quiet_prints_nothing(shown):
    quiet = shown[2]
    assert quiet.exit_code == 0, quiet.output
    assert quiet.stdout == "" and quiet.stderr == ""


def test_progress_changes_no_stage_key_and_no_record(shown):
    out = shown[0]
    shown_cache, quiet_cache = Cache(out / "shown" / "cache"), Cache(out / "quiet" / "cache")
    keys = sorted(path.stem for path in (out / "shown" / "cache").glob("*.json"))
    assert len(keys) == 10  # 11 stages, the inputs one not stored
    assert keys == sorted(path.stem for path in (out / "quiet" / "cache").glob("*.json"))
    for key in keys:
        a, b = shown_cache.get(key), quiet_cache.get(key)
        assert a.keys() == b.keys()
        for name, value in a.items():
            if isinstance(value, np.ndarray):
                np.testing.assert_array_equal(value, b[name])
            elif not name.startswith(("seconds", "peak_memory")):
                assert value == b[name], (key, name)


# --------------------------------------------------------------------------- plans


def _toml(folder: Path, text: str):
    import tomllib

    return parse_plan(tomllib.loads(text), folder)


@pytest.mark.parametrize("value", ["size = 8", "out_size = 8", "steps = -1", "split_steps = -1", "alpha = 2.0",
                                   "guide_weight = 2.0", "seed = -1", "nnst_weight = nan", "mask_weight = -1.0",
                                   "uniformity = inf", "max_search_size = 8", "finest_steps = -1",
                                   "out_size = 262145", "max_search_size = 16385"])
@pytest.mark.parametrize("table", ["fixed", "axes", "pair"])
def test_plan_values_out_of_range_are_named_by_their_plan_key(folder, value, table):
    """Was "fixed.seed: --seed must be ...": the run command's option, which a plan has not."""
    name, setting = value.split(" = ")
    text = {"fixed": f"{GOOD_PAIR}[fixed]\n{value}\n", "pair": f"{GOOD_PAIR}{value}\n",
            "axes": f"{GOOD_PAIR}[axes]\n{name} = [{setting}]\n"}[table]
    where = {"fixed": f"fixed.{name}", "pair": f"pair[0].{name}", "axes": f"axes.{name}[0]"}[table]
    with pytest.raises(InputError) as info:
        _toml(folder, text)
    assert str(info.value).startswith(f"{where}: {name} must "), str(info.value)
    assert "--" not in str(info.value)


@pytest.mark.parametrize("text, where", [
    (GOOD_PAIR + "[axes]\nalpha = [0.25, 0.5, 1.5]\n", "axes.alpha[2]: "),
    (GOOD_PAIR + "[axes]\nalpha = [0.25, \"x\"]\n", "axes.alpha[1]: must be float"),
    (GOOD_PAIR + "[axes]\nalpha = []\n", "axes.alpha: empty axis"),
    (GOOD_PAIR + "[axes]\nalpah = [0.5]\n", "axes.alpah: unknown option 'alpah' (did you mean 'alpha'?); use "),
    (GOOD_PAIR + "[fixed]\nstpes = 3\n", "fixed.stpes: unknown option 'stpes' (did you mean 'steps'?)"),
    (GOOD_PAIR + "[fixed]\nbeauty = 3\n", "fixed.beauty: unknown option 'beauty'; use "),  # nothing close
    (GOOD_PAIR + "[axis]\nalpha = [1]\n", "axis: unknown table (did you mean 'axes'?); a plan has"),
    (GOOD_PAIR + "[report]\nrow = \"alpha\"\n", "report.row: unknown key (did you mean 'rows'?)"),
    (GOOD_PAIR + "[axes]\nguide_mode = [\"soft\", \"medium\"]\n", "axes.guide_mode[1]: must be one of"),
    (GOOD_PAIR + "[axes]\nsteps = [1.5]\n", "axes.steps[0]: must be int"),
    (GOOD_PAIR + "[fixed]\nsize = 8\n", "fixed.size: size must be at least"),
    (GOOD_PAIR + "[fixed]\nsize = 9223372036854775807\n", "fixed.size: size must be at most 32768 px"),
    (GOOD_PAIR + "[fixed]\nout_size = 9223372036854775807\n", "fixed.out_size: out_size must be at most 262144 px"),
    (GOOD_PAIR + "[fixed]\nprint = \"A0\"\ndpi = 9000\n", "fixed.print: print A0 at 9000 dpi is 421299 px long, "
     "more than the 262144 px a poster may have; use a smaller print or dpi 5600 or less"),
    (GOOD_PAIR + "[fixed]\nrotate = 1\n", "fixed.rotate: must be bool"),
    (GOOD_PAIR + "[sweep]\nalpha = [1]\n", "sweep: unknown table"),
    ('[[pair]]\ncontent = "nope.png"\nstyle = "s.png"\n', "pair[0].content: no such file"),
    ('[[pair]]\ncontent = "c.png"\n', "pair[0].style: missing"),
    ('[[pair]]\ncontent = "*.jpg"\nstyle = "s.png"\n', "pair[0].content: no file matches"),
    (GOOD_PAIR + '[[pair]]\ncontent = "c.png"\nstyle = "s.png"\nguide = "nomasks"\n', "pair[1].guide: masks folder"),
    (GOOD_PAIR + 'alpha = 0.5\n[axes]\nalpha = [0.25]\n', "pair[0].alpha: also an axis"),
    (GOOD_PAIR + "[axes]\nalpha = [0.5]\n[report]\nrows = \"size\"\n", "report.rows: 'size' is not an axis"),
    (GOOD_PAIR + "[report]\nscore = \"beauty\"\n", "report.score: unknown score"),
    ("[axes]\nalpha = [0.5]\n", "pair: no pairs"),
    # fields without a CLI option: checked before any work too (coarsest = 0 hung, lr = nan was a traceback)
    (GOOD_PAIR + "[fixed]\ncoarsest = 0\n", "fixed.coarsest: coarsest must be at least 32"),
    (GOOD_PAIR + "[fixed]\nlr = nan\n", "fixed.lr: lr must be a positive finite number"),
    (GOOD_PAIR + "[axes]\npatch_size = [5, 4]\n", "axes.patch_size[1]: patch_size must be a positive odd"),
    (GOOD_PAIR + "[fixed]\nseed = -1\n", "fixed.seed: seed must be between 0 and"),
    (GOOD_PAIR + "[fixed]\nmask_weight = nan\n", "fixed.mask_weight: mask_weight must be a finite number >= 0"),
    ('[[pair]]\ncontent = "."\nstyle = "s.png"\n', "pair[0].content: "),  # a folder: "is a folder, not an image"
    (GOOD_PAIR + 'guide = "c.png"\n', "pair[0].guide: "),  # a file: "is a file, not a masks folder"
    # the same runs twice (both in the report) were run silently; [pair] and pair = 5 read "no pairs"
    (GOOD_PAIR + GOOD_PAIR, "pair[1]: c.png / s.png is already pair[0], with the same guide and options"),
    (GOOD_PAIR + '[[pair]]\ncontent = "?.png"\nstyle = "s.png"\n', "pair[1]: c.png / s.png is already pair[0]"),
    ('[pair]\ncontent = "c.png"\nstyle = "s.png"\n', "pair: written [pair]; write [[pair]]"),
    ("pair = 5\n", "pair: must be [[pair]] tables with content and style, got 5"),
])
def test_bad_plans_are_refused_naming_the_key(folder, text, where):
    with pytest.raises(InputError) as info:
        _toml(folder, text)
    assert str(info.value).startswith(where), str(info.value)
    assert "\n" not in str(info.value)
    if where in ("pair[0].content: ", "pair[0].guide: "):
        assert "is a folder, not an image" in str(info.value) or "is a file, not a masks folder" in str(info.value)


@pytest.mark.parametrize("fixed, warned", [("size = 64", True), ("size = 100", True), ("size = 128", False),
                                           ("size = 128\ncoarsest = 128", True)])
def test_an_alpha_axis_that_cannot_change_a_run_is_warned_about(folder, fixed, warned):
    """alpha acts from NNST's second scale on: a sweep at size 64 gave the same results for every alpha,
    and the report's identical scores said nothing of why."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _toml(folder, GOOD_PAIR + f"[axes]\nalpha = [0.25, 0.75]\n[fixed]\n{fixed}\n")
        _toml(folder, GOOD_PAIR + f"[axes]\nseed = [0, 1]\n[fixed]\nalpha = 0.5\n{fixed}\n")  # no alpha axis
    said = [str(w.message) for w in caught if "axes.alpha" in str(w.message)]
    assert len(said) == warned, said
    if warned:
        assert "their results are the same for every alpha; use size" in said[0]


def test_a_pair_repeated_with_other_options_is_two_pairs(folder):
    """The negative control of the duplicate-pair refusal: the same files with another option."""
    plan = _toml(folder, GOOD_PAIR + GOOD_PAIR + "alpha = 0.25\n")
    assert len(plan.pairs) == 2 and plan.pairs[0].content == plan.pairs[1].content
    assert [pair.options for pair in plan.pairs] == [{}, {"alpha": 0.25}]


def test_globs_per_pair_options_and_run_order(folder):
    plan = _toml(folder, '[[pair]]\ncontent = "?.png"\nstyle = "s.png"\nalpha = 0.75\nout_size = "none"\n'
                         '[[pair]]\ncontent = "c.png"\nstyle = "s.png"\n'
                         '[axes]\nsize = [32, 64]\nnnst_weight = [1, 3]\n[fixed]\nsteps = 2\n')
    assert [p.content.name for p in plan.pairs] == ["c.png", "s.png", "c.png"]  # the glob: 2 pairs
    runs = plan.runs()
    assert len(runs) == 3 * 2 * 2
    assert [(r.nnst.size, r.poster.nnst_weight) for r in runs[:4]] == [(32, 1.0), (32, 3.0), (64, 1.0), (64, 3.0)]
    assert {r.nnst.alpha for r in runs[:8]} == {0.75} and runs[8].nnst.alpha == NNSTConfig().alpha
    assert runs[0].poster.out_size is None and runs[0].nnst.steps == 2
    assert isinstance(runs[0].poster.nnst_weight, float)


def test_file_names_with_glob_characters_and_globs_in_such_a_folder(tmp_path):
    """``photo[1].png`` read "no file matches" (taken as a pattern that does not match itself), and a
    plan in ``runs [v2]/`` found nothing for ``*.png`` (its folder was part of the pattern)."""
    base = tmp_path / "runs [v2]"
    (base / "masks [a]").mkdir(parents=True)
    for name in ("photo[1].png", "s.png"):
        (base / name).write_bytes(b"")  # the plan only resolves the paths
    plan = parse_plan({"pair": [{"content": "photo[1].png", "style": "s.png", "guide": "masks [a]"},
                                {"content": "*.png", "style": "s.png"}]}, base)
    assert [p.content.name for p in plan.pairs] == ["photo[1].png", "photo[1].png", "s.png"]
    assert plan.pairs[0].guide == base / "masks [a]"
    with pytest.raises(InputError, match=r"^pair\[0\]\.content: no file matches 'photo\[2\]\.png'"):
        parse_plan({"pair": [{"content": "photo[2].png", "style": "s.png"}]}, base)  # a pattern matching nothing
    with pytest.raises(InputError, match=r"^pair\[0\]\.guide: a masks folder cannot be a glob"):
        parse_plan({"pair": [{"content": "s.png", "style": "s.png", "guide": "masks*"}]}, base)


def test_a_plan_saved_with_a_byte_order_mark_is_read(folder, tmp_path):
    """Windows Notepad's UTF-8 starts with a BOM: it read "not valid TOML (Invalid statement (at line 1 ..."."""
    path = tmp_path / "plan.toml"
    path.write_bytes(b"\xef\xbb\xbf" + f'[[pair]]\ncontent = "{folder / "c.png"}"\nstyle = "{folder / "s.png"}"\n'
                     .encode())
    assert load_plan(path).pairs[0].content == folder / "c.png"


def test_stage_keys_depend_on_exactly_what_the_stage_reads(folder):
    def graph(axes: str, fixed: str = TINY):
        plan = _toml(folder, GOOD_PAIR + "[axes]\n" + axes + fixed)
        g = build_graph(plan, read_inputs(plan))
        return Counter(task.stage for task in g.values())

    assert graph("device = [\"cpu\", \"auto\"]\n")["nnst"] == 1  # where it runs is not what it computes
    assert graph("color_iterations = [1, 2, 3]\n") == Counter(inputs=1, nnst=1, color=3, poster=1,
                                                                poster_color=3, scores=3)
    assert graph("patch_size = [3, 5]\n") == Counter(inputs=1, nnst=1, color=1, poster=2, poster_color=2, scores=2)
    assert graph("alpha = [0.25, 0.5]\n") == Counter(inputs=1, nnst=2, color=2, poster=2, poster_color=2, scores=2)
    # the poster reads the seed and rotate of the NNST config besides its own
    assert graph("seed = [0, 1]\n")["poster"] == 2
    no_poster = TINY.replace("out_size = 64\n", "")
    assert graph("out_size = [\"none\", 32]\n", no_poster)["poster"] == 0  # none, or NNST's own size


# --------------------------------------------------------------------------- cache


def test_cache_round_trip_and_corruption(tmp_path):
    cache = Cache(tmp_path)
    rng = np.random.default_rng(0)
    record = {"raw": rng.random((5, 4, 3), dtype=np.float32), "field": np.arange(12, dtype=np.int32).reshape(2, 2, 3),
              "objective": 0.25, "n": 3, "note": "x", "none": None}
    key = "nnst-" + "ab" * 16
    assert cache.get(key) is None and not cache.has(key) and not cache.valid(key)
    cache.put(key, record, meta={"seconds": 1.5})
    assert cache.valid(key)
    got = cache.get(key)
    assert got.keys() == record.keys()
    for name, value in record.items():
        np.testing.assert_array_equal(got[name], value) if isinstance(value, np.ndarray) else None
        assert isinstance(value, np.ndarray) or got[name] == value
    assert got["raw"].dtype == np.float32 and cache.meta(key) == {"seconds": 1.5}

    npz = tmp_path / f"{key}.npz"
    data = bytearray(npz.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped bit: checksum mismatch
    npz.write_bytes(bytes(data))
    assert cache.has(key)  # the json is there; only reading the arrays' bytes finds the damage
    with pytest.warns(UserWarning, match="corrupt"):
        assert not cache.valid(key)
    assert cache.get(key) is None  # removed by the check: recomputed, never loaded
    cache.put(key, record)
    npz.write_bytes(bytes(data))
    with pytest.warns(UserWarning, match="corrupt"):
        assert cache.get(key) is None
    cache.put(key, record)
    npz.write_bytes(npz.read_bytes()[:40])  # truncated
    with pytest.warns(UserWarning, match="corrupt"):
        assert cache.get(key) is None
    cache.put(key, record)
    (tmp_path / f"{key}.json").write_text("{")  # a torn json
    assert cache.get(key) is None
    with pytest.raises(ValueError):
        cache.get("../../etc/passwd")


# --------------------------------------------------------------------------- CLI


def test_cli_refuses_a_bad_plan_with_one_line_and_exit_2(folder, tmp_path):
    plan = write_plan(folder, "plan_bad.toml", "alpha = [0.25, 0.5, 1.5]\n")
    result = CliRunner().invoke(app, ["experiment", str(plan), "-o", str(tmp_path / "out")])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "axes.alpha[2]" in lines[0]
    assert not (tmp_path / "out").exists()  # before any work


def test_more_local_workers_than_cores_are_refused_before_any_work(folder, tmp_path, monkeypatch):
    """``--workers 1000000`` started worker processes until it hung, then printed a traceback."""
    from nnst_hr.experiment import driver

    monkeypatch.setattr(driver, "usable_cores", lambda: 2)
    plan = write_plan(folder, "plan_workers.toml", "alpha = [0.25]\n")
    result = CliRunner().invoke(app, ["experiment", str(plan), "-o", str(tmp_path / "out"), "--workers", "3"])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines == ["error: --workers 3: this machine has 2 CPU cores for this process, and each worker runs one "
                     "stage on one core (more add only memory); use --workers 2 or fewer"]
    assert not (tmp_path / "out").exists()
    driver.check_workers(2)  # as many as the cores: allowed
    driver.check_workers(None)


def test_the_sample_plan_is_valid_and_shares_nnst_across_poster_options():
    plan = load_plan(Path(__file__).resolve().parents[1] / "samples" / "experiment" / "plan.toml")
    graph = build_graph(plan, read_inputs(plan))
    stages_count = Counter(task.stage for task in graph.values())
    assert len(graph.runs) == 8 and stages_count["nnst"] == 4 and stages_count["poster"] == 8
    assert plan.pairs[1].guide is not None and plan.runs()[4].nnst.guide_weight == 0.75


def test_peak_memory_sees_an_allocation_inside_the_stage_and_none_outside():
    pytest.importorskip("psutil")
    import time

    from nnst_hr.experiment.execute import MEMORY_SAMPLE_S, PeakMemory

    size = 256 * 2**20
    with PeakMemory() as used:
        block = np.ones(size, np.uint8)  # touched pages: resident
        time.sleep(5 * MEMORY_SAMPLE_S)  # let the sampler see it before it is freed
        del block
    with PeakMemory() as idle:
        pass
    assert used.peak >= 0.9 * size
    assert idle.peak < 0.1 * size


def test_peak_gpu_memory_neither_imports_torch_nor_starts_cuda(monkeypatch):
    import builtins
    import sys

    from nnst_hr.experiment.execute import PeakMemory

    cuda_before = torch.cuda.is_initialized()
    with PeakMemory() as used:
        np.ones(1000)
    assert used.gpu_peak is None or cuda_before  # measured only where CUDA was already started
    assert torch.cuda.is_initialized() == cuda_before
    # a process without torch (a stage that never needed it) does not import it for the figure
    monkeypatch.delitem(sys.modules, "torch")
    real_import = builtins.__import__

    def no_torch(name, *args, **kwargs):
        if name.split(".")[0] == "torch":
            raise AssertionError("PeakMemory imported torch")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_torch)
    with PeakMemory() as used:
        np.ones(1000)
    assert used.gpu_peak is None and "torch" not in sys.modules


def test_masks_travel_through_the_inputs_record_unchanged():
    from guidance import load_masks
    from nnst_hr.files import read_image

    pair = Path(__file__).resolve().parents[1] / "samples" / "guided" / "louvre_to_house"
    files = {p.name: p.read_bytes() for p in pair.iterdir() if p.is_file()}
    record = stages.decode_inputs(files["content.png"], files["style.png"], files, {})
    masks = stages.masks_from(record)
    content, style = read_image(pair / "content.png"), read_image(pair / "style.png")
    reference = load_masks(pair, content.shape[:2], style.shape[:2])
    np.testing.assert_array_equal(record["content"], content)
    np.testing.assert_array_equal(masks.content, reference.content)
    np.testing.assert_array_equal(masks.style, reference.style)
    assert masks.n_labels == reference.n_labels > 1
    assert [label.name for label in masks.labels] == [label.name for label in reference.labels if not label.unguided]
    assert stages.masks_from(stages.decode_inputs(files["content.png"], files["style.png"], None, {})) is None


def test_inputs_decode_from_the_bytes_writing_no_file_and_errors_name_the_user_paths(folder, monkeypatch):
    import tempfile

    from guidance import MaskError
    from nnst_hr.files import read_image

    def refuse(*args, **kwargs):
        raise AssertionError("the inputs stage wrote a file")

    monkeypatch.setattr(tempfile, "TemporaryDirectory", refuse)
    monkeypatch.setattr(tempfile, "mkdtemp", refuse)
    monkeypatch.setattr(Path, "write_bytes", refuse)
    content, style = (folder / "c.png").read_bytes(), (folder / "s.png").read_bytes()
    names = {"content": "in/c.png", "style": "in/s.png", "guide": "in/badmasks"}
    record = stages.decode_inputs(content, style, None, names)
    np.testing.assert_array_equal(record["content"], read_image(folder / "c.png"))
    np.testing.assert_array_equal(record["style"], read_image(folder / "s.png"))
    with pytest.raises(InputError, match=r"^in/s\.png is not an image that can be read"):
        stages.decode_inputs(content, b"this is not an image", None, names)
    masks = {p.name: p.read_bytes() for p in (folder / "badmasks").iterdir()}
    with pytest.raises(MaskError, match=r"^mask in/badmasks/content_mask\.png is 20x40 \(aspect 0\.500\)"):
        stages.decode_inputs(content, style, masks, names)


def test_freed_heap_is_released_before_each_computed_stage(tmp_path, monkeypatch):
    """Each stage's peak memory is measured from what is live, not from what the stage before it freed."""
    from nnst_hr.experiment import execute as execute_module

    calls = []
    monkeypatch.setattr(execute_module, "release_freed_memory", lambda: calls.append(1) or True)
    cache = CountingCache(tmp_path / "cache")
    TRACKER[:] = [cache]
    events = Events()
    execute(long_graph(2), cache, on_event=events)
    assert len(calls) == sum(events.started().values()) == 10  # 3 sources, 3 nnst, 2 color, 2 scores


def test_plot_lines_join_only_runs_that_differ_in_the_plotted_axis():
    # 2 pairs x alpha (3) x uniformity (2): a line per pair and uniformity, through that series' own points
    rows = [{"status": "ok", "pair": p, "alpha": a, "uniformity": u, "scores": {"objective": p + a + 10 * u}}
            for p in (0, 1) for a in (0.25, 0.5, 0.75) for u in (0.1, 0.2)]
    svg = report_module.svg_plot("alpha", "objective", [0.25, 0.5, 0.75], rows, ("uniformity",))
    lines = re.findall(r'<polyline points="([^"]*)" fill="none" stroke="([^"]*)"', svg)
    circles = re.findall(r'<circle cx="([^"]*)" cy="([^"]*)" r="3" fill="([^"]*)"><title>([^<]*)</title>', svg)
    assert len(lines) == 4 and len(circles) == 12
    dots = {(f"{x},{y}", color) for x, y, color, _ in circles}
    for points, color in lines:
        vertices = points.split()
        assert len(vertices) == 3 and all((v, color) in dots for v in vertices)  # every vertex is a run
    # the series are the settings of the other axis, named in each point's tooltip
    assert sorted(t for *_, t in circles if t.startswith("pair 1, uniformity=0.2")) == [
        "pair 1, uniformity=0.2: 3.25", "pair 1, uniformity=0.2: 3.5", "pair 1, uniformity=0.2: 3.75"]
    # without other axes: one line per pair
    single = [row for row in rows if row["uniformity"] == 0.1]
    assert len(re.findall("<polyline", report_module.svg_plot("alpha", "objective", [0.25, 0.5, 0.75], single))) == 2
