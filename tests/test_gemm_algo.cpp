// The GEMM algorithm parameters of the CPU model (src/reference/gemm_algo.hpp) and the h100 fast path.
#include <catch2/catch.hpp>

#include <bit>
#include <cmath>

#include "formats/convert.hpp"
#include "io/errors.hpp"
#include "reference/gemm.hpp"
#include "reference/gemm_algo.hpp"
#include "reference/gemm_cases.hpp"

using namespace fp8flow;

namespace {
struct Ops {
  std::vector<std::uint8_t> a, b;
  std::vector<float> sa, sb;
  GemmOperand A, B;
  explicit Ops(const GemmCase& c)
      : a(gemm_case_operand(c, 0)), b(gemm_case_operand(c, 1)), sa(gemm_case_scales(c, 0)), sb(gemm_case_scales(c, 1)),
        A{a, c.m, c.k, &e4m3, sa, gemm_case_gran_a(c)}, B{b, c.n, c.k, &e4m3, sb, gemm_case_gran_b(c)} {}
};
std::size_t bit_diffs(const std::vector<float>& x, const std::vector<float>& y) {
  std::size_t d = 0;
  for (std::size_t i = 0; i < x.size(); ++i)
    d += std::bit_cast<std::uint32_t>(x[i]) != std::bit_cast<std::uint32_t>(y[i]) && !(std::isnan(x[i]) && std::isnan(y[i]));
  return d;
}
}  // namespace

TEST_CASE("h100 fast path (AVX2 tiles) equals the golden loops on every distribution and scaling", "[gemm][gemm_algo]") {
  for (std::string_view d : kGemmCaseDists)
    for (const char* sc : {"tensor", "1x128_128x128", "1x128_1x128"}) {
      const GemmCase c{9, 40, 1040, sc, std::string(d), 11};
      const Ops o(c);
      for (AccumModel m : {AccumModel::h100, AccumModel::h100_fast}) {
        INFO(c.name() << " " << to_string(m));
        const auto g = gemm_golden(o.A, o.B, m, {});
        CHECK(bit_diffs(g, gemm(o.A, o.B, m, {}, 1)) == 0);
        CHECK(bit_diffs(g, gemm(o.A, o.B, m, {}, 2)) == 0);
      }
    }
}

TEST_CASE("gemm algo: parse, print, bad values", "[gemm_algo]") {
  const GemmAlgo g = parse_gemm_algo("splitk=4,reduction=compute");
  CHECK(g.splitk == 4);
  CHECK(g.reduction == SplitReduction::compute);
  CHECK(g.to_string() == "splitk=4,reduction=compute");
  CHECK(parse_gemm_algo(g.to_string()) == g);
  CHECK(parse_gemm_algo("none").splitk == 1);
  CHECK(parse_gemm_algo("splitk=2,reduction=output,unit=256,scale=sum").to_string() ==
        "splitk=2,reduction=output,unit=256,scale=sum");
  CHECK_THROWS_AS(parse_gemm_algo("splitk=0,reduction=compute"), InputError);
  CHECK_THROWS_AS(parse_gemm_algo("splitk=x"), InputError);
  CHECK_THROWS_AS(parse_gemm_algo("splitk=4"), InputError);  // no reduction
  CHECK_THROWS_AS(parse_gemm_algo("reduction=tree"), InputError);
  CHECK_THROWS_AS(parse_gemm_algo("tiles=3"), InputError);
  CHECK_THROWS_AS(parse_gemm_algo("splitk"), InputError);
  CHECK(split_reduction_from_cublas(2) == SplitReduction::compute);
  CHECK_THROWS_AS(split_reduction_from_cublas(3), InputError);
}

TEST_CASE("gemm algo: split bounds cut K in whole units", "[gemm_algo]") {
  auto b = split_bounds(16384, parse_gemm_algo("splitk=4,reduction=compute"));
  CHECK(b == std::vector<std::size_t>{0, 4096, 8192, 12288, 16384});
  b = split_bounds(1040, parse_gemm_algo("splitk=4,reduction=compute"));  // 9 units of 128: 3 + 3 + 3
  CHECK(b == std::vector<std::size_t>{0, 384, 768, 1040});
  b = split_bounds(1000, parse_gemm_algo("splitk=3,reduction=inplace,unit=100"));
  CHECK(b == std::vector<std::size_t>{0, 400, 800, 1000});
  CHECK(split_bounds(77, GemmAlgo{}) == std::vector<std::size_t>{0, 77});
}

