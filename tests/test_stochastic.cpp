// Stochastic rounding, exactly. Our rule (convert.hpp): with frac = (|x| - down) / ulp in [0, 1) and
// 64 random bits R, round away from zero iff frac * 2^64 + R >= 2^64, i.e. iff R >= 2^64 - floor(frac * 2^64).
// Rounding is a deterministic function of R, so P(up) = floor(frac * 2^64) / 2^64 exactly for uniform R;
// for frac = k / 2^j (j <= 64) that is k / 2^j. The two possible outcomes are MPFR's RNDZ and RNDA
// results, i.e. {RNDD, RNDU}. R comes from philox_bits(seed, index0 + i) in the batch API.
#include <catch2/catch.hpp>

#include <fmt/format.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "formats/batch.hpp"
#include "formats/convert.hpp"
#include "formats/philox.hpp"
#include "oracles/mpfr_reference.hpp"

using namespace fp8flow;
using namespace fp8flow::oracle;

namespace {

constexpr Overflow kPolicies[] = {Overflow::satfinite, Overflow::nonsat};
constexpr CastPolicy sr(Overflow o) { return {Rounding::stochastic, o}; }

// floor(frac * 2^64) for x between its RNDZ and RNDA neighbours in f, computed exactly with MPFR.
std::uint64_t exact_frac64(const RefFormat& f, double x) {
  const double z = mpfr_round_to(f, x, MPFR_RNDZ), a = mpfr_round_to(f, x, MPFR_RNDA);
  if (z == a) return 0;
  mpfr_t num, den;
  mpfr_inits2(2200, num, den, static_cast<mpfr_ptr>(nullptr));
  mpfr_set_d(num, std::fabs(x), MPFR_RNDN);
  mpfr_sub_d(num, num, std::fabs(z), MPFR_RNDN);     // exact at 2200 bits
  mpfr_set_d(den, std::fabs(a) - std::fabs(z), MPFR_RNDN);  // one ulp of f: a power of two, exact in double
  mpfr_div(num, num, den, MPFR_RNDN);                // exact: division by a power of two
  mpfr_mul_2ui(num, num, 64, MPFR_RNDN);
  const std::uint64_t r = mpfr_get_uj(num, MPFR_RNDZ);
  mpfr_clears(num, den, static_cast<mpfr_ptr>(nullptr));
  return r;
}

// The two outcomes, with the overflow policy applied: toward zero, and away from zero.
struct Outcomes {
  std::uint32_t down, up;
};
Outcomes outcomes(const RefFormat& f, double x, Overflow o) {
  const bool neg = std::signbit(x);
  return {ref_encode(f, x, Rounding::rz, o), ref_encode(f, x, neg ? Rounding::rd : Rounding::ru, o)};
}

// Spacing of f just above |v| (v representable): the ulp that stochastic rounding splits.
double ulp_above(const RefFormat& f, double v) {
  const double a = std::fabs(v);
  return a < std::ldexp(1.0, f.emin) ? std::ldexp(1.0, f.emin - f.man) : std::ldexp(1.0, std::ilogb(a) - f.man);
}

struct Case {
  double x;
  std::uint64_t k;
  int j;  // x = down + k / 2^j ulp
};

// x = down + k / 2^j ulp for representable `down`, where that is exact in double; both signs.
void add_cases(std::vector<Case>& out, const RefFormat& f, double down, std::initializer_list<std::pair<std::uint64_t, int>> kj) {
  const double ulp = ulp_above(f, down);
  for (auto [k, j] : kj) {
    const double step = std::ldexp(double(k), -j) * ulp;
    const double x = down + step;
    if (x - down != step) continue;  // not exact in double
    out.push_back({x, k, j});
    out.push_back({-x, k, j});
  }
}

const RefFormat* const kSrFormats[] = {&kE4m3, &kE5m2, &kE4m3fnuz, &kE5m2fnuz, &kE2m1, &kE2m3, &kE3m2, &kBf16, &kF16, &kF32};

std::vector<Case> boundary_cases(const RefFormat& f, int max_j_from_zero) {
  const std::initializer_list<std::pair<std::uint64_t, int>> kj = {
      {1, 1}, {1, 2}, {3, 2}, {1, 3}, {5, 3}, {7, 3}, {1, 10}, {1023, 10}, {1, 20}, {12345, 20}, {1, 29}};
  std::vector<Case> out;
  const double min_sub = ref_decode(f, 1), min_norm = std::ldexp(1.0, f.emin);
  const double max_prev = f.max - ulp_above(f, std::nextafter(f.max, 0.0));
  // Normal range, the last subnormal, the first normal, the top binade, and above max (overflow).
  for (double down : {1.0, 1.0 + ulp_above(f, 1.0), min_sub, min_norm - min_sub, min_norm, max_prev, f.max})
    add_cases(out, f, down, kj);
  // Between 0 and the smallest subnormal, as far down as the 64 random bits are exact for both APIs.
  std::vector<std::pair<std::uint64_t, int>> small;
  for (int j = 1; j <= max_j_from_zero; ++j) small.push_back({1, j});
  small.push_back({3, 2});
  for (auto [k, j] : small) add_cases(out, f, 0.0, {{k, j}});
  return out;
}

std::string hex_code(const RefFormat& f, std::uint32_t c) { return fmt::format("0x{:0{}X}", c, (f.bits + 3) / 4); }

// Checks the threshold exactly for x: R just below it rounds down, R at it rounds up.
// Returns a description of the first failure, or "".
std::string check_threshold(const RefFormat& f, const Case& c, Overflow o) {
  const std::uint64_t frac64 = exact_frac64(f, c.x);
  // The oracle agrees with the closed form k / 2^j.
  const std::uint64_t closed = c.j <= 64 ? c.k << (64 - c.j) : 0;
  if (frac64 != closed)
    return fmt::format("{} input {:a}: MPFR frac64 0x{:016X} but k/2^j gives 0x{:016X}", f.name, c.x, frac64, closed);
  const auto [down, up] = outcomes(f, c.x, o);
  const std::uint64_t threshold = 0 - frac64;  // 2^64 - frac64 (mod 2^64); frac64 = 0 never rounds up
  std::vector<std::uint64_t> draws = {0, 1, ~0ull, 1ull << 63, threshold - 1, threshold, threshold + 1};
  const bool is_float = double(float(c.x)) == c.x;
  for (std::uint64_t r : draws) {
    const bool want_up = frac64 != 0 && r >= threshold;
    const std::uint32_t want = want_up ? up : down;
    const std::uint32_t got = encode(*f.fmt, c.x, sr(o), r);
    const std::uint32_t got_f = is_float ? encode(*f.fmt, float(c.x), sr(o), r) : want;
    if (got != want || got_f != want)
      return fmt::format("{} {} input {:a} (0x{:016X}, P(up) = {}/2^{}) random 0x{:016X}: ours 0x{:X} (float API 0x{:X}), "
                         "expected {} ({} of RNDZ {}, RNDA {})",
                         f.name, to_string(o), c.x, std::bit_cast<std::uint64_t>(c.x), c.k, c.j, r, got, got_f,
                         hex_code(f, want), want_up ? "up" : "down", hex_code(f, down), hex_code(f, up));
  }
  return "";
}

}  // namespace

