"""The NNST stage: coarse-to-fine hypercolumn matching, then feature splitting.

``synthesize_nnst(content, style, config)`` is the stage: NumPy images in (``float32
(H, W, 3)``, sRGB in ``[0, 1]``), an :class:`NNSTResult` out (the image before color
post-processing, the nearest-neighbour field, the objective); everything in between is
torch on ``config.device``. It reads and writes no files: a caller that wants to resume
passes the per-scale states it kept (``start_from``) and receives new ones through
``on_checkpoint`` (:mod:`nnst_hr.run` keeps them in the run folder).
``stylize`` is the stage followed by :func:`nnst_hr.color.color_stage`.

Library calls leave the process as they found it: no environment variables, no global
RNG (random choices use ``torch.Generator`` seeded from ``config.seed``).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from guidance import guide_channels, hard_labels_at, rotate_guides

from .color import color_stage
from .config import MIN_SIZE, NNSTConfig, field_label
from .device import autocast, bf16_enabled, precise_matmul, resolve_device, run_settings
from .errors import InputError
from .hypercolumns import HYPERCOLUMN_CHANNELS, LAYER_STRIDES, VGGLayers, feature_grid, hypercolumns, rotations
from .laplacian import decompose, lowpass_levels, pyramid_depth, synthesize
from .matching import Guides, center_normalize, center_normalize_, flat_cells, search, search_settings, with_guides
from .memory import heap_reuse, long_side_shape, release_freed_memory, reuses_heap
from .nnf import indices_to_field
from .optimize import SplitStyle, fit_hypercolumns, fit_split_layers, refresh_interval
from .progress import Progress, Stage
from .sizes import check_input_sizes
from .tensors import (
    check_config,
    check_image,
    check_masks,
    check_progress,
    resize_long_side,
    to_numpy,
    to_tensor,
    to_tensor_like,
)
from .weights import build_vgg16_features
from .workplan import nnst_stages, scale_stage_name

ZEROED_BANDS_SMALL, ZEROED_BANDS_LARGE = 3, 2  # finest content bands removed from the start image (<1024, >=1024)

CheckpointCallback = Callable[[str, np.ndarray], None]  # (name, float32 (H, W, 3) image state) after a scale


@dataclass
class NNSTResult:
    """What :func:`synthesize_nnst` returns.

    raw : float32 (H, W, 3), the result before color post-processing
    field : int32 (H // 4, W // 4, 3), NNF (rotation k, y, x in the rotated style at ``style_size``)
    content_size, style_size : (height, width) of content and (unrotated) style as NNST used them
    objective : mean centered-cosine distance of the output's hypercolumns to their nearest
        style hypercolumns (see :class:`StylizeResult`)
    timings : seconds per part of the stage
    """

    raw: np.ndarray
    field: np.ndarray
    content_size: tuple[int, int]
    style_size: tuple[int, int]
    objective: float
    timings: dict[str, float] = field(default_factory=dict)


@dataclass
class StylizeResult(NNSTResult):
    """What :func:`stylize` returns: an :class:`NNSTResult` and its ``image``.

    image : float32 (H, W, 3), the final result (after color post-processing when enabled)
    raw : float32 (H, W, 3), the result before color post-processing
    field : int32 (H // 4, W // 4, 3), NNF (rotation k, y, x in the rotated style at ``style_size``)
    content_size, style_size : (height, width) of content and (unrotated) style as NNST used them
    objective : mean centered-cosine distance of the output's hypercolumns to their nearest
        style hypercolumns, the quantity NNST minimizes (exact search in exact mode; an upper
        bound of it from the fast search otherwise)
    timings : seconds per stage
    """

    image: np.ndarray = field(kw_only=True)


def layer_grid(size: tuple[int, int], layer: int) -> tuple[int, int]:
    """Spatial size of VGG layer ``layer`` (0..9) for an image of ``size`` (each pooling floors)."""
    h, w = size
    for _ in range(LAYER_STRIDES[layer].bit_length() - 1):
        h, w = h // 2, w // 2
    return h, w


def unrotated_grid(grid: tuple[int, int], k: int) -> tuple[int, int]:
    """The grid before a rotation by ``k`` quarter turns that produced ``grid``."""
    return grid if k % 2 == 0 else (grid[1], grid[0])


def scale_count(size: tuple[int, int], config: NNSTConfig) -> int:
    """Scales NNST runs for content of ``size`` (already at ``config.size``): fewer than ``config.scales()``
    where the pyramid is shallower or a coarse scale's short side would fall below ``MIN_SIZE``."""
    h, w = size
    n_scales = min(len(config.scales()), pyramid_depth(h, w, config.pyramid_levels) + 1)
    while n_scales > 1 and min(h, w) >> (n_scales - 1) < MIN_SIZE:
        n_scales -= 1
    return n_scales


def split_refresh(config: NNSTConfig, size: tuple[int, int]) -> int:
    """Feature splitting searches at the steps whose index is a multiple of this (every step when exact)."""
    if config.exact:
        return 1
    return refresh_interval(config.split_refresh, config.split_steps, max(size), config.split_sample)


def nnst_work(content_shape: tuple[int, int], style_shape: tuple[int, int], config: NNSTConfig, *,
              device: str, bf16: bool, hard_guides: bool = False) -> list[Stage]:
    """The work plan (:func:`nnst_hr.workplan.nnst_stages`) of :func:`synthesize_nnst` on inputs of these shapes.

    From the shapes alone, as the stage computes them: both inputs resized to ``config.size``,
    then halved (floor) per scale. :func:`synthesize_nnst` plans its time left with it, and the
    experiment plan weighs its NNST tasks with it, so the two cannot drift apart.

    Parameters
    ----------
    content_shape, style_shape : (height, width)
        The inputs as given (any size).
    config : NNSTConfig
        The stage's parameters.
    device : str
        ``"cpu"`` or ``"cuda"``: the shortlist threshold, and the device of the work.
    bf16 : bool
        Whether VGG runs in bf16 (:func:`nnst_hr.device.bf16_enabled`; never in exact mode).
    hard_guides : bool
        Hard masks keep the searches in fp32.

    Returns
    -------
    list of Stage
        Each scale, feature splitting, the final match.
    """
    content = long_side_shape(content_shape, config.size)
    style = long_side_shape(style_shape, config.size)
    n = scale_count(content, config)
    contents = [(content[0] >> s, content[1] >> s) for s in reversed(range(n))]
    styles = [(style[0] >> s, style[1] >> s) for s in reversed(range(n))]
    bf16 = bf16 and not config.exact
    return nnst_stages(contents, styles, config, device=device, bf16=bf16, search_bf16=bf16 and not hard_guides,
                       refresh=split_refresh(config, content),
                       approx_min_work=search_settings(torch.device(device), 0).approx_min_work)


@dataclass
class Match:
    """A hypercolumn search: ``index (N,)`` into the stacked style hypercolumns of all rotations.

    ``matched (N, 2688)`` are the raw style hypercolumns it selected; ``objective`` is the
    mean centered-cosine distance of the pairs (the guide term left out).
    """

    index: torch.Tensor
    matched: torch.Tensor
    objective: float
    grids: list[tuple[int, int]]
    sizes: list[tuple[int, int]]


class MaskGuides:
    """Guide channels and hard labels of a :class:`guidance.MaskPair` on any grid, as tensors."""

    def __init__(self, pair, config: NNSTConfig, device: torch.device):
        self.pair, self.device = pair, device
        self.weight, self.hard = config.guide_weight, config.guide_mode == "hard"

    def channels(self, side: str, grid: tuple[int, int], k: int = 0) -> torch.Tensor:
        labels = self.pair.content if side == "content" else self.pair.style
        g = rotate_guides(guide_channels(labels, self.pair.n_labels, grid), k)
        return torch.from_numpy(np.ascontiguousarray(g)).to(self.device)

    def labels(self, side: str, grid: tuple[int, int], k: int = 0) -> torch.Tensor:
        labels = self.pair.content if side == "content" else self.pair.style
        lab = rotate_guides(hard_labels_at(labels, grid), k)
        return torch.from_numpy(np.ascontiguousarray(lab)).to(self.device)

    def style_maps(self, grids, rotation_ids):
        """Style guide channels ``(G, h_k, w_k)`` and hard labels (or None) on each rotated grid.

        The label maps are resampled on the unrotated grid and then turned, so cells line up
        with the features of the rotated style.
        """
        grids = [unrotated_grid(g, k) for g, k in zip(grids, rotation_ids, strict=True)]
        channels = [self.channels("style", g, k) for g, k in zip(grids, rotation_ids, strict=True)]
        labels = [self.labels("style", g, k) for g, k in zip(grids, rotation_ids, strict=True)] if self.hard else None
        return channels, labels

    def for_search(self, grid, style_grids, rotation_ids) -> Guides:
        """Guides of a hypercolumn search: content on ``grid``, style on each rotated grid."""
        channels, labels = self.style_maps(style_grids, rotation_ids)
        return Guides.from_maps(
            self.channels("content", grid), channels, weight=self.weight, hard=self.hard,
            query_labels=self.labels("content", grid) if self.hard else None, key_labels=labels,
        )


class _Stylizer:
    """The network, search settings and timings shared by the parts of one :func:`synthesize_nnst` call."""

    def __init__(self, config: NNSTConfig, masks, progress: Progress, weights):
        self.config = config
        self.device = resolve_device(config.device)
        self.bf16 = (not config.exact) and bf16_enabled(self.device, config.bf16)
        self.vgg = VGGLayers(build_vgg16_features(weights)).to(self.device)
        self.masks = masks
        self.progress = progress
        self.rotation_ids = config.rotation_ids()
        self.timings: dict[str, float] = {}

    def search_bf16(self, precise: bool = False) -> bool:
        """Whether a search runs its products in bf16; ``precise`` keeps it in fp32."""
        # hard labels add a bonus of 16 to the scores, beyond what bf16 resolves
        return self.bf16 and not precise and not (self.masks and self.masks.hard)

    def search(self, q: torch.Tensor, k: torch.Tensor, tail: int, precise: bool = False):
        """:func:`matching.search` with this run's speed settings; ``precise`` keeps it in fp32."""
        cfg = self.config
        return search(q, k, exact=cfg.exact, dims=cfg.search_dims, candidates=cfg.candidates, tail=tail,
                      seed=cfg.seed, bf16=self.search_bf16(precise))

    def split_refresh(self, size: tuple[int, int]) -> int:
        """Feature splitting searches at the steps whose index is a multiple of this (:func:`split_refresh`)."""
        return split_refresh(self.config, size)

    def heap_reuse(self, size: tuple[int, int]):
        """:func:`memory.heap_reuse` for an optimization loop at ``size`` (H, W), where it pays.

        On the CPU, where a step's largest blocks are ones glibc maps afresh each time
        (:func:`memory.reuses_heap`).
        """
        return heap_reuse(self.device.type == "cpu" and reuses_heap(size, 2 if self.bf16 else 4))

    def autocast(self, precise: bool = False):
        return autocast(self.device, self.bf16 and not precise)

    def _time(self, name: str, start: float) -> None:
        if self.device.type == "cuda":  # kernels run asynchronously: charge them to their stage
            torch.cuda.synchronize(self.device)
        self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - start

    @torch.no_grad()
    def style_hypercolumns(self, style: torch.Tensor, precise: bool = False):
        """Stacked style hypercolumns of every rotation: (M, 2688), grids, pixel sizes."""
        images = rotations(style, self.config.rotate)
        grids = [feature_grid(*image.shape[-2:]) for image in images]
        sizes = [tuple(image.shape[-2:]) for image in images]
        # filled in place: stacking per-rotation results would hold the keys twice (4 GB at 1024 px)
        keys = torch.empty(sum(h * w for h, w in grids), HYPERCOLUMN_CHANNELS, device=style.device)
        start = 0
        for image, (h, w) in zip(images, grids, strict=True):
            with self.autocast(precise):
                layers = self.vgg(image)
            keys[start:start + h * w] = flat_cells(hypercolumns(layers, (h, w)))
            start += h * w
            del layers
        return keys, grids, sizes

    @torch.no_grad()
    def match(self, query: torch.Tensor, style: torch.Tensor, precise: bool = False) -> Match:
        """Nearest style hypercolumn of each feature cell of ``query``.

        Exhaustive in exact mode; the fast search may miss the exact neighbour of a few cells,
        so an objective computed from it is an upper bound of the exact one. ``precise``
        computes features and scores in fp32 even where bf16 is on (the final field and the
        reported objective).
        """
        start = time.perf_counter()
        # the stage's largest blocks come next (the keys, then the search); without these two
        # calls they were allocated beside the pages glibc kept from blocks freed before (the
        # optimization's, then the VGG activations of each rotation): 0.7 GB more peak at 512 px
        release_freed_memory()
        keys, grids, sizes = self.style_hypercolumns(style, precise)
        grid = feature_grid(*query.shape[-2:])
        with self.autocast(precise):
            queries = flat_cells(hypercolumns(self.vgg(query), grid))
        release_freed_memory()
        self._time("features", start)
        start = time.perf_counter()
        guides = self.masks.for_search(grid, grids, self.rotation_ids) if self.masks else None
        mean, norms = center_normalize_(keys)
        q = center_normalize(queries)
        qa, ka = with_guides(q, keys, guides)
        index = self.search(qa, ka, tail=qa.shape[1] - queries.shape[1], precise=precise)[1]
        del qa, ka
        unit = keys[index]
        objective = float(1.0 - (q * unit).sum(1).mean())
        self._time("matching", start)
        return Match(index, unit * norms[index] + mean, objective, grids, sizes)

    def run(self, content: torch.Tensor, style: torch.Tensor, start_from: Mapping[str, np.ndarray],
            on_checkpoint: CheckpointCallback | None) -> tuple[torch.Tensor, np.ndarray, float]:
        """Output ``(1, 3, H, W)``, NNF and objective; scales named in ``start_from`` are not recomputed."""
        cfg = self.config
        h, w = content.shape[-2:]
        depth = pyramid_depth(h, w, cfg.pyramid_levels)
        n_scales = scale_count((h, w), cfg)
        content_pyr = decompose(content, depth)
        out_pyr = [b.clone() for b in content_pyr]
        zeroed = ZEROED_BANDS_LARGE if max(h, w) >= 1024 else ZEROED_BANDS_SMALL
        for i in range(min(zeroed, depth)):
            out_pyr[i].zero_()
        contents = lowpass_levels(content, n_scales)
        styles = lowpass_levels(style, n_scales)
        # the plan from the shapes alone: the experiment's time left (nnst_work) computes the same
        self.progress.plan(nnst_work((h, w), tuple(style.shape[-2:]), cfg, device=self.device.type,
                                     bf16=self.bf16, hard_guides=bool(self.masks and self.masks.hard)))

        for li, s in enumerate(reversed(range(n_scales))):
            name = scale_checkpoint_name(li)
            problem = state_problem(start_from[name], tuple(contents[s].shape[-2:])) if name in start_from else None
            if problem:
                warnings.warn(f"the saved state {name} {problem}; recomputing it", stacklevel=2)
            elif name in start_from:
                # the saved image in the content's memory layout, as it was computed
                out_pyr[s:] = decompose(to_tensor_like(start_from[name], content), depth - s)
                self.progress.skip(scale_stage_name(contents[s].shape[-2:]))
                continue
            alpha = 0.0 if li == 0 else cfg.alpha
            # the query carries the content's band at this scale, not the output's
            extract = synthesize([content_pyr[s]] + out_pyr[s + 1:]) if s < depth else contents[s]
            query = alpha * extract + (1.0 - alpha) * contents[s]
            targets = self.match(query, styles[s]).matched
            start = time.perf_counter()
            grid = feature_grid(*contents[s].shape[-2:])
            self.progress.start(scale_stage_name(contents[s].shape[-2:]))
            with self.heap_reuse(tuple(contents[s].shape[-2:])):
                out_pyr[s:] = fit_hypercolumns(
                    out_pyr[s:], self.vgg, targets, grid, steps=cfg.steps_at(s), lr=cfg.lr,
                    autocast=self.autocast, on_step=self.progress.step,
                )
            del targets
            self._time(f"optimize_{max(contents[s].shape[-2:])}px", start)
            # the next scale starts from the bands of the state as saved, whether or not it was saved:
            # the optimized bands are not those of any image, and one resumed from the state instead
            # (start_from) matched other patches from the next scale on, not the same bits
            state = synthesize(out_pyr[s:])[0].permute(1, 2, 0).cpu().numpy()
            out_pyr[s:] = decompose(to_tensor_like(state, content), depth - s)
            if on_checkpoint is not None:
                on_checkpoint(name, state)

        if cfg.split_steps > 0:
            out_pyr = self.split_pass(out_pyr, style, content.shape[-2:])
        output = synthesize(out_pyr).clamp(0, 1)

        with precise_matmul(self.device):  # no TF32: the final field and objective are fp32
            found = self.match(output, style, precise=True)
        nnf = indices_to_field(found.index, feature_grid(h, w), found.grids, found.sizes, self.rotation_ids)
        return output, nnf, found.objective

    def split_pass(self, out_pyr, style, size):
        cfg = self.config
        start = time.perf_counter()
        style_layers: list[list[torch.Tensor]] = [[] for _ in range(10)]
        with torch.no_grad(), self.autocast():
            for image in rotations(style, cfg.rotate):
                for li, layer in enumerate(self.vgg(image)):
                    style_layers[li].append(layer)
        content_guides = content_labels = None
        split_style = [SplitStyle(layers=layers) for layers in style_layers]
        if self.masks:
            content_guides = [self.masks.channels("content", layer_grid(size, li)) for li in range(len(style_layers))]
            content_labels = [self.masks.labels("content", layer_grid(size, li)) if self.masks.hard else None
                              for li in range(len(style_layers))]
            for layer in split_style:
                grids = [tuple(x.shape[-2:]) for x in layer.layers]
                layer.guides, layer.labels = self.masks.style_maps(grids, self.rotation_ids)
        generator = torch.Generator().manual_seed(cfg.seed)
        self.progress.start("feature splitting")
        with self.heap_reuse(tuple(size)):
            out_pyr = fit_split_layers(
                out_pyr, self.vgg, split_style, steps=cfg.split_steps, lr=cfg.lr, sample=cfg.split_sample,
                generator=generator, autocast=self.autocast,
                refresh=self.split_refresh(size),
                search=self.search, content_guides=content_guides, content_labels=content_labels,
                guide_weight=cfg.guide_weight, hard=bool(self.masks and self.masks.hard),
                on_step=self.progress.step,
            )
        self._time("feature_splitting", start)
        return out_pyr


def state_problem(state, shape: tuple[int, int]) -> str | None:
    """Why a saved state cannot start a scale that computes ``shape`` (H, W), or None when it can.

    A state of another shape, type or with NaN (a caller's ``start_from`` of another run, or
    altered) was decomposed into the output as it was: a garbled or NaN result.

    >>> state_problem(np.zeros((4, 6, 3), np.float32), (4, 6)) is None
    True
    >>> state_problem(np.zeros((4, 6, 3), np.uint8), (4, 6))
    'is of type uint8, not float32 (H, W, 3) as on_checkpoint handed it out'
    """
    if not isinstance(state, np.ndarray):
        return f"is a {type(state).__name__}, not a NumPy array"
    if state.shape != (*shape, 3):
        return f"is {state.shape}, not the {shape} this scale computes"
    if state.dtype.kind != "f":
        return f"is of type {state.dtype}, not float32 (H, W, 3) as on_checkpoint handed it out"
    if not np.isfinite(state).all():
        return "has NaN or infinite values"
    return None


def scale_checkpoint_name(index: int) -> str:
    """Name of the state after scale ``index`` (0 = coarsest) in ``start_from`` and ``on_checkpoint``."""
    return f"scale{index}"


def check_state_names(start_from: Mapping, n_scales: int) -> None:
    """Refuse (:class:`InputError`) a ``start_from`` name that is no state of a run of ``n_scales`` scales
    (:func:`scale_checkpoint_name`): it was ignored, silently, and its scale recomputed.

    >>> check_state_names({"scale0": None, "scale_1": None}, 3)
    Traceback (most recent call last):
    ...
    nnst_hr.errors.InputError: start_from has 'scale_1', which is no state of this run: its states are scale0, \
scale1, scale2, as on_checkpoint(name, state) handed them out
    """
    names = [scale_checkpoint_name(index) for index in range(n_scales)]
    unknown = [name for name in start_from if name not in names]
    if unknown:
        listed = ", ".join(map(repr, unknown))
        raise InputError(f"start_from has {listed}, which {'is' if len(unknown) == 1 else 'are'} no state of this "
                         f"run: its states are {', '.join(names)}, as on_checkpoint(name, state) handed them out")


def check_short_sides(shapes: Mapping[str, tuple[int, int]], size: int, minimum: int = MIN_SIZE) -> None:
    """Refuse images whose short side, resized to the long side ``size`` as NNST resizes them, is below ``minimum``.

    ``shapes``: each image's name in messages (its path) and ``(H, W)``. A run checks this before it
    writes anything, :func:`synthesize_nnst` again.

    >>> check_short_sides({"strip.png": (40, 400)}, 64)
    Traceback (most recent call last):
    ...
    nnst_hr.errors.InputError: strip.png is too thin: at --size 64 it is 64x6 px, its short side below 32 px; \
raise --size or crop the image
    """
    option = field_label(NNSTConfig, "size")  # "--size", or "size" in an experiment's stages
    for name, shape in shapes.items():
        height, width = long_side_shape(shape, size)
        if min(height, width) < minimum:
            raise InputError(f"{name} is too thin: at {option} {size} it is {width}x{height} px, its short side below "
                             f"{minimum} px; raise {option} or crop the image")


def synthesize_nnst(
    content: np.ndarray,
    style: np.ndarray,
    config: NNSTConfig | None = None,
    *,
    masks=None,
    weights: str | Path | None = None,
    progress: Progress | None = None,
    start_from: Mapping[str, np.ndarray] | None = None,
    on_checkpoint: CheckpointCallback | None = None,
) -> NNSTResult:
    """The NNST stage: ``content`` restyled after ``style``, before color post-processing.

    Parameters
    ----------
    content, style : float32 (H, W, 3) sRGB in [0, 1] (any sizes; both are resized so
        that their long side is ``config.size``)
    config : :class:`NNSTConfig` (defaults: the paper's); ``color`` is not used here
    masks : optional ``guidance.MaskPair`` whose label maps have the shapes of
        ``content`` and ``style`` as given
    weights : VGG16 weights file (see :mod:`nnst_hr.weights`); None searches the usual places
    progress : a :class:`Progress` reporter (silent when None)
    start_from : states that ``on_checkpoint`` handed out in an earlier call with the same
        arguments, by name; the scales they finish are not recomputed (a name that is no
        scale of this call is an :class:`InputError` listing them)
    on_checkpoint : called as ``on_checkpoint(name, image)`` after each scale with its
        state, float32 ``(H, W, 3)`` (not clipped); keep it to resume later

    Returns
    -------
    :class:`NNSTResult`
    """
    config = NNSTConfig() if config is None else config
    check_config(config, NNSTConfig, "config")
    check_progress(progress)
    if start_from is not None and not isinstance(start_from, Mapping):  # failed comparing names with arrays
        raise InputError(f"start_from is a {type(start_from).__name__}: give a mapping of state names to arrays, "
                         f"as on_checkpoint(name, state) handed them out")
    check_image(content, "the content")
    check_image(style, "the style")
    # as `run` refuses them: a 4 x 4 px image upscaled to `size` is a blur of a few colours, not a transfer
    check_input_sizes({"the content": content.shape[:2], "the style": style.shape[:2]}, config.size)
    if masks is not None:
        check_masks(masks, content.shape, style.shape)
    progress = progress or Progress(enabled=False)

    total = time.perf_counter()
    check_short_sides({"the content": content.shape[:2], "the style": style.shape[:2]}, config.size)
    check_state_names(start_from or {}, scale_count(long_side_shape(content.shape[:2], config.size), config))
    runner = _Stylizer(config, MaskGuides(masks, config, resolve_device(config.device)) if masks is not None else None,
                       progress, weights)
    device = runner.device
    content_t = resize_long_side(to_tensor(content, device), config.size)
    style_t = resize_long_side(to_tensor(style, device), config.size)
    with run_settings(device, exact=config.exact):
        output, nnf, objective = runner.run(content_t, style_t, start_from or {}, on_checkpoint)
    runner.timings["total"] = time.perf_counter() - total
    return NNSTResult(
        raw=to_numpy(output),
        field=nnf,
        content_size=tuple(content_t.shape[-2:]),
        style_size=tuple(style_t.shape[-2:]),
        objective=objective,
        timings=runner.timings,
    )


def stylize(
    content: np.ndarray,
    style: np.ndarray,
    config: NNSTConfig | None = None,
    *,
    masks=None,
    progress: Progress | None = None,
    weights: str | Path | None = None,
) -> StylizeResult:
    """Neural Neighbor Style Transfer of ``content`` in the style of ``style``, with color.

    :func:`synthesize_nnst` followed by :func:`nnst_hr.color.color_stage`.

    Parameters
    ----------
    content, style : float32 (H, W, 3) sRGB in [0, 1] (any sizes; both are resized so
        that their long side is ``config.size``)
    config : :class:`NNSTConfig` (defaults: the paper's)
    masks : optional ``guidance.MaskPair`` whose label maps have the shapes of
        ``content`` and ``style`` as given
    progress : a :class:`Progress` reporter (silent when None)
    weights : VGG16 weights file (see :mod:`nnst_hr.weights`); None searches the usual places

    Returns
    -------
    :class:`StylizeResult`
    """
    config = NNSTConfig() if config is None else config
    check_config(config, NNSTConfig, "config")
    total = time.perf_counter()
    result = synthesize_nnst(content, style, config, masks=masks, weights=weights, progress=progress)
    start = time.perf_counter()
    image = color_stage(result.raw, content, style, config)
    timings = {**result.timings, "color": time.perf_counter() - start, "total": time.perf_counter() - total}
    return StylizeResult(
        image=image,
        raw=result.raw,
        field=result.field,
        content_size=result.content_size,
        style_size=result.style_size,
        objective=result.objective,
        timings=timings,
    )


def nnst_objective(
    image: np.ndarray,
    style: np.ndarray,
    config: NNSTConfig | None = None,
    *,
    weights: str | Path | None = None,
) -> float:
    """The NNST objective of ``image`` against ``style``, by exhaustive fp32 search.

    The mean centered-cosine distance of the hypercolumns of ``image`` to their nearest
    hypercolumns of ``style`` (all rotations when ``config.rotate``), the quantity that
    :func:`stylize` minimizes and reports in exact mode. Use it to compare results of
    different modes on equal terms: fast mode reports an upper bound from its shortlist.

    Parameters
    ----------
    image, style : float32 (H, W, 3) sRGB in [0, 1]; both are resized so that their long
        side is ``config.size``, as :func:`stylize` does (pass a result's ``raw`` image)
    config : only ``size``, ``rotate`` and ``device`` are used
    """
    config = NNSTConfig() if config is None else config
    check_config(config, NNSTConfig, "config")
    config = replace(config, exact=True)
    check_image(image, "the image")
    check_image(style, "the style")
    shapes = {"the image": image.shape[:2], "the style": style.shape[:2]}
    check_input_sizes(shapes, config.size)
    # VGG's poolings failed in torch on a strip less than one cell of its coarsest layer across
    check_short_sides(shapes, config.size, max(LAYER_STRIDES))
    runner = _Stylizer(config, None, Progress(enabled=False), weights)
    image_t = resize_long_side(to_tensor(image, runner.device), config.size)
    style_t = resize_long_side(to_tensor(style, runner.device), config.size)
    with precise_matmul(runner.device):
        return runner.match(image_t, style_t, precise=True).objective
