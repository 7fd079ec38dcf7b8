// Quantize v1 (1x128 + 128x1, or 128x128 + transposed copy; te_fp32, te_pow2, paper_swiglu), v2, the naive
// transpose and dequantize (see quantize_kernels.hpp).
// v1: one 256-thread block per 128x128 tile, staged in shared memory in the input's own type; the grid runs
// over the column blocks fastest (launch()):
//   rowwise: eight lanes per row, 16 elements per lane, a 3-step shuffle reduction (bf16: the max on packed
//            pairs with max.bf16x2);
//   columnwise: bf16 -- a thread per column pair and 32 rows (one 32-bit word per row, packed maxima);
//            fp32 -- two threads per column (64 rows each); lanes on consecutive words (no bank conflicts);
//   128x128: one max over the tile, both passes cast with its scale.
// The element cast is the hardware's cvt.rn.satfinite.e4m3x2.f32, which the formats_encode_exhaustive GPU
// test checks equal to the shared encoder (encode_bits) on all 2^32 fp32 inputs.
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include <cfloat>
#include <cstdint>
#include <optional>

#include "cuda/column_store.cuh"
#include "cuda/launch_pdl.cuh"
#include "cuda/quantize_kernels.hpp"
#include "cuda/swiglu_scale.cuh"
#include "formats/convert.hpp"
#include "quant/pow2_scale.hpp"

