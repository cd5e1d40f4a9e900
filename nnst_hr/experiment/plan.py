"""Read and validate an experiment plan (``plan.toml``) into a :class:`Plan` of runs.

A plan names content/style pairs and axes; every combination of axis values is a run, for
every pair. Everything is checked before any work: an unknown key, a value of the wrong type
or out of range, a missing file or masks folder, an empty axis raise
:class:`~nnst_hr.errors.InputError` with one line that starts with the key path
(``axes.alpha[2]: ...``).

Examples
--------
>>> plan = load_plan("samples/experiment/plan.toml")       # doctest: +SKIP
>>> [run.params for run in plan.runs()][:2]                 # doctest: +SKIP
[{'alpha': 0.25, 'uniformity': 0.0005}, {'alpha': 0.25, 'uniformity': 0.002}]
"""

from __future__ import annotations

import difflib
import glob
import itertools
import math
import os
import typing
import warnings
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Literal

import tomllib

from ..config import NNSTConfig, PosterConfig, checked_value, option_label, values_from
from ..errors import InputError, path_refused

TOP_KEYS = ("pair", "axes", "fixed", "report")
PAIR_PATHS = ("content", "style", "guide")
REPORT_KEYS = ("rows", "columns", "score")
NONE_WORDS = ("none",)  # TOML has no null: "none" sets an optional option (out_size) to None
GLOB_CHARS = "*?["
DEFAULT_SCORE = "objective"
MAX_RUNS = 10_000  # runs in one plan: every axis combination for every pair
KNOWN_SCORES = ("objective", "content_lpips", "content_ssim", "style_gram", "color_swd", "label_agreement",
                "detail", "detail_bicubic")


# the run's print options (`run --print/--dpi/--fit/--bleed/--cmyk`), no config field: name -> type hint ("none": no
# print, no press file); `cmyk` is a press's CMYK output profile, a path relative to the plan file like the pairs'
PRINT_OPTIONS = {"print": str | None, "dpi": int, "fit": Literal["crop", "pad"], "bleed": float, "cmyk": str | None}


def _option_types() -> dict[str, tuple[str, object]]:
    """Every plan option: name -> (config, type hint), config ``"nnst"``, ``"poster"`` or ``"print"``
    (:data:`PRINT_OPTIONS`); the two configs and the print options share no name."""
    out: dict[str, tuple[str, object]] = {name: ("print", hint) for name, hint in PRINT_OPTIONS.items()}
    poster_hints = typing.get_type_hints(PosterConfig)
    for f in fields(PosterConfig):
        out[f.name] = ("poster", poster_hints[f.name])
    nnst_hints = typing.get_type_hints(NNSTConfig)
    for f in fields(NNSTConfig):
        out[f.name] = ("nnst", nnst_hints[f.name])
    return out


OPTIONS = _option_types()


@dataclass(frozen=True)
class Pair:
    """One content/style pair (absolute paths) with its own options."""

    content: Path
    style: Path
    guide: Path | None = None
    options: dict = field(default_factory=dict)  # per-pair options (override [fixed])
    where: str = field(default="pair", compare=False)  # its table in the plan, for messages ("pair[2]")

    @property
    def name(self) -> str:
        return f"{self.content.stem} / {self.style.stem}"


@dataclass(frozen=True)
class RunSpec:
    """One run of a plan: a pair and a full set of parameters.

    ``params`` holds the values the plan set (fixed, per-pair and axis values, plan names);
    ``axis_values`` only the axis values, in axis order.
    """

    index: int
    pair_index: int
    pair: Pair
    params: dict
    axis_values: dict
    nnst: NNSTConfig
    poster: PosterConfig  # with a print, its out_size is the print's long side in pixels (as `run --print`)
    print_size: str | None = None  # A3..A0 or WxH{in,cm,mm}, as `run --print`; None: no print
    dpi: int = 300  # the result's DPI tag; with print_size, the print's pixels (as `run --dpi`)
    fit: str = "crop"  # with print_size: crop or pad the content to the print's aspect (as `run --fit`)
    bleed: float = 0.0  # with print_size: mm of picture added on every side, trimmed off by the shop (`run --bleed`)
    cmyk: Path | None = None  # a press's CMYK output profile (checked): the run also writes a press file (`run --cmyk`)

    @property
    def run_id(self) -> str:
        return f"run{self.index + 1:03d}"

    def print_plan(self, content_shape: tuple[int, int]):
        """The :class:`~nnst_hr.printing.PrintPlan` of this run's print for a content of ``content_shape``
        ``(H, W)``, or None without a print."""
        if self.print_size is None:
            return None
        from ..printing import plan_print

        with values_from("plan"):
            return plan_print(content_shape, self.print_size, self.dpi, self.fit, self.bleed)


