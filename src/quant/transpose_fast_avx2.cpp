// AVX2 -O3 build of the transpose tile loop (called only when the CPU has AVX2).
#define FP8FLOW_ISA isa_avx2
#include "quant/transpose_kernels.inc"
