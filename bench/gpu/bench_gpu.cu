// fp8flow-gpu-bench: the SAT (paper_kernel, exact), naive and plain e4m3 transposes and the quantize kernels
// from bf16 (1x128+128x1 v1 and v2, 128x128+transposed, te_pow2 and paper_swiglu) at the paper's shapes
// (PAPER.md 6), timed with CUDA events and reported as time and % of the device-to-device copy bandwidth
// measured in the same run (bytes read + bytes written).
// Usage: fp8flow-gpu-bench [--reps N] [--quick] [--shape M,K]... [--timing steady|single-dirty|single-clean]
//                          [--group-align A]
//   --shape (repeatable) replaces the paper's six shapes with the given ones; --quick is --shape 32768,7168.
//   --group-align: the 8 unequal groups' sizes are multiples of A rows (default 16, the released Megatron
//   path's align; PAPER.md 2 step 4). The quantize kernel's column copy depends on it (docs/gpu.md, seventh
//   slice): with A = 16 a tile boundary may cut a 32-byte sector of the transposed output in half.
//
// Timing (median of N repeats):
//   steady (default)  S launches back to back on S distinct buffer sets (S x the bytes moved >= 2 GiB), after
//                     an L2 flush by memset; ms = total / S. Each launch writes back what the one before left
//                     dirty in L2, as inside a training step; the flush's dirty lines at the start and the
//                     last launch's at the end are each at most an L2 (50 MB on an H100), < 2.5% of the total.
//   single-dirty      one launch after a memset of 4x L2 (the method before 2026-11-26): the launch also writes
//                     back up to an L2 of the flush's dirty lines -- large next to the 70-150 MB the smallest
//                     shapes move, so it understates them.
//   single-clean      one launch after a read sweep of 4x L2: L2 starts clean and up to an L2 of the launch's
//                     own output is still unwritten when it ends, so it overstates the smallest shapes.
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
// Reads n words and writes one word that depends on all of them (so the loads are not removed).
__global__ void sweep_read(const uint4* p, std::size_t n, std::uint32_t* sink) {
  std::uint32_t acc = 0;
  for (std::size_t i = blockIdx.x * std::size_t(blockDim.x) + threadIdx.x; i < n; i += std::size_t(gridDim.x) * blockDim.x) {
    const uint4 v = p[i];
    acc ^= v.x ^ v.y ^ v.z ^ v.w;
  }
  if (acc == 0x9E3779B9u) *sink = acc;
}
__global__ void fill_bf16(std::uint16_t* x, std::size_t n) {
  for (std::size_t i = blockIdx.x * std::size_t(blockDim.x) + threadIdx.x; i < n; i += std::size_t(gridDim.x) * blockDim.x) {
    const std::uint32_t h = mix(i + 12345);
    const float v = (float(h & 0xFFFF) / 32768.0f - 1.0f) * __uint_as_float(std::uint32_t(127 - 4 + int((h >> 16) % 9)) << 23);
    x[i] = std::uint16_t(__float_as_uint(v) >> 16);
  }
}

enum class Timing { steady, single_dirty, single_clean };

