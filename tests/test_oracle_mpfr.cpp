// Directed rounding against MPFR: every format, every rounding mode, both overflow policies, on float64
// inputs at and around every rounding boundary, and on all 2^16 bf16 and f16 values.
// The reference (oracles/mpfr_reference.hpp) is written from the standards and MPFR only; its header
// documents the overflow, NaN and zero semantics our encoder is held to.
#include <catch2/catch.hpp>

#include <fmt/format.h>

#include <array>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "formats/batch.hpp"
#include "formats/convert.hpp"
#include "oracles/mpfr_reference.hpp"

using namespace fp8flow;
using namespace fp8flow::oracle;

namespace {

constexpr Rounding kModes[] = {Rounding::rne, Rounding::rz, Rounding::ru, Rounding::rd, Rounding::rna};
constexpr Overflow kPolicies[] = {Overflow::satfinite, Overflow::nonsat};

// Counts mismatches and remembers the first one, so that a broken encoder fails with one readable line.
struct Mismatches {
  long count = 0, checked = 0;
  std::string first;
  void check(const RefFormat& f, double x, CastPolicy p, const char* api, std::uint32_t got, std::uint32_t want) {
    ++checked;
    if (got == want) return;
    if (count++ == 0)
      first = fmt::format("{} {} {} ({} API): input {:a} (0x{:016X}): ours 0x{:0{}X}, MPFR 0x{:0{}X}", f.name,
                          to_string(p.rounding), to_string(p.overflow), api, x, std::bit_cast<std::uint64_t>(x),
                          got, (f.bits + 3) / 4, want, (f.bits + 3) / 4);
  }
};

// The reference code of x under every (rounding, overflow) pair, indexed [rounding][overflow].
using RefCodes = std::array<std::array<std::uint32_t, 2>, std::size(kModes)>;
RefCodes ref_codes(const RefFormat& f, double x) {
  RefCodes out{};
  const bool neg = std::signbit(x), special = std::isnan(x) || std::isinf(x);
  const Rounded rounded = special ? Rounded{x, x, x, x, x} : ref_round_all(f, x);
  for (std::size_t i = 0; i < std::size(kModes); ++i)
    for (std::size_t j = 0; j < std::size(kPolicies); ++j)
      out[i][j] = ref_finish(f, std::isinf(x), rounded[kModes[i]], neg, !special && points_to_max(kModes[i], neg),
                             kPolicies[j]);
  return out;
}

// Every policy on x through the float64 API, and through the float32 API where x is a float.
void check_input(const RefFormat& f, double x, Mismatches& m) {
  const bool is_float = std::isnan(x) || double(float(x)) == x;
  const RefCodes want = ref_codes(f, x);
  for (std::size_t i = 0; i < std::size(kModes); ++i) {
    for (std::size_t j = 0; j < std::size(kPolicies); ++j) {
      const CastPolicy p{kModes[i], kPolicies[j]};
      m.check(f, x, p, "double", encode(*f.fmt, x, p), want[i][j]);
      if (is_float) m.check(f, x, p, "float", encode(*f.fmt, float(x), p), want[i][j]);
    }
  }
}

// x and its neighbours up to k ulps of double on either side, both signs.
void add_neighbourhood(std::vector<double>& out, double x, int k = 4) {
  double lo = x, hi = x;
  out.push_back(x);
  out.push_back(-x);
  for (int i = 0; i < k; ++i) {
    lo = std::nextafter(lo, -INFINITY);
    hi = std::nextafter(hi, INFINITY);
    for (double v : {lo, hi}) {
      out.push_back(v);
      out.push_back(-v);
    }
  }
}

// The next value above max in the format with an unbounded exponent (e4m3: 480, e5m2: 65536).
double next_above_max(const RefFormat& f) { return f.max + std::ldexp(1.0, std::ilogb(f.max) - f.man); }

// Every representable value, every midpoint between neighbours (the tie points), the overflow
// thresholds, the underflow region, each +-1..4 ulps of double, both signs; plus specials.
std::vector<double> boundary_inputs(const RefFormat& f) {
  std::vector<double> values;  // positive finite values, ascending
  for (std::uint32_t mag = 0; mag < sign_bit(f); ++mag) {
    const double v = ref_decode(f, mag);
    if (!std::isnan(v) && !std::isinf(v)) values.push_back(v);
  }
  values.push_back(next_above_max(f));
  std::vector<double> out;
  for (std::size_t i = 0; i < values.size(); ++i) {
    add_neighbourhood(out, values[i]);
    if (i + 1 < values.size()) add_neighbourhood(out, (values[i] + values[i + 1]) / 2);
  }
  const double tiny = ref_decode(f, 1);  // smallest subnormal
  for (double v : {tiny / 4, tiny * 0.75, tiny / 1024, 2 * next_above_max(f), 1e300,
                   std::numeric_limits<double>::max(), std::numeric_limits<double>::denorm_min(),
                   std::numeric_limits<double>::min()})
    add_neighbourhood(out, v, 1);
  for (double v : {std::numeric_limits<double>::infinity(), std::numeric_limits<double>::quiet_NaN()}) {
    out.push_back(v);
    out.push_back(-v);
  }
  out.push_back(std::bit_cast<double>(0x7FF0000000000001ull));  // signalling NaN
  out.push_back(std::bit_cast<double>(0xFFF8000000000123ull));  // negative NaN with payload
  return out;
}

std::string report(const Mismatches& m) {
  return fmt::format("{} mismatches in {} checks; first: {}", m.count, m.checked, m.first);
}

}  // namespace

