"""Shared fixtures: every test starts with the packages' loggers as a library leaves them."""

import pytest

from nnst_hr.logs import reset_logging


@pytest.fixture(autouse=True)
def _unconfigured_logging():
    """The CLI configures logging for its process; undo it after each in-process call."""
    yield
    reset_logging()
