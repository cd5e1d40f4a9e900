"""Shared fixtures: every test starts with the packages' loggers as a library leaves them, and with
stderr judged a terminal only by what it is (not by the variables that make rich draw anyway)."""

import pytest

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
