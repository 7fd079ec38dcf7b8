// fp8flow train: the training simulation (docs/training.md) under several dataflows and seeds, written to
// the HDF5 store as `train` runs (the same runs `fp8flow run` makes from a [[study]] kind = "train"), then
// the paper's criterion per dataflow: relative loss error vs BF16, paired by seed, with a 95% Student t
// interval over the seeds.
//
// Runs are independent, so they go to a pool of worker threads (one run per thread, the executor single-
// threaded inside); records are committed in experiment order. Results do not depend on --threads.
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <exception>
#include <filesystem>
#include <mutex>
#include <optional>
#include <thread>

#include "cli/commands.hpp"
#include "cli/limits.hpp"
#include "cli/usage.hpp"
#include "io/errors.hpp"
#include "io/experiment.hpp"
#include "io/progress.hpp"
#include "io/results_store.hpp"
#include "io/study_records.hpp"
#include "io/train_summary.hpp"
#include "reference/train.hpp"

namespace fp8flow::cli {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

struct TrainArgs {
  std::string preset = "tiny", dataflow = "all", transpose = "both", out = "results/train.h5", corpus, accum;
  int seeds = 3, steps = 0;
  bool steps_given = false, json = false, resume = false;
};

struct Variant {
  std::string dataflow, transpose;
};

// "all" or a comma-separated list; fp8_flow gives both transposes unless --transpose names one; bf16 is
// always run (the baseline of the criterion).
std::vector<Variant> variants(const TrainArgs& a) {
  const std::vector<std::string> known{"bf16", "fp8_blockwise", "fp8_double_quant", "fp8_flow", "fp64"};
  std::vector<std::string> names;
  if (a.dataflow == "all") {
    names = known;
  } else {
    for (std::size_t p = 0; p <= a.dataflow.size();) {
      const std::size_t q = std::min(a.dataflow.find(',', p), a.dataflow.size());
      std::string n = a.dataflow.substr(p, q - p);
      n.erase(0, n.find_first_not_of(' '));
      n.erase(n.find_last_not_of(' ') + 1);
      if (std::find(known.begin(), known.end(), n) == known.end())
        throw UsageError(fmt::format("--dataflow '{}': unknown dataflow '{}'; expected all or a comma-separated list of "
                                     "{}",
                                     a.dataflow, n, train::kTrainDataflowNames));
      if (std::find(names.begin(), names.end(), n) == names.end()) names.push_back(n);
      p = q + 1;
    }
    if (std::find(names.begin(), names.end(), "bf16") == names.end()) names.insert(names.begin(), "bf16");
  }
  if (a.transpose != "both" && a.transpose != "paper_kernel" && a.transpose != "exact")
    throw UsageError(fmt::format("--transpose '{}': expected both, paper_kernel or exact", a.transpose));
  std::vector<Variant> out;
  for (const auto& n : names) {
    if (n != "fp8_flow") {
      out.push_back({n, "paper_kernel"});
      continue;
    }
    if (a.transpose != "exact") out.push_back({n, "paper_kernel"});
    if (a.transpose != "paper_kernel") out.push_back({n, "exact"});
  }
  return out;
}

// The runs as an experiment file in memory, resolved by the same parser as `fp8flow run`.
io::Experiment build_experiment(const TrainArgs& a) {
  // Options first (exit 2), then the corpus (a file: exit 1).
  const auto [preset, vars] = as_usage([&] {
    const train::TrainConfig p = train::preset_config(a.preset);  // unknown preset: listing the names
    if (a.seeds <= 0) throw UsageError(fmt::format("--seeds {}: expected >= 1", a.seeds));
    if (a.seeds > 1000) throw UsageError(fmt::format("--seeds {}: expected at most 1000", a.seeds));
    if (a.steps_given && a.steps <= 0) throw UsageError(fmt::format("--steps {}: expected > 0", a.steps));
    if (a.steps_given && a.steps > (1 << 24))
      throw UsageError(fmt::format("--steps {}: expected at most {} (16M)", a.steps, 1 << 24));
    return std::pair{p, variants(a)};
  });
  const std::string corpus = a.corpus.empty() ? preset.corpus : a.corpus;
  train::load_corpus(corpus, 2 * (preset.seq + 1));  // a missing corpus fails here, before any run
  std::vector<std::string> df, tr;
  for (const auto& v : vars) {
    df.push_back(json(v.dataflow).dump());
    tr.push_back(json(v.transpose).dump());
  }
  std::vector<int> seeds;
  for (int s = 1; s <= a.seeds; ++s) seeds.push_back(s);
  std::string params = fmt::format("preset = {}, corpus = {}", json(a.preset).dump(), json(corpus).dump());
  if (a.steps_given) params += fmt::format(", steps = {}", a.steps);
  if (!a.accum.empty()) params += fmt::format(", accum = {}", json(a.accum).dump());  // checked by the parser
  const std::string toml = fmt::format(
      "[experiment]\nname = \"train\"\ndescription = \"fp8flow train --preset {}\"\n\n[[study]]\nname = \"train\"\n"
      "kind = \"train\"\nparams = {{ {} }}\n[study.sweep]\nseed = [{}]\n[study.sweep.zip]\ndataflow = [{}]\n"
      "transpose = [{}]\n",
      a.preset, params, fmt::join(seeds, ", "), fmt::join(df, ", "), fmt::join(tr, ", "));
  return io::parse_experiment(toml, "fp8flow train");
}

int worker_count(int requested, std::size_t runs) {
  const int n = requested > 0 ? requested : omp_get_num_procs();
  return std::max(1, std::min<int>(n, int(std::max<std::size_t>(1, runs))));
}

}  // namespace

