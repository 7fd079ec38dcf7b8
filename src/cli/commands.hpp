// Each subcommand lives in its own cmd_*.cpp and registers itself on the app here.
#pragma once

#include <CLI/CLI.hpp>

#include <vector>

#include "io/experiment.hpp"
#include "io/results_store.hpp"
#include "report/risk.hpp"

namespace fp8flow::cli {

// Options every command can read (set on the top-level app).
struct GlobalOptions {
  bool quiet = false;
  int threads = 0;  // 0: all cores (validated: 0..max_threads(), cli/limits.hpp)
  std::string max_memory;  // --max-memory SIZE (empty: FP8FLOW_MAX_MEMORY, else the memory available)
};

void add_formats_command(CLI::App& app, const GlobalOptions& g);
void add_inspect_command(CLI::App& app, const GlobalOptions& g);
void add_convert_command(CLI::App& app, const GlobalOptions& g);
void add_quickstart_command(CLI::App& app, const GlobalOptions& g);
void add_quantize_command(CLI::App& app, const GlobalOptions& g);
void add_dequantize_command(CLI::App& app, const GlobalOptions& g);
void add_transpose_command(CLI::App& app, const GlobalOptions& g);
void add_transpose_study_command(CLI::App& app, const GlobalOptions& g);
void add_gemm_command(CLI::App& app, const GlobalOptions& g);
void add_gemm_probes_command(CLI::App& app, const GlobalOptions& g);  // gemm-probes (cmd_gemm_probes.cpp)
void add_gemm_algos_command(CLI::App& app, const GlobalOptions& g);   // gemm-algos (cmd_gemm_algos.cpp)
void add_moe_command(CLI::App& app, const GlobalOptions& g);  // moe, dataflows
void add_validate_command(CLI::App& app, const GlobalOptions& g);  // validate --gpu (cmd_validate.cpp)
void add_train_command(CLI::App& app, const GlobalOptions& g);  // train (cmd_train.cpp)
// run, check, ls, show, export (cmd_run.cpp)
void add_experiment_commands(CLI::App& app, const GlobalOptions& g);
// `fp8flow run EXPERIMENT -o OUT [--resume]` as a function (for `fp8flow quickstart`); MPI-aware like run.
void run_experiment_file(const std::string& experiment, const std::string& out, bool resume, const GlobalOptions& g);
// Runs e.runs[todo[i]] on `workers` threads, one run per thread (single-threaded inside), committing the records
// to `writer` in order; the runs that finished are committed even when one throws (cmd_train.cpp). Used by
// `fp8flow train` and by `fp8flow run` for train runs, so that seeds run in parallel.
void run_pool(const io::Experiment& e, const std::vector<std::size_t>& todo, io::ResultsWriter& writer, int workers,
              bool quiet);
void add_report_command(CLI::App& app, const GlobalOptions& g);  // report (cmd_report.cpp)
void add_fsck_command(CLI::App& app, const GlobalOptions& g);    // fsck (cmd_run.cpp)
// The HTML convergence-risk report of `results` into `out` (for `fp8flow quickstart`); prints verdicts unless
// quiet and returns the assessment.
report::Assessment write_report(const std::string& results, const std::string& out, bool quiet);
// `fp8flow report --fail-on LEVEL`: the exit status when a verdict is at LEVEL or worse (1: bad input, 2: usage).
inline constexpr int kExitVerdict = 3;

}  // namespace fp8flow::cli
