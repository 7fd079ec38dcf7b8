// Temporary registrations for the quantization commands (issue 5); replaced by cmd_quantize.cpp etc.
#include "cli/commands.hpp"
#include "io/errors.hpp"

namespace fp8flow::cli {
void add_quantize_command(CLI::App& app, const GlobalOptions&) {
  app.add_subcommand("quantize", "(not built yet)")->callback([] { throw InputError("quantize: not built yet"); });
}
void add_dequantize_command(CLI::App& app, const GlobalOptions&) {
  app.add_subcommand("dequantize", "(not built yet)")->callback([] { throw InputError("dequantize: not built yet"); });
}
void add_transpose_command(CLI::App& app, const GlobalOptions&) {
  app.add_subcommand("transpose", "(not built yet)")->callback([] { throw InputError("transpose: not built yet"); });
}
void add_transpose_study_command(CLI::App& app, const GlobalOptions&) {
  app.add_subcommand("transpose-study", "(not built yet)")
      ->callback([] { throw InputError("transpose-study: not built yet"); });
}
}  // namespace fp8flow::cli
