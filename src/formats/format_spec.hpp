// One description of a small binary floating-point format; every format is an instance.
// Sources: OCP 8-bit Floating Point Specification (OFP8) rev 1.0 (E4M3, E5M2);
// OCP Microscaling Formats (MX) v1.0 (E8M0, E2M1, E2M3, E3M2); IEEE 754-2019 (binary16/32);
// the FNUZ variants as in ml_dtypes / AMD (bias+1, 0x80 = NaN, no negative zero).
#pragma once

#include <array>
#include <bit>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace fp8flow {

// How the top of the code space is used.
enum class Specials {
  ieee_inf_nan,   // exponent field all ones: Inf (mantissa 0) and NaN (mantissa != 0)   e5m2, f16, bf16, f32
  nan_all_ones,   // only the all-ones magnitude is NaN; no Inf                             e4m3 (fn), ue8m0
  nan_neg_zero,   // the code 1000...0 (negative zero) is the single NaN; no Inf, no -0     e4m3fnuz, e5m2fnuz
  none,           // every code is finite                                                   e2m1, e2m3, e3m2
};

struct FormatSpec {
  std::string_view name;
  int exp, man, bias;
  bool sign = true;
  bool zero = true;  // false: no zero and no subnormals, code 0 means 2^-bias (ue8m0)
  Specials specials = Specials::ieee_inf_nan;
  std::string_view alias = {};
  std::string_view note = {};
};

// ---- Instances ------------------------------------------------------------------------------------
using enum Specials;
inline constexpr FormatSpec e4m3{.name = "e4m3", .exp = 4, .man = 3, .bias = 7, .specials = nan_all_ones,
                                 .alias = "e4m3fn", .note = "OCP FP8 E4M3 (FN): no Inf, NaN = S.1111.111"};
inline constexpr FormatSpec e5m2{.name = "e5m2", .exp = 5, .man = 2, .bias = 15, .note = "OCP FP8 E5M2, IEEE-like"};
inline constexpr FormatSpec e4m3fnuz{.name = "e4m3fnuz", .exp = 4, .man = 3, .bias = 8, .specials = nan_neg_zero,
                                     .note = "AMD/Graphcore FP8: NaN = 0x80, no -0, no Inf"};
inline constexpr FormatSpec e5m2fnuz{.name = "e5m2fnuz", .exp = 5, .man = 2, .bias = 16, .specials = nan_neg_zero,
                                     .note = "AMD/Graphcore FP8: NaN = 0x80, no -0, no Inf"};
inline constexpr FormatSpec ue8m0{.name = "ue8m0", .exp = 8, .man = 0, .bias = 127, .sign = false, .zero = false,
                                  .specials = nan_all_ones, .alias = "e8m0fnu",
                                  .note = "OCP MX scale: powers of two 2^-127..2^127, 0xFF = NaN"};
inline constexpr FormatSpec e2m1{.name = "e2m1", .exp = 2, .man = 1, .bias = 1, .specials = none,
                                 .alias = "fp4", .note = "OCP MX FP4, no Inf/NaN"};
inline constexpr FormatSpec e2m3{.name = "e2m3", .exp = 2, .man = 3, .bias = 1, .specials = none,
                                 .note = "OCP MX FP6, no Inf/NaN"};
inline constexpr FormatSpec e3m2{.name = "e3m2", .exp = 3, .man = 2, .bias = 3, .specials = none,
                                 .note = "OCP MX FP6, no Inf/NaN"};
inline constexpr FormatSpec bf16{.name = "bf16", .exp = 8, .man = 7, .bias = 127, .alias = "bfloat16"};
inline constexpr FormatSpec f16{.name = "f16", .exp = 5, .man = 10, .bias = 15, .alias = "float16"};
inline constexpr FormatSpec f32{.name = "f32", .exp = 8, .man = 23, .bias = 127, .alias = "float32"};

inline constexpr std::array<const FormatSpec*, 11> all_formats{&e4m3, &e5m2,  &e4m3fnuz, &e5m2fnuz, &ue8m0, &e2m1,
                                                                &e2m3, &e3m2, &bf16,     &f16,      &f32};

// ---- Derived properties (all constexpr, pinned by static_asserts below) ---------------------------
constexpr int total_bits(const FormatSpec& f) { return (f.sign ? 1 : 0) + f.exp + f.man; }
constexpr int magnitude_bits(const FormatSpec& f) { return f.exp + f.man; }
constexpr std::uint32_t magnitude_mask(const FormatSpec& f) { return (1u << magnitude_bits(f)) - 1u; }
constexpr std::uint32_t sign_bit(const FormatSpec& f) { return f.sign ? (1u << magnitude_bits(f)) : 0u; }
// Smallest biased exponent field of a normal number, and its unbiased exponent.
constexpr int min_field(const FormatSpec& f) { return f.zero ? 1 : 0; }
constexpr int emin(const FormatSpec& f) { return min_field(f) - f.bias; }
constexpr bool has_inf(const FormatSpec& f) { return f.specials == ieee_inf_nan; }
constexpr bool has_nan(const FormatSpec& f) { return f.specials != none; }
constexpr bool has_negative_zero(const FormatSpec& f) { return f.sign && f.zero && f.specials != nan_neg_zero; }

