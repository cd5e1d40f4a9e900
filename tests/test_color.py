"""Tests of nnst_hr.color: conversions, moment matching, chroma filter, color transfer."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from nnst_hr import color
from nnst_hr.color import (
    is_monochrome,
    lightness_guided_filter,
    linear_to_oklab,
    linear_to_srgb,
    match_moments,
    max_chroma_variance,
    oklab_to_linear,
    oklab_to_rgb,
    rgb_to_oklab,
    srgb_to_linear,
    transfer_color,
)
from nnst_hr.errors import InputError

STYLES = Path(__file__).resolve().parents[1] / "samples" / "style"


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _uniform(shape, lo, hi, gen) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(shape, generator=gen)


def _lab_image(lab: torch.Tensor) -> torch.Tensor:
    """sRGB (1, 3, H, W) of an OkLab image that must lie inside the sRGB gamut."""
    linear = oklab_to_linear(lab)
    assert linear.min() > 0 and linear.max() < 1, "test image left the sRGB gamut"
    return linear_to_srgb(linear)


def _moments(lab: torch.Tensor, channels: slice) -> tuple[torch.Tensor, torch.Tensor]:
    """Population mean and covariance (float64) of some channels of (1, C, H, W)."""
    samples = lab[0, channels].reshape(lab[0, channels].shape[0], -1).double()
    return samples.mean(dim=1), torch.cov(samples, correction=0)


def _filter_reference(ab, lightness, iterations, sharpness):
    """The chroma filter with all 9 neighbours materialized at once (F.unfold)."""
    h, w = ab.shape[2:]
    guide = F.unfold(F.pad(lightness, (1, 1, 1, 1), mode="replicate"), 3).view(1, 1, 9, h, w)
    weights = torch.exp(-sharpness * (guide - lightness[:, :, None]).abs())
    weights = weights / weights.sum(dim=2, keepdim=True)
    for _ in range(iterations):
        patches = F.unfold(F.pad(ab, (1, 1, 1, 1), mode="replicate"), 3)
        patches = patches.view(1, ab.shape[1], 9, h, w)
        ab = (patches * weights).sum(dim=2)
    return ab


# ------------------------------------------------------------------ conversions


def test_srgb_transfer_function_known_values_and_round_trip():
    encoded = torch.linspace(0, 1, 999).view(1, 3, 333, 1)
    linear = srgb_to_linear(encoded)
    torch.testing.assert_close(linear_to_srgb(linear), encoded, atol=1e-5, rtol=0)
    torch.testing.assert_close(srgb_to_linear(linear_to_srgb(linear)), linear, atol=1e-5, rtol=0)
    values = torch.tensor([0.0, 0.04045, 0.5, 1.0]).view(1, 1, 4, 1).expand(1, 3, 4, 1)
    expected = torch.tensor([0.0, 0.04045 / 12.92, 0.21404114, 1.0]).view(1, 1, 4, 1)
    expected = expected.expand(1, 3, 4, 1)
    torch.testing.assert_close(srgb_to_linear(values), expected, atol=1e-7, rtol=0)


def test_oklab_known_values():
    # White, black, sRGB red as published by Ottosson, and mid grey, whose L is the
    # cube root of its linear value 0.21404114 (so the sRGB decoding is not skipped).
    rgb = torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.5, 0.5, 0.5]])
    lab = rgb_to_oklab(rgb.T.reshape(1, 3, 4, 1))[0, :, :, 0].T
    expected = torch.tensor(
        [[1.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.62796, 0.22486, 0.12585], [0.21404114 ** (1 / 3), 0.0, 0.0]]
    )
    torch.testing.assert_close(lab, expected, atol=2e-5, rtol=0)


def test_oklab_round_trips():
    linear = torch.rand(1, 3, 16, 16, generator=_generator())
    lab = linear_to_oklab(linear)
    torch.testing.assert_close(oklab_to_linear(lab), linear, atol=1e-5, rtol=0)
    torch.testing.assert_close(linear_to_oklab(oklab_to_linear(lab)), lab, atol=1e-5, rtol=0)
    srgb = torch.rand(1, 3, 16, 16, generator=_generator(1))
    torch.testing.assert_close(oklab_to_rgb(rgb_to_oklab(srgb)), srgb, atol=1e-5, rtol=0)


def test_out_of_gamut_colors_stay_finite_and_invertible():
    linear = torch.tensor([-0.1, 0.5, 1.2]).view(1, 3, 1, 1)
    lab = linear_to_oklab(linear)
    assert torch.isfinite(lab).all()
    torch.testing.assert_close(oklab_to_linear(lab), linear, atol=1e-5, rtol=0)


def test_conversions_reject_wrong_shapes():
    with pytest.raises(InputError, match=r"\(B, 3, H, W\)"):
        rgb_to_oklab(torch.rand(3, 8, 8))
    with pytest.raises(InputError, match="floating-point"):
        srgb_to_linear(torch.zeros(1, 3, 2, 2, dtype=torch.uint8))


# -------------------------------------------------------------- moment matching


def _sqrtm(cov: np.ndarray) -> np.ndarray:
    evals, evecs = np.linalg.eigh(cov)
    return evecs @ np.diag(np.sqrt(evals)) @ evecs.T


def _correlated(n: int, mean, mix, seed: int) -> torch.Tensor:
    gen = _generator(seed)
    mix, mean = torch.tensor(mix, dtype=torch.float64), torch.tensor(mean, dtype=torch.float64)
    return torch.randn(n, 2, generator=gen, dtype=torch.float64) @ mix.T + mean


def test_match_moments_is_exact_without_ridge():
    x = _correlated(500, [0.3, -0.2], [[2.0, 0.5], [0.3, 0.4]], seed=0)
    ref = _correlated(300, [1.0, 2.0], [[0.1, -0.2], [0.05, 0.3]], seed=1)
    y = match_moments(x, ref, ridge=0.0)
    torch.testing.assert_close(y.mean(0), ref.mean(0), atol=1e-12, rtol=0)
    cov_y, cov_ref = torch.cov(y.T, correction=0), torch.cov(ref.T, correction=0)
    torch.testing.assert_close(cov_y, cov_ref, atol=1e-12, rtol=0)
    # ZCA: the map is C_r^(1/2) C_x^(-1/2) with symmetric square roots.
    scale = torch.linalg.lstsq(x - x.mean(0), y - y.mean(0)).solution.T.numpy()
    cov_x, cov_r = (torch.cov(t.T, correction=0).numpy() for t in (x, ref))
    np.testing.assert_allclose(scale, _sqrtm(cov_r) @ np.linalg.inv(_sqrtm(cov_x)), atol=1e-10)


def test_match_moments_ridge_closed_form():
    x = _correlated(400, [0.0, 0.0], [[0.02, 0.01], [0.0, 0.005]], seed=2)
    ref = _correlated(400, [0.1, 0.1], [[0.03, 0.0], [0.01, 0.02]], seed=3)
    ridge = 1e-4
    y = match_moments(x, ref, ridge=ridge)
    cov_x, cov_r = (torch.cov(t.T, correction=0).numpy() for t in (x, ref))
    root_r = _sqrtm(cov_r)
    expected = root_r @ cov_x @ np.linalg.inv(cov_x + ridge * np.eye(2)) @ root_r
    np.testing.assert_allclose(torch.cov(y.T, correction=0).numpy(), expected, atol=1e-12, rtol=0)
    assert not np.allclose(expected, cov_r, atol=1e-6), "the ridge should matter in this setup"


def test_match_moments_channel_first_equals_rows_and_handles_constant_input():
    gen = _generator(4)
    x, ref = torch.rand(2, 3, 5, 7, generator=gen), torch.rand(1, 3, 4, 4, generator=gen)
    rows = match_moments(x.transpose(0, 1).reshape(3, -1).T, ref[0].reshape(3, -1).T)
    torch.testing.assert_close(match_moments(x, ref), rows.T.reshape(3, 2, 5, 7).transpose(0, 1))
    flat = match_moments(torch.full((10, 2), 0.5), torch.rand(20, 2, generator=gen), ridge=0.0)
    assert torch.isfinite(flat).all() and torch.allclose(flat, flat[:1].expand(10, 2))


# ----------------------------------------------------------------- chroma filter


@pytest.mark.parametrize("chunk_pixels", [color.CHUNK_PIXELS, 64])
def test_filter_matches_unfold_reference(chunk_pixels, monkeypatch):
    # 64-pixel chunks cut the 31-pixel-wide image into bands of 2 rows, fewer than
    # the 5-row margins: the banded filter must still equal the whole-image one.
    monkeypatch.setattr(color, "CHUNK_PIXELS", chunk_pixels)
    gen = _generator(5)
    ab, lightness = torch.rand(1, 2, 23, 31, generator=gen), torch.rand(1, 1, 23, 31, generator=gen)
    expected = _filter_reference(ab, lightness, iterations=5, sharpness=10.0)
    torch.testing.assert_close(lightness_guided_filter(ab, lightness), expected, atol=1e-6, rtol=0)


def test_filter_preserves_constant_fields_and_its_inputs():
    lightness = torch.rand(1, 1, 16, 16, generator=_generator(6))
    ab = torch.tensor([0.05, -0.1]).view(1, 2, 1, 1).repeat(1, 1, 16, 16)
    before = ab.clone()
    torch.testing.assert_close(lightness_guided_filter(ab, lightness), before, atol=1e-6, rtol=0)
    assert torch.equal(ab, before)


def test_filter_stops_at_a_lightness_edge():
    h, w, step, sharpness, iterations = 16, 16, 0.6, 10.0, 5
    lightness = torch.full((1, 1, h, w), 0.2)
    lightness[..., w // 2 :] += step
    ab = torch.full((1, 2, h, w), 0.1)
    ab[..., w // 2 :] = -0.1
    # A pixel next to the edge gives its 3 cross-edge neighbours the fraction
    # f = 3w / (6 + 3w) of its weight (w = exp(-sharpness * step)); each pass moves it
    # at most f * 0.2 further, so after 5 passes it moved at most 5 * f * 0.2.
    weight = math.exp(-sharpness * step)
    bound = iterations * 3 * weight / (6 + 3 * weight) * 0.2
    bleed = (lightness_guided_filter(ab, lightness, iterations, sharpness) - ab).abs().max()
    assert bleed <= bound
    flat = lightness_guided_filter(ab, torch.zeros_like(lightness), iterations, sharpness)
    flat_bleed = (flat - ab).abs().max()
    assert flat_bleed > 20 * bound, "without the edge the chroma should bleed"


# ----------------------------------------------------------------- color transfer


def _transfer_scene(size: int = 64, seed: int = 7):
    """Output, content and style (sRGB) whose matched chroma stays in gamut and in range.

    Style: uniform L in [0.5, 0.85] and (a, b) in a box. Content: (a, b) are one
    period of a sine along x and along y, so the moment-matched chroma (amplitude
    sqrt(2) sigma) stays inside the style's box (half-width sqrt(3) sigma).
    Output: smooth lightness in [0.55, 0.8] and random chroma (discarded).
    """
    gen = _generator(seed)
    style_lab = torch.stack(
        [
            _uniform((40, 48), 0.5, 0.85, gen),
            _uniform((40, 48), -0.02, 0.06, gen),
            _uniform((40, 48), -0.01, 0.07, gen),
        ]
    )[None]
    wave = torch.sin(2 * math.pi * torch.arange(size) / size)
    content_lab = torch.stack(
        [
            torch.full((size, size), 0.7),
            0.01 + 0.06 * wave.expand(size, size),
            -0.02 + 0.06 * wave[:, None].expand(size, size),
        ]
    )[None]
    ramp = torch.arange(size) / (size - 1)
    output_lab = torch.stack(
        [
            0.55 + 0.125 * (ramp[:, None] + ramp[None, :]),
            _uniform((size, size), -0.05, 0.05, gen),
            _uniform((size, size), -0.05, 0.05, gen),
        ]
    )[None]
    return _lab_image(output_lab), _lab_image(content_lab), _lab_image(style_lab)


def test_transfer_matches_style_chroma_moments_before_filtering():
    output, content, style = _transfer_scene()
    result = transfer_color(output, content, style, iterations=0)
    mean, cov = _moments(rgb_to_oklab(result), slice(1, 3))
    style_mean, style_cov = _moments(rgb_to_oklab(style), slice(1, 3))
    torch.testing.assert_close(mean, style_mean, atol=2e-5, rtol=0)
    # The 1e-6 ridge keeps 1 - 1e-6 / 1.8e-3 of the content's variance (1.8e-3 = 0.06**2 / 2).
    torch.testing.assert_close(cov, style_cov, atol=1e-3 * style_cov.abs().max().item(), rtol=0)


def test_transfer_does_not_depend_on_the_chunk_size(monkeypatch):
    output, content, style = _transfer_scene(size=32)
    whole = transfer_color(output, content, style)
    monkeypatch.setattr(color, "CHUNK_PIXELS", 256)
    torch.testing.assert_close(transfer_color(output, content, style), whole, atol=1e-6, rtol=0)


def test_transfer_matches_style_chroma_moments_after_filtering():
    output, content, style = _transfer_scene()
    result = transfer_color(output, content, style)
    mean, cov = _moments(rgb_to_oklab(result), slice(1, 3))
    style_mean, style_cov = _moments(rgb_to_oklab(style), slice(1, 3))
    # Under the nearly flat guide the filter is 5 passes of a 3x3 box, which scales a
    # sine of period 64 by ((1 + 2 cos(2 pi / 64)) / 3) ** 5: its variance shrinks by
    # 3.2 %. Allow 5 % of the style's covariance and 2 % of its standard deviation.
    scale = style_cov.abs().max().item()
    torch.testing.assert_close(cov, style_cov, atol=0.05 * scale, rtol=0)
    torch.testing.assert_close(mean, style_mean, atol=0.02 * math.sqrt(scale), rtol=0)
    assert (torch.diagonal(cov) < torch.diagonal(style_cov)).all(), "the filter should smooth"


def test_transfer_keeps_lightness_and_clamps_to_the_style_range():
    gen = _generator(8)
    style = _lab_image(
        torch.stack(
            [
                _uniform((20, 20), 0.6, 0.7, gen),
                _uniform((20, 20), -0.02, 0.02, gen),
                _uniform((20, 20), -0.01, 0.03, gen),
            ]
        )[None]
    )
    output = _lab_image(
        torch.stack(
            [
                _uniform((32, 32), 0.4, 0.9, gen),
                _uniform((32, 32), -0.03, 0.03, gen),
                _uniform((32, 32), -0.03, 0.03, gen),
            ]
        )[None]
    )
    content = torch.rand(1, 3, 32, 32, generator=gen)
    inputs = [t.clone() for t in (output, content, style)]
    result_lab = rgb_to_oklab(transfer_color(output, content, style))
    assert all(torch.equal(a, b) for a, b in zip(inputs, (output, content, style), strict=True))

    style_lab = rgb_to_oklab(style)[0].reshape(3, -1)
    lo, hi = style_lab.amin(dim=1).view(1, 3, 1, 1), style_lab.amax(dim=1).view(1, 3, 1, 1)
    assert (result_lab >= lo - 1e-5).all() and (result_lab <= hi + 1e-5).all()
    output_l = rgb_to_oklab(output)[:, :1]
    clamped = output_l.clamp(lo[:, :1], hi[:, :1])
    assert (clamped != output_l).float().mean() > 0.3, "the test should exercise the clamp"
    torch.testing.assert_close(result_lab[:, :1], clamped, atol=1e-5, rtol=0)


def test_grey_style_returns_the_output_unchanged():
    gen = _generator(9)
    grey = torch.rand(1, 1, 24, 24, generator=gen).expand(1, 3, 24, 24)
    output = torch.rand(1, 3, 16, 16, generator=gen)
    content = torch.rand(1, 3, 16, 16, generator=gen)
    assert is_monochrome(grey)
    assert torch.equal(transfer_color(output, content, grey), output)


@pytest.mark.parametrize("variance, monochrome", [(1e-4, False), (3e-5, True)])
def test_monochrome_threshold_measures_oklab_chroma_variance(variance, monochrome):
    # A checkerboard of a = +-sigma has a population variance of exactly sigma**2.
    sign = (torch.arange(16)[:, None] + torch.arange(16)[None, :]) % 2 * 2 - 1
    a = math.sqrt(variance) * sign
    lab = torch.stack([torch.full((16, 16), 0.7), a, torch.zeros(16, 16)])[None]
    style = _lab_image(lab)
    assert max_chroma_variance(style) == pytest.approx(variance, rel=1e-3)
    assert is_monochrome(style) is monochrome


@pytest.mark.parametrize(
    "name, monochrome",
    [
        ("lorrain_seaport-with-a-large-tower_etching.jpg", True),
        ("turner_shipwreck-of-the-minotaur_oil.jpg", False),
    ],
)
def test_monochrome_verdict_on_sample_styles(name, monochrome):
    pixels = np.asarray(Image.open(STYLES / name).convert("RGB"), dtype=np.float32) / 255
    style = torch.from_numpy(pixels).permute(2, 0, 1)[None]
    assert is_monochrome(style) is monochrome


def test_transfer_rejects_mismatched_content():
    output, style = torch.rand(1, 3, 16, 16), torch.rand(1, 3, 8, 8)
    with pytest.raises(InputError, match="resize the content"):
        transfer_color(output, torch.rand(1, 3, 16, 12), style)
    with pytest.raises(InputError, match="batch"):
        transfer_color(output.expand(2, 3, 16, 16), output.expand(2, 3, 16, 16), style)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_transfer_on_cuda_matches_cpu():
    output, content, style = _transfer_scene()
    cpu = transfer_color(output, content, style)
    cuda = transfer_color(output.cuda(), content.cuda(), style.cpu())
    assert cuda.device.type == "cuda"
    torch.testing.assert_close(cuda.cpu(), cpu, atol=1e-5, rtol=0)
