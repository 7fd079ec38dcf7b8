// Scaling-aware transpose kernels (see sat_kernels.hpp). One 256-thread block per 128x128 tile:
//   1. the tile's 128 row scales -> T (warp max) -> per-row shift k in shared memory, T to the column scales;
//   2. 16-byte loads of the tile's codes, each word rewritten for its row's k with per-byte SIMD ops,
//      stored row-major into shared memory (a warp stores 512 contiguous bytes: no bank conflicts);
//   3. each thread reads 16 rows x 4 columns as words (lanes on consecutive words: no conflicts), transposes
//      them 4x4 bytewise with PRMT and writes 4 output rows x 16 bytes with 16-byte stores.
// Partial tiles (group tails, K % 128) take per-byte paths with bounds checks; exact's rare cases (results
// below the normal range, NaN, zero rows) go through the shared encoder, encode_bits.
#include <cuda_runtime.h>

#include <cstdint>
#include <vector>

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

// exact on 4 codes: where every e > k and none is NaN, the paper formula is exact (e' >= 1); k == 0 keeps
// every non-NaN code; NaN codes and zero-scale rows go through the shared encoder.
__device__ __forceinline__ std::uint32_t exact_word(std::uint32_t w, std::uint32_t k, bool zero_row) {
  const std::uint32_t kk = k * 0x01010101u;
  const std::uint32_t e = (w >> 3) & 0x0F0F0F0Fu;
  const bool has_nan = __vcmpeq4(w & 0x7F7F7F7Fu, 0x7F7F7F7Fu) != 0u;
  if (!zero_row && !has_nan) {
    if (__vcmpgtu4(e, kk) == 0xFFFFFFFFu) return paper_word(w, kk);
    if (k == 0) return w;
  }
  std::uint32_t out = 0;
#pragma unroll
  for (int b = 0; b < 4; ++b) {
    const std::uint32_t c = (w >> (8 * b)) & 0xFFu;
    const std::uint32_t o = (zero_row || (c & 0x7Fu) == 0x7Fu) ? exact_byte(c, k, zero_row) : exact_finite_byte(c, k);
    out |= o << (8 * b);
  }
  return out;
}

template <SatMode kMode>
__device__ __forceinline__ std::uint32_t transform_word(std::uint32_t w, std::uint32_t k, bool zero_row) {
  if constexpr (kMode == SatMode::paper_kernel) return paper_word(w, k * 0x01010101u);
  else if constexpr (kMode == SatMode::exact) return exact_word(w, k, zero_row);
  else return w;
}

__device__ __forceinline__ int exponent_field(float x) { return int((__float_as_uint(x) >> 23) & 0xFFu); }

template <SatMode kMode>
__global__ void __launch_bounds__(kThreads) sat_e4m3_1x128_kernel(const std::uint8_t* __restrict__ codes,
                                                                  const float* __restrict__ si, std::size_t M,
                                                                  std::size_t K, const RowTile* __restrict__ tiles,
                                                                  std::uint8_t* __restrict__ out,
                                                                  float* __restrict__ out_si) {
  __shared__ __align__(16) std::uint8_t tile[kSatTile][kSatTile];
  __shared__ std::uint8_t s_k[kSatTile];
  __shared__ bool s_zero[kSatTile];
  __shared__ float s_wmax[4];
  const int t = threadIdx.x;
  const RowTile rt = tiles[blockIdx.x];
  const std::size_t cb = blockIdx.y, col0 = cb * kSatTile;
  const std::size_t scols = (K + kSatTile - 1) / kSatTile;

  if constexpr (kMode != SatMode::plain) {
    // 1. T = max of the tile's row scales (masked rows count as 0), and each row's k.
    float my_si = 0.0f;
    if (t < kSatTile) {
      if (std::uint32_t(t) < rt.row_count) my_si = si[(rt.row_begin + t) * scols + cb];
      float m = my_si;
#pragma unroll
      for (int o = 16; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xFFFFFFFFu, m, o));
      if ((t & 31) == 0) s_wmax[t >> 5] = m;
    }
    __syncthreads();
    if (t < kSatTile) {
      const float T = fmaxf(fmaxf(s_wmax[0], s_wmax[1]), fmaxf(s_wmax[2], s_wmax[3]));
      int k = exponent_field(T) - exponent_field(my_si);  // >= 0: T is the maximum
      const int kmax = kMode == SatMode::paper_kernel ? 15 : int(kMaxShiftExact);
      s_k[t] = std::uint8_t(k < 0 ? 0 : (k > kmax ? kmax : k));
      s_zero[t] = my_si == 0.0f;
      if (col0 + t < K) out_si[std::size_t(blockIdx.x) * K + col0 + t] = T;
    }
    __syncthreads();
  }

  // 2. Load, rewrite, stage row-major.
  const bool vec_load = (K % 16 == 0);
  uint4 v[4];
