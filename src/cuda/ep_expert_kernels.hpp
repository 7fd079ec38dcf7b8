// Reference expert kernels for the expert-parallel path (ep_dispatch.hpp): not fast, bit-exact with the
// CPU emulator. Names spell out the accumulation model and the scale tiles.
//   gemm_e4m3_fp32_seq_1x128_128x128_bf16: out[i, n] = bf16(sum over 128-wide K blocks kb of
//       fma(P_kb, sa[i, kb] * sb[e(i), n / 128, kb], total)), P_kb the float32 sum of the block's products
//       in k order (gemm.cpp: fp32_seq), e(i) the expert of permuted row i, rounded RNE to bf16.
//   swiglu_quant_e4m3_1x128_paper_swiglu: act = silu(a) * b * prob in float64 (moe::swiglu_forward's
//       expression and order, CUDA's double exp), rounded to fp32, then 1x128 paper_swiglu (scale_rules.cpp).
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace fp8flow::cuda {

// A [M, K] e4m3 codes with 1x128 scale_inv [M, ceil(K/128)]; B [E * N, K] codes, 128x128 scale_inv
// [E * ceil(N/128), ceil(K/128)]; row_expert [M] local expert of each row; out [M, N] bf16 bits.
cudaError_t gemm_e4m3_fp32_seq_1x128_128x128_bf16(const std::uint8_t* a, const float* a_si, std::size_t M,
                                                  std::size_t K, const std::uint8_t* b, const float* b_si,
                                                  std::size_t N, const std::int32_t* row_expert,
                                                  std::uint16_t* out, cudaStream_t s);

// h [M, 2F] bf16 bits ([gate | up]), prob [M] -> act codes [M, F], scale_inv [M, ceil(F/128)].
cudaError_t swiglu_quant_e4m3_1x128_paper_swiglu(const std::uint16_t* h, const float* prob, std::size_t M,
                                                 std::size_t F, std::uint8_t* act, float* act_si, cudaStream_t s);

}  // namespace fp8flow::cuda
