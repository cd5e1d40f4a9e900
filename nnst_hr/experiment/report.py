"""What an experiment writes: ``runs/<run id>/*.png``, ``results.csv``, ``sheet.png``, ``report.html``.

Everything is built from the executed graph's records and the cache's per-stage figures;
every file is written atomically (temporary file + rename). Records are read one at a time
(:class:`~.execute.Results` reads them from the cache when asked for), and an image already
written for the same stage key is not read at all, so the report's memory does not grow with
the plan.
"""

from __future__ import annotations

import csv
import html
import io
import itertools
import json
import math
import warnings
from dataclasses import fields
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..config import NNSTConfig, PosterConfig
from ..errors import InputError
from ..files import atomic_output, decode_image, write_image
from ..scores import direction_line
from .cache import Cache
from .execute import Results
from .graph import Graph
from .plan import NONE_WORDS, Plan

THUMB = 176  # long side of a contact-sheet thumbnail (px)
HEAD_THUMB = 84  # long side of the content / style thumbnails at a row head
FONT_SIZE = 13  # Pillow's default (FreeType) font size on the sheet
LINE = 16  # text line height on the sheet
PAD = 8  # gaps on the sheet (px)
HEAD_CHARS = 24  # file names at the row heads are cut to this many characters
STAGES = ("inputs", "nnst", "color", "poster", "poster_color", "scores", "press")
PLOT_W, PLOT_H, PLOT_M = 320, 200, 54  # SVG plot size and margin (px; room for tick labels like 1.23e-05)
PLOT_SUBTITLE = 8  # px more above a plot's area, for the line saying which way the score is better
REPORT_FILES = ("results.csv", "sheet.png", "report.html")  # in the results folder
RUNS_FOLDER = "runs"  # results/runs/<run id>/ holds each run's images
RESULT_PNG, NNST_PNG = "result.png", "nnst.png"  # in runs/<run id>/, each with its .key stamp (_write_png)
# with cmyk, also in runs/<run id>/: the press file (`run --cmyk`'s output) and its soft proof (its proof.jpg)
PRESS_TIF, PROOF_JPG = "press.tif", "proof.jpg"
RUN_IMAGES = (RESULT_PNG, NNST_PNG, PRESS_TIF, PROOF_JPG)  # every stamped file of a run's folder
PAIR_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")


# csv column -> RunSpec attribute
PRINT_COLUMNS = {"print": "print_size", "dpi": "dpi", "fit": "fit", "bleed": "bleed", "cmyk": "cmyk"}


def _param_columns() -> list[str]:
    return [f.name for f in fields(NNSTConfig)] + [f.name for f in fields(PosterConfig)] + list(PRINT_COLUMNS)


def _param_value(run, name: str):
    if name in PRINT_COLUMNS:
        return getattr(run, PRINT_COLUMNS[name])
    if hasattr(run.nnst, name):
        return getattr(run.nnst, name)
    return getattr(run.poster, name)


def _fmt(value) -> str:
    """A value as the report shows it (sheet, table, CSV); a boolean as a plan writes it.

    >>> [_fmt(v) for v in (None, True, False, 0.1 + 0.2, 5, "copy")]
    ['', 'true', 'false', '0.3', '5', 'copy']
    """
    if value is None:
        return ""
    if isinstance(value, bool):  # str() gave "True", which a plan (TOML) does not read
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _shown(name: str, value) -> str:
    """A value as the sheet shows it: :func:`_fmt`, a press profile by its file's name (the csv has its path),
    an option set to none as the plan wrote it (the csv leaves it empty).

    >>> _shown("cmyk", "/presses/FOGRA39.icc"), _shown("alpha", 0.25), _shown("cmyk", None)
    ('FOGRA39.icc', '0.25', 'none')
    """
    if value is None:
        return NONE_WORDS[0]
    return Path(value).name if name == "cmyk" else _fmt(value)


def _plan_values(values: dict) -> str:
    """A plan table's values as the report's header shows them: JSON, none as the plan writes it (TOML has no null).

    >>> _plan_values({"cmyk": ["a.icc", None], "size": 128})
    '{"cmyk": ["a.icc", "none"], "size": 128}'
    """
    def plain(value):
        return NONE_WORDS[0] if value is None else [plain(v) for v in value] if isinstance(value, list) else value

    return json.dumps({key: plain(value) for key, value in values.items()})


