// AVX2 kernels for the hottest conversions: float32 -> 8-bit format under rne (satfinite or nonsat) and
// 8-bit code -> float32. Include ONLY from translation units compiled with -mavx2 (the *_avx2.cpp files,
// reached after cpu_has_avx2()). Bit-identical to encode_bits / decode_as (convert.hpp), the golden
// definitions: the exhaustive CUDA oracle tests run through these kernels.
//
// Encode, 8 lanes at a time, with the FPU doing the rounding (MXCSR's default round-to-nearest-even;
// the library never sets FTZ/DAZ):
//
//     a     = |x| bits, clamped to 2^(emax+2) (above every overflow threshold; NaN is blended last)
//     E     = max(exponent field of a, field of 2^emin)           the binade whose quantum applies
//     magic = 2^(E + 23 - M)        a float whose ulp is F's quantum 2^(E - M) in that binade
//     base  = a + magic             one fp32 addition rounds |x| to F's grid (normal and subnormal alike)
//     k     = bits(base) - bits(magic)                            the rounded significand, 0 .. 2^(M+1)
//     code  = (E_F << M) + k - 2^M  with E_F = F's exponent field of 2^E (1 for subnormals)
//
//           a:     0 | eeeeeeee | mmm ............ (23 bits)
//       magic:     0 | E+23-M   | 000 ............ 0
//        base:     0 | E+23-M   | 000 ... 0 kkkk      <- k = round(a / 2^(E-M)), ties to even
//
// A carry (k = 2^(M+1)) moves into the next binade through the addition in `code`, and a subnormal
// that rounds up to 2^M becomes the smallest normal code, as in encode_bits. Codes above max_code(F)
// overflow: min(code, max) for satfinite, min(code, max + 1) for nonsat (max + 1 is Inf for E5M2, NaN
// for E4M3). Then the sign, and NaN inputs become the canonical NaN without sign (CUDA's float API).
//
// Decode: place the magnitude bits in a float's exponent and mantissa (mag << (23 - M)) and multiply by
// 2^(127 - bias): exact. Sign-extending the code byte puts the sign at bit 31 for free. F's subnormal
// codes would be float subnormals there (slow in Zen's FPU), so blocks holding one, or a NaN/Inf code,
// take decode8, which converts subnormals from integers and blends NaN and Inf in.
#pragma once

#if !defined(__AVX2__)
#error "formats/fp8_avx2.hpp needs -mavx2: include it only from *_avx2.cpp files"
#endif

#include <immintrin.h>

#include <bit>
#include <cstddef>
#include <cstdint>

#include "formats/format_spec.hpp"
#include "formats/rounding.hpp"