// Largest finite magnitude code.
constexpr std::uint32_t max_code(const FormatSpec& f) {
  switch (f.specials) {
    case ieee_inf_nan: return (((1u << f.exp) - 1u) << f.man) - 1u;
    case nan_all_ones: return magnitude_mask(f) - 1u;
    case nan_neg_zero:
    case none: return magnitude_mask(f);
  }
  return 0;
}
constexpr std::uint32_t inf_code(const FormatSpec& f) { return ((1u << f.exp) - 1u) << f.man; }  // if has_inf
// The canonical NaN: positive, all ones (CUDA's float API drops the NaN sign: 0x7F, 0x7FFF, ...).
constexpr std::uint32_t nan_code(const FormatSpec& f) {
  return f.specials == nan_neg_zero ? sign_bit(f) : magnitude_mask(f);
}
constexpr bool is_nan_code(const FormatSpec& f, std::uint32_t c) {
  const std::uint32_t m = c & magnitude_mask(f);
  switch (f.specials) {
    case ieee_inf_nan: return m > inf_code(f);
    case nan_all_ones: return m == magnitude_mask(f);
    case nan_neg_zero: return c == sign_bit(f);
    case none: return false;
  }
  return false;
}
constexpr bool is_inf_code(const FormatSpec& f, std::uint32_t c) {
  return has_inf(f) && (c & magnitude_mask(f)) == inf_code(f);
}

constexpr double pow2(int e) {
  double r = 1.0;
  for (; e > 0; --e) r *= 2.0;
  for (; e < 0; ++e) r *= 0.5;
  return r;
}
constexpr double max_finite(const FormatSpec& f) {
  const std::uint32_t c = max_code(f);
  const int field = int(c >> f.man);
  const std::uint32_t mant = c & ((1u << f.man) - 1u);
  return double((1u << f.man) + mant) * pow2(field - f.bias - f.man);
}
constexpr double min_normal(const FormatSpec& f) { return pow2(emin(f)); }
// Smallest positive value: a subnormal when the format has them, else the smallest normal.
constexpr double min_subnormal(const FormatSpec& f) {
  return f.zero && f.man > 0 ? pow2(emin(f) - f.man) : min_normal(f);
}
// Values at or below this magnitude round to zero under RNE (half the smallest subnormal).
constexpr double underflow_threshold(const FormatSpec& f) { return min_subnormal(f) / 2; }

static_assert(max_finite(e4m3) == 448.0 && max_finite(e5m2) == 57344.0);
static_assert(max_finite(e4m3fnuz) == 240.0 && max_finite(e5m2fnuz) == 57344.0);
static_assert(max_finite(e2m1) == 6.0 && max_finite(e2m3) == 7.5 && max_finite(e3m2) == 28.0);
static_assert(max_finite(ue8m0) == pow2(127) && min_normal(ue8m0) == pow2(-127));
static_assert(max_finite(f16) == 65504.0);
static_assert(min_subnormal(e4m3) == pow2(-9) && min_subnormal(e5m2) == pow2(-16));
static_assert(min_subnormal(e4m3fnuz) == pow2(-10) && min_subnormal(e5m2fnuz) == pow2(-17));
static_assert(min_normal(e4m3) == pow2(-6) && min_normal(e5m2) == pow2(-14));
static_assert(min_subnormal(e2m1) == 0.5 && min_subnormal(e2m3) == 0.125 && min_subnormal(e3m2) == 0.0625);
static_assert(max_code(e4m3) == 0x7E && max_code(e5m2) == 0x7B && max_code(ue8m0) == 0xFE);
static_assert(nan_code(e4m3) == 0x7F && nan_code(e5m2) == 0x7F && nan_code(e4m3fnuz) == 0x80 &&
              nan_code(ue8m0) == 0xFF && nan_code(bf16) == 0x7FFF);

// Look up a format by name or alias; throws std::invalid_argument listing the known names.
const FormatSpec& find_format(std::string_view name);
std::string format_names();  // "e4m3 (e4m3fn), e5m2, ..." for help and error texts

// Width of the container type codes of this format are stored in: 8, 16 or 32 bits.
constexpr int storage_bits(const FormatSpec& f) { return total_bits(f) <= 8 ? 8 : total_bits(f) <= 16 ? 16 : 32; }

}  // namespace fp8flow
