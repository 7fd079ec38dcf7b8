// The HDF5 results store: one file per study, one group per run. Schema: docs/results-format.md.
//
//   /                         attrs fp8flow_schema_version (int64), creator, created
//   /runs/<hash>              one complete run; attrs = resolved params + kind, hash, label, summary,
//                             params_json, experiment + provenance (fp8flow_version, git_commit, ...)
//   /runs/<hash>/tables/<t>/<column>       1-D datasets, attr `units`; group attrs `columns` (order)
//   /runs/<hash>/histograms/<h>/{bin,count}
//   /runs/<hash>/tensors/<name>            chunked + deflate (only when the run saved tensors)
//
// Crash safety (docs/results-format.md, "Crash safety"): the published file is never opened for
// writing. A commit copies it to `<file>.partial-<pid>`, appends the new runs there (each into
// /staging/<hash>-<pid>, moved to /runs/<hash> as its last step), closes and fsyncs the copy, renames
// it over the file (atomic on POSIX) and fsyncs the directory. kill -9 at any moment leaves either the
// old or the new file, both complete. `<file>.lock` (flock) keeps a second writer out.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace fp8flow::io {

inline constexpr std::int64_t kSchemaVersion = 1;

// ---- What a run holds (in memory) -----------------------------------------------------------------
struct Column {
  std::string name, units;  // units: "1" (dimensionless), "count", "dB", "value" (units of the tensor), ...
  std::variant<std::vector<double>, std::vector<std::int64_t>, std::vector<std::string>> values;
  std::size_t size() const;
};

struct Table {
  std::string name, description;
  std::vector<Column> columns;
  nlohmann::json attrs = nlohmann::json::object();  // scalar summary values (numbers, strings, bools)
  std::size_t rows() const { return columns.empty() ? 0 : columns.front().size(); }
  // Append a column; throws std::logic_error if its length differs from the others.
  Table& add(std::string name, std::string units, decltype(Column::values) values);
  const Column* find(std::string_view name) const;
};

struct Tensor {
  std::string name, description;
  std::vector<std::size_t> shape;
  std::variant<std::vector<float>, std::vector<std::uint8_t>> values;
};

// Provenance attributes of every run (seed is the run's `seed` parameter).
struct Provenance {
  std::string fp8flow_version, git_commit, compiler, build_type, cxx_flags, host;
  std::string start_time, end_time;  // ISO 8601 UTC, e.g. 2025-03-01T12:00:00.123Z
  std::int64_t threads = 0;          // worker threads the run used (results do not depend on it)
  static Provenance of_this_build();  // version, commit, compiler, flags, host; times empty
};
std::string iso8601_utc_now();

struct RunRecord {
  std::string hash, kind, experiment, label, summary;
  nlohmann::json params = nlohmann::json::object();  // resolved parameters (see io/experiment.hpp)
  // Result attributes of the run (scalars, e.g. train's final_loss): HDF5 attributes of /runs/<hash>
  // beside the params, and all of them as JSON in `attrs_json`.
  nlohmann::json attrs = nlohmann::json::object();
  Provenance provenance;
  std::vector<Table> tables, histograms;
  std::vector<Tensor> tensors;
};

// Byte serialization (CBOR, arrays as raw binary) for sending a run between MPI ranks. Exact: doubles
// (incl. Inf/NaN) and strings survive bit for bit.
std::vector<std::uint8_t> serialize(const RunRecord& r);
RunRecord deserialize(std::span<const std::uint8_t> bytes);  // throws InputError on malformed bytes

// JSON of a run for `show --json`: params, provenance, tables as {column: [values]} (non-finite
// numbers as null, units under "units"), histograms alike; tensors by shape and dtype only.
nlohmann::json to_json(const RunRecord& r);

// ---- Reading (never modifies the file) -----------------------------------------------------------
struct DamagedRun {
  std::string hash;    // the group's name under /runs
  std::string reason;  // the first problem found, naming the object
};

struct RunInfo {
  std::string hash, kind, label, summary, experiment;
  nlohmann::json params;
};