TEST_CASE("gemm algo: split-K semantics on closed forms", "[gemm_algo]") {
  // A = B = 1, K = 65536: a fast-accumulated 14-bit chain stalls at 2^14; four splits of 16384 each reach it
  // exactly, so the split sum is 65536 where one chain gives 16384.
  const GemmCase c{1, 16, 65536, "tensor", "ones", 1};
  const Ops o(c);
  CHECK(gemm_algo(o.A, o.B, AccumModel::h100_fast, {}, GemmAlgo{})[0] == 16384.0f);
  CHECK(gemm_algo(o.A, o.B, AccumModel::h100_fast, {}, parse_gemm_algo("splitk=4,reduction=compute"))[0] == 65536.0f);
  CHECK(gemm_algo(o.A, o.B, AccumModel::h100_fast, {}, parse_gemm_algo("splitk=8,reduction=compute"))[0] == 65536.0f);
  CHECK(gemm_algo(o.A, o.B, AccumModel::h100_fast, {}, parse_gemm_algo("splitk=2,reduction=compute"))[0] == 32768.0f);
  // Unsplit, the algorithm path equals gemm(); bf16 output is the fp32 result rounded to nearest even.
  const GemmCase r{5, 24, 4096, "1x128_128x128", "normal", 3};
  const Ops q(r);
  CHECK(bit_diffs(gemm_algo(q.A, q.B, AccumModel::h100, {}, GemmAlgo{}), gemm(q.A, q.B, AccumModel::h100, {})) == 0);
  const auto f = gemm(q.A, q.B, AccumModel::h100, {});
  const auto h = gemm_algo(q.A, q.B, AccumModel::h100, {}, GemmAlgo{}, true);
  for (std::size_t i = 0; i < f.size(); ++i) CHECK(h[i] == round_to_bf16(f[i]));
  CHECK(round_to_bf16(1.0f + 0x1.0p-8f) == 1.0f);             // tie to even
  CHECK(round_to_bf16(1.0f + 0x1.8p-8f) == 1.0f + 0x1.0p-7f);  // above the tie
  // The per-output path with one split equals the fast path too.
  std::vector<std::size_t> rows{0, 4}, cols{1, 23};
  const auto at = gemm_algo_at(q.A, q.B, AccumModel::h100, {}, parse_gemm_algo("splitk=1"), false, rows, cols);
  CHECK(std::bit_cast<std::uint32_t>(at[3]) == std::bit_cast<std::uint32_t>(f[4 * 24 + 23]));
  CHECK_THROWS_AS(gemm_algo_at(q.A, q.B, AccumModel::h100, {}, GemmAlgo{}, false, {5}, {0}), InputError);
}

TEST_CASE("gemm algo table: exact lookups and the nearest-grid rule", "[gemm_algo]") {
  std::vector<GemmAlgoEntry> e;
  for (std::size_t m : {16, 128})
    for (std::size_t k : {1024, 16384}) {
      GemmAlgoEntry x;
      x.scaling = "tensor", x.m = m, x.n = 16, x.k = k;
      if (m == 16 && k == 16384) x.algo = parse_gemm_algo("splitk=4,reduction=compute");
      e.push_back(x);
    }
  const GemmAlgoTable t(e);
  auto l = t.lookup("tensor", false, false, 16, 16, 16384);
  CHECK(l.exact);
  CHECK(l.algo.splitk == 4);
  l = t.lookup("tensor", false, false, 24, 16, 12000);  // nearest on log2: M 16 (24 is nearer 16 than 128), K 16384
  CHECK(!l.exact);
  CHECK(l.m == 16);
  CHECK(l.k == 16384);
  CHECK(l.algo.splitk == 4);
  CHECK(t.lookup("tensor", false, false, 100, 16, 2000).algo.splitk == 1);
  CHECK_THROWS_AS(t.lookup("1x128_1x128", false, false, 16, 16, 1024), InputError);
}

TEST_CASE("gemm algo: the split fast path equals the per-output golden path", "[gemm_algo]") {
  for (const char* sc : {"tensor", "1x128_128x128", "1x128_1x128"})
    for (std::string_view d : {"normal", "mixed_exp", "tiny_after_large", "nan", "overflow"}) {
      const GemmCase c{20, 40, 2304, sc, std::string(d), 5};
      const Ops o(c);
      const std::vector<std::size_t> rows{0, 3, 7, 19}, cols{0, 1, 5, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 20, 21, 33, 39};
      for (AccumModel m : {AccumModel::h100, AccumModel::h100_fast})
        for (const char* spec : {"splitk=1", "splitk=3,reduction=compute", "splitk=4,reduction=output",
                                 "splitk=4,reduction=compute,scale=sum", "splitk=2,reduction=inplace,unit=256"})
          for (bool bf16 : {false, true}) {
            INFO(c.name() << " " << to_string(m) << " " << spec << " bf16 " << bf16);
            const GemmAlgo g = parse_gemm_algo(spec);
            const auto fast = gemm_algo_at(o.A, o.B, m, {}, g, bf16, rows, cols);
            const auto slow = gemm_algo_at(o.A, o.B, AccumModel::hopper_fast, accum_preset_params(m, {}), g, bf16, rows, cols);
            CHECK(bit_diffs(fast, slow) == 0);
          }
    }
}
