// fp8flow-gemm-bench: FP8 e4m3 GEMM through cuBLASLt (src/cuda/gemm_cublaslt.hpp), D = A . B^T, at
// M = N = K = 8192 by default: tensorwise, blockwise 1x128 x 128x128 and 1x128 x 1x128, fast accumulation
// on and off, bf16 output (and fp32 for tensorwise). Timed with CUDA events: median of --reps single calls
// after warm-up, reported as ms and TFLOP/s (2 M N K flops). The cuBLASLt heuristic's first algorithm is
// used (split-K allowed), as torch._scaled_mm does; compare with bench/gpu/torch_scaled_mm.py run on the
// same GPU. Usage: fp8flow-gemm-bench [--shape M,N,K] [--reps N]
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "cuda/format_validation.hpp"
#include "cuda/gemm_cublaslt.hpp"

#include "bench_common.cuh"

using namespace fp8flow;
using namespace fp8flow::cuda;

namespace {
using fp8flow::bench::check;
using fp8flow::bench::mix;

// e4m3 codes of magnitude 2^-3 .. 2^2 with random sign and mantissa (realistic, no NaN/Inf).
__global__ void fill_codes(std::uint8_t* c, std::size_t n, std::uint64_t seed) {
  for (std::size_t i = blockIdx.x * std::size_t(blockDim.x) + threadIdx.x; i < n;
       i += std::size_t(gridDim.x) * blockDim.x) {
    const std::uint32_t h = mix(i * 0x9E3779B97F4A7C15ULL + seed);
    c[i] = std::uint8_t((h & 0x80) | ((4 + (h >> 8) % 6) << 3) | ((h >> 16) & 7));
  }
}
__global__ void fill_scales(float* s, std::size_t n, std::uint64_t seed) {
  for (std::size_t i = blockIdx.x * std::size_t(blockDim.x) + threadIdx.x; i < n;
       i += std::size_t(gridDim.x) * blockDim.x)
    s[i] = 0.5f + float(mix(i + seed) % 1024) / 1024.0f;
}

}  // namespace

int main(int argc, char** argv) {
  std::size_t M = 8192, N = 8192, K = 8192;
  int reps = 30;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--reps") && i + 1 < argc) {
      reps = std::max(1, std::atoi(argv[++i]));
    } else if (!std::strcmp(argv[i], "--shape") && i + 1 < argc) {
      if (std::sscanf(argv[++i], "%zu,%zu,%zu", &M, &N, &K) != 3 || !M || !N || !K) {
        std::fprintf(stderr, "--shape: expected M,N,K\n");
        return 2;
      }
    } else {
      std::fprintf(stderr, "usage: fp8flow-gemm-bench [--shape M,N,K] [--reps N]\n");
      return 2;
    }
  }
  int dev_count = 0;
  if (cudaGetDeviceCount(&dev_count) != cudaSuccess || dev_count == 0) {
    std::printf("SKIPPED: no CUDA device visible\n");
    return 77;
  }
  std::printf("GPU: %s; FP8 e4m3 GEMM D[M,N] = A[M,K] . B[N,K]^T, M=%zu N=%zu K=%zu, median of %d\n",
              gpu_name().c_str(), M, N, K, reps);
  std::uint8_t *a = nullptr, *b = nullptr;
  float *sa = nullptr, *sb = nullptr;
  void* d = nullptr;
  const std::size_t kb = (K + 127) / 128;
  const std::size_t ns = std::max(M, N) * ((kb + 3) / 4 * 4) + 16;
  check(cudaMalloc(&a, M * K), "malloc A");
  check(cudaMalloc(&b, N * K), "malloc B");
  check(cudaMalloc(&sa, ns * 4), "malloc SA");
  check(cudaMalloc(&sb, ns * 4), "malloc SB");
  check(cudaMalloc(&d, M * N * 4), "malloc D");
  fill_codes<<<1024, 256>>>(a, M * K, 1);
  fill_codes<<<1024, 256>>>(b, N * K, 2);
  fill_scales<<<256, 256>>>(sa, ns, 3);
  fill_scales<<<256, 256>>>(sb, ns, 4);
  check(cudaDeviceSynchronize(), "fill");
  cudaEvent_t e0, e1;
  check(cudaEventCreate(&e0), "event");
  check(cudaEventCreate(&e1), "event");
  std::printf("%-16s %-5s %-5s %10s %10s  %s\n", "scaling", "fast", "out", "ms", "TFLOP/s", "cuBLASLt algorithm");
  for (const auto sc : {GemmScaling::tensor, GemmScaling::blk_1x128_128x128, GemmScaling::blk_1x128_1x128})
    for (const bool fast : {false, true})
      for (const auto out : {GemmOutType::bf16, GemmOutType::f32}) {
        if (out == GemmOutType::f32 && sc != GemmScaling::tensor) continue;
        CublasGemmConfig cfg;
        cfg.fast_accum = fast;
        cfg.out = out;
        cfg.allow_split_k = true;
        try {
          CublasFp8Gemm g(M, N, K, sc, cfg);
          for (int w = 0; w < 5; ++w) g.run(a, b, sa, sb, d);
          check(cudaDeviceSynchronize(), "warm-up");
          std::vector<float> ms(reps);
          for (auto& t : ms) {
            check(cudaEventRecord(e0), "record");
            g.run(a, b, sa, sb, d);
            check(cudaEventRecord(e1), "record");
            check(cudaEventSynchronize(e1), "sync");
            check(cudaEventElapsedTime(&t, e0, e1), "elapsed");
          }
          std::sort(ms.begin(), ms.end());
          const double med = ms[ms.size() / 2];
          std::printf("%-16s %-5d %-5s %10.4f %10.1f  %s\n", to_string(sc).c_str(), fast ? 1 : 0,
                      out == GemmOutType::f32 ? "f32" : "bf16", med, 2.0 * M * N * K / (med * 1e-3) / 1e12,
                      g.algo().to_string().c_str());
        } catch (const std::exception& ex) {
          std::printf("%-16s %-5d %-5s refused: %s\n", to_string(sc).c_str(), fast ? 1 : 0,
                      out == GemmOutType::f32 ? "f32" : "bf16", ex.what());
        }
      }
  cudaFree(a), cudaFree(b), cudaFree(sa), cudaFree(sb), cudaFree(d);
  return 0;
}
