"""Prints in experiment plans: ``print``, ``dpi``, ``fit`` as ``run --print/--dpi/--fit`` take them.

One tiny plan (64 px NNST, 2 steps, a 4x6 in print at 40 dpi: 160 x 240 px, of a 64 x 48 content)
is run once with a crop and a pad, and compared with ``run --print`` of the same settings.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import tomllib
from PIL import Image

from nnst_hr.config import NNSTConfig, PosterConfig, values_from
from nnst_hr.errors import InputError
from nnst_hr.experiment import run_plan
from nnst_hr.experiment.graph import build_graph, read_inputs
from nnst_hr.experiment.plan import parse_plan
from nnst_hr.files import write_image
from nnst_hr.printing import plan_print
from nnst_hr.run import RunOptions, check_run_options, run_files
from nnst_hr.scores import score_image

PAIR = '[[pair]]\ncontent = "c.png"\nstyle = "s.png"\n'
NNST = "size = 64\nsteps = 2\nsplit_steps = 2\nrotate = false\n"
PRINT, DPI = "4x6in", 40
CONTENT_SHAPE = (48, 64)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("plan_print")
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:48, 0:64] / 64
    content = np.stack([x, y, 1 - (x + y) / 2], -1) * 0.8 + rng.random((48, 64, 3)) * 0.2
    write_image(base / "c.png", content.astype(np.float32))
    y, x = np.mgrid[0:64, 0:64] / 64
    style = np.stack([0.5 + 0.5 * np.sin(x * 20), y, 0.3 + 0 * x], -1) * 0.9 + rng.random((64, 64, 3)) * 0.1
    write_image(base / "s.png", style.astype(np.float32))
    return base


def _plan(folder: Path, text: str):
    return parse_plan(tomllib.loads(text), folder)


@pytest.fixture(scope="module")
def ran(folder):
    """The plan run: a crop and a pad of the same print."""
    path = folder / "plan.toml"
    path.write_text(f'{PAIR}[axes]\nfit = ["crop", "pad"]\n[fixed]\n{NNST}print = "{PRINT}"\ndpi = {DPI}\n')
    with pytest.warns(UserWarning, match="smaller than the poster needs"):  # a 64 px style for a 240 px print
        summary = run_plan(path, folder / "results", quiet=True)
    return summary


def test_a_plan_print_has_exactly_the_print_pixels_and_its_dpi(ran, folder):
    assert [row["status"] for row in ran.rows] == ["ok", "ok"]
    for row in ran.rows:
        plan = plan_print(CONTENT_SHAPE, PRINT, DPI, row["fit"])
        assert plan.pixels == (160, 240) and plan.fitted_shape != CONTENT_SHAPE  # the content is fitted
        with Image.open(folder / "results" / row["result"]) as image:
            assert (image.height, image.width) == plan.pixels
            assert image.info["dpi"] == pytest.approx((DPI, DPI), abs=0.01)
    with open(folder / "results" / "results.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert [(r["print"], r["dpi"], r["fit"], r["out_size"]) for r in table] == [
        (PRINT, str(DPI), "crop", "240"), (PRINT, str(DPI), "pad", "240")]


@pytest.mark.parametrize("fit", ["crop", "pad"])
def test_a_plan_print_equals_run_print_with_the_same_settings(ran, folder, fit):
    row = next(r for r in ran.rows if r["fit"] == fit)
    options = RunOptions(nnst=NNSTConfig(size=64, steps=2, split_steps=2, rotate=False), print_size=PRINT, dpi=DPI,
                         fit=fit, quiet=True)
    with pytest.warns(UserWarning, match="smaller than the poster needs"):
        run_files(folder / "c.png", folder / "s.png", folder / f"run_{fit}.png", options)
    with Image.open(folder / "results" / row["result"]) as a, Image.open(folder / f"run_{fit}.png") as b:
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        assert a.info["dpi"] == b.info["dpi"]


def test_a_crop_and_a_pad_of_the_same_pair_differ_and_share_only_what_reads_no_fit(ran, folder):
    graph = ran.rows[0]["keys"], ran.rows[1]["keys"]
    crop, pad = graph
    assert set(crop) == set(pad)
    for stage in crop:  # every stage reads the fitted content (inputs) or what was made of it
        assert crop[stage] != pad[stage], stage
    images = [np.asarray(Image.open(folder / "results" / row["result"])) for row in ran.rows]
    assert images[0].shape == images[1].shape and not np.array_equal(*images)


def test_identical_prints_share_their_stages_and_prints_of_one_crop_share_nnst(folder):
    def stages_of(axes: str):
        plan = _plan(folder, f"{PAIR}[axes]\n{axes}\n[fixed]\n{NNST}dpi = {DPI}\n")
        graph = build_graph(plan, read_inputs(plan))
        return graph, [set(keys.items()) for keys in graph.runs]

    # two prints of one aspect (2:3): the same crop, so one NNST; their posters differ (240 and 480 px)
    graph, (small, large) = stages_of('print = ["4x6in", "8x12in"]\nseed = [0]')
    shared = {stage for stage, key in small & large}
    assert shared == {"inputs", "nnst", "color"}
    # a seed axis: both runs of one print share the inputs stage, the fit
    graph, runs = stages_of(f'print = ["{PRINT}"]\nseed = [0, 1]')
    assert [dict(r)["inputs"] for r in runs][0] == [dict(r)["inputs"] for r in runs][1]
    # a print and none: the content NNST reads differs, so every stage does
    graph, (none, printed) = stages_of(f'print = ["none", "{PRINT}"]')
    assert not none & printed


def test_a_print_is_scored_against_its_content_as_fitted(ran, folder):
    """The pad's content scores compare the print's content region with the whole content, not the
    margins of mirrored content with a stretched one."""
    row = next(r for r in ran.rows if r["fit"] == "pad")
    keys = row["keys"]
    plan = parse_plan(tomllib.loads((folder / "plan.toml").read_text()), folder)
    graph = build_graph(plan, read_inputs(plan))
    from nnst_hr.experiment.cache import Cache
    from nnst_hr.experiment.execute import Results

    results = Results(graph, Cache(folder / "results" / "cache"), {})
    inputs, nnst = results[keys["inputs"]], results[keys["nnst"]]
    final = results[keys["final"]]["image"]
    print_plan = plan_print(CONTENT_SHAPE, PRINT, DPI, "pad")
    assert inputs["content"].shape[:2] == print_plan.fitted_shape  # what NNST read
    assert inputs["source_content"].shape[:2] == CONTENT_SHAPE
    kwargs = dict(raw=nnst["raw"], nnst_config=NNSTConfig(size=64, steps=2, split_steps=2, rotate=False),
                  field=nnst["field"], style_size=tuple(int(v) for v in nnst["style_size"]),
                  upsampled_from=results[keys["color"]]["image"])
    expected = score_image(final, inputs["source_content"], inputs["style"], print_plan=print_plan, **kwargs)
    stretched = score_image(final, inputs["source_content"], inputs["style"], **kwargs)
    assert row["scores"]["content_ssim"] == pytest.approx(expected["content_ssim"], abs=1e-6)
    assert row["scores"]["content_ssim"] != pytest.approx(stretched["content_ssim"], abs=1e-3)  # negative control


def _run_message(**options) -> str:
    """What ``run`` says of these options, naming them as a plan does."""
    with values_from("plan"), pytest.raises(InputError) as info:
        check_run_options(RunOptions(**options))
    return str(info.value)


@pytest.mark.parametrize("text, where, says", [
    ('[fixed]\nprint = "A9"\n', "fixed.print", {"print_size": "A9"}),
    ('[fixed]\nprint = "A4"\ndpi = 2\n', "fixed.print", {"print_size": "A4", "dpi": 2}),
    ('[fixed]\ndpi = 0\n', "fixed.dpi", {"dpi": 0}),
    ('[axes]\ndpi = [300, 100000]\n[fixed]\nprint = "A4"\n', "axes.dpi[1]", {"print_size": "A4", "dpi": 100000}),
    ('print = "0x5cm"\n', "pair[0].print", {"print_size": "0x5cm"}),
    ('[fixed]\nout_size = 256\n[axes]\nprint = ["A4"]\n', "axes.print[0]", {"print_size": "A4", "dpi": 300,
                                                                              "poster": PosterConfig(out_size=256)}),
    ('[fixed]\nfit = "pad"\n', "fixed.fit", "fit applies to a print: give print too, or leave out fit"),
    ('[fixed]\nfit = "stretch"\nprint = "A4"\n', "fixed.fit", "must be one of 'crop', 'pad', got 'stretch'"),
    ('[fixed]\ndpi = 1.5\n', "fixed.dpi", "must be int"),
    ('[fixed]\nbleed = 3\n', "fixed.bleed", "bleed applies to a print: give print too, or leave out bleed"),
    ('[fixed]\nbleed = -1\nprint = "A4"\n', "fixed.bleed", "bleed -1.0 mm is out of range; use 0 or more"),
    ('[fixed]\nprint = "A6"\nbleed = 40\n', "fixed.print", {"print_size": "A6", "bleed": 40.0}),
    ('[axes]\nprint = [3]\n', "axes.print[0]", "must be str"),
])
def test_bad_print_options_are_refused_naming_the_key_with_the_run_message(folder, text, where, says):
    """``says``: the options whose message ``run`` gives (named as a plan names them), or a part of the message."""
    lead, body = (text, "") if text.startswith("[") else ("", text)
    with pytest.raises(InputError) as info:
        _plan(folder, PAIR + body + lead)
    message = str(info.value)
    assert message.startswith(f"{where}: ") and "\n" not in message and "--" not in message, message
    if isinstance(says, dict):
        assert message == f"{where}: {_run_message(**says)}"
    else:
        assert says in message, message


def test_a_guided_plan_print_fits_the_masks_as_run_print_does(folder, tmp_path):
    """A pad mirrors the content's label map with the content: the guided result equals ``run --guide --print``."""
    guide = tmp_path / "masks"
    guide.mkdir()
    content_mask = np.zeros((48, 64, 3), np.uint8)
    content_mask[:, 40:] = (255, 0, 0)  # two labels, split off centre: mirrored, the split moves
    style_mask = np.zeros((64, 64, 3), np.uint8)
    style_mask[32:] = (255, 0, 0)
    Image.fromarray(content_mask).save(guide / "content_mask.png")
    Image.fromarray(style_mask).save(guide / "style_mask.png")
    plan = tmp_path / "plan.toml"
    plan.write_text(f'[[pair]]\ncontent = "{folder / "c.png"}"\nstyle = "{folder / "s.png"}"\nguide = "{guide}"\n'
                    f'[fixed]\n{NNST}print = "{PRINT}"\ndpi = {DPI}\nfit = "pad"\n')
    with pytest.warns(UserWarning, match="smaller than the poster needs"):
        row = run_plan(plan, tmp_path / "results", quiet=True).rows[0]
    assert row["status"] == "ok" and "label_agreement" in row["scores"], row["message"]
    options = RunOptions(nnst=NNSTConfig(size=64, steps=2, split_steps=2, rotate=False), guide=guide,
                         print_size=PRINT, dpi=DPI, fit="pad", quiet=True)
    with pytest.warns(UserWarning, match="smaller than the poster needs"):
        run_files(folder / "c.png", folder / "s.png", tmp_path / "run.png", options)
    with Image.open(tmp_path / "results" / row["result"]) as a, Image.open(tmp_path / "run.png") as b:
        assert (a.height, a.width) == plan_print(CONTENT_SHAPE, PRINT, DPI, "pad").pixels
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_the_memory_check_sizes_nnst_for_the_content_as_the_print_fits_it(folder, monkeypatch):
    import nnst_hr.memory
    from nnst_hr.experiment import driver

    checked = []
    monkeypatch.setattr(nnst_hr.memory, "check_fits", lambda content, style, *a, **k: checked.append(content))
    plan = _plan(folder, f'{PAIR}[axes]\nfit = ["crop", "pad"]\n[fixed]\n{NNST}print = "{PRINT}"\ndpi = {DPI}\n')
    driver.check_memory(plan, read_inputs(plan))
    # a 4:3 landscape printed 3:2 (the print turned to the content): the crop is lower, the pad wider
    with values_from("plan"):
        fitted = {fit: plan_print(CONTENT_SHAPE, PRINT, DPI, fit).fitted_shape for fit in ("crop", "pad")}
    assert fitted["crop"][0] < CONTENT_SHAPE[0] and fitted["pad"][1] > CONTENT_SHAPE[1]
    assert sorted(checked) == sorted(fitted.values())


