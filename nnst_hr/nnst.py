"""The NNST driver: coarse-to-fine hypercolumn matching, feature splitting, color.

``stylize(content, style, config)`` takes and returns NumPy images (``float32 (H, W, 3)``,
sRGB in ``[0, 1]``); everything in between is torch on ``config.device``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from guidance import guide_channels, hard_labels_at, rotate_guides

from .color import transfer_color
from .config import MIN_SIZE, NNSTConfig
from .device import autocast, bf16_enabled, resolve_device
from .errors import InputError
from .features import HYPERCOLUMN_CHANNELS, LAYER_STRIDES, VGGLayers, feature_grid, hypercolumns, rotations
from .field import indices_to_field
from .integrity import is_intact, write_checksum
from .io import atomic_output
from .matching import Guides, center_normalize, center_normalize_, search, with_guides
from .optimize import SplitStyle, fit_hypercolumns, fit_split_layers, refresh_interval
from .progress import Progress
from .pyramid import decompose, lowpass_levels, pyramid_depth, synthesize
from .weights import build_vgg16_features

ZEROED_BANDS_SMALL, ZEROED_BANDS_LARGE = 3, 2  # finest content bands removed from the start image (<1024, >=1024)


@dataclass
class StylizeResult:
    """What :func:`stylize` returns.

    image : float32 (H, W, 3), the final result (after color post-processing when enabled)
    raw : float32 (H, W, 3), the result before color post-processing
    field : int32 (H // 4, W // 4, 3), NNF (rotation k, y, x in the rotated style at ``style_size``)
    content_size, style_size : (height, width) of content and (unrotated) style as NNST used them
    objective : mean centered-cosine distance of the output's hypercolumns to their nearest
        style hypercolumns, the quantity NNST minimizes (exact search in exact mode; an upper
        bound of it from the fast search otherwise)
    timings : seconds per stage
    """

    image: np.ndarray
    raw: np.ndarray
    field: np.ndarray
    content_size: tuple[int, int]
    style_size: tuple[int, int]
    objective: float
    timings: dict[str, float] = field(default_factory=dict)


def to_tensor(image: np.ndarray, device: torch.device) -> torch.Tensor:
    """(H, W, 3) float32 NumPy -> (1, 3, H, W) tensor."""
    return torch.from_numpy(np.ascontiguousarray(image, np.float32)).permute(2, 0, 1)[None].to(device)


def to_numpy(image: torch.Tensor) -> np.ndarray:
    """(1, 3, H, W) tensor -> (H, W, 3) float32 NumPy, clipped to [0, 1]."""
    return image[0].clamp(0, 1).permute(1, 2, 0).detach().cpu().numpy().astype(np.float32)


def resize_long_side(image: torch.Tensor, long_side: int) -> torch.Tensor:
    """Antialiased bilinear resize of (1, 3, H, W) so that max(H, W) == long_side."""
    h, w = image.shape[-2:]
    scale = long_side / max(h, w)
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    if size == (h, w):
        return image
    return F.interpolate(image, size, mode="bilinear", align_corners=False, antialias=scale < 1)


def _flat(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(2)[0].t()


def layer_grid(size: tuple[int, int], layer: int) -> tuple[int, int]:
    """Spatial size of VGG layer ``layer`` (0..9) for an image of ``size`` (each pooling floors)."""
    h, w = size
    for _ in range(LAYER_STRIDES[layer].bit_length() - 1):
        h, w = h // 2, w // 2
    return h, w


def unrotated_grid(grid: tuple[int, int], k: int) -> tuple[int, int]:
    """The grid before a rotation by ``k`` quarter turns that produced ``grid``."""
    return grid if k % 2 == 0 else (grid[1], grid[0])


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
        grids = [unrotated_grid(g, k) for g, k in zip(grids, rotation_ids)]
        channels = [self.channels("style", g, k) for g, k in zip(grids, rotation_ids)]
        labels = [self.labels("style", g, k) for g, k in zip(grids, rotation_ids)] if self.hard else None
        return channels, labels

    def for_search(self, grid, style_grids, rotation_ids) -> Guides:
        """Guides of a hypercolumn search: content on ``grid``, style on each rotated grid."""
        channels, labels = self.style_maps(style_grids, rotation_ids)
        return Guides(
            queries=_flat(self.channels("content", grid)[None]),
            keys=torch.cat([_flat(c[None]) for c in channels]),
            weight=self.weight,
            hard=self.hard,
            query_labels=self.labels("content", grid).flatten() if self.hard else None,
            key_labels=torch.cat([lab.flatten() for lab in labels]) if self.hard else None,
        )


class _Stylizer:
    """State shared by the stages of one :func:`stylize` call."""

    def __init__(self, config: NNSTConfig, masks, progress: Progress, checkpoint_dir: Path | None, weights):
        self.config = config
        self.device = resolve_device(config.device)
        self.bf16 = (not config.exact) and bf16_enabled(self.device, config.bf16)
        self.vgg = VGGLayers(build_vgg16_features(weights)).to(self.device)
        self.masks = masks
        self.progress = progress
        self.checkpoint_dir = checkpoint_dir
        self.rotation_ids = [0, 1, 2, 3] if config.rotate else [0]
        self.timings: dict[str, float] = {}

    def search(self, q: torch.Tensor, k: torch.Tensor, tail: int, precise: bool = False):
        """:func:`matching.search` with this run's speed settings; ``precise`` keeps it in fp32."""
        cfg = self.config
        # hard labels add a bonus of 16 to the scores, beyond what bf16 resolves
        bf16 = self.bf16 and not precise and not (self.masks and self.masks.hard)
        return search(q, k, exact=cfg.exact, dims=cfg.search_dims, candidates=cfg.candidates, tail=tail,
                      seed=cfg.seed, bf16=bf16)

    def autocast(self, precise: bool = False):
        return autocast(self.device, self.bf16 and not precise)

    def _time(self, name: str, start: float) -> None:
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
        for image, (h, w) in zip(images, grids):
            with self.autocast(precise):
                layers = self.vgg(image)
            keys[start:start + h * w] = _flat(hypercolumns(layers, (h, w)))
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
        keys, grids, sizes = self.style_hypercolumns(style, precise)
        grid = feature_grid(*query.shape[-2:])
        with self.autocast(precise):
            queries = _flat(hypercolumns(self.vgg(query), grid))
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

    def checkpoint(self, name: str) -> Path | None:
        return None if self.checkpoint_dir is None else self.checkpoint_dir / f"{name}.pt"

    def run(self, content: torch.Tensor, style: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float]:
        cfg = self.config
        h, w = content.shape[-2:]
        depth = pyramid_depth(h, w, cfg.pyramid_levels)
        n_scales = min(len(cfg.scales()), depth + 1)
        while n_scales > 1 and min(h, w) >> (n_scales - 1) < MIN_SIZE:
            n_scales -= 1
        content_pyr = decompose(content, depth)
        out_pyr = [b.clone() for b in content_pyr]
        zeroed = ZEROED_BANDS_LARGE if max(h, w) >= 1024 else ZEROED_BANDS_SMALL
        for i in range(min(zeroed, depth)):
            out_pyr[i].zero_()
        contents = lowpass_levels(content, n_scales)
        styles = lowpass_levels(style, n_scales)
        self.progress.plan(
            [(f"scale {max(contents[s].shape[-2:])}px", cfg.steps_at(s), contents[s].numel()) for s in reversed(range(n_scales))]
            + [("feature splitting", cfg.split_steps, 1.3 * content.numel())]
        )

        for li, s in enumerate(reversed(range(n_scales))):
            ckpt = self.checkpoint(f"scale{li}")
            if ckpt is not None and is_intact(ckpt):
                out_pyr[s:] = decompose(torch.load(ckpt, map_location=self.device), depth - s)
                self.progress.skip(f"scale {max(contents[s].shape[-2:])}px")
                continue
            alpha = 0.0 if li == 0 else cfg.alpha
            # the query carries the content's band at this scale, not the output's
            extract = synthesize([content_pyr[s]] + out_pyr[s + 1:]) if s < depth else contents[s]
            query = alpha * extract + (1.0 - alpha) * contents[s]
            targets = self.match(query, styles[s]).matched
            start = time.perf_counter()
            grid = feature_grid(*contents[s].shape[-2:])
            self.progress.start(f"scale {max(contents[s].shape[-2:])}px")
            out_pyr[s:] = fit_hypercolumns(
                out_pyr[s:], self.vgg, targets, grid, steps=cfg.steps_at(s), lr=cfg.lr,
                autocast=self.autocast, on_step=self.progress.step,
            )
            del targets
            self._time(f"optimize_{max(contents[s].shape[-2:])}px", start)
            if ckpt is not None:
                self._save(ckpt, synthesize(out_pyr[s:]))

        if cfg.split_steps > 0:
            out_pyr = self.split_pass(out_pyr, style, content.shape[-2:])
        output = synthesize(out_pyr).clamp(0, 1)

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
        out_pyr = fit_split_layers(
            out_pyr, self.vgg, split_style, steps=cfg.split_steps, lr=cfg.lr, sample=cfg.split_sample,
            generator=generator, autocast=self.autocast,
            refresh=1 if cfg.exact else refresh_interval(cfg.split_refresh, cfg.split_steps, max(size), cfg.split_sample),
            search=self.search, content_guides=content_guides, content_labels=content_labels,
            guide_weight=cfg.guide_weight, hard=bool(self.masks and self.masks.hard),
            on_step=self.progress.step,
        )
        self._time("feature_splitting", start)
        return out_pyr

    def _save(self, path: Path, tensor: torch.Tensor) -> None:
        with atomic_output(path, overwrite=True) as tmp:
            torch.save(tensor.detach().cpu(), tmp)
        write_checksum(path)  # a resumed run loads it only if intact


def stylize(
    content: np.ndarray,
    style: np.ndarray,
    config: NNSTConfig | None = None,
    *,
    masks=None,
    progress: Progress | None = None,
    checkpoint_dir: str | Path | None = None,
    weights: str | Path | None = None,
) -> StylizeResult:
    """Neural Neighbor Style Transfer of ``content`` in the style of ``style``.

    Parameters
    ----------
    content, style : float32 (H, W, 3) sRGB in [0, 1] (any sizes; both are resized so
        that their long side is ``config.size``)
    config : :class:`NNSTConfig` (defaults: the paper's)
    masks : optional ``guidance.MaskPair`` whose label maps have the shapes of
        ``content`` and ``style`` as given
    progress : a :class:`Progress` reporter (silent when None)
    checkpoint_dir : folder for per-scale checkpoints; a later call with the same
        arguments resumes after the last finished scale
    weights : VGG16 weights file (see :mod:`nnst_hr.weights`); None searches the usual places

    Returns
    -------
    :class:`StylizeResult`
    """
    config = config or NNSTConfig()
    config.validate()
    torch.manual_seed(config.seed)
    progress = progress or Progress(enabled=False)
    checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
    if checkpoint_dir is not None:
        checkpoint_dir.mkdir(parents=True, exist_ok=True)

    total = time.perf_counter()
    runner = _Stylizer(config, MaskGuides(masks, config, resolve_device(config.device)) if masks is not None else None,
                       progress, checkpoint_dir, weights)
    device = runner.device
    content_t = resize_long_side(to_tensor(content, device), config.size)
    style_t = resize_long_side(to_tensor(style, device), config.size)
    if min(content_t.shape[-2:]) < MIN_SIZE or min(style_t.shape[-2:]) < MIN_SIZE:
        raise InputError(
            f"an image is too thin: at --size {config.size} its short side falls below {MIN_SIZE} px; "
            "raise --size or crop the image"
        )
    output, nnf, objective = runner.run(content_t, style_t)

    start = time.perf_counter()
    raw = output
    if config.color:
        output = transfer_color(
            raw, content_t, style_t, iterations=config.color_iterations,
            sharpness=config.color_sharpness, mono_threshold=config.mono_threshold,
        )
    runner._time("color", start)
    runner.timings["total"] = time.perf_counter() - total
    return StylizeResult(
        image=to_numpy(output),
        raw=to_numpy(raw),
        field=nnf,
        content_size=tuple(content_t.shape[-2:]),
        style_size=tuple(style_t.shape[-2:]),
        objective=objective,
        timings=runner.timings,
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
    config = replace(config or NNSTConfig(), exact=True)
    runner = _Stylizer(config, None, Progress(enabled=False), None, weights)
    image_t = resize_long_side(to_tensor(image, runner.device), config.size)
    style_t = resize_long_side(to_tensor(style, runner.device), config.size)
    return runner.match(image_t, style_t, precise=True).objective