namespace fp8flow::cuda {
namespace {

constexpr int kThreads = 256;
constexpr float kFmax = float(max_finite(e4m3));  // 448
constexpr std::uint32_t kBf16MaxBits = 0x7F7F0000u; // largest finite bf16 as fp32 (TE clamps to the input's)

// A block's scale and what is stored for it.
struct ScalePair {
  float factor;  // elements are multiplied by it
  float si;      // stored scale_inv
};

// TE Float8BlockQuantizer scale (PAPER.md 3.1) and its inverse. te_fp32: an fp32 division; te_pow2: from the
// bits of amax without a division (src/quant/pow2_scale.hpp, equal to the division masked to its power of
// two on every fp32 amax; on the H100 +0.4 points of copy bandwidth at (28672,1280), docs/gpu.md sixth slice).
__device__ __forceinline__ ScalePair te_scale(float amax, float eps, bool pow2, bool bf16_input) {
  if (pow2) {
    const Pow2ScaleBits b = te_pow2_scale_e4m3(amax, eps);
    return {__uint_as_float(b.scale), __uint_as_float(b.scale_inv)};
  }
  if (amax < eps) amax = eps;
  if (amax == 0.0f || isinf(amax) || isnan(amax)) return {1.0f, 1.0f};
  float scale = __fdiv_rn(kFmax, amax);
  if (isinf(scale)) scale = bf16_input ? __uint_as_float(kBf16MaxBits) : FLT_MAX;
  return {scale, __fdiv_rn(1.0f, scale)};
}

constexpr std::uint32_t kRuleTeFp32 = 0, kRuleTePow2 = 1, kRuleSwiglu = 2;
// The scale of a block from its amax (the fmaxf fold of |x| from 0, NaN ignored), any of the three rules
// (QuantRule's values); te_* floor amax at eps.
__device__ __forceinline__ ScalePair rule_scale(float amax, std::uint32_t rule, float eps, bool bf16_input) {
  if (rule == kRuleSwiglu) {
    const float2 fs = paper_swiglu_scale(amax);  // swiglu_scale.cuh
    return {fs.x, fs.y};
  }
  return te_scale(amax, eps, rule == kRuleTePow2, bf16_input);
}

__device__ __forceinline__ std::uint32_t cvt2(float a, float b) {  // a -> low byte
  return std::uint32_t(__nv_cvt_float2_to_fp8x2(make_float2(a, b), __NV_SATFINITE, __NV_E4M3));
}
__device__ __forceinline__ std::uint32_t cvt4(float a, float b, float c, float d) {
  return cvt2(a, b) | (cvt2(c, d) << 16);
}

// Elementwise max of two bf16 pairs; a NaN half yields the other operand's half (max.bf16x2 without .NaN),
// subnormals kept. Fed |x| halves from a running max that starts at +0, it is fmaxf(a, |x|) per half.
__device__ __forceinline__ std::uint32_t bf16x2_max(std::uint32_t a, std::uint32_t b) {
  std::uint32_t r;
  asm("max.bf16x2 %0, %1, %2;" : "=r"(r) : "r"(a), "r"(b));
  return r;
}
constexpr std::uint32_t kAbsBf16x2 = 0x7FFF7FFFu;
__device__ __forceinline__ float bf16_lo(std::uint32_t w) { return __uint_as_float(w << 16); }
__device__ __forceinline__ float bf16_hi(std::uint32_t w) { return __uint_as_float(w & 0xFFFF0000u); }

// ---- Tile loaders: fill smem[128][128] (type Elem) with the tile, zeros outside the tensor ------------
struct LoadF32 {
  using Elem = float;
  static constexpr bool kFullPath = false;
  const float* x;
  static __device__ float value(float v) { return v; }
  __device__ void load(Elem* sm, RowTile rt, std::size_t col0, std::size_t K, int t) const {
    const bool vec = K % 4 == 0;
#pragma unroll 4
    for (int i = t; i < kSatTile * 32; i += kThreads) {  // 32 float4 per row
      const int r = i >> 5, j = i & 31;
      const std::size_t c = col0 + j * 4;
      float4 v = make_float4(0, 0, 0, 0);
      if (std::uint32_t(r) < rt.row_count) {
        const float* src = x + (rt.row_begin + r) * K + c;
        if (vec && c + 4 <= K) v = __ldg(reinterpret_cast<const float4*>(src));
        else {
          if (c < K) v.x = src[0];
          if (c + 1 < K) v.y = src[1];
          if (c + 2 < K) v.z = src[2];
          if (c + 3 < K) v.w = src[3];
        }
      }
      *reinterpret_cast<float4*>(sm + r * kSatTile + j * 4) = v;
    }
  }
};

struct LoadBf16 {
  using Elem = std::uint16_t;
  static constexpr bool kFullPath = true;
  const std::uint16_t* x;
  // A full tile (128 rows, 128 columns inside the tensor, K % 8 == 0): thread t copies the 16 bytes at column
  // 8 (t % 16) of rows t / 16 + 16 k, k < 8, from one base pointer (no bounds checks, no per-copy index math).
  __device__ void load_full(Elem* sm, RowTile rt, std::size_t col0, std::size_t K, int t) const {
    const int r = t >> 4, j = t & 15;
    const std::uint16_t* src = x + (std::size_t(rt.row_begin) + r) * K + col0 + j * 8;
    const unsigned dst = unsigned(__cvta_generic_to_shared(sm + r * kSatTile + j * 8));
    const std::size_t step = 16 * K;
#pragma unroll
    for (int k = 0; k < 8; ++k)
      asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(dst + unsigned(k * 16 * kSatTile * 2)),
                   "l"(src + k * step)
                   : "memory");
    asm volatile("cp.async.wait_all;" ::: "memory");
  }
  // Whole 16-byte pieces go global -> shared by cp.async (no register staging: on the H100 +3.5 to +6.6
  // points of copy bandwidth at the two smallest shapes, +1 at the large ones, one group; docs/gpu.md);
  // pieces cut by the tensor's edge, or rows past the tile, are assembled in registers. All in flight at once.
  __device__ void load(Elem* sm, RowTile rt, std::size_t col0, std::size_t K, int t) const {
    const bool vec = K % 8 == 0;
#pragma unroll
    for (int i = t; i < kSatTile * 16; i += kThreads) {  // 16 x 8 bf16 per row
      const int r = i >> 4, j = i & 15;
      const std::size_t c = col0 + j * 8;
      uint4 v = make_uint4(0, 0, 0, 0);
      if (std::uint32_t(r) < rt.row_count) {
        const std::uint16_t* src = x + (rt.row_begin + r) * K + c;
        if (vec && c + 8 <= K) {
          const unsigned dst = unsigned(__cvta_generic_to_shared(sm + r * kSatTile + j * 8));
          asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(dst), "l"(src) : "memory");
          continue;
        }
        std::uint16_t h[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        for (int b = 0; b < 8; ++b)
          if (c + b < K) h[b] = src[b];
        v = make_uint4(h[0] | std::uint32_t(h[1]) << 16, h[2] | std::uint32_t(h[3]) << 16,
                       h[4] | std::uint32_t(h[5]) << 16, h[6] | std::uint32_t(h[7]) << 16);
      }
      *reinterpret_cast<uint4*>(sm + r * kSatTile + j * 8) = v;
    }
    asm volatile("cp.async.wait_all;" ::: "memory");  // the caller's barrier then publishes the tile
  }
};

// The naive transpose's input: RN32(value(q) * si), the fp32 dequantization.
struct LoadDequant {
  using Elem = float;
  static constexpr bool kFullPath = false;
  const std::uint8_t* codes;
  const float* si;
  static __device__ float value(float v) { return v; }
  __device__ void load(Elem* sm, RowTile rt, std::size_t col0, std::size_t K, int t) const {
    const std::size_t scols = (K + kSatTile - 1) / kSatTile, cb = col0 / kSatTile;
#pragma unroll 2
    for (int i = t; i < kSatTile * 32; i += kThreads) {  // 4 codes per item
      const int r = i >> 5, j = i & 31;
      const std::size_t c = col0 + j * 4;
      float4 v = make_float4(0, 0, 0, 0);
      if (std::uint32_t(r) < rt.row_count) {
        const std::size_t row = rt.row_begin + r;
        const float s = si[row * scols + cb];
        const std::uint8_t* src = codes + row * K + c;
        float f[4] = {0, 0, 0, 0};
        for (int b = 0; b < 4; ++b)
          if (c + b < K) f[b] = __fmul_rn(decode_as<e4m3, float>(src[b]), s);
        v = make_float4(f[0], f[1], f[2], f[3]);
      }
      *reinterpret_cast<float4*>(sm + r * kSatTile + j * 4) = v;
    }
  }
};

// Eight consecutive staged elements as floats (bf16: one 16-byte shared load; fp32: two).
template <class Loader>
__device__ __forceinline__ void load8(const typename Loader::Elem* p, float* v) {
  if constexpr (sizeof(typename Loader::Elem) == 2) {
    const uint4 w = *reinterpret_cast<const uint4*>(p);
    const std::uint32_t u[4] = {w.x, w.y, w.z, w.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      v[2 * i] = __uint_as_float(u[i] << 16);
      v[2 * i + 1] = __uint_as_float(u[i] & 0xFFFF0000u);
    }
  } else {
    const float4 a = *reinterpret_cast<const float4*>(p), b = *reinterpret_cast<const float4*>(p + 4);
    v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w, v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
  }
}

// Lane j's 16 elements of staged row r (columns 8j..8j+7 and 64+8j..64+8j+7) as floats, and the fmaxf fold of
// their |x| from 0 (NaN ignored; bf16: the max on packed pairs). Callers that use only one of the two leave
// the other to dead-code elimination.
template <class Loader>
__device__ __forceinline__ float row16(const typename Loader::Elem* sm, int r, int j, float* xv) {
  float a = 0.0f;
  if constexpr (sizeof(typename Loader::Elem) == 2) {
    const uint4 w0 = *reinterpret_cast<const uint4*>(sm + r * kSatTile + j * 8);
    const uint4 w1 = *reinterpret_cast<const uint4*>(sm + r * kSatTile + 64 + j * 8);
    const std::uint32_t u[8] = {w0.x, w0.y, w0.z, w0.w, w1.x, w1.y, w1.z, w1.w};
    std::uint32_t m = 0u;
#pragma unroll
    for (int e = 0; e < 8; ++e) {
      m = bf16x2_max(m, u[e] & kAbsBf16x2);
      xv[2 * e] = bf16_lo(u[e]);
      xv[2 * e + 1] = bf16_hi(u[e]);
    }
    a = fmaxf(bf16_lo(m), bf16_hi(m));
  } else {
    load8<Loader>(sm + r * kSatTile + j * 8, xv);
    load8<Loader>(sm + r * kSatTile + 64 + j * 8, xv + 8);
#pragma unroll
    for (int e = 0; e < 16; ++e) a = fmaxf(a, fabsf(xv[e]));  // NaN-dropping max: any order, same bits
  }
  return a;
}

// Resident blocks per SM the register budget is set for: the shared tile (32 KB bf16, 64 KB fp32) is the
// only shared buffer (the column codes reuse it), so a bf16 tile allows 6 blocks; the per-block work is a
// chain of short dependent steps, hidden only by other blocks.
template <class Loader>
constexpr int kQuantBlocksPerSm = sizeof(typename Loader::Elem) == 2 ? 6 : 3;

// One tile. kFull: 128 rows, 128 columns inside the tensor, K % 8 == 0 (every tile but those at the
// tensor's edges): no bounds checks, output pointers advanced by constant strides (the bounds checks and
// 64-bit index products were a third of the kernel's instructions; docs/gpu.md, eighth slice).
template <class Loader, bool kFull, bool kBlock>
__device__ __forceinline__ void quant_tile(const Loader& ld, std::size_t M, std::size_t K, RowTile rt, unsigned tile,
                                           std::size_t cb, std::uint32_t rule, float eps, bool bf16_input,
                                           std::uint8_t* __restrict__ row_codes, float* __restrict__ row_si,
                                           std::uint8_t* __restrict__ col_codes, float* __restrict__ col_si,
                                           unsigned char* smem_raw, float (*s_cmax)[kSatTile]) {
  using Elem = typename Loader::Elem;
  constexpr bool kBf16 = sizeof(Elem) == 2;
  Elem* sm = reinterpret_cast<Elem*>(smem_raw);
  // Columnwise codes, [column][row], 16-byte chunk k of a column at k ^ ((column >> kSwzShift) % 8), which is
  // conflict-free for the column pass's stores and the row-line reads below; they reuse the tile's shared
  // memory once every thread has read its elements.
  auto s_out = reinterpret_cast<std::uint8_t(*)[kSatTile]>(smem_raw);
  constexpr int kSwzShift = kBf16 ? 1 : 0;  // bf16: a thread per column pair, so pairs get distinct chunks
  const int t = threadIdx.x, lane = t & 31, warp = t >> 5;
  const std::size_t col0 = cb * kSatTile, scols = (K + kSatTile - 1) / kSatTile;
  if constexpr (kFull && Loader::kFullPath) ld.load_full(sm, rt, col0, K, t);
  else ld.load(sm, rt, col0, K, t);
  __syncthreads();

  // 128x128: one scale for the tile, from the max over its elements (zeros past the tensor's edges change
  // nothing): each thread's 64 elements of the row pass, the warp, then the 8 warps' maxima. Its scale_inv
  // goes to row_si[tile][column block]; both code copies use it (the same codes).
  float block_factor = 0.0f;
  if constexpr (kBlock) {
    const int q = lane >> 3, j = lane & 7;
    float a = 0.0f;
#pragma unroll
    for (int it = 0; it < 4; ++it) {
      float xv[16];
      a = fmaxf(a, row16<Loader>(sm, warp * 16 + it * 4 + q, j, xv));
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) a = fmaxf(a, __shfl_xor_sync(0xFFFFFFFFu, a, o));
    if (lane == 0) s_cmax[0][warp] = a;
    __syncthreads();
    a = s_cmax[0][0];
#pragma unroll
    for (int w = 1; w < kThreads / 32; ++w) a = fmaxf(a, s_cmax[0][w]);
    const ScalePair bs = rule_scale(a, rule, eps, bf16_input);
    block_factor = bs.factor;
    if (t == 0) row_si[std::size_t(tile) * scols + cb] = bs.si;
  }

  if (row_codes) {  // 1x128 rowwise: eight lanes per row, four rows per warp step, 16 elements per lane
    // Lane j of a row holds columns 8j..8j+7 and 64+8j..64+8j+7: each 8-lane phase of a shared load reads
    // 128 contiguous bytes (bf16), and the per-row work (3 shuffles, the scale) is shared by 16 elements.
    const int q = lane >> 3, j = lane & 7;
    // Full tiles: this lane's outputs for its first row; each step is 4 rows further.
    const std::size_t row_first = std::size_t(rt.row_begin) + std::size_t(warp * 16 + q);
    std::uint8_t* const dst_first = row_codes + row_first * K + col0 + j * 8;
    float* const si_first = row_si + row_first * scols + cb;
#pragma unroll
    for (int it = 0; it < 4; ++it) {
      const int r = warp * 16 + it * 4 + q;  // rows past row_count hold zeros (the loader's fill)
      float xv[16];
      float a = row16<Loader>(sm, r, j, xv);  // 128x128: unused (the tile's scale)
      ScalePair ts{block_factor, 0.0f};
      if constexpr (!kBlock) {
#pragma unroll
        for (int o = 4; o > 0; o >>= 1) a = fmaxf(a, __shfl_xor_sync(0xFFFFFFFFu, a, o));
        ts = rule_scale(a, rule, eps, bf16_input);
      }
      const float scale = ts.factor;
      std::uint8_t* dst;
      if constexpr (kFull) {
        dst = dst_first + std::size_t(it * 4) * K;
        if (!kBlock && j == 0) si_first[std::size_t(it * 4) * scols] = ts.si;
      } else {
        if (std::uint32_t(r) >= rt.row_count) continue;
        const std::size_t row = rt.row_begin + r;
        if (!kBlock && j == 0) row_si[row * scols + cb] = ts.si;
        dst = row_codes + row * K + col0 + j * 8;
      }
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        const float* v = xv + 8 * half;
        const std::uint32_t lo = cvt4(__fmul_rn(v[0], scale), __fmul_rn(v[1], scale), __fmul_rn(v[2], scale),
                                      __fmul_rn(v[3], scale));
        const std::uint32_t hi = cvt4(__fmul_rn(v[4], scale), __fmul_rn(v[5], scale), __fmul_rn(v[6], scale),
                                      __fmul_rn(v[7], scale));
        const std::size_t c = col0 + std::size_t(half * 64 + j * 8);
        std::uint8_t* d = dst + half * 64;
        if (kFull || (K % 8 == 0 && c + 8 <= K)) {
          *reinterpret_cast<uint2*>(d) = make_uint2(lo, hi);
        } else {
          for (int b = 0; b < 8; ++b)
            if (c + b < K) d[b] = std::uint8_t((b < 4 ? lo : hi) >> (8 * (b & 3)));
        }
      }
    }
  }

