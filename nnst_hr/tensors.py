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

from .errors import InputError
from .files import check_float_image
from .memory import long_side_shape


def check_image(image, name: str) -> None:
    """Refuse (:class:`InputError`) what the API's images cannot be: anything but a finite floating-point
    ``(H, W, 3)`` NumPy array of sRGB values near [0, 1]; the message names the conversion.

    Without it a uint8 or uint16 array was taken as floats and clipped (a white result, no error), a NaN
    gave a NaN result, and a grey or ``(3, H, W)`` array failed deep in torch.

    >>> check_image(np.zeros((4, 5), np.float32), "the content")
    Traceback (most recent call last):
    ...
    nnst_hr.errors.InputError: the content has shape (4, 5), one grey channel: give float32 (H, W, 3) sRGB in \
[0, 1], e.g. np.repeat(image[..., None], 3, axis=2)
    """
    want = "float32 (H, W, 3) sRGB in [0, 1]"
    if not isinstance(image, np.ndarray):
        raise InputError(f"{name} is a {type(image).__name__}, not a NumPy array: give {want} "
                         f"(nnst_hr.files.read_image reads a file so)")
    check_float_image(image, name, want=want,
                      rgba_fix="image[..., :3] (nnst_hr.files.read_image composites transparent pixels on white)")


def check_config(config, cls: type, name: str) -> None:
    """Refuse (:class:`InputError`) a ``config`` that is not a valid ``cls`` (``NNSTConfig`` or ``PosterConfig``);
    without it a dict, or the two configs swapped, failed deep inside with an AttributeError.

    >>> from nnst_hr.config import NNSTConfig
    >>> check_config({"size": 512}, NNSTConfig, "config")
    Traceback (most recent call last):
    ...
    nnst_hr.errors.InputError: config is a dict, not an NNSTConfig: give NNSTConfig(...), e.g. \
NNSTConfig.from_dict(values) for a dict
    """
    if not isinstance(config, cls):
        got, want = type(config).__name__, cls.__name__
        raise InputError(f"{name} is {_article(got)} {got}, not {_article(want)} {want}: give {want}(...), "
                         f"e.g. {want}.from_dict(values) for a dict")
    config.validate()


def check_progress(progress) -> None:
    """Refuse (:class:`InputError`) a ``progress`` that is neither None nor a :class:`~nnst_hr.progress.Progress`;
    ``progress=True`` failed deep inside with an AttributeError."""
    from .progress import Progress

    if progress is not None and not isinstance(progress, Progress):
        raise InputError(f"progress is {_article(type(progress).__name__)} {type(progress).__name__}, not a "
                         f"nnst_hr.progress.Progress: give Progress() to show the steps, or None")


def _article(name: str) -> str:
    """'an' before a name read with a vowel sound (NNSTConfig: "en-en"), else 'a'."""
    return "an" if name[0] in "AEFHILMNORSXaeiou" else "a"


def check_masks(masks, content_shape: tuple[int, ...], style_shape: tuple[int, ...]) -> None:
    """Refuse (:class:`InputError`) ``masks`` that are not a ``guidance.MaskPair`` whose label maps have the
    shapes (H, W) of the content and the style; without it another pair's masks were stretched onto them.
    """
    if not all(hasattr(masks, side) for side in ("content", "style", "n_labels")):
        raise InputError(f"masks is a {type(masks).__name__}, not a guidance.MaskPair: load a masks folder with "
                         "guidance.load_masks(folder, content.shape[:2], style.shape[:2])")
    got, want = (np.shape(masks.content), np.shape(masks.style)), (tuple(content_shape[:2]), tuple(style_shape[:2]))
    if got != want:
        raise InputError(f"masks of {got[0]} and {got[1]} do not match the content {want[0]} and the style "
                         f"{want[1]}; load them with the images' shapes (guidance.load_masks)")


def to_tensor(image: np.ndarray, device: torch.device | str) -> torch.Tensor:
    """(H, W, C) float32 NumPy -> (1, C, H, W) tensor (a view: its memory is channels-last).

    A read-only array (``np.broadcast_to``, a memmap opened ``"r"``) is copied: torch cannot share
    it, and warned so on the caller's stderr.
    """
    array = np.ascontiguousarray(image, np.float32)
    return torch.from_numpy(array if array.flags.writeable else array.copy()).permute(2, 0, 1)[None].to(device)


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
