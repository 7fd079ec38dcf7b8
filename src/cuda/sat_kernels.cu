// Scaling-aware transpose kernels (see sat_kernels.hpp). One 256-thread block per 128-row window of the
// global row grid and 128-column block:
//   1. 16-byte loads of the window's codes go out first (exact: and its shift table, copied to shared memory;
//      with the group bounds given, the scales of every row of the window's tiles go out before them);
//   2. the group tiles overlapping the window are found; a warp per tile takes T = max of the tile's row
//      scales (its rows outside the window too) and each of its rows' shift k; the block holding a tile's
//      first row writes the tile's column scales;
//   3. each word is rewritten for its row's k with per-byte SIMD ops (exact: table lookups for the bytes
//      that leave the normal range) and stored row-major into shared memory;
//   4. each thread reads 16 rows x 4 columns as words, transposes them 4x4 bytewise with PRMT and writes
//      4 output rows x 16 bytes with 16-byte stores: every 128-byte output line is written by one block,
//      whatever the group sizes.
// Partial windows (M % 128, K % 128) take per-byte paths with bounds checks.
#include <cuda_runtime.h>

#include <cstdint>
#include <mutex>
#include <vector>

#include "cuda/column_store.cuh"
#include "cuda/launch_pdl.cuh"
#include "cuda/sat_kernels.hpp"
#include "formats/convert.hpp"

