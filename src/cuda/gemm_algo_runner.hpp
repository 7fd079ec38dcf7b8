// cuBLASLt's default FP8 GEMM algorithm, as torch._scaled_mm picks it (CublasGemmConfig::torch_heuristic),
// probed on the GPU (docs/gemm.md "Algorithms"):
//  - run_gemm_algo_table: the heuristic's pick (algo id, tile, stages, split-K count, reduction scheme,
//    swizzle, custom option, cluster, inner shape, workspace, waves) for every scaling x fast accumulation x
//    output type over a grid of M, N, K; no GEMM is run. Writes one CSV.
//  - run_gemm_algo_record: runs the cases of a set (src/reference/gemm_cases.hpp) with that algorithm and
//    records the sampled outputs' bits: DIR/gemm_algo_<set>.json + DIR/gemm_algo_<set>_out.npy (uint32).
//    With dump_dir, also writes every case's operands, scales and full outputs there (for the comparison
//    with torch._scaled_mm, scripts/device/torch_gemm_compare.py).
#pragma once

#include <string>

namespace fp8flow::cuda {

int run_gemm_algo_table(const std::string& csv_path, bool quiet);
int run_gemm_algo_record(const std::string& set, const std::string& out_dir, const std::string& dump_dir,
                         bool quiet);

}  // namespace fp8flow::cuda
