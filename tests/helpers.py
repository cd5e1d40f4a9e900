"""Helpers shared by the test modules: skip without cached weights, write small test images, count records."""

from __future__ import annotations

import weakref
from pathlib import Path

import numpy as np
import pytest

from nnst_hr.errors import InputError
from nnst_hr.experiment.cache import Cache
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


class CountingCache(Cache):
    """A stage cache that keeps a weak reference to every array it writes or reads and, at each
    write or read, counts how many of them are alive: the records this process still holds.

    ``track`` adds other arrays (a stage's output that is never written); ``gets`` counts reads.
    """

    def __init__(self, folder):
        super().__init__(folder)
        self.arrays: list = []
        self.peak = 0
        self.gets = 0

    def track(self, record: dict | None) -> None:
        for value in (record or {}).values():
            if isinstance(value, np.ndarray) and not any(ref() is value for ref in self.arrays):
                self.arrays.append(weakref.ref(value))
        self.peak = max(self.peak, self.alive())

    def alive(self) -> int:
        return sum(ref() is not None for ref in self.arrays)

    def put(self, key, record, meta=None):
        self.track(record)
        super().put(key, record, meta=meta)

    def get(self, key):
        self.gets += 1
        record = super().get(key)
        self.track(record)
        return record


# a plan whose one NNST task has two scales (32 and 64 px), so that it can stop after the first
RESUME_PLAN = """
[[pair]]
content = "c.png"
style = "s.png"

[fixed]
size = 64
coarsest = 32
steps = 2
split_steps = 1
rotate = false
seed = {seed}
"""
