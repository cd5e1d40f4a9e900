"""The poster stage: guided patch synthesis at ``--out-size``, seeded by the NNST field.

1. The style exemplar at the poster's scale (``out_size / size`` times the style size NNST
   used), in every rotation NNST used, laid out side by side in an *atlas* whose gutters are
   masked out of the synthesis.
2. Guides: source = the exemplar with only the detail NNST could see (down to NNST's scale,
   back up, lightly blurred); target = the raw NNST result upsampled to the poster size; with
   masks, one extra channel per label on each side.
3. The NNST field, mapped into atlas coordinates, seeds the synthesis at the level that
   matches its resolution; ``patchsynth`` runs coarse to fine up to the poster size.
4. The poster's pixels are copied from the exemplar pixel each target pixel matched
   (``render="copy"``) or taken from patchsynth's patch vote (``render="vote"``).
5. Color post-processing at the poster size (the upsampled content supplies the chroma).

Atlas coordinates: copy ``r`` (style rotated ``rotation_ids[r] * 90`` degrees
counter-clockwise) occupies rows ``0 .. H_r - 1`` and columns ``offsets[r] .. offsets[r] + W_r - 1``.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import patchsynth
from guidance import guide_channels

from .color import transfer_color
from .errors import InputError
from .io import atomic_output
from .progress import format_seconds
from .nnst import StylizeResult, to_numpy, to_tensor

GUTTER = 8  # masked pixels between atlas copies (more than a patch radius at every level)
POSTER_STATE = "poster_state.npz"  # synthesized image and field, for resuming the color stage


@dataclass
class Atlas:
    """Rotated exemplars side by side.

    image : float32 (Ha, Wa, 3); guide : float32 (Ha, Wa, G); mask : bool (Ha, Wa), False in
    gutters; offsets : x offset of each copy; shapes : (H_r, W_r) of each copy;
    rotation_ids : rotation k of each copy.
    """

    image: np.ndarray
    guide: np.ndarray
    mask: np.ndarray
    offsets: list[int]
    shapes: list[tuple[int, int]]
    rotation_ids: list[int]


def resize(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Antialiased bilinear resize of ``(H, W, C)`` float32 to ``shape = (h, w)``."""
    if image.shape[:2] == tuple(shape):
        return image
    t = torch.from_numpy(np.ascontiguousarray(image, np.float32)).permute(2, 0, 1)[None]
    shrink = shape[0] < image.shape[0] or shape[1] < image.shape[1]
    out = F.interpolate(t, tuple(shape), mode="bilinear", align_corners=False, antialias=shrink)
    return out[0].permute(1, 2, 0).numpy()


def blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of ``(H, W, C)`` with reflected borders."""
    from scipy.ndimage import gaussian_filter

    if sigma <= 0:
        return image
    return gaussian_filter(image, sigma=(sigma, sigma, 0), mode="reflect").astype(np.float32)


def scaled_shape(shape: tuple[int, int], scale: float) -> tuple[int, int]:
    return max(1, round(shape[0] * scale)), max(1, round(shape[1] * scale))


def build_atlas(exemplar: np.ndarray, guide: np.ndarray, rotation_ids: list[int]) -> Atlas:
    """Lay the rotated ``exemplar`` (and its ``guide``) side by side with masked gutters."""
    copies = [(np.rot90(exemplar, k), np.rot90(guide, k)) for k in rotation_ids]
    shapes = [c[0].shape[:2] for c in copies]
    height = max(s[0] for s in shapes)
    width = sum(s[1] for s in shapes) + GUTTER * (len(shapes) - 1)
    image = np.zeros((height, width, exemplar.shape[2]), np.float32)
    guides = np.zeros((height, width, guide.shape[2]), np.float32)
    mask = np.zeros((height, width), bool)
    offsets, x = [], 0
    for (img, gd), (h, w) in zip(copies, shapes):
        image[:h, x:x + w] = img
        guides[:h, x:x + w] = gd
        mask[:h, x:x + w] = True
        offsets.append(x)
        x += w + GUTTER
    return Atlas(image, guides, mask, offsets, [tuple(s) for s in shapes], list(rotation_ids))


def field_to_atlas(nnf: np.ndarray, atlas: Atlas, scale: float) -> np.ndarray:
    """NNST field ``(h, w, 3)`` (k, y, x at NNST's style size) -> ``(h, w, 2)`` atlas (y, x).

    ``scale`` = exemplar size / NNST style size. Coordinates are rounded and kept inside
    their copy.
    """
    out = np.zeros(nnf.shape[:2] + (2,), np.int32)
    for copy, k in enumerate(atlas.rotation_ids):
        sel = nnf[..., 0] == k
        h, w = atlas.shapes[copy]
        out[sel, 0] = np.clip(np.rint(nnf[sel, 1] * scale), 0, h - 1)
        out[sel, 1] = np.clip(np.rint(nnf[sel, 2] * scale), 0, w - 1) + atlas.offsets[copy]
    return out


def make_poster(
    content: np.ndarray,
    style: np.ndarray,
    result: StylizeResult,
    options,
    folder: Path,
    *,
    resume: bool,
    masks=None,
    progress=None,
    timings: dict | None = None,
) -> np.ndarray:
    """Synthesize the poster; returns float32 ``(Ho, Wo, 3)`` sRGB in [0, 1].

    ``content`` and ``style`` are the full-resolution inputs, ``result`` NNST's output at
    ``options.nnst.size``. The synthesized image and field are saved in ``folder`` so a
    resumed run with the same parameters only redoes the color stage.
    """
    cfg, nnst_cfg = options.poster, options.nnst
    timings = timings if timings is not None else {}
    size_h, size_w = result.raw.shape[:2]
    scale = cfg.out_size / max(size_h, size_w)
    out_shape = scaled_shape((size_h, size_w), scale)
    state_path = folder / POSTER_STATE

    if resume and state_path.exists():
        with np.load(state_path, allow_pickle=False) as data:
            synthesized = data["image"]
        progress and progress.message("poster: synthesis resumed from the run folder")
    else:
        start = time.perf_counter()
        synthesized, field = synthesize_poster(content, style, result, cfg, nnst_cfg, out_shape, scale,
                                               masks, progress)
        timings["poster.synthesis"] = time.perf_counter() - start
        with atomic_output(state_path, overwrite=True) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, image=synthesized, field=field)

    if not nnst_cfg.color:
        return synthesized
    start = time.perf_counter()
    device = torch.device("cpu")
    exemplar_stats = resize(style, result.style_size)  # NNST's style: the same statistics, 1/16 the work
    final = transfer_color(
        to_tensor(synthesized, device), to_tensor(resize(content, out_shape), device), to_tensor(exemplar_stats, device),
        iterations=nnst_cfg.color_iterations, sharpness=nnst_cfg.color_sharpness,
        mono_threshold=nnst_cfg.mono_threshold,
    )
    timings["poster.color"] = time.perf_counter() - start
    return to_numpy(final)


def synthesize_poster(content, style, result, cfg, nnst_cfg, out_shape, scale, masks, progress):
    """Steps 1-3 of the module docstring; returns (image (Ho, Wo, 3), field (Ho, Wo, 2))."""
    style_shape = scaled_shape(result.style_size, scale)
    if max(style_shape) > max(style.shape[:2]):
        warnings.warn(
            f"the style image ({style.shape[1]}x{style.shape[0]}) is smaller than the poster needs "
            f"({style_shape[1]}x{style_shape[0]}); it is upsampled, so fine detail will be limited",
            stacklevel=2,
        )
    exemplar = resize(style, style_shape)
    # the detail NNST could see: down to NNST's style size and back up, lightly blurred
    source_guide = blur(resize(resize(exemplar, result.style_size), style_shape), cfg.source_blur * scale)
    target_guide = resize(result.raw, out_shape)
    guide_weights = [cfg.guide_weight / 3] * 3
    if masks is not None:
        n = masks.n_labels
        source_guide = np.concatenate([source_guide, guide_channels(masks.style, n, style_shape).transpose(1, 2, 0)], 2)
        target_guide = np.concatenate([target_guide, guide_channels(masks.content, n, out_shape).transpose(1, 2, 0)], 2)
        guide_weights += [cfg.mask_weight / n] * n
    rotation_ids = [0, 1, 2, 3] if nnst_cfg.rotate else [0]
    atlas = build_atlas(exemplar, source_guide, rotation_ids)
    init = field_to_atlas(result.field, atlas, scale)

    on_step = None
    if progress is not None:
        started = time.perf_counter()

        def on_step(info):
            # level areas grow about 4x per level: weight the finished fraction by area
            levels, level = info["levels"], info["level"]
            total = sum(4.0 ** -j for j in range(levels))
            done = sum(4.0 ** -(levels - l) for l in range(1, level))
            done += 4.0 ** -(levels - level) * info["iteration"] / max(1, info["iterations"])
            elapsed = time.perf_counter() - started
            left = elapsed * (total - done) / done if done > 0 else 0.0
            progress.message(
                f"poster: level {level}/{levels} ({info['size'][1]}x{info['size'][0]}), "
                f"iteration {info['iteration']}/{info['iterations']}, about {format_seconds(left)} left"
            )

    if max(out_shape) > cfg.max_search_size and progress is not None:
        progress.message(f"poster: searching up to {cfg.max_search_size}px, then upsampling the field and voting at "
                         f"{max(out_shape)}px (Texler et al. 2020)")
    try:
        synth = patchsynth.synthesize(
            atlas.image, atlas.guide, target_guide,
            style_weight=cfg.style_weight, guide_weights=guide_weights, patch_size=cfg.patch_size,
            search_vote_iters=cfg.search_vote_iters, patchmatch_iters=cfg.patchmatch_iters,
            uniformity=cfg.uniformity, init_field=init, source_mask=atlas.mask,
            start_size=max(result.field.shape[:2]), max_search_size=cfg.max_search_size,
            seed=nnst_cfg.seed, progress=on_step,
        )
    except MemoryError as exc:
        raise InputError(f"not enough memory for a {out_shape[1]}x{out_shape[0]} poster; lower --out-size") from exc
    if cfg.render == "vote":
        return synth.image, synth.field
    # averaging 25 overlapping patches of a partly incoherent field smooths the finest octaves
    # away (detail 0.39 of the exemplar's on the demo pair); copying each pixel's matched
    # exemplar pixel keeps the brushwork (0.71) without visible seams at that coherence
    return atlas.image[synth.field[..., 0], synth.field[..., 1]], synth.field
