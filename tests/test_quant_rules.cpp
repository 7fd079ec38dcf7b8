// Scale rules, granularities and quantize/dequantize (src/quant/scale_rules, granularity, quantize).
// Bit-exactness against TE/DeepGEMM is checked by tests/oracles/te_deepgemm_oracle.py (independent
// numpy + ml_dtypes); here: names, the documented edge cases of PAPER.md section 3, the fast path
// against the golden loops, the half-ulp bound, tail tiles and layouts.
#include <catch2/catch.hpp>

#include <fmt/format.h>

#include <bit>
#include <cmath>
#include <limits>
#include <random>

#include "formats/convert.hpp"
#include "io/errors.hpp"
#include "quant/distributions.hpp"
#include "quant/quantize.hpp"

using namespace fp8flow;

namespace {
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();

std::uint32_t fbits(float f) { return std::bit_cast<std::uint32_t>(f); }

BlockScale scale_of(ScaleRule r, std::vector<float> v, float eps = 0.0f) {
  QuantParams p = default_params(r);
  p.eps = eps;
  return block_scale(r, e4m3, v, p);
}

// Ragged input with the cases that matter: NaN, +-Inf, fp32 subnormals, zero rows, huge values.
std::vector<float> adversarial(std::size_t rows, std::size_t cols, std::uint64_t seed) {
  std::vector<float> x = make_distribution(Distribution::activations, rows, cols, seed);
  std::mt19937_64 rng(seed);
  for (int i = 0; i < 40; ++i) {
    const std::size_t at = rng() % x.size();
    switch (i % 6) {
      case 0: x[at] = kNaN; break;
      case 1: x[at] = (i & 8) ? kInf : -kInf; break;
      case 2: x[at] = 1e-40f; break;
      case 3: x[at] = -3e38f; break;
      case 4: x[at] = std::ldexp(448.0f, int(rng() % 40) - 20); break;
      default: x[at] = -0.0f; break;
    }
  }
  return x;
}

void require_same_bits(const QuantizedTensor& a, const QuantizedTensor& b) {
  REQUIRE(a.scale_rows == b.scale_rows);
  REQUIRE(a.scale_cols == b.scale_cols);
  for (std::size_t i = 0; i < a.scale_inv.size(); ++i)
    if (fbits(a.scale_inv[i]) != fbits(b.scale_inv[i]))
      FAIL(fmt::format("scale_inv[{}]: golden 0x{:08x}, fast 0x{:08x}", i, fbits(a.scale_inv[i]), fbits(b.scale_inv[i])));
  REQUIRE(a.codes.size() == b.codes.size());
  for (std::size_t i = 0; i < a.codes.size(); ++i)
    if (a.codes[i] != b.codes[i])
      FAIL(fmt::format("codes[{}][{}]: golden 0x{:02x}, fast 0x{:02x}", i / a.cols, i % a.cols, a.codes[i], b.codes[i]));
}
}  // namespace

TEST_CASE("quant names round trip", "[quant][names]") {
  for (Granularity g : {kTensor, kPerRow, kPerCol, k1x128, k128x1, k128x128, k1x32, Granularity{3, 5}})
    CHECK(parse_granularity(to_string(g)) == g);
  CHECK(to_string(k1x128) == "1x128");
  CHECK_THROWS_AS(parse_granularity("128"), InputError);
  CHECK_THROWS_AS(parse_granularity("0x128"), InputError);
  CHECK_THROWS_AS(parse_granularity("1x12a"), InputError);
  for (ScaleRule r : kAllScaleRules) CHECK(parse_scale_rule(to_string(r)) == r);
  CHECK_THROWS_WITH(parse_scale_rule("te"), Catch::Contains("te_pow2"));
  const QuantRecipe r{k1x128, &e4m3, ScaleRule::deepgemm_ue8m0};
  CHECK(r.name() == "quant_1x128_e4m3_deepgemm_ue8m0");
  CHECK(parse_recipe(r.name()) == r);
  CHECK(parse_recipe("quant_128x128_e5m2_te_fp32") == QuantRecipe{k128x128, &e5m2, ScaleRule::te_fp32});
  CHECK_THROWS_AS(parse_recipe("quant_1x128_e4m3"), InputError);
}

