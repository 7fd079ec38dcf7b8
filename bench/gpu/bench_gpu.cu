// fp8flow-gpu-bench: the SAT (paper_kernel, exact), naive and plain e4m3 transposes and the quantize kernels
// from bf16 (1x128+128x1 v1 and v2, 128x128+transposed, te_pow2 and paper_swiglu) at the paper's shapes (PAPER.md 6), timed with CUDA events (median of repeats, L2
// flushed before each) and reported as time and % of the device-to-device copy bandwidth measured in the
// same run (bytes read + bytes written). Usage: fp8flow-gpu-bench [--reps N] [--quick]
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "cuda/quantize_kernels.hpp"
#include "cuda/sat_kernels.hpp"

#include "bench_common.cuh"

using namespace fp8flow::cuda;

namespace {
using fp8flow::bench::check;
using fp8flow::bench::dalloc;
using fp8flow::bench::mix;

// Random finite e4m3 codes (no NaN), power-of-two row scales 2^[-8, 7], bf16 values ~ N-ish(0, 1) * 2^[-4,4].
__global__ void fill_codes(std::uint8_t* c, std::size_t n) {
  for (std::size_t i = blockIdx.x * std::size_t(blockDim.x) + threadIdx.x; i < n; i += std::size_t(gridDim.x) * blockDim.x) {
    std::uint8_t b = std::uint8_t(mix(i));
    if ((b & 0x7F) == 0x7F) b ^= 1;
    c[i] = b;
  }
}
__global__ void fill_scales(float* s, std::size_t n) {
  for (std::size_t i = blockIdx.x * std::size_t(blockDim.x) + threadIdx.x; i < n; i += std::size_t(gridDim.x) * blockDim.x)
    s[i] = __uint_as_float(std::uint32_t(127 - 8 + int(mix(i + 77) % 16)) << 23);
}
__global__ void fill_bf16(std::uint16_t* x, std::size_t n) {
  for (std::size_t i = blockIdx.x * std::size_t(blockDim.x) + threadIdx.x; i < n; i += std::size_t(gridDim.x) * blockDim.x) {
    const std::uint32_t h = mix(i + 12345);
    const float v = (float(h & 0xFFFF) / 32768.0f - 1.0f) * __uint_as_float(std::uint32_t(127 - 4 + int((h >> 16) % 9)) << 23);
    x[i] = std::uint16_t(__float_as_uint(v) >> 16);
  }
}

struct Timer {
  cudaEvent_t a, b;
  void* flush;
  std::size_t flush_bytes;
  int reps;
  Timer(int r) : reps(r) {
    check(cudaEventCreate(&a), "event");
    check(cudaEventCreate(&b), "event");
    int l2 = 0;
    check(cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, 0), "attr");
    flush_bytes = std::size_t(l2) * 4;
    check(cudaMalloc(&flush, flush_bytes), "cudaMalloc flush");
  }
  // Median ms of fn() over reps, each after an L2 flush; fn returns its launch error.
  double median_ms(const std::function<cudaError_t()>& fn) {
    for (int w = 0; w < 3; ++w) check(fn(), "warm-up launch");
    check(cudaDeviceSynchronize(), "warm-up");
    std::vector<double> t;
    for (int i = 0; i < reps; ++i) {
      check(cudaMemsetAsync(flush, i & 0xFF, flush_bytes), "flush");
      check(cudaEventRecord(a), "record");
      check(fn(), "launch");
      check(cudaEventRecord(b), "record");
      check(cudaEventSynchronize(b), "sync");
      float ms = 0;
      check(cudaEventElapsedTime(&ms, a, b), "elapsed");
      t.push_back(ms);
    }
    std::sort(t.begin(), t.end());
    return t[t.size() / 2];
  }
};

// 8 unequal expert groups, multiples of 16 rows (the grouped GEMMs' alignment), summing to m.
std::vector<std::size_t> eight_groups(std::size_t m) {
  const double w[8] = {0.07, 0.19, 0.11, 0.16, 0.09, 0.14, 0.13, 0.11};
  std::vector<std::size_t> g;
  std::size_t used = 0;
  for (int i = 0; i < 7; ++i) {
    const std::size_t s = std::size_t(w[i] * double(m)) / 16 * 16;
    g.push_back(s);
    used += s;
  }
  g.push_back(m - used);
  return g;
}