@dataclass
class Plan:
    """A validated plan: pairs, axes (name -> non-empty list), fixed options, report choices."""

    path: Path
    pairs: list[Pair]
    axes: dict[str, list]
    fixed: dict
    rows: str | None = None  # axis shown down the contact sheet (default the first axis)
    columns: str | None = None  # axis shown across it (default the second)
    score: str = DEFAULT_SCORE  # score printed under each thumbnail

    def runs(self) -> list[RunSpec]:
        """Every axis combination for every pair, pairs outermost, the last axis fastest."""
        out = []
        names = list(self.axes)
        for pair_index, pair in enumerate(self.pairs):
            for combo in itertools.product(*(self.axes[name] for name in names)):
                values = dict(zip(names, combo, strict=True))
                params = {**self.fixed, **pair.options, **values}
                options = run_options(params)
                out.append(RunSpec(len(out), pair_index, pair, params, values, options.nnst, options.poster,
                                   options.print_size, options.dpi, options.fit, options.bleed, options.cmyk))
        return out


def make_configs(params: dict) -> tuple[NNSTConfig, PosterConfig]:
    """Plan options (already type-checked) -> the two configs, defaults elsewhere (print options left out)."""
    nnst, poster = {}, {}
    for name, value in params.items():
        kind = OPTIONS[name][0]
        if kind != "print":
            (nnst if kind == "nnst" else poster)[name] = value
    return NNSTConfig(**nnst), PosterConfig(**poster)


def run_options(params: dict, *, checked: bool = False):
    """Plan options (already type-checked) -> the :class:`~nnst_hr.run.RunOptions` a run takes, defaults
    elsewhere. With a print, the poster's ``out_size`` becomes the print's long side in pixels, as
    ``run --print`` sets it; ``checked``: first refuse what :func:`~nnst_hr.run.check_run_options`
    refuses (the values as given, before that)."""
    from ..printsize import bled, mm_to_pixels, parse_print_size
    from ..run import RunOptions, check_run_options

    nnst, poster = make_configs(params)
    options = RunOptions(nnst=nnst, poster=poster, dpi=params.get("dpi", RunOptions.dpi),
                         print_size=params.get("print"), fit=params.get("fit", RunOptions.fit),
                         bleed=params.get("bleed", RunOptions.bleed),
                         cmyk=Path(params["cmyk"]) if params.get("cmyk") is not None else None)
    if checked:
        with values_from("plan"):  # "print sets the output size; leave out out_size", not "--print ..."
            check_run_options(options)
    if options.print_size is None:
        return options
    with values_from("plan"):
        # the print's long side, the same in either orientation (printsize.print_pixels); a print too
        # small at its dpi is refused with the run's check, which names the run
        long_side = mm_to_pixels(bled(parse_print_size(options.print_size), options.bleed).long_mm, options.dpi)
    return replace(options, poster=replace(poster, out_size=long_side))