  if (col_codes) {  // 128x1 columnwise, stored transposed
    if constexpr (kBf16) {
      // Thread t: the column pair pr = t % 64 (one 32-bit word of each row), rows 32q..32q+31, q = t / 64.
      // A warp reads 32 consecutive words of a row (no bank conflicts); the maxima run on packed pairs.
      const int pr = t & 63, q = t >> 6, rbeg = q * 32;
      const std::uint32_t* sw = reinterpret_cast<const std::uint32_t*>(smem_raw) + pr;
      float sc[2] = {block_factor, block_factor};  // 128x128: the tile's scale (the row codes, transposed)
      if constexpr (!kBlock) {
        std::uint32_t m = 0u;
#pragma unroll 8
        for (int r = rbeg; r < rbeg + 32; ++r) m = bf16x2_max(m, sw[r * (kSatTile / 2)] & kAbsBf16x2);
        s_cmax[q][2 * pr] = bf16_lo(m);
        s_cmax[q][2 * pr + 1] = bf16_hi(m);
        __syncthreads();
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int c = 2 * pr + e;
          const ScalePair ts = rule_scale(
              fmaxf(fmaxf(s_cmax[0][c], s_cmax[1][c]), fmaxf(s_cmax[2][c], s_cmax[3][c])), rule, eps, bf16_input);
          sc[e] = ts.factor;
          if (q == 0 && (kFull || col0 + c < K)) col_si[std::size_t(tile) * K + col0 + c] = ts.si;
        }
      }
      std::uint32_t w[2][8];  // [column 2pr + e][rows rbeg + 4u .. +3], until the tile may be overwritten
#pragma unroll
      for (int u = 0; u < 8; ++u) {
        const int r = rbeg + 4 * u;
        const std::uint32_t x0 = sw[(r + 0) * (kSatTile / 2)], x1 = sw[(r + 1) * (kSatTile / 2)],
                            x2 = sw[(r + 2) * (kSatTile / 2)], x3 = sw[(r + 3) * (kSatTile / 2)];
        w[0][u] = cvt4(__fmul_rn(bf16_lo(x0), sc[0]), __fmul_rn(bf16_lo(x1), sc[0]), __fmul_rn(bf16_lo(x2), sc[0]),
                       __fmul_rn(bf16_lo(x3), sc[0]));
        w[1][u] = cvt4(__fmul_rn(bf16_hi(x0), sc[1]), __fmul_rn(bf16_hi(x1), sc[1]), __fmul_rn(bf16_hi(x2), sc[1]),
                       __fmul_rn(bf16_hi(x3), sc[1]));
      }
      __syncthreads();  // every element read: the tile's memory becomes s_out
      // The eight lanes of a store phase (consecutive pr) hit eight different chunks.
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const int c = 2 * pr + e;
#pragma unroll
        for (int k = 0; k < 2; ++k)
          *reinterpret_cast<uint4*>(&s_out[c][((2 * q + k) ^ (pr & 7)) * 16]) =
              make_uint4(w[e][4 * k], w[e][4 * k + 1], w[e][4 * k + 2], w[e][4 * k + 3]);
      }
    } else {
      // Two threads per column (64 rows each), lanes on consecutive columns.
      const int c = t & (kSatTile - 1), h = t >> 7;
      const int rbeg = h * 64;
      ScalePair ts{block_factor, 0.0f};  // 128x128: the tile's scale
      if constexpr (!kBlock) {
        float a = 0.0f;
        for (int r = rbeg; r < rbeg + 64; ++r) a = fmaxf(a, fabsf(Loader::value(sm[r * kSatTile + c])));
        s_cmax[h][c] = a;
        __syncthreads();
        ts = rule_scale(fmaxf(s_cmax[0][c], s_cmax[1][c]), rule, eps, bf16_input);
      }
      const float scale = ts.factor;
      std::uint32_t w[4][4];  // this thread's 64 rows of column c, encoded, until the tile may be overwritten
#pragma unroll
      for (int ch = 0; ch < 4; ++ch) {
        const int r0 = rbeg + ch * 16;
#pragma unroll
        for (int u = 0; u < 4; ++u) {
          const int r = r0 + u * 4;
          w[ch][u] = cvt4(__fmul_rn(Loader::value(sm[(r + 0) * kSatTile + c]), scale),
                      __fmul_rn(Loader::value(sm[(r + 1) * kSatTile + c]), scale),
                      __fmul_rn(Loader::value(sm[(r + 2) * kSatTile + c]), scale),
                      __fmul_rn(Loader::value(sm[(r + 3) * kSatTile + c]), scale));
        }
      }
      if (!kBlock && h == 0 && col0 + c < K) col_si[std::size_t(tile) * K + col0 + c] = ts.si;
      __syncthreads();  // every element read: the tile's memory becomes s_out
#pragma unroll
      for (int ch = 0; ch < 4; ++ch) {
        const int r0 = rbeg + ch * 16;
        *reinterpret_cast<uint4*>(&s_out[c][((r0 >> 4) ^ (c & 7)) * 16]) =
            make_uint4(w[ch][0], w[ch][1], w[ch][2], w[ch][3]);
      }
    }
    __syncthreads();
    // Eight threads per output row: each 128-byte row segment goes out as one line.
    const bool vec = M % 16 == 0 && rt.row_begin % 16 == 0;
    std::uint8_t* const line_first = col_codes + (col0 + (t >> 3)) * M + rt.row_begin + (t & 7) * 16;
