"""NNST-Opt: Adam on the output's Laplacian pyramid towards matched style features.

Two regimes, both minimizing a mean cosine distance:

* :func:`fit_hypercolumns` — fixed targets (the style hypercolumns matched once per scale);
* :func:`fit_split_layers` — the final "feature splitting" pass: each of the 10 VGG
  layers is matched on its own, and the matches are recomputed after every update.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .hypercolumns import LAYER_CHANNELS, VGGLayers, layer_columns
from .laplacian import synthesize
from .matching import NORM_EPS, Guides, augment, best_scores, centered_cosine_loss

# (step index, loss) after each update; the loss is a 0-d tensor, read (a host-device sync)
# only when the callback prints it
StepCallback = Callable[[int, torch.Tensor], None]
# Feature splitting searches less often only where its lattices still visit each position of the
# finest layer this many times. At 512 px (64 positions) searching every 2nd step (100 lattices)
# ended 1.6 % above the exact objective, every step 0.2 %; at 256 px (16 positions) every 2nd
# step stayed within 1 % of exact (2 seeds).
MIN_LATTICE_COVERAGE = 3


def _adam(pyr: list[torch.Tensor], lr: float):
    params = [p.detach().clone().requires_grad_(True) for p in pyr]
    saved = dict(os.environ)
    try:
        return params, torch.optim.Adam(params, lr=lr)
    finally:
        # torch's first optimizer imports torch._dynamo, which sets TORCHINDUCTOR_CACHE_DIR in os.environ for
        # good (inherited by every subprocess the caller starts): the library leaves the environment alone
        for name in set(os.environ) - set(saved):
            del os.environ[name]
        os.environ.update({name: value for name, value in saved.items() if os.environ.get(name) != value})


def split_targets(targets: torch.Tensor, grid: tuple[int, int]) -> list[torch.Tensor]:
    """Unit-normalized target hypercolumns ``(h * w, 2688)`` cut into per-layer maps ``(1, C_l, h, w)``."""
    unit = targets / targets.norm(dim=1, keepdim=True).clamp_min(NORM_EPS)
    unit = unit.t().reshape(1, -1, *grid)
    return list(unit.split(LAYER_CHANNELS, dim=1))


class HypercolumnCosineLoss(torch.autograd.Function):
    """Mean ``1 - cos(hypercolumn, target)`` over the feature grid, without building hypercolumns.

    The same value and gradient as :func:`matching.cosine_loss` on
    :func:`features.hypercolumns`, but each layer is resized once and the dot products
    and norms are accumulated per layer: the 2688-channel tensor, its copies and the
    autograd graph through ``cat`` and the norms are never built. The gradient of
    ``cos = o . t / |o|`` (``|t| = 1``) is ``t / |o| - cos * o / |o|^2`` per cell.

    ``apply(targets, *layers)``: ``targets`` from :func:`split_targets`, ``layers`` the 10 VGG
    layers ``(1, C_l, H_l, W_l)``; returns a scalar.
    """

    @staticmethod
    def forward(ctx, targets: list[torch.Tensor], *layers: torch.Tensor) -> torch.Tensor:
        grid = targets[0].shape[-2:]
        dot = torch.zeros(1, *grid, dtype=torch.float32, device=layers[0].device)
        sq = torch.zeros_like(dot)
        cols = []
        for layer, target in zip(layers, targets, strict=True):
            col = layer_columns(layer, grid)
            dot += torch.linalg.vecdot(col, target, dim=1)
            sq += torch.linalg.vecdot(col, col, dim=1)
            cols.append(col)
        norm = sq.sqrt().clamp_min(NORM_EPS)
        cos = dot / norm
        ctx.targets, ctx.shapes = targets, [layer.shape for layer in layers]
        ctx.dtypes = [layer.dtype for layer in layers]
        ctx.save_for_backward(norm, cos, *cols)
        return (1.0 - cos).mean()

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        norm, cos, *cols = ctx.saved_tensors
        scale = grad / cos.numel()
        to_target = (-scale / norm)[:, None]  # d(-cos)/d(col) along the target
        to_col = (scale * cos / (norm * norm))[:, None]  # ... and along the column itself
        grads = []
        for col, target, shape, dtype in zip(cols, ctx.targets, ctx.shapes, ctx.dtypes, strict=True):
            g = torch.addcmul(to_col * col, to_target, target) * (1.0 / shape[1])
            if tuple(shape[-2:]) != tuple(g.shape[-2:]):
                g = torch.ops.aten.upsample_bilinear2d_backward(g, list(g.shape[-2:]), list(shape), True, None, None)
            grads.append(g.to(dtype))
        return (None, *grads)


def fit_hypercolumns(
    pyr: list[torch.Tensor],
    vgg: VGGLayers,
    targets: torch.Tensor,
    grid: tuple[int, int],
    *,
    steps: int,
    lr: float,
    autocast,
    on_step: StepCallback | None = None,
) -> list[torch.Tensor]:
    """Optimize pyramid bands ``pyr`` (finest first) so the image's hypercolumns approach ``targets``.

    Parameters
    ----------
    pyr : bands of the output at this scale (the finer, fixed bands are not passed)
    targets : (h * w, 2688) raw style hypercolumns, one per feature cell (row-major)
    grid : (h, w) feature grid of the image at this scale
    autocast : a context-manager factory (bf16 or no-op) for the VGG pass

    Returns
    -------
    The optimized bands (detached), same shapes as ``pyr``.
    """
    params, opt = _adam(pyr, lr)
    parts = split_targets(targets, grid)
    for step in range(steps):
        opt.zero_grad(set_to_none=True)
        with autocast():
            layers = vgg(synthesize(params))
        loss = HypercolumnCosineLoss.apply(parts, *layers)
        loss.backward()
        opt.step()
        if on_step is not None:
            on_step(step, loss.detach())
    return [p.detach() for p in params]


def lattice_rows(layer: torch.Tensor, stride: int, oy: int, ox: int) -> torch.Tensor:
    """Cells ``layer[0, :, oy::stride, ox::stride]`` of a (1, C, H, W) layer as float32 rows ``(h * w, C)``.

    Rows are cells in row-major order. One copy: a channels-last layer's cells are already
    contiguous runs of C values.
    """
    return layer[0, :, oy::stride, ox::stride].permute(1, 2, 0).float().reshape(-1, layer.shape[1])


class LatticeRows(torch.autograd.Function):
    """:func:`lattice_rows` with a gradient in the layer's own memory format.

    Slicing and flattening by channel sent back a contiguous (NCHW) gradient; added to VGG's
    channels-last gradients it made the ReLU backward and the gradient sums of a
    feature-splitting step 3-5x slower.
    """

    @staticmethod
    def forward(ctx, layer: torch.Tensor, stride: int, oy: int, ox: int) -> torch.Tensor:
        ctx.lattice = (stride, oy, ox)
        ctx.layout = (layer.shape, layer.stride(), layer.dtype)
        return lattice_rows(layer, stride, oy, ox)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        stride, oy, ox = ctx.lattice
        shape, strides, dtype = ctx.layout
        full = torch.empty_strided(shape, strides, dtype=dtype, device=grad.device).zero_()
        cells = full[0].permute(1, 2, 0)[oy::stride, ox::stride]
        cells.copy_(grad.reshape(cells.shape))
        return full, None, None, None


@dataclass
class SplitStyle:
    """Style features of one VGG layer for the feature-splitting pass.

    ``layers[r]`` is the layer (1, C, H_r, W_r) of rotation ``r``; ``guides[r]`` is
    ``(G, H_r, W_r)`` or None; ``labels[r]`` ``(H_r, W_r)`` for hard guidance or None.
    """

    layers: list[torch.Tensor]
    guides: list[torch.Tensor] | None = None
    labels: list[torch.Tensor] | None = None


def lattice_stride(side: int, limit: int) -> int:
    """Stride that subsamples a layer of long side ``side`` to at most ``limit`` cells per side."""
    return 1 if side <= limit else -(-side // limit)


def sample_grid(height: int, width: int, limit: int, generator: torch.Generator) -> tuple[int, int, int]:
    """Stride and random offsets ``(stride, oy, ox)`` that subsample a layer to at most ``limit`` per side.

    Layers no larger than ``limit`` are used whole (stride 1): the authors' code reused the
    previous layer's samples there, a bug fixed here. The stride is rounded up (the authors
    round down), so a 96 px layer gets 48 x 48 samples instead of all 96 x 96: same
    statistics, and no 4x cost cliff at sizes that are not powers of two.
    """
    stride = lattice_stride(max(height, width), limit)
    if stride == 1:
        return 1, 0, 0
    oy, ox = torch.randint(0, stride, (2,), generator=generator).tolist()
    return stride, oy, ox


def refresh_interval(requested: int, steps: int, side: int, limit: int) -> int:
    """The longest search interval, up to ``requested``, that keeps enough lattices for the finest layer.

    The finest layer (long side ``side``, subsampled to ``limit``) has ``stride**2`` lattice
    positions; a pass of ``steps`` steps that searches every ``r`` steps draws ``steps / r``
    lattices, and cells that no lattice visits are never pulled towards the style. So the
    interval keeps at least ``MIN_LATTICE_COVERAGE`` lattices per position.

    >>> refresh_interval(2, 200, 256, 64), refresh_interval(2, 200, 512, 64)
    (2, 1)
    """
    stride = lattice_stride(side, limit)
    return max(1, min(requested, steps // (MIN_LATTICE_COVERAGE * stride * stride)))


def fit_split_layers(
    pyr: list[torch.Tensor],
    vgg: VGGLayers,
    style: list[SplitStyle],
    *,
    steps: int,
    lr: float,
    sample: int,
    generator: torch.Generator,
    autocast,
    refresh: int = 1,
    search: Callable = lambda q, k, tail: best_scores(q, k),
    content_guides: list[torch.Tensor | None] | None = None,
    content_labels: list[torch.Tensor | None] | None = None,
    guide_weight: float = 0.5,
    hard: bool = False,
    on_step: StepCallback | None = None,
) -> list[torch.Tensor]:
    """The feature-splitting pass over the full pyramid ``pyr``.

    Every step: VGG layers of the current output; for each layer, subsample output and
    style on the same random lattice (:func:`sample_grid`), match each output vector to
    its nearest style vector (centered cosine, plus the guide term when guides are
    given) without gradients, and add the centered cosine distance of the gathered pairs
    to the loss (a sum over layers, as in the authors' code).

    With ``refresh > 1`` the lattice and the matches are recomputed only every ``refresh``
    steps and the steps in between pull towards the same style vectors; ``refresh = 1`` is
    the paper's algorithm.

    ``search(q, k, tail) -> (scores, indices)`` finds the matches of prepared vectors whose
    last ``tail`` columns are guide terms (:func:`matching.search`); ``content_guides[l]`` is
    ``(G, H_l, W_l)`` on layer ``l``'s grid (or None).
    """
    params, opt = _adam(pyr, lr)
    n_labels = None
    if hard:  # read back once here rather than in every search's one-hot columns
        maps = [lab for layer in style for lab in layer.labels] + [lab for lab in content_labels if lab is not None]
        n_labels = 1 + int(torch.stack([lab.max() for lab in maps]).max())
    lattices: list[tuple[int, int, int]] = [(1, 0, 0)] * len(style)  # per layer: (stride, oy, ox)
    targets: list[torch.Tensor | None] = [None] * len(style)  # per layer: matched keys, centered and unit
    for step in range(steps):
        opt.zero_grad(set_to_none=True)
        with autocast():
            layers = vgg(synthesize(params))
        loss = 0.0
        for li, layer in enumerate(layers):
            if step % refresh == 0:
                lattices[li] = sample_grid(*layer.shape[-2:], sample, generator)
            stride, oy, ox = lattices[li]
            out = LatticeRows.apply(layer, stride, oy, ox)
            if step % refresh == 0:
                keys = torch.cat([lattice_rows(s, stride, oy, ox) for s in style[li].layers])
                guides = None
                if content_guides is not None and content_guides[li] is not None:
                    guides = Guides.from_maps(
                        content_guides[li][:, oy::stride, ox::stride],
                        [g[:, oy::stride, ox::stride] for g in style[li].guides],
                        weight=guide_weight,
                        hard=hard,
                        query_labels=content_labels[li][oy::stride, ox::stride] if hard else None,
                        key_labels=[lab[oy::stride, ox::stride] for lab in style[li].labels] if hard else None,
                        n_labels=n_labels,
                    )
                with torch.no_grad():
                    q, k = augment(out.detach(), keys, guides)
                    index = search(q, k, q.shape[1] - out.shape[1])[1]
                    targets[li] = k[index, : out.shape[1]]  # the feature columns of the prepared keys
            loss = loss + centered_cosine_loss(out, targets[li])
        loss.backward()
        opt.step()
        if on_step is not None:
            on_step(step, loss.detach())
    return [p.detach() for p in params]