def _did_you_mean(name: str, known) -> str:
    """`` (did you mean 'alpha'?)`` for a misspelt key close to a known one, else nothing.

    Examples
    --------
    >>> _did_you_mean("guide_wieght", ["alpha", "guide_weight"]), _did_you_mean("beauty", ["alpha"])
    (" (did you mean 'guide_weight'?)", '')
    """
    close = difflib.get_close_matches(str(name), [str(k) for k in known], n=1, cutoff=0.75)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _check_value(where: str, name: str, value, base: Path | None = None):
    """Type-check one option value; returns it converted (int -> float, "none" -> None; ``cmyk``: the
    profile's absolute path, relative to ``base``, the plan's folder, once :func:`_check_press` passed it)."""
    if name not in OPTIONS:
        raise InputError(f"{where}: unknown option {name!r}{_did_you_mean(name, OPTIONS)}; use an NNSTConfig or "
                         f"PosterConfig field name (e.g. alpha, size, out_size, uniformity) or print, dpi, fit, bleed, "
                         "cmyk")
    hint = OPTIONS[name][1]
    if type(None) in typing.get_args(hint) and isinstance(value, str) and value.lower() in NONE_WORDS:
        return None
    try:
        value = checked_value(hint, value)
    except InputError as exc:
        raise InputError(f"{where}: {exc}") from None
    if name == "cmyk":
        return _check_press(where, base if base is not None else Path.cwd(), value)
    return value


def _check_press(where: str, base: Path, value: str) -> str:
    """The absolute path of the press profile ``value`` names (relative to ``base``), after reading and checking it
    as ``run --cmyk`` does (:func:`~nnst_hr.run.check_press_profile`): a missing file or one that is no CMYK output
    profile is refused before any work, in one line naming the key."""
    from ..run import check_press_profile

    if not value:
        raise InputError(f"{where}: must be a path string (the press's .icc profile), got {value!r}")
    path = Path(os.path.normpath(base / Path(value).expanduser()))
    try:
        with values_from("plan"):  # "cmyk x.icc is ...", not "--cmyk x.icc is ..."
            check_press_profile(path)
    except InputError as exc:
        raise InputError(f"{where}: {exc}") from None
    return str(path)


def _check_range(where: str, params: dict) -> None:
    """Check the run options built from ``params`` as ``run`` checks its own (both configs, the print,
    the DPI: :func:`~nnst_hr.run.check_run_options`); prefix the message with ``where``."""
    try:
        # "seed must be ...", not the run command's "--seed must be ..."
        run_options(params, checked=True)
    except InputError as exc:
        raise InputError(f"{where}: {exc}") from None
    except TypeError as exc:  # a wrong type that slipped past the checks above
        raise InputError(f"{where}: {exc}") from None


def _resolve(where: str, base: Path, value, *, folder: bool = False) -> list[Path]:
    """The files ``value`` names (relative to ``base``, the plan's folder): one, or a glob's matches.

    A file that exists under the name as written is taken as it is, glob characters and all
    (``photo[1].png``); a masks folder (``folder``) is never a glob. Only ``value`` is a pattern:
    ``base`` is escaped, so a plan in ``runs [v2]/`` finds its ``*.jpg``.
    """
    if not isinstance(value, str) or not value:
        raise InputError(f"{where}: must be a path string, got {value!r}")
    path = Path(os.path.normpath(base / Path(value).expanduser()))  # "plans/../samples/x.png" -> "samples/x.png"
    refused = path_refused(path)  # a link loop said "no such file"
    if refused is not None:
        raise InputError(f"{where}: {refused}")
    if folder and any(c in value for c in GLOB_CHARS) and not path.is_dir():
        raise InputError(f"{where}: a masks folder cannot be a glob, and no folder {path} exists; give one masks "
                         "folder per pair")
    if not folder and any(c in value for c in GLOB_CHARS) and not path.is_file():
        pattern = os.path.normpath(os.path.join(glob.escape(str(base)), os.path.expanduser(value)))
        found = sorted(Path(p) for p in glob.glob(pattern) if Path(p).is_file())
        if not found:
            raise InputError(f"{where}: no file matches {value!r} (relative to {base})")
        return found
    if folder:
        if path.is_file():
            raise InputError(f"{where}: {path} is a file, not a masks folder; give the folder holding "
                             f"content.png and style.png")
        if not path.is_dir():
            raise InputError(f"{where}: masks folder {path} does not exist; give the folder holding "
                             f"content.png and style.png")
    elif path.is_dir():
        raise InputError(f"{where}: {path} is a folder, not an image; give an image file (or a glob such as "
                         f"\"{value.rstrip('/')}/*.jpg\")")
    elif not path.is_file():
        from ..files import special_file_kind

        special = special_file_kind(path)
        raise InputError(f"{where}: {path} is {special}, not a file; save it to a file and give its path" if special
                         else f"{where}: no such file {path}; paths are relative to the plan file")
    return [path]


