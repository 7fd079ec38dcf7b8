#include "reference/gemm_cases.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <numbers>

#include "formats/convert.hpp"
#include "formats/splitmix64.hpp"
#include "io/errors.hpp"

namespace fp8flow {

namespace {

std::uint64_t row_state(const GemmCase& c, int which, std::uint64_t row) {
  std::uint64_t s = c.seed * 0xD1B54A32D192ED03ull + std::uint64_t(which + 1) * 0x8CB92BA72F3D8DD7ull;
  s ^= row * 0x9E3779B97F4A7C15ull;
  (void)splitmix64_next(s);
  return s;
}

double uniform01(std::uint64_t& s) { return double(splitmix64_next(s) >> 11) * 0x1.0p-53; }

double normal(std::uint64_t& s) {
  const double u1 = std::max(uniform01(s), 0x1.0p-60), u2 = uniform01(s);
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * std::numbers::pi * u2);
}

std::uint8_t enc(double x) { return std::uint8_t(encode(e4m3, x, kRneSatfinite)); }

std::size_t rows_of(const GemmCase& c, int which) { return which == 0 ? c.m : c.n; }

}  // namespace

std::string GemmCase::name() const { return fmt::format("{}/{}/s{}/{}x{}x{}", scaling, dist, seed, m, n, k); }

Granularity gemm_case_gran_a(const GemmCase& c) { return c.scaling == "tensor" ? kTensor : k1x128; }
Granularity gemm_case_gran_b(const GemmCase& c) {
  return c.scaling == "tensor" ? kTensor : c.scaling == "1x128_128x128" ? k128x128 : k1x128;
}

void check_gemm_case(const GemmCase& c) {
  if (c.scaling != "tensor" && c.scaling != "1x128_128x128" && c.scaling != "1x128_1x128")
    throw InputError(fmt::format("GEMM case scaling '{}': expected tensor, 1x128_128x128 or 1x128_1x128", c.scaling));
  if (std::find(std::begin(kGemmCaseDists), std::end(kGemmCaseDists), c.dist) == std::end(kGemmCaseDists))
    throw InputError(fmt::format("GEMM case dist '{}': expected one of normal, outliers, cancel, tiny_after_large, "
                                 "mixed_exp, zeros, nan, overflow, ones", c.dist));
  if (c.m == 0 || c.n == 0 || c.k == 0 || c.k % 16 != 0)
    throw InputError(fmt::format("GEMM case {}: M, N, K must be positive and K a multiple of 16", c.name()));
}

void gemm_case_row(const GemmCase& c, int which, std::size_t row, std::uint8_t* out) {
  std::uint64_t s = row_state(c, which, row);
  const std::size_t K = c.k;
  const std::string& d = c.dist;
  if (d == "normal" || d == "nan" || d == "zeros") {
    const bool zero_row = d == "zeros" && row % 7 == 3;
    for (std::size_t k = 0; k < K; ++k) {
      std::uint8_t code = enc(normal(s));
      const std::uint64_t r = splitmix64_next(s);
      if (zero_row || (d == "zeros" && r % 10 < 6)) code = 0;
      if (d == "nan" && which == 0 && r % 2048 == 0) code = 0x7F;
      out[k] = code;
    }
  } else if (d == "outliers") {
    for (std::size_t k = 0; k < K; ++k) {
      double x = normal(s);
      const std::uint64_t r = splitmix64_next(s);
      if (r % 100 == 0) x = std::ldexp(x, 5 + int((r >> 8) % 4));
      out[k] = enc(x);
    }
  } else if (d == "cancel") {
    for (std::size_t k = 0; k + 1 < K; k += 2) {
      const std::uint8_t code = enc(normal(s));
      const std::uint64_t r = splitmix64_next(s);
      out[k] = code;
      if (which == 1) out[k + 1] = code;
      else out[k + 1] = (r % 16 == 0) ? enc(normal(s)) : std::uint8_t(code ^ 0x80);
    }
  } else if (d == "tiny_after_large") {
    for (std::size_t k = 0; k < K; ++k) {
      const std::uint64_t r = splitmix64_next(s);
      const double sign = (r & 1) ? -1.0 : 1.0;
      if (k % 64 == 0) out[k] = enc(sign * ((r & 2) ? 448.0 : 256.0));
      else out[k] = enc(sign * std::ldexp(1.0 + double((r >> 8) % 8) / 8.0, -9 + int((r >> 16) % 6)));
    }
  } else if (d == "mixed_exp") {
    for (std::size_t k = 0; k < K; ++k) {
      std::uint8_t code;
      do code = std::uint8_t(splitmix64_next(s)); while ((code & 0x7F) == 0x7F);
      out[k] = code;
    }
  } else if (d == "overflow") {
    for (std::size_t k = 0; k < K; ++k) {
      const std::uint64_t r = splitmix64_next(s);
      out[k] = enc(((r & 1) ? -1.0 : 1.0) * ((r & 6) ? 448.0 : 240.0));
    }
  } else {  // ones
    std::fill(out, out + K, enc(1.0));
  }
}

