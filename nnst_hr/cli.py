"""The ``nnst-hr`` command line: a thin layer over :mod:`nnst_hr.run`.

Exit codes: 0 success, 1 internal error, 2 bad input or a full disk (one-line message,
no traceback), 130 Ctrl-C, 143 SIGTERM (both leave a resumable run folder, or an experiment's
cache of the stages it finished).

The command sets ``OMP_WAIT_POLICY=PASSIVE`` for its own process (unless it is set) before
torch loads; the library leaves the environment alone.
"""

from __future__ import annotations

import errno
import logging
import os
import sys
import traceback
import warnings
from dataclasses import dataclass, replace
from enum import Enum
from pathlib import Path

import typer

from .config import NNSTConfig, PosterConfig
from .disk import disk_full_message, format_bytes, is_disk_full
from .errors import PATH_FIXES, Terminated
from .logs import configure_logging
from .signals import EXIT_SIGINT, EXIT_SIGTERM

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="High-resolution, optionally mask-guided Neural Neighbor Style Transfer.")
masks_app = typer.Typer(no_args_is_help=True, help="Inspect segmentation masks for guided runs.")
app.add_typer(masks_app, name="masks")
cache_app = typer.Typer(no_args_is_help=True, help="See and prune the stage cache of experiments.")
app.add_typer(cache_app, name="cache")

NNST = NNSTConfig()
NOT_WRITABLE_ERRNOS = (errno.EACCES, errno.EPERM, errno.EROFS)  # a write refused: one line, exit 2
SYMLINK_LOOP = "Symlink loop from "  # the start of pathlib's RuntimeError for a link loop (Python < 3.13)
POSTER = PosterConfig()
FITTED = {"crop": "cropped", "pad": "padded"}  # what --fit did to the content, in messages


class _EmptyPath(type(Path())):
    """A path given as '' on the command line: pathlib reads it as '.', and ``-o ''`` wrote into the
    current folder; :func:`_refuse_empty_paths` refuses it."""


def _path(value: str) -> Path:
    """The parser of every path option and argument: '' is kept apart from an explicit '.'."""
    return _EmptyPath() if value == "" else Path(value)


PATH_OPTION = {"parser": _path, "metavar": "<path>"}  # the metavar typer shows for a plain Path option
PATH_ARGUMENT = {"parser": _path}


def _refuse_empty_paths(ctx: typer.Context | None) -> None:
    """Refuse a path option or argument of ``ctx``'s command given as '' (see :class:`_EmptyPath`)."""
    from .errors import InputError

    for param in ctx.command.params if ctx is not None else ():
        value = ctx.params.get(param.name)
        if any(isinstance(item, _EmptyPath) for item in (value if isinstance(value, list) else [value])):
            name = max(param.opts, key=len) if param.param_type_name == "option" else param.name.upper()
            raise InputError(f"{name} is empty: give a path ('.' for the current folder)")


def _print_version(value: bool) -> None:
    if value:
        from . import __version__

        print(f"nnst-hr {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Also show debug messages."),
    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    # the library only logs; the command line shows its messages on stderr
    configure_logging(logging.DEBUG if verbose else logging.INFO)


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class Render(str, Enum):
    copy = "copy"
    vote = "vote"


class Fit(str, Enum):
    crop = "crop"
    pad = "pad"


class GuideMode(str, Enum):
    soft = "soft"
    hard = "hard"


def _input_errors() -> tuple[type[Exception], ...]:
    """The bad-input exceptions, of the packages loaded so far (one not loaded raised nothing).

    Evaluated in an ``except`` clause: importing patchsynth (Numba, llvmlite) there, after an error
    loading torch for want of address space, failed too and ended in a traceback.
    """
    from .errors import InputError

    loaded = (getattr(sys.modules.get(module), name, None) for module, name in
              (("guidance", "MaskError"), ("patchsynth", "PatchSynthError")))
    return (InputError, *(error for error in loaded if isinstance(error, type)))