struct Timer {
  cudaEvent_t a, b;
  void* flush;
  std::size_t flush_bytes;
  std::uint32_t* sink;
  int reps;
  Timing mode;
  Timer(int r, Timing m) : reps(r), mode(m) {
    check(cudaEventCreate(&a), "event");
    check(cudaEventCreate(&b), "event");
    int l2 = 0;
    check(cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, 0), "attr");
    flush_bytes = std::size_t(l2) * 4;
    check(cudaMalloc(&flush, flush_bytes), "cudaMalloc flush");
    check(cudaMemset(flush, 0x5A, flush_bytes), "flush fill");
    check(cudaMalloc(&sink, sizeof *sink), "cudaMalloc sink");
  }
  cudaError_t flush_l2(int i) {
    if (mode != Timing::single_clean) return cudaMemsetAsync(flush, i & 0xFF, flush_bytes);
    sweep_read<<<2048, 256>>>(static_cast<const uint4*>(flush), flush_bytes / 16, sink);
    return cudaGetLastError();
  }
  // Median ms per launch of fn(set) over reps; fn returns its launch error. Steady timing launches sets
  // 0..sets-1 back to back in each timed region; single timing launches set 0 once.
  double median_ms(int sets, const std::function<cudaError_t(int)>& fn) {
    const int per_region = mode == Timing::steady ? sets : 1;
    for (int w = 0; w < std::min(sets, 3); ++w) check(fn(w), "warm-up launch");
    check(cudaDeviceSynchronize(), "warm-up");
    std::vector<double> t;
    for (int i = 0; i < reps; ++i) {
      check(flush_l2(i), "flush");
      check(cudaEventRecord(a), "record");
      for (int k = 0; k < per_region; ++k) check(fn(k), "launch");
      check(cudaEventRecord(b), "record");
      check(cudaEventSynchronize(b), "sync");
      float ms = 0;
      check(cudaEventElapsedTime(&ms, a, b), "elapsed");
      t.push_back(ms / per_region);
    }
    std::sort(t.begin(), t.end());
    return t[t.size() / 2];
  }
};