namespace fp8flow::cuda {
namespace {

constexpr int kThreads = 256;
constexpr std::uint32_t kMaxShiftExact = 24;  // value(q) * 2^-24 <= 448 * 2^-24 rounds to +-0 already

// paper_kernel on 4 codes of one row: e' = max(e - k, 0) (per-byte saturating subtract), sign and mantissa
// kept, input exponent field 0 -> 0x00. e4m3: s|eeee|mmm.
__device__ __forceinline__ std::uint32_t paper_word(std::uint32_t w, std::uint32_t kk) {
  const std::uint32_t e = (w >> 3) & 0x0F0F0F0Fu;
  const std::uint32_t e2 = __vsubus4(e, kk);
  const std::uint32_t zero = __vcmpeq4(e, 0u);
  return ((w & 0x87878787u) | (e2 << 3)) & ~zero;
}

// exact on one code: cvt_sat(value(code) * 2^-k) (zero_row: value * 0), through the shared encoder.
__device__ std::uint32_t exact_byte(std::uint32_t code, std::uint32_t k, bool zero_row) {
  std::uint32_t vb = __float_as_uint(decode_as<e4m3, float>(code));
  const bool nan = (code & 0x7Fu) == 0x7Fu;
  if (zero_row) {
    if (!nan) vb &= 0x80000000u;
  } else if (!nan && (vb & 0x7FFFFFFFu) != 0) {
    vb -= (k < kMaxShiftExact ? k : kMaxShiftExact) << 23;  // exact: a normal float stays normal
  }
  return encode_bits<e4m3, float, Rounding::rne, Overflow::satfinite>(vb);
}

// exact on one finite code: RNE of value(q) * 2^-k onto the e4m3 grid, in integers. With
// e - k >= 1 the exponent just drops; below, the significand (8 + m at e >= 1, m at e == 0) in units of the
// subnormal quantum 2^-9 is shifted right by sh = k - max(e, 1) + 1 and rounded to nearest even; a result of
// 8 is the smallest normal code 0x08, as the encoding's carry gives.
__device__ __forceinline__ std::uint32_t exact_finite_byte(std::uint32_t code, std::uint32_t k) {
  const std::uint32_t s = code & 0x80u, e = (code >> 3) & 0x0Fu, m = code & 0x07u;
  if (k == 0) return code;  // a finite code is its own value
  if (e > k) return s | ((e - k) << 3) | m;
  const std::uint32_t sig = e ? (8u | m) : m;
  std::uint32_t sh = k - (e ? e : 1u) + 1u;  // >= 1 (e <= k, k >= 1)
  sh = sh > 8u ? 8u : sh;                    // sig < 16: any shift >= 5 already gives 0
  const std::uint32_t r = sig >> sh, rem = sig & ((1u << sh) - 1u), half = 1u << (sh - 1u);
  return s | (r + ((rem > half || (rem == half && (r & 1u))) ? 1u : 0u));
}

// exact's table: row k (0..kMaxShiftExact) maps every code q to cvt_sat(value(q) * 2^-k), row kZeroRowLut
// to cvt_sat(value(q) * 0). Filled once per device by exact_lut_kernel from exact_byte/exact_finite_byte;
// each block of the exact transpose copies it to shared memory.
constexpr int kZeroRowLut = int(kMaxShiftExact) + 1;
constexpr int kLutBytes = (kZeroRowLut + 1) * 256;
__device__ __align__(16) std::uint8_t g_exact_lut[kLutBytes];

__global__ void exact_lut_kernel() {
  const std::uint32_t k = blockIdx.x, c = threadIdx.x;
  const bool zero_row = int(k) == kZeroRowLut;
  g_exact_lut[k * 256 + c] = std::uint8_t((zero_row || (c & 0x7Fu) == 0x7Fu) ? exact_byte(c, zero_row ? 0 : k, zero_row)
                                                                             : exact_finite_byte(c, k));
}

// exact on 4 codes: where every e > k and none is NaN, the paper formula is exact (e' >= 1); k == 0 keeps
// every non-NaN code; otherwise each byte is looked up in the row's table.
__device__ __forceinline__ std::uint32_t exact_word(std::uint32_t w, std::uint32_t k, bool zero_row,
                                                    const std::uint8_t* lut) {
  const std::uint32_t kk = k * 0x01010101u;
  const std::uint32_t e = (w >> 3) & 0x0F0F0F0Fu;
  const bool has_nan = __vcmpeq4(w & 0x7F7F7F7Fu, 0x7F7F7F7Fu) != 0u;
  if (!zero_row && !has_nan) {
    if (__vcmpgtu4(e, kk) == 0xFFFFFFFFu) return paper_word(w, kk);
    if (k == 0) return w;
  }
  const std::uint8_t* row = lut + (zero_row ? kZeroRowLut : int(k)) * 256;
  return std::uint32_t(row[w & 0xFFu]) | (std::uint32_t(row[(w >> 8) & 0xFFu]) << 8) |
         (std::uint32_t(row[(w >> 16) & 0xFFu]) << 16) | (std::uint32_t(row[w >> 24]) << 24);
}

template <SatMode kMode>
__device__ __forceinline__ std::uint32_t transform_word(std::uint32_t w, std::uint32_t k, bool zero_row,
                                                       const std::uint8_t* lut) {
  if constexpr (kMode == SatMode::paper_kernel) return paper_word(w, k * 0x01010101u);
  else if constexpr (kMode == SatMode::exact) return exact_word(w, k, zero_row, lut);
  else return w;
}

__device__ __forceinline__ int exponent_field(float x) { return int((__float_as_uint(x) >> 23) & 0xFFu); }

constexpr int kMaxSegments = kSatTile;  // tiles overlapping one 128-row window: each has >= 1 row in it
// Resident blocks per SM the register budget is set for: each block's scale work is a chain of dependent
// loads (tiles -> row scales), hidden only by other blocks' copies. Measured on an H100 (docs/gpu.md): 5 is
// best for every mode by 0.5-5% over 4 and 6 (6 spills exact's registers).
constexpr int kSatBlocksPerSm = 5;

// bounds.begin[g] for a runtime g (a lane's group) by constant-index selects: the parameter array stays in
// the constant bank instead of a local-memory copy.
__device__ __forceinline__ std::uint32_t bound_at(const GroupBounds& bounds, std::uint32_t g) {
  std::uint32_t b = 0;
#pragma unroll
  for (int i = 0; i <= kMaxBoundGroups; ++i) b = std::uint32_t(i) == g ? bounds.begin[i] : b;
  return b;
}

// One block per (128-row window of the GLOBAL row grid, 128-column block). A window may hold pieces of
// several group tiles (groups need not be multiples of 128 rows); the block finds them, takes each tile's
// T over all of the tile's rows (inside the window or not), and writes whole 128-byte output lines, so no
// output line is shared by two blocks (partially written sectors cost a DRAM read each).
// kAsync (paper_kernel and plain where the tiles are the windows -- one group, or groups of multiples of
// 128 rows -- and paper_kernel with kBounds): the grid runs over the column blocks fastest and the codes
// go to shared memory by cp.async; otherwise windows fastest and the codes pass through registers. Only
// speed depends on it: the windows find their tiles either way (so a tiling such as 100 + 128 rows, as many
// tiles as windows but not aligned, is still right). Measured on the H100 (docs/gpu.md, fourth slice):
// paper_kernel with aligned tiles +1 point of copy bandwidth at the small shapes and +2 at the large ones;
// exact 3-5 points slower even when aligned.
// kAsync paper_kernel and plain rewrite each word as step 5 reads it for the transpose (one shared-memory
// pass and one barrier fewer: +0.4 to +0.6 points at the two smallest shapes, docs/gpu.md fifth slice);
// exact keeps the rewrite pass of step 4 (its table lookups fill its register budget).
// kBounds (paper_kernel, tiles that are not the windows, at most kMaxBoundGroups groups): the window's
// tiles come from the group bounds in the parameters instead of a scan of the tile list, and the scales of
// every row they cover are loaded first, so no load waits for another (with the tile list, the scales of
// tile rows outside the window wait for the scan). On the H100 with 8 unequal groups: +4 points at
// (28672,1280) and +3 at (24576,2048) (docs/gpu.md, sixth slice).
template <SatMode kMode, bool kAsync, bool kBounds>
__global__ void __launch_bounds__(kThreads, kSatBlocksPerSm)
    sat_e4m3_1x128_kernel(const std::uint8_t* __restrict__ codes, const float* __restrict__ si, std::size_t M,
                          std::size_t K, const RowTile* __restrict__ tiles, std::uint32_t n_tiles,
                          std::uint8_t* __restrict__ out, float* __restrict__ out_si, const GroupBounds bounds) {
  static_assert(!kBounds || (kAsync && kMode == SatMode::paper_kernel));
  constexpr bool col_fast = kAsync, async = kAsync;
  constexpr bool kFusedRewrite = kAsync && kMode != SatMode::exact;  // the rewrite happens in step 5
  __shared__ __align__(16) std::uint8_t tile[kSatTile][kSatTile];
  __shared__ std::uint8_t s_k[kSatTile];
  __shared__ bool s_zero[kSatTile];
  __shared__ std::uint32_t s_seg[kMaxSegments];  // indices of the tiles overlapping the window, ascending
  __shared__ RowTile s_segt[kMaxSegments];       // and the tiles themselves
  __shared__ std::uint32_t s_nseg;
  __shared__ float s_si[kSatTile];  // the window rows' own scales (they need no tile list)
  __shared__ __align__(16) std::uint8_t s_lut[kMode == SatMode::exact ? kLutBytes : 16];
  const int t = threadIdx.x;
  pdl_start();
  const std::uint32_t win = col_fast ? blockIdx.y : blockIdx.x;
  const std::size_t W = std::size_t(win) * kSatTile;  // first row of the window
  const std::uint32_t wrows = std::uint32_t(M - W < std::size_t(kSatTile) ? M - W : kSatTile);
  const std::size_t cb = col_fast ? blockIdx.x : blockIdx.y, col0 = cb * kSatTile;
  const std::size_t scols = (K + kSatTile - 1) / kSatTile;

  // 0. kBounds: the first tile overlapping the window starts at pre0 <= W and the last one ends at post1 >=
  // W + wrows; the group boundaries in the parameters give both (begin is non-decreasing and padded with M:
  // the group holding row x starts at the largest begin <= x and ends at the smallest begin > x). The
  // scales of all their rows, inside the window and out, go to shared memory by 4-byte cp.async (commit
  // group 0) before anything else: no load waits for another, and none holds a register.
  __shared__ float s_pre[kBounds ? kSatTile : 1], s_post[kBounds ? kSatTile : 1];
  if constexpr (kBounds) {
    const std::uint32_t w0 = std::uint32_t(W), w1 = std::uint32_t(W) + wrows - 1;
    std::uint32_t b0 = 0, b1 = 0, e1 = std::uint32_t(M);
#pragma unroll
    for (int i = 0; i <= kMaxBoundGroups; ++i) {
      const std::uint32_t bi = bounds.begin[i];
      if (bi <= w0) b0 = bi;
      if (bi <= w1) b1 = bi;
      if (bi > w1 && bi < e1) e1 = bi;
    }
    const std::uint32_t pre0 = b0 + (w0 - b0) / kSatTile * kSatTile;
    const std::uint32_t t1 = b1 + (w1 - b1) / kSatTile * kSatTile + kSatTile;  // end of w1's tile, if whole
    const std::uint32_t npre = w0 - pre0, npost = (t1 < e1 ? t1 : e1) - (w1 + 1);
    const auto cp4 = [&](float* dst, std::uint32_t row) {
      const unsigned d = unsigned(__cvta_generic_to_shared(dst));
      asm volatile("cp.async.ca.shared.global [%0], [%1], 4;" ::"r"(d), "l"(si + std::size_t(row) * scols + cb)
                   : "memory");
    };
    if (t < kSatTile) {
      if (std::uint32_t(t) < wrows) cp4(&s_si[t], w0 + std::uint32_t(t));
      else s_si[t] = 0.0f;
      if (std::uint32_t(t) < npost) cp4(&s_post[t], w1 + 1 + std::uint32_t(t));
    } else if (std::uint32_t(t - kSatTile) < npre) {
      cp4(&s_pre[t - kSatTile], pre0 + std::uint32_t(t - kSatTile));
    }
    asm volatile("cp.async.commit_group;" ::: "memory");
  }

  // 1. The window's codes: all loads in flight before the scale work (they depend on nothing else).
  const bool vec_load = (K % 16 == 0);
  uint4 v[4];
  unsigned in_smem = 0u;  // bit it: item it went straight to the tile (cp.async), at its step-4 place
#pragma unroll
  for (int it = 0; it < 4; ++it) {
    const int i = t + kThreads * it, r = i >> 3, j = i & 7;
    const std::size_t c = col0 + j * 16;
    v[it] = make_uint4(0, 0, 0, 0);
    if (std::uint32_t(r) < wrows) {
      const std::uint8_t* src = codes + (W + r) * K + c;
      if (async && vec_load && c + 16 <= K) {  // (unused v[it] then stays 0)
        const unsigned dst = unsigned(__cvta_generic_to_shared(&tile[r][(j ^ ((r >> 4) & 7)) * 16]));
        asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(dst), "l"(src) : "memory");
        in_smem |= 1u << it;
      } else if (vec_load && c + 16 <= K) {
        v[it] = __ldg(reinterpret_cast<const uint4*>(src));
      } else {
        std::uint32_t w[4] = {0, 0, 0, 0};
        for (int b = 0; b < 16; ++b)
          if (c + b < K) w[b >> 2] |= std::uint32_t(src[b]) << (8 * (b & 3));
        v[it] = make_uint4(w[0], w[1], w[2], w[3]);
      }
    }
  }
  if constexpr (kBounds) asm volatile("cp.async.commit_group;" ::: "memory");  // the codes: group 1
  // kFusedRewrite: the codes go to the tile as they are (the cp.async'd ones are there once waited for),
  // published by the barrier that ends the scale work.
  const auto stage_raw = [&] {
    if constexpr (async) asm volatile("cp.async.wait_all;" ::: "memory");  // this thread's own copies only
#pragma unroll
    for (int it = 0; it < 4; ++it) {
      const int i = t + kThreads * it, r = i >> 3, j = i & 7;
      if (!((in_smem >> it) & 1u)) *reinterpret_cast<uint4*>(&tile[r][(j ^ ((r >> 4) & 7)) * 16]) = v[it];
    }
  };

