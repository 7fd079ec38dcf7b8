// Fused MoE kernels (see moe_kernels.hpp). The element arithmetic is reference/moe_fp32.hpp, compiled for
// the device (explicit _rn intrinsics: no FMA contraction), the scale src/cuda/swiglu_scale.cuh.
//
// SwiGLU forward: one warp per (row, 256-column chunk): lane l takes columns 8l..8l+7 of the chunk (a 16-byte
//   load of a and of b each); a 1x128 block is a half-warp, its amax 4 xor shuffles; codes leave as one
//   8-byte store per lane. SwiGLU backward: one warp per row (the prob gradient is a sum over the row in the
//   fixed lane order of moe_fp32.hpp), two chunks loaded before either is used (48 bytes per lane each).
// Permute+pad: one warp per output row, 16-byte copies (cols % 16 == 0; bytewise otherwise), pad rows
//   zero. Unpermute: one warp per (token, 256-column slice); a lane loads the K copies' 16 bytes of its 8
//   columns (up to 8 loads in flight), adds them in slot order in fp32 and stores 16 bytes of bf16
//   (cols % 8 == 0; otherwise one warp per token, elementwise).
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/launch_pdl.cuh"
#include "cuda/moe_kernels.hpp"
#include "cuda/swiglu_scale.cuh"
#include "reference/moe_fp32.hpp"