TEST_CASE("te_fp32 and te_pow2 follow TE's compute_scale_from_amax", "[quant][rules][te]") {
  SECTION("all-zero block: scale 1 with eps 0, 2^-42 with eps 1e-10, 2^-127 with a tiny eps") {
    CHECK(scale_of(ScaleRule::te_pow2, {0, 0, -0.0f}).scale_inv == 1.0f);
    CHECK(scale_of(ScaleRule::te_pow2, {0, 0}, 1e-10f).scale_inv == std::ldexp(1.0f, -42));
    CHECK(scale_of(ScaleRule::te_pow2, {0, 0}, 1e-37f).scale_inv == std::ldexp(1.0f, -127));
    CHECK(scale_of(ScaleRule::te_fp32, {0, 0}, 1e-10f).factor == 448.0f / 1e-10f);
  }
  SECTION("pow2 clears the mantissa of 448/amax: 448/3 = 149.33 -> 128") {
    const BlockScale s = scale_of(ScaleRule::te_pow2, {3.0f, -1.0f});
    CHECK(s.factor == 128.0f);
    CHECK(s.scale_inv == 1.0f / 128);
  }
  SECTION("NaN is ignored by the amax and coded 0x7F; an Inf makes the scale 1 and saturates") {
    const BlockScale s = scale_of(ScaleRule::te_pow2, {kNaN, 2.0f});
    CHECK(s.factor == 128.0f);
    CHECK(cast_element(e4m3, kNaN, s, Overflow::satfinite) == 0x7F);
    const BlockScale i = scale_of(ScaleRule::te_pow2, {-kInf, 2.0f});
    CHECK(i.factor == 1.0f);
    CHECK(cast_element(e4m3, -kInf, i, Overflow::satfinite) == 0xFE);
    CHECK(cast_element(e4m3, 2.0f, i, Overflow::satfinite) == encode(e4m3, 2.0, kRneSatfinite));
  }
  SECTION("an fp32-subnormal amax overflows 448/amax: the scale becomes FLT_MAX (or bf16 max), floored") {
    CHECK(scale_of(ScaleRule::te_fp32, {1e-40f}).factor == std::numeric_limits<float>::max());
    CHECK(scale_of(ScaleRule::te_pow2, {1e-40f}).factor == std::ldexp(1.0f, 127));
    CHECK(fbits(te_scale_from_amax(1e-40f, 448.0f, 0.0f, false, InputDtype::bf16)) == 0x7F7F0000u);
  }
}

TEST_CASE("deepgemm rules follow per_token_cast_to_fp8", "[quant][rules][deepgemm]") {
  SECTION("amax clamps at 1e-4: zero block scale 1e-4/448") {
    CHECK(scale_of(ScaleRule::deepgemm, {0, 0}).scale_inv == 1e-4f / 448.0f);
  }
  SECTION("ceil_to_ue8m0 is bit-level: exact powers stay, others round up") {
    CHECK(ceil_to_ue8m0(0.25f) == 0.25f);
    CHECK(ceil_to_ue8m0(std::nextafter(0.25f, 1.0f)) == 0.5f);
    CHECK(scale_of(ScaleRule::deepgemm_ue8m0, {448.0f}).scale_inv == 1.0f);
    CHECK(scale_of(ScaleRule::deepgemm_ue8m0, {std::nextafter(448.0f, 1e9f)}).scale_inv == 2.0f);
  }
  SECTION("NaN: fp32 sf NaN makes the whole block NaN; ue8m0 turns it into 2^127") {
    const BlockScale s = scale_of(ScaleRule::deepgemm, {kNaN, 1.0f});
    CHECK(std::isnan(s.scale_inv));
    CHECK(cast_element(e4m3, 1.0f, s, Overflow::nonsat) == 0x7F);
    const BlockScale u = scale_of(ScaleRule::deepgemm_ue8m0, {kNaN, 1.0f});
    CHECK(u.scale_inv == std::ldexp(1.0f, 127));
    CHECK(cast_element(e4m3, 1.0f, u, Overflow::nonsat) == 0x00);
    CHECK(cast_element(e4m3, -1.0f, u, Overflow::nonsat) == 0x80);
  }
  SECTION("Inf: sf Inf, 1/sf 0, finite codes 0, Inf*0 NaN; with ue8m0 -Inf keeps its sign (torch)") {
    const BlockScale s = scale_of(ScaleRule::deepgemm, {kInf, 3.0f});
    CHECK(std::isinf(s.scale_inv));
    CHECK(cast_element(e4m3, 3.0f, s, Overflow::nonsat) == 0x00);
    CHECK(cast_element(e4m3, kInf, s, Overflow::nonsat) == 0x7F);
    const BlockScale u = scale_of(ScaleRule::deepgemm_ue8m0, {-kInf, 3.0f});
    CHECK(cast_element(e4m3, -kInf, u, Overflow::nonsat) == 0xFF);
  }
}

