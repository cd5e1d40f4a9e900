"""Benchmark NNST: seconds per stage, peak memory, fast vs exact objective.

Each configuration runs in its own process so that its peak memory is its own. The
baseline of the ratio is one VGG16 forward-and-backward pass at the same size, measured
in the same run, so the figures carry over to a faster or slower machine.

    python bench/nnst.py                      # 256 and 512 px, fast and exact
    python bench/nnst.py --sizes 256 --modes fast
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONTENT = ROOT / "samples/content/astronaut.png"
STYLE = ROOT / "samples/style/turner_shipwreck-of-the-minotaur_oil.jpg"
AUTHORS_SECONDS = {256: 1020.0, 512: 1560.0}  # the authors' code on this machine (2 free cores), from the issue


@functools.cache
def vgg_pass_seconds(size: int, bf16: bool = False, repeats: int = 3) -> float:
    """Median seconds of one VGG16 relu1_1..relu4_3 forward + backward on a size x size image.

    Measured once per size and precision in a run: the floor and the GMAC/s line share it.
    """
    import torch

    from nnst_hr.device import autocast
    from nnst_hr.hypercolumns import VGGLayers
    from nnst_hr.weights import build_vgg16_features

    vgg = VGGLayers(build_vgg16_features())
    x = torch.rand(1, 3, size, size, requires_grad=True)
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        with autocast(x.device, bf16):
            layers = vgg(x)
        # a gradient of ones on every layer: no loss computation counted
        torch.autograd.backward(layers, [torch.ones_like(layer) for layer in layers])
        times.append(time.perf_counter() - start)
    return sorted(times[1:])[len(times[1:]) // 2]


def vgg_pass_macs(size: int) -> float:
    """Multiply-adds of one VGG16 forward + backward (gradient of the input only) at size x size."""
    from torch import nn

    from nnst_hr.hypercolumns import LAYER_INDICES
    from nnst_hr.weights import build_vgg16_features

    macs, side = 0.0, size
    for module in build_vgg16_features()[: LAYER_INDICES[-1] + 1]:
        if isinstance(module, nn.Conv2d):
            kernel = module.kernel_size[0] * module.kernel_size[1]
            macs += side * side * module.in_channels * module.out_channels * kernel
        elif isinstance(module, nn.MaxPool2d):
            side //= 2
    return 2 * macs


def schedule_floor(size: int, bf16: bool) -> tuple[int, float]:
    """VGG passes of the paper's schedule at ``size`` and their time when nothing else costs anything.

    Each Adam step is one forward + backward at its scale's size (square images, as the
    benchmark's content is); the searches and everything else count as free.
    """
    from nnst_hr import NNSTConfig

    config = NNSTConfig(size=size)
    scales = config.scales()
    passes = [(scale, config.steps_at(len(scales) - 1 - i)) for i, scale in enumerate(scales)]
    passes.append((size, config.split_steps))
    seconds = sum(steps * vgg_pass_seconds(scale, bf16) for scale, steps in passes)
    return sum(steps for _, steps in passes), seconds


def run_one(size: int, mode: str, steps: int | None, out: Path | None) -> dict:
    """Stylize the sample pair once; return timings, objective and peak memory."""
    from nnst_hr import NNSTConfig, nnst_objective, stylize
    from nnst_hr.files import read_image, write_image

    config = NNSTConfig(size=size, exact=mode == "exact")
    if steps is not None:
        config.steps = config.split_steps = steps
    style = read_image(STYLE)
    result = stylize(read_image(CONTENT), style, config)
    if out is not None:
        write_image(out / f"nnst_{size}_{mode}.png", result.raw, overwrite=True)
    # fast mode reports an upper bound from its shortlist: rescore with the exhaustive search
    objective = result.objective if config.exact else nnst_objective(result.raw, style, config)
    return {
        "timings": result.timings,
        "objective": objective,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    }


def main() -> None:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the CLI does, before torch loads
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--modes", nargs="+", default=["fast", "exact"], choices=["fast", "exact"])
    parser.add_argument("--steps", type=int, default=None, help="override steps per scale and split steps")
    parser.add_argument("--out", type=Path, default=None, help="folder for the raw results (visual check)")
    parser.add_argument("--child", nargs=2, metavar=("SIZE", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        print(json.dumps(run_one(int(args.child[0]), args.child[1], args.steps, args.out)))
        return

    import torch

    from nnst_hr.device import bf16_enabled

    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
    for size in args.sizes:
        vgg = vgg_pass_seconds(size)
        print(f"\n== {size} px: one VGG16 forward+backward = {vgg:.3f} s")
        if args.steps is None:
            bf16 = bf16_enabled(torch.device("cpu"), True)
            macs = vgg_pass_macs(size) / vgg_pass_seconds(size, bf16)
            passes, floor = schedule_floor(size, bf16)
            print(f"   VGG16 {'bf16' if bf16 else 'fp32'} forward+backward: {macs / 1e9:.0f} GMAC/s; the paper's "
                  f"schedule is {passes} such passes, {floor:.0f} s with everything else free"
                  + (f" (10x the authors' is {AUTHORS_SECONDS[size] / 10:.0f} s)" if size in AUTHORS_SECONDS else ""))
        results = {}
        for mode in args.modes:
            cmd = [sys.executable, __file__, "--child", str(size), mode]
            if args.steps is not None:
                cmd += ["--steps", str(args.steps)]
            if args.out is not None:
                cmd += ["--out", str(args.out)]
            line = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
            res = results[mode] = json.loads(line)
            t = res["timings"]
            stages = ", ".join(f"{k} {v:.1f}s" for k, v in t.items() if k != "total")
            print(f"{mode:>5}: total {t['total']:.1f} s = {t['total'] / vgg:.0f} VGG passes; "
                  f"peak {res['peak_rss_gb']:.2f} GB; objective (exhaustive search) {res['objective']:.5f}")
            print(f"       {stages}")
            if args.steps is None and size in AUTHORS_SECONDS:
                print(f"       vs the authors' code ({AUTHORS_SECONDS[size]:.0f} s here): "
                      f"{AUTHORS_SECONDS[size] / t['total']:.1f}x faster")
        if {"fast", "exact"} <= results.keys():
            f, e = results["fast"], results["exact"]
            diff = (f["objective"] - e["objective"]) / e["objective"]
            print(f"fast vs exact: {e['timings']['total'] / f['timings']['total']:.2f}x faster, "
                  f"objective {diff:+.2%}")


if __name__ == "__main__":
    main()
