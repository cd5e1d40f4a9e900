"""Scores of a style-transfer result: how much content it kept, how close it is to the style.

:func:`score_image` scores any image (ours or another tool's) against its content and
style and returns the scores that apply, by name. Each score and its direction:

===================== =========== ==========================================================
name                  better      meaning
===================== =========== ==========================================================
``objective``         lower       NNST's own objective: mean centered-cosine distance of the
                                  result's hypercolumns to their nearest style hypercolumns
                                  (:func:`nnst_hr.nnst.nnst_objective`, exhaustive fp32)
``content_lpips``     lower       LPIPS v0.1 (VGG) between result and content
``content_ssim``      higher      SSIM of the luminance of result and content (1 = same)
``style_gram``        lower       Gatys style distance of the Gram matrices of relu1_1..4_1
``color_swd``         lower       sliced Wasserstein distance of the OkLab pixel colors
``style_gram.<name>`` lower       ``style_gram`` restricted to one label on both sides
``label_agreement``   higher      share of guided field cells matched to their own label
``detail``            closer to 1 fine detail of a poster relative to the exemplar's
``detail_bicubic``    (baseline)  the same for a bicubic upsample of the NNST result: not a score
                                  of the poster but the ``detail`` it should beat
===================== =========== ==========================================================

The two VGG16 scores share one network pass per image: LPIPS's input scaling
(``(2 x - 1 - shift) / scale``) is the ImageNet normalization rewritten for inputs in
``[-1, 1]`` (``shift = 2 mean - 1``, ``scale = 2 std``), so its features are also the
ones a Gram distance on an ImageNet VGG expects. Images with a long side above
:data:`NETWORK_MAX_SIDE` are scored by these two on a copy resized to it (memory:
relu1_2 of a 4K poster alone takes over 3 GB).

A print (``nnst-hr run --print``) is scored against its content fitted as the run fitted
it (``print_plan``): a crop's result against the cropped content, a pad's content region
(inside the mirrored margins, :func:`nnst_hr.printing.content_region`) against the whole
content; the style scores take the whole print, and the guided ones the label map fitted
like the content.

Examples
--------
>>> import numpy as np
>>> from nnst_hr.scores import sliced_wasserstein
>>> x = np.random.default_rng(0).random((500, 3))
>>> sliced_wasserstein(x, x)
0.0
"""

from __future__ import annotations

import functools
import math
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .errors import InputError
from .printsize import made_from
from .tensors import to_tensor

__all__ = [
    "DIRECTIONS",
    "ScoreNetwork",
    "bicubic_upsample",
    "color_swd",
    "detail_energy",
    "direction",
    "direction_line",
    "format_table",
    "gram_distance",
    "gram_matrix",
    "label_agreement",
    "lpips_from_features",
    "made_from",
    "poster_exemplar",
    "projection_directions",
    "score_image",
    "sliced_wasserstein",
    "ssim_luminance",
    "unrotate_points",
]

LPIPS_LAYER_INDICES = (3, 8, 15, 22, 29)  # relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 in vgg16().features
GRAM_LAYER_INDICES = (1, 6, 11, 18)  # relu1_1, relu2_1, relu3_1, relu4_1 (Gatys et al.)
LPIPS_SHIFT = (-0.030, -0.088, -0.188)  # LPIPS's ScalingLayer, for inputs in [-1, 1]
LPIPS_SCALE = (0.458, 0.448, 0.450)
LPIPS_EPS = 1e-10  # LPIPS's normalize_tensor: x / (|x| + eps)
NETWORK_MAX_SIDE = 1024  # VGG scores of larger images use a copy resized to this long side (memory)
SWD_PROJECTIONS = 64  # random directions in OkLab
SWD_QUANTILES = 1024  # quantiles compared per direction (both sides get the same count)
SWD_MAX_SAMPLES = 1 << 16  # pixels drawn per image (seeded) before projecting
DETAIL_OCTAVES = 2  # the finest Laplacian octaves measured
DETAIL_SIGMA = 1.0  # Gaussian low-pass of each octave, in pixels of that octave

