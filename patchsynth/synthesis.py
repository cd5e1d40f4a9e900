"""Guided patch synthesis, coarse to fine (StyLit, Fišer et al. 2016; ebsynth).

The target is built from patches of the source so that, patch by patch, the target's guide
channels match the source's guide channels and the target's style estimate matches the source
style, with every source patch used about equally often. Per pyramid level, coarse to fine::

    field  <- random | init_field rescaled | field of the coarser level upsampled
    image  <- plain vote of the field
    repeat search_vote_iters times:
        repeat patchmatch_iters times: PatchMatch sweep (patchmatch.py, uniformity.py)
        image <- weighted vote of the field (vote.py)

Defaults follow ebsynth's: patch 5, 6 search-vote iterations x 4 PatchMatch sweeps on every
level, as many levels as keep the smaller side at 11 px or more (two patches and a pixel for larger
patches), style weight 1 split over its channels, guide weight 1 split over the guide channels,
uniformity 3500 on ebsynth's 0..255 scale.
"""

import contextlib
import dataclasses
from collections.abc import Callable, Sequence

import numba
import numpy as np

from . import features, patchmatch, pyramid, validation, vote
from . import field as fields
from . import uniformity as uniform
from .errors import PatchSynthError

#: Patch side in pixels.
PATCH_SIZE = 5
#: Search-vote iterations per level.
SEARCH_VOTE_ITERS = 6
#: PatchMatch sweeps per search-vote iteration.
PATCHMATCH_ITERS = 4
#: ebsynth's uniformity weight 3500 on 0..255 values, rescaled to [0, 1] values.
UNIFORMITY = 3500.0 / 255.0**2
#: Total weight of the style channels, split evenly over them.
STYLE_WEIGHT = 1.0
#: Total weight of the guide channels, split evenly over them.
GUIDE_WEIGHT = 1.0
#: Levels with fewer target pixels run on one thread.
PARALLEL_MIN_PIXELS = 256 * 256
#: Accepted channel counts.
MAX_STYLE_CHANNELS = 4
MAX_GUIDE_CHANNELS = 24

#: A downsampled mask value below 1 - this marks a coarse pixel that touches an excluded one.
_MASK_TOLERANCE = 1e-3
#: Random stages, mixed into the seed.
_INIT, _RESCALE, _SWEEP = 0, 1, 2


@dataclasses.dataclass(frozen=True)
class Synthesis:
    """The result of :func:`synthesize`.

    Attributes
    ----------
    image : float32 (Ht, Wt, Cs)
        The synthesized style channels.
    field : int32 (Ht, Wt, 2)
        ``(y, x)`` of the source patch centre copied at each target pixel.
    error : float32 (Ht, Wt)
        Patch error of each target pixel against its source patch (weighted squared differences
        summed over the patch and the channels, without the uniformity penalty).
    """

    image: np.ndarray
    field: np.ndarray
    error: np.ndarray


@dataclasses.dataclass
class _Source:
    """One source pyramid level: 8-bit padded features and candidate records, padded float style,
    valid centres."""

    features: np.ndarray
    records: np.ndarray
    style: np.ndarray
    valid: np.ndarray
    candidates: np.ndarray
    style_factor: np.ndarray
    unit: float

    @property
    def shape(self):
        return self.valid.shape


