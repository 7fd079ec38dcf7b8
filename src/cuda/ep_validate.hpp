// Expert-parallel dispatch / expert compute / combine on R GPUs (ep_dispatch.hpp) against the CPU:
// the routing model (src/reference/ep_routing.hpp: which tokens each rank receives, in which order, the
// per-expert layout) and the fp8_flow dataflow (src/reference/dataflows.cpp, run on one process: xp, prow,
// h, act, o, y, dout), compared bit for bit, rank by rank, on the slice of the single-process tensors
// each rank's experts own.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "cuda/gpu_validate.hpp"
#include "reference/moe_layer.hpp"

namespace fp8flow::cuda {

struct EpValidationOptions {
  MoeShape shape;            // tokens, hidden, ffn, experts, topk, align
  int ranks = 1;
  std::uint64_t seed = 1;
  int threads = 0;           // CPU reference
};

struct EpValidationResult {
  std::vector<GpuValidation> parts;  // one per (rank, tensor) family; see to_text
  std::vector<std::string> gpus;     // device names of the ranks
  std::string nccl;                  // NCCL version
  double cpu_ms = 0, gpu_ms = 0;
  bool ok() const;
};

// Runs the CPU reference and the GPU path (bf16 and fp8 dispatch of x, expert forward, combine, fp8
// dispatch of dy) on `ranks` GPUs. Throws InputError when fewer GPUs are visible than ranks.
EpValidationResult validate_ep_dispatch_gpu(const EpValidationOptions& o);

}  // namespace fp8flow::cuda
