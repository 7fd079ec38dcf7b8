// Reference expert kernels (see ep_expert_kernels.hpp). Every rounding is an explicit _rn intrinsic so
// that nvcc's FMA contraction cannot change an operation the CPU does separately.
#include <cuda_bf16.h>
#include <cuda_fp8.h>

#include "cuda/ep_expert_kernels.hpp"
#include "formats/convert.hpp"

namespace fp8flow::cuda {
namespace {

constexpr int kBlock = 128;                         // K block of the scales, and threads per block
constexpr float kFmax = float(max_finite(e4m3));    // 448
constexpr float kSwigluAmaxFloor = 1e-10f;          // scale_rules.cpp: kPaperSwigluAmaxFloor

__device__ __forceinline__ float bf16_to_float(std::uint16_t b) { return __uint_as_float(std::uint32_t(b) << 16); }
__device__ __forceinline__ std::uint16_t float_to_bf16_rne(float f) {
  return __bfloat16_as_ushort(__float2bfloat16_rn(f));  // RNE, overflow to Inf (round_to bf16, kRneNonsat)
}

__global__ void __launch_bounds__(kBlock) gemm_kernel(const std::uint8_t* __restrict__ a,
                                                      const float* __restrict__ a_si, std::size_t M, std::size_t K,
                                                      const std::uint8_t* __restrict__ b,
                                                      const float* __restrict__ b_si, std::size_t N,
                                                      const std::int32_t* __restrict__ row_expert,
                                                      std::uint16_t* __restrict__ out) {
  __shared__ float lut[256];
  for (int c = threadIdx.x; c < 256; c += blockDim.x) lut[c] = decode_as<e4m3, float>(std::uint32_t(c));
  __syncthreads();
  const std::size_t i = blockIdx.x, n = std::size_t(blockIdx.y) * kBlock + threadIdx.x;
  if (i >= M || n >= N) return;
  const std::size_t e = std::size_t(row_expert[i]);
  const std::size_t kblocks = (K + kBlock - 1) / kBlock, ntiles = (N + kBlock - 1) / kBlock;
  const std::uint8_t* ar = a + i * K;
  const std::uint8_t* br = b + (e * N + n) * K;
  const float* bs = b_si + (e * ntiles + n / kBlock) * kblocks;
  float total = 0.0f;
  for (std::size_t kb = 0; kb < kblocks; ++kb) {
    const std::size_t k0 = kb * kBlock, k1 = k0 + kBlock < K ? k0 + kBlock : K;
    float acc = 0.0f;  // fp32_seq: products (exact for e4m3) added in k order
    for (std::size_t k = k0; k < k1; ++k) acc = __fadd_rn(acc, __fmul_rn(lut[ar[k]], lut[br[k]]));
    const float s = __fmul_rn(a_si[i * kblocks + kb], bs[kb]);
    total = __fmaf_rn(acc, s, total);  // DeepGEMM: final_accum += scale * accum
  }
  out[i * N + n] = float_to_bf16_rne(total);
}

__global__ void __launch_bounds__(kBlock) swiglu_kernel(const std::uint16_t* __restrict__ h,
                                                        const float* __restrict__ prob, std::size_t M, std::size_t F,
                                                        std::uint8_t* __restrict__ act, float* __restrict__ act_si) {
  __shared__ float s_amax[kBlock / 32];
  const std::size_t i = blockIdx.x;
  const std::size_t blocks = (F + kBlock - 1) / kBlock;
  const double w = double(prob[i]);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  for (std::size_t cb = 0; cb < blocks; ++cb) {
    const std::size_t f = cb * kBlock + threadIdx.x;
    const bool valid = f < F;
    float y = 0.0f;
    if (valid) {
      const double av = double(bf16_to_float(h[i * 2 * F + f]));
      const double bv = double(bf16_to_float(h[i * 2 * F + F + f]));
      // moe::swiglu_forward: a * sigmoid(a) * b * w, sigmoid(a) = 1 / (1 + exp(-a)), left to right.
      const double sg = __ddiv_rn(1.0, __dadd_rn(1.0, exp(-av)));
      y = __double2float_rn(__dmul_rn(__dmul_rn(__dmul_rn(av, sg), bv), w));
    }
    float a = valid ? fabsf(y) : 0.0f;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) a = fmaxf(a, __shfl_xor_sync(0xFFFFFFFFu, a, o));
    if (lane == 0) s_amax[warp] = a;
    __syncthreads();
    float amax = 0.0f;
    for (int w2 = 0; w2 < kBlock / 32; ++w2) amax = fmaxf(amax, s_amax[w2]);
    __syncthreads();
    amax = fmaxf(amax, kSwigluAmaxFloor);
    const std::uint32_t tb = __float_as_uint(__fdiv_rn(amax, kFmax));
    const std::uint32_t ex = ((tb >> 23) & 0xFFu) + ((tb & 0x7FFFFFu) != 0 ? 1u : 0u);  // ceil to 2^k
    const float si = __uint_as_float(ex << 23);
    if (threadIdx.x == 0) act_si[i * blocks + cb] = si;
    if (valid)
      act[i * F + f] = std::uint8_t(__nv_cvt_float_to_fp8(__fdiv_rn(y, si), __NV_SATFINITE, __NV_E4M3));
  }
}

}  // namespace

cudaError_t gemm_e4m3_fp32_seq_1x128_128x128_bf16(const std::uint8_t* a, const float* a_si, std::size_t M,
                                                  std::size_t K, const std::uint8_t* b, const float* b_si,
                                                  std::size_t N, const std::int32_t* row_expert,
                                                  std::uint16_t* out, cudaStream_t s) {
  if (M == 0 || N == 0) return cudaSuccess;
  const dim3 grid(unsigned(M), unsigned((N + kBlock - 1) / kBlock));  // rows on x: no 65535 limit
  gemm_kernel<<<grid, kBlock, 0, s>>>(a, a_si, M, K, b, b_si, N, row_expert, out);
  return cudaGetLastError();
}

cudaError_t swiglu_quant_e4m3_1x128_paper_swiglu(const std::uint16_t* h, const float* prob, std::size_t M,
                                                 std::size_t F, std::uint8_t* act, float* act_si, cudaStream_t s) {
  if (M == 0 || F == 0) return cudaSuccess;
  swiglu_kernel<<<unsigned(M), kBlock, 0, s>>>(h, prob, M, F, act, act_si);
  return cudaGetLastError();
}

}  // namespace fp8flow::cuda
