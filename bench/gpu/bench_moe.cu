// fp8flow-moe-bench: the fused MoE kernels (src/cuda/moe_kernels.hpp) at the paper's MoE shape (4096 tokens,
// 256 experts, hidden 7168, top-8, expert FFN 2048; PAPER.md 6) and the quickstart's (1024, 32, 896, 8, 256),
// timed with CUDA events and reported as time and % of the device-to-device copy bandwidth measured in the
// same run (bytes read + bytes written; each kernel's bytes: the fewest it must move, below).
// Usage: fp8flow-moe-bench [--reps N] [--align A] [--preset paper|quickstart]...
//   --align: each expert's rows padded to a multiple of A (default 16, the released Megatron path).
// Routing: top-k of N(0,1) scores per token (make_routing), the same for every kernel.
// Timing, median of N (default 30) repeats, two ways per kernel:
//   steady  S launches back to back on S distinct buffer sets (S x bytes >= 1 GiB, S <= 64), ms = total / S;
//   clean   one launch after a read sweep of 4x L2 (L2 clean): the method of bench/gpu/moe_anchor.py, whose
//           numbers (torch and the FP8-Flow-MoE fork's Triton kernels) are compared with these.
// Bytes: swiglu_fwd   read rows x 2F bf16 + prob, write rows x F codes + scales;
//        swiglu_bwd   read rows x (2F + F) bf16 + prob, write rows x 2F codes + scales + dprob;
//        permute      read valid rows x (H codes + scales + prob) + row map, write rows x (H + scales + prob);
//        unpermute    read T x K x H bf16 + copy map (+ probs), write T x H bf16.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "bench_common.cuh"
#include "cuda/moe_kernels.hpp"
#include "reference/moe_fused.hpp"
#include "reference/moe_layer.hpp"

using namespace fp8flow;
using fp8flow::bench::check;
using fp8flow::bench::dalloc;
using fp8flow::bench::mix;