namespace fp8flow::cuda {
namespace {

constexpr int kThreads = 256, kWarps = kThreads / 32;
constexpr unsigned kFull = 0xFFFFFFFFu;

__device__ __forceinline__ std::uint32_t cvt2(float a, float b) {  // a -> low byte
  return std::uint32_t(__nv_cvt_float2_to_fp8x2(make_float2(a, b), __NV_SATFINITE, __NV_E4M3));
}
__device__ __forceinline__ std::uint32_t cvt4(const float* v) {
  return cvt2(v[0], v[1]) | (cvt2(v[2], v[3]) << 16);
}
__device__ __forceinline__ void unpack_bf16x8(uint4 u, float* v) {
  const std::uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    v[2 * i] = __uint_as_float(w[i] << 16);
    v[2 * i + 1] = __uint_as_float(w[i] & 0xFFFF0000u);
  }
}

// Quantize the 8 values of a lane with the paper_swiglu scale of its half-warp's 128 values: codes as one
// 8-byte word, the block's scale_inv returned.
__device__ __forceinline__ uint2 quant8_halfwarp(const float* y, float& si) {
  float amax = 0.0f;
#pragma unroll
  for (int i = 0; i < 8; ++i) amax = fmaxf(amax, fabsf(y[i]));  // NaN ignored (fmaxf)
#pragma unroll
  for (int o = 8; o > 0; o >>= 1) amax = fmaxf(amax, __shfl_xor_sync(kFull, amax, o));
  const float2 fs = paper_swiglu_scale(amax);
  si = fs.y;
  float q[8];
#pragma unroll
  for (int i = 0; i < 8; ++i) q[i] = __fmul_rn(y[i], fs.x);
  return make_uint2(cvt4(q), cvt4(q + 4));
}

__global__ void __launch_bounds__(kThreads) swiglu_fwd_kernel(const std::uint16_t* __restrict__ h,
                                                              const float* __restrict__ prob, std::size_t rows,
                                                              std::uint32_t F, std::uint8_t* __restrict__ codes,
                                                              float* __restrict__ si) {
  pdl_start();
  const std::uint32_t lane = threadIdx.x & 31, chunks = (F + 255) / 256;
  const std::size_t item = std::size_t(blockIdx.x) * kWarps + (threadIdx.x >> 5);
  if (item >= rows * chunks) return;  // the whole warp
  const std::size_t row = item / chunks;
  const std::uint32_t col = std::uint32_t(item % chunks) * 256 + 8 * lane;
  const bool active = col < F;  // F % 256 == 128: the last chunk's upper half-warp idles
  float y[8] = {};
  if (active) {
    const std::uint16_t* hr = h + row * 2 * F;
    float a[8], b[8];
    unpack_bf16x8(__ldg(reinterpret_cast<const uint4*>(hr + col)), a);
    unpack_bf16x8(__ldg(reinterpret_cast<const uint4*>(hr + F + col)), b);
    const float w = __ldg(prob + row);
#pragma unroll
    for (int i = 0; i < 8; ++i) y[i] = moe32::swiglu_fwd(a[i], b[i], w);
  }
  float s;
  const uint2 q = quant8_halfwarp(y, s);
  if (!active) return;
  *reinterpret_cast<uint2*>(codes + row * F + col) = q;
  if ((lane & 15) == 0) si[row * (F / 128) + col / 128] = s;
}

struct BwdChunk {
  uint4 a, b, g;
};

__global__ void __launch_bounds__(kThreads) swiglu_bwd_kernel(const std::uint16_t* __restrict__ dact,
                                                              const std::uint16_t* __restrict__ h,
                                                              const float* __restrict__ prob, std::size_t rows,
                                                              std::uint32_t F, std::uint8_t* __restrict__ codes,
                                                              float* __restrict__ si, float* __restrict__ dprob) {
  pdl_start();
  const std::uint32_t lane = threadIdx.x & 31;
  const std::size_t row = std::size_t(blockIdx.x) * kWarps + (threadIdx.x >> 5);
  if (row >= rows) return;  // the whole warp
  const std::uint16_t* hr = h + row * 2 * F;
  const std::uint16_t* gr = dact + row * F;
  std::uint8_t* cr = codes + row * 2 * F;
  float* sr = si + row * (2 * F / 128);
  const float w = __ldg(prob + row);
  float acc = 0.0f;
  auto load = [&](std::uint32_t col) {
    BwdChunk c{};
    if (col < F) {
      c.a = __ldg(reinterpret_cast<const uint4*>(hr + col));
      c.b = __ldg(reinterpret_cast<const uint4*>(hr + F + col));
      c.g = __ldg(reinterpret_cast<const uint4*>(gr + col));
    }
    return c;
  };
  auto process = [&](const BwdChunk& c, std::uint32_t col) {
    float a[8], b[8], g[8], dg[8], du[8];
    unpack_bf16x8(c.a, a);
    unpack_bf16x8(c.b, b);
    unpack_bf16x8(c.g, g);
    const bool active = col < F;
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      const moe32::SwigluGrad d = moe32::swiglu_bwd(a[i], b[i], g[i], w);
      dg[i] = active ? d.dgate : 0.0f;
      du[i] = active ? d.dup : 0.0f;
      if (active) acc = moe32::add(acc, d.dw_term);
    }
    float s_g, s_u;
    const uint2 qg = quant8_halfwarp(dg, s_g);
    const uint2 qu = quant8_halfwarp(du, s_u);
    if (!active) return;
    *reinterpret_cast<uint2*>(cr + col) = qg;
    *reinterpret_cast<uint2*>(cr + F + col) = qu;
    if ((lane & 15) == 0) {
      sr[col / 128] = s_g;
      sr[(F + col) / 128] = s_u;
    }
  };
  for (std::uint32_t c0 = 0; c0 < F; c0 += 512) {
    const BwdChunk c1 = load(c0 + 8 * lane), c2 = load(c0 + 256 + 8 * lane);
    process(c1, c0 + 8 * lane);
    if (c0 + 256 < F) process(c2, c0 + 256 + 8 * lane);
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) acc = moe32::add(acc, __shfl_xor_sync(kFull, acc, o));
  if (lane == 0) dprob[row] = moe32::canonical_nan(acc);
}