TEST_CASE("MPFR oracle: our decode equals the reference decode of every code", "[oracle][mpfr]") {
  for (const RefFormat* f : kSmallFormats) {
    long bad = 0;
    std::string first;
    for (std::uint32_t c = 0; c < (std::uint32_t(1) << f->bits); ++c) {
      const double want = ref_decode(*f, c), got = decode(*f->fmt, c);
      const bool same = std::isnan(want) ? std::isnan(got) && std::signbit(got) == std::signbit(want)
                                         : std::bit_cast<std::uint64_t>(got) == std::bit_cast<std::uint64_t>(want);
      if (!same && bad++ == 0) first = fmt::format("{} code 0x{:X}: ours {:a}, reference {:a}", f->name, c, got, want);
    }
    INFO(first);
    CHECK(bad == 0);
  }
}

TEST_CASE("MPFR oracle: float64 inputs around every rounding boundary", "[oracle][mpfr]") {
  for (const RefFormat* f : kSmallFormats) {
    SECTION(f->name) {
      Mismatches m;
      for (double x : boundary_inputs(*f)) check_input(*f, x, m);
      INFO(report(m));
      CHECK(m.count == 0);
    }
  }
}

TEST_CASE("MPFR oracle: f32 from float64 near float boundaries (sampled)", "[oracle][mpfr][f32]") {
  std::mt19937_64 rng(20240611);
  std::vector<double> in;
  // Every binade from below the float subnormals to beyond FLT_MAX: its first float, a random float,
  // the midpoints above both, and the overflow threshold 2^128 - 2^103.
  for (int e = -152; e <= 129; ++e) {
    const double base = std::ldexp(1.0, e);
    add_neighbourhood(in, base, 2);
    for (int k = 0; k < 8; ++k) {
      const float fv = float(std::ldexp(1.0 + double(rng() >> 41) / double(1ull << 23), e));
      if (!std::isfinite(fv)) continue;
      const double ulp = double(std::nextafter(fv, INFINITY)) - double(fv);
      add_neighbourhood(in, double(fv), 2);
      if (std::isfinite(ulp)) add_neighbourhood(in, double(fv) + ulp / 2, 2);
    }
  }
  add_neighbourhood(in, std::ldexp(1.0, 128) - std::ldexp(1.0, 103));  // rne overflow threshold (a tie: up)
  add_neighbourhood(in, double(std::numeric_limits<float>::max()));
  add_neighbourhood(in, double(std::numeric_limits<float>::denorm_min()) / 2);  // tie with zero
  add_neighbourhood(in, double(std::numeric_limits<float>::min()));
  Mismatches m;
  for (double x : in) check_input(kF32, x, m);
  INFO(report(m));
  CHECK(m.count == 0);
}

TEST_CASE("MPFR oracle: all 2^16 bf16 and f16 values as inputs", "[oracle][mpfr]") {
  for (const RefFormat* src : {&kBf16, &kF16}) {
    for (const RefFormat* f : kSmallFormats) {
      SECTION(fmt::format("{} from {}", f->name, src->name)) {
        Mismatches m;
        for (std::uint32_t c = 0; c < 0x10000u; ++c) check_input(*f, ref_decode(*src, c), m);
        INFO(report(m));
        CHECK(m.count == 0);
      }
    }
  }
}