#pragma unroll
    for (int it = 0; it < 4; ++it) {
      const int i = t + kThreads * it, cc = i >> 3, j = i & 7;
      const std::size_t col = col0 + cc;
      const std::uint32_t r0 = std::uint32_t(j * 16);
      const uint4 v = *reinterpret_cast<const uint4*>(&s_out[cc][(j ^ ((cc >> kSwzShift) & 7)) * 16]);
      if constexpr (kFull) {
        store_codes16(line_first + std::size_t(it * (kThreads / 8)) * M, v, 16u, vec);
      } else {
        if (col >= K || r0 >= rt.row_count) continue;
        store_codes16(col_codes + col * M + rt.row_begin + r0, v, rt.row_count - r0, vec);
      }
    }
  }
}

template <class Loader, bool kBlock>
__global__ void __launch_bounds__(kThreads, kQuantBlocksPerSm<Loader>) quant_e4m3_v1_kernel(
    Loader ld, std::size_t M, std::size_t K, const RowTile* __restrict__ tiles, std::uint32_t rule, float eps,
    bool bf16_input, std::uint8_t* __restrict__ row_codes, float* __restrict__ row_si, std::uint8_t* __restrict__ col_codes,
    float* __restrict__ col_si, bool col_fast, bool windows) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  __shared__ float s_cmax[4][kSatTile];
  pdl_start();
  const unsigned tile = col_fast ? blockIdx.y : blockIdx.x;
  // windows: tile i is rows [128 i, min(128 i + 128, M)), known without the tile list's load, whose latency
  // delayed every block's input copies (one group at (28672,1280) on the H100: +0.7 points; eighth slice).
  const std::size_t first = std::size_t(tile) * kSatTile;
  const RowTile rt = windows ? RowTile{std::uint32_t(first), std::uint32_t(min(M - first, std::size_t(kSatTile)))}
                             : tiles[tile];
  const std::size_t cb = col_fast ? blockIdx.x : blockIdx.y;
  if (rt.row_count == kSatTile && (cb + 1) * kSatTile <= K && K % 8 == 0)
    quant_tile<Loader, true, kBlock>(ld, M, K, rt, tile, cb, rule, eps, bf16_input, row_codes, row_si, col_codes,
                                     col_si, smem_raw, s_cmax);
  else
    quant_tile<Loader, false, kBlock>(ld, M, K, rt, tile, cb, rule, eps, bf16_input, row_codes, row_si, col_codes,
                                      col_si, smem_raw, s_cmax);
}

