// AVX2 -O3 build of the transpose tile loop (called only when the CPU has AVX2): the portable loop
// (transpose_kernels.inc), and sat_tile_pshufb, which does the same job 32 bytes at a time.
#define FP8FLOW_ISA isa_avx2
#include "quant/transpose_kernels.inc"

#include <immintrin.h>

#include "quant/transpose.hpp"

namespace fp8flow::isa_avx2 {

// xor_form(t) for a 256-byte table t (see sat_tile_pshufb): per 128-code half, 16-byte segment j holds
// t[seg j] ^ t[seg j+1] (the last segment of a half: itself).
void sat_xor_form(const std::uint8_t* t, std::uint8_t* x) {
  for (int half = 0; half < 2; ++half)
    for (int j = 0; j < 8; ++j)
      for (int i = 0; i < 16; ++i) {
        const int c = half * 128 + j * 16 + i;
        x[c] = std::uint8_t(t[c] ^ (j < 7 ? t[c + 16] : 0));
      }
}

namespace {

// 256-entry byte table lookup of 32 codes with vpshufb, which looks up 16 entries and gives 0 where the
// index has bit 7 set. For a code c < 128 and segment j, adds_epu8(c, 0x70 - 16 j) has bit 7 clear iff
// c < 16 (j + 1) and keeps c's low 4 bits, so segment j answers for every code at or below it:
// XOR over j of pshufb(X_j, .) = XOR over j >= c/16 of X_j = t[c] when X_j = T_j ^ T_(j+1) (telescoping).
// Codes >= 128 saturate (no answer) and are looked up in the other half after c ^ 0x80.
inline __m256i lookup32(__m256i c, const std::uint8_t* x) {
  const __m256i hi = _mm256_xor_si256(c, _mm256_set1_epi8(char(0x80)));
  __m256i r = _mm256_setzero_si256();
  for (int j = 0; j < 8; ++j) {
    const __m256i off = _mm256_set1_epi8(char(0x70 - 16 * j));
    const __m256i lo_t = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x + 16 * j)));
    const __m256i hi_t =
        _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x + 128 + 16 * j)));
    r = _mm256_xor_si256(r, _mm256_shuffle_epi8(lo_t, _mm256_adds_epu8(c, off)));
    r = _mm256_xor_si256(r, _mm256_shuffle_epi8(hi_t, _mm256_adds_epu8(hi, off)));
  }
  return r;
}