def _check_options(where: str, table, base: Path | None = None) -> dict:
    if not isinstance(table, dict):
        raise InputError(f"{where}: must be a table of options, got {type(table).__name__}")
    out = {}
    # a print is checked last, at the table's own dpi and fit (the print A5 at dpi 10 is too small; at 300 it is not)
    for name, value in sorted(table.items(), key=lambda item: item[0] == "print"):
        out[name] = _check_value(f"{where}.{name}", name, value, base)
        context = {k: out[k] for k in ("dpi", "fit", "bleed") if k in out} if name == "print" else {}
        if name == "bleed":  # its largest depends on the print's size, which may be another table's
            _check_bleed(f"{where}.{name}", out[name])
        elif name == "cmyk":  # checked above: whether the run has a print is another table's (_check_fit_has_print)
            pass
        else:
            _check_range(f"{where}.{name}", {**context, name: out[name]})
    return {name: out[name] for name in table}


def _check_bleed(where: str, bleed: float) -> None:
    """A bleed's range as far as it is known without the print (the largest is checked per run)."""
    if not (math.isfinite(bleed) and bleed >= 0):
        raise InputError(f"{where}: {option_label('--bleed', 'plan')} {bleed} mm is out of range; use 0 or more "
                         "(3 mm is usual; ask the print shop)")


def _check_fit_has_print(fixed: dict, axes: dict, pairs: list[Pair]) -> None:
    """Refuse a ``fit``, ``bleed`` or ``cmyk`` for runs without a ``print`` (``run --fit`` or ``--bleed`` without
    ``--print`` is refused: it did nothing; a plan's press file is a print's, at its pixels, DPI and bleed)."""
    for pair in pairs:
        given = {**fixed, **axes, **pair.options}
        for name in ("fit", "bleed", "cmyk"):
            if name in given and "print" not in given:
                where = next(w for w, table in ((pair.where, pair.options), ("fixed", fixed), ("axes", axes))
                             if name in table)
                option, print_ = option_label(f"--{name}", "plan"), option_label("--print", "plan")
                raise InputError(f"{where}.{name}: {option} applies to a print: give {print_} too, or leave out "
                                 f"{option}")


