// libFuzzer target: the TOML experiment parser (io/experiment.hpp). Any text either resolves into runs
// whose hashes and labels can be computed, or throws InputError "file:line:column: ...".
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "io/errors.hpp"
#include "io/experiment.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace fp8flow;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    const io::Experiment e = io::parse_experiment(text, "fuzz.toml");
    for (const auto& r : e.runs) {
      if (r.hash != io::run_hash(r.kind, r.params)) std::abort();
      (void)io::run_label(r);
    }
  } catch (const InputError& e) {
    if (!std::string_view(e.what()).starts_with("fuzz.toml")) std::abort();  // every message names the file
  }
  return 0;
}
