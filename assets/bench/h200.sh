#!/usr/bin/env bash
# The GPU check, run on the H200 machine by the `device` tool after
# assets/bench/prepare-h200.sh built target-cuda/carry here:
#   run(command="bash assets/bench/h200.sh", carry=["target-cuda/carry"], timeout_s=540)
# 1. the torchvision fixture test on the GPU (same tolerances as on the CPU);
# 2. bench train (batch 32, 224 px) and infer (batch 1 and 32, 224 px) beside PyTorch on the
#    same GPU (the shared reference torch_bench.py --device cuda, carried);
# 3. the paper plan (41 epochs, 128 -> 224 -> 229 px) on the compact COVIDx from random init,
#    then the test-set evaluation. Everything is also written under $OUT.
set -uo pipefail
C=target-cuda/carry
OUT=${OUT:-/tmp/h200-out}
mkdir -p "$OUT" /tmp/cr
log() { echo "== $*" | tee -a "$OUT/summary.txt"; }

# cuBLAS / cuRAND / cudart 13 at run time: the CUDA toolkit's, else the ones torch ships.
LIBS=$(python3 - <<'PY'
import glob, os, site
dirs = set()
for base in site.getsitepackages() + ["/usr/local/cuda/lib64", "/usr/local/cuda/targets/x86_64-linux/lib"]:
    for lib in ("libcublas.so.13*", "libcurand.so.10*", "libcudart.so.13*"):
        for p in glob.glob(os.path.join(base, "**", lib), recursive=True):
            dirs.add(os.path.dirname(p))
print(":".join(sorted(dirs)))
PY
)
export LD_LIBRARY_PATH=$LIBS${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
xz -dc "$C/covid-resnet.xz" >/tmp/cr/covid-resnet && chmod +x /tmp/cr/covid-resnet
xz -dc "$C/it.xz" >/tmp/cr/it && chmod +x /tmp/cr/it
BIN=/tmp/cr/covid-resnet
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/gpu.txt"
$BIN info | tee "$OUT/info.txt"

log "1. torchvision fixture on cuda:0"
mkdir -p /tmp/cr/shared/fixtures
(cd /tmp/cr/shared/fixtures && python3 "$OLDPWD/tests/fixtures/make_resnet_fixture.py") >"$OUT/fixture-make.txt" 2>&1
COVID_RESNET_SHARED=/tmp/cr/shared COVID_RESNET_TEST_DEVICE=cuda:0 \
  /tmp/cr/it torchvision_fixture --nocapture --test-threads 1 2>&1 | tee "$OUT/fixture.txt" | grep -E "^test |FAIL|result"

log "2. benchmarks against PyTorch on the same GPU"
for args in "train --batch 32 --size 224 --iters 10 --warmup 3" \
            "infer --batch 1 --size 224 --iters 50 --warmup 10" \
            "infer --batch 32 --size 224 --iters 10 --warmup 3"; do
  $BIN --device cuda:0 bench $args --torch-python python3 \
    --torch-script "$C/torch_bench.py" 2>&1 | tee -a "$OUT/bench.txt" | grep -E "RATIO|RESULT"
done

log "3. paper plan on COVIDx v1 (compact copy), random init"
start=$(date +%s)
$BIN train --device cuda:0 --data "$C/covidx-small" --plan paper --batch-size 32 \
  --loader-threads 14 --out "$OUT/paper" 2>&1 | tail -60 >"$OUT/train.txt"
end=$(date +%s)
log "paper plan wall time: $((end - start)) s"
grep -iE "epoch|img/s|stage" "$OUT/train.txt" | tail -50 | tee -a "$OUT/summary.txt"
$BIN eval --device cuda:0 --data "$C/covidx-small" --model "$OUT/paper/model.safetensors" \
  --out "$OUT/paper" 2>&1 | tail -30 | tee -a "$OUT/summary.txt"
