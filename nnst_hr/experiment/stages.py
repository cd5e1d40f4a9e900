"""The stages of a run as pure, module-level functions: same arguments, same :data:`Record`.

Each stage takes literals (bytes, dicts of parameters) and upstream records, returns a flat
``dict`` of arrays and scalars, and touches no file and no global state, so a task can run in
this process or on a Dask worker. Which parameters each stage reads is declared here
(:data:`NNST_PARAMS` ...) and is exactly what :mod:`.graph` hashes into the stage's key.

Stages: ``inputs`` (decode images and masks from their bytes) -> ``nnst`` (raw result and field,
no color) -> ``color`` (color post-processing of the NNST result) -> ``poster`` (patch synthesis
at ``out_size``) -> ``poster_color`` -> ``scores``; with ``cmyk``, ``press`` (the final image
separated into a press's ink, as ``run --cmyk`` separates its output).

A print (``print_plan``, a :class:`~nnst_hr.printing.PrintPlan`, as ``run --print`` makes it) is
applied where ``run`` applies it: ``inputs`` fits the content and its label map to the print's
aspect (every later stage reads the fitted ones), the stage that makes the run's final image
(``poster_color``, or ``color`` without a poster) brings it to the print's exact pixels
(:func:`~nnst_hr.printing.fit_to_print`), and ``scores`` compares it with the content as fitted
(``score_image(print_plan=...)``). The stages in :data:`NOT_STORED` (``inputs``)
are never cached: their records are computed again wherever a stage that reads them runs.

``nnst`` and ``poster`` also take an optional ``progress=`` reporter of their steps, which the
executor supplies (in process, the plan's display; on a Dask worker, a reporter that relays the
steps to the client); it is not a task argument, so it is in no key.
``nnst`` also takes an optional ``checkpoints=`` store (:class:`~.cache.Checkpoints`) of its
per-scale states, which the executor supplies from the cache under the task's key: it resumes at
the scale an interrupted run of the same task was in. Neither is a task argument, so neither is
in a key.
"""

from __future__ import annotations

from dataclasses import fields, replace
from pathlib import Path

import numpy as np

from .. import __version__
from ..color import color_stage
from ..config import NNSTConfig, PosterConfig, values_from
from ..errors import InputError
from ..nnst import NNSTResult, synthesize_nnst
from ..poster import color_poster, synthesize_poster_stage
from ..scores import score_image

Record = dict  # str -> np.ndarray | float | int | str | None

STAGE_VERSION = {  # bump a stage's number when its code changes what it returns
    "inputs": 3,  # 3: ICC profiles read with black-point compensation (files.DECODE_VERSION 2)
    "nnst": 2,  # 2: each scale ends on the bands of its saved state (resumes give the same bits)
    "color": 1,
    "poster": 1,
    "poster_color": 1,
    "scores": 1,
    "press": 1,
}
PACKAGE_VERSION = __version__
# Stages whose records are never cached nor gathered by a Dask client: recomputed from the input
# bytes wherever a reader runs. Decoding is cheap next to the stages that read it, and the decoded
# full-size float32 images were most of the cache and of the bytes a Dask run moved.
NOT_STORED = frozenset({"inputs"})
COLOR_PARAMS = ("color", "color_iterations", "color_sharpness", "mono_threshold")
NNST_PARAMS = tuple(f.name for f in fields(NNSTConfig) if f.name not in COLOR_PARAMS + ("device",))
POSTER_NNST_PARAMS = ("rotate", "seed")  # what the poster stage reads of the NNST config
POSTER_PARAMS = tuple(f.name for f in fields(PosterConfig))
# Options that act only through masks: a pair without a guide reads their defaults, so its runs that
# differ only in them share their stages (a guide_weight axis computed each unguided pair's NNST per value).
MASK_ONLY_PARAMS = {
    "nnst": {f.name: f.default for f in fields(NNSTConfig) if f.name in ("guide_weight", "guide_mode")},
    "poster": {f.name: f.default for f in fields(PosterConfig) if f.name == "mask_weight"},
}


def subset(config, names: tuple[str, ...]) -> dict:
    """The named fields of a config dataclass as a plain dict (what a stage reads)."""
    return {name: getattr(config, name) for name in names}


def has_poster(nnst: NNSTConfig, poster_cfg: PosterConfig) -> bool:
    """A run has a poster stage when ``out_size`` is set and differs from NNST's size."""
    return bool(poster_cfg.out_size) and poster_cfg.out_size != nnst.size


# --------------------------------------------------------------------------- masks in records


