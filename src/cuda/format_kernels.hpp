#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace fp8flow::cuda {
int device_count();  // 0 when no driver or no GPU
// The shared core's e4m3 RNE satfinite encoder on the device (for checking it against PTX cvt).
cudaError_t encode_e4m3_rne_satfinite(const float* d_in, std::uint8_t* d_out, std::size_t n, cudaStream_t s = 0);
}  // namespace fp8flow::cuda