BELOW = "is smaller than the NNST result (size 256), so the poster keeps none of its extra detail: "


@pytest.mark.parametrize("pair, text, warned", [
    ("", '[fixed]\nprint = "2x1in"\ndpi = 64\nsize = 256\n',
     ["fixed.print: the print 2x1in at dpi 64 (128 px on its long side) " + BELOW
      + "print larger (print, dpi) or use size 128, as good and faster"]),
    # once per setting, whatever other axis multiplies the runs; the key names the axis value
    ("", '[axes]\nprint = ["4x6in", "2x1in"]\nseed = [0, 1, 2]\n[fixed]\ndpi = 64\nsize = 256\n',
     ["axes.print[1]: the print 2x1in at dpi 64 (128 px on its long side) " + BELOW
      + "print larger (print, dpi) or use size 128, as good and faster"]),
    ('print = "2x1in"\n', "[fixed]\ndpi = 64\nsize = 256\n",
     ["pair[0].print: the print 2x1in at dpi 64 (128 px on its long side) " + BELOW
      + "print larger (print, dpi) or use size 128, as good and faster"]),
    ("", "[axes]\nout_size = [64, 512]\n[fixed]\nsize = 256\n",
     ["axes.out_size[0]: out_size 64 " + BELOW + "use size 64, as good and faster, or leave out out_size"]),
    ("", '[fixed]\nprint = "2x1in"\ndpi = 64\nsize = 128\n', []),  # as large: nothing to say
    ("", "[fixed]\nsize = 256\n", []),  # no poster
])
def test_a_plan_poster_smaller_than_the_nnst_result_is_warned_about_as_run_does(folder, pair, text, warned):
    """``print = "A4"``, ``dpi = 72`` at the default size 1024 spent minutes on NNST detail the poster could not
    keep; ``run --print`` said so (test_print.py), a plan did not."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _plan(folder, PAIR + pair + text)
    said = [str(w.message) for w in caught if "smaller than the NNST result" in str(w.message)]
    assert said == warned


def test_a_plan_print_with_a_bleed_equals_run_print_with_it(folder):
    """``bleed`` in a plan, as ``run --bleed``: the bled print's pixels and the same image; the csv names it."""
    path = folder / "bleed.toml"
    path.write_text(f'{PAIR}[fixed]\n{NNST}print = "{PRINT}"\ndpi = {DPI}\nbleed = 5\n')
    with pytest.warns(UserWarning, match="smaller than the poster needs"):
        summary = run_plan(path, folder / "bleed_results", quiet=True)
    (row,) = summary.rows
    plan = plan_print(CONTENT_SHAPE, PRINT, DPI, bleed_mm=5)
    assert plan.pixels == (176, 256)  # 4x6 in + 2 x 5 mm at 40 dpi: 111.6 x 162.4 mm -> 175.7 x 255.7 px
    options = RunOptions(nnst=NNSTConfig(size=64, steps=2, split_steps=2, rotate=False), print_size=PRINT, dpi=DPI,
                         bleed=5, quiet=True)
    with pytest.warns(UserWarning, match="smaller than the poster needs"):
        run_files(folder / "c.png", folder / "s.png", folder / "run_bleed.png", options)
    with Image.open(folder / "bleed_results" / row["result"]) as a, Image.open(folder / "run_bleed.png") as b:
        assert (a.height, a.width) == plan.pixels
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    with open(folder / "bleed_results" / "results.csv", newline="") as f:
        (line,) = csv.DictReader(f)
    assert (line["print"], line["bleed"], line["out_size"]) == (PRINT, "5", "256")


