// Runs the accumulation probe suite (src/reference/gemm_probes.hpp) through cuBLASLt and records every
// output's bits: DIR/gemm_probes.json (index: case, scaling, fast_accum, output type, shape, input hash,
// cuBLASLt algorithm, offset) and DIR/gemm_probes_out.npy (uint32: fp32 bits, or bf16 bits in the low half).
// Before the probes it checks the block-scale layouts: a random blockwise GEMM under each layout variant
// against the CPU `exact` model; the variant that matches is used and recorded.
#pragma once

#include <string>
#include <vector>

namespace fp8flow::cuda {

struct GemmProbeRunOptions {
  std::string out_dir;
  std::vector<std::string> cases;  // empty: all
  bool bf16_outputs = true;        // also record bf16-output runs of the random cases
  bool quiet = false;
};

// Returns the number of runs cuBLASLt refused (each is recorded with its error).
int run_gemm_probes(const GemmProbeRunOptions& o);

}  // namespace fp8flow::cuda