def parse_plan(data: dict, base: Path, path: Path | None = None) -> Plan:
    """Validate a parsed TOML document; relative paths are relative to ``base``."""
    for key in data:
        if key not in TOP_KEYS:
            raise InputError(f"{key}: unknown table{_did_you_mean(key, TOP_KEYS)}; a plan has [[pair]], [axes], "
                             f"[fixed] and [report]")
    fixed = _check_options("fixed", data.get("fixed", {}), base)

    axes_table = data.get("axes", {})
    if not isinstance(axes_table, dict):
        raise InputError("axes: must be a table of option = [values]")
    axes: dict[str, list] = {}
    for name, values in axes_table.items():
        if name not in OPTIONS:
            _check_value(f"axes.{name}", name, None)  # raises: unknown option
        if not isinstance(values, list):
            raise InputError(f"axes.{name}: must be a list of values, got {values!r}")
        if not values:
            raise InputError(f"axes.{name}: empty axis; give at least one value or remove it")
        if name in fixed:
            raise InputError(f"axes.{name}: also set in [fixed]; keep one")
        checked = []
        for i, value in enumerate(values):
            checked.append(_check_value(f"axes.{name}[{i}]", name, value, base))
            _check_range(f"axes.{name}[{i}]", {**fixed, name: checked[-1]})
        if len(set(map(repr, checked))) != len(checked):
            raise InputError(f"axes.{name}: a value appears twice")
        axes[name] = checked

    pair_tables = data.get("pair")
    if isinstance(pair_tables, dict):  # [pair]: one table, not an array of them
        raise InputError("pair: written [pair]; write [[pair]] (double brackets) above each pair's content and style")
    if pair_tables is not None and not isinstance(pair_tables, list):
        raise InputError(f"pair: must be [[pair]] tables with content and style, got {pair_tables!r}")
    if not pair_tables:
        raise InputError("pair: no pairs; add at least one [[pair]] with content and style")
    pairs: list[Pair] = []
    first_seen: dict[tuple, str] = {}  # a pair's files and options -> where it first came from
    for p, table in enumerate(pair_tables):
        where = f"pair[{p}]"
        if not isinstance(table, dict):
            raise InputError(f"{where}: must be a table with content and style")
        for key in ("content", "style"):
            if key not in table:
                raise InputError(f"{where}.{key}: missing; every pair needs a content and a style image")
        contents = _resolve(f"{where}.content", base, table["content"])
        styles = _resolve(f"{where}.style", base, table["style"])
        guide = _resolve(f"{where}.guide", base, table["guide"], folder=True)[0] if "guide" in table else None
        options = _check_options(where, {k: v for k, v in table.items() if k not in PAIR_PATHS}, base)
        for name in options:
            if name in axes:
                raise InputError(f"{where}.{name}: also an axis; a pair may set only options that are not axes")
        for content in contents:
            for style in styles:
                pair = Pair(content, style, guide, options, where)
                same = (content, style, guide, repr(sorted(options.items())))
                if same in first_seen:  # its runs would be the same runs again, twice in the report
                    raise InputError(f"{where}: {content.name} / {style.name} is already {first_seen[same]}, "
                                     "with the same guide and options; remove one (or narrow its glob)")
                first_seen[same] = where
                pairs.append(pair)

    report = data.get("report", {})
    if not isinstance(report, dict):
        raise InputError("report: must be a table (rows, columns, score)")
    for key in report:
        if key not in REPORT_KEYS:
            raise InputError(f"report.{key}: unknown key{_did_you_mean(key, REPORT_KEYS)}; use rows, columns or score")
    names = list(axes)
    rows = report.get("rows", names[0] if names else None)
    columns = report.get("columns", next((n for n in names if n != rows), None))
    for key, value in (("rows", rows), ("columns", columns)):
        if value is not None and value not in axes:
            raise InputError(f"report.{key}: {value!r} is not an axis; choose one of {', '.join(names) or '(none)'}")
    if rows is not None and rows == columns:
        raise InputError("report.columns: the same axis as report.rows; choose two different axes")
    score = report.get("score", DEFAULT_SCORE)
    if not isinstance(score, str) or score.split(".")[0] not in KNOWN_SCORES:
        raise InputError(f"report.score: unknown score {score!r}; choose one of {', '.join(KNOWN_SCORES)}")

    count = len(pairs) * math.prod(len(values) for values in axes.values())
    if count > MAX_RUNS:  # validating and keying them alone took minutes, and running them months
        grid = " x ".join([f"{len(pairs)} pair{'s' if len(pairs) > 1 else ''}",
                           *(f"{len(v)} {name}" for name, v in axes.items())])
        raise InputError(f"axes: the plan makes {count} runs ({grid}), more than {MAX_RUNS}; narrow an axis or "
                         "split the plan")
    _check_fit_has_print(fixed, axes, pairs)
    plan = Plan(path or base / "plan.toml", pairs, axes, fixed, rows, columns, score)
    runs = plan.runs()
    for run in runs:  # combinations: the configs must hold together too
        _check_range(f"run {run.index + 1} ({_describe(run.params)})", run.params)
    _warn_alpha_without_effect(axes, runs)
    _warn_poster_below_nnst(fixed, axes, runs)
    return plan


