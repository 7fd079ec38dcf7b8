// AVX2 build of the fast quantization loops (compiled with -O3 -mavx2; called only when the CPU has AVX2).
#define FP8FLOW_ISA isa_avx2
#define FP8FLOW_ISA_FP8_AVX2 1
#include "quant/quantize_fast_kernels.inc"
