// One training step of the training simulation (reference/train.hpp, tiny preset): forward and backward
// of the whole model on one batch, the MoE layers through the dataflow executor, per dataflow. Reports
// tokens/s and the MoE expert GEMMs' useful GFLOP/s (routed token copies only, padding rows excluded:
// forward 2 GEMMs of 2*copies*H*2F and 2*copies*F*H FLOPs, backward twice that), i.e. how close the FP8
// emulation runs to the fp32 Eigen GEMM of the bf16 dataflow (benchmark bench_gemm's yardstick).
#include <benchmark/benchmark.h>

#include "reference/train.hpp"
#include "reference/train_model.hpp"

namespace {

using namespace fp8flow::train;

void BM_train_step(benchmark::State& state, const char* dataflow, fp8flow::TransposeMethod transpose) {
  TrainConfig c = preset_config("tiny");
  c.dataflow = dataflow;
  c.transpose = transpose;
  c.threads = 1;
  const auto corpus = load_corpus(c.corpus, 2 * (c.seq + 1));
  const auto w = model::to_compute(model::init_params(c));
  model::MoeRunner moe(c, c.batch * c.seq);
  std::vector<std::vector<double>> g;
  int step = 0;
  for (auto _ : state) {
    const model::Batch b = model::make_batch(c, corpus, step++);
    benchmark::DoNotOptimize(model::loss_and_grad(c, w, b, moe, &g));
  }
  const double tokens = double(c.batch * c.seq), copies = tokens * double(c.topk);
  const double moe_flops = double(c.layers) * 3.0 * (2 * copies * double(c.hidden) * 2 * double(c.ffn) +
                                                     2 * copies * double(c.ffn) * double(c.hidden));
  state.counters["tokens/s"] = benchmark::Counter(tokens * double(state.iterations()), benchmark::Counter::kIsRate);
  state.counters["moe_GFLOP/s"] =
      benchmark::Counter(moe_flops * double(state.iterations()) / 1e9, benchmark::Counter::kIsRate);
}

using fp8flow::TransposeMethod;
BENCHMARK_CAPTURE(BM_train_step, fp64, "fp64", TransposeMethod::paper_kernel)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_train_step, bf16, "bf16", TransposeMethod::paper_kernel)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_train_step, fp8_blockwise, "fp8_blockwise", TransposeMethod::paper_kernel)
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_train_step, fp8_double_quant, "fp8_double_quant", TransposeMethod::paper_kernel)
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_train_step, fp8_flow_paper_kernel, "fp8_flow", TransposeMethod::paper_kernel)
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_train_step, fp8_flow_exact, "fp8_flow", TransposeMethod::exact)->Unit(benchmark::kMillisecond);

}  // namespace
