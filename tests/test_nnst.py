"""NNST core: search, pyramid, optimization, field, determinism (tiny images)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from nnst_hr import matching
from nnst_hr.config import NNSTConfig
from nnst_hr.hypercolumns import HYPERCOLUMN_CHANNELS, LAYER_CHANNELS, VGGLayers, feature_grid, hypercolumns
from nnst_hr.laplacian import decompose, lowpass_levels, pyramid_depth, synthesize
from nnst_hr.matching import Guides, center_normalize, centered_cosine_loss, cosine_loss, nearest_neighbors
from nnst_hr.nnst import nnst_objective, stylize, synthesize_nnst
from nnst_hr.optimize import (
    MIN_LATTICE_COVERAGE,
    HypercolumnCosineLoss,
    LatticeRows,
    fit_hypercolumns,
    lattice_stride,
    refresh_interval,
    sample_grid,
    split_targets,
)
from nnst_hr.progress import Progress
from nnst_hr.tensors import to_tensor
from nnst_hr.weights import build_vgg16_features


def brute_force(queries, keys, guides=None):
    """The guided distance evaluated literally, pair by pair (float64)."""
    q = queries.double() - queries.double().mean(0)
    k = keys.double() - keys.double().mean(0)
    cos = (q / q.norm(dim=1, keepdim=True)) @ (k / k.norm(dim=1, keepdim=True)).t()
    if guides is None:
        return (1 - cos).argmin(1)
    w = guides.weight
    d = (1 - w) * (1 - cos) + w * torch.cdist(guides.queries.double(), guides.keys.double()) ** 2
    if guides.hard:
        ql, kl = guides.query_labels[:, None], guides.key_labels[None, :]
        d = d + 1e6 * ((ql >= 0) & (ql != kl))
    return d.argmin(1)


@pytest.fixture(scope="module")
def vgg():
    return VGGLayers(build_vgg16_features())


@pytest.mark.parametrize("n,m,c", [(37, 53, 7), (200, 129, 33)])
def test_search_matches_brute_force(n, m, c, monkeypatch):
    gen = torch.Generator().manual_seed(n)
    q, k = torch.randn(n, c, generator=gen), torch.randn(m, c, generator=gen) + 0.5
    # blocks of a few rows exercise the chunked path
    monkeypatch.setattr(matching, "SCORE_BLOCK_BYTES", 4 * m * 5)
    monkeypatch.setattr(matching, "SMALL_BLOCK_BYTES", 4 * m * 5)
    assert torch.equal(nearest_neighbors(q, k), brute_force(q, k))


@pytest.mark.parametrize("hard", [False, True])
def test_guided_search_matches_brute_force(hard):
    gen = torch.Generator().manual_seed(1)
    q, k = torch.randn(120, 16, generator=gen), torch.randn(150, 16, generator=gen)
    gq = torch.rand(120, 3, generator=gen)
    gk = torch.rand(150, 3, generator=gen)
    guides = Guides(gq, gk, weight=0.5, hard=hard,
                    query_labels=gq.argmax(1) if hard else None, key_labels=gk.argmax(1) if hard else None)
    found = nearest_neighbors(q, k, guides)
    assert torch.equal(found, brute_force(q, k, guides))
    if hard:
        assert torch.equal(guides.key_labels[found], guides.query_labels)


def test_search_with_rotated_style_features(vgg, images):
    _, style = images
    s = to_tensor(style, torch.device("cpu"))
    keys = []
    for k in range(4):
        img = torch.rot90(s, k, dims=(2, 3))
        keys.append(hypercolumns(vgg(img), feature_grid(*img.shape[-2:])).flatten(2)[0].t())
    keys = torch.cat(keys)
    # queries taken from the 180-degree rotation must find themselves (exact duplicates)
    grid = feature_grid(*s.shape[-2:])
    start = 2 * grid[0] * grid[1]
    queries = keys[start:start + 50]
    found = nearest_neighbors(queries, keys)
    assert torch.equal(found, brute_force(queries, keys))
    assert torch.allclose(keys[found], queries)


def test_pyramid_round_trip_and_depth():
    x = torch.rand(1, 3, 40, 300, generator=torch.Generator().manual_seed(0))
    depth = pyramid_depth(40, 300)
    assert depth >= 3 and min(decompose(x, depth)[-1].shape[-2:]) >= 2
    assert torch.allclose(synthesize(decompose(x, depth)), x, atol=1e-6)
    odd = torch.rand(1, 3, 53, 77)
    for s, level in enumerate(lowpass_levels(odd, 4)):
        assert torch.allclose(synthesize(decompose(odd, 5)[s:]), level, atol=1e-6)
    assert pyramid_depth(512, 512) == 8 and pyramid_depth(1024, 2048) == 8


def test_scales_follow_the_paper():
    assert NNSTConfig(size=512).scales() == [64, 128, 256, 512]
    assert NNSTConfig(size=1024).scales() == [64, 128, 256, 512, 1024]


def test_split_loss_has_the_gradient_of_the_min_over_distances():
    gen = torch.Generator().manual_seed(3)
    out = torch.randn(40, 12, generator=gen, requires_grad=True)
    keys = torch.randn(60, 12, generator=gen)
    # the authors' formulation: min over the full centered-cosine distance matrix
    d = 1 - center_normalize(out) @ center_normalize(keys).t()
    reference = d.min(1).values.mean()
    (g_ref,) = torch.autograd.grad(reference, out)
    index = nearest_neighbors(out.detach(), keys)
    ours = centered_cosine_loss(out, center_normalize(keys)[index])
    (g_ours,) = torch.autograd.grad(ours, out)
    assert torch.allclose(ours, reference, atol=1e-6)
    assert torch.allclose(g_ours, g_ref, atol=1e-6)


@pytest.mark.parametrize("grid", [(8, 6), (16, 12)])
def test_fused_hypercolumn_loss_equals_the_loss_on_built_hypercolumns(grid):
    # layer sizes of a 64x48 image: the 16x12 grid resizes up and down and keeps some layers as they are
    gen = torch.Generator().manual_seed(5)
    sides = [(64, 48)] * 2 + [(32, 24)] * 2 + [(16, 12)] * 3 + [(8, 6)] * 3
    layers = [torch.rand(1, c, h, w, generator=gen, dtype=torch.float64).float().requires_grad_(True)
              for c, (h, w) in zip(LAYER_CHANNELS, sides, strict=True)]
    targets = torch.rand(grid[0] * grid[1], HYPERCOLUMN_CHANNELS, generator=gen)
    reference = cosine_loss(hypercolumns(layers, grid)[0].flatten(1).t(), targets)
    g_ref = torch.autograd.grad(reference, layers)
    ours = HypercolumnCosineLoss.apply(split_targets(targets, grid), *layers)
    g_ours = torch.autograd.grad(ours, layers)
    assert torch.allclose(ours, reference, atol=1e-6)
    for a, b in zip(g_ours, g_ref, strict=True):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-4 * float(b.abs().max()))


def test_in_place_normalization_equals_the_copy_and_round_trips():
    x = torch.randn(50, 9, generator=torch.Generator().manual_seed(1)) + 3.0
    original = x.clone()
    mean, norms = matching.center_normalize_(x)
    assert torch.allclose(x, center_normalize(original), atol=1e-6)
    assert torch.allclose(x * norms + mean, original, atol=1e-5)


def test_lattice_rows_equal_slicing_and_keep_the_gradient_channels_last():
    gen = torch.Generator().manual_seed(8)
    layer = torch.randn(1, 6, 11, 9, generator=gen).to(torch.bfloat16, memory_format=torch.channels_last)
    layer.requires_grad_(True)
    rows = LatticeRows.apply(layer, 3, 2, 1)
    reference = layer[:, :, 2::3, 1::3].float().flatten(2)[0].t()  # 3 x 3 cells, row-major
    weights = torch.randn(9, 6, generator=gen)
    assert torch.equal(rows, reference)
    (grad,) = torch.autograd.grad((rows * weights).sum(), layer)
    (grad_ref,) = torch.autograd.grad((reference * weights).sum(), layer)
    assert torch.equal(grad, grad_ref) and grad.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("side, steps, requested",
                         [(256, 200, 2), (512, 200, 2), (256, 40, 2), (256, 200, 8), (48, 10, 3)])
def test_refresh_interval_keeps_enough_lattices(side, steps, requested):
    r = refresh_interval(requested, steps, side, 64)
    need = MIN_LATTICE_COVERAGE * lattice_stride(side, 64) ** 2  # lattices per lattice position
    assert 1 <= r <= requested
    assert r == 1 or steps / r >= need  # enough lattices ...
    assert r == requested or steps / (r + 1) < need  # ... and no more searches than that takes
    assert refresh_interval(2, 200, 256, 64) == 2 and refresh_interval(2, 200, 512, 64) == 1  # as measured


def test_sample_grid_uses_small_layers_whole():
    gen = torch.Generator().manual_seed(0)
    assert sample_grid(64, 40, 64, gen) == (1, 0, 0)
    offsets = {sample_grid(256, 200, 64, gen) for _ in range(50)}
    assert all(s == 4 and 0 <= oy < 4 and 0 <= ox < 4 for s, oy, ox in offsets)
    assert len(offsets) > 4  # fresh offsets every call
    assert sample_grid(96, 80, 64, gen)[0] == 2  # at most 64 samples per side


def test_loss_decreases_at_a_scale(vgg, images):
    content, style = images
    c = to_tensor(content, torch.device("cpu"))
    s = to_tensor(style, torch.device("cpu"))
    grid = feature_grid(*c.shape[-2:])
    keys = hypercolumns(vgg(s), feature_grid(*s.shape[-2:])).flatten(2)[0].t()
    queries = hypercolumns(vgg(c), grid).flatten(2)[0].t()
    targets = keys[nearest_neighbors(queries, keys)]
    assert targets.shape == (grid[0] * grid[1], HYPERCOLUMN_CHANNELS)
    losses = []
    import contextlib

    fit_hypercolumns(decompose(c, 4), vgg, targets, grid, steps=15, lr=2e-3,
                     autocast=contextlib.nullcontext, on_step=lambda i, loss: losses.append(loss))
    assert losses[-1] < 0.9 * losses[0]
    assert all(b <= a + 1e-3 for a, b in itertools.pairwise(losses))


@pytest.mark.parametrize("refresh", [1, 3])
def test_split_pass_searches_every_refresh_steps_and_lowers_its_loss(vgg, images, refresh):
    import contextlib

    from nnst_hr.optimize import SplitStyle, fit_split_layers

    content, style = images
    c = to_tensor(content, torch.device("cpu"))
    with torch.no_grad():
        style_layers = [SplitStyle(layers=[layer]) for layer in vgg(to_tensor(style, torch.device("cpu")))]
    calls, losses = [], []

    def search(q, k, tail):
        calls.append(q.shape[0])
        return matching.best_scores(q, k)

    fit_split_layers(decompose(c, 4), vgg, style_layers, steps=7, lr=2e-3, sample=16,
                     generator=torch.Generator().manual_seed(0), autocast=contextlib.nullcontext,
                     refresh=refresh, search=search, on_step=lambda i, loss: losses.append(loss))
    assert len(calls) == 10 * -(-7 // refresh)  # ten layers, searched at steps 0, refresh, 2 * refresh ...
    assert losses[-1] < losses[0]


@pytest.fixture(scope="module")
def result(images):
    content, style = images
    cfg = NNSTConfig(size=88, coarsest=44, steps=8, split_steps=4, seed=5, device="cpu")  # bit-identical reruns
    return stylize(content, style, cfg), cfg


def test_stylize_output_field_and_objective(result, images, vgg):
    res, cfg = result
    content, style = images
    assert res.image.shape == (72, 88, 3) and res.raw.dtype == np.float32
    assert np.abs(res.raw - content).mean() > 0.02  # it changed the content
    h, w = feature_grid(72, 88)
    nnf = res.field
    assert nnf.shape == (h, w, 3) and nnf.dtype == np.int32
    assert res.style_size == (64, 88)
    sizes = {0: (64, 88), 1: (88, 64), 2: (64, 88), 3: (88, 64)}
    for k in range(4):
        sel = nnf[..., 0] == k
        assert (nnf[sel, 1] < sizes[k][0]).all() and (nnf[sel, 2] < sizes[k][1]).all()
    assert (nnf >= 0).all()
    # the field points at the brute-force nearest style hypercolumn of the output
    out = to_tensor(res.raw, torch.device("cpu"))
    queries = hypercolumns(vgg(out), (h, w)).flatten(2)[0].t()
    s = to_tensor(style, torch.device("cpu"))
    keys, cells = [], []
    for k in range(4):
        img = torch.rot90(s, k, dims=(2, 3))
        g = feature_grid(*img.shape[-2:])
        keys.append(hypercolumns(vgg(img), g).flatten(2)[0].t())
        H, W = img.shape[-2:]
        ii, jj = np.mgrid[0:g[0], 0:g[1]]
        rows, cols = np.rint(ii.ravel() * (H - 1) / (g[0] - 1)), np.rint(jj.ravel() * (W - 1) / (g[1] - 1))
        cells += list(zip([k] * ii.size, rows, cols, strict=True))
    best = brute_force(queries, torch.cat(keys)).numpy()
    expected = np.array([cells[i] for i in best], np.int32).reshape(h, w, 3)
    assert (expected == nnf).all(axis=-1).mean() > 0.99
    # the objective: mean distance to the nearest style hypercolumn, evaluated literally
    q = center_normalize(queries.double())
    distance = 1 - (q @ center_normalize(torch.cat(keys).double()).t()).max(1).values.mean()
    assert res.objective == pytest.approx(float(distance), abs=1e-5)
    assert nnst_objective(res.raw, style, cfg) == pytest.approx(float(distance), abs=1e-5)


def test_same_seed_same_output(result, images):
    res, cfg = result
    again = stylize(*images, cfg)
    assert np.array_equal(res.image, again.image)
    assert np.array_equal(res.field, again.field)


def test_heap_reuse_leaves_the_output_unchanged(result, images, monkeypatch):
    import nnst_hr.nnst as nnst_module
    from nnst_hr import memory

    if memory._mallopt() is None:
        pytest.skip("not glibc: heap_reuse changes nothing")
    res, cfg = result  # 88 px: its loops ran without heap reuse (their blocks are small)
    assert not memory.reuses_heap((72, 88), 4)
    blocks = []

    def reuse(enabled=True):
        blocks.append(enabled)
        return memory.heap_reuse(enabled)

    monkeypatch.setattr(nnst_module, "reuses_heap", lambda *args: True)
    monkeypatch.setattr(nnst_module, "heap_reuse", reuse)
    reused = stylize(*images, cfg)
    assert blocks == [True] * (len(blocks)) and len(blocks) >= 2  # each scale's loop and feature splitting
    assert np.array_equal(res.raw, reused.raw) and np.array_equal(res.field, reused.field)


def test_projected_search_is_exact_when_the_axes_span_the_data():
    gen = torch.Generator().manual_seed(4)
    basis = torch.randn(12, 300, generator=gen)
    q = torch.randn(400, 12, generator=gen) @ basis
    k = torch.randn(1500, 12, generator=gen) @ basis
    qa, ka = matching.augment(q, k, None)
    approx = matching.projected_best_scores(qa, ka, matching.principal_axes(ka, 24), 4)[1]
    assert torch.equal(approx, matching.best_scores(qa, ka)[1])


@pytest.mark.parametrize("projected", [False, True])
def test_bf16_search_rescores_in_fp32_and_finds_the_exact_neighbour(projected, monkeypatch):
    gen = torch.Generator().manual_seed(6)
    basis = torch.randn(40, 300, generator=gen)
    q = torch.randn(500, 40, generator=gen) @ basis
    k = torch.randn(2000, 40, generator=gen) @ basis
    qa, ka = matching.augment(q, k, None)
    monkeypatch.setattr(matching, "SCORE_BLOCK_BYTES", 4 * 2000 * 64)  # several blocks
    monkeypatch.setattr(matching, "SMALL_BLOCK_BYTES", 4 * 2000 * 64)
    if projected:
        scores, found = matching.projected_best_scores(qa, ka, matching.principal_axes(ka, 48), 8, bf16=True)
    else:
        scores, found = matching.best_scores(qa, ka, bf16=True)
    exact_scores, exact = matching.best_scores(qa, ka)
    # the returned score is the fp32 score of the returned key, never better than the exact best
    assert torch.allclose(scores, (qa * ka[found]).sum(1), atol=1e-5)
    assert (scores <= exact_scores + 1e-5).all()
    # bf16 rounds scores by about 2**-8; re-scoring the top candidates recovers nearly every neighbour
    assert (found == exact).float().mean() >= 0.98
    assert (exact_scores - scores).max() < 2**-6


def test_projected_search_keeps_hard_labels_exact():
    gen = torch.Generator().manual_seed(5)
    basis = torch.randn(10, 200, generator=gen)
    q, k = torch.randn(300, 10, generator=gen) @ basis, torch.randn(900, 10, generator=gen) @ basis
    ql, kl = torch.randint(0, 3, (300,), generator=gen), torch.randint(0, 3, (900,), generator=gen)
    guides = Guides(torch.nn.functional.one_hot(ql, 3).float(), torch.nn.functional.one_hot(kl, 3).float(),
                    weight=0.3, hard=True, query_labels=ql, key_labels=kl)
    qa, ka = matching.augment(q, k, guides)
    tail = qa.shape[1] - q.shape[1]
    found = matching.projected_best_scores(qa, ka, matching.principal_axes(ka[:, :-tail], 20), 4, tail)[1]
    assert torch.equal(kl[found], ql)
    assert torch.equal(found, brute_force(q, k, guides))


class _Recorder(Progress):
    """A silent reporter that keeps the plan and every stage and step reported."""

    def __init__(self):
        super().__init__(enabled=False)
        self.planned, self.reports = [], []

    def plan(self, stages):
        self.planned = list(stages)
        super().plan(stages)

    def start(self, stage):
        self.reports.append((stage, None))
        super().start(stage)

    def step(self, index, loss=None):
        self.reports.append((self.current, index))
        super().step(index, loss)


def test_the_work_plan_names_every_stage_and_step_nnst_reports(images):
    cfg = NNSTConfig(size=88, coarsest=44, steps=3, finest_steps=2, split_steps=4, device="cpu")
    progress = _Recorder()
    synthesize_nnst(*images, cfg, progress=progress)
    expected = []
    for stage in progress.planned:
        if stage.steps:
            expected += [(stage.name, None)] + [(stage.name, i) for i in range(stage.steps)]
    assert progress.reports == expected
    assert [s.name for s in progress.planned] == ["scale 44px", "scale 88px", "feature splitting", "final match"]
    assert [s.steps for s in progress.planned] == [3, 2, 4, 0]
    assert progress.planned[2].step[1].every == refresh_interval(cfg.split_refresh, 4, 88, cfg.split_sample)
    assert progress.left_s > 0  # the final match is still to come at the last step