  if constexpr (kMode == SatMode::exact) {
    for (int i = t; i < kLutBytes / 16; i += kThreads)
      reinterpret_cast<uint4*>(s_lut)[i] = __ldg(reinterpret_cast<const uint4*>(g_exact_lut) + i);
  }

  if constexpr (kMode != SatMode::plain) {
    // The window rows' scales, loaded by warps 1-4 while warp 0 looks for the tiles: for a tile inside the
    // window (one group, or 128-aligned groups) this leaves a single dependent load before the shifts.
    // (Not for exact, whose table and lookups already fill the register budget: this spilled it.)
    constexpr bool kOwnScales = kMode == SatMode::paper_kernel;
    if (!kBounds && kOwnScales && t >= 32 && t < 32 + kSatTile) {
      const std::uint32_t r = std::uint32_t(t - 32);
      s_si[r] = r < wrows ? si[(W + r) * scols + cb] : 0.0f;
    }
    // 2. The tiles overlapping [W, W + wrows), found by warp 0.
    if constexpr (kBounds) {
      // Lane g: group g's tiles overlapping the window, placed after the lower lanes' (exclusive scans over
      // the lanes of the tile counts and of the overlapping tiles); no load.
      if (t < 32) {
        const std::uint32_t g = std::uint32_t(t);
        const std::uint32_t gb = bound_at(bounds, g), ge = g < bounds.n ? bound_at(bounds, g + 1) : gb;
        const std::uint32_t ntile = (ge - gb + kSatTile - 1) / kSatTile;
        const std::uint32_t lo = std::uint32_t(W), hi = std::uint32_t(W) + wrows;  // [lo, hi)
        std::uint32_t j0 = 0, nj = 0;
        if (ge > gb && gb < hi && ge > lo) {
          j0 = lo > gb ? (lo - gb) / kSatTile : 0;
          const std::uint32_t j1 = ((ge < hi ? ge : hi) - 1 - gb) / kSatTile;
          nj = j1 - j0 + 1;
        }
        std::uint32_t tile0 = ntile, slot = nj;  // inclusive scans, made exclusive below
#pragma unroll
        for (int o = 1; o < 32; o <<= 1) {
          const std::uint32_t a = __shfl_up_sync(0xFFFFFFFFu, tile0, o), b = __shfl_up_sync(0xFFFFFFFFu, slot, o);
          if (t >= o) tile0 += a, slot += b;
        }
        tile0 -= ntile, slot -= nj;
        for (std::uint32_t j = 0; j < nj; ++j) {
          const std::uint32_t rb = gb + (j0 + j) * kSatTile;
          s_seg[slot + j] = tile0 + j0 + j;
          s_segt[slot + j] = RowTile{rb, (ge - rb < std::uint32_t(kSatTile)) ? ge - rb : std::uint32_t(kSatTile)};
        }
        if (t == 31) s_nseg = slot + nj;
      }
      asm volatile("cp.async.wait_group 1;" ::: "memory");  // this thread's scales; its codes may be out
    } else if (t < 32) {
      // From the tile list: make_row_tiles' tiles are sorted and cover the rows contiguously with <= 128
      // rows each, so at least win of them start before W and the first overlapping one has index >= win
      // - 1; the scan stops at the first tile past the window.
      std::uint32_t n = 0;
      for (std::uint32_t base = win == 0 ? 0 : win - 1; base < n_tiles; base += 32) {
        const std::uint32_t i = base + std::uint32_t(t);
        RowTile rt{0, 0};
        if (i < n_tiles) rt = tiles[i];
        const bool in = i < n_tiles && rt.row_begin < W + wrows && rt.row_begin + rt.row_count > W;
        const std::uint32_t mask = __ballot_sync(0xFFFFFFFFu, in);
        if (in) {
          const std::uint32_t slot = n + __popc(mask & ((1u << t) - 1u));
          s_seg[slot] = i;
          s_segt[slot] = rt;
        }
        n += __popc(mask);
        const bool past = i >= n_tiles || rt.row_begin >= W + wrows;
        if (__ballot_sync(0xFFFFFFFFu, past) != 0u) break;
      }
      if (t == 0) s_nseg = n;
    }
    __syncthreads();
    // 3. A warp per tile: T = max of its row scales (rows of the tile outside the window count too), then
    // k = E(T) - E(si[r]) for its rows inside the window; the block holding a tile's first row writes its
    // column scales.
    const int lane = t & 31;
    for (std::uint32_t sg = t >> 5; sg < s_nseg; sg += kThreads / 32) {
      const std::uint32_t ti = s_seg[sg];
      const RowTile rt = s_segt[sg];
      float my[4];
      float m = 0.0f;
#pragma unroll
      for (int q = 0; q < 4; ++q) {
        const std::uint32_t r = std::uint32_t(lane + 32 * q);
        const std::size_t row = std::size_t(rt.row_begin) + r;
        if constexpr (kBounds) {
          my[q] = r >= rt.row_count ? 0.0f
                  : row < W         ? s_pre[row - rt.row_begin]  // the first tile: it starts at pre0
                  : row < W + wrows ? s_si[row - W]
                                    : s_post[row - (W + wrows)];
        } else {
          my[q] = r >= rt.row_count ? 0.0f
                  : (kOwnScales && row >= W && row < W + wrows) ? s_si[row - W]
                                                  : si[row * scols + cb];
        }
        m = fmaxf(m, my[q]);
      }
#pragma unroll
      for (int o = 16; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xFFFFFFFFu, m, o));
      const int kmax = kMode == SatMode::paper_kernel ? 15 : int(kMaxShiftExact);
#pragma unroll
      for (int q = 0; q < 4; ++q) {
        const std::size_t row = std::size_t(rt.row_begin) + lane + 32 * q;
        if (std::uint32_t(lane + 32 * q) < rt.row_count && row >= W && row < W + wrows) {
          const int k = exponent_field(m) - exponent_field(my[q]);  // >= 0: m is the maximum
          s_k[row - W] = std::uint8_t(k < 0 ? 0 : (k > kmax ? kmax : k));
          s_zero[row - W] = my[q] == 0.0f;
        }
      }
      if (rt.row_begin >= W) {
#pragma unroll
        for (int q = 0; q < 4; ++q) {
          const std::size_t c = col0 + lane + 32 * q;
          if (c < K) out_si[std::size_t(ti) * K + c] = m;
        }
      }
    }
    if constexpr (kFusedRewrite) stage_raw();
    __syncthreads();
  } else if constexpr (kFusedRewrite) {
    stage_raw();
    __syncthreads();
  }

