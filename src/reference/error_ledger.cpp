// Per-tensor metrics against the fp64 golden run and cast attribution.
#include "reference/error_ledger.hpp"

#include <fmt/format.h>

#include <nlohmann/json.hpp>
#include <set>

namespace fp8flow {

namespace {
const Tensor* golden_of(const Env& golden, const std::string& name, std::string& gname) {
  auto it = golden.find(name);
  if (it == golden.end()) it = golden.find(name.substr(0, name.find('.')));
  if (it == golden.end()) return nullptr;
  gname = it->first;
  return &it->second;
}
}  // namespace

std::vector<TensorError> error_ledger(const Dataflow& df, const Env& golden, const Env& test, bool per_expert) {
  // Which tensors to compare (graph order), then the comparisons in parallel: each one is computed by
  // one thread, serially, so the result does not depend on the thread count.
  struct Item {
    std::string name, gname;
    const Tensor* t;
    const Tensor* g;
  };
  std::vector<Item> items;
  std::set<std::string> seen;
  for (const Step& s : df.steps)
    for (const auto& name : s.out) {
      if (!seen.insert(name).second) continue;
      const auto it = test.find(name);
      if (it == test.end()) continue;
      const Tensor& t = it->second;
      std::string gname;
      const Tensor* g = golden_of(golden, name, gname);
      if (!g || g->v.size() != t.v.size() || t.v.empty()) continue;
      items.push_back({name, gname, &t, g});
    }
  std::vector<TensorError> out(items.size());
#pragma omp parallel for schedule(dynamic, 1)
  for (long i = 0; i < static_cast<long>(items.size()); ++i) {
    const Item& it = items[static_cast<std::size_t>(i)];
    const Tensor& t = *it.t;
    const Tensor* g = it.g;
    TensorError e{it.name, it.gname, t.prec, compare(g->v, t.v), {}};
    if (per_expert && !t.groups.empty() && t.groups == g->groups) {
      std::size_t r0 = 0;
      for (auto m : t.groups) {
        const std::size_t a = r0 * t.cols, n = m * t.cols;
        e.per_expert.push_back(compare(std::span<const double>(g->v).subspan(a, n),
                                       std::span<const double>(t.v).subspan(a, n)));
        r0 += m;
      }
    }
    out[static_cast<std::size_t>(i)] = std::move(e);
  }
  return out;
}

double squared_error(const Env& golden, const Env& test, const std::string& name) {
  const auto g = golden.find(name), t = test.find(name);
  if (g == golden.end() || t == test.end() || g->second.v.size() != t->second.v.size()) return 0.0;
  double acc = 0;
  for (std::size_t i = 0; i < g->second.v.size(); ++i) {
    const double d = t->second.v[i] - g->second.v[i];
    acc += d * d;
  }
  return acc;
}

std::string describe(const Step& s) {
  std::string in, out;
  for (const auto& n : s.in) in += (in.empty() ? "" : ", ") + n;
  for (const auto& n : s.out) out += (out.empty() ? "" : ", ") + n;
  std::string extra;
  if (s.recipe) extra = fmt::format(" ({})", s.recipe->name());
  if (s.op == Op::transpose) extra = fmt::format(" ({})", to_string(s.method));
  if (s.op == Op::round || s.op == Op::dequantize) extra = fmt::format(" (to {})", to_string(s.prec));
  return fmt::format("{} {} -> {}{}", to_string(s.op), in, out, extra);
}

std::vector<CastAttribution> attribute_casts(const Dataflow& df, const Context& ctx, const MoeInputs& in,
                                             const Env& golden, const Env& as_run, const ExecOptions& o) {
  std::vector<double> base;
  for (const auto& n : kLayerOutputs) base.push_back(squared_error(golden, as_run, n));
  std::vector<CastAttribution> out;
  for (std::size_t i = 0; i < df.steps.size(); ++i) {
    const Step& s = df.steps[i];
    if (!is_cast(s) || s.phase == Phase::inputs) continue;  // the inputs are what they are
    ExecOptions oi = o;
    oi.exact_step = static_cast<long>(i);
    Env env = make_env(ctx.shape, &in);
    execute(df, ctx, env, oi);
    CastAttribution a{i, describe(s), cast_kind(s), {}};
    for (std::size_t k = 0; k < kLayerOutputs.size(); ++k) {
      const double e = squared_error(golden, env, kLayerOutputs[k]);
      a.share.push_back(base[k] > 0 ? 1.0 - e / base[k] : 0.0);
    }
    out.push_back(std::move(a));
  }
  return out;
}

nlohmann::json to_json(const TensorError& e) {
  nlohmann::json j{{"tensor", e.tensor}, {"golden", e.golden}, {"precision", to_string(e.prec)},
                   {"metrics", to_json(e.all)}};
  if (!e.per_expert.empty()) {
    auto& pe = j["per_expert"] = nlohmann::json::array();
    for (const auto& m : e.per_expert)
      pe.push_back({{"n", m.n}, {"sqnr_db", m.sqnr_db}, {"max_rel_err", m.max_rel_err}, {"calc_diff", m.calc_diff}});
  }
  return j;
}

nlohmann::json to_json(const CastAttribution& a) {
  nlohmann::json share;
  for (std::size_t k = 0; k < kLayerOutputs.size() && k < a.share.size(); ++k) share[kLayerOutputs[k]] = a.share[k];
  return {{"step", a.step}, {"cast", a.label}, {"kind", to_string(a.kind)}, {"error_share_removed", share}};
}

}  // namespace fp8flow
