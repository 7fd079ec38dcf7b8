// Temporary registrations for commands whose implementation lands in later slices of issue 4.
// Each prints that it is not built yet and exits 1; replaced file by file.
#include <fmt/format.h>

#include "cli/commands.hpp"
#include "io/errors.hpp"

namespace fp8flow::cli {
void add_inspect_command(CLI::App& app, const GlobalOptions&) {
  app.add_subcommand("inspect", "(not built yet)")->callback([] { throw InputError("inspect: not built yet"); });
}
void add_convert_command(CLI::App& app, const GlobalOptions&) {
  app.add_subcommand("convert", "(not built yet)")->callback([] { throw InputError("convert: not built yet"); });
}
void add_quickstart_command(CLI::App& app, const GlobalOptions&) {
  app.add_subcommand("quickstart", "(not built yet)")->callback([] { throw InputError("quickstart: not built yet"); });
}
}  // namespace fp8flow::cli
