"""Input checks for :func:`patchsynth.synthesize`: one clear :class:`PatchSynthError` per problem."""

import numbers

import numpy as np

from .errors import PatchSynthError

# Values farther than this outside [0, 1] are not [0, 1] channels (0..255 floats); features are quantized to
# 8 bits over [0, 1], so such values saturate. A little outside is fine (clipped): the poster's target guide
# is NNST's unclipped result, resized.
RANGE_SLACK = 1.0


def check_images(source, source_guides, target_guides, max_style_channels, max_guide_channels):
    """Check the three images: finite ``float32 (H, W, C)`` arrays of values near [0, 1] with matching sizes and
    channel counts."""
    for name, image in (("source", source), ("source_guides", source_guides),
                        ("target_guides", target_guides)):
        if not isinstance(image, np.ndarray):
            raise PatchSynthError(f"{name} must be a NumPy array, got {type(image).__name__}")
        if image.ndim != 3:
            raise PatchSynthError(
                f"{name} must have shape (H, W, C), got {image.shape}; add a channel axis with "
                f"image[..., None]"
            )
        if image.dtype != np.float32:
            raise PatchSynthError(f"{name} must be float32, got {image.dtype}; convert it with "
                                  f"{_conversion(image)}")
        if min(image.shape[:2]) < 1:
            raise PatchSynthError(f"{name} is empty: shape {image.shape}")
        low, high = float(image.min()), float(image.max())  # NaN and inf propagate; no temporary the size of image
        if not (np.isfinite(low) and np.isfinite(high)):
            raise PatchSynthError(f"{name} contains NaN or infinite values")
        if low < -RANGE_SLACK or high > 1 + RANGE_SLACK:  # saturated 8-bit features: a result of garbage
            raise PatchSynthError(f"{name} has values from {low:g} to {high:g}: give values in [0, 1] "
                                  f"(8-bit values: divide by 255; 16-bit: by 65535)")
    if not 1 <= source.shape[2] <= max_style_channels:
        raise PatchSynthError(
            f"source must have 1 to {max_style_channels} channels, got {source.shape[2]}"
        )
    if not 1 <= source_guides.shape[2] <= max_guide_channels:
        raise PatchSynthError(
            f"source_guides must have 1 to {max_guide_channels} channels, got "
            f"{source_guides.shape[2]}"
        )
    if source_guides.shape[:2] != source.shape[:2]:
        raise PatchSynthError(
            f"source_guides is {source_guides.shape[:2]} but source is {source.shape[:2]}; "
            f"resize the guides to the source"
        )
    if target_guides.shape[2] != source_guides.shape[2]:
        raise PatchSynthError(
            f"target_guides has {target_guides.shape[2]} channels but source_guides has "
            f"{source_guides.shape[2]}; pass the same guides for source and target"
        )


def _conversion(image):
    """How to make ``image`` float32 in [0, 1]: integers scaled by their type's full scale (uint8: / 255)."""
    if image.dtype.kind == "u" and image.dtype.itemsize <= 2:
        return f".astype(numpy.float32) / {np.iinfo(image.dtype).max}"
    return ".astype(numpy.float32)"


def channel_weights(weight, channels, name):
    """Per-channel weights ``float32 (channels,)``: a number is a total split evenly, a sequence is per channel."""
    if isinstance(weight, numbers.Real):
        weights = np.full(channels, float(weight) / channels)
    else:
        weights = np.asarray(weight, dtype=np.float64)
        if weights.shape != (channels,):
            raise PatchSynthError(
                f"{name} must be a number or {channels} numbers (one per channel), got shape "
                f"{weights.shape}"
            )
    if not np.isfinite(weights).all() or (weights < 0).any():
        raise PatchSynthError(f"{name} must be finite and non-negative, got {weight!r}")
    return weights.astype(np.float32)


def check_parameters(patch_size, levels, search_vote_iters, patchmatch_iters, uniformity,
                     search_radius, start_size, max_search_size, seed, source_shape):
    """Check the scalar keywords of :func:`patchsynth.synthesize`."""
    if not _is_int(patch_size) or patch_size < 1 or patch_size % 2 == 0:
        raise PatchSynthError(f"patch_size must be a positive odd integer, got {patch_size!r}")
    if patch_size > min(source_shape[:2]):
        raise PatchSynthError(
            f"patch_size {patch_size} is larger than the source ({source_shape[1]}x"
            f"{source_shape[0]} px); use a smaller patch"
        )
    for name, value, low in (("levels", levels, 1), ("search_radius", search_radius, 1),
                             ("start_size", start_size, 1),
                             ("max_search_size", max_search_size, 1)):
        if value is not None and (not _is_int(value) or value < low):
            raise PatchSynthError(f"{name} must be None or an integer >= {low}, got {value!r}")
    for name, value in (("search_vote_iters", search_vote_iters),
                        ("patchmatch_iters", patchmatch_iters)):
        if not _is_int(value) or value < 0:
            raise PatchSynthError(f"{name} must be an integer >= 0, got {value!r}")
    if not isinstance(uniformity, numbers.Real) or not np.isfinite(uniformity) or uniformity < 0:
        raise PatchSynthError(f"uniformity must be a finite number >= 0, got {uniformity!r}")
    if not _is_int(seed):
        raise PatchSynthError(f"seed must be an integer, got {seed!r}")


def check_mask(source_mask, source_shape):
    """The mask as a ``bool (Hs, Ws)`` array (all true when ``None``)."""
    if source_mask is None:
        return np.ones(source_shape[:2], dtype=bool)
    mask = np.asarray(source_mask)
    if mask.shape != tuple(source_shape[:2]):
        raise PatchSynthError(
            f"source_mask must have the source's shape {tuple(source_shape[:2])}, got {mask.shape}"
        )
    if mask.dtype != bool:
        raise PatchSynthError(
            f"source_mask must be a bool array (True = allowed), got {mask.dtype}; use mask > 0"
        )
    if not mask.any():
        raise PatchSynthError("source_mask excludes every source pixel; allow some")
    return mask


def check_init_field(init_field, source_shape):
    """Check an initial field: integer ``(h, w, 2)`` with ``(y, x)`` inside the source."""
    if init_field is None:
        return
    field = np.asarray(init_field)
    if field.ndim != 3 or field.shape[2] != 2 or min(field.shape[:2]) < 1:
        raise PatchSynthError(f"init_field must have shape (h, w, 2), got {field.shape}")
    if not np.issubdtype(field.dtype, np.integer):
        raise PatchSynthError(f"init_field must hold integers (y, x), got {field.dtype}")
    if (field < 0).any() or (field[..., 0] >= source_shape[0]).any() or (
        field[..., 1] >= source_shape[1]
    ).any():
        raise PatchSynthError(
            f"init_field has (y, x) outside the source ({source_shape[0]}x{source_shape[1]}); "
            f"its entries must be source pixel coordinates"
        )


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)
