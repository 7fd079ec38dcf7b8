// What one GPU FP8 GEMM comparison found: its bits against a CPU accumulation model and |gpu - exact|
// against the a-priori error bound. Filled by cuda::validate_gemm_gpu (src/cuda/gemm_validate.hpp) and
// recorded by io::gemm_validation_record (src/io/gpu_validation_record.hpp), which both extend it.
#pragma once

#include <cstddef>
#include <string>

namespace fp8flow::io {

struct GemmComparison {
  std::string label;                // "1x128_128x128 fast_accum=0 f32 [M, N, K] vs h100"
  std::string algo;                 // the cuBLASLt algorithm used
  std::size_t compared = 0, bit_exact = 0;
  std::string first_mismatch;       // "out[3, 17] (A row 3, B row 17): model 0x3F800000 (1), gpu 0x3F800001 (...)"
  std::size_t bound_violations = 0;
  double worst_err_over_bound = 0;  // max |gpu - exact| / bound
  std::string first_violation;
  std::string error;                // cuBLASLt refused the combination (nothing compared)
};

}  // namespace fp8flow::io