def masks_from(inputs: Record, *, source: bool = False):
    """The ``guidance.MaskPair`` carried by an ``inputs`` record, or None.

    ``source``: with the content label map as decoded, before a print's fit (``source_mask_content``
    of a print's record; the fitted ``mask_content`` otherwise).
    """
    if inputs.get("mask_content") is None:
        return None
    from guidance import Label, MaskPair

    n = int(inputs["n_labels"])
    names = str(inputs.get("mask_label_names") or "").split("\n")
    names = names if len(names) == n else [f"label{i}" for i in range(n)]
    labels = [Label(i, name, None, 0.0, 0.0) for i, name in enumerate(names)]
    warnings = [w for w in str(inputs.get("mask_warnings") or "").split("\n") if w]
    content = inputs["source_mask_content"] if source and "source_mask_content" in inputs else inputs["mask_content"]
    return MaskPair(content, inputs["mask_style"], labels, warnings, Path("content"), Path("style"))


# --------------------------------------------------------------------------- stages


def decode_inputs(content: bytes, style: bytes, guide: dict[str, bytes] | None, names: dict[str, str],
                  print_plan=None) -> Record:
    """Decode the content and style images and the masks folder (``{relative path: bytes}``).

    ``names`` (``content``, ``style``, ``guide``: the paths as the user wrote them) only name
    files in error messages. Returns ``content``, ``style`` (float32 (H, W, 3)) and, with a
    guide, ``mask_content``, ``mask_style`` (int32 label maps at the images' sizes),
    ``n_labels``, ``mask_warnings``.

    ``print_plan``: a :class:`~nnst_hr.printing.PrintPlan` made for the content's shape; the
    ``content`` and ``mask_content`` returned are fitted to the print's aspect
    (:func:`~nnst_hr.printing.fit_content`, :func:`~nnst_hr.printing.fit_labels`, as ``run --print``
    fits them), and ``source_content`` (and ``source_mask_content``) are the decoded ones, which
    the scores compare with.
    """
    content_img, style_img, masks = _decode(content, style, guide, names)
    source = content_img, masks
    if print_plan is not None:
        from ..printing import fit_content, fit_labels

        if content_img.shape[:2] != tuple(print_plan.content_shape):  # planned from the file's header
            height, width = print_plan.content_shape
            raise InputError(f"{names.get('content', 'content')} decodes to {content_img.shape[1]}x"
                             f"{content_img.shape[0]} px, not the {width}x{height} px its header says; re-save it")
        content_img, masks = fit_content(content_img, print_plan), fit_labels(masks, print_plan)
    record: Record = {"content": content_img, "style": style_img, "mask_content": None}
    if print_plan is not None:
        record["source_content"] = source[0]
        if source[1] is not None:
            record["source_mask_content"] = source[1].content.astype(np.int32)
    if masks is not None:
        guided = sorted((label for label in masks.labels if not label.unguided), key=lambda label: label.index)
        record.update(mask_content=masks.content.astype(np.int32), mask_style=masks.style.astype(np.int32),
                      n_labels=int(masks.n_labels), mask_warnings="\n".join(masks.warnings),
                      mask_label_names="\n".join(label.name for label in guided))
    return record


def nnst(inputs: Record, params: dict, device: str = "auto", *, progress=None, checkpoints=None) -> Record:
    """NNST without color: ``raw`` (H, W, 3), ``field`` (H/4, W/4, 3), sizes, ``objective``.

    ``params`` holds :data:`NNST_PARAMS`; ``device`` does not change the result's meaning
    (it is not part of the key), nor does ``progress`` (a reporter of the steps, given by the
    executor; not a task argument), nor ``checkpoints`` (a :class:`~.cache.Checkpoints` of this
    task's per-scale states, given by the executor: the scales it holds are not recomputed, and
    each scale computed is saved to it).
    """
    config = replace(NNSTConfig(**params), device=device, color=False)
    resume = {} if checkpoints is None else {"start_from": checkpoints.load(), "on_checkpoint": checkpoints.save}
    with values_from("plan"):  # its messages name a value by the plan's key ("size"), not the run's option
        result = synthesize_nnst(inputs["content"], inputs["style"], config, masks=masks_from(inputs),
                                 progress=progress, **resume)
    return {
        "raw": result.raw, "field": result.field,
        "content_size": np.asarray(result.content_size, np.int64),
        "style_size": np.asarray(result.style_size, np.int64),
        "objective": float(result.objective),
    }


def color(inputs: Record, nnst_record: Record, params: dict, print_plan=None) -> Record:
    """Color post-processing of the NNST result (``params``: :data:`COLOR_PARAMS`) -> ``image``.

    ``print_plan``: the run's print, when this image is its final one (no poster): brought to the
    print's pixels (:func:`to_print`).
    """
    config = NNSTConfig(**params)
    return {"image": to_print(color_stage(nnst_record["raw"], inputs["content"], inputs["style"], config),
                              print_plan)}


