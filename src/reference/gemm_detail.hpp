// Shared pieces of the GEMM golden model and its fast path (not a public API).
#pragma once

#include <cstddef>
#include <vector>

#include "reference/gemm.hpp"

namespace fp8flow {
void check_accum_params(const AccumParams& p);  // throws InputError naming the parameter
namespace gemm_detail {
std::size_t block_width(const GemmOperand& x);
std::size_t scale_count(const GemmOperand& x);
float scale_at(const GemmOperand& x, std::size_t row, std::size_t k0);
std::vector<float> decode_operand(const GemmOperand& x);
// esums: per product ea + eb (operand exponents, subnormals at 1 - bias; kNoExp for a zero product), used by
// the hopper models with align_exponent_sum; may be null otherwise.
inline constexpr int kNoExp = -100000;
float block_partial(const float* products, std::size_t n, AccumModel m, const AccumParams& p,
                    const int* esums = nullptr);
// Per element: the exponent the tensor core aligns by (floor(log2|v|), at least 1 - bias; kNoExp for 0).
std::vector<int> operand_exponents(const GemmOperand& x, const std::vector<float>& values);
bool needs_exponents(AccumModel m, const AccumParams& p);
// total + P * (sa * sb) per the model's scale_order (AccumParams::scale_order).
float scale_add(float partial, float sa, float sb, float total, int scale_order, const GemmOperand& a,
                const GemmOperand& b);
float exact_output(const float* arow, const float* brow, const GemmOperand& a, const GemmOperand& b, std::size_t i,
                   std::size_t j, std::size_t bw);
}  // namespace gemm_detail
}  // namespace fp8flow
