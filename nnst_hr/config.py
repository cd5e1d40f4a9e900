"""Every tunable parameter of an nnst-hr run, with the paper's defaults.

The CLI maps its options one to one onto these fields; ``config.json`` in a
run folder holds ``to_dict()`` of both, and ``from_dict`` reads them back
(``nnst-hr run --config RUN/config.json``).
"""

from __future__ import annotations

import math
import numbers
import typing
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import asdict, dataclass, fields
from functools import partial
from typing import Literal

from .errors import InputError

MIN_SIZE = 32  # smallest image side VGG's relu4 layers can work on (a 4 px grid)
MAX_SIZE = 32768  # largest NNST long side: already terabytes of memory (memory.py's model); more fits no machine
# largest poster long side: its render and colour stages alone need terabytes there, as NNST at MAX_SIZE (memory.py:
# 40 bytes per poster pixel, 52 when it was searched smaller); the atlas field's int32 columns (4 copies of the
# exemplar side by side at the poster's scale) would hold up to 2**29
MAX_OUT_SIZE = 2**18
# largest search size: patchsynth indexes the atlas at the search scale (4 copies of an exemplar up to this long
# side, about 4 * side**2 pixels) with int32 flat indices, which overflow from about 23170 px
MAX_SEARCH_SIZE = 16384
MAX_SEED = 2**63 - 1  # torch's generators take a signed 64-bit seed, NumPy's a non-negative one
MAX_LR = 1.0  # Adam steps on pyramid coefficients of [0, 1] pixels: one step of 1 already crosses the range
# largest weight (and color_sharpness): one that large already drowns every other term; a weight of 1e308 became
# infinite in float32 (NaN energies and a poster of arbitrary patches, said to be fine; NaN color)
MAX_WEIGHT = 1e6
# largest source_blur (px): a wider blur leaves the guide a smear of the exemplar, and scipy's kernel grows with
# it (1e308 was a traceback that ended the whole experiment)
MAX_SOURCE_BLUR = 64.0
# the fields that `nnst-hr run` sets with an option of the same name (--out-size: out_size); messages about a
# value that came from the command line name the option (field_label)
CLI_FIELDS = frozenset({"size", "steps", "split_steps", "alpha", "color", "rotate", "exact", "bf16", "device", "seed",
                        "guide_weight", "guide_mode", "out_size", "nnst_weight", "mask_weight", "uniformity",
                        "render", "max_search_size"})
Naming = Literal["cli", "plan", "config"]  # where a config's values came from: the run command, a plan, config.json
_NAMING: ContextVar[Naming] = ContextVar("nnst_hr_naming", default="cli")  # see values_from