def poster(inputs: Record, nnst_record: Record, params: dict, nnst_params: dict, *, progress=None) -> Record:
    """Patch synthesis at ``params["out_size"]`` -> ``synthesized`` (Ho, Wo, 3) and ``field``.

    ``params``: :data:`POSTER_PARAMS`; ``nnst_params``: :data:`POSTER_NNST_PARAMS`; ``progress``
    as :func:`nnst`'s (not a task argument).
    """
    with values_from("plan"):  # as in nnst
        result = synthesize_poster_stage(inputs["content"], inputs["style"], _nnst_result(nnst_record),
                                         PosterConfig(**params), NNSTConfig(**nnst_params),
                                         masks=masks_from(inputs), progress=progress)
    return {"synthesized": result.synthesized, "field": result.field}


def poster_color(inputs: Record, nnst_record: Record, poster_record: Record, params: dict,
                 print_plan=None) -> Record:
    """Color post-processing of the poster (``params``: :data:`COLOR_PARAMS`) -> ``image``.

    ``print_plan``: the run's print: the image is brought to its pixels (:func:`to_print`).
    """
    style_size = tuple(int(v) for v in nnst_record["style_size"])
    image = color_poster(poster_record["synthesized"], inputs["content"], inputs["style"], style_size,
                         NNSTConfig(**params))
    return {"image": to_print(image, print_plan)}


def to_print(image: np.ndarray, print_plan) -> np.ndarray:
    """``image`` at the print's exact pixels (:func:`~nnst_hr.printing.fit_to_print`); as it is without a print."""
    if print_plan is None:
        return image
    from ..printing import fit_to_print

    return fit_to_print(image, print_plan)


def print_params(print_plan) -> dict:
    """What a stage's result depends on of the run's print (for its key): the fit of the content
    (:meth:`~nnst_hr.printing.PrintPlan.key`) and the print's pixels; the DPI and the size's name
    only tag the file written."""
    return {**print_plan.key(), "content_shape": list(print_plan.content_shape), "pixels": list(print_plan.pixels)}


def scores(inputs: Record, nnst_record: Record, final: Record, nnst_params: dict,
           upsampled_from: Record | None = None, print_plan=None) -> Record:
    """Every score that applies to the run's final ``image`` (see ``nnst_hr.scores``).

    ``upsampled_from``: the colored NNST result of a poster run (for ``detail_bicubic``).
    ``nnst_params`` are the upstream NNST stage's (already in its key). ``print_plan``: the run's
    print: the final image is scored against the content as decoded, fitted as the run fitted it
    (``score_image(print_plan=...)``).
    """
    config = NNSTConfig(**nnst_params)
    style_size = tuple(int(v) for v in nnst_record["style_size"])
    content = inputs["source_content"] if print_plan is not None else inputs["content"]
    values = score_image(
        final["image"], content, inputs["style"], raw=nnst_record["raw"], nnst_config=config,
        field=nnst_record["field"], style_size=style_size, masks=masks_from(inputs, source=print_plan is not None),
        upsampled_from=None if upsampled_from is None else upsampled_from["image"], print_plan=print_plan,
        seed=config.seed,
    )
    return {name: float(value) for name, value in values.items()}


def press(final: Record, profile: bytes, bits: int) -> Record:
    """The run's final ``image`` separated into the ink of the press whose CMYK output ``profile`` (its bytes)
    is given, as ``run --cmyk`` separates its output (:func:`nnst_hr.icc.srgb_to_cmyk`) -> ``ink``: ``(H, W, 4)``
    code values of ``bits`` (8 or 16) bits, cyan, magenta, yellow, black (0 = none).

    The profile was checked with the plan; one LittleCMS cannot use after all is a bad input.
    """
    from ..icc import ProfileError, srgb_to_cmyk

    try:
        return {"ink": srgb_to_cmyk(final["image"], profile, bits)}
    except ProfileError as exc:
        raise InputError(f"the cmyk profile is {exc}") from None


def _nnst_result(record: Record) -> NNSTResult:
    """An ``nnst`` record as the result object the poster stage reads."""
    return NNSTResult(raw=record["raw"], field=record["field"],
                      content_size=tuple(int(v) for v in record["content_size"]),
                      style_size=tuple(int(v) for v in record["style_size"]), objective=float(record["objective"]))


def _decode(content: bytes, style: bytes, guide: dict[str, bytes] | None, names: dict[str, str]):
    """Decode from the bytes; errors name the user's paths (``names``)."""
    from guidance import load_mask_data

    from ..files import decode_image

    content_img = decode_image(content, names.get("content", "content"))
    style_img = decode_image(style, names.get("style", "style"))
    masks = None
    if guide is not None:
        masks = load_mask_data(guide, names.get("guide") or "guide", content_img.shape[:2], style_img.shape[:2])
    return content_img, style_img, masks
