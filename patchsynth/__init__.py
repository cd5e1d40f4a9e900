"""patchsynth: guided patch synthesis (StyLit / ebsynth style) in NumPy and Numba.

Builds a target image out of patches of a source (style) image so that the target's guide
channels match the source's, with every source patch used about equally often. Pipeline, one
module per stage: :mod:`~patchsynth.pyramid` (antialiased levels) → :mod:`~patchsynth.field`
(random, initial and upsampled fields) → :mod:`~patchsynth.patchmatch` (search, with the
penalty of :mod:`~patchsynth.uniformity`) → :mod:`~patchsynth.vote`, driven coarse to fine by
:mod:`~patchsynth.synthesis`.

Examples
--------
>>> import numpy as np, patchsynth
>>> style = np.random.default_rng(0).random((48, 48, 3), dtype=np.float32)
>>> result = patchsynth.synthesize(style, style, style[8:40, 8:40])
>>> result.image.shape
(32, 32, 3)
"""

from .errors import PatchSynthError
from .synthesis import Synthesis, synthesize

__all__ = ["PatchSynthError", "Synthesis", "synthesize"]
