// fp8flow: numerical-analysis lab and golden reference for FP8 training.
// Exit status: 0 success, 1 bad input (file, field or value), 2 usage error.
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <exception>

#include "cli/cmd_check.hpp"
#include "cli/commands.hpp"
#include "io/errors.hpp"
#include "version.hpp"

int main(int argc, char** argv) {
  using namespace fp8flow;
  CLI::App app{"fp8flow: bit-exact FP8 emulation, error-propagation studies and GPU validation", "fp8flow"};
  app.set_version_flag("--version", fmt::format("fp8flow {} ({})", kVersion, kGitCommit));
  app.require_subcommand(1);
  cli::GlobalOptions g;
  app.add_flag("-q,--quiet", g.quiet, "No progress output");
  app.add_option("--threads", g.threads, "Worker threads (0: all cores)")->check(CLI::NonNegativeNumber);
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
  cli::add_moe_command(app, g);
  cli::add_validate_command(app, g);
  cli::add_train_command(app, g);
  cli::add_experiment_commands(app, g);
  cli::add_check_command(app, g);
  cli::add_report_command(app, g);

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return 2;
  } catch (const cli::CheckFailed&) {
    return 1;  // the report said why
  } catch (const InputError& e) {
    fmt::print(stderr, "fp8flow: error: {}\n", e.what());
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