def pair_details(pair) -> list[str]:
    """What tells a pair apart beyond its files' names: its masks folder and its own options.

    Two pairs of the same files (one guided, or with another ``guide_weight``) read the same
    "coffee / t" on the sheet and in the legend.
    """
    guide = [f"guide {pair.guide.name}"] if pair.guide is not None else []
    return guide + [f"{name} = {_shown(name, value)}" for name, value in sorted(pair.options.items())]


def pair_label(pair) -> str:
    """``content / style`` with :func:`pair_details`: ``content / style, guide louvre, guide_weight = 0.75``."""
    return ", ".join([pair.name, *pair_details(pair)])


def check_results_folder(out_dir: Path, plan: Plan) -> None:
    """Refuse (:class:`InputError`), before any work, a results folder the report cannot write into:
    a file where it makes a folder (``runs/``, ``runs/<run id>/``), a folder where it writes a file.

    Found only once every stage had run, these were a traceback (or a message naming no fix).
    """
    runs = out_dir / RUNS_FOLDER
    folders = [runs, *(runs / run.run_id for run in plan.runs())]
    for folder in folders:
        if (folder.exists() or folder.is_symlink()) and not folder.is_dir():
            raise InputError(f"{folder} is a file where the experiment writes a folder; move it away or "
                             "choose another -o")
    images = [folder / name for folder in folders[1:] for name in RUN_IMAGES]
    files = [out_dir / name for name in REPORT_FILES] + [p for image in images for p in (image, _stamp(image))]
    for path in files:
        if path.is_dir():
            raise InputError(f"{path} is a folder where the experiment writes a file; move it away or "
                             "choose another -o")


def _stamp(path: Path) -> Path:
    """The sidecar naming the stage key whose image ``path`` holds."""
    return path.with_suffix(".key")


def _remove_stamped(path: Path) -> None:
    """Remove an image :func:`_write_stamped` wrote (its stamp says so) and its stamp; anything else stays."""
    stamp = _stamp(path)
    if stamp.is_file():
        path.unlink(missing_ok=True)
        stamp.unlink()


def remove_other_runs(out_dir: Path, run_ids: set[str]) -> None:
    """Remove the images of run ids that the plan written last does not have (a plan run again with an axis
    value less, another plan in the same folder): beside its results.csv they passed for its runs.
    Only stamped images go (:func:`_remove_stamped`), and a run's folder only once it is empty."""
    runs = out_dir / RUNS_FOLDER
    for folder in sorted(runs.glob("run[0-9][0-9][0-9]*")) if runs.is_dir() else ():
        if folder.name in run_ids or not folder.is_dir() or folder.is_symlink():
            continue
        for name in RUN_IMAGES:
            _remove_stamped(folder / name)
        if not any(folder.iterdir()):
            folder.rmdir()


def _write_png(path: Path, results: Results, key: str, dpi: int | None = None) -> None:
    """Write the ``image`` of stage ``key`` unless ``path`` already holds it (a sidecar says), tagged with
    ``dpi`` (None: the files' default) as ``run --dpi`` tags its output."""
    # the DPI is in the stamp: the same image tagged otherwise is another file
    _write_stamped(path, key if dpi is None else f"{key} dpi {dpi}",
                   lambda: write_image(path, results[key]["image"], overwrite=True,
                                       **({} if dpi is None else {"dpi": dpi})))


def _write_stamped(path: Path, said: str, write) -> None:
    """``write()`` ``path`` unless its stamp (:func:`_stamp`) says it holds ``said`` already (the stage keys and
    the tags it was written from), then stamp it: an image already written is not read from the cache again."""
    stamp = _stamp(path)
    if path.is_file() and stamp.is_file() and stamp.read_text().strip() == said:
        return
    write()
    with atomic_output(stamp, overwrite=True) as tmp:
        tmp.write_text(said + "\n")