namespace fp8flow::avx2 {

// Formats the encode kernel serves: signed, with a zero, stored in one byte, and NaN/Inf encoded as
// OCP E4M3 / IEEE-like E5M2 / none (FP6, FP4). The FNUZ variants and UE8M0 take the generic path.
template <const FormatSpec& F>
constexpr bool encode_rne_supported() {
  return F.sign && F.zero && total_bits(F) <= 8 && F.man <= 7 && F.specials != Specials::nan_neg_zero;
}
// Formats the decode kernel serves: 8-bit codes with the sign in bit 7 (sign extension).
template <const FormatSpec& F>
constexpr bool decode_supported() {
  return F.sign && F.zero && total_bits(F) == 8 && F.specials != Specials::nan_neg_zero;
}

namespace detail {
constexpr int floor_log2(double v) {
  int e = 0;
  while (v >= 2.0) v /= 2.0, ++e;
  return e;
}
inline __m256i set1(std::uint32_t v) { return _mm256_set1_epi32(static_cast<int>(v)); }
}  // namespace detail

// 8 magnitudes (|x| bits, NaN included) -> 8 magnitude codes, 0 .. max(kMax, kNonsat), one per 32-bit
// lane. NaN inputs come out as overflow here; encode32_rne puts the sign on and fixes NaN.
template <const FormatSpec& F, Overflow O>
inline __m256i encode8_rne_magnitude(__m256i a) {
  static_assert(encode_rne_supported<F>());
  constexpr int M = F.man;
  constexpr int S = 23 - M;                                   // magic's exponent above E
  constexpr std::uint32_t kMinField = std::uint32_t(emin(F) + 127);  // float field of 2^emin
  constexpr std::uint32_t kClamp = std::uint32_t(detail::floor_log2(max_finite(F)) + 2 + 127) << 23;
  static_assert(kMinField >= 1 && (kClamp >> 23) + S < 255, "magic must stay a finite normal float");
  // code = bits(base) - bits(magic) + (E_F << M) - 2^M, where bits(magic) = m + (S << 23) and
  // E_F << M = (m >> S) - ((kMinField - 1) << M), m = E's field << 23.
  constexpr std::uint32_t kC = (std::uint32_t(S) << 23) + ((kMinField - 1) << M) + (1u << M);
  constexpr std::uint32_t kMax = max_code(F);
  constexpr std::uint32_t kNonsat = has_inf(F) ? inf_code(F) : has_nan(F) ? nan_code(F) : kMax;
  static_assert(kNonsat == kMax || kNonsat == kMax + 1, "overflow must be one min()");
  constexpr std::uint32_t kLimit = O == Overflow::satfinite ? kMax : kNonsat;

  const __m256i ac = _mm256_min_epi32(a, detail::set1(kClamp));
  const __m256i m = _mm256_max_epi32(_mm256_and_si256(ac, detail::set1(0x7F800000u)), detail::set1(kMinField << 23));
  const __m256i magic = _mm256_add_epi32(m, detail::set1(std::uint32_t(S) << 23));
  const __m256i base = _mm256_castps_si256(_mm256_add_ps(_mm256_castsi256_ps(ac), _mm256_castsi256_ps(magic)));
  const __m256i code = _mm256_add_epi32(_mm256_sub_epi32(base, m), _mm256_srli_epi32(m, S));
  return _mm256_min_epi32(_mm256_sub_epi32(code, detail::set1(kC)), detail::set1(kLimit));
}

// 32 floats (as four vectors of bits) -> 32 codes in order. The sign goes on at the byte level: the
// signed-saturating packs that narrow the codes also narrow the input bits, and a negative int32 stays
// negative (bit 7 of its byte set) through both packs. NaN inputs are rare: one max over the 32
// magnitudes tells whether any is there; only then are their bytes replaced by the canonical NaN.
template <const FormatSpec& F, Overflow O>
inline __m256i encode32_rne(__m256i b0, __m256i b1, __m256i b2, __m256i b3) {
  constexpr std::uint32_t kNanOut = has_nan(F) ? nan_code(F) : max_code(F);
  const __m256i abs_mask = detail::set1(0x7FFFFFFFu);
  const __m256i a0 = _mm256_and_si256(b0, abs_mask), a1 = _mm256_and_si256(b1, abs_mask);
  const __m256i a2 = _mm256_and_si256(b2, abs_mask), a3 = _mm256_and_si256(b3, abs_mask);
  const __m256i c01 = _mm256_packs_epi32(encode8_rne_magnitude<F, O>(a0), encode8_rne_magnitude<F, O>(a1));
  const __m256i c23 = _mm256_packs_epi32(encode8_rne_magnitude<F, O>(a2), encode8_rne_magnitude<F, O>(a3));
  __m256i codes = _mm256_packus_epi16(c01, c23);  // c0[0:4] c1[0:4] c2[0:4] c3[0:4] | the same of [4:8]
  const __m256i neg = _mm256_packs_epi16(_mm256_packs_epi32(b0, b1), _mm256_packs_epi32(b2, b3));
  __m256i sign = _mm256_and_si256(neg, _mm256_set1_epi8(char(0x80)));
  if constexpr (magnitude_bits(F) < 7) sign = _mm256_srli_epi16(sign, 7 - magnitude_bits(F));  // FP6, FP4
  codes = _mm256_or_si256(codes, sign);
  const __m256i inf = detail::set1(0x7F800000u);
  const __m256i amax = _mm256_max_epi32(_mm256_max_epi32(a0, a1), _mm256_max_epi32(a2, a3));
  if (!_mm256_testz_si256(_mm256_cmpgt_epi32(amax, inf), _mm256_cmpgt_epi32(amax, inf))) [[unlikely]] {
    const __m256i nan = _mm256_packs_epi16(_mm256_packs_epi32(_mm256_cmpgt_epi32(a0, inf), _mm256_cmpgt_epi32(a1, inf)),
                                           _mm256_packs_epi32(_mm256_cmpgt_epi32(a2, inf), _mm256_cmpgt_epi32(a3, inf)));
    codes = _mm256_blendv_epi8(codes, _mm256_set1_epi8(char(kNanOut)), nan);
  }
  return _mm256_permutevar8x32_epi32(codes, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

// n rounded down to a multiple of 32 values: in[0, m) -> out[0, m); returns m (the caller does the tail).
template <const FormatSpec& F, Overflow O>
inline std::size_t encode_rne(const float* __restrict in, std::uint8_t* __restrict out, std::size_t n) {
  std::size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const auto ld = [&](std::size_t k) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(in + i + k)); };
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), encode32_rne<F, O>(ld(0), ld(8), ld(16), ld(24)));
  }
  return i;
}

