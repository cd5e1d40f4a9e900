"""The command line shows the library's log messages on stderr, at the level its options ask for."""

from __future__ import annotations

import importlib.metadata
import logging
from pathlib import Path

import numpy as np
import pytest
from helpers import needs_weights

import nnst_hr
from nnst_hr.files import write_image

SAMPLE_MASKS = Path(__file__).resolve().parents[1] / "samples" / "guided" / "louvre_to_house"
LOG = logging.getLogger("nnst_hr.color")  # a library module that logs


def test_version_is_the_installed_distribution_version(cli):
    result = cli("--version")
    assert result.exit_code == 0, result.output
    assert result.stdout == f"nnst-hr {nnst_hr.__version__}\n"
    try:
        assert importlib.metadata.version("nnst-hr") == nnst_hr.__version__
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("nnst-hr is not installed; only the package's own version was checked")


def emitted(capsys) -> list[str]:
    """Log one record per level from a library module; the lines that reached stderr."""
    capsys.readouterr()
    for level in (logging.DEBUG, logging.INFO, logging.WARNING):
        LOG.log(level, "a %s record", logging.getLevelName(level).lower())
    return capsys.readouterr().err.splitlines()


def test_without_the_cli_the_library_prints_no_info(capsys):
    assert not [line for line in emitted(capsys) if "info" in line or "debug" in line]


def test_the_cli_shows_info_by_default_debug_with_verbose_and_only_warnings_when_quiet(cli, capsys, tmp_path):
    assert cli("masks", "check", SAMPLE_MASKS).exit_code == 0
    assert emitted(capsys) == ["info: a info record", "warning: a warning record"]

    assert cli("-v", "masks", "check", SAMPLE_MASKS).exit_code == 0
    assert emitted(capsys) == ["debug: a debug record", "info: a info record", "warning: a warning record"]

    missing = tmp_path / "missing.png"
    assert cli("run", missing, missing, "-o", tmp_path / "out.png", "--quiet").exit_code == 2
    assert emitted(capsys) == ["warning: a warning record"]


def test_an_info_message_is_shown_once_and_a_warning_each_time(capsys):
    """An experiment said "color post-processing skipped: monochrome style" once per color stage, and
    "colours converted from Adobe RGB" again as its report read the inputs for the sheet."""
    from nnst_hr.logs import configure_logging, reset_logging

    configure_logging(logging.INFO, terminal=False)
    try:
        capsys.readouterr()
        for _ in range(3):
            LOG.info("skipped: %s style", "monochrome")
            LOG.warning("a warning")
        LOG.info("skipped: %s style", "another")
        assert capsys.readouterr().err.splitlines() == [
            "info: skipped: monochrome style", "warning: a warning", "warning: a warning", "warning: a warning",
            "info: skipped: another style"]
        configure_logging(logging.INFO, terminal=False)  # a new command: shown again
        LOG.info("skipped: %s style", "monochrome")
        assert capsys.readouterr().err.splitlines() == ["info: skipped: monochrome style"]
    finally:
        reset_logging()


@needs_weights
def test_a_run_shows_the_library_info_message_of_a_monochrome_style(cli, tmp_path):
    rng = np.random.default_rng(0)
    content = write_image(tmp_path / "content.png", rng.random((48, 64, 3), dtype=np.float32))
    style = write_image(tmp_path / "style.png", np.repeat(rng.random((64, 64, 1), dtype=np.float32), 3, axis=2))
    args = ("run", content, style, "-o", tmp_path / "out.png", "--size", 64, "--steps", 1, "--split-steps", 1,
            "--no-rotate")
    result = cli(*args)
    assert result.exit_code == 0, result.output
    assert "info: color post-processing skipped: monochrome style" in result.stderr


def test_the_command_line_prints_each_warning_once_whatever_resets_pythons_memory_of_them(capsys):
    # An experiment's stages decode their inputs under warnings.catch_warnings, which resets the
    # "default" filter's once-per-place memory: a poster's warning came once per run.
    import warnings

    from nnst_hr.cli import _guarded

    def action():
        for _ in range(3):
            warnings.warn("the style image is smaller than the poster needs", UserWarning, stacklevel=1)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
        warnings.warn("another one", UserWarning, stacklevel=1)

    _guarded(action)
    assert capsys.readouterr().err.splitlines() == ["warning: the style image is smaller than the poster needs",
                                                    "warning: another one"]