// col_fast: blockIdx.x runs over the column blocks, so the blocks resident at one time cover a few row tiles
// whole: each input row is read as one stretch and the row codes go out the same way. For quantize from bf16
// on the H100 that moved 80-81% of copy bandwidth to 88% at the large shapes (docs/gpu.md, fourth slice); the
// naive transpose is ~0.5 points faster with row tiles fastest and keeps that order.
// kBlock: 128x128 (rs = the tile scales, cs unused), else 1x128 + 128x1.
template <bool kBlock = false, class Loader>
cudaError_t launch(Loader ld, std::size_t rows, std::size_t cols, const RowTile* d_tiles, std::size_t n_tiles,
                   QuantV2Params p, bool bf16_input, std::uint8_t* rc, float* rs, std::uint8_t* cc, float* cs,
                   bool col_fast, cudaStream_t s, bool pdl, bool windows = false) {
  if (n_tiles == 0 || cols == 0) return cudaSuccess;
  constexpr int kSmem = kSatTile * kSatTile * int(sizeof(typename Loader::Elem));
  const auto kernel = quant_e4m3_v1_kernel<Loader, kBlock>;
  // Once per kernel and process (a static initialiser is thread-safe); kept out of the timed launches.
  static const cudaError_t attr = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmem);
  if (attr != cudaSuccess) return attr;
  const unsigned ncb = unsigned((cols + kSatTile - 1) / kSatTile);
  const dim3 grid = col_fast ? dim3(ncb, unsigned(n_tiles)) : dim3(unsigned(n_tiles), ncb);
  return launch_kernel(kernel, grid, dim3(kThreads), std::size_t(kSmem), s, pdl, ld, rows, cols, d_tiles,
                       std::uint32_t(p.rule), p.eps, bf16_input, rc, rs, cc, cs, col_fast, windows);
}

// ---- v2 (see quantize_kernels.hpp) --------------------------------------------------------------------
// Thread t: warp w = t / 32, half h = lane / 16, L = lane % 16. It holds tile rows w*16 + h*8 + i (i < 8)
// and columns L*8 + j (j < 8): a half-warp reads one row's 128 elements contiguously (bf16: one 16-byte
// load per row; fp32: two). bf16 values stay packed (two per word), fp32 as bits.
// |x| bits with NaN -> 0, two bf16 per word (per 16-bit half) or one fp32.
__device__ __forceinline__ std::uint32_t abs_bf16x2(std::uint32_t w) {
  const std::uint32_t a = w & 0x7FFF7FFFu;
  return a & ~__vcmpgtu2(a, 0x7F807F80u);
}
__device__ __forceinline__ std::uint32_t abs_f32(std::uint32_t w) {
  const std::uint32_t a = w & 0x7FFFFFFFu;
  return a > 0x7F800000u ? 0u : a;
}

template <bool kBf16>
struct TileRegs {
  static constexpr int kWords = kBf16 ? 4 : 8;  // words per row of 8 elements
  std::uint32_t x[8][kWords];
  __device__ __forceinline__ float v(int i, int j) const {
    if constexpr (kBf16) return __uint_as_float((j & 1) ? (x[i][j >> 1] & 0xFFFF0000u) : (x[i][j >> 1] << 16));
    else return __uint_as_float(x[i][j]);
  }
  // Code word of 4 elements of row i, columns j0..j0+3, times f.
  __device__ __forceinline__ std::uint32_t row_word(int i, int j0, float f) const {
    return cvt4(__fmul_rn(v(i, j0), f), __fmul_rn(v(i, j0 + 1), f), __fmul_rn(v(i, j0 + 2), f),
                __fmul_rn(v(i, j0 + 3), f));
  }
  // Code word of 4 elements of column j, rows i0..i0+3, times f.
  __device__ __forceinline__ std::uint32_t col_word(int j, int i0, float f) const {
    return cvt4(__fmul_rn(v(i0, j), f), __fmul_rn(v(i0 + 1, j), f), __fmul_rn(v(i0 + 2, j), f),
                __fmul_rn(v(i0 + 3, j), f));
  }
};

// 4x4 byte transpose: a..d hold rows 0..3 (bytes = columns 0..3); o[q] = column q (bytes = rows 0..3).
__device__ __forceinline__ void transpose4x4(std::uint32_t a, std::uint32_t b, std::uint32_t c, std::uint32_t d,
                                             std::uint32_t (&o)[4]) {
  const std::uint32_t t0 = __byte_perm(a, b, 0x5140), t1 = __byte_perm(c, d, 0x5140);
  const std::uint32_t t2 = __byte_perm(a, b, 0x7362), t3 = __byte_perm(c, d, 0x7362);
  o[0] = __byte_perm(t0, t1, 0x5410);
  o[1] = __byte_perm(t0, t1, 0x7632);
  o[2] = __byte_perm(t2, t3, 0x5410);
  o[3] = __byte_perm(t2, t3, 0x7632);
}

