"""The error that ``guidance`` raises for masks that cannot be used."""


class MaskError(ValueError):
    """Masks that cannot guide a transfer (missing, unreadable, wrong aspect, not a label map...).

    The message names the file, the problem and the fix, so a caller (the nnst-hr CLI) can print
    it as is and exit with code 2.
    """
