#include "cli/limits.hpp"

#include <fmt/format.h>
#include <omp.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <sstream>
#include <thread>

#include "cli/commands.hpp"
#include "cli/usage.hpp"
#include "io/errors.hpp"
#include "io/npy.hpp"

namespace fp8flow::cli {

int max_threads() {
  const int cores = std::max(1, int(std::thread::hardware_concurrency()));
  return std::clamp(4 * cores, 64, 1024);
}

namespace {

// A whole decimal integer (no sign, no spaces); nullopt otherwise or when it does not fit.
std::optional<long long> whole_number(std::string_view s) {
  long long v = 0;
  const auto r = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || r.ec != std::errc{} || r.ptr != s.data() + s.size()) return std::nullopt;
  return v;
}

CLI::Validator threads_validator() {
  return CLI::Validator(
      [](std::string& s) -> std::string {
        const auto v = whole_number(s);
        if (!v || *v < 0 || *v > max_threads())
          return fmt::format("{}: expected a whole number of threads in 0..{} (0: all cores; this machine has {})", s,
                             max_threads(), std::max(1u, std::thread::hardware_concurrency()));
        return {};
      },
      "0.." + std::to_string(max_threads()));
}

CLI::Validator non_negative_validator() {
  return CLI::Validator(
      [](std::string& s) -> std::string {
        std::string_view t(s);
        while (!t.empty() && (t.front() == ' ' || t.front() == '\t')) t.remove_prefix(1);
        if (!t.empty() && t.front() == '-')
          return fmt::format("{}: expected a non-negative integer (0..{})", s, UINT64_MAX);
        return {};
      },
      "");
}

// An empty file name (`-o ""`) or choice is a usage error here, not a filesystem error later.
CLI::Validator non_empty_validator() {
  return CLI::Validator([](std::string& s) -> std::string { return s.empty() ? "expected a non-empty value" : ""; }, "");
}

std::uint64_t read_u64_file(const char* path, bool& ok) {
  std::ifstream in(path);
  std::string s;
  ok = static_cast<bool>(in >> s);
  if (!ok || s == "max") return ok = false, 0;
  std::uint64_t v = 0;
  const auto r = std::from_chars(s.data(), s.data() + s.size(), v);
  ok = r.ec == std::errc{};
  return v;
}

}  // namespace

void harden_options(CLI::App& app) {
  std::function<void(CLI::App&)> walk = [&](CLI::App& a) {
    for (CLI::Option* o : a.get_options()) {
      if (o->get_name() == "--threads") {
        o->check(threads_validator());
        continue;
      }
      if (o->get_type_name() == "UINT") o->check(non_negative_validator());
      if (o->get_type_name() == "TEXT") o->check(non_empty_validator());
    }
    for (CLI::App* sub : a.get_subcommands([](CLI::App*) { return true; })) walk(*sub);
  };
  walk(app);
}

std::optional<std::uint64_t> parse_memory_size(std::string_view s) {
  if (s == "unlimited" || s == "none") return UINT64_MAX;
  std::size_t i = 0;
  while (i < s.size() && (std::isdigit(static_cast<unsigned char>(s[i])) || s[i] == '.')) ++i;
  if (i == 0) return std::nullopt;
  double v = 0;
  try {
    std::size_t used = 0;
    v = std::stod(std::string(s.substr(0, i)), &used);
    if (used != i) return std::nullopt;
  } catch (const std::exception&) {
    return std::nullopt;
  }
  std::string unit(s.substr(i));
  for (char& c : unit) c = char(std::toupper(static_cast<unsigned char>(c)));
  double mul = 1;
  if (unit.empty() || unit == "B") mul = 1;
  else if (unit == "K" || unit == "KB" || unit == "KIB") mul = 1024.0;
  else if (unit == "M" || unit == "MB" || unit == "MIB") mul = 1024.0 * 1024;
  else if (unit == "G" || unit == "GB" || unit == "GIB") mul = 1024.0 * 1024 * 1024;
  else if (unit == "T" || unit == "TB" || unit == "TIB") mul = 1024.0 * 1024 * 1024 * 1024;
  else return std::nullopt;
  const double bytes = v * mul;
  if (!std::isfinite(bytes) || bytes >= 1.8e19) return std::nullopt;
  return static_cast<std::uint64_t>(bytes);
}

