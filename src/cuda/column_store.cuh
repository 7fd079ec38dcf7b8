// The column copies' global store, shared by the SAT and quantize kernels: 16 consecutive codes of one
// transposed row (16 rows of one column of the tile).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace fp8flow::cuda {

// dst[0, min(n, 16)) = the bytes of v (v.x's low byte first). One 16-byte store when `aligned` (dst on a
// 16-byte boundary) and all 16 are inside the tile (n >= 16); bytewise otherwise (the tile's last rows).
__device__ __forceinline__ void store_codes16(std::uint8_t* dst, uint4 v, std::uint32_t n, bool aligned) {
  if (aligned && n >= 16) {
    *reinterpret_cast<uint4*>(dst) = v;
    return;
  }
  const std::uint32_t w[4] = {v.x, v.y, v.z, v.w};
  for (std::uint32_t b = 0; b < 16 && b < n; ++b) dst[b] = std::uint8_t(w[b >> 2] >> (8 * (b & 3)));
}

}  // namespace fp8flow::cuda
