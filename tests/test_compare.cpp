// Kernel-output comparison (src/quant/compare): planted single-element faults must be found, located
// exactly (row, column, tile, group) and classified by cause; whole-tensor layout differences detected.
#include <catch2/catch.hpp>

#include <bit>
#include <cmath>
#include <nlohmann/json.hpp>
#include <random>

#include "formats/convert.hpp"
#include "io/errors.hpp"
#include "quant/compare.hpp"
#include "quant/transpose.hpp"

using namespace fp8flow;

namespace {

std::vector<float> random_x(std::size_t n, std::uint32_t seed, float spread = 8.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::uniform_real_distribution<float> ex(-spread, spread);
  std::vector<float> x(n);
  for (auto& v : x) v = nd(rng) * std::exp2(ex(rng));
  return x;
}

const QuantRecipe kTe{k1x128, &e4m3, ScaleRule::te_pow2};

QuantizedTensor quant(const std::vector<float>& x, std::size_t rows, std::size_t cols, const QuantRecipe& r = kTe,
                      const std::vector<std::size_t>& groups = {}) {
  return golden::quantize(x, rows, cols, r, default_params(r.scale), groups);
}

std::vector<double> as_double(const std::vector<float>& x) { return {x.begin(), x.end()}; }

}  // namespace

TEST_CASE("compare: identical tensors are bit-exact", "[compare]") {
  const auto x = random_x(64 * 300, 1);
  const auto q = quant(x, 64, 300);
  const auto in = as_double(x);
  const auto rep = compare_quantized(q, q, {in, {}, 20});
  CHECK(rep.bitexact());
  CHECK(rep.elements == 64 * 300);
  CHECK(rep.scales == 64 * 3);
  CHECK(rep.elements_mismatched == 0);
  CHECK(rep.layout.empty());
  CHECK(to_text(rep).find("BIT-EXACT") != std::string::npos);
  CHECK(to_json(rep)["bitexact"] == true);
}

TEST_CASE("compare: a planted one-ulp fault is found and located exactly", "[compare]") {
  const std::size_t R = 96, C = 300;
  const auto x = random_x(R * C, 2);
  const std::vector<std::size_t> groups = {40, 56};
  const auto want = quant(x, R, C, kTe, groups);
  const auto in = as_double(x);
  const auto pre = quantize_precast(x, R, C, kTe, default_params(kTe.scale), groups);
  for (const auto& [r, c] : {std::pair<std::size_t, std::size_t>{0, 0}, {57, 299}, {95, 130}, {39, 255}}) {
    QuantizedTensor got = want;
    std::uint8_t& code = got.codes[r * C + c];
    // One ulp towards larger magnitude, unless that would leave the finite range.
    const bool up = (code & 0x7F) < 0x7D;
    code = std::uint8_t(up ? code + 1 : code - 1);
    const auto rep = compare_quantized(got, want, {in, pre, 20});
    REQUIRE(rep.elements_mismatched == 1);
    CHECK(rep.scales_mismatched == 0);
    REQUIRE(rep.mismatches.size() == 1);
    const auto& m = rep.mismatches[0];
    CHECK(m.row == r);
    CHECK(m.col == c);
    CHECK(m.col_tile == c / 128);
    CHECK(m.group == (r < 40 ? 0u : 1u));
    // Row tiles restart per group: 1x128 tiles are one row each, so the row tile is the row.
    CHECK(m.row_tile == r);
    CHECK(m.input == double(x[r * C + c]));
    CHECK(m.want_code == want.codes[r * C + c]);
    CHECK(m.got_code == got.codes[r * C + c]);
    CHECK((m.ulp == 1 || m.ulp == -1));
    CHECK(m.want_value == decode(e4m3, m.want_code) * double(want.scale_inv[r * 3 + c / 128]));
    const bool tiny = std::fabs(decode(e4m3, m.want_code)) <= min_normal(e4m3) &&
                      std::fabs(decode(e4m3, m.got_code)) <= min_normal(e4m3);
    CHECK((m.cause == MismatchCause::rounding_ulp || (tiny && m.cause == MismatchCause::underflow)));
    CHECK(rep.by_cause[std::size_t(m.cause)] == 1);
  }
}

