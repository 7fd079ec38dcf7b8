// The CPU twins of the fused MoE kernels (reference/moe_fused.hpp) and their fp32 arithmetic
// (reference/moe_fp32.hpp): exp_f32 against the correctly rounded exp (MPFR), the twins against the fp64
// primitives of reference/moe_layer.hpp, and their argument checks. The GPU kernels are compared with these
// twins bit for bit in tests/gpu/gpu_moe_tests.cpp.
#include <mpfr.h>

#include <catch2/catch.hpp>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>

#include "io/errors.hpp"
#include "reference/moe_fp32.hpp"
#include "reference/moe_fused.hpp"

using namespace fp8flow;

namespace {

// exp(x) correctly rounded to binary32 (subnormals and overflow included).
float exp_cr(float x) {
  const auto emin = mpfr_get_emin(), emax = mpfr_get_emax();
  mpfr_set_emin(-148);
  mpfr_set_emax(128);
  mpfr_t a, r;
  mpfr_init2(a, 24);
  mpfr_init2(r, 24);
  mpfr_set_flt(a, x, MPFR_RNDN);
  const int t = mpfr_exp(r, a, MPFR_RNDN);
  mpfr_subnormalize(r, t, MPFR_RNDN);
  const float out = mpfr_get_flt(r, MPFR_RNDN);
  mpfr_clears(a, r, nullptr);
  mpfr_set_emin(emin);
  mpfr_set_emax(emax);
  return out;
}

// Distance in units in the last place between two non-negative floats (their bit patterns are ordered).
std::int64_t ulp_dist(float a, float b) {
  return std::abs(std::int64_t(std::bit_cast<std::uint32_t>(a)) - std::int64_t(std::bit_cast<std::uint32_t>(b)));
}

std::uint16_t bf16_of(double v) { return moe32::f32_to_bf16(float(v)); }

}  // namespace

TEST_CASE("exp_f32: within 1 ulp of the correctly rounded exp over [-104, 89]", "[moe_fused][mpfr]") {
  std::vector<float> xs = {0.0f, -0.0f, 1e-45f, -1e-45f, 1e-30f, 1.0f, -1.0f, 0.5f, 88.0f, 88.5f, 88.7f,
                           88.72283f, 88.72284f, 88.72285f, 88.8f, 89.0f, -87.33654f, -87.3366f, -100.0f,
                           -103.27893f, -103.9720f, -103.97208f, -103.9721f, -104.0f, 0.34657359f, -0.34657359f};
  for (std::uint32_t b = 0; b <= 0x42B20000u; b += 4099) xs.push_back(std::bit_cast<float>(b));  // [0, 89]
  for (std::uint32_t b = 0x80000000u; b <= 0xC2D00000u; b += 4099) xs.push_back(std::bit_cast<float>(b));  // [-104, 0]
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(-104.0f, 89.0f);
  for (int i = 0; i < 100000; ++i) xs.push_back(u(rng));
  std::int64_t worst = 0;
  std::size_t exact = 0;
  float worst_x = 0;
  for (float x : xs) {
    const float got = moe32::exp_f32(x), want = exp_cr(x);
    const std::int64_t d = ulp_dist(got, want);
    if (d > worst) worst = d, worst_x = x;
    exact += d == 0;
  }
  INFO("worst " << worst << " ulp at x = " << worst_x << "; correctly rounded " << exact << " of " << xs.size());
  CHECK(worst <= 1);
  // Measured: 98.7% correctly rounded, the rest 1 ulp off (docs/gpu.md).
  CHECK(double(exact) / double(xs.size()) > 0.98);
  // Outside the range and the specials.
  CHECK(std::isinf(moe32::exp_f32(89.5f)));
  CHECK(std::isinf(moe32::exp_f32(std::numeric_limits<float>::infinity())));
  CHECK(moe32::exp_f32(-104.5f) == 0.0f);
  CHECK(moe32::exp_f32(-std::numeric_limits<float>::infinity()) == 0.0f);
  CHECK(std::isnan(moe32::exp_f32(std::numeric_limits<float>::quiet_NaN())));
  CHECK(moe32::exp_f32(0.0f) == 1.0f);
}