__global__ void __launch_bounds__(kThreads) permute_kernel(const std::uint8_t* __restrict__ codes,
                                                           const float* __restrict__ si,
                                                           const float* __restrict__ probs, std::uint32_t cols,
                                                           std::uint32_t topk, const std::int32_t* __restrict__ src,
                                                           std::size_t rows, std::uint8_t* __restrict__ out,
                                                           float* __restrict__ out_si, float* __restrict__ out_prob) {
  pdl_start();
  const std::uint32_t lane = threadIdx.x & 31, sc = (cols + 127) / 128;
  const std::size_t row = std::size_t(blockIdx.x) * kWarps + (threadIdx.x >> 5);
  if (row >= rows) return;
  const std::int32_t c = __ldg(src + row);
  const bool pad = c < 0;
  const std::size_t t = pad ? 0 : std::size_t(c) / topk;
  std::uint8_t* o = out + row * cols;
  if (cols % 16 == 0) {
    const uint4* in = reinterpret_cast<const uint4*>(codes + t * cols);
    uint4* ov = reinterpret_cast<uint4*>(o);
    const std::uint32_t n = cols / 16;
    constexpr int kU = 4;  // 4 loads in flight per lane
    for (std::uint32_t i0 = lane; i0 < n; i0 += 32 * kU) {
      uint4 v[kU];
#pragma unroll
      for (int u = 0; u < kU; ++u) {
        const std::uint32_t i = i0 + 32 * u;
        v[u] = (pad || i >= n) ? make_uint4(0, 0, 0, 0) : __ldg(in + i);
      }
#pragma unroll
      for (int u = 0; u < kU; ++u)
        if (i0 + 32 * u < n) ov[i0 + 32 * u] = v[u];
    }
  } else {
    const std::uint8_t* in = codes + t * cols;
    for (std::uint32_t i = lane; i < cols; i += 32) o[i] = pad ? std::uint8_t(0) : in[i];
  }
  for (std::uint32_t i = lane; i < sc; i += 32) out_si[row * sc + i] = pad ? 0.0f : __ldg(si + t * sc + i);
  if (out_prob && lane == 0) out_prob[row] = pad ? 0.0f : __ldg(probs + c);
}

// Vector path (cols % 8 == 0): one warp per (token, 256-column slice), lane l the 8 columns 8l..8l+7 of it.
template <bool kMerge>
__global__ void __launch_bounds__(kThreads) unpermute_kernel(const std::uint16_t* __restrict__ in, std::uint32_t cols,
                                                             const std::int32_t* __restrict__ copy_row,
                                                             std::size_t tokens, std::uint32_t topk,
                                                             const float* __restrict__ probs,
                                                             std::uint16_t* __restrict__ out) {
  pdl_start();
  const std::uint32_t lane = threadIdx.x & 31, n = cols / 8, slices = (n + 31) / 32;
  const std::size_t item = std::size_t(blockIdx.x) * kWarps + (threadIdx.x >> 5);
  const std::size_t t = item / slices;
  if (t >= tokens) return;  // the whole warp
  const std::uint32_t i = std::uint32_t(item % slices) * 32 + lane;
  // Lane j < topk holds copy j's row and prob; shuffled to every lane as the slots are walked.
  const std::int32_t my_row = lane < topk ? __ldg(copy_row + t * topk + lane) : 0;
  const float my_p = kMerge && lane < topk ? __ldg(probs + t * topk + lane) : 0.0f;
  float acc[8] = {};
  for (std::uint32_t j0 = 0; j0 < topk; j0 += 8) {
    uint4 v[8];
#pragma unroll
    for (int u = 0; u < 8; ++u) {  // up to 8 copies' loads in flight before the first add
      const std::uint32_t j = j0 + u;
      const std::int32_t r = __shfl_sync(kFull, my_row, j & 31);
      v[u] = (j < topk && i < n) ? __ldg(reinterpret_cast<const uint4*>(in + std::size_t(r) * cols) + i)
                                 : make_uint4(0, 0, 0, 0);
    }
#pragma unroll
    for (int u = 0; u < 8; ++u) {
      const std::uint32_t j = j0 + u;
      const float p = __shfl_sync(kFull, my_p, j & 31);
      if (j >= topk) break;  // uniform over the warp
      float x[8];
      unpack_bf16x8(v[u], x);
#pragma unroll
      for (int e = 0; e < 8; ++e) acc[e] = moe32::add(acc[e], kMerge ? moe32::mul(p, x[e]) : x[e]);
    }
  }
  if (i >= n) return;
  std::uint32_t w[4];
#pragma unroll
  for (int e = 0; e < 4; ++e)
    w[e] = std::uint32_t(moe32::f32_to_bf16(acc[2 * e])) | (std::uint32_t(moe32::f32_to_bf16(acc[2 * e + 1])) << 16);
  reinterpret_cast<uint4*>(out + t * cols)[i] = make_uint4(w[0], w[1], w[2], w[3]);
}

