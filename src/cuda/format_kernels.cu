// Device side of the shared format core: the same encode_bits/decode_as templates as the CPU golden
// model, compiled for sm_90. Used by the GPU validation (issue 8) and the GPU tests.
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/format_kernels.hpp"
#include "formats/convert.hpp"

namespace fp8flow::cuda {
namespace {

__global__ void encode_e4m3_rne_satfinite_kernel(const float* in, std::uint8_t* out, std::size_t n) {
  const std::size_t i = blockIdx.x * std::size_t(blockDim.x) + threadIdx.x;
  if (i < n)
    out[i] = std::uint8_t(
        encode_bits<e4m3, float, Rounding::rne, Overflow::satfinite>(__float_as_uint(in[i])));
}

}  // namespace

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) return 0;
  return n;
}

cudaError_t encode_e4m3_rne_satfinite(const float* d_in, std::uint8_t* d_out, std::size_t n, cudaStream_t s) {
  if (n == 0) return cudaSuccess;
  const unsigned blocks = unsigned((n + 255) / 256);
  encode_e4m3_rne_satfinite_kernel<<<blocks, 256, 0, s>>>(d_in, d_out, n);
  return cudaGetLastError();
}

}  // namespace fp8flow::cuda