// A row's SatShiftForm (transpose.hpp) in registers.
struct FormRegs {
  __m256i mag_mask, sign, max_mag, hi, sub, base, fifteen, deep_pos, deep_neg, zero_pos, zero_neg;
  __m256i win_pos_lo, win_pos_hi, win_neg_lo, win_neg_hi;
  explicit FormRegs(const SatShiftForm& s)
      : mag_mask(_mm256_set1_epi8(char(s.mag_mask))), sign(_mm256_set1_epi8(char(s.sign))),
        max_mag(_mm256_set1_epi8(char(s.max_mag))), hi(_mm256_set1_epi8(char(s.hi))),
        sub(_mm256_set1_epi8(char(s.sub))), base(_mm256_set1_epi8(char(s.base))), fifteen(_mm256_set1_epi8(15)),
        deep_pos(_mm256_set1_epi8(char(s.deep_pos))), deep_neg(_mm256_set1_epi8(char(s.deep_neg))),
        zero_pos(_mm256_set1_epi8(char(s.zero_pos))), zero_neg(_mm256_set1_epi8(char(s.zero_neg))),
        win_pos_lo(bcast16(s.win_pos)), win_pos_hi(bcast16(s.win_pos + 16)), win_neg_lo(bcast16(s.win_neg)),
        win_neg_hi(bcast16(s.win_neg + 16)) {}
  static __m256i bcast16(const std::uint8_t* p) {
    return _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
};

// True when one of the 32 codes is special (mag > max_mag: NaN, Inf), which the form does not cover.
inline bool any_special(__m256i c, const FormRegs& F) {
  const __m256i over = _mm256_subs_epu8(_mm256_and_si256(c, F.mag_mask), F.max_mag);
  return !_mm256_testz_si256(over, over);
}

// sat_shift_form_code on 32 non-special codes. Byte compares: mag <= 127 and base <= 128, so mag - base is
// negative as a signed byte exactly when mag < base; window indices are 0 .. 31 (vpshufb reads the low 4 bits,
// the upper half is picked by idx > 15); mag >= hi is max_epu8(mag, hi) == mag (hi = 0xFF: never).
inline __m256i form32(__m256i c, const FormRegs& F) {
  const __m256i mag = _mm256_and_si256(c, F.mag_mask);
  const __m256i sgn = _mm256_and_si256(c, F.sign);
  const __m256i neg = _mm256_cmpeq_epi8(sgn, F.sign);
  const __m256i idx = _mm256_sub_epi8(mag, F.base);
  const __m256i upper = _mm256_cmpgt_epi8(idx, F.fifteen);
  const __m256i wp = _mm256_blendv_epi8(_mm256_shuffle_epi8(F.win_pos_lo, idx), _mm256_shuffle_epi8(F.win_pos_hi, idx), upper);
  const __m256i wn = _mm256_blendv_epi8(_mm256_shuffle_epi8(F.win_neg_lo, idx), _mm256_shuffle_epi8(F.win_neg_hi, idx), upper);
  __m256i r = _mm256_blendv_epi8(wp, wn, neg);
  const __m256i is_zero = _mm256_cmpeq_epi8(mag, _mm256_setzero_si256());
  const __m256i low = _mm256_blendv_epi8(_mm256_blendv_epi8(F.deep_pos, F.deep_neg, neg),
                                         _mm256_blendv_epi8(F.zero_pos, F.zero_neg, neg), is_zero);
  r = _mm256_blendv_epi8(r, low, _mm256_cmpgt_epi8(_mm256_setzero_si256(), idx));
  const __m256i normal = _mm256_cmpeq_epi8(_mm256_max_epu8(mag, F.hi), mag);
  return _mm256_blendv_epi8(r, _mm256_or_si256(_mm256_sub_epi8(mag, F.sub), sgn), normal);
}

// 16 rows of 16 bytes -> 16 columns: four rounds of unpacks; output k is column bitrev4(k).
inline void transpose16x16(__m128i x[16]) {
  __m128i t[16];
  for (int i = 0; i < 8; ++i) t[i] = _mm_unpacklo_epi8(x[2 * i], x[2 * i + 1]), t[i + 8] = _mm_unpackhi_epi8(x[2 * i], x[2 * i + 1]);
  for (int i = 0; i < 8; ++i) x[i] = _mm_unpacklo_epi16(t[2 * i], t[2 * i + 1]), x[i + 8] = _mm_unpackhi_epi16(t[2 * i], t[2 * i + 1]);
  for (int i = 0; i < 8; ++i) t[i] = _mm_unpacklo_epi32(x[2 * i], x[2 * i + 1]), t[i + 8] = _mm_unpackhi_epi32(x[2 * i], x[2 * i + 1]);
  for (int i = 0; i < 8; ++i) x[i] = _mm_unpacklo_epi64(t[2 * i], t[2 * i + 1]), x[i + 8] = _mm_unpackhi_epi64(t[2 * i], t[2 * i + 1]);
}
constexpr int kBitrev4[16] = {0, 8, 4, 12, 2, 10, 6, 14, 1, 9, 5, 13, 3, 11, 7, 15};

}  // namespace