// 8 unequal expert groups, multiples of `align` rows (--group-align; 16: the released Megatron path), summing
// to m (a group smaller than align is empty).
std::vector<std::size_t> eight_groups(std::size_t m, std::size_t align) {
  const double w[8] = {0.07, 0.19, 0.11, 0.16, 0.09, 0.14, 0.13, 0.11};
  std::vector<std::size_t> g;
  std::size_t used = 0;
  for (int i = 0; i < 7; ++i) {
    const std::size_t s = std::size_t(w[i] * double(m)) / align * align;
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
  std::size_t group_align = 16;
  Timing timing = Timing::steady;
  const char* usage =
      "usage: fp8flow-gpu-bench [--reps N] [--quick] [--shape M,K]... [--timing steady|single-dirty|single-clean]\n"
      "                         [--group-align A]\n";
  std::vector<std::pair<std::size_t, std::size_t>> user_shapes;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--reps") && i + 1 < argc) reps = std::max(1, std::atoi(argv[++i]));
    else if (!std::strcmp(argv[i], "--quick")) quick = true;
    else if (!std::strcmp(argv[i], "--shape") && i + 1 < argc) {
      const char* f = argv[++i];
      unsigned long long m = 0, k = 0;
      char extra = 0;
      if (std::sscanf(f, "%llu,%llu%c", &m, &k, &extra) != 2 || m == 0 || k == 0) {
        std::fprintf(stderr, "fp8flow-gpu-bench: --shape must be M,K with M, K > 0, not '%s'\n%s", f, usage);
        return 2;
      }
      user_shapes.emplace_back(std::size_t(m), std::size_t(k));
    }
    else if (!std::strcmp(argv[i], "--group-align") && i + 1 < argc) {
      const char* f = argv[++i];
      unsigned long long a = 0;
      char extra = 0;
      if (std::sscanf(f, "%llu%c", &a, &extra) != 1 || a == 0 || a > 4096) {
        std::fprintf(stderr, "fp8flow-gpu-bench: --group-align must be a row count in 1..4096, not '%s'\n%s", f, usage);
        return 2;
      }
      group_align = std::size_t(a);
    }
    else if (!std::strcmp(argv[i], "--timing") && i + 1 < argc) {
      const char* f = argv[++i];
      if (!std::strcmp(f, "steady")) timing = Timing::steady;
      else if (!std::strcmp(f, "single-dirty")) timing = Timing::single_dirty;
      else if (!std::strcmp(f, "single-clean")) timing = Timing::single_clean;
      else {
        std::fprintf(stderr, "fp8flow-gpu-bench: --timing must be steady, single-dirty or single-clean, not '%s'\n%s",
                     f, usage);
        return 2;
      }
    } else {
      std::fprintf(stderr, "fp8flow-gpu-bench: unknown argument '%s'\n%s", argv[i], usage);
      return 2;
    }
  }
  int ndev = 0;
  if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev == 0) {
    std::printf("SKIPPED: no CUDA device\n");
    return 77;
  }
  cudaDeviceProp prop{};
  check(cudaGetDeviceProperties(&prop, 0), "props");
  Timer timer(reps, timing);
  // Buffer sets for steady timing: enough that one timed region moves >= 2 GiB at 2 bytes per element.
  const auto sets_for = [&](std::size_t n) {
    if (timing != Timing::steady) return 1;
    return int(std::clamp<std::size_t>(((std::size_t(2) << 30) + 2 * n - 1) / (2 * n), 2, 64));
  };

  // Copy bandwidth: 1 GiB device-to-device, bytes read + written.
  const std::size_t copy_bytes = std::size_t(1) << 30;
  const int copy_sets = sets_for(copy_bytes);
  std::uint8_t* c0 = dalloc<std::uint8_t>(copy_bytes * copy_sets);
  std::uint8_t* c1 = dalloc<std::uint8_t>(copy_bytes * copy_sets);
  fill_codes<<<1024, 256>>>(c0, copy_bytes * copy_sets);
  const double copy_ms = timer.median_ms(copy_sets, [&](int i) {
    return cudaMemcpyAsync(c1 + i * copy_bytes, c0 + i * copy_bytes, copy_bytes, cudaMemcpyDeviceToDevice);
  });
  const double copy_gbs = 2.0 * double(copy_bytes) / (copy_ms * 1e-3) / 1e9;
  check(cudaFree(c0), "free");
  check(cudaFree(c1), "free");
  const char* timing_name = timing == Timing::steady         ? "steady (back-to-back launches on distinct buffer sets)"
                            : timing == Timing::single_dirty ? "single launch after a memset flush of 4x L2"
                                                             : "single launch after a read-sweep flush of 4x L2";
  std::printf("GPU: %s (%d SMs, L2 %d MB)\ncopy bandwidth (cudaMemcpy D2D, 1 GiB, read+write): %.0f GB/s\n"
              "timing: %s, median of %d\n8 unequal groups: sizes multiples of %zu rows\n\n",
              prop.name, prop.multiProcessorCount, prop.l2CacheSize >> 20, copy_gbs, timing_name, reps, group_align);

  std::vector<std::pair<std::size_t, std::size_t>> shapes = {{28672, 1280}, {24576, 2048}, {24576, 5120},
                                                             {32768, 7168}, {32768, 8192}, {32768, 9216}};
  if (quick) shapes = {{32768, 7168}};
  if (!user_shapes.empty()) shapes = user_shapes;
  std::vector<Row> rows;
  bool mismatch = false;
  for (const auto& [M, K] : shapes) {
    const std::size_t n = M * K, scols = (K + 127) / 128, ns = M * scols;
    const int S = sets_for(n);
    const std::size_t max_tiles = M / 128 + 9;  // row tiles of 8 groups at most
    // Set i of each buffer starts at i times its per-set size.
    std::uint8_t* codes = dalloc<std::uint8_t>(n * S);
    std::uint8_t* out = dalloc<std::uint8_t>(n * S);
    std::uint8_t* out2 = dalloc<std::uint8_t>(n * S);
    float* si = dalloc<float>(ns * S);
    float* rsi = dalloc<float>(ns * S);
    float* osi = dalloc<float>(max_tiles * K * S);
    std::uint16_t* x = dalloc<std::uint16_t>(n * S);
    fill_codes<<<2048, 256>>>(codes, n * S);
    fill_scales<<<256, 256>>>(si, ns * S);
    fill_bf16<<<2048, 256>>>(x, n * S);
    check(cudaGetLastError(), "fill");
    // A plain copy of the M*K codes at this size: what the ramp-up and tail of a short run leave of the
    // 1 GiB copy bandwidth (context for the kernels' % at small shapes, not the reference).
    rows.push_back({"memcpy_d2d_same_size", M, K, 1, timer.median_ms(S, [&](int i) {
                      return cudaMemcpyAsync(out + i * n, codes + i * n, n, cudaMemcpyDeviceToDevice);
                    }),
                    2.0 * double(n)});
    for (int ng : {1, 8}) {
      const std::vector<std::size_t> groups = ng == 1 ? std::vector<std::size_t>{} : eight_groups(M, group_align);
      const std::vector<RowTile> tiles = make_row_tiles(M, groups);
      const GroupBounds bounds = group_bounds(M, groups);
      if (tiles.size() > max_tiles) {
        std::fprintf(stderr, "fp8flow-gpu-bench: %zu row tiles > %zu\n", tiles.size(), max_tiles);
        return 1;
      }
      RowTile* d_tiles = dalloc<RowTile>(tiles.size());
      check(cudaMemcpy(d_tiles, tiles.data(), tiles.size() * sizeof(RowTile), cudaMemcpyHostToDevice), "tiles");
      const std::size_t nt = tiles.size(), nos = max_tiles * K;
      const double sat_bytes = 2.0 * double(n) + 4.0 * double(ns) + 4.0 * double(nt * K);
      // "+pdl": the same launches with programmatic dependent launch (steady timing only: each launch
      // overlaps the previous one's tail, as in a chain of kernels that all use it).
      const bool with_pdl = timing == Timing::steady;
      const auto sat = [&](SatMode mode, bool pdl) {
        return timer.median_ms(S, [&](int i) {
          return sat_transpose_e4m3_1x128(codes + i * n, si + i * ns, M, K, d_tiles, nt, mode, out + i * n,
                                          osi + i * nos, 0, pdl, &bounds);
        });
      };
      rows.push_back({"sat_e4m3_1x128_paper_kernel", M, K, ng, sat(SatMode::paper_kernel, false), sat_bytes});
      if (with_pdl)
        rows.push_back({"sat_e4m3_1x128_paper_kernel+pdl", M, K, ng, sat(SatMode::paper_kernel, true), sat_bytes});
      rows.push_back({"sat_e4m3_1x128_exact", M, K, ng, sat(SatMode::exact, false), sat_bytes});
      if (ng == 1) {
        rows.push_back({"transpose_e4m3_plain", M, K, ng, sat(SatMode::plain, false), 2.0 * double(n)});
        if (with_pdl) rows.push_back({"transpose_e4m3_plain+pdl", M, K, ng, sat(SatMode::plain, true), 2.0 * double(n)});
        rows.push_back({"transpose_naive_e4m3_1x128", M, K, ng, timer.median_ms(S, [&](int i) {
                          return transpose_naive_e4m3_1x128(codes + i * n, si + i * ns, M, K, d_tiles, nt, 0.0f,
                                                            out + i * n, osi + i * nos);
                        }),
                        sat_bytes});
      }
      // Quantize from bf16: v1 (tile staged in shared memory) and v2 (tile in registers), 1x128 + 128x1;
      // v2 also 128x128 + its transposed copy, and the paper_swiglu rule. Bytes: read 2 M K, write 2 M K
      // codes + the scale arrays.
      const double q_bytes = 4.0 * double(n) + 4.0 * double(ns) + 4.0 * double(nt * K);
      const double qb_bytes = 4.0 * double(n) + 4.0 * double(nt * scols);
      const auto v2 = [&](int i, QuantGranularity gr, QuantRule rule) {
        return quant_e4m3_v2(x + i * n, QuantInput::bf16, M, K, d_tiles, nt, gr, QuantV2Params{rule, 0.0f},
                             out + i * n, rsi + i * ns, out2 + i * n,
                             gr == QuantGranularity::g1x128 ? osi + i * nos : nullptr);
      };
      const auto v1 = [&](bool pdl, QuantRule rule, QuantGranularity gr = QuantGranularity::g1x128) {
        const bool blk = gr == QuantGranularity::g128x128;
        return timer.median_ms(S, [&](int i) {
          return quant_e4m3_v1(x + i * n, QuantInput::bf16, M, K, d_tiles, nt, gr, QuantV2Params{rule, 0.0f},
                               out + i * n, rsi + i * ns, out2 + i * n, blk ? nullptr : osi + i * nos, 0, pdl, &bounds);
        });
      };
      rows.push_back({"quant_1x128_128x1_te_pow2_bf16_v1", M, K, ng, v1(false, QuantRule::te_pow2), q_bytes});
      if (with_pdl)
        rows.push_back({"quant_1x128_128x1_te_pow2_bf16_v1+pdl", M, K, ng, v1(true, QuantRule::te_pow2), q_bytes});
      if (ng == 1) {
        rows.push_back({"quant_1x128_128x1_paper_swiglu_bf16_v1", M, K, ng, v1(false, QuantRule::paper_swiglu), q_bytes});
        rows.push_back({"quant_128x128_T_te_pow2_bf16_v1", M, K, ng,
                        v1(false, QuantRule::te_pow2, QuantGranularity::g128x128), qb_bytes});
        rows.push_back({"quant_128x128_T_paper_swiglu_bf16_v1", M, K, ng,
                        v1(false, QuantRule::paper_swiglu, QuantGranularity::g128x128), qb_bytes});
      }
      rows.push_back({"quant_1x128_128x1_te_pow2_bf16_v2", M, K, ng, timer.median_ms(S, [&](int i) {
                        return v2(i, QuantGranularity::g1x128, QuantRule::te_pow2);
                      }),
                      q_bytes});
      if (ng == 1) {
        rows.push_back({"quant_1x128_128x1_paper_swiglu_bf16_v2", M, K, ng, timer.median_ms(S, [&](int i) {
                          return v2(i, QuantGranularity::g1x128, QuantRule::paper_swiglu);
                        }),
                        q_bytes});
        rows.push_back({"quant_128x128_T_te_pow2_bf16_v2", M, K, ng, timer.median_ms(S, [&](int i) {
                          return v2(i, QuantGranularity::g128x128, QuantRule::te_pow2);
                        }),
                        qb_bytes});
        rows.push_back({"quant_128x128_T_paper_swiglu_bf16_v2", M, K, ng, timer.median_ms(S, [&](int i) {
                          return v2(i, QuantGranularity::g128x128, QuantRule::paper_swiglu);
                        }),
                        qb_bytes});
        // Self-check on this input: v1 and v2 (te_pow2, 1x128 + 128x1) must give the same bytes.
        std::uint8_t* c1 = dalloc<std::uint8_t>(n);
        std::uint8_t* c2 = dalloc<std::uint8_t>(n);
        float* s1 = dalloc<float>(ns);
        float* s2 = dalloc<float>(nt * K);
        check(quant_e4m3_1x128_128x1_te(x, QuantInput::bf16, M, K, d_tiles, nt, TeQuantParams{true, 0.0f}, c1, s1,
                                        c2, s2),
              "v1");
        check(v2(0, QuantGranularity::g1x128, QuantRule::te_pow2), "v2");
        check(cudaDeviceSynchronize(), "v1/v2");
        const unsigned long long diff = count_diff(c1, out, n) + count_diff(c2, out2, n) +
                                        count_diff(s1, rsi, 4 * ns) + count_diff(s2, osi, 4 * nt * K);
        std::printf("check (%zu,%zu): quantize v1 vs v2 (te_pow2 bf16, codes + scales): %llu bytes differ%s\n", M, K,
                    diff, diff ? "  <-- MISMATCH" : "");
        if (diff) mismatch = true;
        for (void* p : {(void*)c1, (void*)c2, (void*)s1, (void*)s2}) check(cudaFree(p), "free");
      }
      check(cudaFree(d_tiles), "free");
    }
    for (void* p : {(void*)codes, (void*)out, (void*)out2, (void*)si, (void*)rsi, (void*)osi, (void*)x})
      check(cudaFree(p), "free");
  }
  std::printf("%-42s %-14s %6s %9s %9s %8s\n", "kernel", "(M, K)", "groups", "ms", "GB/s", "% copy");
  for (const Row& r : rows) {
    const double gbs = r.bytes / (r.ms * 1e-3) / 1e9;
    char shape[48];
    std::snprintf(shape, sizeof shape, "(%zu,%zu)", r.m, r.k);
    std::printf("%-42s %-14s %6d %9.4f %9.0f %7.1f%%\n", r.kernel.c_str(), shape, r.groups, r.ms, gbs,
                100.0 * gbs / copy_gbs);
  }
  return mismatch ? 1 : 0;
}