namespace {

__global__ void fill_bytes(std::uint8_t* c, std::size_t n, std::uint64_t seed) {
  for (std::size_t i = blockIdx.x * std::size_t(blockDim.x) + threadIdx.x; i < n; i += std::size_t(gridDim.x) * blockDim.x) {
    std::uint8_t b = std::uint8_t(mix(i + seed));
    if ((b & 0x7F) == 0x7F) b ^= 1;
    c[i] = b;
  }
}
__global__ void fill_bf16(std::uint16_t* x, std::size_t n, std::uint64_t seed) {
  for (std::size_t i = blockIdx.x * std::size_t(blockDim.x) + threadIdx.x; i < n; i += std::size_t(gridDim.x) * blockDim.x) {
    const std::uint32_t h = mix(i + seed);
    const float v = (float(h & 0xFFFF) / 32768.0f - 1.0f) * __uint_as_float(std::uint32_t(127 - 2 + int((h >> 16) % 5)) << 23);
    x[i] = std::uint16_t(__float_as_uint(v) >> 16);
  }
}
__global__ void fill_f32(float* x, std::size_t n, std::uint64_t seed) {
  for (std::size_t i = blockIdx.x * std::size_t(blockDim.x) + threadIdx.x; i < n; i += std::size_t(gridDim.x) * blockDim.x)
    x[i] = float(mix(i + seed) % 1024) / 1024.0f;
}
__global__ void sweep_read(const uint4* p, std::size_t n, std::uint32_t* sink) {
  std::uint32_t acc = 0;
  for (std::size_t i = blockIdx.x * std::size_t(blockDim.x) + threadIdx.x; i < n; i += std::size_t(gridDim.x) * blockDim.x) {
    const uint4 v = p[i];
    acc ^= v.x ^ v.y ^ v.z ^ v.w;
  }
  if (acc == 0x9E3779B9u) *sink = acc;
}

template <class T>
T* filled(std::size_t n, std::uint64_t seed) {
  T* p = dalloc<T>(n);
  if constexpr (sizeof(T) == 1) fill_bytes<<<1024, 256>>>(reinterpret_cast<std::uint8_t*>(p), n, seed);
  else if constexpr (sizeof(T) == 2) fill_bf16<<<1024, 256>>>(reinterpret_cast<std::uint16_t*>(p), n, seed);
  else fill_f32<<<1024, 256>>>(reinterpret_cast<float*>(p), n, seed);
  check(cudaGetLastError(), "fill");
  return p;
}

struct Timer {
  cudaEvent_t a, b;
  void* flush;
  std::size_t flush_bytes;
  std::uint32_t* sink;
  int reps;
  explicit Timer(int r) : reps(r) {
    check(cudaEventCreate(&a), "event");
    check(cudaEventCreate(&b), "event");
    int l2 = 0;
    check(cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, 0), "attr");
    flush_bytes = std::size_t(l2) * 4;
    check(cudaMalloc(&flush, flush_bytes), "cudaMalloc flush");
    check(cudaMemset(flush, 0x5A, flush_bytes), "flush fill");
    check(cudaMalloc(&sink, sizeof *sink), "cudaMalloc sink");
  }
  // steady: sets launches per region after a memset flush; clean: one launch after a read sweep.
  double median_ms(int sets, bool steady, const std::function<cudaError_t(int)>& fn) {
    for (int w = 0; w < std::min(sets, 3); ++w) check(fn(w), "warm-up launch");
    check(cudaDeviceSynchronize(), "warm-up");
    std::vector<double> t;
    const int per = steady ? sets : 1;
    for (int i = 0; i < reps; ++i) {
      if (steady) check(cudaMemsetAsync(flush, i & 0xFF, flush_bytes), "flush");
      else sweep_read<<<2048, 256>>>(static_cast<const uint4*>(flush), flush_bytes / 16, sink);
      check(cudaEventRecord(a), "record");
      for (int k = 0; k < per; ++k) check(fn(k), "launch");
      check(cudaEventRecord(b), "record");
      check(cudaEventSynchronize(b), "sync");
      float ms = 0;
      check(cudaEventElapsedTime(&ms, a, b), "elapsed");
      t.push_back(ms / per);
    }
    std::sort(t.begin(), t.end());
    return t[t.size() / 2];
  }
};

struct Preset {
  const char* name;
  std::size_t T, E, K, H, F;
};

}  // namespace

