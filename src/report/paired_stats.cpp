// The paired relative loss error and its decision: see paired_stats.hpp and docs/risk.md.
#include "report/paired_stats.hpp"

#include <fmt/format.h>

#include <boost/math/distributions/students_t.hpp>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

#include "io/errors.hpp"

namespace fp8flow::report {

std::string_view to_string(Decision d) {
  switch (d) {
    case Decision::pass: return "pass";
    case Decision::inconclusive: return "inconclusive";
    case Decision::fail: return "fail";
  }
  return "?";
}

double student_t_quantile(double confidence, double dof) {
  if (!(confidence > 0 && confidence < 1)) throw InputError(fmt::format("confidence {}: expected 0 < c < 1", confidence));
  if (!(dof > 0)) throw InputError(fmt::format("Student t: {} degrees of freedom, expected > 0", dof));
  return boost::math::quantile(boost::math::students_t_distribution<double>(dof), 0.5 + confidence / 2);
}

std::optional<std::size_t> seeds_to_decide(double mean, double sd, double criterion, double confidence) {
  const double margin = std::fabs(criterion - std::fabs(mean));
  if (!std::isfinite(mean) || !std::isfinite(sd) || !(margin > 0)) return std::nullopt;
  // half(n) = t(n-1) sd / sqrt(n) decreases in n; bisect for the first n with half(n) < margin.
  const auto half = [&](std::size_t n) { return student_t_quantile(confidence, double(n - 1)) * sd / std::sqrt(double(n)); };
  if (half(2) < margin) return std::size_t(2);
  if (half(kMaxSeedsToDecide) >= margin) return std::nullopt;
  std::size_t lo = 2, hi = kMaxSeedsToDecide;  // half(lo) >= margin > half(hi)
  while (hi - lo > 1) {
    const std::size_t mid = lo + (hi - lo) / 2;
    (half(mid) < margin ? hi : lo) = mid;
  }
  return hi;
}

PairedRelError paired_relative_error(std::span<const double> loss, std::span<const double> baseline, double criterion,
                                     double confidence) {
  if (loss.size() != baseline.size())
    throw InputError(fmt::format("relative loss error: {} losses but {} baseline losses (pair them by seed)",
                                 loss.size(), baseline.size()));
  if (loss.empty()) throw InputError("relative loss error: no runs");
  if (!(criterion > 0)) throw InputError(fmt::format("relative loss error: criterion {}: expected > 0", criterion));
  PairedRelError r;
  r.n = loss.size();
  r.criterion = criterion;
  r.confidence = confidence;
  std::vector<double> rel(r.n);
  for (std::size_t i = 0; i < r.n; ++i) {
    if (!(baseline[i] > 0) || !std::isfinite(baseline[i]))
      throw InputError(fmt::format("relative loss error: baseline loss {} of pair {}: expected a finite number > 0",
                                   baseline[i], i));
    rel[i] = (loss[i] - baseline[i]) / baseline[i];
  }
  r.mean = std::accumulate(rel.begin(), rel.end(), 0.0) / double(r.n);
  const double nan = std::numeric_limits<double>::quiet_NaN();
  if (r.n >= 2) {
    double ss = 0;
    for (double v : rel) ss += (v - r.mean) * (v - r.mean);
    r.sd = std::sqrt(ss / double(r.n - 1));
    r.half_width = student_t_quantile(confidence, double(r.n - 1)) * r.sd / std::sqrt(double(r.n));
  } else {
    r.sd = r.half_width = nan;
  }
  r.low = r.mean - r.half_width;
  r.high = r.mean + r.half_width;
  if (!std::isfinite(r.mean)) {
    r.decision = Decision::fail;  // a diverged run (NaN or Inf loss)
  } else if (r.n >= 2 && r.low > -criterion && r.high < criterion) {
    r.decision = Decision::pass;
  } else if (r.n >= 2 && (r.low >= criterion || r.high <= -criterion)) {
    r.decision = Decision::fail;
  } else {
    r.decision = Decision::inconclusive;
    if (r.n >= 2) r.seeds_to_decide = seeds_to_decide(r.mean, r.sd, criterion, confidence);
  }
  return r;
}

}  // namespace fp8flow::report
