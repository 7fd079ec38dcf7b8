// Throughput of the kernel-output comparison (src/quant/compare, `fp8flow check`, fp8flow.compare) on a
// column copy of 4096 x 4096 (two expert groups): equal tensors (the common, bit-exact case: one pass for the
// layout question, one for the elements) and paper_kernel against exact (about a quarter of the codes differ on
// activations, each classified). Arguments: rows, cols.
#include <benchmark/benchmark.h>

#include "quant/compare.hpp"
#include "quant/distributions.hpp"
#include "quant/transpose.hpp"

namespace {
using namespace fp8flow;

void BM_compare(benchmark::State& state, bool equal) {
  const std::size_t R = std::size_t(state.range(0)), C = std::size_t(state.range(1));
  const auto x = make_distribution(Distribution::activations, R, C, 1);
  const QuantRecipe r{k1x128, &e4m3, ScaleRule::te_pow2};
  const auto q = quantize(x, R, C, r, default_params(r.scale), {}, 0);
  const std::vector<std::size_t> groups{R / 3, R - R / 3};
  const auto want = transpose_exact(q, groups, Rounding::rne, 0);
  const auto got = equal ? want : transpose_paper_kernel(q, groups, 0);
  std::size_t differ = 0;
  for (auto _ : state) {
    const CompareReport rep = compare_quantized(got, want, {});
    differ = rep.elements_mismatched;
    benchmark::DoNotOptimize(differ);
  }
  const double n = double(state.iterations()) * double(R * C);
  state.counters["Melem/s"] = benchmark::Counter(n / 1e6, benchmark::Counter::kIsRate);
  state.counters["differ"] = double(differ);
}

}  // namespace

BENCHMARK_CAPTURE(BM_compare, equal, true)->Args({4096, 4096})->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_compare, paper_vs_exact, false)->Args({4096, 4096})->UseRealTime()->Unit(benchmark::kMillisecond);
