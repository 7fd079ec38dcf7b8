#!/usr/bin/env bash
# GPU check of the SAT and quantize kernels after a change (run on the device machine from the repo root):
#   scripts/device/check_kernels.sh BUNDLE_DIR OUT_DIR [--no-bench]
# BUNDLE_DIR holds fp8flow, fp8flow-gpu-tests and fp8flow-gpu-bench (scripts/device_bundle). Writes:
#   OUT_DIR/kernels_check.txt  bit-exactness (transpose, quantize v1/v2, paper_swiglu edges, dequantize,
#                              quantize -> SAT chains with programmatic dependent launch),
#                              validate --gpu --op transpose with unequal groups, compute-sanitizer memcheck and
#                              racecheck on the transposes (4 unequal groups: window tiles from the group
#                              bounds; 18 groups: from the tile list; one group) and the quantize kernels
#                              (also with window tiles, and with groups whose tiles share 32-byte sectors of
#                              the column copy)
#   OUT_DIR/kernels_bench.txt  fp8flow-gpu-bench (copy bandwidth, SAT 1 and 8 groups, transposes, quantize)
# Budget: <= 300 s on an H100 (each step has its own timeout). Exit status non-zero if any step failed.
set -uo pipefail
B=${1:?usage: check_kernels.sh BUNDLE_DIR OUT_DIR [--no-bench]}
O=${2:?usage: check_kernels.sh BUNDLE_DIR OUT_DIR [--no-bench]}
bench=1
[ "${3:-}" = --no-bench ] && bench=0
mkdir -p "$O"
tmp=$(mktemp -d)
rc=0
. "$(dirname "$0")/common.sh"  # step, sanitize
{
  echo "== $(date -u +%FT%TZ) $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | head -1)"
  step "gpu test transpose_bitexact" 90 "$B/run" fp8flow-gpu-tests transpose_bitexact
  step "gpu test quantize_v2_bitexact" 90 "$B/run" fp8flow-gpu-tests quantize_v2_bitexact
  step "gpu test quantize_bitexact (v1)" 180 "$B/run" fp8flow-gpu-tests quantize_bitexact
  step "gpu test quantize_swiglu_edges" 30 "$B/run" fp8flow-gpu-tests quantize_swiglu_edges
  step "gpu test dequantize_bitexact" 30 "$B/run" fp8flow-gpu-tests dequantize_bitexact
  step "gpu test pdl_chain" 60 "$B/run" fp8flow-gpu-tests pdl_chain
  step "validate --op transpose, outliers [4096, 2048], groups 16,1008,112,2960" 40 \
    "$B/run" fp8flow validate --gpu --op transpose --dist outliers --shape 4096,2048 --groups 16,1008,112,2960 --seed 3
  step "validate --op all, adversarial [1000, 4096], groups 100,237,663" 40 \
    "$B/run" fp8flow validate --gpu --op all --dist adversarial --shape 1000,4096 --groups 100,237,663 --seed 5
  sanitize memcheck 60 fp8flow validate --gpu --op transpose --dist adversarial --shape 700,520 --groups 1,127,129,443
  sanitize racecheck 60 fp8flow validate --gpu --op transpose --dist adversarial --shape 700,520 --groups 1,127,129,443
  # 18 groups: more than the SAT takes by their bounds, so the windows scan the device tile list
  sanitize memcheck 60 fp8flow validate --gpu --op transpose --dist adversarial --shape 2100,256 \
    --groups 1,15,16,100,28,300,64,64,129,127,256,3,5,400,80,112,200,200
  sanitize racecheck 60 fp8flow validate --gpu --op transpose --dist adversarial --shape 2100,256 \
    --groups 1,15,16,100,28,300,64,64,129,127,256,3,5,400,80,112,200,200
  # one group: the aligned SAT path (cp.async, rewrite fused into the transpose)
  sanitize memcheck 60 fp8flow validate --gpu --op transpose --dist adversarial --shape 700,520
  sanitize racecheck 60 fp8flow validate --gpu --op transpose --dist adversarial --shape 700,520
  sanitize memcheck 60 fp8flow-gpu-tests quantize_v2_bitexact_small
  sanitize racecheck 90 fp8flow validate --gpu --op quantize --dist adversarial --shape 2304,2048 --groups 160,448,256,1440
  # groups of whole 128-row tiles: quantize v1 takes each tile from its block index (window tiles)
  sanitize memcheck 60 fp8flow validate --gpu --op quantize --dist adversarial --shape 640,1040 --groups 128,384,128
  sanitize racecheck 90 fp8flow validate --gpu --op quantize --dist adversarial --shape 640,1040 --groups 128,384,128
  # groups of 16 rows mod 32: tiles sharing 32-byte sectors of the quantize's column copy
  sanitize memcheck 90 fp8flow validate --gpu --op quantize --dist adversarial --shape 2000,1040 \
    --groups 16,208,48,400,144,1184
  sanitize racecheck 90 fp8flow validate --gpu --op quantize --dist adversarial --shape 2000,1040 \
    --groups 16,208,48,400,144,1184
  echo "== check_kernels.sh exit status $rc"
} > "$O/kernels_check.txt" 2>&1
if [ $bench = 1 ]; then
  timeout 90 "$B/run" fp8flow-gpu-bench --reps 20 > "$O/kernels_bench.txt" 2>&1 || rc=1
fi
rm -rf "$tmp"
exit $rc
