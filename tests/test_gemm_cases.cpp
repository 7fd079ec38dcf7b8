// The seeded GEMM cases of the algorithm recordings (src/reference/gemm_cases.hpp): deterministic, row by row
// equal to the whole operand, each distribution doing what it says, samples inside the matrix.
#include <catch2/catch.hpp>

#include <cmath>
#include <set>

#include "formats/convert.hpp"
#include "io/errors.hpp"
#include "reference/gemm_cases.hpp"

using namespace fp8flow;

TEST_CASE("gemm cases: deterministic, row generation equals the operand", "[gemm_cases]") {
  for (std::string_view d : kGemmCaseDists) {
    const GemmCase c{40, 24, 256, "1x128_128x128", std::string(d), 7};
    const auto a = gemm_case_operand(c, 0), a2 = gemm_case_operand(c, 0), b = gemm_case_operand(c, 1);
    CHECK(a == a2);
    std::vector<std::uint8_t> row(c.k);
    gemm_case_row(c, 1, 13, row.data());
    CHECK(std::equal(row.begin(), row.end(), b.begin() + 13 * c.k));
    GemmCase c2 = c;
    c2.seed = 8;
    if (d != "ones") CHECK(gemm_case_operand(c2, 0) != a);
    const auto sa = gemm_case_scales(c, 0), sb = gemm_case_scales(c, 1);
    CHECK(sa.size() == 40 * 2);
    CHECK(sb.size() == 1 * 2);
  }
}

TEST_CASE("gemm cases: distributions", "[gemm_cases]") {
  auto vals = [](const GemmCase& c, int w) {
    std::vector<float> v;
    for (auto x : gemm_case_operand(c, w)) v.push_back(decode_f32(e4m3, x));
    return v;
  };
  {
    const GemmCase c{4, 4, 512, "tensor", "cancel", 3};
    const auto a = vals(c, 0), b = vals(c, 1);
    int cancelled = 0;
    for (std::size_t k = 0; k < a.size(); k += 2) {
      CHECK(b[k] == b[k + 1]);
      cancelled += a[k + 1] == -a[k];
    }
    CHECK(cancelled > int(a.size() / 2 * 3 / 4));
  }
  {
    const GemmCase c{8, 16, 256, "tensor", "zeros", 3};
    const auto a = vals(c, 0);
    for (std::size_t k = 0; k < 256; ++k) CHECK(a[3 * 256 + k] == 0.0f);  // row 3 % 7 == 3: all zero
  }
  {
    const GemmCase c{64, 16, 4096, "tensor", "nan", 3};
    int nans = 0;
    for (float x : vals(c, 0)) nans += std::isnan(x);
    CHECK(nans > 40);
    for (float x : vals(c, 1)) CHECK(!std::isnan(x));
  }
  {
    const GemmCase c{2, 16, 128, "tensor", "tiny_after_large", 3};
    const auto a = vals(c, 0);
    CHECK(std::fabs(a[0]) >= 256.0f);
    CHECK(std::fabs(a[1]) <= 0.0625f);
    CHECK(gemm_case_scales(GemmCase{2, 16, 128, "tensor", "overflow", 1}, 0)[0] == 0x1.0p60f);
  }
  {
    const GemmCase c{16, 16, 4096, "tensor", "mixed_exp", 3};
    std::set<std::uint8_t> codes;
    for (auto x : gemm_case_operand(c, 0)) codes.insert(x);
    CHECK(codes.size() == 254);  // every finite code, no NaN
  }
}

TEST_CASE("gemm cases: samples, sets, bad input", "[gemm_cases]") {
  const GemmCase big{4096, 2048, 1024, "tensor", "normal", 1};
  const auto s = gemm_case_sample(big, 2048);
  CHECK(s.size() <= 2048);
  CHECK(s.size() >= 1024);
  CHECK(s.rows.front() == 0);
  CHECK(s.rows.back() == 4095);
  CHECK(s.cols.back() == 2047);
  const GemmCase small{3, 16, 1040, "tensor", "normal", 1};
  CHECK(gemm_case_sample(small, 2048).size() == 48);
  const auto fit = gemm_case_set("fit"), held = gemm_case_set("heldout");
  std::set<std::string> fit_names;
  std::set<std::uint64_t> fit_seeds;
  for (const auto& c : fit) fit_names.insert(c.name()), fit_seeds.insert(c.seed);
  for (const auto& c : held) {
    CHECK(fit_seeds.count(c.seed) == 0);
    for (const auto& f : fit) CHECK(!(f.m == c.m && f.n == c.n && f.k == c.k));  // disjoint shapes
  }
  CHECK_THROWS_AS(gemm_case_set("train"), InputError);
  CHECK_THROWS_AS(gemm_case_operand(GemmCase{4, 4, 100, "tensor", "normal", 1}, 0), InputError);
  CHECK_THROWS_AS(gemm_case_operand(GemmCase{4, 4, 128, "tensor", "uniform", 1}, 0), InputError);
  CHECK_THROWS_AS(gemm_case_operand(GemmCase{4, 4, 128, "2x2", "normal", 1}, 0), InputError);
}
