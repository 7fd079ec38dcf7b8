// The gpu_validation run of `fp8flow validate --gpu [--op ...] -o report.h5` (src/io/gpu_validation_record.*):
// built from validation results (kernels, gemm, dispatch), written to the HDF5 store, read back through the
// store's reader (what `ls`, `show` and `export` use). CPU only: the GPU side just fills the structs.
#include <fmt/format.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <variant>
#include <vector>

#include "cli_runner.hpp"
#include "io/experiment.hpp"
#include "io/gpu_validation_record.hpp"
#include "io/npy.hpp"
#include "io/results_store.hpp"

using namespace fp8flow::io;
namespace fs = std::filesystem;

namespace {
std::vector<GpuValidation> sample_results() {
  GpuValidation a;
  a.op = "quant_128x128_e4m3_paper_swiglu_from_bf16";
  a.input = "adversarial seed 3";
  a.rows = 300;
  a.cols = 200;
  a.groups = {100, 200};
  a.oracle = "golden";
  a.parts = {{"block codes", 60000, 0, ""}, {"block scale_inv", 6, 0, ""}, {"transposed codes", 60000, 0, ""}};
  a.gpu_ms = 0.012;
  a.cpu_ms = 3.5;
  GpuValidation b = a;
  b.op = "quant_1x128_128x1_e4m3_te_pow2_from_f32";
  b.groups = {};
  b.parts = {{"rowwise codes", 60000, 2, "codes[r=3, c=129] tile (3,1) input 0x3F8CCCCD: golden 0x38, gpu 0x39"},
             {"rowwise scale_inv", 600, 0, ""},
             {"colwise codes", 60000, 1, "codes[r=7, c=1] tile (0,1) input 0x7FC00000: golden 0x7F, gpu 0x00"},
             {"colwise scale_inv", 600, 0, ""}};
  GpuValidation c = a;  // a second case of the first op
  c.input = "normal";
  c.gpu_ms = 0.020;
  return {a, b, c};
}

template <class T>
const std::vector<T>& col(const Table& t, const std::string& name) {
  const Column* c = t.find(name);
  REQUIRE(c != nullptr);
  REQUIRE(std::holds_alternative<std::vector<T>>(c->values));
  return std::get<std::vector<T>>(c->values);
}
const Table& table(const RunRecord& r, const std::string& name) {
  for (const Table& t : r.tables)
    if (t.name == name) return t;
  FAIL("no table " << name);
  throw;
}
}  // namespace

TEST_CASE("gpu_validation record: cases ops and parts tables with counts and first mismatch and timing", "[gpu_validation]") {
  const nlohmann::json params{{"op", "quantize"}, {"shape", {300, 200}}, {"seed", 3}, {"gpu", "test"}};
  const RunRecord r = gpu_validation_record(params, sample_results());
  CHECK(r.kind == "gpu_validation");
  CHECK(r.hash == run_hash("gpu_validation", params));
  CHECK(r.summary == "2 of 3 bit-exact, 3 mismatches");
  const Table& cases = table(r, "cases");
  REQUIRE(cases.rows() == 3);
  CHECK(col<std::int64_t>(cases, "mismatches") == std::vector<std::int64_t>{0, 3, 0});
  CHECK(col<std::int64_t>(cases, "bit_exact") == std::vector<std::int64_t>{1, 0, 1});
  CHECK(col<std::int64_t>(cases, "elements") == std::vector<std::int64_t>{60000, 60000, 60000});
  CHECK(col<std::int64_t>(cases, "compared") == std::vector<std::int64_t>{120006, 121200, 120006});
  CHECK(col<std::string>(cases, "groups")[0] == "100,200");
  CHECK(col<std::string>(cases, "first_mismatch")[1].rfind("rowwise codes: codes[r=3, c=129]", 0) == 0);
  CHECK(col<double>(cases, "gpu_ms")[0] == 0.012);
  CHECK(cases.attrs.at("failing") == 1);
  const Table& ops = table(r, "ops");
  REQUIRE(ops.rows() == 2);  // two ops, in first-seen order
  CHECK(col<std::string>(ops, "op")[0] == "quant_128x128_e4m3_paper_swiglu_from_bf16");
  CHECK(col<std::int64_t>(ops, "cases") == std::vector<std::int64_t>{2, 1});
  CHECK(col<std::int64_t>(ops, "elements") == std::vector<std::int64_t>{120000, 60000});
  CHECK(col<std::int64_t>(ops, "mismatches") == std::vector<std::int64_t>{0, 3});
  CHECK(col<double>(ops, "gpu_ms")[0] == Approx(0.032));
  CHECK(col<std::string>(ops, "first_mismatch")[1].rfind("adversarial seed 3: rowwise codes:", 0) == 0);
  CHECK(col<std::string>(ops, "first_mismatch")[0].empty());
  const Table& parts = table(r, "parts");
  CHECK(parts.rows() == 10);
  CHECK(col<std::int64_t>(parts, "case")[3] == 1);
}