// Elementwise path (cols % 8 != 0): one warp per token, lane l the columns l, l + 32, ...
template <bool kMerge>
__global__ void __launch_bounds__(kThreads) unpermute_scalar_kernel(const std::uint16_t* __restrict__ in,
                                                                    std::uint32_t cols,
                                                                    const std::int32_t* __restrict__ copy_row,
                                                                    std::size_t tokens, std::uint32_t topk,
                                                                    const float* __restrict__ probs,
                                                                    std::uint16_t* __restrict__ out) {
  pdl_start();
  const std::uint32_t lane = threadIdx.x & 31;
  const std::size_t t = std::size_t(blockIdx.x) * kWarps + (threadIdx.x >> 5);
  if (t >= tokens) return;
  const std::int32_t my_row = lane < topk ? __ldg(copy_row + t * topk + lane) : 0;
  const float my_p = kMerge && lane < topk ? __ldg(probs + t * topk + lane) : 0.0f;
  for (std::uint32_t c0 = 0; c0 < cols; c0 += 32) {
    const std::uint32_t c = c0 + lane;
    float acc = 0.0f;
    for (std::uint32_t j = 0; j < topk; ++j) {
      const std::int32_t r = __shfl_sync(kFull, my_row, j);
      const float p = __shfl_sync(kFull, my_p, j);
      if (c < cols) {
        const float x = moe32::bf16_to_f32(in[std::size_t(r) * cols + c]);
        acc = moe32::add(acc, kMerge ? moe32::mul(p, x) : x);
      }
    }
    if (c < cols) out[t * cols + c] = moe32::f32_to_bf16(acc);
  }
}

unsigned blocks_for(std::size_t warps) { return unsigned((warps + kWarps - 1) / kWarps); }

}  // namespace

cudaError_t swiglu_quant_fwd(const std::uint16_t* d_h, const float* d_prob, std::size_t rows, std::size_t ffn,
                             std::uint8_t* d_codes, float* d_si, cudaStream_t s, bool pdl) {
  if (ffn % 128 != 0 || ffn == 0 || ffn > (1u << 30)) return cudaErrorInvalidValue;
  if (rows == 0) return cudaSuccess;
  if (!d_h || !d_prob || !d_codes || !d_si) return cudaErrorInvalidValue;
  const std::size_t warps = rows * ((ffn + 255) / 256);
  if (warps / kWarps >= (1ull << 31)) return cudaErrorInvalidValue;
  return launch_kernel(swiglu_fwd_kernel, dim3(blocks_for(warps)), dim3(kThreads), 0, s, pdl, d_h, d_prob, rows,
                       std::uint32_t(ffn), d_codes, d_si);
}