__global__ void count_diff_kernel(const std::uint8_t* a, const std::uint8_t* b, std::size_t n,
                                  unsigned long long* count) {
  unsigned long long c = 0;
  for (std::size_t i = blockIdx.x * std::size_t(blockDim.x) + threadIdx.x; i < n; i += std::size_t(gridDim.x) * blockDim.x)
    c += a[i] != b[i];
  if (c) atomicAdd(count, c);
}
// Bytes that differ between two device buffers of n bytes.
unsigned long long count_diff(const void* a, const void* b, std::size_t n) {
  unsigned long long* d = dalloc<unsigned long long>(1);
  check(cudaMemset(d, 0, sizeof *d), "memset");
  count_diff_kernel<<<1024, 256>>>(static_cast<const std::uint8_t*>(a), static_cast<const std::uint8_t*>(b), n, d);
  unsigned long long h = 0;
  check(cudaMemcpy(&h, d, sizeof h, cudaMemcpyDeviceToHost), "count_diff");
  check(cudaFree(d), "free");
  return h;
}

struct Row {
  std::string kernel;
  std::size_t m, k;
  int groups;
  double ms, bytes;
};

}  // namespace

int main(int argc, char** argv) {
  int reps = 20;
  bool quick = false;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--reps") && i + 1 < argc) reps = std::atoi(argv[++i]);
    else if (!std::strcmp(argv[i], "--quick")) quick = true;
  }
  int ndev = 0;
  if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev == 0) {
    std::printf("SKIPPED: no CUDA device\n");
    return 77;
  }
  cudaDeviceProp prop{};
  check(cudaGetDeviceProperties(&prop, 0), "props");
  Timer timer(reps);

  // Copy bandwidth: 1 GiB device-to-device, bytes read + written.
  const std::size_t copy_bytes = std::size_t(1) << 30;
  std::uint8_t* c0 = dalloc<std::uint8_t>(copy_bytes);
  std::uint8_t* c1 = dalloc<std::uint8_t>(copy_bytes);
  fill_codes<<<1024, 256>>>(c0, copy_bytes);
  const double copy_ms = timer.median_ms([&] { return cudaMemcpyAsync(c1, c0, copy_bytes, cudaMemcpyDeviceToDevice); });
  const double copy_gbs = 2.0 * double(copy_bytes) / (copy_ms * 1e-3) / 1e9;
  check(cudaFree(c0), "free");
  check(cudaFree(c1), "free");
  std::printf("GPU: %s (%d SMs, L2 %d MB)\ncopy bandwidth (cudaMemcpy D2D, 1 GiB, read+write): %.0f GB/s\n\n",
              prop.name, prop.multiProcessorCount, prop.l2CacheSize >> 20, copy_gbs);

  std::vector<std::pair<std::size_t, std::size_t>> shapes = {{28672, 1280}, {24576, 2048}, {24576, 5120},
                                                             {32768, 7168}, {32768, 8192}, {32768, 9216}};
  if (quick) shapes = {{32768, 7168}};
  std::vector<Row> rows;
  bool mismatch = false;
  for (const auto& [M, K] : shapes) {
    const std::size_t n = M * K, scols = (K + 127) / 128;
    std::uint8_t* codes = dalloc<std::uint8_t>(n);
    std::uint8_t* out = dalloc<std::uint8_t>(n);
    std::uint8_t* out2 = dalloc<std::uint8_t>(n);
    float* si = dalloc<float>(M * scols);
    std::uint16_t* x = dalloc<std::uint16_t>(n);
    fill_codes<<<2048, 256>>>(codes, n);
    fill_scales<<<256, 256>>>(si, M * scols);
    fill_bf16<<<2048, 256>>>(x, n);
    check(cudaGetLastError(), "fill");
    for (int ng : {1, 8}) {
      const std::vector<std::size_t> groups = ng == 1 ? std::vector<std::size_t>{} : eight_groups(M);
      const std::vector<RowTile> tiles = make_row_tiles(M, groups);
      RowTile* d_tiles = dalloc<RowTile>(tiles.size());
      check(cudaMemcpy(d_tiles, tiles.data(), tiles.size() * sizeof(RowTile), cudaMemcpyHostToDevice), "tiles");
      float* osi = dalloc<float>(tiles.size() * K);
      float* rsi = dalloc<float>(M * scols);
      const double sat_bytes = 2.0 * double(n) + 4.0 * double(M * scols) + 4.0 * double(tiles.size() * K);
      for (const SatMode mode : {SatMode::paper_kernel, SatMode::exact}) {
        const double ms = timer.median_ms(
            [&] { return sat_transpose_e4m3_1x128(codes, si, M, K, d_tiles, tiles.size(), mode, out, osi); });
        rows.push_back({mode == SatMode::exact ? "sat_e4m3_1x128_exact" : "sat_e4m3_1x128_paper_kernel", M, K, ng, ms,
                        sat_bytes});
      }
      if (ng == 1) {
        rows.push_back({"transpose_e4m3_plain", M, K, ng, timer.median_ms([&] {
                          return sat_transpose_e4m3_1x128(codes, si, M, K, d_tiles, tiles.size(), SatMode::plain, out,
                                                          osi);
                        }),
                        2.0 * double(n)});
        rows.push_back({"transpose_naive_e4m3_1x128", M, K, ng, timer.median_ms([&] {
                          return transpose_naive_e4m3_1x128(codes, si, M, K, d_tiles, tiles.size(), 0.0f, out, osi);
                        }),
                        sat_bytes});
      }
      // Quantize from bf16: v1 (tile staged in shared memory) and v2 (tile in registers), 1x128 + 128x1;
      // v2 also 128x128 + its transposed copy, and the paper_swiglu rule. Bytes: read 2 M K, write 2 M K
      // codes + the scale arrays.
      const double q_bytes = 4.0 * double(n) + 4.0 * double(M * scols) + 4.0 * double(tiles.size() * K);
      const double qb_bytes = 4.0 * double(n) + 4.0 * double(tiles.size() * scols);
      const auto v2 = [&](QuantGranularity gr, QuantRule rule) {
        return quant_e4m3_v2(x, QuantInput::bf16, M, K, d_tiles, tiles.size(), gr, QuantV2Params{rule, 0.0f}, out,
                             rsi, out2, gr == QuantGranularity::g1x128 ? osi : nullptr);
      };
      rows.push_back({"quant_1x128_128x1_te_pow2_bf16_v1", M, K, ng, timer.median_ms([&] {
                        return quant_e4m3_1x128_128x1_te(x, QuantInput::bf16, M, K, d_tiles, tiles.size(),
                                                         TeQuantParams{true, 0.0f}, out, rsi, out2, osi);
                      }),
                      q_bytes});
      rows.push_back({"quant_1x128_128x1_te_pow2_bf16_v2", M, K, ng, timer.median_ms([&] {
                        return v2(QuantGranularity::g1x128, QuantRule::te_pow2);
                      }),
                      q_bytes});
      if (ng == 1) {
        rows.push_back({"quant_1x128_128x1_paper_swiglu_bf16_v2", M, K, ng, timer.median_ms([&] {
                          return v2(QuantGranularity::g1x128, QuantRule::paper_swiglu);
                        }),
                        q_bytes});
        rows.push_back({"quant_128x128_T_te_pow2_bf16_v2", M, K, ng, timer.median_ms([&] {
                          return v2(QuantGranularity::g128x128, QuantRule::te_pow2);
                        }),
                        qb_bytes});
        rows.push_back({"quant_128x128_T_paper_swiglu_bf16_v2", M, K, ng, timer.median_ms([&] {
                          return v2(QuantGranularity::g128x128, QuantRule::paper_swiglu);
                        }),
                        qb_bytes});
        // Self-check on this input: v1 and v2 (te_pow2, 1x128 + 128x1) must give the same bytes.
        std::uint8_t* c1 = dalloc<std::uint8_t>(n);
        std::uint8_t* c2 = dalloc<std::uint8_t>(n);
        float* s1 = dalloc<float>(M * scols);
        float* s2 = dalloc<float>(tiles.size() * K);
        check(quant_e4m3_1x128_128x1_te(x, QuantInput::bf16, M, K, d_tiles, tiles.size(), TeQuantParams{true, 0.0f},
                                        c1, s1, c2, s2),
              "v1");
        check(v2(QuantGranularity::g1x128, QuantRule::te_pow2), "v2");
        check(cudaDeviceSynchronize(), "v1/v2");
        const unsigned long long diff = count_diff(c1, out, n) + count_diff(c2, out2, n) +
                                        count_diff(s1, rsi, 4 * M * scols) + count_diff(s2, osi, 4 * tiles.size() * K);
        std::printf("check (%zu,%zu): quantize v1 vs v2 (te_pow2 bf16, codes + scales): %llu bytes differ%s\n", M, K,
                    diff, diff ? "  <-- MISMATCH" : "");
        if (diff) mismatch = true;
        for (void* p : {(void*)c1, (void*)c2, (void*)s1, (void*)s2}) check(cudaFree(p), "free");
      }
      check(cudaFree(d_tiles), "free");
      check(cudaFree(osi), "free");
      check(cudaFree(rsi), "free");
    }
    for (void* p : {(void*)codes, (void*)out, (void*)out2, (void*)si, (void*)x}) check(cudaFree(p), "free");
  }
  std::printf("%-38s %-14s %6s %9s %9s %8s\n", "kernel", "(M, K)", "groups", "ms", "GB/s", "% copy");
  for (const Row& r : rows) {
    const double gbs = r.bytes / (r.ms * 1e-3) / 1e9;
    char shape[48];
    std::snprintf(shape, sizeof shape, "(%zu,%zu)", r.m, r.k);
    std::printf("%-38s %-14s %6d %9.4f %9.0f %7.1f%%\n", r.kernel.c_str(), shape, r.groups, r.ms, gbs,
                100.0 * gbs / copy_gbs);
  }
  return mismatch ? 1 : 0;
}
