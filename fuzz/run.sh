#!/usr/bin/env bash
# Runs every fuzz target for SECS seconds (default 600), JOBS at a time (default 2), and prints
# each one's executions from libFuzzer's final "Done N runs" line. Crashes land in
# fuzz/artifacts/<target>/. Needs cargo-fuzz; on a stable toolchain RUSTC_BOOTSTRAP=1 lets it
# pass its -Z flags (no sanitizer: -s none).
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${SECS:-600}
JOBS=${JOBS:-2}
TARGETS=${TARGETS:-"decode_image decode_dicom split_file plan_toml model_file checkpoint eval_report pth_weights"}
export RUSTC_BOOTSTRAP=1
cargo fuzz build -s none -a
mkdir -p fuzz/logs
run_one() {
  t=$1
  mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
  # Seeds beside the working corpus: the DICOM test corpus (DCMTK, GDCM, OpenJPEG files).
  seeds=""
  if [ "$t" = decode_dicom ]; then seeds="tests/data/dicom"; fi
  # The binary cargo fuzz built, run directly (cargo fuzz run would rebuild per target).
  "fuzz/target/x86_64-unknown-linux-gnu/release/$t" "fuzz/corpus/$t" $seeds \
    -artifact_prefix="fuzz/artifacts/$t/" \
    -max_total_time="$SECS" -rss_limit_mb=4096 -timeout=20 -max_len=16384 \
    -print_final_stats=1 > "fuzz/logs/$t.log" 2>&1 || true
  runs=$(grep -o 'Done [0-9]* runs in [0-9]* second' "fuzz/logs/$t.log" | tail -1)
  crashes=$(ls "fuzz/artifacts/$t" | wc -l)
  echo "$t: ${runs:-no final line (crash?)}; artifacts: $crashes"
}
export -f run_one
export SECS
printf '%s\n' $TARGETS | xargs -P "$JOBS" -I{} bash -c 'run_one {}'
