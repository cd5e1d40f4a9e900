"""Exceptions that the CLI turns into a one-line message and an exit code.

``InputError`` (and its subclass ``DiskFullError``): exit 2. ``Terminated``: exit 143,
like ``KeyboardInterrupt`` (exit 130) but raised by the CLI's SIGTERM handler.
"""

import errno
import os

# The fix for a path that the file system refuses whatever the command (errno: what to do), met
# wherever the path is first looked at (exists(), resolve(), a read, a write).
PATH_FIXES = {errno.ENAMETOOLONG: "give a shorter path", errno.ELOOP: "fix or remove the symbolic link"}


def path_refused(path: str | os.PathLike) -> str | None:
    """``"PATH: <the file system's words>; <the fix>"`` where the file system refuses to look ``path`` up
    whatever the command (:data:`PATH_FIXES`: a symbolic link loop, a name too long); None where it can
    (``path`` exists, or is simply missing). Checks that test ``is_file()`` said "no such file" for these.

    >>> path_refused("x" * 300).endswith(": File name too long; give a shorter path")
    True
    >>> path_refused("/no/such/file") is None
    True
    """
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno in PATH_FIXES:
            return f"{path}: {exc.strerror}; {PATH_FIXES[exc.errno]}"
    return None


class InputError(ValueError):
    """Bad user input (a missing or corrupt file, an existing output, bad masks...).

    The message names the problem and the fix; the CLI prints it without a traceback.
    """


class DiskFullError(InputError):
    """A write failed because its disk (or the user's quota) is full.

    The partial file is removed and no existing file is replaced (see
    :func:`nnst_hr.files.atomic_output`). ``path`` is the file that was being written.
    """

    def __init__(self, message: str, path=None):
        super().__init__(message)
        self.path = path


class Terminated(KeyboardInterrupt):
    """The process received SIGTERM (a batch system's cancel, ``kill``).

    A ``KeyboardInterrupt`` subclass so that every ``except BaseException`` clean-up
    (the atomic writes, the progress bar) treats it exactly like Ctrl-C. Only the CLI
    installs the handler that raises it (:func:`nnst_hr.signals.sigterm_as_exception`).
    """
