// Quantize bf16/fp32 -> e4m3 with te_fp32 / te_pow2 (PAPER.md 3.1) on sm_90: 1x128 rowwise and 128x1
// columnwise in one pass over the input; the naive transpose (dequantize -> transpose -> 128x1 te_pow2,
// the double_quant path); dequantize. Same semantics as fp8flow::quantize / transpose_naive / dequantize.
// Layouts: rowwise codes [M, K], scale_inv COMPACT [M, ceil(K/128)]; columnwise codes stored transposed
// [K, M], scale_inv [row tiles, K] (row tiles restart at each expert group, see sat_kernels.hpp).
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "cuda/sat_kernels.hpp"

namespace fp8flow::cuda {

enum class QuantInput : int { f32, bf16 };  // bf16: raw bits (std::uint16_t), upper half of an fp32

struct TeQuantParams {
  bool pow2 = true;   // te_pow2 (true) or te_fp32
  float eps = 0.0f;   // amax floor
};

// One pass: any output pointer pair may be null (that direction is skipped). d_tiles as for the SAT.
cudaError_t quant_e4m3_1x128_128x1_te(const void* d_x, QuantInput input, std::size_t rows, std::size_t cols,
                                      const RowTile* d_tiles, std::size_t n_tiles, TeQuantParams p,
                                      std::uint8_t* d_row_codes, float* d_row_si, std::uint8_t* d_col_codes,
                                      float* d_col_si, cudaStream_t s = 0);

// naive transpose of a rowwise 1x128 e4m3 tensor: RN32(value(q) * si) -> 128x1 te_pow2 with `eps`.
cudaError_t transpose_naive_e4m3_1x128(const std::uint8_t* d_codes, const float* d_si, std::size_t rows,
                                       std::size_t cols, const RowTile* d_tiles, std::size_t n_tiles, float eps,
                                       std::uint8_t* d_col_codes, float* d_col_si, cudaStream_t s = 0);

// Dequantize a rowwise 1x128 e4m3 tensor: out[r, c] = RN32(value(q) * si[r, c / 128]), fp32.
cudaError_t dequant_e4m3_1x128(const std::uint8_t* d_codes, const float* d_si, std::size_t rows, std::size_t cols,
                               float* d_out, cudaStream_t s = 0);

}  // namespace fp8flow::cuda
