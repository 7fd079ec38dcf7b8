#include "io/experiment.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <toml++/toml.h>

#include "io/errors.hpp"
#include "quant/distributions.hpp"
#include "quant/granularity.hpp"
#include "reference/dataflow.hpp"
#include "reference/gemm.hpp"
#include "reference/moe_layer.hpp"
#include "reference/train.hpp"

namespace fp8flow::io {

using nlohmann::json;

// ---- Kinds and their parameters ------------------------------------------------------------------

const std::vector<ExperimentKind>& experiment_kinds() {
  static const std::vector<ExperimentKind> kinds = {
      {"transpose_study", "naive / paper_kernel / exact / direct column copies of a 1xN te_pow2 tensor (PAPER.md 3.5)",
       true, ""},
      {"gemm_accum_study", "FP8 GEMM accumulation models against the exact model (PAPER.md 5)", true, ""},
      {"moe_dataflows", "the five-dataflow comparison of one MoE layer forward+backward vs fp64 (PAPER.md 2)", true,
       ""},
      {"train", "a small MoE language model trained under one dataflow: loss curve, gradient error vs the fp64 "
                "golden layer, cast and router statistics (docs/training.md)",
       true, ""},
  };
  return kinds;
}

namespace {

// A converter returns the canonical JSON value, or nullopt when the TOML value does not fit.
using Convert = std::function<std::optional<json>(const toml::node&)>;
struct ParamSpec {
  std::string key;
  json default_value;
  std::string expected;  // completes "expected ..."
  Convert convert;
};

std::optional<json> as_int(const toml::node& n, std::int64_t lo, std::int64_t hi) {
  if (!n.is_integer()) return std::nullopt;
  const std::int64_t v = n.as_integer()->get();
  if (v < lo || v > hi) return std::nullopt;
  return json(v);
}

// An integer outside its range: convert_value() names the range (TOML integers are 64-bit, so
// `steps = 100000000` is an integer, just too large).
struct OutOfRange {
  std::int64_t value, lo, hi;
};
Convert integer_in(std::int64_t lo, std::int64_t hi) {
  return [=](const toml::node& n) {
    if (n.is_integer() && (n.as_integer()->get() < lo || n.as_integer()->get() > hi))
      throw OutOfRange{n.as_integer()->get(), lo, hi};
    return as_int(n, lo, hi);
  };
}
Convert number_at_least(double lo) {
  return [=](const toml::node& n) -> std::optional<json> {
    double v;
    if (n.is_integer()) v = double(n.as_integer()->get());
    else if (n.is_floating_point()) v = n.as_floating_point()->get();
    else return std::nullopt;
    if (!(v >= lo) || !std::isfinite(v)) return std::nullopt;
    return json(v);
  };
}
Convert boolean() {
  return [](const toml::node& n) -> std::optional<json> {
    if (!n.is_boolean()) return std::nullopt;
    return json(n.as_boolean()->get());
  };
}
Convert one_of(std::vector<std::string> names) {
  return [names](const toml::node& n) -> std::optional<json> {
    if (!n.is_string()) return std::nullopt;
    const std::string& s = n.as_string()->get();
    if (std::find(names.begin(), names.end(), s) == names.end()) return std::nullopt;
    return json(s);
  };
}
// A list of positive integers; `size` 0: any length (empty allowed).
Convert positive_ints(std::size_t size) {
  return [size](const toml::node& n) -> std::optional<json> {
    const toml::array* a = n.as_array();
    if (!a || (size && a->size() != size)) return std::nullopt;
    json out = json::array();
    for (const toml::node& e : *a) {
      const auto v = as_int(e, 1, std::int64_t(1) << 40);
      if (!v) return std::nullopt;
      out.push_back(*v);
    }
    return out;
  };
}
// A granularity by its text form; `accept` filters the parsed value.
Convert granularity(std::function<bool(Granularity)> accept) {
  return [accept](const toml::node& n) -> std::optional<json> {
    if (!n.is_string()) return std::nullopt;
    try {
      const Granularity g = parse_granularity(n.as_string()->get());
      if (!accept(g)) return std::nullopt;
      return json(to_string(g));
    } catch (const std::exception&) {
      return std::nullopt;
    }
  };
}
// A non-empty list of distinct names.
Convert distinct_names(std::vector<std::string> names) {
  return [names](const toml::node& n) -> std::optional<json> {
    const toml::array* a = n.as_array();
    if (!a || a->empty()) return std::nullopt;
    json out = json::array();
    std::set<std::string> seen;
    for (const toml::node& e : *a) {
      if (!e.is_string()) return std::nullopt;
      const std::string& s = e.as_string()->get();
      if (std::find(names.begin(), names.end(), s) == names.end() || !seen.insert(s).second) return std::nullopt;
      out.push_back(s);
    }
    return out;
  };
}

std::vector<std::string> split_names(std::string_view list) {  // "a, b, c"
  std::vector<std::string> out;
  std::stringstream ss{std::string(list)};
  for (std::string s; std::getline(ss, s, ',');) {
    s.erase(0, s.find_first_not_of(' '));
    out.push_back(s);
  }
  return out;
}

// moe_dataflows `dataflow`: "all", one name, or a list of distinct names; canonical form: the list
// (so "all" and the five names written out are one run).
json dataflow_list_default() { return json(split_names(kDataflowNames)); }
Convert dataflow_list() {
  return [](const toml::node& n) -> std::optional<json> {
    std::vector<std::string> names = split_names(kDataflowNames);
    for (auto& c : split_names(kControlDataflowNames)) names.push_back(c);  // docs/risk.md "Controls"
    if (n.is_string()) {
      const std::string& s = n.as_string()->get();
      if (s == "all") return dataflow_list_default();
      if (std::find(names.begin(), names.end(), s) == names.end()) return std::nullopt;
      return json::array({s});
    }
    return distinct_names(names)(n);
  };
}

// One function per kind: clang 14 crashes (register allocation) on one function holding all the tables
// once sanitizer and coverage instrumentation are added (the FP8FLOW_SANITIZE / FP8FLOW_FUZZ builds).
std::vector<ParamSpec> with_common(std::vector<ParamSpec> v) {
  static const std::vector<ParamSpec> common = {
      {"seed", 1, "an integer >= 0", integer_in(0, std::numeric_limits<std::int64_t>::max())},
      {"save_tensors", false, "true or false", boolean()},
  };
  v.insert(v.begin(), common.begin(), common.end());
  return v;
}

const std::vector<ParamSpec>& transpose_specs() {
  static const std::vector<ParamSpec> specs = with_common({
      {"shape", json::array({1024, 2048}), "[rows, cols]: two positive integers", positive_ints(2)},
      {"distribution", "activations", fmt::format("one of {}", kDistributionNames),
       one_of(split_names(kDistributionNames))},
      {"groups", json::array(), "a list of positive expert-group sizes summing to the rows ([] = one group)",
       positive_ints(0)},
      {"eps", 0.0, "a number >= 0 (te_pow2 amax floor)", number_at_least(0.0)},
      {"granularity", "1x128", "a rowwise tile 1xN with N >= 2, e.g. \"1x128\"",
       granularity([](Granularity g) { return g.rows == 1 && g.cols >= 2; })},
      {"format", "e4m3", "one of e4m3, e5m2", one_of({"e4m3", "e5m2"})},
  });
  return specs;
}

const std::vector<ParamSpec>& gemm_specs() {
  static const std::vector<ParamSpec> specs = with_common({
      {"shape", json::array({128, 128, 4096}), "[M, N, K]: three positive integers", positive_ints(3)},
      {"format", "e4m3", "one of e4m3, e5m2", one_of({"e4m3", "e5m2"})},
      {"a_granularity", "1x128", "\"tensor\" or a tile RxC, e.g. \"1x128\"",
       granularity([](Granularity g) { return g == kTensor || (g.rows >= 1 && g.cols >= 1); })},
      {"b_granularity", "128x128", "\"tensor\" or a tile RxC, e.g. \"128x128\"",
       granularity([](Granularity g) { return g == kTensor || (g.rows >= 1 && g.cols >= 1); })},
      {"accum_models", json::array({"fp32_seq", "fp32_pairwise", "promote", "hopper_fast"}),
       fmt::format("a non-empty list of distinct models from {}", kAccumModelNames),
       distinct_names(split_names(kAccumModelNames))},
      {"promote_interval", 128, "an integer >= 1 (N_C, products per promotion)", integer_in(1, 1 << 30)},
      {"acc_fraction_bits", 13, "an integer in 1..52", integer_in(1, 52)},
      {"group", 4, "an integer >= 1 (hopper_fast products per aligned group)", integer_in(1, 1 << 20)},
      {"fast_accum", false, "true or false", boolean()},
      {"scale_spread_log2", 8, "an integer in 0..60 (scale_inv = 2^U[-s, s])", integer_in(0, 60)},
  });
  return specs;
}

const std::vector<ParamSpec>& moe_specs() {
  static const std::vector<ParamSpec> specs = with_common({
      {"preset", "quickstart", fmt::format("one of {}", kPresetNames), one_of(split_names(kPresetNames))},
      {"tokens", 0, "an integer >= 0 (0: the preset's token count)", integer_in(0, 1 << 24)},
      {"experts", 0, "an integer >= 0 (0: the preset's; fewer = the local experts of one EP rank)",
       integer_in(0, 1 << 16)},
      {"topk", 0, "an integer >= 0 (0: the preset's top-k)", integer_in(0, 1 << 16)},
      {"dataflow", dataflow_list_default(),
       fmt::format("\"all\", one of {}, or a non-empty list of distinct names", kDataflowNames), dataflow_list()},
      {"transpose", "paper_kernel", "one of paper_kernel, exact (fp8_flow's scaling-aware transposes)",
       one_of({"paper_kernel", "exact"})},
      {"accum", "h100", fmt::format("one of {} (every FP8 GEMM; h100: what the H100 computes)", kAccumModelNames),
       one_of(split_names(kAccumModelNames))},
  });
  return specs;
}

// train: 0 (or -1 for sample_every) means the preset's value; resolve_preset() fills it in, so the stored
// params (and the hash) hold the values the run used.
const std::vector<ParamSpec>& train_specs() {
  static const std::vector<ParamSpec> specs = with_common({
      {"preset", "tiny", fmt::format("one of {}", train::kTrainPresetNames), one_of(split_names(train::kTrainPresetNames))},
      {"dataflow", "bf16", fmt::format("one of {} (or a control: {})", train::kTrainDataflowNames, kControlDataflowNames),
       one_of([] {
         auto names = split_names(train::kTrainDataflowNames);
         for (auto& c : split_names(kControlDataflowNames)) names.push_back(c);
         return names;
       }())},
      {"transpose", "paper_kernel", "one of paper_kernel, exact (fp8_flow's scaling-aware transposes)",
       one_of({"paper_kernel", "exact"})},
      {"accum", "h100", fmt::format("one of {} (every FP8 GEMM; h100: what the H100 computes)", kAccumModelNames),
       one_of(split_names(kAccumModelNames))},
      {"steps", 0, "an integer >= 0 (0: the preset's)", integer_in(0, 1 << 24)},
      {"layers", 0, "an integer >= 0 (0: the preset's)", integer_in(0, 64)},
      {"experts", 0, "an integer >= 0 (0: the preset's)", integer_in(0, 1 << 10)},
      {"topk", 0, "an integer >= 0 (0: the preset's)", integer_in(0, 1 << 10)},
      {"hidden", 0, "an integer >= 0 (0: the preset's)", integer_in(0, 1 << 14)},
      {"ffn", 0, "an integer >= 0 (0: the preset's)", integer_in(0, 1 << 14)},
      {"seq", 0, "an integer >= 0 (0: the preset's; >= 2 otherwise)", integer_in(0, 1 << 16)},
      {"batch", 0, "an integer >= 0 (0: the preset's)", integer_in(0, 1 << 16)},
      {"lr", 0.0, "a number >= 0 (0: the preset's peak learning rate)", number_at_least(0.0)},
      {"sample_every", -1, "an integer >= -1 (-1: the preset's; 0: no sampled steps)", integer_in(-1, 1 << 24)},
      {"corpus", "data/cmake-manuals.txt", "a file path (relative: from the working directory or the repository)",
       [](const toml::node& n) -> std::optional<json> {
         if (!n.is_string() || n.as_string()->get().empty()) return std::nullopt;
         return json(n.as_string()->get());
       }},
  });
  return specs;
}


const std::vector<ParamSpec>& param_specs(std::string_view kind) {
  static const std::vector<ParamSpec> none;
  if (kind == "train") return train_specs();
  if (kind == "transpose_study") return transpose_specs();
  if (kind == "gemm_accum_study") return gemm_specs();
  if (kind == "moe_dataflows") return moe_specs();
  return none;
}

const ParamSpec* find_spec(const std::vector<ParamSpec>& specs, std::string_view key) {
  for (const auto& s : specs)
    if (s.key == key) return &s;
  return nullptr;
}

std::string key_list(const std::vector<ParamSpec>& specs) {
  std::vector<std::string> keys;
  for (const auto& s : specs) keys.push_back(s.key);
  return fmt::format("{}", fmt::join(keys, ", "));
}

// ---- Errors with source positions ----------------------------------------------------------------

std::string show(const toml::node& n) {
  if (n.is_string()) return nlohmann::json(n.as_string()->get()).dump();  // "text", as most files write it
  std::ostringstream os;
  n.visit([&](auto&& v) { os << v; });
  std::string s = os.str();
  if (s.size() > 60) s = s.substr(0, 57) + "...";
  return s;
}

struct Parser {
  std::string source;