def _key_of(name: str, run: RunSpec, fixed: dict, axes: dict) -> str:
    """The plan key that set option ``name`` for ``run`` (``axes.print[1]``, ``pair[0].print``, ``fixed.print``)."""
    if name in run.axis_values:
        value = repr(run.axis_values[name])
        return f"axes.{name}[{next(i for i, v in enumerate(axes[name]) if repr(v) == value)}]"
    if name in run.pair.options:
        return f"{run.pair.where}.{name}"
    return f"fixed.{name}" if name in fixed else name


def _warn_poster_below_nnst(fixed: dict, axes: dict, runs: list[RunSpec]) -> None:
    """Warn, as ``run`` does, when a run's poster (its print's long side, or ``out_size``) is smaller than
    its NNST result: NNST then computes detail that the poster, synthesized at its own smaller size,
    cannot keep (``print = "A4"``, ``dpi = 72`` at the default size 1024: minutes of NNST for nothing).
    Once per distinct print, dpi, out_size and size, naming the key that set the print (or out_size)."""
    said = set()
    for run in runs:
        out_size, size = run.poster.out_size, run.nnst.size
        if out_size is None or out_size >= size:
            continue
        setting = (run.print_size, run.dpi if run.print_size else None, out_size, size)
        if setting in said:
            continue
        said.add(setting)
        if run.print_size is not None:
            key = _key_of("print", run, fixed, axes)
            what = f"the print {run.print_size} at dpi {run.dpi} ({out_size} px on its long side)"
            fix = f"print larger (print, dpi) or use size {out_size}, as good and faster"
        else:
            key, what = _key_of("out_size", run, fixed, axes), f"out_size {out_size}"
            fix = f"use size {out_size}, as good and faster, or leave out out_size"
        warnings.warn(f"{key}: {what} is smaller than the NNST result (size {size}), so the poster keeps none of "
                      f"its extra detail: {fix}", stacklevel=3)


def _warn_alpha_without_effect(axes: dict, runs: list[RunSpec]) -> None:
    """Warn when an ``alpha`` axis cannot change some runs: alpha blends the output into NNST's query from
    its second scale on, and a run whose ``size`` is below twice ``coarsest`` has one scale (its
    results were the same for every alpha, and nothing said why)."""
    if len(axes.get("alpha", ())) < 2:
        return
    single = sorted({(run.nnst.size, run.nnst.coarsest) for run in runs if len(run.nnst.scales()) == 1})
    if single:
        size, coarsest = single[0]
        warnings.warn(f"axes.alpha: runs of size {size} have one NNST scale (coarsest {coarsest}), and alpha acts "
                      f"from the second scale on: their results are the same for every alpha; use size "
                      f"{2 * coarsest} or more", stacklevel=3)


def _describe(params: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in params.items())


def load_plan(path: str | Path) -> Plan:
    """Read ``path`` (TOML) and validate it; see the module docstring."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path} is a folder; give the plan file (plan.toml) itself")
    from ..files import refuse_special_file

    refuse_special_file(path)
    if not path.is_file():
        raise InputError(path_refused(path) or f"{path}: no such plan file")
    give = "give an experiment's plan file (plan.toml)"
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot be read ({exc.strerror}); make it readable or {give}") from None
    try:
        text = raw.decode("utf-8-sig")  # a byte-order mark (Windows Notepad) is not TOML: drop it
    except UnicodeDecodeError:  # an image given for the plan read "'utf-8' codec can't decode byte 0x89 ..."
        from ..files import image_shape

        what = "is an image, not an experiment plan" if image_shape(raw) is not None else "is not an experiment plan"
        raise InputError(f"{path} {what} (a plan is a TOML text file); {give}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{path}: not valid TOML ({exc}); correct it there, or {give}") from None
    return parse_plan(data, path.resolve().parent, path.resolve())


def with_axis(plan: Plan, name: str, values: list) -> Plan:
    """A copy of ``plan`` with axis ``name`` set to ``values`` (unchecked; for scripts and tests)."""
    return replace(plan, axes={**plan.axes, name: list(values)})
