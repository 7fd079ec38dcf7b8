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
float block_partial(const float* products, std::size_t n, AccumModel m, const AccumParams& p);
float exact_output(const float* arow, const float* brow, const GemmOperand& a, const GemmOperand& b, std::size_t i,
                   std::size_t j, std::size_t bw);
}  // namespace gemm_detail
}  // namespace fp8flow