LOWER, HIGHER, NEAR_ONE = "lower", "higher", "closer to 1"
BASELINE = "(baseline)"  # a reference value, no better or worse: what the poster's detail should beat
DIRECTIONS = {
    "objective": LOWER,
    "content_lpips": LOWER,
    "content_ssim": HIGHER,
    "style_gram": LOWER,
    "color_swd": LOWER,
    "label_agreement": HIGHER,
    "detail": NEAR_ONE,
    "detail_bicubic": BASELINE,  # the upsample's detail: it does not depend on the poster at all
}


def direction(name: str) -> str:
    """Which way a score is better: ``"lower"``, ``"higher"``, ``"closer to 1"``, or :data:`BASELINE`
    for ``detail_bicubic``, a reference for ``detail`` that the poster does not change.

    Examples
    --------
    >>> direction("content_ssim"), direction("style_gram.sky")
    ('higher', 'lower')
    """
    return DIRECTIONS[name.split(".", 1)[0]]


def direction_line(name: str) -> str:
    """A plot's line saying how to read score ``name``: ``"higher is better"``; for ``detail_bicubic``,
    that it is the baseline of ``detail``.

    >>> direction_line("content_ssim"), direction_line("detail_bicubic")
    ('higher is better', 'a baseline: the detail of a bicubic upsample')
    """
    if direction(name) == BASELINE:
        return "a baseline: the detail of a bicubic upsample"
    return f"{direction(name)} is better"


# --------------------------------------------------------------------------- the network


class ScoreNetwork:
    """VGG16 up to relu5_3 (ImageNet weights) and the LPIPS v0.1 linear heads.

    Parameters
    ----------
    weights : VGG16 weights file (see :mod:`nnst_hr.weights`); None searches the usual places
    device : torch device name
    """

    def __init__(self, weights: str | os.PathLike | None = None, device: str = "cpu"):
        from .weights import build_vgg16_features, load_lpips_heads

        self.device = torch.device(device)
        last = max(LPIPS_LAYER_INDICES + GRAM_LAYER_INDICES)
        # channels-last, as NNST's VGG (hypercolumns.VGGLayers): oneDNN's own layout, no reorder per layer
        self.features = build_vgg16_features(weights, last_layer=last).to(self.device,
                                                                           memory_format=torch.channels_last)
        self.heads = [h.to(self.device) for h in load_lpips_heads()]
        self.shift = torch.tensor(LPIPS_SHIFT, device=self.device).view(1, 3, 1, 1)
        self.scale = torch.tensor(LPIPS_SCALE, device=self.device).view(1, 3, 1, 1)

    @torch.no_grad()
    def activations(self, image: np.ndarray) -> dict[int, torch.Tensor]:
        """VGG16 ReLU outputs ``{features index: (1, C, h, w) float32}`` of an sRGB image.

        The layers of :data:`LPIPS_LAYER_INDICES` and :data:`GRAM_LAYER_INDICES`;
        ``image`` is float32 ``(H, W, 3)`` in ``[0, 1]``, scaled as LPIPS does.
        """
        x = to_tensor(image, self.device)
        x = ((x * 2 - 1 - self.shift) / self.scale).contiguous(memory_format=torch.channels_last)
        wanted, out = set(LPIPS_LAYER_INDICES + GRAM_LAYER_INDICES), {}
        for index, module in enumerate(self.features):
            x = module(x)
            if index in wanted:
                out[index] = x.float()
        return out


@functools.lru_cache(maxsize=2)
def _network(weights: str | None, device: str) -> ScoreNetwork:
    return ScoreNetwork(weights, device)


# --------------------------------------------------------------------------- LPIPS


