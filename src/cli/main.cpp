// fp8flow: numerical-analysis lab and golden reference for FP8 training.
// Exit status: 0 success, 1 bad input (file, field or value), 2 usage error.
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <exception>
#include <new>

#include "cli/cmd_check.hpp"
#include "cli/commands.hpp"
#include "cli/limits.hpp"
#include "cli/usage.hpp"
#include "io/errors.hpp"
#include "version.hpp"

int main(int argc, char** argv) {
  using namespace fp8flow;
  CLI::App app{"fp8flow: bit-exact FP8 emulation, error-propagation studies and GPU validation", "fp8flow"};
  app.set_version_flag("--version", fmt::format("fp8flow {} ({})", kVersion, kGitCommit));
  app.require_subcommand(1);
  cli::GlobalOptions g;
  app.add_flag("-q,--quiet", g.quiet, "No progress output");
  app.add_option("--threads", g.threads,
                 fmt::format("Worker threads, 0..{} (0: all cores; OMP_NUM_THREADS is checked alike)", cli::max_threads()));
  app.add_option("--max-memory", g.max_memory,
                 "Memory a command may plan to use: 8G, 512M, unlimited (default: FP8FLOW_MAX_MEMORY, else what the "
                 "system has available); commands refuse estimates above it before starting");
  app.fallthrough();

  cli::add_formats_command(app, g);
  cli::add_inspect_command(app, g);
  cli::add_convert_command(app, g);
  cli::add_quickstart_command(app, g);
  cli::add_quantize_command(app, g);
  cli::add_dequantize_command(app, g);
  cli::add_transpose_command(app, g);
  cli::add_transpose_study_command(app, g);
  cli::add_gemm_command(app, g);
  cli::add_gemm_probes_command(app, g);
  cli::add_gemm_algos_command(app, g);
  cli::add_moe_command(app, g);
  cli::add_validate_command(app, g);
  cli::add_train_command(app, g);
  cli::add_experiment_commands(app, g);
  cli::add_check_command(app, g);
  cli::add_report_command(app, g);
  cli::add_fsck_command(app, g);
  cli::harden_options(app);

  try {
    cli::check_environment();
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    // "A subcommand is required" for `fp8flow bogus`: name the word that is not a subcommand.
    if (app.get_subcommands().empty())
      for (int i = 1; i < argc; ++i) {
        const std::string w = argv[i];
        if (w.starts_with("-")) {
          if (w == "--threads" || w == "--max-memory") ++i;  // their value
          continue;
        }
        fmt::print(stderr, "fp8flow: error: unknown subcommand '{}' (see fp8flow --help)\n", w);
        return 2;
      }
    app.exit(e);
    return 2;
  } catch (const cli::CheckFailed&) {
    return 1;  // the report said why
  } catch (const cli::ExitCode& e) {
    return e.code;
  } catch (const UsageError& e) {
    fmt::print(stderr, "fp8flow: error: {}\nRun with --help for more information.\n", e.what());
    return 2;
  } catch (const InputError& e) {
    fmt::print(stderr, "fp8flow: error: {}\n", e.what());
    return 1;
  } catch (const std::bad_alloc&) {
    fmt::print(stderr, "fp8flow: error: out of memory (the command's estimate missed this; lower the shape or "
                       "--threads, or report it)\n");
    return 1;
  } catch (const std::invalid_argument& e) {
    fmt::print(stderr, "fp8flow: error: {}\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    fmt::print(stderr, "fp8flow: error: {}\n", e.what());
    return 1;
  }
  return 0;
}
