// fp8flow quickstart: the README's main job.
//  1. A conversion study: a fixed synthetic tensor (three distributions, Philox-seeded) cast into e4m3,
//     e5m2, e3m2 and e2m1 under rne/stochastic x satfinite/nonsat, with SQNR, max relative error and the
//     saturation/underflow/subnormal fractions -> results/quickstart/conversion_study.json.
//  2. experiments/quickstart.toml (transpose study, GEMM accumulation study, five-dataflow MoE comparison)
//     run into results/quickstart.h5 exactly as `fp8flow run ... --resume` would, then a compact summary
//     of each study read back from that file.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <numbers>
#include <vector>

#include "cli/cast_stats.hpp"
#include "cli/commands.hpp"
#include "cli/limits.hpp"
#include "formats/batch.hpp"
#include "formats/philox.hpp"
#include "io/atomic_write.hpp"
#include "io/errors.hpp"
#include "io/experiment.hpp"
#include "io/results_store.hpp"
#include "io/study_records.hpp"
#include "io/train_summary.hpp"
#include "version.hpp"

namespace fp8flow::cli {
namespace {

constexpr std::size_t kSamplesPerDistribution = 1'000'000 / 3 + 1;  // ~1M values in all

// Uniform in (0, 1) from 53 Philox bits; never 0, so log() is finite.
double uniform(std::uint64_t seed, std::uint64_t i) { return (double(philox_bits(seed, i) >> 11) + 0.5) * 0x1p-53; }

// Standard normal by Box-Muller from two uniforms (stream positions 2i and 2i+1).
double normal(std::uint64_t seed, std::uint64_t i) {
  const double u1 = uniform(seed, 2 * i), u2 = uniform(seed, 2 * i + 1);
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * std::numbers::pi * u2);
}

struct Distribution {
  std::string_view name, description;
  std::vector<float> x;
};

std::vector<Distribution> synthetic_tensor(std::uint64_t seed) {
  const std::size_t n = kSamplesPerDistribution;
  std::vector<Distribution> d{
      {"normal", "N(0, 1): activations after a norm layer", {}},
      {"lognormal", "+-exp(N(0, 3^2)): magnitudes over ~8 decades, reaching both ends of FP8's range", {}},
      {"outliers", "N(0, 1) with 0.1% of entries x1000: outlier channels as in LLM activations", {}},
  };
  for (auto& dist : d) dist.x.resize(n);
  for (std::size_t i = 0; i < n; ++i) {
    d[0].x[i] = float(normal(seed, i));
    const double sign = uniform(seed + 1, 3 * i) < 0.5 ? -1.0 : 1.0;
    d[1].x[i] = float(sign * std::exp(3.0 * normal(seed + 2, i)));
    const double scale = uniform(seed + 3, i) < 0.001 ? 1000.0 : 1.0;
    d[2].x[i] = float(scale * normal(seed + 4, i));
  }
  return d;
}

struct CellStats {
  double sqnr_db = 0;              // -inf when any output is Inf/NaN: one of them poisons every later sum
  double sqnr_db_finite_only = 0;  // over the finite outputs only
  double max_rel_err = 0;
  CastCounts counts;
};

// One cast of one distribution: encode, decode, compare.
CellStats study(const FormatSpec& f, CastPolicy p, std::span<const float> x, const BatchOptions& bo) {
  std::vector<std::uint8_t> codes(x.size());
  std::vector<float> q(x.size());
  encode(f, p, x, std::span<std::uint8_t>(codes), bo);
  decode(f, std::span<const std::uint8_t>(codes), std::span<float>(q), bo);
  CellStats s;
  s.counts = count_casts(f, x.size(), [&](std::size_t i) { return double(x[i]); }, std::span<const std::uint8_t>(codes));
  double signal = 0, noise = 0, max_rel = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double xi = x[i], qi = q[i];
    if (!std::isfinite(qi)) continue;  // counted as overflow_to_inf / became_nan instead
    signal += xi * xi, noise += (qi - xi) * (qi - xi);
    const double ax = std::fabs(xi);
    if (ax >= min_normal(f) && ax <= max_finite(f)) max_rel = std::max(max_rel, std::fabs(qi - xi) / ax);
  }
  s.sqnr_db_finite_only = noise > 0 ? 10.0 * std::log10(signal / noise) : INFINITY;
  s.sqnr_db = s.counts.overflow_to_inf + s.counts.became_nan + s.counts.nan_inputs > 0 ? -INFINITY
                                                                                        : s.sqnr_db_finite_only;
  s.max_rel_err = max_rel;
  return s;
}