TEST_CASE("compare: 128x128 tiles and groups give the tile and group of the fault", "[compare]") {
  const std::size_t R = 300, C = 260;
  const auto x = random_x(R * C, 3);
  const QuantRecipe r128{k128x128, &e4m3, ScaleRule::te_pow2};
  const std::vector<std::size_t> groups = {100, 150, 50};
  const auto want = quant(x, R, C, r128, groups);
  QuantizedTensor got = want;
  // Row 262 is in group 2 (rows 250..299), which has one row tile (index 1 + 2 = 3); column 259 in tile 2.
  got.codes[262 * C + 259] ^= 0x80;  // sign flip
  const auto rep = compare_quantized(got, want, {as_double(x), {}, 20});
  REQUIRE(rep.elements_mismatched == 1);
  const auto& m = rep.mismatches.at(0);
  CHECK(m.row == 262);
  CHECK(m.col == 259);
  CHECK(m.group == 2);
  CHECK(m.row_tile == 3);
  CHECK(m.col_tile == 2);
  CHECK(m.cause == (want.codes[262 * C + 259] & 0x7F ? MismatchCause::other : MismatchCause::sign_of_zero));
}

TEST_CASE("compare: each cause is recognised", "[compare]") {
  // One row, 128 columns, scale 1 (amax 448 under te_pow2), so codes are values.
  std::vector<float> x(128, 1.0f);
  x[0] = 448.0f;
  const std::size_t C = 128;
  const auto set = [&](std::size_t c, float v) { x[c] = v; };
  set(1, 1.0625f);            // tie between 1.0 (0x38) and 1.125 (0x39): RNE gives 0x38
  set(2, 1.07f);              // not a tie: 0x39 is one ulp above its RNE result 0x39? (1.07 -> 1.0625 rounds to 0x39)
  set(3, std::exp2(-10.0f) * 1.5f);  // 1.5 * 2^-10 -> subnormal 2^-9 (code 0x01)
  set(4, 0.0f);               // +0
  set(5, 3.0f);
  const auto want = quant(x, 1, C);
  REQUIRE(want.scale_inv[0] == 1.0f);
  REQUIRE(want.codes[1] == 0x38);
  REQUIRE(want.codes[3] == 0x01);
  const auto pre = quantize_precast(x, 1, C, kTe, default_params(kTe.scale), {});
  const auto in = as_double(x);

  const auto cause_of = [&](std::size_t c, std::uint8_t code) {
    QuantizedTensor got = want;
    got.codes[c] = code;
    const auto rep = compare_quantized(got, want, {in, pre, 20});
    REQUIRE(rep.elements_mismatched == 1);
    CHECK(rep.mismatches.at(0).col == c);
    return rep.mismatches.at(0).cause;
  };
  CHECK(cause_of(1, 0x39) == MismatchCause::rounding_tie);   // ties away instead of to even
  CHECK(cause_of(2, std::uint8_t(want.codes[2] - 1)) == MismatchCause::rounding_ulp);
  CHECK(cause_of(3, 0x00) == MismatchCause::underflow);      // subnormal flushed
  CHECK(cause_of(4, 0x80) == MismatchCause::sign_of_zero);
  CHECK(cause_of(0, 0x7F) == MismatchCause::saturation);     // 448 is max: NaN instead of max? (golden 0x7E)
  CHECK(cause_of(5, 0x7F) == MismatchCause::nan_inf);        // 3.0 became NaN: not an overflow
  CHECK(cause_of(5, 0x4C) == MismatchCause::other);          // several ulps off

  // Saturation proper: an input beyond the range; golden satfinite gives max, a nonsat kernel NaN.
  std::vector<float> y(128, 1.0f);
  y[7] = 1000.0f;
  const QuantRecipe fp32{k1x128, &e4m3, ScaleRule::te_fp32};
  QuantParams p = default_params(fp32.scale);
  const auto wy = golden::quantize(y, 1, 128, fp32, p, {});
  // Force scale 1 so that 1000 overflows: the user's kernel under test "forgot" to scale.
  QuantizedTensor want1 = wy;
  want1.scale_inv[0] = 1.0f;
  for (std::size_t c = 0; c < 128; ++c) want1.codes[c] = std::uint8_t(encode(e4m3, y[c], kRneSatfinite));
  REQUIRE(want1.codes[7] == 0x7E);
  QuantizedTensor got1 = want1;
  got1.codes[7] = 0x7F;
  const auto in1 = as_double(y);
  const auto rep1 = compare_quantized(got1, want1, {in1, {}, 20});
  CHECK(rep1.mismatches.at(0).cause == MismatchCause::saturation);
  CHECK(rep1.mismatches.at(0).precast == 1000.0);

  // NaN input: golden NaN 0x7F, kernel keeps the sign (0xFF).
  std::vector<float> z(128, 1.0f);
  z[9] = -std::numeric_limits<float>::quiet_NaN();
  const auto wz = quant(z, 1, 128);
  QuantizedTensor gz = wz;
  gz.codes[9] = std::uint8_t(wz.codes[9] ^ 0x80);
  const auto inz = as_double(z);
  CHECK(compare_quantized(gz, wz, {inz, {}, 20}).mismatches.at(0).cause == MismatchCause::nan_inf);
}

