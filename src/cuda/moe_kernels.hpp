// The FP8-Flow MoE layer's fused kernels on sm_90 (PAPER.md 2, steps 4, 6, 8, 10, 12, 13), each the twin of a
// CPU function in reference/moe_fused.hpp that it matches bit for bit (tests/gpu/gpu_moe_tests.cpp):
//   swiglu_quant_fwd     weighted SwiGLU + 1x128 paper_swiglu quantization      (swiglu_quant_fwd)
//   swiglu_quant_bwd     dSwiGLU with the routing weight, quantized; prob grads (swiglu_quant_bwd)
//   permute_pad_fp8      FP8 codes + 1x128 scales + probs -> expert groups      (permute_pad_fp8)
//   unpermute_combine    bf16 rows -> tokens, fp32 sum of the top-k copies      (unpermute_combine_bf16)
// The unpermute's backward in the FP8-Flow dataflow is permute_pad_fp8 on dy's codes and scales (step 10),
// the permute's backward is unpermute_combine on dxp (step 13): the four kernels cover both directions.
// All device pointers; bf16 as raw bits. Every call checks its arguments first (cudaErrorInvalidValue, no
// launch) and returns the launch error. pdl: programmatic dependent launch (launch_pdl.cuh).
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace fp8flow::cuda {

// h [rows, 2F] bf16 = [a | b], prob [rows]; F % 128 == 0. codes [rows, F], scale_inv [rows, F / 128].
cudaError_t swiglu_quant_fwd(const std::uint16_t* d_h, const float* d_prob, std::size_t rows, std::size_t ffn,
                             std::uint8_t* d_codes, float* d_si, cudaStream_t s = 0, bool pdl = false);

// dact [rows, F] bf16, h and prob as above. dh codes [rows, 2F] = [dgate | dup], scale_inv [rows, 2F / 128];
// dprob [rows] fp32 (the fixed lane order of moe_fp32.hpp; deterministic).
cudaError_t swiglu_quant_bwd(const std::uint16_t* d_dact, const std::uint16_t* d_h, const float* d_prob,
                             std::size_t rows, std::size_t ffn, std::uint8_t* d_dh_codes, float* d_dh_si,
                             float* d_dprob, cudaStream_t s = 0, bool pdl = false);

// codes [tokens, cols], scale_inv [tokens, ceil(cols / 128)], probs [tokens * topk] (may be null; then
// d_out_prob is not written and may be null); row_src [rows] (copy index t * topk + j, or -1 for a padding
// row). Out: codes [rows, cols], scale_inv [rows, ceil(cols / 128)], prob [rows]; padding rows 0.
cudaError_t permute_pad_fp8(const std::uint8_t* d_codes, const float* d_si, const float* d_probs, std::size_t tokens,
                            std::size_t cols, std::size_t topk, const std::int32_t* d_row_src, std::size_t rows,
                            std::uint8_t* d_out_codes, float* d_out_si, float* d_out_prob, cudaStream_t s = 0,
                            bool pdl = false);

// in [in_rows, cols] bf16, copy_row [tokens * topk] (row of copy (t, j)), merge_probs [tokens * topk] or null
// (plain sum). out [tokens, cols] bf16. topk <= 32.
cudaError_t unpermute_combine_bf16(const std::uint16_t* d_in, std::size_t in_rows, std::size_t cols,
                                   const std::int32_t* d_copy_row, std::size_t tokens, std::size_t topk,
                                   const float* d_merge_probs, std::uint16_t* d_out, cudaStream_t s = 0,
                                   bool pdl = false);

}  // namespace fp8flow::cuda
