#include "io/atomic_write.hpp"

#include <fmt/format.h>
#include <sys/stat.h>

#include <cstring>
#include <fstream>

namespace fp8flow::io {

namespace fs = std::filesystem;

OutputTarget resolve_output(const fs::path& dst, bool allow_special) {
  if (dst.empty()) throw InputError("empty output path: give a file name");
  OutputTarget t;
  t.path = dst;
  std::error_code ec;
  const fs::file_status link = fs::symlink_status(dst, ec);
  if (link.type() == fs::file_type::symlink) {
    const fs::path target = fs::canonical(dst, ec);
    if (!ec) {
      t.path = target;
    } else {  // a dangling link: its target is created (as a shell's `> link` does)
      fs::path p = dst;
      for (int depth = 0; fs::is_symlink(fs::symlink_status(p, ec)); ++depth) {
        if (depth == 40) throw InputError(fmt::format("{}: too many levels of symbolic links", dst.string()));
        const fs::path next = fs::read_symlink(p, ec);
        if (ec) throw InputError(fmt::format("{}: cannot read the symlink: {}", dst.string(), ec.message()));
        p = next.is_absolute() ? next : p.parent_path() / next;
      }
      t.path = p.lexically_normal();
    }
  }
  struct stat st {};
  if (::stat(t.path.c_str(), &st) != 0) {
    if (errno == ENOENT) return t;  // a new file
    throw InputError(fmt::format("{}: cannot inspect: {}", dst.string(), std::strerror(errno)));
  }
  if (S_ISDIR(st.st_mode)) throw InputError(fmt::format("{}: is a directory, expected a file name", dst.string()));
  if (S_ISCHR(st.st_mode) || S_ISFIFO(st.st_mode)) {
    if (!allow_special)
      throw InputError(fmt::format("{}: not a regular file (a device or pipe); this output must be a file",
                                   dst.string()));
    t.special = true;
    return t;
  }
  if (!S_ISREG(st.st_mode)) throw InputError(fmt::format("{}: not a regular file", dst.string()));
  if ((st.st_mode & S_IWUSR) == 0)
    throw InputError(fmt::format("{}: read-only (mode {:04o}); fp8flow does not replace read-only files: make it "
                                 "writable (chmod u+w) or write elsewhere",
                                 t.path == dst ? dst.string() : dst.string() + " -> " + t.path.string(),
                                 st.st_mode & 07777));
  t.exists = true;
  t.perms = static_cast<fs::perms>(st.st_mode & 07777);
  return t;
}

void write_all_atomically(const std::vector<FileWrite>& files) {
  struct Item {
    OutputTarget t;
    fs::path tmp, backup;
    bool replaced = false, backed_up = false;
  };
  std::vector<Item> items;
  for (const FileWrite& f : files) items.push_back({resolve_output(f.dst), {}, {}});
  auto cleanup = [&] {
    std::error_code ignored;
    for (Item& i : items) {
      if (!i.tmp.empty()) fs::remove(i.tmp, ignored);
      if (i.backed_up) fs::remove(i.backup, ignored);
    }
  };
  try {
    // 1. Every new file complete beside its destination.
    for (std::size_t k = 0; k < items.size(); ++k) {
      Item& i = items[k];
      if (i.t.special) {
        files[k].write(i.t.path);
        continue;
      }
      i.tmp = partial_path(i.t.path);
      files[k].write(i.tmp);
      std::error_code ec;
      if (i.t.exists) fs::permissions(i.tmp, i.t.perms, ec);
    }
    // 2. Keep the old files reachable (hard links), then rename the new ones in.
    for (Item& i : items) {
      if (i.t.special || !i.t.exists) continue;
      i.backup = fs::path(i.t.path) += ".previous-" + std::to_string(::getpid());
      std::error_code ec;
      fs::remove(i.backup, ec);
      fs::create_hard_link(i.t.path, i.backup, ec);
      if (ec) throw InputError(fmt::format("{}: cannot keep the old file while replacing it: {}", i.t.path.string(),
                                           ec.message()));
      i.backed_up = true;
    }
    for (Item& i : items) {
      if (i.t.special) continue;
      std::error_code ec;
      fs::rename(i.tmp, i.t.path, ec);
      if (ec) throw InputError(fmt::format("{}: cannot rename {} into place: {}", i.t.path.string(), i.tmp.string(),
                                           ec.message()));
      i.tmp.clear();
      i.replaced = true;
    }
  } catch (...) {
    // Roll back: the files already replaced get their old content back, new ones are removed.
    std::error_code ignored;
    for (Item& i : items) {
      if (!i.replaced) continue;
      if (i.backed_up) {
        fs::rename(i.backup, i.t.path, ignored);
        i.backed_up = false;
      } else {
        fs::remove(i.t.path, ignored);
      }
    }
    cleanup();
    throw;
  }
  cleanup();
}

void write_bytes(const fs::path& file, const void* bytes, std::size_t size, const std::string& shown) {
  std::ofstream out(file, std::ios::binary | std::ios::trunc);
  if (!out) throw InputError(fmt::format("{}: cannot open for writing: {}", shown, std::strerror(errno)));
  out.write(static_cast<const char*>(bytes), static_cast<std::streamsize>(size));
  out.close();
  if (!out) throw InputError(fmt::format("{}: write failed: {}", shown, std::strerror(errno)));
}

}  // namespace fp8flow::io
