// AVX2+FMA build of the float32 <-> 8-bit batch loops; compiled with -mavx2 -mfma (see CMakeLists.txt),
// called only when the CPU reports AVX2.
#define FP8FLOW_ISA isa_avx2
#define FP8FLOW_ISA_ALL_INPUTS 0
#define FP8FLOW_ISA_FP8_AVX2 1
#include "formats/batch_kernels.inc"
