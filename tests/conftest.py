"""Fixtures shared by the NNST tests."""

import numpy as np
import pytest


@pytest.fixture(scope="module")
def images():
    """A smooth content (72, 88) and a striped, noisy style (64, 88), float32 sRGB."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:72, 0:88] / 88.0
    content = np.stack([yy, xx, 0.5 + 0.3 * np.sin(8 * xx)], -1).astype(np.float32)
    stripes = (np.sin(xx * 40 + yy * 10) > 0).astype(np.float32)
    style = np.stack([stripes, 0.3 + 0.4 * rng.random(xx.shape), 1 - stripes], -1).astype(np.float32)
    return content, style[:64, :88]
