"""SIGTERM handled like Ctrl-C, for the CLI only (library code leaves signals alone).

A batch system cancels a job with SIGTERM (then SIGKILL after a grace period). Python's
default for SIGTERM is to die at once, skipping every clean-up; with
:func:`sigterm_as_exception` it raises :class:`~nnst_hr.errors.Terminated` (a
``KeyboardInterrupt``) in the main thread instead, so the atomic writes discard their
temporary files, a checkpoint being written is either complete or absent, and the CLI
prints the resume hint and exits 143 (128 + SIGTERM).

Examples
--------
>>> with sigterm_as_exception():          # doctest: +SKIP
...     run_files(content, style, output)
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from .errors import Terminated

EXIT_SIGTERM = 128 + signal.SIGTERM  # 143, the shell's convention for a process ended by SIGTERM
EXIT_SIGINT = 128 + signal.SIGINT  # 130


@contextmanager
def sigterm_as_exception() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` once; the old handler comes back after.

    A second SIGTERM while the first one's clean-up runs is ignored, so that clean-up
    (removing a temporary file) is not cut short. Outside the main thread (where Python
    cannot install handlers) the block runs unchanged.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    raised = False

    def handler(signum, frame):
        nonlocal raised
        if not raised:
            raised = True
            raise Terminated("terminated by SIGTERM")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
