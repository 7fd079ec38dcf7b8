#include "io/train_summary.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <vector>

namespace fp8flow::io {

using nlohmann::json;

std::string train_variant(const json& params) {
  const std::string df = params.at("dataflow").get<std::string>();
  const std::string tr = params.value("transpose", std::string("paper_kernel"));
  return df == "fp8_flow" || tr != "paper_kernel" ? fmt::format("{}({})", df, tr) : df;
}

namespace {
std::string group_label(const json& params) {
  json rest = params;
  for (const char* k : {"dataflow", "transpose", "seed", "save_tensors"}) rest.erase(k);
  std::string s = rest.value("preset", std::string("?"));
  rest.erase("preset");
  for (const auto& [k, v] : rest.items()) s += fmt::format(" {}={}", k, v.is_string() ? v.get<std::string>() : v.dump());
  return s;
}
int variant_rank(const std::string& v) {
  static const char* order[] = {"bf16", "fp8_blockwise", "fp8_double_quant", "fp8_flow(paper_kernel)", "fp8_flow(exact)",
                                "fp64"};
  for (int i = 0; i < 6; ++i)
    if (v == order[i]) return i;
  return 6;
}
}  // namespace

std::vector<TrainVariantSummary> summarize_train_runs(const std::vector<RunRecord>& runs) {
  // group -> variant -> seed -> (final loss, hash)
  std::map<std::string, std::map<std::string, std::map<std::int64_t, std::pair<double, std::string>>>> g;
  for (const RunRecord& r : runs) {
    if (r.kind != "train") continue;
    const json& fl = r.attrs.contains("final_loss") ? r.attrs["final_loss"] : json();
    const double loss = fl.is_number() ? fl.get<double>() : std::numeric_limits<double>::quiet_NaN();
    g[group_label(r.params)][train_variant(r.params)][r.params.at("seed").get<std::int64_t>()] = {loss, r.hash};
  }
  std::vector<TrainVariantSummary> out;
  for (const auto& [group, variants] : g) {
    std::vector<std::string> names;
    for (const auto& [v, _] : variants) names.push_back(v);
    std::stable_sort(names.begin(), names.end(),
                     [](const std::string& a, const std::string& b) { return variant_rank(a) < variant_rank(b); });
    for (const auto& v : names) {
      TrainVariantSummary s;
      s.group = group;
      s.variant = v;
      for (const auto& [seed, lh] : variants.at(v)) {
        s.seeds.push_back(seed);
        s.final_loss.push_back(lh.first);
        s.hashes.push_back(lh.second);
      }
      s.reference = v == "fp64" ? "" : v == "bf16" ? "fp64" : "bf16";
      const auto base = s.reference.empty() ? variants.end() : variants.find(s.reference);
      if (base != variants.end()) {
        std::vector<double> loss, ref;
        for (const auto& [seed, lh] : variants.at(v))
          if (auto it = base->second.find(seed);
              it != base->second.end() && it->second.first > 0 && std::isfinite(it->second.first)) {
            loss.push_back(lh.first);
            ref.push_back(it->second.first);
          }
        if (!loss.empty()) s.rel = report::paired_relative_error(loss, ref);
      }
      out.push_back(std::move(s));
    }
  }
  return out;
}

json to_json(const TrainVariantSummary& s) {
  auto num = [](double v) { return std::isfinite(v) ? json(v) : json(); };
  json losses = json::array();
  for (double v : s.final_loss) losses.push_back(num(v));
  json j = {{"group", s.group}, {"variant", s.variant}, {"seeds", s.seeds}, {"final_loss", losses}, {"runs", s.hashes}};
  j["reference"] = s.reference.empty() ? json() : json(s.reference);
  if (s.rel) {
    const auto& r = *s.rel;
    j["rel_loss_error"] = {{"reference", s.reference},
                           {"n", r.n},
                           {"mean", num(r.mean)},
                           {"sd", num(r.sd)},
                           {"ci_low", num(r.low)},
                           {"ci_high", num(r.high)},
                           {"confidence", r.confidence},
                           {"criterion", r.criterion},
                           {"decision", report::to_string(r.decision)},
                           {"seeds_to_decide", r.seeds_to_decide ? json(*r.seeds_to_decide) : json()}};
  } else {
    j["rel_loss_error"] = nullptr;
  }
  return j;
}

namespace {
std::string pct(double v) { return std::isfinite(v) ? fmt::format("{:+.3f}%", 100 * v) : "nan"; }
}  // namespace

std::string format_train_table(const std::vector<TrainVariantSummary>& rows) {
  std::string out, group;
  for (const auto& s : rows) {
    if (s.group != group) {
      group = s.group;
      out += fmt::format("\nTraining {} ({} seed{}): final loss = mean training loss over the last 10% of steps; "
                         "relative loss error vs the reference (bf16 for FP8, fp64 for bf16) paired by seed with its "
                         "95% Student t interval over seeds; paper's criterion |rel| < {:.2f}%: pass when the interval "
                         "is inside, fail when outside, else inconclusive (with the seeds that would decide)\n",
                         group, s.seeds.size(), s.seeds.size() == 1 ? "" : "s", 100 * report::kPaperRelLossCriterion);
      out += fmt::format("  {:<24} {:>11} {:>5} {:>10} {:>24} {}\n", "dataflow", "final loss", "vs", "rel error",
                         "95% CI", "decision (|rel| < 0.25%)");
    }
    double mean = 0;
    for (double v : s.final_loss) mean += v;
    mean /= double(std::max<std::size_t>(1, s.final_loss.size()));
    if (!s.rel) {
      out += fmt::format("  {:<24} {:>11.4f} {:>5} {:>10}\n", s.variant, mean, s.reference.empty() ? "-" : s.reference,
                         s.reference.empty() ? "reference" : fmt::format("no {}", s.reference));
      continue;
    }
    const auto& r = *s.rel;
    std::string decision(report::to_string(r.decision));
    if (r.decision == report::Decision::inconclusive)
      decision += r.n < 2 ? " (>= 2 seeds)" : r.seeds_to_decide ? fmt::format(" (~{} seeds)", *r.seeds_to_decide) : "";
    out += fmt::format("  {:<24} {:>11.4f} {:>5} {:>10} {:>24} {}\n", s.variant, mean, s.reference, pct(r.mean),
                       r.n >= 2 ? fmt::format("[{}, {}]", pct(r.low), pct(r.high)) : "(one seed)", decision);
  }
  return out;
}

}  // namespace fp8flow::io