std::vector<std::uint8_t> gemm_case_operand(const GemmCase& c, int which) {
  check_gemm_case(c);
  const std::size_t R = rows_of(c, which);
  std::vector<std::uint8_t> v(R * c.k);
  for (std::size_t r = 0; r < R; ++r) gemm_case_row(c, which, r, v.data() + r * c.k);
  return v;
}

std::vector<float> gemm_case_scales(const GemmCase& c, int which) {
  check_gemm_case(c);
  const Granularity g = which == 0 ? gemm_case_gran_a(c) : gemm_case_gran_b(c);
  const std::size_t R = rows_of(c, which), KB = (c.k + 127) / 128;
  const std::size_t n = g == kTensor ? 1 : g == k1x128 ? R * KB : ((R + 127) / 128) * KB;
  std::uint64_t s = row_state(c, which + 2, 0x5CA1E);
  std::vector<float> v(n);
  for (auto& x : v) {
    if (c.dist == "overflow") { x = 0x1.0p60f; continue; }
    if (c.dist == "ones") { x = 1.0f; continue; }
    // Non-power-of-two scales spanning 2^-3 .. 2^3 (tensor: [0.5, 2)).
    const double m = 1.0 + uniform01(s);
    const int e = g == kTensor ? -1 + int(splitmix64_next(s) % 2) : -3 + int(splitmix64_next(s) % 7);
    x = static_cast<float>(std::ldexp(m, e));
  }
  return v;
}

GemmSample gemm_case_sample(const GemmCase& c, std::size_t cap) {
  GemmSample smp;
  auto all = [](std::size_t n) {
    std::vector<std::size_t> v(n);
    for (std::size_t i = 0; i < n; ++i) v[i] = i;
    return v;
  };
  if (c.m * c.n <= cap) {
    smp.rows = all(c.m);
    smp.cols = all(c.n);
    return smp;
  }
  std::uint64_t s = row_state(c, 7, 0x5A3D1E);
  auto pick = [&](std::size_t n, std::size_t want) {
    if (want >= n) return all(n);
    std::vector<std::size_t> v{0, n - 1};
    while (v.size() < want) {
      const std::size_t x = std::size_t(splitmix64_next(s) % n);
      if (std::find(v.begin(), v.end(), x) == v.end()) v.push_back(x);
    }
    std::sort(v.begin(), v.end());
    return v;
  };
  const std::size_t nr = std::min<std::size_t>({c.m, 32, std::max<std::size_t>(cap / std::min(c.n, cap), 2)});
  smp.rows = pick(c.m, nr);
  smp.cols = pick(c.n, std::max<std::size_t>(cap / smp.rows.size(), 1));
  return smp;
}

}  // namespace fp8flow

namespace fp8flow {

std::vector<GemmCase> gemm_case_set(std::string_view set) {
  struct Shape { std::size_t m, n, k; };
  std::vector<GemmCase> v;
  const char* scalings[] = {"tensor", "1x128_128x128", "1x128_1x128"};
  auto add = [&](const std::vector<Shape>& shapes, const std::vector<std::string>& dists, std::uint64_t seed0) {
    std::uint64_t seed = seed0;
    for (const auto& s : shapes)
      for (const char* sc : scalings)
        for (const auto& d : dists) v.push_back(GemmCase{s.m, s.n, s.k, sc, d, seed++});
  };
  if (set == "fit") {
    add({{16, 16, 16384}, {32, 64, 8192}, {64, 64, 32768}, {16, 32, 65536}, {1, 16, 4096}, {128, 128, 7168},
         {256, 512, 2048}, {64, 256, 16384}, {2048, 2048, 1024}, {4096, 4096, 4096}, {8192, 8192, 512}},
        {"normal", "outliers", "mixed_exp"}, 1);
    add({{16, 16, 16384}, {64, 64, 32768}, {16, 32, 65536}, {64, 256, 16384}}, {"ones"}, 500);
  } else if (set == "heldout") {
    add({{8, 16, 16384}, {48, 32, 12288}, {64, 32, 65536}, {4, 64, 32768}, {96, 80, 8192}, {200, 144, 4224},
         {512, 256, 16384}, {1024, 4096, 7168}, {8192, 1024, 2048}, {3, 16, 1040}, {1, 32, 32768},
         {32, 128, 24576}},
        {"normal", "outliers", "cancel", "tiny_after_large", "mixed_exp", "zeros", "nan", "overflow"}, 100001);
  } else {
    throw InputError(fmt::format("GEMM case set '{}': expected fit or heldout", set));
  }
  return v;
}

std::size_t gemm_case_sample_cap(const GemmCase& c) { return c.k > 8192 ? 512 : 2048; }

}  // namespace fp8flow
