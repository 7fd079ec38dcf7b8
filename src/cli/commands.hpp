// Each subcommand lives in its own cmd_*.cpp and registers itself on the app here.
#pragma once

#include <CLI/CLI.hpp>

namespace fp8flow::cli {

// Options every command can read (set on the top-level app).
struct GlobalOptions {
  bool quiet = false;
  int threads = 0;  // 0: all cores
};

void add_formats_command(CLI::App& app, const GlobalOptions& g);
void add_inspect_command(CLI::App& app, const GlobalOptions& g);
void add_convert_command(CLI::App& app, const GlobalOptions& g);
void add_quickstart_command(CLI::App& app, const GlobalOptions& g);
void add_quantize_command(CLI::App& app, const GlobalOptions& g);
void add_dequantize_command(CLI::App& app, const GlobalOptions& g);
void add_transpose_command(CLI::App& app, const GlobalOptions& g);
void add_transpose_study_command(CLI::App& app, const GlobalOptions& g);

}  // namespace fp8flow::cli
