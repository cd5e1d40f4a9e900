"""Shared fixtures: tiny NNST images; every test starts with the packages' loggers as a library leaves them, and with
stderr judged a terminal only by what it is (not by the variables that make rich draw anyway)."""

import warnings

import numpy as np
import pytest
from typer.testing import CliRunner

from nnst_hr.cli import app
from nnst_hr.logs import reset_logging

RICH_TERMINAL_VARIABLES = ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE")


@pytest.fixture(autouse=True)
def _unconfigured_logging():
    """The CLI configures logging for its process; undo it after each in-process call."""
    yield
    reset_logging()


@pytest.fixture(autouse=True)
def _terminal_only_if_it_is_one(monkeypatch):
    for name in RICH_TERMINAL_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def images():
    """A smooth content (72, 88) and a striped, noisy style (64, 88), float32 sRGB."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:72, 0:88] / 88.0
    content = np.stack([yy, xx, 0.5 + 0.3 * np.sin(8 * xx)], -1).astype(np.float32)
    stripes = (np.sin(xx * 40 + yy * 10) > 0).astype(np.float32)
    style = np.stack([stripes, 0.3 + 0.4 * rng.random(xx.shape), 1 - stripes], -1).astype(np.float32)
    return content, style[:64, :88]


@pytest.fixture
def cli():
    """Call the CLI in-process (typer's runner); the warning hooks that it installs are undone afterwards."""
    runner = CliRunner()
    with warnings.catch_warnings():
        yield lambda *args: runner.invoke(app, [str(arg) for arg in args])
