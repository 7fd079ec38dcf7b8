// GPU kernel tests against the CPU golden model (gpu_quant_tests.cpp). Each returns 0 pass, 1 fail.
#pragma once
namespace fp8flow::gpu_tests {
int quantize_bitexact();
int transpose_bitexact();
int dequantize_bitexact();
}  // namespace fp8flow::gpu_tests
