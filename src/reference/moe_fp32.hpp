// The fp32 arithmetic of the fused MoE kernels (src/cuda/moe_kernels.cu), written once for the host and the
// device, so that the CPU twins (reference/moe_fused.hpp) and the kernels compute the same bits.
//
// Every operation is one IEEE binary32 operation with round-to-nearest-even: on the device the _rn
// intrinsics (no contraction into FMA, no approximate division), on the host the plain operators (the
// library is built without -ffast-math and, on x86-64 without -mfma, with no FMA instruction to contract
// into) and std::fma (correctly rounded in glibc). Subnormals are kept on both sides (no flush to zero).
//
// exp_f32 -- the exponential both sides use (CUDA's expf and the host's std::exp differ in the last bit):
//   x NaN -> x + x; x > 89 -> +Inf; x < -104 -> +0 (exp(-104) < 2^-150: rounds to 0);
//   k  = RN(x * log2(e)) by fma(x, L2E, 1.5 * 2^23) - 1.5 * 2^23   (round half to even, |k| <= 151)
//   r  = fma(-k, C2, fma(-k, C1, x))      C1 = 0x1.63p-1 (9 bits: k * C1 and x - k * C1 exact), C2 = ln2 - C1
//   p  = Horner over c7 .. c0 of the Taylor series (c_i = RN32(1 / i!)), one fma per step, |r| <= 0.3467
//   exp = (p * 2^(k >> 1)) * 2^(k - (k >> 1))   (first product exact, the second rounds once: subnormal
//         and overflowing results are rounded correctly from p)
// Its error against the correctly rounded exp is measured with MPFR in tests/test_moe_fused.cpp (at most
// 1 ulp; docs/gpu.md gives the measured distribution).
//
// sigmoid(a) = rcp(1 + exp(-a)) with rcp the correctly rounded 1/x (__frcp_rn); silu = a * sigmoid(a).
#pragma once
#include <bit>
#include <cmath>
#include <cstdint>

#ifndef FP8FLOW_HD
#if defined(__CUDACC__)
#define FP8FLOW_HD __host__ __device__
#else
#define FP8FLOW_HD
#endif
#endif

namespace fp8flow::moe32 {

FP8FLOW_HD inline float mul(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
FP8FLOW_HD inline float add(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}
FP8FLOW_HD inline float sub(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fsub_rn(a, b);
#else
  return a - b;
#endif
}
FP8FLOW_HD inline float fma(float a, float b, float c) {
#if defined(__CUDA_ARCH__)
  return __fmaf_rn(a, b, c);
#else
  return std::fma(a, b, c);
#endif
}
FP8FLOW_HD inline float rcp(float a) {
#if defined(__CUDA_ARCH__)
  return __frcp_rn(a);
#else
  return 1.0f / a;
#endif
}
FP8FLOW_HD inline float from_bits(std::uint32_t b) { return std::bit_cast<float>(b); }
FP8FLOW_HD inline std::uint32_t to_bits(float f) { return std::bit_cast<std::uint32_t>(f); }
// 2^e for e in [-126, 127] (a normal float).
FP8FLOW_HD inline float pow2(int e) { return from_bits(std::uint32_t(e + 127) << 23); }

// bf16 (raw bits) <-> fp32: widening is exact; narrowing rounds to nearest even, NaN -> 0x7FFF (as CUDA's
// __float2bfloat16_rn), overflow -> +-Inf.
FP8FLOW_HD inline float bf16_to_f32(std::uint16_t b) { return from_bits(std::uint32_t(b) << 16); }
FP8FLOW_HD inline std::uint16_t f32_to_bf16(float f) {
  const std::uint32_t u = to_bits(f);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) return 0x7FFFu;
  return std::uint16_t((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

inline constexpr float kExpL2e = 0x1.715476p+0f;   // RN32(log2 e)
inline constexpr float kExpShifter = 0x1.8p+23f;   // 1.5 * 2^23
inline constexpr float kExpC1 = 0x1.63p-1f;        // 0.693359375
inline constexpr float kExpC2 = -0x1.bd0106p-13f;  // RN32(ln2 - C1)
// Taylor coefficients RN32(1 / i!), i = 2..7 (c0 = c1 = 1).
inline constexpr float kExpC2c = 0.5f, kExpC3 = 0x1.555556p-3f, kExpC4 = 0x1.555556p-5f, kExpC5 = 0x1.111112p-7f,
                       kExpC6 = 0x1.6c16c2p-10f, kExpC7 = 0x1.a01a02p-13f;

FP8FLOW_HD inline float exp_f32(float x) {
  if (x != x) return x + x;
  if (x > 89.0f) return from_bits(0x7F800000u);
  if (x < -104.0f) return 0.0f;
  const float kf = sub(fma(x, kExpL2e, kExpShifter), kExpShifter);
  const int k = int(kf);
  const float r = fma(-kf, kExpC2, fma(-kf, kExpC1, x));
  float p = kExpC7;
  p = fma(p, r, kExpC6);
  p = fma(p, r, kExpC5);
  p = fma(p, r, kExpC4);
  p = fma(p, r, kExpC3);
  p = fma(p, r, kExpC2c);
  p = fma(p, r, 1.0f);
  p = fma(p, r, 1.0f);
  const int k1 = k >> 1;  // arithmetic shift (C++20): floor(k / 2)
  return mul(mul(p, pow2(k1)), pow2(k - k1));
}

FP8FLOW_HD inline float sigmoid_f32(float a) { return rcp(add(1.0f, exp_f32(-a))); }

// Weighted SwiGLU, forward: y = ((a * s) * b) * w with s = sigmoid(a) (PAPER.md 3.3's order).
FP8FLOW_HD inline float swiglu_fwd(float a, float b, float w) {
  return mul(mul(mul(a, sigmoid_f32(a)), b), w);
}

// Backward of one element (PAPER.md 3.3): g' = g * w, dgate = (g' * dsilu) * b with dsilu = s * (1 + a *
// (1 - s)), dup = g' * silu; dw_term = (silu * b) * g, summed over the row for the prob gradient.
struct SwigluGrad {
  float dgate, dup, dw_term;
};
FP8FLOW_HD inline SwigluGrad swiglu_bwd(float a, float b, float g, float w) {
  const float s = sigmoid_f32(a);
  const float silu = mul(a, s);
  const float dsilu = mul(s, add(1.0f, mul(a, sub(1.0f, s))));
  const float gp = mul(g, w);
  return {mul(mul(gp, dsilu), b), mul(gp, silu), mul(mul(silu, b), g)};
}

// The kernels' lane layout, which fixes the order of the prob-gradient sum (moe_fused.hpp): one warp per
// row, lane l holds columns 256c + 8l + i (i < 8) of chunk c; each lane sums its terms in (c, i) order from
// +0, then the 32 lanes are combined by the xor butterfly v[l] += v[l ^ o] for o = 16, 8, 4, 2, 1. A NaN
// sum is stored as the canonical 0x7FFFFFFF (canonical_nan): the x86 host propagates an operand's NaN
// payload and sign, the GPU's arithmetic returns the canonical NaN.
inline constexpr int kSwigluLanes = 32, kSwigluVec = 8;
FP8FLOW_HD inline float canonical_nan(float v) { return v != v ? from_bits(0x7FFFFFFFu) : v; }

}  // namespace fp8flow::moe32