template <class... Args> void say(bool quiet, fmt::format_string<Args...> f, Args&&... args) {
  if (!quiet) fmt::print(f, std::forward<Args>(args)...);
}

double pct(std::size_t k, std::size_t n) { return n ? 100.0 * double(k) / double(n) : 0.0; }

void run_quickstart(const std::string& out_dir, std::uint64_t seed, const GlobalOptions& g) {
  const auto t0 = std::chrono::steady_clock::now();
  const auto dists = synthetic_tensor(seed);
  const BatchOptions bo{.seed = seed, .index0 = 0, .threads = g.threads};

  say(g.quiet, "fp8flow quickstart ({} {}): conversion study on a synthetic tensor, {} x {} float32 values, seed {}\n",
      kVersion, kGitCommit, dists.size(), kSamplesPerDistribution, seed);
  for (const auto& d : dists) say(g.quiet, "  {:<10} {}\n", d.name, d.description);
  say(g.quiet, "\nSQNR in dB per distribution; max rel err over |x| in [min normal, max]; fractions over all {} values.\n",
      dists.size() * kSamplesPerDistribution);
  say(g.quiet,
      "nonfinite: overflow to Inf/NaN (nonsat); SQNR is then -inf (JSON: null, plus the SQNR over finite outputs).\n"
      "e2m1/e3m2 have no Inf/NaN, so nonsat saturates too.\n\n");
  say(g.quiet, "{:<6} {:<10} {:<9} {:>8} {:>9} {:>8} {:>11} {:>8} {:>10} {:>10} {:>10}\n", "format", "round", "overflow",
      "normal", "lognormal", "outliers", "max rel err", "sat %", "nonfinite%", "underflow%", "subnorm %");

  nlohmann::json rows = nlohmann::json::array();
  for (const FormatSpec* f : {&e4m3, &e5m2, &e3m2, &e2m1})
    for (Rounding r : {Rounding::rne, Rounding::stochastic})
      for (Overflow o : {Overflow::satfinite, Overflow::nonsat}) {
        const CastPolicy p{r, o};
        CastCounts all;
        double max_rel = 0;
        nlohmann::json per = nlohmann::json::object();
        std::vector<double> sqnr;
        for (const auto& d : dists) {
          const CellStats s = study(*f, p, d.x, bo);
          all += s.counts;
          max_rel = std::max(max_rel, s.max_rel_err);
          sqnr.push_back(s.sqnr_db);
          per[std::string(d.name)] = {{"sqnr_db", std::isfinite(s.sqnr_db) ? nlohmann::json(s.sqnr_db) : nlohmann::json()},
                                      {"sqnr_db_finite_outputs_only", s.sqnr_db_finite_only},
                                      {"max_rel_err_normal_range", s.max_rel_err},
                                      {"saturated", s.counts.saturated},
                                      {"overflow_to_inf", s.counts.overflow_to_inf},
                                      {"became_nan", s.counts.became_nan},
                                      {"underflow_to_zero", s.counts.underflow_to_zero},
                                      {"subnormal", s.counts.subnormal},
                                      {"elements", s.counts.total}};
        }
        const std::size_t nonfinite = all.overflow_to_inf + all.became_nan;
        say(g.quiet, "{:<6} {:<10} {:<9} {:>8.2f} {:>9.2f} {:>8.2f} {:>11.3e} {:>8.4f} {:>10.4f} {:>10.4f} {:>10.4f}\n", f->name,
            to_string(r), to_string(o), sqnr[0], sqnr[1], sqnr[2], max_rel, pct(all.saturated, all.total),
            pct(nonfinite, all.total), pct(all.underflow_to_zero, all.total), pct(all.subnormal, all.total));
        rows.push_back({{"format", f->name},
                        {"round", to_string(r)},
                        {"overflow", to_string(o)},
                        {"max_rel_err_normal_range", max_rel},
                        {"fraction_saturated", double(all.saturated) / double(all.total)},
                        {"fraction_nonfinite", double(nonfinite) / double(all.total)},
                        {"fraction_underflow_to_zero", double(all.underflow_to_zero) / double(all.total)},
                        {"fraction_subnormal", double(all.subnormal) / double(all.total)},
                        {"distributions", per}});
      }

  nlohmann::json doc{{"study", "conversion"},
                     {"fp8flow_version", kVersion},
                     {"git_commit", kGitCommit},
                     {"seed", seed},
                     {"samples_per_distribution", kSamplesPerDistribution},
                     {"distributions", nlohmann::json::array()},
                     {"rows", rows}};
  for (const auto& d : dists) doc["distributions"].push_back({{"name", d.name}, {"description", d.description}});
  const std::filesystem::path dir(out_dir), file = dir / "conversion_study.json";
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) throw InputError(fmt::format("{}: cannot create directory: {}", dir.string(), ec.message()));
  io::write_atomically(file, [&](const std::filesystem::path& tmp) {
    std::ofstream out(tmp);
    out << doc.dump(2) << '\n';
    out.close();
    if (!out) throw InputError(fmt::format("{}: write failed", file.string()));
  });
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  say(g.quiet, "\nwrote {} ({:.2f} s)\n", file.string(), secs);
}

