#!/usr/bin/env bash
# The GPU check of issue 16, for a lent GPU machine (no network; its own torch with CUDA,
# torchvision, numba, scikit-image, tifffile, typer). Under 8 minutes on an H200:
#   1. installs the project (pip install --no-deps -e .; skipped where nnst-hr is already there),
#   2. finds the VGG16 weights (below),
#   3. runs tests/test_cuda.py (a failure is reported at the end; the timings still run),
#   4. bench/gpu.py: NNST at 512 and 1024 px (fast and exact, paper schedule, objectives by
#      exhaustive search), a 1024 -> 4096 poster end to end (stage times, peak GPU memory),
#      patchsynth thread scaling, whether torch.compile pays on the scale loop's VGG step, and ONE
#      table with the goals beside the figures.
#
# What travels: the machine has no network, and its Python (3.12) lacks imagecodecs, which
# nnst_hr.files imports. So gpu-carry/ (git-ignored; name it in the device tool's `carry`) holds
#   - vgg16_features.pth.xz: the converted VGG16 convolutions that NNST uses (conv1_1 .. conv4_3;
#     conv5 is only for LPIPS scores), xz-compressed: 28.1 MB, not the full file's 58.9 MB;
#   - wheels/: the imagecodecs wheel of this machine's version for the GPU machine's Python (26.5 MB),
#     installed there into a temporary folder when `import imagecodecs` fails.
# With the ~9 MB tree that is about 64 MB of the tool's 64 MiB (67.1 MB); --prepare prints the sum.
# Prepare it once, on a machine that has the weights and pip access to the package registry:
#   bash bench/gpu.sh --prepare      # GPU_PYTHON=3.12 (default) names the GPU machine's Python
# Then, with the device tool: carry ["gpu-carry"], command
#   PYTHONUNBUFFERED=1 bash bench/gpu.sh --json $OUT/gpu.json 2>&1 | tee $OUT/gpu.log
# Order of search for the weights: $NNST_HR_WEIGHTS, gpu-carry/vgg16_features.pth, gpu-carry/
# vgg16_features.pth.xz (unpacked to a temporary folder), then nnst-hr's usual places.
#
# Without a GPU the same path runs in a couple of minutes:  bash bench/gpu.sh --device cpu --tiny
# Other arguments go to bench/gpu.py (--sizes, --steps, --poster, --threads, --json; see --help).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
CARRY=gpu-carry
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # this tree's code, whatever is installed
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

if [[ "${1:-}" == "--prepare" ]]; then
    mkdir -p "$CARRY/wheels"
    "$PY" - "$CARRY/vgg16_features.pth.xz" <<'EOF' || exit 2
import io, lzma, os, sys
import torch
from nnst_hr.hypercolumns import LAYER_INDICES
from nnst_hr.weights import load_features_state_dict, resolve_weights
source = resolve_weights().path
# only the convolutions that NNST's hypercolumns read: conv5 would double the file
state = {key: value for key, value in load_features_state_dict(source).items()
         if int(key.split(".")[0]) <= LAYER_INDICES[-1]}
buffer = io.BytesIO()
torch.save(state, buffer)
with lzma.open(sys.argv[1] + ".part", "wb", preset=6) as dst:
    dst.write(buffer.getvalue())
os.replace(sys.argv[1] + ".part", sys.argv[1])
print(f"wrote {sys.argv[1]} ({os.path.getsize(sys.argv[1]) / 1e6:.1f} MB): {len(state) // 2} convolutions of {source}")
EOF
    version=$("$PY" -c "from importlib.metadata import version; print(version('imagecodecs'))") || exit 2
    rm -f "$CARRY"/wheels/*.whl
    "$PY" -m pip download --quiet --no-deps --only-binary=:all: --python-version "${GPU_PYTHON:-3.12}" \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 -d "$CARRY/wheels" "imagecodecs==$version" || exit 2
    ls -l "$CARRY"/wheels/*.whl
    # what the device tool sends: tracked and untracked-not-ignored files, plus the carried folder
    tree=$( { git ls-files -z; git ls-files -z --others --exclude-standard; } | xargs -0 -r du -cb 2>/dev/null \
        | awk '$2 == "total" {sum += $1} END {print sum + 0}')
    carry=$(du -sb "$CARRY" | cut -f1)
    echo "travels: tree $((tree / 1000000)) MB + $CARRY $((carry / 1000000)) MB = $(((tree + carry) / 1000000)) MB of 67.1 (64 MiB)"
    (( tree + carry < 67108864 )) || { echo "gpu.sh: too much to travel; see the header" >&2; exit 2; }
    exit 0
fi

if ! "$PY" -c "import imagecodecs" 2>/dev/null; then
    if compgen -G "$CARRY/wheels/*.whl" >/dev/null; then
        "$PY" -m pip install --quiet --no-index --no-deps --no-compile --target "$scratch/site" "$CARRY"/wheels/*.whl \
            || exit 2
        export PYTHONPATH="$PYTHONPATH:$scratch/site"
    else
        echo "gpu.sh: imagecodecs is missing; run 'bash bench/gpu.sh --prepare' and carry $CARRY" >&2
        exit 2
    fi
fi

if ! command -v nnst-hr >/dev/null 2>&1; then
    # no build isolation: it would fetch setuptools, and the GPU machine has no network
    "$PY" -m pip install --quiet --no-deps --no-build-isolation -e . >"$scratch/pip.log" 2>&1 \
        || echo "gpu.sh: pip install failed ($(grep -m 1 -i "error:" "$scratch/pip.log")); using PYTHONPATH=$PWD" >&2
fi

if [[ -z "${NNST_HR_WEIGHTS:-}" ]]; then
    if [[ -f "$CARRY/vgg16_features.pth" ]]; then
        export NNST_HR_WEIGHTS="$PWD/$CARRY/vgg16_features.pth"
    elif [[ -f "$CARRY/vgg16_features.pth.xz" ]]; then
        "$PY" -c "import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], 'wb'), 1 << 20)" \
            "$CARRY/vgg16_features.pth.xz" "$scratch/vgg16_features.pth" || exit 2
        export NNST_HR_WEIGHTS="$scratch/vgg16_features.pth"
    fi
fi
"$PY" -c "from nnst_hr.weights import describe; print(describe(allow_download=False))" || {
    echo "gpu.sh: no VGG16 weights; run 'bash bench/gpu.sh --prepare' where they are, and carry $CARRY" >&2
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