class ResultsFile {
 public:
  // Opens read-only; throws InputError for a missing file, a file that is not HDF5, an HDF5 file that
  // is not an fp8flow store (no fp8flow_schema_version) or one of another schema version.
  explicit ResultsFile(const std::filesystem::path& file);
  ~ResultsFile();
  ResultsFile(const ResultsFile&) = delete;
  ResultsFile& operator=(const ResultsFile&) = delete;

  const std::filesystem::path& path() const { return path_; }
  // The complete runs, sorted. A run group that cannot be read whole (an interrupted or damaged write: a
  // missing attribute, table or column) is left out and listed by damaged() with the reason.
  std::vector<std::string> hashes() const;
  const std::vector<DamagedRun>& damaged() const;
  std::vector<std::string> all_groups() const;  // every name under /runs, damaged or not
  RunInfo info(const std::string& hash) const;
  // The full run: tables, histograms and (with_tensors) tensors. Throws InputError naming the object
  // for a missing or malformed attribute or dataset.
  RunRecord read(const std::string& hash, bool with_tensors) const;
  // A unique run from a hash prefix (>= 1 character); throws InputError for none or several.
  std::string resolve(std::string_view prefix) const;

 private:
  void scan() const;
  std::filesystem::path path_;
  struct Impl;
  Impl* impl_;
};

// Checks that `file` is absent or an fp8flow store this build can extend; throws InputError like
// ResultsFile, and for a store holding damaged run groups (fsck_store drops them). Returns the hashes of its
// complete runs (empty for a new file).
std::set<std::string> existing_runs(const std::filesystem::path& file);

// Appends one run to the store `file` (created, with its folder, if absent) unless a run with its hash is
// already there: then returns false and writes nothing. Empty provenance times are set to now. Throws
// InputError for a file that is not an fp8flow store or is locked by another writer.
bool append_run_once(const std::filesystem::path& file, RunRecord rec);

// `fp8flow fsck`: the damaged run groups of a store; `drop` rewrites it without them (under the lock,
// atomically, permissions kept).
struct FsckReport {
  std::size_t healthy = 0, dropped = 0;
  std::vector<DamagedRun> damaged;
};
FsckReport fsck_store(const std::filesystem::path& file, bool drop);

// ---- Writing -------------------------------------------------------------------------------------
// The path a store writer works on: the target of a symlink; throws InputError for an empty name, a
// directory, a device (/dev/null) or a read-only file -- before any lock file exists.
std::filesystem::path checked_store_path(const std::filesystem::path& file);

// An exclusive flock on `<resolved file>.lock` holding the writer's pid (the path resolved through symlinks,
// so every name of one file shares one lock). Throws InputError naming the file and the holder's pid when
// another process holds it. The destructor removes the lock file; the kernel releases the flock on any
// exit, kill -9 included (then a stale, unlocked lock file stays and is reused).
class FileLock {
 public:
  explicit FileLock(const std::filesystem::path& file);
  ~FileLock();
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;
  static std::filesystem::path lock_path(const std::filesystem::path& file);

 private:
  int fd_ = -1;
  std::filesystem::path path_;
};

class ResultsWriter {
 public:
  // Takes the lock, checks an existing file (existing_runs) and removes stale `<file>.partial-*` left by
  // a killed writer. `commit_interval_s`: buffered runs are published at most this often (0: every run);
  // the interval also grows to 3x the last commit's duration so copying stays a small share of the time.
  ResultsWriter(const std::filesystem::path& file, double commit_interval_s = 1.0);
  ~ResultsWriter();  // runs not yet committed are dropped (call commit() first)
  ResultsWriter(const ResultsWriter&) = delete;
  ResultsWriter& operator=(const ResultsWriter&) = delete;

  const std::set<std::string>& complete() const { return complete_; }
  // Buffers a run (a run already in the file is an error: the store is append-only) and commits when due.
  void add(RunRecord r);
  // Publishes every buffered run now.
  void commit();
  std::size_t commits() const { return commits_; }

 private:
  std::filesystem::path file_;
  FileLock lock_;
  std::set<std::string> complete_;
  std::vector<RunRecord> pending_;
  double interval_s_, min_interval_s_;
  double last_commit_ = 0;  // seconds since epoch (steady)
  std::size_t pending_bytes_ = 0, commits_ = 0;
};

}  // namespace fp8flow::io
