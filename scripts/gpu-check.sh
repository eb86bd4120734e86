#!/usr/bin/env bash
# For a machine with a real GPU: in one run of a few minutes,
#   1. builds wgserve and its tests (release);
#   2. prints the adapter wgpu picks, its driver and limits (`wgserve info`);
#   3. runs the kernel tests (both kernel families against the CPU
#      references), the chunked-matmul tests, the golden embeddings and the
#      golden tests with the GPU family (WGSERVE_KERNELS=gpu) on that adapter;
#   4. runs `wgserve bench` (prompt, decode) and `wgserve bench --kernels`
#      (decode matvec per weight format) with each kernel family, and the
#      GPU family once more without subgroups (`--no-subgroups`) and once
#      with f16 prompt tiles (`--f16-arithmetic`, where the adapter has
#      shader-f16), so what each brings shows beside it;
#   5. profiles the GPU family's steps (`wgserve bench --profile`: kernel
#      times by GPU timestamps, and the CPU's time to record a step);
#   6. prints the decode's achieved GB/s of weights read against the
#      device's memory bandwidth: from a table of known devices, else the
#      bench's measured copy (read + write) as the reference.
# Paste the summary into the README (Performance, "On real GPUs") with the
# device's name and the date. Flags: --quick skips the golden tests.
set -euo pipefail
cd "$(dirname "$0")/.."

QUICK=0
[ "${1:-}" = "--quick" ] && QUICK=1
WGSERVE=${CARGO_TARGET_DIR:-target}/release/wgserve
LOG_DIR=${LOG_DIR:-target/gpu-check}
mkdir -p "$LOG_DIR"
say() { printf '\n== %s\n' "$*"; }

# Peak memory bandwidth in GB/s of devices by a piece of their name.
# Vendor figures; the first match wins, so longer names come first.
known_bandwidth() {
  local name=$1
  while IFS='|' read -r pattern gbps; do
    [ -n "$pattern" ] && [[ "$name" == *"$pattern"* ]] && { echo "$gbps"; return; }
  done <<'TABLE'
H200|4800
H100 PCIe|2000
H100|3350
A100-SXM4-80GB|2039
A100 80GB PCIe|1935
A100|1555
L40S|864
L4|300
A10G|600
A10|600
T4|320
V100|900
RTX 4090|1008
RTX 4080|717
RTX 4070|504
RTX 3090|936
RTX 3080|760
RTX 3060|360
RTX A6000|768
RX 7900 XTX|960
RX 6900 XT|512
MI300X|5300
MI250|3277
Arc A770|560
TABLE
}

say "build"
cargo build --release --bins --tests 2>&1 | tail -2

say "adapter"
"$WGSERVE" info --kernel-family auto | tee "$LOG_DIR/info.txt" | grep -E '^(adapter|driver|limits|features|kernels):' || true
ADAPTER=$(sed -n 's/^adapter: //p' "$LOG_DIR/info.txt" | head -1)
if [[ "$ADAPTER" == *"(Cpu,"* ]]; then
  echo "warning: wgpu picked a CPU adapter ($ADAPTER): the figures below are not a GPU's"
fi
command -v nvidia-smi >/dev/null 2>&1 &&
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true

say "kernel and golden tests, GPU family"
TESTS=(--test kernels --test large_tensors --test embeddings)
[ "$QUICK" = 1 ] || TESTS+=(--test golden --test golden_gemma3 --test golden_qwen2 --test golden_families --test golden_f16)
WGSERVE_KERNELS=gpu cargo test --release "${TESTS[@]}" -- --test-threads=1 2>&1 |
  tee "$LOG_DIR/tests.txt" | grep -E '^test |test result|panicked' || true
grep -q 'FAILED\|panicked' "$LOG_DIR/tests.txt" && TESTS_OK=no || TESTS_OK=yes

VARIANTS=(cpu gpu gpu-no-subgroups)
grep -q '^features: shader-f16 true' "$LOG_DIR/info.txt" && VARIANTS+=(gpu-f16)
variant_flags() {
  case $1 in
    gpu-no-subgroups) echo "--kernel-family gpu --no-subgroups" ;;
    gpu-f16) echo "--kernel-family gpu --f16-arithmetic" ;;
    *) echo "--kernel-family $1" ;;
  esac
}
for variant in "${VARIANTS[@]}"; do
  say "bench, $variant kernels"
  # shellcheck disable=SC2046 # the flags are words
  "$WGSERVE" bench $(variant_flags "$variant") --gen-tokens 128 --batches 8,32 --offline-requests 0 \
    2>&1 | tee "$LOG_DIR/bench-$variant.txt" | grep -vE '^\s*$' || true
  # shellcheck disable=SC2046
  "$WGSERVE" bench --kernels $(variant_flags "$variant") 2>&1 | tee "$LOG_DIR/kernels-$variant.txt" || true
done

say "profile, gpu kernels"
# Each kernel kind's time per step by GPU timestamps, and the CPU's time
# to record a step: on a fast GPU, the share that dispatches and
# recording take of a decode step.
"$WGSERVE" bench --profile --kernel-family gpu 2>&1 | tee "$LOG_DIR/profile-gpu.txt" || true

say "summary"
DEVICE=${ADAPTER%% (*}
PEAK=$(known_bandwidth "$DEVICE")
printf 'adapter: %s\n' "$ADAPTER"
sed -n 's/^driver: /driver: /p' "$LOG_DIR/info.txt" | head -1
printf 'tests (GPU family): %s\n' "$TESTS_OK"
for family in "${VARIANTS[@]}"; do
  out="$LOG_DIR/bench-$family.txt"
  mib=$(sed -n 's/.*copying the \([0-9.]*\) MiB.*: \([0-9.]*\) copies\/s.*/\1/p' "$out" | head -1)
  copies=$(sed -n 's/.*copying the \([0-9.]*\) MiB.*: \([0-9.]*\) copies\/s.*/\2/p' "$out" | head -1)
  decode=$(sed -n 's/^generation, batch 1: \([0-9.]*\) tok\/s.*/\1/p' "$out" | head -1)
  prompt=$(sed -n 's/^prompt, [0-9]* tokens: \([0-9.]*\) tok\/s.*/\1/p' "$out" | head -1)
  if [ -z "$mib" ] || [ -z "$decode" ]; then
    echo "$family kernels: no figures (see $out)"
    continue
  fi
  awk -v f="$family" -v mib="$mib" -v copies="$copies" -v decode="$decode" -v prompt="$prompt" -v peak="$PEAK" 'BEGIN {
    bytes = mib * 1048576
    gbs = decode * bytes / 1e9
    copy = 2 * copies * bytes / 1e9
    ref = (peak != "") ? peak : copy
    src = (peak != "") ? "peak (vendor)" : "measured copy"
    printf "%s kernels: prompt %s tok/s, decode %s tok/s = %.1f GB/s of weights, %.0f%% of %.0f GB/s %s (copy: %.0f GB/s)\n",
      f, prompt, decode, gbs, 100 * gbs / ref, ref, src, copy
  }'
done
grep -E '^(decode step, batch 1,|recording the step)' "$LOG_DIR/profile-gpu.txt" | head -2 || true
echo "logs: $LOG_DIR/  date: $(date -u +%Y-%m-%d)"