cudaError_t swiglu_quant_bwd(const std::uint16_t* d_dact, const std::uint16_t* d_h, const float* d_prob,
                             std::size_t rows, std::size_t ffn, std::uint8_t* d_dh_codes, float* d_dh_si,
                             float* d_dprob, cudaStream_t s, bool pdl) {
  if (ffn % 128 != 0 || ffn == 0 || ffn > (1u << 30)) return cudaErrorInvalidValue;
  if (rows == 0) return cudaSuccess;
  if (!d_dact || !d_h || !d_prob || !d_dh_codes || !d_dh_si || !d_dprob) return cudaErrorInvalidValue;
  if (rows / kWarps >= (1ull << 31)) return cudaErrorInvalidValue;
  return launch_kernel(swiglu_bwd_kernel, dim3(blocks_for(rows)), dim3(kThreads), 0, s, pdl, d_dact, d_h, d_prob,
                       rows, std::uint32_t(ffn), d_dh_codes, d_dh_si, d_dprob);
}

cudaError_t permute_pad_fp8(const std::uint8_t* d_codes, const float* d_si, const float* d_probs, std::size_t tokens,
                            std::size_t cols, std::size_t topk, const std::int32_t* d_row_src, std::size_t rows,
                            std::uint8_t* d_out_codes, float* d_out_si, float* d_out_prob, cudaStream_t s, bool pdl) {
  if (topk == 0 || cols == 0 || cols > (1u << 30) || topk > (1u << 30)) return cudaErrorInvalidValue;
  if (rows == 0) return cudaSuccess;
  if ((tokens > 0 && (!d_codes || !d_si)) || !d_row_src || !d_out_codes || !d_out_si) return cudaErrorInvalidValue;
  if (d_probs && !d_out_prob) return cudaErrorInvalidValue;
  if (rows / kWarps >= (1ull << 31)) return cudaErrorInvalidValue;
  return launch_kernel(permute_kernel, dim3(blocks_for(rows)), dim3(kThreads), 0, s, pdl, d_codes, d_si, d_probs,
                       std::uint32_t(cols), std::uint32_t(topk), d_row_src, rows, d_out_codes, d_out_si,
                       d_probs ? d_out_prob : nullptr);
}

cudaError_t unpermute_combine_bf16(const std::uint16_t* d_in, std::size_t in_rows, std::size_t cols,
                                   const std::int32_t* d_copy_row, std::size_t tokens, std::size_t topk,
                                   const float* d_merge_probs, std::uint16_t* d_out, cudaStream_t s, bool pdl) {
  if (topk == 0 || topk > 32 || cols == 0 || cols > (1u << 30)) return cudaErrorInvalidValue;
  if (tokens == 0) return cudaSuccess;
  if (!d_in || in_rows == 0 || !d_copy_row || !d_out) return cudaErrorInvalidValue;
  if (tokens / kWarps >= (1ull << 31)) return cudaErrorInvalidValue;
  if (cols % 8 == 0) {
    const std::size_t warps = tokens * ((cols / 8 + 31) / 32);
    if (warps / kWarps >= (1ull << 31)) return cudaErrorInvalidValue;
    const dim3 grid(blocks_for(warps));
    if (d_merge_probs)
      return launch_kernel(unpermute_kernel<true>, grid, dim3(kThreads), 0, s, pdl, d_in, std::uint32_t(cols),
                           d_copy_row, tokens, std::uint32_t(topk), d_merge_probs, d_out);
    return launch_kernel(unpermute_kernel<false>, grid, dim3(kThreads), 0, s, pdl, d_in, std::uint32_t(cols),
                         d_copy_row, tokens, std::uint32_t(topk), d_merge_probs, d_out);
  }
  const dim3 grid(blocks_for(tokens));
  if (d_merge_probs)
    return launch_kernel(unpermute_scalar_kernel<true>, grid, dim3(kThreads), 0, s, pdl, d_in, std::uint32_t(cols),
                         d_copy_row, tokens, std::uint32_t(topk), d_merge_probs, d_out);
  return launch_kernel(unpermute_scalar_kernel<false>, grid, dim3(kThreads), 0, s, pdl, d_in, std::uint32_t(cols),
                       d_copy_row, tokens, std::uint32_t(topk), d_merge_probs, d_out);
}

}  // namespace fp8flow::cuda
