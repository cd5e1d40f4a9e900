"""Benchmark the memory model: estimated vs measured peak RSS of whole runs and of their stages.

Each case runs ``nnst-hr run`` with ``--steps 1 --split-steps 1`` (memory does not depend
on the step count) in a child process, started from a small Python parent of its own, which
reports ``resource.getrusage(RUSAGE_CHILDREN).ru_maxrss``: the child's peak resident
memory. It prints :func:`nnst_hr.memory.estimate_peak_bytes` next to it and their ratio.

A case with a poster is measured three times: the whole run, the NNST stage alone (the same
run without ``--out-size``) and the poster stage alone (the whole run again with
``poster_state.npz`` removed: NNST resumed from the run folder, as the estimate with
``nnst_done`` counts it). ``whole / stages`` is the whole run's peak over the larger of the
two stages alone: above 1, one stage runs on top of memory the other left behind.

    python bench/memory.py                           # NNST 256 and 512, poster 512 -> 2048
    python bench/memory.py --cases 768 1024:4096     # SIZE or SIZE:OUT_SIZE
    python bench/memory.py --cases 512/norot         # ... with --no-rotate (one rotation)

The cases with and without rotations separate the model's two NNST terms (the style's keys
grow with the rotations, the output's pixels do not), so the coefficients of
:mod:`nnst_hr.memory` can be fitted from this script's table.

Check ``free -g`` first: the 1024 -> 4096 case needs about 8 GB.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nnst_hr.files import read_image  # noqa: E402
from nnst_hr.memory import estimate_peak_bytes  # noqa: E402

CONTENT = ROOT / "samples/content/dandelions_engelhardt.jpg"
STYLE = ROOT / "samples/style/cozens_grotto-in-the-campagna_watercolor.jpg"
DEFAULT_CASES = ["256", "512", "512:2048"]
MB = 2**20

# The parent of one run: its RUSAGE_CHILDREN is that run's peak alone.
PARENT = """
import json, os, resource, subprocess, sys
code = subprocess.run(sys.argv[1:], env={**os.environ, "PYTHONPATH": %r}).returncode
print(json.dumps({"rc": code, "peak": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024}))
"""


def parse_case(case: str) -> tuple[int, int | None, bool]:
    """``SIZE[:OUT_SIZE][/norot]`` -> (size, out_size or None, rotate)."""
    sizes, _, flag = case.partition("/")
    if flag not in ("", "norot"):
        raise SystemExit(f"case {case}: the only flag is /norot")
    size, _, out = sizes.partition(":")
    return int(size), int(out) if out else None, flag != "norot"


def measure(size: int, out_size: int | None, folder: Path, *, rotate: bool = True, poster_alone: bool = False,
            content: Path = CONTENT, style: Path = STYLE) -> int:
    """Peak RSS of one run; ``poster_alone``: rerun the case's poster stage with NNST resumed."""
    output = folder / f"out_{size}_{out_size}_{int(rotate)}.png"
    run = [sys.executable, "-c", "from nnst_hr.cli import app; app()", "run", str(content), str(style),
           "-o", str(output), "--size", str(size), "--steps", "1", "--split-steps", "1", "--quiet"]
    if out_size:
        run += ["--out-size", str(out_size)]
    if not rotate:
        run.append("--no-rotate")
    if poster_alone:
        (output.with_suffix(".run") / "poster_state.npz").unlink()
        run.append("--overwrite")
    done = subprocess.run([sys.executable, "-c", PARENT % str(ROOT), *run], capture_output=True, text=True, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if result["rc"] != 0:
        raise SystemExit(f"case {size}:{out_size} failed (exit {result['rc']}): {done.stderr[-2000:]}")
    return int(result["peak"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=DEFAULT_CASES, help="SIZE[:OUT_SIZE][/norot]")
    parser.add_argument("--content", type=Path, default=CONTENT, help="another pair: the fit on other images")
    parser.add_argument("--style", type=Path, default=STYLE)
    args = parser.parse_args()
    files = {"content": args.content, "style": args.style}
    content, style = read_image(args.content).shape[:2], read_image(args.style).shape[:2]
    print(f"content {content[1]}x{content[0]}, style {style[1]}x{style[0]}, CPU")
    print(f"{'case':>12} {'estimate MB':>12} {'measured MB':>12} {'ratio':>6}")
    ratios, whole, stages = [], {}, []
    with tempfile.TemporaryDirectory() as tmp:
        for case in args.cases:
            size, out_size, rotate = parse_case(case)
            estimate = estimate_peak_bytes(content, style, size, out_size, rotate=rotate).ram
            whole[size, out_size, rotate] = measured = measure(size, out_size, Path(tmp), rotate=rotate, **files)
            ratios.append(estimate / measured)
            print(f"{case:>12} {estimate / MB:12.0f} {measured / MB:12.0f} {ratios[-1]:6.2f}", flush=True)
            if out_size:
                stages.append((case, size, out_size, rotate))
        print(f"estimate / measured: {min(ratios):.2f} .. {max(ratios):.2f}")
        if not stages:
            return
        print(f"\n{'case':>12} {'whole MB':>9} {'NNST alone':>11} {'poster alone':>13} {'(estimate)':>11} "
              f"{'whole / stages':>15}")
        for case, size, out_size, rotate in stages:
            if (size, None, rotate) not in whole:
                whole[size, None, rotate] = measure(size, None, Path(tmp), rotate=rotate, **files)
            nnst = whole[size, None, rotate]
            poster = measure(size, out_size, Path(tmp), rotate=rotate, poster_alone=True, **files)
            resumed = estimate_peak_bytes(content, style, size, out_size, rotate=rotate, nnst_done=True).ram
            ratio = whole[size, out_size, rotate] / max(nnst, poster)
            print(f"{case:>12} {whole[size, out_size, rotate] / MB:9.0f} {nnst / MB:11.0f} {poster / MB:13.0f} "
                  f"{resumed / MB:11.0f} {ratio:15.2f}", flush=True)


if __name__ == "__main__":
    main()
