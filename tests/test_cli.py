"""The ``nnst-hr`` command line: exit codes, one-line errors, help, and one tiny end-to-end run.

Bad input is refused before any stylization starts, so every error case here is
fast; only :func:`test_tiny_run_writes_the_run_folder_refuses_then_resumes`
runs NNST, on 64 px images for a few steps.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import typer.main
from helpers import image_file, needs_weights
from PIL import Image
from typer.testing import CliRunner

from nnst_hr.cli import app
from nnst_hr.errors import InputError
from nnst_hr.files import read_image
from nnst_hr.weights import ENV_WEIGHTS, cache_path

SAMPLE_MASKS = Path(__file__).resolve().parents[1] / "samples" / "guided" / "louvre_to_house"
SCRIPT = Path(sys.executable).with_name("nnst-hr")  # the installed console script
INPUT_ERROR = 2  # the CLI's exit code for bad input
LABEL_ROW = re.compile(r"^\s+\d+\s+#[0-9a-f]{6}\s", re.MULTILINE)  # a guided label in the masks report


def label_map(path: Path, width: int, height: int) -> Path:
    """A two-colour label map: red left half, blue right half."""
    rgb = np.zeros((height, width, 3), np.uint8)
    rgb[:, : width // 2, 0] = 255
    rgb[:, width // 2 :, 2] = 255
    Image.fromarray(rgb).save(path)
    return path


def assert_refused(result, message: str) -> None:
    """Exit code 2 and exactly one line on stderr, naming the problem, with no traceback."""
    assert result.exit_code == INPUT_ERROR, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr
    assert "Traceback" not in result.output


# --------------------------------------------------------------------------- bad input


def missing(path: Path) -> None:
    """Create nothing."""


def truncated_jpeg(path: Path) -> None:
    Image.fromarray(np.full((48, 64, 3), 128, np.uint8)).save(path, format="JPEG")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def text_file(path: Path) -> None:
    path.write_text("not an image, just text\n")


@pytest.mark.parametrize(
    "name, make, message",
    [
        ("content.png", missing, "no such file"),
        ("content.jpg", truncated_jpeg, "truncated or corrupt"),
        ("content.png", text_file, "not an image"),
    ],
    ids=["missing", "truncated jpeg", "text named .png"],
)
def test_bad_content_file_is_refused_in_one_line(cli, tmp_path, name, make, message):
    content = tmp_path / name
    make(content)
    style = image_file(tmp_path / "style.png", 64, 64)
    result = cli("run", content, style, "-o", tmp_path / "out.png", "--size", 64)
    assert_refused(result, message)
    assert str(content) in result.stderr
    assert not (tmp_path / "out.png").exists() and not (tmp_path / "out.run").exists()


@pytest.mark.skipif(not SCRIPT.is_file(), reason="the nnst-hr script is not installed beside this Python")
def test_installed_script_exits_2_with_one_line_on_stderr(tmp_path):
    """The same contract through a real process: exit status, streams, no traceback."""
    content, style = tmp_path / "missing.png", image_file(tmp_path / "style.png", 64, 64)
    result = subprocess.run(
        [SCRIPT, "run", content, style, "-o", tmp_path / "out.png"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == INPUT_ERROR
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {content}: no such file"), result.stderr
    assert result.stdout == ""


def test_existing_output_is_refused_and_kept_without_overwrite(cli, tmp_path):
    content, style = image_file(tmp_path / "content.png", 64, 48), image_file(tmp_path / "style.png", 64, 64)
    output = tmp_path / "out.png"
    output.write_bytes(b"an earlier result")
    result = cli("run", content, style, "-o", output, "--size", 64)
    assert_refused(result, "--overwrite")
    assert output.read_bytes() == b"an earlier result"
    assert not (tmp_path / "out.run").exists()


@pytest.mark.parametrize("which", ["content", "style"])
def test_output_equal_to_an_input_is_refused_even_with_overwrite(cli, tmp_path, which):
    paths = {"content": image_file(tmp_path / "content.png", 64, 48),
             "style": image_file(tmp_path / "style.png", 64, 64)}
    before = paths[which].read_bytes()
    result = cli("run", paths["content"], paths["style"], "-o", paths[which], "--size", 64, "--overwrite")
    assert_refused(result, "one of the inputs")
    assert paths[which].read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["content.png", "style.png"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is available")
def test_cuda_without_a_gpu_is_refused(cli, tmp_path):
    content, style = image_file(tmp_path / "content.png", 64, 48), image_file(tmp_path / "style.png", 64, 64)
    result = cli("run", content, style, "-o", tmp_path / "out.png", "--size", 64, "--device", "cuda")
    assert result.exit_code == INPUT_ERROR, result.output
    assert result.stderr.splitlines()[-1].startswith("error: --device cuda") and "--device cpu" in result.stderr
    assert "Traceback" not in result.output
    assert not (tmp_path / "out.png").exists()


# --------------------------------------------------------------------------- help, weights, masks


def test_run_help_documents_every_option(cli):
    params = typer.main.get_command(app).commands["run"].params
    result = cli("run", "--help")
    assert result.exit_code == 0
    assert {param.name for param in params} >= {"content", "style", "output", "size", "out_size", "guide", "overwrite"}
    for param in params:
        assert param.help and param.help.strip(), f"{param.name} has no help"
        for name in param.opts + param.secondary_opts:
            assert re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", result.stdout), f"{name} not in run --help"


@pytest.mark.skipif(not cache_path().is_file(), reason="no weights in our cache (run `nnst-hr weights`)")
def test_weights_names_where_they_came_from(cli, monkeypatch):
    monkeypatch.delenv(ENV_WEIGHTS, raising=False)
    result = cli("weights")
    assert result.exit_code == 0, result.output
    assert f"VGG16 weights: our cache ({cache_path()})" in result.stdout
    assert "13 convolutions" in result.stdout


def test_missing_weights_file_is_refused(cli, tmp_path):
    assert_refused(cli("weights", "--weights", tmp_path / "vgg16.pth"), str(tmp_path / "vgg16.pth"))


def test_masks_check_lists_the_sample_labels(cli):
    result = cli("masks", "check", SAMPLE_MASKS)
    assert result.exit_code == 0, result.output
    assert len(LABEL_ROW.findall(result.stdout)) == 4
    assert "OK: 4 labels guide the transfer." in result.stdout


def test_masks_check_refuses_masks_of_another_aspect(cli, tmp_path):
    label_map(tmp_path / "content_mask.png", 40, 40)
    label_map(tmp_path / "style_mask.png", 40, 40)
    square, wide = image_file(tmp_path / "square.png", 80, 80), image_file(tmp_path / "wide.png", 64, 32)
    assert cli("masks", "check", tmp_path, "--content", square).exit_code == 0
    result = cli("masks", "check", tmp_path, "--content", wide)
    assert result.exit_code == INPUT_ERROR
    assert "aspect" in result.stdout and "Traceback" not in result.output
    # the fault on stderr too, in one line: only stdout (the report) said it
    assert_refused(result, f"mask {tmp_path / 'content_mask.png'} is 40x40 (aspect 1.000) but the content image")
    for name in ("empty1.png", "empty2.png"):  # two problems: the report lists both
        (tmp_path / name).write_bytes(b"")
    result = cli("masks", "check", tmp_path, "--content", tmp_path / "empty1.png", "--style", tmp_path / "empty2.png")
    assert_refused(result, "(and 1 more problem in the report)")
    assert result.stdout.count("\n  - ") == 2, result.stdout


def test_masks_check_of_a_missing_folder_is_one_line_on_stderr(cli, tmp_path):
    assert_refused(cli("masks", "check", tmp_path / "masks"), f"mask folder {tmp_path / 'masks'} does not exist")
    assert cli("masks", "check", tmp_path / "masks").stdout == ""


# --------------------------------------------------------------------------- a whole run


@needs_weights
def test_tiny_run_writes_the_run_folder_refuses_then_resumes(cli, tmp_path):
    content, style = image_file(tmp_path / "content.png", 64, 48), image_file(tmp_path / "style.png", 64, 64, seed=1)
    output = tmp_path / "out.png"
    args = ("run", content, style, "-o", output, "--size", 64, "--steps", 3, "--split-steps", 2, "--device", "cpu")

    first = cli(*args)
    assert first.exit_code == 0, first.output
    assert read_image(output).shape == (48, 64, 3)
    folder = tmp_path / "out.run"
    assert {"config.json", "nnst.png", "nnst_raw.png", "nnf.npz", "timings.json"} <= {p.name for p in folder.iterdir()}
    with np.load(folder / "nnf.npz") as nnf:
        assert {"nnf", "content_size", "style_size", "stride"} <= set(nnf.files)
        stride = int(nnf["stride"])
        assert stride == 4  # the feature grid of ARCHITECTURE.md
        assert nnf["nnf"].dtype == np.int32 and nnf["nnf"].shape == (48 // stride, 64 // stride, 3)
        assert tuple(nnf["content_size"]) == (48, 64) and tuple(nnf["style_size"]) == (64, 64)
    assert json.loads((folder / "timings.json").read_text())["total"] > 0
    assert json.loads((folder / "config.json").read_text())["nnst_key"]["nnst"]["steps"] == 3
    result = output.read_bytes()

    assert_refused(cli(*args), "already exists")
    assert output.read_bytes() == result

    resumed = cli(*args, "--overwrite")
    assert resumed.exit_code == 0, resumed.output
    assert "resumed" in resumed.stderr
    assert output.read_bytes() == result


def test_config_ranges_outside_the_cli_are_refused():
    from nnst_hr.config import NNSTConfig, PosterConfig

    with pytest.raises(InputError, match="--max-search-size must be at least"):  # the run command's option
        PosterConfig(out_size=8192, max_search_size=0).validate()
    with pytest.raises(InputError, match="PosterConfig.max_search_size must be at least"):  # config.json's entry
        PosterConfig(out_size=8192, max_search_size=0).validate(naming="config")
    with pytest.raises(InputError, match="split_refresh"):
        NNSTConfig(split_refresh=0).validate()


def test_the_config_fields_named_by_an_option_are_the_run_commands_options():
    """Messages about a value from the command line name its option (nnst_hr.config.field_label) for these fields."""
    from dataclasses import fields

    import typer

    from nnst_hr.config import CLI_FIELDS, NNSTConfig, PosterConfig, field_label

    options = {param.name: param.opts for param in typer.main.get_command(app).commands["run"].params}
    config_fields = {f.name: cls for cls in (NNSTConfig, PosterConfig) for f in fields(cls)}
    assert CLI_FIELDS == set(options) & set(config_fields)
    for name in CLI_FIELDS:
        assert field_label(config_fields[name], name) in options[name]


@pytest.mark.parametrize("extra", [["--alpha", "2"], ["--size", "8"], ["--out-size", "4"],
                                   ["--out-size", "256", "--max-search-size", "8"]])
def test_out_of_range_options_exit_2_before_any_work(tmp_path, extra):
    content, style = tmp_path / "c.png", tmp_path / "s.png"
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(content)
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(style)
    result = CliRunner().invoke(app, ["run", str(content), str(style), "-o", str(tmp_path / "o.png"), *extra])
    assert result.exit_code == 2
    assert not (tmp_path / "o.run").exists()


@needs_weights
def test_max_search_size_reaches_the_poster(cli, tmp_path):
    content, style = image_file(tmp_path / "content.png", 64, 48), image_file(tmp_path / "style.png", 64, 64, seed=1)
    output = tmp_path / "out.png"
    result = cli("run", content, style, "-o", output, "--size", 64, "--steps", 2, "--split-steps", 1, "--device", "cpu",
                 "--out-size", 128, "--max-search-size", 64)
    assert result.exit_code == 0, result.output
    assert "searching at 64x48" in result.stderr and read_image(output).shape == (96, 128, 3)
    config = json.loads((tmp_path / "out.run" / "config.json").read_text())
    assert config["poster_key"]["poster"]["max_search_size"] == 64


@pytest.mark.parametrize("command, stops, resume", [
    (["experiment", "plan.toml", "-o", "out"], "nnst_hr.experiment.run_plan", "resume from the stages in the cache"),
    (["run", "c.png", "s.png", "-o", "o.png"], "nnst_hr.run.run_files", "resume from the run folder"),
    (["weights"], "nnst_hr.weights.describe", None),
])
@pytest.mark.parametrize("signal_error, first_words, code", [(KeyboardInterrupt, "interrupted", 130),
                                                              ("Terminated", "terminated (SIGTERM)", 143)])
def test_an_interrupted_command_says_how_to_resume_it(cli, monkeypatch, command, stops, resume, signal_error,
                                                      first_words, code):
    """Each command's own way on: an experiment's said "resume from the run folder", which it has not,
    and so did ``weights``, ``metrics`` and ``cache``, which have nothing to resume."""
    from nnst_hr.errors import Terminated

    error = Terminated if signal_error == "Terminated" else signal_error

    def stop(*args, **kwargs):
        raise error

    monkeypatch.setattr(stops, stop)
    result = cli(*command)
    assert result.exit_code == code, result.output
    assert result.stderr.splitlines() == [f"{first_words}: run the same command again to {resume}" if resume
                                          else first_words]


@pytest.mark.parametrize("args, name", [
    (("run", "c.png", "s.png", "-o", ""), "--output"),
    (("run", "c.png", "s.png", "-o", "out.png", "--guide", ""), "--guide"),
    (("run", "", "s.png", "-o", "out.png"), "CONTENT"),
    (("experiment", "plan.toml", "-o", ""), "--output"),
    (("experiment", "plan.toml", "-o", "results", "--cache", ""), "--cache"),
    (("metrics", "image.png", "--content", "", "--style", "s.png"), "--content"),
    (("masks", "check", ""), "FOLDER"),
    (("masks", "check", "masks", "--style", ""), "--style"),
    (("cache", "info", ""), "FOLDER"),
    (("cache", "prune", "cache", "--keep", "plan.toml", "--keep", ""), "--keep"),
    (("weights", "--weights", ""), "--weights"),
])
def test_an_empty_path_is_refused_not_taken_for_the_current_folder(cli, tmp_path, monkeypatch, args, name):
    """pathlib reads '' as '.': ``experiment plan.toml -o ''`` wrote its results into the current folder."""
    monkeypatch.chdir(tmp_path)
    assert_refused(cli(*args), f"{name} is empty: give a path")
    assert list(tmp_path.iterdir()) == []
    # the control: '.' itself is a path, refused (if at all) for what it names, not as empty
    result = cli(*("." if arg == "" else arg for arg in args))
    assert "is empty" not in result.output


@pytest.mark.parametrize("address", ["", " "])
def test_an_empty_scheduler_address_is_refused_naming_the_option(cli, tmp_path, address):
    """It was "cannot reach the Dask scheduler at  (missing port number in address '')", after the plan's warnings."""
    plan = tmp_path / "plan.toml"
    plan.write_text('[[pair]]\ncontent = "c.png"\nstyle = "s.png"\n')  # missing files: refused if read first
    assert_refused(cli("experiment", plan, "-o", tmp_path / "out", "--scheduler", address),
                   "--scheduler is empty: give the Dask scheduler's address (tcp://host:8786)")
    assert not (tmp_path / "out").exists()


