"""The work plan of a run, for its time left: what each stage does, in units that follow the code.

:class:`~nnst_hr.progress.Progress` estimates the time left from a plan of stages made of terms
(:class:`~nnst_hr.progress.Work`); this module says which terms a run does and how many units of
each, and gives each term its prior (seconds per unit before it is measured):

* ``step``: a hypercolumn step at one scale: a VGG16 forward and backward pass, per pixel, plus a
  fixed part (pyramid, loss, optimizer) of ``STEP_OVERHEAD_PX`` pixels;
* ``features`` and ``match``: a scale's setup: the hypercolumns of the style in every rotation and
  of the query (a forward pass per pixel, plus ``PASS_OVERHEAD_PX`` a pass), then the search of
  each query cell's nearest style cell (:func:`search_units`: content cells x style cells x
  channels, i.e. pixels squared, plus ``ROW_COST`` per row and channel; the shortlist above
  :data:`~nnst_hr.matching.APPROX_MIN_WORK`);
* ``split setup``: the style layers of every rotation for feature splitting (forward passes);
* ``split`` and ``search``: a feature-splitting step (a VGG pass and the loss on the lattices of
  ten layers, a fixed part of ``SPLIT_OVERHEAD_PX``), and the lattice searches of the steps that
  search (:func:`split_search_units`: each layer subsampled to at most ``split_sample`` cells a
  side, so the cost stops growing at 512 px);
* the final match: ``features`` and ``match`` at full size in fp32;
* ``output``: writing an image, or its color post-processing, per pixel; and the poster's terms
  (:func:`nnst_hr.poster.poster_stages`).

fp32 work counts ``VGG_FP32`` (VGG) or ``MATMUL_FP32`` (search products) units per bf16 unit, so
one prior serves both precisions and the final fp32 match follows the bf16 setups' rate.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from .config import NNSTConfig
from .hypercolumns import HYPERCOLUMN_CHANNELS, LAYER_CHANNELS, LAYER_STRIDES, feature_grid
from .matching import shortlisted
from .optimize import lattice_stride
from .progress import Stage, Work

# Seconds per unit of each term on the project's 2-core CPU (Zen 4, bf16 on, idle), measured
# term by term with bench/workplan_priors.py (notes/measurements.md, "Time left"). Only their
# ratios matter once a term of the same device has been measured (Progress scales the others).
PRIORS = {
    "step": 1.84e-6,  # per pixel of a hypercolumn step (plus STEP_OVERHEAD_PX; whole scales, 64-1024 px)
    "features": 1.0e-6,  # per pixel of the style's rotations and the query (plus PASS_OVERHEAD_PX a pass)
    "match": 1.7e-12,  # per search unit (exhaustive or shortlist)
    "split setup": 4e-7,  # per pixel of the style's rotations (plus PASS_OVERHEAD_PX a pass)
    "split": 1.4e-6,  # per pixel of a feature-splitting step (plus SPLIT_OVERHEAD_PX)
    "search": 2.1e-12,  # per search unit of the lattice searches
    "output": 3e-7,  # per pixel of an image written (PNG), or of a color post-processing
    "poster setup": 6e-7,  # per pixel searched: guides, atlas, pyramids
    "poster": 9e-7,  # per pixel, search-vote iteration and PatchMatch sweep
    "poster finish": 7e-7,  # per poster pixel: render and color post-processing
}
# Where a term runs, for sharing speeds (Work.device): NNST's torch on "cpu" or "cuda"; the poster's
# synthesis is compiled Numba on the CPU, whose speed against its priors follows the machine's scalar
# and memory speed, not torch's bf16 kernels on the same cores, so it lends and borrows none.
NUMBA = "numba"
STEP_OVERHEAD_PX = 16_000  # a step's fixed part (pyramid, loss, optimizer), in pixels of VGG work
PASS_OVERHEAD_PX = 10_000  # a forward pass's fixed part (kernel set-up, layer calls), in pixels
SPLIT_OVERHEAD_PX = 32_000  # a feature-splitting step's fixed part (ten layers' lattices and losses)
ROW_COST = 3200  # a search's cost per (query or key) row and channel: centring, norms, casts, gathers
VGG_FP32 = 2.4  # an fp32 VGG pass in bf16 units
MATMUL_FP32 = 2.7  # an fp32 search product in bf16 units
SCORE_OVERHEAD = 128  # a search's cost per (query, key) pair beyond the product: the max or top-k of the scores
SHORTLIST_OVERHEAD = 1536  # the same for the shortlist: the top-`candidates` of each query's projected scores
AXES_COST = 50  # principal axes (QR and SVD of a 16384-row sample), per sample row, component and axis
AXES_SAMPLE = 16384  # rows principal_axes samples (its default)


def work(term: str, units: float, device: str, every: int = 1) -> Work:
    """``units`` of ``term`` on ``device`` with the term's prior (:data:`PRIORS`)."""
    return Work(term, float(units), prior=PRIORS[term], every=every, device=device)