// Runs `todo` (indices into e.runs) on a thread pool, committing records in order (commands.hpp).
void run_pool(const io::Experiment& e, const std::vector<std::size_t>& todo, io::ResultsWriter& writer, int workers,
              bool quiet) {
  std::size_t total_steps = 0;
  std::vector<std::size_t> run_steps;
  for (std::size_t i : todo) {
    run_steps.push_back(e.runs[i].params.at("steps").get<std::size_t>());
    total_steps += run_steps.back();
  }
  std::vector<std::optional<io::RunRecord>> done(todo.size());
  std::vector<std::atomic<double>> frac(todo.size());
  for (auto& f : frac) f = 0.0;
  std::atomic<std::size_t> next{0};
  std::exception_ptr error;
  std::mutex mu;
  std::condition_variable cv;
  auto work = [&] {
    omp_set_num_threads(1);  // this thread's OpenMP regions (Eigen's GEMMs): one run per core, no oversubscription
    for (;;) {
      const std::size_t k = next++;
      if (k >= todo.size()) return;
      {
        std::lock_guard lock(mu);
        if (error) return;
      }
      try {
        io::RunRecord r = io::execute_run(e.runs[todo[k]], e.name, 1, [&, k](double f) { frac[k] = f; });
        std::lock_guard lock(mu);
        done[k] = std::move(r);
      } catch (...) {
        std::lock_guard lock(mu);
        if (!error) error = std::current_exception();
      }
      cv.notify_all();
    }
  };
  std::vector<std::thread> pool;
  for (int t = 0; t < workers; ++t) pool.emplace_back(work);
  io::Progress bar(total_steps, 0, quiet, "steps");
  std::size_t committed = 0;
  for (;;) {
    std::unique_lock lock(mu);
    cv.wait_for(lock, std::chrono::milliseconds(200));
    if (error) break;
    while (committed < todo.size() && done[committed]) {
      writer.add(std::move(*done[committed]));
      done[committed].reset();
      ++committed;
    }
    lock.unlock();
    double steps_done = 0;
    for (std::size_t k = 0; k < todo.size(); ++k) steps_done += frac[k] * double(run_steps[k]);
    bar.update(std::size_t(steps_done + 0.5));
    if (committed == todo.size()) break;
  }
  for (auto& t : pool) t.join();
  if (error) {
    writer.commit();  // keep the runs that finished; --resume goes on from there
    bar.finish();
    std::rethrow_exception(error);
  }
  writer.commit();
  bar.finish();
}