template <bool kBf16, bool kBlock>
__global__ void __launch_bounds__(kThreads, kBf16 ? 3 : 2) quant_e4m3_v2_kernel(
    const void* __restrict__ xin, std::size_t M, std::size_t K, const RowTile* __restrict__ tiles,
    std::uint32_t rule, float eps, std::uint8_t* __restrict__ a_codes, float* __restrict__ a_si,
    std::uint8_t* __restrict__ b_codes, float* __restrict__ b_si) {
  // Column codes [column][row bytes]; 8-byte unit u of column c stored at unit u ^ ((c / 8) % 16).
  __shared__ __align__(16) std::uint8_t s_out[kSatTile * kSatTile];
  __shared__ std::uint32_t s_cmax[8][kSatTile];  // per warp: |x| bits max of its 16 rows, per column
  __shared__ float s_cf[kSatTile];                // per column: element factor
  __shared__ std::uint32_t s_wmax[8];
  const int t = threadIdx.x, lane = t & 31, w = t >> 5, h = lane >> 4, L = lane & 15;
  pdl_start();
  const unsigned tile = blockIdx.y;  // column blocks fastest, as v1 (1-2 points faster on the H100)
  const RowTile rt = tiles[tile];
  const std::size_t cb = blockIdx.x, col0 = cb * kSatTile, scols = (K + kSatTile - 1) / kSatTile;
  const int rbase = w * 16 + h * 8;
  const std::size_t c = col0 + std::size_t(L) * 8;
  constexpr int kW = TileRegs<kBf16>::kWords;

  // 1. All eight rows' loads in flight before the first use.
  TileRegs<kBf16> x;
#pragma unroll
  for (int i = 0; i < 8; ++i) {
#pragma unroll
    for (int u = 0; u < kW; ++u) x.x[i][u] = 0u;
    if (std::uint32_t(rbase + i) >= rt.row_count || c >= K) continue;
    const std::size_t off = std::size_t(rt.row_begin + rbase + i) * K + c;
    if constexpr (kBf16) {
      const std::uint16_t* src = static_cast<const std::uint16_t*>(xin) + off;
      if (K % 8 == 0 && c + 8 <= K) {
        const uint4 q = __ldg(reinterpret_cast<const uint4*>(src));
        x.x[i][0] = q.x;
        x.x[i][1] = q.y;
        x.x[i][2] = q.z;
        x.x[i][3] = q.w;
      } else {
        for (int b = 0; b < 8; ++b)
          if (c + b < K) x.x[i][b >> 1] |= std::uint32_t(src[b]) << (16 * (b & 1));
      }
    } else {
      const float* src = static_cast<const float*>(xin) + off;
      if (K % 4 == 0 && c + 8 <= K) {
        const float4 q0 = __ldg(reinterpret_cast<const float4*>(src));
        const float4 q1 = __ldg(reinterpret_cast<const float4*>(src + 4));
        x.x[i][0] = __float_as_uint(q0.x);
        x.x[i][1] = __float_as_uint(q0.y);
        x.x[i][2] = __float_as_uint(q0.z);
        x.x[i][3] = __float_as_uint(q0.w);
        x.x[i][4] = __float_as_uint(q1.x);
        x.x[i][5] = __float_as_uint(q1.y);
        x.x[i][6] = __float_as_uint(q1.z);
        x.x[i][7] = __float_as_uint(q1.w);
      } else {
        for (int b = 0; b < 8; ++b)
          if (c + b < K) x.x[i][b] = __float_as_uint(src[b]);
      }
    }
  }

  // 2. Row maxima (|x| bits, fp32 layout), reduced over the half-warp that shares the row.
  std::uint32_t rmax[8];
  if constexpr (kBf16) {
    std::uint32_t pk[4];  // rows 2k, 2k+1 packed as 16-bit halves
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      std::uint32_t m2[2];
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const int i = 2 * k + e;
        const std::uint32_t m = __vmaxu2(__vmaxu2(abs_bf16x2(x.x[i][0]), abs_bf16x2(x.x[i][1])),
                                         __vmaxu2(abs_bf16x2(x.x[i][2]), abs_bf16x2(x.x[i][3])));
        m2[e] = max(m & 0xFFFFu, m >> 16);
      }
      pk[k] = m2[0] | (m2[1] << 16);
    }
#pragma unroll
    for (int o = 8; o > 0; o >>= 1)
#pragma unroll
      for (int k = 0; k < 4; ++k) pk[k] = __vmaxu2(pk[k], __shfl_xor_sync(0xFFFFFFFFu, pk[k], o));
#pragma unroll
    for (int i = 0; i < 8; ++i) rmax[i] = ((pk[i >> 1] >> (16 * (i & 1))) & 0xFFFFu) << 16;
  } else {
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      std::uint32_t m = 0;
#pragma unroll
      for (int j = 0; j < 8; ++j) m = max(m, abs_f32(x.x[i][j]));
      rmax[i] = m;
    }
#pragma unroll
    for (int o = 8; o > 0; o >>= 1)
