#!/usr/bin/env bash
# Final GPU check of the quantize part of issue 8 (run on the device machine from the repo root):
#   scripts/device/final_quant.sh BUNDLE_DIR OUT_DIR
# BUNDLE_DIR holds fp8flow, fp8flow-gpu-tests and fp8flow-gpu-bench (scripts/device_bundle). Writes two logs:
#   OUT_DIR/quant_final.txt  GPU tests (v2 quantize 1x128/128x128 x te_*/paper_swiglu, paper_swiglu edges, the
#                            v1 quantize test), validate --gpu with the new options (adversarial, a random-bits
#                            .npy via --input, -o report.h5 then `fp8flow ls/show` on it), compute-sanitizer
#                            memcheck + racecheck on the new tests
#   OUT_DIR/quant_bench.txt  fp8flow-gpu-bench: SAT, transposes, quantize v1 vs v2, 128x128, paper_swiglu
# Budget: <= 150 s on an H100 (each step has its own timeout). Exit status non-zero if any step failed.
set -uo pipefail
B=${1:?usage: final_quant.sh BUNDLE_DIR OUT_DIR}
O=${2:?usage: final_quant.sh BUNDLE_DIR OUT_DIR}
mkdir -p "$O"
log=$O/quant_final.txt
tmp=$(mktemp -d)
rc=0
. "$(dirname "$0")/common.sh"  # step, sanitize
{
  echo "== $(date -u +%FT%TZ) $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | head -1)"
  step "gpu test quantize_swiglu_edges" 30 "$B/run" fp8flow-gpu-tests quantize_swiglu_edges
  step "gpu test quantize_v2_bitexact" 60 "$B/run" fp8flow-gpu-tests quantize_v2_bitexact
  step "gpu test quantize_bitexact (v1)" 40 "$B/run" fp8flow-gpu-tests quantize_bitexact
  step "validate --op quantize, adversarial [1000, 4096] groups 100,237,663 -o report.h5" 40 \
    "$B/run" fp8flow validate --gpu --op quantize --dist adversarial --shape 1000,4096 --groups 100,237,663 \
    --seed 5 -o "$tmp/report.h5"
  step "validate --op quantize, activations [2048, 7168], eps 1e-10, 128x128 paper_swiglu only" 30 \
    "$B/run" fp8flow validate --gpu --op quantize --dist activations --shape 2048,7168 --eps 1e-10 \
    --granularity 128x128 --rule paper_swiglu -o "$tmp/report.h5"
  # A .npy of uniformly random fp32 bit patterns (NaNs, Infs, subnormals, every exponent), shape [300, 1000].
  python3 -c '
import os, struct, sys
h = "{\x27descr\x27: \x27<f4\x27, \x27fortran_order\x27: False, \x27shape\x27: (300, 1000), }"
h += " " * (64 - (10 + len(h) + 1) % 64) + "\n"
open(sys.argv[1], "wb").write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(h)) + h.encode() + os.urandom(300 * 1000 * 4))
' "$tmp/bits.npy"
  step "validate --op all --input random-bits.npy [300, 1000] groups 1,299 -o report.h5" 40 \
    "$B/run" fp8flow validate --gpu --op all --input "$tmp/bits.npy" --groups 1,299 -o "$tmp/report.h5"
  step "validate: bad --rule is an input error (expect exit 1)" 10 \
    bash -c "\"$B/run\" fp8flow validate --gpu --op quantize --rule mx_floor; [ \$? -eq 1 ]"
  step "fp8flow ls report.h5" 10 "$B/run" fp8flow ls "$tmp/report.h5"
  h=$("$B/run" fp8flow ls "$tmp/report.h5" 2>/dev/null | grep -oE '\b[0-9a-f]{16}\b' | head -1)
  [ -n "$h" ] && step "fp8flow show report.h5 $h" 10 "$B/run" fp8flow show "$tmp/report.h5" "$h"
  sanitize memcheck 40 fp8flow-gpu-tests quantize_v2_bitexact_small
  sanitize memcheck 20 fp8flow-gpu-tests quantize_swiglu_edges
  sanitize racecheck 40 fp8flow-gpu-tests quantize_swiglu_edges
  sanitize racecheck 40 fp8flow validate --gpu --op quantize --dist adversarial --shape 257,300 --groups 100,157
  echo "== final_quant.sh exit status $rc"
} > "$log" 2>&1
timeout 60 "$B/run" fp8flow-gpu-bench --reps 10 > "$O/quant_bench.txt" 2>&1 || rc=1
rm -rf "$tmp"
exit $rc
