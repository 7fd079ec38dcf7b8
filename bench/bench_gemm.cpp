// GEMM emulator throughput against Eigen's SGEMM on the same machine, in the same run.
#include <benchmark/benchmark.h>

#include <Eigen/Core>
#include <random>
#include <vector>

#include "formats/convert.hpp"
#include "reference/gemm.hpp"

namespace {
using namespace fp8flow;

struct Problem {
  std::size_t n;
  std::vector<std::uint8_t> a, b;
  std::vector<float> sa, sb;
  explicit Problem(std::size_t n_) : n(n_), a(n * n), b(n * n) {
    std::mt19937 rng(3);
    std::uniform_int_distribution<int> c(0, 0x7D);
    for (auto& x : a) x = std::uint8_t(c(rng));
    for (auto& x : b) x = std::uint8_t(c(rng));
    sa.assign(n * ((n + 127) / 128), 0.5f);                    // 1x128
    sb.assign(((n + 127) / 128) * ((n + 127) / 128), 0.25f);   // 128x128
  }
};

void BM_gemm_model(benchmark::State& state, AccumModel m) {
  const std::size_t n = std::size_t(state.range(0));
  const Problem p(n);
  const GemmOperand a{p.a, n, n, &e4m3, p.sa, k1x128}, b{p.b, n, n, &e4m3, p.sb, k128x128};
  for (auto _ : state) benchmark::DoNotOptimize(gemm(a, b, m, {}, int(state.range(1))).data());
  state.counters["GFLOP/s"] =
      benchmark::Counter(2.0 * double(n) * double(n) * double(n) * double(state.iterations()) / 1e9,
                         benchmark::Counter::kIsRate);
}

void BM_eigen_sgemm(benchmark::State& state) {
  const Eigen::Index n = state.range(0);
  Eigen::setNbThreads(int(state.range(1)));
  const Eigen::MatrixXf a = Eigen::MatrixXf::Random(n, n), b = Eigen::MatrixXf::Random(n, n);
  Eigen::MatrixXf c(n, n);
  for (auto _ : state) {
    c.noalias() = a * b.transpose();
    benchmark::DoNotOptimize(c.data());
  }
  state.counters["GFLOP/s"] =
      benchmark::Counter(2.0 * double(n) * double(n) * double(n) * double(state.iterations()) / 1e9,
                         benchmark::Counter::kIsRate);
}

BENCHMARK(BM_eigen_sgemm)->Args({1024, 1})->Args({1024, 2})->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_gemm_model, fp32_seq, AccumModel::fp32_seq)
    ->Args({1024, 1})->Args({1024, 2})->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_gemm_model, promote, AccumModel::promote)->Args({256, 2})->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_gemm_model, hopper_fast, AccumModel::hopper_fast)->Args({256, 2})->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_gemm_model, h100, AccumModel::h100)->Args({1024, 1})->Args({1024, 2})->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_gemm_model, h100_fast, AccumModel::h100_fast)->Args({1024, 2})->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_gemm_model, exact, AccumModel::exact)->Args({256, 2})->UseRealTime()->Unit(benchmark::kMillisecond);

}  // namespace
