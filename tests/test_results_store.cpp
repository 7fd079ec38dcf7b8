// The HDF5 results store: round trip, append-only, lock, clear errors for foreign or damaged files, and
// that reading never modifies the file. End-to-end crash (kill -9), resume and MPI tests: tests/cli/test_run.py.
#include <H5Cpp.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>

#include "io/errors.hpp"
#include "io/experiment.hpp"
#include "io/results_store.hpp"
#include "io/study_records.hpp"

using namespace fp8flow;
using namespace fp8flow::io;
using Catch::Matchers::Contains;
namespace fs = std::filesystem;

namespace {

fs::path fresh_dir(const std::string& name) {
  const fs::path d = fs::temp_directory_path() / ("fp8flow-store-" + std::to_string(::getpid()) + "-" + name);
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

RunRecord sample_run(const std::string& hash) {
  RunRecord r;
  r.hash = hash;
  r.kind = "test_kind";
  r.experiment = "unit";
  r.label = "label " + hash;
  r.summary = "summary";
  r.params = {{"seed", 7}, {"shape", {3, 4}}, {"groups", nlohmann::json::array()}, {"eps", 1e-10},
              {"name", "x"}, {"flag", true}, {"models", {"a", "b"}}};
  r.provenance = Provenance::of_this_build();
  r.provenance.start_time = iso8601_utc_now();
  r.provenance.end_time = iso8601_utc_now();
  r.provenance.threads = 3;
  Table t;
  t.name = "metrics";
  t.description = "d";
  t.add("method", "", std::vector<std::string>{"a", "b", "c"});
  t.add("sqnr_db", "dB",
        std::vector<double>{std::numeric_limits<double>::infinity(), -0.0, 0.1 + 0.2});
  t.add("count", "count", std::vector<std::int64_t>{1, -2, std::numeric_limits<std::int64_t>::max()});
  t.attrs = {{"tiles", 12}, {"note", "n"}};
  r.tables.push_back(t);
  Table empty;
  empty.name = "empty";
  empty.add("x", "1", std::vector<double>{});
  r.tables.push_back(empty);
  Table h;
  h.name = "ulp_a";
  h.add("bin", "ulp", std::vector<std::int64_t>{-1, 0, 3}).add("count", "count", std::vector<std::int64_t>{5, 6, 7});
  r.histograms.push_back(h);
  r.tensors.push_back({"codes", "c", {3, 4}, std::vector<std::uint8_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 255}});
  r.tensors.push_back({"x", "x", {2, 2}, std::vector<float>{1.5f, -0.0f, NAN, 3e38f}});
  return r;
}

bool same_bits(double a, double b) { return std::memcmp(&a, &b, sizeof a) == 0; }

void require_same(const Table& a, const Table& b) {
  REQUIRE(a.name == b.name);
  REQUIRE(a.columns.size() == b.columns.size());
  CHECK(a.description == b.description);
  CHECK(a.attrs == b.attrs);
  for (std::size_t j = 0; j < a.columns.size(); ++j) {
    INFO(a.name << "/" << a.columns[j].name);
    CHECK(a.columns[j].name == b.columns[j].name);
    CHECK(a.columns[j].units == b.columns[j].units);
    REQUIRE(a.columns[j].values.index() == b.columns[j].values.index());
    if (const auto* v = std::get_if<std::vector<double>>(&a.columns[j].values)) {
      const auto& w = std::get<std::vector<double>>(b.columns[j].values);
      REQUIRE(v->size() == w.size());
      for (std::size_t i = 0; i < v->size(); ++i) CHECK(same_bits((*v)[i], w[i]));
    } else {
      CHECK(a.columns[j].values == b.columns[j].values);
    }
  }
}

void require_same(const RunRecord& a, const RunRecord& b) {
  CHECK(a.hash == b.hash);
  CHECK(a.kind == b.kind);
  CHECK(a.label == b.label);
  CHECK(a.summary == b.summary);
  CHECK(a.experiment == b.experiment);
  CHECK(a.params == b.params);
  CHECK(a.provenance.start_time == b.provenance.start_time);
  CHECK(a.provenance.threads == b.provenance.threads);
  CHECK(a.provenance.git_commit == b.provenance.git_commit);
  REQUIRE(a.tables.size() == b.tables.size());
  for (std::size_t i = 0; i < a.tables.size(); ++i) require_same(a.tables[i], b.tables[i]);
  REQUIRE(a.histograms.size() == b.histograms.size());
  for (std::size_t i = 0; i < a.histograms.size(); ++i) require_same(a.histograms[i], b.histograms[i]);
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const InputError& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEST_CASE("results store: a run written is read back bit for bit", "[results_store]") {
  const fs::path dir = fresh_dir("roundtrip");
  const fs::path file = dir / "r.h5";
  RunRecord a = sample_run("00000000000000aa"), b = sample_run("00000000000000bb");
  b.tensors.clear();
  {
    ResultsWriter w(file, 0.0);  // commit after every run
    w.add(a);
    CHECK(w.commits() == 1);
    w.add(b);
    CHECK(w.commits() == 2);
  }
  // Tables sort by name when read back.
  std::sort(a.tables.begin(), a.tables.end(), [](const Table& x, const Table& y) { return x.name < y.name; });
  const ResultsFile f(file);
  REQUIRE(f.hashes() == std::vector<std::string>{"00000000000000aa", "00000000000000bb"});
  const RunRecord back = f.read("00000000000000aa", true);
  require_same(a, back);
  REQUIRE(back.tensors.size() == 2);
  CHECK(std::get<std::vector<std::uint8_t>>(back.tensors[0].values) == std::get<std::vector<std::uint8_t>>(a.tensors[0].values));
  CHECK(back.tensors[1].shape == std::vector<std::size_t>{2, 2});
  CHECK(std::isnan(std::get<std::vector<float>>(back.tensors[1].values)[2]));
  CHECK(f.resolve("00000000000000a") == "00000000000000aa");
  CHECK_THAT(error_of([&] { f.resolve("0000"); }), Contains("matches 2 runs"));
  CHECK_THAT(error_of([&] { f.resolve("ff"); }), Contains("no run whose hash starts with 'ff'"));
  CHECK(f.info("00000000000000bb").label == "label 00000000000000bb");
  CHECK(!fs::exists(dir / "r.h5.partial-" += std::to_string(::getpid())));
  fs::remove_all(dir);
}

TEST_CASE("results store: serialization for MPI is exact", "[results_store]") {
  const RunRecord a = sample_run("0123456789abcdef");
  const RunRecord b = deserialize(serialize(a));
  require_same(a, b);
  CHECK(std::get<std::vector<std::uint8_t>>(b.tensors[0].values) == std::get<std::vector<std::uint8_t>>(a.tensors[0].values));
  CHECK_THROWS_AS(deserialize(std::vector<std::uint8_t>{1, 2, 3}), InputError);
}

TEST_CASE("results store: append-only and complete runs only", "[results_store]") {
  const fs::path dir = fresh_dir("append");
  const fs::path file = dir / "r.h5";
  {
    ResultsWriter w(file, 0.0);
    w.add(sample_run("00000000000000aa"));
  }
  SECTION("a run already in the file cannot be written again") {
    ResultsWriter w(file, 0.0);
    CHECK(w.complete().contains("00000000000000aa"));
    CHECK_THAT(error_of([&] { w.add(sample_run("00000000000000aa")); }), Contains("already in the file"));
  }
  SECTION("runs not committed are not in the file; earlier ones are untouched") {
    const std::string before = slurp(file);
    {
      ResultsWriter w(file, 3600.0);  // never due
      w.add(sample_run("00000000000000cc"));
    }  // destroyed without commit: as if killed
    CHECK(slurp(file) == before);
    CHECK(ResultsFile(file).hashes() == std::vector<std::string>{"00000000000000aa"});
  }
  SECTION("a stale partial copy of a killed writer is removed by the next writer") {
    const fs::path stale = dir / "r.h5.partial-999999";
    std::ofstream(stale) << "half-written";
    { ResultsWriter w(file, 0.0); }
    CHECK(!fs::exists(stale));
  }
  fs::remove_all(dir);
}

TEST_CASE("results store: a second writer is locked out with the holder's pid", "[results_store]") {
  const fs::path dir = fresh_dir("lock");
  const fs::path file = dir / "r.h5";
  ResultsWriter first(file, 0.0);
  const std::string m = error_of([&] { ResultsWriter second(file, 0.0); });
  CHECK_THAT(m, Contains(file.string()) && Contains("another fp8flow is writing") &&
                    Contains("pid " + std::to_string(::getpid())) && Contains("r.h5.lock"));
  fs::remove_all(dir);
}

TEST_CASE("results store: foreign or damaged or other-version files give clear errors and stay untouched",
          "[results_store][errors]") {
  const fs::path dir = fresh_dir("foreign");
  SECTION("missing file") {
    CHECK_THAT(error_of([&] { ResultsFile f(dir / "nope.h5"); }), Contains("nope.h5: no such file"));
  }
  SECTION("not HDF5") {
    const fs::path p = dir / "text.h5";
    std::ofstream(p) << "hello, not hdf5\n";
    const std::string before = slurp(p);
    CHECK_THAT(error_of([&] { ResultsFile f(p); }), Contains("text.h5: not an HDF5 file"));
    CHECK_THAT(error_of([&] { ResultsWriter w(p, 0.0); }), Contains("not an HDF5 file"));
    CHECK(slurp(p) == before);
  }
  SECTION("HDF5 but not ours") {
    const fs::path p = dir / "foreign.h5";
    { H5::H5File f(p.string(), H5F_ACC_TRUNC); f.createGroup("/data"); }
    const std::string before = slurp(p);
    CHECK_THAT(error_of([&] { ResultsFile f(p); }), Contains("not an fp8flow results store") &&
                                                        Contains("fp8flow_schema_version"));
    CHECK_THAT(error_of([&] { ResultsWriter w(p, 0.0); }), Contains("not an fp8flow results store"));
    CHECK(slurp(p) == before);
  }
  SECTION("another schema version") {
    const fs::path p = dir / "v99.h5";
    {
      H5::H5File f(p.string(), H5F_ACC_TRUNC);
      const std::int64_t v = 99;
      f.createAttribute("fp8flow_schema_version", H5::PredType::NATIVE_INT64, H5::DataSpace(H5S_SCALAR))
          .write(H5::PredType::NATIVE_INT64, &v);
      f.createGroup("/runs");
    }
    CHECK_THAT(error_of([&] { ResultsFile f(p); }), Contains("schema version 99") && Contains("reads version 1"));
  }
  SECTION("truncated file") {
    const fs::path p = dir / "t.h5";
    { ResultsWriter w(p, 0.0); w.add(sample_run("00000000000000aa")); }
    fs::resize_file(p, fs::file_size(p) / 2);
    CHECK_THAT(error_of([&] { ResultsFile f(p); f.read(f.hashes().at(0), true); }), Contains("t.h5"));
  }
  SECTION("a missing dataset is named, and reading changes nothing") {
    const fs::path p = dir / "m.h5";
    { ResultsWriter w(p, 0.0); w.add(sample_run("00000000000000aa")); }
    {
      H5::H5File f(p.string(), H5F_ACC_RDWR);
      f.unlink("/runs/00000000000000aa/tables/metrics/sqnr_db");
    }
    const std::string before = slurp(p);
    const ResultsFile f(p);
    CHECK_THAT(error_of([&] { f.read("00000000000000aa", false); }),
               Contains("/runs/00000000000000aa/tables/metrics: missing dataset 'sqnr_db'"));
    CHECK(slurp(p) == before);
  }
  fs::remove_all(dir);
}

TEST_CASE("study runs: the record does not depend on the thread count", "[results_store][studies]") {
  const Experiment e = parse_experiment(R"(
[experiment]
name = "threads"
[[study]]
kind = "transpose_study"
params = { shape = [300, 260], distribution = "outliers", groups = [100, 200], save_tensors = true }
[[study]]
kind = "gemm_accum_study"
params = { shape = [16, 24, 640], accum_models = ["fp32_seq", "promote", "hopper_fast", "exact"] }
)",
                                        "threads.toml");
  REQUIRE(e.runs.size() == 2);
  for (const RunSpec& spec : e.runs) {
    INFO(spec.kind);
    const RunRecord one = execute_run(spec, e.name, 1), two = execute_run(spec, e.name, 2);
    // Everything but provenance is equal; compare through the wire format with provenance blanked.
    RunRecord a = one, b = two;
    a.provenance = b.provenance = Provenance{};
    CHECK(serialize(a) == serialize(b));
    CHECK(!one.tables.empty());
    CHECK(!one.summary.empty());
  }
  const RunRecord t = execute_run(e.runs[0], e.name, 1);
  CHECK(t.tensors.size() == 1 + 2 * 5);  // x, and codes + scale_inv of rowwise and four column copies
  const Table* metrics = &t.tables[0];
  REQUIRE(metrics->name == "metrics");
  CHECK(metrics->rows() == 13);
  const RunRecord g = execute_run(e.runs[1], e.name, 1);
  const Column* max_rel = g.tables[0].find("max_rel_err");
  REQUIRE(max_rel);
  CHECK(std::get<std::vector<double>>(max_rel->values).back() == 0.0);  // exact vs exact
}
