// Portable build of the transpose tile loop (the fallback when the CPU lacks AVX2).
#define FP8FLOW_ISA isa_generic
#include "quant/transpose_kernels.inc"