TEST_CASE("deepgemm on the GPU multiplies by RN32(1/448), deepgemm_cpu divides (torch CUDA vs CPU)",
          "[quant][rules][deepgemm]") {
  // amax 3: 3 / 448 rounds to 0x3BDB6DB7, 3 * RN32(1/448) to 0x3BDB6DB8 (numpy float32, independently).
  CHECK(fbits(scale_of(ScaleRule::deepgemm_cpu, {3.0f}).scale_inv) == 0x3BDB6DB7u);
  CHECK(fbits(scale_of(ScaleRule::deepgemm, {3.0f}).scale_inv) == 0x3BDB6DB8u);
  CHECK(fbits(scale_of(ScaleRule::deepgemm, {1.0f}).scale_inv) == fbits(scale_of(ScaleRule::deepgemm_cpu, {1.0f}).scale_inv));
  SECTION("a NaN block's sf: CUDA's canonical NaN 0x7FFFFFFF; the CPU keeps the quiet NaN 0x7FC00000") {
    CHECK(fbits(scale_of(ScaleRule::deepgemm, {kNaN, 1.0f}).scale_inv) == 0x7FFFFFFFu);
    CHECK(fbits(scale_of(ScaleRule::deepgemm_cpu, {kNaN, 1.0f}).scale_inv) == 0x7FC00000u);
  }
  SECTION("x86 NaN signs: Inf * 0 is the negative default NaN, a NaN element keeps its sign") {
    const BlockScale inf = scale_of(ScaleRule::deepgemm_cpu, {kInf, 3.0f});  // sf Inf, factor 0
    CHECK(cast_element(e4m3, kInf, inf, Overflow::nonsat) == 0xFF);
    CHECK(cast_element(e4m3, 3.0f, inf, Overflow::nonsat) == 0x00);
    CHECK(cast_element(e4m3, kInf, scale_of(ScaleRule::deepgemm, {kInf, 3.0f}), Overflow::nonsat) == 0x7F);
    const BlockScale u = scale_of(ScaleRule::deepgemm_ue8m0_cpu, {kNaN, 1.0f});  // sf 2^127: finite factor
    CHECK(cast_element(e4m3, -kNaN, u, Overflow::nonsat) == 0xFF);
    CHECK(cast_element(e4m3, -kNaN, scale_of(ScaleRule::deepgemm_ue8m0, {kNaN, 1.0f}), Overflow::nonsat) == 0x7F);
    // a NaN factor wins over a NaN element (recorded: -NaN elements of a NaN block code 0x7F on the CPU)
    CHECK(cast_element(e4m3, -kNaN, scale_of(ScaleRule::deepgemm_cpu, {kNaN, 1.0f}), Overflow::nonsat) == 0x7F);
  }
}

TEST_CASE("paper_swiglu and mx rules", "[quant][rules]") {
  SECTION("paper_swiglu: zero block 2^-42; amax 448 -> 1; one ulp above -> 2") {
    CHECK(scale_of(ScaleRule::paper_swiglu, {0.0f}).scale_inv == std::ldexp(1.0f, -42));
    CHECK(scale_of(ScaleRule::paper_swiglu, {448.0f}).scale_inv == 1.0f);
    CHECK(scale_of(ScaleRule::paper_swiglu, {std::nextafter(448.0f, 1e9f)}).scale_inv == 2.0f);
  }
  SECTION("mx_floor: shared = floor(log2 amax) - 8; 480 -> 2^0 and clips to 448; zero block 2^-127; NaN block NaN") {
    const BlockScale s = scale_of(ScaleRule::mx_floor, {480.0f});
    CHECK(s.scale_inv == 1.0f);
    CHECK(cast_element(e4m3, 480.0f, s, Overflow::satfinite) == 0x7E);
    CHECK(scale_of(ScaleRule::mx_floor, {0.0f}).scale_inv == std::ldexp(1.0f, -127));
    CHECK(std::isnan(scale_of(ScaleRule::mx_floor, {kNaN, 1.0f}).scale_inv));
  }
  SECTION("mx_ceil: RP(amax * RN32(1/448)); never clips") {
    CHECK(scale_of(ScaleRule::mx_ceil, {480.0f}).scale_inv == 2.0f);
    CHECK(scale_of(ScaleRule::mx_ceil, {0.0f}).scale_inv == std::ldexp(1.0f, -127));
  }
}

