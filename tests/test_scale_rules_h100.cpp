// The scale rules against what the real code computed on an H100 (data/scale_rules_h100/, recorded by
// scripts/device/record_scale_rules.py; docs/quantization.md "Recorded on the H100"): DeepGEMM's
// per_token_cast_to_fp8 / per_block_cast_to_fp8 run by torch on the GPU and on the CPU, the FP8-Flow-MoE
// Triton quantize-given-y and TransformerEngine's block scale written in Triton. The inputs are rebuilt here
// from their spec by the counter hash the recording script used (checked against the recorded input hash);
// every block's scale is compared bit for bit, its codes through a 32-bit FNV-1a hash of the block's codes.
#include <catch2/catch.hpp>
#include <fmt/format.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "formats/splitmix64.hpp"
#include "io/npy.hpp"
#include "quant/quantize.hpp"

using namespace fp8flow;

namespace {
const std::string kDir = std::string(FP8FLOW_SOURCE_DIR) + "/data/scale_rules_h100";

template <class T> std::vector<T> load(const std::string& name) {
  const io::NpyArray a = io::read_npy(kDir + "/" + name);
  const auto v = a.view<T>();
  return {v.begin(), v.end()};
}

struct Family {
  std::uint64_t stream;
  std::size_t rows, cols, br, bc;
  std::vector<float> lead;
  std::vector<std::uint8_t> spread, special;
};

// The recording script's build(): element (r, c) of block b is lead[b] at the block's lead position, the
// special value at its special position, else RN32(lead[b] * p) with p = +-m * 2^-(24 + k).
std::vector<float> build(const Family& f) {
  static constexpr std::uint32_t kSpecial[] = {0, 0x7FC00000u, 0x7F800000u, 0xFF800000u, 0xFFC00000u};
  const std::size_t nbc = f.cols / f.bc;
  std::vector<float> x(f.rows * f.cols);
  for (std::size_t r = 0; r < f.rows; ++r)
    for (std::size_t c = 0; c < f.cols; ++c) {
      std::uint64_t state = (f.stream << 32) + (std::uint64_t(r) << 16) + c;
      const std::uint64_t z = splitmix64_next(state);
      const std::size_t b = (r / f.br) * nbc + c / f.bc;
      const int k = int((z & 0xFFFFu) % (std::uint64_t(f.spread[b]) + 1));
      float p = std::ldexp(float(z >> 40), -(24 + k));  // exact: 24-bit integer, exponent >= -78
      if ((z >> 39) & 1u) p = -p;
      const float lead = f.lead[b];
      float v = lead * p;
      const std::size_t lr = r % f.br, lc = c % f.bc;
      if (lr == b % f.br && lc == (7 * b) % f.bc) v = lead;
      if (f.special[b] && lr == (b + f.br / 2) % f.br && lc == (7 * b + f.bc / 2) % f.bc)
        v = std::bit_cast<float>(kSpecial[f.special[b]]);
      x[r * f.cols + c] = v;
    }
  return x;
}

std::uint32_t fnv1a(std::uint32_t h, std::uint8_t byte) { return (h ^ byte) * 0x01000193u; }

// Per block (row-major block order) the FNV-1a hash of its codes in row-major order within the block.
std::vector<std::uint32_t> block_hashes(const QuantizedTensor& q, const Family& f) {
  const std::size_t nbr = f.rows / f.br, nbc = f.cols / f.bc;
  std::vector<std::uint32_t> h(nbr * nbc, 0x811C9DC5u);
  for (std::size_t r = 0; r < f.rows; ++r)
    for (std::size_t c = 0; c < f.cols; ++c) {
      const std::size_t b = (r / f.br) * nbc + c / f.bc;
      h[b] = fnv1a(h[b], q.codes[r * f.cols + c]);
    }
  return h;
}

std::uint32_t input_hash(const std::vector<float>& x) {
  std::uint32_t h = 0x811C9DC5u;
  for (float v : x) {
    const auto u = std::bit_cast<std::uint32_t>(v);
    for (int s = 0; s < 32; s += 8) h = fnv1a(h, std::uint8_t(u >> s));
  }
  return h;
}
}  // namespace

TEST_CASE("scale rules reproduce DeepGEMM, FP8-Flow-MoE and TE expressions as run on an H100",
          "[quant][rules][h100]") {
  std::ifstream in(kDir + "/index.json");
  REQUIRE(in.good());
  const nlohmann::json index = nlohmann::json::parse(in);
  int checked = 0;
  for (const auto& [name, fam] : index.at("families").items()) {
    Family f{fam.at("stream").get<std::uint64_t>(), fam.at("rows").get<std::size_t>(), fam.at("cols").get<std::size_t>(),
             fam.at("block")[0].get<std::size_t>(), fam.at("block")[1].get<std::size_t>(),
             load<float>(name + "_lead.npy"), load<std::uint8_t>(name + "_spread.npy"),
             load<std::uint8_t>(name + "_special.npy")};
    const std::vector<float> x = build(f);
    INFO("family " << name);
    REQUIRE(input_hash(x) == fam.at("input_fnv1a").get<std::uint32_t>());
    const auto scales = load<float>(name + "_scale.npy");
    const auto hashes = load<std::uint32_t>(name + "_hash.npy");
    const auto& variants = fam.at("variants");
    const std::size_t nb = (f.rows / f.br) * (f.cols / f.bc);
    REQUIRE(scales.size() == variants.size() * nb);
    REQUIRE(hashes.size() == variants.size() * nb);
    for (std::size_t v = 0; v < variants.size(); ++v) {
      const auto& var = variants[v];
      if (var.at("rule").is_null()) continue;  // recorded for the documentation only (docs/quantization.md)
      const ScaleRule rule = parse_scale_rule(var.at("rule").get<std::string>());
      QuantParams p = default_params(rule);
      p.eps = var.value("eps", 0.0f);
      const QuantRecipe recipe{Granularity{int(f.br), int(f.bc)}, &e4m3, rule};
      const QuantizedTensor q = quantize(x, f.rows, f.cols, recipe, p);
      const auto h = block_hashes(q, f);
      // Blocks whose recorded scale comes from a known difference of the recording's transcription (the index
      // says why, e.g. Triton's tl.max of an all-NaN block); their codes are still compared.
      std::vector<bool> skip_scale(nb, false);
      for (const auto& b : var.value("skip_scale_blocks", nlohmann::json::array())) skip_scale.at(b.get<std::size_t>()) = true;
      std::size_t bad_scale = 0, bad_codes = 0, first = nb;
      for (std::size_t b = 0; b < nb; ++b) {
        const bool s_ok = skip_scale[b] ||
                          std::bit_cast<std::uint32_t>(q.scale_inv[b]) == std::bit_cast<std::uint32_t>(scales[v * nb + b]);
        const bool c_ok = h[b] == hashes[v * nb + b];
        bad_scale += !s_ok;
        bad_codes += !c_ok;
        if ((!s_ok || !c_ok) && first == nb) first = b;
      }
      INFO(fmt::format("{} ({}) vs {}: {} of {} scales and {} blocks of codes differ (first block {}: scale {:a}, "
                       "recorded {:a})",
                       var.at("name").get<std::string>(), var.at("source").get<std::string>(), recipe.name(),
                       bad_scale, nb, bad_codes, first, first < nb ? q.scale_inv[first] : 0.0f,
                       first < nb ? scales[v * nb + first] : 0.0f));
      CHECK(bad_scale == 0);
      CHECK(bad_codes == 0);
      ++checked;
    }
  }
  CHECK(checked >= 8);
}
