// cuBLASLt FP8 GEMM vs the CPU accumulation model on the same operands: bit for bit (count, first mismatch
// with its coordinate, inputs and both outputs in hex) and, separately, against the a-priori error bound of
// gemm_error_bound (src/reference/gemm.hpp) around the exact result.
#pragma once

#include <cstddef>
#include <string>
#include <utility>
#include <vector>

#include "cuda/gemm_cublaslt.hpp"
#include "io/gemm_comparison.hpp"
#include "reference/gemm.hpp"
#include "reference/gemm_algo.hpp"

namespace fp8flow::cuda {

struct GemmValidation : io::GemmComparison {
  bool bits_ok() const { return bit_exact == compared; }
  bool bound_ok() const { return bound_violations == 0 && error.empty(); }
};

// model: the CPU model to compare bits with (normally h100 or h100_fast to match cfg.fast_accum).
GemmValidation validate_gemm_gpu(const GemmOperand& a, const GemmOperand& b, const CublasGemmConfig& cfg,
                                 AccumModel model, int threads = 0);
// Several GPU configurations on the same operands; the exact result and each CPU model run once.
// table: the CPU model runs the algorithm the H100 table gives for each run's configuration and shape
// (--algo auto; the GPU side should then choose as torch does, cfg.torch_heuristic); null: unsplit.
std::vector<GemmValidation> validate_gemm_gpu(const GemmOperand& a, const GemmOperand& b,
                                              const std::vector<std::pair<CublasGemmConfig, AccumModel>>& runs,
                                              int threads = 0, const GemmAlgoTable* table = nullptr);
std::string to_text(const GemmValidation& v);

}  // namespace fp8flow::cuda
