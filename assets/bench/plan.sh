#!/usr/bin/env bash
# A whole plan against fastai, one run after the other on the same machine
# (assets/docs/speed.md): for each precision, fastai's run of the plan
# (assets/bench/fastai_plan.py) and `covid-resnet train` with the same plan, ResNet-18, seed
# 42, batch 32, validating on the test split. Prints one table row a precision: wall times,
# their ratio and the final accuracies.
#
#   assets/bench/plan.sh DATA [PYTHON] [BIN]
#     DATA:   the COVIDx v1 folder (../shared/data/covidx-v1)
#     PYTHON: a Python with torch, torchvision and fastai 2.8 (default /work/torchvenv/bin/python)
#     BIN:    our release binary (default target/release/covid-resnet; built if missing)
# PLAN (default assets/bench/paper-scaled-r18.plan.toml), PRECISIONS ("f32 bf16") and THREADS
# (all cores) can be set in the environment; logs and run folders go to OUT (a new
# temporary folder, kept and named at the end).
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA=${1:?usage: assets/bench/plan.sh DATA [PYTHON] [BIN]}
PY=${2:-/work/torchvenv/bin/python}
BIN=${3:-target/release/covid-resnet}
PLAN=${PLAN:-assets/bench/paper-scaled-r18.plan.toml}
THREADS=${THREADS:-$(nproc)}
OUT=${OUT:-$(mktemp -d)}
[[ -x $BIN ]] || cargo build --release --locked
"$PY" -c "import fastai" 2>/dev/null || { echo "$PY has no fastai (pip install 'fastai>=2.8,<2.9')" >&2; exit 1; }
now() { date +%s.%N; }
printf "| precision | ours s | fastai s | ratio | ours accuracy | fastai accuracy |\n|---|---|---|---|---|---|\n"
for prec in ${PRECISIONS:-f32 bf16}; do
  s=$(now)
  OMP_NUM_THREADS=$THREADS "$PY" assets/bench/fastai_plan.py --data "$DATA" --plan "$PLAN" \
    --precision "$prec" --threads "$THREADS" >"$OUT/fastai-$prec.log" 2>&1
  f=$(awk -v s="$s" -v e="$(now)" 'BEGIN { printf "%.0f", e - s }')
  fa=$(grep -o 'TOTAL.*accuracy=[0-9.]*' "$OUT/fastai-$prec.log" | sed 's/.*accuracy=//')
  s=$(now)
  RAYON_NUM_THREADS=$THREADS "$BIN" --device cpu train --data "$DATA" --plan "$PLAN" \
    --backbone resnet18 --seed 42 --batch-size 32 --valid test --precision "$prec" \
    --out "$OUT/ours-$prec" >"$OUT/ours-$prec.log" 2>&1
  o=$(awk -v s="$s" -v e="$(now)" 'BEGIN { printf "%.0f", e - s }')
  oa=$(grep -o 'accuracy [0-9.]* % ([0-9.–-]*)' "$OUT/ours-$prec/report.md" | head -1)
  printf "| %s | %s | %s | %.2f | %s | %.1f %% |\n" "$prec" "$o" "$f" \
    "$(awk -v o="$o" -v f="$f" 'BEGIN { print o / f }')" "${oa#accuracy }" \
    "$(awk -v a="$fa" 'BEGIN { print 100 * a }')"
done
echo "logs and runs: $OUT"
