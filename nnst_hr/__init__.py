"""nnst-hr: high-resolution, optionally mask-guided Neural Neighbor Style Transfer.

The Python API takes and returns NumPy images (float32 (H, W, 3), sRGB in [0, 1]):

>>> from nnst_hr import NNSTConfig, stylize                     # doctest: +SKIP
>>> result = stylize(content, style, NNSTConfig(size=512))       # doctest: +SKIP
>>> result.image.shape, result.field.shape                       # doctest: +SKIP
((512, 512, 3), (128, 128, 3))

Importing or calling the library leaves the process as it was: no environment variables,
no global RNG state, no thread counts. One trace: NNST's optimization loops at large sizes set
glibc's malloc to reuse its heap and restore it after (``memory.heap_reuse``), after which
glibc's mmap threshold no longer adapts. The ``nnst-hr`` command sets ``OMP_WAIT_POLICY=PASSIVE``
for itself; a program that shares its cores with other work may want to set it before
importing torch (README, "Speed").
"""

__version__ = "0.1.0"

from .config import NNSTConfig, PosterConfig  # noqa: E402
from .errors import InputError  # noqa: E402

__all__ = ["NNSTConfig", "PosterConfig", "InputError", "StylizeResult", "stylize", "nnst_objective",
           "NNSTResult", "synthesize_nnst", "__version__"]

_LAZY = ("stylize", "StylizeResult", "nnst_objective", "NNSTResult", "synthesize_nnst")


def __getattr__(name: str):
    # torch takes seconds to import: load it only when the API is used, not for `--help`
    if name in _LAZY:
        from . import nnst

        return getattr(nnst, name)
    raise AttributeError(f"module 'nnst_hr' has no attribute {name!r}")
