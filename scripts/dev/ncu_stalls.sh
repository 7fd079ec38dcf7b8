#!/usr/bin/env bash
# Stall breakdown of one kernel launch with Nsight Compute (device machine, from the repo root):
#   scripts/dev/ncu_stalls.sh OUT_FILE KERNEL_FILTER NCU_EXTRA... -- EXE ARGS...
# e.g. scripts/dev/ncu_stalls.sh $OUT/q.txt regex:LoadBf16 --kernel-name-base mangled -- device-bundle/run fp8flow-gpu-bench --quick --reps 1
set -uo pipefail
out=$1; k=$2; shift 2
extra=()
while [ $# -gt 0 ] && [ "$1" != -- ]; do extra+=("$1"); shift; done
shift
m=gpu__time_duration.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed,sm__warps_active.avg.pct_of_peak_sustained_active
m=$m,smsp__issue_active.avg.pct_of_peak_sustained_active,smsp__inst_executed.sum,launch__registers_per_thread,launch__occupancy_limit_registers
m=$m,l1tex__data_pipe_lsu_wavefronts_mem_shared.sum,l1tex__data_bank_conflicts_pipe_lsu_mem_shared.sum,lts__t_sector_hit_rate.pct
for s in long_scoreboard short_scoreboard barrier mio_throttle lg_throttle math_pipe_throttle wait not_selected selected drain membar dispatch_stall no_instruction imc_miss tex_throttle branch_resolving sleeping; do
  m=$m,smsp__average_warps_issue_stalled_${s}_per_issue_active.ratio
done
PATH=/usr/local/cuda/bin:$PATH timeout 300 ncu --launch-count 1 -k "$k" "${extra[@]}" --metrics "$m" "$@" > "$out" 2>&1
