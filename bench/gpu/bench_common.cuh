// Helpers shared by the CUDA-event benchmarks in bench/gpu: error check, device allocation, a
// counter-based hash for filling inputs on the device.
#pragma once
#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

namespace fp8flow::bench {

inline void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    std::fprintf(stderr, "CUDA error in %s: %s\n", what, cudaGetErrorString(e));
    std::exit(1);
  }
}

template <class T>
T* dalloc(std::size_t n) {
  T* p = nullptr;
  check(cudaMalloc(&p, std::max<std::size_t>(n, 1) * sizeof(T)), "cudaMalloc");
  return p;
}

// splitmix64's finaliser: one well-mixed 32-bit value per index.
__device__ inline std::uint32_t mix(std::uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ULL;
  return std::uint32_t(x ^ (x >> 33));
}

}  // namespace fp8flow::bench
