// The GEMM emulator: the fast path equals the golden model bit for bit; the exact model equals an
// independent GMP/MPFR evaluation; each accumulation model on cases whose result is known in closed form.
#include <catch2/catch.hpp>
#include <fmt/format.h>
#include <gmp.h>
#include <mpfr.h>

#include <bit>
#include <cmath>
#include <random>
#include <vector>

#include "formats/convert.hpp"
#include "reference/gemm.hpp"

using namespace fp8flow;

namespace {

struct Operand {
  std::vector<std::uint8_t> codes;
  std::vector<float> scales;
  GemmOperand view(std::size_t rows, std::size_t k, Granularity g, const FormatSpec& f = e4m3) const {
    return {codes, rows, k, &f, scales, g};
  }
};

// Random finite codes (no NaN), and pow2 or arbitrary fp32 scale_inv per tile.
Operand random_operand(std::mt19937& rng, std::size_t rows, std::size_t k, Granularity g, bool pow2_scales) {
  Operand o;
  o.codes.resize(rows * k);
  std::uniform_int_distribution<int> code(0, 255);
  for (auto& c : o.codes) {
    do c = std::uint8_t(code(rng));
    while (is_nan_code(e4m3, c));
  }
  const std::size_t gr = g.rows == 0 ? rows : g.rows, gc = g.cols == 0 ? k : g.cols;
  o.scales.resize(((rows + gr - 1) / gr) * ((k + gc - 1) / gc));
  std::uniform_real_distribution<float> s(0.25f, 4.0f);
  std::uniform_int_distribution<int> e(-12, 4);
  for (auto& x : o.scales) x = pow2_scales ? std::ldexp(1.0f, e(rng)) : s(rng) * 1e-3f;
  return o;
}

void require_same_bits(const std::vector<float>& want, const std::vector<float>& got, std::size_t n_cols,
                       const char* what) {
  REQUIRE(want.size() == got.size());
  for (std::size_t i = 0; i < want.size(); ++i)
    if (std::bit_cast<std::uint32_t>(want[i]) != std::bit_cast<std::uint32_t>(got[i]))
      FAIL(fmt::format("{}: out[{}][{}]: expected 0x{:08X} ({}), got 0x{:08X} ({})", what, i / n_cols, i % n_cols,
                       std::bit_cast<std::uint32_t>(want[i]), want[i], std::bit_cast<std::uint32_t>(got[i]), got[i]));
}

// Independent oracle: exact rational sum of (products x scale products) with GMP, rounded once to
// float32 by MPFR (precision 24, float32's exponent range, subnormals).
float gmp_exact_output(const GemmOperand& a, const GemmOperand& b, std::size_t i, std::size_t j, std::size_t bw) {
  mpq_t total, block, term, s;
  mpq_inits(total, block, term, s, nullptr);
  const auto scale = [](const GemmOperand& x, std::size_t row, std::size_t k0) {
    const std::size_t gr = x.gran.rows == 0 ? x.rows : x.gran.rows, gc = x.gran.cols == 0 ? x.k : x.gran.cols;
    return x.scale_inv[(row / gr) * ((x.k + gc - 1) / gc) + k0 / gc];
  };
  for (std::size_t k0 = 0; k0 < a.k; k0 += bw) {
    mpq_set_ui(block, 0, 1);
    for (std::size_t k = k0; k < std::min(a.k, k0 + bw); ++k) {
      mpq_set_d(term, decode(*a.format, a.codes[i * a.k + k]));
      mpq_set_d(s, decode(*b.format, b.codes[j * b.k + k]));
      mpq_mul(term, term, s);
      mpq_add(block, block, term);
    }
    mpq_set_d(term, scale(a, i, k0));
    mpq_mul(block, block, term);
    mpq_set_d(term, scale(b, j, k0));
    mpq_mul(block, block, term);
    mpq_add(total, total, block);
  }
  const auto emin = mpfr_get_emin(), emax = mpfr_get_emax();
  mpfr_set_emin(-148);
  mpfr_set_emax(128);
  mpfr_t r;
  mpfr_init2(r, 24);
  const int t = mpfr_set_q(r, total, MPFR_RNDN);
  mpfr_subnormalize(r, t, MPFR_RNDN);
  const float out = mpfr_get_flt(r, MPFR_RNDN);
  mpfr_clear(r);
  mpfr_set_emin(emin);
  mpfr_set_emax(emax);
  mpq_clears(total, block, term, s, nullptr);
  return out;
}

}  // namespace

TEST_CASE("gemm fast path equals the golden model for every accumulation model", "[gemm][oracle]") {
  std::mt19937 rng(7);
  const std::size_t M = 19, N = 37, K = 300;  // ragged: partial tiles on every axis, partial K block
  const auto a = random_operand(rng, M, K, k1x128, false);
  const auto b = random_operand(rng, N, K, k128x128, false);
  AccumParams p;
  p.promote_interval = 64;
  for (AccumModel m : {AccumModel::exact, AccumModel::fp32_seq, AccumModel::fp32_pairwise, AccumModel::promote,
                       AccumModel::hopper_fast}) {
    INFO(to_string(m));
    const auto golden = gemm_golden(a.view(M, K, k1x128), b.view(N, K, k128x128), m, p);
    require_same_bits(golden, gemm(a.view(M, K, k1x128), b.view(N, K, k128x128), m, p, 1), N, "1 thread");
    require_same_bits(golden, gemm(a.view(M, K, k1x128), b.view(N, K, k128x128), m, p, 2), N, "2 threads");
  }
  SECTION("the AVX2 tiles of fp32_seq on a tile-aligned shape") {
    const std::size_t M2 = 24, N2 = 64, K2 = 512;
    const auto a2 = random_operand(rng, M2, K2, kTensor, true);
    const auto b2 = random_operand(rng, N2, K2, kTensor, true);
    require_same_bits(gemm_golden(a2.view(M2, K2, kTensor), b2.view(N2, K2, kTensor), AccumModel::fp32_seq, {}),
                      gemm(a2.view(M2, K2, kTensor), b2.view(N2, K2, kTensor), AccumModel::fp32_seq, {}, 2), N2,
                      "fp32_seq tensor-scaled");
  }
}

