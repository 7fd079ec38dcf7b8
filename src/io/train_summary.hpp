// The paper's loss criterion over the `train` runs of a results store (docs/training.md): runs grouped by
// every parameter but dataflow, transpose and seed; within a group each variant (bf16, fp8_blockwise,
// fp8_double_quant, fp8_flow(paper_kernel), fp8_flow(exact)) is paired with bf16 by seed, and bf16 with fp64, and
// the relative loss error and its decision computed by report::paired_relative_error (report/paired_stats.hpp).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "io/results_store.hpp"
#include "report/paired_stats.hpp"

namespace fp8flow::io {

struct TrainVariantSummary {
  std::string group;                // the shared parameters, e.g. "tiny steps=200 layers=2 experts=4 lr=0.003"
  std::string variant;              // dataflow, or dataflow(transpose) for fp8_flow
  std::vector<std::int64_t> seeds;  // ascending
  std::vector<double> final_loss;   // per seed (NaN: diverged)
  std::vector<std::string> hashes;  // per seed
  std::string reference;            // "bf16" for the FP8 variants, "fp64" for bf16, "" for fp64
  std::optional<report::PairedRelError> rel;  // over the seeds paired with a `reference` run; none without one
};

// The variant name of a train run's params.
std::string train_variant(const nlohmann::json& params);
// Runs of other kinds are ignored. Variants in the order bf16, fp8_blockwise, fp8_double_quant,
// fp8_flow(paper_kernel), fp8_flow(exact), fp64 (others after them).
std::vector<TrainVariantSummary> summarize_train_runs(const std::vector<RunRecord>& runs);
nlohmann::json to_json(const TrainVariantSummary& s);
// The table `fp8flow train` and `fp8flow quickstart` print: one block per group, one line per variant
// (mean final loss over seeds, relative loss error vs its reference with its 95% interval, the decision on
// the paper's criterion and, when inconclusive, the seeds that would decide).
std::string format_train_table(const std::vector<TrainVariantSummary>& rows);

}  // namespace fp8flow::io
