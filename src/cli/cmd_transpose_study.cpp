// fp8flow transpose-study: one input, four column copies (naive, paper_kernel, exact, direct), their
// metrics against the high-precision input and against direct, the split of the column-copy error into
// the tile-scale cost (exact vs direct) and the double-quantization error (naive vs exact), and where
// paper_kernel and exact differ, per tile. --out F.h5 also appends the run to a results store (synthetic inputs:
// the same record `fp8flow run` writes for the same parameters, computed once).
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <charconv>
#include <optional>
#include <nlohmann/json.hpp>

#include "cli/commands.hpp"
#include "cli/limits.hpp"
#include "cli/usage.hpp"
#include "io/progress.hpp"
#include "io/errors.hpp"
#include "io/experiment.hpp"
#include "io/results_store.hpp"
#include "io/study_records.hpp"
#include "quant/distributions.hpp"
#include "quant/metrics.hpp"
#include "quant/quant_io.hpp"
#include "quant/transpose.hpp"
#include "reference/studies.hpp"

namespace fp8flow::cli {

namespace {
struct StudyArgs {
  std::string dist = "activations", shape = "1024,2048", groups;
  std::uint64_t seed = 1;
  float eps = 0.0f;
  bool json = false;
  std::size_t max_tiles = 8;
  std::string out;  // --out: also log the study as a transpose_study run in this HDF5 store
};

// The synthetic study as `fp8flow run` resolves it from an experiment file (same parameters, same run hash:
// the record --out appends). eps goes in as the float's shortest decimal form, which is what a user writes in
// the experiment file (1e-10, not the double of the float).
io::Experiment as_experiment(const StudyArgs& a, const std::vector<std::size_t>& shape,
                             const std::vector<std::size_t>& groups) {
  const std::string toml = fmt::format(
      "[experiment]\nname = \"transpose-study\"\nkind = \"transpose_study\"\n[params]\n"
      "distribution = \"{}\"\nshape = [{}, {}]\nseed = {}\neps = {}\ngroups = [{}]\n",
      a.dist, shape[0], shape[1], a.seed, a.eps, fmt::join(groups, ", "));
  return io::parse_experiment(toml, "fp8flow transpose-study");
}

std::string row(std::string_view name, const Metrics& in, const Metrics& vs_direct) {
  return fmt::format("{:<13} {:>10.4g} {:>8.3f} {:>10.4g} {:>9.3g} {:>10.3g} {:>10.3g} {:>8} {:>8} {:>6} {:>5} {:>9.4g} | "
                     "{:>10.4g} {:>8.3f} {:>9.4g}\n",
                     name, in.rmse, in.sqnr_db, in.max_abs_err, in.max_rel_err, in.mean_err, in.calc_diff,
                     in.underflow_to_zero, in.lost_subnormals, in.saturated, in.nan_created, in.frac_changed,
                     vs_direct.rmse, vs_direct.sqnr_db, vs_direct.frac_changed);
}
}  // namespace

void add_transpose_study_command(CLI::App& app, const GlobalOptions& g) {
  auto a = std::make_shared<StudyArgs>();
  auto* cmd = app.add_subcommand("transpose-study", "Compare naive, paper_kernel, exact and direct column copies");
  cmd->add_option("--dist", a->dist, "normal, lognormal, outliers, heavy_tail, activations, or file:X.npy")
      ->check(choice([](const std::string& s) {
        if (s.starts_with("file:")) {
          if (s.size() == 5) throw UsageError("file: needs a path, e.g. file:x.npy");
          return Distribution{};
        }
        return parse_distribution(s);
      }));
  cmd->add_option("--shape", a->shape, "R,C of the synthetic input (default 1024,2048)")
      ->check(choice([](const std::string& s) {
        if (parse_size_list(s, "--shape").size() != 2) throw UsageError(fmt::format("'{}': expected R,C", s));
        return 0;
      }));
  cmd->add_option("--seed", a->seed, "Seed of the synthetic input");
  cmd->add_option("--groups", a->groups, "Expert group sizes along rows (default: one group)")
      ->check(choice([](const std::string& s) { return parse_size_list(s, "--groups"); }));
  cmd->add_option("--eps", a->eps, "te_pow2 amax floor of both quantizations (default 0)");
  cmd->add_option("--max-tiles", a->max_tiles, "Tiles listed in the paper_kernel vs exact report (default 8)");
  cmd->add_option("-o,--out", a->out, "Also log the study as a transpose_study run in this HDF5 store (synthetic "
                  "--dist only; the run `fp8flow run` would write for the same parameters)");
  cmd->add_flag("--json", a->json, "Print JSON");
  cmd->callback([a, &g] {
    if (!a->out.empty() && a->dist.starts_with("file:"))
      throw UsageError(fmt::format("transpose-study --out {}: only synthetic --dist inputs are logged (the store "
                                   "records the parameters that regenerate a run, not a file's contents)", a->out));
    const std::vector<std::size_t> groups =
        a->groups.empty() ? std::vector<std::size_t>{} : parse_size_list(a->groups, "--groups");
    // One computation: a file's tensor as read, or the synthetic run exactly as `fp8flow run` would do it.
    std::string source;
    TransposeStudyResult r;
    std::size_t rows = 0, cols = 0;
    std::optional<io::Experiment> experiment;
    std::optional<io::RunRecord> record;
    // A bar on a terminal (quiet, --json or a pipe: none); the study reports each of its steps.
    io::Progress bar(kTransposeStudySteps, 0, g.quiet || a->json, "steps");
    const auto progress = [&bar](std::size_t done) { bar.update(done); };
    if (a->dist.starts_with("file:")) {
      const std::string file = a->dist.substr(5);
      const std::uint64_t n = npy_elements(file);
      check_memory(g, fmt::format("transpose-study --dist {}", a->dist), transpose_study_bytes(n, 1));
      const InputTensor in = read_input_npy(file);
      source = a->dist;
      rows = in.rows;
      cols = in.cols;
      TransposeStudyConfig c;
      c.groups = groups;
      c.eps = a->eps;
      c.threads = g.threads;
      c.progress = progress;
      r = transpose_study(c, in);
    } else {
      const Distribution d = parse_distribution(a->dist);
      const auto shape = parse_size_list(a->shape, "--shape");
      rows = shape[0];
      cols = shape[1];
      source = fmt::format("{} seed {}", to_string(d), a->seed);
      as_usage([&] {
        check_row_groups(groups, rows);
        check_memory(g, fmt::format("transpose-study --shape {}", a->shape), transpose_study_bytes(rows, cols));
      });
      experiment = as_experiment(*a, shape, groups);
      const io::RunSpec& spec = experiment->runs.at(0);
      if (!a->out.empty()) record = io::begin_run_record(spec, experiment->name, g.threads);
      TransposeStudyConfig c = io::transpose_study_config(spec, g.threads);
      c.progress = progress;
      r = transpose_study(c);
      if (record) {
        io::add_transpose_study(r, *record);
        record->provenance.end_time = io::iso8601_utc_now();
      }
    }
    // --out: append the record unless the store already holds the run (then it is left as it is).
    const auto log = [&]() -> std::string {
      const std::string& hash = experiment->runs.at(0).hash;
      return io::append_run_once(a->out, std::move(*record))
                 ? fmt::format("written to {} as run {}", a->out, hash)
                 : fmt::format("{} already holds this study as run {}; not written again", a->out, hash);
    };
    bar.finish();
    struct Entry {
      std::string_view name, method;
    };
    const Entry entries[] = {{"rowwise_1x128", "rowwise"}, {"naive", "naive"}, {"paper_kernel", "paper_kernel"},
                             {"exact", "exact"},           {"direct", "direct"}};
    std::vector<Metrics> vs_in, vs_direct;
    for (const Entry& e : entries) {
      vs_in.push_back(r.metrics(e.method, "input"));
      vs_direct.push_back(r.metrics(e.method, "direct"));
    }
    const Metrics& tile_cost = r.metrics("exact", "direct");          // the tile-scale cost
    const Metrics& double_q = r.metrics("naive", "exact");            // double quantization
    const Metrics& double_r = r.metrics("naive", "direct");           // the second rounding alone
    const Metrics& sat_loss = r.metrics("exact", "rowwise");          // SAT's underflow tail
    const Metrics& paper_loss = r.metrics("paper_kernel", "rowwise");
    const SatDiffReport& diff = r.paper_vs_exact;
    const QuantRecipe& rec = r.rowwise_recipe;
    const float eps = a->eps;
    if (a->json) {
      nlohmann::json j = {{"input", source}, {"shape", {rows, cols}}, {"groups", groups},
                          {"rowwise_recipe", rec.name()}, {"eps", eps}};
      for (std::size_t i = 0; i < std::size(entries); ++i)
        j["methods"][std::string(entries[i].name)] = {{"vs_input", to_json(vs_in[i])}, {"vs_direct", to_json(vs_direct[i])}};
      j["tile_scale_cost_exact_vs_direct"] = to_json(tile_cost);
      j["double_quantization_naive_vs_exact"] = to_json(double_q);
      j["double_rounding_naive_vs_direct"] = to_json(double_r);
      j["sat_loss_exact_vs_rowwise"] = to_json(sat_loss);
      j["sat_loss_paper_kernel_vs_rowwise"] = to_json(paper_loss);
      j["paper_kernel_vs_exact"] = to_json(diff, a->max_tiles);
      if (record) j["report"] = log();
      fmt::print("{}\n", j.dump(2));
      return;
    }
    if (g.quiet) {  // -q: no table; a --out run is still written
      if (record) log();
      return;
    }
    fmt::print("transpose-study: {} [{}, {}]{}, rowwise {} eps {}, column copies 128x1 (codes [C, R])\n", source,
               rows, cols, groups.empty() ? "" : fmt::format(" groups {}", groups.size()), rec.name(), eps);
    fmt::print("{:<13} {:>10} {:>8} {:>10} {:>9} {:>10} {:>10} {:>8} {:>8} {:>6} {:>5} {:>9} | {:>10} {:>8} {:>9}\n",
               "method", "rmse", "sqnr_dB", "max_abs", "max_rel", "bias", "calc_diff", "underfl", "lost_sub", "sat",
               "nan", "changed", "rmse_vsD", "sqnr_vsD", "chg_vsD");
    fmt::print("{:<13} {:->104} | {:->30}\n", "", " vs high-precision input", " vs direct");
    for (std::size_t i = 0; i < std::size(entries); ++i) fmt::print("{}", row(entries[i].name, vs_in[i], vs_direct[i]));
    fmt::print("\nerror split of the column copy:\n");
    fmt::print("  tile-scale cost (exact vs direct):         rmse {:.4g}  sqnr {:.2f} dB  changed {:.4g}  "
               "(rmse vs input: exact {:.4g}, direct {:.4g})\n",
               tile_cost.rmse, tile_cost.sqnr_db, tile_cost.frac_changed, vs_in[3].rmse, vs_in[4].rmse);
    fmt::print("  double quantization (naive vs exact):      rmse {:.4g}  sqnr {:.2f} dB  changed {:.4g}  max_abs {:.4g}\n",
               double_q.rmse, double_q.sqnr_db, double_q.frac_changed, double_q.max_abs_err);
    fmt::print("  double rounding alone (naive vs direct):   rmse {:.4g}  sqnr {:.2f} dB  changed {:.4g}  "
               "(same per-column scales; only the second rounding differs)\n",
               double_r.rmse, double_r.sqnr_db, double_r.frac_changed);
    fmt::print("  SAT underflow tail (exact vs rowwise):     changed {} ({:.4g}), underflow_to_zero {}\n",
               sat_loss.changed, sat_loss.frac_changed, sat_loss.underflow_to_zero);
    fmt::print("  paper_kernel vs rowwise values:            changed {} ({:.4g}), underflow_to_zero {}\n\n",
               paper_loss.changed, paper_loss.frac_changed, paper_loss.underflow_to_zero);
    fmt::print("{}", to_text(diff, a->max_tiles));
    if (record) fmt::print("report: {}\n", log());
  });
}

}  // namespace fp8flow::cli
