"""Helpers shared by the CLI test modules: skip without cached weights, write small test images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nnst_hr.errors import InputError
from nnst_hr.files import write_image
from nnst_hr.weights import resolve_weights


def _weights_found() -> bool:
    try:
        resolve_weights(allow_download=False)
    except InputError:
        return False
    return True


needs_weights = pytest.mark.skipif(not _weights_found(), reason="VGG16 weights not cached (run `nnst-hr weights`)")


def image_file(path: Path, width: int, height: int, seed: int = 0) -> Path:
    """A smooth colour gradient with some noise, written as an 8-bit PNG."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(width, height)
    image = np.stack([x, y, 1 - (x + y) / 2], axis=-1) * 0.8 + rng.random((height, width, 3)) * 0.2
    return write_image(path, image.astype(np.float32))