  // 4. (not kAsync, and exact) Rewrite, stage row-major.
  if constexpr (!kFusedRewrite) {
    if constexpr (async) asm volatile("cp.async.wait_all;" ::: "memory");  // this thread's own copies only
#pragma unroll
    for (int it = 0; it < 4; ++it) {
      const int i = t + kThreads * it, r = i >> 3, j = i & 7;
      std::uint32_t k = 0;
      bool zr = false;
      if constexpr (kMode != SatMode::plain) {
        if (std::uint32_t(r) < wrows) {
          k = s_k[r];
          zr = s_zero[r];
        }
      }
      uint4 w = (in_smem >> it) & 1u ? *reinterpret_cast<const uint4*>(&tile[r][(j ^ ((r >> 4) & 7)) * 16]) : v[it];
      w.x = transform_word<kMode>(w.x, k, zr, s_lut);
      w.y = transform_word<kMode>(w.y, k, zr, s_lut);
      w.z = transform_word<kMode>(w.z, k, zr, s_lut);
      w.w = transform_word<kMode>(w.w, k, zr, s_lut);
      *reinterpret_cast<uint4*>(&tile[r][(j ^ ((r >> 4) & 7)) * 16]) = w;  // swizzle: see step 5
    }
    __syncthreads();
  }

