// Resource limits of one fp8flow process (docs/cli.md, "Threads and memory"): the thread count and the
// memory a command may plan to use. Checked before any work starts, so an impossible request fails in
// milliseconds with a message naming the option, the estimate and the limit instead of a libgomp abort or
// std::bad_alloc minutes later.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace fp8flow::cli {

struct GlobalOptions;

// "8G", "512M", "1.5GiB", "123456" (bytes), "unlimited" (no check). nullopt for malformed text.
std::optional<std::uint64_t> parse_memory_size(std::string_view s);  // unlimited -> UINT64_MAX
std::string format_bytes(std::uint64_t bytes);  // "1.2 GiB"

// The memory a command may plan to use: --max-memory, else FP8FLOW_MAX_MEMORY, else what the system has
// available now (MemAvailable of /proc/meminfo, lowered to the cgroup's memory.max minus its usage).
// `source` says which, for messages.
struct MemoryLimit {
  std::uint64_t bytes = UINT64_MAX;
  std::string source;
};
MemoryLimit memory_limit(const GlobalOptions& g);

// Throws InputError "WHAT needs about X (estimate), more than the Y available (source); ... --max-memory"
// when `estimate` exceeds the limit. Wrap in as_usage() when the size came from command-line options.
void check_memory(const GlobalOptions& g, std::string_view what, std::uint64_t estimate);

// Elements of the .npy file's array from its header (0 when it cannot be read: the command's reader then
// reports the problem) -- for estimates of commands that read tensors.
std::uint64_t npy_elements(const std::string& file);

// Checks OMP_NUM_THREADS and FP8FLOW_MAX_MEMORY (usage errors naming the variable).
void check_environment();

}  // namespace fp8flow::cli
