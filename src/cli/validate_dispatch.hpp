// `fp8flow validate --gpu --op dispatch` (validate_dispatch.cpp): expert-parallel FP8/BF16 dispatch, the
// reference expert kernels and the combine over NCCL on R GPUs vs the CPU routing model and the fp8_flow
// dataflow, bit for bit (src/cuda/ep_validate.hpp, docs/ep.md).
#pragma once

#include <cstdint>
#include <string>

namespace fp8flow::cli {
// preset: a MoE preset name (tiny, quickstart, ...); tokens 0 keeps the preset's; ranks 0: every visible
// GPU (at most the expert count). Asking for more ranks than GPUs falls back to the GPUs present and says
// so. output: an HDF5 results store to append the results to as a gpu_validation run (one case per rank,
// one part per compared tensor; "" = none). Returns the exit status: 1 on any mismatch or when no GPU is
// visible, else 0.
int run_validate_dispatch(const std::string& preset, std::size_t tokens, int ranks, std::uint64_t seed, bool json,
                          int threads, const std::string& output = "");
}  // namespace fp8flow::cli