def test_jpeg_quality_for_an_output_of_another_format_is_warned_about(cli, tmp_path, monkeypatch):
    """--jpeg-quality 80 with -o out.png was silently ignored. It is said once the run's checks have passed
    (a run refused by one, as for a missing input, says only that)."""
    def work(*args, **kwargs):
        raise InputError("stopped at the work")

    monkeypatch.setattr("nnst_hr.run._nnst", work)
    style, missing = image_file(tmp_path / "style.png", 64, 64), tmp_path / "missing.png"
    content = image_file(tmp_path / "c.png", 64, 64)
    for output, quality, written_as in (("out.png", ("--jpeg-quality", 80), "PNG"),
                                        ("out.TIF", ("--jpeg-quality", 80), "TIFF"),
                                        ("out.jpg", ("--jpeg-quality", 80), None),  # the controls
                                        ("out.png", (), None)):
        result = cli("run", content, style, "-o", tmp_path / output, "--size", 64, *quality)
        assert result.exit_code == INPUT_ERROR and "error: stopped at the work" in result.stderr, result.stderr
        warned = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
        assert warned == ([f"warning: --jpeg-quality 80 is ignored: {tmp_path / output} is written as {written_as}; "
                           "it applies to a .jpg output"] if written_as else []), result.stderr
        result = cli("run", missing, style, "-o", tmp_path / output, *quality)
        assert_refused(result, f"{missing}")
        assert "warning" not in result.stderr, result.stderr
    # out of range: one error line, not a warning that it is ignored and then the error
    result = cli("run", image_file(tmp_path / "content.png", 64, 64), style, "-o", tmp_path / "o.png",
                 "--jpeg-quality", 0)
    assert_refused(result, "--jpeg-quality 0 is out of range; use 1 to 100")
    assert "warning" not in result.stderr, result.stderr


def test_a_closed_stdout_stops_the_command_quietly_with_141(tmp_path):
    """`nnst-hr masks check ... | head` whose reader had gone: an internal error with a BrokenPipeError traceback."""
    masks = Path(__file__).resolve().parents[1] / "samples" / "guided" / "louvre_to_house"
    process = subprocess.Popen([sys.executable, "-m", "nnst_hr", "masks", "check", masks],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()  # the reader goes before the command writes its report
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=120) == 141 and stderr == ""
