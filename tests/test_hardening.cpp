// Issue 24 at the library level: output resolution (links, permissions, read-only, devices), all-or-nothing
// multi-file writes with rollback, the store lock keyed by the resolved path and removed on exit, damaged run
// groups skipped and dropped, ml_dtypes dtypes in .npy, dataflow files with file:line, TOML integers out of
// range, corpora that are not files, and the memory estimates. End to end: tests/cli/test_hardening.py.
#include <H5Cpp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "io/atomic_write.hpp"
#include "io/errors.hpp"
#include "io/experiment.hpp"
#include "io/npy.hpp"
#include "io/results_store.hpp"
#include "reference/dataflow.hpp"
#include "reference/moe_layer.hpp"
#include "reference/studies.hpp"
#include "reference/train.hpp"

using namespace fp8flow;
using Catch::Matchers::Contains;
using Catch::Matchers::StartsWith;
namespace fs = std::filesystem;

namespace {

fs::path fresh_dir(const std::string& name) {
  const fs::path d = fs::temp_directory_path() / ("fp8flow-hardening-" + std::to_string(::getpid()) + "-" + name);
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}
std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}
void put(const fs::path& p, const std::string& s) { std::ofstream(p, std::ios::binary) << s; }
unsigned mode_of(const fs::path& p) {
  struct stat st {};
  ::stat(p.c_str(), &st);
  return st.st_mode & 07777;
}
void write_text(const fs::path& dst, const std::string& s) {
  io::write_atomically(dst, [&](const fs::path& tmp) { io::write_bytes(tmp, s.data(), s.size(), dst.string()); });
}

io::RunRecord sample_run(const std::string& hash) {
  io::RunRecord r;
  r.hash = hash, r.kind = "transpose_study", r.experiment = "t", r.label = "l", r.summary = "s";
  r.params = {{"seed", 1}};
  r.provenance = io::Provenance::of_this_build();
  io::Table t;
  t.name = "metrics";
  t.add("rmse", "value", std::vector<double>{0.5});
  r.tables.push_back(t);
  return r;
}

}  // namespace

TEST_CASE("outputs: links keep being links, modes are kept, read-only and directories are refused", "[hardening][io]") {
  const fs::path d = fresh_dir("outputs");
  put(d / "target", "old");
  fs::permissions(d / "target", fs::perms(0640));
  fs::create_symlink("target", d / "link");
  write_text(d / "link", "new");
  CHECK(fs::is_symlink(d / "link"));
  CHECK(slurp(d / "target") == "new");
  CHECK(mode_of(d / "target") == 0640);

  fs::permissions(d / "target", fs::perms(0444));
  CHECK_THROWS_WITH(write_text(d / "link", "x"), Contains("read-only") && Contains("target"));
  CHECK(slurp(d / "target") == "new");
  CHECK(mode_of(d / "target") == 0444);

  CHECK_THROWS_WITH(write_text(d, "x"), Contains("is a directory"));
  CHECK_THROWS_WITH(write_text("", "x"), Contains("empty output path"));

  fs::create_symlink("made", d / "dangling");
  write_text(d / "dangling", "made");
  CHECK(fs::is_symlink(d / "dangling"));
  CHECK(slurp(d / "made") == "made");

  // A device is written in place, never renamed over.
  write_text("/dev/null", "discarded");
  CHECK(fs::is_character_file("/dev/null"));
  CHECK_THROWS_WITH(io::resolve_output("/dev/null", false), Contains("not a regular file"));
  for (const auto& e : fs::directory_iterator(d)) CHECK_THAT(e.path().string(), !Contains(".partial"));
}

