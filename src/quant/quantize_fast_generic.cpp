// Portable build of the fast quantization loops (the fallback when the CPU lacks AVX2).
#define FP8FLOW_ISA isa_generic
#include "quant/quantize_fast_kernels.inc"
