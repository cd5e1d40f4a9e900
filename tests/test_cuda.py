"""NNST on a CUDA GPU: the same properties as on the CPU, to stated tolerances.

Skipped without CUDA. bench/gpu.sh runs this module first on a lent GPU machine; it takes
well under a minute there.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nnst_hr import NNSTConfig, matching, nnst_objective, stylize
from nnst_hr.config import PosterConfig
from nnst_hr.device import bf16_enabled, precise_matmul
from nnst_hr.files import read_image
from nnst_hr.run import RunOptions, run_files
from nnst_hr.tensors import resize_long_side, to_numpy, to_tensor

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

GPU = torch.device("cuda")
# CPU vs GPU objective of the same image, both fp32 without TF32: cuDNN and oneDNN sum the
# convolutions in different orders (about 1e-6 relative per feature after 10 layers), which
# moves each cell's cosine by about 1e-6 and can swap a nearest neighbour only between two
# keys whose distances differ by about as much. Averaged over the cells the objective
# (about 0.3 to 0.7) moves by far less than 1e-4. TF32 (10-bit mantissa, 5e-4 relative per
# product) moves features by about 1e-3 and is not allowed here.
OBJECTIVE_TOLERANCE = 1e-4


def tf32_flags():
    return (torch.get_float32_matmul_precision(), torch.backends.cuda.matmul.allow_tf32,
            torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark)


def rng_states():
    return torch.get_rng_state(), torch.cuda.get_rng_state(GPU)


@pytest.fixture(scope="module")
def pair():
    """A 128 px photo and painting from the samples (resized by stylize)."""
    content = read_image("samples/content/coffee.png")
    style = read_image("samples/style/cozens_grotto-in-the-campagna_watercolor.jpg")
    return content, style


def config(**changes):
    return NNSTConfig(**{"size": 128, "steps": 20, "split_steps": 10, "device": "cuda", **changes})


def assert_valid_field(result):
    nnf = result.field
    assert nnf.dtype == np.int32 and nnf.shape[:2] == (result.content_size[0] // 4, result.content_size[1] // 4)
    h, w = result.style_size
    for k in range(4):
        sel = nnf[..., 0] == k
        bound = (h, w) if k % 2 == 0 else (w, h)
        assert (nnf[sel, 1] >= 0).all() and (nnf[sel, 1] < bound[0]).all()
        assert (nnf[sel, 2] >= 0).all() and (nnf[sel, 2] < bound[1]).all()
    assert set(np.unique(nnf[..., 0])) <= {0, 1, 2, 3}


@pytest.mark.parametrize("exact", [False, True])
def test_fast_and_exact_at_128px(pair, exact):
    torch.manual_seed(7)
    before_rng, before_flags = rng_states(), tf32_flags()
    result = stylize(*pair, config(exact=exact))
    # library code leaves the process as it found it: TF32 / cuDNN flags and both RNGs
    assert tf32_flags() == before_flags
    after_rng = rng_states()
    assert torch.equal(after_rng[0], before_rng[0]) and torch.equal(after_rng[1], before_rng[1])
    assert result.image.shape == result.raw.shape == (*result.content_size, 3)
    assert np.isfinite(result.raw).all() and 0 <= result.raw.min() and result.raw.max() <= 1
    content = to_numpy(resize_long_side(to_tensor(pair[0], GPU), 128))
    assert np.abs(result.raw - content).mean() > 0.02  # it stylized
    assert_valid_field(result)
    # the reported objective is the exhaustive fp32 one of the final image (within the GPU's
    # run-to-run noise: cuDNN autotuning may pick another algorithm for the second pass)
    objective = nnst_objective(result.raw, pair[1], config())
    assert result.objective == pytest.approx(objective, abs=OBJECTIVE_TOLERANCE)
    assert 0 < objective < 1


def test_cpu_and_gpu_objectives_agree(pair):
    result = stylize(*pair, config(steps=5, split_steps=3))
    on_gpu = nnst_objective(result.raw, pair[1], config())
    on_cpu = nnst_objective(result.raw, pair[1], config(device="cpu"))
    assert on_gpu == pytest.approx(on_cpu, abs=OBJECTIVE_TOLERANCE)


def test_gpu_search_matches_a_cpu_brute_force():
    gen = torch.Generator().manual_seed(0)
    q, k = torch.randn(3000, 256, generator=gen), torch.randn(9000, 256, generator=gen) + 0.2
    reference = matching.nearest_neighbors(q.double(), k.double())
    with precise_matmul(GPU):
        found = matching.nearest_neighbors(q.to(GPU), k.to(GPU)).cpu()
    # random 256-d vectors: the best and second-best keys are far apart next to fp32 error
    assert torch.equal(found, reference)


def test_shortlisted_gpu_search_uses_no_global_rng(monkeypatch):
    gen = torch.Generator().manual_seed(1)
    basis = torch.randn(24, 600, generator=gen)
    q = (torch.randn(2000, 24, generator=gen) @ basis).to(GPU)
    k = (torch.randn(6000, 24, generator=gen) @ basis).to(GPU)
    qa, ka = matching.augment(q, k, None)
    monkeypatch.setattr(matching, "CUDA_APPROX_MIN_WORK", 0)  # force the shortlist
    before = rng_states()
    found = matching.search(qa, ka, exact=False, dims=48, candidates=8, bf16=True)[1]
    after = rng_states()
    assert torch.equal(before[0], after[0]) and torch.equal(before[1], after[1])
    assert (found == matching.best_scores(qa, ka)[1]).float().mean() > 0.98


def test_guided_hard_mode_never_crosses_labels_on_the_gpu(tmp_path):
    from PIL import Image

    from guidance import load_mask_files

    yy, xx = np.mgrid[0:64, 0:64].astype(np.float32)
    content = np.stack([0.6 + 0.1 * np.sin(xx / 5), 0.3 + 0.1 * np.cos(yy / 4), 0.3 + 0 * xx], -1).astype(np.float32)
    yy, xx = np.mgrid[0:96, 0:64].astype(np.float32)
    style = np.zeros((96, 64, 3), np.float32)
    style[:48, :, 1] = 0.5 + 0.4 * np.sin(xx[:48] / 1.5)
    style[48:, :, 0] = 0.5 + 0.4 * (np.sin(xx[48:] / 3) * np.sin(yy[48:] / 3) > 0)
    cm, sm = np.zeros((64, 64, 3), np.uint8), np.zeros((96, 64, 3), np.uint8)
    cm[:, :32], cm[:, 32:] = (255, 255, 0), (0, 255, 255)
    sm[:48], sm[48:] = (255, 255, 0), (0, 255, 255)
    Image.fromarray(cm).save(tmp_path / "cm.png")
    Image.fromarray(sm).save(tmp_path / "sm.png")
    masks = load_mask_files(tmp_path / "cm.png", tmp_path / "sm.png", (64, 64), (96, 64))
    cfg = NNSTConfig(size=96, coarsest=48, steps=5, split_steps=3, rotate=False, color=False, device="cuda",
                     guide_mode="hard")
    result = stylize(content, style, cfg, masks=masks)
    rows = result.field[..., 1] / result.style_size[0]
    cols = result.field.shape[1]
    assert (rows[:, : cols // 2 - 1] < 0.5).all() and (rows[:, cols // 2 + 1:] >= 0.5).all()


def test_poster_64_to_256_on_the_gpu(tmp_path, pair):
    from PIL import Image

    for name, image in zip(("c.png", "s.png"), pair, strict=True):
        Image.fromarray((np.clip(image, 0, 1) * 255).round().astype(np.uint8)).save(tmp_path / name)
    options = RunOptions(nnst=NNSTConfig(size=64, steps=5, split_steps=3, device="cuda"),
                         poster=PosterConfig(out_size=256), quiet=True)
    timings = run_files(tmp_path / "c.png", tmp_path / "s.png", tmp_path / "poster.png", options)
    poster = read_image(tmp_path / "poster.png")
    assert max(poster.shape[:2]) == 256 and np.isfinite(poster).all()
    assert {"poster.synthesis", "poster.color"} <= set(timings)


def test_bf16_follows_the_compute_capability():
    assert bf16_enabled(GPU, True) == (torch.cuda.get_device_capability(GPU) >= (8, 0))


def test_a_stage_records_its_peak_gpu_memory_in_the_stage_info_and_results_csv(tmp_path):
    import csv

    from nnst_hr.experiment import run_plan
    from nnst_hr.experiment.execute import PeakMemory
    from nnst_hr.files import write_image

    size = 64 * 2**20
    torch.zeros(1, device=GPU)  # CUDA started before the blocks: each measures its own peak
    with PeakMemory() as used:
        block = torch.ones(size, dtype=torch.uint8, device=GPU)
        del block
    with PeakMemory() as idle:
        torch.zeros(1, device=GPU)
    assert used.gpu_peak >= size and idle.gpu_peak < size  # the peak is reset for each stage

    rng = np.random.default_rng(0)
    for name in ("c.png", "s.png"):
        write_image(tmp_path / name, rng.random((48, 48, 3)).astype(np.float32), overwrite=True)
    (tmp_path / "plan.toml").write_text('[[pair]]\ncontent = "c.png"\nstyle = "s.png"\n'
                                        '[fixed]\nsize = 32\nsteps = 2\nsplit_steps = 1\nrotate = false\n'
                                        'device = "cuda"\n')
    run_plan(tmp_path / "plan.toml", tmp_path / "results", quiet=True)
    with open(tmp_path / "results" / "results.csv", newline="") as fh:
        (row,) = list(csv.DictReader(fh))
    assert row["status"] == "ok" and int(row["peak_gpu_memory.nnst"]) > 0