TEST_CASE("gpu_validation record: written to the HDF5 store and read back and not written twice", "[gpu_validation]") {
  const fs::path dir = fs::temp_directory_path() / ("fp8flow-gpuval-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  const fs::path file = dir / "sub" / "report.h5";
  const nlohmann::json params{{"op", "all"}, {"shape", {300, 200}}, {"seed", 3}, {"gpu", "test"}};
  const RunRecord r = gpu_validation_record(params, sample_results());
  CHECK(append_run_once(file, r));
  CHECK_FALSE(append_run_once(file, r));  // the same run again: skipped, file unchanged
  {
    const ResultsFile f(file);
    REQUIRE(f.hashes() == std::vector<std::string>{r.hash});
    const RunInfo info = f.info(r.hash);
    CHECK(info.kind == "gpu_validation");
    CHECK(info.summary == r.summary);
    const RunRecord back = f.read(r.hash, false);
    const Table& cases = table(back, "cases");
    CHECK(col<std::string>(cases, "op") == col<std::string>(table(r, "cases"), "op"));
    CHECK(col<std::int64_t>(cases, "mismatches") == std::vector<std::int64_t>{0, 3, 0});
    CHECK(col<double>(cases, "cpu_ms") == col<double>(table(r, "cases"), "cpu_ms"));
    CHECK(col<std::string>(table(back, "parts"), "first_mismatch")[5].find("golden 0x7F, gpu 0x00") != std::string::npos);
    CHECK(col<std::int64_t>(table(back, "ops"), "cases") == std::vector<std::int64_t>{2, 1});
  }
  // Another validation (other params) appends a second run.
  nlohmann::json p2 = params;
  p2["seed"] = 4;
  CHECK(append_run_once(file, gpu_validation_record(p2, sample_results())));
  CHECK(ResultsFile(file).hashes().size() == 2);
  fs::remove_all(dir);
}

// ---- validate --gpu --op gemm / --op dispatch records ------------------------------------------------

namespace {
// Four GEMMs of one validate --op gemm run, one per way a case can end: exact and in bound, bit
// mismatches against a fitted preset, a bound violation, a cuBLASLt error.
std::vector<GemmValidationCase> sample_gemm() {
  GemmValidationCase a;
  a.scaling = "tensor";
  a.out = "f32";
  a.model = "h100";
  a.m = 64, a.n = 48, a.k = 256;
  a.label = "tensor fast_accum=0 f32 [64, 48, 256] vs h100";
  a.algo = "algo 66 tile 20 stages 8";
  a.compared = a.bit_exact = 64 * 48;
  a.worst_err_over_bound = 0.25;
  GemmValidationCase b = a;
  b.scaling = "1x128_128x128";
  b.out = "bf16";
  b.label = "1x128_128x128 fast_accum=0 bf16 [64, 48, 256] vs h100";
  b.bit_exact = b.compared - 2;
  b.first_mismatch = "out[3, 17]: model 0x3F80 (1), gpu 0x3F81 (1.0078125), exact 1.00390625; A row 3: 38; B row 17: 38";
  GemmValidationCase c = a;
  c.fast_accum = true;
  c.model = "h100_fast";
  c.label = "tensor fast_accum=1 f32 [64, 48, 256] vs h100_fast";
  c.bound_violations = 3;
  c.worst_err_over_bound = 1.5;
  c.first_violation = "out[0, 5]: gpu 12.5, exact 12, |err| 0.5 > bound 0.333";
  GemmValidationCase d = a;
  d.scaling = "1x128_1x128";
  d.fast_accum = true;
  d.model = "h100_fast";
  d.label = "1x128_1x128 fast_accum=1 f32 [64, 48, 256] vs h100_fast";
  d.algo = "";
  d.compared = d.bit_exact = 0;
  d.worst_err_over_bound = 0;
  d.error = "cublasLtMatmulAlgoGetHeuristic: CUBLAS_STATUS_NOT_SUPPORTED";
  return {a, b, c, d};
}

// Two ranks of validate --op dispatch (cuda::EpValidationResult::parts): rank 1's fp8 codes differ once.
std::vector<GpuValidation> sample_dispatch() {
  std::vector<GpuValidation> v;
  for (int q = 0; q < 2; ++q) {
    GpuValidation r;
    r.op = fmt::format("ep_dispatch_combine rank {} of 2", q);
    r.input = "moe inputs seed 1";
    r.rows = 384, r.cols = 256;
    r.groups = {128, 256};
    r.oracle = "ep_routing model + fp8_flow dataflow";
    r.parts = {{"received token ids (fp8 dispatch)", 384, 0, ""},
               {"fp8 dispatch xp codes", 384 * 256, q == 1 ? 1u : 0u,
                q == 1 ? "row 5 (expert 2, token 9 slot 1) column 7: cpu 0x38, gpu 0x39" : ""},
               {"fp8 dispatch xp scale_inv", 384 * 2, 0, ""},
               {"y = combine (bf16, home rank)", 32 * 256, 0, ""}};
    r.cpu_ms = 120.5;
    r.gpu_ms = 35.25;
    v.push_back(std::move(r));
  }
  return v;
}

nlohmann::json gemm_params() {
  return {{"op", "gemm"}, {"shape", {64, 48, 256}}, {"dist", "activations"}, {"seed", 1}, {"accum", "auto"},
          {"gpu", "NVIDIA H100 80GB HBM3"}, {"build", "abc1234"}};
}
nlohmann::json dispatch_params() {
  return {{"op", "dispatch"}, {"preset", "tiny"}, {"shape", {32, 256, 128, 8, 2, 128}},
          {"moe_shape", "tokens 32 hidden 256 ffn 128 experts 8 topk 2 align 128 score softmax"},
          {"dist", "moe_inputs"}, {"seed", 1}, {"ranks", 2},
          {"gpu", "NVIDIA H100 80GB HBM3"}, {"gpus", {"NVIDIA H100 80GB HBM3", "NVIDIA H100 80GB HBM3"}},
          {"nccl", "2.21.5"}, {"build", "abc1234"}};
}

// Equal values, NaN equal to NaN (the bit-exact fraction of a GEMM that cuBLASLt refused).
bool same_column(const Column& a, const Column& b) {
  if (a.values.index() != b.values.index()) return false;
  if (const auto* x = std::get_if<std::vector<double>>(&a.values)) {
    const auto& y = std::get<std::vector<double>>(b.values);
    if (x->size() != y.size()) return false;
    for (std::size_t i = 0; i < x->size(); ++i)
      if (!((*x)[i] == y[i] || (std::isnan((*x)[i]) && std::isnan(y[i])))) return false;
    return true;
  }
  return a.values == b.values;
}

// Every table of `want` is in `got` with the same description, attributes, columns (order, units, values).
void require_same_tables(const RunRecord& want, const RunRecord& got) {
  REQUIRE(got.tables.size() == want.tables.size());
  for (const Table& t : want.tables) {
    INFO("table " << t.name);
    const Table& b = table(got, t.name);
    CHECK(b.description == t.description);
    CHECK(b.attrs == t.attrs);
    REQUIRE(b.columns.size() == t.columns.size());
    for (std::size_t j = 0; j < t.columns.size(); ++j) {
      INFO("column " << t.columns[j].name);
      CHECK(b.columns[j].name == t.columns[j].name);
      CHECK(b.columns[j].units == t.columns[j].units);
      CHECK(same_column(b.columns[j], t.columns[j]));
    }
  }
}

std::string file_bytes(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}
}  // namespace

TEST_CASE("gpu_validation gemm record: one row per GEMM with its configuration, bit-exact fraction and bound check",
          "[gpu_validation][gemm]") {
  const auto g = sample_gemm();
  const RunRecord r = gemm_validation_record(gemm_params(), "activations seed 1", g);
  CHECK(r.kind == "gpu_validation");
  CHECK(r.hash == run_hash("gpu_validation", gemm_params()));
  CHECK(r.label == "gpu_validation gemm 4 cases");
  const std::size_t compared = 3 * 64 * 48, exact = compared - 2;
  CHECK(r.summary == fmt::format("1 of 4 GEMMs pass, {} of {} outputs bit-exact ({:.4f}%), 3 bound violations, 1 errors",
                                 exact, compared, 100.0 * double(exact) / double(compared)));

  const Table& cases = table(r, "cases");
  REQUIRE(cases.rows() == 4);
  SECTION("the op name spells scaling, output type, fast accumulation and the model") {
    CHECK(col<std::string>(cases, "op") ==
          std::vector<std::string>{"gemm_e4m3_tensor_f32_vs_h100", "gemm_e4m3_1x128_128x128_bf16_vs_h100",
                                   "gemm_e4m3_tensor_f32_fast_accum_vs_h100_fast",
                                   "gemm_e4m3_1x128_1x128_f32_fast_accum_vs_h100_fast"});
    CHECK(col<std::string>(cases, "scaling")[1] == "1x128_128x128");
    CHECK(col<std::int64_t>(cases, "fast_accum") == std::vector<std::int64_t>{0, 0, 1, 1});
    CHECK(col<std::string>(cases, "out")[1] == "bf16");
    CHECK(col<std::string>(cases, "oracle")[2] == "h100_fast");
    CHECK(col<std::int64_t>(cases, "k") == std::vector<std::int64_t>{256, 256, 256, 256});
    CHECK(col<std::string>(cases, "input")[0] == "activations seed 1");
  }
  SECTION("bit-exact count and fraction, mismatches and the first mismatch come from the comparison") {
    CHECK(col<std::int64_t>(cases, "bit_exact_count") == std::vector<std::int64_t>{3072, 3070, 3072, 0});
    CHECK(col<std::int64_t>(cases, "mismatches") == std::vector<std::int64_t>{0, 2, 0, 0});
    CHECK(col<std::int64_t>(cases, "bit_exact") == std::vector<std::int64_t>{1, 0, 1, 0});  // an error is not exact
    const auto& f = col<double>(cases, "bit_exact_fraction");
    CHECK(f[0] == 1.0);
    CHECK(f[1] == 3070.0 / 3072.0);
    CHECK(std::isnan(f[3]));  // nothing compared
    CHECK(col<std::string>(cases, "first_mismatch")[1] == g[1].first_mismatch);
  }
  SECTION("the error bound, the cuBLASLt error and the exit-status rule") {
    CHECK(col<std::int64_t>(cases, "bound_violations") == std::vector<std::int64_t>{0, 0, 3, 0});
    CHECK(col<double>(cases, "worst_err_over_bound") == std::vector<double>{0.25, 0.25, 1.5, 0});
    CHECK(col<std::string>(cases, "first_violation")[2] == g[2].first_violation);
    CHECK(col<std::int64_t>(cases, "bound_ok") == std::vector<std::int64_t>{1, 1, 0, 0});
    CHECK(col<std::string>(cases, "error")[3] == g[3].error);
    CHECK(col<std::int64_t>(cases, "ok") == std::vector<std::int64_t>{1, 0, 0, 0});
    CHECK(cases.attrs.at("failing") == 3);
    CHECK(cases.attrs.at("errors") == 1);
    CHECK(cases.attrs.at("bound_violations") == 3);
    CHECK(cases.attrs.at("mismatches") == 2);
    CHECK(cases.attrs.at("bit_exact_fraction").get<double>() == double(exact) / double(compared));
  }
  SECTION("against a model that is not a fitted preset only the bound fails a case") {
    GemmValidationCase m = g[1];
    m.model = "promote";
    m.bits_required = false;
    CHECK(m.ok());
    m.bound_violations = 1;
    CHECK_FALSE(m.ok());
    GemmValidationCase e = g[3];
    e.bits_required = false;
    CHECK_FALSE(e.ok());
    GemmValidationCase promote = g[1];  // the same mismatching GEMM against a model outside the fitted presets
    promote.model = "promote";
    promote.bits_required = false;
    const RunRecord rm = gemm_validation_record(gemm_params(), "x", {g[1], promote});
    CHECK(col<std::int64_t>(table(rm, "cases"), "ok") == std::vector<std::int64_t>{0, 1});
    CHECK(col<std::int64_t>(table(rm, "cases"), "bits_required") == std::vector<std::int64_t>{1, 0});
  }
  SECTION("parts: per GEMM the output bits and the error bound") {
    const Table& parts = table(r, "parts");
    REQUIRE(parts.rows() == 8);
    CHECK(col<std::int64_t>(parts, "case") == std::vector<std::int64_t>{0, 0, 1, 1, 2, 2, 3, 3});
    CHECK(col<std::string>(parts, "part")[0] == "output bits vs h100");
    CHECK(col<std::string>(parts, "part")[5] == "error bound");
    CHECK(col<std::int64_t>(parts, "mismatches") == std::vector<std::int64_t>{0, 0, 2, 0, 0, 3, 0, 0});
    CHECK(col<std::string>(parts, "first_mismatch")[6] == "cuBLASLt error: " + g[3].error);
    const Table& ops = table(r, "ops");
    REQUIRE(ops.rows() == 4);
    CHECK(col<std::int64_t>(ops, "failing") == std::vector<std::int64_t>{0, 1, 1, 1});
    CHECK(col<std::string>(ops, "first_mismatch")[2] == "error bound: " + g[2].first_violation);
    CHECK(col<std::string>(ops, "first_mismatch")[1] == "output bits: " + g[1].first_mismatch);
  }
}

TEST_CASE("gpu_validation dispatch record: one case per rank, one part per compared tensor", "[gpu_validation][ep]") {
  const RunRecord r = gpu_validation_record(dispatch_params(), sample_dispatch());
  CHECK(r.label == "gpu_validation dispatch 2 cases");
  CHECK(r.summary == "1 of 2 bit-exact, 1 mismatches");
  const Table& cases = table(r, "cases");
  CHECK(col<std::int64_t>(cases, "bit_exact") == std::vector<std::int64_t>{1, 0});
  CHECK(col<std::string>(cases, "first_mismatch")[1] ==
        "fp8 dispatch xp codes: row 5 (expert 2, token 9 slot 1) column 7: cpu 0x38, gpu 0x39");
  CHECK(col<std::string>(cases, "groups")[0] == "128,256");
  const Table& parts = table(r, "parts");
  REQUIRE(parts.rows() == 8);
  CHECK(col<std::string>(parts, "part")[3] == "y = combine (bf16, home rank)");
  CHECK(col<std::int64_t>(parts, "mismatches") == std::vector<std::int64_t>{0, 0, 0, 0, 0, 1, 0, 0});
}

TEST_CASE("gpu_validation gemm and dispatch runs round-trip through the HDF5 store and are not written twice",
          "[gpu_validation]") {
  const fs::path dir = fs::temp_directory_path() / ("fp8flow-gpuval-ops-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  const fs::path file = dir / "report.h5";
  const RunRecord gemm = gemm_validation_record(gemm_params(), "activations seed 1", sample_gemm());
  const RunRecord disp = gpu_validation_record(dispatch_params(), sample_dispatch());
  REQUIRE(gemm.hash != disp.hash);
  CHECK(store_gpu_validation(file, gemm) == fmt::format("written to {} as run {}", file.string(), gemm.hash));
  CHECK(append_run_once(file, disp));
  const std::string before = file_bytes(file);
  SECTION("the same validation again is recognised by its hash and leaves the file byte for byte") {
    CHECK(store_gpu_validation(file, gemm) ==
          fmt::format("{} already holds this validation as run {}; not written again", file.string(), gemm.hash));
    CHECK_FALSE(append_run_once(file, disp));
    CHECK(file_bytes(file) == before);
    CHECK(ResultsFile(file).hashes().size() == 2);
  }
  SECTION("every field reads back through the store's reader") {
    const ResultsFile f(file);
    std::vector<std::string> want{gemm.hash, disp.hash};
    std::sort(want.begin(), want.end());
    REQUIRE(f.hashes() == want);
    for (const RunRecord* r : {&gemm, &disp}) {
      INFO("run " << r->label);
      const RunInfo info = f.info(r->hash);
      CHECK(info.kind == "gpu_validation");
      CHECK(info.label == r->label);
      CHECK(info.summary == r->summary);
      CHECK(info.experiment == "validate --gpu");
      CHECK(info.params == r->params);  // op, shape, dist, seed, gpu, build, ...
      const RunRecord back = f.read(r->hash, false);
      CHECK(back.provenance.git_commit == r->provenance.git_commit);
      CHECK_FALSE(back.provenance.end_time.empty());
      require_same_tables(*r, back);
    }
  }
  SECTION("a file that is not an fp8flow store is refused by name and left as it was") {
    const fs::path bad = dir / "notes.h5";
    { std::ofstream(bad) << "not hdf5\n"; }
    try {
      append_run_once(bad, gemm);
      FAIL("no error for " << bad);
    } catch (const std::exception& e) {
      CHECK(std::string(e.what()).find(bad.string()) != std::string::npos);
    }
    CHECK(file_bytes(bad) == "not hdf5\n");
  }
  fs::remove_all(dir);
}

using fp8flow::test::CliRun;
using fp8flow::test::fp8flow_cli;

// -o is checked before any GPU work (and without a GPU), for every --op.
TEST_CASE("validate --gpu -o refuses a file that is not an fp8flow store for every op, before running", "[gpu_validation][cli]") {
  REQUIRE(fs::exists(fs::path(FP8FLOW_BINARY_DIR) / "fp8flow"));
  const fs::path d = fs::temp_directory_path() / ("fp8flow-gpuval-o-" + std::to_string(::getpid()));
  fs::create_directories(d);
  const fs::path bad = d / "notes.h5";
  { std::ofstream(bad) << "not hdf5\n"; }
  for (const std::string op : {"quantize", "all", "gemm", "dispatch"}) {
    const CliRun r = fp8flow_cli(fmt::format("validate --gpu --op {} -o '{}'", op, bad.string()));
    INFO(op << ": " << r.output);
    CHECK(r.status == 1);
    CHECK(r.output.find(bad.string()) != std::string::npos);
    CHECK(r.output.find("no CUDA device") == std::string::npos);  // refused before looking for a GPU
  }
  CHECK(file_bytes(bad) == "not hdf5\n");
  fs::remove_all(d);
}

// The option checks run before the GPU is looked for, so they are tested on machines without one.
TEST_CASE("validate --gpu rejects bad options (exit 2) and bad inputs (exit 1) with a message", "[gpu_validation][cli]") {
  REQUIRE(fs::exists(fs::path(FP8FLOW_BINARY_DIR) / "fp8flow"));
  const fs::path d = fs::temp_directory_path() / ("fp8flow-gpuval-cli-" + std::to_string(::getpid()));
  fs::create_directories(d);
  if (fp8flow_cli("validate --gpu --rule bogus").output.find("built without CUDA") != std::string::npos) {
    WARN("fp8flow was built without CUDA: validate --gpu has no options to check here");
    return;
  }
  // Invalid choices and conflicting options are usage errors (exit 2, docs/cli.md); bad files exit 1.
  const auto expect = [](const CliRun& r, const std::string& text, int status = 1) {
    INFO(r.output);
    CHECK(r.status == status);
    CHECK(r.output.find(text) != std::string::npos);
  };
  expect(fp8flow_cli("validate --gpu --op quantize --rule mx_floor"), "--rule 'mx_floor'", 2);
  expect(fp8flow_cli("validate --gpu --op quantize --granularity 1x32"), "--granularity '1x32'", 2);
  expect(fp8flow_cli("validate --gpu --input " + (d / "missing.npy").string()), "missing.npy");
  const std::vector<std::uint8_t> u8(12, 1);
  write_npy(d / "u8.npy", make_npy<std::uint8_t>({3, 4}, std::span<const std::uint8_t>(u8)));
  expect(fp8flow_cli("validate --gpu --input " + (d / "u8.npy").string()), "dtype uint8 holds raw codes");
  const std::vector<float> f3(8, 1.0f);
  write_npy(d / "f3.npy", make_npy<float>({2, 2, 2}, std::span<const float>(f3)));
  expect(fp8flow_cli("validate --gpu --input " + (d / "f3.npy").string()), "(2, 2, 2)");
  write_npy(d / "f2.npy", make_npy<float>({2, 4}, std::span<const float>(f3)));
  expect(fp8flow_cli("validate --gpu --shape 4,4 --input " + (d / "f2.npy").string()), "drop --shape", 2);
  fs::remove_all(d);
}