TEST_CASE("stochastic rounding: exact threshold on boundary cases with known P(up)", "[stochastic][oracle][mpfr]") {
  for (const RefFormat* f : kSrFormats) {
    // From zero, j <= 6 keeps the float32 path within 31 shift bits (see the far-below test).
    for (const Case& c : boundary_cases(*f, 6)) {
      for (Overflow o : kPolicies) {
        const std::string failure = check_threshold(*f, c, o);
        INFO(failure);
        REQUIRE(failure.empty());
      }
    }
  }
}

TEST_CASE("stochastic rounding: P(up) stays exact far below the smallest subnormal", "[stochastic][oracle][mpfr]") {
  // x = 2^-j * smallest subnormal: P(up) = 2^-j, for any j up to 64 random bits.
  for (const RefFormat* f : {&kE4m3, &kE5m2, &kE2m1, &kF16}) {
    std::vector<Case> cases;
    for (int j : {7, 8, 9, 10, 11, 12, 16, 24, 40, 60}) add_cases(cases, *f, 0.0, {{1, j}, {3, j}});
    std::string first;
    long bad = 0;
    for (const Case& c : cases)
      for (Overflow o : kPolicies) {
        const std::string failure = check_threshold(*f, c, o);
        if (!failure.empty() && bad++ == 0) first = failure;
      }
    INFO(fmt::format("{} failures; first: {}", bad, first));
    CHECK(bad == 0);
  }
}

