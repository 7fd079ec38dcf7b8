// FP8 GEMM emulation over (codes, scales) operands with selectable accumulation models.
// OUT[M,N] = A[M,K] . B[N,K]^T in float32 (both operands K-major, as Hopper's TN-only FP8 GEMMs take them).
//
// Scales follow the blockwise recipes (PAPER.md section 5): for every K block kb of the scale tile width,
// the block's partial sum P is formed by the accumulation model and then added to an fp32 total as
//     total = fma(P, sa[i, kb] * sb[j, kb], total)          (DeepGEMM: final_accum += scale * accum)
// Tensor-scaled operands (one scale each) accumulate over all of K and are scaled once at the end.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "formats/format_spec.hpp"
#include "quant/granularity.hpp"

namespace fp8flow {

enum class AccumModel {
  exact,          // exact products and sums (integers), scales in binary128, one final rounding to fp32
  fp32_seq,       // float32 accumulator, products added in k order (what a CUDA-core loop does)
  fp32_pairwise,  // float32 pairwise (tree) summation within each promotion interval
  promote,        // limited-precision accumulator (acc_fraction_bits, truncating), promoted to fp32 every N_C
  hopper_fast,    // tensor-core model: groups of `group` products aligned to the largest exponent (incl. the
                  // accumulator), truncated to acc_fraction_bits below it, summed exactly; promoted every N_C
                  // unless fast_accum (then never, for tensor scaling)
};
inline constexpr std::string_view kAccumModelNames = "exact, fp32_seq, fp32_pairwise, promote, hopper_fast";
std::string_view to_string(AccumModel m);
AccumModel parse_accum_model(std::string_view s);  // throws InputError listing the names

struct AccumParams {
  int promote_interval = 128;   // N_C: products per promotion to fp32 (promote, hopper_fast, fp32_pairwise)
  int acc_fraction_bits = 13;   // limited accumulator: fraction bits kept (~14 significant bits, DeepSeek-V3)
  int group = 4;                // hopper_fast: products per aligned group
  bool fast_accum = false;      // hopper_fast: never promote (cuBLASLt CUBLASLT_MATMUL_DESC_FAST_ACCUM = 1)
};

// One operand: codes [rows, k] row-major, and COMPACT scale_inv over tiles of `gran` (tensor: 1 value;
// 1x128: [rows, ceil(k/128)]; 128x128: [ceil(rows/128), ceil(k/128)]).
struct GemmOperand {
  std::span<const std::uint8_t> codes;
  std::size_t rows = 0, k = 0;
  const FormatSpec* format = &e4m3;
  std::span<const float> scale_inv;
  Granularity gran = kTensor;
};

// Checks shapes, scale counts and that both operands use the same K block (or tensor scaling);
// throws InputError naming the operand and the problem.
void check_gemm_operands(const GemmOperand& a, const GemmOperand& b);

// The golden model: scalar loops in the order the model defines. OUT is [a.rows, b.rows] row-major.
std::vector<float> gemm_golden(const GemmOperand& a, const GemmOperand& b, AccumModel m, const AccumParams& p);
// The fast path (blocked, vectorised, multi-threaded): bit-identical to gemm_golden.
std::vector<float> gemm(const GemmOperand& a, const GemmOperand& b, AccumModel m, const AccumParams& p,
                        int threads = 0);

}  // namespace fp8flow