// ---- The experiment file and its summary ---------------------------------------------------------

// experiments/quickstart.toml: from the working directory (the README runs `build/fp8flow quickstart`
// from the repo root), else from the directories above the executable (build*/fp8flow -> repo root).
std::filesystem::path find_default_experiment() {
  namespace fs = std::filesystem;
  const fs::path rel = fs::path("experiments") / "quickstart.toml";
  std::vector<fs::path> tried{fs::absolute(rel)};
  if (fs::exists(tried.back())) return rel;
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec)
    for (fs::path dir = exe.parent_path(); !dir.empty(); dir = dir.parent_path()) {
      tried.push_back(dir / rel);
      if (fs::exists(tried.back())) return tried.back();
      if (dir == dir.root_path()) break;
    }
  std::string list;
  for (const auto& t : tried) list += "\n  " + t.string();
  throw InputError(fmt::format("quickstart: cannot find experiments/quickstart.toml (tried:{}); run from the "
                               "repository root or pass --experiment FILE",
                               list));
}

const io::Column& column(const io::Table& t, std::string_view name) {
  const io::Column* c = t.find(name);
  if (!c) throw InputError(fmt::format("quickstart: table '{}' has no column '{}'", t.name, name));
  return *c;
}
const std::vector<std::string>& strings(const io::Table& t, std::string_view name) {
  return std::get<std::vector<std::string>>(column(t, name).values);
}
const std::vector<double>& doubles(const io::Table& t, std::string_view name) {
  return std::get<std::vector<double>>(column(t, name).values);
}
const std::vector<std::int64_t>& ints(const io::Table& t, std::string_view name) {
  return std::get<std::vector<std::int64_t>>(column(t, name).values);
}
const io::Table& table(const io::RunRecord& r, std::string_view name) {
  for (const auto& t : r.tables)
    if (t.name == name) return t;
  throw InputError(fmt::format("quickstart: run {} has no table '{}'", r.hash, name));
}
std::string db(double v) { return std::isinf(v) ? (v > 0 ? "exact" : "-inf") : fmt::format("{:.2f}", v); }

