// fp8flow moe: one MoE layer forward + backward under the named dataflows, against the fp64 golden run.
// fp8flow dataflows: the graphs, their casts and the cast counts.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <chrono>
#include <cmath>
#include <nlohmann/json.hpp>

#include "cli/commands.hpp"
#include "cli/limits.hpp"
#include "cli/usage.hpp"
#include "io/errors.hpp"
#include "reference/dataflow.hpp"
#include "reference/error_ledger.hpp"
#include "reference/traffic_model.hpp"

namespace fp8flow::cli {
namespace {

struct MoeArgs {
  std::string preset = "quickstart", dataflow = "all", transpose, accum, inputs, traffic_preset = "ds_v3";
  std::uint64_t seed = 1;
  std::size_t tokens = 0, align = 0;
  std::string score = "softmax";
  bool json = false, attribute = false, per_expert = false;
};

std::vector<Dataflow> select(const std::string& what) {
  if (what == "all") return builtin_dataflows();
  std::vector<Dataflow> out;
  std::size_t a = 0;
  while (a <= what.size()) {
    const std::size_t b = std::min(what.find(',', a), what.size());
    const std::string name = what.substr(a, b - a);
    out.push_back(name.ends_with(".toml") ? load_dataflow_toml(name) : builtin_dataflow(name));
    a = b + 1;
  }
  return out;
}

nlohmann::json counts_json(const CastCounts& c) {
  return {{"explicit_casts", c.explicit_casts()}, {"explicit_quantize", c.explicit_quantize},
          {"explicit_dequantize", c.explicit_dequantize}, {"naive_transpose", c.naive_transpose},
          {"fused_quantize", c.fused_quantize}, {"scaling_aware_transpose", c.sat},
          {"precision_round", c.precision_round}, {"gemms", c.gemms}};
}
std::string counts_text(const CastCounts& c) {
  return fmt::format("explicit Q/DQ {} (Q {}, DQ {}, naive transposes {} x 2), fused quant {}, SAT {}, bf16 rounds {}",
                     c.explicit_casts(), c.explicit_quantize, c.explicit_dequantize, c.naive_transpose,
                     c.fused_quantize, c.sat, c.precision_round);
}

// Norm-wise relative error ||test - truth|| / ||truth|| from the SQNR.
double rel_err(const Metrics& m) { return std::isinf(m.sqnr_db) ? 0.0 : std::pow(10.0, -m.sqnr_db / 20.0); }

void run_moe(const MoeArgs& a, const GlobalOptions& g) {
  MoeShape shape = preset_shape(a.preset);
  if (a.tokens) shape.tokens = a.tokens;
  if (a.align) shape.align = a.align;
  shape.score = a.score == "sigmoid" ? ScoreFunction::sigmoid : ScoreFunction::softmax;
  as_usage([&] {
    check_shape(shape);
    check_memory(g, fmt::format("moe --preset {}{} ({})", a.preset, a.tokens ? fmt::format(" --tokens {}", a.tokens) : "",
                                to_string(shape)),
                 moe_layer_bytes(shape, a.attribute));
  });
  MoeInputs in = a.inputs.empty() ? make_inputs(shape, a.seed) : load_inputs(a.inputs, shape);
  ExecOptions o;
  o.threads = g.threads;
  if (!a.accum.empty()) o.gemm_config = GemmConfig{parse_accum_model(a.accum), {}};
  if (!a.transpose.empty()) o.transpose = parse_transpose_method(a.transpose);
  const auto t0 = std::chrono::steady_clock::now();
  auto secs = [](auto a0) { return std::chrono::duration<double>(std::chrono::steady_clock::now() - a0).count(); };

  // The routing comes from the fp64 scores and is shared by every dataflow.
  const auto logits = moe::matmul_nt(in.x, in.wr, shape.tokens, shape.experts, shape.hidden);
  Context ctx{shape, make_routing(moe::scores(logits, shape.tokens, shape.experts, shape.score), shape)};
  Env golden = make_env(shape, &in);
  execute(builtin_dataflow("fp64"), ctx, golden, o);
  const double t_golden = secs(t0);

  nlohmann::json j{{"preset", a.preset}, {"shape", to_string(shape)}, {"seed", a.seed},
                   {"routed_rows", ctx.routing.rows()}, {"dataflows", nlohmann::json::array()}};
  std::string text = fmt::format("MoE layer {} ({}), seed {}, {} permuted rows (padded to {})\n", a.preset,
                                 to_string(shape), a.seed, ctx.routing.rows(), shape.align);
  text += fmt::format("{:<17} {:<10} {:<5} {:>9} {:>10} {:>10} {:>8}\n", "dataflow", "tensor", "prec", "SQNR dB",
                      "rel err", "calc_diff", "changed");
  std::vector<Traffic> traffic;
  MoeShape tshape = preset_shape(a.traffic_preset);
  std::string counts_block, attrib_block;
  for (Dataflow df : select(a.dataflow)) {
    df = with_overrides(std::move(df), o);
    const auto t1 = std::chrono::steady_clock::now();
    Env env = make_env(shape, &in);
    execute(df, ctx, env, o);
    const double secs_run = secs(t1);
    const auto ledger = error_ledger(df, golden, env, a.per_expert);
    const std::string accum = fmt::format("{}", fmt::join(fp8_gemm_configs(df), ", "));  // the GEMM model
    nlohmann::json dj{{"name", df.name}, {"description", df.description}, {"seconds", secs_run},
                      {"casts", counts_json(count_casts(df))}, {"prologue_casts", counts_json(count_casts(df, true))}};
    if (!accum.empty()) dj["accum"] = accum;
    auto& tj = dj["tensors"] = nlohmann::json::array();
    for (const auto& e : ledger) {
      tj.push_back(to_json(e));
      text += fmt::format("{:<17} {:<10} {:<5} {:>9.2f} {:>10.3e} {:>10.3e} {:>7.1f}%\n", df.name, e.tensor,
                          to_string(e.prec), e.all.sqnr_db, rel_err(e.all), e.all.calc_diff, 100.0 * e.all.frac_changed);
    }
    counts_block += fmt::format("{:<17} {}{}\n", df.name, counts_text(count_casts(df)),
                                accum.empty() ? "" : "; FP8 GEMMs: accum " + accum);
    if (a.attribute) {
      const auto at = attribute_casts(df, ctx, in, golden, env, o);
      auto& aj = dj["attribution"] = nlohmann::json::array();
      for (const auto& c : at) {
        aj.push_back(to_json(c));
        attrib_block += fmt::format("{:<17} {:<62}", df.name, c.label);
        for (double s : c.share) attrib_block += fmt::format(" {:>6.1f}", 100.0 * s);
        attrib_block += "\n";
      }
    }
    traffic.push_back(traffic_model(df, tshape));
    dj["traffic"] = to_json(traffic.back(), false);
    j["dataflows"].push_back(std::move(dj));
  }
  j["seconds_total"] = secs(t0);
  j["seconds_golden"] = t_golden;
  if (a.json) {
    fmt::print("{}\n", j.dump(2));
    return;
  }
  if (g.quiet) return;
  fmt::print("{}\ncasts per forward+backward (weights and bf16 input copies not counted; paper: 12 conventional, 2 "
             "FP8-Flow; see docs/dataflows.md)\n{}",
             text, counts_block);
  if (!attrib_block.empty()) {
    fmt::print("\nerror attribution: % of each output's squared error removed by making one cast exact\n{:<17} {:<62}",
               "dataflow", "cast");
    for (const auto& n : kLayerOutputs) fmt::print(" {:>6}", n);
    fmt::print("\n{}", attrib_block);
  }
  fmt::print("\n{}\ntotal {:.1f} s (golden {:.1f} s)\n", to_text(traffic), secs(t0), t_golden);
}

void run_dataflows(bool json, const std::string& toml_of, const std::string& file) {
  std::vector<Dataflow> dfs = builtin_dataflows();
  if (!file.empty()) dfs.push_back(load_dataflow_toml(file));
  if (!toml_of.empty()) {
    for (const auto& df : dfs)
      if (df.name == toml_of) return fmt::print("{}", to_toml(df));
    throw UsageError(fmt::format("--toml {}: no such dataflow (expected one of {})", toml_of, kDataflowNames));
  }
  nlohmann::json j = nlohmann::json::array();
  for (const auto& df : dfs) {
    check_dataflow(df);
    nlohmann::json dj{{"name", df.name}, {"description", df.description}, {"casts", counts_json(count_casts(df))},
                      {"prologue_casts", counts_json(count_casts(df, true))}};
    auto& sj = dj["steps"] = nlohmann::json::array();
    if (!json) fmt::print("{}: {}\n", df.name, df.description);
    for (std::size_t i = 0; i < df.steps.size(); ++i) {
      const Step& s = df.steps[i];
      const CastKind k = cast_kind(s);
      sj.push_back({{"phase", to_string(s.phase)}, {"step", describe(s)}, {"precision", to_string(s.prec)},
                    {"cast", to_string(k)}});
      if (!json)
        fmt::print("  {:>2} {:<7} {:<70} {}\n", i, to_string(s.phase), describe(s),
                   k == CastKind::none ? "" : fmt::format("[{}]", to_string(k)));
    }
    if (!json) fmt::print("  casts (fwd+bwd): {}\n\n", counts_text(count_casts(df)));
    j.push_back(std::move(dj));
  }
  if (json) fmt::print("{}\n", j.dump(2));
}

}  // namespace

void add_moe_command(CLI::App& app, const GlobalOptions& g) {
  auto a = std::make_shared<MoeArgs>();
  auto* cmd = app.add_subcommand("moe", "One MoE layer forward+backward under each dataflow vs the fp64 golden: "
                                        "per-tensor error, cast counts, memory/traffic model");
  cmd->add_option("--preset", a->preset, std::string("shape preset: ") + std::string(kPresetNames))->capture_default_str()
      ->check(choice(preset_shape));
  cmd->add_option("--dataflow", a->dataflow, "all, a name, a comma list, or a .toml file")->capture_default_str()
      ->check(choice([](const std::string& s) {
        if (s == "all") return 0;
        std::size_t b = 0;
        while (b <= s.size()) {  // names are checked here; .toml files when they are read (bad input: exit 1)
          const std::size_t e = std::min(s.find(',', b), s.size());
          const std::string name = s.substr(b, e - b);
          if (!name.ends_with(".toml")) (void)builtin_dataflow(name);
          b = e + 1;
        }
        return 0;
      }));
  cmd->add_option("--transpose", a->transpose, "override the scaling-aware transposes: paper_kernel | exact")
      ->check(choice(parse_transpose_method));
  cmd->add_option("--accum", a->accum,
                  std::string("FP8 GEMM accumulation model (default h100: what the H100 computes): ") +
                      std::string(kAccumModelNames))
      ->check(choice(parse_accum_model));
  cmd->add_option("--seed", a->seed, "input/weight generator seed")->capture_default_str();
  cmd->add_option("--tokens", a->tokens, "override the preset's token count");
  cmd->add_option("--align", a->align, "pad each expert's rows to a multiple of this (default 128)");
  cmd->add_option("--score", a->score, "router scores: softmax | sigmoid")->check(CLI::IsMember({"softmax", "sigmoid"}));
  cmd->add_option("--inputs", a->inputs, "directory with x.npy wr.npy w1.npy w2.npy dy.npy instead of the generator");
  cmd->add_option("--traffic-preset", a->traffic_preset, "shape of the memory/traffic model")->capture_default_str()
      ->check(choice(preset_shape));
  cmd->add_flag("--json", a->json, "JSON output");
  cmd->add_flag("--attribute", a->attribute, "attribute output error to casts (one rerun per cast)");
  cmd->add_flag("--per-expert", a->per_expert, "per-expert metrics in the JSON");
  cmd->callback([a, &g] { run_moe(*a, g); });

  auto json = std::make_shared<bool>(false);
  auto toml_of = std::make_shared<std::string>(), file = std::make_shared<std::string>();
  auto* d = app.add_subcommand("dataflows", "List the dataflow graphs, their casts and cast counts");
  d->add_flag("--json", *json, "JSON output");
  d->add_option("--toml", *toml_of, "print this dataflow as TOML (a template for user dataflows)");
  d->add_option("--file", *file, "also check and list a user dataflow from a .toml file");
  d->callback([json, toml_of, file] { run_dataflows(*json, *toml_of, *file); });
}

}  // namespace fp8flow::cli
