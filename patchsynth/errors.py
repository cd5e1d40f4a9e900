"""The error that ``patchsynth`` raises for bad input."""


class PatchSynthError(ValueError):
    """Bad input to :func:`patchsynth.synthesize` (wrong shape, dtype, range or parameter).

    The message names the offending argument and how to fix it, so a caller (the nnst-hr CLI)
    can print it as is and exit with code 2.
    """
