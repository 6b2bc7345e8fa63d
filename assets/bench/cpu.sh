#!/usr/bin/env bash
# CPU benchmark against PyTorch, in one run on the same machine (assets/docs/speed.md): for each
# row and precision (f32, then bf16 mixed precision against PyTorch's bf16 autocast), our
# `covid-resnet bench` and ../shared/reference/torch_bench.py on the same shapes and thread
# count, each under GNU time for its peak RSS. Prints one table row per line.
# PRECISIONS="f32" (or "bf16") limits the precisions measured.
#
#   assets/bench/cpu.sh [PYTHON] [BIN]
#     PYTHON: a Python with torch + torchvision (default /work/torchvenv/bin/python)
#     BIN:    our release binary (default target/release/covid-resnet; built if missing)
# Extra arguments for our side can be given in BENCH_ARGS (e.g. BENCH_ARGS="--conv stock").
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${1:-/work/torchvenv/bin/python}
BIN=${2:-target/release/covid-resnet}
REF=${TORCH_BENCH:-../shared/reference/torch_bench.py}
THREADS=${THREADS:-$(nproc)}
[[ -x $BIN ]] || cargo build --release --locked
[[ -x /usr/bin/time ]] || { echo "needs GNU time at /usr/bin/time (apt-get install time)" >&2; exit 1; }

# kind backbone batch px timed-iterations warm-up-iterations. Training gets two warm-up steps
# on both sides: a process's first steps touch fresh memory (the kernel clears each new page),
# which on this machine made our first two bf16 ResNet-18 steps 0.8-1.5 s against 0.4-0.5 s
# after (`bench` prints every timed step on its STEPS line).
rows=(
  "train resnet50 32 128 3 2"
  "train resnet50 32 224 3 2"
  "infer resnet50 1 224 10 2"
  "infer resnet50 32 224 3 1"
  "train resnet18 32 128 3 2"
)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
rss() { awk -F': ' '/Maximum resident set size/ {printf "%.2f\n", $2 / 1048576}' "$1"; }
ips() { grep '^RESULT' "$1" | tr ' ' '\n' | awk -F= '$1 == "img_per_s" {print $2}'; }
printf "| work | backbone | batch | px | precision | ours img/s | PyTorch img/s | ratio | ours peak RSS GB | PyTorch peak RSS GB |\n"
printf "|---|---|---|---|---|---|---|---|---|---|\n"
# Each side runs REPEATS times (default 2), the order alternating (ours first, then PyTorch
# first), and keeps its best speed and its largest peak RSS: the machine's speed moves by up to
# ±30 % within minutes, and a process started right after another one often runs its first
# steps slower.
REPEATS=${REPEATS:-2}
ours() {
  RAYON_NUM_THREADS=$THREADS /usr/bin/time -v "$BIN" bench "$kind" --backbone "$arch" \
    --batch "$batch" --size "$size" --iters "$iters" --warmup "$warmup" --precision "$prec" \
    ${BENCH_ARGS:-} >"$tmp/ours.$1" 2>"$tmp/ours.time.$1"
}
torch() {
  /usr/bin/time -v "$PY" "$REF" "$kind" --arch "$arch" --batch "$batch" --size "$size" \
    --threads "$THREADS" --iters "$iters" --warmup "$warmup" --precision "$prec" \
    >"$tmp/torch.$1" 2>"$tmp/torch.time.$1"
}
best() { for f in "$@"; do ips "$f"; done | sort -g | tail -1; }
most() { for f in "$@"; do rss "$f"; done | sort -g | tail -1; }
for row in "${rows[@]}"; do
  read -r kind arch batch size iters warmup <<<"$row"
  for prec in ${PRECISIONS:-f32 bf16}; do
    for ((r = 0; r < REPEATS; r++)); do
      if ((r % 2 == 0)); then ours "$r"; torch "$r"; else torch "$r"; ours "$r"; fi
    done
    o=$(best "$tmp"/ours.[0-9]*); t=$(best "$tmp"/torch.[0-9]*)
    printf "| %s | %s | %s | %s | %s | %.2f | %.2f | %.2f | %s | %s |\n" "$kind" "$arch" "$batch" \
      "$size" "$prec" "$o" "$t" "$(awk -v o="$o" -v t="$t" 'BEGIN { print o / t }')" \
      "$(most "$tmp"/ours.time.*)" "$(most "$tmp"/torch.time.*)"
    rm -f "$tmp"/ours.* "$tmp"/torch.*
  done
done
