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

:func:`synthesize_poster_stage` (steps 1-4) and :func:`color_poster` (step 5) are pure: arrays
and configs in, arrays out, no files; :mod:`nnst_hr.run` keeps their results for resuming.

Atlas coordinates: copy ``r`` (style rotated ``rotation_ids[r] * 90`` degrees
counter-clockwise) occupies rows ``0 .. H_r - 1`` and columns ``offsets[r] .. offsets[r] + W_r - 1``.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass

import numpy as np

import patchsynth
from guidance import guide_channels

from .color import transfer_color
from .config import NNSTConfig, PosterConfig, field_label
from .device import resolve_device
from .errors import InputError
from .hypercolumns import FEATURE_STRIDE
from .progress import Stage
from .scores import made_from
from .tensors import check_config, check_image, check_masks, check_progress, resize_image, to_numpy, to_tensor
from .workplan import NUMBA, work

GUTTER = 8  # masked pixels between atlas copies (more than a patch radius at every level)
RENDER_ROWS = 256  # rows per band of the final render (bounds its temporary index arrays)


@dataclass
class PosterResult:
    """What :func:`synthesize_poster_stage` returns.

    synthesized : float32 (Ho, Wo, 3), the poster before color post-processing
    field : int32 (Ho, Wo, 2), atlas (y, x) each poster pixel was taken from (see :class:`Atlas`)
    out_shape : (Ho, Wo)
    timings : seconds per part of the stage
    """

    synthesized: np.ndarray
    field: np.ndarray
    out_shape: tuple[int, int]
    timings: dict[str, float]


@dataclass
class Atlas:
    """Rotated exemplars side by side.

    image : float32 (Ha, Wa, 3); guide : float32 (Ha, Wa, G); mask : bool (Ha, Wa), False in
    gutters; layout : where each rotated copy sits (:class:`Layout`).
    """

    image: np.ndarray
    guide: np.ndarray
    mask: np.ndarray
    layout: Layout


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
    layout = Layout.of(exemplar.shape[:2], rotation_ids)
    height = max(h for h, _ in layout.shapes)
    width = layout.offsets[-1] + layout.shapes[-1][1]
    image = np.zeros((height, width, exemplar.shape[2]), np.float32)
    guides = np.zeros((height, width, guide.shape[2]), np.float32)
    mask = np.zeros((height, width), bool)
    for k, x, (h, w) in zip(rotation_ids, layout.offsets, layout.shapes, strict=True):
        image[:h, x:x + w] = np.rot90(exemplar, k)
        guides[:h, x:x + w] = np.rot90(guide, k)
        mask[:h, x:x + w] = True
    return Atlas(image, guides, mask, layout)


