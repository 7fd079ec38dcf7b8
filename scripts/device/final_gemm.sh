#!/usr/bin/env bash
# Final GPU check of the cuBLASLt FP8 GEMM part of issue 8 (run on the device machine from the repo root):
#   scripts/device/final_gemm.sh BUNDLE_DIR OUT_DIR
# BUNDLE_DIR holds fp8flow, fp8flow-gpu-tests and fp8flow-gemm-bench (scripts/device_bundle). Writes two logs:
# OUT_DIR/gemm_final.txt (validate with the fitted presets, the gemm_cublaslt GPU test, compute-sanitizer
# memcheck on it) and OUT_DIR/gemm_bench.txt (cuBLASLt 8192^3 and torch._scaled_mm on the same GPU).
# Budget: about 120 s on an H100. Exit status: non-zero if validate, the test or memcheck failed.
set -uo pipefail
B=${1:?usage: final_gemm.sh BUNDLE_DIR OUT_DIR}
O=${2:?usage: final_gemm.sh BUNDLE_DIR OUT_DIR}
mkdir -p "$O"
log=$O/gemm_final.txt
rc=0
{
  echo "== $(date -u +%FT%TZ) $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | head -1)"
  echo "== validate --op gemm (fitted presets h100 / h100_fast), normal 512x512x4096"
  timeout 120 "$B/run" fp8flow validate --gpu --op gemm --shape 512,512,4096 --dist normal || rc=1
  echo "== validate --op gemm, activations with outliers, K tail 256x192x7184"
  timeout 120 "$B/run" fp8flow validate --gpu --op gemm --shape 256,192,7184 --dist activations || rc=1
  echo "== GPU test gemm_cublaslt"
  timeout 150 "$B/run" fp8flow-gpu-tests gemm_cublaslt || rc=1
  echo "== long-K probes (M, N <= 64, K 16384..65536: the split-K fallback), replayed against h100/h100_fast"
  timeout 90 "$B/run" fp8flow gemm-probes --gpu -o "$O/.probes" --no-bf16 \
    --cases ones_stall,alt_small,paper_probe,mantissa_sum,rand_normal_k16384,rand_normal_k65536,rand_pos_k65536 \
    | grep -v "^  " | tail -12
  [ -f "$O/.probes/gemm_probes.json" ] && timeout 90 "$B/run" fp8flow gemm-probes --check "$O/.probes"
  rm -rf "$O/.probes"
  echo "== compute-sanitizer memcheck: fp8flow validate --op gemm (small)"
  timeout 150 compute-sanitizer --tool memcheck --leak-check full --error-exitcode 9 \
    "$B/run" fp8flow validate --gpu --op gemm --shape 128,64,1040 --dist normal > "$O/.memcheck.txt" 2>&1
  mc=$?
  grep -E "ERROR SUMMARY|LEAK SUMMARY|bit-exact \(|========= (Invalid|Program hit)" "$O/.memcheck.txt" | tail -20
  rm -f "$O/.memcheck.txt"
  [ $mc -ne 9 ] && [ $mc -ne 124 ] && [ $mc -ne 127 ] || { echo "memcheck exit status $mc (9: memcheck errors, 124: timeout, 127: no compute-sanitizer)"; rc=1; }
  echo "== final_gemm.sh exit status $rc"
} > "$log" 2>&1
{
  timeout 90 "$B/run" fp8flow-gemm-bench --reps 20
  timeout 90 python3 bench/gpu/torch_scaled_mm.py --reps 20
} > "$O/gemm_bench.txt" 2>&1
exit $rc
