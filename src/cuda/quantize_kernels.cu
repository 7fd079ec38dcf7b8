// 1x128 + 128x1 te_* quantization, naive transpose and dequantize (see quantize_kernels.hpp).
// One 256-thread block per 128x128 tile, staged in shared memory in the input's own type:
//   rowwise: a warp per row (16 rows per warp), 4 elements per lane, fmaxf warp reduction;
//   columnwise: two threads per column (64 rows each), lanes on consecutive columns (no bank conflicts).
// The element cast is the hardware's cvt.rn.satfinite.e4m3x2.f32, which the formats_encode_exhaustive GPU
// test checks equal to the shared encoder (encode_bits) on all 2^32 fp32 inputs.
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include <cfloat>
#include <cstdint>

#include "cuda/quantize_kernels.hpp"
#include "formats/convert.hpp"

namespace fp8flow::cuda {
namespace {

constexpr int kThreads = 256;
constexpr float kFmax = float(max_finite(e4m3));  // 448
constexpr std::uint32_t kBf16MaxBits = 0x7F7F0000u; // largest finite bf16 as fp32 (TE clamps to the input's)
constexpr std::uint32_t kPow2Mask = 0xFF800000u;    // sign + exponent: 2^floor(log2 scale)

// TE Float8BlockQuantizer scale (PAPER.md 3.1); returns the scale (elements are multiplied by it).
__device__ __forceinline__ float te_scale(float amax, float eps, bool pow2, bool bf16_input) {
  if (amax < eps) amax = eps;
  if (amax == 0.0f || isinf(amax) || isnan(amax)) return 1.0f;
  float scale = __fdiv_rn(kFmax, amax);
  if (isinf(scale)) scale = bf16_input ? __uint_as_float(kBf16MaxBits) : FLT_MAX;
  if (pow2) scale = __uint_as_float(__float_as_uint(scale) & kPow2Mask);
  return scale;
}

__device__ __forceinline__ std::uint32_t cvt2(float a, float b) {  // a -> low byte
  return std::uint32_t(__nv_cvt_float2_to_fp8x2(make_float2(a, b), __NV_SATFINITE, __NV_E4M3));
}
__device__ __forceinline__ std::uint32_t cvt4(float a, float b, float c, float d) {
  return cvt2(a, b) | (cvt2(c, d) << 16);
}

// ---- Tile loaders: fill smem[128][128] (type Elem) with the tile, zeros outside the tensor ------------
struct LoadF32 {
  using Elem = float;
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
  const std::uint16_t* x;
  static __device__ float value(std::uint16_t v) { return __uint_as_float(std::uint32_t(v) << 16); }
  __device__ void load(Elem* sm, RowTile rt, std::size_t col0, std::size_t K, int t) const {
    const bool vec = K % 8 == 0;
#pragma unroll 4
    for (int i = t; i < kSatTile * 16; i += kThreads) {  // 16 x 8 bf16 per row
      const int r = i >> 4, j = i & 15;
      const std::size_t c = col0 + j * 8;
      uint4 v = make_uint4(0, 0, 0, 0);
      if (std::uint32_t(r) < rt.row_count) {
        const std::uint16_t* src = x + (rt.row_begin + r) * K + c;
        if (vec && c + 8 <= K) v = __ldg(reinterpret_cast<const uint4*>(src));
        else {
          std::uint16_t h[8] = {0, 0, 0, 0, 0, 0, 0, 0};
          for (int b = 0; b < 8; ++b)
            if (c + b < K) h[b] = src[b];
          v = make_uint4(h[0] | std::uint32_t(h[1]) << 16, h[2] | std::uint32_t(h[3]) << 16,
                         h[4] | std::uint32_t(h[5]) << 16, h[6] | std::uint32_t(h[7]) << 16);
        }
      }
      *reinterpret_cast<uint4*>(sm + r * kSatTile + j * 8) = v;
    }
  }
};

// The naive transpose's input: RN32(value(q) * si), the fp32 dequantization.
struct LoadDequant {
  using Elem = float;
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

template <class Loader>
__global__ void __launch_bounds__(kThreads) quant_e4m3_1x128_128x1_kernel(
    Loader ld, std::size_t M, std::size_t K, const RowTile* __restrict__ tiles, TeQuantParams p, bool bf16_input,
    std::uint8_t* __restrict__ row_codes, float* __restrict__ row_si, std::uint8_t* __restrict__ col_codes,
    float* __restrict__ col_si) {
  using Elem = typename Loader::Elem;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  Elem* sm = reinterpret_cast<Elem*>(smem_raw);
  __shared__ float s_cmax[2][kSatTile];
  // Columnwise codes, [column][row], 16-byte chunks XOR-swizzled by column % 8 (conflict-free both ways).
  __shared__ __align__(16) std::uint8_t s_out[kSatTile][kSatTile];
  const int t = threadIdx.x, lane = t & 31, warp = t >> 5;
  const RowTile rt = tiles[blockIdx.x];
  const std::size_t cb = blockIdx.y, col0 = cb * kSatTile, scols = (K + kSatTile - 1) / kSatTile;
  ld.load(sm, rt, col0, K, t);
  __syncthreads();

  if (row_codes) {  // 1x128 rowwise: warp per row
    const std::size_t c = col0 + lane * 4;
    for (int rr = 0; rr < 16; ++rr) {
      const int r = warp * 16 + rr;
      if (std::uint32_t(r) >= rt.row_count) break;
      const Elem* src = sm + r * kSatTile + lane * 4;
      const float x0 = Loader::value(src[0]), x1 = Loader::value(src[1]), x2 = Loader::value(src[2]),
                  x3 = Loader::value(src[3]);
      float a = fmaxf(fmaxf(fmaxf(fmaxf(0.0f, fabsf(x0)), fabsf(x1)), fabsf(x2)), fabsf(x3));
#pragma unroll
      for (int o = 16; o > 0; o >>= 1) a = fmaxf(a, __shfl_xor_sync(0xFFFFFFFFu, a, o));
      const float scale = te_scale(a, p.eps, p.pow2, bf16_input);
      const std::size_t row = rt.row_begin + r;
      if (lane == 0) row_si[row * scols + cb] = __fdiv_rn(1.0f, scale);
      const std::uint32_t q = cvt4(__fmul_rn(x0, scale), __fmul_rn(x1, scale), __fmul_rn(x2, scale),
                                   __fmul_rn(x3, scale));
      std::uint8_t* dst = row_codes + row * K + c;
      if (K % 4 == 0 && c + 4 <= K) *reinterpret_cast<std::uint32_t*>(dst) = q;
      else
        for (int b = 0; b < 4; ++b)
          if (c + b < K) dst[b] = std::uint8_t(q >> (8 * b));
    }
  }

  if (col_codes) {  // 128x1 columnwise, stored transposed: two threads per column
    const int c = t & (kSatTile - 1), h = t >> 7;
    const int rbeg = h * 64;
    float a = 0.0f;
    for (int r = rbeg; r < rbeg + 64; ++r) a = fmaxf(a, fabsf(Loader::value(sm[r * kSatTile + c])));
    s_cmax[h][c] = a;
    __syncthreads();
    const float scale = te_scale(fmaxf(s_cmax[0][c], s_cmax[1][c]), p.eps, p.pow2, bf16_input);
#pragma unroll
    for (int ch = 0; ch < 4; ++ch) {  // encode this thread's 64 rows of column c into s_out
      const int r0 = rbeg + ch * 16;
      std::uint32_t w[4];
#pragma unroll
      for (int u = 0; u < 4; ++u) {
        const int r = r0 + u * 4;
        w[u] = cvt4(__fmul_rn(Loader::value(sm[(r + 0) * kSatTile + c]), scale),
                    __fmul_rn(Loader::value(sm[(r + 1) * kSatTile + c]), scale),
                    __fmul_rn(Loader::value(sm[(r + 2) * kSatTile + c]), scale),
                    __fmul_rn(Loader::value(sm[(r + 3) * kSatTile + c]), scale));
      }
      *reinterpret_cast<uint4*>(&s_out[c][((r0 >> 4) ^ (c & 7)) * 16]) = make_uint4(w[0], w[1], w[2], w[3]);
    }
    if (h == 0 && col0 + c < K) col_si[std::size_t(blockIdx.x) * K + col0 + c] = __fdiv_rn(1.0f, scale);
    __syncthreads();
    // Eight threads per output row: each 128-byte row segment goes out as one line.
    const bool vec = M % 16 == 0 && rt.row_begin % 16 == 0;
#pragma unroll
    for (int it = 0; it < 4; ++it) {
      const int i = t + kThreads * it, cc = i >> 3, j = i & 7;
      const std::size_t col = col0 + cc;
      const std::uint32_t r0 = std::uint32_t(j * 16);
      if (col >= K || r0 >= rt.row_count) continue;
      const uint4 v = *reinterpret_cast<const uint4*>(&s_out[cc][(j ^ (cc & 7)) * 16]);
      std::uint8_t* dst = col_codes + col * M + rt.row_begin + r0;
      if (vec && r0 + 16 <= rt.row_count) {
        *reinterpret_cast<uint4*>(dst) = v;
      } else {
        const std::uint32_t wv[4] = {v.x, v.y, v.z, v.w};
        for (std::uint32_t b = 0; b < 16 && r0 + b < rt.row_count; ++b) dst[b] = std::uint8_t(wv[b >> 2] >> (8 * (b & 3)));
      }
    }
  }
}

template <class Loader>
cudaError_t launch(Loader ld, std::size_t rows, std::size_t cols, const RowTile* d_tiles, std::size_t n_tiles,
                   TeQuantParams p, bool bf16_input, std::uint8_t* rc, float* rs, std::uint8_t* cc, float* cs,
                   cudaStream_t s) {
  if (n_tiles == 0 || cols == 0) return cudaSuccess;
  constexpr int kSmem = kSatTile * kSatTile * int(sizeof(typename Loader::Elem));
  const auto kernel = quant_e4m3_1x128_128x1_kernel<Loader>;
  // Once per kernel and process (a static initialiser is thread-safe); kept out of the timed launches.
  static const cudaError_t attr = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmem);
  if (attr != cudaSuccess) return attr;
  const dim3 grid(unsigned(n_tiles), unsigned((cols + kSatTile - 1) / kSatTile));
  kernel<<<grid, kThreads, kSmem, s>>>(ld, rows, cols, d_tiles, p, bf16_input, rc, rs, cc, cs);
  return cudaGetLastError();
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

}  // namespace

cudaError_t quant_e4m3_1x128_128x1_te(const void* d_x, QuantInput input, std::size_t rows, std::size_t cols,
                                      const RowTile* d_tiles, std::size_t n_tiles, TeQuantParams p,
                                      std::uint8_t* d_row_codes, float* d_row_si, std::uint8_t* d_col_codes,
                                      float* d_col_si, cudaStream_t s) {
  if (input == QuantInput::bf16)
    return launch(LoadBf16{static_cast<const std::uint16_t*>(d_x)}, rows, cols, d_tiles, n_tiles, p, true,
                  d_row_codes, d_row_si, d_col_codes, d_col_si, s);
  return launch(LoadF32{static_cast<const float*>(d_x)}, rows, cols, d_tiles, n_tiles, p, false, d_row_codes,
                d_row_si, d_col_codes, d_col_si, s);
}

cudaError_t transpose_naive_e4m3_1x128(const std::uint8_t* d_codes, const float* d_si, std::size_t rows,
                                       std::size_t cols, const RowTile* d_tiles, std::size_t n_tiles, float eps,
                                       std::uint8_t* d_col_codes, float* d_col_si, cudaStream_t s) {
  return launch(LoadDequant{d_codes, d_si}, rows, cols, d_tiles, n_tiles, TeQuantParams{true, eps}, false, nullptr,
                nullptr, d_col_codes, d_col_si, s);
}

cudaError_t dequant_e4m3_1x128(const std::uint8_t* d_codes, const float* d_si, std::size_t rows, std::size_t cols,
                               float* d_out, cudaStream_t s) {
  if (rows * cols == 0) return cudaSuccess;
  dequant_e4m3_1x128_kernel<<<1024, 256, 0, s>>>(d_codes, d_si, rows, cols, d_out);
  return cudaGetLastError();
}

}  // namespace fp8flow::cuda