def search_units(queries: int, keys: int, channels: int, *, fp32: bool, config: NNSTConfig,
                 approx_min_work: float) -> float:
    """Units of :func:`nnst_hr.matching.search`: each (query, key) pair's product and its share of the top-k.

    The shortlist replaces the products by ``config.search_dims``-wide ones, but its top-k over
    every key and its principal axes stay: at 512 px it took 0.8x the exhaustive search's time.
    """
    rows = (queries + keys) * channels * ROW_COST
    if not shortlisted(queries, keys, channels, exact=config.exact, dims=config.search_dims,
                       approx_min_work=approx_min_work):
        return queries * keys * (channels * (MATMUL_FP32 if fp32 else 1.0) + SCORE_OVERHEAD) + rows
    dims = config.search_dims
    pairs = queries * keys * (dims * (MATMUL_FP32 if fp32 else 1.0) + SHORTLIST_OVERHEAD)
    projections = (queries + keys) * channels * dims * MATMUL_FP32  # fp32 whatever the mode
    rescore = queries * config.candidates * channels * MATMUL_FP32
    return pairs + projections + rescore + AXES_COST * min(keys, AXES_SAMPLE) * channels * dims + rows


def rotated(size: tuple[int, int], config: NNSTConfig) -> list[tuple[int, int]]:
    """The style's size in each rotation NNST matches."""
    return [size if k % 2 == 0 else (size[1], size[0]) for k in config.rotation_ids()]


def split_search_units(content: tuple[int, int], style: tuple[int, int], config: NNSTConfig, *, fp32: bool) -> float:
    """Units of the lattice searches of one feature-splitting step (all 10 layers).

    Each layer of the output is subsampled to at most ``config.split_sample`` cells a side, the
    style's layers on the same lattice; the search is exhaustive.
    """
    total = 0.0
    for channels, stride in zip(LAYER_CHANNELS, LAYER_STRIDES, strict=True):
        h, w = content[0] // stride, content[1] // stride
        step = lattice_stride(max(h, w), config.split_sample)
        queries = math.ceil(h / step) * math.ceil(w / step)
        keys = sum(math.ceil(sh // stride / step) * math.ceil(sw // stride / step) for sh, sw in rotated(style, config))
        total += queries * keys * (channels * (MATMUL_FP32 if fp32 else 1.0) + SCORE_OVERHEAD)
        total += (queries + keys) * channels * ROW_COST
    return total


def match_work(content: tuple[int, int], style: tuple[int, int], config: NNSTConfig, device: str, *,
               fp32: bool, approx_min_work: float) -> tuple[Work, Work]:
    """``features`` and ``match`` of one hypercolumn search of ``content`` against the rotated ``style``."""
    styles = rotated(style, config)
    pixels = content[0] * content[1] + sum(h * w for h, w in styles) + (1 + len(styles)) * PASS_OVERHEAD_PX
    cells = math.prod(feature_grid(*content))
    keys = sum(math.prod(feature_grid(*s)) for s in styles)
    units = search_units(cells, keys, HYPERCOLUMN_CHANNELS, fp32=fp32, config=config, approx_min_work=approx_min_work)
    return work("features", pixels * (VGG_FP32 if fp32 else 1.0), device), work("match", units, device)


def nnst_stages(contents: Sequence[tuple[int, int]], styles: Sequence[tuple[int, int]], config: NNSTConfig, *,
                device: str, bf16: bool, search_bf16: bool, refresh: int, approx_min_work: float) -> list[Stage]:
    """The NNST stage's plan: each scale (setup, steps), feature splitting, the final match.

    Parameters
    ----------
    contents, styles : list of (height, width)
        Content and (unrotated) style at each scale, coarse to fine (the last at full size).
    config : NNSTConfig
        Steps, rotations, search settings.
    device : str
        Where NNST runs (``"cpu"``, ``"cuda"``).
    bf16 : bool
        Whether VGG runs in bf16 (else fp32, as in exact mode).
    search_bf16 : bool
        Whether the searches run in bf16 (not with hard guides).
    refresh : int
        Feature splitting searches at the steps whose index is a multiple of this.
    approx_min_work : float
        The device's shortlist threshold (:func:`nnst_hr.matching.search_settings`).

    Returns
    -------
    list of Stage
        Named as :func:`nnst_hr.nnst.synthesize_nnst` reports them.
    """
    vgg = 1.0 if bf16 else VGG_FP32
    n = len(contents)
    stages = []
    for i, (content, style) in enumerate(zip(contents, styles, strict=True)):
        setup = match_work(content, style, config, device, fp32=not search_bf16, approx_min_work=approx_min_work)
        pixels = (content[0] * content[1] + STEP_OVERHEAD_PX) * vgg
        stages.append(Stage(scale_stage_name(content), config.steps_at(n - 1 - i),
                            step=(work("step", pixels, device),), setup=setup))
    content, style = contents[-1], styles[-1]
    styles = rotated(style, config)
    style_pixels = sum(h * w for h, w in styles) + len(styles) * PASS_OVERHEAD_PX
    split = (content[0] * content[1] + SPLIT_OVERHEAD_PX) * vgg
    stages.append(Stage(
        "feature splitting", config.split_steps,
        step=(work("split", split, device),
              work("search", split_search_units(content, style, config, fp32=not search_bf16), device, refresh)),
        setup=(work("split setup", style_pixels * vgg, device),),
    ))
    stages.append(Stage("final match", setup=match_work(content, style, config, device, fp32=True,
                                                        approx_min_work=approx_min_work)))
    return stages


def scale_stage_name(size: tuple[int, int]) -> str:
    """The name of the stage of hypercolumn steps at a scale of ``size``: ``"scale 256px"``."""
    return f"scale {max(size)}px"


def output_stage(name: str, pixels: float, device: str = "cpu") -> Stage:
    """A stage that reports nothing and writes ``pixels`` (or post-processes their color)."""
    return Stage(name, setup=(work("output", pixels, device),))