TEST_CASE("f32_to_bf16 rounds to nearest even, NaN to 0x7FFF", "[moe_fused]") {
  CHECK(moe32::f32_to_bf16(1.0f) == 0x3F80);
  CHECK(moe32::f32_to_bf16(std::bit_cast<float>(0x3F808000u)) == 0x3F80);  // tie, even below
  CHECK(moe32::f32_to_bf16(std::bit_cast<float>(0x3F818000u)) == 0x3F82);  // tie, even above
  CHECK(moe32::f32_to_bf16(std::bit_cast<float>(0x3F808001u)) == 0x3F81);
  CHECK(moe32::f32_to_bf16(std::bit_cast<float>(0x7F7FFFFFu)) == 0x7F80);  // overflows to Inf
  CHECK(moe32::f32_to_bf16(std::numeric_limits<float>::quiet_NaN()) == 0x7FFF);
  CHECK(moe32::f32_to_bf16(-0.0f) == 0x8000);
}

TEST_CASE("fused SwiGLU twins: fp32 values near the fp64 primitives, quantized by paper_swiglu", "[moe_fused]") {
  const std::size_t rows = 37, F = 384;
  std::mt19937_64 rng(11);
  std::normal_distribution<double> n(0.0, 1.0);
  std::vector<std::uint16_t> h(rows * 2 * F), g(rows * F);
  std::vector<float> w(rows);
  for (auto& v : h) v = bf16_of(3.0 * n(rng));
  for (auto& v : g) v = bf16_of(1e-3 * n(rng));
  for (std::size_t r = 0; r < rows; ++r) w[r] = r % 9 == 8 ? 0.0f : float(std::abs(n(rng)) / 4);
  std::vector<double> hd(h.size()), gd(g.size()), wd(w.begin(), w.end());
  for (std::size_t i = 0; i < h.size(); ++i) hd[i] = moe32::bf16_to_f32(h[i]);
  for (std::size_t i = 0; i < g.size(); ++i) gd[i] = moe32::bf16_to_f32(g[i]);

  const std::vector<float> y = swiglu_fwd_values(h, w, rows, F);
  const std::vector<double> yref = moe::swiglu_forward(hd, wd, rows, F);
  double err = 0, norm = 0;
  for (std::size_t i = 0; i < y.size(); ++i) err += std::pow(y[i] - yref[i], 2), norm += yref[i] * yref[i];
  CHECK(std::sqrt(err / norm) < 1e-6);
  const QuantizedTensor q = swiglu_quant_fwd(h, w, rows, F);
  const QuantizedTensor q2 = quantize(y, rows, F, swiglu_quant_recipe(), default_params(ScaleRule::paper_swiglu));
  CHECK(q.codes == q2.codes);
  CHECK(q.scale_inv == q2.scale_inv);
  CHECK(q.scale_cols == F / 128);

  std::vector<float> dprob;
  const std::vector<float> dh = swiglu_bwd_values(g, h, w, rows, F, dprob);
  std::vector<double> dhref, dwref;
  moe::swiglu_backward(gd, hd, wd, rows, F, dhref, dwref);
  err = norm = 0;
  for (std::size_t i = 0; i < dh.size(); ++i) err += std::pow(dh[i] - dhref[i], 2), norm += dhref[i] * dhref[i];
  CHECK(std::sqrt(err / norm) < 1e-6);
  for (std::size_t r = 0; r < rows; ++r) {
    double mag = 0;  // sum of |terms|: the bound's scale for a sum with cancellation
    for (std::size_t f = 0; f < F; ++f) {
      const double a = hd[r * 2 * F + f], b = hd[r * 2 * F + F + f];
      mag += std::abs(a / (1 + std::exp(-a)) * b * gd[r * F + f]);
    }
    CHECK(std::abs(dprob[r] - dwref[r]) <= 1e-5 * mag + 1e-30);
  }
  const SwigluQuantGrad qg = swiglu_quant_bwd(g, h, w, rows, F);
  const QuantizedTensor dq = quantize(dh, rows, 2 * F, swiglu_quant_recipe(), default_params(ScaleRule::paper_swiglu));
  CHECK(qg.dh.codes == dq.codes);
  CHECK(qg.dh.scale_inv == dq.scale_inv);
  CHECK(qg.dprob == dprob);
}

