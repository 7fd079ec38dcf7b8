// Bytes per operator and activation memory kept for backward, by a shape-only run of the graph.
#include "reference/traffic_model.hpp"

#include <fmt/format.h>

#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "reference/error_ledger.hpp"

namespace fp8flow {

double Traffic::read(Phase p) const {
  double s = 0;
  for (const auto& st : steps) s += st.phase == p ? st.read : 0;
  return s;
}
double Traffic::written(Phase p) const {
  double s = 0;
  for (const auto& st : steps) s += st.phase == p ? st.written : 0;
  return s;
}
double Traffic::saved_bytes() const {
  double s = 0;
  for (const auto& t : saved) s += t.bytes;
  return s;
}

namespace {
std::string base_name(const std::string& s) { return s.ends_with("^T") ? s.substr(0, s.size() - 2) : s; }
}  // namespace

Traffic traffic_model(const Dataflow& df, const MoeShape& shape) {
  Traffic t{df.name, shape, {}, {}};
  Context ctx{shape, uniform_routing(shape)};
  Env env = make_env(shape, nullptr);
  // Which tensor binding each bwd step reads: (name, defining step).
  std::map<std::string, std::size_t> defined_by;  // name -> step index of its current binding (-1: input)
  std::map<std::string, double> bytes_of_binding;
  std::set<std::pair<std::string, std::size_t>> saved_keys;
  std::vector<SavedTensor> saved;
  ExecOptions o;
  o.shape_only = true;
  o.before_step = [&](std::size_t i, const Env& e) {
    const Step& s = df.steps[i];
    StepTraffic st{i, s.op, s.phase, describe(s)};
    for (const auto& n : s.in) {
      const std::string b = base_name(n);
      const auto it = e.find(b);
      if (it == e.end()) continue;
      st.read += static_cast<double>(it->second.bytes());
      const auto d = defined_by.find(b);
      if (s.phase == Phase::bwd && d != defined_by.end() &&
          (df.steps[d->second].phase == Phase::fwd || df.steps[d->second].phase == Phase::inputs) &&
          saved_keys.insert({b, d->second}).second)
        saved.push_back({b, it->second.prec, static_cast<double>(it->second.bytes())});
    }
    if (s.op == Op::all_to_all) st.label += " (network)";
    t.steps.push_back(std::move(st));
  };
  o.after_step = [&](std::size_t i, const Env& e) {
    for (const auto& n : df.steps[i].out) {
      defined_by[n] = i;
      const auto it = e.find(n);
      if (it != e.end()) t.steps.back().written += static_cast<double>(it->second.bytes());
    }
  };
  execute(df, ctx, env, o);
  t.saved = std::move(saved);
  return t;
}

nlohmann::json to_json(const Traffic& t, bool per_step) {
  nlohmann::json j{{"dataflow", t.dataflow},
                   {"shape", to_string(t.shape)},
                   {"fwd_read_bytes", t.read(Phase::fwd)},
                   {"fwd_written_bytes", t.written(Phase::fwd)},
                   {"bwd_read_bytes", t.read(Phase::bwd)},
                   {"bwd_written_bytes", t.written(Phase::bwd)},
                   {"saved_for_backward_bytes", t.saved_bytes()}};
  auto& sv = j["saved"] = nlohmann::json::array();
  for (const auto& s : t.saved) sv.push_back({{"tensor", s.name}, {"precision", to_string(s.prec)}, {"bytes", s.bytes}});
  if (per_step) {
    auto& st = j["steps"] = nlohmann::json::array();
    for (const auto& s : t.steps)
      st.push_back({{"step", s.step}, {"phase", to_string(s.phase)}, {"op", s.label}, {"read", s.read}, {"written", s.written}});
  }
  return j;
}

std::string to_text(const std::vector<Traffic>& ts) {
  if (ts.empty()) return {};
  std::string out = fmt::format("memory/traffic model, {} (one rank holding all experts, uniform routing)\n",
                                to_string(ts.front().shape));
  out += fmt::format("{:<18} {:>12} {:>12} {:>12} {:>12} {:>14}\n", "dataflow", "fwd read MB", "fwd write MB",
                     "bwd read MB", "bwd write MB", "saved fwd->bwd MB");
  for (const auto& t : ts)
    out += fmt::format("{:<18} {:>12.1f} {:>12.1f} {:>12.1f} {:>12.1f} {:>14.1f}\n", t.dataflow, t.read(Phase::fwd) / 1e6,
                       t.written(Phase::fwd) / 1e6, t.read(Phase::bwd) / 1e6, t.written(Phase::bwd) / 1e6,
                       t.saved_bytes() / 1e6);
  return out;
}

}  // namespace fp8flow