#pragma unroll
      for (int i = 0; i < 8; ++i) rmax[i] = max(rmax[i], __shfl_xor_sync(0xFFFFFFFFu, rmax[i], o));
  }

  // Column code words of this thread: cw[j][0] rows 0..3, cw[j][1] rows 4..7 (bytes = rows).
  std::uint32_t cw[8][2];
  const bool want_a = a_codes != nullptr, want_b = b_codes != nullptr;

  if constexpr (kBlock) {
    // 3a. 128x128: one amax for the tile.
    std::uint32_t m = 0;
#pragma unroll
    for (int i = 0; i < 8; ++i) m = max(m, rmax[i]);
    m = max(m, __shfl_xor_sync(0xFFFFFFFFu, m, 16));
    if (lane == 0) s_wmax[w] = m;
    __syncthreads();
    std::uint32_t tm = s_wmax[0];
#pragma unroll
    for (int k = 1; k < 8; ++k) tm = max(tm, s_wmax[k]);
    const ScalePair sp = rule_scale(__uint_as_float(tm), rule, eps, kBf16);
    if (t == 0) a_si[std::size_t(tile) * scols + cb] = sp.si;
    std::uint32_t rw[8][2];
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      rw[i][0] = x.row_word(i, 0, sp.factor);
      rw[i][1] = x.row_word(i, 4, sp.factor);
    }
    if (want_a) {
#pragma unroll
      for (int i = 0; i < 8; ++i) {
        if (std::uint32_t(rbase + i) >= rt.row_count || c >= K) continue;
        std::uint8_t* dst = a_codes + std::size_t(rt.row_begin + rbase + i) * K + c;
        if (K % 8 == 0 && c + 8 <= K) {
          *reinterpret_cast<uint2*>(dst) = make_uint2(rw[i][0], rw[i][1]);
        } else {
          for (int b = 0; b < 8; ++b)
            if (c + b < K) dst[b] = std::uint8_t(rw[i][b >> 2] >> (8 * (b & 3)));
        }
      }
    }
    if (want_b) {
#pragma unroll
      for (int k = 0; k < 2; ++k)      // column group 4k..4k+3
#pragma unroll
        for (int hh = 0; hh < 2; ++hh) {  // rows 4hh..4hh+3
          std::uint32_t o[4];
          transpose4x4(rw[4 * hh][k], rw[4 * hh + 1][k], rw[4 * hh + 2][k], rw[4 * hh + 3][k], o);
#pragma unroll
          for (int q = 0; q < 4; ++q) cw[4 * k + q][hh] = o[q];
        }
    }
  } else {
    // 3b. 1x128 rowwise.
    if (want_a) {
#pragma unroll
      for (int i = 0; i < 8; ++i) {
        const ScalePair sp = rule_scale(__uint_as_float(rmax[i]), rule, eps, kBf16);
        if (std::uint32_t(rbase + i) >= rt.row_count || c >= K) continue;
        const std::size_t row = rt.row_begin + rbase + i;
        if (L == 0) a_si[row * scols + cb] = sp.si;
        const std::uint32_t lo = x.row_word(i, 0, sp.factor), hi = x.row_word(i, 4, sp.factor);
        std::uint8_t* dst = a_codes + row * K + c;
        if (K % 8 == 0 && c + 8 <= K) {
          *reinterpret_cast<uint2*>(dst) = make_uint2(lo, hi);
        } else {
          for (int b = 0; b < 8; ++b)
            if (c + b < K) dst[b] = std::uint8_t((b < 4 ? lo : hi) >> (8 * (b & 3)));
        }
      }
    }
    // 3c. 128x1 columnwise: column maxima over the thread's 8 rows, the two halves, then the 8 warps.
    if (want_b) {
      if constexpr (kBf16) {
#pragma unroll
        for (int u = 0; u < 4; ++u) {
          std::uint32_t m = abs_bf16x2(x.x[0][u]);
#pragma unroll
          for (int i = 1; i < 8; ++i) m = __vmaxu2(m, abs_bf16x2(x.x[i][u]));
          m = __vmaxu2(m, __shfl_xor_sync(0xFFFFFFFFu, m, 16));
          if (h == 0) {
            s_cmax[w][L * 8 + 2 * u] = (m & 0xFFFFu) << 16;
            s_cmax[w][L * 8 + 2 * u + 1] = m & 0xFFFF0000u;
          }
        }
      } else {
#pragma unroll
        for (int j = 0; j < 8; ++j) {
          std::uint32_t m = 0;
#pragma unroll
          for (int i = 0; i < 8; ++i) m = max(m, abs_f32(x.x[i][j]));
          m = max(m, __shfl_xor_sync(0xFFFFFFFFu, m, 16));
          if (h == 0) s_cmax[w][L * 8 + j] = m;
        }
      }
      __syncthreads();
      if (t < kSatTile) {
        std::uint32_t m = s_cmax[0][t];
#pragma unroll
        for (int k = 1; k < 8; ++k) m = max(m, s_cmax[k][t]);
        const ScalePair sp = rule_scale(__uint_as_float(m), rule, eps, kBf16);
        s_cf[t] = sp.factor;
        if (col0 + t < K) b_si[std::size_t(tile) * K + col0 + t] = sp.si;
      }
      __syncthreads();
      const float4 f0 = *reinterpret_cast<const float4*>(&s_cf[L * 8]);
      const float4 f1 = *reinterpret_cast<const float4*>(&s_cf[L * 8 + 4]);
      const float cf[8] = {f0.x, f0.y, f0.z, f0.w, f1.x, f1.y, f1.z, f1.w};
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        cw[j][0] = x.col_word(j, 0, cf[j]);
        cw[j][1] = x.col_word(j, 4, cf[j]);
      }
    }
  }

  // 4. Column copy: stage [column][rows] in shared memory, then 16-byte stores of full 128-byte lines.
  if (want_b) {
    const int unit = (2 * w + h) ^ L;  // this thread's 8 rows are 8-byte unit 2w + h of each of its columns
#pragma unroll
    for (int j = 0; j < 8; ++j)
      *reinterpret_cast<uint2*>(&s_out[(L * 8 + j) * kSatTile + unit * 8]) = make_uint2(cw[j][0], cw[j][1]);
    __syncthreads();
    const bool vec = M % 16 == 0 && rt.row_begin % 16 == 0;
#pragma unroll
    for (int it = 0; it < 4; ++it) {
      const int i = t + kThreads * it, cc = i >> 3, j = i & 7;
      const std::size_t col = col0 + cc;
      const std::uint32_t r0 = std::uint32_t(j * 16);
      if (col >= K || r0 >= rt.row_count) continue;
      const int f = (cc >> 3) & 15;
      uint4 v = *reinterpret_cast<const uint4*>(&s_out[cc * kSatTile + ((2 * j) ^ (f & ~1)) * 8]);
      if (f & 1) v = make_uint4(v.z, v.w, v.x, v.y);
      store_codes16(b_codes + col * M + rt.row_begin + r0, v, rt.row_count - r0, vec);
    }
  }
}

template <bool kBf16, bool kBlock>
cudaError_t launch_v2(const void* x, std::size_t rows, std::size_t cols, const RowTile* tiles, std::size_t n_tiles,
                      QuantV2Params p, std::uint8_t* ac, float* as, std::uint8_t* bc, float* bs, cudaStream_t s,
                      bool pdl) {
  const dim3 grid(unsigned((cols + kSatTile - 1) / kSatTile), unsigned(n_tiles));
  return launch_kernel(quant_e4m3_v2_kernel<kBf16, kBlock>, grid, dim3(kThreads), 0, s, pdl, x, rows, cols, tiles,
                       std::uint32_t(p.rule), p.eps, ac, as, bc, bs);
}

