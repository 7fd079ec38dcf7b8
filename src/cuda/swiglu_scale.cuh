// The paper_swiglu scale of a 1x128 block (PAPER.md 3.3) on the device, shared by the quantize kernels and
// the fused SwiGLU kernels: si = 2^ceil(log2(RN32(max(amax, 1e-10) / 448))) from the bits of the quotient;
// elements are multiplied by factor = 1 / si. y / si == y * 2^-E exactly: both are RN32 of the same real
// value because 1/si is a power of two that fp32 represents (E(si) in [-42, 120]); si = Inf (an Inf in the
// block) gives factor 0: finite -> +-0 as y / Inf, Inf -> NaN as Inf / Inf. Same as the CPU rule
// (src/quant/scale_rules.cpp), checked bit for bit by the quantize and fused SwiGLU GPU tests.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace fp8flow::cuda {

inline constexpr float kSwigluAmaxFloor = 1e-10f;  // tl.maximum(amax, 1e-10) (src/quant/scale_rules.cpp)

// amax: the fmaxf fold of |y| over the block from 0 (NaN ignored). Returns {factor, si}.
__device__ __forceinline__ float2 paper_swiglu_scale(float amax) {
  const float t = __fdiv_rn(fmaxf(amax, kSwigluAmaxFloor), 448.0f);
  const std::uint32_t b = __float_as_uint(t);
  const std::uint32_t e = ((b >> 23) & 0xFFu) + ((b & 0x7FFFFFu) != 0u ? 1u : 0u);
  const float rcp = e >= 255u ? 0.0f : e == 254u ? __uint_as_float(0x00400000u) : __uint_as_float((254u - e) << 23);
  return make_float2(rcp, __uint_as_float(e << 23));
}

}  // namespace fp8flow::cuda