TEST_CASE("write_all_atomically: all files or none, a failed rename rolls back", "[hardening][io]") {
  const fs::path d = fresh_dir("all");
  for (const char* f : {"a", "b", "c"}) put(d / f, std::string("old ") + f);
  auto writer = [](const std::string& text) {
    return [text](const fs::path& tmp) { io::write_bytes(tmp, text.data(), text.size(), tmp.string()); };
  };
  // A writer that throws: nothing renamed.
  CHECK_THROWS(io::write_all_atomically({{d / "a", writer("new a")},
                                         {d / "b", writer("new b")},
                                         {d / "c", [](const fs::path&) { throw InputError("disk full"); }}}));
  CHECK(slurp(d / "a") == "old a");
  CHECK(slurp(d / "b") == "old b");
  // The third rename fails (fault injection: its temporary vanishes after it was written): the first two,
  // already renamed into place, get their old content back.
  CHECK_THROWS_WITH(io::write_all_atomically({{d / "a", writer("new a")},
                                              {d / "b", writer("new b")},
                                              {d / "c",
                                               [&](const fs::path& tmp) {
                                                 put(tmp, "new c");
                                                 fs::remove(tmp);
                                               }}}),
                    Contains("cannot rename"));
  CHECK(slurp(d / "a") == "old a");
  CHECK(slurp(d / "b") == "old b");
  CHECK(slurp(d / "c") == "old c");
  // A destination that turns into a directory after the checks: refused before any rename.
  CHECK_THROWS(io::write_all_atomically({{d / "a", writer("new a")}, {d / "c", [&](const fs::path& tmp) {
                                                                       put(tmp, "new c");
                                                                       fs::remove(d / "c");
                                                                       fs::create_directories(d / "c" / "in-the-way");
                                                                     }}}));
  CHECK(slurp(d / "a") == "old a");
  // New files are removed on rollback too; no temporaries or backups remain.
  fs::remove_all(d / "c");
  CHECK_THROWS(io::write_all_atomically({{d / "fresh", writer("x")}, {d / "c", [&](const fs::path& tmp) {
                                                                       put(tmp, "y");
                                                                       fs::create_directories(d / "c" / "z");
                                                                     }}}));
  CHECK_FALSE(fs::exists(d / "fresh"));
  for (const auto& e : fs::directory_iterator(d)) {
    CHECK_THAT(e.path().string(), !Contains(".partial"));
    CHECK_THAT(e.path().string(), !Contains(".previous"));
  }
  fs::remove_all(d / "c");
  io::write_all_atomically({{d / "a", writer("new a")}, {d / "b", writer("new b")}, {d / "c", writer("new c")}});
  CHECK(slurp(d / "a") + slurp(d / "b") + slurp(d / "c") == "new anew bnew c");
}

TEST_CASE("store lock: one per resolved file, removed when released", "[hardening][results]") {
  const fs::path d = fresh_dir("lock");
  io::append_run_once(d / "a.h5", sample_run("00000000000000aa"));
  fs::create_symlink("a.h5", d / "alias.h5");
  CHECK(io::FileLock::lock_path(d / "alias.h5") == io::FileLock::lock_path(d / "a.h5"));
  CHECK(io::FileLock::lock_path(d / "sub" / ".." / "a.h5") == io::FileLock::lock_path(d / "a.h5"));
  {
    io::FileLock held(d / "a.h5");
    CHECK(fs::exists(d / "a.h5.lock"));
    CHECK_THROWS_WITH(io::FileLock(d / "alias.h5"), Contains("another fp8flow is writing"));
    CHECK_THROWS_WITH(io::ResultsWriter(d / "alias.h5"), Contains("another fp8flow is writing"));
  }
  CHECK_FALSE(fs::exists(d / "a.h5.lock"));
  // Writing through the link appends to the target; the link stays.
  CHECK(io::append_run_once(d / "alias.h5", sample_run("00000000000000bb")));
  CHECK(fs::is_symlink(d / "alias.h5"));
  CHECK(io::ResultsFile(d / "a.h5").hashes().size() == 2);
  CHECK_FALSE(fs::exists(d / "alias.h5.lock"));
  // What cannot be a store is refused before a lock exists.
  CHECK_THROWS_WITH(io::ResultsWriter("/dev/null"), Contains("not a regular file"));
  CHECK_FALSE(fs::exists("/dev/null.lock"));
  CHECK_THROWS_WITH(io::ResultsWriter(""), Contains("empty"));
  fs::permissions(d / "a.h5", fs::perms(0444));
  CHECK_THROWS_WITH(io::ResultsWriter(d / "a.h5"), Contains("read-only"));
  CHECK_FALSE(fs::exists(d / "a.h5.lock"));
}

