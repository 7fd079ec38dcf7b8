// Error types that cross the library/CLI boundary. Library code throws; only main() maps to exit codes:
// InputError (bad file, field or value) -> exit 1; CLI usage errors -> exit 2.
#pragma once

#include <stdexcept>
#include <string>

namespace fp8flow {

// Bad input: a file, field or value that cannot be used. The message names it and what was expected.
struct InputError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

}  // namespace fp8flow