@dataclass
class NNSTConfig:
    """Parameters of Neural Neighbor Style Transfer (Kolkin et al. 2022).

    Examples
    --------
    >>> cfg = NNSTConfig(size=256, alpha=0.5)
    >>> cfg.scales()
    [64, 128, 256]
    """

    # --- resolution and schedule
    size: int = 1024  # long side of the NNST output in pixels
    coarsest: int = 64  # long side of the first (coarsest) scale; scales double up to `size`
    steps: int = 200  # Adam steps per scale of hypercolumn matching
    finest_steps: int | None = None  # Adam steps of hypercolumn matching at full size (None: `steps`)
    split_steps: int = 200  # Adam steps of the final feature-splitting pass at full size
    lr: float = 2e-3  # Adam learning rate on the Laplacian-pyramid coefficients
    pyramid_levels: int = 8  # Laplacian levels of the output parameterization (capped by image size)

    # --- matching
    alpha: float = 0.25  # stylization: weight of the current output in the query image (0 = content only)
    rotate: bool = True  # also match against the style rotated by 90, 180 and 270 degrees
    split_sample: int = 64  # feature splitting subsamples layers larger than this to about this many rows/cols

    # --- guidance (only used when masks are given)
    guide_weight: float = 0.5  # w_guide; the cosine term gets 1 - w_guide
    guide_mode: Literal["soft", "hard"] = "soft"  # hard: matches restricted to the same label

    # --- color post-processing
    color: bool = True  # keep the output's lightness, take the content's chroma matched to the style's
    color_iterations: int = 5  # iterations of the 3x3 lightness-guided chroma filter
    color_sharpness: float = 10.0  # filter weight exp(-sharpness * |dL|), OkLab L in [0, 1]
    mono_threshold: float = 6e-5  # skip color transfer when the style's largest OkLab chroma variance is below

    # --- speed and precision
    exact: bool = False  # reference mode: fp32 everywhere and exhaustive searches
    bf16: bool = True  # bf16 VGG and candidate search (fp32 final choice) where bf16 is fast (CUDA, AMX / AVX512-BF16)
    search_dims: int = 128  # fast search shortlists candidates on this many principal axes
    candidates: int = 16  # fast search compares this many shortlisted keys per query exactly
    split_refresh: int = 2  # fast feature splitting searches at most every this many steps (exact: every step)

    # --- run
    device: Literal["auto", "cpu", "cuda"] = "auto"  # where the tensors live
    seed: int = 0  # seeds the feature-splitting subsampling (and everything else random)

    def scales(self) -> list[int]:
        """Long side of each scale, coarse to fine: ``coarsest * 2**k`` below ``size``, then ``size``."""
        out = [self.size]
        while out[0] // 2 >= self.coarsest:
            out.insert(0, out[0] // 2)
        return out

    def validate(self, naming: Naming | None = None) -> None:
        """Raise :class:`InputError` for a value of the wrong type or out of range (before any computation).

        ``naming``: where the values came from, which says how the message names a field
        (:func:`field_label`: ``--seed``, ``seed`` in a plan, ``NNSTConfig.seed`` in config.json;
        None: as :func:`values_from` set it, by default the run command's options).

        >>> NNSTConfig(seed=-1).validate(naming="plan")
        Traceback (most recent call last):
        ...
        nnst_hr.errors.InputError: seed must be between 0 and 9223372036854775807, got -1
        """
        check_types(self, naming)
        name = partial(field_label, type(self), naming=naming)
        for field in ("alpha", "guide_weight"):
            if not 0.0 <= getattr(self, field) <= 1.0:
                raise InputError(f"{name(field)} must be between 0 and 1, got {getattr(self, field)}")
        if self.size < MIN_SIZE:
            raise InputError(f"{name('size')} must be at least {MIN_SIZE} px, got {self.size}")
        if self.size > MAX_SIZE:  # was an "upscaled" warning per input, then "needs about more than 1000 PB"
            raise InputError(f"{name('size')} must be at most {MAX_SIZE} px (an NNST result that large already "
                             f"needs terabytes of memory), got {self.size}")
        for field in ("steps", "split_steps"):
            if getattr(self, field) < 0:
                raise InputError(f"{name(field)} must not be negative, got {getattr(self, field)}")
        if not 0 <= self.seed <= MAX_SEED:
            raise InputError(f"{name('seed')} must be between 0 and {MAX_SEED}, got {self.seed}")
        _at_least(self, naming, MIN_SIZE, "coarsest")
        _at_least(self, naming, 0, "finest_steps", "color_iterations")
        _at_least(self, naming, 1, "pyramid_levels", "split_sample", "search_dims", "candidates", "split_refresh")
        if not (math.isfinite(self.lr) and 0 < self.lr <= MAX_LR):  # 1e300 overflowed torch's float32: a traceback
            raise InputError(f"{name('lr')} must be a positive finite number up to {MAX_LR:g}, got {self.lr}")
        _finite_non_negative(self, naming, "color_sharpness", "mono_threshold")
        _at_most(self, naming, MAX_WEIGHT, "a larger one already stops the filter at every step of lightness",
                 "color_sharpness")

    def steps_at(self, scale: int) -> int:
        """Hypercolumn steps at pyramid scale ``scale`` (0 = full size)."""
        return self.finest_steps if scale == 0 and self.finest_steps is not None else self.steps

    def rotation_ids(self) -> list[int]:
        """Quarter turns of the style that are matched: ``[0, 1, 2, 3]`` with ``rotate``, else ``[0]``."""
        return [0, 1, 2, 3] if self.rotate else [0]

    def to_dict(self) -> dict:
        """Every field by name (JSON-serializable)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> NNSTConfig:
        """The config of ``to_dict()``'s output; missing keys take defaults, unknown keys are an error.

        >>> NNSTConfig.from_dict(NNSTConfig(size=256).to_dict()).size
        256
        """
        return cls(**_known_fields(cls, data))


@dataclass
class PosterConfig:
    """Parameters of the high-resolution stage (guided patch synthesis from the NNST field)."""

    out_size: int | None = None  # long side of the poster; None or equal to NNST's size: no patch synthesis
    patch_size: int = 5  # side of the square patches copied from the style exemplar
    style_weight: float = 1.0  # weight of the synthesized image's own colors in the patch energy
    nnst_weight: float = 2.0  # weight of the NNST result (target) vs the blurred exemplar (source) as guide
    mask_weight: float = 1.0  # weight of the segmentation-label channels (with --guide)
    uniformity: float = 5e-4  # occupancy penalty on [0, 1] colors (ebsynth's 3500/255**2 smears fine detail here)
    search_vote_iters: int = 2  # search-and-vote iterations per level (the NNST seed makes 6 unnecessary)
    patchmatch_iters: int = 2  # PatchMatch sweeps per search
    max_search_size: int = 4096  # larger posters are searched at a power-of-two fraction, then upsampled and rendered
    source_blur: float = 1.0  # sigma (px at NNST scale) of the blur on the exemplar's guide
    render: Literal["copy", "vote"] = "copy"  # final pixels: copied from the matched exemplar pixel, or the patch vote

    def validate(self, naming: Naming | None = None) -> None:
        """Raise :class:`InputError` for a value of the wrong type or out of range (before any computation).

        ``naming``: as in :meth:`NNSTConfig.validate`.
        """
        check_types(self, naming)
        name = partial(field_label, type(self), naming=naming)
        if self.out_size is not None and self.out_size < MIN_SIZE:
            raise InputError(f"{name('out_size')} must be at least {MIN_SIZE} px, got {self.out_size}")
        if self.out_size is not None and self.out_size > MAX_OUT_SIZE:
            raise InputError(f"{name('out_size')} must be at most {MAX_OUT_SIZE} px (a poster that large already needs "
                             f"terabytes of memory), got {self.out_size}")
        _finite_non_negative(self, naming, "nnst_weight", "mask_weight", "uniformity")
        if self.max_search_size < MIN_SIZE:
            raise InputError(f"{name('max_search_size')} must be at least {MIN_SIZE} px, got {self.max_search_size}")
        if self.max_search_size > MAX_SEARCH_SIZE:
            raise InputError(f"{name('max_search_size')} must be at most {MAX_SEARCH_SIZE} px (the synthesis indexes "
                             f"its exemplar with 32-bit integers), got {self.max_search_size}")
        if self.patch_size < 1 or self.patch_size % 2 == 0:
            raise InputError(f"{name('patch_size')} must be a positive odd number, got {self.patch_size}")
        _at_least(self, naming, 0, "search_vote_iters", "patchmatch_iters")
        _finite_non_negative(self, naming, "style_weight", "source_blur")
        _at_most(self, naming, MAX_WEIGHT, "a weight that large already drowns every other term", "nnst_weight",
                 "mask_weight", "uniformity", "style_weight")
        _at_most(self, naming, MAX_SOURCE_BLUR, "px; a wider blur leaves only a smear of the exemplar",
                 "source_blur")

    def to_dict(self) -> dict:
        """Every field by name (JSON-serializable)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> PosterConfig:
        """The config of ``to_dict()``'s output; missing keys take defaults, unknown keys are an error.

        >>> PosterConfig.from_dict({"out_size": 2048}).out_size
        2048
        """
        return cls(**_known_fields(cls, data))


def _known_fields(cls, data: dict) -> dict:
    """``data`` if every key names a field of the dataclass ``cls`` and every value has the field's type
    (ints are taken for floats, JSON's null for None); else :class:`InputError` naming the parameter."""
    if not isinstance(data, dict):
        raise InputError(f"{cls.__name__}: expected a mapping of parameters, got {type(data).__name__}")
    unknown = sorted(set(data) - {f.name for f in fields(cls)})
    if unknown:
        raise InputError(f"{cls.__name__}: unknown parameter(s) {', '.join(unknown)}; "
                         f"known: {', '.join(f.name for f in fields(cls))}")
    hints = typing.get_type_hints(cls)
    out = {}
    for name, value in data.items():
        try:
            out[name] = checked_value(hints[name], value, none="null")
        except InputError as exc:
            raise InputError(f"{cls.__name__}.{name}: {exc}") from None
    return out


def checked_value(hint, value, *, none: str = '"none"'):
    """``value`` if it has the type ``hint`` names (an int given for a float is converted).

    ``hint`` is a field's annotation: ``int``, ``float``, ``bool``, ``str``, a ``Literal``, or
    one of these ``| None``. Raises :class:`InputError` ("must be int, got str '64'") otherwise;
    the caller prefixes the message with where the value came from (``none``: how the file at
    hand spells None, for the message).

    >>> checked_value(float, 2)
    2.0
    >>> checked_value(Literal["soft", "hard"], "hard")
    'hard'
    """
    args = typing.get_args(hint)
    optional = type(None) in args
    if optional and value is None:
        return None
    base = next((a for a in args if a is not type(None)), hint) if optional else hint
    if typing.get_origin(base) is Literal:
        if value not in typing.get_args(base):
            raise InputError(f"must be one of {', '.join(map(repr, typing.get_args(base)))}, got {value!r}")
        return value
    if base is bool:
        ok = isinstance(value, bool)
    elif base is int:  # numbers.*: NumPy's scalars count too
        ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    elif base is float:
        ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
        value = float(value) if ok else value
    else:
        ok = isinstance(value, base)
    if not ok:
        extra = f" (or {none})" if optional else ""
        raise InputError(f"must be {base.__name__}{extra}, got {type(value).__name__} {value!r}")
    return value


@contextmanager
def values_from(naming: Naming) -> Iterator[None]:
    """Within the block, messages about config values name the fields as ``naming`` says (:func:`field_label`).

    For the messages of code that gets only a config, deep in a stage: an experiment's stages run
    with ``values_from("plan")``, so that "at --size 64 an image is too thin" reads "at size 64".
    """
    token = _NAMING.set(naming)
    try:
        yield
    finally:
        _NAMING.reset(token)


def field_label(cls: type, name: str, naming: Naming | None = None) -> str:
    """How a message names the field ``name`` of the config class ``cls``, by where its value came from.

    ``"cli"``: the run command's option (``--out-size``), or ``PosterConfig.patch_size`` for a
    field that has none; ``"plan"``: the experiment plan's key (``out_size``); ``"config"``:
    the field as ``config.json``'s messages name it (``PosterConfig.out_size``); None: the
    naming :func:`values_from` set (``"cli"`` outside it).

    >>> [field_label(PosterConfig, "out_size", n) for n in ("cli", "plan", "config")]
    ['--out-size', 'out_size', 'PosterConfig.out_size']
    >>> field_label(PosterConfig, "patch_size")
    'PosterConfig.patch_size'
    """
    naming = naming or _NAMING.get()
    if naming == "plan":
        return name
    if naming == "cli" and name in CLI_FIELDS:
        return "--" + name.replace("_", "-")
    return f"{cls.__name__}.{name}"


def option_label(option: str, naming: Naming | None = None) -> str:
    """How a message names a run option that is no config field (``--print``, ``--dpi``, ``--fit``):
    the option on the command line, else its key in ``config.json`` (``print``); ``naming`` as in
    :func:`field_label`.

    >>> option_label("--jpeg-quality"), option_label("--jpeg-quality", "config")
    ('--jpeg-quality', 'jpeg_quality')
    """
    return option if (naming or _NAMING.get()) == "cli" else option.lstrip("-").replace("-", "_")


def check_types(config, naming: Naming | None = None) -> None:
    """Raise :class:`InputError` for a field of the dataclass ``config`` whose value is not of its type
    (``naming``: how the message names it, :func:`field_label`)."""
    hints = typing.get_type_hints(type(config))
    for f in fields(config):
        try:
            checked_value(hints[f.name], getattr(config, f.name))
        except InputError as exc:
            raise InputError(f"{field_label(type(config), f.name, naming)}: {exc}") from None


def _at_least(config, naming: Naming | None, minimum: int, *names: str) -> None:
    """Raise :class:`InputError` for an int field of ``config`` below ``minimum`` (None passes)."""
    for name in names:
        value = getattr(config, name)
        if value is not None and value < minimum:
            raise InputError(f"{field_label(type(config), name, naming)} must be at least {minimum}, got {value}")


def _at_most(config, naming: Naming | None, maximum: float, why: str, *names: str) -> None:
    """Raise :class:`InputError` for a (finite) field of ``config`` above ``maximum``, saying ``why``."""
    for name in names:
        value = getattr(config, name)
        if value > maximum:
            raise InputError(f"{field_label(type(config), name, naming)} must be at most {maximum:g} ({why}), "
                             f"got {value:g}")


def _finite_non_negative(config, naming: Naming | None, *names: str) -> None:
    for name in names:
        value = getattr(config, name)
        if not (math.isfinite(value) and value >= 0):
            raise InputError(f"{field_label(type(config), name, naming)} must be a finite number >= 0, got {value}")