def _write_press(folder: Path, run, keys: dict, graph: Graph, results: Results) -> None:
    """Write a cmyk run's press file (:data:`PRESS_TIF`: the ``press`` stage's ink, 16-bit separated CMYK with the
    profile embedded and the run's DPI, as ``run --cmyk`` writes its output) and its soft proof (:data:`PROOF_JPG`:
    as ``run --cmyk`` writes ``proof.jpg``, the trim line drawn where the print has a bleed)."""
    from ..files import write_cmyk_tiff
    from ..printing import PrintPlan, write_proof
    from .graph import PRESS_BITS

    press, final = keys["press"], keys["final"]
    profile = graph[press].args[1]
    plan = next((arg for arg in graph[final].args if isinstance(arg, PrintPlan)), None)
    _write_stamped(folder / PRESS_TIF, f"{press} dpi {run.dpi}",
                   lambda: write_cmyk_tiff(folder / PRESS_TIF, results[press]["ink"], profile, overwrite=True,
                                           bit_depth=PRESS_BITS, dpi=run.dpi))
    trim = plan.trim if plan is not None else None
    _write_stamped(folder / PROOF_JPG, f"{final} {press} dpi {run.dpi} trim {trim}",
                   lambda: write_proof(folder / PROOF_JPG, results[final]["image"], run.dpi, trim=trim, press=profile))


def collect_rows(plan: Plan, graph: Graph, results: Results, cache: Cache, out_dir: Path) -> list[dict]:
    """One dict per run (the csv row), writing each run's images under ``runs/<run id>/``."""
    rows = []
    for run, keys in zip(graph.specs, graph.runs, strict=True):
        row = {"run": run.run_id, "status": "ok", "message": "", "pair": run.pair_index,
               "content": str(run.pair.content), "style": str(run.pair.style),
               "guide": str(run.pair.guide or "")}
        failure = next((results.failure(keys[s]) for s in STAGES if s in keys and results.failure(keys[s])), None)
        if failure is not None:
            row.update(status="failed", message=f"{failure.stage}: {failure.message}")
        for name in plan.axes:
            row[name] = run.axis_values[name]
        row["scores"] = dict(results[keys["scores"]]) if failure is None else {}
        total = None  # no stage timed (a run failing on its inputs): empty, not 0 s
        for stage in STAGES:
            if stage in keys:
                meta = cache.meta(keys[stage])
                row[f"seconds.{stage}"] = meta.get("seconds")
                row[f"peak_memory.{stage}"] = meta.get("peak_memory")
                row[f"peak_gpu_memory.{stage}"] = meta.get("peak_gpu_memory")
                if meta.get("seconds") is not None:
                    total = (total or 0.0) + meta["seconds"]
        row["seconds.total"] = total
        row["result"] = row["nnst_result"] = row["press_result"] = row["soft_proof"] = ""
        folder = out_dir / RUNS_FOLDER / run.run_id
        if failure is None:
            folder.mkdir(parents=True, exist_ok=True)
            _write_png(folder / RESULT_PNG, results, keys["final"], run.dpi)
            row["result"] = f"{RUNS_FOLDER}/{run.run_id}/{RESULT_PNG}"
            if "poster" in keys:
                _write_png(folder / NNST_PNG, results, keys["color"])
                row["nnst_result"] = f"{RUNS_FOLDER}/{run.run_id}/{NNST_PNG}"
            if "press" in keys:
                _write_press(folder, run, keys, graph, results)
                row["press_result"] = f"{RUNS_FOLDER}/{run.run_id}/{PRESS_TIF}"
                row["soft_proof"] = f"{RUNS_FOLDER}/{run.run_id}/{PROOF_JPG}"
        # what an earlier plan wrote under this run id and this run does not (it failed, or makes no
        # poster or press file now) would pass for this run's image
        if failure is not None:
            _remove_stamped(folder / RESULT_PNG)
        if not row["nnst_result"]:
            _remove_stamped(folder / NNST_PNG)
        if not row["press_result"]:
            _remove_stamped(folder / PRESS_TIF)
            _remove_stamped(folder / PROOF_JPG)
        for name in _param_columns():
            if name not in row:
                row[name] = _param_value(run, name)
        row["keys"] = keys
        row["spec"] = run
        rows.append(row)
    return rows


