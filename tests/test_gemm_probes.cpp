// The fitted H100 accumulation presets (h100, h100_fast) against cuBLASLt outputs recorded on an NVIDIA H100
// (data/gemm_probes_h100/: `fp8flow gemm-probes --gpu` output, docs/gpu.md "Accumulation probes"), so the fit
// stays tested without a GPU; plus the closed-form behaviours the probes established.
#include <catch2/catch.hpp>
#include <fmt/format.h>

#include <bit>
#include <cmath>
#include <span>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <vector>

#include "formats/convert.hpp"
#include "io/errors.hpp"
#include "reference/gemm.hpp"
#include "reference/gemm_probes.hpp"

using namespace fp8flow;

namespace {
const std::string kDir = std::string(FP8FLOW_SOURCE_DIR) + "/data/gemm_probes_h100";

float dot(const std::vector<double>& a, AccumModel m) {  // A row a, B = ones, tensor unit scales
  std::vector<std::uint8_t> ca(a.size()), cb(a.size());
  for (std::size_t k = 0; k < a.size(); ++k) {
    ca[k] = std::uint8_t(encode(e4m3, a[k], kRneSatfinite));
    cb[k] = std::uint8_t(encode(e4m3, 1.0, kRneSatfinite));
  }
  const std::vector<float> one{1.0f};
  const GemmOperand A{ca, 1, a.size(), &e4m3, one, kTensor}, B{cb, 1, a.size(), &e4m3, one, kTensor};
  return gemm_golden(A, B, m, AccumParams{})[0];
}
}  // namespace

TEST_CASE("gemm presets h100 and h100_fast parse by name and carry the fitted parameters", "[gemm][probes]") {
  CHECK(parse_accum_model("h100") == AccumModel::h100);
  CHECK(parse_accum_model("h100_fast") == AccumModel::h100_fast);
  CHECK(to_string(AccumModel::h100_fast) == "h100_fast");
  const AccumParams p = accum_preset_params(AccumModel::h100, AccumParams{});
  CHECK(p.acc_fraction_bits == 13);
  CHECK(p.group == 32);
  CHECK(p.promote_interval == 128);
  CHECK(p.align_exponent_sum);
  CHECK(p.truncate_result);
  CHECK_FALSE(p.fast_accum);
  CHECK(accum_preset_params(AccumModel::h100_fast, AccumParams{}).fast_accum);
  CHECK_THROWS_AS(parse_accum_model("h200"), InputError);
}

TEST_CASE("h100 presets: the closed-form behaviours the probes showed", "[gemm][probes]") {
  // 256 at k = 0, then 1023 x 2^-6: within the first 128-product interval the small terms are truncated
  // against 2^(8-13) = 2^-5 and vanish; the 7 later intervals keep theirs (N_C = 128). Fast accumulation
  // never promotes, so all are lost.
  std::vector<double> a(1024, 0x1.0p-6);
  a[0] = 256.0;
  CHECK(dot(a, AccumModel::h100) == 256.0f + 896.0f * 0x1.0p-6f);
  CHECK(dot(a, AccumModel::h100_fast) == 256.0f);
  CHECK(dot(a, AccumModel::exact) == 256.0f + 1023.0f * 0x1.0p-6f);
  // +448, -448 at k = 640, 641 and 2^-9 at k = 660: the whole k-block [640, 672) is aligned together (group
  // 32), so the small term is lost although the pair cancelled before it; at k = 672 it survives.
  std::vector<double> b(1024, 0.0);
  b[640] = 448.0, b[641] = -448.0;
  b[660] = 0x1.0p-9;
  CHECK(dot(b, AccumModel::h100) == 0.0f);
  b[660] = 0.0, b[672] = 0x1.0p-9;
  CHECK(dot(b, AccumModel::h100) == 0x1.0p-9f);
  // Alignment by the operands' exponent sum: 1.5 x 1.5 = 2.25 aligns as exponent 0 (not 1), so next to it two
  // terms of 2^-13 survive the alignment (ulp 2^-13) and their sum 2^-12 survives the result's truncation;
  // aligning by the product's own exponent (ulp 2^-12) drops both.
  {
    std::vector<std::uint8_t> ca(3), cb(3);
    ca[0] = cb[0] = std::uint8_t(encode(e4m3, 1.5, kRneSatfinite));
    ca[1] = ca[2] = std::uint8_t(encode(e4m3, 0x1.0p-7, kRneSatfinite));
    cb[1] = cb[2] = std::uint8_t(encode(e4m3, 0x1.0p-6, kRneSatfinite));
    const std::vector<float> one{1.0f};
    const GemmOperand A{ca, 1, 3, &e4m3, one, kTensor}, B{cb, 1, 3, &e4m3, one, kTensor};
    CHECK(gemm_golden(A, B, AccumModel::h100, AccumParams{})[0] == 2.25f + 0x1.0p-12f);
    AccumParams own = accum_preset_params(AccumModel::h100, AccumParams{});
    own.align_exponent_sum = false;
    CHECK(gemm_golden(A, B, AccumModel::hopper_fast, own)[0] == 2.25f);
  }
  // Fast accumulation: an earlier small term sits in the accumulator and is aligned against +-448 (lost).
  b[672] = 0.0, b[100] = 0x1.0p-9;
  CHECK(dot(b, AccumModel::h100_fast) == 0.0f);
  CHECK(dot(b, AccumModel::h100) == 0x1.0p-9f);  // promoted before the pair's interval
}

