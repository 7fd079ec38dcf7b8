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
//
// Branch-free on purpose: every step is computed on all inputs and the special cases (overflow, Inf,
// NaN, underflow) are selects, so that the batch loops (batch_kernels.inc) vectorise this very function
// (GCC -O3 -mavx2: 8 float32 lanes). Keep it that way: no early return, no std::countl_zero, integers
// no wider than the input.
template <const FormatSpec& F, class In, Rounding R, Overflow O>
FP8FLOW_HD constexpr std::uint32_t encode_bits(typename InputTraits<In>::Bits bits, std::uint64_t random = 0) {
  using T = InputTraits<In>;
  using U = typename T::Bits;
  constexpr int W = T::man;
  constexpr int M = F.man;
  constexpr int kBits = int(sizeof(U) * 8);
  constexpr U kAbsMask = (U(1) << (T::exp + W)) - 1;
  constexpr U kExpAllOnes = ((U(1) << T::exp) - 1) << W;
  constexpr int kRebias = T::bias - F.bias;               // input exponent field - F's exponent field
  constexpr int kMinField = min_field(F) + kRebias;       // input field of F's lowest normal binade
  static_assert(M <= W, "target format wider than the input");
  static_assert(kRebias >= 0 && kMinField >= 0, "target reaches more than one binade below the input");

  const U a = bits & kAbsMask;
  const std::uint32_t sign_bits =
      F.sign ? static_cast<std::uint32_t>(bits >> (T::exp + W)) << magnitude_bits(F) : 0u;
  const bool negative = sign_bits != 0;  // unsigned formats (ue8m0) ignore the sign
  const int field = int(a >> W);

  // X is |x| as a fixed-point number whose bits above the lowest s are F's magnitude code:
  //   F's normal range (d = 0):  a re-biased, X = a - kRebias * 2^W: exponent field and mantissa in
  //                              place, so a mantissa carry ripples into the exponent by itself;
  //   below it (d binades):      the significand 1.mmm (or 0.mmm for input subnormals) shifted d
  //                              further: F's subnormal code, which may round up to the min normal.
  int d = 0;
  U X;
  if constexpr (kMinField >= 1) {
    const int m = detail::imin(detail::imax(field, 1), kMinField);
    d = kMinField - m;
    X = a + (U(min_field(F)) << W) - (U(m) << W);
  } else {
    // F's lowest binade is the input's subnormal range (ue8m0 from float32: 2^-127 = code 0). An
    // input subnormal 0.1mmm becomes 1.mmm one binade down; smaller ones lie below code 0.
    const U twice = a << 1;
    const U renorm = twice >= (U(1) << W) ? twice - (U(1) << W) : U(0);
    X = field == 0 ? renorm : a;
  }

  // Round X to a multiple of 2^s, by adding an increment below 2^s and truncating:
  // rne: half - 1 plus the kept lsb (ties to even), rna: half, ru/rd: 2^s - 1 or 0, rz: 0.
  // X + increment cannot wrap: X < 2^(kBits-1) + 2^W, and the increment is < 2^(W-M) unless d > 0,
  // where X < 2^(W+1).
  // code < 2^(kBits - W + M) (a few bits above F's), so signed compares are safe and vectorise.
  using S = std::make_signed_t<U>;
  S code;
  if constexpr (M == W) {
    static_assert(kMinField <= 1, "exact only when F has the input's range");
    code = static_cast<S>(X);  // f32 from float32: nothing to round
  } else {
    const int s = detail::imin(W - M + d, kBits - 1);
    U r;
    if constexpr (R == Rounding::stochastic) {
      // Round up iff rem / 2^sf + u > 1 for u uniform in [0, 1): rem / 2^sf as a 64-bit fraction plus
      // 64 random bits carries out. sf is the true shift, not clamped like s (where sf > s, X < 2^(W+1)
      // and rem is all of X). Exact for sf <= 64; beyond, the fraction is truncated to 64 bits.
      const int sf = W - M + d;
      const std::uint64_t x64 = X;
      const std::uint64_t rem = sf >= 64 ? x64 : x64 & ((std::uint64_t(1) << sf) - 1);
      const std::uint64_t frac = sf <= 64 ? rem << (64 - sf) : sf < 128 ? rem >> (sf - 64) : 0;
      r = (X >> s) + (frac + random < frac ? U(1) : U(0));
    } else {
      const U ulp = U(1) << s;
      const U half = ulp >> 1;
      U inc = 0;
      // With no mantissa bits (ue8m0) every significand is 1, odd: a tie goes up to 2.
      if constexpr (R == Rounding::rne) inc = half - 1 + (M == 0 ? U(1) : (X >> s) & 1);
      else if constexpr (R == Rounding::rna) inc = half;
      else if constexpr (R == Rounding::ru) inc = negative ? U(0) : ulp - 1;
      else if constexpr (R == Rounding::rd) inc = negative ? ulp - 1 : U(0);
      r = (X + inc) >> s;
    }
    code = static_cast<S>(r);
  }
  if constexpr (!F.zero) code = d > 0 ? S(0) : code;  // below 2^-bias: no zero to go to, clamp to code 0

  // Overflow: beyond max_code(F), including +-Inf (its code is beyond max_code in every format here;
  // checked below). IEEE 754 7.4: directed rounding that points away from infinity gives the largest
  // finite number; Inf itself stays Inf/NaN under nonsat.
  const bool is_nan = a > kExpAllOnes;
  const bool is_inf = a == kExpAllOnes;
  constexpr std::uint64_t kInfCode = std::uint64_t((1 << T::exp) - 1 - kRebias) << M;
  static_assert(kInfCode > max_code(F), "an input Inf must land beyond max_code");
  constexpr std::uint32_t kMax = max_code(F);
  constexpr std::uint32_t kNonsatMag = has_inf(F) ? inf_code(F) : has_nan(F) ? nan_code(F) : kMax;
  const std::uint32_t clamped = code > S(kMax) ? kMax : static_cast<std::uint32_t>(code);
  std::uint32_t mag = clamped;
  if constexpr (O == Overflow::nonsat && F.specials != Specials::none) {
    const bool toward_max =
        R == Rounding::rz || (R == Rounding::rd && !negative) || (R == Rounding::ru && negative);
    mag = code > S(kMax) && !(toward_max && !is_inf) ? kNonsatMag : clamped;
  }

  // Overflow to NaN keeps the sign (CUDA __NV_NOSAT: -500 -> 0xFF); a NaN input does not (below).
  std::uint32_t out = mag | sign_bits;
  if constexpr (F.specials == Specials::nan_neg_zero) out = mag == 0 ? 0u : out;  // no -0: tiny negatives -> +0
  // NaN in: the canonical positive NaN, as CUDA's float API; formats without NaN saturate (+max).
  return is_nan ? (has_nan(F) ? nan_code(F) : kMax) : out;
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
// Branch-free like encode_bits (selects only), so the batch decode loops vectorise.
template <const FormatSpec& F, class Out>
FP8FLOW_HD constexpr Out decode_as(std::uint32_t code) {
  using T = InputTraits<Out>;
  using U = typename T::Bits;
  using S = std::make_signed_t<U>;
  constexpr int M = F.man;
  static_assert(F.exp <= T::exp && M <= T::man, "decode target narrower than the format");
  static_assert(F.bias <= T::bias, "re-biasing below assumes the output's bias is the larger");
  constexpr U kExpAllOnes = ((U(1) << T::exp) - 1) << T::man;
  const U c = U(code);
  const U mag = c & magnitude_mask(F);
  const U sign = (c & sign_bit(F)) << (T::exp + T::man - magnitude_bits(F));  // 0 for unsigned formats
  // Normal numbers: place the fields and re-bias the exponent in one addition.
  U out = (mag << (T::man - M)) + (U(T::bias - F.bias) << T::man);
  if constexpr (emin(F) < 1 - T::bias) {
    // Normal in F but below Out's normal range (ue8m0's 2^-127 in float): an exact Out subnormal.
    const int field = int(mag >> M);
    const U mant = mag & ((U(1) << M) - 1);
    const int out_field = field - F.bias + T::bias;
    const U below = ((U(1) << T::man) | (mant << (T::man - M))) >> detail::imax(1 - out_field, 0);
    out = out_field < 1 ? below : out;
  }
  // Specials before the subnormal blend below, which must stay last (see there). Spelled out rather
  // than is_nan_code(F, code): device code may not take F's address at run time.
  constexpr U kQuietNan = kExpAllOnes | (U(1) << (T::man - 1));
  if constexpr (F.specials == Specials::ieee_inf_nan) {
    out = mag == inf_code(F) ? kExpAllOnes : out;
    out = mag > inf_code(F) ? kQuietNan : out;
  } else if constexpr (F.specials == Specials::nan_all_ones) {
    out = mag == magnitude_mask(F) ? kQuietNan : out;
  } else if constexpr (F.specials == Specials::nan_neg_zero) {
    out = c == sign_bit(F) ? kQuietNan : out;
  }
  if constexpr (F.zero && F.bias != T::bias) {  // equal biases: the placement above is already exact
    // Subnormals of F (field 0, so mag is the mantissa): mag * 2^(emin - M). Out(mag) is exact and
    // normalises it for us (no count-leading-zeros); subtracting from its exponent field scales it by
    // 2^(emin - M). Code 0 would go negative: +0. Integer arithmetic and a mask blend rather than a
    // float multiply and ?:, and last: GCC sinks a (possibly trapping) conversion
    // used on one path only into a branch, and then will not vectorise the loop.
    static_assert(emin(F) - M + T::bias >= 1, "subnormals of F must be normal in Out");
    constexpr S kScale = S(M - emin(F)) << T::man;
    const S scaled = S(std::bit_cast<U>(static_cast<Out>(static_cast<S>(mag)))) - kScale;
    const U sub = scaled > 0 ? U(scaled) : U(0);
    const bool fnuz_nan = F.specials == Specials::nan_neg_zero && c == sign_bit(F);  // mag 0, yet NaN
    const U is_sub = U(0) - U(mag < (U(1) << M) && !fnuz_nan);
    out = (out & ~is_sub) | (sub & is_sub);
  }
  return std::bit_cast<Out>(out | sign);
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
  rn,     // ml_dtypes 0.5.4 float8_e8m0fnu: +1 iff mantissa >= 1.5 (ties up); fp32 subnormals: <= 2^-127 -> 0x00,
          // else 0x01; negatives, zero, Inf, NaN and >= 1.5*2^127 -> NaN (see convert.cpp)
  floor,  // OCP MX v1.0 shared exponent: floor(log2|x|); 0 -> 2^-127; Inf/NaN -> NaN
};
std::string_view to_string(Ue8m0Rule r);
Ue8m0Rule parse_ue8m0_rule(std::string_view s);  // throws std::invalid_argument
inline constexpr std::string_view kUe8m0RuleNames = "rz, ru, ceil, rn, floor";
// `overflow` matters for rz/ru (CUDA's satfinite turns an Inf result 0xFF into 0xFE); others ignore it.
std::uint8_t ue8m0_from_float(float x, Ue8m0Rule rule, Overflow overflow);

}  // namespace fp8flow
