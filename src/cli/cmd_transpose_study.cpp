// fp8flow transpose-study: one input, four column copies (naive, paper_kernel, exact, direct), their
// metrics against the high-precision input and against direct, the split of the column-copy error into
// the tile-scale cost (exact vs direct) and the double-quantization error (naive vs exact), and where
// paper_kernel and exact differ, per tile. (--out results.h5 arrives with the HDF5 store, issue 6+.)
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <charconv>
#include <nlohmann/json.hpp>

#include "cli/commands.hpp"
#include "io/errors.hpp"
#include "io/experiment.hpp"
#include "io/results_store.hpp"
#include "io/study_records.hpp"
#include "quant/distributions.hpp"
#include "quant/metrics.hpp"
#include "quant/quant_io.hpp"
#include "quant/transpose.hpp"

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

// --out: the same study as `fp8flow run` would run it from an experiment file (same parameters, same run
// hash), appended to the store; a store already holding the run is left as it is. eps goes in as the
// float's shortest decimal form, which is what a user writes in the experiment file (1e-10, not the
// double of the float).
std::string log_study(const StudyArgs& a, const std::vector<std::size_t>& shape,
                      const std::vector<std::size_t>& groups, int threads) {
  const std::string toml = fmt::format(
      "[experiment]\nname = \"transpose-study\"\nkind = \"transpose_study\"\n[params]\n"
      "distribution = \"{}\"\nshape = [{}, {}]\nseed = {}\neps = {}\ngroups = [{}]\n",
      a.dist, shape[0], shape[1], a.seed, a.eps, fmt::join(groups, ", "));
  const io::Experiment e = io::parse_experiment(toml, "fp8flow transpose-study");
  const io::RunSpec& spec = e.runs.at(0);
  const std::string held = fmt::format("{} already holds this study as run {}; not written again", a.out, spec.hash);
  if (io::existing_runs(a.out).contains(spec.hash)) return held;  // before computing the run again
  return io::append_run_once(a.out, io::execute_run(spec, e.name, threads))
             ? fmt::format("written to {} as run {}", a.out, spec.hash)
             : held;
}

