"""Device handling that must hold on any machine: flag contexts restore what they change,
bf16 only where native, per-device search settings, no global RNG use, no per-step reads."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from nnst_hr import device as device_module
from nnst_hr import matching
from nnst_hr.config import NNSTConfig
from nnst_hr.device import bf16_enabled, cudnn_autotune, precise_matmul, run_settings
from nnst_hr.matching import Guides, search, search_settings
from nnst_hr.progress import Progress

CUDA = torch.device("cuda")  # the flag contexts only set torch's global flags: no GPU is needed


def tf32_state():
    return (torch.get_float32_matmul_precision(), torch.backends.cuda.matmul.allow_tf32,
            torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark)


@pytest.fixture()
def caller_flags():
    """A caller that allows TF32 everywhere (as many training scripts do); put back afterwards."""
    saved = device_module._tf32_flags(), torch.backends.cudnn.benchmark
    torch.set_float32_matmul_precision("high")
    torch.backends.cudnn.allow_tf32 = True
    yield
    device_module._restore_tf32_flags(saved[0])
    torch.backends.cudnn.benchmark = saved[1]


def test_precise_matmul_turns_tf32_off_and_restores_the_callers_flags(caller_flags):
    before = tf32_state()
    assert before[:3] == ("high", True, True)
    with precise_matmul(CUDA):
        assert tf32_state()[:3] == ("highest", False, False)
    assert tf32_state() == before
    with pytest.raises(KeyError), precise_matmul(CUDA):
        raise KeyError("restored on the way out of an error too")
    assert tf32_state() == before
    with precise_matmul(torch.device("cpu")):  # the CPU has no TF32: left alone
        assert tf32_state() == before


def test_cudnn_autotune_and_run_settings_restore_benchmark(caller_flags):
    torch.backends.cudnn.benchmark = False
    before = tf32_state()
    with cudnn_autotune(CUDA):
        assert torch.backends.cudnn.benchmark
    with run_settings(CUDA, exact=True):
        assert tf32_state() == ("highest", False, False, True)
    with run_settings(CUDA, exact=False):
        assert tf32_state() == ("high", True, True, True)  # fast mode keeps the caller's TF32
    with run_settings(torch.device("cpu"), exact=True):
        assert tf32_state() == before
    assert tf32_state() == before


@pytest.mark.parametrize("capability,native", [((7, 5), False), ((7, 0), False), ((8, 0), True), ((9, 0), True)])
def test_bf16_only_where_the_gpu_has_native_bf16(monkeypatch, capability, native):
    # torch.cuda.is_bf16_supported() says yes on a Turing GPU (emulated bf16): it must not decide
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    assert bf16_enabled(CUDA, True) is native
    assert bf16_enabled(CUDA, False) is False


def test_no_bf16_option_reaches_the_config(monkeypatch, tmp_path):
    from typer.testing import CliRunner

    import nnst_hr.run
    from nnst_hr.cli import app

    seen = []
    monkeypatch.setattr(nnst_hr.run, "run_files", lambda c, s, o, options, **kwargs: seen.append(options))
    for flag, expected in (([], True), (["--no-bf16"], False), (["--bf16"], True)):
        result = CliRunner().invoke(app, ["run", "c.png", "s.png", "-o", str(tmp_path / "o.png"), *flag])
        assert result.exit_code == 0, result.output
        assert seen[-1].nnst.bf16 is expected


def test_search_settings_per_device(monkeypatch):
    cpu = search_settings(torch.device("cpu"))
    assert (cpu.block_bytes, cpu.small_block_bytes, cpu.approx_min_work) == (
        matching.SCORE_BLOCK_BYTES, matching.SMALL_BLOCK_BYTES, matching.APPROX_MIN_WORK)
    gib = 2**30
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: 3 * gib)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: 1 * gib)
    for free, expected in ((130 * gib, matching.CUDA_MAX_BLOCK_BYTES), (4 * gib, 6 * gib // 8),
                           (0, 2 * gib // 8), (-2 * gib, matching.CUDA_MIN_BLOCK_BYTES)):
        monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None, free=free: (free, 141 * gib))
        gpu = search_settings(CUDA)
        # free on the device plus the 2 GiB the caching allocator holds unused, an eighth of it, bounded
        assert gpu.block_bytes == gpu.small_block_bytes == expected
    # a score matrix that fits the smallest block does not ask the driver (no call per search)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: pytest.fail("asked for free memory"))
    small = search_settings(CUDA, 4 * 4096 * 16384)  # a feature-splitting search: 4096 cells, 4 x 4096 keys
    assert small.block_bytes == matching.CUDA_MIN_BLOCK_BYTES
    # a 1024 px hypercolumn search (256 x 192 cells, 4 rotations, 2688 channels) is exhaustive on
    # the GPU and shortlisted on the CPU
    work = (256 * 192) * (4 * 256 * 192) * 2688
    assert cpu.approx_min_work < work < gpu.approx_min_work


def test_principal_axes_use_no_global_generator_and_find_the_main_directions():
    gen = torch.Generator().manual_seed(0)
    # 6 strong directions, weak noise in 90 dimensions
    basis = torch.linalg.qr(torch.randn(90, 6, generator=gen)).Q
    x = torch.randn(3000, 6, generator=gen) * torch.tensor([9.0, 8, 7, 6, 5, 4]) @ basis.t()
    x += 0.01 * torch.randn(3000, 90, generator=gen)
    state = torch.get_rng_state()
    axes = matching.principal_axes(x, 6, sample=2000, seed=3)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(axes, matching.principal_axes(x, 6, sample=2000, seed=3))  # seeded
    assert torch.allclose(axes.t() @ axes, torch.eye(6), atol=1e-5)
    # the same subspace as the exact top singular vectors: the projection keeps the basis
    assert torch.linalg.norm(axes @ (axes.t() @ basis) - basis) < 1e-2
    # negative control: random axes do not
    random_axes = torch.linalg.qr(torch.randn(90, 6, generator=gen)).Q
    assert torch.linalg.norm(random_axes @ (random_axes.t() @ basis) - basis) > 1.0


def test_shortlisted_search_leaves_the_global_rng_alone(monkeypatch):
    gen = torch.Generator().manual_seed(1)
    basis = torch.randn(20, 300, generator=gen)
    q, k = torch.randn(200, 20, generator=gen) @ basis, torch.randn(800, 20, generator=gen) @ basis
    qa, ka = matching.augment(q, k, None)
    monkeypatch.setattr(matching, "APPROX_MIN_WORK", 0)  # force the shortlist (principal axes)
    called = []
    original = matching.principal_axes
    monkeypatch.setattr(matching, "principal_axes", lambda *a, **kw: called.append(1) or original(*a, **kw))
    state = torch.get_rng_state()
    found = search(qa, ka, exact=False, dims=32, candidates=8)[1]
    assert called and torch.equal(torch.get_rng_state(), state)
    assert torch.equal(found, matching.best_scores(qa, ka)[1])  # rank 20 < 32 axes: the shortlist is exact


def test_hard_labels_count_given_or_read_gives_the_same_search():
    gen = torch.Generator().manual_seed(2)
    q, k = torch.randn(60, 8, generator=gen), torch.randn(90, 8, generator=gen)
    ql, kl = torch.randint(-1, 3, (60,), generator=gen), torch.randint(0, 3, (90,), generator=gen)
    common = dict(queries=torch.rand(60, 2, generator=gen), keys=torch.rand(90, 2, generator=gen),
                  weight=0.4, hard=True, query_labels=ql, key_labels=kl)
    read = matching.nearest_neighbors(q, k, Guides(**common))
    given = matching.nearest_neighbors(q, k, Guides(**common, n_labels=3))
    assert torch.equal(read, given)
    labelled = ql >= 0
    assert torch.equal(kl[given][labelled], ql[labelled])


class CountingLoss:
    """A loss whose value is read (a device sync on a GPU) only through ``float``."""

    def __init__(self, value):
        self.value, self.reads = value, 0

    def __float__(self):
        self.reads += 1
        return self.value


def test_progress_reads_the_loss_only_when_it_prints():
    out = io.StringIO()
    progress = Progress(stream=out)
    progress.plan([("a", 50, 1.0)])
    progress.start("a")
    losses = [CountingLoss(1.0 / (i + 1)) for i in range(50)]
    for i, loss in enumerate(losses):
        progress.step(i, loss)
    lines = out.getvalue().splitlines()
    assert sum(loss.reads for loss in losses) == len(lines) < 50  # a line at most every 2 s, and the last step
    assert lines[-1].startswith("a: step 50/50, loss 0.0200")


@pytest.fixture(scope="module")
def tiny_pair():
    yy, xx = np.mgrid[0:48, 0:64] / 64.0
    content = np.stack([yy, xx, 0.5 + 0.3 * np.sin(9 * xx)], -1).astype(np.float32)
    style = np.stack([(np.sin(40 * xx + 9 * yy) > 0), 0.4 + 0 * xx, np.cos(20 * yy) ** 2], -1).astype(np.float32)
    return content, style


def test_stylize_leaves_the_global_rng_and_flags_as_it_found_them(tiny_pair):
    from nnst_hr import stylize

    torch.manual_seed(1234)
    state, flags = torch.get_rng_state(), tf32_state()
    stylize(*tiny_pair, NNSTConfig(size=64, coarsest=32, steps=1, split_steps=1, device="cpu"))
    assert torch.equal(torch.get_rng_state(), state)
    assert tf32_state() == flags
