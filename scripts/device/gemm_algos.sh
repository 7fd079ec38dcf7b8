#!/usr/bin/env bash
# cuBLASLt's default FP8 GEMM algorithm as torch._scaled_mm picks it (docs/gemm.md "Algorithms"), one device call:
#   scripts/device/gemm_algos.sh BUNDLE_DIR OUT_DIR [SCRIPTS_DIR]
# Our runner is made to load the very libcublasLt that torch loads (LD_PRELOAD), then: records the fit and
# held-out sets (gemm-algos --record, operands dumped to /tmp), compares every recorded output with
# torch._scaled_mm on the same operands (torch_gemm_compare.py), and writes the heuristic's table.
# Writes OUT_DIR/{gemm_algo_fit.json, gemm_algo_fit_out.npy, gemm_algo_heldout.json, gemm_algo_heldout_out.npy,
# torch_compare_fit.json, torch_compare_heldout.json, gemm_algo_table.csv, gemm_algos_log.txt}.
set -uo pipefail
B=${1:?usage: gemm_algos.sh BUNDLE_DIR OUT_DIR [SCRIPTS_DIR]}
O=${2:?usage: gemm_algos.sh BUNDLE_DIR OUT_DIR [SCRIPTS_DIR]}
S=${3:-scripts/device}
mkdir -p "$O"
exec > >(tee "$O/gemm_algos_log.txt") 2>&1
echo "== $(date -u +%FT%TZ) $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | head -1)"
LT=$(python3 - <<'PY'
import torch
a = torch.zeros(16, 16, device="cuda").to(torch.float8_e4m3fn)
one = torch.tensor(1.0, device="cuda")
torch._scaled_mm(a, a.t(), scale_a=one, scale_b=one, out_dtype=torch.float32)
torch.cuda.synchronize()
libs = sorted({l.split()[-1] for l in open("/proc/self/maps") if "libcublasLt" in l})
print(libs[0] if libs else "")
PY
)
echo "torch's libcublasLt: ${LT:-not found}"
[ -n "$LT" ] && export LD_PRELOAD="$LT"
echo "== heuristic table"
timeout 60 "$B/run" fp8flow gemm-algos --gpu --table "$O/gemm_algo_table.csv"
for set in fit heldout; do
  echo "== record $set"
  rm -rf "/tmp/dump_$set"
  timeout 70 "$B/run" fp8flow gemm-algos --gpu --record $set -o "$O" --dump "/tmp/dump_$set"
  echo "== torch._scaled_mm comparison, $set"
  (unset LD_PRELOAD; timeout 60 python3 "$S/torch_gemm_compare.py" "/tmp/dump_$set" "$O/torch_compare_$set.json")
  rm -rf "/tmp/dump_$set"
done
[ "${GEMM_ALGOS_VALIDATE:-0}" = 1 ] && {
echo "== validate --op gemm --algo auto against that table (model parameters as shipped, not yet fitted)"
for spec in "512,512,4096 normal" "16,16,16384 normal" "64,64,65536 activations" "256,192,7184 activations"; do
  set -- $spec
  timeout 40 "$B/run" fp8flow validate --gpu --op gemm --shape "$1" --dist "$2" --algo auto \
    --algo-table "$O/gemm_algo_table.csv" | grep -v "^  cuBLASLt" | cut -c1-400
done
}
echo "== done $(date -u +%FT%TZ)"
