// The training simulation (issue 9, docs/training.md): a small MoE language model trained with AdamW and
// fp32 master weights on a byte-level text corpus, the MoE layer of every block run by the dataflow
// executor (reference/dataflow.hpp) under one dataflow, so that loss curves of fp64 / bf16 / the FP8
// dataflows can be compared run against run (paired by seed: same initial weights, same batches).
//
//   tokens [B, S] -> embedding [V, H] -> L blocks of
//       x += Wm . causal_conv(rmsnorm(x))      attention-free token mixing (depthwise, width 4)
//       x += MoE(rmsnorm(x))                   execute(dataflow): router, grouped GEMMs, SwiGLU, combine
//   -> rmsnorm -> LM head [V, H] -> cross-entropy on the next byte (mean over the B*S positions)
//
// Everything outside the MoE layer is computed in float64 from the fp32 master weights, so the only
// difference between two paired runs is the MoE layer's dataflow. The MoE layer's routing decision
// (which top-k experts) is taken from the float64 router logits of the layer's input and shared with the
// golden comparison; the probabilities come from the dataflow's own router step.
//
// At sampled steps every layer is also run through the fp64 golden dataflow on the same input, weights
// and upstream gradient, and the errors of y, dx, dw1, dw2, dwr (per expert too), the statistics of every
// FP8 cast (underflow, saturation, scales) and the router load are logged (tables: train_schema in
// docs/results-format.md). Results depend only on the config, never on `threads`.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "quant/transpose.hpp"
#include "reference/gemm.hpp"

namespace fp8flow::train {

struct TrainConfig {
  std::string preset = "tiny";
  // Model.
  std::size_t vocab = 256;             // byte-level tokens
  std::size_t hidden = 128, ffn = 128, experts = 4, topk = 2, layers = 2;
  std::size_t conv_width = 4;          // causal depthwise token mixing
  std::size_t align = 128;             // MoE rows per expert padded to a multiple of this (PAPER.md 2)
  std::size_t seq = 64, batch = 4;     // tokens per step = seq * batch
  // Optimisation: AdamW, linear warm-up then cosine decay to lr_min_frac * lr; global-norm clipping.
  int steps = 300;
  double lr = 3e-3, lr_min_frac = 0.1, warmup_frac = 0.05;
  double beta1 = 0.9, beta2 = 0.95, adam_eps = 1e-8, weight_decay = 0.1, grad_clip = 1.0;
  // What runs.
  std::string dataflow = "bf16";       // fp64, bf16, fp8_blockwise, fp8_double_quant, fp8_flow
  TransposeMethod transpose = TransposeMethod::paper_kernel;  // fp8_flow's scaling-aware transposes
  GemmConfig gemm_config;              // every FP8 GEMM of the MoE layer (default: the H100 model)
  std::uint64_t seed = 1;              // initial weights and the batch order
  int sample_every = 50;               // golden comparisons, cast and router statistics at these steps
                                       // (and the last step); 0: never
  std::string corpus = "data/cmake-manuals.txt";
  int threads = 1;                     // executor threads (results do not depend on it)
};

// Presets (docs/training.md): tiny (the `fp8flow train` default; all dataflows x 3 seeds < 5 min on 2
// cores), quickstart (fewer steps, for `fp8flow quickstart`), small (larger, minutes per run).
TrainConfig preset_config(std::string_view name);  // throws InputError listing the names
inline constexpr std::string_view kTrainPresetNames = "tiny, quickstart, small";
inline constexpr std::string_view kTrainDataflowNames = "fp64, bf16, fp8_blockwise, fp8_double_quant, fp8_flow";
// Throws InputError naming the field for an unusable config (steps <= 0, topk > experts, ...).
void check_config(const TrainConfig& c);

// ---- The corpus ------------------------------------------------------------------------------------
// A relative path is looked up in the working directory, then in the directories above the executable
// (build*/fp8flow -> the repository's data/). Throws InputError naming the path when missing or shorter
// than two sequences.
std::string resolve_corpus(const std::string& path);
// Throws InputError naming the file for a missing file, a directory, a device or pipe (/dev/zero), a file
// larger than kMaxCorpusBytes, a read error, or fewer than min_bytes bytes.
std::vector<std::uint8_t> load_corpus(const std::string& path, std::size_t min_bytes);
inline constexpr std::uint64_t kMaxCorpusBytes = std::uint64_t(1) << 30;
// Bytes one training run of `c` holds at its peak with a corpus of `corpus_bytes` (an estimate that errs
// high: weights, gradients and optimizer state in float64, the activations of every layer, the golden
// layer of sampled steps). Saturates instead of overflowing.
std::uint64_t train_bytes(const TrainConfig& c, std::uint64_t corpus_bytes);

// ---- The logs (one struct per table of the schema) ---------------------------------------------------
struct StepLog { int step; double loss, lr, grad_norm; };
struct GradErrorLog { int step, layer; std::string tensor; int expert; double sqnr_db, rel_err; };
struct LayerErrorLog { int step, layer; std::string tensor; double sqnr_db, rel_err; };
struct CastLog {
  int step, layer;
  std::string tensor;
  std::int64_t n;
  double underflow_frac, saturation_frac, scale_log2_min, scale_log2_max, scale_log2_mean;
};
struct RouterLog { int step, layer, expert; double load; };

struct TrainResult {
  std::vector<StepLog> steps;
  std::vector<GradErrorLog> grad_error;
  std::vector<LayerErrorLog> layer_error;
  std::vector<CastLog> casts;
  std::vector<RouterLog> router;
  double final_loss = 0;               // mean training loss over the last 10% of steps (at least one);
                                       // NaN when the run diverged
  int diverged_step = -1;              // first step with a non-finite loss or gradient norm (training stops)
  std::size_t corpus_bytes = 0;
  std::string corpus_path;
  std::size_t parameters = 0;
};

// Trains; `on_step(step)` is called after each step (progress bars). Deterministic for a given config.
TrainResult train(const TrainConfig& c, const std::function<void(int)>& on_step = {});

// Mean training loss over the last 10% of the steps (at least one): the final loss of a run.
double tail_mean_loss(std::span<const double> loss);
// The paper's loss criterion over paired runs: report/paired_stats.hpp.

}  // namespace fp8flow::train
