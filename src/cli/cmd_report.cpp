// fp8flow report RESULTS.h5 [-o report.html] [--json] [--fail-on warn|inconclusive|fail]: the
// convergence-risk report (issue 9); --fail-on (issue 23) makes the exit status 3 when any dataflow's verdict
// is at that level or worse (order: pass < warn < inconclusive < fail), so that CI can gate on it.
//
// The rules (src/report/risk.cpp, docs/risk.md) run here in C++, so `--json` needs nothing else. The HTML
// page is drawn by src/report/render_report.py with matplotlib from the project's venv: this command hands
// it one JSON file with the assessment and every run's tables, and renames the page it writes into place
// (io/write_atomically), so a failed render never leaves a half-written report.
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli/commands.hpp"
#include "io/atomic_write.hpp"
#include "io/errors.hpp"
#include "io/results_store.hpp"
#include "report/risk.hpp"
#include "version.hpp"

#ifndef FP8FLOW_SOURCE_DIR
#error "FP8FLOW_SOURCE_DIR must be defined (CMakeLists.txt) to find src/report/render_report.py and .venv"
#endif

namespace fp8flow::cli {
namespace {

namespace fs = std::filesystem;

// The interpreter: $FP8FLOW_PYTHON, else the project's venv (scripts/setup creates it).
fs::path report_python() {
  if (const char* env = std::getenv("FP8FLOW_PYTHON"); env && *env) {
    if (::access(env, X_OK) != 0)
      throw InputError(fmt::format("FP8FLOW_PYTHON={}: not an executable ({}); unset it to use {}/.venv/bin/python",
                                   env, std::strerror(errno), FP8FLOW_SOURCE_DIR));
    return env;
  }
  const fs::path venv = fs::path(FP8FLOW_SOURCE_DIR) / ".venv" / "bin" / "python";
  if (::access(venv.c_str(), X_OK) != 0)
    throw InputError(fmt::format("the HTML report needs the project's Python venv with matplotlib, and {} is missing: "
                                 "run scripts/setup (or set FP8FLOW_PYTHON); `fp8flow report FILE --json` works "
                                 "without Python",
                                 venv.string()));
  return venv;
}

// Runs argv[0] with argv (no shell); throws InputError when it cannot start or exits non-zero.
void run_process(const std::vector<std::string>& argv) {
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  std::fflush(stdout);
  const pid_t pid = ::fork();
  if (pid < 0) throw InputError(fmt::format("cannot start {}: {}", argv[0], std::strerror(errno)));
  if (pid == 0) {
    ::execv(args[0], args.data());
    std::fprintf(stderr, "fp8flow: error: cannot run %s: %s\n", args[0], std::strerror(errno));
    ::_exit(127);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) throw InputError(fmt::format("waiting for {}: {}", argv[0], std::strerror(errno)));
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    throw InputError(fmt::format("{} {} failed ({}); see its message above", argv[0], argv[1],
                                 WIFEXITED(status) ? fmt::format("exit status {}", WEXITSTATUS(status))
                                                   : fmt::format("signal {}", WTERMSIG(status))));
}

}  // namespace

// Writes the HTML report of `results` to `out` and (unless quiet) prints the verdict of each dataflow. Used by
// `fp8flow report` and `fp8flow quickstart` (declared in commands.hpp).
report::Assessment write_report(const std::string& results, const std::string& out, bool quiet) {
  std::vector<io::RunRecord> runs;
  const report::Assessment a = report::assess_file(results, &runs);
  const fs::path python = report_python();
  const fs::path script = fs::path(FP8FLOW_SOURCE_DIR) / "src" / "report" / "render_report.py";
  if (!fs::exists(script)) throw InputError(fmt::format("{}: the report renderer is missing", script.string()));

  nlohmann::json payload{{"file", fs::absolute(results).lexically_normal().string()},
                         {"generated", io::iso8601_utc_now()},
                         {"fp8flow_version", kVersion},
                         {"git_commit", kGitCommit},
                         {"assessment", report::to_json(a)},
                         {"runs", nlohmann::json::array()}};
  for (const auto& r : runs) payload["runs"].push_back(io::to_json(r));

  const fs::path dst(out);
  if (dst.has_parent_path()) {
    std::error_code ec;
    fs::create_directories(dst.parent_path(), ec);
    if (ec) throw InputError(fmt::format("{}: cannot create directory: {}", dst.parent_path().string(), ec.message()));
  }
  const fs::path data = fs::path(dst) += fmt::format(".data-{}.json", ::getpid());
  struct Remove {
    fs::path p;
    ~Remove() {
      std::error_code ec;
      fs::remove(p, ec);
    }
  } cleanup{data};
  {
    std::ofstream f(data);
    f << payload.dump();
    f.close();
    if (!f) throw InputError(fmt::format("{}: cannot write the report's data file", data.string()));
  }
  io::write_atomically(dst, [&](const fs::path& tmp) {
    std::vector<std::string> argv{python.string(), script.string(), "--data", data.string(), "--out", tmp.string()};
    if (quiet) argv.push_back("--quiet");
    run_process(argv);
    if (!fs::exists(tmp)) throw InputError(fmt::format("{} wrote no {}", script.string(), tmp.string()));
  });
  if (!quiet)
    for (const auto& df : a.dataflows) fmt::print("  verdict {:<24} {}\n", df, report::to_string(a.verdicts.at(df)));
  return a;
}

namespace {
// --fail-on: exit 3 (after writing everything) when a verdict is at `level` or worse.
void gate(const report::Assessment& a, const std::string& level) {
  if (level.empty()) return;
  const report::Status bar = report::parse_status(level);
  std::vector<std::string> hit;
  for (const auto& [df, s] : a.verdicts)
    if (s >= bar) hit.push_back(fmt::format("{} {}", df, report::to_string(s)));
  if (hit.empty()) return;
  fmt::print(stderr, "fp8flow report: --fail-on {}: {}\n", level, fmt::join(hit, ", "));
  std::fflush(stdout);
  std::exit(kExitVerdict);
}
}  // namespace

void add_report_command(CLI::App& app, const GlobalOptions& g) {
  struct Args {
    std::string results, out, fail_on;
    bool json = false;
  };
  auto a = std::make_shared<Args>();
  auto* cmd = app.add_subcommand(
      "report",
      "Convergence-risk report of a results store: a verdict per dataflow from the risk rules (docs/risk.md), "
      "as one self-contained HTML page (plots need the Python venv) or as JSON (--json)");
  cmd->add_option("results", a->results, "HDF5 results store (fp8flow run / train / quickstart)")->required();
  cmd->add_option("-o,--out", a->out, "HTML file to write (default: RESULTS with .html; with --json: none)");
  cmd->add_flag("--json", a->json, "Print the verdicts and every rule's result as JSON on stdout (no Python needed)");
  cmd->add_option("--fail-on", a->fail_on,
                  fmt::format("Exit with status {} when any dataflow's verdict is this or worse (pass < warn < "
                              "inconclusive < fail); the report is written first",
                              kExitVerdict))
      ->check(CLI::IsMember({"warn", "inconclusive", "fail"}));
  cmd->callback([a, &g] {
    {  // damaged run groups are skipped by the reader: say so
      const io::ResultsFile f(a->results);
      if (!f.damaged().empty())
        fmt::print(stderr, "fp8flow: warning: {}: skipped {} damaged or incomplete run group{} ({}); `fp8flow fsck {}` "
                           "lists them\n",
                   a->results, f.damaged().size(), f.damaged().size() == 1 ? "" : "s", f.damaged().front().hash,
                   a->results);
    }
    if (a->json) {
      const report::Assessment as = report::assess_file(a->results);
      fmt::print("{}\n", report::to_json(as).dump(2));
      if (!a->out.empty()) write_report(a->results, a->out, true);
      gate(as, a->fail_on);
      return;
    }
    const std::string out = a->out.empty() ? fs::path(a->results).replace_extension(".html").string() : a->out;
    const report::Assessment as = write_report(a->results, out, g.quiet);
    fmt::print("wrote {}\n", out);
    gate(as, a->fail_on);
  });
}

}  // namespace fp8flow::cli