// The same on RN32(in[i] * scale) (one fp32 multiply, as the scalar quantizers do).
template <const FormatSpec& F, Overflow O>
inline std::size_t encode_rne_scaled(const float* __restrict in, float scale, std::uint8_t* __restrict out,
                                     std::size_t n) {
  const __m256 s = _mm256_set1_ps(scale);
  std::size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const auto ld = [&](std::size_t k) { return _mm256_castps_si256(_mm256_mul_ps(_mm256_loadu_ps(in + i + k), s)); };
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), encode32_rne<F, O>(ld(0), ld(8), ld(16), ld(24)));
  }
  return i;
}

// max over i < n of the bits of |in[i]|, NaN counting as 0 (fmaxf's fold from 0; float order is integer
// order on non-NaN magnitudes), n rounded down to a multiple of 32; *done = how many were read.
inline std::int32_t amax_bits(const float* in, std::size_t n, std::size_t* done) {
  const __m256i abs_mask = detail::set1(0x7FFFFFFFu), inf = detail::set1(0x7F800000u);
  __m256i m0 = _mm256_setzero_si256(), m1 = m0, m2 = m0, m3 = m0;
  const auto fold = [&](__m256i acc, const float* p) {
    const __m256i a = _mm256_and_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)), abs_mask);
    return _mm256_max_epi32(acc, _mm256_andnot_si256(_mm256_cmpgt_epi32(a, inf), a));
  };
  std::size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    m0 = fold(m0, in + i);
    m1 = fold(m1, in + i + 8);
    m2 = fold(m2, in + i + 16);
    m3 = fold(m3, in + i + 24);
  }
  *done = i;
  __m256i m = _mm256_max_epi32(_mm256_max_epi32(m0, m1), _mm256_max_epi32(m2, m3));
  __m128i h = _mm_max_epi32(_mm256_castsi256_si128(m), _mm256_extracti128_si256(m, 1));
  h = _mm_max_epi32(h, _mm_shuffle_epi32(h, _MM_SHUFFLE(1, 0, 3, 2)));
  h = _mm_max_epi32(h, _mm_shuffle_epi32(h, _MM_SHUFFLE(2, 3, 0, 1)));
  return _mm_cvtsi128_si32(h);
}

// 8 codes at p -> 8 floats, for codes that are neither NaN/Inf nor subnormal (the multiply alone; a
// subnormal code would make its operand a float subnormal, which Zen's FPU handles in microcode, ~100x
// slower, so those go through decode8).
template <const FormatSpec& F>
inline __m256 decode8_normal(const std::uint8_t* p) {
  constexpr int S = 23 - F.man;
  const __m256i cs = _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
  const __m256i placed = _mm256_and_si256(_mm256_slli_epi32(cs, S), detail::set1(0x80000000u | (magnitude_mask(F) << S)));
  const float kScale = std::bit_cast<float>(std::uint32_t(127 - F.bias + 127) << 23);
  return _mm256_mul_ps(_mm256_castsi256_ps(placed), _mm256_set1_ps(kScale));
}

