// Throughput of the quantization hot paths (issue 5 targets: >= 1,000 M elements/s on one core each):
//   quantize quant_1x128_e4m3_te_pow2 float32 -> e4m3 codes + fp32 scales
//   exact (and paper_kernel) scaling-aware transpose of a rowwise 1x128 tensor (exact also under
//   stochastic rounding: no target, for scale)
// Arguments: rows, cols, threads. GB/s counts bytes read + written.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <vector>

#include "quant/distributions.hpp"
#include "quant/quantize.hpp"
#include "quant/transpose.hpp"

namespace {
using namespace fp8flow;

void BM_quantize_1x128_e4m3_te_pow2(benchmark::State& state) {
  const std::size_t R = std::size_t(state.range(0)), C = std::size_t(state.range(1));
  const int threads = int(state.range(2));
  const auto x = make_distribution(Distribution::normal, R, C, 1);
  const QuantRecipe r{k1x128, &e4m3, ScaleRule::te_pow2};
  const QuantParams p = default_params(r.scale);
  std::vector<std::uint8_t> codes(R * C);
  std::vector<float> scale_inv(R * ((C + 127) / 128));
  for (auto _ : state) {  // caller-owned buffers: the kernel, not the allocator
    fast::quantize_into(x, R, C, r, p, threads, codes, scale_inv);
    benchmark::DoNotOptimize(codes.data());
  }
  const double n = double(state.iterations()) * double(R * C);
  state.counters["Melem/s"] = benchmark::Counter(n / 1e6, benchmark::Counter::kIsRate);
  state.counters["GB/s"] = benchmark::Counter(n * (4 + 1 + 4.0 / 128) / 1e9, benchmark::Counter::kIsRate);
  state.SetLabel(fast::isa());
}

void BM_transpose(benchmark::State& state, TransposeMethod m, Rounding rounding) {
  const std::size_t R = std::size_t(state.range(0)), C = std::size_t(state.range(1));
  const int threads = int(state.range(2));
  const auto x = make_distribution(Distribution::activations, R, C, 1);
  const QuantRecipe r{k1x128, &e4m3, ScaleRule::te_pow2};
  const auto q = quantize(x, R, C, r, default_params(r.scale), {}, 0);
  QuantizedTensor t;
  for (auto _ : state) {  // the output's buffers are reused across iterations
    transpose_sat_into(q, {}, m, rounding, threads, t, /*seed=*/7);
    benchmark::DoNotOptimize(t.codes.data());
  }
  const double n = double(state.iterations()) * double(R * C);
  state.counters["Melem/s"] = benchmark::Counter(n / 1e6, benchmark::Counter::kIsRate);
  state.counters["GB/s"] = benchmark::Counter(n * (1 + 1 + 8.0 / 128) / 1e9, benchmark::Counter::kIsRate);
}

}  // namespace

BENCHMARK(BM_quantize_1x128_e4m3_te_pow2)->Args({4096, 4096, 1})->Args({4096, 4096, 2})->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_transpose, exact, fp8flow::TransposeMethod::exact, fp8flow::Rounding::rne)
    ->Args({4096, 4096, 1})->Args({4096, 4096, 2})->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_transpose, paper_kernel, fp8flow::TransposeMethod::paper_kernel, fp8flow::Rounding::rne)
    ->Args({4096, 4096, 1})->Args({4096, 4096, 2})->UseRealTime()->Unit(benchmark::kMillisecond);
// Stochastic rounding: a Philox draw (10 rounds) and a scalar cast for every code that does not stay normal.
BENCHMARK_CAPTURE(BM_transpose, exact_stochastic, fp8flow::TransposeMethod::exact, fp8flow::Rounding::stochastic)
    ->Args({4096, 4096, 1})->Args({4096, 4096, 2})->UseRealTime()->Unit(benchmark::kMillisecond);
