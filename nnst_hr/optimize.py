"""NNST-Opt: Adam on the output's Laplacian pyramid towards matched style features.

Two regimes, both minimizing a mean cosine distance:

* :func:`fit_hypercolumns` — fixed targets (the style hypercolumns matched once per scale);
* :func:`fit_split_layers` — the final "feature splitting" pass: each of the 10 VGG
  layers is matched on its own, and the matches are recomputed after every update.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from .features import VGGLayers, hypercolumns
from .matching import Guides, augment, best_scores, centered_cosine_loss, cosine_loss
from .pyramid import synthesize

StepCallback = Callable[[int, float], None]  # (step index, loss) after each update


def _flat(x: torch.Tensor) -> torch.Tensor:
    """(1, C, h, w) -> (h * w, C)."""
    return x.flatten(2)[0].t()


def _adam(pyr: list[torch.Tensor], lr: float):
    params = [p.detach().clone().requires_grad_(True) for p in pyr]
    return params, torch.optim.Adam(params, lr=lr)


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
    targets = targets.t().contiguous()  # (2688, h * w): the layout the feature maps already have
    for step in range(steps):
        opt.zero_grad(set_to_none=True)
        with autocast():
            layers = vgg(synthesize(params))
        loss = cosine_loss(hypercolumns(layers, grid)[0].flatten(1), targets, dim=0)
        loss.backward()
        opt.step()
        if on_step is not None:
            on_step(step, loss.item())
    return [p.detach() for p in params]


@dataclass
class SplitStyle:
    """Style features of one VGG layer for the feature-splitting pass.

    ``layers[r]`` is the layer (1, C, H_r, W_r) of rotation ``r``; ``guides[r]`` is
    ``(G, H_r, W_r)`` or None; ``labels[r]`` ``(H_r, W_r)`` for hard guidance or None.
    """

    layers: list[torch.Tensor]
    guides: list[torch.Tensor] | None = None
    labels: list[torch.Tensor] | None = None


def sample_grid(height: int, width: int, limit: int, generator: torch.Generator) -> tuple[int, int, int]:
    """Stride and random offsets ``(stride, oy, ox)`` that subsample a layer to at most ``limit`` per side.

    Layers no larger than ``limit`` are used whole (stride 1): the authors' code reused the
    previous layer's samples there, a bug fixed here. The stride is rounded up (the authors
    round down), so a 96 px layer gets 48 x 48 samples instead of all 96 x 96: same
    statistics, and no 4x cost cliff at sizes that are not powers of two.
    """
    side = max(height, width)
    if side <= limit:
        return 1, 0, 0
    stride = -(-side // limit)
    oy, ox = torch.randint(0, stride, (2,), generator=generator).tolist()
    return stride, oy, ox


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

    ``search(q, k, tail) -> (scores, indices)`` finds the matches of prepared vectors whose
    last ``tail`` columns are guide terms (:func:`matching.search`); ``content_guides[l]`` is
    ``(G, H_l, W_l)`` on layer ``l``'s grid (or None).
    """
    params, opt = _adam(pyr, lr)
    for step in range(steps):
        opt.zero_grad(set_to_none=True)
        with autocast():
            layers = vgg(synthesize(params))
        loss = 0.0
        for li, layer in enumerate(layers):
            h, w = layer.shape[-2:]
            stride, oy, ox = sample_grid(h, w, sample, generator)
            out = _flat(layer[:, :, oy::stride, ox::stride].float())
            keys = torch.cat([_flat(s[:, :, oy::stride, ox::stride].float()) for s in style[li].layers])
            guides = None
            if content_guides is not None and content_guides[li] is not None:
                guides = Guides(
                    queries=_flat(content_guides[li][None, :, oy::stride, ox::stride]),
                    keys=torch.cat([_flat(g[None, :, oy::stride, ox::stride]) for g in style[li].guides]),
                    weight=guide_weight,
                    hard=hard,
                    query_labels=content_labels[li][oy::stride, ox::stride].flatten() if hard else None,
                    key_labels=torch.cat([lab[oy::stride, ox::stride].flatten() for lab in style[li].labels]) if hard else None,
                )
            with torch.no_grad():
                q, k = augment(out.detach(), keys, guides)
                index = search(q, k, q.shape[1] - out.shape[1])[1]
            loss = loss + centered_cosine_loss(out, keys[index], keys.mean(0, keepdim=True))
        loss.backward()
        opt.step()
        if on_step is not None:
            on_step(step, loss.item())
    return [p.detach() for p in params]
