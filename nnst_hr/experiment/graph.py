"""The task graph of a plan: one task per unique stage key (see ARCHITECTURE.md, "The experiment graph").

A key is ``"<stage>-<sha256[:32]>"`` of the stage's name and version, the package version,
the parameters the stage reads (canonical JSON) and its upstream keys; an input's identity is
the SHA-256 of its bytes. Runs that need the same stage with the same parameters and inputs
get the same key, so the graph holds it once.

Examples
--------
>>> plan = load_plan("plan.toml")                                  # doctest: +SKIP
>>> graph = build_graph(plan, read_inputs(plan))                   # doctest: +SKIP
>>> graph.runs[0]["nnst"] == graph.runs[1]["nnst"]                 # doctest: +SKIP
True
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from ..config import values_from
from ..errors import InputError
from . import stages
from .plan import Plan, RunSpec

KEY_HEX = 32  # hex digits of the SHA-256 kept in a key
PRESS_BITS = 16  # bits of a plan's press file (`run --cmyk`'s default: a TIFF's 16)


@dataclass(frozen=True)
class TaskRef:
    key: str  # the upstream task's key; replaced by its Record when run


@dataclass(frozen=True)
class Task:
    key: str
    stage: str  # "inputs", "nnst", "color", "poster", "poster_color", "scores"
    func: Callable[..., dict]
    args: tuple  # literals or TaskRef
    resources: dict
    run_ids: tuple[int, ...]
    store: bool = True  # False: never cached nor sent to the client; recomputed where a reader runs

    def upstream(self) -> list[str]:
        """Keys of the tasks whose records this task reads."""
        return [arg.key for arg in self.args if isinstance(arg, TaskRef)]


class Graph(dict):
    """``{key: Task}`` in a topological order, plus ``runs``: per run, ``{stage: key}``."""

    def __init__(self):
        super().__init__()
        self.runs: list[dict[str, str]] = []
        self.specs: list[RunSpec] = []


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class PairInputs:
    """A pair's input files as bytes (masks folder: ``{relative path: bytes}``) and their names."""

    content: bytes
    style: bytes
    guide: dict | None
    names: dict

    def digest(self) -> dict:
        guide = None if self.guide is None else {rel: _sha(data) for rel, data in sorted(self.guide.items())}
        return {"content": _sha(self.content), "style": _sha(self.style), "guide": guide}


def read_inputs(plan: Plan) -> list[PairInputs]:
    """Read every input file once (a file shared by pairs is read once) -> one entry per pair.

    Raises :class:`InputError` for a file that cannot be read (gone since the plan was read)."""
    files: dict[Path, bytes] = {}

    def data(path: Path) -> bytes:
        if path not in files:
            try:
                files[path] = path.read_bytes()
            except OSError as exc:  # the plan found it: it went, or changed, since
                what = "no longer exists" if isinstance(exc, FileNotFoundError) else f"cannot be read ({exc.strerror})"
                raise InputError(f"{path} {what}; restore it or fix the plan, and run it again") from None
        return files[path]

    out = []
    for pair in plan.pairs:
        guide = None
        if pair.guide is not None:
            guide = {str(p.relative_to(pair.guide)): data(p)
                     for p in sorted(pair.guide.rglob("*")) if p.is_file() and not p.name.startswith(".")}
        names = {"content": str(pair.content), "style": str(pair.style),
                 "guide": str(pair.guide) if pair.guide else ""}
        out.append(PairInputs(data(pair.content), data(pair.style), guide, names))
    return out


def stage_key(stage: str, params: dict, upstream: list[str]) -> str:
    """``"<stage>-<hex>"``: SHA-256 of exactly what the stage reads (canonical JSON)."""
    payload = {"stage": stage, "version": stages.STAGE_VERSION[stage], "package": stages.PACKAGE_VERSION,
               "params": params, "upstream": upstream}
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return f"{stage}-{hashlib.sha256(text.encode()).hexdigest()[:KEY_HEX]}"


def _print_plan(run: RunSpec, pair: PairInputs, shapes: dict):
    """The run's :class:`~nnst_hr.printing.PrintPlan` for its content's shape, read from the file's header
    (the inputs stage checks that it decodes to that shape); None without a print, or when the header
    cannot be read (the inputs stage then fails on that file, with its own message)."""
    if run.print_size is None:
        return None
    if run.pair_index not in shapes:
        from ..files import image_shape

        shapes[run.pair_index] = image_shape(pair.content)
    shape = shapes[run.pair_index]
    return run.print_plan(shape) if shape is not None else None