  // 5. Transpose 16 rows x 4 columns per thread (paper_kernel: each word rewritten for its row's k as it is
  // read), 4 output rows x 16 bytes out. Eight lanes share a column group, so each output row's 128 bytes
  // go out as one full line per warp store. Their reads sit 16 rows apart (same bank unswizzled); the
  // 16-byte chunk index is XORed with (row / 16) % 8 where the tile is written, which puts the warp's 32
  // words in 32 banks.
  const int rc = t & 7, cg = (t >> 5) * 4 + ((t >> 3) & 3);
  const int wsw = cg ^ (rc * 4);  // swizzled word index (chunk j = cg / 4 XOR rc)
  std::uint32_t w[16];
#pragma unroll
  for (int i = 0; i < 16; ++i) {
    w[i] = *reinterpret_cast<const std::uint32_t*>(&tile[rc * 16 + i][wsw * 4]);
    if constexpr (kFusedRewrite && kMode != SatMode::plain) {
      const int r = rc * 16 + i;
      w[i] = transform_word<kMode>(w[i], std::uint32_t(r) < wrows ? s_k[r] : 0u, false, s_lut);
    }
  }
  std::uint32_t o[4][4];  // [output row q][word u]
#pragma unroll
  for (int u = 0; u < 4; ++u) {
    const std::uint32_t a = w[4 * u], b = w[4 * u + 1], c = w[4 * u + 2], d = w[4 * u + 3];
    const std::uint32_t t0 = __byte_perm(a, b, 0x5140), t1 = __byte_perm(c, d, 0x5140);
    const std::uint32_t t2 = __byte_perm(a, b, 0x7362), t3 = __byte_perm(c, d, 0x7362);
    o[0][u] = __byte_perm(t0, t1, 0x5410);
    o[1][u] = __byte_perm(t0, t1, 0x7632);
    o[2][u] = __byte_perm(t2, t3, 0x5410);
    o[3][u] = __byte_perm(t2, t3, 0x7632);
  }
  const std::uint32_t r0 = std::uint32_t(rc * 16);
#pragma unroll
  for (int q = 0; q < 4; ++q) {
    const std::size_t c = col0 + cg * 4 + q;
    if (c >= K || r0 >= wrows) continue;
    store_codes16(out + c * M + W + r0, make_uint4(o[q][0], o[q][1], o[q][2], o[q][3]), wrows - r0, M % 16 == 0);
  }
}

}  // namespace

