"""Color post-processing of Neural Neighbor Style Transfer, in OkLab.

NNST (Kolkin et al. 2022) finishes by re-coloring its output: the output keeps
its own lightness, its chroma is replaced by the content's chroma, moment-matched
(mean and covariance) to the style's chroma, then smoothed by an edge-aware filter
guided by the output's lightness so the chroma edges follow the stylized strokes.
Every channel is finally clamped to the style's range.

Color space: OkLab (Ottosson 2020) of *linear* sRGB, L in [0, 1] (white = 1),
a and b roughly in [-0.4, 0.4]. Every threshold and variance in this module is on
that scale.

Differences from the authors' code, all deliberate:

- sRGB values are linearized with the IEC 61966-2-1 transfer function before the
  linear-sRGB -> OkLab matrices (the authors feed gamma-encoded values to them).
- Ottosson's current (2021-01-25) matrices, so white has a = b = 0, and a
  sign-preserving cube root, so out-of-gamut inputs do not produce NaN.
- Moment matching regularizes only the whitening side, with a ridge of
  ``MATCH_RIDGE`` = 1e-6; the authors add 1e-4 to both covariances, which inflates
  the target covariance by 1e-4, more than a whole near-monochrome style's chroma
  variance.
- A monochrome style returns the output unchanged (clamped to [0, 1]) instead of
  moment-matching all three channels of the output to the style.
- Statistics are exact over every pixel, accumulated in float64 row chunks;
  conversions and the filter run in row bands, so a 4096 x 4096 image needs a few
  full-size buffers, not dozens.

Tensors are float, channel-first ``(B, 3, H, W)`` on any device; the result
lives on the device of ``output``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from nnst_hr.config import NNSTConfig
from nnst_hr.device import resolve_device
from nnst_hr.errors import InputError
from nnst_hr.memory import long_side_shape
from nnst_hr.tensors import check_config, check_image, resize_long_side, to_numpy, to_tensor, to_tensor_like

# IEC 61966-2-1 sRGB transfer function.
SRGB_ENCODED_KNEE = 0.04045
SRGB_LINEAR_KNEE = 0.0031308
SRGB_SLOPE = 12.92
SRGB_OFFSET = 0.055
SRGB_GAMMA = 2.4

# Ottosson's OkLab (https://bottosson.github.io/posts/oklab/, revision of 2021-01-25).
LINEAR_TO_LMS = (
    (0.4122214708, 0.5363325363, 0.0514459929),
    (0.2119034982, 0.6806995451, 0.1073969566),
    (0.0883024619, 0.2817188376, 0.6299787005),
)
LMS_TO_OKLAB = (
    (0.2104542553, 0.7936177850, -0.0040720468),
    (1.9779984951, -2.4285922050, 0.4505937099),
    (0.0259040371, 0.7827717662, -0.8086757660),
)
OKLAB_TO_LMS = (
    (1.0, 0.3963377774, 0.2158037573),
    (1.0, -0.1055613458, -0.0638541728),
    (1.0, -0.0894841775, -1.2914855480),
)
LMS_TO_LINEAR = (
    (4.0767416621, -3.3077115913, 0.2309699292),
    (-1.2684380046, 2.6097574011, -0.3413193965),
    (-0.0041960863, -0.7034186147, 1.7076147010),
)

# Defaults of the authors' code (they write the filter weight as exp(-5 |dL|) ** 2).
FILTER_ITERATIONS = 5
FILTER_SHARPNESS = 10.0
# Largest OkLab chroma variance below which a style counts as monochrome (the
# authors' 6e-5; the paper says 4e-5). The authors measured OkLab of gamma-encoded
# values: on samples/style the two measures differ by factors of 0.33 to 3.4 but
# give the same verdicts (only the etching, 6e-6 here, is monochrome).
# See `max_chroma_variance`.
MONO_THRESHOLD = 6e-5
# Added to the eigenvalues of the covariance being whitened (OkLab units squared):
# chroma directions with a standard deviation under 1e-3, far below the 0.02
# just-noticeable difference of CSS Color 4's deltaE-OK, are damped instead of
# amplified into noise; directions above 1e-2 keep over 99 % of their target variance.
MATCH_RIDGE = 1e-6
# Pixels per chunk of the row-wise conversions and statistics (about 12 MiB of
# float32 RGB): bounds the temporaries of a 4096 x 4096 image.
CHUNK_PIXELS = 1 << 20
# 3x3 neighbourhood of the chroma filter, as (dy, dx) offsets into a 1-pixel padding.
NEIGHBOURS = tuple((dy, dx) for dy in range(3) for dx in range(3) if (dy, dx) != (1, 1))

_log = logging.getLogger(__name__)


# --------------------------------------------------------------------- conversions


def srgb_to_linear(x: torch.Tensor) -> torch.Tensor:
    """Decode sRGB to linear sRGB with the IEC 61966-2-1 piecewise transfer function.

    Parameters
    ----------
    x : torch.Tensor
        ``(B, 3, H, W)`` float, sRGB (nominally in [0, 1]; values outside
        follow the extended curve: linear below the knee, power law above 1).

    Returns
    -------
    torch.Tensor
        ``(B, 3, H, W)`` linear sRGB, same dtype and device.

    Examples
    --------
    >>> srgb_to_linear(torch.full((1, 3, 1, 1), 0.5)).flatten()[0].item()  # doctest: +ELLIPSIS
    0.2140...
    """
    _check_image(x, "x")
    # Clamping the base keeps the unused branch of torch.where free of NaN.
    power = ((x.clamp(min=SRGB_ENCODED_KNEE) + SRGB_OFFSET) / (1.0 + SRGB_OFFSET)).pow(SRGB_GAMMA)
    return torch.where(x <= SRGB_ENCODED_KNEE, x / SRGB_SLOPE, power)


def linear_to_srgb(x: torch.Tensor) -> torch.Tensor:
    """Encode linear sRGB to sRGB; the inverse of `srgb_to_linear`.

    Parameters
    ----------
    x : torch.Tensor
        ``(B, 3, H, W)`` float, linear sRGB; values outside [0, 1] follow the extended curve.

    Returns
    -------
    torch.Tensor
        ``(B, 3, H, W)`` sRGB, same dtype and device.
    """
    _check_image(x, "x")
    power = (1.0 + SRGB_OFFSET) * x.clamp(min=SRGB_LINEAR_KNEE).pow(1.0 / SRGB_GAMMA) - SRGB_OFFSET
    return torch.where(x <= SRGB_LINEAR_KNEE, x * SRGB_SLOPE, power)


def linear_to_oklab(x: torch.Tensor) -> torch.Tensor:
    """Convert linear sRGB to OkLab.

    Parameters
    ----------
    x : torch.Tensor
        ``(B, 3, H, W)`` float, linear sRGB.

    Returns
    -------
    torch.Tensor
        ``(B, 3, H, W)`` OkLab, channels (L, a, b); L = 1 for white.

    Examples
    --------
    >>> lab = linear_to_oklab(torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1))
    >>> [round(v, 4) for v in lab.flatten().tolist()]
    [0.628, 0.2249, 0.1258]
    """
    _check_image(x, "x")
    lms = _mix_channels(x, LINEAR_TO_LMS)
    # Sign-preserving cube root (Ottosson's cbrtf): negative LMS from
    # out-of-gamut colors stay finite.
    return _mix_channels(lms.sign() * lms.abs().pow(1.0 / 3.0), LMS_TO_OKLAB)


def oklab_to_linear(x: torch.Tensor) -> torch.Tensor:
    """Convert OkLab to linear sRGB (not clamped: out-of-gamut colors leave [0, 1]).

    Parameters
    ----------
    x : torch.Tensor
        ``(B, 3, H, W)`` float, OkLab (L, a, b).

    Returns
    -------
    torch.Tensor
        ``(B, 3, H, W)`` linear sRGB.
    """
    _check_image(x, "x")
    return _mix_channels(_mix_channels(x, OKLAB_TO_LMS).pow(3), LMS_TO_LINEAR)


def rgb_to_oklab(x: torch.Tensor) -> torch.Tensor:
    """Convert sRGB ``(B, 3, H, W)`` to OkLab: `srgb_to_linear` then `linear_to_oklab`."""
    return linear_to_oklab(srgb_to_linear(x))


def oklab_to_rgb(x: torch.Tensor) -> torch.Tensor:
    """Convert OkLab ``(B, 3, H, W)`` to sRGB, not clamped: `oklab_to_linear`, `linear_to_srgb`."""
    return linear_to_srgb(oklab_to_linear(x))


# ---------------------------------------------------------------- moment matching


@dataclass(frozen=True)
class ChannelStats:
    """Population statistics of D channels, in float64.

    Attributes
    ----------
    mean : torch.Tensor
        ``(D,)`` channel means.
    cov : torch.Tensor
        ``(D, D)`` covariance, normalized by the pixel count (as the authors do).
    lo : torch.Tensor
        ``(D,)`` channel minima.
    hi : torch.Tensor
        ``(D,)`` channel maxima.
    """

    mean: torch.Tensor
    cov: torch.Tensor
    lo: torch.Tensor
    hi: torch.Tensor

    def channels(self, index: slice) -> ChannelStats:
        """The statistics of a contiguous subset of the channels."""
        return ChannelStats(
            self.mean[index], self.cov[index, index], self.lo[index], self.hi[index]
        )


def match_moments(x: torch.Tensor, ref: torch.Tensor, ridge: float = MATCH_RIDGE) -> torch.Tensor:
    """Map ``x`` affinely so that its mean and covariance match those of ``ref`` (ZCA).

    ``y = C_r^(1/2) (C_x + ridge I)^(-1/2) (x - m_x) + m_r`` with symmetric matrix
    square roots (ZCA whitening, then coloring, as in the authors' code). With
    ``ridge = 0`` the moments of ``y`` are exactly ``m_r`` and ``C_r`` (directions
    where ``x`` has no variance map to the mean); with ``ridge > 0`` its covariance is
    ``C_r^(1/2) C_x (C_x + ridge I)^(-1) C_r^(1/2)``.

    Parameters
    ----------
    x : torch.Tensor
        ``(N, D)`` rows, or ``(B, D, H, W)`` channel-first images whose pixels
        (of all batch items together) are the samples.
    ref : torch.Tensor
        the reference samples, same layout and D as ``x``; N, B, H, W may differ.
    ridge : float
        non-negative, added to the eigenvalues of ``x``'s covariance.

    Returns
    -------
    torch.Tensor
        Tensor of the shape, dtype and device of ``x``.

    Examples
    --------
    >>> x, ref = torch.randn(1000, 2), 3.0 * torch.randn(500, 2) + 1.0
    >>> y = match_moments(x, ref, ridge=0.0)
    >>> torch.allclose(y.mean(0), ref.mean(0), atol=1e-5)
    True
    """
    if x.ndim not in (2, 4) or ref.ndim != x.ndim or x.shape[1] != ref.shape[1]:
        raise InputError(
            f"match_moments needs x and ref both (N, D) or both (B, D, H, W) with the same D; "
            f"got {tuple(x.shape)} and {tuple(ref.shape)}"
        )
    if ridge < 0:
        raise InputError(f"ridge must be >= 0, got {ridge}")
    samples, ref_samples = _as_samples(x), _as_samples(ref.to(x.device))
    source, target = _channel_stats([samples]), _channel_stats([ref_samples])
    scale, shift = _matching_transform(source, target, ridge)
    matched = scale.to(x.dtype) @ samples + shift.to(x.dtype)[:, None]
    if x.ndim == 2:
        return matched.T.contiguous()
    b, d, h, w = x.shape
    return matched.view(d, b, h, w).transpose(0, 1).contiguous()


def _as_samples(x: torch.Tensor) -> torch.Tensor:
    """``(N, D)`` or ``(B, D, H, W)`` -> ``(D, N)`` samples (a view when possible)."""
    if x.ndim == 2:
        return x.T
    return x.transpose(0, 1).reshape(x.shape[1], -1)


def _channel_stats(chunks: Iterable[torch.Tensor]) -> ChannelStats:
    """Exact mean, covariance and range of ``(D, n)`` chunks of samples.

    Chunks are reduced in float64 and combined with Chan et al.'s pairwise update,
    so no chunk is ever centred on a stale mean.
    """
    count, mean, scatter, lo, hi = 0, None, None, None, None
    for chunk in chunks:
        chunk = chunk.double()
        n = chunk.shape[1]
        if n == 0:
            continue
        chunk_mean = chunk.mean(dim=1)
        centred = chunk - chunk_mean[:, None]
        chunk_scatter = centred @ centred.T
        if count == 0:
            mean, scatter = chunk_mean, chunk_scatter
            lo, hi = chunk.amin(dim=1), chunk.amax(dim=1)
        else:
            delta = chunk_mean - mean
            mean = mean + delta * (n / (count + n))
            pair_weight = count * n / (count + n)
            scatter = scatter + chunk_scatter + torch.outer(delta, delta) * pair_weight
            lo, hi = torch.minimum(lo, chunk.amin(dim=1)), torch.maximum(hi, chunk.amax(dim=1))
        count += n
    if count == 0:
        raise InputError("cannot compute color statistics of an empty image")
    return ChannelStats(mean=mean, cov=scatter / count, lo=lo, hi=hi)


def _matching_transform(
    source: ChannelStats, target: ChannelStats, ridge: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(A, t)``, float64, such that ``A x + t`` moves ``source``'s moments onto ``target``'s."""
    evals, evecs = torch.linalg.eigh(source.cov)
    evals = evals.clamp(min=0) + ridge
    # Pseudo-inverse: with ridge = 0, directions without variance go to the mean.
    inv_sqrt = torch.where(evals > 0, evals.clamp(min=torch.finfo(evals.dtype).tiny).rsqrt(), 0.0)
    whiten = evecs @ torch.diag(inv_sqrt) @ evecs.T
    evals, evecs = torch.linalg.eigh(target.cov)
    color = evecs @ torch.diag(evals.clamp(min=0).sqrt()) @ evecs.T
    scale = color @ whiten
    return scale, target.mean - scale @ source.mean


# ---------------------------------------------------------------- chroma filter


def lightness_guided_filter(
    ab: torch.Tensor,
    lightness: torch.Tensor,
    iterations: int = FILTER_ITERATIONS,
    sharpness: float = FILTER_SHARPNESS,
) -> torch.Tensor:
    """Smooth channels with an iterated 3x3 filter whose weights stop at lightness edges.

    Each iteration replaces every pixel by the weighted mean of its 3x3
    neighbourhood (replicate padding), with weight ``exp(-sharpness * |L_p - L_q|)``
    between the centre ``p`` and the neighbour ``q``. The image is processed in
    bands of rows with a margin of ``iterations`` rows, which is exactly what the
    margin's influence can reach, so the result equals filtering the whole image
    while the temporaries (the 9 weight maps, the padded channels) stay band-sized.

    Parameters
    ----------
    ab : torch.Tensor
        ``(B, C, H, W)`` float, the channels to smooth (OkLab a, b).
    lightness : torch.Tensor
        ``(B, 1, H, W)`` float, the guide (OkLab L in [0, 1]).
    iterations : int
        number of 3x3 passes (0 returns a copy of ``ab``).
    sharpness : float
        edge stop; 10 makes a lightness step of 0.3 weigh 0.05.

    Returns
    -------
    torch.Tensor
        ``(B, C, H, W)`` filtered channels; the inputs are not modified.

    Examples
    --------
    >>> ab = torch.zeros(1, 2, 4, 4); ab[..., 2:] = 1.0
    >>> lightness = torch.zeros(1, 1, 4, 4); lightness[..., 2:] = 1.0
    >>> [round(v, 3) for v in lightness_guided_filter(ab, lightness)[0, 0, 0].tolist()]
    [0.0, 0.0, 1.0, 1.0]
    """
    if ab.ndim != 4 or lightness.ndim != 4 or lightness.shape[1] != 1:
        raise InputError(
            f"lightness_guided_filter needs ab (B, C, H, W) and lightness (B, 1, H, W); "
            f"got {tuple(ab.shape)} and {tuple(lightness.shape)}"
        )
    if lightness.shape[0] != ab.shape[0] or lightness.shape[2:] != ab.shape[2:]:
        raise InputError(
            f"ab {tuple(ab.shape)} and lightness {tuple(lightness.shape)} differ in batch or size"
        )
    if iterations < 0:
        raise InputError(f"iterations must be >= 0, got {iterations}")
    h = ab.shape[2]
    result = torch.empty_like(ab)
    for rows in _row_chunks(ab):
        top, bottom = max(0, rows.start - iterations), min(h, rows.stop + iterations)
        band = _filter_band(
            ab[..., top:bottom, :], lightness[..., top:bottom, :], iterations, sharpness
        )
        result[..., rows, :] = band[..., rows.start - top : rows.stop - top, :]
    return result


def _filter_band(
    ab: torch.Tensor, lightness: torch.Tensor, iterations: int, sharpness: float
) -> torch.Tensor:
    """`lightness_guided_filter` of one band, treating its first and last rows as borders."""
    h, w = ab.shape[2:]
    guide = F.pad(lightness, (1, 1, 1, 1), mode="replicate")
    # The guide never changes, so neither do the normalized weights.
    weights = [
        (lightness - guide[..., dy : dy + h, dx : dx + w]).abs_().mul_(-sharpness).exp_()
        for dy, dx in NEIGHBOURS
    ]
    norm = torch.stack(weights).sum(dim=0).add_(1.0)  # the centre weighs exp(0) = 1
    weights = [weight.div_(norm) for weight in weights]
    centre = norm.reciprocal_()
    current = ab
    for _ in range(iterations):
        padded = F.pad(current, (1, 1, 1, 1), mode="replicate")
        current = current * centre
        for (dy, dx), weight in zip(NEIGHBOURS, weights, strict=True):
            current.addcmul_(padded[..., dy : dy + h, dx : dx + w], weight)
    return current


# ------------------------------------------------------------ color post-processing


def max_chroma_variance(image: torch.Tensor) -> float:
    """Largest entry, in absolute value, of the OkLab (a, b) covariance of an sRGB image.

    This equals the larger of the a and b variances (a covariance entry never
    exceeds them) and is what the monochrome test compares with its threshold.

    Parameters
    ----------
    image : torch.Tensor
        ``(B, 3, H, W)`` float sRGB in [0, 1] (values outside are clamped).

    Returns
    -------
    float
        In OkLab-of-linear-sRGB units squared (L in [0, 1]).
    """
    _check_image(image, "image")
    return _max_chroma_variance(_oklab_stats(image))


def _max_chroma_variance(stats: ChannelStats) -> float:
    """:func:`max_chroma_variance` of an image's OkLab statistics."""
    return stats.cov[1:, 1:].abs().max().item()


def is_monochrome(style: torch.Tensor, threshold: float = MONO_THRESHOLD) -> bool:
    """Whether a style is too colorless for chroma transfer (`max_chroma_variance` < threshold).

    Parameters
    ----------
    style : torch.Tensor
        ``(B, 3, H, W)`` float sRGB in [0, 1].
    threshold : float
        in OkLab-of-linear-sRGB units squared (L in [0, 1]).

    Returns
    -------
    bool
        True when the style's largest chroma variance is below ``threshold``.

    Examples
    --------
    >>> is_monochrome(torch.rand(1, 1, 16, 16).expand(1, 3, 16, 16))
    True
    """
    return max_chroma_variance(style) < threshold


def transfer_color(
    output: torch.Tensor,
    content: torch.Tensor,
    style: torch.Tensor,
    *,
    iterations: int = FILTER_ITERATIONS,
    sharpness: float = FILTER_SHARPNESS,
    mono_threshold: float = MONO_THRESHOLD,
) -> torch.Tensor:
    """NNST's color post-processing: output lightness, content chroma, style statistics.

    In OkLab: L is the output's, clamped to the style's L range; (a, b) are the
    content's, moment-matched (`match_moments`) to the style's (a, b), smoothed by
    `lightness_guided_filter` guided by that L, and clamped to the style's (a, b)
    ranges. The result is converted back to linear sRGB, clipped to [0, 1] and
    encoded as sRGB. If the style is monochrome (`is_monochrome` with
    ``mono_threshold``) the output is returned unchanged (clamped to [0, 1]) and the
    reason is logged at INFO level.

    Parameters
    ----------
    output : torch.Tensor
        ``(1, 3, H, W)`` float sRGB in [0, 1], the stylized image.
    content : torch.Tensor
        ``(1, 3, H, W)`` float sRGB in [0, 1], the content resized to ``output``'s size.
    style : torch.Tensor
        ``(1, 3, Hs, Ws)`` float sRGB in [0, 1], any size.
    iterations : int
        passes of the 3x3 chroma filter (0 disables it).
    sharpness : float
        edge stop of the filter, ``exp(-sharpness * |dL|)``.
    mono_threshold : float
        largest OkLab chroma variance of a monochrome style.

    Returns
    -------
    torch.Tensor
        ``(1, 3, H, W)`` sRGB in [0, 1], dtype and device of ``output``; the inputs are
        not modified. Statistics are exact (float64, every pixel, row chunks).

    Examples
    --------
    >>> out, content, style = (torch.rand(1, 3, 32, 32) for _ in range(3))
    >>> transfer_color(out, content, style).shape
    torch.Size([1, 3, 32, 32])
    """
    for name, image in (("output", output), ("content", content), ("style", style)):
        _check_image(image, name)
        if image.shape[0] != 1:
            raise InputError(
                f"transfer_color takes one image per tensor; {name} has batch {image.shape[0]}"
            )
    if content.shape != output.shape:
        raise InputError(
            f"content {tuple(content.shape)} and output {tuple(output.shape)} differ in size; "
            "resize the content to the output's size first"
        )
    content, style = content.to(output), style.to(output)
    style_stats = _oklab_stats(style)
    chroma_variance = _max_chroma_variance(style_stats)
    if chroma_variance < mono_threshold:
        _log.info(
            "color post-processing skipped: monochrome style "
            "(largest OkLab chroma variance %.3g < %.3g)",
            chroma_variance,
            mono_threshold,
        )
        return output.clamp(0.0, 1.0)

    lab = _lightness_and_chroma(output, content)
    lo, hi = style_stats.lo.tolist(), style_stats.hi.tolist()
    lab[:, 0].clamp_(lo[0], hi[0])
    _match_chroma_(lab, style_stats.channels(slice(1, 3)))
    lab[:, 1:] = lightness_guided_filter(lab[:, 1:], lab[:, :1], iterations, sharpness)
    for channel in (1, 2):
        lab[:, channel].clamp_(lo[channel], hi[channel])
    return _oklab_to_clipped_rgb(lab)


def color_stage(raw: np.ndarray, content: np.ndarray, style: np.ndarray, config: NNSTConfig) -> np.ndarray:
    """The color stage of NNST: :func:`transfer_color` of a stage result, on NumPy images.

    Parameters
    ----------
    raw : float32 (H, W, 3), sRGB in [0, 1], NNST's result before color (``NNSTResult.raw``)
    content, style : float32 (h, w, 3), sRGB in [0, 1], the inputs at any size; both are
        resized (antialiased) so that their long side is ``raw``'s, as NNST resized them
    config : :class:`NNSTConfig`; ``color``, ``color_iterations``, ``color_sharpness``,
        ``mono_threshold`` and ``device`` are used

    Returns
    -------
    float32 (H, W, 3) in [0, 1]; ``raw`` itself when ``config.color`` is False.
    """
    check_config(config, NNSTConfig, "config")
    for image, name in ((raw, "the raw result"), (content, "the content"), (style, "the style")):
        check_image(image, name)
    if not config.color:
        return raw
    long_side = max(raw.shape[:2])
    if long_side_shape(content.shape[:2], long_side) != raw.shape[:2]:  # was an error naming tensor shapes
        (h, w), (ch, cw) = raw.shape[:2], content.shape[:2]
        raise InputError(f"the raw result ({w}x{h} px) has another aspect than the content ({cw}x{ch} px): give the "
                         f"raw result that synthesize_nnst made of it")
    device = resolve_device(config.device)
    content_t = resize_long_side(to_tensor(content, device), long_side)
    style_t = resize_long_side(to_tensor(style, device), long_side)
    output = transfer_color(
        to_tensor_like(raw, content_t), content_t, style_t, iterations=config.color_iterations,
        sharpness=config.color_sharpness, mono_threshold=config.mono_threshold,
    )
    return to_numpy(output)


def _lightness_and_chroma(output: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """OkLab ``(1, 3, H, W)`` with the L of ``output`` and the (a, b) of ``content``."""
    lab = torch.empty_like(output)
    for rows in _row_chunks(output):
        lab[:, :1, rows] = rgb_to_oklab(output[:, :, rows].clamp(0.0, 1.0))[:, :1]
        lab[:, 1:, rows] = rgb_to_oklab(content[:, :, rows].clamp(0.0, 1.0))[:, 1:]
    return lab


def _match_chroma_(lab: torch.Tensor, target: ChannelStats) -> None:
    """Moment-match the (a, b) channels of ``lab`` ``(1, 3, H, W)`` to ``target``, in place."""
    chroma = lab[0, 1:].view(2, -1)
    source = _channel_stats(chroma[:, cols] for cols in _column_chunks(chroma.shape[1]))
    scale, shift = _matching_transform(source, target, MATCH_RIDGE)
    scale, shift = scale.to(chroma.dtype), shift.to(chroma.dtype)[:, None]
    for cols in _column_chunks(chroma.shape[1]):
        chroma[:, cols] = torch.addmm(shift, scale, chroma[:, cols])


def _oklab_to_clipped_rgb(lab: torch.Tensor) -> torch.Tensor:
    """sRGB of OkLab ``(1, 3, H, W)``, clipped to the gamut in linear light."""
    rgb = torch.empty_like(lab)
    for rows in _row_chunks(lab):
        rgb[:, :, rows] = linear_to_srgb(oklab_to_linear(lab[:, :, rows]).clamp_(0.0, 1.0))
    return rgb


# ---------------------------------------------------------------------- internals


def _check_image(x: torch.Tensor, name: str) -> None:
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        kind = f"a tensor of {x.dtype}" if isinstance(x, torch.Tensor) else type(x).__name__
        raise InputError(f"{name} must be a floating-point torch.Tensor, got {kind}")
    if x.ndim != 4 or x.shape[1] != 3:
        raise InputError(f"{name} must have shape (B, 3, H, W), got {tuple(x.shape)}")


def _mix_channels(x: torch.Tensor, matrix: tuple[tuple[float, ...], ...]) -> torch.Tensor:
    """Per-pixel matrix product over the channel axis of ``(B, 3, H, W)``."""
    weight = torch.tensor(matrix, dtype=x.dtype, device=x.device)
    return torch.einsum("ij,bjhw->bihw", weight, x)


def _row_chunks(image: torch.Tensor) -> Iterator[slice]:
    """Row slices of about `CHUNK_PIXELS` pixels covering ``image`` ``(B, C, H, W)``."""
    h, w = image.shape[2:]
    step = max(1, CHUNK_PIXELS // max(1, w))
    return (slice(top, min(top + step, h)) for top in range(0, h, step))


def _column_chunks(n: int) -> Iterator[slice]:
    return (slice(start, min(start + CHUNK_PIXELS, n)) for start in range(0, n, CHUNK_PIXELS))


def _oklab_stats(image: torch.Tensor) -> ChannelStats:
    """OkLab statistics of an sRGB ``(B, 3, H, W)`` image, converted chunk by chunk."""
    return _channel_stats(_oklab_samples(image))


def _oklab_samples(image: torch.Tensor) -> Iterator[torch.Tensor]:
    for item in image:
        for rows in _row_chunks(image):
            lab = rgb_to_oklab(item[None, :, rows].clamp(0.0, 1.0))
            yield lab[0].reshape(3, -1)
