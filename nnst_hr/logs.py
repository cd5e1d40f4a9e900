"""Where the library's log messages go when the command line runs it.

The packages only create loggers (``logging.getLogger(__name__)``); a program that uses
them as a library configures logging itself. The CLI calls :func:`configure_logging`:
messages of ``nnst_hr``, ``guidance`` and ``patchsynth`` go to stderr, through rich's
handler on a terminal (above the live progress bars) and as plain ``level: message`` lines
elsewhere, each info message once per command (an experiment decodes an input and post-processes
colors once per stage, and said the same thing each time). Other libraries' loggers are left as
they are.
"""

from __future__ import annotations

import logging
import sys

from rich.console import Console
from rich.logging import RichHandler

PACKAGES = ("nnst_hr", "guidance", "patchsynth")  # the loggers configured here, with their children
# the decoders log what they find wrong in a bad file ("incorrect StripByteCounts count", "PNG warning: IDAT:
# Too much image data"); Python's last-resort handler printed those bare lines above the one line that
# refuses the file (or during a run that read it anyway). The command silences them; a library caller's
# own logging set-up is its own.
DECODERS = ("tifffile", "imagecodecs")
_SILENT = logging.NullHandler()


class _StderrHandler(logging.StreamHandler):
    """A stream handler that writes to whatever ``sys.stderr`` is when a record is emitted.

    Binding the stream at configuration time would keep writing to a replaced stream (a test
    runner's capture, closed after the call).
    """

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


class _PlainFormatter(logging.Formatter):
    """``info: message``, the form of the CLI's own ``warning:`` and ``error:`` lines."""

    def format(self, record: logging.LogRecord) -> str:
        return f"{record.levelname.lower()}: {super().format(record)}"


class _InfoOnce(logging.Filter):
    """Lets an info record through only the first time its message is seen; other levels always."""

    def __init__(self):
        super().__init__()
        self.seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO:
            return True
        message = record.getMessage()
        if message in self.seen:
            return False
        self.seen.add(message)
        return True


_handler: logging.Handler | None = None


def configure_logging(level: int = logging.INFO, *, terminal: bool | None = None) -> logging.Handler:
    """Send the packages' log records of ``level`` and above to stderr, and the image decoders' nowhere.

    Calling it again replaces the handler it installed before (the level may change between a
    command's global options and its own), and forgets the info messages it has shown.

    Parameters
    ----------
    level : int
        ``logging.DEBUG``, ``logging.INFO`` or ``logging.WARNING`` (quiet).
    terminal : bool, optional
        Use rich's handler; default: whether stderr is a terminal.

    Returns
    -------
    logging.Handler
        The installed handler.

    Examples
    --------
    >>> handler = configure_logging(logging.WARNING, terminal=False)
    >>> logging.getLogger("nnst_hr.color").getEffectiveLevel() == logging.WARNING
    True
    >>> reset_logging()
    """
    global _handler
    reset_logging()
    console = Console(stderr=True)
    if terminal if terminal is not None else console.is_terminal:
        _handler = RichHandler(console=console, show_time=False, show_path=False, markup=False)
    else:
        _handler = _StderrHandler()
        _handler.setFormatter(_PlainFormatter())
    _handler.addFilter(_InfoOnce())
    for name in PACKAGES:
        logger = logging.getLogger(name)
        logger.setLevel(level)
        logger.addHandler(_handler)
    for name in DECODERS:
        logging.getLogger(name).addHandler(_SILENT)
    return _handler


def reset_logging() -> None:
    """Remove what :func:`configure_logging` installed (the packages' loggers back to unset)."""
    global _handler
    for name in PACKAGES:
        logger = logging.getLogger(name)
        logger.setLevel(logging.NOTSET)
        if _handler is not None:
            logger.removeHandler(_handler)
    for name in DECODERS:
        logging.getLogger(name).removeHandler(_SILENT)
    _handler = None
