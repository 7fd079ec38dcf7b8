// The te_pow2 scale for e4m3 (PAPER.md 3.1) without a division, for the GPU kernels' hot loops and the CPU:
// scale = 2^floor(log2(RN32(448 / max(amax, eps)))) (clamped to 2^127 where the quotient overflows; 1 for a
// zero, Inf or NaN amax) and its scale_inv 1 / scale, both exact powers of two. Equal bit for bit to
// te_scale_from_amax(amax, 448, eps, pow2 = true, any input) and RN32(1 / scale) (tested exhaustively over
// every fp32 amax in tests/test_pow2_scale.cpp).
// Why no division is needed: with amax = 1.m * 2^e (subnormals normalised first), 448 / amax = (1.75 / 1.m)
// * 2^(8 - e); 1.75 / 1.m is in [1, 1.75] when 1.m <= 1.75 and in (0.875, 1) otherwise, and no fp32 1.m
// lies close enough above 1.75 for RN32 to round the quotient up to the next power of two (the nearest,
// 1.75 + 2^-23, leaves it 2.3 half-ulps below it). So the exponent of RN32(448 / amax) is 8 - e or 7 - e.
#pragma once
#include <bit>
#include <cstdint>

#if defined(__CUDACC__)
#define FP8FLOW_HD __host__ __device__
#else
#define FP8FLOW_HD
#endif

namespace fp8flow {

struct Pow2ScaleBits {
  std::uint32_t scale, scale_inv;  // fp32 bit patterns
};

FP8FLOW_HD inline Pow2ScaleBits te_pow2_scale_e4m3(float amax, float eps) {
  if (amax < eps) amax = eps;
  std::uint32_t b = std::bit_cast<std::uint32_t>(amax) & 0x7FFFFFFFu;  // amax >= 0 here; |.| keeps -0 as 0
  if (b == 0u || b >= 0x7F800000u) return {0x3F800000u, 0x3F800000u};  // 0, Inf, NaN: scale 1
  int e = int(b >> 23) - 127;
  if (b < 0x00800000u) {  // subnormal: b = m * 2^-149; shift the leading 1 up to bit 23
#if defined(__CUDA_ARCH__)
    const int s = __clz(b) - 8;
#else
    const int s = std::countl_zero(b) - 8;
#endif
    b <<= s;
    e = -126 - s;
  }
  const int eq = ((b & 0x7FFFFFu) <= 0x600000u ? 8 : 7) - e;  // exponent of RN32(448 / amax), >= -119
  // 2^127 (eq = 127, or eq >= 128: the quotient overflows, is clamped to the largest finite bf16/fp32 and
  // masked to 2^127); its inverse 2^-127 is the fp32 subnormal 0x00400000.
  if (eq >= 127) return {0x7F000000u, 0x00400000u};
  return {std::uint32_t(eq + 127) << 23, std::uint32_t(127 - eq) << 23};
}

}  // namespace fp8flow