def _press_profile(path: Path, profiles: dict) -> bytes:
    """The bytes of the press profile at ``path`` (checked with the plan), read once per path.

    Raises :class:`InputError` for a file gone or changed into something else since the plan was read."""
    if path not in profiles:
        from ..run import check_press_profile

        try:
            with values_from("plan"):
                profiles[path] = check_press_profile(path)
        except InputError as exc:
            raise InputError(f"{exc}; restore it or fix the plan, and run it again") from None
    return profiles[path]


def build_graph(plan: Plan, inputs: list[PairInputs]) -> Graph:
    """One task per unique stage key of the plan's runs, upstream before downstream."""
    graph = Graph()

    def add(stage, params, func, args, run_id, resources=None) -> str:
        upstream = [a.key for a in args if isinstance(a, TaskRef)]
        key = stage_key(stage, params, upstream)
        if key in graph:
            task = graph[key]
            if run_id not in task.run_ids:
                graph[key] = replace(task, run_ids=task.run_ids + (run_id,))
        else:
            graph[key] = Task(key, stage, func, tuple(args), dict(resources or {}), (run_id,),
                              store=stage not in stages.NOT_STORED)
        return key

    shapes: dict[int, tuple[int, int] | None] = {}  # pair index -> its content's (H, W), from the header
    profiles: dict[Path, bytes] = {}  # a press profile's path -> its bytes, read once
    for run in plan.runs():
        pair = inputs[run.pair_index]
        keys: dict[str, str] = {}
        r = run.index
        print_plan = _print_plan(run, pair, shapes)
        # with a print, the inputs stage fits the content (and its labels) as `run --print` does before NNST:
        # every stage of another fit is another stage, and the same fit (A3 and A2 share a crop) the same
        input_params = pair.digest() if print_plan is None else {**pair.digest(), "print": print_plan.key()}
        input_args = (pair.content, pair.style, pair.guide, pair.names) + ((print_plan,) if print_plan else ())
        keys["inputs"] = add("inputs", input_params, stages.decode_inputs, input_args, r)
        mask_only = stages.MASK_ONLY_PARAMS if pair.guide is None else {"nnst": {}, "poster": {}}
        nnst_params = {**stages.subset(run.nnst, stages.NNST_PARAMS), **mask_only["nnst"]}
        gpu = {"GPU": 1} if run.nnst.device == "cuda" else {}
        keys["nnst"] = add("nnst", nnst_params, stages.nnst,
                           (TaskRef(keys["inputs"]), nnst_params, run.nnst.device), r, gpu)
        color_params = stages.subset(run.nnst, stages.COLOR_PARAMS)
        poster = stages.has_poster(run.nnst, run.poster)
        # the final image is brought to the print's pixels by the stage that makes it
        printed = {} if print_plan is None else {"print": stages.print_params(print_plan)}
        last = (print_plan,) if print_plan else ()
        keys["color"] = add("color", {**color_params, **({} if poster else printed)}, stages.color,
                            (TaskRef(keys["inputs"]), TaskRef(keys["nnst"]), color_params, *(() if poster else last)),
                            r)
        final = keys["color"]
        upsampled = None
        if poster:
            poster_params = {**stages.subset(run.poster, stages.POSTER_PARAMS), **mask_only["poster"]}
            poster_nnst = stages.subset(run.nnst, stages.POSTER_NNST_PARAMS)
            keys["poster"] = add("poster", {"poster": poster_params, "nnst": poster_nnst}, stages.poster,
                                 (TaskRef(keys["inputs"]), TaskRef(keys["nnst"]), poster_params, poster_nnst), r)
            keys["poster_color"] = add("poster_color", {**color_params, **printed}, stages.poster_color,
                                       (TaskRef(keys["inputs"]), TaskRef(keys["nnst"]), TaskRef(keys["poster"]),
                                        color_params, *last), r)
            final, upsampled = keys["poster_color"], TaskRef(keys["color"])
        score_args = (TaskRef(keys["inputs"]), TaskRef(keys["nnst"]), TaskRef(final), nnst_params, upsampled, *last)
        keys["scores"] = add("scores", printed, stages.scores, score_args, r)
        keys["final"] = final
        if run.cmyk is not None:  # keyed by the profile's bytes, not its path: a profile moved is the same press
            profile = _press_profile(run.cmyk, profiles)
            keys["press"] = add("press", {"profile": _sha(profile), "bits": PRESS_BITS}, stages.press,
                                (TaskRef(final), profile, PRESS_BITS), r)
        graph.runs.append(keys)
        graph.specs.append(run)
    return graph