TEST_CASE("damaged run groups: skipped and named by readers, refused by writers, dropped by fsck", "[hardening][results]") {
  const fs::path d = fresh_dir("damaged");
  const fs::path f = d / "s.h5";
  io::append_run_once(f, sample_run("00000000000000aa"));
  io::append_run_once(f, sample_run("00000000000000bb"));
  {
    H5::H5File h(f.string(), H5F_ACC_RDWR);
    h.createGroup("/runs/0000000000000bad");
    h.openGroup("/runs/00000000000000bb").removeAttr("kind");
  }
  fs::permissions(f, fs::perms(0600));
  {
    const io::ResultsFile r(f);
    CHECK(r.hashes() == std::vector<std::string>{"00000000000000aa"});
    REQUIRE(r.damaged().size() == 2);
    CHECK(r.damaged()[0].hash == "00000000000000bb");  // sorted
    CHECK_THAT(r.damaged()[0].reason, Contains("00000000000000bb") && Contains("missing attribute 'kind'"));
    CHECK(r.damaged()[1].hash == "0000000000000bad");
    CHECK_THAT(r.damaged()[1].reason, Contains("0000000000000bad") && Contains("missing attribute"));
    CHECK_THROWS_WITH(r.resolve("0000000000000ba"), Contains("damaged"));
  }
  const std::string before = slurp(f);
  CHECK_THROWS_WITH(io::existing_runs(f), Contains("damaged") && Contains("fsck"));
  CHECK_THROWS_WITH(io::append_run_once(f, sample_run("00000000000000cc")), Contains("damaged"));
  CHECK(slurp(f) == before);
  const io::FsckReport listed = io::fsck_store(f, false);
  CHECK(listed.healthy == 1);
  CHECK(listed.damaged.size() == 2);
  CHECK(slurp(f) == before);
  const io::FsckReport dropped = io::fsck_store(f, true);
  CHECK(dropped.dropped == 2);
  CHECK(mode_of(f) == 0600);
  CHECK(io::ResultsFile(f).damaged().empty());
  CHECK(io::append_run_once(f, sample_run("00000000000000cc")));
  CHECK(io::ResultsFile(f).hashes().size() == 2);
}

TEST_CASE("npy: ml_dtypes bfloat16 and float8 arrays", "[hardening][npy]") {
  auto image = [](const std::string& descr, std::size_t bytes) {
    std::string dict = "{'descr': '" + descr + "', 'fortran_order': False, 'shape': (2,), }";
    while ((10 + dict.size() + 1) % 64) dict += ' ';
    dict += '\n';
    std::string s = "\x93NUMPY\x01";
    s += '\0';
    s += char(dict.size() & 0xff);
    s += char(dict.size() >> 8);
    s += dict;
    s += std::string(bytes, '\x3f');
    std::vector<std::byte> out(s.size());
    std::memcpy(out.data(), s.data(), s.size());
    return out;
  };
  const io::NpyArray b = io::parse_npy(image("<V2", 4), "b.npy");
  CHECK(b.dtype == io::DType::bf16);
  CHECK_FALSE(b.float8_codes());
  for (const char* d : {"<V1", "|V1", "<f1"}) {
    const io::NpyArray e = io::parse_npy(image(d, 2), "e.npy");
    CHECK(e.dtype == io::DType::u8);
    CHECK(e.float8_codes());
  }
  CHECK_THROWS_WITH(io::parse_npy(image("<V3", 6), "v.npy"), Contains("v.npy") && Contains("void"));
  CHECK(io::peek_npy(FP8FLOW_SOURCE_DIR "/tests/fuzz/corpus/npy/f32.npy").shape ==
        std::vector<std::size_t>{3, 5});
}

