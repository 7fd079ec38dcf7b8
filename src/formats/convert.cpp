#include "formats/convert.hpp"

#include <fmt/format.h>

#include <cmath>
#include <stdexcept>

namespace fp8flow {

const FormatSpec& find_format(std::string_view name) {
  for (const FormatSpec* f : all_formats)
    if (f->name == name || (!f->alias.empty() && f->alias == name)) return *f;
  throw std::invalid_argument(fmt::format("unknown format '{}': expected one of {}", name, format_names()));
}

std::string format_names() {
  std::string out;
  for (const FormatSpec* f : all_formats) {
    if (!out.empty()) out += ", ";
    out += f->name;
    if (!f->alias.empty()) out += fmt::format(" ({})", f->alias);
  }
  return out;
}

std::string_view to_string(Rounding r) {
  switch (r) {
    case Rounding::rne: return "rne";
    case Rounding::rz: return "rz";
    case Rounding::ru: return "ru";
    case Rounding::rd: return "rd";
    case Rounding::rna: return "rna";
    case Rounding::stochastic: return "stochastic";
  }
  return "?";
}
std::string_view to_string(Overflow o) { return o == Overflow::satfinite ? "satfinite" : "nonsat"; }

Rounding parse_rounding(std::string_view s) {
  for (Rounding r : {Rounding::rne, Rounding::rz, Rounding::ru, Rounding::rd, Rounding::rna, Rounding::stochastic})
    if (to_string(r) == s) return r;
  throw std::invalid_argument(fmt::format("unknown rounding mode '{}': expected one of {}", s, kRoundingNames));
}
Overflow parse_overflow(std::string_view s) {
  if (s == "satfinite") return Overflow::satfinite;
  if (s == "nonsat") return Overflow::nonsat;
  throw std::invalid_argument(fmt::format("unknown overflow policy '{}': expected one of {}", s, kOverflowNames));
}

std::uint32_t encode(const FormatSpec& f, double x, CastPolicy p, std::uint64_t random) {
  return visit_format(f, [&]<const FormatSpec& F>() { return encode_as<F, double>(x, p, random); });
}
std::uint32_t encode(const FormatSpec& f, float x, CastPolicy p, std::uint64_t random) {
  return visit_format(f, [&]<const FormatSpec& F>() {
    if constexpr (F.man <= 23) return encode_as<F, float>(x, p, random);
    else return encode_as<F, double>(double(x), p, random);
  });
}
double decode(const FormatSpec& f, std::uint32_t code) {
  return visit_format(f, [&]<const FormatSpec& F>() { return decode_as<F, double>(code); });
}
float decode_f32(const FormatSpec& f, std::uint32_t code) {
  return visit_format(f, [&]<const FormatSpec& F>() { return decode_as<F, float>(code); });
}

// ---- UE8M0 ---------------------------------------------------------------------------------------
std::string_view to_string(Ue8m0Rule r) {
  switch (r) {
    case Ue8m0Rule::rz: return "rz";
    case Ue8m0Rule::ru: return "ru";
    case Ue8m0Rule::ceil: return "ceil";
    case Ue8m0Rule::rn: return "rn";
    case Ue8m0Rule::floor: return "floor";
  }
  return "?";
}
Ue8m0Rule parse_ue8m0_rule(std::string_view s) {
  for (Ue8m0Rule r : {Ue8m0Rule::rz, Ue8m0Rule::ru, Ue8m0Rule::ceil, Ue8m0Rule::rn, Ue8m0Rule::floor})
    if (to_string(r) == s) return r;
  throw std::invalid_argument(fmt::format("unknown ue8m0 rule '{}': expected one of {}", s, kUe8m0RuleNames));
}

std::uint8_t ue8m0_from_float(float x, Ue8m0Rule rule, Overflow overflow) {
  const std::uint32_t b = std::bit_cast<std::uint32_t>(x);
  const std::uint32_t a = b & 0x7FFFFFFFu;
  const bool nan = a > 0x7F800000u;
  switch (rule) {
    case Ue8m0Rule::rz: return std::uint8_t(encode(ue8m0, x, {Rounding::rz, overflow}));
    case Ue8m0Rule::ru: return std::uint8_t(encode(ue8m0, x, {Rounding::ru, overflow}));
    case Ue8m0Rule::ceil: {
      // fp32 and ue8m0 share bias 127, so the exponent field carries over unchanged.
      // Bit-level on purpose: log2/ceil/exp2 is not bit-identical (sgl-project/sglang#29954).
      int e = int(a >> 23) + ((a & 0x7FFFFFu) != 0 ? 1 : 0);
      return std::uint8_t(e < 1 ? 1 : e > 254 ? 254 : e);
    }
    case Ue8m0Rule::rn: {
      // ml_dtypes float8_e8m0fnu astype, bit for bit (ml_dtypes 0.5.4, run on every float32 exponent
      // x boundary mantissas, all bf16 values and 2^20 random patterns: tests/oracles/ml_dtypes_oracle.py):
      //  - no sign and no zero: negatives (-0 included), +0, +-Inf and NaN give NaN (0xFF);
      //  - normal x: the nearest power of two in linear space, ties up: exponent field + 1 iff the
      //    mantissa is >= 1.5; a result of 2^128 is NaN (x >= 1.5 * 2^127);
      //  - float32 subnormals: ml_dtypes rounds them on a grid of step 2^-126 as if code 0 were zero:
      //    x <= 2^-127 gives 0x00 (2^-127 is a tie, to even) and 2^-127 < x < 2^-126 gives 0x01, which is
      //    not the linear nearest (1.25 * 2^-127 is nearer 2^-127, code 0x00). Kept for bit-exactness.
      if (nan || (b >> 31) != 0 || a == 0 || a == 0x7F800000u) return 0xFF;
      const std::uint32_t field = a >> 23;
      if (field == 0) return a > 0x00400000u ? 0x01 : 0x00;  // 0x00400000 = 2^-127
      const std::uint32_t e = field + ((a & 0x7FFFFFu) >= 0x400000u ? 1u : 0u);
      return std::uint8_t(e > 254 ? 0xFF : e);
    }
    case Ue8m0Rule::floor: {
      if (nan || a == 0x7F800000u) return 0xFF;
      return std::uint8_t(encode(ue8m0, x, {Rounding::rz, Overflow::nonsat}));
    }
  }
  return 0xFF;
}

}  // namespace fp8flow
