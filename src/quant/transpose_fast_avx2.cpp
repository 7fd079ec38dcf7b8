// AVX2 -O3 build of the transpose tile loop (called only when the CPU has AVX2): the portable loop
// (transpose_kernels.inc), and sat_tile_pshufb, which does the same job 32 bytes at a time.
#define FP8FLOW_ISA isa_avx2
#include "quant/transpose_kernels.inc"

#include <immintrin.h>

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
                     std::uint8_t* __restrict buf, std::uint8_t* __restrict dst, std::size_t R) {
  for (std::size_t r = 0; r < h; ++r) {
    const std::uint8_t* row = src + (row0 + r) * C + c0;
    std::uint8_t* b = buf + r * w;
    std::size_t c = 0;
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
    const std::uint8_t* s = col + c * h;
    std::size_t i = 0;
    for (; i + 32 <= h; i += 32)  // inline: a call to memcpy per 128-byte column costs as much as the lookups
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(d + i), _mm256_loadu_si256(reinterpret_cast<const __m256i*>(s + i)));
    for (; i < h; ++i) d[i] = s[i];
  }
}

}  // namespace fp8flow::isa_avx2
