#!/usr/bin/env bash
# GPU check of the fused MoE kernels (src/cuda/moe_kernels.hpp), run on the device machine from the repo root:
#   scripts/device/final_moe.sh BUNDLE_DIR OUT_DIR [FORK_PERMUTATION_PY]
# BUNDLE_DIR holds fp8flow-gpu-tests and fp8flow-moe-bench (scripts/device_bundle). FORK_PERMUTATION_PY: the
# FP8-Flow-MoE fork's transformer_engine/pytorch/triton/permutation.py (the anchor; optional). Writes:
#   OUT_DIR/moe_check.txt   moe_fused_bitexact (every kernel vs its CPU twin, adversarial inputs),
#                           compute-sanitizer memcheck on moe_fused_bitexact_small (racecheck: MOE_RACECHECK=1)
#   OUT_DIR/moe_bench.txt   fp8flow-moe-bench (copy anchor, the four kernels at the paper's and the
#                           quickstart's shapes, steady and clean timing)
#   OUT_DIR/moe_anchor.txt, moe_anchor.json   bench/gpu/moe_anchor.py (torch; the fork's Triton kernels)
# Budget: <= 240 s on an H100 (MOE_REPS, default 30: repeats per timing). Exit status non-zero if any step failed.
set -uo pipefail
B=${1:?usage: final_moe.sh BUNDLE_DIR OUT_DIR [FORK_PERMUTATION_PY]}
O=${2:?usage: final_moe.sh BUNDLE_DIR OUT_DIR [FORK_PERMUTATION_PY]}
fork=${3:-}
mkdir -p "$O"
tmp=$(mktemp -d)
rc=0
. "$(dirname "$0")/common.sh"  # step, sanitize
{
  echo "== $(date -u +%FT%TZ) $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | head -1)"
  step "gpu test moe_fused_bitexact" 120 "$B/run" fp8flow-gpu-tests moe_fused_bitexact
  sanitize memcheck 90 fp8flow-gpu-tests moe_fused_bitexact_small
  # The kernels use no shared memory, so racecheck (shared-memory hazards) has nothing to find: run it only
  # when asked (MOE_RACECHECK=1).
  [ "${MOE_RACECHECK:-0}" = 1 ] && sanitize racecheck 120 fp8flow-gpu-tests moe_fused_bitexact_small
  echo "== final_moe.sh checks exit status $rc"
} > "$O/moe_check.txt" 2>&1
{
  timeout 90 "$B/run" fp8flow-moe-bench --reps ${MOE_REPS:-30} || rc=1
  echo "== paper shape without padding (align 1: rows = tokens x top-k, the paper's SwiGLU benchmark rows)"
  timeout 60 "$B/run" fp8flow-moe-bench --reps ${MOE_REPS:-30} --align 1 --preset paper || rc=1
} > "$O/moe_bench.txt" 2>&1
PYTHONUNBUFFERED=1 timeout 150 python3 "$(dirname "$0")/../../bench/gpu/moe_anchor.py" ${fork:+--fork "$fork"} --reps ${MOE_REPS:-30} \
  --json "$O/moe_anchor.json" > "$O/moe_anchor.txt" 2>&1 || rc=1
rm -rf "$tmp"
exit $rc