def lpips_from_features(
    features_a: list[torch.Tensor], features_b: list[torch.Tensor], heads: list[torch.Tensor]
) -> float:
    """LPIPS from two images' feature lists: ``sum_l mean_hw sum_c w_lc (a^_lchw - b^_lchw)^2``.

    ``a^`` is ``a`` divided by its channel norm plus :data:`LPIPS_EPS` at each position.

    Parameters
    ----------
    features_a, features_b : lists of (1, C_l, h_l, w_l), the same shapes pairwise
    heads : list of (C_l,) non-negative channel weights
    """
    total = 0.0
    for a, b, w in zip(features_a, features_b, heads, strict=True):
        a = a / (a.square().sum(1, keepdim=True).sqrt() + LPIPS_EPS)
        b = b / (b.square().sum(1, keepdim=True).sqrt() + LPIPS_EPS)
        total += float(((a - b).square() * w.view(1, -1, 1, 1)).sum(1).mean())
    return total


# --------------------------------------------------------------------------- Gram


def gram_matrix(features: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Gram matrix of ``(1, C, h, w)`` features, normalized by ``C * N``: ``F W F^T / (C * sum W)``.

    ``N = sum W`` is the number of positions (``h * w`` without ``weight``), so images
    of different sizes compare. ``weight`` ``(h, w)`` restricts it to a region (masked
    Gram; soft weights count in proportion).

    Returns
    -------
    torch.Tensor (C, C), float64
    """
    flat = features.reshape(features.shape[1], -1).double()
    if weight is None:
        return flat @ flat.T / (flat.shape[0] * flat.shape[1])
    w = weight.reshape(-1).to(flat)
    return (flat * w) @ flat.T / (flat.shape[0] * float(w.sum()))


def gram_distance(
    features_a: list[torch.Tensor],
    features_b: list[torch.Tensor],
    weights_a: list[torch.Tensor] | None = None,
    weights_b: list[torch.Tensor] | None = None,
) -> float:
    """Gatys style distance: ``sum_l mean((G_l(a) - G_l(b))^2)`` over the ``C_l^2`` entries.

    Parameters
    ----------
    features_a, features_b : lists of (1, C_l, h, w) (sizes may differ between a and b)
    weights_a, weights_b : optional lists of (h, w) region weights per layer (masked Gram)
    """
    total = 0.0
    for i, (a, b) in enumerate(zip(features_a, features_b, strict=True)):
        ga = gram_matrix(a, None if weights_a is None else weights_a[i])
        gb = gram_matrix(b, None if weights_b is None else weights_b[i])
        total += float((ga - gb).square().mean())
    return total


# --------------------------------------------------------------------------- SSIM


def ssim_luminance(image: np.ndarray, reference: np.ndarray) -> float:
    """SSIM (``skimage.metrics.structural_similarity``, ``data_range=1``) of the luminance.

    Luminance is ``skimage.color.rgb2gray`` (Rec. 709 weights on the sRGB values);
    ``reference`` is resized to ``image``'s size first. 1 means identical.
    """
    from skimage.color import rgb2gray
    from skimage.metrics import structural_similarity

    from .tensors import resize_image as resize

    reference = resize(reference, image.shape[:2])
    return float(structural_similarity(rgb2gray(image), rgb2gray(reference), data_range=1.0))


# --------------------------------------------------------------------------- sliced Wasserstein


def projection_directions(projections: int, dims: int, seed: int) -> np.ndarray:
    """``(projections, dims)`` unit vectors, uniform on the sphere, from ``np.random.default_rng(seed)``."""
    directions = np.random.default_rng(seed).standard_normal((projections, dims))
    return directions / np.linalg.norm(directions, axis=1, keepdims=True)


def sliced_wasserstein(
    x: np.ndarray,
    y: np.ndarray,
    *,
    projections: int = SWD_PROJECTIONS,
    quantiles: int = SWD_QUANTILES,
    max_samples: int = SWD_MAX_SAMPLES,
    seed: int = 0,
) -> float:
    """Sliced 1-Wasserstein distance between two point sets ``(N, d)`` and ``(M, d)``.

    The mean over :func:`projection_directions` ``theta`` of ``W1(x . theta, y . theta)``,
    each computed from ``quantiles`` quantiles at ``(i + 0.5) / quantiles`` (the
    inverted CDF: order statistics, no interpolation between samples), so the two sides
    are compared at equal counts whatever their sizes. This equals the exact W1 when
    ``quantiles`` is a multiple of both set sizes, and approximates it otherwise. Sets larger
    than ``max_samples`` are subsampled first (seeded; the same indices for two sets of one
    size, so identical inputs give 0).

    Examples
    --------
    >>> x = np.zeros((4, 1)); float(round(sliced_wasserstein(x, x + 0.5, projections=1), 6))
    0.5
    """
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1] or not len(x) or not len(y):
        raise ValueError(f"need two non-empty point sets (N, d) and (M, d), got {x.shape} and {y.shape}")
    directions = projection_directions(projections, x.shape[1], seed)
    x, y = _subsample(x, max_samples, seed), _subsample(y, max_samples, seed)
    qx, qy = _quantiles(x @ directions.T, quantiles), _quantiles(y @ directions.T, quantiles)
    return float(np.abs(qx - qy).mean())


def _quantiles(samples: np.ndarray, count: int) -> np.ndarray:
    """``(count, P)`` quantiles of each column at ``p_i = (i + 0.5) / count``: order statistic ``ceil(N p_i)``.

    The same as ``np.quantile(samples, p, axis=0, method="inverted_cdf")``, in integers (no
    rounding of ``N p_i``) and with one sort.
    """
    n = len(samples)
    rank = (n * (2 * np.arange(count) + 1) + 2 * count - 1) // (2 * count)  # ceil(n (2i + 1) / (2 count))
    return np.sort(samples, axis=0)[rank - 1]


def _subsample(points: np.ndarray, max_samples: int, seed: int) -> np.ndarray:
    if len(points) <= max_samples:
        return points
    rng = np.random.default_rng([seed, len(points)])  # a stream of its own, the same for equal sizes
    return points[np.sort(rng.choice(len(points), max_samples, replace=False))]


def color_swd(image: np.ndarray, reference: np.ndarray, *, seed: int = 0) -> float:
    """:func:`sliced_wasserstein` of the OkLab pixel colors of two sRGB images (any sizes)."""
    from .color import rgb_to_oklab

    def lab(im):
        pixels = _subsample(np.asarray(im, np.float32).reshape(-1, 3), SWD_MAX_SAMPLES, seed)  # before converting
        return rgb_to_oklab(torch.from_numpy(np.ascontiguousarray(pixels.T))[None, :, :, None])[0, :, :, 0].T.numpy()

    return sliced_wasserstein(lab(image), lab(reference), seed=seed)


# --------------------------------------------------------------------------- guided runs


def unrotate_points(y: np.ndarray, x: np.ndarray, k: np.ndarray,
                    shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Map pixels ``(y, x)`` of ``np.rot90(image, k)`` back to ``image`` of ``shape = (H, W)``.

    ``np.rot90(image, k)[y, x] == image[unrotate_points(y, x, k, image.shape)]`` for every
    pixel and ``k`` in 0..3 (counter-clockwise quarter turns).

    Examples
    --------
    >>> image = np.arange(6).reshape(2, 3)
    >>> y, x = unrotate_points(np.array(0), np.array(1), np.array(1), image.shape)
    >>> int(image[y, x]) == int(np.rot90(image, 1)[0, 1])
    True
    """
    h, w = shape
    y, x, k = np.asarray(y), np.asarray(x), np.asarray(k) % 4
    uy = np.select([k == 0, k == 1, k == 2], [y, x, h - 1 - y], h - 1 - x)
    ux = np.select([k == 0, k == 1, k == 2], [x, w - 1 - y, w - 1 - x], y)
    return uy, ux


def label_agreement(
    field: np.ndarray, style_size: tuple[int, int], content_labels: np.ndarray, style_labels: np.ndarray
) -> float | None:
    """Share of guided field cells matched to a style cell of the cell's own label.

    Labels are those of feature cells, read as the matching reads them
    (``nnst_hr.nnst.MaskGuides``): each cell takes the majority label of the pixels it covers
    (:func:`guidance.hard_labels_at`, the label ``--guide-mode hard`` restricts it to), the
    content's on the field's grid ``(h, w)``, the style's on its feature grid at
    ``style_size`` turned with it (:func:`guidance.rotate_guides`). The match ``(k, y, x)`` of
    a cell is the pixel of a feature cell of the style turned by ``k``
    (:func:`nnst_hr.nnf.cell_to_pixel`); :func:`nnst_hr.nnf.pixel_to_cell` reads that cell
    back (a hand-made field's other pixels: the nearest cell). A hard-mode field thus scores
    1 wherever the style has cells of each guided content label.

    Cells whose majority is unguided (label ``-1``, ties included) are left out: the matching
    restricts them to no label. A cell whose two labels tie takes the lower one, here as there.

    Parameters
    ----------
    field : int32 (h, w, 3) NNF (k, y, x) on the content's feature grid
    style_size : (H, W) of the unrotated style as NNST used it
    content_labels, style_labels : int (Hc, Wc), (Hs, Ws) label maps NNST was guided with
        (any sizes: cells cover the same share of the map at any resolution)

    Returns
    -------
    float in [0, 1], or None when no cell is guided

    Raises
    ------
    InputError
        A field that is not (h, w, 3), points outside the rotated style, or a style too
        small for a feature cell.
    """
    from guidance import hard_labels_at, rotate_guides

    from .hypercolumns import feature_grid
    from .nnf import pixel_to_cell

    field = np.asarray(field)
    if field.ndim != 3 or field.shape[2] != 3 or not np.issubdtype(field.dtype, np.integer):
        raise InputError(f"a field must be an integer array (h, w, 3), got {field.dtype} {field.shape}")
    k, y, x = (field[..., c].astype(np.int64) for c in range(3))
    sh, sw = style_size
    rotated_h, rotated_w = np.where(k % 2 == 0, sh, sw), np.where(k % 2 == 0, sw, sh)
    if ((k < 0) | (k > 3) | (y < 0) | (x < 0) | (y >= rotated_h) | (x >= rotated_w)).any():
        raise InputError(f"the field points outside the style of size {sw}x{sh}: give the style_size NNST used")
    grid = feature_grid(sh, sw)
    if min(grid) < 1:
        raise InputError(f"a style of {sw}x{sh} px has no feature cell: give the style_size NNST used")
    if 0 in field.shape[:2]:  # no cell: none guided (hard_labels_at refuses an empty grid)
        return None
    content = hard_labels_at(content_labels, field.shape[:2])
    style = hard_labels_at(style_labels, grid)
    matched = np.empty_like(content)
    for turn in np.unique(k):
        at = k == turn
        cells = rotate_guides(style, int(turn))  # the style's cell labels on the grid of the style turned
        (gh, gw), (ph, pw) = cells.shape, ((sh, sw) if turn % 2 == 0 else (sw, sh))
        matched[at] = cells[pixel_to_cell(y[at], gh, ph), pixel_to_cell(x[at], gw, pw)]
    guided = content >= 0
    if not guided.any():
        return None
    return float(np.mean(matched[guided] == content[guided]))


# --------------------------------------------------------------------------- detail


def detail_energy(image: np.ndarray, octaves: int = DETAIL_OCTAVES, sigma: float = DETAIL_SIGMA) -> float:
    """Energy of the ``octaves`` finest Laplacian octaves of the grey image (channel mean).

    Each octave: ``band = grey - gaussian(grey, sigma)``, energy ``mean(band^2)``; the next
    octave starts from the low-pass taken every 2nd pixel. Returns the sum over octaves.
    """
    from scipy.ndimage import gaussian_filter

    grey = np.asarray(image, np.float64).mean(axis=2)
    energy = 0.0
    for _ in range(octaves):
        low = gaussian_filter(grey, sigma)
        energy += float(np.mean((grey - low) ** 2))
        grey = low[::2, ::2]
    return energy


def bicubic_upsample(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bicubic resize of float32 ``(H, W, 3)`` to ``shape = (h, w)``, clipped to ``[0, 1]``."""
    t = to_tensor(image, "cpu")
    out = F.interpolate(t, tuple(shape), mode="bicubic", align_corners=False)
    return out[0].permute(1, 2, 0).clamp(0, 1).numpy()


def poster_exemplar(style: np.ndarray, poster_shape: tuple[int, int]) -> np.ndarray:
    """The style at the scale a poster uses it: resized so that its long side is the poster's.

    NNST resizes content and style to one long side ``size``; a poster of long side ``P``
    scales the NNST result by ``P / size`` and the exemplar with it, to ``P``.
    """
    from .tensors import resize_image as resize

    scale = max(poster_shape) / max(style.shape[:2])
    return resize(style, (max(1, round(style.shape[0] * scale)), max(1, round(style.shape[1] * scale))))


# --------------------------------------------------------------------------- all together


def score_image(
    image: np.ndarray,
    content: np.ndarray,
    style: np.ndarray,
    *,
    raw: np.ndarray | None = None,
    nnst_config=None,
    field: np.ndarray | None = None,
    style_size: tuple[int, int] | None = None,
    masks=None,
    upsampled_from: np.ndarray | None = None,
    print_plan=None,
    weights: str | os.PathLike | None = None,
    seed: int = 0,
) -> dict[str, float]:
    """Score a stylized ``image`` against its ``content`` and ``style`` (see the module table).

    Parameters
    ----------
    image, content, style : float32 (H, W, 3) sRGB in [0, 1], any sizes
    raw : the NNST result before color post-processing; ``objective`` is computed on it
        (else on ``upsampled_from`` for a poster, else on ``image``)
    nnst_config : :class:`~nnst_hr.config.NNSTConfig` for ``objective`` (``size``, ``rotate``,
        ``device``); default ``NNSTConfig(size=long side of the image scored)``
    field : int32 (h, w, 3) NNF of the result (k, y, x in the rotated style at ``style_size``)
    style_size : (H, W) of the unrotated style as NNST used it
    masks : ``guidance.MaskPair`` with label maps at the shapes of ``content`` and ``style``;
        adds ``style_gram.<label name>`` per guided label, and ``label_agreement`` with
        ``field`` and ``style_size``
    upsampled_from : for a poster, the NNST result it was made from; adds ``detail`` and
        ``detail_bicubic``
    print_plan : :class:`~nnst_hr.printing.PrintPlan` of ``content``'s shape, when ``image`` is a
        print made with it: the content (and the content label map of ``masks``) is fitted as
        the run fitted it before NNST (see Notes)
    weights : VGG16 weights file (see :mod:`nnst_hr.weights`)
    seed : seeds the projections and samples of ``color_swd``

    Returns
    -------
    dict of str to float, in the module table's order; only the scores that apply

    Raises
    ------
    InputError
        Images that are not (H, W, 3), masks of other shapes than the images, a bad field,
        ``raw`` or ``upsampled_from`` of another aspect than ``image`` (:func:`made_from`), a
        ``print_plan`` of another content shape or whose fitted content has another aspect
        than ``image``.

    Notes
    -----
    - ``content_lpips``: :func:`lpips_from_features` of the image and the content resized
      to it; ``style_gram``: :func:`gram_distance` (Gram normalized by ``C * H * W``) of
      the image and the style resized to the image's long side (both capped at
      :data:`NETWORK_MAX_SIDE`); ``content_ssim``: :func:`ssim_luminance` at the image's size.
    - ``style_gram.<name>``: the Gram distance with each side's features weighted by the
      share of the label in each feature cell (``guidance.guide_channels`` of the label
      maps on that layer's grid), for each guided label present on both sides.
    - ``detail = detail_energy(image) / detail_energy(poster_exemplar(style, image.shape))``:
      the exemplar at the poster's scale relative to the NNST result (NNST gave content and
      style one long side, so the exemplar's long side becomes the poster's);
      ``detail_bicubic`` puts ``bicubic_upsample(upsampled_from, image.shape)`` in the
      numerator. Both are left out when the exemplar has no detail (a flat style).
    - With ``print_plan``, ``content_lpips`` and ``content_ssim`` compare like with like: a
      crop's whole image with the content cropped by :func:`~nnst_hr.printing.fit_content`; a
      pad's :func:`~nnst_hr.printing.content_region` of the image with the whole content (the
      margins are the content mirrored, not the photo, and scoring them would count its edges
      twice). The style scores take the whole image, margins included: they are printed.
      ``style_gram.<name>`` and ``label_agreement`` read the content label map fitted like
      the content (:func:`~nnst_hr.printing.fit_labels`), the map NNST was guided with.
    """
    from .config import MAX_SEED, NNSTConfig
    from .device import resolve_device
    from .nnst import nnst_objective
    from .sizes import check_input_sizes
    from .tensors import check_config, check_image, check_masks
    from .tensors import resize_image as resize

    if nnst_config is not None:
        check_config(nnst_config, NNSTConfig, "nnst_config")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or not 0 <= seed <= MAX_SEED:
        raise InputError(f"seed must be an integer between 0 and {MAX_SEED}, got {seed!r}")  # was NumPy's ValueError

    for name, value in (("image", image), ("content", content), ("style", style),
                        ("raw", raw), ("upsampled_from", upsampled_from)):  # fmt: skip
        if value is not None:
            check_image(value, name)
    # as `metrics` refuses them: VGG's poolings failed in torch on an image a few pixels across
    check_input_sizes({"image": image.shape[:2], "content": content.shape[:2], "style": style.shape[:2]}, 0)
    if masks is not None:
        check_masks(masks, content.shape, style.shape)
    for name, value in (("raw", raw), ("upsampled_from", upsampled_from)):
        # another picture's result gave an objective or a detail of a stretched image, not a refusal
        if value is not None and not made_from(value.shape[:2], image.shape[:2]):
            raise InputError(f"{name} of {value.shape[1]}x{value.shape[0]} px has another aspect than the image "
                             f"({image.shape[1]}x{image.shape[0]}); give the NNST result the image was made from")
    image_part, content, masks = _printed_content(image, content, masks, print_plan)
    scores: dict[str, float] = {}

    scored = raw if raw is not None else upsampled_from if upsampled_from is not None else image
    config = nnst_config or NNSTConfig(size=max(scored.shape[:2]))
    scores["objective"] = float(nnst_objective(scored, style, config, weights=weights))

    device = str(resolve_device(config.device))
    net = _network(None if weights is None else str(Path(weights)), device)
    small = _network_copy(image)
    style_small = _long_side(style, max(small.shape[:2]))
    acts = net.activations(small)
    # a pad's content region is a part of the image: a pass of its own (the whole image's for the style scores)
    small_part = small if image_part is image else _network_copy(image_part)
    part_acts = acts if small_part is small else net.activations(small_part)
    content_acts = net.activations(resize(content, small_part.shape[:2]))
    style_acts = net.activations(style_small)
    scores["content_lpips"] = lpips_from_features(
        [part_acts[i] for i in LPIPS_LAYER_INDICES], [content_acts[i] for i in LPIPS_LAYER_INDICES], net.heads
    )
    scores["content_ssim"] = ssim_luminance(image_part, content)
    image_gram = [acts[i] for i in GRAM_LAYER_INDICES]
    style_gram = [style_acts[i] for i in GRAM_LAYER_INDICES]
    scores["style_gram"] = gram_distance(image_gram, style_gram)
    scores["color_swd"] = color_swd(image, style, seed=seed)

    if masks is not None:
        scores.update(_label_grams(masks, image_gram, style_gram))
        if field is not None and style_size is not None:
            agreement = label_agreement(field, style_size, masks.content, masks.style)
            if agreement is not None:
                scores["label_agreement"] = agreement

    if upsampled_from is not None:
        exemplar = detail_energy(poster_exemplar(style, image.shape[:2]))
        if exemplar > 0:
            scores["detail"] = detail_energy(image) / exemplar
            scores["detail_bicubic"] = detail_energy(bicubic_upsample(upsampled_from, image.shape[:2])) / exemplar
    return scores


def _printed_content(image: np.ndarray, content: np.ndarray, masks, plan):
    """``(image part, content, masks)`` that the content scores compare, for a print made by ``plan``.

    Without a plan: the image, the content and the masks as given. A crop: the image and the
    content cropped like the run's; a pad: the image's content region and the whole content. The
    masks' content label map is fitted like the run's either way (see :func:`score_image`).
    """
    if plan is None:
        return image, content, masks
    from .printing import content_region, fit_content, fit_labels

    if tuple(plan.content_shape) != content.shape[:2]:
        raise InputError(f"the print plan was made for a content of {plan.content_shape[1]}x{plan.content_shape[0]} "
                         f"px, not {content.shape[1]}x{content.shape[0]}; plan it with the content's shape")
    fitted_h, fitted_w = plan.fitted_shape
    if not made_from(plan.fitted_shape, image.shape[:2], through=None):  # the print's exact pixels
        raise InputError(f"the image ({image.shape[1]}x{image.shape[0]}) has another aspect than the content "
                         f"fitted to the print ({plan.fit}: {fitted_w}x{fitted_h}); give the print plan of the run "
                         "that made it")
    masks = fit_labels(masks, plan)
    if plan.box is not None:
        return image, fit_content(content, plan), masks
    top, left, height, width = content_region(plan, image.shape[:2])
    return image[top:top + height, left:left + width], content, masks


def _network_copy(image: np.ndarray) -> np.ndarray:
    return image if max(image.shape[:2]) <= NETWORK_MAX_SIDE else _long_side(image, NETWORK_MAX_SIDE)


def _long_side(image: np.ndarray, long_side: int) -> np.ndarray:
    from .tensors import resize_image as resize

    scale = long_side / max(image.shape[:2])
    return resize(image, (max(1, round(image.shape[0] * scale)), max(1, round(image.shape[1] * scale))))


def _label_grams(masks, image_features: list[torch.Tensor], style_features: list[torch.Tensor]) -> dict[str, float]:
    """``style_gram.<name>`` for each guided label present on both sides (area-weighted masked Gram)."""
    from guidance import guide_channels

    def weights(labels, features):
        return [torch.from_numpy(guide_channels(labels, masks.n_labels, tuple(f.shape[-2:]))) for f in features]

    content_w, style_w = weights(masks.content, image_features), weights(masks.style, style_features)
    out = {}
    for label in masks.labels:
        if label.unguided:
            continue
        a = [w[label.index] for w in content_w]
        b = [w[label.index] for w in style_w]
        if all(float(w.sum()) > 0 for w in a + b):
            out[f"style_gram.{label.name}"] = gram_distance(image_features, style_features, a, b)
    return out


def format_table(scores: dict[str, float]) -> str:
    """A plain table of ``name  value  better`` lines, for people.

    Examples
    --------
    >>> print(format_table({"content_ssim": 0.5}))
    score              value  better
    content_ssim      0.5000  higher
    """
    width = max([len("score")] + [len(name) for name in scores]) + 2
    lines = [f"{'score':<{width}}{'value':>10}  better"]
    for name, value in scores.items():
        text = f"{value:.4f}" if math.isfinite(value) and abs(value) >= 1e-3 or value == 0 else f"{value:.3e}"
        lines.append(f"{name:<{width}}{text:>10}  {direction(name)}")
    return "\n".join(lines)