TEST_CASE("h100 presets reproduce the recorded H100 cuBLASLt outputs at the recorded bit-exact counts",
          "[gemm][probes][data]") {
  std::ifstream f(kDir + "/expected_bit_exact.json");
  REQUIRE(f.good());
  const auto expected = nlohmann::json::parse(f);
  std::map<std::string, std::pair<std::size_t, std::size_t>> want;
  for (const auto& r : expected.at("runs"))
    want[fmt::format("{}/{}/{}/{}", r.at("case").get<std::string>(), r.at("scaling").get<std::string>(),
                     r.at("fast_accum").get<bool>() ? 1 : 0, r.at("out").get<std::string>())] = {
        r.at("bit_exact").get<std::size_t>(), r.at("compared").get<std::size_t>()};
  const ProbeModelFn presets = [](bool fast, std::string_view) {
    return std::pair{fast ? AccumModel::h100_fast : AccumModel::h100, AccumParams{}};
  };
  // Regenerates every recorded input (throws if the generator no longer matches the recorded hash).
  const auto rows = check_gemm_probes(kDir + "/gemm_probes.json", kDir + "/gemm_probes_out.npy", presets);
  REQUIRE(rows.size() == want.size());
  std::size_t exact = 0, compared = 0, structured_exact = 0, structured = 0;
  for (const auto& r : rows) {
    const std::string key = fmt::format("{}/{}/{}/{}", r.case_name, r.scaling, r.fast_accum ? 1 : 0, r.out);
    INFO(key << ": " << r.bit_exact << " of " << r.compared << " bit-exact; first mismatch " << r.first_mismatch);
    REQUIRE(want.count(key) == 1);
    CHECK(r.compared == want[key].second);
    CHECK(r.bit_exact == want[key].first);
    exact += r.bit_exact;
    compared += r.compared;
    if (r.case_name.rfind("spread", 0) == 0 || r.case_name == "group_scan") {
      structured_exact += r.bit_exact;
      structured += r.compared;
    }
  }
  // Every recorded output (constructed, random, adversarial; 3 scalings; fast accumulation off/on; fp32 and
  // bf16) is reproduced bit for bit.
  CHECK(structured_exact == structured);
  CHECK(exact == compared);
}

TEST_CASE("h100 presets: the fast path equals the golden loops bit for bit", "[gemm][probes]") {
  for (const char* name : {"rand_tail_k1040", "adv_extreme_k4096"}) {
    const GemmProbeCase c = make_gemm_probe(name);
    for (std::string_view sc : kProbeScalings) {
      const GemmProbeScales s = make_gemm_probe_scales(c, sc);
      const GemmOperand A{c.a, 16, c.k, &e4m3, std::span<const float>(s.sa).first(s.ga == kTensor ? 1 : 16 * ((c.k + 127) / 128)), s.ga};
      const GemmOperand B{std::span<const std::uint8_t>(c.b).first(24 * c.k), 24, c.k, &e4m3,
                          std::span<const float>(s.sb).first(s.gb == kTensor ? 1 : (s.gb == k1x128 ? 24 : 1) * ((c.k + 127) / 128)), s.gb};
      const GemmOperand Af{std::span<const std::uint8_t>(c.a).first(16 * c.k), A.rows, A.k, &e4m3, A.scale_inv, A.gran};
      for (const AccumModel m : {AccumModel::h100, AccumModel::h100_fast}) {
        INFO(name << " " << sc << " " << to_string(m));
        const auto g = gemm_golden(Af, B, m, AccumParams{});
        const auto f = gemm(Af, B, m, AccumParams{}, 2);
        REQUIRE(g.size() == f.size());
        std::size_t diff = 0;
        for (std::size_t i = 0; i < g.size(); ++i) diff += std::bit_cast<std::uint32_t>(g[i]) != std::bit_cast<std::uint32_t>(f[i]);
        CHECK(diff == 0);
      }
    }
  }
}
