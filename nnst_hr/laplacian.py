"""Laplacian pyramids: the parameterization NNST optimizes the output image in.

A pyramid is a list of tensors, finest first: ``pyr[i]`` is the detail band at
``1 / 2**i`` of the full size, ``pyr[-1]`` the low-pass residual. Sizes halve
with floor division, so any ``(H, W)`` works as long as the depth respects
:func:`pyramid_depth`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

MIN_RESIDUAL_SIDE = 2  # the coarsest band keeps at least this many pixels on its short side


def pyramid_depth(height: int, width: int, max_levels: int = 8) -> int:
    """Number of detail bands for an image, capped so the residual keeps >= 2 px.

    The paper uses 8 levels at 512 and 1024 px; small or elongated images get fewer.

    Parameters
    ----------
    height, width : int
        The image's size.
    max_levels : int
        The most bands returned.

    Returns
    -------
    int
        Number of bands, ``0 .. max_levels``.

    Examples
    --------
    >>> pyramid_depth(512, 512)
    8
    >>> pyramid_depth(40, 300)
    4
    """
    short = min(height, width)
    if short < MIN_RESIDUAL_SIDE:
        return 0
    return max(0, min(max_levels, int(math.floor(math.log2(short / MIN_RESIDUAL_SIDE)))))


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(x, size, mode="bilinear", align_corners=False)


def decompose(image: torch.Tensor, levels: int) -> list[torch.Tensor]:
    """Laplacian pyramid of ``image`` (B, C, H, W): ``levels`` bands plus the residual.

    The inverse is :func:`synthesize`; ``synthesize(decompose(x, n)) == x`` up to
    float rounding because each band is defined as the residual of the same
    upsampling that synthesis applies.

    Parameters
    ----------
    image : torch.Tensor
        ``(B, C, H, W)``.
    levels : int
        Number of detail bands.

    Returns
    -------
    list of torch.Tensor
        ``levels`` bands, finest first, each of its level's size, then the residual.
    """
    pyr = []
    cur = image
    for _ in range(levels):
        h, w = cur.shape[-2:]
        small = _resize(cur, (h // 2, w // 2))
        pyr.append(cur - _resize(small, (h, w)))
        cur = small
    pyr.append(cur)
    return pyr


def synthesize(pyr: list[torch.Tensor]) -> torch.Tensor:
    """Collapse a Laplacian pyramid (finest first) into an image (B, C, H, W).

    Parameters
    ----------
    pyr : list of torch.Tensor
        Bands, finest first, then the residual, as :func:`decompose` returns them.

    Returns
    -------
    torch.Tensor
        ``(B, C, H, W)`` of the finest band's size.
    """
    cur = pyr[-1]
    for band in reversed(pyr[:-1]):
        cur = band + _resize(cur, band.shape[-2:])
    return cur


def lowpass_levels(image: torch.Tensor, count: int) -> list[torch.Tensor]:
    """``[image, image / 2, image / 4, ...]`` (``count`` entries), the pyramid's approximations.

    Level ``s`` equals ``synthesize(decompose(image, n)[s:])`` for any ``n >= s``.

    Parameters
    ----------
    image : torch.Tensor
        ``(B, C, H, W)``.
    count : int
        Number of levels, the image included.

    Returns
    -------
    list of torch.Tensor
        Level ``s`` of size ``(H // 2**s, W // 2**s)`` (floor at each halving).
    """
    out = [image]
    for _ in range(count - 1):
        h, w = out[-1].shape[-2:]
        out.append(_resize(out[-1], (h // 2, w // 2)))
    return out
