"""The stages as pure functions: composition, resumption hooks, no global state, configs that round-trip.

The NNST calls run on 88 px images (conftest.py) for a few steps.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numba
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import nnst_hr.nnst as nnst_module
from nnst_hr.cli import app
from nnst_hr.color import color_stage
from nnst_hr.config import NNSTConfig, PosterConfig
from nnst_hr.errors import InputError
from nnst_hr.files import read_image, save_npz, write_image
from nnst_hr.nnst import stylize, synthesize_nnst
from nnst_hr.poster import color_poster, synthesize_poster_stage
from nnst_hr.run import read_run_config

ROOT = Path(__file__).resolve().parents[1]


CONFIG = NNSTConfig(size=88, coarsest=44, steps=2, split_steps=1, seed=2)
POSTER = PosterConfig(out_size=132, search_vote_iters=1, patchmatch_iters=1)


@pytest.fixture(scope="module")
def stage(images):
    return synthesize_nnst(*images, CONFIG)


def process_state():
    """What a library call must leave as it found it: torch's global RNG, the environment, Numba's threads."""
    return torch.random.get_rng_state(), dict(os.environ), numba.get_num_threads()


def assert_unchanged(before):
    rng, environ, threads = process_state()
    assert torch.equal(rng, before[0]), "torch's global RNG state changed"
    assert environ == before[1], "os.environ changed"
    assert threads == before[2], "Numba's thread count changed"


def test_stylize_is_the_nnst_stage_then_the_color_stage(images, stage):
    content, style = images
    torch.manual_seed(1234)  # not the state stylize would seed
    before = process_state()
    whole = stylize(content, style, CONFIG)
    assert_unchanged(before)
    assert np.array_equal(whole.raw, stage.raw) and np.array_equal(whole.field, stage.field)
    assert whole.objective == stage.objective and whole.style_size == stage.style_size
    colored = color_stage(stage.raw, content, style, CONFIG)
    assert np.array_equal(whole.image, colored)
    assert not np.array_equal(colored, stage.raw)  # the color stage did something
    assert color_stage(stage.raw, content, style, replace(CONFIG, color=False)) is stage.raw


def test_every_checkpoint_handed_back_skips_its_scale(images, monkeypatch):
    content, style = images
    config = replace(CONFIG, split_steps=0)
    saved = {}
    first = synthesize_nnst(content, style, config, on_checkpoint=saved.__setitem__)
    assert sorted(saved) == ["scale0", "scale1"]  # 44 and 88 px
    assert saved["scale0"].shape == (36, 44, 3) and saved["scale1"].shape == (72, 88, 3)

    def no_fit(*args, **kwargs):
        raise AssertionError("a finished scale was recomputed")

    monkeypatch.setattr(nnst_module, "fit_hypercolumns", no_fit)
    resumed = synthesize_nnst(content, style, config, start_from=saved)
    # the last state, decomposed into the pyramid and put together again: equal up to rounding
    assert np.abs(resumed.raw - first.raw).max() < 1e-5
    with pytest.raises(AssertionError, match="recomputed"):
        synthesize_nnst(content, style, config, start_from={"scale0": saved["scale0"]})


def test_a_start_from_name_that_is_no_state_of_the_run_is_refused_naming_the_states(images, monkeypatch):
    """A misspelt name, or one of a run with more scales, was ignored silently and its scale recomputed."""
    content, style = images

    def no_work(*args, **kwargs):
        raise AssertionError("refused only after work began")

    monkeypatch.setattr(nnst_module, "fit_hypercolumns", no_work)
    state = np.zeros((36, 44, 3), np.float32)
    for start_from, named in (({"scale_0": state}, "'scale_0', which is"), ({"scale0": state, "scale2": state,
                                                                             0: state}, "'scale2', 0, which are")):
        with pytest.raises(InputError, match=rf"^start_from has {named} no state of this run: its states are "
                                             r"scale0, scale1, as on_checkpoint"):
            synthesize_nnst(content, style, replace(CONFIG, split_steps=0), start_from=start_from)


def test_a_saved_state_of_another_type_or_with_nan_is_recomputed_with_a_warning(images):
    """start_from took a uint8 or NaN state as it was: a garbled or NaN result; a list failed comparing names."""
    content, style = images
    config = replace(CONFIG, split_steps=0)
    saved = {}
    first = synthesize_nnst(content, style, config, on_checkpoint=saved.__setitem__)
    for bad, why in (((saved["scale0"] * 255).astype(np.uint8), "is of type uint8"),
                     (np.full_like(saved["scale0"], np.nan), "has NaN or infinite values"),
                     (saved["scale0"][:10], r"is \(10, 44, 3\), not the \(36, 44\)")):
        with pytest.warns(UserWarning, match=rf"^the saved state scale0 {why}.*; recomputing it"):
            again = synthesize_nnst(content, style, config, start_from={"scale0": bad})
        assert np.array_equal(again.raw, first.raw)  # recomputed: the same bits as the first call
    with pytest.raises(InputError, match=r"^start_from is a list: give a mapping of state names to arrays"):
        synthesize_nnst(content, style, config, start_from=[saved["scale0"]])
    with pytest.raises(InputError, match=r"^progress is a bool, not a nnst_hr\.progress\.Progress"):
        synthesize_nnst(content, style, config, progress=True)


def test_importing_the_library_sets_no_environment_variable():
    code = ("import os; before = dict(os.environ); "
            "import nnst_hr, nnst_hr.nnst, nnst_hr.poster, nnst_hr.run, nnst_hr.color, patchsynth, guidance; "
            "changed = sorted(k for k in set(before) | set(os.environ) if before.get(k) != os.environ.get(k)); "
            "print(changed)")
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    env["PYTHONPATH"] = str(ROOT)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.filterwarnings("ignore:the style image")  # a small style for speed
def test_poster_stage_composes_with_its_color_stage(images, stage):
    content, style = images
    result = stage
    if numba.get_num_threads() == 1:
        pytest.skip("Numba runs one thread here: a changed thread count could not be seen")
    before = process_state()
    poster = synthesize_poster_stage(content, style, result, POSTER, CONFIG)
    assert_unchanged(before)  # small levels run on one thread: the count must come back
    assert poster.out_shape == (108, 132) and poster.synthesized.shape == (108, 132, 3)
    assert poster.field.shape == (108, 132, 2) and poster.field.dtype == np.int32
    again = synthesize_poster_stage(content, style, result, POSTER, CONFIG)
    assert np.array_equal(poster.synthesized, again.synthesized)  # same seed, same poster
    final = color_poster(poster.synthesized, content, style, result.style_size, CONFIG)
    assert final.shape == (108, 132, 3) and final.min() >= 0 and final.max() <= 1
    assert color_poster(poster.synthesized, content, style, result.style_size,
                        replace(CONFIG, color=False)) is poster.synthesized


# --------------------------------------------------------------------------- configs


@pytest.mark.parametrize("config", [NNSTConfig(size=256, alpha=0.5, rotate=False, guide_mode="hard", finest_steps=3),
                                    PosterConfig(out_size=2048, nnst_weight=1.5, render="vote")])
def test_configs_round_trip_through_json(config):
    data = json.loads(json.dumps(config.to_dict()))
    assert type(config).from_dict(data) == config
    assert type(config).from_dict({}) == type(config)()  # missing keys take the defaults


def test_unknown_config_keys_are_refused_in_one_line():
    with pytest.raises(InputError, match="unknown parameter.*guide_weight") as err:
        PosterConfig.from_dict({"out_size": 64, "guide_weight": 2.0})  # the field's old name
    assert "\n" not in str(err.value)
    with pytest.raises(InputError, match="stepz"):
        NNSTConfig.from_dict({"stepz": 3})


def test_rotation_ids_follow_rotate():
    assert NNSTConfig().rotation_ids() == [0, 1, 2, 3] and NNSTConfig(rotate=False).rotation_ids() == [0]


def test_save_npz_round_trips_and_respects_overwrite(tmp_path):
    image = np.random.default_rng(0).random((5, 6, 3)).astype(np.float32)
    path = save_npz(tmp_path / "a.npz", image=image, objective=np.float64(0.25))
    with np.load(path) as data:
        assert np.array_equal(data["image"], image) and data["image"].dtype == np.float32
        assert float(data["objective"]) == 0.25
    zeros = np.zeros((64, 64), np.float32)
    save_npz(tmp_path / "z.npz", compressed=True, zeros=zeros)
    assert (tmp_path / "z.npz").stat().st_size < zeros.nbytes / 10
    with pytest.raises(InputError, match="exists"):
        save_npz(path, overwrite=False, image=image[:1])
    with np.load(path) as data:
        assert np.array_equal(data["image"], image)  # the refused write left the file as it was
    # no temporary left
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npz", "a.npz.sha256", "z.npz", "z.npz.sha256"]


# --------------------------------------------------------------------------- nnst-hr run --config


def test_config_json_reproduces_the_run_and_the_command_line_overrides_it(tmp_path, images, monkeypatch):
    content, style = (write_image(tmp_path / name, image)
                      for name, image in zip(("c.png", "s.png"), images, strict=True))
    runner = CliRunner()
    first = runner.invoke(app, ["run", str(content), str(style), "-o", str(tmp_path / "a.png"), "--size", "64",
                                "--steps", "2", "--split-steps", "1", "--alpha", "0.6", "--seed", "4",
                                "--no-rotate", "--dpi", "150", "-q"])
    assert first.exit_code == 0, first.output
    config = tmp_path / "a.run" / "config.json"
    again = runner.invoke(app, ["run", "--config", str(config), "-o", str(tmp_path / "b.png"), "-q"])
    assert again.exit_code == 0, again.output
    assert np.array_equal(read_image(tmp_path / "a.png"), read_image(tmp_path / "b.png"))
    written = json.loads((tmp_path / "b.run" / "config.json").read_text())
    assert written["nnst"] == json.loads(config.read_text())["nnst"] and written["dpi"] == 150

    captured = {}
    monkeypatch.setattr("nnst_hr.run.run_files", lambda *args, **kwargs: captured.update(args=args))
    given = runner.invoke(app, ["run", "--config", str(config), "--seed", "9", "--dpi", "300", "--rotate"])
    assert given.exit_code == 0, given.output
    content_path, style_path, output, options = captured["args"]
    assert (content_path, style_path, output) == (content, style, tmp_path / "a.png")
    expected = replace(read_run_config(config)["options"].nnst, seed=9, rotate=True)
    assert options.nnst == expected and options.dpi == 300 and options.nnst.alpha == 0.6


def test_config_with_an_unknown_parameter_is_refused(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"nnst": {"size": 64, "bogus": 1}, "poster": {}, "content": "c.png",
                                "style": "s.png", "output": "o.png"}))
    result = CliRunner().invoke(app, ["run", "--config", str(path)])
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and "bogus" in result.stderr


def test_run_without_inputs_or_config_is_refused():
    result = CliRunner().invoke(app, ["run", "--size", "64"])
    assert result.exit_code == 2 and "missing CONTENT, STYLE, --output" in result.stderr
