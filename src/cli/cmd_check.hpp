// fp8flow check quantize|transpose|dequantize|convert|gemm (cmd_check.cpp): does a kernel match?
#pragma once

#include "cli/commands.hpp"

namespace fp8flow::cli {

// Adds the kernel checks under run's `check` (cmd_run.cpp; call after add_experiment_commands).
void add_check_command(CLI::App& app, const GlobalOptions& g);
// Thrown by a kernel check whose outputs differ, after the report is printed: main exits 1, printing nothing more.
struct CheckFailed {};

}  // namespace fp8flow::cli
