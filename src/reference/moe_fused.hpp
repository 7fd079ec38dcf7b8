// CPU twins of the fused MoE kernels (src/cuda/moe_kernels.cu): the same fp32 operations in the same order
// (reference/moe_fp32.hpp, shared with the kernels), so that every GPU output can be compared bit for bit.
// No file I/O. Layouts as in reference/moe_layer.hpp: permuted rows grouped per expert, padding rows after
// each expert's valid rows; bf16 tensors as raw bits (std::uint16_t).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "quant/quantize.hpp"
#include "reference/moe_layer.hpp"

namespace fp8flow {

// The recipe of the fused SwiGLU quantization (PAPER.md 3.3): 1x128 e4m3, paper_swiglu.
QuantRecipe swiglu_quant_recipe();

// ---- Fused weighted SwiGLU + quant ---------------------------------------------------------------
// Forward: h [rows, 2F] bf16 = [a | b], prob [rows] fp32 (the routing weight of each permuted row; 0 on
// padding rows), F % 128 == 0. y = swiglu_fwd(a, b, w) in fp32 (moe_fp32.hpp), then 1x128 paper_swiglu.
// act: rowwise codes [rows, F] + scale_inv [rows, F / 128]. The column copy is not made here: the
// FP8-Flow dataflow takes it from the scaling-aware transpose (PAPER.md 2, step 7).
std::vector<float> swiglu_fwd_values(std::span<const std::uint16_t> h, std::span<const float> prob,
                                     std::size_t rows, std::size_t ffn);
QuantizedTensor swiglu_quant_fwd(std::span<const std::uint16_t> h, std::span<const float> prob, std::size_t rows,
                                 std::size_t ffn);

// Backward: dact [rows, F] bf16 (the FC2 dgrad), h and prob as above. dh [rows, 2F] = [dgate | dup] quantized
// 1x128 paper_swiglu (F % 128 == 0: every block lies in one half, so the halves are scaled separately);
// dprob [rows] fp32 = sum over the row of (silu * b) * g in the kernels' fixed order (moe_fp32.hpp,
// kSwigluLanes; a NaN sum stored as 0x7FFFFFFF): deterministic, unlike the paper's fp32 atomics.
struct SwigluQuantGrad {
  QuantizedTensor dh;
  std::vector<float> dprob;
};
std::vector<float> swiglu_bwd_values(std::span<const std::uint16_t> dact, std::span<const std::uint16_t> h,
                                     std::span<const float> prob, std::size_t rows, std::size_t ffn,
                                     std::vector<float>& dprob);
SwigluQuantGrad swiglu_quant_bwd(std::span<const std::uint16_t> dact, std::span<const std::uint16_t> h,
                                 std::span<const float> prob, std::size_t rows, std::size_t ffn);

// ---- Permute + pad / unpermute + unpad -------------------------------------------------------------
// row_src[row] = the copy index t * K + j that permuted row `row` holds, or -1 for a padding row
// (Routing::row_copy as int32: what the kernels read).
std::vector<std::int32_t> row_sources(const Routing& r);
// copy_row[t * K + j] = the permuted row of copy (t, j) (Routing::row as int32).
std::vector<std::int32_t> copy_rows(const Routing& r);

// FP8 rows with their 1x128 scales [rows, ceil(cols / 128)] and per-row probs.
struct Fp8Rows {
  std::size_t rows = 0, cols = 0;
  std::vector<std::uint8_t> codes;
  std::vector<float> scale_inv;
  std::vector<float> prob;  // empty when no probs were given
};
// Permute + pad: row r of the output = token row_src[r] / K's codes and scale row, and probs[row_src[r]];
// padding rows: codes 0x00, scale_inv 0.0, prob 0.0 (PAPER.md 2, step 4). probs [T * K] may be empty.
// Also the unpermute backward of the FP8-Flow dataflow (step 10: dy's codes and scales, no probs).
Fp8Rows permute_pad_fp8(std::span<const std::uint8_t> codes, std::span<const float> scale_inv,
                        std::span<const float> probs, std::size_t tokens, std::size_t cols, std::size_t topk,
                        std::span<const std::int32_t> row_src);

// Unpermute + unpad: out[t, c] = bf16(acc) with acc = +0, then for j = 0..K-1: acc = acc + v (probs empty:
// the FP8-Flow dataflow, whose probs were applied in the SwiGLU) or acc = acc + RN32(p[t * K + j] * v)
// (merging by routing probabilities), v = in[copy_row[t * K + j], c] (bf16). Padding rows are never read.
// Also the permute backward (dxp -> dx, PAPER.md 2, step 13).
std::vector<std::uint16_t> unpermute_combine_bf16(std::span<const std::uint16_t> in, std::size_t in_rows,
                                                  std::size_t cols, std::span<const std::int32_t> copy_row,
                                                  std::size_t tokens, std::size_t topk,
                                                  std::span<const float> merge_probs);

}  // namespace fp8flow