def _process_settings() -> None:
    """What the command sets for its own process, before any command imports torch.

    torch's OpenMP workers spin while they wait; on a machine whose cores are shared with
    another process (or with Numba) that made steps several times slower. Set
    OMP_WAIT_POLICY yourself to choose otherwise.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


EXIT_SIGPIPE = 141  # the shell's code for a process whose output pipe closed (128 + SIGPIPE)
RESUME_RUN = "run the same command again to resume from the run folder"
RESUME_PLAN = "run the same command again to resume from the stages in the cache"


def _guarded(action, memory_hint=None, resume=None, ctx=None):
    """Run ``action()``; bad input -> message + exit 2, anything else -> message + exit 1.

    ``memory_hint()``: what to lower when the command runs out of memory, in the options it was
    given ("use a smaller --size"); None: only "close other programs". ``resume``: how to go on
    after Ctrl-C or SIGTERM (:data:`RESUME_RUN`, :data:`RESUME_PLAN`); None for commands that
    leave nothing to resume (``metrics``, ``cache``, ...). ``ctx``: the command's context, whose
    path options given as '' are refused first."""
    from .signals import sigterm_as_exception

    _process_settings()
    shown: set[str] = set()

    def show(message, *args, **kwargs) -> None:
        # each text once: any warnings.catch_warnings (an experiment's stages decode their inputs under
        # one) resets Python's once-per-place memory, and a plan repeated a poster's warning per run
        if str(message) not in shown:
            shown.add(str(message))
            print(f"warning: {message}", file=sys.stderr)

    with warnings.catch_warnings(), sigterm_as_exception():
        warnings.simplefilter("default")
        warnings.showwarning = show
        return _exit_codes(action, memory_hint, resume, ctx)


def _exit_codes(action, memory_hint=None, resume=None, ctx=None):
    try:
        _refuse_empty_paths(ctx)
        return action()
    except typer.Exit:
        raise
    except _input_errors() as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise typer.Exit(2) from None
    except MemoryError:
        print(_out_of_memory_line(None, memory_hint), file=sys.stderr)
        raise typer.Exit(2) from None
    except Terminated:
        print(f"terminated (SIGTERM){': ' + resume if resume else ''}", file=sys.stderr)
        raise typer.Exit(EXIT_SIGTERM) from None
    except KeyboardInterrupt:
        print(f"interrupted{': ' + resume if resume else ''}", file=sys.stderr)
        raise typer.Exit(EXIT_SIGINT) from None
    except RuntimeError as exc:
        if str(exc).startswith(SYMLINK_LOOP):  # pathlib's resolve() before Python 3.13; ELOOP since
            print(f"error: {exc} (a symbolic link that leads back to itself); {PATH_FIXES[errno.ELOOP]}",
                  file=sys.stderr)
            raise typer.Exit(2) from None
        if not _out_of_memory(exc):
            _internal_error(exc)
        print(_out_of_memory_line(exc, memory_hint), file=sys.stderr)
        raise typer.Exit(2) from None
    except ImportError as exc:
        if not _loading_out_of_memory(exc):
            _internal_error(exc)
        print(_loading_out_of_memory_line(exc), file=sys.stderr)
        raise typer.Exit(2) from None
    except BrokenPipeError:
        # stdout's reader went away (`| head`): as `yes | head`, say nothing more (nowhere to say it; the
        # interpreter's last flush would print its own "Exception ignored" otherwise); was an internal error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise typer.Exit(EXIT_SIGPIPE) from None
    except OSError as exc:
        if _loading_out_of_memory(exc):
            print(_loading_out_of_memory_line(exc), file=sys.stderr)
        elif is_disk_full(exc):
            print(f"error: {disk_full_message(exc.filename or 'the output', None)}", file=sys.stderr)
        elif exc.errno in NOT_WRITABLE_ERRNOS and exc.filename:
            print(f"error: cannot write {exc.filename} ({exc.strerror}); choose another -o or fix the folder's "
                  "permissions", file=sys.stderr)
        elif exc.errno in PATH_FIXES and exc.filename:  # a name too long, a link loop: one line
            print(f"error: {exc.filename}: {exc.strerror}; {PATH_FIXES[exc.errno]}", file=sys.stderr)
        else:
            _internal_error(exc)
        raise typer.Exit(2) from None
    except Exception as exc:  # noqa: BLE001 - the CLI's last line of defence
        _internal_error(exc)


def _out_of_memory(exc: RuntimeError) -> bool:
    """torch's allocators fail with RuntimeErrors, not MemoryError: CPU "can't allocate memory",
    CUDA ``torch.OutOfMemoryError`` ("CUDA out of memory")."""
    return type(exc).__name__ == "OutOfMemoryError" or "can't allocate memory" in str(exc)


LOADING_OUT_OF_MEMORY = ("failed to map segment from shared object", "cannot allocate memory")  # dlopen's words


def _loading_out_of_memory(exc: BaseException) -> bool:
    """Whether loading a library (torch, llvmlite) failed for want of memory or address space, anywhere in
    ``exc``'s chain: under ``ulimit -v`` (a batch system's memory limit) this was a traceback, and printing
    it ran out of memory too."""
    seen = 0
    while exc is not None and seen < 16:
        if isinstance(exc, MemoryError) or any(words in str(exc).lower() for words in LOADING_OUT_OF_MEMORY):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def _loading_out_of_memory_line(exc: BaseException) -> str:
    """``error: out of memory loading the libraries (...); <the address-space limit, if one is set>``."""
    import resource

    limit = resource.getrlimit(resource.RLIMIT_AS)[0]
    where = (f"this process may map only {format_bytes(limit)} (ulimit -v): raise that limit"
             if limit != resource.RLIM_INFINITY else "close other programs")
    return f"error: out of memory loading the program's libraries ({_first_line(exc)}); {where}"


def _out_of_memory_line(exc: RuntimeError | None, memory_hint) -> str:
    """``error: out of memory (torch's first line); <the command's hint>, or close other programs``."""
    detail = f" ({_first_line(exc)})" if exc is not None else ""
    hint = memory_hint() if memory_hint is not None else None
    return f"error: out of memory{detail}; {hint + ', or ' if hint else ''}close other programs"


def _run_memory_hint(options) -> str:
    """What to lower when a run (:class:`nnst_hr.run.RunOptions`; None before they are known) ran out of
    memory: the options that set its sizes. With ``--print`` the poster's size comes from the print
    and ``--dpi`` (``--out-size`` is refused), as the memory check before the run says too."""
    if options is None:
        return "use a smaller --size or --out-size"
    if options.print_size is not None:
        return "use a smaller --size, a lower --dpi or a smaller --print"
    if options.poster.out_size:
        return "use a smaller --size or --out-size"
    return "use a smaller --size"


def _first_line(exc: BaseException) -> str:
    return next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)


def _internal_error(exc: BaseException):
    traceback.print_exc(file=sys.stderr)
    print(f"internal error: {exc}", file=sys.stderr)
    raise typer.Exit(1) from None


def _same_aspect(size: tuple[int, int], shape: tuple[int, int]) -> bool:
    """Whether an image of ``shape`` (H, W), resized to the long side of ``size`` (H, W), is ``size``
    (within the pixel that rounding moves)."""
    (h, w), (height, width) = size, shape
    if min(h, w, height, width) < 1:
        return False
    return abs(h - w * height / width) <= 1 if w >= h else abs(w - h * width / height) <= 1


def _check_recorded_output(config: Path, output: Path) -> None:
    """Without ``-o``, ``--config`` writes the output its config.json records (an absolute path): refuse
    (:class:`InputError`) one whose run folder is not the config's own (the folder was moved or copied
    since: the run wrote the old place, and started again instead of resuming from the moved folder)."""
    from .errors import InputError
    from .run import run_folder

    folder = config.parent  # a folder given is refused by read_run_config
    if run_folder(output).resolve() != folder.resolve():
        beside = f" (-o {folder.with_suffix(output.suffix)} resumes from it)" if folder.suffix == ".run" else ""
        raise InputError(f"{config} records the output {output}, whose run folder is {run_folder(output)}, not "
                         f"{folder} (moved or copied since): give -o{beside}")


def _check_device_of(config: Path, device: str) -> None:
    """Refuse a device of ``config`` (a run's config.json) that this machine lacks, naming where it
    came from: the run's own check said "--device cuda", an option the user never gave."""
    from .device import resolve_device
    from .errors import InputError

    try:
        resolve_device(device)
    except InputError:
        raise InputError(f"NNSTConfig.device in {config} is {device!r}, but no CUDA GPU is available here; "
                         "add --device cpu (or auto) to run it on this machine") from None


@dataclass
class _Paths:
    content: Path | None
    style: Path | None
    output: Path | None


@app.command()
def run(
    ctx: typer.Context,
    content: Path | None = typer.Argument(None, **PATH_ARGUMENT, help="Content photo (PNG, JPEG, TIFF or WebP)."),
    style: Path | None = typer.Argument(None, **PATH_ARGUMENT, help="Style exemplar (a painting)."),
    output: Path | None = typer.Option(None, "--output", "-o", **PATH_OPTION,
        help="Output file; .tif (16-bit), .png or .jpg."),
    size: int = typer.Option(NNST.size, help="Long side of the NNST result in pixels."),
    out_size: int | None = typer.Option(None, help="Long side of the poster; adds 4K patch synthesis."),
    guide: Path | None = typer.Option(None, **PATH_OPTION, help="Masks folder (content.png + style.png label maps)."),
    no_guide: bool = typer.Option(False, "--no-guide",
        help="Unguided: drop the masks folder --config's run recorded (--guide's opposite)."),
    guide_weight: float = typer.Option(NNST.guide_weight, help="Weight of the mask term vs cosine (0..1)."),
    guide_mode: GuideMode = typer.Option(GuideMode.soft, help="soft: penalty; hard: same label only."),
    nnst_weight: float = typer.Option(POSTER.nnst_weight, help="Poster: weight of the NNST result as guide."),
    mask_weight: float = typer.Option(POSTER.mask_weight, help="Poster: weight of the mask labels as guide."),
    uniformity: float = typer.Option(POSTER.uniformity, help="Poster: penalty on reusing exemplar patches."),
    render: Render = typer.Option(Render.copy, help="Poster pixels: copy matched exemplar pixels, or vote."),
    max_search_size: int = typer.Option(
        POSTER.max_search_size, help="Poster: larger posters are searched at a power-of-two fraction of their size "
        "and rendered at full size; raise it for finer coherence at more time and memory."),
    alpha: float = typer.Option(NNST.alpha, help="Stylization: 0 keeps the most content, 1 the most style."),
    color: bool = typer.Option(NNST.color, "--color/--no-color", help="Lab color post-processing."),
    rotate: bool = typer.Option(NNST.rotate, "--rotate/--no-rotate", help="Also match the style rotated."),
    steps: int = typer.Option(NNST.steps, help="Adam steps per scale."),
    split_steps: int = typer.Option(NNST.split_steps, help="Adam steps of the feature-splitting pass."),
    exact: bool = typer.Option(NNST.exact, "--exact", help="Reference mode: exhaustive fp32 search."),
    bf16: bool = typer.Option(NNST.bf16, "--bf16/--no-bf16", help="bf16 VGG and candidate search where native."),
    device: Device = typer.Option(Device.auto, help="auto, cpu or cuda."),
    seed: int = typer.Option(NNST.seed, help="Random seed; the same seed gives the same result."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output file."),
    dpi: int = typer.Option(300, help="DPI written to the output (TIFF, PNG, JPEG); with --print, sets its pixels."),
    jpeg_quality: int = typer.Option(95, help="JPEG quality (1..100)."),
    bit_depth: int | None = typer.Option(None, help="8 or 16 bits; default 16 for TIFF, 8 otherwise."),
    weights: Path | None = typer.Option(None, envvar="NNST_HR_WEIGHTS", **PATH_OPTION, help="VGG16 weights file."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output, no informational messages."),
    config: Path | None = typer.Option(
        None, **PATH_OPTION,
            help="A run folder's config.json: rerun with its inputs and parameters; options given here win."),
    # --- print production (nnst_hr.printing)
    print_size: str | None = typer.Option(
        None, "--print", help="Print size: A6 .. A0 or WxH in in/cm/mm (24x36in, 50x70cm); sets the "
        "output size from --dpi and the content's orientation."),
    fit: Fit = typer.Option(Fit.crop, help="--print: crop the content to the print's aspect, or pad it (mirrored)."),
    bleed: float = typer.Option(0.0, metavar="MM", help="--print: add MM of picture on every side, for the print "
                                "shop to trim off (3 is usual); the proof shows the trim line."),
    cmyk: Path | None = typer.Option(
        None, **{**PATH_OPTION, "metavar": "PROFILE.icc"}, help="Write a CMYK TIFF for a press: the poster separated "
        "through the print shop's CMYK output profile (FOGRA39, GRACoL, ...), embedded; proof.jpg is a soft proof."),
    no_cmyk: bool = typer.Option(False, "--no-cmyk",
        help="An sRGB output: drop the press profile --config's run recorded (--cmyk's opposite)."),
) -> None:
    """Stylize CONTENT after STYLE and write OUTPUT (and a resumable OUTPUT.run/ folder)."""
    if quiet:
        configure_logging(logging.WARNING)

    def action():
        from .errors import InputError
        from .files import OUTPUT_FORMATS
        from .run import RunOptions, read_run_config, run_files

        def explicit(name: str) -> bool:
            # by name: typer ships its own copy of click, with its own ParameterSource enum
            source = ctx.get_parameter_source(name)
            return source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")

        def given(name: str) -> bool:
            return config is None or explicit(name) or (name == "guide" and no_guide) or (name == "cmyk" and no_cmyk)

        def pick(base, values: dict):
            return replace(base, **{name: value for name, value in values.items() if given(name)})

        base = read_run_config(config) if config is not None else {"options": RunOptions()}
        paths = pick(_Paths(base.get("content"), base.get("style"), base.get("output")),
                     {"content": content, "style": style, "output": output})
        missing = [label for label, value in (("CONTENT", paths.content), ("STYLE", paths.style),
                                              ("--output", paths.output)) if value is None]
        if missing:
            raise InputError(f"missing {', '.join(missing)}: give them, or --config RUN/config.json of an earlier run")
        for dropped, option, value in ((no_guide, "--guide", guide), (no_cmyk, "--cmyk", cmyk)):
            if dropped and value is not None:
                raise InputError(f"--no-{option[2:]} and {option} {value} contradict each other; give one")
        if config is not None and not given("output"):
            _check_recorded_output(config, Path(paths.output))
        options = base["options"]
        options = pick(options, {"guide": None if no_guide else guide, "dpi": dpi, "jpeg_quality": jpeg_quality,
                                 "bit_depth": bit_depth, "print_size": print_size, "fit": fit.value,
                                 "bleed": bleed, "cmyk": None if no_cmyk else cmyk})
        options = replace(
            options,
            nnst=pick(options.nnst, {
                "size": size, "alpha": alpha, "color": color, "rotate": rotate, "steps": steps,
                "split_steps": split_steps, "exact": exact, "bf16": bf16, "device": device.value, "seed": seed,
                "guide_weight": guide_weight, "guide_mode": guide_mode.value,
            }),
            poster=pick(options.poster, {"out_size": out_size, "nnst_weight": nnst_weight,
                                         "mask_weight": mask_weight, "uniformity": uniformity,
                                         "render": render.value, "max_search_size": max_search_size}),
            overwrite=overwrite, weights=weights, quiet=quiet,
        )
        if config is not None:  # given here, --print or --out-size replaces the other one of config.json
            if given("print_size") and not given("out_size"):
                options = replace(options, poster=replace(options.poster, out_size=None))
            elif given("out_size") and not given("print_size"):
                options = replace(options, print_size=None, bleed=0.0)
        if config is not None:  # a file the earlier run read, moved or deleted since: say where its path came from
            for name, label, path in (("content", "CONTENT", paths.content), ("style", "STYLE", paths.style),
                                      ("guide", "--guide", options.guide), ("cmyk", "--cmyk", options.cmyk)):
                if path is not None and not given(name) and not Path(path).exists():
                    raise InputError(f"{path} ({label} of the run in {config}) no longer exists; give {label} "
                                     "on the command line")
        if explicit("fit") and options.print_size is None:  # was ignored
            raise InputError("--fit applies to a print: give --print too, or leave out --fit")
        if config is not None and not given("device"):
            _check_device_of(config, options.nnst.device)
        written_as = OUTPUT_FORMATS.get(Path(paths.output).suffix.lower())
        notes = []  # said by the run once its checks pass: an unknown suffix, a quality out of range, a run
        # too large for the memory are refused without a warning first
        if explicit("jpeg_quality") and written_as not in (None, "JPEG") and 1 <= jpeg_quality <= 100:
            notes.append(f"--jpeg-quality {jpeg_quality} is ignored: {paths.output} is written as {written_as}; "
                         "it applies to a .jpg output")
        info = []  # said by the run too, once its checks pass
        if config is not None and not given("output"):
            info.append(f"writing {paths.output}, the output recorded in {config} (-o to write elsewhere)")
        resolved["options"] = options
        run_files(paths.content, paths.style, paths.output, options, notes=notes, info=info)

    resolved = {}  # the options as the run got them (from --config too), for the out-of-memory line
    _guarded(action, lambda: _run_memory_hint(resolved.get("options")), RESUME_RUN, ctx)


@app.command("experiment")
def experiment_command(
    ctx: typer.Context,
    plan: Path = typer.Argument(..., **PATH_ARGUMENT,
        help="Plan file (TOML): pairs, axes, fixed options; see the README."),
    output: Path = typer.Option(..., "--output", "-o", **PATH_OPTION,
        help="Results folder (results.csv, sheet.png, report.html)."),
    cache: Path | None = typer.Option(None, **PATH_OPTION,
        help="Stage cache folder to share between plans (default OUTPUT/cache)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output."),
    workers: int | None = typer.Option(None, help="Run the stages on a local Dask cluster of N processes."),
    scheduler: str | None = typer.Option(None, help="Run the stages on an existing Dask cluster (tcp://host:8786)."),
) -> None:
    """Run every combination of the plan's axes for every pair, each stage once; resumable."""

    def action():
        from .errors import InputError
        from .experiment import run_plan

        if scheduler is not None and not scheduler.strip():  # was "cannot reach the Dask scheduler at  (...)"
            raise InputError("--scheduler is empty: give the Dask scheduler's address (tcp://host:8786), or leave "
                             "it out to run in this process")
        summary = run_plan(plan, output, cache_dir=cache, quiet=quiet, workers=workers, scheduler=scheduler)
        if summary.failed:  # exit 2 once the report of the runs that worked is written
            raise InputError(summary.failed_line())

    _guarded(action, lambda: "use a smaller size or out_size in the plan", RESUME_PLAN, ctx)


@cache_app.command("info")
def cache_info(
    ctx: typer.Context,
    folder: Path = typer.Argument(..., **PATH_ARGUMENT, help="A cache folder, or a results folder (its cache/)."),
    json_output: bool = typer.Option(False, "--json", help="Print one JSON object instead of a table."),
    verify: bool = typer.Option(False, "--verify", help="Also check every entry's checksum (reads every byte)."),
) -> None:
    """Entries and bytes per stage kind, leftovers no run will read, and the total."""

    def action():
        import json

        from .experiment import housekeeping as hk

        found = hk.survey(hk.cache_folder(folder), verify=verify)
        if json_output:
            print(json.dumps(found.to_json()))
            return
        header, rows = ("what", "count", "size"), hk.info_rows(found)
        if sys.stdout.isatty():
            from rich.console import Console
            from rich.table import Table

            table = Table(title=str(found.folder))
            for i, name in enumerate(header):
                table.add_column(name, justify="right" if i else "left")
            for row in rows:
                table.add_row(*row, end_section=row is rows[-2])
            Console().print(table)
        else:
            print(f"{found.folder}\n{hk.text_table(header, rows)}")
        if found.in_use:
            print("an experiment is running on this cache now")

    _guarded(action, ctx=ctx)


@cache_app.command("prune")
def cache_prune(
    ctx: typer.Context,
    folder: Path = typer.Argument(..., **PATH_ARGUMENT, help="A cache folder, or a results folder (its cache/)."),
    keep: list[Path] = typer.Option([], "--keep", **PATH_OPTION, help="Plan file whose stages stay (repeatable)."),
    older_than: float | None = typer.Option(None, "--older-than", help="Remove entries unused for more than "
                                            "DAYS (with --keep: only those in no kept plan)."),
    yes: bool = typer.Option(False, "--yes", help="Delete; without it, only list what would go."),
    json_output: bool = typer.Option(False, "--json", help="Print one JSON object instead of lines."),
    verify: bool = typer.Option(False, "--verify", help="Also remove entries whose checksum does not match "
                                "(reads every byte)."),
) -> None:
    """Remove the entries no --keep plan reads (or unused for --older-than DAYS), and leftovers."""

    def action():
        import json

        from .experiment import housekeeping as hk

        pruning = hk.prune(folder, keep, older_than, apply=yes, verify=verify)
        print(json.dumps(pruning.to_json()) if json_output else "\n".join(hk.pruning_lines(pruning)))

    _guarded(action, ctx=ctx)


@app.command("weights")
def weights_command(
    ctx: typer.Context,
    weights: Path | None = typer.Option(None, envvar="NNST_HR_WEIGHTS", **PATH_OPTION,
        help="VGG16 weights file to check."),
) -> None:
    """Find (and if needed fetch and convert) the VGG16 weights; print where they came from."""

    def action():
        from .weights import describe

        print(describe(weights))

    _guarded(action, ctx=ctx)


@masks_app.command("check")
def masks_check(
    ctx: typer.Context,
    folder: Path = typer.Argument(..., **PATH_ARGUMENT, help="Masks folder."),
    content: Path | None = typer.Option(None, **PATH_OPTION, help="Content image, to check sizes against."),
    style: Path | None = typer.Option(None, **PATH_OPTION, help="Style image, to check sizes against."),
) -> None:
    """List the labels, their colors and areas, and anything unmatched or suspicious.

    The report goes to stdout; masks that cannot be used also get one error: line on stderr."""

    def action():
        from guidance import check_masks, mask_folder
        from guidance.check import problem_line

        mask_folder(folder)  # no folder, nothing to report: the one line of any missing input
        report = check_masks(folder, content, style)
        print(report.text)
        if not report.usable:
            print(f"error: {problem_line(report)}", file=sys.stderr)
            raise typer.Exit(2) from None

    _guarded(action, ctx=ctx)


def _metrics_print_plan(image: Path, image_shape, content: Path, content_shape, print_size, dpi, fit, bleed=None):
    """The print plan IMAGE was made with (``nnst_hr.printing.PrintPlan``), or None where it is no print.

    From ``--print``/``--dpi``/``--fit``/``--bleed`` when given, else from IMAGE's run folder (its
    ``config.json``, as the run wrote it). A run folder that names another content file (by its
    SHA-256) is refused: its crop or pad belongs to that file; one whose print cannot be read is
    left out with a warning. Without a plan, a content of another aspect than IMAGE gets a
    warning: the content scores then compare IMAGE with the content stretched to it.
    """
    from .errors import InputError
    from .printing import plan_print
    from .run import RunOptions, run_folder
    from .scores import made_from

    log = logging.getLogger(__name__)
    plan = source = None
    if print_size is not None:
        plan = plan_print(content_shape, print_size, RunOptions.dpi if dpi is None else dpi,
                          fit.value if fit is not None else RunOptions.fit,
                          RunOptions.bleed if bleed is None else bleed)
        source = "--print"
    elif dpi is not None or fit is not None or bleed is not None:
        raise InputError("--dpi, --fit and --bleed describe a print: give its --print too, or leave them out")
    else:
        config = run_folder(image) / "config.json"
        plan = _run_folder_print_plan(config, image, content, content_shape, log)
        source = str(config)
    (height, width), (h, w) = image_shape, content_shape
    if plan is None:
        if not made_from(content_shape, image_shape):
            log.warning(f"{image} ({width}x{height}) has another aspect than {content} ({w}x{h}): content_lpips and "
                        "content_ssim compare it with the content stretched to it; if it is a print, give the "
                        "--print, --dpi, --fit and --bleed of its run")
        return None
    fitted_h, fitted_w = plan.fitted_shape
    if not made_from(plan.fitted_shape, image_shape, through=None):  # fitted to the print's exact pixels
        raise InputError(f"{image} ({width}x{height}) is not a print of {content} as {source} says (content "
                         f"{FITTED[plan.fit]} to {fitted_w}x{fitted_h}, another aspect); give the --print, --dpi and "
                         f"--fit of the run that made {image}")
    compared = ("the cropped content" if plan.box is not None
                else "the content, in the image's region inside the mirrored margins")
    log.info(f"{image} is a print ({source}): {plan.describe()}; content_lpips and content_ssim compare it with "
             f"{compared}")
    return plan


def _run_folder_print_plan(config: Path, image: Path, content: Path, content_shape, log):
    """The print plan of a run folder's ``config.json`` for ``content``; None where there is none or it cannot
    be read (with a warning). Raises :class:`InputError` where the run was made from another content file."""
    import json

    from .config import checked_value, values_from
    from .errors import InputError
    from .files import sha256_file
    from .printing import plan_print
    from .run import RUN_CONFIG_TYPES, RunOptions

    if not config.is_file():
        return None
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        log.warning(f"{config} is not used: it cannot be read as a run folder's config.json ({exc})")
        return None
    if not isinstance(data, dict) or data.get("print") is None:
        return None  # the run made no print
    key = data.get("nnst_key")
    recorded = key.get("content_sha256") if isinstance(key, dict) else None
    if recorded is not None and recorded != sha256_file(content):
        raise InputError(f"{config} says {image} was made from {data.get('content') or 'another content'}, not from "
                         f"{content}; give that content, or give --print, --dpi, --fit and --bleed to score {image} "
                         f"against {content} fitted to that print")
    try:
        values = {}
        for name in ("print", "dpi", "fit", "bleed"):
            try:
                checked_value(RUN_CONFIG_TYPES[name], data.get(name), none="null")
                values[name] = data.get(name)  # as written: a DPI of 300, not 300.0, in the messages
            except InputError as exc:
                raise InputError(f"{name}: {exc}") from None
        with values_from("config"):  # "print 'B7' is not a print size", not "--print"
            dpi = RunOptions.dpi if values["dpi"] is None else values["dpi"]
            bleed = RunOptions.bleed if values["bleed"] is None else values["bleed"]
            return plan_print(content_shape, values["print"], dpi, values["fit"] or RunOptions.fit, bleed)
    except InputError as exc:
        log.warning(f"{config} is not used: {exc}")
        return None


@app.command("metrics")
def metrics_command(
    ctx: typer.Context,
    image: Path = typer.Argument(..., **PATH_ARGUMENT, help="The stylized image to score (ours or another tool's)."),
    content: Path = typer.Option(..., "--content", **PATH_OPTION, help="Content image it was made from."),
    style: Path = typer.Option(..., "--style", **PATH_OPTION, help="Style exemplar."),
    guide: Path | None = typer.Option(None, **PATH_OPTION,
        help="Masks folder: adds style_gram.<label> (and label_agreement)."),
    field: Path | None = typer.Option(None, **PATH_OPTION,
        help="nnf.npz of the run folder, with --guide: adds label_agreement."),
    raw: Path | None = typer.Option(None, **PATH_OPTION,
        help="NNST result before color (nnst_raw.png); objective uses it."),
    upsampled_from: Path | None = typer.Option(None, **PATH_OPTION,
        help="Poster: the NNST result it was made from (detail)."),
    size: int | None = typer.Option(None, help="Long side for objective (default: that image's)."),
    json_output: bool = typer.Option(False, "--json", help="Print one JSON object instead of a table."),
    seed: int = typer.Option(0, help="Seed of color_swd's random projections."),
    weights: Path | None = typer.Option(None, envvar="NNST_HR_WEIGHTS", **PATH_OPTION, help="VGG16 weights file."),
    print_size: str | None = typer.Option(
        None, "--print", help="IMAGE is a print: the run's --print; the content is fitted as the run did (default: "
        "what IMAGE's run folder IMAGE.run/config.json says)."),
    dpi: int | None = typer.Option(None, help="With --print: the run's --dpi (default 300)."),
    fit: Fit | None = typer.Option(None, help="With --print: the run's --fit, crop (default) or pad."),
    bleed: float | None = typer.Option(None, metavar="MM", help="With --print: the run's --bleed (default 0)."),
) -> None:
    """Score IMAGE against its content and style: content kept, style reached, color, detail.

    A print (run --print) is scored against its content cropped or padded as its run did."""

    def action():
        import json

        from .config import MAX_SEED
        from .files import read_image
        from .nnf import load_field
        from .scores import format_table, made_from, score_image
        from .sizes import check_input_sizes

        if not 0 <= seed <= MAX_SEED:
            raise InputError(f"--seed must be between 0 and {MAX_SEED}, got {seed}")
        if field is not None and guide is None:  # the field's one score, label_agreement, reads the masks
            raise InputError("--field scores label_agreement, which needs the masks: add --guide MASKS (the run's "
                             "masks folder), or leave out --field")
        config = NNSTConfig(size=size) if size is not None else None
        if config is not None:  # an option's error first: before the print's info line, and any reading
            config.validate()
        picture, content_image, style_image = read_image(image), read_image(content), read_image(style)
        extra = {path: read_image(path) for path in (raw, upsampled_from) if path is not None}
        for option, path, made in (("--raw", raw, "nnst_raw.png"), ("--upsampled-from", upsampled_from, "nnst.png")):
            if path is not None and not made_from(extra[path].shape[:2], picture.shape[:2]):
                (h, w), (height, width) = extra[path].shape[:2], picture.shape[:2]
                raise InputError(f"{option} {path} ({w}x{h} px) has another aspect than {image} ({width}x{height}), "
                                 f"so {image} was not made from it; give the {made} of the run that made {image}")
        check_input_sizes({path: pixels.shape[:2] for path, pixels in
                           ((image, picture), (content, content_image), (style, style_image), *extra.items())}, 0)
        masks = nnf = style_size = None
        if guide is not None:
            from guidance import load_masks

            masks = load_masks(guide, content_image.shape[:2], style_image.shape[:2])
        plan = _metrics_print_plan(image, picture.shape[:2], content, content_image.shape[:2], print_size, dpi, fit,
                                   bleed)
        fitted = plan.fitted_shape if plan is not None else content_image.shape[:2]
        if field is not None:
            stored = load_field(field)
            nnf, style_size = stored["nnf"], tuple(int(v) for v in stored["style_size"])
            made_for = tuple(int(v) for v in stored["content_size"])
            for what, path, made, shape in (("content", content, made_for, fitted),
                                            ("style", style, style_size, style_image.shape[:2])):
                if not _same_aspect(made, shape):  # a print's field was made for the fitted content
                    fitted_as = f" {FITTED[plan.fit]} to the print" if what == "content" and plan else ""
                    raise InputError(f"{field} was made for a {what} of {made[1]}x{made[0]} px, not for {path}"
                                     f"{fitted_as} ({shape[1]}x{shape[0]}); give the nnf.npz of the run that "
                                     f"made {image}")
        if config is not None:
            from .device import resolve_device
            from .memory import check_fits

            # objective matches at --size as a run's NNST does: a size that cannot fit was killed or a traceback
            scored = extra.get(raw, extra.get(upsampled_from, picture))
            check_fits(scored.shape[:2], style_image.shape[:2], size, device=resolve_device(config.device).type)
        scores = score_image(
            picture, content_image, style_image,
            raw=extra.get(raw) if raw is not None else None, nnst_config=config, field=nnf,
            style_size=style_size, masks=masks,
            upsampled_from=extra.get(upsampled_from) if upsampled_from is not None else None,
            print_plan=plan, weights=weights, seed=seed,
        )  # fmt: skip
        print(json.dumps(scores) if json_output else format_table(scores))

    from .errors import InputError

    _guarded(action, lambda: "use a smaller --size", ctx=ctx)
