// Write a file so that readers see either the old content or the complete new one, never a half-written
// file: write to a temporary in the same directory, close it, then rename over the destination (atomic
// replace on one POSIX filesystem). A throw from `write` or a failed close/rename removes the temporary
// and leaves an existing destination untouched.
//
// The destination is first resolved (resolve_output): a symlink is followed, so the link stays and its
// target gets the new content; an existing file keeps its permission bits; a read-only file (no owner write
// bit) or a directory is refused with a message naming it; a dangling link gets its target created; a
// character device or FIFO (/dev/null, /dev/stdout) is written in place (no temporary, no rename).
#pragma once

#include <unistd.h>

#include <filesystem>
#include <functional>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "io/errors.hpp"

namespace fp8flow::io {

// The temporary sits beside dst (same filesystem, so rename is atomic); the pid keeps two concurrent
// writers of one path from sharing it.
inline std::filesystem::path partial_path(const std::filesystem::path& dst) {
  return std::filesystem::path(dst) += ".partial-" + std::to_string(::getpid());
}

struct OutputTarget {
  std::filesystem::path path;  // where the bytes go: dst, or the file a symlink dst points to
  bool exists = false;         // a regular file is there now (its permissions are kept)
  bool special = false;        // a character device or FIFO: written in place
  std::filesystem::perms perms = std::filesystem::perms::none;
};
// Throws InputError naming dst (and the link target) for an empty path, a directory, a read-only file, or
// (allow_special false) anything but a regular file.
OutputTarget resolve_output(const std::filesystem::path& dst, bool allow_special = true);

// `write(tmp)` must create and close tmp, throwing on any error.
template <class Write>
void write_atomically(const std::filesystem::path& dst, Write&& write) {
  namespace fs = std::filesystem;
  const OutputTarget t = resolve_output(dst);
  if (t.special) {
    std::forward<Write>(write)(t.path);
    return;
  }
  const fs::path tmp = partial_path(t.path);
  try {
    std::forward<Write>(write)(tmp);
    std::error_code ec;
    if (t.exists) fs::permissions(tmp, t.perms, ec);
    fs::rename(tmp, t.path, ec);
    if (ec) throw InputError(dst.string() + ": cannot rename " + tmp.string() + " into place: " + ec.message());
  } catch (...) {
    std::error_code ignored;
    fs::remove(tmp, ignored);
    throw;
  }
}

// All or nothing for several files (quantize's codes, scales and metadata): every file is written to its
// temporary first; only when all are complete are they renamed into place, and if a rename fails the files
// already replaced get their previous content back (kept as hard links until the end). A failure leaves
// the old set (or no files) -- never a mix of old and new.
struct FileWrite {
  std::filesystem::path dst;
  std::function<void(const std::filesystem::path&)> write;
};
void write_all_atomically(const std::vector<FileWrite>& files);

// Writes `bytes` to exactly `file` (a temporary of the functions above), closing it; throws InputError
// naming `shown` (the destination the user asked for) on failure.
void write_bytes(const std::filesystem::path& file, const void* bytes, std::size_t size, const std::string& shown);

}  // namespace fp8flow::io
