// The paper's loss criterion as a decision with stated power (issue 23, docs/risk.md "The loss statistic"):
// the relative final-loss error of a dataflow against its baseline, paired by seed, with its Student t
// interval over the seeds, and whether that interval decides the criterion.
//
//   r_i = (L_i - B_i) / B_i           L_i, B_i: final losses of seed i (mean over the last 10% of the steps)
//   mean r, sd (n - 1), half = t_{(1+c)/2, n-1} * sd / sqrt(n), interval [mean - half, mean + half]
//   pass          the whole interval inside (-criterion, +criterion)
//   fail          the whole interval outside it (or a run diverged: a NaN loss)
//   inconclusive  otherwise, and with one seed (no variance estimate); seeds_to_decide estimates how many
//                 seeds would decide, from the observed mean and sd
//
// One number per seed: the final-window mean of each run is one observation and runs of different seeds are
// independent, so the autocorrelation of a loss curve within a run does not enter the interval. This is the
// one implementation of the statistic: `fp8flow train`'s table, the quickstart's summary and the report's
// `loss_rel_error` rule all call it.
#pragma once

#include <cstddef>
#include <optional>
#include <span>
#include <string_view>

namespace fp8flow::report {

// PAPER.md 1 and "Convergence": relative loss error vs BF16 < 0.25%.
inline constexpr double kPaperRelLossCriterion = 0.0025;  // a fraction (0.25%)
inline constexpr double kLossConfidence = 0.95;
// seeds_to_decide looks no further than this.
inline constexpr std::size_t kMaxSeedsToDecide = 10000;

enum class Decision { pass, inconclusive, fail };
std::string_view to_string(Decision d);  // "pass", "inconclusive", "fail"

struct PairedRelError {
  std::size_t n = 0;
  double mean = 0;           // fraction; NaN when a run diverged
  double sd = 0;             // sample standard deviation of r (n - 1); NaN for n = 1
  double half_width = 0;     // NaN for n = 1
  double low = 0, high = 0;  // mean -/+ half_width
  double criterion = kPaperRelLossCriterion, confidence = kLossConfidence;
  Decision decision = Decision::inconclusive;
  // Inconclusive with n >= 2: the smallest seed count whose interval, with the observed mean and sd, lies
  // wholly inside or wholly outside the criterion. Empty when decided, with one seed, or when no count up to
  // kMaxSeedsToDecide would do (a mean on the criterion).
  std::optional<std::size_t> seeds_to_decide;
};

// Throws InputError when the spans differ in length or are empty, or a baseline loss is not a finite number > 0.
PairedRelError paired_relative_error(std::span<const double> loss, std::span<const double> baseline,
                                     double criterion = kPaperRelLossCriterion, double confidence = kLossConfidence);

// The two-sided Student t quantile t_{(1+confidence)/2, dof} (Boost.Math). Throws InputError for confidence
// outside (0, 1) or dof <= 0.
double student_t_quantile(double confidence, double dof);

// The smallest n >= 2 with t_{(1+c)/2, n-1} * sd / sqrt(n) < | criterion - |mean| | (see PairedRelError).
std::optional<std::size_t> seeds_to_decide(double mean, double sd, double criterion, double confidence = kLossConfidence);

}  // namespace fp8flow::report
