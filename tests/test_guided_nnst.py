"""Guided NNST: masks steer the field (the paper's section 5)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from guidance import load_mask_files
from nnst_hr import NNSTConfig, stylize


@pytest.fixture(scope="module")
def synthetic_pair(tmp_path_factory):
    """Content: a flat-ish photo whose left half is label A, right half B.

    Style: region A (top) holds green stripes, region B (bottom) red blobs; the content's
    colors are closer to B everywhere, so only the guide can send the left half to A.
    """
    folder = tmp_path_factory.mktemp("pair")
    yy, xx = np.mgrid[0:64, 0:64].astype(np.float32)
    content = np.stack([0.6 + 0.1 * np.sin(xx / 5), 0.3 + 0.1 * np.cos(yy / 4), 0.3 + 0 * xx], -1)
    yy, xx = np.mgrid[0:96, 0:64].astype(np.float32)
    style = np.zeros((96, 64, 3), np.float32)
    style[:48, :, 1] = 0.5 + 0.4 * np.sin(xx[:48] / 1.5)
    style[48:, :, 0] = 0.5 + 0.4 * (np.sin(xx[48:] / 3) * np.sin(yy[48:] / 3) > 0)
    cm = np.zeros((64, 64, 3), np.uint8)
    cm[:, :32] = (255, 255, 0)
    cm[:, 32:] = (0, 255, 255)
    sm = np.zeros((96, 64, 3), np.uint8)
    sm[:48] = (255, 255, 0)
    sm[48:] = (0, 255, 255)
    Image.fromarray(cm).save(folder / "cm.png")
    Image.fromarray(sm).save(folder / "sm.png")
    masks = load_mask_files(folder / "cm.png", folder / "sm.png", (64, 64), (96, 64))
    return content.astype(np.float32), style, masks


def left_half_in_region_a(result):
    nnf = result.field
    assert (nnf[..., 0] == 0).all()  # rotations are off here
    rows = nnf[..., 1] / result.style_size[0]
    left = rows[:, : nnf.shape[1] // 2 - 1]
    return (left < 0.5).mean()


def test_guidance_sends_label_a_to_style_region_a(synthetic_pair):
    content, style, masks = synthetic_pair
    cfg = NNSTConfig(size=96, coarsest=48, steps=5, split_steps=3, rotate=False, color=False, device="cpu")
    guided = stylize(content, style, cfg, masks=masks)
    unguided = stylize(content, style, cfg)
    assert left_half_in_region_a(guided) >= 0.95
    assert left_half_in_region_a(unguided) < 0.5


def test_hard_mode_never_crosses_labels(synthetic_pair):
    content, style, masks = synthetic_pair
    cfg = NNSTConfig(size=96, coarsest=48, steps=3, split_steps=2, rotate=False, color=False, device="cpu",
                     guide_mode="hard")
    result = stylize(content, style, cfg, masks=masks)
    rows = result.field[..., 1] / result.style_size[0]
    cols = result.field.shape[1]
    # cells whose 4x4 footprint lies entirely inside one label
    assert (rows[:, : cols // 2 - 1] < 0.5).all()
    assert (rows[:, cols // 2 + 1:] >= 0.5).all()
