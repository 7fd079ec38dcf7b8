// Write a file so that readers see either the old content or the complete new one, never a half-written
// file: write to a temporary in the same directory, close it, then rename over the destination (atomic
// replace on one POSIX filesystem). A throw from `write` or a failed close/rename removes the temporary
// and leaves an existing destination untouched.
#pragma once

#include <unistd.h>

#include <filesystem>
#include <string>
#include <system_error>
#include <utility>

#include "io/errors.hpp"

namespace fp8flow::io {

// The temporary sits beside dst (same filesystem, so rename is atomic); the pid keeps two concurrent
// writers of one path from sharing it.
inline std::filesystem::path partial_path(const std::filesystem::path& dst) {
  return std::filesystem::path(dst) += ".partial-" + std::to_string(::getpid());
}

// `write(tmp)` must create and close tmp, throwing on any error.
template <class Write>
void write_atomically(const std::filesystem::path& dst, Write&& write) {
  namespace fs = std::filesystem;
  const fs::path tmp = partial_path(dst);
  try {
    std::forward<Write>(write)(tmp);
    std::error_code ec;
    fs::rename(tmp, dst, ec);
    if (ec) throw InputError(dst.string() + ": cannot rename " + tmp.string() + " into place: " + ec.message());
  } catch (...) {
    std::error_code ignored;
    fs::remove(tmp, ignored);
    throw;
  }
}

}  // namespace fp8flow::io
