// GPU kernel tests against the CPU golden model (gpu_quant_tests.cpp). Each returns 0 pass, 1 fail.
#pragma once
namespace fp8flow::gpu_tests {
int quantize_bitexact();
int quantize_v2_bitexact(bool small);
int quantize_swiglu_edges();
int transpose_bitexact();
int dequantize_bitexact();
int pdl_chain();
int gemm_cublaslt();  // gpu_gemm_tests.cpp
int gemm_algo_auto();  // gpu_gemm_tests.cpp
int ep_dispatch(int ranks);  // gpu_ep_tests.cpp: skipped (77) with fewer GPUs than ranks
int moe_fused_bitexact(bool small);  // gpu_moe_tests.cpp: fused MoE kernels vs their CPU twins
}  // namespace fp8flow::gpu_tests