TEST_CASE("stochastic rounding: outcomes are MPFR's RNDD and RNDU results", "[stochastic][oracle][mpfr]") {
  // Up to one ulp above max; beyond it both neighbours overflow (nonsat: always Inf/NaN, unlike RNDZ's max).
  for (const RefFormat* f : kSrFormats) {
    std::string first;
    long bad = 0;
    for (const Case& c : boundary_cases(*f, 6)) {
      for (Overflow o : kPolicies) {
        const std::uint32_t rd = ref_encode(*f, c.x, Rounding::rd, o), ru = ref_encode(*f, c.x, Rounding::ru, o);
        for (std::uint64_t i = 0; i < 64; ++i) {
          const std::uint32_t got = encode(*f->fmt, c.x, sr(o), philox_bits(99, i));
          if (got != rd && got != ru && bad++ == 0)
            first = fmt::format("{} {} input {:a}: ours 0x{:X} not in {{RNDD 0x{:X}, RNDU 0x{:X}}}", f->name,
                                to_string(o), c.x, got, rd, ru);
        }
      }
    }
    INFO(first);
    CHECK(bad == 0);
  }
}

TEST_CASE("stochastic rounding: representable values never change", "[stochastic]") {
  for (const RefFormat* f : kSrFormats) {
    if (f->bits > 16) continue;
    std::string first;
    long bad = 0;
    for (std::uint32_t c = 0; c < (std::uint32_t(1) << f->bits); ++c) {
      const double v = ref_decode(*f, c);
      if (std::isnan(v)) continue;
      for (Overflow o : kPolicies) {
        if (std::isinf(v) && o == Overflow::satfinite) continue;  // Inf saturates
        for (std::uint64_t r : {std::uint64_t(0), std::uint64_t(1) << 63, ~std::uint64_t(0), philox_bits(5, c)}) {
          const std::uint32_t got = encode(*f->fmt, v, sr(o), r);
          const std::uint32_t got_f = encode(*f->fmt, float(v), sr(o), r);
          if ((got != c || got_f != c) && bad++ == 0)
            first = fmt::format("{} code 0x{:X} ({:a}) random 0x{:016X}: ours 0x{:X} / float API 0x{:X}", f->name, c,
                                v, r, got, got_f);
        }
      }
    }
    INFO(first);
    CHECK(bad == 0);
  }
}

