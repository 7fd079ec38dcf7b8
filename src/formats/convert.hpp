// Encoding into and decoding out of any FormatSpec: one generic, table-free, branch-free routine.
// Shared by the CPU golden model and the CUDA kernels (FP8FLOW_HD), instantiated per format at compile
// time so that the format's constants fold away.
//
// Encoding x (float32 or float64 bits) into format F, as integers only:
//
//     x = sig * 2^(E - W)      sig = 1.mmm...m (W fraction bits), E = unbiased exponent
//     quantum q = max(E, emin(F)) - F.man      (the spacing of F's values near x)
//     r = round(sig / 2^(q - (E - W)))         integer significand in F, rounded once from the exact x
//     code = ((max(E, emin) - emin + min_field) << F.man) + r - 2^F.man
//
// A carry out of r (r == 2^(man+1)) lands in the next binade by the addition itself, and a subnormal
// that rounds up to 2^man becomes the smallest normal code; codes above max_code(F) overflow.
// float64 inputs are rounded once from their exact value (no double rounding through float32).
#pragma once

#include <bit>
#include <cstdint>
#include <type_traits>

#include "formats/format_spec.hpp"
#include "formats/philox.hpp"
#include "formats/rounding.hpp"

namespace fp8flow {

template <class In> struct InputTraits;
template <> struct InputTraits<float> {
  using Bits = std::uint32_t;
  static constexpr int exp = 8, man = 23, bias = 127;
};
template <> struct InputTraits<double> {
  using Bits = std::uint64_t;
  static constexpr int exp = 11, man = 52, bias = 1023;
};

namespace detail {
FP8FLOW_HD constexpr int imax(int a, int b) { return a > b ? a : b; }
FP8FLOW_HD constexpr int imin(int a, int b) { return a < b ? a : b; }
}  // namespace detail

// Encode the binary representation `bits` of a float/double into F. `random` feeds stochastic rounding
// (the top bits are used; see philox_bits) and is ignored otherwise.
template <const FormatSpec& F, class In, Rounding R, Overflow O>
FP8FLOW_HD constexpr std::uint32_t encode_bits(typename InputTraits<In>::Bits bits, std::uint64_t random = 0) {
  using T = InputTraits<In>;
  using U = typename T::Bits;
  constexpr int W = T::man;
  constexpr int M = F.man;
  constexpr int kBits = int(sizeof(U) * 8);
  constexpr U kAbsMask = (U(1) << (T::exp + W)) - 1;
  constexpr U kExpAllOnes = ((U(1) << T::exp) - 1) << W;
  constexpr int kEmin = emin(F);
  static_assert(M <= W, "target format wider than the input");

  const bool negative = (bits >> (T::exp + W)) != 0;
  const U a = bits & kAbsMask;
  const bool is_nan = a > kExpAllOnes;
  const bool is_inf = a == kExpAllOnes;
  const int field = int(a >> W);
  U sig = (a & ((U(1) << W) - 1)) | (field != 0 ? (U(1) << W) : U(0));
  int E = detail::imax(field, 1) - T::bias;
  if constexpr (kEmin < 1 - T::bias) {
    // The target reaches below the input's normal range (ue8m0 from float32): normalise input subnormals.
    if (field == 0 && sig != 0) {
      const int lz = std::countl_zero(sig) - (kBits - 1 - W);
      sig <<= lz;
      E -= lz;
    }
  }
  const int Eq = detail::imax(E, kEmin);
  // One extra low bit on sig keeps the shift >= 1, so the half-way point is always a bit.
  const U sig2 = sig << 1;
  const int shift = detail::imin((Eq - M) - (E - W) + 1, kBits - 1);
  U r = sig2 >> shift;
  const U rem = sig2 & ((U(1) << shift) - 1);
  const U half = U(1) << (shift - 1);
  bool up = false;
  if constexpr (R == Rounding::rne) up = rem > half || (rem == half && (r & 1));
  else if constexpr (R == Rounding::rna) up = rem >= half;
  else if constexpr (R == Rounding::ru) up = rem != 0 && !(negative && F.sign);
  else if constexpr (R == Rounding::rd) up = rem != 0 && (negative && F.sign);
  else if constexpr (R == Rounding::stochastic) {
    // Round up iff rem / 2^shift + u > 1 for u uniform in [0, 1): rem left-aligned to 64 bits plus
    // 64 random bits carries out. Exact for shift <= 64; below that rem is a few ulps of 2^-64.
    const std::uint64_t frac = std::uint64_t(rem) << (64 - shift);
    up = frac + random < frac;
  }
  r += up ? 1 : 0;

  // 32-bit arithmetic where it cannot overflow keeps the float32 path vectorisable.
  using I = std::conditional_t<(sizeof(U) == 4 && M <= 16), std::int32_t, std::int64_t>;
  I code = (static_cast<I>(Eq - kEmin + min_field(F)) << M) + static_cast<I>(r) - (I(1) << M);
  if constexpr (!F.zero) code = code < 0 ? 0 : code;  // below 2^-bias: no zero to go to, clamp to code 0
  std::uint32_t mag = static_cast<std::uint32_t>(code);
  const bool sign = negative && F.sign;

  if (code > static_cast<I>(max_code(F)) || is_inf) {
    // IEEE 754 7.4: directed rounding that points away from infinity gives the largest finite number.
    constexpr bool rz = R == Rounding::rz;
    const bool toward_max = (R == Rounding::rd && !sign) || (R == Rounding::ru && sign) || rz;
    if constexpr (F.specials == Specials::none) mag = max_code(F);
    else if (O == Overflow::satfinite || (toward_max && !is_inf)) mag = max_code(F);
    else if constexpr (has_inf(F)) mag = inf_code(F);
    else return nan_code(F);
  }
  if (is_nan) return has_nan(F) ? nan_code(F) : max_code(F);  // sign dropped, as CUDA's float API
  if constexpr (F.specials == Specials::nan_neg_zero) {
    if (mag == 0) return 0;  // no negative zero: -0 and tiny negatives give +0
  }
  return mag | (sign ? sign_bit(F) : 0u);
}

// Runtime-policy front end of encode_bits.
template <const FormatSpec& F, class In>
FP8FLOW_HD constexpr std::uint32_t encode_as(In x, CastPolicy p, std::uint64_t random = 0) {
  using U = typename InputTraits<In>::Bits;
  const U b = std::bit_cast<U>(x);
#define FP8FLOW_ENC(R)                                                                       \
  case Rounding::R:                                                                          \
    return p.overflow == Overflow::satfinite                                                 \
               ? encode_bits<F, In, Rounding::R, Overflow::satfinite>(b, random)             \
               : encode_bits<F, In, Rounding::R, Overflow::nonsat>(b, random);
  switch (p.rounding) {
    FP8FLOW_ENC(rne)
    FP8FLOW_ENC(rz)
    FP8FLOW_ENC(ru)
    FP8FLOW_ENC(rd)
    FP8FLOW_ENC(rna)
    FP8FLOW_ENC(stochastic)
  }
#undef FP8FLOW_ENC
  return 0;
}

// Decode a code of F exactly into float or double. NaN codes give a quiet NaN carrying the code's sign.
template <const FormatSpec& F, class Out>
FP8FLOW_HD constexpr Out decode_as(std::uint32_t code) {
  using T = InputTraits<Out>;
  using U = typename T::Bits;
  constexpr int M = F.man;
  static_assert(F.exp <= T::exp && M <= T::man, "decode target narrower than the format");
  const bool negative = F.sign && (code & sign_bit(F)) != 0;
  const std::uint32_t mag = code & magnitude_mask(F);
  const U sign = negative ? (U(1) << (T::exp + T::man)) : U(0);
  constexpr U kExpAllOnes = ((U(1) << T::exp) - 1) << T::man;
  if (is_nan_code(F, code)) return std::bit_cast<Out>(sign | kExpAllOnes | (U(1) << (T::man - 1)));
  if (is_inf_code(F, code)) return std::bit_cast<Out>(sign | kExpAllOnes);
  const int field = int(mag >> M);
  const U mant = mag & ((1u << M) - 1u);
  // Normal numbers whose exponent fits the output's normal range: place the fields directly.
  constexpr bool kAllNormalFit = emin(F) >= 1 - T::bias;
  if (field >= min_field(F) && (kAllNormalFit || field - F.bias + T::bias >= 1)) {
    const U out_field = U(field - F.bias + T::bias);
    return std::bit_cast<Out>(sign | (out_field << T::man) | (mant << (T::man - M)));
  }
  // Subnormals of F (field 0), or ue8m0's 2^-127 in float: value = sig * 2^(e - M), exact in Out.
  const U sig = field >= min_field(F) ? (U(1) << M) | mant : mant;
  const int e = detail::imax(field, min_field(F)) - F.bias;
  Out v = static_cast<Out>(sig);
  // Scale by 2^(e - M) in steps that stay exact (the result is representable, possibly subnormal).
  int k = e - M;
  for (; k < -60; k += 60) v *= static_cast<Out>(1.0 / 1152921504606846976.0);  // 2^-60
  v *= std::bit_cast<Out>(U(k + T::bias) << T::man);
  return negative ? -v : v;
}

// Compile-time format dispatch: calls fn.template operator()<F>() for the runtime spec `f`.
template <class Fn>
decltype(auto) visit_format(const FormatSpec& f, Fn&& fn) {
  if (&f == &e4m3) return fn.template operator()<e4m3>();
  if (&f == &e5m2) return fn.template operator()<e5m2>();
  if (&f == &e4m3fnuz) return fn.template operator()<e4m3fnuz>();
  if (&f == &e5m2fnuz) return fn.template operator()<e5m2fnuz>();
  if (&f == &ue8m0) return fn.template operator()<ue8m0>();
  if (&f == &e2m1) return fn.template operator()<e2m1>();
  if (&f == &e2m3) return fn.template operator()<e2m3>();
  if (&f == &e3m2) return fn.template operator()<e3m2>();
  if (&f == &bf16) return fn.template operator()<bf16>();
  if (&f == &f16) return fn.template operator()<f16>();
  return fn.template operator()<f32>();
}

// ---- Scalar runtime API --------------------------------------------------------------------------
// encode: float/double -> code of f (stored in the low total_bits(f) bits).
std::uint32_t encode(const FormatSpec& f, double x, CastPolicy p, std::uint64_t random = 0);
std::uint32_t encode(const FormatSpec& f, float x, CastPolicy p, std::uint64_t random = 0);
double decode(const FormatSpec& f, std::uint32_t code);
float decode_f32(const FormatSpec& f, std::uint32_t code);

// ---- UE8M0 rules met in practice -----------------------------------------------------------------
// Named once; the same names are used by the CLI (--round for --to ue8m0), TOML and HDF5 files.
enum class Ue8m0Rule {
  rz,     // CUDA __nv_cvt_float_to_e8m0(x, sat, cudaRoundZero): floor(log2|x|), sign ignored
  ru,     // CUDA __nv_cvt_float_to_e8m0(x, sat, cudaRoundPosInf): ceil(log2|x|), sign ignored
  ceil,   // DeepGEMM ceil_to_ue8m0 on fp32 bits: exponent field + (mantissa != 0), clamped to [1, 254]
  rn,     // ml_dtypes float8_e8m0fnu: nearest in linear space, ties up; negatives and zero -> NaN
  floor,  // OCP MX v1.0 shared exponent: floor(log2|x|); 0 -> 2^-127; Inf/NaN -> NaN
};
std::string_view to_string(Ue8m0Rule r);
Ue8m0Rule parse_ue8m0_rule(std::string_view s);  // throws std::invalid_argument
inline constexpr std::string_view kUe8m0RuleNames = "rz, ru, ceil, rn, floor";
// `overflow` matters for rz/ru (CUDA's satfinite turns an Inf result 0xFF into 0xFE); others ignore it.
std::uint8_t ue8m0_from_float(float x, Ue8m0Rule rule, Overflow overflow);

}  // namespace fp8flow