// One table per study kind, read back from the results file (runs in the experiment's order).
void print_summary(const io::Experiment& exp, const std::filesystem::path& results) {
  const io::ResultsFile file(results);
  const auto have = file.hashes();
  std::vector<io::RunRecord> transpose, gemm, moe, train;
  for (const auto& spec : exp.runs) {
    if (!std::binary_search(have.begin(), have.end(), spec.hash)) continue;
    io::RunRecord r = file.read(spec.hash, false);
    if (r.kind == "transpose_study") transpose.push_back(std::move(r));
    else if (r.kind == "gemm_accum_study") gemm.push_back(std::move(r));
    else if (r.kind == "moe_dataflows") moe.push_back(std::move(r));
    else if (r.kind == "train") train.push_back(std::move(r));
  }

  if (!transpose.empty()) {
    fmt::print("\nTranspose study (PAPER.md 3.5): SQNR dB of the 128x1 column copy vs the input; paper!=exact = "
               "codes where the paper's SAT kernel and exact SAT differ\n");
    fmt::print("  {:<12} {:>11} {:>8} {:>12} {:>8} {:>8} {:>14}\n", "distribution", "shape", "naive", "paper_kernel",
               "exact", "direct", "paper!=exact");
    for (const auto& r : transpose) {
      const io::Table& m = table(r, "metrics");
      const auto &meth = strings(m, "method"), &ref = strings(m, "reference");
      const auto& sq = doubles(m, "sqnr_db");
      auto at = [&](std::string_view method) {
        for (std::size_t i = 0; i < meth.size(); ++i)
          if (meth[i] == method && ref[i] == "input") return db(sq[i]);
        return std::string("?");
      };
      const auto& d = table(r, "paper_vs_exact").attrs;
      fmt::print("  {:<12} {:>11} {:>8} {:>12} {:>8} {:>8} {:>14}\n", r.params["distribution"].get<std::string>(),
                 fmt::format("{}x{}", r.params["shape"][0].get<long long>(), r.params["shape"][1].get<long long>()),
                 at("naive"), at("paper_kernel"), at("exact"), at("direct"),
                 d.contains("elements_differing") ? d["elements_differing"].dump() : "?");
    }
  }
  if (!gemm.empty()) {
    fmt::print("\nGEMM accumulation study (PAPER.md 5): SQNR dB / max rel err of each model vs the exact model\n");
    fmt::print("  {:<16}", "M x N x K");
    const io::Table& first = table(gemm.front(), "metrics");
    for (const auto& name : strings(first, "method")) fmt::print(" {:>20}", name);
    fmt::print("\n");
    for (const auto& r : gemm) {
      const io::Table& m = table(r, "metrics");
      fmt::print("  {:<16}", fmt::format("{}x{}x{}", r.params["shape"][0].get<long long>(),
                                         r.params["shape"][1].get<long long>(), r.params["shape"][2].get<long long>()));
      const auto &sq = doubles(m, "sqnr_db"), &mr = doubles(m, "max_rel_err");
      for (std::size_t i = 0; i < sq.size(); ++i) fmt::print(" {:>20}", fmt::format("{} / {:.1e}", db(sq[i]), mr[i]));
      fmt::print("\n");
    }
  }
  if (!moe.empty()) {
    const std::vector<std::string> outs{"y", "dx", "dwr", "dw1", "dw2"};
    std::vector<std::string> models;  // the FP8 GEMM model of the runs (provenance)
    for (const auto& r : moe)
      if (auto m = r.params.value("accum", std::string("?")); std::find(models.begin(), models.end(), m) == models.end())
        models.push_back(m);
    fmt::print("\nMoE layer, five dataflows (PAPER.md 2) vs the fp64 golden layer: SQNR dB of the outputs and "
               "gradients; explicit Q/DQ casts per forward+backward (paper: 12 conventional, 2 FP8-Flow); FP8 GEMMs: "
               "accum {}\n",
               fmt::join(models, ", "));
    fmt::print("  {:<17}", "dataflow");
    for (const auto& o : outs) fmt::print(" {:>8}", o);
    fmt::print(" {:>8}  {}\n", "Q/DQ", "run");
    for (const auto& r : moe) {
      const io::Table& m = table(r, "metrics");
      const io::Table& c = table(r, "casts");
      const auto &df = strings(m, "dataflow"), &tn = strings(m, "tensor");
      const auto& sq = doubles(m, "sqnr_db");
      const auto& cdf = strings(c, "dataflow");
      const auto& ex = ints(c, "explicit_casts");
      for (std::size_t k = 0; k < cdf.size(); ++k) {
        fmt::print("  {:<17}", cdf[k]);
        for (const auto& o : outs) {
          std::string v = "-";
          for (std::size_t i = 0; i < df.size(); ++i)
            if (df[i] == cdf[k] && tn[i] == o) v = db(sq[i]);
          fmt::print(" {:>8}", v);
        }
        fmt::print(" {:>8}  {}\n", ex[k], r.label);
      }
    }
  }
  // The training runs (docs/training.md): relative loss error vs bf16 per dataflow, paired by seed.
  if (!train.empty()) fmt::print("{}", io::format_train_table(io::summarize_train_runs(train)));
}

