// Baseline-ISA build of the batch loops (any x86-64 / other CPU).
#define FP8FLOW_ISA isa_generic
#define FP8FLOW_ISA_ALL_INPUTS 1
#include "formats/batch_kernels.inc"
