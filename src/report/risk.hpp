// Convergence-risk rules (issue 9, docs/risk.md): read the runs of an fp8flow results store and say, per
// dataflow, whether it is safe to train with, and why not.
//
// Each rule looks at one kind of evidence (a training run's loss curve, its per-expert weight-gradient
// SQNR, the underflow of every FP8 cast, the MoE-layer SQNR, the transpose study's double-quantization
// error, ...), gathers one observation per (run, tensor, layer, expert, step) it can find for a dataflow,
// and grades the worst one against two thresholds: `ok`, `warn` (past `warn`), `fail` (past `fail`).
// A rule that finds no data for a dataflow says `n/a` and why -- never `ok`. The verdict of a dataflow is
// its worst graded rule. Thresholds and the calibration data behind them: docs/risk.md, kept in one
// table here (rule_catalog()).
//
// Dataflow names (the report's rows): fp64, bf16, fp8_blockwise, fp8_double_quant, fp8_flow(paper_kernel),
// fp8_flow(exact) -- fp8_flow is split by its transpose because that is the choice being assessed.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "io/results_store.hpp"

namespace fp8flow::report {

// Ordered from best to worst, so a verdict is the max; n/a sorts below pass and never wins over a grade.
// Threshold rules give pass / warn / fail; the loss rule, decided by an interval over seeds, gives pass /
// inconclusive / fail (docs/risk.md). `fp8flow report --fail-on` gates on this order.
enum class Status { na, pass, warn, inconclusive, fail };
std::string_view to_string(Status s);  // "n/a", "pass", "warn", "inconclusive", "fail"
// Parses "pass", "warn", "inconclusive", "fail" (the --fail-on levels); throws InputError listing them.
Status parse_status(std::string_view s);

// How a rule's value compares with its thresholds.
enum class Worse { higher, lower };

struct Rule {
  std::string_view id, title, unit;
  Worse worse;
  double warn, fail;          // thresholds in `unit`; past warn -> warn, past fail -> fail
  std::string_view source;    // the run kinds and tables it reads
  std::string_view reason;    // why this is a convergence risk (one sentence; docs/risk.md has more)
};
// Every rule, in report order. Thresholds are those of docs/risk.md ("Calibration").
const std::vector<Rule>& rule_catalog();
const Rule& rule(std::string_view id);  // throws std::logic_error for an unknown id

// One observation: where a number came from, precisely enough to find it again in the file.
struct Evidence {
  std::string run, kind, table;   // run hash, its kind, the table the value was read from
  std::string tensor;             // "" when not per tensor
  std::optional<std::int64_t> layer, expert, step, seed;
  double value = 0;               // in the rule's unit
  std::string note;               // e.g. "mean over 3 seeds, 95% CI [..]" or the compared values
};

// The loss rule's statistic (paired_stats.hpp), in percent.
struct LossStats {
  std::string reference;          // "bf16" (FP8 dataflows) or "fp64" (bf16)
  std::size_t seeds = 0;          // paired seeds
  double mean = 0, ci_low = 0, ci_high = 0, confidence = 0;  // ci NaN for one seed
  std::optional<std::size_t> seeds_to_decide;  // inconclusive: seeds that would decide (estimated)
};

struct RuleResult {
  std::string rule, dataflow;
  Status status = Status::na;
  std::optional<double> value;    // the graded value (the worst observation, or the loss statistic)
  std::string message;            // one line: what was found (or why n/a)
  std::vector<Evidence> evidence; // worst first, at most kMaxEvidence
  std::size_t observations = 0;   // how many observations the rule graded
  std::optional<LossStats> stats; // the loss rule only
};
inline constexpr std::size_t kMaxEvidence = 5;

// The loss statistic of one comparison group (train runs that differ only in dataflow, transpose and seed).
struct LossGroup {
  nlohmann::json group;   // the shared parameters
  std::string dataflow;
  Status status = Status::na;
  LossStats stats;
};

struct Assessment {
  std::string file;
  std::vector<LossGroup> loss_groups;       // every group's loss statistic (the rule grades the worst)
  std::vector<std::string> dataflows;       // in canonical order, those present in the file
  std::vector<RuleResult> results;          // rule-major: every rule x every dataflow
  std::map<std::string, Status> verdicts;   // dataflow -> worst graded rule (n/a if none graded)
};

// Grades every rule for every dataflow found in `runs` (any mix of kinds; kinds it does not know, such as
// gemm_accum_study, are ignored). Throws InputError naming run, table and column when a table the
// schema promises lacks a column or has one of the wrong type.
Assessment assess(const std::vector<io::RunRecord>& runs, const std::string& file);

// Reads every run of the store (without tensors) and assesses them. Throws InputError for a store with no runs.
Assessment assess_file(const std::filesystem::path& file, std::vector<io::RunRecord>* runs_out = nullptr);

// {"file", "dataflows", "verdicts": {df: status}, "rules": [catalog], "results": [...]}; non-finite
// numbers as null. The loss rule's results carry "reference", "seeds", "ci_low", "ci_high", "confidence" and
// "seeds_to_decide"; "loss_groups" lists the statistic of every comparison group.
nlohmann::json to_json(const Assessment& a);

// The dataflow name a run (or a moe_dataflows metrics row) belongs to; see the header comment.
std::string dataflow_key(std::string_view dataflow, std::string_view transpose);

}  // namespace fp8flow::report
