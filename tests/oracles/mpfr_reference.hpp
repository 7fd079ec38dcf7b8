// An independent reference encoder for the oracle tests, built on MPFR and on the standards' own
// numbers. It shares nothing with src/formats/convert.hpp: the format facts below are copied from
// OCP OFP8 v1.0 (E4M3, E5M2), the FNUZ definitions (ml_dtypes / AMD), OCP MX v1.0 (E2M1, E2M3, E3M2)
// and IEEE 754-2019 (binary16/32, bfloat16), and codes are built from sign, exponent and mantissa by
// hand. Only `fmt` points at our FormatSpec, to call the encoder under test.
//
// Semantics encoded here (the contract our encoder must meet; see also PAPER.md section 4):
//   rounding   x is rounded once, from its exact value, to man+1 significant bits with the format's
//              subnormal range below (MPFR: emin + mpfr_subnormalize) and an unbounded exponent above.
//              rna (ties away) is built from MPFR_RNDN plus an exact tie test, since MPFR has no RNDNA
//              for mpfr_set_d.
//   overflow   a rounded magnitude above max finite (or an input +-Inf):
//                satfinite -> +-max;
//                nonsat    -> +-Inf where the format has Inf, else its NaN code with the input's sign
//                             (CUDA __NV_NOSAT: e4m3 -500 -> 0xFF; FNUZ has one NaN, 0x80); except, for a finite
//                             input, IEEE 754-2019 section 7.4: rz, ru of a negative and rd of a positive
//                             give +-max (the rounding points away from infinity);
//                formats without Inf/NaN (e2m1, e2m3, e3m2) always saturate, Inf included.
//   NaN        the canonical positive NaN code (sign dropped, as CUDA's float API), or +max where the
//              format has no NaN (as CUDA's FP4/FP6 conversions).
//   zero       a result that rounds to zero keeps the input's sign, except FNUZ formats (no -0: +0).
#pragma once

#include <mpfr.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "formats/convert.hpp"

namespace fp8flow::oracle {

enum class Top { ieee, nan_all_ones, nan_neg_zero, none };  // how the top of the code space is used

struct RefFormat {
  const FormatSpec* fmt;  // only to call the code under test
  const char* name;
  int bits, exp, man, emin;  // emin: unbiased exponent of the smallest normal
  double max;                // largest finite value, from the standard
  Top top;
};

// Straight from the standards' tables.
inline const RefFormat kE4m3{&e4m3, "e4m3", 8, 4, 3, -6, 448.0, Top::nan_all_ones};
inline const RefFormat kE5m2{&e5m2, "e5m2", 8, 5, 2, -14, 57344.0, Top::ieee};
inline const RefFormat kE4m3fnuz{&e4m3fnuz, "e4m3fnuz", 8, 4, 3, -7, 240.0, Top::nan_neg_zero};
inline const RefFormat kE5m2fnuz{&e5m2fnuz, "e5m2fnuz", 8, 5, 2, -15, 57344.0, Top::nan_neg_zero};
inline const RefFormat kE2m1{&e2m1, "e2m1", 4, 2, 1, 0, 6.0, Top::none};
inline const RefFormat kE2m3{&e2m3, "e2m3", 6, 2, 3, 0, 7.5, Top::none};
inline const RefFormat kE3m2{&e3m2, "e3m2", 6, 3, 2, -2, 28.0, Top::none};
inline const RefFormat kBf16{&bf16, "bf16", 16, 8, 7, -126, 0x1.fep127, Top::ieee};
inline const RefFormat kF16{&f16, "f16", 16, 5, 10, -14, 65504.0, Top::ieee};
inline const RefFormat kF32{&f32, "f32", 32, 8, 23, -126, double(std::numeric_limits<float>::max()), Top::ieee};

inline const RefFormat* const kSmallFormats[] = {&kE4m3, &kE5m2, &kE4m3fnuz, &kE5m2fnuz, &kE2m1,
                                                 &kE2m3, &kE3m2, &kBf16,     &kF16};

inline std::uint32_t sign_bit(const RefFormat& f) { return std::uint32_t(1) << (f.bits - 1); }
inline bool has_nan(const RefFormat& f) { return f.top != Top::none; }
inline std::uint32_t nan_code(const RefFormat& f) {
  return f.top == Top::nan_neg_zero ? sign_bit(f) : sign_bit(f) - 1;  // 0x80, or 0x7F / 0x7FFF / ...
}
inline std::uint32_t inf_code(const RefFormat& f) { return ((std::uint32_t(1) << f.exp) - 1) << f.man; }

// Exact value of a code, from its fields. NaN codes give NaN (with the code's sign), Inf codes Inf.
inline double ref_decode(const RefFormat& f, std::uint32_t c) {
  const bool neg = (c & sign_bit(f)) != 0;
  const std::uint32_t mag = c & (sign_bit(f) - 1);
  const std::uint32_t field = mag >> f.man, mant = mag & ((std::uint32_t(1) << f.man) - 1);
  const std::uint32_t all_ones = (std::uint32_t(1) << f.exp) - 1;
  const double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();
  double v;
  if (f.top == Top::ieee && field == all_ones) v = mant != 0 ? nan : inf;
  else if (f.top == Top::nan_all_ones && mag == sign_bit(f) - 1) v = nan;
  else if (f.top == Top::nan_neg_zero && c == sign_bit(f)) v = nan;  // its sign bit is set: -NaN
  else if (field == 0) v = std::ldexp(double(mant), f.emin - f.man);
  else v = std::ldexp(1.0 + std::ldexp(double(mant), -f.man), int(field) - 1 + f.emin);
  return neg ? -v : v;
}

// The code of a finite value that is representable in f (|v| <= max), built from its fields.
inline std::uint32_t code_of(const RefFormat& f, double v) {
  const bool neg = std::signbit(v);
  const double a = std::fabs(v);
  std::uint32_t mag = 0;
  if (a >= std::ldexp(1.0, f.emin)) {
    const int e = std::ilogb(a);
    mag = std::uint32_t(e - f.emin + 1) << f.man | std::uint32_t(std::ldexp(std::ldexp(a, -e) - 1.0, f.man));
  } else {
    mag = std::uint32_t(std::ldexp(a, f.man - f.emin));  // subnormal or zero
  }
  if (neg && (mag != 0 || f.top != Top::nan_neg_zero)) mag |= sign_bit(f);
  return mag;
}

// Saves and restores MPFR's (global) exponent range.
class ExpRange {
 public:
  ExpRange(mpfr_exp_t emin) : emin_(mpfr_get_emin()), emax_(mpfr_get_emax()) { mpfr_set_emin(emin); }
  ~ExpRange() {
    mpfr_set_emin(emin_);
    mpfr_set_emax(emax_);
  }
  ExpRange(const ExpRange&) = delete;
  ExpRange& operator=(const ExpRange&) = delete;