std::vector<RowTile> make_row_tiles(std::size_t rows, const std::vector<std::size_t>& groups) {
  std::vector<RowTile> tiles;
  const std::vector<std::size_t> g = groups.empty() ? std::vector<std::size_t>{rows} : groups;
  std::size_t begin = 0;
  for (const std::size_t m : g) {
    for (std::size_t r = 0; r < m; r += kSatTile)
      tiles.push_back({std::uint32_t(begin + r), std::uint32_t(m - r < std::size_t(kSatTile) ? m - r : kSatTile)});
    begin += m;
  }
  return tiles;
}

namespace {
// exact's table, filled once per device (on the caller's stream, which is then synchronised once).
cudaError_t ensure_exact_lut(cudaStream_t s) {
  static std::mutex mu;
  static std::vector<bool> ready;
  int dev = 0;
  if (const cudaError_t e = cudaGetDevice(&dev); e != cudaSuccess) return e;
  const std::lock_guard<std::mutex> lock(mu);
  if (std::size_t(dev) < ready.size() && ready[std::size_t(dev)]) return cudaSuccess;
  exact_lut_kernel<<<kZeroRowLut + 1, 256, 0, s>>>();
  if (const cudaError_t e = cudaGetLastError(); e != cudaSuccess) return e;
  if (const cudaError_t e = cudaStreamSynchronize(s); e != cudaSuccess) return e;
  if (std::size_t(dev) >= ready.size()) ready.resize(std::size_t(dev) + 1, false);
  ready[std::size_t(dev)] = true;
  return cudaSuccess;
}
}  // namespace