# --------------------------------------------------------------------------- cmyk: a press file per run


@pytest.fixture(scope="module")
def press_folder(folder) -> Path:
    """The press profiles of the tests (``icc_profiles.cmyk_profile``), beside the plan's images."""
    from icc_profiles import cmyk_profile

    presses = folder / "presses"
    presses.mkdir(exist_ok=True)
    (presses / "press.icc").write_bytes(cmyk_profile())
    (presses / "other.icc").write_bytes(cmyk_profile(black_start=0.6, description="Other press"))
    return presses


@pytest.fixture(scope="module")
def pressed(folder, press_folder):
    """A plan of one bled print with a press profile, run in process."""
    path = folder / "press.toml"
    path.write_text(f'{PAIR}[fixed]\n{NNST}print = "{PRINT}"\ndpi = {DPI}\nbleed = 5\ncmyk = "presses/press.icc"\n')
    with pytest.warns(UserWarning, match="smaller than the poster needs"):
        return run_plan(path, folder / "press_results", quiet=True)


def test_a_plan_press_file_equals_run_print_cmyk_bit_for_bit(pressed, folder, press_folder):
    """``cmyk`` in a plan, as ``run --print --bleed --cmyk``: the run's press file is that command's output, byte for
    byte (separated CMYK, the profile embedded, the DPI), its soft proof that run's proof.jpg; result.png stays the
    sRGB print that is scored; the csv names the profile and the files."""
    (row,) = pressed.rows
    assert row["status"] == "ok", row["message"]
    results = folder / "press_results"
    options = RunOptions(nnst=NNSTConfig(size=64, steps=2, split_steps=2, rotate=False), print_size=PRINT, dpi=DPI,
                         bleed=5, cmyk=press_folder / "press.icc", quiet=True)
    with pytest.warns(UserWarning, match="smaller than the poster needs"):
        run_files(folder / "c.png", folder / "s.png", folder / "run_press.tif", options)
    assert (results / row["press_result"]).read_bytes() == (folder / "run_press.tif").read_bytes()
    assert (results / row["soft_proof"]).read_bytes() == (folder / "run_press.run" / "proof.jpg").read_bytes()
    import tifffile

    with tifffile.TiffFile(results / row["press_result"]) as tif:
        page = tif.pages.first
        assert page.photometric == tifffile.PHOTOMETRIC.SEPARATED and page.shape == (176, 256, 4)
        assert bytes(page.tags[34675].value) == (press_folder / "press.icc").read_bytes()
    with Image.open(results / row["result"]) as image:  # still the sRGB print, as without cmyk
        assert image.mode == "RGB" and (image.height, image.width) == (176, 256)
    with open(results / "results.csv", newline="") as f:
        (line,) = csv.DictReader(f)
    assert line["cmyk"] == str(press_folder / "press.icc")
    assert (line["press_result"], line["soft_proof"]) == (row["press_result"], row["soft_proof"])
    assert line["seconds.press"] != ""