def score_names(rows: list[dict], first: str) -> list[str]:
    names = sorted({name for row in rows for name in row["scores"]})
    return ([first] if first in names else []) + [n for n in names if n != first]


def csv_columns(plan: Plan, rows: list[dict]) -> list[str]:
    head = ["run", "status", "pair", "content", "style", "guide"] + list(plan.axes)
    scores = score_names(rows, plan.score)
    stages = [f"{what}.{s}" for what in ("seconds", "peak_memory", "peak_gpu_memory") for s in STAGES]
    stages.append("seconds.total")
    params = [name for name in _param_columns() if name not in head]
    return head + scores + stages + ["result", "nnst_result", "press_result", "soft_proof"] + params + ["message"]


def write_csv(path: Path, plan: Plan, rows: list[dict]) -> list[str]:
    columns = csv_columns(plan, rows)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_fmt(row["scores"].get(c, row.get(c))) if c in row["scores"] or c in row else ""
                         for c in columns])
    with atomic_output(path, overwrite=True) as tmp:
        tmp.write_text(buffer.getvalue())
    return columns


# --------------------------------------------------------------------------- contact sheet


def _cut(line: str) -> str:
    """``line`` cut to :data:`HEAD_CHARS` characters, ending in an ellipsis where it was cut: a name cut
    without one read as the whole name (``cozens_grotto-in-the-cam``).

    >>> _cut("cozens_grotto-in-the-campagna_watercolor"), _cut("coffee")
    ('cozens_grotto-in-the-ca…', 'coffee')
    """
    return line if len(line) <= HEAD_CHARS else line[:HEAD_CHARS - 1] + "…"


def _font(size: int = FONT_SIZE):
    return ImageFont.load_default(size=size)


def _thumb(image: np.ndarray, side: int) -> Image.Image:
    pil = Image.fromarray(np.clip(np.rint(image * 255), 0, 255).astype(np.uint8))
    if max(pil.size) > side:
        pil.thumbnail((side, side), Image.LANCZOS)
    elif max(pil.size) < side:  # small test images: enlarge with visible pixels
        scale = side / max(pil.size)
        pil = pil.resize((max(1, round(pil.width * scale)), max(1, round(pil.height * scale))), Image.NEAREST)
    return pil


def _sheet_layout(plan: Plan, rows: list[dict]):
    """Row groups (pair, row-axis value, other axes) and column values of the sheet."""
    col_values = plan.axes[plan.columns] if plan.columns else [None]
    others = [n for n in plan.axes if n not in (plan.rows, plan.columns)]
    row_axes = ([plan.rows] if plan.rows else []) + others
    groups = []
    for pair_index in range(len(plan.pairs)):
        for combo in itertools.product(*(plan.axes[n] for n in row_axes)):
            groups.append((pair_index, dict(zip(row_axes, combo, strict=True))))
    return groups, col_values


def _wrap(text: str, font, width: int) -> list[str]:
    """``text`` in lines of at most ``width`` px; a word longer than that (a path) is cut across lines."""
    lines, line = [], ""
    for word in text.split():
        trial = f"{line} {word}".strip()
        if line and font.getlength(trial) > width:
            lines.append(line)
            line = word
        else:
            line = trial
        while len(line) > 1 and font.getlength(line) > width:
            cut = 1  # the most characters that fit (at least one)
            while font.getlength(line[:cut + 1]) <= width:
                cut += 1
            lines.append(line[:cut])
            line = line[cut:]
    return lines + ([line] if line else [])