std::vector<double> to_double(const std::vector<float>& v) { return {v.begin(), v.end()}; }

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
  cmd->add_option("--dist", a->dist, "normal, lognormal, outliers, heavy_tail, activations, or file:X.npy");
  cmd->add_option("--shape", a->shape, "R,C of the synthetic input (default 1024,2048)");
  cmd->add_option("--seed", a->seed, "Seed of the synthetic input");
  cmd->add_option("--groups", a->groups, "Expert group sizes along rows (default: one group)");
  cmd->add_option("--eps", a->eps, "te_pow2 amax floor of both quantizations (default 0)");
  cmd->add_option("--max-tiles", a->max_tiles, "Tiles listed in the paper_kernel vs exact report (default 8)");
  cmd->add_option("-o,--out", a->out, "Also log the study as a transpose_study run in this HDF5 store (synthetic "
                  "--dist only; the run `fp8flow run` would write for the same parameters)");
  cmd->add_flag("--json", a->json, "Print JSON");
  cmd->callback([a, &g] {
    InputTensor in;
    std::string source;
    if (!a->out.empty() && a->dist.starts_with("file:"))
      throw InputError(fmt::format("transpose-study --out {}: only synthetic --dist inputs are logged (the store "
                                   "records the parameters that regenerate a run, not a file's contents)", a->out));
    if (a->dist.starts_with("file:")) {
      in = read_input_npy(a->dist.substr(5));
      source = a->dist;
    } else {
      const Distribution d = parse_distribution(a->dist);
      const auto shape = parse_size_list(a->shape, "--shape");
      if (shape.size() != 2) throw InputError(fmt::format("--shape '{}': expected R,C", a->shape));
      in.rows = shape[0];
      in.cols = shape[1];
      in.x = make_distribution(d, in.rows, in.cols, a->seed);
      in.truth = to_double(in.x);
      source = fmt::format("{} seed {}", to_string(d), a->seed);
    }
    const std::vector<std::size_t> groups =
        a->groups.empty() ? std::vector<std::size_t>{} : parse_size_list(a->groups, "--groups");
    check_row_groups(groups, in.rows);
    const QuantRecipe rec{k1x128, &e4m3, ScaleRule::te_pow2};
    QuantParams p = default_params(rec.scale);
    p.eps = a->eps;
    p.input = in.dtype;
    check_recipe(rec, p);
    const QuantizedTensor rowwise = quantize(in.x, in.rows, in.cols, rec, p, {}, g.threads);
    const QuantizedTensor naive = transpose_naive(rowwise, groups);
    const QuantizedTensor paper = transpose_paper_kernel(rowwise, groups, g.threads);
    const QuantizedTensor exact = transpose_exact(rowwise, groups, Rounding::rne, g.threads);
    const QuantizedTensor direct = transpose_direct(in.x, in.rows, in.cols, 128, e4m3, p, groups);
    const std::vector<double> dq_row = to_double(dequantize(rowwise)), dq_direct = to_double(dequantize(direct)),
                              dq_exact = to_double(dequantize(exact));
    struct Entry {
      std::string_view name;
      const QuantizedTensor* q;
    };
    const Entry entries[] = {{"rowwise_1x128", &rowwise}, {"naive", &naive}, {"paper_kernel", &paper},
                             {"exact", &exact},           {"direct", &direct}};
    std::vector<Metrics> vs_in, vs_direct;
    for (const Entry& e : entries) {
      vs_in.push_back(compare(in.truth, *e.q));
      vs_direct.push_back(compare(dq_direct, *e.q));
    }
    const Metrics tile_cost = compare(dq_direct, exact);     // exact vs direct: the tile-scale cost
    const Metrics double_q = compare(dq_exact, naive);       // naive vs exact: double quantization
    const Metrics double_r = compare(dq_direct, naive);      // naive vs direct: the second rounding alone
    const Metrics sat_loss = compare(dq_row, exact);         // exact vs the rowwise values: SAT's underflow tail
    const Metrics paper_loss = compare(dq_row, paper);
    const SatDiffReport diff = compare_paper_exact(rowwise, paper, exact);
    if (a->json) {
      nlohmann::json j = {{"input", source}, {"shape", {in.rows, in.cols}}, {"groups", groups},
                          {"rowwise_recipe", rec.name()}, {"eps", p.eps}};
      for (std::size_t i = 0; i < std::size(entries); ++i)
        j["methods"][std::string(entries[i].name)] = {{"vs_input", to_json(vs_in[i])}, {"vs_direct", to_json(vs_direct[i])}};
      j["tile_scale_cost_exact_vs_direct"] = to_json(tile_cost);
      j["double_quantization_naive_vs_exact"] = to_json(double_q);
      j["double_rounding_naive_vs_direct"] = to_json(double_r);
      j["sat_loss_exact_vs_rowwise"] = to_json(sat_loss);
      j["sat_loss_paper_kernel_vs_rowwise"] = to_json(paper_loss);
      j["paper_kernel_vs_exact"] = to_json(diff, a->max_tiles);
      if (!a->out.empty()) j["report"] = log_study(*a, {in.rows, in.cols}, groups, g.threads);
      fmt::print("{}\n", j.dump(2));
      return;
    }
    fmt::print("transpose-study: {} [{}, {}]{}, rowwise {} eps {}, column copies 128x1 (codes [C, R])\n", source,
               in.rows, in.cols, groups.empty() ? "" : fmt::format(" groups {}", groups.size()), rec.name(), p.eps);
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
    if (!a->out.empty()) fmt::print("report: {}\n", log_study(*a, {in.rows, in.cols}, groups, g.threads));
  });
}

}  // namespace fp8flow::cli