def _graph(folder: Path, cmyk: str):
    plan = _plan(folder, f'{PAIR}[fixed]\n{NNST}print = "{PRINT}"\ndpi = {DPI}\ncmyk = "{cmyk}"\n')
    graph = build_graph(plan, read_inputs(plan))
    return graph.runs[0]


def test_the_press_stage_is_keyed_by_the_profiles_bytes_not_its_path(folder, press_folder, tmp_path):
    import shutil

    keys = _graph(folder, "presses/press.icc")
    moved = tmp_path / "elsewhere" / "fogra.icc"
    moved.parent.mkdir()
    shutil.copy(press_folder / "press.icc", moved)
    assert _graph(folder, str(moved)) == keys  # the same press under another name: nothing to rerun
    other = _graph(folder, "presses/other.icc")
    assert other["press"] != keys["press"]  # another press: its own separation
    assert {k: v for k, v in other.items() if k != "press"} == {k: v for k, v in keys.items() if k != "press"}


@pytest.mark.parametrize("text, says", [
    ('[fixed]\nprint = "A4"\ncmyk = "presses/rgb.icc"\n',
     "fixed.cmyk: cmyk {folder}/presses/rgb.icc is an RGB profile, not a CMYK one; give the output profile (.icc) "
     "of the press"),
    ('[fixed]\nprint = "A4"\n[axes]\ncmyk = ["presses/press.icc", "presses/none.icc"]\n',
     "axes.cmyk[1]: cmyk {folder}/presses/none.icc: no such file; give the output profile (.icc) of the press"),
    ('[fixed]\ncmyk = "presses/press.icc"\n', "fixed.cmyk: cmyk applies to a print: give print too, or leave out cmyk"),
    ('print = "A4"\ncmyk = 3\n', "pair[0].cmyk: must be str"),
])
def test_a_bad_press_profile_is_refused_before_any_work_naming_the_key(folder, press_folder, text, says):
    from nnst_hr.files import srgb_profile

    (press_folder / "rgb.icc").write_bytes(srgb_profile())
    lead, body = (text, "") if text.startswith("[") else ("", text)
    with pytest.raises(InputError) as info:
        _plan(folder, PAIR + body + lead)
    message = str(info.value)
    assert "\n" not in message and "--" not in message and message.startswith(says.format(folder=folder)), message


