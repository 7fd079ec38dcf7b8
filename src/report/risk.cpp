// Convergence-risk rules: see risk.hpp and docs/risk.md (reasons, thresholds, calibration).
#include "report/risk.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <set>
#include <stdexcept>

#include "io/errors.hpp"
#include "reference/dataflow.hpp"
#include "reference/train.hpp"
#include "report/paired_stats.hpp"

namespace fp8flow::report {

using nlohmann::json;

std::string_view to_string(Status s) {
  switch (s) {
    case Status::na: return "n/a";
    case Status::pass: return "pass";
    case Status::warn: return "warn";
    case Status::inconclusive: return "inconclusive";
    case Status::fail: return "fail";
  }
  return "?";
}

// ---- The rules and their thresholds (docs/risk.md, "Rules" and "Calibration") ----------------------
// Each threshold was set from `fp8flow train --preset tiny --dataflow all --seeds 3` and the moe/transpose runs
// of experiments/{quickstart,paper_ds_v2_lite,paper_ds_v3}.toml; docs/risk.md ("Calibration") lists the values
// observed for each dataflow and how each threshold sits against them.
// kPaperLossCriterion is the paper's own number (PAPER.md 1 and "Convergence": relative loss error vs
// BF16 < 0.25%), not a calibrated one; the rule decides it with the paired interval (paired_stats.hpp).
inline constexpr double kPaperLossCriterion = 100 * kPaperRelLossCriterion;  // percent

Status parse_status(std::string_view s) {
  for (Status st : {Status::pass, Status::warn, Status::inconclusive, Status::fail})
    if (s == to_string(st)) return st;
  throw InputError(fmt::format("status '{}': expected one of warn, inconclusive, fail (or pass)", s));
}

const std::vector<Rule>& rule_catalog() {
  static const std::vector<Rule> rules{
      {"loss_rel_error", "Relative final-loss error (FP8 vs BF16; BF16 vs fp64)", "%", Worse::higher,
       kPaperLossCriterion, kPaperLossCriterion,
       "train: steps (final loss = mean over the last 10% of steps), paired by seed",
       "The paper's acceptance criterion: an FP8 run's final loss within 0.25% of the BF16 run's (the bf16 row: of "
       "the fp64 run's). pass when the 95% interval over paired seeds lies inside +-0.25%, fail when it lies "
       "outside, else inconclusive with the number of seeds that would decide."},
      {"loss_nonfinite", "Non-finite loss or gradient norm", "steps", Worse::higher, 1, 1, "train: steps",
       "A NaN or Inf loss or gradient norm at any step means the run diverged; nothing after it can be trusted."},
      {"wgrad_sqnr_expert", "Weight-gradient SQNR per expert", "dB", Worse::lower, 18, 12,
       "train: grad_error (tensors dw1, dw2; expert >= 0)",
       "A weight gradient this noisy relative to the fp64 golden gradient drives AdamW with noise; experts that "
       "receive few tokens are the first to suffer, which the per-tensor average hides."},
      {"depth_error_growth", "Error growth through depth", "dB", Worse::higher, 6, 12, "train: layer_error (y, dx)",
       "If each deeper layer (y: forward order; dx: backward order) is less accurate than the first, errors "
       "compound with depth and a deeper model will be worse than this one."},
      {"cast_underflow", "Underflow to zero per FP8 cast (training)", "1", Worse::higher, 0.05, 0.20,
       "train: casts (underflow_frac: nonzero inputs that became 0)",
       "Values flushed to zero carry no gradient signal at all; a cast that zeroes a large share of its nonzero "
       "inputs silently removes part of the update."},
      {"moe_cast_underflow", "Underflow to zero per FP8 tensor (MoE layer study)", "1", Worse::higher, 0.35, 0.5,
       "moe_dataflows: metrics (fp8 tensors, underflow_to_zero / n)",
       "The same loss of signal on one MoE layer with synthetic inputs (outlier tokens in dy, outlier channels in "
       "x), where the column copies of act and dh lose far more than in training; hence its own thresholds."},
      {"cast_saturation", "Codes at +-max per FP8 cast", "1", Worse::higher, 0.01, 0.05,
       "train: casts (saturation_frac); moe_dataflows: metrics (fp8 tensors, saturated / n)",
       "Just-in-time scaling from the block amax never clips a finite input, so at most about one code per 128-element "
       "tile (its amax) lands on +-max; more means clipped outliers or a broken scale, and non-finite codes a NaN/Inf."},
      {"scale_oscillation", "Scale oscillation across steps", "binades/interval", Worse::higher, 4.0, 8.0,
       "train: casts (scale_log2_mean at sampled steps)",
       "The mean log2 scale of a tensor should drift smoothly with training; back-and-forth jumps mean the "
       "tensor's range is unstable and each step sees a different quantization grid."},
      {"router_load_shift", "Router load shift vs BF16", "1", Worse::higher, 0.18, 0.25,
       "train: router, paired with the bf16 run of the same seed",
       "The share of routed tokens an expert gets should follow the BF16 run's; a large shift means the FP8 run "
       "is training a differently balanced model."},
      {"moe_output_sqnr", "MoE layer output and gradient SQNR", "dB", Worse::lower, 18, 14,
       "moe_dataflows: metrics (y, dx, dw1, dw2, dwr vs the fp64 golden layer)",
       "The error one MoE layer hands to the rest of the model (y forward, dx backward) and to the optimizer (dw)."},
      {"moe_sqnr_drop", "SQNR drop across the MoE layer", "dB", Worse::higher, 13, 16,
       "moe_dataflows: metrics (x.q -> y, dy.q -> dx, x.q -> dw1)",
       "The E4M3 entry cast (x.q, dy.q) costs ~31.5 dB SQNR in any FP8 dataflow; what the layer loses beyond it "
       "comes from its inner casts, transposes and GEMMs, which is what distinguishes one dataflow from another."},
      {"transpose_extra_noise", "Column-copy noise vs direct quantization", "%", Worse::higher, 1, 5,
       "transpose_study: metrics (sqnr_db vs input; naive = fp8_double_quant and fp8_blockwise's xp/dout copies, "
       "paper_kernel/exact = fp8_flow, direct = fp8_blockwise_bf16_dispatch)",
       "Double quantization (PAPER.md 1): a column copy made from the rowwise FP8 tensor rounds twice; this is its "
       "noise power above quantizing the high-precision column directly."},
      {"transpose_extra_underflow", "Column-copy underflow vs direct quantization", "1", Worse::higher, 0.01, 0.6,
       "transpose_study: metrics (underflow_to_zero / n vs input)",
       "The scaling-aware transpose shifts exponents, so values below the target tile's subnormal range flush to "
       "zero (PAPER.md 3.5's underflow tail); this is the share of elements lost beyond direct quantization."},
  };
  return rules;
}

const Rule& rule(std::string_view id) {
  for (const Rule& r : rule_catalog())
    if (r.id == id) return r;
  throw std::logic_error(fmt::format("unknown risk rule '{}'", id));
}

std::string dataflow_key(std::string_view dataflow, std::string_view transpose) {
  if (dataflow == "fp8_flow") return fmt::format("fp8_flow({})", transpose.empty() ? "paper_kernel" : transpose);
  return std::string(dataflow);
}

namespace {

// Canonical row order of the report.
const std::array<std::string_view, 7> kDataflowOrder{"fp64",
                                                      "bf16",
                                                      "fp8_blockwise_bf16_dispatch",
                                                      "fp8_blockwise",
                                                      "fp8_double_quant",
                                                      "fp8_flow(paper_kernel)",
                                                      "fp8_flow(exact)"};
// FP8 dataflows, the negative controls (ctl_*: FP8 recipes known to hurt) included.
bool is_fp8(std::string_view df) { return df.starts_with("fp8") || df.starts_with("ctl_"); }

Status grade(const Rule& r, double v) {
  if (std::isnan(v)) return Status::fail;
  if (r.worse == Worse::higher) return v >= r.fail ? Status::fail : v >= r.warn ? Status::warn : Status::pass;
  return v <= r.fail ? Status::fail : v <= r.warn ? Status::warn : Status::pass;
}
// a is worse than b under the rule (NaN is the worst of all).
bool worse_than(const Rule& r, double a, double b) {
  if (std::isnan(a)) return !std::isnan(b);
  if (std::isnan(b)) return false;
  return r.worse == Worse::higher ? a > b : a < b;
}

// ---- Reading tables (errors name run, table and column) --------------------------------------------
const io::Table* find_table(const io::RunRecord& r, std::string_view name) {
  for (const auto& t : r.tables)
    if (t.name == name) return &t;
  return nullptr;
}
const io::Column& col(const io::RunRecord& r, const io::Table& t, std::string_view name) {
  const io::Column* c = t.find(name);
  if (!c) throw InputError(fmt::format("run {} ({}): table '{}' has no column '{}'", r.hash, r.kind, t.name, name));
  return *c;
}
// A numeric column as doubles, whether stored as int64 or float64.
std::vector<double> num(const io::RunRecord& r, const io::Table& t, std::string_view name) {
  const io::Column& c = col(r, t, name);
  if (const auto* d = std::get_if<std::vector<double>>(&c.values)) return *d;
  if (const auto* i = std::get_if<std::vector<std::int64_t>>(&c.values)) return {i->begin(), i->end()};
  throw InputError(fmt::format("run {} ({}): column '{}/{}' is text, expected numbers", r.hash, r.kind, t.name, name));
}
std::vector<std::int64_t> ints(const io::RunRecord& r, const io::Table& t, std::string_view name) {
  const io::Column& c = col(r, t, name);
  if (const auto* i = std::get_if<std::vector<std::int64_t>>(&c.values)) return *i;
  if (const auto* d = std::get_if<std::vector<double>>(&c.values)) {
    std::vector<std::int64_t> out;
    for (double v : *d) out.push_back(std::int64_t(v));
    return out;
  }
  throw InputError(fmt::format("run {} ({}): column '{}/{}' is text, expected integers", r.hash, r.kind, t.name, name));
}
const std::vector<std::string>& text(const io::RunRecord& r, const io::Table& t, std::string_view name) {
  const io::Column& c = col(r, t, name);
  if (const auto* s = std::get_if<std::vector<std::string>>(&c.values)) return *s;
  throw InputError(fmt::format("run {} ({}): column '{}/{}' is numeric, expected text", r.hash, r.kind, t.name, name));
}
std::string param_string(const io::RunRecord& r, std::string_view key) {
  const auto it = r.params.find(std::string(key));
  if (it == r.params.end()) return {};
  if (it->is_string()) return it->get<std::string>();
  if (it->is_array() && it->size() == 1 && it->front().is_string()) return it->front().get<std::string>();
  return it->dump();
}
std::optional<std::int64_t> param_int(const io::RunRecord& r, std::string_view key) {
  const auto it = r.params.find(std::string(key));
  if (it == r.params.end() || !it->is_number_integer()) return std::nullopt;
  return it->get<std::int64_t>();
}
std::string run_dataflow(const io::RunRecord& r) {
  return dataflow_key(param_string(r, "dataflow"), param_string(r, "transpose"));
}

std::string fmt_value(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  const double a = std::fabs(v);
  if (a != 0 && (a < 1e-3 || a >= 1e5)) return fmt::format("{:.3g}", v);
  return fmt::format("{:.4g}", v);
}

// ---- Observations, graded per (rule, dataflow) ----------------------------------------------------
struct Obs {
  double value;
  Evidence ev;
};
using ObsMap = std::map<std::string, std::vector<Obs>>;  // dataflow -> observations

RuleResult grade_worst(const Rule& rule, const std::string& df, std::vector<Obs> obs, const std::string& why_na,
                       std::string_view what) {
  RuleResult res;
  res.rule = rule.id, res.dataflow = df;
  if (obs.empty()) {
    res.message = why_na;
    return res;
  }
  std::stable_sort(obs.begin(), obs.end(), [&](const Obs& a, const Obs& b) { return worse_than(rule, a.value, b.value); });
  res.observations = obs.size();
  res.value = obs.front().value;
  res.status = grade(rule, obs.front().value);
  const Evidence& w = obs.front().ev;
  std::string where = w.tensor.empty() ? "" : fmt::format(" {}", w.tensor);
  if (w.layer) where += fmt::format(" layer {}", *w.layer);
  if (w.expert) where += fmt::format(" expert {}", *w.expert);
  if (w.step) where += fmt::format(" step {}", *w.step);
  const double thr = res.status == Status::fail ? rule.fail : rule.warn;
  const char* cmp = rule.worse == Worse::higher ? (res.status == Status::pass ? "<" : ">=") : (res.status == Status::pass ? ">" : "<=");
  res.message = fmt::format("worst {} = {} {} ({}{}, run {}) {} {} threshold {}; {} observations", what,
                            fmt_value(obs.front().value), rule.unit, w.kind, where, w.run, cmp,
                            res.status == Status::fail ? "fail" : "warn", fmt_value(thr), obs.size());
  for (std::size_t i = 0; i < obs.size() && i < kMaxEvidence; ++i) {
    res.evidence.push_back(obs[i].ev);
    res.evidence.back().value = obs[i].value;
  }
  return res;
}

Evidence ev(const io::RunRecord& r, std::string table) {
  Evidence e;
  e.run = r.hash;
  e.kind = r.kind;
  e.table = std::move(table);
  e.seed = param_int(r, "seed");
  return e;
}

// ---- train: per-row rules ------------------------------------------------------------------------
void collect_train(const io::RunRecord& r, std::map<std::string, ObsMap>& obs) {
  const std::string df = run_dataflow(r);
  if (const io::Table* t = find_table(r, "steps")) {
    const auto step = ints(r, *t, "step");
    const auto loss = num(r, *t, "loss"), gn = num(r, *t, "grad_norm");
    std::size_t bad = 0;
    std::optional<std::int64_t> first;
    for (std::size_t i = 0; i < step.size(); ++i)
      if (!std::isfinite(loss[i]) || !std::isfinite(gn[i])) {
        ++bad;
        if (!first) first = step[i];
      }
    Evidence e = ev(r, "steps");
    e.step = first;
    e.note = bad ? fmt::format("{} of {} steps non-finite, first at step {}", bad, step.size(), *first)
                 : fmt::format("all {} steps finite", step.size());
    if (!step.empty()) obs["loss_nonfinite"][df].push_back({double(bad), e});
  }
  if (df == "fp64") return;  // the golden dataflow: its layer errors against fp64 are zero by construction
  if (const io::Table* t = find_table(r, "grad_error")) {
    const auto step = ints(r, *t, "step"), layer = ints(r, *t, "layer"), expert = ints(r, *t, "expert");
    const auto& tensor = text(r, *t, "tensor");
    const auto sq = num(r, *t, "sqnr_db");
    for (std::size_t i = 0; i < step.size(); ++i) {
      if (expert[i] < 0 || (tensor[i] != "dw1" && tensor[i] != "dw2")) continue;
      Evidence e = ev(r, "grad_error");
      e.tensor = tensor[i], e.layer = layer[i], e.expert = expert[i], e.step = step[i];
      obs["wgrad_sqnr_expert"][df].push_back({sq[i], e});
    }
  }
  if (const io::Table* t = find_table(r, "layer_error")) {
    const auto step = ints(r, *t, "step"), layer = ints(r, *t, "layer");
    const auto& tensor = text(r, *t, "tensor");
    const auto rel = num(r, *t, "rel_err"), sq = num(r, *t, "sqnr_db");
    // (step, tensor) -> layer -> (sqnr, rel)
    std::map<std::pair<std::int64_t, std::string>, std::map<std::int64_t, std::pair<double, double>>> series;
    for (std::size_t i = 0; i < step.size(); ++i) series[{step[i], tensor[i]}][layer[i]] = {sq[i], rel[i]};
    for (const auto& [key, by_layer] : series) {
      if (by_layer.size() < 2) continue;
      // Propagation order: y forward (first layer first), dx backward (last layer first).
      const bool backward = key.second == "dx";
      const auto& start = backward ? *by_layer.rbegin() : *by_layer.begin();
      const auto& end = backward ? *by_layer.begin() : *by_layer.rbegin();
      const double r0 = start.second.second, r1 = end.second.second;
      if (!(r0 > 0) || std::isinf(r0)) continue;  // exact first layer (fp64) or no signal: no ratio to grade
      Evidence e = ev(r, "layer_error");
      e.tensor = key.second, e.step = key.first, e.layer = end.first;
      e.note = fmt::format("rel_err {} at layer {} -> {} at layer {}", fmt_value(r0), start.first, fmt_value(r1),
                           end.first);
      obs["depth_error_growth"][df].push_back({20.0 * std::log10(r1 / r0), e});
    }
  }
  if (const io::Table* t = find_table(r, "casts")) {
    const auto step = ints(r, *t, "step"), layer = ints(r, *t, "layer");
    const auto& tensor = text(r, *t, "tensor");
    const auto uf = num(r, *t, "underflow_frac"), sat = num(r, *t, "saturation_frac");
    const auto smean = num(r, *t, "scale_log2_mean");
    std::map<std::pair<std::int64_t, std::string>, std::map<std::int64_t, double>> scale;  // (layer, tensor) -> step -> mean
    for (std::size_t i = 0; i < step.size(); ++i) {
      Evidence e = ev(r, "casts");
      e.tensor = tensor[i], e.layer = layer[i], e.step = step[i];
      obs["cast_underflow"][df].push_back({uf[i], e});
      obs["cast_saturation"][df].push_back({sat[i], e});
      scale[{layer[i], tensor[i]}][step[i]] = smean[i];
    }
    for (const auto& [key, by_step] : scale) {
      if (by_step.size() < 3) continue;
      double tv = 0, net = 0, prev = by_step.begin()->second;
      for (auto it = std::next(by_step.begin()); it != by_step.end(); ++it) {
        tv += std::fabs(it->second - prev);
        net += it->second - prev;
        prev = it->second;
      }
      Evidence e = ev(r, "casts");
      e.tensor = key.second, e.layer = key.first;
      e.note = fmt::format("{} sampled steps {}..{}: total movement {} binades, net {}", by_step.size(),
                           by_step.begin()->first, by_step.rbegin()->first, fmt_value(tv), fmt_value(net));
      obs["scale_oscillation"][df].push_back({(tv - std::fabs(net)) / double(by_step.size() - 1), e});
    }
  }
}

// ---- train: rules over paired runs (loss, router) -------------------------------------------------
// The mean loss over the last 10% of steps (at least one step): the run attribute final_loss's definition
// (docs/results-format.md), recomputed from the steps table so that the number is checked, not trusted.
std::optional<double> final_loss(const io::RunRecord& r) {
  const io::Table* t = find_table(r, "steps");
  if (!t || t->rows() == 0) return std::nullopt;
  return train::tail_mean_loss(num(r, *t, "loss"));
}

// Runs that differ only in dataflow/transpose (and seed) belong to one comparison group.
std::string group_key(const io::RunRecord& r) {
  json p = r.params;
  for (const char* k : {"dataflow", "transpose", "seed"}) p.erase(k);
  return p.dump();
}

void assess_pairs(const std::vector<const io::RunRecord*>& train, std::vector<RuleResult>& loss_out,
                  std::vector<RuleResult>& router_out, std::vector<LossGroup>& groups_out,
                  const std::vector<std::string>& dataflows) {
  // group -> dataflow -> seed -> run
  std::map<std::string, std::map<std::string, std::map<std::int64_t, const io::RunRecord*>>> groups;
  for (const io::RunRecord* r : train) groups[group_key(*r)][run_dataflow(*r)][param_int(*r, "seed").value_or(0)] = r;

  const Rule& lr = rule("loss_rel_error");
  const Rule& rr = rule("router_load_shift");
  for (const std::string& df : dataflows) {
    const std::string ref = df == "bf16" ? "fp64" : "bf16";
    RuleResult loss, router;
    loss.rule = lr.id, router.rule = rr.id;
    loss.dataflow = router.dataflow = df;
    if (df == "fp64") {
      loss.message = router.message = "fp64 is the golden reference";
    } else if (!is_fp8(df) && df != "bf16") {
      loss.message = router.message = "not a training dataflow";
    }
    std::vector<Obs> router_obs;
    bool any_runs = false;
    for (const auto& [gk, by_df] : groups) {
      const auto it = by_df.find(df), rit = by_df.find(ref);
      if (it == by_df.end() || df == "fp64") continue;
      any_runs = true;
      if (rit == by_df.end()) continue;
      // Loss: relative error of the final loss per paired seed.
      std::vector<double> rel_loss, rel_base;
      std::vector<Evidence> evs;
      std::string unpaired_note;
      for (const auto& [seed, run] : it->second) {
        const auto sr = rit->second.find(seed);
        if (sr == rit->second.end()) continue;
        const auto l = final_loss(*run), l0 = final_loss(*sr->second);
        if (!l || !l0) continue;
        if (!(*l0 > 0) || !std::isfinite(*l0)) {  // the reference diverged: nothing to compare with
          unpaired_note += fmt::format("; seed {} left out: the {} run's final loss is {}", seed, ref, fmt_value(*l0));
          continue;
        }
        const double v = 100.0 * (*l - *l0) / *l0;
        rel_loss.push_back(*l);
        rel_base.push_back(*l0);
        Evidence e = ev(*run, "steps");
        e.value = v;
        e.note = fmt::format("final loss {} vs {} {} (run {})", fmt_value(*l), ref, fmt_value(*l0), sr->second->hash);
        evs.push_back(e);
        // Router: |load - load_ref| per (step, layer, expert).
        const io::Table *t = find_table(*run, "router"), *t0 = find_table(*sr->second, "router");
        if (t && t0) {
          std::map<std::array<std::int64_t, 3>, double> ref_load;
          const auto s0 = ints(*sr->second, *t0, "step"), l0s = ints(*sr->second, *t0, "layer"),
                     e0 = ints(*sr->second, *t0, "expert");
          const auto ld0 = num(*sr->second, *t0, "load");
          for (std::size_t i = 0; i < s0.size(); ++i) ref_load[{s0[i], l0s[i], e0[i]}] = ld0[i];
          const auto s1 = ints(*run, *t, "step"), l1 = ints(*run, *t, "layer"), e1 = ints(*run, *t, "expert");
          const auto ld1 = num(*run, *t, "load");
          for (std::size_t i = 0; i < s1.size(); ++i) {
            const auto f = ref_load.find({s1[i], l1[i], e1[i]});
            if (f == ref_load.end()) continue;
            Evidence re = ev(*run, "router");
            re.layer = l1[i], re.expert = e1[i], re.step = s1[i];
            re.note = fmt::format("load {} vs {} {} (run {})", fmt_value(ld1[i]), ref, fmt_value(f->second), sr->second->hash);
            router_obs.push_back({std::fabs(ld1[i] - f->second), re});
          }
        }
      }
      if (rel_loss.empty()) continue;
      const PairedRelError pe = paired_relative_error(rel_loss, rel_base);
      Status st = pe.decision == Decision::pass ? Status::pass : pe.decision == Decision::fail ? Status::fail
                                                                                               : Status::inconclusive;
      const double mean = 100 * pe.mean, graded = std::isfinite(pe.mean) ? std::fabs(mean) : NAN;
      const std::string ci = pe.n >= 2 ? fmt::format("95% CI [{}, {}] %", fmt_value(100 * pe.low), fmt_value(100 * pe.high))
                                       : std::string("one seed: no confidence interval");
      for (auto& e : evs) e.note += fmt::format("; mean over {} seed(s) {} %, {}", pe.n, fmt_value(mean), ci);
      const LossStats stats{ref, pe.n, 100 * pe.mean, 100 * pe.low, 100 * pe.high, pe.confidence, pe.seeds_to_decide};
      groups_out.push_back({json::parse(gk), df, st, stats});
      // Keep the worst comparison group: the worse decision, then the larger |mean|.
      if (!loss.value || st > loss.status || (st == loss.status && worse_than(lr, graded, *loss.value))) {
        loss.status = st;
        loss.value = graded;
        loss.observations = pe.n;
        loss.stats = stats;
        std::string why;
        if (!std::isfinite(pe.mean)) why = "a run diverged (non-finite final loss): fail";
        else if (st == Status::pass) why = fmt::format("the interval lies inside +-{} %: pass", fmt_value(lr.fail));
        else if (st == Status::fail) why = fmt::format("the interval lies outside +-{} %: fail", fmt_value(lr.fail));
        else if (pe.n < 2) why = "one seed gives no interval: inconclusive; run at least 2 seeds (more to decide)";
        else if (pe.seeds_to_decide)
          why = fmt::format("the interval straddles +-{} %: inconclusive; about {} seeds would decide (estimated from "
                            "the observed mean and sd)",
                            fmt_value(lr.fail), *pe.seeds_to_decide);
        else why = fmt::format("the interval straddles +-{} % and the mean sits on it: inconclusive", fmt_value(lr.fail));
        loss.message = fmt::format("relative final-loss error vs {}: mean {} % over {} paired seed(s), {}; {}{}", ref,
                                   fmt_value(mean), pe.n, ci, why, unpaired_note);
        std::sort(evs.begin(), evs.end(), [](const Evidence& a, const Evidence& b) { return std::fabs(a.value) > std::fabs(b.value); });
        if (evs.size() > kMaxEvidence) evs.resize(kMaxEvidence);
        loss.evidence = evs;
      }
    }
    if (loss.message.empty() && !loss.value)
      loss.message = any_runs ? fmt::format("no {} training run with the same seed and settings to compare with", ref)
                              : "no training runs (kind train) for this dataflow";
    if (df != "fp64" && (is_fp8(df) || df == "bf16")) {
      router = grade_worst(rr, df, router_obs,
                           any_runs ? fmt::format("no paired {} run with router statistics", ref)
                                    : "no training runs (kind train) for this dataflow",
                           "|load - reference load|");
    }
    loss_out.push_back(std::move(loss));
    router_out.push_back(std::move(router));
  }
}

// ---- moe_dataflows -------------------------------------------------------------------------------
void collect_moe(const io::RunRecord& r, std::map<std::string, ObsMap>& obs) {
  const io::Table* t = find_table(r, "metrics");
  if (!t) throw InputError(fmt::format("run {} (moe_dataflows): no table 'metrics'", r.hash));
  const auto& dfc = text(r, *t, "dataflow");
  const auto& tensor = text(r, *t, "tensor");
  const auto& prec = text(r, *t, "prec");
  const auto sq = num(r, *t, "sqnr_db"), n = num(r, *t, "n"), uf = num(r, *t, "underflow_to_zero"),
             sat = num(r, *t, "saturated");
  const std::string transpose = param_string(r, "transpose");
  std::map<std::string, std::map<std::string, double>> sqnr;  // df -> tensor -> sqnr
  for (std::size_t i = 0; i < tensor.size(); ++i) {
    const std::string df = dataflow_key(dfc[i], transpose);
    sqnr[df][tensor[i]] = sq[i];
    Evidence e = ev(r, "metrics");
    e.tensor = tensor[i];
    if (df != "fp64" && (tensor[i] == "y" || tensor[i] == "dx" || tensor[i] == "dw1" || tensor[i] == "dw2" || tensor[i] == "dwr"))
      obs["moe_output_sqnr"][df].push_back({sq[i], e});
    if (prec[i] == "fp8" && n[i] > 0) {
      e.note = fmt::format("{} of {} elements", fmt_value(uf[i]), fmt_value(n[i]));
      obs["moe_cast_underflow"][df].push_back({uf[i] / n[i], e});
      e.note = fmt::format("{} of {} elements", fmt_value(sat[i]), fmt_value(n[i]));
      obs["cast_saturation"][df].push_back({sat[i] / n[i], e});
    }
  }
  for (const auto& [df, by] : sqnr) {
    for (const auto& [in, out] : std::array<std::pair<const char*, const char*>, 3>{{{"x.q", "y"}, {"dy.q", "dx"}, {"x.q", "dw1"}}}) {
      const auto a = by.find(in), b = by.find(out);
      if (a == by.end() || b == by.end()) continue;  // no FP8 entry cast (fp64, bf16): n/a
      Evidence e = ev(r, "metrics");
      e.tensor = out;
      e.note = fmt::format("SQNR {} dB at {} -> {} dB at {}", fmt_value(a->second), in, fmt_value(b->second), out);
      obs["moe_sqnr_drop"][df].push_back({a->second - b->second, e});
    }
  }
}

// ---- transpose_study -----------------------------------------------------------------------------
void collect_transpose(const io::RunRecord& r, std::map<std::string, ObsMap>& obs) {
  const io::Table* t = find_table(r, "metrics");
  if (!t) throw InputError(fmt::format("run {} (transpose_study): no table 'metrics'", r.hash));
  const auto& method = text(r, *t, "method");
  const auto& reference = text(r, *t, "reference");
  const auto sq = num(r, *t, "sqnr_db"), n = num(r, *t, "n"), uf = num(r, *t, "underflow_to_zero");
  std::map<std::string, std::size_t> row;  // method -> row against the input
  for (std::size_t i = 0; i < method.size(); ++i)
    if (reference[i] == "input") row[method[i]] = i;
  const auto d = row.find("direct");
  if (d == row.end()) return;
  const std::string dist = param_string(r, "distribution");
  // Which dataflow makes its column copies which way (docs/dataflows.md "Which copies are requantized"):
  // fp8_double_quant all by DQ->Q; fp8_blockwise those of xp and dout (from the dequantized FP8 dispatch
  // output; act and dh are direct); fp8_flow by SAT; only fp8_blockwise_bf16_dispatch quantizes every copy directly.
  for (const auto& [m, df] : std::array<std::pair<const char*, const char*>, 5>{
           {{"naive", "fp8_double_quant"}, {"naive", "fp8_blockwise"}, {"paper_kernel", "fp8_flow(paper_kernel)"},
            {"exact", "fp8_flow(exact)"}, {"direct", "fp8_blockwise_bf16_dispatch"}}}) {
    const auto it = row.find(m);
    if (it == row.end()) continue;
    const std::size_t i = it->second, j = d->second;
    Evidence e = ev(r, "metrics");
    e.tensor = std::string_view(df) == "fp8_blockwise"
                   ? fmt::format("naive column copy ({}): fp8_blockwise's xp/dout copies are DQ->Q", dist)
                   : fmt::format("{} column copy ({})", m, dist);
    e.note = fmt::format("SQNR {} dB vs direct {} dB", fmt_value(sq[i]), fmt_value(sq[j]));
    // Noise power relative to direct: 10^((s_direct - s_m)/10) - 1. Exact (inf) copies add none.
    const double extra = std::isinf(sq[i]) && sq[i] > 0 ? 0.0 : 100.0 * (std::pow(10.0, (sq[j] - sq[i]) / 10.0) - 1.0);
    obs["transpose_extra_noise"][df].push_back({std::max(0.0, extra), e});
    e.note = fmt::format("{} vs direct {} of {} elements underflow to zero", fmt_value(uf[i]), fmt_value(uf[j]), fmt_value(n[i]));
    obs["transpose_extra_underflow"][df].push_back({n[i] > 0 ? std::max(0.0, (uf[i] - uf[j]) / n[i]) : 0.0, e});
  }
}

// Why a rule has nothing for a dataflow.
std::string why_na(std::string_view rule_id, const std::string& df, const std::set<std::string>& kinds_of_df) {
  const bool fp8 = is_fp8(df);
  if (df == "fp64") return "fp64 is the golden reference";
  const auto has = [&](std::string_view k) { return kinds_of_df.contains(std::string(k)); };
  if (rule_id == "cast_underflow" || rule_id == "moe_cast_underflow" || rule_id == "cast_saturation" ||
      rule_id == "scale_oscillation")
    if (!fp8) return fmt::format("{} has no FP8 casts", df);
  if (rule_id == "moe_sqnr_drop" && !fp8) return fmt::format("{} has no FP8 entry cast", df);
  if (rule_id.starts_with("transpose_")) {
    if (!fp8) return fmt::format("{} makes no FP8 column copy", df);
    return has("transpose_study") ? "no transpose_study row for this method" : "no transpose_study runs in the file";
  }
  if (rule_id.starts_with("moe_")) return has("moe_dataflows") ? "no rows for this dataflow" : "no moe_dataflows runs for this dataflow";
  if (rule_id == "wgrad_sqnr_expert" && df == "fp64") return "fp64 is the golden reference";
  return has("train") ? "the training runs have no rows for this rule" : "no training runs (kind train) for this dataflow";
}

std::string what_of(std::string_view id) {
  if (id == "wgrad_sqnr_expert") return "per-expert wgrad SQNR";
  if (id == "depth_error_growth") return "growth of rel_err through depth";
  if (id == "cast_underflow" || id == "moe_cast_underflow") return "underflow fraction";
  if (id == "cast_saturation") return "saturation fraction";
  if (id == "scale_oscillation") return "scale oscillation";
  if (id == "loss_nonfinite") return "non-finite steps";
  if (id == "moe_output_sqnr") return "SQNR";
  if (id == "moe_sqnr_drop") return "SQNR drop";
  if (id == "transpose_extra_noise") return "extra noise";
  if (id == "transpose_extra_underflow") return "extra underflow fraction";
  return std::string(id);
}

json num_or_null(double v) { return std::isfinite(v) ? json(v) : json(nullptr); }

}  // namespace

Assessment assess(const std::vector<io::RunRecord>& runs, const std::string& file) {
  Assessment a;
  a.file = file;
  std::map<std::string, ObsMap> obs;  // rule -> dataflow -> observations
  std::set<std::string> seen;
  std::map<std::string, std::set<std::string>> kinds;  // dataflow -> kinds with data for it
  std::vector<const io::RunRecord*> train;
  auto note_df = [&](const std::string& df, const std::string& kind) {
    seen.insert(df);
    kinds[df].insert(kind);
  };
  for (const io::RunRecord& r : runs) {
    if (r.kind == "train") {
      note_df(run_dataflow(r), r.kind);
      train.push_back(&r);
      collect_train(r, obs);
    } else if (r.kind == "moe_dataflows") {
      collect_moe(r, obs);
      if (const io::Table* t = find_table(r, "metrics"))
        for (const auto& d : text(r, *t, "dataflow")) note_df(dataflow_key(d, param_string(r, "transpose")), r.kind);
    } else if (r.kind == "transpose_study") {
      collect_transpose(r, obs);
    }
  }
  // The transpose study alone does not make a dataflow appear (it studies column copies, not whole
  // dataflows), but it is graded for every FP8 dataflow that another kind brought in.
  for (const io::RunRecord& r : runs)
    if (r.kind == "transpose_study")
      for (const auto& [df, o] : obs["transpose_extra_noise"])
        if (seen.empty() || seen.contains(df)) kinds[df].insert(r.kind);
  if (seen.empty())  // a store with transpose studies only: grade the dataflows they speak for
    for (const auto& [df, o] : obs["transpose_extra_noise"]) seen.insert(df);
  for (std::string_view d : kDataflowOrder)
    if (seen.contains(std::string(d))) a.dataflows.emplace_back(d);
  for (const auto& d : seen)
    if (std::find(a.dataflows.begin(), a.dataflows.end(), d) == a.dataflows.end()) a.dataflows.push_back(d);

  std::vector<RuleResult> loss, router;
  assess_pairs(train, loss, router, a.loss_groups, a.dataflows);
  for (const Rule& rule : rule_catalog()) {
    for (std::size_t k = 0; k < a.dataflows.size(); ++k) {
      const std::string& df = a.dataflows[k];
      if (rule.id == "loss_rel_error") {
        a.results.push_back(loss[k]);
        continue;
      }
      if (rule.id == "router_load_shift") {
        a.results.push_back(router[k]);
        continue;
      }
      auto& o = obs[std::string(rule.id)][df];
      a.results.push_back(grade_worst(rule, df, o, why_na(rule.id, df, kinds[df]), what_of(rule.id)));
    }
  }
  for (const auto& df : a.dataflows) a.verdicts[df] = Status::na;
  for (const auto& r : a.results) a.verdicts[r.dataflow] = std::max(a.verdicts[r.dataflow], r.status);
  return a;
}

Assessment assess_file(const std::filesystem::path& file, std::vector<io::RunRecord>* runs_out) {
  const io::ResultsFile f(file);
  const auto hashes = f.hashes();
  if (hashes.empty())
    throw InputError(fmt::format("{}: the results store has no runs (write some with `fp8flow run`, `fp8flow train` "
                                 "or `fp8flow quickstart`)",
                                 file.string()));
  std::vector<io::RunRecord> runs;
  for (const auto& h : hashes) runs.push_back(f.read(h, false));
  Assessment a = assess(runs, file.string());
  if (runs_out) *runs_out = std::move(runs);
  return a;
}

json to_json(const Assessment& a) {
  json j{{"file", a.file}, {"dataflows", a.dataflows}, {"verdicts", json::object()}, {"rules", json::array()},
         {"results", json::array()}};
  for (const auto& [df, s] : a.verdicts) j["verdicts"][df] = to_string(s);
  for (const Rule& r : rule_catalog())
    j["rules"].push_back({{"id", r.id},
                          {"title", r.title},
                          {"unit", r.unit},
                          {"worse", r.worse == Worse::higher ? "higher" : "lower"},
                          {"warn", r.warn},
                          {"fail", r.fail},
                          {"source", r.source},
                          {"reason", r.reason}});
  // How each FP8 copy of each dataflow is made (docs/dataflows.md "Which copies are requantized").
  j["copy_origins"] = json::object();
  for (const auto& df : a.dataflows) {
    const std::string name = df.starts_with("fp8_flow(") ? "fp8_flow" : df;
    try {
      json rows = json::array();
      for (const CopyOrigin& o : copy_origins(builtin_dataflow(name)))
        rows.push_back({{"tensor", o.tensor}, {"source", o.source}, {"origin", o.origin}});
      if (!rows.empty()) j["copy_origins"][df] = std::move(rows);
    } catch (const InputError&) {  // a user dataflow (TOML) the report has no graph of
    }
  }
  j["loss_groups"] = json::array();
  for (const LossGroup& g : a.loss_groups)
    j["loss_groups"].push_back({{"group", g.group},
                                {"dataflow", g.dataflow},
                                {"status", to_string(g.status)},
                                {"reference", g.stats.reference},
                                {"seeds", g.stats.seeds},
                                {"mean", num_or_null(g.stats.mean)},
                                {"ci_low", num_or_null(g.stats.ci_low)},
                                {"ci_high", num_or_null(g.stats.ci_high)},
                                {"seeds_to_decide", g.stats.seeds_to_decide ? json(*g.stats.seeds_to_decide) : json()}});
  for (const RuleResult& r : a.results) {
    json evs = json::array();
    for (const Evidence& e : r.evidence) {
      json x{{"run", e.run}, {"kind", e.kind}, {"table", e.table}, {"value", num_or_null(e.value)}};
      if (!e.tensor.empty()) x["tensor"] = e.tensor;
      if (e.layer) x["layer"] = *e.layer;
      if (e.expert) x["expert"] = *e.expert;
      if (e.step) x["step"] = *e.step;
      if (e.seed) x["seed"] = *e.seed;
      if (!e.note.empty()) x["note"] = e.note;
      evs.push_back(std::move(x));
    }
    json x{{"rule", r.rule},
           {"dataflow", r.dataflow},
           {"status", to_string(r.status)},
           {"value", r.value ? num_or_null(*r.value) : json(nullptr)},
           {"message", r.message},
           {"observations", r.observations},
           {"evidence", evs}};
    if (r.stats) {
      const LossStats& s = *r.stats;
      x["reference"] = s.reference;
      x["seeds"] = s.seeds;
      x["mean"] = num_or_null(s.mean);
      x["ci_low"] = num_or_null(s.ci_low);
      x["ci_high"] = num_or_null(s.ci_high);
      x["confidence"] = s.confidence;
      x["seeds_to_decide"] = s.seeds_to_decide ? json(*s.seeds_to_decide) : json(nullptr);
    }
    j["results"].push_back(std::move(x));
  }
  return j;
}

}  // namespace fp8flow::report
