"""Input sizes: refuse images too small to mean anything, warn about heavy upscaling.

NNST describes an image by VGG hypercolumns on a grid of one cell per ``FEATURE_STRIDE``
(4) pixels, and the poster stage copies 5 x 5 patches of the style. An input whose short
side is below ``MIN_INPUT_SIDE`` pixels *as given* has fewer than 4 such cells across
(and a style that small has not one 5 x 5 patch per cell): upscaling it to ``--size``
only interpolates a handful of colours, so the result is a blur of them, not a style
transfer. Such inputs are refused. Between that and ``--size / MAX_UPSCALE`` the run goes
on with one warning naming every such image: its detail is upscaled more than ``MAX_UPSCALE``
times (one fix, a smaller ``--size``, said once).

Examples
--------
>>> check_input_sizes({"style.png": (3, 3)}, size=512)  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
nnst_hr.errors.InputError: style.png is 3x3 px, too small to transfer anything (short side below 16 px); ...
>>> check_input_sizes({"content.png": (200, 150)}, size=512)  # doctest: +ELLIPSIS
['content.png is 150x200 px, upscaled 2.6x to reach --size 512: expect soft detail; use a larger image or ...']
>>> check_input_sizes({"c.png": (48, 64), "s.png": (64, 64)}, size=1024)  # doctest: +ELLIPSIS
['c.png (64x48 px) and s.png (64x64 px) are upscaled 16.0x to reach --size 1024: expect soft detail; use larger ...']
"""

from __future__ import annotations

import os

from .errors import InputError
from .hypercolumns import FEATURE_STRIDE

MIN_INPUT_SIDE = 4 * FEATURE_STRIDE  # 16 px: fewer than 4 feature cells across carry no texture or shape
MAX_UPSCALE = 2.0  # above this upscaling to --size, warn: the detail is interpolated


def check_input_sizes(shapes: dict[str | os.PathLike, tuple[int, int]], size: int) -> list[str]:
    """Refuse inputs too small to use; return one warning naming every input upscaled more than ``MAX_UPSCALE``.

    Parameters
    ----------
    shapes : mapping of each input's path (named in messages) to its ``(H, W)`` as read
    size : int
        ``--size``: the long side NNST resizes every input to.

    Returns
    -------
    list of str
        The warning (empty when every input is large enough): one line, since a content and a
        style both too small for ``--size`` have one fix.

    Raises
    ------
    InputError
        An input's short side is below ``MIN_INPUT_SIDE``.
    """
    upscaled = []
    for path, (height, width) in shapes.items():
        if min(height, width) < MIN_INPUT_SIDE:
            raise InputError(
                f"{path} is {width}x{height} px, too small to transfer anything (short side below "
                f"{MIN_INPUT_SIDE} px); use a larger image"
            )
        factor = size / max(height, width)
        if factor > MAX_UPSCALE:
            upscaled.append((path, width, height, factor))
    if not upscaled:
        return []
    advice = f"to reach --size {size}: expect soft detail; use"
    if len(upscaled) == 1:
        path, width, height, factor = upscaled[0]
        return [f"{path} is {width}x{height} px, upscaled {factor:.1f}x {advice} a larger image or a smaller --size"]
    factors = sorted({f"{factor:.1f}x" for *_, factor in upscaled}, key=lambda f: float(f[:-1]))
    names = " and ".join(f"{path} ({width}x{height} px)" for path, width, height, _ in upscaled)
    return [f"{names} are upscaled {' and '.join(factors)} {advice} larger images or a smaller --size"]
