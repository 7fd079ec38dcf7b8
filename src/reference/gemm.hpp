// FP8 GEMM emulation over (codes, scales) operands with selectable accumulation models.
// OUT[M,N] = A[M,K] . B[N,K]^T in float32 (both operands K-major, as Hopper's TN-only FP8 GEMMs take them).
//
// Scales follow the blockwise recipes (PAPER.md section 5): for every K block kb of the scale tile width,
// the block's partial sum P is formed by the accumulation model and then added to an fp32 total as
//     total = fma(P, sa[i, kb] * sb[j, kb], total)          (DeepGEMM: final_accum += scale * accum)
// Tensor-scaled operands (one scale each) accumulate over all of K and are scaled once at the end.
#pragma once

#include <cstddef>
#include <compare>
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
  h100,           // hopper_fast with the parameters fitted to cuBLASLt on an H100, fast accumulation off
  h100_fast,      // the same with CUBLASLT_MATMUL_DESC_FAST_ACCUM = 1 (docs/gemm.md "Fitted presets")
};
inline constexpr std::string_view kAccumModelNames =
    "exact, fp32_seq, fp32_pairwise, promote, hopper_fast, h100, h100_fast";
std::string_view to_string(AccumModel m);
AccumModel parse_accum_model(std::string_view s);  // throws InputError listing the names

struct AccumParams {
  int promote_interval = 128;   // N_C: products per promotion to fp32 (promote, hopper_fast, fp32_pairwise)
  int acc_fraction_bits = 13;   // limited accumulator: fraction bits kept (~14 significant bits, DeepSeek-V3)
  int group = 4;                // hopper_fast: products per aligned group
  bool fast_accum = false;      // hopper_fast: never promote (cuBLASLt CUBLASLT_MATMUL_DESC_FAST_ACCUM = 1)
  // hopper_fast refinements (fitted to the H100, docs/gemm.md):
  bool acc_in_alignment = true; // the accumulator joins each group's alignment (else: the group's products are
                                // aligned among themselves and their sum is added to the fp32 accumulator)
  bool round_terms = false;     // aligned terms cut by round-to-nearest-even instead of truncation
  bool acc_round_nearest = false;  // group result into the fp32 accumulator by RN instead of RZ
  bool truncate_result = false; // the group's aligned sum is truncated to acc_fraction_bits below its own
                                // leading bit (the accumulator keeps 1 + F significant bits; H100: yes)
  bool align_exponent_sum = false;  // a product's alignment exponent is ea + eb of its operands (subnormals at
                                    // 1 - bias), not its own exponent (one higher when the significands'
                                    // product is >= 2): the hardware aligns before normalising products
  // How a block's partial P meets the scales: 0: total = fma(P, RN(sa*sb), total); 1: total =
  // fma(RN(P*sa), sb, total); 2: 1 where both operands are 1x128-scaled, else 0 (cuBLASLt on the H100).
  int scale_order = 0;
};

// The parameters a model runs with: the fitted values for the presets h100 / h100_fast, else p unchanged.
AccumParams accum_preset_params(AccumModel m, const AccumParams& p);

// How one FP8 GEMM is computed: everything the CPU model needs besides its operands. The dataflows carry one
// per GEMM step, `fp8flow moe` / `train` / experiments set it with `--accum` / `accum`, and results record it
// (to_string). Default: the H100 model (cuBLASLt, fast accumulation off), i.e. what the hardware computes.
struct GemmConfig {
  AccumModel accum = AccumModel::h100;
  AccumParams params;  // ignored by the presets h100 / h100_fast, which use their fitted values
  bool operator==(const GemmConfig&) const = default;
};
// "h100", "fp32_seq", or e.g. "hopper_fast(promote_interval=64, acc_fraction_bits=13, group=4)" when the
// model reads parameters that differ from the defaults.
std::string to_string(const GemmConfig& c);

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
inline std::vector<float> gemm(const GemmOperand& a, const GemmOperand& b, const GemmConfig& c, int threads = 0) {
  return gemm(a, b, c.accum, c.params, threads);
}

// A-priori bound on |hardware output - exact| per output [M, N] (gemm_bounds.cpp, docs/gemm.md "Error
// bound"): from K, the 128-element block maxima of each A and B row, the scales, the accumulator's fraction
// bits, group size and promotion interval of p (fast_accum: no promotion inside a scale block), and the
// output format (fp32 or bf16).
// `exact`: the exact model's output if already computed (else computed here).
std::vector<double> gemm_error_bound(const GemmOperand& a, const GemmOperand& b, const AccumParams& p,
                                     bool bf16_out = false, const std::vector<float>* exact = nullptr);

}  // namespace fp8flow