void run_main_job(const std::filesystem::path& exp_file, const std::string& results, bool fresh,
                  const GlobalOptions& g) {
  namespace fs = std::filesystem;
  const io::Experiment exp = io::load_experiment(exp_file);
  const fs::path out(results);
  if (out.has_parent_path()) fs::create_directories(out.parent_path());
  if (fresh) fs::remove(io::checked_store_path(out));  // a symlink's target: the link stays
  say(g.quiet, "\nrunning {} ({} runs) into {} (runs already in the file are kept: --fresh starts over)\n",
      exp_file.string(), exp.runs.size(), out.string());
  run_experiment_file(exp_file.string(), out.string(), /*resume=*/true, g);
  if (g.quiet) return;
  print_summary(exp, out);
  fmt::print("\nResults:\n"
             "  {}   (HDF5, schema docs/results-format.md; fp8flow ls / show / export --csv, or h5py:\n"
             "   notebooks/read_results.ipynb)\n",
             out.string());
}

}  // namespace

void add_quickstart_command(CLI::App& app, const GlobalOptions& g) {
  struct Args {
    std::string out_dir = "results/quickstart", experiment, results = "results/quickstart.h5";
    std::uint64_t seed = 20250101;
    bool fresh = false;
  };
  auto a = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("quickstart",
                                 "Run the main job: a conversion study of FP8/FP6/FP4 casts, then "
                                 "experiments/quickstart.toml (transpose, GEMM accumulation, five-dataflow MoE) "
                                 "into results/quickstart.h5, and print a summary");
  cmd->add_option("--out", a->out_dir, "Directory of the conversion study's JSON")->capture_default_str();
  cmd->add_option("--seed", a->seed, "Seed of the conversion study's tensor and stochastic rounding")
      ->capture_default_str();
  cmd->add_option("--experiment", a->experiment,
                  "Experiment file (default: experiments/quickstart.toml, found from the working directory or "
                  "the executable's location)");
  cmd->add_option("-o,--results", a->results, "HDF5 results file")->capture_default_str();
  cmd->add_flag("--fresh", a->fresh, "Delete the results file first (default: keep its runs and add the missing ones)");
  cmd->callback([a, &g] {
    // Everything that can be checked is checked before anything is written: the experiment file (syntax,
    // values, memory), the results store (usable, not damaged, not read-only) and the report's path.
    const std::filesystem::path exp_file = a->experiment.empty() ? find_default_experiment() : std::filesystem::path(a->experiment);
    {
      const io::Experiment exp = io::load_experiment(exp_file);
      std::uint64_t peak = 0;
      for (const auto& r : exp.runs) peak = std::max(peak, io::run_memory_bytes(r));
      check_memory(g, fmt::format("quickstart: {}'s largest run", exp_file.string()), peak);
      io::checked_store_path(a->results);
      if (!a->fresh) io::existing_runs(a->results);
    }
    const std::string html = std::filesystem::path(a->results).replace_extension(".html").string();
    io::resolve_output(html);
    run_quickstart(a->out_dir, a->seed, g);
    run_main_job(exp_file, a->results, a->fresh, g);
    // Last: the convergence-risk report of everything in the results file (cmd_report.cpp, docs/report.md).
    write_report(a->results, html, g.quiet);
    fmt::print("Report: {}\n", html);  // printed even with --quiet: the page is the job's main output
  });
}

}  // namespace fp8flow::cli
