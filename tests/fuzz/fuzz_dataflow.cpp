// libFuzzer target: user dataflow files (reference/dataflow.hpp, parse_dataflow_toml). Any text either
// gives a dataflow that passes check_dataflow and survives to_toml -> parse unchanged, or throws an
// InputError that starts with "fuzz.toml" (file:line).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "io/errors.hpp"
#include "reference/dataflow.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace fp8flow;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  Dataflow df;
  try {
    df = parse_dataflow_toml(text, "fuzz.toml");
  } catch (const InputError& e) {
    if (!std::string_view(e.what()).starts_with("fuzz.toml")) std::abort();
    return 0;
  }
  (void)count_casts(df);
  const Dataflow again = parse_dataflow_toml(to_toml(df), "roundtrip.toml");
  if (again.steps.size() != df.steps.size() || again.name != df.name) std::abort();
  return 0;
}
