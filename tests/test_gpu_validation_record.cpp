// The gpu_validation run of `fp8flow validate --gpu -o report.h5` (src/io/gpu_validation_record.*): built
// from validation results, written to the HDF5 store, read back through the store's reader (what `ls`,
// `show` and `export` use). CPU only: the GPU side just fills the structs.
#include <fmt/format.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
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
  CHECK(write_gpu_validation(file, r));
  CHECK_FALSE(write_gpu_validation(file, r));  // the same run again: skipped, file unchanged
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
  CHECK(write_gpu_validation(file, gpu_validation_record(p2, sample_results())));
  CHECK(ResultsFile(file).hashes().size() == 2);
  fs::remove_all(dir);
}

using fp8flow::test::CliRun;
using fp8flow::test::fp8flow_cli;

// The option checks run before the GPU is looked for, so they are tested on machines without one.
TEST_CASE("validate --gpu rejects bad quantize options and inputs with exit 1 and a message", "[gpu_validation][cli]") {
  REQUIRE(fs::exists(fs::path(FP8FLOW_BINARY_DIR) / "fp8flow"));
  const fs::path d = fs::temp_directory_path() / ("fp8flow-gpuval-cli-" + std::to_string(::getpid()));
  fs::create_directories(d);
  if (fp8flow_cli("validate --gpu --rule bogus").output.find("built without CUDA") != std::string::npos) {
    WARN("fp8flow was built without CUDA: validate --gpu has no options to check here");
    return;
  }
  const auto expect = [](const CliRun& r, const std::string& text) {
    INFO(r.output);
    CHECK(r.status == 1);
    CHECK(r.output.find(text) != std::string::npos);
  };
  expect(fp8flow_cli("validate --gpu --op quantize --rule mx_floor"), "--rule 'mx_floor'");
  expect(fp8flow_cli("validate --gpu --op quantize --granularity 1x32"), "--granularity '1x32'");
  expect(fp8flow_cli("validate --gpu --input " + (d / "missing.npy").string()), "missing.npy");
  const std::vector<std::uint8_t> u8(12, 1);
  write_npy(d / "u8.npy", make_npy<std::uint8_t>({3, 4}, std::span<const std::uint8_t>(u8)));
  expect(fp8flow_cli("validate --gpu --input " + (d / "u8.npy").string()), "expected a non-empty 2-D float32 array");
  const std::vector<float> f3(8, 1.0f);
  write_npy(d / "f3.npy", make_npy<float>({2, 2, 2}, std::span<const float>(f3)));
  expect(fp8flow_cli("validate --gpu --input " + (d / "f3.npy").string()), "(2, 2, 2)");
  write_npy(d / "f2.npy", make_npy<float>({2, 4}, std::span<const float>(f3)));
  expect(fp8flow_cli("validate --gpu --shape 4,4 --input " + (d / "f2.npy").string()), "drop --shape");
  fs::remove_all(d);
}
