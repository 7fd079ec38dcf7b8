// Experiment files: parsing, validation messages (file:line:column, key, expectation), sweep expansion
// and run identity.
#include <catch2/catch.hpp>
#include <filesystem>
#include <set>
#include <string>

#include "io/errors.hpp"
#include "io/experiment.hpp"
#include "io/results_store.hpp"
#include "io/study_records.hpp"

using namespace fp8flow;
using namespace fp8flow::io;
using Catch::Matchers::Contains;

namespace {

std::string error_of(const std::string& text) {
  try {
    parse_experiment(text, "exp.toml");
  } catch (const InputError& e) {
    return e.what();
  }
  return "(no error)";
}

// Independent FNV-1a 64 (http://www.isthe.com/chongo/tech/comp/fnv/), checked on its published vectors.
std::uint64_t fnv1a(const std::string& s) {
  std::uint64_t h = 14695981039346656037ull;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}

}  // namespace

TEST_CASE("experiment: the single-study form resolves defaults", "[experiment]") {
  const Experiment e = parse_experiment(R"(
[experiment]
name = "t"
kind = "transpose_study"
)",
                                        "exp.toml");
  REQUIRE(e.name == "t");
  REQUIRE(e.runs.size() == 1);
  const RunSpec& r = e.runs[0];
  CHECK(r.kind == "transpose_study");
  CHECK(r.params["shape"] == nlohmann::json::array({1024, 2048}));
  CHECK(r.params["distribution"] == "activations");
  CHECK(r.params["seed"] == 1);
  CHECK(r.params["eps"].is_number_float());
  CHECK(r.params["save_tensors"] == false);
  CHECK(r.hash.size() == 16);
}

TEST_CASE("experiment: run identity is the hash of the canonical resolved parameters", "[experiment]") {
  SECTION("the FNV-1a reference matches its published vectors") {
    CHECK(fnv1a("") == 0xcbf29ce484222325ull);
    CHECK(fnv1a("a") == 0xaf63dc4c8601ec8cull);
  }
  SECTION("run_hash is FNV-1a 64 of canonical_run_json") {
    const nlohmann::json p = {{"b", 1}, {"a", "x"}};
    CHECK(canonical_run_json("k", p) == R"({"kind":"k","params":{"a":"x","b":1}})");
    char want[17];
    std::snprintf(want, sizeof want, "%016llx", (unsigned long long)fnv1a(canonical_run_json("k", p)));
    CHECK(run_hash("k", p) == want);
  }
  SECTION("an explicit default and an omitted one are the same run; integer 0 and 0.0 eps too") {
    const auto a = parse_experiment("[experiment]\nname='a'\nkind='transpose_study'\n", "a.toml");
    const auto b = parse_experiment(
        "[experiment]\nname='b'\nkind='transpose_study'\n[params]\nseed = 1\neps = 0\nshape = [1024, 2048]\n", "b.toml");
    CHECK(a.runs[0].hash == b.runs[0].hash);
  }
  SECTION("a changed parameter is another run") {
    const auto a = parse_experiment("[experiment]\nname='a'\nkind='transpose_study'\n[params]\nseed = 2\n", "a.toml");
    const auto b = parse_experiment("[experiment]\nname='a'\nkind='transpose_study'\n[params]\nseed = 3\n", "a.toml");
    CHECK(a.runs[0].hash != b.runs[0].hash);
  }
}

TEST_CASE("experiment: sweeps are cartesian products in file order and zips go together", "[experiment]") {
  const Experiment e = parse_experiment(R"(
[experiment]
name = "s"
kind = "transpose_study"
[sweep]
seed = [1, 2, 3]
distribution = ["normal", "outliers"]
[sweep.zip]
shape = [[256, 128], [512, 256]]
groups = [[], [256, 256]]
)",
                                        "exp.toml");
  REQUIRE(e.runs.size() == 3 * 2 * 2);
  SECTION("the last axis varies fastest") {
    CHECK(e.runs[0].params["seed"] == 1);
    CHECK(e.runs[0].params["distribution"] == "normal");
    CHECK(e.runs[0].params["shape"][0] == 256);
    CHECK(e.runs[1].params["shape"][0] == 512);
    CHECK(e.runs[2].params["distribution"] == "outliers");
    CHECK(e.runs[4].params["seed"] == 2);
  }
  SECTION("zipped values stay paired") {
    for (const auto& r : e.runs) CHECK(r.params["groups"].size() == (r.params["shape"][0] == 512 ? 2u : 0u));
  }
  SECTION("every run is distinct") {
    std::set<std::string> hashes;
    for (const auto& r : e.runs) hashes.insert(r.hash);
    CHECK(hashes.size() == e.runs.size());
  }
}