TEST_CASE("compare: a different tile scale is found at its tile and explains its elements", "[compare]") {
  const std::size_t R = 4, C = 256;
  const auto x = random_x(R * C, 5);
  const auto want = quant(x, R, C);
  QuantizedTensor got = want;
  // The kernel chose twice the scale_inv for row 2's second tile, and its codes follow.
  const std::size_t tile = 2 * 2 + 1;
  got.scale_inv[tile] = want.scale_inv[tile] * 2.0f;
  for (std::size_t c = 128; c < 256; ++c)
    got.codes[2 * C + c] = std::uint8_t(encode(e4m3, double(x[2 * C + c]) / double(got.scale_inv[tile]), kRneSatfinite));
  const auto rep = compare_quantized(got, want, {as_double(x), {}, 200});
  CHECK(rep.scales_mismatched == 1);
  REQUIRE(rep.scale_mismatches.size() == 1);
  CHECK(rep.scale_mismatches[0].row_tile == 2);
  CHECK(rep.scale_mismatches[0].col_tile == 1);
  CHECK(rep.scale_mismatches[0].cols.begin == 128);
  CHECK(rep.scale_mismatches[0].log2_ratio == 1.0);
  REQUIRE(rep.elements_mismatched > 0);
  CHECK(rep.by_cause[std::size_t(MismatchCause::tile_scale)] == rep.elements_mismatched);
  for (const auto& m : rep.mismatches) {
    CHECK(m.row == 2);
    CHECK(m.col >= 128);
  }
  // Only the scale planted: codes equal, one scale differs, not bit-exact.
  QuantizedTensor only = want;
  only.scale_inv[3] = 0.0f;
  const auto r2 = compare_quantized(only, want, {});
  CHECK(!r2.bitexact());
  CHECK(r2.elements_mismatched == 0);
  CHECK(r2.scales_mismatched == 1);
  CHECK(r2.scale_mismatches.at(0).row_tile == 1);
  CHECK(r2.scale_mismatches.at(0).col_tile == 1);
}

TEST_CASE("compare: whole-tensor layout differences", "[compare]") {
  const std::size_t R = 200, C = 256;
  const auto x = random_x(R * C, 6);
  const auto rowwise = quant(x, R, C);
  const std::vector<std::size_t> groups = {72, 100, 28};
  const auto want = transpose_paper_kernel(rowwise, groups, 1);
  REQUIRE(want.codes_transposed);

  SECTION("codes stored the other way round") {
    QuantizedTensor got = want;
    got.codes = with_codes_transposed(want, false).codes;  // row-major bytes declared as a column copy
    const auto rep = compare_quantized(got, want, {});
    REQUIRE(rep.layout.size() == 1);
    CHECK(rep.layout[0].find("other way round") != std::string::npos);
    CHECK(rep.by_cause[std::size_t(MismatchCause::layout)] == rep.elements_mismatched);
  }
  SECTION("per-group blocks concatenated") {
    QuantizedTensor got = want;
    got.codes = codes_to_group_blocks(want);
    REQUIRE(got.codes != want.codes);
    const auto rep = compare_quantized(got, want, {});
    REQUIRE(rep.layout.size() == 1);
    CHECK(rep.layout[0].find("per-group blocks") != std::string::npos);
    // ... and read back with the per-group layout they are exact.
    got.codes = codes_from_group_blocks(got.codes, want);
    CHECK(compare_quantized(got, want, {}).bitexact());
  }
  SECTION("rows permuted") {
    const auto rw = rowwise;
    QuantizedTensor got = rw;
    for (std::size_t c = 0; c < C; ++c) std::swap(got.codes[3 * C + c], got.codes[150 * C + c]);
    const auto rep = compare_quantized(got, rw, {});
    REQUIRE(!rep.layout.empty());
    CHECK(rep.layout[0].find("rows permuted") != std::string::npos);
    CHECK(rep.layout[0].find("got row 3 = golden row 150") != std::string::npos);
  }
  SECTION("scale grid transposed") {
    QuantizedTensor got = rowwise;
    got.scale_rows = rowwise.scale_cols;
    got.scale_cols = rowwise.scale_rows;
    for (std::size_t i = 0; i < rowwise.scale_rows; ++i)
      for (std::size_t j = 0; j < rowwise.scale_cols; ++j)
        got.scale_inv[j * rowwise.scale_rows + i] = rowwise.scale_inv[i * rowwise.scale_cols + j];
    const auto rep = compare_quantized(got, rowwise, {});
    REQUIRE(rep.layout.size() == 1);
    CHECK(rep.layout[0].find("scale_inv stored transposed") != std::string::npos);
    CHECK(rep.scales_mismatched == rep.scales);
    CHECK(rep.elements_mismatched == 0);
  }
  SECTION("scale grid in TE's GEMM-ready layout") {
    // 198 rows: padded to 200 (with 200 rows the GEMM-ready grid is the transposed one, found as such)
    const auto rw198 = quant(random_x(198 * C, 8), 198, C);
    QuantizedTensor got = rw198;
    const ScaleArray gr = scale_layout(rw198, ScaleLayout::gemm_ready);  // [2, roundup(198, 4)]
    got.scale_rows = gr.rows;
    got.scale_cols = gr.cols;
    got.scale_inv = gr.values;
    const auto rep = compare_quantized(got, rw198, {});
    REQUIRE(rep.layout.size() == 1);
    CHECK(rep.layout[0].find("GEMM-ready") != std::string::npos);
    CHECK(rep.scales_mismatched == rep.scales);
    CHECK(rep.elements_mismatched == 0);  // the codes are still compared, against the golden scales
  }
  SECTION("scale grid of an unrelated shape is an input error") {
    QuantizedTensor got = rowwise;
    got.scale_inv.pop_back();
    got.scale_cols = 1;
    CHECK_THROWS_AS(compare_quantized(got, rowwise, {}), InputError);
  }
}