int main(int argc, char** argv) {
  int reps = 30;
  std::size_t align = 16;
  std::vector<Preset> presets;
  const Preset paper{"paper", 4096, 256, 8, 7168, 2048}, quick{"quickstart", 1024, 32, 8, 896, 256};
  const char* usage = "usage: fp8flow-moe-bench [--reps N] [--align A] [--preset paper|quickstart]...\n";
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--reps") && i + 1 < argc) reps = std::max(1, std::atoi(argv[++i]));
    else if (!std::strcmp(argv[i], "--align") && i + 1 < argc) {
      const long a = std::atol(argv[++i]);
      if (a < 1 || a > 4096) {
        std::fprintf(stderr, "fp8flow-moe-bench: --align must be in 1..4096, not '%s'\n%s", argv[i], usage);
        return 2;
      }
      align = std::size_t(a);
    } else if (!std::strcmp(argv[i], "--preset") && i + 1 < argc) {
      const char* p = argv[++i];
      if (!std::strcmp(p, "paper")) presets.push_back(paper);
      else if (!std::strcmp(p, "quickstart")) presets.push_back(quick);
      else {
        std::fprintf(stderr, "fp8flow-moe-bench: --preset must be paper or quickstart, not '%s'\n%s", p, usage);
        return 2;
      }
    } else {
      std::fprintf(stderr, "fp8flow-moe-bench: unknown argument '%s'\n%s", argv[i], usage);
      return 2;
    }
  }
  if (presets.empty()) presets = {paper, quick};
  int dev_count = 0;
  if (cudaGetDeviceCount(&dev_count) != cudaSuccess || dev_count == 0) {
    std::fprintf(stderr, "fp8flow-moe-bench: no CUDA device\n");
    return 1;
  }
  cudaDeviceProp prop{};
  check(cudaGetDeviceProperties(&prop, 0), "props");
  std::printf("GPU: %s, %d SMs, L2 %d MB; align %zu, median of %d\n", prop.name, prop.multiProcessorCount,
              prop.l2CacheSize >> 20, align, reps);
  Timer timer(reps);
  // Copy anchor: 1 GiB device-to-device, bytes read + written.
  double copy_gbs = 0;
  {
    const std::size_t n = std::size_t(1) << 30;
    void* a = dalloc<std::uint8_t>(n);
    void* b = dalloc<std::uint8_t>(n);
    const double ms = timer.median_ms(1, true, [&](int) { return cudaMemcpyAsync(b, a, n, cudaMemcpyDeviceToDevice); });
    copy_gbs = 2.0 * double(n) / (ms * 1e6);
    std::printf("memcpy_d2d 1 GiB: %.3f ms, %.0f GB/s (copy anchor)\n", ms, copy_gbs);
    check(cudaFree(a), "free");
    check(cudaFree(b), "free");
  }
  std::printf("%-12s %-26s %8s %10s %8s %7s %10s %8s\n", "preset", "kernel", "rows", "steady ms", "GB/s", "% copy",
              "clean ms", "% copy");
  for (const Preset& p : presets) {
    MoeShape s;
    s.tokens = p.T, s.hidden = p.H, s.ffn = p.F, s.experts = p.E, s.topk = p.K, s.align = align;
    std::mt19937_64 rng(2511);
    std::normal_distribution<double> nd(0.0, 1.0);
    std::vector<double> scores(p.T * p.E);
    for (auto& v : scores) v = nd(rng);
    const Routing r = make_routing(scores, s);
    const std::size_t rows = r.rows(), T = p.T, K = p.K, H = p.H, F = p.F, sc = (H + 127) / 128;
    const std::vector<std::int32_t> src = row_sources(r), dst = copy_rows(r);
    std::int32_t* d_src = dalloc<std::int32_t>(rows);
    std::int32_t* d_dst = dalloc<std::int32_t>(T * K);
    check(cudaMemcpy(d_src, src.data(), rows * 4, cudaMemcpyHostToDevice), "copy");
    check(cudaMemcpy(d_dst, dst.data(), T * K * 4, cudaMemcpyHostToDevice), "copy");

    auto run = [&](const char* name, double bytes, std::size_t set_bytes,
                   const std::function<void(int)>& alloc_set, const std::function<cudaError_t(int)>& fn) {
      const int sets = int(std::clamp<std::size_t>((std::size_t(1) << 30) / std::max<std::size_t>(set_bytes, 1) + 1, 1, 64));
      for (int k = 0; k < sets; ++k) alloc_set(k);
      check(cudaDeviceSynchronize(), "fill");
      const double steady = timer.median_ms(sets, true, fn);
      const double clean = timer.median_ms(1, false, fn);
      const double gbs = bytes / (steady * 1e6);
      std::printf("%-12s %-26s %8zu %10.4f %8.0f %6.1f%% %10.4f %7.1f%%\n", p.name, name, rows, steady, gbs,
                  100.0 * gbs / copy_gbs, clean, 100.0 * bytes / (clean * 1e6) / copy_gbs);
    };
    std::vector<void*> owned;
    auto own = [&](void* q) { owned.push_back(q); return q; };

    {  // SwiGLU forward
      std::vector<std::uint16_t*> h;
      std::vector<float*> w, si;
      std::vector<std::uint8_t*> c;
      const double bytes = double(rows) * (4.0 * F + 4 + F + 4.0 * (F / 128));
      run("swiglu_quant_fwd", bytes, std::size_t(bytes), [&](int k) {
        h.push_back(static_cast<std::uint16_t*>(own(filled<std::uint16_t>(rows * 2 * F, 11 + k))));
        w.push_back(static_cast<float*>(own(filled<float>(rows, 12 + k))));
        c.push_back(static_cast<std::uint8_t*>(own(dalloc<std::uint8_t>(rows * F))));
        si.push_back(static_cast<float*>(own(dalloc<float>(rows * F / 128))));
      }, [&](int k) { return cuda::swiglu_quant_fwd(h[k], w[k], rows, F, c[k], si[k]); });
    }
    {  // SwiGLU backward
      std::vector<std::uint16_t*> h, g;
      std::vector<float*> w, si, dp;
      std::vector<std::uint8_t*> c;
      const double bytes = double(rows) * (6.0 * F + 4 + 2.0 * F + 4.0 * (2 * F / 128) + 4);
      run("swiglu_quant_bwd", bytes, std::size_t(bytes), [&](int k) {
        h.push_back(static_cast<std::uint16_t*>(own(filled<std::uint16_t>(rows * 2 * F, 21 + k))));
        g.push_back(static_cast<std::uint16_t*>(own(filled<std::uint16_t>(rows * F, 22 + k))));
        w.push_back(static_cast<float*>(own(filled<float>(rows, 23 + k))));
        c.push_back(static_cast<std::uint8_t*>(own(dalloc<std::uint8_t>(rows * 2 * F))));
        si.push_back(static_cast<float*>(own(dalloc<float>(rows * 2 * F / 128))));
        dp.push_back(static_cast<float*>(own(dalloc<float>(rows))));
      }, [&](int k) { return cuda::swiglu_quant_bwd(g[k], h[k], w[k], rows, F, c[k], si[k], dp[k]); });
    }
    {  // permute + pad of FP8 codes, scales and probs
      std::vector<std::uint8_t*> x, o;
      std::vector<float*> xs, pr, os, op;
      const double bytes = double(T * K) * (H + 4.0 * sc + 4) + double(rows) * (H + 4.0 * sc + 4 + 4);
      run("permute_pad_fp8", bytes, std::size_t(bytes), [&](int k) {
        x.push_back(static_cast<std::uint8_t*>(own(filled<std::uint8_t>(T * H, 31 + k))));
        xs.push_back(static_cast<float*>(own(filled<float>(T * sc, 32 + k))));
        pr.push_back(static_cast<float*>(own(filled<float>(T * K, 33 + k))));
        o.push_back(static_cast<std::uint8_t*>(own(dalloc<std::uint8_t>(rows * H))));
        os.push_back(static_cast<float*>(own(dalloc<float>(rows * sc))));
        op.push_back(static_cast<float*>(own(dalloc<float>(rows))));
      }, [&](int k) { return cuda::permute_pad_fp8(x[k], xs[k], pr[k], T, H, K, d_src, rows, o[k], os[k], op[k]); });
    }
    for (bool merge : {false, true}) {  // unpermute + unpad (bf16), plain sum and merging by probs
      std::vector<std::uint16_t*> in, out;
      std::vector<float*> pr;
      const double bytes = double(T * K) * (2.0 * H + 4 + (merge ? 4 : 0)) + double(T) * 2.0 * H;
      run(merge ? "unpermute_bf16_merge_probs" : "unpermute_bf16", bytes, std::size_t(bytes), [&](int k) {
        in.push_back(static_cast<std::uint16_t*>(own(filled<std::uint16_t>(rows * H, 41 + k))));
        out.push_back(static_cast<std::uint16_t*>(own(dalloc<std::uint16_t>(T * H))));
        pr.push_back(static_cast<float*>(own(filled<float>(T * K, 43 + k))));
      }, [&](int k) { return cuda::unpermute_combine_bf16(in[k], rows, H, d_dst, T, K, merge ? pr[k] : nullptr, out[k]); });
    }
    for (void* q : owned) check(cudaFree(q), "free");
    check(cudaFree(d_src), "free");
    check(cudaFree(d_dst), "free");
  }
  return 0;
}