TEST_CASE("fused SwiGLU twins: dprob follows the lane order (a change of order changes bits)", "[moe_fused]") {
  // One row of 256 columns where only lane 0 and lane 16 hold terms: 1 and 2^-24 (in lane 16) sum to 1 in
  // fp32 either way, but three tiny terms in one lane first add up before meeting 1.
  const std::size_t F = 256;
  std::vector<std::uint16_t> h(2 * F, 0), g(F, 0);
  std::vector<float> w{1.0f};
  // silu(a) * b * g with a = 64 (silu = 64): b = 1/64 -> term g.
  h[0] = bf16_of(64.0), h[F + 0] = bf16_of(1.0 / 64), g[0] = bf16_of(1.0);
  for (std::size_t i = 0; i < 3; ++i) h[128 + i] = bf16_of(64.0), h[F + 128 + i] = bf16_of(1.0 / 64), g[128 + i] = bf16_of(std::ldexp(1.0, -24));
  std::vector<float> dprob;
  (void)swiglu_bwd_values(g, h, w, 1, F, dprob);
  // Lane 16 sums 3 * 2^-24 exactly; 1 + 3 * 2^-24 rounds to 1 + 2^-22 (ties to even: 1 + 4 * 2^-24).
  CHECK(dprob[0] == 1.0f + std::ldexp(1.0f, -22));
  // A sequential sum from column 0 would give 1 (each 2^-24 alone is lost against 1).
  float seq = 0;
  for (float t : {1.0f, std::ldexp(1.0f, -24), std::ldexp(1.0f, -24), std::ldexp(1.0f, -24)}) seq += t;
  CHECK(seq == 1.0f);
}

TEST_CASE("fused SwiGLU twins: a NaN prob gradient is the canonical 0x7FFFFFFF", "[moe_fused]") {
  const std::size_t F = 128;
  std::vector<std::uint16_t> h(2 * F, bf16_of(1.0)), g(F, bf16_of(1.0));
  h[5] = 0xFFC1;  // a negative NaN with a payload: x86 would propagate it
  std::vector<float> dprob;
  (void)swiglu_bwd_values(g, h, std::vector<float>{1.0f}, 1, F, dprob);
  CHECK(std::bit_cast<std::uint32_t>(dprob[0]) == 0x7FFFFFFFu);
}

TEST_CASE("permute+pad and unpermute+unpad twins against the fp64 primitives", "[moe_fused]") {
  MoeShape s = preset_shape("tiny");
  s.tokens = 53;
  s.align = 16;
  std::mt19937_64 rng(5);
  std::normal_distribution<double> n(0.0, 1.0);
  std::vector<double> scores(s.tokens * s.experts);
  for (auto& v : scores) v = n(rng);
  const Routing r = make_routing(moe::scores(scores, s.tokens, s.experts, s.score), s);
  const std::size_t H = 200, sc = 2, T = s.tokens, K = s.topk;
  std::vector<std::uint8_t> codes(T * H);
  std::vector<float> si(T * sc), probs(T * K);
  for (std::size_t i = 0; i < codes.size(); ++i) codes[i] = std::uint8_t(rng());
  for (auto& v : si) v = std::ldexp(1.0f, int(rng() % 40) - 20);
  for (auto& v : probs) v = float(std::abs(n(rng)));
  const std::vector<std::int32_t> src = row_sources(r), dst = copy_rows(r);
  const Fp8Rows p = permute_pad_fp8(codes, si, probs, T, H, K, src);
  REQUIRE(p.rows == r.rows());
  std::size_t pad = 0;
  for (std::size_t row = 0; row < p.rows; ++row) {
    if (r.row_copy[row] < 0) {
      ++pad;
      for (std::size_t c = 0; c < H; ++c) CHECK(p.codes[row * H + c] == 0);
      CHECK(p.scale_inv[row * sc] == 0.0f);
      CHECK(p.prob[row] == 0.0f);
      continue;
    }
    const std::size_t t = std::size_t(r.row_copy[row]) / K;
    for (std::size_t c = 0; c < H; ++c) REQUIRE(p.codes[row * H + c] == codes[t * H + c]);
    CHECK(p.scale_inv[row * sc + 1] == si[t * sc + 1]);
    CHECK(p.prob[row] == probs[std::size_t(r.row_copy[row])]);
  }
  CHECK(pad > 0);
  // The prob gather equals the fp64 primitive.
  const std::vector<double> pd(probs.begin(), probs.end());
  const std::vector<double> gp = moe::gather_probs(pd, r);
  for (std::size_t row = 0; row < p.rows; ++row) CHECK(double(p.prob[row]) == gp[row]);

  // Unpermute: fp32 sums of bf16 values against the fp64 sum.
  std::vector<std::uint16_t> o(r.rows() * H);
  std::vector<double> od(o.size());
  for (std::size_t i = 0; i < o.size(); ++i) od[i] = moe32::bf16_to_f32(o[i] = bf16_of(n(rng)));
  const std::vector<std::uint16_t> y = unpermute_combine_bf16(o, r.rows(), H, dst, T, K, {});
  const std::vector<double> yref = moe::unpermute_combine(od, H, r);
  for (std::size_t i = 0; i < y.size(); ++i) {
    // One bf16 rounding (2^-9 relative) of an fp32 sum of K terms.
    const double mag = std::abs(yref[i]) + 1e-30;
    CHECK(std::abs(moe32::bf16_to_f32(y[i]) - yref[i]) <= mag * std::ldexp(1.0, -8) + 1e-6);
  }
  // With merging probs: sum of RN32(p * v) in slot order.
  const std::vector<std::uint16_t> ym = unpermute_combine_bf16(o, r.rows(), H, dst, T, K, probs);
  for (std::size_t t = 0; t < T; ++t) {
    float acc = 0.0f;
    for (std::size_t j = 0; j < K; ++j) acc += probs[t * K + j] * moe32::bf16_to_f32(o[std::size_t(dst[t * K + j]) * H + 5]);
    CHECK(ym[t * H + 5] == moe32::f32_to_bf16(acc));
  }
}