TEST_CASE("dataflow files: file:line errors, unknown keys, truncated files", "[hardening][dataflow]") {
  const std::string full = to_toml(builtin_dataflow("fp8_flow"));
  CHECK(parse_dataflow_toml(full, "f.toml").steps.size() == builtin_dataflow("fp8_flow").steps.size());
  // Cut after half of its steps: every step is valid, but the layer's gradients are never computed.
  const std::size_t half = full.find("[[step]]", full.size() / 2);
  CHECK_THROWS_WITH(parse_dataflow_toml(full.substr(0, half), "cut.toml"),
                    StartsWith("cut.toml:") && Contains("is the file complete"));
  CHECK_THROWS_WITH(parse_dataflow_toml("name = \"x\"\nbogus = 1\n", "k.toml"), StartsWith("k.toml:2:") && Contains("bogus"));
  CHECK_THROWS_WITH(parse_dataflow_toml("name = \"x\"\n[[step]]\nop = \"frob\"\nin = []\nout = []\n", "o.toml"),
                    StartsWith("o.toml:3:") && Contains("frob"));
  CHECK_THROWS_WITH(parse_dataflow_toml("name = \"x\"\n[[step]]\nop = \"gemm\nin = []\n", "s.toml"), StartsWith("s.toml:3:"));
  // A name that needs escaping survives to_toml.
  Dataflow df = builtin_dataflow("bf16");
  df.name = "quote \" and \\ newline\n";
  CHECK(parse_dataflow_toml(to_toml(df), "q.toml").name == df.name);
}

TEST_CASE("experiment TOML: integers out of range name the range", "[hardening][experiment]") {
  CHECK_THROWS_WITH(io::parse_experiment("[experiment]\nname = \"s\"\nkind = \"train\"\n[params]\nsteps = 100000000\n", "s.toml"),
                    StartsWith("s.toml:5:") && Contains("steps = 100000000") && Contains("out of range") &&
                        Contains("0..16777216"));
  CHECK_THROWS_WITH(io::parse_experiment("[experiment]\nname = \"s\"\nkind = \"train\"\n[params]\nseed = -1\n", "s.toml"),
                    Contains("seed = -1") && Contains("out of range"));
  CHECK_THROWS_WITH(io::load_experiment(fs::temp_directory_path()), Contains("is a directory"));
  CHECK_THROWS_WITH(io::load_experiment("/dev/zero"), Contains("not a regular file"));
}

TEST_CASE("train corpora must be regular files", "[hardening][train]") {
  CHECK_THROWS_WITH(train::load_corpus("/dev/zero", 10), Contains("/dev/zero") && Contains("not a regular file"));
  CHECK_THROWS_WITH(train::load_corpus(fs::temp_directory_path().string(), 10), Contains("is a directory"));
  const fs::path d = fresh_dir("corpus");
  put(d / "c.txt", "abc");
  CHECK_THROWS_WITH(train::load_corpus((d / "c.txt").string(), 10), Contains("3 bytes"));
}

TEST_CASE("memory estimates grow with the shape and saturate", "[hardening][memory]") {
  CHECK(transpose_study_bytes(30000, 30000) > std::uint64_t(50) << 30);  // the 35 s bad_alloc
  CHECK(transpose_study_bytes(1024, 2048) < std::uint64_t(1) << 30);
  CHECK(transpose_study_bytes(std::uint64_t(1) << 40, std::uint64_t(1) << 40) >= std::uint64_t(1) << 60);
  CHECK(moe_layer_bytes(preset_shape("ds_v3")) > std::uint64_t(100) << 30);
  CHECK(moe_layer_bytes(preset_shape("tiny")) < std::uint64_t(256) << 20);
  MoeShape huge = preset_shape("tiny");
  huge.tokens = huge.hidden = huge.ffn = huge.experts = std::size_t(1) << 40;
  CHECK(moe_layer_bytes(huge) == UINT64_MAX);
  CHECK(train::train_bytes(train::preset_config("tiny"), 1000) < std::uint64_t(1) << 30);
}
