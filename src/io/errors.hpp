// Error types that cross the library/CLI boundary. Library code throws; only main() maps to exit codes:
// InputError (bad file, field or value) -> exit 1; UsageError and CLI11's parse errors -> exit 2.
#pragma once

#include <stdexcept>
#include <string>

namespace fp8flow {

// Bad input: a file, field or value that cannot be used. The message names it and what was expected.
struct InputError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Misuse of the command line: an unknown choice, a malformed option value, options that do not go together,
// a resource limit (--threads, --max-memory) exceeded by what was asked. The message names the option.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

}  // namespace fp8flow