TEST_CASE("experiment: several studies with duplicates removed", "[experiment]") {
  const Experiment e = parse_experiment(R"(
[experiment]
name = "multi"
[[study]]
kind = "transpose_study"
sweep = { seed = [1, 2] }
[[study]]
name = "again"
kind = "transpose_study"
params = { seed = 2 }
[[study]]
kind = "gemm_accum_study"
[study.sweep.zip]
shape = [[8, 8, 256], [8, 8, 512]]
b_granularity = ["128x128", "1x128"]
)",
                                        "exp.toml");
  CHECK(e.runs.size() == 4);
  CHECK(e.duplicates == 1);
  CHECK(e.runs[3].params["b_granularity"] == "1x128");
  CHECK(e.runs[3].params["accum_models"].size() == 4);
}

TEST_CASE("experiment: errors name file:line:column and the key and what was expected", "[experiment][errors]") {
  SECTION("unknown key") {
    const auto m = error_of("[experiment]\nname = 'x'\nkind = 'transpose_study'\n[params]\nshap = [1, 2]\n");
    CHECK_THAT(m, Contains("exp.toml:5:1:") && Contains("unknown key 'shap'") && Contains("shape"));
  }
  SECTION("wrong type") {
    const auto m = error_of("[experiment]\nname = 'x'\nkind = 'transpose_study'\n[params]\nshape = \"1024\"\n");
    CHECK_THAT(m, Contains("exp.toml:5:9:") && Contains("[params] shape = \"1024\"") &&
                      Contains("expected [rows, cols]: two positive integers"));
  }
  SECTION("bad value inside a sweep list points at the element") {
    const auto m =
        error_of("[experiment]\nname = 'x'\nkind = 'transpose_study'\n[sweep]\ndistribution = ['normal', 'normall']\n");
    CHECK_THAT(m, Contains("exp.toml:5:27:") && Contains("distribution[1] = \"normall\"") && Contains("lognormal"));
  }
  SECTION("negative seed") {
    const auto m = error_of("[experiment]\nname = 'x'\nkind = 'gemm_accum_study'\n[params]\nseed = -1\n");
    CHECK_THAT(m, Contains("exp.toml:5:8:") && Contains("seed = -1") && Contains("an integer >= 0"));
  }
  SECTION("unknown kind lists the kinds") {
    const auto m = error_of("[experiment]\nname = 'x'\nkind = 'transpose'\n");
    CHECK_THAT(m, Contains("exp.toml:3:8:") && Contains("transpose_study, gemm_accum_study, moe_dataflows"));
  }
  SECTION("moe_dataflows: bad preset, bad dataflow, top-k above the experts") {
    CHECK_THAT(error_of("[experiment]\nname = 'x'\nkind = 'moe_dataflows'\n[params]\npreset = 'huge'\n"),
               Contains("exp.toml:5:10:") && Contains("tiny, quickstart, ds_v2_lite, ds_v3"));
    CHECK_THAT(error_of("[experiment]\nname = 'x'\nkind = 'moe_dataflows'\n[sweep]\ndataflow = ['fp8_flow', 'fp9']\n"),
               Contains("exp.toml:5:25:") && Contains("dataflow[1]") && Contains("fp8_double_quant"));
    CHECK_THAT(error_of("[experiment]\nname = 'x'\nkind = 'moe_dataflows'\n[params]\npreset = 'tiny'\ntopk = 8\n"),
               Contains("exp.toml:6:8:") && Contains("top-k 8 exceeds the 4 experts"));
  }
  SECTION("TOML syntax") {
    const auto m = error_of("[experiment]\nname = 'x\n");
    CHECK_THAT(m, Contains("exp.toml:2:") && Contains("TOML syntax error"));
  }
  SECTION("zipped lists of different lengths") {
    const auto m = error_of(
        "[experiment]\nname = 'x'\nkind = 'transpose_study'\n[sweep.zip]\nseed = [1, 2]\nshape = [[8, 8]]\n");
    CHECK_THAT(m, Contains("exp.toml:") && Contains("equal lengths"));
  }
  SECTION("a parameter set twice") {
    const auto m = error_of("[experiment]\nname = 'x'\nkind = 'transpose_study'\n[params]\nseed = 1\n[sweep]\nseed = [1]\n");
    CHECK_THAT(m, Contains("exp.toml:7:1:") && Contains("already set in [params] at line 5"));
  }
  SECTION("groups that do not sum to the rows blame groups, naming the run") {
    const auto m = error_of("[experiment]\nname = 'x'\nkind = 'transpose_study'\n[params]\ngroups = [100, 28]\n"
                            "[sweep]\nshape = [[128, 64], [256, 64]]\n");
    CHECK_THAT(m, Contains("exp.toml:5:10:") && Contains("groups sum to 128 but shape has 256 rows") &&
                      Contains("shape = [256,64]"));
  }
  SECTION("GEMM operands with different K blocks") {
    const auto m = error_of("[experiment]\nname = 'x'\nkind = 'gemm_accum_study'\n[params]\nb_granularity = 'tensor'\n");
    CHECK_THAT(m, Contains("exp.toml:5:17:") && Contains("must both be tensor-scaled"));
  }
  SECTION("missing name, empty sweep list, unknown section") {
    CHECK_THAT(error_of("[experiment]\nkind = 'transpose_study'\n"), Contains("missing key 'name'"));
    CHECK_THAT(error_of("[experiment]\nname='x'\nkind = 'transpose_study'\n[sweep]\nseed = []\n"),
               Contains("exp.toml:5:8:") && Contains("a non-empty list"));
    CHECK_THAT(error_of("[experiment]\nname='x'\nkind = 'transpose_study'\n[paramz]\n"),
               Contains("exp.toml:4:") && Contains("unknown key 'paramz'"));
  }
}

