#!/usr/bin/env bash
# Builds everything the H200 run (assets/bench/h200.sh) needs into target-cuda/carry, which the
# `device` tool carries beside the working tree (limit 64 MiB in all):
#   covid-resnet.xz  the CUDA binary (.ci/cuda-build), stripped and compressed
#   it.xz            the integration-test binary built with --features cuda (fixture test)
#   torch_bench.py   PyTorch's reference (SHARED/reference; takes --device cuda, --precision bf16)
#   covidx-small/    COVIDx v1 re-encoded: longest side 232 px (>= the paper's 229), grayscale
#                    JPEG quality 60 (28.5 MiB; quality 80 was 45 MiB and did not fit), same
#                    names and split files
# Usage: assets/bench/prepare-h200.sh [SHARED_DIR]   (default ../shared)
set -euo pipefail
cd "$(dirname "$0")/../.."
SHARED=${1:-../shared}
C=target-cuda/carry
rm -rf "$C" && mkdir -p "$C"

CUDA_BUILD_TESTS=1 .ci/cuda-build
xz -T0 -6 -c target-cuda/release/covid-resnet.stripped >"$C/covid-resnet.xz"
xz -T0 -6 -c target-cuda/release/it.stripped >"$C/it.xz"
cp "$SHARED/reference/torch_bench.py" "$C/"

python3 - "$SHARED/data/covidx-v1" "$C/covidx-small" <<'PY'
import os, shutil, sys
from PIL import Image
src, dst = sys.argv[1], sys.argv[2]
for split in ("train", "test"):
    os.makedirs(os.path.join(dst, split), exist_ok=True)
    for name in os.listdir(os.path.join(src, split)):
        im = Image.open(os.path.join(src, split, name)).convert("L")
        im.thumbnail((232, 232), Image.LANCZOS) if max(im.size) > 232 else None
        im.save(os.path.join(dst, split, name), "JPEG", quality=60)
for f in os.listdir(src):
    if f.endswith(".txt"):
        shutil.copy(os.path.join(src, f), dst)
PY
du -sh "$C" "$C"/*
carry=$(du -sb "$C" | cut -f1)
tree=$(git ls-files -z | xargs -0 du -cb | tail -1 | cut -f1)
total=$(( (carry + tree) / 1048576 ))
echo "carry + working tree: ${total} MiB (the device tool takes 64 MiB in all)"
if (( total > 62 )); then
  echo "too large for the device tool" >&2
  exit 1
fi