TEST_CASE("gemm exact model equals a GMP rational sum rounded once by MPFR", "[gemm][oracle][mpfr]") {
  std::mt19937 rng(11);
  const std::size_t M = 9, N = 11, K = 384;
  for (bool pow2 : {true, false}) {
    const auto a = random_operand(rng, M, K, k1x128, pow2);
    const auto b = random_operand(rng, N, K, k128x128, pow2);
    const auto out = gemm(a.view(M, K, k1x128), b.view(N, K, k128x128), AccumModel::exact, {});
    for (std::size_t i = 0; i < M; ++i)
      for (std::size_t j = 0; j < N; ++j) {
        const float want = gmp_exact_output(a.view(M, K, k1x128), b.view(N, K, k128x128), i, j, 128);
        INFO(fmt::format("out[{}][{}] pow2 scales {}", i, j, pow2));
        CHECK(std::bit_cast<std::uint32_t>(out[i * N + j]) == std::bit_cast<std::uint32_t>(want));
      }
  }
}

namespace {
// A [1, K] and B [1, K] from explicit values (each exactly representable in e4m3), tensor scale 1.
float dot(const std::vector<double>& av, const std::vector<double>& bv, AccumModel m, AccumParams p = {}) {
  Operand a, b;
  for (double x : av) a.codes.push_back(std::uint8_t(encode(e4m3, x, kRneSatfinite)));
  for (double x : bv) b.codes.push_back(std::uint8_t(encode(e4m3, x, kRneSatfinite)));
  a.scales = b.scales = {1.0f};
  return gemm(a.view(1, av.size(), kTensor), b.view(1, bv.size(), kTensor), m, p)[0];
}
}  // namespace

TEST_CASE("gemm accumulation models on closed-form cases", "[gemm]") {
  const double tiny = std::ldexp(1.0, -9);  // e4m3's smallest subnormal: products of two are 2^-18
  SECTION("small addends after one large product: fp32 absorbs them, exact keeps them") {
    const std::size_t K = 4097;  // 448^2 = 200704 (fp32 ulp 2^-6), then 4096 products of 2^-18 = 2^-6
    std::vector<double> a(K, tiny), b(K, tiny);
    a[0] = b[0] = 448.0;
    CHECK(dot(a, b, AccumModel::exact) == 200704.0f + 0.015625f);
    CHECK(dot(a, b, AccumModel::fp32_seq) == 200704.0f);
    CHECK(dot(a, b, AccumModel::fp32_pairwise) == 200704.0f);
  }
  SECTION("alternating magnitudes: fp32_seq keeps only the last small term") {
    std::vector<double> a, b;
    for (int n = 0; n < 64; ++n) {
      a.insert(a.end(), {448.0, tiny, -448.0, tiny});
      b.insert(b.end(), {448.0, tiny, 448.0, tiny});
    }
    CHECK(dot(a, b, AccumModel::fp32_seq) == float(std::ldexp(1.0, -18)));
    CHECK(dot(a, b, AccumModel::exact) == float(128 * std::ldexp(1.0, -18)));
  }
  SECTION("K ones: a 14-bit accumulator stalls at 2^14 unless promoted every N_C") {
    const std::size_t K = 1 << 15;
    const std::vector<double> ones(K, 1.0);
    AccumParams never;
    never.promote_interval = int(K);
    CHECK(dot(ones, ones, AccumModel::promote, never) == 16384.0f);  // 2^(13+1): adding 1 truncates away
    CHECK(dot(ones, ones, AccumModel::promote) == float(K));         // N_C = 128: every chunk is exact
    AccumParams fast;
    fast.fast_accum = true;
    CHECK(dot(ones, ones, AccumModel::hopper_fast, fast) == 16384.0f);
    CHECK(dot(ones, ones, AccumModel::hopper_fast) == float(K));
    CHECK(dot(ones, ones, AccumModel::fp32_seq) == float(K));
  }
  SECTION("the PAPER.md probe (K = 16384, ones x 0.0625/1): exact 8704") {
    std::vector<double> a(16384, 1.0), b(16384);
    for (std::size_t k = 0; k < b.size(); ++k) b[k] = k % 2 ? 1.0 : 0.0625;
    CHECK(dot(a, b, AccumModel::exact) == 8704.0f);
    CHECK(dot(a, b, AccumModel::fp32_seq) == 8704.0f);
  }
}

TEST_CASE("gemm rejects mismatched operands with a clear message", "[gemm][errors]") {
  Operand a, b;
  a.codes.assign(4 * 8, 0x38);
  b.codes.assign(3 * 6, 0x38);
  a.scales = b.scales = {1.0f};
  CHECK_THROWS_WITH(gemm(a.view(4, 8, kTensor), b.view(3, 6, kTensor), AccumModel::exact, {}),
                    Catch::Contains("A has K = 8 but B has K = 6"));
  b.codes.assign(3 * 8, 0x38);
  CHECK_THROWS_WITH(gemm(a.view(4, 8, k1x128), b.view(3, 8, kTensor), AccumModel::exact, {}),
                    Catch::Contains("operand A has 1 scales, expected 4"));
}
