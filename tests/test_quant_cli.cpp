// Bad input to the quantization commands: exit 1, a message naming the file/field/value, nothing written.
#include <catch2/catch.hpp>

#include <fmt/format.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>

#include <nlohmann/json.hpp>

#include "cli_runner.hpp"
#include "io/npy.hpp"

namespace fs = std::filesystem;
using namespace fp8flow;

namespace {
using Run = test::CliRun;
using test::fp8flow_cli;
fs::path workdir() {
  const fs::path d = fs::temp_directory_path() / fmt::format("fp8flow_quant_cli_{}", ::getpid());
  fs::create_directories(d);
  return d;
}
void write_f32(const fs::path& p, std::vector<std::size_t> shape, const std::vector<float>& v) {
  io::write_npy(p, io::make_npy<float>(std::move(shape), std::span<const float>(v)));
}
bool nothing_under(const fs::path& prefix) {
  for (const char* ext : {".codes.npy", ".scale_inv.npy", ".meta.json"})
    if (fs::exists(fs::path(prefix) += ext)) return false;
  return true;
}
}  // namespace

TEST_CASE("quantize CLI rejects bad input (exit 1) and bad options (exit 2) and writes nothing", "[quant][cli]") {
  REQUIRE(fs::exists(fs::path(FP8FLOW_BINARY_DIR) / "fp8flow"));  // built first: add_dependencies in tests/CMakeLists.txt
  const fs::path d = workdir();
  const fs::path out = d / "out";
  std::vector<float> good(4 * 256);
  for (std::size_t i = 0; i < good.size(); ++i) good[i] = float(i % 97) - 48.0f;
  write_f32(d / "good.npy", {4, 256}, good);

  SECTION("an empty tensor") {
    write_f32(d / "empty.npy", {0, 128}, {});
    const Run r = fp8flow_cli(fmt::format("quantize '{}' '{}'", (d / "empty.npy").string(), out.string()));
    CHECK(r.status == 1);
    CHECK_THAT(r.output, Catch::Contains("empty.npy") && Catch::Contains("empty"));
    CHECK(nothing_under(out));
  }
  SECTION("a 1-D tensor") {
    write_f32(d / "vec.npy", {256}, std::vector<float>(256, 1.0f));
    const Run r = fp8flow_cli(fmt::format("quantize '{}' '{}'", (d / "vec.npy").string(), out.string()));
    CHECK(r.status == 1);
    CHECK_THAT(r.output, Catch::Contains("vec.npy") && Catch::Contains("2-D"));
    CHECK(nothing_under(out));
  }
  SECTION("a granularity without RxC, ue8m0 storage of fp32 scales, eps for a rule without one") {
    const std::string in = (d / "good.npy").string();
    Run r = fp8flow_cli(fmt::format("quantize '{}' '{}' --granularity 128", in, out.string()));
    CHECK(r.status == 2);
    CHECK_THAT(r.output, Catch::Contains("granularity '128'"));
    r = fp8flow_cli(fmt::format("quantize '{}' '{}' --scale te_fp32 --scale-format ue8m0", in, out.string()));
    CHECK(r.status == 2);
    CHECK_THAT(r.output, Catch::Contains("te_fp32") && Catch::Contains("powers of two"));
    r = fp8flow_cli(fmt::format("quantize '{}' '{}' --scale deepgemm --eps 1e-10", in, out.string()));
    CHECK(r.status == 2);
    CHECK_THAT(r.output, Catch::Contains("--eps"));
    r = fp8flow_cli(fmt::format("quantize '{}' '{}' --scale te_pow3", in, out.string()));
    CHECK(r.status == 2);
    CHECK_THAT(r.output, Catch::Contains("te_pow3"));
    CHECK(nothing_under(out));
  }
  SECTION("NaN and Inf are quantized per the rule and counted") {
    std::vector<float> v = good;
    v[3] = std::numeric_limits<float>::quiet_NaN();
    v[300] = -std::numeric_limits<float>::infinity();
    write_f32(d / "nan.npy", {4, 256}, v);
    const Run r = fp8flow_cli(fmt::format("quantize '{}' '{}'", (d / "nan.npy").string(), out.string()));
    CHECK(r.status == 0);
    CHECK_THAT(r.output, Catch::Contains("1 NaN and 1 Inf"));
    CHECK(!nothing_under(out));
  }
  fs::remove_all(d);
}

