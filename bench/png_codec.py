"""Benchmark 16-bit colour PNG coding: the hand-written codec against imagecodecs (libpng + zlib-ng).

A 4096 px 16-bit RGB image (a sample photo upsampled, so the low bits vary smoothly like a
poster's) is encoded and decoded with both; each is checked to round-trip exactly and the best
of ``--repeat`` runs is printed with the ratio hand-written / imagecodecs. The hand-written
codec is taken from git history (``HANDWRITTEN_REV``), so the comparison can be rerun after it
was replaced; ``nnst_hr.png`` (the codec in use) is timed as well.

    python bench/png_codec.py
    python bench/png_codec.py --size 2048 --repeat 3
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
IMAGE = ROOT / "samples/content/dandelions_engelhardt.jpg"
HANDWRITTEN_REV = "c65a5d5"  # last commit with the hand-written nnst_hr/png.py
DPI = 300


def handwritten_codec(folder: Path):
    """The hand-written ``nnst_hr/png.py`` at ``HANDWRITTEN_REV``, imported from a file (numba caches need one)."""
    source = subprocess.run(["git", "-C", str(ROOT), "show", f"{HANDWRITTEN_REV}:nnst_hr/png.py"],
                            check=True, capture_output=True, text=True).stdout
    path = folder / "png_handwritten.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("png_handwritten", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4096, help="long side in pixels")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement (the best is kept)")
    args = parser.parse_args()

    import imagecodecs

    from nnst_hr import png
    from nnst_hr.files import read_image
    from nnst_hr.poster import resize

    photo = read_image(IMAGE)
    shape = tuple(round(v * args.size / max(photo.shape[:2])) for v in photo.shape[:2])
    pixels = np.ascontiguousarray(np.rint(resize(photo, shape).clip(0, 1) * 65535), dtype=np.uint16)
    print(f"{shape[1]}x{shape[0]} 16-bit RGB ({pixels.nbytes / 2**20:.0f} MiB raw), best of {args.repeat}")

    with tempfile.TemporaryDirectory() as tmp:
        hand = handwritten_codec(Path(tmp))
        # compile the numba kernels outside the timing
        hand.decode(hand.encode(np.ascontiguousarray(pixels[:8, :8]), dpi=DPI))
        codecs = {
            "hand-written (numba + zlib)": (lambda: hand.encode(pixels, dpi=DPI), lambda d: hand.decode(d)[0]),
            "imagecodecs (libpng, zlib-ng)": (lambda: imagecodecs.png_encode(pixels), imagecodecs.png_decode),
            "nnst_hr.png (in use)": (lambda: png.encode(pixels, dpi=DPI), lambda d: png.decode(d)[0]),
        }
        # interleaved (each run times every codec in turn), so a change in load hits all of them
        best = {name: [np.inf, np.inf] for name in codecs}
        sizes = {}
        for _ in range(args.repeat):
            for name, (encode, decode) in codecs.items():
                start = time.perf_counter()
                data = encode()
                middle = time.perf_counter()
                decoded = decode(data)
                end = time.perf_counter()
                best[name] = [min(best[name][0], middle - start), min(best[name][1], end - middle)]
                if not np.array_equal(decoded, pixels):
                    raise SystemExit(f"{name} does not round-trip")
                sizes[name] = len(data)
        results = {}
        for name, (write, read) in best.items():
            results[name] = (write, read)
            print(f"  {name:32s} write {write:6.2f} s  read {read:6.2f} s  ({sizes[name] / 2**20:.1f} MiB, exact)")
    (hw, hr), (iw, ir) = results["hand-written (numba + zlib)"], results["imagecodecs (libpng, zlib-ng)"]
    print(f"hand-written / imagecodecs: write {hw / iw:.2f}x, read {hr / ir:.2f}x")


if __name__ == "__main__":
    main()