def test_a_press_stage_runs_on_a_dask_worker_and_moving_its_profile_reruns_nothing(pressed, folder, press_folder,
                                                                                    tmp_path):
    """With ``--workers``, the press stage of another profile (the rest cached by the in-process plan) runs on a
    worker and gives the ink LittleCMS separates here; the same plan with its profile moved runs no stage."""
    import os
    import shutil

    import tifffile

    from nnst_hr import icc

    moved = tmp_path / "moved.icc"
    shutil.copy(press_folder / "other.icc", moved)
    path = tmp_path / "plan.toml"
    cache = folder / "press_results" / "cache"
    path.write_text(f'[[pair]]\ncontent = "{folder / "c.png"}"\nstyle = "{folder / "s.png"}"\n[fixed]\n{NNST}'
                    f'print = "{PRINT}"\ndpi = {DPI}\nbleed = 5\ncmyk = "{press_folder / "other.icc"}"\n')
    started = []

    def on_event(event, task, info):
        if event == "start":
            started.append((task.stage, info.get("pid")))

    (row,) = run_plan(path, tmp_path / "results", cache_dir=cache, quiet=True, workers=1, on_event=on_event).rows
    assert [stage for stage, _ in started] == ["press"] and started[0][1] != os.getpid()
    from nnst_hr.experiment.cache import Cache

    final = Cache(cache).get(row["keys"]["final"])["image"]  # the final image the worker separated
    reference = icc.srgb_to_cmyk(final, (press_folder / "other.icc").read_bytes(), 16)
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "results" / row["press_result"]), reference)
    path.write_text(path.read_text().replace(str(press_folder / "other.icc"), str(moved)))
    started.clear()
    again = run_plan(path, tmp_path / "results", cache_dir=cache, quiet=True, on_event=on_event).rows[0]
    assert started == [] and again["keys"] == row["keys"]
    # the plan without cmyk: the press file and proof of its run id go (they would pass for this run's), the rest stays
    path.write_text(path.read_text().replace(f'cmyk = "{moved}"\n', ""))
    plain = run_plan(path, tmp_path / "results", cache_dir=cache, quiet=True).rows[0]
    folder = tmp_path / "results" / "runs" / plain["run"]
    assert plain["press_result"] == "" and "press" not in plain["keys"]
    assert sorted(p.name for p in folder.iterdir()) == ["nnst.key", "nnst.png", "result.key", "result.png"]


def test_the_plans_memory_check_counts_the_press_stage(folder, press_folder, monkeypatch):
    """A cmyk run's memory is checked with its ink's 16 bits, and on workers its press stage is one more stage
    holding the final image and its ink."""
    import nnst_hr.memory
    from nnst_hr.experiment import driver

    checked, together = [], []
    monkeypatch.setattr(nnst_hr.memory, "check_fits", lambda *a, **k: checked.append(k.get("press_bits")))
    monkeypatch.setattr(driver, "check_concurrent", lambda peaks, *a, **k: together.append(sorted(peaks)))
    for cmyk in ("", 'cmyk = "presses/press.icc"\n'):
        plan = _plan(folder, f'{PAIR}[fixed]\n{NNST}print = "{PRINT}"\ndpi = {DPI}\n{cmyk}')
        driver.check_memory(plan, read_inputs(plan), workers=2)
    assert checked == [None, 16]
    without, with_press = together
    (press,) = [peak for peak in with_press if peak not in without]
    with values_from("plan"):
        pixels = plan_print(CONTENT_SHAPE, PRINT, DPI).pixels
    assert press == nnst_hr.memory.BASE_BYTES + nnst_hr.memory.press_write_bytes(pixels, 16)