GroupBounds group_bounds(std::size_t rows, const std::vector<std::size_t>& groups) {
  GroupBounds gb;
  const std::vector<std::size_t> g = groups.empty() ? std::vector<std::size_t>{rows} : groups;
  if (g.size() > std::size_t(kMaxBoundGroups) || rows > std::size_t(UINT32_MAX)) return gb;  // n = 0: not given
  gb.n = std::uint32_t(g.size());
  std::size_t b = 0;
  for (std::size_t i = 0; i < g.size(); ++i) gb.begin[i] = std::uint32_t(b), b += g[i];
  for (std::size_t i = g.size(); i <= std::size_t(kMaxBoundGroups); ++i) gb.begin[i] = std::uint32_t(b);
  return gb;
}

bool bounds_describe_tiles(const GroupBounds& bounds, std::size_t rows, std::size_t n_tiles) {
  if (bounds.n == 0 || bounds.n > std::uint32_t(kMaxBoundGroups) || bounds.begin[0] != 0) return false;
  std::size_t nt = 0;
  for (std::uint32_t g = 0; g < bounds.n; ++g) {
    if (bounds.begin[g + 1] < bounds.begin[g]) return false;
    nt += (bounds.begin[g + 1] - bounds.begin[g] + kSatTile - 1) / kSatTile;
  }
  return nt == n_tiles && bounds.begin[bounds.n] == rows;
}

