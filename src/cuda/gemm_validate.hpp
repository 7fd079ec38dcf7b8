// cuBLASLt FP8 GEMM vs the CPU accumulation model on the same operands: bit for bit (count, first mismatch
// with its coordinate, inputs and both outputs in hex) and, separately, against the a-priori error bound of
// gemm_error_bound (src/reference/gemm.hpp) around the exact result.
#pragma once

#include <cstddef>
#include <string>
#include <utility>
#include <vector>

#include "cuda/gemm_cublaslt.hpp"
#include "reference/gemm.hpp"

namespace fp8flow::cuda {

struct GemmValidation {
  std::string label;                 // "1x128_128x128 fast_accum=0 f32 [M, N, K] vs h100"
  std::string algo;                  // the cuBLASLt algorithm used
  std::size_t compared = 0, bit_exact = 0;
  std::string first_mismatch;        // "out[3, 17] (A row 3, B row 17): model 0x3F800000 (1), gpu 0x3F800001 (...)"
  std::size_t bound_violations = 0;
  double worst_err_over_bound = 0;   // max |gpu - exact| / bound
  std::string first_violation;
  std::string error;                 // cuBLASLt refused the combination (nothing compared)
  bool bits_ok() const { return bit_exact == compared; }
  bool bound_ok() const { return bound_violations == 0 && error.empty(); }
};

// model: the CPU model to compare bits with (normally h100 or h100_fast to match cfg.fast_accum).
GemmValidation validate_gemm_gpu(const GemmOperand& a, const GemmOperand& b, const CublasGemmConfig& cfg,
                                 AccumModel model, int threads = 0);
// Several GPU configurations on the same operands; the exact result and each CPU model run once.
std::vector<GemmValidation> validate_gemm_gpu(const GemmOperand& a, const GemmOperand& b,
                                              const std::vector<std::pair<CublasGemmConfig, AccumModel>>& runs,
                                              int threads = 0);
std::string to_text(const GemmValidation& v);

}  // namespace fp8flow::cuda
