// Seeded FP8 GEMM cases for recording cuBLASLt's default algorithm on the GPU and replaying it on the CPU
// (docs/gemm.md "Algorithms"): a case is (M, N, K, scaling, value distribution, seed); its e4m3 codes are
// generated row by row (a row is a pure function of the case and its index, so the CPU regenerates only the
// rows it needs), its scales per tile, and, for large M x N, a seeded sample of output coordinates.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "quant/granularity.hpp"

namespace fp8flow {

// Value distributions of the operands (both operands unless said):
//  normal      N(0, 1) rounded to e4m3 (RNE, saturating)
//  outliers    normal, 1% of the elements x 2^5..2^8 (saturating at 448)
//  cancel      pairs (k, k+1) with A[k+1] = -A[k], B[k+1] = B[k]: the products cancel exactly; 1 pair in 16 not
//  tiny_after_large  every 64th element +-448 or +-256, the rest 2^-9 .. 2^-4 (subnormals included)
//  mixed_exp   uniform over all finite e4m3 codes (every exponent, subnormals, +-0)
//  zeros       normal with 60% zeros; every 7th row of each operand all zeros
//  nan         normal; A holds a NaN code at about 1 in 2048 elements
//  overflow    +-448 / +-240 operands and scales 2^60: outputs overflow to +-Inf (and NaN where they meet)
//  ones        A = B = 1 (exact sums; a fast-accumulated 14-bit chain stalls at 2^14: shows split lengths)
inline constexpr std::string_view kGemmCaseDists[] = {"normal", "outliers", "cancel", "tiny_after_large",
                                                      "mixed_exp", "zeros", "nan", "overflow", "ones"};

// Scalings (as cuBLASLt names them in docs/gpu.md): tensor, 1x128_128x128 (A 1x128, B 128x128), 1x128_1x128.
struct GemmCase {
  std::size_t m = 0, n = 0, k = 0;
  std::string scaling = "tensor", dist = "normal";
  std::uint64_t seed = 1;
  std::string name() const;  // "tensor/normal/s1/64x64x16384"
};

Granularity gemm_case_gran_a(const GemmCase& c);
Granularity gemm_case_gran_b(const GemmCase& c);
void check_gemm_case(const GemmCase& c);  // InputError naming the field (unknown dist/scaling, K % 16, ...)

// One row of operand A (which = 0) or B (which = 1): k e4m3 codes.
void gemm_case_row(const GemmCase& c, int which, std::size_t row, std::uint8_t* out);
// Whole operand, rows [0, rows(c, which)).
std::vector<std::uint8_t> gemm_case_operand(const GemmCase& c, int which);
// COMPACT scale_inv of A / B (src/reference/gemm.hpp).
std::vector<float> gemm_case_scales(const GemmCase& c, int which);

// Output coordinates recorded for a case: every output if M * N <= cap, else up to `cap` outputs on a seeded
// grid of rows x columns (at most 32 rows, first and last included), row-major order.
struct GemmSample {
  std::vector<std::size_t> rows, cols;  // the outputs are rows x cols
  std::size_t size() const { return rows.size() * cols.size(); }
};
GemmSample gemm_case_sample(const GemmCase& c, std::size_t cap);

}  // namespace fp8flow

namespace fp8flow {

// The recorded sets (docs/gemm.md "Algorithms"): "fit" (the model's parameters are chosen on it) and
// "heldout" (disjoint: other shapes, other seeds, and distributions the fit never saw). Every case runs
// under fast accumulation off/on and fp32/bf16 output.
std::vector<GemmCase> gemm_case_set(std::string_view set);  // InputError for an unknown set
// Sampled outputs recorded per case: all up to 2048, fewer for long K (the CPU replays them one by one).
std::size_t gemm_case_sample_cap(const GemmCase& c);

}  // namespace fp8flow