TEST_CASE("fused MoE twins refuse inconsistent arguments", "[moe_fused]") {
  std::vector<std::uint16_t> h(2 * 2 * 128), g(2 * 128);
  std::vector<float> w(2);
  CHECK_THROWS_AS(swiglu_quant_fwd(h, w, 2, 100), InputError);  // F % 128
  CHECK_THROWS_AS(swiglu_quant_fwd(h, std::vector<float>(3), 2, 128), InputError);
  CHECK_THROWS_AS(swiglu_quant_bwd(std::vector<std::uint16_t>(5), h, w, 2, 128), InputError);
  std::vector<std::uint8_t> codes(4 * 128);
  std::vector<float> si(4);
  const std::vector<std::int32_t> bad{0, 9};
  CHECK_THROWS_AS(permute_pad_fp8(codes, si, {}, 4, 128, 2, bad), InputError);  // copy 9 of 8
  CHECK_THROWS_AS(permute_pad_fp8(codes, std::vector<float>(3), {}, 4, 128, 2, bad), InputError);
  std::vector<std::uint16_t> in(3 * 128);
  CHECK_THROWS_AS(unpermute_combine_bf16(in, 3, 128, std::vector<std::int32_t>{0, 3}, 1, 2, {}), InputError);
  CHECK_THROWS_AS(unpermute_combine_bf16(in, 3, 128, std::vector<std::int32_t>{0}, 1, 2, {}), InputError);
}

// Hidden (run by hand; docs/gpu.md gives the result): every 16th float (every float with
// -DFP8FLOW_EXP_STRIDE=1) of [-104, 89] against std::exp in
// float64 rounded once to float (equal to the correctly rounded exp except where the float64 value falls
// within 1 ulp of a float64 of a rounding midpoint).
#ifndef FP8FLOW_EXP_STRIDE
#define FP8FLOW_EXP_STRIDE 16
#endif
TEST_CASE("exp_f32: dense scan against float64 exp", "[.][moe_fused][exp_dense]") {
  std::int64_t worst = 0;
  std::uint64_t n = 0, exact = 0;
  constexpr std::uint64_t kStride = FP8FLOW_EXP_STRIDE;  // 1: every float (build with -DFP8FLOW_EXP_STRIDE=1)
  auto scan = [&](std::uint32_t lo, std::uint32_t hi) {
    for (std::uint64_t b = lo; b <= hi; b += kStride) {
      const float x = std::bit_cast<float>(std::uint32_t(b));
      const float want = float(std::exp(double(x)));
      const std::int64_t d = ulp_dist(moe32::exp_f32(x), want);
      worst = std::max(worst, d);
      exact += d == 0;
      ++n;
    }
  };
  scan(0x00000000u, 0x42B20000u);
  scan(0x80000000u, 0xC2D00000u);
  INFO(n << " inputs, " << exact << " equal, worst " << worst << " ulp");
  CHECK(worst <= 1);
  WARN(n << " inputs, " << exact << " equal (" << 100.0 * double(exact) / double(n) << "%), worst " << worst << " ulp");
}
