"""nnst-hr: high-resolution, optionally mask-guided Neural Neighbor Style Transfer.

The Python API takes and returns NumPy images (float32 (H, W, 3), sRGB in [0, 1]):

>>> from nnst_hr import NNSTConfig, stylize                     # doctest: +SKIP
>>> result = stylize(content, style, NNSTConfig(size=512))       # doctest: +SKIP
>>> result.image.shape, result.field.shape                       # doctest: +SKIP
((512, 512, 3), (128, 128, 3))
"""

import os

# torch's OpenMP workers spin while they wait; on a 2-core machine that shares its cores
# with another process this made steps up to 10x slower (measured). Passive waiting costs
# about 15 % on an idle machine: set OMP_WAIT_POLICY yourself to choose otherwise.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"

from .config import NNSTConfig, PosterConfig  # noqa: E402
from .errors import InputError  # noqa: E402

__all__ = ["NNSTConfig", "PosterConfig", "InputError", "StylizeResult", "stylize", "nnst_objective", "__version__"]


def __getattr__(name: str):
    # torch takes seconds to import: load it only when the API is used, not for `--help`
    if name in ("stylize", "StylizeResult", "nnst_objective"):
        from . import nnst

        return getattr(nnst, name)
    raise AttributeError(f"module 'nnst_hr' has no attribute {name!r}")