TEST_CASE("experiment: the shipped experiment files are valid", "[experiment]") {
  const std::filesystem::path dir = std::filesystem::path(FP8FLOW_SOURCE_DIR) / "experiments";
  std::size_t files = 0;
  for (const auto& f : std::filesystem::directory_iterator(dir)) {
    if (f.path().extension() != ".toml") continue;
    INFO(f.path().string());
    const Experiment e = load_experiment(f.path());
    CHECK(!e.runs.empty());
    ++files;
  }
  CHECK(files >= 4);
  CHECK(load_experiment(dir / "quickstart.toml").runs.size() == 44);  // 5 transpose + 2 gemm + 5 moe + 32 train
}

TEST_CASE("experiment: moe_dataflows validates, sweeps dataflows and runs on the tiny preset", "[experiment][moe]") {
  const Experiment e = parse_experiment(
      "[experiment]\nname = 'm'\nkind = 'moe_dataflows'\n[params]\npreset = 'tiny'\ntokens = 32\n"
      "[sweep]\ndataflow = ['fp64', 'fp8_blockwise', 'fp8_flow']\n",
      "exp.toml");
  REQUIRE(e.runs.size() == 3);
  CHECK(e.runs[2].params["dataflow"] == nlohmann::json::array({"fp8_flow"}));
  CHECK(e.runs[2].params["transpose"] == "paper_kernel");
  CHECK(run_label(e.runs[2]) == "moe tiny tokens=32 fp8_flow seed=1");
  // "all" is the five names: one run identity.
  const Experiment all = parse_experiment(
      "[experiment]\nname = 'm'\nkind = 'moe_dataflows'\n[params]\ndataflow = 'all'\n", "exp.toml");
  const Experiment dflt = parse_experiment("[experiment]\nname = 'm'\nkind = 'moe_dataflows'\n", "exp.toml");
  CHECK(all.runs[0].hash == dflt.runs[0].hash);
  CHECK(all.runs[0].params["dataflow"].size() == 5);

  const RunRecord one = execute_run(e.runs[2], e.name, 1), two = execute_run(e.runs[2], e.name, 2);
  REQUIRE(one.tables.size() == 2);
  const Table& m = one.tables[0];
  CHECK(m.name == "metrics");
  CHECK(m.columns[0].name == "dataflow");
  CHECK(m.columns[1].name == "tensor");
  REQUIRE(m.find("rel_err") != nullptr);
  REQUIRE(m.find("sqnr_db") != nullptr);
  const auto& tensors = std::get<std::vector<std::string>>(m.find("tensor")->values);
  const auto& sqnr = std::get<std::vector<double>>(m.find("sqnr_db")->values);
  bool saw_y = false;
  for (std::size_t i = 0; i < tensors.size(); ++i)
    if (tensors[i] == "y") {
      saw_y = true;
      CHECK(sqnr[i] > 10.0);  // fp8_flow's layer output: finite, well above noise
      CHECK(sqnr[i] < 60.0);
    }
  CHECK(saw_y);
  const Table& c = one.tables[1];
  CHECK(c.name == "casts");
  CHECK(std::get<std::vector<std::int64_t>>(c.find("explicit_casts")->values).size() == 1);
  // Identical records whatever the thread count.
  CHECK(serialize(one).size() > 0);
  CHECK(std::get<std::vector<double>>(two.tables[0].find("sqnr_db")->values) == sqnr);
  CHECK(std::get<std::vector<double>>(two.tables[0].find("max_abs_err")->values) ==
        std::get<std::vector<double>>(m.find("max_abs_err")->values));
  CHECK(one.summary == two.summary);
}
