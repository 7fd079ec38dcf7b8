#include "cuda/format_validation.hpp"

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <chrono>
#include <stdexcept>
#include <string>

#include "formats/convert.hpp"

namespace fp8flow::cuda {
namespace {

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(e));
}

struct DeviceTally {
  unsigned long long mismatches;
  unsigned long long first;  // lowest mismatching input (atomicMin)
};

__device__ std::uint8_t ptx_cvt_f32_to_fp8(float x, bool is_e5m2) {
  unsigned short r;
  if (is_e5m2) asm("{cvt.rn.satfinite.e5m2x2.f32 %0, %2, %1;}\n" : "=h"(r) : "f"(x), "f"(0.0f));
  else asm("{cvt.rn.satfinite.e4m3x2.f32 %0, %2, %1;}\n" : "=h"(r) : "f"(x), "f"(0.0f));
  return std::uint8_t(r & 0xFF);
}

__global__ void encode_all_kernel(bool is_e5m2, DeviceTally* t) {
  const unsigned long long stride = std::uint64_t(gridDim.x) * blockDim.x;
  for (unsigned long long i = blockIdx.x * std::uint64_t(blockDim.x) + threadIdx.x; i < (1ull << 32); i += stride) {
    const std::uint32_t bits = std::uint32_t(i);
    const std::uint8_t hw = ptx_cvt_f32_to_fp8(__uint_as_float(bits), is_e5m2);
    const std::uint8_t ours =
        is_e5m2 ? std::uint8_t(encode_bits<e5m2, float, Rounding::rne, Overflow::satfinite>(bits))
             : std::uint8_t(encode_bits<e4m3, float, Rounding::rne, Overflow::satfinite>(bits));
    if (hw != ours) {
      atomicAdd(&t->mismatches, 1ull);
      atomicMin(&t->first, i);
    }
  }
}

__global__ void encode_one_kernel(bool is_e5m2, std::uint32_t bits, std::uint8_t* out) {
  *out = ptx_cvt_f32_to_fp8(__uint_as_float(bits), is_e5m2);
}

__global__ void decode_all_kernel(bool is_e5m2, float* hw, float* ours) {
  const unsigned c = threadIdx.x;
  unsigned int r;
  const unsigned short in = (unsigned short)c;
  if (is_e5m2) asm("{cvt.rn.f16x2.e5m2x2 %0, %1;}\n" : "=r"(r) : "h"(in));
  else asm("{cvt.rn.f16x2.e4m3x2 %0, %1;}\n" : "=r"(r) : "h"(in));
  __half_raw h;
  h.x = (unsigned short)(r & 0xFFFF);
  hw[c] = __half2float(__half(h));
  ours[c] = is_e5m2 ? decode_as<e5m2, float>(c) : decode_as<e4m3, float>(c);
}

}  // namespace

std::string gpu_name() {
  cudaDeviceProp p{};
  check(cudaGetDeviceProperties(&p, 0), "cudaGetDeviceProperties");
  return p.name;
}

ExhaustiveResult check_encode_all_f32_vs_ptx(bool is_e5m2) {
  ExhaustiveResult r;
  r.what = is_e5m2 ? "encode e5m2 rne satfinite, all 2^32 f32, vs PTX cvt.rn.satfinite.e5m2x2.f32"
                : "encode e4m3 rne satfinite, all 2^32 f32, vs PTX cvt.rn.satfinite.e4m3x2.f32";
  DeviceTally* d = nullptr;
  check(cudaMalloc(&d, sizeof(DeviceTally)), "cudaMalloc");
  const DeviceTally init{0, ~0ull};
  check(cudaMemcpy(d, &init, sizeof init, cudaMemcpyHostToDevice), "cudaMemcpy");
  const auto t0 = std::chrono::steady_clock::now();
  encode_all_kernel<<<132 * 16, 256>>>(is_e5m2, d);
  check(cudaGetLastError(), "encode_all_kernel launch");
  check(cudaDeviceSynchronize(), "encode_all_kernel");
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  DeviceTally h{};
  check(cudaMemcpy(&h, d, sizeof h, cudaMemcpyDeviceToHost), "cudaMemcpy");
  cudaFree(d);
  r.checked = 1ull << 32;
  r.mismatches = h.mismatches;
  if (h.mismatches) {
    r.first_input = std::uint32_t(h.first);
    r.ours = is_e5m2 ? encode_bits<e5m2, float, Rounding::rne, Overflow::satfinite>(r.first_input)
                  : encode_bits<e4m3, float, Rounding::rne, Overflow::satfinite>(r.first_input);
    std::uint8_t* one = nullptr;
    check(cudaMalloc(&one, 1), "cudaMalloc");
    encode_one_kernel<<<1, 1>>>(is_e5m2, r.first_input, one);
    std::uint8_t hw = 0;
    check(cudaMemcpy(&hw, one, 1, cudaMemcpyDeviceToHost), "cudaMemcpy");
    cudaFree(one);
    r.hardware = hw;
  }
  return r;
}

ExhaustiveResult check_decode_all_codes_vs_ptx(bool is_e5m2) {
  ExhaustiveResult r;
  r.what = is_e5m2 ? "decode e5m2, all 256 codes, vs PTX cvt.rn.f16x2.e5m2x2" : "decode e4m3, all 256 codes, vs PTX cvt.rn.f16x2.e4m3x2";
  float *hw = nullptr, *ours = nullptr;
  check(cudaMalloc(&hw, 256 * sizeof(float)), "cudaMalloc");
  check(cudaMalloc(&ours, 256 * sizeof(float)), "cudaMalloc");
  decode_all_kernel<<<1, 256>>>(is_e5m2, hw, ours);
  check(cudaGetLastError(), "decode_all_kernel launch");
  float h_hw[256], h_ours[256];
  check(cudaMemcpy(h_hw, hw, sizeof h_hw, cudaMemcpyDeviceToHost), "cudaMemcpy");
  check(cudaMemcpy(h_ours, ours, sizeof h_ours, cudaMemcpyDeviceToHost), "cudaMemcpy");
  cudaFree(hw);
  cudaFree(ours);
  r.checked = 256;
  for (unsigned c = 0; c < 256; ++c) {
    const std::uint32_t a = std::bit_cast<std::uint32_t>(h_hw[c]), b = std::bit_cast<std::uint32_t>(h_ours[c]);
    const bool both_nan = (a & 0x7FFFFFFFu) > 0x7F800000u && (b & 0x7FFFFFFFu) > 0x7F800000u;
    if (a != b && !both_nan) {
      if (r.mismatches++ == 0) {
        r.first_input = c;
        r.ours = b;
        r.hardware = a;
      }
    }
  }
  return r;
}

}  // namespace fp8flow::cuda