@dataclass
class Layout:
    """Where the rotated copies of an exemplar of ``shape`` sit in an atlas (see :class:`Atlas`)."""

    shape: tuple[int, int]
    rotation_ids: list[int]
    offsets: list[int]
    shapes: list[tuple[int, int]]

    @classmethod
    def of(cls, shape: tuple[int, int], rotation_ids: list[int]) -> Layout:
        shapes = [(shape[1], shape[0]) if k % 2 else (shape[0], shape[1]) for k in rotation_ids]
        offsets = [0]
        for _, w in shapes[:-1]:
            offsets.append(offsets[-1] + w + GUTTER)
        return cls(tuple(shape), list(rotation_ids), offsets, shapes)

    def local(self, field: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Atlas coordinates ``(..., 2)`` -> copy index, row and column inside that copy."""
        copy = np.searchsorted(np.asarray(self.offsets), field[..., 1], side="right") - 1
        return copy, field[..., 0], field[..., 1] - np.asarray(self.offsets)[copy]

    def to_exemplar(self, copy: np.ndarray, i: np.ndarray, j: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Row and column in the unrotated exemplar of pixel ``(i, j)`` of ``copy``.

        Copy ``r`` holds ``np.rot90(exemplar, k)``, whose pixel ``(i, j)`` is the exemplar's
        ``(i, j)``, ``(j, W-1-i)``, ``(H-1-i, W-1-j)`` or ``(H-1-j, i)`` for ``k = 0, 1, 2, 3``.
        """
        height, width = self.shape
        k = np.asarray(self.rotation_ids)[copy]
        rows = np.select([k == 0, k == 1, k == 2], [i, j, height - 1 - i], height - 1 - j)
        cols = np.select([k == 0, k == 1, k == 2], [j, width - 1 - i, width - 1 - j], i)
        return rows, cols

    def clip(self, copy: np.ndarray, i: np.ndarray, j: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(i, j)`` clipped to the inside of ``copy``."""
        heights = np.asarray([h for h, _ in self.shapes])[copy]
        widths = np.asarray([w for _, w in self.shapes])[copy]
        return np.clip(i, 0, heights - 1), np.clip(j, 0, widths - 1)


def upsample_field(field: np.ndarray, factor: int, source: Layout, target: Layout,
                   out_shape: tuple[int, int]) -> np.ndarray:
    """Atlas field ``(h, w, 2)`` in the ``source`` layout -> ``out_shape`` in the ``target`` layout.

    ``target`` is the atlas at ``factor`` times the scale. Each pixel keeps the source patch
    of its ``factor x factor`` block, shifted by its place inside the block (Texler et al. 2020).
    """
    out = np.empty((*out_shape, 2), np.int32)
    xs = np.arange(out_shape[1])
    cols = np.minimum(xs // factor, field.shape[1] - 1)[None, :]
    offsets = np.asarray(target.offsets)
    for y0 in range(0, out_shape[0], RENDER_ROWS):  # in bands: full-size int64 temporaries were 4 GB at A1
        ys = np.arange(y0, min(out_shape[0], y0 + RENDER_ROWS))
        coarse = field[np.minimum(ys // factor, field.shape[0] - 1)[:, None], cols]
        copy, i, j = source.local(coarse)
        i, j = target.clip(copy, i * factor + (ys % factor)[:, None], j * factor + (xs % factor)[None, :])
        out[ys[0]:ys[-1] + 1, :, 0] = i
        out[ys[0]:ys[-1] + 1, :, 1] = j + offsets[copy]
    return out


def render(field: np.ndarray, exemplar: np.ndarray, layout: Layout, mode: str, patch_size: int) -> np.ndarray:
    """The poster's pixels from its atlas ``field (Ho, Wo, 2)``, read from the unrotated ``exemplar``.

    ``copy``: each pixel is the exemplar pixel it matched. ``vote``: the plain average of
    the ``patch_size**2`` overlapping patches (ebsynth's CPU vote). Works in bands of
    :data:`RENDER_ROWS` rows so that the index arrays stay small at 8K.
    """
    height, width = field.shape[:2]
    radius = patch_size // 2 if mode == "vote" else 0
    out = np.empty((height, width, exemplar.shape[2]), np.float32)
    for y0 in range(0, height, RENDER_ROWS):
        y1 = min(height, y0 + RENDER_ROWS)
        total = np.zeros((y1 - y0, width, exemplar.shape[2]), np.float32)
        count = np.zeros((y1 - y0, width, 1), np.float32)
        for dy in range(-radius, radius + 1):
            qa, qb = max(0, y0 + dy), min(height, y1 + dy)  # neighbour rows whose patch covers the band
            for dx in range(-radius, radius + 1):
                xa, xb = max(0, dx), min(width, width + dx)
                copy, i, j = layout.local(field[qa:qb, xa:xb])
                i, j = layout.clip(copy, i - dy, j - dx)
                rows, cols = layout.to_exemplar(copy, i, j)
                total[qa - dy - y0:qb - dy - y0, xa - dx:xb - dx] += exemplar[rows, cols]
                count[qa - dy - y0:qb - dy - y0, xa - dx:xb - dx] += 1.0
        out[y0:y1] = total / count
    return out


def field_to_atlas(nnf: np.ndarray, atlas: Atlas, scale: float) -> np.ndarray:
    """NNST field ``(h, w, 3)`` (k, y, x at NNST's style size) -> ``(h, w, 2)`` atlas (y, x).

    ``scale`` = exemplar size / NNST style size. Coordinates are rounded and kept inside
    their copy.
    """
    layout = atlas.layout
    out = np.zeros(nnf.shape[:2] + (2,), np.int32)
    for copy, k in enumerate(layout.rotation_ids):
        sel = nnf[..., 0] == k
        h, w = layout.shapes[copy]
        out[sel, 0] = np.clip(np.rint(nnf[sel, 1] * scale), 0, h - 1)
        out[sel, 1] = np.clip(np.rint(nnf[sel, 2] * scale), 0, w - 1) + layout.offsets[copy]
    return out


def synthesize_poster_stage(
    content: np.ndarray,
    style: np.ndarray,
    nnst_result,
    poster_config: PosterConfig,
    nnst_config: NNSTConfig,
    *,
    masks=None,
    progress=None,
) -> PosterResult:
    """The poster stage before color: steps 1-4 of the module docstring.

    Parameters
    ----------
    content, style : float32 (H, W, 3) sRGB in [0, 1], the full-resolution inputs
    nnst_result : NNST's result at ``nnst_config.size`` (an ``NNSTResult`` or anything with
        its ``raw``, ``field`` and ``style_size``)
    poster_config : :class:`PosterConfig`; ``out_size`` is the poster's long side
    nnst_config : the :class:`NNSTConfig` that made ``nnst_result`` (``rotate`` and ``seed`` are used)
    masks : optional ``guidance.MaskPair`` (label maps of ``content`` and ``style`` as given)
    progress : a :class:`Progress` reporter, or None

    Returns
    -------
    :class:`PosterResult`
    """
    check_config(poster_config, PosterConfig, "poster_config")
    check_config(nnst_config, NNSTConfig, "nnst_config")
    check_progress(progress)
    if poster_config.out_size is None:  # failed in arithmetic on None
        raise InputError("poster_config.out_size is None: give the poster's long side, "
                         "e.g. PosterConfig(out_size=4096)")
    check_image(content, "the content")
    check_image(style, "the style")
    if masks is not None:
        check_masks(masks, content.shape, style.shape)
    if not all(hasattr(nnst_result, name) for name in ("raw", "field", "style_size")):
        raise InputError(f"nnst_result is a {type(nnst_result).__name__}, not an NNSTResult: give what "
                         f"synthesize_nnst returned for this content and style")
    size_h, size_w = nnst_result.raw.shape[:2]
    if not made_from((size_h, size_w), content.shape[:2]):  # another content's result made a poster, no error
        raise InputError(f"nnst_result ({size_w}x{size_h} px) has another aspect than the content "
                         f"({content.shape[1]}x{content.shape[0]} px): give what synthesize_nnst returned for it")
    scale = poster_config.out_size / max(size_h, size_w)
    out_shape = scaled_shape((size_h, size_w), scale)
    start = time.perf_counter()
    synthesized, poster_field = synthesize_poster(content, style, nnst_result, poster_config, nnst_config, out_shape,
                                                  scale, masks, progress)
    return PosterResult(synthesized, poster_field, out_shape, {"synthesis": time.perf_counter() - start})


def color_poster(synthesized: np.ndarray, content: np.ndarray, style: np.ndarray, style_size: tuple[int, int],
                 nnst_config: NNSTConfig) -> np.ndarray:
    """Step 5 of the module docstring: the color post-processing at the poster's size, on NNST's device.

    Parameters
    ----------
    synthesized : float32 (Ho, Wo, 3), ``PosterResult.synthesized``
    content, style : float32 (H, W, 3) sRGB in [0, 1], the full-resolution inputs
    style_size : (height, width) of the style as NNST used it (``NNSTResult.style_size``): the
        style statistics are taken there (the same statistics, a fraction of the work)
    nnst_config : ``color``, ``color_iterations``, ``color_sharpness`` and ``mono_threshold`` are used

    Returns
    -------
    float32 (Ho, Wo, 3) in [0, 1]; ``synthesized`` itself when ``nnst_config.color`` is False.
    """
    check_config(nnst_config, NNSTConfig, "nnst_config")
    for image, name in ((synthesized, "the poster"), (content, "the content"), (style, "the style")):
        check_image(image, name)
    if not nnst_config.color:
        return synthesized
    device = resolve_device(nnst_config.device)
    exemplar_stats = resize_image(style, style_size)
    final = transfer_color(
        to_tensor(synthesized, device), to_tensor(resize_image(content, synthesized.shape[:2]), device),
        to_tensor(exemplar_stats, device),
        iterations=nnst_config.color_iterations, sharpness=nnst_config.color_sharpness,
        mono_threshold=nnst_config.mono_threshold,
    )
    return to_numpy(final)


def synthesis_fraction(level: int, levels: int, iteration: int, iterations: int) -> float:
    """Fraction of a coarse-to-fine synthesis done after ``iteration`` of ``level`` (both 1-based).

    Level areas grow 4x per level, and so does their cost.

    >>> synthesis_fraction(2, 2, 1, 2)  # half of the last level: (1 + 2) / (1 + 4)
    0.6
    """
    total = sum(4.0**j for j in range(levels))
    done = sum(4.0**j for j in range(level - 1)) + 4.0 ** (level - 1) * iteration / max(1, iterations)
    return done / total


def poster_stages(nnst_shape: tuple[int, int], cfg: PosterConfig) -> list[Stage]:
    """The poster's plan for the time left: its synthesis (reported as fractions), then render and color.

    The synthesis runs ``cfg.search_vote_iters`` iterations of ``cfg.patchmatch_iters`` sweeps on
    each level from the NNST field's size up to the searched size, every pixel of a level in each
    sweep. It always runs on the CPU (Numba): its terms are on :data:`~nnst_hr.workplan.NUMBA`, so
    they take no speed from NNST's torch terms (nor lend them theirs).

    Parameters
    ----------
    nnst_shape : (height, width)
        The NNST result's size.
    cfg : PosterConfig
        ``out_size`` is set.

    Returns
    -------
    list of Stage
        ``"poster"`` (as :func:`synthesize_poster` reports it) and ``"poster finish"``.
    """
    out_shape = scaled_shape(nnst_shape, cfg.out_size / max(nnst_shape))
    factor = search_factor(max(out_shape), cfg.max_search_size)
    searched = (-(-out_shape[0] // factor), -(-out_shape[1] // factor))
    start_size = max(nnst_shape) // FEATURE_STRIDE  # the NNST field's long side
    pixels, level = 0.0, 0
    while level == 0 or max(searched) >> level >= start_size:
        pixels += searched[0] * searched[1] / 4**level
        level += 1
    return [
        Stage("poster", 1, step=(work("poster", pixels * cfg.search_vote_iters * cfg.patchmatch_iters, NUMBA),),
              setup=(work("poster setup", searched[0] * searched[1], NUMBA),)),
        Stage("poster finish", setup=(work("poster finish", out_shape[0] * out_shape[1], NUMBA),)),
    ]


def search_factor(long_side: int, max_search_size: int) -> int:
    """Smallest power of two that brings ``long_side`` to at most ``max_search_size``."""
    factor = 1
    while long_side > max_search_size * factor:
        factor *= 2
    return factor


def synthesize_poster(content, style, result, cfg, nnst_cfg, out_shape, scale, masks, progress):
    """Steps 1-4 of the module docstring; returns (image (Ho, Wo, 3), field (Ho, Wo, 2)).

    Above ``cfg.max_search_size`` the synthesis runs at ``out_shape / factor`` (a power of
    two), its field is upsampled and the poster rendered at full size from the full-size
    exemplar: the large atlas and its guides are never built.
    """
    style_shape = scaled_shape(result.style_size, scale)
    if max(style_shape) > max(style.shape[:2]):
        warnings.warn(
            f"the style image ({style.shape[1]}x{style.shape[0]}) is smaller than the poster needs "
            f"({style_shape[1]}x{style_shape[0]}); it is upsampled, so fine detail will be limited",
            stacklevel=3,
        )
    factor = search_factor(max(out_shape), cfg.max_search_size)
    search_shape = (-(-out_shape[0] // factor), -(-out_shape[1] // factor))
    search_scale = scale / factor
    exemplar = resize_image(style, scaled_shape(result.style_size, search_scale))
    # the detail NNST could see: down to NNST's style size and back up, lightly blurred
    seen = resize_image(resize_image(exemplar, result.style_size), exemplar.shape[:2])
    source_guide = blur(seen, cfg.source_blur * search_scale)
    del seen
    target_guide = resize_image(result.raw, search_shape)
    guide_weights = [cfg.nnst_weight / 3] * 3
    if masks is not None:
        n = masks.n_labels
        source_guide = np.concatenate(
            [source_guide, guide_channels(masks.style, n, exemplar.shape[:2]).transpose(1, 2, 0)], 2)
        content_channels = guide_channels(masks.content, n, search_shape).transpose(1, 2, 0)
        target_guide = np.concatenate([target_guide, content_channels], 2)
        guide_weights += [cfg.mask_weight / n] * n
    rotation_ids = nnst_cfg.rotation_ids()
    atlas = build_atlas(exemplar, source_guide, rotation_ids)
    del source_guide
    init = field_to_atlas(result.field, atlas, search_scale)

    on_step = None
    if progress is not None:
        def on_step(info):
            progress.fraction(
                "poster", synthesis_fraction(info["level"], info["levels"], info["iteration"], info["iterations"]),
                f"level {info['level']}/{info['levels']} ({info['size'][1]}x{info['size'][0]}), "
                f"iteration {info['iteration']}/{info['iterations']}",
            )

        if factor > 1:
            searched = f"{field_label(PosterConfig, 'out_size')} above {field_label(PosterConfig, 'max_search_size')}"
            progress.message(
                f"poster: searching at {search_shape[1]}x{search_shape[0]} ({searched} {cfg.max_search_size}), then "
                f"upsampling the field x{factor} and rendering ({cfg.render}) at {out_shape[1]}x{out_shape[0]} "
                "(Texler et al. 2020)"
            )
        else:
            progress.message(f"poster: searching and rendering ({cfg.render}) at {out_shape[1]}x{out_shape[0]}")
    try:
        synth = patchsynth.synthesize(
            atlas.image, atlas.guide, target_guide,
            style_weight=cfg.style_weight, guide_weights=guide_weights, patch_size=cfg.patch_size,
            search_vote_iters=cfg.search_vote_iters, patchmatch_iters=cfg.patchmatch_iters,
            uniformity=cfg.uniformity, init_field=init, source_mask=atlas.mask,
            start_size=max(result.field.shape[:2]), seed=nnst_cfg.seed, progress=on_step,
        )
    except MemoryError as exc:
        raise InputError(f"not enough memory for a {out_shape[1]}x{out_shape[0]} poster; lower "
                         f"{field_label(PosterConfig, 'out_size')}") from exc
    if factor == 1 and cfg.render == "vote":
        return synth.image, synth.field
    layout, field = atlas.layout, synth.field
    del atlas, synth
    if factor > 1:
        exemplar = resize_image(style, style_shape)
        full = Layout.of(style_shape, rotation_ids)
        field, layout = upsample_field(field, factor, layout, full, out_shape), full
    # "copy": averaging 25 overlapping patches of a partly incoherent field smooths the finest
    # octaves away (detail 0.39 of the exemplar's on the demo pair); copying each pixel's
    # matched exemplar pixel keeps the brushwork (0.71) without visible seams at that coherence
    return render(field, exemplar, layout, cfg.render, cfg.patch_size), field