def synthesize(
    source: np.ndarray,
    source_guides: np.ndarray,
    target_guides: np.ndarray,
    *,
    style_weight: float | Sequence[float] = STYLE_WEIGHT,
    guide_weights: float | Sequence[float] = GUIDE_WEIGHT,
    patch_size: int = PATCH_SIZE,
    levels: int | None = None,
    search_vote_iters: int = SEARCH_VOTE_ITERS,
    patchmatch_iters: int = PATCHMATCH_ITERS,
    uniformity: float = UNIFORMITY,
    search_radius: int | None = None,
    init_field: np.ndarray | None = None,
    source_mask: np.ndarray | None = None,
    start_size: int | None = None,
    max_search_size: int | None = None,
    seed: int = 0,
    progress: Callable[[dict], None] | None = None,
) -> Synthesis:
    """Synthesize a target from patches of ``source`` guided by ``source_guides`` and ``target_guides``.

    Parameters
    ----------
    source : float32 (Hs, Ws, Cs)
        Style channels in ``[0, 1]``, ``1 <= Cs <= 4``.
    source_guides : float32 (Hs, Ws, Cg)
        Guide channels of the source in ``[0, 1]`` (as the style; they are quantized to 8 bits
        over it), ``1 <= Cg <= 24``.
    target_guides : float32 (Ht, Wt, Cg)
        Guide channels of the target, likewise; the output has this size.
    style_weight : float or sequence of Cs floats
        Weight of the style channels: a number is the total, split evenly over the channels.
    guide_weights : float or sequence of Cg floats
        Weight of the guide channels: a number is the total, split evenly over the channels.
    patch_size : int
        Odd patch side.
    levels : int, optional
        Pyramid levels; by default as many as keep the smaller side of source and target at
        11 px or more, and at ``2 * patch_size + 1`` px for larger patches.
    search_vote_iters, patchmatch_iters : int
        Search-vote iterations per level and PatchMatch sweeps per iteration. With
        ``search_vote_iters = 0`` nothing is searched: the result is the vote of ``init_field``
        (or of a random field) at the target size.
    uniformity : float
        Weight of the occupancy penalty, on the scale of the patch error ([0, 1] values; the
        default is ebsynth's 3500 / 255**2); ``uniformity`` is the penalty of a source patch used
        exactly its fair share. 0 turns it off.
    search_radius : int, optional
        Largest random-search radius in source pixels of each level (one global sample per pixel
        and sweep is always drawn); by default the source's long side, as in ebsynth.
    init_field : int array (h, w, 2), optional
        ``(y, x)`` centres in ``source`` coordinates on any grid covering the target; it is rescaled
        to the first synthesized level and replaces the random start there (how an NNST field seeds
        the synthesis).
    source_mask : bool (Hs, Ws), optional
        Allowed source pixels; no patch of the result covers a pixel outside it.
    start_size : int, optional
        Long side, in pixels, of the first (coarsest) level synthesized: coarser levels are
        skipped. With ``init_field``, about half the init field's long side starts where it still
        means something.
    max_search_size : int, optional
        Levels whose long side exceeds this are not searched: the field of the last searched
        level is upsampled to the target size and voted once (Texler et al. 2020), which bounds
        time and memory for very large targets.
    seed : int
        Seed of every random choice; a seed gives the same result whatever the thread count.
    progress : callable, optional
        Called after each search-vote iteration with ``{"level", "levels", "iteration",
        "iterations", "size"}`` (level and iteration counted from 1, size the level's ``(h, w)``).

    Returns
    -------
    Synthesis
        ``image``, ``field`` and ``error`` at the target size.

    Raises
    ------
    PatchSynthError
        On inputs of the wrong type, shape, dtype or range.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> style = rng.random((32, 32, 3), dtype=np.float32)
    >>> result = synthesize(style, style, style, levels=1)
    >>> result.image.shape, result.field.shape, result.error.shape
    ((32, 32, 3), (32, 32, 2), (32, 32))
    """
    validation.check_images(source, source_guides, target_guides, MAX_STYLE_CHANNELS,
                            MAX_GUIDE_CHANNELS)
    cs, cg = source.shape[2], source_guides.shape[2]
    style_factor, guide_factor, unit = features.quantization(
        np.sqrt(validation.channel_weights(style_weight, cs, "style_weight")),
        np.sqrt(validation.channel_weights(guide_weights, cg, "guide_weights")),
    )
    validation.check_parameters(patch_size, levels, search_vote_iters, patchmatch_iters,
                                uniformity, search_radius, start_size, max_search_size, seed,
                                source.shape)
    mask = validation.check_mask(source_mask, source.shape)
    validation.check_init_field(init_field, source.shape)

    n_levels = levels or pyramid.max_levels(source.shape, target_guides.shape, patch_size=patch_size)
    target_shapes = pyramid.level_shapes(target_guides.shape[:2], n_levels)
    source_shapes = pyramid.level_shapes(source.shape[:2], n_levels)
    schedule = _schedule(target_shapes, search_vote_iters, start_size, max_search_size)
    visited = [level for level, _ in schedule]

    # Pyramids hold only the visited levels, finest first; each is popped when its turn comes.
    source_levels = pyramid.pyramid(np.concatenate([source, source_guides], axis=2),
                                    [source_shapes[level] for level in visited])
    mask_levels = pyramid.pyramid(mask[..., None].astype(np.float32),
                                  [source_shapes[level] for level in visited])
    target_levels = pyramid.pyramid(target_guides, [target_shapes[level] for level in visited])

    field = None if init_field is None else np.asarray(init_field, dtype=np.int32)
    field_source_shape = source.shape[:2]
    for step, (level, searched) in enumerate(reversed(schedule)):
        src = _source_level(source_levels.pop(), mask_levels.pop(), cs, style_factor,
                            guide_factor, unit, patch_size)
        guides = target_levels.pop()
        if field is None:
            field = fields.random_field(guides.shape[:2], src.candidates, src.shape[1],
                                        fields.stage_key(seed, _INIT, level))
        else:
            field = fields.rescale_field(field, field_source_shape, guides.shape[:2], src.valid,
                                         src.candidates, fields.stage_key(seed, _RESCALE, level))
        field_source_shape = src.shape
        target = features.feature_stack(None, guides, style_factor, guide_factor, patch_size // 2)
        del guides
        iterations = search_vote_iters if searched else 0
        with _threads_for(field.shape[0] * field.shape[1]):
            image = _synthesize_level(
                target, src, field, patch_size, iterations, patchmatch_iters, uniformity,
                search_radius, seed, level,
                _progress_at(progress, step + 1, len(schedule), iterations),
            )
    error = patchmatch.field_distances(_rows(target), _rows(src.features), field, patch_size,
                                       target.shape[2], unit)
    return Synthesis(image=image, field=field, error=error)


def _synthesize_level(target, src, field, patch_size, iterations, sweeps, uniformity,
                      search_radius, seed, level, progress):
    """Search and vote on one level; updates ``field`` and the style channels of ``target``.

    Returns the voted style image ``float32 (h, w, Cs)``.
    """
    channels = target.shape[2]
    target2d, source2d = _rows(target), _rows(src.features)
    image = vote.vote(src.style, field, np.zeros(field.shape[:2], np.float32), patch_size, 0.0)
    _set_style(target, image, src)
    scale = uniform.penalty_scale(uniformity, patch_size, field.shape[0] * field.shape[1],
                                  src.candidates.size)
    if iterations and scale == 0.0:
        # Without uniformity the occupancy is never read: only the forbidden marks matter.
        uniform.store_occupancy(field, src.valid, patch_size, src.records)
    for iteration in range(iterations):
        distance = patchmatch.field_distances(target2d, source2d, field, patch_size, channels,
                                              src.unit)
        target_sums = patchmatch.patch_sums(target, patch_size)
        for sweep in range(sweeps):
            if scale != 0.0:
                uniform.store_occupancy(field, src.valid, patch_size, src.records)
            patchmatch.sweep(
                target2d, source2d, target_sums, src.records, field, distance, scale,
                patch_size, channels, src.unit, sweep % 2 == 1, search_radius or max(src.shape),
                fields.stage_key(seed, _SWEEP, level, iteration, sweep),
            )
        image = vote.vote(src.style, field, distance, patch_size, 1.0 / (patch_size**2 * channels))
        _set_style(target, image, src)
        if progress is not None:
            progress(iteration + 1, field.shape[:2])
    return image


def _progress_at(progress, level, levels, iterations):
    """Bind the level part of the ``progress`` report; ``None`` stays ``None``."""
    if progress is None:
        return None

    def report(iteration, size):
        progress({"level": level, "levels": levels, "iteration": iteration,
                  "iterations": iterations, "size": (int(size[0]), int(size[1]))})

    return report


def _schedule(target_shapes, search_vote_iters, start_size, max_search_size):
    """Levels to visit, finest (0) first, as ``(level, searched)`` pairs.

    Levels coarser than ``start_size`` are dropped, and so are levels above ``max_search_size``
    except the finest, which is then voted without search. Without iterations only the finest
    level is visited, to vote the initial field.
    """
    if search_vote_iters == 0:
        return [(0, False)]
    levels = range(len(target_shapes))
    if start_size is not None:
        levels = [level for level in levels if max(target_shapes[level]) >= start_size] or [0]
    if max_search_size is None:
        return [(level, True) for level in levels]
    searched = [level for level in levels if max(target_shapes[level]) <= max_search_size]
    if 0 in searched:
        return [(level, True) for level in searched]
    return [(0, False)] + [(level, True) for level in searched]


def _rows(stack):
    """The 2-D ``(H, W * C)`` view of a padded feature stack that PatchMatch reads."""
    return stack.reshape(stack.shape[0], -1)


def _source_level(stack, mask, style_channels, style_factor, guide_factor, unit, patch_size):
    """Padded features, padded style and valid centres of one source level."""
    radius = patch_size // 2
    valid = fields.valid_centres(mask[..., 0] > 1.0 - _MASK_TOLERANCE, patch_size)
    candidates = np.flatnonzero(valid).astype(np.int32)
    if candidates.size == 0:
        raise PatchSynthError(
            f"source_mask leaves no {patch_size}x{patch_size} patch at {valid.shape[1]}x"
            f"{valid.shape[0]} px; allow a larger area or pass fewer levels"
        )
    style = np.ascontiguousarray(stack[..., :style_channels])
    guides = np.ascontiguousarray(stack[..., style_channels:])
    stack = features.feature_stack(style, guides, style_factor, guide_factor, radius)
    return _Source(
        features=stack,
        records=patchmatch.candidate_records(stack, patch_size),
        style=features.pad(style, radius),
        valid=valid,
        candidates=candidates,
        style_factor=style_factor,
        unit=unit,
    )


def _set_style(target, image, src):
    """Write the voted ``image`` into the style channels of the padded target features.

    The target's border is not refreshed: target patches are clipped to the target, so it is
    never read.
    """
    radius = (target.shape[0] - image.shape[0]) // 2
    features.write_channels(target, radius, image, 0, src.style_factor)


@contextlib.contextmanager
def _threads_for(pixels):
    """Run small levels on one thread: a parallel region costs more than it saves there."""
    threads = numba.get_num_threads()
    numba.set_num_threads(1 if pixels < PARALLEL_MIN_PIXELS else threads)
    try:
        yield
    finally:
        numba.set_num_threads(threads)