__global__ void dequant_e4m3_1x128_kernel(const std::uint8_t* __restrict__ codes, const float* __restrict__ si,
                                          std::size_t rows, std::size_t cols, float* __restrict__ out) {
  const std::size_t n = rows * cols, scols = (cols + kSatTile - 1) / kSatTile;
  for (std::size_t i = blockIdx.x * std::size_t(blockDim.x) + threadIdx.x; i < n;
       i += std::size_t(gridDim.x) * blockDim.x) {
    const std::size_t r = i / cols, c = i % cols;
    // A NaN code passes through with its sign, as the CPU's multiply keeps its NaN operand; the GPU's FMUL
    // would return the canonical NaN instead.
    const float v = decode_as<e4m3, float>(codes[i]);
    out[i] = isnan(v) ? v : __fmul_rn(v, si[r * scols + c / kSatTile]);
  }
}

// The argument checks of quant_e4m3_v1 and quant_e4m3_v2: the status to return at once (nothing to write:
// success; a missing scale array: cudaErrorInvalidValue), or none to go on.
std::optional<cudaError_t> quant_args_done(std::size_t n_tiles, std::size_t cols, QuantGranularity g,
                                           const std::uint8_t* a_codes, const float* a_si,
                                           const std::uint8_t* b_codes, const float* b_si) {
  static_assert(std::uint32_t(QuantRule::te_fp32) == kRuleTeFp32 && std::uint32_t(QuantRule::te_pow2) == kRuleTePow2 &&
                std::uint32_t(QuantRule::paper_swiglu) == kRuleSwiglu);
  if (n_tiles == 0 || cols == 0 || (!a_codes && !b_codes)) return cudaSuccess;
  const bool block = g == QuantGranularity::g128x128;
  if ((block && !a_si) || (!block && ((a_codes && !a_si) || (b_codes && !b_si)))) return cudaErrorInvalidValue;
  return std::nullopt;
}

}  // namespace

cudaError_t quant_e4m3_1x128_128x1_te(const void* d_x, QuantInput input, std::size_t rows, std::size_t cols,
                                      const RowTile* d_tiles, std::size_t n_tiles, TeQuantParams p,
                                      std::uint8_t* d_row_codes, float* d_row_si, std::uint8_t* d_col_codes,
                                      float* d_col_si, cudaStream_t s, bool pdl, const GroupBounds* bounds) {
  return quant_e4m3_v1(d_x, input, rows, cols, d_tiles, n_tiles, QuantGranularity::g1x128,
                       QuantV2Params{p.pow2 ? QuantRule::te_pow2 : QuantRule::te_fp32, p.eps}, d_row_codes, d_row_si,
                       d_col_codes, d_col_si, s, pdl, bounds);
}

cudaError_t quant_e4m3_v1(const void* d_x, QuantInput input, std::size_t rows, std::size_t cols,
                          const RowTile* d_tiles, std::size_t n_tiles, QuantGranularity g, QuantV2Params p,
                          std::uint8_t* d_a_codes, float* d_a_si, std::uint8_t* d_b_codes, float* d_b_si,
                          cudaStream_t s, bool pdl, const GroupBounds* bounds) {
  if (const std::optional<cudaError_t> done = quant_args_done(n_tiles, cols, g, d_a_codes, d_a_si, d_b_codes, d_b_si))
    return *done;
  const bool block = g == QuantGranularity::g128x128;
  bool windows = false;
  if (bounds != nullptr && bounds->n > 0) {
    if (!bounds_describe_tiles(*bounds, rows, n_tiles)) return cudaErrorInvalidValue;
    windows = tiles_are_windows(*bounds);
  }
  const auto go = [&](auto ld, bool bf16) {
    return block ? launch<true>(ld, rows, cols, d_tiles, n_tiles, p, bf16, d_a_codes, d_a_si, d_b_codes, nullptr, true,
                                s, pdl, windows)
                 : launch<false>(ld, rows, cols, d_tiles, n_tiles, p, bf16, d_a_codes, d_a_si, d_b_codes, d_b_si, true,
                                 s, pdl, windows);
  };
  if (input == QuantInput::bf16) return go(LoadBf16{static_cast<const std::uint16_t*>(d_x)}, true);
  return go(LoadF32{static_cast<const float*>(d_x)}, false);
}

cudaError_t quant_e4m3_v2(const void* d_x, QuantInput input, std::size_t rows, std::size_t cols,
                          const RowTile* d_tiles, std::size_t n_tiles, QuantGranularity g, QuantV2Params p,
                          std::uint8_t* d_a_codes, float* d_a_si, std::uint8_t* d_b_codes, float* d_b_si,
                          cudaStream_t s, bool pdl) {
  if (const std::optional<cudaError_t> done = quant_args_done(n_tiles, cols, g, d_a_codes, d_a_si, d_b_codes, d_b_si))
    return *done;
  const bool block = g == QuantGranularity::g128x128;
  const bool bf16 = input == QuantInput::bf16;
  if (bf16) return block ? launch_v2<true, true>(d_x, rows, cols, d_tiles, n_tiles, p, d_a_codes, d_a_si, d_b_codes, d_b_si, s, pdl)
                         : launch_v2<true, false>(d_x, rows, cols, d_tiles, n_tiles, p, d_a_codes, d_a_si, d_b_codes, d_b_si, s, pdl);
  return block ? launch_v2<false, true>(d_x, rows, cols, d_tiles, n_tiles, p, d_a_codes, d_a_si, d_b_codes, d_b_si, s, pdl)
               : launch_v2<false, false>(d_x, rows, cols, d_tiles, n_tiles, p, d_a_codes, d_a_si, d_b_codes, d_b_si, s, pdl);
}

cudaError_t transpose_naive_e4m3_1x128(const std::uint8_t* d_codes, const float* d_si, std::size_t rows,
                                       std::size_t cols, const RowTile* d_tiles, std::size_t n_tiles, float eps,
                                       std::uint8_t* d_col_codes, float* d_col_si, cudaStream_t s, bool pdl) {
  return launch(LoadDequant{d_codes, d_si}, rows, cols, d_tiles, n_tiles, QuantV2Params{QuantRule::te_pow2, eps}, false, nullptr,
                nullptr, d_col_codes, d_col_si, false, s, pdl);
}

cudaError_t dequant_e4m3_1x128(const std::uint8_t* d_codes, const float* d_si, std::size_t rows, std::size_t cols,
                               float* d_out, cudaStream_t s) {
  if (rows * cols == 0) return cudaSuccess;
  dequant_e4m3_1x128_kernel<<<1024, 256, 0, s>>>(d_codes, d_si, rows, cols, d_out);
  return cudaGetLastError();
}

}  // namespace fp8flow::cuda