namespace {

void run_train(const TrainArgs& a, const GlobalOptions& g) {
  const auto t0 = std::chrono::steady_clock::now();
  const io::Experiment e = build_experiment(a);
  const fs::path out(a.out);
  if (out.has_parent_path()) fs::create_directories(out.parent_path());
  std::vector<std::size_t> todo;
  {
    io::ResultsWriter writer(out, 1.0);
    std::vector<std::string> have;
    for (std::size_t i = 0; i < e.runs.size(); ++i) {
      if (writer.complete().contains(e.runs[i].hash)) have.push_back(e.runs[i].hash);
      else todo.push_back(i);
    }
    if (!have.empty() && !a.resume)
      throw InputError(fmt::format("{}: already holds {} of the {} training runs (e.g. {}); pass --resume to skip them, "
                                   "or write to another file",
                                   a.out, have.size(), e.runs.size(), have.front()));
    const int workers = worker_count(g.threads, todo.size());
    {  // `workers` runs train at once
      std::uint64_t per_run = 0;
      for (std::size_t i : todo) per_run = std::max(per_run, io::run_memory_bytes(e.runs[i]));
      check_memory(g, fmt::format("train --preset {} ({} run{} at once)", a.preset, workers, workers == 1 ? "" : "s"),
                   per_run > UINT64_MAX / std::uint64_t(workers) ? UINT64_MAX : per_run * std::uint64_t(workers));
    }
    if (!g.quiet && !a.json)
      fmt::print("fp8flow train: {} runs ({} to do, {} already in {}), {} worker thread{}\n", e.runs.size(), todo.size(),
                 have.size(), a.out, workers, workers == 1 ? "" : "s");
    run_pool(e, todo, writer, workers, g.quiet || a.json);
  }
  const io::ResultsFile file(out);
  std::vector<io::RunRecord> records;
  for (const auto& spec : e.runs) records.push_back(file.read(spec.hash, false));
  const auto rows = io::summarize_train_runs(records);
  if (a.json) {
    json j = json::array();
    for (const auto& s : rows) j.push_back(io::to_json(s));
    fmt::print("{}\n", json{{"results", a.out}, {"variants", j}}.dump(2));
    return;
  }
  if (g.quiet) return;
  fmt::print("{}", io::format_train_table(rows));
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (!g.quiet) fmt::print("\n{} runs in {} ({:.1f} s); fp8flow ls/show {}\n", e.runs.size(), a.out, secs, a.out);
}

}  // namespace

void add_train_command(CLI::App& app, const GlobalOptions& g) {
  auto a = std::make_shared<TrainArgs>();
  auto* cmd = app.add_subcommand("train", "Train a small MoE language model under each dataflow and seed into the "
                                          "HDF5 store; print the relative loss error vs BF16 (paper: < 0.25%)");
  cmd->add_option("--preset", a->preset, fmt::format("Model and schedule preset: {}", train::kTrainPresetNames))
      ->check(choice(train::preset_config))
      ->capture_default_str();
  cmd->add_option("--dataflow", a->dataflow,
                  fmt::format("all, or a comma-separated list of {} (bf16 always runs: it is the baseline)",
                              train::kTrainDataflowNames))
      ->capture_default_str();
  cmd->add_option("--transpose", a->transpose, "fp8_flow's scaling-aware transposes: both, paper_kernel, exact")
      ->capture_default_str();
  cmd->add_option("--accum", a->accum,
                  fmt::format("FP8 GEMM accumulation model (default h100: what the H100 computes): {}", kAccumModelNames))
      ->check(choice(parse_accum_model));
  cmd->add_option("--seeds", a->seeds, "Seeds 1..N per dataflow (initial weights and batch order)")->capture_default_str();
  auto* steps = cmd->add_option("--steps", a->steps, "Training steps (default: the preset's)");
  cmd->add_option("--corpus", a->corpus, "Text file of byte tokens (default: data/cmake-manuals.txt)");
  cmd->add_option("-o,--out", a->out, "HDF5 results file (created or appended to)")->capture_default_str();
  cmd->add_flag("--json", a->json, "Print the per-dataflow statistics as JSON (no progress, no table)");
  cmd->add_flag("--resume", a->resume, "Skip runs already complete in the results file");
  cmd->callback([a, steps, &g] {
    a->steps_given = steps->count() > 0;
    run_train(*a, g);
  });
}

}  // namespace fp8flow::cli
