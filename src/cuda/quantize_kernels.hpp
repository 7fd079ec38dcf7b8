// Quantize bf16/fp32 -> e4m3 with te_fp32 / te_pow2 (PAPER.md 3.1) or paper_swiglu (PAPER.md 3.3) on sm_90:
// 1x128 rowwise and 128x1 columnwise in one pass over the input (v1: tile staged in shared memory, the
// faster; v2: tile in registers, also 128x128 blocks); the naive transpose (dequantize -> transpose -> 128x1
// te_pow2, the double_quant path); dequantize. Same semantics as fp8flow::quantize / transpose_naive / dequantize.
// pdl: programmatic dependent launch, as for sat_transpose_e4m3_1x128 (sat_kernels.hpp).
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
// bounds (optional, group_bounds() of the groups the tiles were made from): where every group starts on a
// multiple of 128 rows (one group included), each block takes its tile from its index instead of loading it
// from d_tiles. Same output either way; cudaErrorInvalidValue if the bounds do not make n_tiles tiles of
// `rows` rows (the check the SAT makes).
cudaError_t quant_e4m3_1x128_128x1_te(const void* d_x, QuantInput input, std::size_t rows, std::size_t cols,
                                      const RowTile* d_tiles, std::size_t n_tiles, TeQuantParams p,
                                      std::uint8_t* d_row_codes, float* d_row_si, std::uint8_t* d_col_codes,
                                      float* d_col_si, cudaStream_t s = 0, bool pdl = false,
                                      const GroupBounds* bounds = nullptr);

// ---- v2: register-resident tiles, 1x128 (+128x1) or 128x128, te_fp32 / te_pow2 / paper_swiglu ----------
// One 256-thread block per 128-row tile x 128-column block; each thread holds 8 rows x 8 columns of the
// tile in registers (one pass over the input, no shared-memory staging of the input); amax by integer max
// on |x| bits with NaN masked (= the fmaxf fold); shared memory only for the column maxima and the
// transposed write-out (swizzled 8-byte units, 128-byte output lines).
enum class QuantGranularity : int { g1x128, g128x128 };
enum class QuantRule : int { te_fp32, te_pow2, paper_swiglu };
struct QuantV2Params {
  QuantRule rule = QuantRule::te_pow2;
  float eps = 0.0f;  // te_*: amax floor; paper_swiglu uses its own fixed floor 1e-10 and ignores this
};
// g1x128:   a = rowwise 1x128 codes [M, K] + scale_inv [M, ceil(K/128)];
//           b = columnwise 128x1 codes stored transposed [K, M] + scale_inv [n_tiles, K].
// g128x128: a = block codes [M, K] + scale_inv [n_tiles, ceil(K/128)] (a_si required);
//           b = the transposed copy of the same codes [K, M] (b_si unused: the block scales are shared).
// Any of a_codes / b_codes may be null (that output is skipped); for g1x128 a_si / b_si go with them.
cudaError_t quant_e4m3_v2(const void* d_x, QuantInput input, std::size_t rows, std::size_t cols,
                          const RowTile* d_tiles, std::size_t n_tiles, QuantGranularity g, QuantV2Params p,
                          std::uint8_t* d_a_codes, float* d_a_si, std::uint8_t* d_b_codes, float* d_b_si,
                          cudaStream_t s = 0, bool pdl = false);
// The v1 kernel (tile staged in shared memory) with the same contract as quant_e4m3_v2, both granularities
// and all three rules, and the same bytes; faster (docs/gpu.md, eighth slice). quant_e4m3_1x128_128x1_te is
// it with g1x128 and a te rule. bounds as for quant_e4m3_1x128_128x1_te.
cudaError_t quant_e4m3_v1(const void* d_x, QuantInput input, std::size_t rows, std::size_t cols,
                          const RowTile* d_tiles, std::size_t n_tiles, QuantGranularity g, QuantV2Params p,
                          std::uint8_t* d_a_codes, float* d_a_si, std::uint8_t* d_b_codes, float* d_b_si,
                          cudaStream_t s = 0, bool pdl = false, const GroupBounds* bounds = nullptr);

// naive transpose of a rowwise 1x128 e4m3 tensor: RN32(value(q) * si) -> 128x1 te_pow2 with `eps`.
cudaError_t transpose_naive_e4m3_1x128(const std::uint8_t* d_codes, const float* d_si, std::size_t rows,
                                       std::size_t cols, const RowTile* d_tiles, std::size_t n_tiles, float eps,
                                       std::uint8_t* d_col_codes, float* d_col_si, cudaStream_t s = 0,
                                       bool pdl = false);

// Dequantize a rowwise 1x128 e4m3 tensor: out[r, c] = RN32(value(q) * si[r, c / 128]), fp32.
cudaError_t dequant_e4m3_1x128(const std::uint8_t* d_codes, const float* d_si, std::size_t rows, std::size_t cols,
                               float* d_out, cudaStream_t s = 0);

}  // namespace fp8flow::cuda
