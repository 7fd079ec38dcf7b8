// Runs the built fp8flow binary from a C++ test: exit status and stdout+stderr together.
#pragma once
#include <fmt/format.h>
#include <sys/wait.h>

#include <cstdio>
#include <string>

namespace fp8flow::test {

struct CliRun {
  int status;
  std::string output;
};

// `args` is appended to `fp8flow -q` as shell words (quote paths yourself).
inline CliRun fp8flow_cli(const std::string& args) {
  const std::string cmd = fmt::format("'{}/fp8flow' -q {} 2>&1", FP8FLOW_BINARY_DIR, args);
  FILE* p = popen(cmd.c_str(), "r");
  std::string out;
  char buf[4096];
  while (std::size_t n = std::fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  const int st = pclose(p);
  return {WIFEXITED(st) ? WEXITSTATUS(st) : -1, out};
}

}  // namespace fp8flow::test