 private:
  mpfr_exp_t emin_, emax_;
};

// A working variable of precision p, reused (allocation dominates a 24-bit rounding).
inline mpfr_ptr scratch(int p) {
  struct Pool {
    mpfr_t v[25];
    Pool() {
      for (int i = 2; i <= 24; ++i) mpfr_init2(v[i], i);
    }
    ~Pool() {
      for (int i = 2; i <= 24; ++i) mpfr_clear(v[i]);
    }
  };
  thread_local Pool pool;
  return pool.v[p];
}

// x rounded by MPFR to f's precision and subnormal range (unbounded above), as an exact double
// (+-Inf if it rounds beyond the double range). rnd: MPFR_RNDN/Z/U/D/A. Needs an ExpRange for f.
inline double mpfr_round_in_range(const RefFormat& f, double x, mpfr_rnd_t rnd) {
  mpfr_ptr r = scratch(f.man + 1);
  int t = mpfr_set_d(r, x, rnd);
  t = mpfr_subnormalize(r, t, rnd);
  return mpfr_get_d(r, MPFR_RNDN);  // exact: man + 1 <= 24 bits, exponent within double's
}
// MPFR writes x = m * 2^e with 1/2 <= m < 1: the smallest subnormal 2^(emin - man) has e = emin - man + 1.
inline mpfr_exp_t mpfr_emin_for(const RefFormat& f) { return f.emin - f.man + 1; }

inline double mpfr_round_to(const RefFormat& f, double x, mpfr_rnd_t rnd) {
  ExpRange range(mpfr_emin_for(f));
  return mpfr_round_in_range(f, x, rnd);
}

// x (finite) under every directed and nearest mode, before overflow handling.
struct Rounded {
  double rne, rz, ru, rd, rna;
  double operator[](Rounding r) const {
    switch (r) {
      case Rounding::rne: return rne;
      case Rounding::rz: return rz;
      case Rounding::ru: return ru;
      case Rounding::rd: return rd;
      default: return rna;
    }
  }
};
inline Rounded ref_round_all(const RefFormat& f, double x) {
  ExpRange range(mpfr_emin_for(f));
  Rounded o{};
  o.rne = mpfr_round_in_range(f, x, MPFR_RNDN);
  o.ru = mpfr_round_in_range(f, x, MPFR_RNDU);
  o.rd = mpfr_round_in_range(f, x, MPFR_RNDD);
  o.rz = std::signbit(x) ? o.ru : o.rd;
  const double away = std::signbit(x) ? o.rd : o.ru;
  // rna (MPFR has no RNDNA for mpfr_set_d): RNDN except at an exact tie, which goes away from zero.
  // Two neighbours of at most 24 bits: their sum (and half of it) is exact in double.
  o.rna = (o.rz != away && std::isfinite(away) && x == (o.rz + away) / 2) ? away : o.rne;
  return o;
}
inline double ref_round(const RefFormat& f, double x, Rounding r) { return ref_round_all(f, x)[r]; }

// The code of an already rounded value (or +-Inf / NaN input), with the overflow rules above.
// `directed_to_max`: the rounding pointed away from infinity (IEEE 754 section 7.4).
inline std::uint32_t ref_finish(const RefFormat& f, bool input_inf, double rounded, bool negative,
                                bool directed_to_max, Overflow o) {
  if (std::isnan(rounded)) return has_nan(f) ? nan_code(f) : code_of(f, f.max);
  const std::uint32_t sign = negative ? sign_bit(f) : 0;
  if (std::fabs(rounded) > f.max) {
    if (!has_nan(f) || o == Overflow::satfinite || (directed_to_max && !input_inf)) return code_of(f, f.max) | sign;
    return f.top == Top::ieee ? inf_code(f) | sign : nan_code(f) | sign;
  }
  return code_of(f, rounded);
}

inline bool points_to_max(Rounding r, bool negative) {
  return r == Rounding::rz || (r == Rounding::ru && negative) || (r == Rounding::rd && !negative);
}

// The reference code for x under (r, o); r is not stochastic.
inline std::uint32_t ref_encode(const RefFormat& f, double x, Rounding r, Overflow o) {
  const bool neg = std::signbit(x);
  if (std::isnan(x) || std::isinf(x)) return ref_finish(f, std::isinf(x), x, neg, false, o);
  return ref_finish(f, false, ref_round(f, x, r), neg, points_to_max(r, neg), o);
}

}  // namespace fp8flow::oracle
