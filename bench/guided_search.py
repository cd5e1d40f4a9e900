"""Benchmark: the cost of the guide term in the hypercolumn search.

The guided search folds the guide distance into the same matrix product as the cosine
term (a few extra columns), so it should cost at most 15 % more than the unguided one.
Measured on the bundled guided pair at NNST's 512 px scale (queries 128 x 128 cells,
keys 4 rotations of the style), exhaustive and fast search, baseline = unguided.

    python bench/guided_search.py [--size 512]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the CLI does, before torch loads

import torch  # noqa: E402

from guidance import load_masks
from nnst_hr.config import NNSTConfig
from nnst_hr.files import read_image
from nnst_hr.hypercolumns import VGGLayers, feature_grid, hypercolumns
from nnst_hr.matching import augment, search
from nnst_hr.nnst import MaskGuides
from nnst_hr.tensors import resize_long_side, to_tensor
from nnst_hr.weights import build_vgg16_features

PAIR = Path(__file__).resolve().parents[1] / "samples/guided/louvre_to_house"


def timed(fn, repeats: int = 3) -> tuple[float, object]:
    out, times = None, []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return min(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    args = parser.parse_args()

    cpu = torch.device("cpu")
    content, style = read_image(PAIR / "content.png"), read_image(PAIR / "style.png")
    masks = load_masks(PAIR, content.shape[:2], style.shape[:2])
    vgg = VGGLayers(build_vgg16_features())
    c = resize_long_side(to_tensor(content, cpu), args.size)
    s = resize_long_side(to_tensor(style, cpu), args.size)
    with torch.no_grad():
        grid = feature_grid(*c.shape[-2:])
        queries = hypercolumns(vgg(c), grid).flatten(2)[0].t()
        keys, grids = [], []
        for k in range(4):
            img = torch.rot90(s, k, dims=(2, 3))
            grids.append(feature_grid(*img.shape[-2:]))
            keys.append(hypercolumns(vgg(img), grids[-1]).flatten(2)[0].t())
        keys = torch.cat(keys)
    print(f"{args.size} px: {queries.shape[0]} queries x {keys.shape[0]} keys x {keys.shape[1]} channels, "
          f"{masks.n_labels} labels")
    for exact in (True, False):
        name = "exhaustive" if exact else "fast"
        t_plain, (_, plain) = timed(lambda exact=exact: search(*augment(queries, keys, None), exact=exact))
        for mode in ("soft", "hard"):
            guides = MaskGuides(masks, NNSTConfig(guide_mode=mode), cpu).for_search(grid, grids, [0, 1, 2, 3])
            t_guided, (_, found) = timed(
                lambda exact=exact, guides=guides: search(*augment(queries, keys, guides), exact=exact))
            changed = (found != plain).float().mean().item()
            print(f"{name:>10} {mode}: unguided {t_plain:.2f} s, guided {t_guided:.2f} s, "
                  f"ratio {t_guided / t_plain:.3f} (goal <= 1.15); matches changed by the guide: {changed:.1%}")


if __name__ == "__main__":
    main()
