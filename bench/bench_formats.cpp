// Throughput of the batch conversions (one core unless the name says otherwise).
#include <benchmark/benchmark.h>

#include <cstdint>
#include <random>
#include <vector>

#include "formats/batch.hpp"

#if FP8FLOW_HAVE_CUDA_HEADERS
#include <cuda_fp8.h>
#endif

namespace {
using namespace fp8flow;

std::vector<float> activations(std::size_t n) {
  std::mt19937 rng(42);
  std::normal_distribution<float> d(0.f, 64.f);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

void BM_encode_f32(benchmark::State& state, const FormatSpec* f, CastPolicy p) {
  const std::size_t n = std::size_t(state.range(0));
  const auto x = activations(n);
  std::vector<std::uint8_t> out(n);
  BatchOptions o;
  o.threads = int(state.range(1));
  for (auto _ : state) {
    encode(*f, p, x, out, o);
    benchmark::DoNotOptimize(out.data());
  }
  state.counters["Mvalues/s"] = benchmark::Counter(double(state.iterations()) * double(n) / 1e6,
                                                   benchmark::Counter::kIsRate);
  state.SetLabel(batch_isa());
}

// Codes: every byte value in turn (i * 37 mod 256, NaN/Inf codes included), or with `realistic` the
// codes of normally distributed activations (what decode meets after a quantizer: no NaN/Inf codes,
// which the AVX2 decoder handles on a slower path; docs/formats.md, Performance).
void BM_decode_f32(benchmark::State& state, const FormatSpec* f, bool realistic) {
  const std::size_t n = std::size_t(state.range(0));
  std::vector<std::uint8_t> codes(n);
  for (std::size_t i = 0; i < n; ++i) codes[i] = std::uint8_t(i * 37);
  if (realistic) encode(*f, kRneSatfinite, activations(n), codes);
  std::vector<float> out(n);
  BatchOptions o;
  o.threads = int(state.range(1));
  for (auto _ : state) {
    decode(*f, codes, out, o);
    benchmark::DoNotOptimize(out.data());
  }
  state.counters["Mvalues/s"] = benchmark::Counter(double(state.iterations()) * double(n) / 1e6,
                                                   benchmark::Counter::kIsRate);
  state.SetLabel(batch_isa());
}

#if FP8FLOW_HAVE_CUDA_HEADERS
// For comparison: CUDA's own host conversion (cuda_fp8.hpp, the oracle of the exhaustive tests), one
// value per call as its API offers, on the same data; one core.
void BM_cuda_host_float_to_fp8(benchmark::State& state, __nv_fp8_interpretation_t fmt, __nv_saturation_t sat) {
  const std::size_t n = std::size_t(state.range(0));
  const auto x = activations(n);
  std::vector<std::uint8_t> out(n);
  for (auto _ : state) {
    for (std::size_t i = 0; i < n; ++i) out[i] = __nv_cvt_float_to_fp8(x[i], sat, fmt);
    benchmark::DoNotOptimize(out.data());
  }
  state.counters["Mvalues/s"] = benchmark::Counter(double(state.iterations()) * double(n) / 1e6,
                                                   benchmark::Counter::kIsRate);
  state.SetLabel("cuda_fp8.hpp host");
}
BENCHMARK_CAPTURE(BM_cuda_host_float_to_fp8, e4m3_satfinite, __NV_E4M3, __NV_SATFINITE)->Arg(1 << 16)->UseRealTime();
BENCHMARK_CAPTURE(BM_cuda_host_float_to_fp8, e4m3_nonsat, __NV_E4M3, __NV_NOSAT)->Arg(1 << 16)->UseRealTime();
BENCHMARK_CAPTURE(BM_cuda_host_float_to_fp8, e5m2_satfinite, __NV_E5M2, __NV_SATFINITE)->Arg(1 << 16)->UseRealTime();
#endif

// 64K values stay in L2 (the conversion itself); 16M values stream from memory, on 1 and 2 threads.
#define FP8FLOW_SIZES ->Args({1 << 16, 1})->Args({1 << 24, 1})->Args({1 << 24, 2})->UseRealTime()
BENCHMARK_CAPTURE(BM_encode_f32, e4m3_rne_satfinite, &e4m3, kRneSatfinite) FP8FLOW_SIZES;
BENCHMARK_CAPTURE(BM_encode_f32, e4m3_rne_nonsat, &e4m3, kRneNonsat) FP8FLOW_SIZES;
BENCHMARK_CAPTURE(BM_encode_f32, e5m2_rne_satfinite, &e5m2, kRneSatfinite) FP8FLOW_SIZES;
BENCHMARK_CAPTURE(BM_encode_f32, e5m2_rne_nonsat, &e5m2, kRneNonsat) FP8FLOW_SIZES;
BENCHMARK_CAPTURE(BM_encode_f32, e4m3_stochastic_satfinite, &e4m3, CastPolicy{Rounding::stochastic, Overflow::satfinite})
    ->Args({1 << 16, 1})->UseRealTime();
BENCHMARK_CAPTURE(BM_encode_f32, e2m1_rne_satfinite, &e2m1, kRneSatfinite)->Args({1 << 16, 1})->UseRealTime();
BENCHMARK_CAPTURE(BM_decode_f32, e4m3, &e4m3, false) FP8FLOW_SIZES;
BENCHMARK_CAPTURE(BM_decode_f32, e4m3_realistic, &e4m3, true) FP8FLOW_SIZES;
BENCHMARK_CAPTURE(BM_decode_f32, e5m2, &e5m2, false) FP8FLOW_SIZES;
BENCHMARK_CAPTURE(BM_decode_f32, e5m2_realistic, &e5m2, true)->Args({1 << 16, 1})->UseRealTime();
BENCHMARK_CAPTURE(BM_decode_f32, ue8m0, &ue8m0, false)->Args({1 << 16, 1})->UseRealTime();

}  // namespace