std::string format_bytes(std::uint64_t b) {
  if (b == UINT64_MAX) return "unlimited";
  const double d = double(b);
  if (d >= 1024.0 * 1024 * 1024 * 1024) return fmt::format("{:.1f} TiB", d / (1024.0 * 1024 * 1024 * 1024));
  if (d >= 1024.0 * 1024 * 1024) return fmt::format("{:.1f} GiB", d / (1024.0 * 1024 * 1024));
  if (d >= 1024.0 * 1024) return fmt::format("{:.1f} MiB", d / (1024.0 * 1024));
  if (d >= 1024.0) return fmt::format("{:.1f} KiB", d / 1024.0);
  return fmt::format("{} B", b);
}

MemoryLimit memory_limit(const GlobalOptions& g) {
  if (!g.max_memory.empty()) {
    const auto v = parse_memory_size(g.max_memory);
    if (!v) throw UsageError(fmt::format("--max-memory {}: expected a size like 8G, 512M or unlimited", g.max_memory));
    return {*v, "--max-memory"};
  }
  if (const char* env = std::getenv("FP8FLOW_MAX_MEMORY"); env && *env) {
    const auto v = parse_memory_size(env);
    if (!v) throw UsageError(fmt::format("FP8FLOW_MAX_MEMORY={}: expected a size like 8G, 512M or unlimited", env));
    return {*v, "FP8FLOW_MAX_MEMORY"};
  }
  MemoryLimit m{UINT64_MAX, "MemAvailable in /proc/meminfo"};
  std::ifstream meminfo("/proc/meminfo");
  for (std::string line; std::getline(meminfo, line);)
    if (line.starts_with("MemAvailable:")) {
      std::istringstream ls(line.substr(13));
      std::uint64_t kib = 0;
      if (ls >> kib) m.bytes = kib * 1024;
    }
  bool ok_max = false, ok_cur = false;
  const std::uint64_t cg_max = read_u64_file("/sys/fs/cgroup/memory.max", ok_max);
  const std::uint64_t cg_cur = read_u64_file("/sys/fs/cgroup/memory.current", ok_cur);
  if (ok_max && ok_cur) {
    const std::uint64_t cg_free = cg_max > cg_cur ? cg_max - cg_cur : 0;
    if (cg_free < m.bytes) m = {cg_free, "the cgroup's memory.max minus memory.current"};
  }
  return m;
}

void check_memory(const GlobalOptions& g, std::string_view what, std::uint64_t estimate) {
  const MemoryLimit m = memory_limit(g);
  if (estimate <= m.bytes) return;
  throw InputError(fmt::format("{} needs about {} of memory (estimate), more than the {} available ({}); use a "
                               "smaller shape, or --max-memory SIZE / FP8FLOW_MAX_MEMORY to set the limit",
                               what, format_bytes(estimate), format_bytes(m.bytes), m.source));
}

std::uint64_t npy_elements(const std::string& file) {
  try {
    const io::NpyArray a = io::peek_npy(file);
    std::uint64_t n = 1;
    for (std::size_t d : a.shape) n = d && n > (std::uint64_t(1) << 56) / d ? std::uint64_t(1) << 56 : n * d;
    return n;  // at most 2^56, so estimates of tens of bytes per element cannot overflow
  } catch (const std::exception&) {
    return 0;
  }
}

void check_environment() {
  if (const char* env = std::getenv("OMP_NUM_THREADS"); env && *env) {
    // libgomp takes a list ("4,2" for nested levels); each entry must be a sane count.
    std::string_view s(env);
    while (!s.empty()) {
      const std::size_t comma = s.find(',');
      const std::string_view part = s.substr(0, comma);
      const auto v = whole_number(part);
      if (!v || *v < 1 || *v > max_threads())
        throw UsageError(fmt::format("OMP_NUM_THREADS={}: expected thread counts in 1..{} (this machine has {} cores)",
                                     env, max_threads(), std::max(1u, std::thread::hardware_concurrency())));
      if (comma == std::string_view::npos) break;
      s.remove_prefix(comma + 1);
    }
  }
  if (const char* env = std::getenv("FP8FLOW_MAX_MEMORY"); env && *env && !parse_memory_size(env))
    throw UsageError(fmt::format("FP8FLOW_MAX_MEMORY={}: expected a size like 8G, 512M or unlimited", env));
}

}  // namespace fp8flow::cli