TEST_CASE("tail tiles and grids", "[quant][granularity]") {
  const auto g = make_tile_grid(257, 300, k128x128, {});
  CHECK(g.row_tiles.size() == 3);
  CHECK(g.col_tiles.size() == 3);
  CHECK(g.row_tiles[2].size() == 1);
  CHECK(g.col_tiles[2].size() == 44);
  const auto gg = make_tile_grid(257, 300, k128x1, {100, 157});
  CHECK(gg.row_tiles.size() == 3);  // 1 + 2: tiles restart at the group boundary
  CHECK(gg.row_tiles[1].begin == 100);
  CHECK(gg.row_tiles[2].size() == 29);
  CHECK(make_tile_grid(7, 9, kTensor, {}).size() == 1);
  CHECK(make_tile_grid(7, 9, kPerRow, {}).row_tiles.size() == 7);
  CHECK_THROWS_AS(make_tile_grid(7, 9, kPerRow, {3, 3}), InputError);
  SECTION("a tail block's scale uses its valid elements only") {
    std::vector<float> x(2 * 130, 1.0f);
    x[129] = 2.0f;  // second block of row 0 holds columns 128, 129
    const auto q = golden::quantize(x, 2, 130, {k1x128, &e4m3, ScaleRule::te_fp32}, default_params(ScaleRule::te_fp32));
    CHECK(q.scale_inv[1] == 1.0f / (448.0f / 2.0f));
    CHECK(q.scale_inv[3] == 1.0f / 448.0f);
  }
}

TEST_CASE("fast 1xN te quantize equals golden bit for bit", "[quant][fast]") {
  INFO("isa " << fast::isa());
  for (ScaleRule rule : {ScaleRule::te_pow2, ScaleRule::te_fp32})
    for (Granularity g : {k1x128, k1x32, Granularity{1, 100}})
      for (float eps : {0.0f, 1e-10f})
        for (Overflow o : {Overflow::satfinite, Overflow::nonsat})
          // Every payload the fast path serves: the AVX2 cast (OCP FP8, FP6, FP4; an in-range variant for
          // blocks without NaN/Inf, the full one for the rest) and the scalar one (FNUZ).
          for (const FormatSpec* f : {&e4m3, &e5m2, &e4m3fnuz, &e5m2fnuz, &e2m1, &e2m3, &e3m2}) {
            const QuantRecipe r{g, f, rule};
            QuantParams p = default_params(rule);
            p.eps = eps;
            p.overflow = o;
            const auto x = adversarial(257, 1000, 7);
            INFO(r.name() << " eps " << eps << " " << to_string(o));
            const auto gold = golden::quantize(x, 257, 1000, r, p);
            REQUIRE(fast::supports(r, p, {}));
            require_same_bits(gold, fast::quantize(x, 257, 1000, r, p, 1));
            require_same_bits(gold, fast::quantize(x, 257, 1000, r, p, 2));
          }
  SECTION("large input across threads") {
    const auto x = adversarial(1024, 1536, 11);
    const QuantRecipe r{k1x128, &e4m3, ScaleRule::te_pow2};
    require_same_bits(golden::quantize(x, 1024, 1536, r, default_params(r.scale)),
                      quantize(x, 1024, 1536, r, default_params(r.scale), {}, 2));
  }
}

TEST_CASE("dequantize of quantize is within half an ulp of the scaled format", "[quant][property]") {
  const auto x = make_distribution(Distribution::lognormal, 200, 300, 3);
  for (ScaleRule rule : kAllScaleRules)
    for (Granularity g : {k1x128, k128x128, k1x32, kPerRow, kTensor}) {
      const QuantRecipe r{g, &e4m3, rule};
      const QuantParams p = default_params(rule);
      const auto q = golden::quantize(x, 200, 300, r, p);
      const auto dq = dequantize(q);
      const auto s = element_scale_inv(q);
      INFO(r.name());
      std::size_t bad = 0, clipped = 0;
      for (std::size_t i = 0; i < x.size(); ++i) {
        const double scaled = double(x[i]) / double(s[i]);
        if (std::fabs(scaled) > 464.0) {  // mx_floor clips by design (E4M3 mantissa > 1.75)
          ++clipped;
          continue;
        }
        // ulp of E4M3 at |scaled|: 2^(max(floor(log2|v|), -6) - 3)
        const int e = scaled == 0 ? -6 : std::max(std::ilogb(scaled), -6);
        const double half_ulp = std::ldexp(1.0, e - 4) * double(s[i]);
        const double tol = half_ulp * (1 + std::ldexp(1.0, -20)) + std::fabs(x[i]) * std::ldexp(1.0, -23);
        if (std::fabs(double(dq[i]) - double(x[i])) > tol) ++bad;
      }
      CHECK(bad == 0);
      if (rule != ScaleRule::mx_floor) CHECK(clipped == 0);
    }
}

