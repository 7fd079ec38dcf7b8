// fp8flow run / check / ls / show / export: experiments from TOML files into the HDF5 results store
// (docs/experiments.md, docs/results-format.md).
//
// Under mpirun (OpenMPI sets OMPI_COMM_WORLD_SIZE) `run` splits the runs still to do round robin over
// the ranks in experiment order; every rank computes, rank 0 alone writes (the others send each
// finished run to it as CBOR bytes). Without mpirun MPI is never initialised.
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include "cli/commands.hpp"
#include "cli/limits.hpp"
#include "cli/usage.hpp"
#include "io/atomic_write.hpp"
#include "io/errors.hpp"
#include "io/experiment.hpp"
#include "io/progress.hpp"
#include "io/results_store.hpp"
#include "io/study_records.hpp"

#ifdef FP8FLOW_HAVE_MPI
#define OMPI_SKIP_MPICXX 1  // the C API only (the C++ bindings are deprecated and warn)
#include <mpi.h>
#endif

namespace fp8flow::cli {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// ---- MPI -------------------------------------------------------------------------------------------
int env_int(const char* name, int fallback) {
  const char* v = std::getenv(name);
  return v ? std::atoi(v) : fallback;
}

struct MpiSession {
  bool active = false;
  int rank = 0, size = 1;
  MpiSession() {
    const int launched = env_int("OMPI_COMM_WORLD_SIZE", env_int("PMI_SIZE", 1));
#ifdef FP8FLOW_HAVE_MPI
    if (launched > 1) {
      MPI_Init(nullptr, nullptr);
      active = true;
      MPI_Comm_rank(MPI_COMM_WORLD, &rank);
      MPI_Comm_size(MPI_COMM_WORLD, &size);
    }
#else
    if (launched > 1)
      throw InputError("this fp8flow was built without MPI (FP8FLOW_HAVE_MPI); run it without mpirun or rebuild "
                       "with OpenMPI installed");
#endif
  }
  void finalize() {
#ifdef FP8FLOW_HAVE_MPI
    if (active) MPI_Finalize();
#endif
    active = false;
  }
  [[noreturn]] void abort(int code) {
#ifdef FP8FLOW_HAVE_MPI
    if (active) MPI_Abort(MPI_COMM_WORLD, code);
#endif
    std::exit(code);
  }
};

#ifdef FP8FLOW_HAVE_MPI
constexpr int kTagRun = 1;
void send_run(const io::RunRecord& r) {
  const std::vector<std::uint8_t> bytes = io::serialize(r);
  if (bytes.size() > std::size_t(INT32_MAX))
    throw InputError(fmt::format("run {}: {} bytes is too large to send between MPI ranks (save_tensors on a huge "
                                 "shape?)",
                                 r.hash, bytes.size()));
  MPI_Send(bytes.data(), int(bytes.size()), MPI_BYTE, 0, kTagRun, MPI_COMM_WORLD);
}
io::RunRecord receive_run(bool blocking, bool& got) {
  MPI_Status st;
  int flag = 1;
  if (blocking) MPI_Probe(MPI_ANY_SOURCE, kTagRun, MPI_COMM_WORLD, &st);
  else MPI_Iprobe(MPI_ANY_SOURCE, kTagRun, MPI_COMM_WORLD, &flag, &st);
  got = flag != 0;
  if (!got) return {};
  int n = 0;
  MPI_Get_count(&st, MPI_BYTE, &n);
  std::vector<std::uint8_t> bytes(static_cast<std::size_t>(n));
  MPI_Recv(bytes.data(), n, MPI_BYTE, st.MPI_SOURCE, kTagRun, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
  return io::deserialize(bytes);
}
#endif

// ---- run -------------------------------------------------------------------------------------------
struct RunArgs {
  std::string experiment, out;
  bool resume = false, json = false;
  double commit_interval = 1.0;
};

// The largest memory estimate of the experiment's runs, with the run it belongs to.
std::pair<std::uint64_t, const io::RunSpec*> peak_memory(const io::Experiment& e) {
  std::pair<std::uint64_t, const io::RunSpec*> peak{0, nullptr};
  for (const auto& r : e.runs) {
    const std::uint64_t b = io::run_memory_bytes(r);
    if (b > peak.first || !peak.second) peak = {b, &r};
  }
  return peak;
}

// Refuses an experiment whose largest run would not fit the memory limit (before anything is written).
void check_experiment_memory(const io::Experiment& e, const std::string& file, const GlobalOptions& g) {
  const auto [bytes, run] = peak_memory(e);
  if (run)
    check_memory(g, fmt::format("{}: run {} ({} {})", file, run->hash, run->kind, io::run_label(*run)), bytes);
}

// Worker threads per process: --threads, else the cores shared by the ranks on this node.
int resolve_threads(int requested) {
  if (requested > 0) return requested;
  const int local = std::max(1, env_int("OMPI_COMM_WORLD_LOCAL_SIZE", 1));
  return std::max(1, omp_get_num_procs() / local);
}

// Rank 0: opens the store and decides which runs are still to do. Returns indices into e.runs.
std::vector<std::int64_t> plan(const io::Experiment& e, const io::ResultsWriter& w, const RunArgs& a,
                               std::size_t& skipped) {
  std::vector<std::int64_t> todo;
  std::vector<std::string> done;
  for (std::size_t i = 0; i < e.runs.size(); ++i) {
    if (w.complete().contains(e.runs[i].hash)) done.push_back(e.runs[i].hash);
    else todo.push_back(std::int64_t(i));
  }
  if (!done.empty() && !a.resume)
    throw InputError(fmt::format("{}: already holds {} of the {} runs of {} (e.g. {}); pass --resume to skip them, or "
                                 "write to another file",
                                 a.out, done.size(), e.runs.size(), a.experiment, done.front()));
  skipped = done.size();
  return todo;
}

void run_experiment(const RunArgs& a, const GlobalOptions& g) {
  MpiSession mpi;
  bool collective = true;  // errors in this phase happen on every rank alike
  try {
    const auto t0 = std::chrono::steady_clock::now();
    const io::Experiment e = io::load_experiment(a.experiment);
    check_experiment_memory(e, a.experiment, g);
    const int threads = resolve_threads(g.threads);
    std::optional<io::ResultsWriter> writer;
    std::vector<std::int64_t> todo;
    std::size_t skipped = 0;
    std::string plan_error;
    if (mpi.rank == 0) {
      try {
        writer.emplace(a.out, a.commit_interval);
        todo = plan(e, *writer, a, skipped);
      } catch (const std::exception& ex) {
        if (!mpi.active) throw;
        plan_error = ex.what();
      }
    }
#ifdef FP8FLOW_HAVE_MPI
    if (mpi.active) {  // rank 0 tells everyone whether to go on, and what to do
      std::int64_t n = plan_error.empty() ? std::int64_t(todo.size()) : -1;
      MPI_Bcast(&n, 1, MPI_INT64_T, 0, MPI_COMM_WORLD);
      if (n < 0) {
        if (mpi.rank == 0) fmt::print(stderr, "fp8flow: error: {}\n", plan_error);
        mpi.finalize();
        std::exit(1);
      }
      todo.resize(std::size_t(n));
      MPI_Bcast(todo.data(), int(n), MPI_INT64_T, 0, MPI_COMM_WORLD);
    }
#endif
    collective = false;
    std::size_t mine = 0;
    for (std::size_t i = 0; i < todo.size(); ++i) mine += int(i % std::size_t(mpi.size)) == mpi.rank;

    if (mpi.rank != 0) {
#ifdef FP8FLOW_HAVE_MPI
      for (std::size_t i = std::size_t(mpi.rank); i < todo.size(); i += std::size_t(mpi.size))
        send_run(io::execute_run(e.runs[std::size_t(todo[i])], e.name, threads));
#endif
      mpi.finalize();
      return;
    }
    // mpirun forwards output through a pty, so isatty() says yes even when mpirun writes to a log: no bar there.
    io::Progress bar(e.runs.size(), skipped, g.quiet || a.json || mpi.active);
    std::size_t done = 0;
    auto drain = [&](bool blocking) {
#ifdef FP8FLOW_HAVE_MPI
      for (bool got = true; got && mpi.active;) {
        io::RunRecord r = receive_run(blocking, got);
        if (!got) break;
        writer->add(std::move(r));
        bar.update(++done);
        if (blocking) break;
      }
#else
      (void)blocking;
#endif
    };
    // Without MPI, train runs (small, single-threaded inside) go to a pool of `threads` workers, so that
    // seeds run in parallel; they commit in order after the other runs. Under MPI the ranks share them.
    std::vector<std::size_t> pooled;
    for (std::size_t i = 0; i < todo.size(); i += std::size_t(mpi.size)) {
      if (!mpi.active && threads > 1 && e.runs[std::size_t(todo[i])].kind == "train") {
        pooled.push_back(std::size_t(todo[i]));
        continue;
      }
      writer->add(io::execute_run(e.runs[std::size_t(todo[i])], e.name, threads));
      bar.update(++done);
      drain(false);
    }
    if (!pooled.empty()) {
      writer->commit();
      run_pool(e, pooled, *writer, std::min<int>(threads, int(pooled.size())), g.quiet);
      done += pooled.size();
      bar.update(done);
    }
    while (done < todo.size()) drain(true);
    writer->commit();
    bar.finish();
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (a.json)
      fmt::print("{}\n", json{{"experiment", e.name},  {"file", a.experiment}, {"out", a.out},
                              {"written", done},      {"already_complete", skipped},
                              {"total", e.runs.size()}, {"seconds", secs},
                              {"ranks", mpi.size},    {"threads", threads}}.dump(2));
    else if (!g.quiet)
      fmt::print("fp8flow run: {}: {} runs written, {} already complete, {} in total -> {} ({:.1f} s, {} rank{} x {} "
                 "thread{})\n",
                 e.name, done, skipped, e.runs.size(), a.out, secs, mpi.size, mpi.size == 1 ? "" : "s", threads,
                 threads == 1 ? "" : "s");
    mpi.finalize();
  } catch (const std::exception& ex) {
    if (!mpi.active) throw;
    if (collective) {  // every rank failed the same way: one message, clean exit
      if (mpi.rank == 0) fmt::print(stderr, "fp8flow: error: {}\n", ex.what());
      mpi.finalize();
      std::exit(1);
    }
    fmt::print(stderr, "fp8flow: error (rank {}): {}\n", mpi.rank, ex.what());
    mpi.abort(1);
  }
}

// ---- ls / show / export ----------------------------------------------------------------------------
std::string cell(const io::Column& c, std::size_t i) {
  if (const auto* v = std::get_if<std::vector<double>>(&c.values)) return fmt::format("{:.17g}", (*v)[i]);
  if (const auto* v = std::get_if<std::vector<std::int64_t>>(&c.values)) return fmt::format("{}", (*v)[i]);
  return std::get<std::vector<std::string>>(c.values)[i];
}
std::string short_cell(const io::Column& c, std::size_t i) {
  if (const auto* v = std::get_if<std::vector<double>>(&c.values)) return fmt::format("{:.6g}", (*v)[i]);
  return cell(c, i);
}

std::string csv_quote(const std::string& s) {
  if (s.find_first_of(",\"\n\r") == std::string::npos) return s;
  std::string q = "\"";
  for (char ch : s) q += ch == '"' ? std::string("\"\"") : std::string(1, ch);
  return q + "\"";
}

void print_table(const io::Table& t) {
  fmt::print("\n{} ({} rows){}\n", t.name, t.rows(), t.description.empty() ? "" : ": " + t.description);
  for (const auto& [k, v] : t.attrs.items()) fmt::print("  {} = {}\n", k, v.dump());
  if (t.rows() == 0) return;
  std::vector<std::size_t> width;
  for (const auto& c : t.columns) {
    std::size_t w = c.name.size();
    for (std::size_t i = 0; i < t.rows(); ++i) w = std::max(w, short_cell(c, i).size());
    width.push_back(w);
  }
  std::string line = " ";
  for (std::size_t j = 0; j < t.columns.size(); ++j) line += fmt::format(" {:>{}}", t.columns[j].name, width[j]);
  fmt::print("{}\n", line);
  line = " ";
  for (std::size_t j = 0; j < t.columns.size(); ++j)
    line += fmt::format(" {:>{}}", t.columns[j].units.empty() ? "" : "[" + t.columns[j].units + "]", width[j]);
  fmt::print("{}\n", line);
  for (std::size_t i = 0; i < t.rows(); ++i) {
    line = " ";
    for (std::size_t j = 0; j < t.columns.size(); ++j) line += fmt::format(" {:>{}}", short_cell(t.columns[j], i), width[j]);
    fmt::print("{}\n", line);
  }
}

void show_run(const std::string& file, const std::string& id, bool as_json) {
  const io::ResultsFile f(file);
  const io::RunRecord r = f.read(f.resolve(id), true);
  if (as_json) {
    fmt::print("{}\n", io::to_json(r).dump(2));
    return;
  }
  fmt::print("run {}  {}  ({})\n  {}\n  {}\n", r.hash, r.kind, r.experiment, r.label, r.summary);
  fmt::print("params:\n");
  for (const auto& [k, v] : r.params.items()) fmt::print("  {} = {}\n", k, v.dump());
  const io::Provenance& p = r.provenance;
  fmt::print("provenance:\n  fp8flow {} ({}), {}, {} [{}]\n  host {}, {} threads, {} .. {}\n", p.fp8flow_version,
             p.git_commit, p.compiler, p.build_type, p.cxx_flags, p.host, p.threads, p.start_time, p.end_time);
  for (const auto& t : r.tables) print_table(t);
  if (!r.histograms.empty()) fmt::print("\nhistograms (bin:count):\n");
  for (const auto& h : r.histograms) {
    std::vector<std::string> parts;
    for (std::size_t i = 0; i < h.rows(); ++i) parts.push_back(cell(h.columns[0], i) + ":" + cell(h.columns[1], i));
    fmt::print("  {} [{}]: {}\n", h.name, h.columns.empty() ? "" : h.columns[0].units, fmt::join(parts, " "));
  }
  if (!r.tensors.empty()) fmt::print("\ntensors:\n");
  for (const auto& t : r.tensors)
    fmt::print("  {} {} {}\n", t.name, std::holds_alternative<std::vector<float>>(t.values) ? "float32" : "uint8",
               fmt::join(t.shape, "x"));
}

// Damaged run groups are skipped by every reader; say so on stderr (ls lists them, fsck drops them).
void warn_damaged(const io::ResultsFile& f) {
  const auto& d = f.damaged();
  if (d.empty()) return;
  fmt::print(stderr, "fp8flow: warning: {}: skipped {} damaged or incomplete run group{} ({}{}); `fp8flow fsck {}` "
                     "lists them, --drop removes them\n",
             f.path().string(), d.size(), d.size() == 1 ? "" : "s", d.front().hash, d.size() > 1 ? ", ..." : "",
             f.path().string());
}

void list_runs(const std::string& file, bool as_json) {
  const io::ResultsFile f(file);
  const auto hashes = f.hashes();
  std::vector<io::RunInfo> infos;
  std::size_t wl = 5, wk = 4;
  for (const auto& h : hashes) {
    infos.push_back(f.info(h));
    wl = std::max(wl, infos.back().label.size());
    wk = std::max(wk, infos.back().kind.size());
  }
  if (as_json) {
    json j = {{"file", file}, {"runs", json::array()}, {"damaged", json::array()}};
    for (const auto& i : infos)
      j["runs"].push_back({{"hash", i.hash}, {"kind", i.kind}, {"label", i.label}, {"summary", i.summary},
                           {"experiment", i.experiment}, {"params", i.params}});
    for (const auto& d : f.damaged()) j["damaged"].push_back({{"hash", d.hash}, {"reason", d.reason}});
    fmt::print("{}\n", j.dump(2));
    return;
  }
  fmt::print("{:<16}  {:<{}}  {:<{}}  {}\n", "hash", "kind", wk, "params", wl, "key metric");
  for (const auto& i : infos) fmt::print("{:<16}  {:<{}}  {:<{}}  {}\n", i.hash, i.kind, wk, i.label, wl, i.summary);
  for (const auto& d : f.damaged()) fmt::print("{:<16}  DAMAGED: {}\n", d.hash, d.reason);
  fmt::print("{} run{} in {}{}\n", infos.size(), infos.size() == 1 ? "" : "s", file,
             f.damaged().empty() ? ""
                                 : fmt::format(", {} damaged (skipped; `fp8flow fsck {} --drop` removes them)",
                                               f.damaged().size(), file));
}

void fsck(const std::string& file, bool drop, bool as_json) {
  const io::FsckReport r = io::fsck_store(file, drop);
  if (as_json) {
    json j = {{"file", file}, {"complete", r.healthy}, {"dropped", r.dropped}, {"damaged", json::array()}};
    for (const auto& d : r.damaged) j["damaged"].push_back({{"hash", d.hash}, {"reason", d.reason}});
    fmt::print("{}\n", j.dump(2));
  } else {
    for (const auto& d : r.damaged) fmt::print("{}: {}: {}\n", drop ? "dropped" : "damaged", d.hash, d.reason);
    fmt::print("{}: {} complete run{}, {} damaged{}\n", file, r.healthy, r.healthy == 1 ? "" : "s", r.damaged.size(),
               drop ? fmt::format(" ({} dropped)", r.dropped) : r.damaged.empty() ? "" : " (--drop removes them)");
  }
  if (!r.damaged.empty() && !drop) throw ExitCode{1};
}

// One CSV per table name across all runs (a `run` column first; columns of different kinds are united),
// one per histogram name, and runs.csv with every run's parameters.
void export_csv(const std::string& file, const std::string& dir, bool as_json) {
  const io::ResultsFile f(file);
  warn_damaged(f);
  struct Sheet {
    std::vector<std::string> columns;
    std::vector<std::map<std::string, std::string>> rows;
  };
  std::map<std::string, Sheet> sheets;
  auto add_col = [](Sheet& s, const std::string& c) {
    if (std::find(s.columns.begin(), s.columns.end(), c) == s.columns.end()) s.columns.push_back(c);
  };
  Sheet& runs = sheets["runs"];
  for (const char* c : {"run", "kind", "experiment", "label", "summary", "start_time", "end_time", "params_json"})
    add_col(runs, c);
  for (const auto& h : f.hashes()) {
    const io::RunRecord r = f.read(h, false);
    std::map<std::string, std::string> row = {{"run", r.hash},
                                              {"kind", r.kind},
                                              {"experiment", r.experiment},
                                              {"label", r.label},
                                              {"summary", r.summary},
                                              {"start_time", r.provenance.start_time},
                                              {"end_time", r.provenance.end_time},
                                              {"params_json", r.params.dump()}};
    for (const auto& [k, v] : r.params.items()) {
      add_col(runs, k);
      row[k] = v.is_string() ? v.get<std::string>() : v.dump();
    }
    runs.rows.push_back(row);
    auto add_table = [&](const std::string& sheet, const io::Table& t) {
      Sheet& s = sheets[sheet];
      add_col(s, "run");
      for (const auto& c : t.columns) add_col(s, c.name);
      for (std::size_t i = 0; i < t.rows(); ++i) {
        std::map<std::string, std::string> out = {{"run", r.hash}};
        for (const auto& c : t.columns) out[c.name] = cell(c, i);
        s.rows.push_back(std::move(out));
      }
    };
    for (const auto& t : r.tables) add_table(t.name, t);
    for (const auto& t : r.histograms) add_table("histogram_" + t.name, t);
  }
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw InputError(fmt::format("{}: cannot create directory: {}", dir, ec.message()));
  for (const auto& [name, s] : sheets) {
    const fs::path dst = fs::path(dir) / (name + ".csv");
    io::write_atomically(dst, [&](const fs::path& tmp) {
      std::ofstream out(tmp, std::ios::binary);
      std::vector<std::string> head;
      for (const auto& c : s.columns) head.push_back(csv_quote(c));
      out << fmt::format("{}\n", fmt::join(head, ","));
      for (const auto& row : s.rows) {
        std::vector<std::string> cells;
        for (const auto& c : s.columns) {
          auto it = row.find(c);
          cells.push_back(it == row.end() ? "" : csv_quote(it->second));
        }
        out << fmt::format("{}\n", fmt::join(cells, ","));
      }
      out.close();
      if (!out) throw InputError(fmt::format("{}: write failed", tmp.string()));
    });
  }
  if (as_json) {
    json files = json::array();
    for (const auto& [name, sh] : sheets) files.push_back((fs::path(dir) / (name + ".csv")).string());
    fmt::print("{}\n", json{{"file", file}, {"dir", dir}, {"runs", runs.rows.size()}, {"tables", sheets.size()},
                            {"files", files}, {"damaged_skipped", f.damaged().size()}}.dump(2));
    return;
  }
  fmt::print("exported {} tables of {} runs from {} to {}/\n", sheets.size(), runs.rows.size(), file, dir);
}

void check_experiment(const std::string& file, bool list, bool as_json, const GlobalOptions& g) {
  const io::Experiment e = io::load_experiment(file);
  const auto [peak, peak_run] = peak_memory(e);
  const MemoryLimit limit = memory_limit(g);
  std::map<std::string, std::size_t> by_kind;
  for (const auto& r : e.runs) ++by_kind[r.kind];
  if (as_json) {
    json j = {{"file", file}, {"experiment", e.name}, {"runs", e.runs.size()}, {"duplicates", e.duplicates},
              {"by_kind", by_kind}, {"peak_memory_bytes", peak}, {"memory_limit_bytes", limit.bytes},
              {"memory_limit_source", limit.source}, {"fits", peak <= limit.bytes}};
    if (list) {
      j["list"] = json::array();
      for (const auto& r : e.runs)
        j["list"].push_back({{"hash", r.hash}, {"kind", r.kind}, {"label", io::run_label(r)},
                             {"memory_bytes", io::run_memory_bytes(r)}, {"params", r.params}});
    }
    fmt::print("{}\n", j.dump(2));
  } else {
    std::vector<std::string> parts;
    for (const auto& [k, n] : by_kind) parts.push_back(fmt::format("{} {}", k, n));
    fmt::print("{}: OK: experiment '{}': {} run{} ({}){}; largest run needs about {} (limit {})\n", file, e.name,
               e.runs.size(), e.runs.size() == 1 ? "" : "s", fmt::join(parts, ", "),
               e.duplicates ? fmt::format(", {} duplicates removed", e.duplicates) : "", format_bytes(peak),
               format_bytes(limit.bytes));
    if (list)
      for (const auto& r : e.runs)
        fmt::print("{}  {:<16}  {:>10}  {}\n", r.hash, r.kind, format_bytes(io::run_memory_bytes(r)), io::run_label(r));
  }
  check_experiment_memory(e, file, g);
}

}  // namespace

void run_experiment_file(const std::string& experiment, const std::string& out, bool resume, const GlobalOptions& g) {
  RunArgs a;
  a.experiment = experiment;
  a.out = out;
  a.resume = resume;
  run_experiment(a, g);
}

void add_experiment_commands(CLI::App& app, const GlobalOptions& g) {
  {
    auto a = std::make_shared<RunArgs>();
    auto* cmd = app.add_subcommand("run", "Run an experiment file into an HDF5 results store (MPI-aware)");
    cmd->add_option("experiment", a->experiment, "Experiment file (TOML), e.g. experiments/quickstart.toml")->required();
    cmd->add_option("-o,--out", a->out, "Results file (HDF5), created or appended to")->required();
    cmd->add_flag("--resume", a->resume, "Skip runs already complete in the results file");
    cmd->add_flag("--json", a->json, "Print the summary as JSON (no progress bar)");
    cmd->add_option("--commit-interval", a->commit_interval,
                    "Publish finished runs at most every SECONDS (default 1; 0: after every run)")
        ->check(CLI::NonNegativeNumber);
    cmd->callback([a, &g] { run_experiment(*a, g); });
  }
  {
    auto file = std::make_shared<std::string>();
    auto list = std::make_shared<bool>(false), as_json = std::make_shared<bool>(false);
    // `check EXPERIMENT` validates an experiment; `check quantize|transpose|...` (cmd_check.cpp) checks a kernel.
    auto* cmd = app.add_subcommand("check", "Validate an experiment file without running it: run count, and the largest "
                                            "run's memory estimate against the limit. check quantize|transpose|"
                                            "dequantize|convert|gemm: does a kernel match?");
    cmd->add_option("experiment", *file, "Experiment file (TOML)");
    cmd->add_flag("--list", *list, "Also list every resolved run (hash, kind, memory estimate, key parameters)");
    cmd->add_flag("--json", *as_json, "Print JSON");
    cmd->callback([cmd, file, list, as_json, &g] {
      if (!cmd->get_subcommands().empty()) return;  // a kernel check ran
      if (file->empty())
        throw CLI::RequiredError("check: an experiment file, or one of quantize, transpose, dequantize, convert, gemm");
      check_experiment(*file, *list, *as_json, g);
    });
  }
  {
    auto file = std::make_shared<std::string>();
    auto as_json = std::make_shared<bool>(false);
    auto* cmd = app.add_subcommand("ls", "List the runs in a results file (and its damaged run groups)");
    cmd->add_option("results", *file, "Results file (HDF5)")->required();
    cmd->add_flag("--json", *as_json, "Print JSON: runs (hash, kind, label, summary, params) and damaged groups");
    cmd->callback([file, as_json] { list_runs(*file, *as_json); });
  }
  {
    auto file = std::make_shared<std::string>(), id = std::make_shared<std::string>();
    auto as_json = std::make_shared<bool>(false);
    auto* cmd = app.add_subcommand("show", "Show one run of a results file");
    cmd->add_option("results", *file, "Results file (HDF5)")->required();
    cmd->add_option("run", *id, "Run hash or a unique prefix of it")->required();
    cmd->add_flag("--json", *as_json, "Print JSON (non-finite numbers as null)");
    cmd->callback([file, id, as_json] { show_run(*file, *id, *as_json); });
  }
  {
    auto file = std::make_shared<std::string>(), dir = std::make_shared<std::string>();
    auto as_json = std::make_shared<bool>(false);
    auto* cmd = app.add_subcommand("export", "Export a results file's tables as CSV (one file per table)");
    cmd->add_option("results", *file, "Results file (HDF5)")->required();
    cmd->add_option("--csv", *dir, "Output directory (created if missing)")->required();
    cmd->add_flag("--json", *as_json, "Print what was written as JSON");
    cmd->callback([file, dir, as_json] { export_csv(*file, *dir, *as_json); });
  }
}

void add_fsck_command(CLI::App& app, const GlobalOptions&) {
  {
    auto file = std::make_shared<std::string>();
    auto drop = std::make_shared<bool>(false), as_json = std::make_shared<bool>(false);
    auto* cmd = app.add_subcommand("fsck", "Check a results store: list damaged or incomplete run groups (exit 1 if "
                                           "any), --drop removes them");
    cmd->add_option("results", *file, "Results file (HDF5)")->required();
    cmd->add_flag("--drop", *drop, "Rewrite the store without its damaged run groups (atomically, under the lock)");
    cmd->add_flag("--json", *as_json, "Print JSON");
    cmd->callback([file, drop, as_json] { fsck(*file, *drop, *as_json); });
  }
}

}  // namespace fp8flow::cli