TEST_CASE("MPFR oracle: the batch API agrees on all 2^16 bf16 inputs", "[oracle][mpfr][batch]") {
  std::vector<float> in(0x10000);
  for (std::uint32_t c = 0; c < 0x10000u; ++c) in[c] = std::bit_cast<float>(c << 16);
  for (const RefFormat* f : kSmallFormats) {
    std::vector<RefCodes> want(in.size());
    for (std::size_t i = 0; i < in.size(); ++i) want[i] = ref_codes(*f, in[i]);
    for (std::size_t mi = 0; mi < std::size(kModes); ++mi) {
      for (std::size_t oi = 0; oi < std::size(kPolicies); ++oi) {
        const CastPolicy p{kModes[mi], kPolicies[oi]};
        Mismatches m;
        std::vector<std::uint32_t> got(in.size());
        if (f->bits <= 8) {
          std::vector<std::uint8_t> out(in.size());
          encode(*f->fmt, p, std::span<const float>(in), std::span<std::uint8_t>(out), {.threads = 1});
          for (std::size_t i = 0; i < in.size(); ++i) got[i] = out[i];
        } else {
          std::vector<std::uint16_t> out(in.size());
          encode(*f->fmt, p, std::span<const float>(in), std::span<std::uint16_t>(out), {.threads = 1});
          for (std::size_t i = 0; i < in.size(); ++i) got[i] = out[i];
        }
        for (std::size_t i = 0; i < in.size(); ++i) m.check(*f, in[i], p, "batch", got[i], want[i][mi][oi]);
        INFO(report(m));
        CHECK(m.count == 0);
      }
    }
  }
}

TEST_CASE("MPFR oracle: hand-picked cases that pin the semantics", "[oracle][mpfr]") {
  SECTION("float64 rounds once: 1.0625 + 2^-40 is above the e4m3 tie, float32 is not") {
    const double x = 1.0625 + std::ldexp(1.0, -40);
    CHECK(ref_encode(kE4m3, x, Rounding::rne, Overflow::satfinite) == 0x39);  // 1.125
    CHECK(encode(e4m3, x, kRneSatfinite) == 0x39);
    CHECK(ref_encode(kE4m3, double(float(x)), Rounding::rne, Overflow::satfinite) == 0x38);  // 1.0
    CHECK(encode(e4m3, float(x), kRneSatfinite) == 0x38);
  }
  SECTION("IEEE 754 7.4: directed rounding away from infinity gives max even when nonsat") {
    for (Rounding r : kModes) {
      INFO(to_string(r));
      CHECK(encode(e4m3, 1000.0, {r, Overflow::nonsat}) == ref_encode(kE4m3, 1000.0, r, Overflow::nonsat));
      CHECK(encode(e5m2, -1e6, {r, Overflow::nonsat}) == ref_encode(kE5m2, -1e6, r, Overflow::nonsat));
    }
    CHECK(ref_encode(kE4m3, 1000.0, Rounding::rz, Overflow::nonsat) == 0x7E);
    CHECK(ref_encode(kE4m3, 1000.0, Rounding::rd, Overflow::nonsat) == 0x7E);
    CHECK(ref_encode(kE4m3, 1000.0, Rounding::ru, Overflow::nonsat) == 0x7F);
    CHECK(ref_encode(kE5m2, -1e6, Rounding::ru, Overflow::nonsat) == 0xFB);
    CHECK(ref_encode(kE5m2, -1e6, Rounding::rd, Overflow::nonsat) == 0xFC);
    // Inf is not an overflow: it stays Inf under nonsat whatever the rounding.
    CHECK(encode(e5m2, INFINITY, {Rounding::rz, Overflow::nonsat}) == 0x7C);
  }
  SECTION("formats without Inf/NaN saturate, and NaN becomes +max") {
    CHECK(encode(e2m1, 1e9, kRneNonsat) == 0x7);
    CHECK(encode(e2m1, -INFINITY, kRneNonsat) == 0xF);
    CHECK(encode(e3m2, -std::numeric_limits<double>::quiet_NaN(), kRneNonsat) == 0x1F);
  }
  SECTION("rna breaks ties away from zero, rne to even") {
    CHECK(encode(e4m3, 4.25, {Rounding::rna, Overflow::satfinite}) == 0x49);
    CHECK(encode(e4m3, -4.25, {Rounding::rna, Overflow::satfinite}) == 0xC9);
    CHECK(encode(e4m3, 4.25, kRneSatfinite) == 0x48);
  }
}
