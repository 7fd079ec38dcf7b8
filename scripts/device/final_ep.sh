#!/usr/bin/env bash
# Final device run for issue 10 (expert-parallel FP8 dispatch/combine over NCCL, docs/ep.md), on an
# nvidia-h100-x2. Usage (repo root on the device): scripts/device/final_ep.sh BUNDLE_DIR OUT_DIR
# Needs fp8flow, fp8flow-gpu-tests and fp8flow-ep-bench in the bundle. Writes two logs:
#   OUT_DIR/ep_tests.log  GPU tests (1 and 2 ranks) and `fp8flow validate --gpu --op dispatch` runs
#   OUT_DIR/ep_bench.log  fp8flow-ep-bench at the paper's shape on 2 GPUs and on 1 (JSON lines at the end)
# Exit status: non-zero when any test, validation or sanitizer check failed. About 60-150 s.
set -u -o pipefail
B=${1:?usage: final_ep.sh BUNDLE_DIR OUT_DIR}
O=${2:?usage: final_ep.sh BUNDLE_DIR OUT_DIR}
mkdir -p "$O"
export NCCL_NVLS_ENABLE=0   # NVLink multicast stays off on these machines (KINDS.md)
T="$O/ep_tests.log"
X="$O/ep_bench.log"
rc=0
step() {  # step LOG TIMEOUT CMD...: run, log, remember a failure (77 = skipped is fine)
  local log=$1 to=$2; shift 2
  echo "### $*" | tee -a "$log"
  timeout "$to" "$@" 2>&1 | tee -a "$log"
  local r=${PIPESTATUS[0]}
  echo "### exit $r" | tee -a "$log"
  if [ "$r" -ne 0 ] && [ "$r" -ne 77 ]; then rc=1; fi
}
nvidia-smi -L 2>&1 | tee "$T"
step "$T" 120 "$B/run" fp8flow-gpu-tests ep_dispatch_1gpu
step "$T" 120 "$B/run" fp8flow-gpu-tests ep_dispatch_2gpu
step "$T" 90 "$B/run" fp8flow validate --gpu --op dispatch --ranks 2 --preset quickstart --seed 7
# Fallback: more ranks than GPUs runs on the GPUs present and says so on stderr.
step "$T" 60 "$B/run" fp8flow validate --gpu --op dispatch --ranks 8 --preset tiny --seed 9
# Memory errors in the EP kernels (1 rank, tiny): the sanitizer's summary must say 0 errors.
if command -v compute-sanitizer >/dev/null; then
  step "$T" 90 compute-sanitizer --target-processes all --tool memcheck --leak-check no --error-exitcode 3 \
    "$B/run" fp8flow validate --gpu --op dispatch --ranks 1 --preset tiny --seed 10
fi
: > "$X"
step "$X" 120 "$B/run" fp8flow-ep-bench --tokens 32768 --ranks 2 --reps 20 --json "$O/ep_bench_2gpu.json"
step "$X" 60 "$B/run" fp8flow-ep-bench --tokens 16384 --ranks 1 --reps 10 --json "$O/ep_bench_1gpu.json"
for j in "$O"/ep_bench_*.json; do
  [ -f "$j" ] && { echo "### $(basename "$j")"; tr -d '\n ' < "$j"; echo; } >> "$X"
  rm -f "$j"
done
exit $rc