bool tiles_are_windows(const GroupBounds& bounds) {
  for (std::uint32_t g = 0; g < bounds.n; ++g)
    if (bounds.begin[g] % kSatTile != 0) return false;
  return true;
}

cudaError_t sat_transpose_e4m3_1x128(const std::uint8_t* d_codes, const float* d_si, std::size_t rows,
                                     std::size_t cols, const RowTile* d_tiles, std::size_t n_tiles, SatMode mode,
                                     std::uint8_t* d_out_codes, float* d_out_si, cudaStream_t s, bool pdl,
                                     const GroupBounds* bounds) {
  if (n_tiles == 0 || cols == 0) return cudaSuccess;
  const unsigned nw = unsigned((rows + kSatTile - 1) / kSatTile), ncb = unsigned((cols + kSatTile - 1) / kSatTile);
  // As many tiles as windows: the tiles are the windows (one group, groups of multiples of 128) but for rare
  // tilings such as 100 + 128 rows; the kernels are right for any tiling, only their speed differs.
  const bool windows = n_tiles == nw;
  // Other tilings of paper_kernel with the groups' bounds: the windows find their tiles from the bounds.
  const bool use_bounds = mode == SatMode::paper_kernel && !windows && bounds != nullptr && bounds->n > 0;
  // the bounds must describe the tile list (make_row_tiles of the same groups)
  if (use_bounds && !bounds_describe_tiles(*bounds, rows, n_tiles)) return cudaErrorInvalidValue;
  const bool async = (windows || use_bounds) && mode != SatMode::exact;
  const dim3 grid = async ? dim3(ncb, nw) : dim3(nw, ncb);
  const auto nt = std::uint32_t(n_tiles);
  const GroupBounds gb = use_bounds ? *bounds : GroupBounds{};
  const auto go = [&](auto kernel) {
    return launch_kernel(kernel, grid, dim3(kThreads), 0, s, pdl, d_codes, d_si, rows, cols, d_tiles, nt, d_out_codes,
                         d_out_si, gb);
  };
  switch (mode) {
    case SatMode::plain:
      return async ? go(sat_e4m3_1x128_kernel<SatMode::plain, true, false>)
                   : go(sat_e4m3_1x128_kernel<SatMode::plain, false, false>);
    case SatMode::paper_kernel:
      if (use_bounds) return go(sat_e4m3_1x128_kernel<SatMode::paper_kernel, true, true>);
      return async ? go(sat_e4m3_1x128_kernel<SatMode::paper_kernel, true, false>)
                   : go(sat_e4m3_1x128_kernel<SatMode::paper_kernel, false, false>);
    case SatMode::exact:
      if (const cudaError_t e = ensure_exact_lut(s); e != cudaSuccess) return e;
      return go(sat_e4m3_1x128_kernel<SatMode::exact, false, false>);
  }
  return cudaErrorInvalidValue;  // not a SatMode
}

}  // namespace fp8flow::cuda
