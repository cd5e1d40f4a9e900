"""Masks for guided style transfer: load and match label maps, turn them into guide channels.

NumPy and SciPy only (no torch). Label maps are ``int32 (H, W)`` arrays of guide channel
indices, ``-1`` = unguided; guide channels are ``float32 (L, h, w)``.

Examples
--------
>>> from guidance import guide_channels, load_masks
>>> pair = load_masks("samples/guided/louvre_to_house")
>>> guide_channels(pair.content, pair.n_labels, (141, 158)).shape
(4, 141, 158)
"""

from guidance.check import MaskReport, check_masks, image_shape
from guidance.errors import MaskError
from guidance.guides import area_weights, guide_channels, hard_labels_at, rotate_guides
from guidance.masks import Label, MaskPair, load_mask_data, load_mask_files, load_masks, mask_folder

__all__ = [
    "Label",
    "MaskError",
    "MaskPair",
    "MaskReport",
    "area_weights",
    "check_masks",
    "guide_channels",
    "hard_labels_at",
    "image_shape",
    "load_mask_data",
    "load_mask_files",
    "load_masks",
    "mask_folder",
    "rotate_guides",
]
