// Run-time choice of the instruction set for the *_avx2.cpp kernels (compiled with -mavx2 -mfma -mbmi2).
#pragma once

namespace fp8flow {

// True when the CPU runs AVX2 and FMA code; the answer is computed once.
inline bool cpu_has_avx2() {
#if defined(__x86_64__) || defined(__i386__)
  static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return has;
#else
  return false;
#endif
}

}  // namespace fp8flow