  [[noreturn]] void fail(const toml::source_region& r, const std::string& msg) const {
    throw InputError(fmt::format("{}:{}:{}: {}", source, r.begin.line, r.begin.column, msg));
  }
  [[noreturn]] void fail_value(const toml::node& n, const std::string& where, const std::string& expected) const {
    fail(n.source(), fmt::format("{} = {}: expected {}", where, show(n), expected));
  }
  const toml::table& need_table(const toml::node& n, const std::string& where) const {
    if (!n.is_table()) fail_value(n, where, "a table");
    return *n.as_table();
  }
  std::string need_string(const toml::node& n, const std::string& where) const {
    if (!n.is_string()) fail_value(n, where, "a string");
    return n.as_string()->get();
  }
  void only_keys(const toml::table& t, const std::string& where, std::initializer_list<std::string_view> allowed) const {
    for (auto&& [k, v] : t)
      if (std::find(allowed.begin(), allowed.end(), k.str()) == allowed.end())
        fail(k.source(), fmt::format("{}: unknown key '{}'; expected one of {}", where, k.str(), fmt::join(allowed, ", ")));
  }
};

// A study before expansion: values already converted, each with the node it came from.
struct Axis {
  std::vector<std::string> keys;
  std::vector<std::vector<std::pair<json, const toml::node*>>> values;  // values[i][key]
};
struct StudyDef {
  std::string name, kind;
  const toml::node* kind_node = nullptr;
  std::map<std::string, std::pair<json, const toml::node*>> fixed;
  std::vector<Axis> axes;
};

const ExperimentKind& find_kind(const Parser& p, const toml::node& n, const std::string& where) {
  const std::string kind = p.need_string(n, where);
  for (const auto& k : experiment_kinds())
    if (k.name == kind) {
      if (!k.built) p.fail(n.source(), fmt::format("{} = \"{}\": {}", where, kind, k.note));
      return k;
    }
  std::vector<std::string_view> names;
  for (const auto& k : experiment_kinds()) names.push_back(k.name);
  p.fail_value(n, where, fmt::format("one of {}", fmt::join(names, ", ")));
}

json convert_value(const Parser& p, const ParamSpec& spec, const toml::node& n, const std::string& where) {
  std::optional<json> v;
  try {
    v = spec.convert(n);
  } catch (const OutOfRange& e) {
    p.fail(n.source(), fmt::format("{} = {}: out of range: expected {}, in {}..{}", where, e.value, spec.expected, e.lo,
                                   e.hi));
  }
  if (!v) p.fail_value(n, where, spec.expected);
  return *v;
}

// [params], [sweep] and [sweep.zip] of one study. `prefix` is "" (single form) or "study[i]." for messages.
StudyDef read_study(const Parser& p, const std::string& kind_where, const toml::node& kind_node,
                    const toml::node* params, const toml::node* sweep, const std::string& prefix) {
  StudyDef s;
  const ExperimentKind& kind = find_kind(p, kind_node, kind_where);
  s.kind = std::string(kind.name);
  s.kind_node = &kind_node;
  const auto& specs = param_specs(s.kind);
  std::map<std::string, std::string> set_where;  // key -> "[params] at line N" for duplicate messages

  auto known = [&](const toml::key& k, const std::string& section) -> const ParamSpec& {
    const ParamSpec* spec = find_spec(specs, k.str());
    if (!spec)
      p.fail(k.source(), fmt::format("[{}{}]: unknown key '{}' for kind {}; expected one of {}", prefix, section, k.str(),
                                     s.kind, key_list(specs)));
    if (auto it = set_where.find(std::string(k.str())); it != set_where.end())
      p.fail(k.source(), fmt::format("[{}{}] {}: already set in {}; set each parameter in one place", prefix, section,
                                     k.str(), it->second));
    set_where[std::string(k.str())] = fmt::format("[{}{}] at line {}", prefix, section, k.source().begin.line);
    return *spec;
  };

  if (params) {
    const toml::table& t = p.need_table(*params, fmt::format("[{}params]", prefix));
    for (auto&& [k, v] : t) {
      const ParamSpec& spec = known(k, "params");
      s.fixed[std::string(k.str())] = {convert_value(p, spec, v, fmt::format("[{}params] {}", prefix, k.str())), &v};
    }
  }
  if (!sweep) return s;
  const toml::table& st = p.need_table(*sweep, fmt::format("[{}sweep]", prefix));
  // Axes vary in the order they appear in the file, the last fastest; zipped groups follow.
  std::vector<std::pair<const toml::key*, const toml::node*>> entries;
  for (auto&& [k, v] : st)
    if (k.str() != "zip") entries.emplace_back(&k, &v);
  std::sort(entries.begin(), entries.end(), [](const auto& a, const auto& b) {
    const auto &x = a.first->source().begin, &y = b.first->source().begin;
    return std::pair(x.line, x.column) < std::pair(y.line, y.column);
  });
  auto read_list = [&](const toml::key& k, const toml::node& v, const std::string& section) {
    const ParamSpec& spec = known(k, section);
    const std::string where = fmt::format("[{}{}] {}", prefix, section, k.str());
    const toml::array* a = v.as_array();
    if (!a || a->empty()) p.fail_value(v, where, fmt::format("a non-empty list of values, each {}", spec.expected));
    std::vector<std::pair<json, const toml::node*>> out;
    for (std::size_t i = 0; i < a->size(); ++i)
      out.emplace_back(convert_value(p, spec, (*a)[i], fmt::format("{}[{}]", where, i)), &(*a)[i]);
    return out;
  };
  for (const auto& [k, v] : entries) {
    Axis axis;
    axis.keys.push_back(std::string(k->str()));
    for (auto& value : read_list(*k, *v, "sweep")) axis.values.push_back({value});
    s.axes.push_back(std::move(axis));
  }
  if (const toml::node* zip = st.get("zip")) {
    std::vector<const toml::table*> groups;
    if (const toml::array* arr = zip->as_array()) {  // [[sweep.zip]]: several zipped groups
      for (const toml::node& g : *arr) groups.push_back(&p.need_table(g, fmt::format("[[{}sweep.zip]]", prefix)));
    } else {
      groups.push_back(&p.need_table(*zip, fmt::format("[{}sweep.zip]", prefix)));
    }
    for (const toml::table* g : groups) {
      Axis axis;
      const toml::key* first = nullptr;
      for (auto&& [k, v] : *g) {
        auto values = read_list(k, v, "sweep.zip");
        if (!first) {
          first = &k;
          axis.values.resize(values.size());
        } else if (values.size() != axis.values.size()) {
          p.fail(v.source(), fmt::format("[{}sweep.zip] {}: {} values, but {} (line {}) has {}; zipped lists must have "
                                         "equal lengths",
                                         prefix, k.str(), values.size(), first->str(), first->source().begin.line,
                                         axis.values.size()));
        }
        axis.keys.push_back(std::string(k.str()));
        for (std::size_t i = 0; i < values.size(); ++i) axis.values[i].push_back(std::move(values[i]));
      }
      if (!axis.keys.empty()) s.axes.push_back(std::move(axis));
    }
  }
  return s;
}

// train: the preset's values for the parameters left at 0 (-1 for sample_every).
void resolve_train_params(json& params) {
  const train::TrainConfig c = train::preset_config(params["preset"].get<std::string>());
  auto fill = [&](const char* key, json value, json unset) {
    if (params[key] == unset) params[key] = std::move(value);
  };
  fill("steps", c.steps, 0);
  fill("layers", c.layers, 0);
  fill("experts", c.experts, 0);
  fill("topk", c.topk, 0);
  fill("hidden", c.hidden, 0);
  fill("ffn", c.ffn, 0);
  fill("seq", c.seq, 0);
  fill("batch", c.batch, 0);
  fill("sample_every", c.sample_every, -1);
  if (params["lr"].get<double>() == 0.0) params["lr"] = c.lr;
}

// Consistency of one resolved run. Returns the key to blame and the message, or nullopt.
std::optional<std::pair<std::string, std::string>> cross_check(const std::string& kind, const json& params) {
  if (kind == "train") {
    if (params["topk"].get<std::int64_t>() > params["experts"].get<std::int64_t>())
      return std::pair{std::string("topk"), fmt::format("top-k {} exceeds the {} experts", params["topk"].dump(),
                                                        params["experts"].dump())};
    if (params["seq"].get<std::int64_t>() < 2) return std::pair{std::string("seq"), std::string("seq must be >= 2")};
  } else if (kind == "transpose_study") {
    const auto rows = params["shape"][0].get<std::int64_t>();
    const auto& groups = params["groups"];
    if (!groups.empty()) {
      std::int64_t sum = 0;
      for (const auto& g : groups) sum += g.get<std::int64_t>();
      if (sum != rows)
        return std::pair{std::string("groups"), fmt::format("groups sum to {} but shape has {} rows", sum, rows)};
    }
  } else if (kind == "gemm_accum_study") {
    const Granularity a = parse_granularity(params["a_granularity"].get<std::string>());
    const Granularity b = parse_granularity(params["b_granularity"].get<std::string>());
    if ((a == kTensor) != (b == kTensor) || (a != kTensor && a.cols != b.cols))
      return std::pair{std::string("b_granularity"),
                       fmt::format("operands A {} and B {} must both be tensor-scaled or share the K block width",
                                   to_string(a), to_string(b))};
  } else if (kind == "moe_dataflows") {
    MoeShape sh = preset_shape(params["preset"].get<std::string>());
    if (params["experts"].get<std::int64_t>() > 0) sh.experts = params["experts"].get<std::size_t>();
    if (params["topk"].get<std::int64_t>() > 0) sh.topk = params["topk"].get<std::size_t>();
    if (sh.topk > sh.experts)
      return std::pair{std::string(params["topk"].get<std::int64_t>() > 0 ? "topk" : "experts"),
                       fmt::format("top-k {} exceeds the {} experts", sh.topk, sh.experts)};
  }
  return std::nullopt;
}

std::string params_brief(const json& params, const std::vector<std::string>& keys) {
  std::vector<std::string> parts;
  for (const auto& k : keys) parts.push_back(fmt::format("{} = {}", k, params[k].dump()));
  return fmt::format("{}", fmt::join(parts, ", "));
}

void expand(const Parser& p, const StudyDef& s, Experiment& e, std::set<std::string>& seen) {
  std::size_t total = 1;
  for (const Axis& a : s.axes) {
    if (total > kMaxRuns / a.values.size())
      p.fail(s.kind_node->source(), fmt::format("kind = \"{}\": the sweep has more than {} runs", s.kind, kMaxRuns));
    total *= a.values.size();
  }
  std::vector<std::string> swept;
  for (const Axis& a : s.axes) swept.insert(swept.end(), a.keys.begin(), a.keys.end());
  std::vector<std::size_t> idx(s.axes.size(), 0);
  for (std::size_t n = 0; n < total; ++n) {
    json params = json::object();
    std::map<std::string, const toml::node*> origin;
    for (const ParamSpec& spec : param_specs(s.kind)) params[spec.key] = spec.default_value;
    for (const auto& [k, v] : s.fixed) {
      params[k] = v.first;
      origin[k] = v.second;
    }
    for (std::size_t a = 0; a < s.axes.size(); ++a)
      for (std::size_t k = 0; k < s.axes[a].keys.size(); ++k) {
        params[s.axes[a].keys[k]] = s.axes[a].values[idx[a]][k].first;
        origin[s.axes[a].keys[k]] = s.axes[a].values[idx[a]][k].second;
      }
    if (s.kind == "train") resolve_train_params(params);
    if (auto bad = cross_check(s.kind, params)) {
      const toml::node* at = origin.count(bad->first) ? origin[bad->first] : s.kind_node;
      p.fail(at->source(), fmt::format("{} ({}): {}", bad->first, s.kind,
                                       swept.empty() ? bad->second
                                                     : fmt::format("{} (in the run with {})", bad->second,
                                                                   params_brief(params, swept))));
    }
    RunSpec r{s.kind, params, run_hash(s.kind, params), s.name};
    if (seen.insert(r.hash).second) e.runs.push_back(std::move(r));
    else ++e.duplicates;
    for (std::size_t a = s.axes.size(); a-- > 0;) {  // odometer: the last axis varies fastest
      if (++idx[a] < s.axes[a].values.size()) break;
      idx[a] = 0;
    }
  }
}

}  // namespace

// ---- Public --------------------------------------------------------------------------------------

std::string canonical_run_json(std::string_view kind, const json& params) {
  return json{{"kind", kind}, {"params", params}}.dump();  // nlohmann objects are key-sorted
}

std::string run_hash(std::string_view kind, const json& params) {
  std::uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a 64 offset basis
  for (unsigned char c : canonical_run_json(kind, params)) {
    h ^= c;
    h *= 0x100000001b3ull;  // FNV 64 prime
  }
  return fmt::format("{:016x}", h);
}

std::string run_label(const RunSpec& r) {
  const json& p = r.params;
  if (r.kind == "transpose_study") {
    std::string s = fmt::format("{} {}x{} {} seed={}", p["distribution"].get<std::string>(), p["shape"][0].get<long long>(),
                                p["shape"][1].get<long long>(), p["format"].get<std::string>(), p["seed"].get<long long>());
    if (!p["groups"].empty()) s += fmt::format(" groups={}", p["groups"].size());
    if (p["eps"].get<double>() != 0) s += fmt::format(" eps={}", p["eps"].get<double>());
    if (p["granularity"] != "1x128") s += " " + p["granularity"].get<std::string>();
    return s;
  }
  if (r.kind == "gemm_accum_study")
    return fmt::format("{}x{}x{} {} A={} B={} seed={}{}", p["shape"][0].get<long long>(), p["shape"][1].get<long long>(),
                       p["shape"][2].get<long long>(), p["format"].get<std::string>(),
                       p["a_granularity"].get<std::string>(), p["b_granularity"].get<std::string>(),
                       p["seed"].get<long long>(), p["fast_accum"].get<bool>() ? " fast_accum" : "");
  if (r.kind == "train") {
    std::string s = p["dataflow"].get<std::string>();
    if (s == "fp8_flow") s += "(" + p["transpose"].get<std::string>() + ")";
    if (p["accum"] != "h100") s += " accum=" + p["accum"].get<std::string>();
    return fmt::format("{} seed={}", s, p["seed"].get<long long>());
  }
  if (r.kind == "moe_dataflows") {
    std::string s = fmt::format("moe {}", p["preset"].get<std::string>());
    if (p["tokens"].get<long long>() > 0) s += fmt::format(" tokens={}", p["tokens"].get<long long>());
    if (p["experts"].get<long long>() > 0) s += fmt::format(" experts={}", p["experts"].get<long long>());
    if (p["topk"].get<long long>() > 0) s += fmt::format(" topk={}", p["topk"].get<long long>());
    const auto& d = p["dataflow"];
    s += d.size() == 1 ? " " + d[0].get<std::string>() : fmt::format(" {} dataflows", d.size());
    if (p["transpose"] != "paper_kernel") s += " transpose=" + p["transpose"].get<std::string>();
    if (p["accum"] != "h100") s += " accum=" + p["accum"].get<std::string>();
    return s + fmt::format(" seed={}", p["seed"].get<long long>());
  }
  return r.kind;
}

Experiment parse_experiment(std::string_view text, std::string_view source_name) {
  const Parser p{std::string(source_name)};
  toml::table root;
  try {
    root = toml::parse(text, source_name);
  } catch (const toml::parse_error& err) {
    p.fail(err.source(), fmt::format("TOML syntax error: {}", err.description()));
  }
  p.only_keys(root, "top level", {"experiment", "params", "sweep", "study"});
  const toml::node* exp_node = root.get("experiment");
  if (!exp_node) p.fail(root.source(), "missing table [experiment] (with name = \"...\")");
  const toml::table& exp = p.need_table(*exp_node, "[experiment]");
  p.only_keys(exp, "[experiment]", {"name", "description", "kind"});

  Experiment e;
  e.source = std::string(source_name);
  if (const toml::node* n = exp.get("name")) e.name = p.need_string(*n, "[experiment] name");
  else p.fail(exp_node->source(), "[experiment]: missing key 'name' (a string naming the experiment)");
  if (e.name.empty()) p.fail(exp.get("name")->source(), "[experiment] name = \"\": expected a non-empty string");
  if (const toml::node* n = exp.get("description")) e.description = p.need_string(*n, "[experiment] description");

  std::vector<StudyDef> studies;
  if (const toml::node* kind = exp.get("kind")) {
    if (const toml::node* st = root.get("study"))
      p.fail(st->source(), "[[study]]: not allowed with [experiment] kind; use either kind + [params]/[sweep] or "
                           "[[study]] tables");
    studies.push_back(read_study(p, "[experiment] kind", *kind, root.get("params"), root.get("sweep"), ""));
  } else {
    for (const char* key : {"params", "sweep"})
      if (const toml::node* n = root.get(key))
        p.fail(n->source(), fmt::format("[{}]: needs [experiment] kind (or move it into a [[study]] table)", key));
    const toml::node* st = root.get("study");
    if (!st) p.fail(exp_node->source(), "[experiment]: missing key 'kind' (or [[study]] tables, each with a kind)");
    const toml::array* arr = st->as_array();
    if (!arr || !arr->is_array_of_tables() || arr->empty())
      p.fail_value(*st, "study", "one or more [[study]] tables");
    for (std::size_t i = 0; i < arr->size(); ++i) {
      const toml::table& t = *(*arr)[i].as_table();
      const std::string where = fmt::format("[[study]] #{}", i + 1);
      p.only_keys(t, where, {"name", "kind", "description", "params", "sweep"});
      const toml::node* kind = t.get("kind");
      if (!kind) p.fail(t.source(), fmt::format("{}: missing key 'kind'", where));
      StudyDef s = read_study(p, where + " kind", *kind, t.get("params"), t.get("sweep"), fmt::format("study#{}.", i + 1));
      if (const toml::node* n = t.get("name")) s.name = p.need_string(*n, where + " name");
      studies.push_back(std::move(s));
    }
  }
  std::set<std::string> seen;
  for (const StudyDef& s : studies) expand(p, s, e, seen);
  return e;
}

Experiment load_experiment(const std::filesystem::path& file) {
  // A directory, /dev/zero or a pipe would be read forever or fail with a stream error: a file, of sane size.
  std::error_code ec;
  const auto st = std::filesystem::status(file, ec);
  if (!std::filesystem::exists(st)) throw InputError(fmt::format("{}: cannot open experiment file: no such file", file.string()));
  if (!std::filesystem::is_regular_file(st))
    throw InputError(fmt::format("{}: {}, expected an experiment file (TOML)", file.string(),
                                 std::filesystem::is_directory(st) ? "is a directory" : "not a regular file"));
  if (std::filesystem::file_size(file, ec) > (std::uintmax_t(16) << 20))
    throw InputError(fmt::format("{}: larger than 16 MiB; not an experiment file", file.string()));
  std::ifstream in(file, std::ios::binary);
  if (!in) throw InputError(fmt::format("{}: cannot open experiment file", file.string()));
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_experiment(ss.str(), file.string());
}

}  // namespace fp8flow::io
