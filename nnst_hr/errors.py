"""Exceptions that the CLI turns into a one-line message and exit code 2."""


class InputError(ValueError):
    """Bad user input (a missing or corrupt file, an existing output, bad masks...).

    The message names the problem and the fix; the CLI prints it without a traceback.
    """