def write_sheet(path: Path, plan: Plan, rows: list[dict], heads: dict[int, tuple[Image.Image, Image.Image]]) -> None:
    """The contact sheet: a block of rows per pair, one column per value of the column axis.

    ``heads``: pair index -> (content, style) thumbnails for the row heads (:func:`head_thumbnails`).
    """
    font, bold = _font(), _font(FONT_SIZE + 2)
    groups, col_values = _sheet_layout(plan, rows)
    by_values = {}
    for row in rows:
        by_values[(row["pair"], tuple(sorted((k, repr(v)) for k, v in row["spec"].axis_values.items())))] = row
    proofs = any(row.get("soft_proof") for row in rows)  # a cmyk run shows how it prints, and says so
    label_lines = len(plan.axes) + 1 + proofs
    cell_w = THUMB + PAD
    # each group's cells and thumbnails first: a row is as tall as its tallest thumbnail
    cells, heights = [], []
    for pair_index, values in groups:
        found = []
        for col_value in col_values:
            axis_values = dict(values)
            if plan.columns:
                axis_values[plan.columns] = col_value
            row = by_values.get((pair_index, tuple(sorted((k, repr(v)) for k, v in axis_values.items()))))
            thumb = None
            if row is not None and row["status"] == "ok":
                shown = row.get("soft_proof") or row["result"]
                thumb = _thumb(np.asarray(Image.open(path.parent / shown).convert("RGB"), np.float32) / 255.0, THUMB)
            found.append((row, thumb))
        head = max(HEAD_THUMB + LINE, (3 + len(pair_details(plan.pairs[pair_index])) + len(values)) * LINE)
        tallest = max([head] + [THUMB if row is not None and thumb is None else thumb.height
                                for row, thumb in found if row is not None])
        cells.append(found)
        heights.append(tallest)
    head_lines = [f"{k} = {_shown(k, v)}" for _, values in groups for k, v in values.items()]
    head_lines += [_cut(line) for p in plan.pairs for line in (p.content.stem, p.style.stem, *pair_details(p))]
    head_w = 2 * HEAD_THUMB + 5 * PAD + int(max([font.getlength(t) for t in head_lines] + [60]))
    top = 2 * LINE + 2 * PAD
    width = head_w + cell_w * len(col_values) + PAD
    height = top + sum(h + 2 + label_lines * LINE + PAD for h in heights) + PAD
    sheet = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(sheet)
    title = f"{plan.path.name}: rows {plan.rows or '-'}, columns {plan.columns or '-'}, score {plan.score}"
    draw.text((PAD, PAD // 2), title, fill="black", font=bold)
    for c, value in enumerate(col_values):
        if plan.columns:
            draw.text((head_w + c * cell_w, LINE + PAD), f"{plan.columns} = {_shown(plan.columns, value)}",
                      fill="black", font=bold)
    y = top
    for g, (pair_index, values) in enumerate(groups):
        if g and pair_index != groups[g - 1][0]:
            draw.line([(0, y - PAD // 2), (width, y - PAD // 2)], fill="#888888", width=2)
        thumbs = heads.get(pair_index, (None, None))
        for k, (thumb, caption) in enumerate(zip(thumbs, ("content", "style"), strict=True)):
            if thumb is not None:
                sheet.paste(thumb, (PAD + k * (HEAD_THUMB + PAD), y))
            # under its own thumbnail: under a landscape one a square's height left a gap to the next row's head
            below = thumb.height if thumb is not None else HEAD_THUMB
            draw.text((PAD + k * (HEAD_THUMB + PAD), y + below + 2), caption, fill="#555555", font=font)
        pair = plan.pairs[pair_index]
        lines = [f"pair {pair_index}", *(_cut(line) for line in (pair.content.stem, pair.style.stem,
                                                                       *pair_details(pair)))]
        lines += [f"{k} = {_shown(k, v)}" for k, v in values.items()]
        for i, line in enumerate(lines):
            draw.text((3 * PAD + 2 * HEAD_THUMB, y + i * LINE), line, fill="black", font=font)
        for c, (row, thumb) in enumerate(cells[g]):
            x = head_w + c * cell_w
            if row is None:
                continue
            text = [f"{k}={_shown(k, v)}" for k, v in row["spec"].axis_values.items()]
            if thumb is not None:
                sheet.paste(thumb, (x + (THUMB - thumb.width) // 2, y))
                score = row["scores"].get(plan.score)
                text.append(f"{plan.score} {_fmt(score) if score is not None else 'n/a'}")
                if row.get("soft_proof"):
                    text.append(f"soft proof: {_cut(_shown('cmyk', row['cmyk']))}")
            else:
                draw.rectangle([x, y, x + THUMB, y + THUMB], fill="#f2dede", outline="#a94442")
                for i, line in enumerate(_wrap(row["message"], font, THUMB - 8)[: THUMB // LINE - 1]):
                    draw.text((x + 4, y + 4 + i * LINE), line, fill="#a94442", font=font)
                text.append("FAILED")
            for i, line in enumerate(text):
                draw.text((x, y + heights[g] + 2 + i * LINE), line, fill="black", font=font)
        y += heights[g] + 2 + label_lines * LINE + PAD
    with atomic_output(path, overwrite=True) as tmp:
        sheet.save(tmp, format="PNG")


# --------------------------------------------------------------------------- html


def _numeric_axes(plan: Plan) -> list[str]:
    return [n for n, vs in plan.axes.items()
            if len(vs) > 1 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vs)]


def svg_plot(axis: str, score: str, values: list, rows: list[dict], others: tuple[str, ...] = ()) -> str:
    """Inline SVG: ``score`` against the axis values (equally spaced), a point per run.

    A line joins the runs of one pair that differ only in ``axis``: one line per pair and setting
    of the ``others`` axes, in the pair's colour (a line through a pair's means over the other
    axes passed through none of its points). A point's tooltip names its pair and those settings.
    """
    points = [(values.index(row[axis]), row["scores"][score], row["pair"],
               ", ".join(f"{o}={_fmt(row[o])}" for o in others if o in row)) for row in rows
              if row["status"] == "ok" and row["scores"].get(score) is not None
              and math.isfinite(row["scores"][score]) and row[axis] in values]
    if not points:
        return ""
    ys = [p[1] for p in points]
    lo, hi = min(ys), max(ys)
    if hi - lo < 1e-12:
        lo, hi = lo - 0.5 * (abs(lo) or 1), hi + 0.5 * (abs(hi) or 1)
    w, h, m = PLOT_W, PLOT_H, PLOT_M
    top = m // 2 + PLOT_SUBTITLE  # the plot area starts below the title and the "better" line

    def sx(i: int) -> float:
        return m + (i + 0.5) * (w - 1.5 * m) / len(values)

    def sy(v: float) -> float:
        return (h - m) - (v - lo) / (hi - lo) * (h - m - top)

    out = [(f'<svg class="plot" width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img" '
            f'aria-label="{html.escape(score)} against {html.escape(axis)}">'),
           f'<text x="{w / 2}" y="13" text-anchor="middle" class="title">'
           f'{html.escape(score)} vs {html.escape(axis)}</text>',
           # which way is better: objective and style_gram fall, content_ssim rises, detail nears 1
           f'<text x="{w / 2}" y="26" text-anchor="middle" class="tick">{html.escape(direction_line(score))}</text>',
           f'<line x1="{m}" y1="{h - m}" x2="{w - m // 2}" y2="{h - m}" class="axis"/>',
           f'<line x1="{m}" y1="{top}" x2="{m}" y2="{h - m}" class="axis"/>',
           *(f'<text x="{m - 3}" y="{sy(v) + 4}" text-anchor="end" class="tick">{label}</text>'
             for v, label in zip((hi, lo), tick_labels(hi, lo), strict=True))]
    for i, value in enumerate(values):
        out.append(f'<text x="{sx(i)}" y="{h - m + 14}" text-anchor="middle" class="tick">'
                   f'{html.escape(_fmt(value))}</text>')
    out.append(f'<text x="{w / 2}" y="{h - 6}" text-anchor="middle" class="label">{html.escape(axis)}</text>')
    for pair, setting in sorted({p[2:] for p in points}):
        color = PAIR_COLORS[pair % len(PAIR_COLORS)]
        series = sorted((i, v) for i, v, p, s in points if (p, s) == (pair, setting))
        line = " ".join(f"{sx(i):.1f},{sy(v):.1f}" for i, v in series)
        out.append(f'<polyline points="{line}" fill="none" stroke="{color}" stroke-width="1.5"/>')
        name = f"pair {pair}" + (f", {setting}" if setting else "")
        for i, v in series:
            out.append(f'<circle cx="{sx(i):.1f}" cy="{sy(v):.1f}" r="3" fill="{color}">'
                       f'<title>{html.escape(name)}: {html.escape(_fmt(v))}</title></circle>')
    out.append("</svg>")
    return "\n".join(out)


def tick_labels(*values: float) -> list[str]:
    """The plot's axis values in one notation: 3 significant digits, all in exponent form if one needs it.

    >>> tick_labels(0.00017, 9.18e-05), tick_labels(0.25, 1.5), tick_labels(12345.0, 3.0)
    (['1.70e-04', '9.18e-05'], ['0.25', '1.5'], ['1.23e+04', '3.00e+00'])
    """
    if any("e" in f"{v:.3g}" for v in values):
        return [f"{v:.2e}" for v in values]
    return [f"{v:.3g}" for v in values]


CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.6em}
table{border-collapse:collapse;font-size:12px}th,td{border:1px solid #ccc;padding:3px 6px;text-align:right}
th{background:#eee;cursor:pointer;position:sticky;top:0}th:hover{background:#ddd}
td.l,th.l{text-align:left}tr.failed td{background:#f9e0e0}
img.thumb{width:64px;height:64px;object-fit:contain;image-rendering:pixelated}
.sheet{max-width:100%;border:1px solid #ccc}.scroll{overflow-x:auto;max-width:100%}
.plots{display:flex;flex-wrap:wrap;gap:12px}
svg.plot{border:1px solid #ddd;background:#fff}.axis{stroke:#444}.tick{font-size:10px;fill:#444}
.title{font-size:12px;font-weight:bold}.label{font-size:11px;fill:#222}.legend span{margin-right:1em}
.legend{overflow-wrap:anywhere}
"""

SORT_JS = """
document.querySelectorAll('table.sortable th').forEach(function(th, col){
  th.addEventListener('click', function(){
    var table = th.closest('table'), body = table.tBodies[0];
    var asc = th.dataset.dir !== 'asc'; th.dataset.dir = asc ? 'asc' : 'desc';
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function(a, b){
      var x = a.cells[col].dataset.v, y = b.cells[col].dataset.v;
      var nx = parseFloat(x), ny = parseFloat(y);
      var c = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
      return asc ? c : -c;
    });
    rows.forEach(function(r){ body.appendChild(r); });
  });
});
"""


def write_html(path: Path, plan: Plan, rows: list[dict], columns: list[str]) -> None:
    """One static page: the sheet, a sortable table of every run, a plot per score and numeric axis."""
    # each run's result next to its name (at the end of a wide table it was out of sight)
    # a cmyk run's soft proof beside its sRGB result: how it prints, against what was scored
    firsts = ["run", "status", "result"] + (["soft_proof"] if any(row["soft_proof"] for row in rows) else [])
    shown = firsts + [c for c in columns if c not in (*firsts, "content", "style", "guide", "message")
                      and not c.startswith(("peak_memory.", "peak_gpu_memory."))] + ["message"]
    # parameters that are the same in every run only clutter the table: keep varying ones; and no
    # column empty in every run (seconds.inputs: that stage is never stored, so never timed)
    shown = [c for c in shown if c in (*firsts, "message") or c in plan.axes or c == "pair"
             or len({_fmt(_cell(r, c)) for r in rows}) > 1 or c.startswith(("seconds", "objective"))
             or any(c in r["scores"] for r in rows)]
    shown = [c for c in shown if c in ("run", "status", "result", "message") or any(_fmt(_cell(r, c)) for r in rows)]
    left = ("run", "status", "message", "result", "soft_proof", "pair")  # text columns, aligned left
    head = "".join(f'<th class="{"l" if c in left else ""}">{html.escape(c)}</th>'
                   for c in shown)
    plots = [svg_plot(axis, score, plan.axes[axis], rows, tuple(a for a in plan.axes if a != axis))
             for score in score_names(rows, plan.score) for axis in _numeric_axes(plan)]
    body = []
    for row in rows:
        cells = []
        for c in shown:
            value = _cell(row, c)
            text = _fmt(value)
            if c in ("result", "soft_proof") and text:
                link = html.escape(text)
                inner = f'<a href="{link}"><img class="thumb" src="{link}" alt="{row["run"]}"></a>'
            elif c in ("nnst_result", "press_result") and text:
                inner = f'<a href="{html.escape(text)}">{html.escape(text)}</a>'
            elif c == "pair" and text:  # its files, and its colour where there are plots (sorted by its number)
                color = PAIR_COLORS[int(value) % len(PAIR_COLORS)]
                dot = f'<span style="color:{color}">&#9679;</span> ' if plots else ""
                inner = f"{dot}{html.escape(text)}: {html.escape(pair_label(plan.pairs[int(value)]))}"
            else:
                inner = html.escape(text)
            cls = ' class="l"' if c in left else ""
            cells.append(f'<td{cls} data-v="{html.escape(text)}">{inner}</td>')
        body.append(f'<tr class="{row["status"]}" id="{row["run"]}">{"".join(cells)}</tr>')
    # the pairs' colours: a legend of the plots, none without them
    legend = "" if not plots else "".join(f'<span style="color:{PAIR_COLORS[i % len(PAIR_COLORS)]}">&#9679; pair {i}: '
                     f'{html.escape(pair_label(p))}</span>' for i, p in enumerate(plan.pairs))
    n_ok = sum(r["status"] == "ok" for r in rows)
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(plan.path.name)}: nnst-hr experiment</title>
<style>{CSS}</style></head><body>
<h1>{html.escape(plan.path.name)}: {len(rows)} run{'s' * (len(rows) != 1)} ({n_ok} ok, {len(rows) - n_ok} failed)</h1>
<p>Axes: {html.escape(_plan_values(plan.axes))}. Fixed: {html.escape(_plan_values(plan.fixed))}.
Scores and times are in <a href="results.csv">results.csv</a>; click a column heading to sort.</p>
<h2>Contact sheet</h2>
<a href="sheet.png"><img class="sheet" src="sheet.png" alt="contact sheet"></a>
<h2>Runs</h2>
<div class="scroll"><table class="sortable"><thead><tr>{head}</tr></thead><tbody>
{chr(10).join(body)}
</tbody></table></div>
<h2>Scores along the numeric axes</h2>
{f'<p class="legend">{legend}</p>' if legend else ''}
<div class="plots">{''.join(plots) or '<p>(no numeric axis with two or more values)</p>'}</div>
<script>{SORT_JS}</script>
</body></html>
"""
    with atomic_output(path, overwrite=True) as tmp:
        tmp.write_text(page, encoding="utf-8")


def _cell(row: dict, column: str):
    return row["scores"].get(column, row.get(column))


def head_thumbnails(graph: Graph, results: Results) -> dict[int, tuple[Image.Image | None, Image.Image | None]]:
    """Pair index -> (content, style) thumbnails of each pair.

    One inputs record at a time (not stored: ``results`` decodes it again from the input bytes). A
    pair whose inputs failed (masks that do not fit, an unreadable image) gets the thumbnails of
    those of its two images that decode: its failed runs' row heads were blank boxes, the pair
    told by its file names alone. None for an image that does not decode.
    """
    heads = {}
    for keys, run in zip(graph.runs, graph.specs, strict=True):
        if run.pair_index in heads:
            continue
        if results.failure(keys["inputs"]) is None:
            record = results[keys["inputs"]]
            heads[run.pair_index] = (_thumb(record["content"], HEAD_THUMB), _thumb(record["style"], HEAD_THUMB))
        else:
            content, style, _, names = graph[keys["inputs"]].args[:4]
            heads[run.pair_index] = (_decoded_thumb(content, names["content"]), _decoded_thumb(style, names["style"]))
    return heads


def _decoded_thumb(data: bytes, name: str) -> Image.Image | None:
    """A row head's thumbnail of an input file's bytes; None where it does not decode (its run's message says why)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # said when the inputs stage read it
        try:
            return _thumb(decode_image(data, name), HEAD_THUMB)
        except InputError:
            return None


def write_report(out_dir: Path, plan: Plan, graph: Graph, results: Results, cache: Cache) -> list[dict]:
    """Write every output of an experiment into ``out_dir``; returns the rows (one per run).

    ``results``: what the executor returned; records are read from it one at a time.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = collect_rows(plan, graph, results, cache, out_dir)
    remove_other_runs(out_dir, {row["run"] for row in rows})
    csv_file, sheet, page = (out_dir / name for name in REPORT_FILES)
    columns = write_csv(csv_file, plan, rows)
    write_sheet(sheet, plan, rows, head_thumbnails(graph, results))
    write_html(page, plan, rows, columns)
    return rows
