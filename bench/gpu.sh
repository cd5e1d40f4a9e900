#!/usr/bin/env bash
# The GPU check of issue 16, for a lent GPU machine (no network; its own torch with CUDA,
# torchvision, numba, scikit-image, tifffile, typer). Under 8 minutes on an H200:
#   1. installs the project (pip install --no-deps -e .; skipped where nnst-hr is already there),
#   2. finds the VGG16 weights (below),
#   3. runs tests/test_cuda.py (a failure is reported at the end; the timings still run),
#   4. bench/gpu.py: NNST at 512 and 1024 px (fast and exact, paper schedule, objectives by
#      exhaustive search), a 1024 -> 4096 poster end to end (stage times, peak GPU memory),
#      patchsynth thread scaling, and ONE table with the goals beside the figures.
#
# Weights: the machine has no network, so the converted VGG16 convolutions travel with the
# working tree in shared-weights/ (git-ignored; name it in the device tool's `carry`). The plain
# file is 58.9 MB; with the ~7.8 MB tree that is 63.6 MiB of the tool's 64 MiB, so carry it
# xz-compressed (54.1 MB) instead. Prepare it once, on a machine that has the weights:
#   bash bench/gpu.sh --prepare      # writes shared-weights/vgg16_features.pth.xz
# Then, with the device tool: carry ["shared-weights"], command
#   PYTHONUNBUFFERED=1 bash bench/gpu.sh --json $OUT/gpu.json 2>&1 | tee $OUT/gpu.log
# Order of search: $NNST_HR_WEIGHTS, shared-weights/vgg16_features.pth, shared-weights/
# vgg16_features.pth.xz (unpacked to a temporary folder), then nnst-hr's usual places.
#
# Without a GPU the same path runs in a couple of minutes:  bash bench/gpu.sh --device cpu --tiny
# Other arguments go to bench/gpu.py (--sizes, --steps, --poster, --threads, --json; see --help).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
WEIGHTS_DIR=shared-weights
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # this tree's code, whatever is installed

if [[ "${1:-}" == "--prepare" ]]; then
    mkdir -p "$WEIGHTS_DIR"
    exec "$PY" - "$WEIGHTS_DIR/vgg16_features.pth.xz" <<'EOF'
import lzma, shutil, sys
from nnst_hr.weights import resolve_weights
source = resolve_weights().path
with open(source, "rb") as src, lzma.open(sys.argv[1] + ".part", "wb", preset=6) as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
import os
os.replace(sys.argv[1] + ".part", sys.argv[1])
print(f"wrote {sys.argv[1]} from {source}")
EOF
fi

if ! command -v nnst-hr >/dev/null 2>&1; then
    # no build isolation: it would fetch setuptools, and the GPU machine has no network
    "$PY" -m pip install --quiet --no-deps --no-build-isolation -e . \
        || echo "gpu.sh: pip install failed; using PYTHONPATH=$PWD" >&2
fi

if [[ -z "${NNST_HR_WEIGHTS:-}" ]]; then
    if [[ -f "$WEIGHTS_DIR/vgg16_features.pth" ]]; then
        export NNST_HR_WEIGHTS="$PWD/$WEIGHTS_DIR/vgg16_features.pth"
    elif [[ -f "$WEIGHTS_DIR/vgg16_features.pth.xz" ]]; then
        unpacked=$(mktemp -d)
        trap 'rm -rf "$unpacked"' EXIT
        "$PY" -c "import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], 'wb'), 1 << 20)" \
            "$WEIGHTS_DIR/vgg16_features.pth.xz" "$unpacked/vgg16_features.pth" || exit 2
        export NNST_HR_WEIGHTS="$unpacked/vgg16_features.pth"
    fi
fi
"$PY" -c "from nnst_hr.weights import describe; print(describe(allow_download=False))" || {
    echo "gpu.sh: no VGG16 weights; run 'bash bench/gpu.sh --prepare' where they are, and carry shared-weights" >&2
    exit 2
}
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name() if torch.cuda.is_available() else '')"

echo "== tests/test_cuda.py"
start=$SECONDS
"$PY" -m pytest -q -p no:cacheprovider tests/test_cuda.py
tests=$?
echo "== tests/test_cuda.py: exit $tests in $((SECONDS - start)) s"

echo "== bench/gpu.py $*"
"$PY" bench/gpu.py "$@"
bench=$?
echo "== gpu.sh: tests exit $tests, bench exit $bench, $SECONDS s in all"
# pytest exits 5 when every test was skipped (no CUDA): not a failure of this script
[[ $tests -eq 0 || $tests -eq 5 ]] && exit $bench
exit 1
