"""Conversions between the API's NumPy images and torch tensors, and the antialiased resize.

NumPy images are ``float32 (H, W, C)``; tensors are ``(1, C, H, W)``. Both the NNST driver
and the poster stage use these; neither owns them.

Examples
--------
>>> import numpy as np, torch
>>> image = np.zeros((6, 8, 3), np.float32)
>>> to_tensor(image, torch.device("cpu")).shape
torch.Size([1, 3, 6, 8])
>>> resize_image(image, (3, 4)).shape
(3, 4, 3)
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .memory import long_side_shape


def to_tensor(image: np.ndarray, device: torch.device) -> torch.Tensor:
    """(H, W, C) float32 NumPy -> (1, C, H, W) tensor (a view: its memory is channels-last)."""
    return torch.from_numpy(np.ascontiguousarray(image, np.float32)).permute(2, 0, 1)[None].to(device)


def to_tensor_like(image: np.ndarray, like: torch.Tensor) -> torch.Tensor:
    """:func:`to_tensor` on ``like``'s device, in ``like``'s memory layout.

    Reductions over a tensor sum in an order that follows its layout, so a result handed
    back as NumPy must take the layout it had to give the same bits again.
    """
    out = to_tensor(image, like.device)
    return out.contiguous() if like.is_contiguous() else out


def to_numpy(image: torch.Tensor) -> np.ndarray:
    """(1, C, H, W) tensor -> (H, W, C) float32 NumPy, clipped to [0, 1]."""
    return image[0].clamp(0, 1).permute(1, 2, 0).detach().cpu().numpy().astype(np.float32)


def resize(image: torch.Tensor, size: tuple[int, int], *, antialias: bool | None = None) -> torch.Tensor:
    """Bilinear resize of ``(1, C, H, W)`` to ``size = (h, w)`` (the input itself when already that size).

    ``antialias`` (a tent filter as wide as the shrink) defaults to on when either side shrinks.
    """
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    if antialias is None:
        antialias = size[0] < image.shape[-2] or size[1] < image.shape[-1]
    return F.interpolate(image, tuple(size), mode="bilinear", align_corners=False, antialias=antialias)


def resize_long_side(image: torch.Tensor, long_side: int) -> torch.Tensor:
    """Antialiased bilinear resize of (1, 3, H, W) so that max(H, W) == long_side."""
    shape = long_side_shape(tuple(image.shape[-2:]), long_side)
    return resize(image, shape, antialias=long_side < max(image.shape[-2:]))


def resize_image(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """:func:`resize` of a NumPy ``(H, W, C)`` float32 image to ``shape = (h, w)``, on the CPU."""
    if image.shape[:2] == tuple(shape):
        return image
    return resize(to_tensor(image, torch.device("cpu")), shape)[0].permute(1, 2, 0).numpy()