// sat_tile_lut's job (one h x w tile, row r through table lut[r]) with vector lookups: row r's bytes go
// through lookup32 with xlut[r] = xor_form(lut[r]) into buf (row-major, h x w), then 16x16 byte blocks
// are transposed in registers into buf + h * w (column-major) and each column goes to dst in one copy.
// buf holds 2 * h * w bytes.
// Edges (w % 32 codes of a row, h % 16 rows, w % 16 columns) take the scalar table.
void sat_tile_pshufb(const std::uint8_t* __restrict src, std::size_t C, std::size_t row0, std::size_t h,
                     std::size_t c0, std::size_t w, const std::uint8_t* const* lut, const std::uint8_t* const* xlut,
                     const SatShiftForm* const* form, std::uint8_t* __restrict buf, std::uint8_t* __restrict dst,
                     std::size_t R) {
  // The caller goes through a row tile's column blocks left to right: fetch the next block's input (same
  // rows, the next w columns) and output lines (the next w columns' pieces, stride R) while this one is
  // worked on. Neither pattern is one the hardware prefetchers follow (128 streams of 128 bytes, each on
  // its own page), and without this every first touch of a line (and of a page, for the output) waited
  // for memory: perf put most of the kernel's time on the first input load and on the column stores.
  const std::size_t wn = c0 + w < C ? std::min(w, C - c0 - w) : 0;  // the next block's width (0: none)
  for (std::size_t r = 0; r < h; ++r) {
    const std::uint8_t* row = src + (row0 + r) * C + c0;
    for (std::size_t i = 0; i < wn; i += 64) _mm_prefetch(reinterpret_cast<const char*>(row + w + i), _MM_HINT_T0);
    std::uint8_t* b = buf + r * w;
    std::size_t c = 0;
    if (form[r]) {  // exact: the compare/blend form; a piece holding a NaN/Inf code takes the full table
      const FormRegs F(*form[r]);
      for (; c + 32 <= w; c += 32) {
        const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + c));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(b + c), any_special(v, F) ? lookup32(v, xlut[r]) : form32(v, F));
      }
    }
    for (; c + 64 <= w; c += 64) {
      const __m256i v0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + c));
      const __m256i v1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + c + 32));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(b + c), lookup32(v0, xlut[r]));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(b + c + 32), lookup32(v1, xlut[r]));
    }
    for (; c + 32 <= w; c += 32)
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(b + c),
                          lookup32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + c)), xlut[r]));
    for (; c < w; ++c) b[c] = lut[r][row[c]];
  }
  // Transpose into the column-major half of buf ([c][h]: L1-resident, short strides), then copy each column's
  // h bytes to dst in one piece: storing 16-byte pieces straight into dst's columns (stride R, often a
  // power of two) lands them all in one L1 set and thrashes it.
  std::uint8_t* __restrict col = buf + h * w;
  std::size_t r = 0;
  for (; r + 16 <= h; r += 16) {
    std::size_t c = 0;
    for (; c + 16 <= w; c += 16) {
      __m128i x[16];
      for (int i = 0; i < 16; ++i) x[i] = _mm_loadu_si128(reinterpret_cast<const __m128i*>(buf + (r + i) * w + c));
      transpose16x16(x);
      for (int k = 0; k < 16; ++k)
        _mm_storeu_si128(reinterpret_cast<__m128i*>(col + (c + std::size_t(kBitrev4[k])) * h + r), x[k]);
    }
    for (; c < w; ++c)
      for (std::size_t i = 0; i < 16; ++i) col[c * h + r + i] = buf[(r + i) * w + c];
  }
  for (; r < h; ++r)
    for (std::size_t c = 0; c < w; ++c) col[c * h + r] = buf[r * w + c];
  for (std::size_t c = 0; c < w; ++c) {
    std::uint8_t* d = dst + (c0 + c) * R + row0;
    if (c < wn)  // the next block's column c (spreading these over the lookups instead measured slower)
      for (std::size_t i = 0; i < h; i += 64) _mm_prefetch(reinterpret_cast<const char*>(d + w * R + i), _MM_HINT_T0);
    const std::uint8_t* s = col + c * h;
    std::size_t i = 0;
    for (; i + 32 <= h; i += 32)  // inline: a call to memcpy per 128-byte column costs as much as the lookups
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(d + i), _mm256_loadu_si256(reinterpret_cast<const __m256i*>(s + i)));
    for (; i < h; ++i) d[i] = s[i];
  }
}

}  // namespace fp8flow::isa_avx2
