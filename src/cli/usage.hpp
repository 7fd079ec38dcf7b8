// Exit 2 for every misuse of the command line (docs/cli.md, "Exit status"): an invalid choice or malformed
// option value is refused while CLI11 parses (`choice`), and a command's option-checking phase runs under
// `as_usage`, which turns the library's InputError / std::invalid_argument about an option value into a
// UsageError. Files and their contents stay InputError (exit 1).
#pragma once

#include <CLI/CLI.hpp>
#include <exception>
#include <stdexcept>
#include <string>
#include <utility>

#include "io/errors.hpp"

namespace fp8flow::cli {

// A CLI11 validator from a parse function (parse(std::string) throws on an invalid value). CLI11 reports
// the failure as "--option: <message>" and main() exits 2.
template <class Parse>
CLI::Validator choice(Parse parse, std::string name = "") {
  return CLI::Validator(
      [parse](std::string& s) -> std::string {
        try {
          (void)parse(s);
          return {};
        } catch (const std::exception& e) {
          return e.what();
        }
      },
      std::move(name));
}

// Thrown after a command has printed its own report, to exit with `code` and no further message
// (fsck finding damaged runs exits 1).
struct ExitCode {
  int code;
};

// Runs the option checks `f` and reports their failures as usage errors (exit 2).
template <class F>
decltype(auto) as_usage(F&& f) {
  try {
    return std::forward<F>(f)();
  } catch (const InputError& e) {
    throw UsageError(e.what());
  } catch (const std::invalid_argument& e) {
    throw UsageError(e.what());
  }
}

// Refuses negative values of unsigned options (CLI11 would wrap -1 to 2^64-1) and gives --threads its
// range: walks every option of `app` and its subcommands (call after all commands are registered).
void harden_options(CLI::App& app);

// The largest --threads / OMP_NUM_THREADS accepted: 4 per core, at least 64, at most 1024.
int max_threads();

}  // namespace fp8flow::cli