TEST_CASE("compare: paper_kernel against exact is explained by subnormal handling", "[compare]") {
  const std::size_t R = 256, C = 256;
  const auto x = random_x(R * C, 7, 12.0f);  // wide spread: many elements far below their tile maximum
  const auto rowwise = quant(x, R, C);
  const std::vector<std::size_t> groups = {130, 126};
  const auto paper = transpose_paper_kernel(rowwise, groups, 1);
  const auto exact = transpose_exact(rowwise, groups, Rounding::rne, 1);
  // Inputs: the values the rowwise codes stand for.
  const auto dq = dequantize(rowwise);
  const std::vector<double> in(dq.begin(), dq.end());
  const auto rep = compare_quantized(paper, exact, {in, {}, 10});
  const SatDiffReport sat = compare_paper_exact(rowwise, paper, exact);
  CHECK(rep.elements_mismatched == sat.elements_differing);
  REQUIRE(rep.elements_mismatched > 0);
  CHECK(rep.scales_mismatched == 0);
  // Every difference lies below the normal range (PAPER.md 3.5): underflow, a tie/ulp on the subnormal grid, or
  // the kernel's +0 (0x00) where the exact shift keeps the sign of a negative value that rounds to zero.
  CHECK(rep.by_cause[std::size_t(MismatchCause::underflow)] + rep.by_cause[std::size_t(MismatchCause::rounding_tie)] +
            rep.by_cause[std::size_t(MismatchCause::rounding_ulp)] +
            rep.by_cause[std::size_t(MismatchCause::sign_of_zero)] ==
        rep.elements_mismatched);
  CHECK(rep.by_cause[std::size_t(MismatchCause::sign_of_zero)] > 0);
  CHECK(rep.by_cause[std::size_t(MismatchCause::underflow)] > 0);
  for (const auto& m : rep.mismatches) {
    CHECK(m.group == (m.row < 130 ? 0u : 1u));
    CHECK(paper.codes[m.col * R + m.row] == m.got_code);
  }
}

TEST_CASE("compare: float32 values", "[compare]") {
  const std::size_t R = 5, C = 7;
  std::vector<float> want(R * C);
  for (std::size_t i = 0; i < want.size(); ++i) want[i] = float(i) * 0.37f - 3.0f;
  auto got = want;
  CHECK(compare_values(got, want, R, C, {}).bitexact());
  got[2 * C + 4] = std::nextafter(want[2 * C + 4], 100.0f);
  auto rep = compare_values(got, want, R, C, {});
  REQUIRE(rep.elements_mismatched == 1);
  CHECK(rep.mismatches[0].row == 2);
  CHECK(rep.mismatches[0].col == 4);
  CHECK(rep.mismatches[0].ulp == 1);
  CHECK(rep.mismatches[0].cause == MismatchCause::rounding_ulp);
  got = want;
  got[0] = std::numeric_limits<float>::quiet_NaN();
  CHECK(compare_values(got, want, R, C, {}).mismatches.at(0).cause == MismatchCause::nan_inf);
  // Transposed storage.
  std::vector<float> t(R * C);
  for (std::size_t r = 0; r < R; ++r)
    for (std::size_t c = 0; c < C; ++c) t[c * R + r] = want[r * C + c];
  rep = compare_values(t, want, R, C, {});
  REQUIRE(rep.layout.size() == 1);
  CHECK(rep.layout[0].find("transposed") != std::string::npos);
  CHECK(rep.by_cause[std::size_t(MismatchCause::layout)] == rep.elements_mismatched);
  CHECK_THROWS_AS(compare_values(std::span<const float>(got).first(3), want, R, C, {}), InputError);
}