// 8 codes at p -> 8 floats, any codes: subnormal codes as float(mag) * 2^(emin - M) (exact, and no float
// subnormal operand), NaN (quiet, the code's sign) and Inf blended in.
template <const FormatSpec& F>
inline __m256 decode8(const std::uint8_t* p) {
  static_assert(decode_supported<F>());
  constexpr int M = F.man;
  constexpr int S = 23 - M;
  const __m256i cs = _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));  // sign-extended
  const __m256i mag = _mm256_and_si256(cs, detail::set1(magnitude_mask(F)));
  const __m256i sign = _mm256_and_si256(cs, detail::set1(0x80000000u));
  const __m256i is_sub = _mm256_cmpgt_epi32(detail::set1(1u << M), mag);
  // Sign at bit 31, magnitude at bits S .. S+6 (the sign copies in between masked off); subnormal lanes 0.
  const __m256i placed = _mm256_andnot_si256(
      is_sub, _mm256_and_si256(_mm256_slli_epi32(cs, S), detail::set1(0x80000000u | (magnitude_mask(F) << S))));
  const float kScale = std::bit_cast<float>(std::uint32_t(127 - F.bias + 127) << 23);  // 2^(127 - bias)
  const float kSubScale = std::bit_cast<float>(std::uint32_t(emin(F) - M + 127) << 23);  // 2^(emin - M)
  __m256 v = _mm256_mul_ps(_mm256_castsi256_ps(placed), _mm256_set1_ps(kScale));
  const __m256 sub = _mm256_or_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(mag), _mm256_set1_ps(kSubScale)),
                                  _mm256_castsi256_ps(sign));
  v = _mm256_blendv_ps(v, sub, _mm256_castsi256_ps(is_sub));
  constexpr std::uint32_t kQuietNan = 0x7FC00000u;
  if constexpr (F.specials == Specials::nan_all_ones) {
    // NaN code (all ones): the multiply gave sign | bits(K); flip it into sign | quiet NaN.
    constexpr std::uint32_t kTop = (magnitude_mask(F) << S) + (std::uint32_t(127 - F.bias) << 23);
    const __m256i is_nan = _mm256_cmpeq_epi32(mag, detail::set1(magnitude_mask(F)));
    v = _mm256_xor_ps(v, _mm256_castsi256_ps(_mm256_and_si256(is_nan, detail::set1(kTop ^ kQuietNan))));
  } else if constexpr (F.specials == Specials::ieee_inf_nan) {
    const __m256i special = _mm256_cmpgt_epi32(mag, detail::set1(inf_code(F) - 1));
    const __m256i is_nan = _mm256_cmpgt_epi32(mag, detail::set1(inf_code(F)));
    const __m256i bits = _mm256_or_si256(sign, _mm256_or_si256(detail::set1(0x7F800000u),
                                                               _mm256_and_si256(is_nan, detail::set1(kQuietNan ^ 0x7F800000u))));
    v = _mm256_blendv_ps(v, _mm256_castsi256_ps(bits), _mm256_castsi256_ps(special));
  }
  return v;
}

// n rounded down to a multiple of 32 codes; returns how many were done. NaN/Inf and subnormal codes are
// rare in practice: two byte compares over 32 codes say whether decode8 is needed. Where they are not
// rare (more than one block in 16 needs it, e.g. a table of every code), the branch would mispredict
// often, and the rest of the input goes through the branch-free decode8 loop instead.
template <const FormatSpec& F>
inline std::size_t decode(const std::uint8_t* __restrict in, float* __restrict out, std::size_t n) {
  static_assert(decode_supported<F>());
  // As signed bytes: magnitude >= the first special code (NaN for E4M3, Inf for E5M2), or 1 .. 2^M - 1.
  constexpr std::uint32_t kFirstSpecial = has_inf(F) ? inf_code(F) : magnitude_mask(F);
  const __m256i mag_mask = _mm256_set1_epi8(0x7F), last_finite = _mm256_set1_epi8(char(kFirstSpecial - 1));
  const __m256i one = _mm256_set1_epi8(1), sub_max = _mm256_set1_epi8(char((1 << F.man) - 2));
  std::size_t i = 0, slow = 0;
  for (; i + 32 <= n && slow * 16 <= i / 32 + 16; i += 32) {
    const __m256i mag = _mm256_and_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(in + i)), mag_mask);
    // Subnormal: mag - 1 <= 2^M - 2 as unsigned bytes (mag 0 wraps to 255: zeros multiply at full speed).
    const __m256i x = _mm256_sub_epi8(mag, one);
    const __m256i sub = _mm256_cmpeq_epi8(_mm256_min_epu8(x, sub_max), x);
    const __m256i need = _mm256_or_si256(sub, _mm256_cmpgt_epi8(mag, last_finite));
    if (_mm256_testz_si256(need, need)) [[likely]] {
      _mm256_storeu_ps(out + i, decode8_normal<F>(in + i));
      _mm256_storeu_ps(out + i + 8, decode8_normal<F>(in + i + 8));
      _mm256_storeu_ps(out + i + 16, decode8_normal<F>(in + i + 16));
      _mm256_storeu_ps(out + i + 24, decode8_normal<F>(in + i + 24));
    } else {
      ++slow;
      for (std::size_t k = 0; k < 32; k += 8) _mm256_storeu_ps(out + i + k, decode8<F>(in + i + k));
    }
  }
  for (; i + 32 <= n; i += 32)
    for (std::size_t k = 0; k < 32; k += 8) _mm256_storeu_ps(out + i + k, decode8<F>(in + i + k));
  return i;
}

}  // namespace fp8flow::avx2