#pragma unroll
  for (int it = 0; it < 4; ++it) {
    const int i = t + kThreads * it, r = i >> 3, j = i & 7;
    const std::size_t c = col0 + j * 16;
    v[it] = make_uint4(0, 0, 0, 0);
    if (std::uint32_t(r) < rt.row_count) {
      const std::uint8_t* src = codes + (rt.row_begin + r) * K + c;
      if (vec_load && c + 16 <= K) {
        v[it] = __ldg(reinterpret_cast<const uint4*>(src));
      } else {
        std::uint32_t w[4] = {0, 0, 0, 0};
        for (int b = 0; b < 16; ++b)
          if (c + b < K) w[b >> 2] |= std::uint32_t(src[b]) << (8 * (b & 3));
        v[it] = make_uint4(w[0], w[1], w[2], w[3]);
      }
    }
  }
#pragma unroll
  for (int it = 0; it < 4; ++it) {
    const int i = t + kThreads * it, r = i >> 3, j = i & 7;
    std::uint32_t k = 0;
    bool zr = false;
    if constexpr (kMode != SatMode::plain) {
      k = s_k[r];
      zr = s_zero[r];
    }
    uint4 w = v[it];
    w.x = transform_word<kMode>(w.x, k, zr);
    w.y = transform_word<kMode>(w.y, k, zr);
    w.z = transform_word<kMode>(w.z, k, zr);
    w.w = transform_word<kMode>(w.w, k, zr);
    *reinterpret_cast<uint4*>(&tile[r][(j ^ ((r >> 4) & 7)) * 16]) = w;  // swizzle: see step 3
  }
  __syncthreads();

  // 3. Transpose 16 rows x 4 columns per thread, 4 output rows x 16 bytes out. Eight lanes share a column
  // group, so each output row's 128 bytes go out as one full line per warp store. Their reads sit 16 rows
  // apart (same bank unswizzled); the 16-byte chunk index is XORed with (row / 16) % 8 in step 2, which puts
  // the warp's 32 words in 32 banks.
  const int rc = t & 7, cg = (t >> 5) * 4 + ((t >> 3) & 3);
  const int wsw = cg ^ (rc * 4);  // swizzled word index (chunk j = cg / 4 XOR rc)
  std::uint32_t w[16];
#pragma unroll
  for (int i = 0; i < 16; ++i) w[i] = *reinterpret_cast<const std::uint32_t*>(&tile[rc * 16 + i][wsw * 4]);
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
  const bool vec_store = (M % 16 == 0) && (rt.row_begin % 16 == 0) && r0 + 16 <= rt.row_count;
#pragma unroll
  for (int q = 0; q < 4; ++q) {
    const std::size_t c = col0 + cg * 4 + q;
    if (c >= K || r0 >= rt.row_count) continue;
    std::uint8_t* dst = out + c * M + rt.row_begin + r0;
    if (vec_store) {
      *reinterpret_cast<uint4*>(dst) = make_uint4(o[q][0], o[q][1], o[q][2], o[q][3]);
    } else {
      for (std::uint32_t b = 0; b < 16 && r0 + b < rt.row_count; ++b)
        dst[b] = std::uint8_t(o[q][b >> 2] >> (8 * (b & 3)));
    }
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

cudaError_t sat_transpose_e4m3_1x128(const std::uint8_t* d_codes, const float* d_si, std::size_t rows,
                                     std::size_t cols, const RowTile* d_tiles, std::size_t n_tiles, SatMode mode,
                                     std::uint8_t* d_out_codes, float* d_out_si, cudaStream_t s) {
  if (n_tiles == 0 || cols == 0) return cudaSuccess;
  const dim3 grid(unsigned(n_tiles), unsigned((cols + kSatTile - 1) / kSatTile));
  switch (mode) {
    case SatMode::plain:
      sat_e4m3_1x128_kernel<SatMode::plain><<<grid, kThreads, 0, s>>>(d_codes, d_si, rows, cols, d_tiles,
                                                                       d_out_codes, d_out_si);
      break;
    case SatMode::paper_kernel:
      sat_e4m3_1x128_kernel<SatMode::paper_kernel><<<grid, kThreads, 0, s>>>(d_codes, d_si, rows, cols, d_tiles,
                                                                              d_out_codes, d_out_si);
      break;
    case SatMode::exact:
      sat_e4m3_1x128_kernel<SatMode::exact><<<grid, kThreads, 0, s>>>(d_codes, d_si, rows, cols, d_tiles,
                                                                       d_out_codes, d_out_si);
      break;
  }
  return cudaGetLastError();
}

}  // namespace fp8flow::cuda