TEST_CASE("scale layouts and ue8m0 storage", "[quant][layout]") {
  const auto x = make_distribution(Distribution::normal, 5, 300, 1);
  const auto q = golden::quantize(x, 5, 300, {k1x128, &e4m3, ScaleRule::te_pow2}, default_params(ScaleRule::te_pow2));
  const auto gr = scale_layout(q, ScaleLayout::gemm_ready);
  CHECK(gr.rows == 3);
  CHECK(gr.cols == 8);  // roundup(5, 4)
  CHECK(gr.values[2 * 8 + 4] == q.scale_inv[4 * 3 + 2]);
  CHECK(gr.values[7] == 0.0f);
  const auto codes = scales_to_ue8m0(q.scale_inv, "test");
  CHECK(scales_from_ue8m0(codes) == q.scale_inv);
  CHECK_THROWS_WITH(scales_to_ue8m0(std::vector<float>{3.0f}, "s.npy"), Catch::Contains("s.npy") &&
                                                                               Catch::Contains("not a power of two"));
  QuantParams p = default_params(ScaleRule::te_fp32);
  p.scale_format = ScaleFormat::ue8m0;
  CHECK_THROWS_AS(check_recipe({k1x128, &e4m3, ScaleRule::te_fp32}, p), InputError);
}

// Random float32 bit patterns hold signaling NaNs (0x7F800001..0x7FBFFFFF). glibc's std::fmax turns an sNaN
// operand into NaN (IEEE 754-2008 maxNum), which once made the golden amax forget the values before it; the
// GPU kernels (PTX max.f32) and the AVX2 fast path ignore every NaN. Found by `validate --gpu --input` on
// random bits; checked here against a plain loop and between the golden and the production paths.
TEST_CASE("amax ignores signaling NaNs like CUDA fmaxf", "[quant][rules][te]") {
  const float snan = std::bit_cast<float>(0x7F800001u), neg_snan = std::bit_cast<float>(0xFFA00000u);
  std::vector<float> block(128, 1.0f);
  block[3] = 3.0e38f;
  block[10] = snan;
  block[20] = neg_snan;
  block[30] = std::numeric_limits<float>::quiet_NaN();
  CHECK(amax_fmaxf(block) == 3.0e38f);
  std::vector<float> all_nan(128, snan);
  CHECK(amax_fmaxf(all_nan) == 0.0f);

  std::mt19937_64 g(2);
  const std::size_t R = 64, C = 1000;
  std::vector<float> x(R * C);
  for (auto& v : x) v = std::bit_cast<float>(std::uint32_t(g()));
  for (const ScaleRule rule : {ScaleRule::te_pow2, ScaleRule::te_fp32, ScaleRule::paper_swiglu}) {
    const QuantParams p = default_params(rule);
    const QuantRecipe r{k1x128, &e4m3, rule};
    const QuantizedTensor a = golden::quantize(x, R, C, r, p), b = quantize(x, R, C, r, p, {}, 1);
    for (std::size_t i = 0; i < a.scale_inv.size(); ++i) {
      const std::span<const float> blk(x.data() + (i / 8) * C + (i % 8) * 128, std::min<std::size_t>(128, C - (i % 8) * 128));
      float m = 0.0f;
      for (const float v : blk)
        if (!std::isnan(v)) m = std::max(m, std::fabs(v));
      INFO(to_string(rule) << " tile " << i);
      REQUIRE(amax_fmaxf(blk) == m);
      REQUIRE(std::bit_cast<std::uint32_t>(a.scale_inv[i]) == std::bit_cast<std::uint32_t>(b.scale_inv[i]));
    }
    CHECK(a.codes == b.codes);
  }
}