namespace {

constexpr std::size_t kDraws = std::size_t(1) << 20;

template <class In, class Out>
std::vector<Out> batch_sr(const RefFormat& f, Overflow o, const std::vector<In>& in, BatchOptions opt) {
  std::vector<Out> out(in.size());
  encode(*f.fmt, sr(o), std::span<const In>(in), std::span<Out>(out), opt);
  return out;
}

// Runs one boundary case through the batch API 2^20 times and checks the distribution, each element
// against the scalar encoder with the same Philox draw, and invariance to threads and slicing.
template <class In, class Out>
void check_batch_distribution(const RefFormat& f, double x, double p_up, Overflow o) {
  const std::uint64_t seed = 0x5eed0000ull + std::bit_cast<std::uint64_t>(x) % 977;
  const std::vector<In> in(kDraws, In(x));
  INFO(fmt::format("{} {} input {:a} ({}), P(up) = {}", f.name, to_string(o), x, sizeof(In) == 4 ? "float" : "double", p_up));
  const auto [down, up] = outcomes(f, x, o);
  const auto serial = batch_sr<In, Out>(f, o, in, {.seed = seed, .index0 = 0, .threads = 1});

  std::size_t ups = 0, others = 0, scalar_diff = 0;
  for (std::size_t i = 0; i < kDraws; ++i) {
    ups += serial[i] == up;
    others += serial[i] != up && serial[i] != down;
    scalar_diff += serial[i] != encode(*f.fmt, In(x), sr(o), philox_bits(seed, i));
  }
  CHECK(others == 0);
  CHECK(scalar_diff == 0);
  // Binomial: |ups - n p| <= 6 sigma (+1 for p near 0 or 1).
  const double n = double(kDraws), sigma = std::sqrt(n * p_up * (1 - p_up));
  INFO(fmt::format("{} ups in {} draws, expected {} +- {}", ups, kDraws, n * p_up, 6 * sigma));
  CHECK(std::fabs(double(ups) - n * p_up) <= 6 * sigma + 1);

  // Compared as bools: Catch would print all 2^20 elements of a failing vector comparison.
  const bool threads_agree = batch_sr<In, Out>(f, o, in, {.seed = seed, .index0 = 0, .threads = 2}) == serial;
  CHECK(threads_agree);  // and reproducible
  const bool seed_matters = batch_sr<In, Out>(f, o, in, {.seed = seed + 1, .index0 = 0, .threads = 1}) != serial;
  CHECK(seed_matters);

  // Slices at ragged points, each with its global index0, concatenate to the whole.
  std::vector<Out> sliced;
  const std::size_t cuts[] = {0, 1, 1000, 4099, kDraws / 2 + 17, kDraws};
  for (std::size_t s = 0; s + 1 < std::size(cuts); ++s) {
    const std::vector<In> part(in.begin() + cuts[s], in.begin() + cuts[s + 1]);
    const auto out = batch_sr<In, Out>(f, o, part, {.seed = seed, .index0 = cuts[s], .threads = 2});
    sliced.insert(sliced.end(), out.begin(), out.end());
  }
  const bool slicing_agrees = sliced == serial;
  CHECK(slicing_agrees);
}

}  // namespace

TEST_CASE("stochastic rounding: 2^20 Philox draws follow the exact probability", "[stochastic][batch]") {
  struct Dist {
    const RefFormat* f;
    double x, p_up;
  };
  const Dist cases[] = {
      {&kE4m3, 1.0 + 3.0 / 64, 3.0 / 8},               // 1 + 3/8 ulp
      {&kE4m3, -(1.0 + 3.0 / 64), 3.0 / 8},
      {&kE4m3, 450.0, 1.0 / 16},                        // above max: up overflows
      {&kE5m2, 1.25 * std::ldexp(1.0, -16), 1.0 / 4},   // between two subnormals
      {&kE2m1, 5.5, 3.0 / 4},
      {&kE3m2, -0.03125 * 1.5, 3.0 / 4},                // 0.75 of the smallest subnormal
      {&kBf16, 1.0 + std::ldexp(1.0, -17), 1.0 / 1024}, // 1/1024 ulp
      {&kF16, 1000.0 + 1.0 / 6.0, -1},                   // ulp 1/2: P(up) = floor(2^64 * frac)/2^64, about 1/3
  };
  for (const Dist& d : cases) {
    // The overflow policy only matters where "up" overflows (450 in e4m3), and there only nonsat has two
    // outcomes (satfinite: 448 either way); elsewhere satfinite suffices.
    for (Overflow o : kPolicies) {
      if ((o == Overflow::nonsat) != (std::fabs(d.x) > d.f->max)) continue;
      const double p_exact = std::ldexp(double(exact_frac64(*d.f, d.x)), -64);
      if (d.p_up >= 0) CHECK(p_exact == d.p_up);  // dyadic: the threshold gives exactly k / 2^j
      if (d.f->bits <= 8) {
        check_batch_distribution<float, std::uint8_t>(*d.f, d.x, p_exact, o);
        check_batch_distribution<double, std::uint8_t>(*d.f, d.x, p_exact, o);
      } else {
        if (double(float(d.x)) == d.x) check_batch_distribution<float, std::uint16_t>(*d.f, d.x, p_exact, o);
        check_batch_distribution<double, std::uint16_t>(*d.f, d.x, p_exact, o);
      }
    }
  }
}