TEST_CASE("dequantize and transpose CLI reject mismatched or unsuitable files", "[quant][cli]") {
  REQUIRE(fs::exists(fs::path(FP8FLOW_BINARY_DIR) / "fp8flow"));  // built first: add_dependencies in tests/CMakeLists.txt
  const fs::path d = workdir();
  std::vector<float> good(4 * 256);
  for (std::size_t i = 0; i < good.size(); ++i) good[i] = float(i % 97) - 48.0f;
  write_f32(d / "good.npy", {4, 256}, good);
  const std::string in = (d / "good.npy").string();
  REQUIRE(fp8flow_cli(fmt::format("quantize '{}' '{}'", in, (d / "q").string())).status == 0);
  REQUIRE(fp8flow_cli(fmt::format("quantize '{}' '{}' --scale te_fp32", in, (d / "f").string())).status == 0);

  SECTION("scales of the wrong shape") {
    write_f32(fs::path(d / "q") += ".scale_inv.npy", {4, 3}, std::vector<float>(12, 1.0f));
    const Run r = fp8flow_cli(fmt::format("dequantize '{}' '{}'", (d / "q").string(), (d / "dq.npy").string()));
    CHECK(r.status == 1);
    CHECK_THAT(r.output, Catch::Contains("q.scale_inv.npy") && Catch::Contains("(4, 2)"));
    CHECK(!fs::exists(d / "dq.npy"));
  }
  SECTION("codes of the wrong shape") {
    io::write_npy(fs::path(d / "q") += ".codes.npy", io::make_npy<std::uint8_t>({4, 255}, std::vector<std::uint8_t>(4 * 255)));
    const Run r = fp8flow_cli(fmt::format("dequantize '{}' '{}'", (d / "q").string(), (d / "dq.npy").string()));
    CHECK(r.status == 1);
    CHECK_THAT(r.output, Catch::Contains("q.codes.npy"));
    CHECK(!fs::exists(d / "dq.npy"));
  }
  SECTION("a missing prefix") {
    const Run r = fp8flow_cli(fmt::format("dequantize '{}' '{}'", (d / "nope").string(), (d / "dq.npy").string()));
    CHECK(r.status == 1);
    CHECK_THAT(r.output, Catch::Contains("nope.meta.json"));
  }
  SECTION("non-power-of-two scales given to a scaling-aware transpose") {
    const Run r = fp8flow_cli(fmt::format("transpose '{}' '{}' --method exact", (d / "f").string(), (d / "t").string()));
    CHECK(r.status == 1);
    CHECK_THAT(r.output, Catch::Contains("scale_inv[0, 0]") && Catch::Contains("not a power of two"));
    CHECK(nothing_under(d / "t"));
  }
  SECTION("groups that do not sum to the rows") {
    const Run r = fp8flow_cli(
        fmt::format("transpose '{}' '{}' --method paper_kernel --groups 1,2", (d / "q").string(), (d / "t").string()));
    CHECK(r.status == 1);
    CHECK_THAT(r.output, Catch::Contains("sum to 3") && Catch::Contains("4 rows"));
    CHECK(nothing_under(d / "t"));
  }
  SECTION("stochastic rounding or a seed with a method that does not round") {
    for (const char* opts : {"--method paper_kernel --round stochastic", "--method naive --seed 5"}) {
      const Run r = fp8flow_cli(fmt::format("transpose '{}' '{}' {}", (d / "q").string(), (d / "t").string(), opts));
      CHECK(r.status == 2);
      CHECK_THAT(r.output, Catch::Contains("only --method exact rounds"));
      CHECK(nothing_under(d / "t"));
    }
  }
  SECTION("transpose-study --out refuses a file input and leaves the store alone") {
    const Run r = fp8flow_cli(fmt::format("transpose-study --dist 'file:{}' --out '{}'", in, (d / "s.h5").string()));
    CHECK(r.status == 2);
    CHECK_THAT(r.output, Catch::Contains("--out") && Catch::Contains("synthetic"));
    CHECK(!fs::exists(d / "s.h5"));
  }
  SECTION("the column copy's meta.json records how it was made: method, rounding, stochastic seed") {
    const auto origin = [&](const char* opts) {
      REQUIRE(fp8flow_cli(fmt::format("transpose '{}' '{}' {}", (d / "q").string(), (d / "t").string(), opts)).status ==
              0);
      std::ifstream f(fs::path(d / "t") += ".meta.json");
      return nlohmann::json::parse(f).at("origin").get<std::string>();
    };
    CHECK(origin("--method paper_kernel") == "transpose:paper_kernel");
    CHECK(origin("--method exact") == "transpose:exact");
    CHECK(origin("--method exact --round rz") == "transpose:exact round=rz");
    CHECK(origin("--method exact --round stochastic --seed 42") == "transpose:exact round=stochastic seed=42");
  }
  SECTION("a good transpose round trip: exact keeps the rowwise values") {
    REQUIRE(fp8flow_cli(fmt::format("transpose '{}' '{}' --method exact", (d / "q").string(), (d / "t").string()))
                .status == 0);
    REQUIRE(fp8flow_cli(fmt::format("dequantize '{}' '{}'", (d / "t").string(), (d / "t.npy").string())).status == 0);
    REQUIRE(fp8flow_cli(fmt::format("dequantize '{}' '{}'", (d / "q").string(), (d / "q.npy").string())).status == 0);
    const auto t = io::read_npy(d / "t.npy"), q = io::read_npy(d / "q.npy");
    REQUIRE(t.shape == std::vector<std::size_t>{256, 4});
    const auto tv = t.view<float>(), qv = q.view<float>();
    for (std::size_t r = 0; r < 4; ++r)
      for (std::size_t c = 0; c < 256; ++c) REQUIRE(tv[c * 4 + r] == qv[r * 256 + c]);
  }
  fs::remove_all(d);
}
