// AVX2 kernel for the fp32_seq model: 6 rows x 16 columns of outputs per tile, one fp32 accumulator
// lane per output. fma(a, b, acc) equals acc + a*b rounded once, and a*b is exact for <= 8-bit
// formats, so every lane performs exactly the golden model's sequence acc = acc + p_k in k order.
// BT is B packed in panels of 16 columns ([N/16][K][16]), so a k step reads one 64-byte line.
// Compiled with -mavx2 -mfma (CMake, *_avx2.cpp); called only when the CPU has AVX2 and FMA.
#include <immintrin.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>

namespace fp8flow::gemm_avx2 {

void fp32_seq_tiles(const float* A, const float* BT, const float* SA, const float* SBT, float* out, std::size_t M,
                    std::size_t N, std::size_t K, std::size_t bw, std::size_t i0, std::size_t i1) {
  (void)M;
  constexpr std::size_t R = 6;
  const std::size_t nkb = (K + bw - 1) / bw;
  for (std::size_t i = i0; i + R <= i1; i += R) {
    for (std::size_t j = 0; j + 16 <= N; j += 16) {
      __m256 total[R][2];
      for (std::size_t r = 0; r < R; ++r) total[r][0] = total[r][1] = _mm256_setzero_ps();
      for (std::size_t kb = 0; kb < nkb; ++kb) {
        const std::size_t k0 = kb * bw, k1 = k0 + bw < K ? k0 + bw : K;
        __m256 acc[R][2];
        for (std::size_t r = 0; r < R; ++r) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
        const float* panel = BT + (j / 16) * K * 16;
        for (std::size_t k = k0; k < k1; ++k) {
          const __m256 b0 = _mm256_loadu_ps(panel + k * 16);
          const __m256 b1 = _mm256_loadu_ps(panel + k * 16 + 8);
          for (std::size_t r = 0; r < R; ++r) {
            const __m256 av = _mm256_broadcast_ss(A + (i + r) * K + k);
            acc[r][0] = _mm256_fmadd_ps(av, b0, acc[r][0]);
            acc[r][1] = _mm256_fmadd_ps(av, b1, acc[r][1]);
          }
        }
        const __m256 sb0 = _mm256_loadu_ps(SBT + kb * N + j);
        const __m256 sb1 = _mm256_loadu_ps(SBT + kb * N + j + 8);
        for (std::size_t r = 0; r < R; ++r) {
          const __m256 sa = _mm256_broadcast_ss(SA + (i + r) * nkb + kb);
          total[r][0] = _mm256_fmadd_ps(acc[r][0], _mm256_mul_ps(sa, sb0), total[r][0]);
          total[r][1] = _mm256_fmadd_ps(acc[r][1], _mm256_mul_ps(sa, sb1), total[r][1]);
        }
      }
      for (std::size_t r = 0; r < R; ++r) {
        _mm256_storeu_ps(out + (i + r) * N + j, total[r][0]);
        _mm256_storeu_ps(out + (i + r) * N + j + 8, total[r][1]);
      }
    }
  }
}

}  // namespace fp8flow::gemm_avx2

namespace fp8flow::gemm_avx2 {

// The h100 / h100_fast models (docs/gemm.md "Fitted presets") for a tile of 2 rows x 16 columns, one lane per
// output, bit-identical to gemm_detail::block_partial + scale_add:
//  - per group of 32 products (from the scale block's start): emax = max(exponent of the accumulator, ea + eb
//    over the group's non-zero products), computed in int16 lanes;
//  - every term scaled by 2^(13 - emax) (exact) and truncated toward zero to an integer (cvttps), the integers
//    summed exactly in int32 (|sum| < 2^21), scaled back (exact) and cut to 1 + 13 significant bits (mask);
//  - promotion every 128 products (fp32 RN add) unless fast; then total = fma per scale_order.
// Operands must be finite and their exponents in [-30, 30] (the caller falls back to the scalar path
// otherwise). Exponents are int8 with -64 for zero: EA pairs two rows per k ([M/2][K], row 2p in the low
// byte), EBT holds each column's exponent twice ([N/16][K][32]); BT is packed [N/16][K][16], BT holding b * 2^-40 (exact): a
// product a * b * 2^-40 is then scaled by 2^(13 - emax) by adding 53 - emax to its exponent field, which
// never overflows (emax <= 53) and turns a zero product into at most 2^-14, truncated to 0 (emax >= -60).
void h100_tiles(const float* A, const std::int16_t* EA, const float* BT, const std::int8_t* EBT, const float* SA,
                const float* SBT, float* out, std::size_t N, std::size_t K, std::size_t bw, std::size_t i0,
                std::size_t i1, bool fast, int order) {
  constexpr std::size_t R = 4, G = 32, NC = 128;
  const std::size_t nkb = (K + bw - 1) / bw;
  const __m256i exp_mask = _mm256_set1_epi32(0x7F800000), trunc_mask = _mm256_set1_epi32(int(0xFFFFFC00u));
  const __m256i lo_clamp = _mm256_set1_epi32(-60);
  for (std::size_t i = i0; i + R <= i1; i += R) {
    for (std::size_t j = 0; j + 16 <= N; j += 16) {
      const float* panel = BT + (j / 16) * K * 16;
      const std::int8_t* epanel = EBT + (j / 16) * K * 32;
      __m256 total[R][2];
      for (std::size_t r = 0; r < R; ++r) total[r][0] = total[r][1] = _mm256_setzero_ps();
      for (std::size_t kb = 0; kb < nkb; ++kb) {
        const std::size_t k0 = kb * bw, k1 = std::min(K, k0 + bw);
        __m256 partial[R][2], acc[R][2];
        for (std::size_t r = 0; r < R; ++r)
          partial[r][0] = partial[r][1] = acc[r][0] = acc[r][1] = _mm256_setzero_ps();
        for (std::size_t g0 = k0; g0 < k1; g0 += G) {
          const std::size_t g1 = std::min(k1, g0 + G);
          // Pass 1: the group's alignment exponent per output, in int8 lanes, two rows per vector (byte 2c + q:
          // row i + 2p + q, column j + c).
          __m256i em[R / 2];
          for (std::size_t q = 0; q < R / 2; ++q) em[q] = _mm256_set1_epi8(-128);
          for (std::size_t k = g0; k < g1; ++k) {
            const __m256i eb = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(epanel + k * 32));
            for (std::size_t q = 0; q < R / 2; ++q)
              em[q] = _mm256_max_epi8(em[q], _mm256_add_epi8(_mm256_set1_epi16(EA[((i / 2) + q) * K + k]), eb));
          }
          __m256i e32[R][2];
          const __m256i split = _mm256_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15, 0, 2, 4, 6, 8, 10,
                                                 12, 14, 1, 3, 5, 7, 9, 11, 13, 15);
          for (std::size_t q = 0; q < R / 2; ++q) {
            const __m256i sh = _mm256_shuffle_epi8(em[q], split);
            const __m128i lo = _mm256_castsi256_si128(sh), hi = _mm256_extracti128_si256(sh, 1);
            e32[2 * q][0] = _mm256_cvtepi8_epi32(lo);
            e32[2 * q + 1][0] = _mm256_cvtepi8_epi32(_mm_srli_si128(lo, 8));
            e32[2 * q][1] = _mm256_cvtepi8_epi32(hi);
            e32[2 * q + 1][1] = _mm256_cvtepi8_epi32(_mm_srli_si128(hi, 8));
          }
          __m256 inv[R][2], ulp[R][2];
          __m256i sum[R][2], delta[R][2];
          for (std::size_t r = 0; r < R; ++r)
            for (int h = 0; h < 2; ++h) {
              const __m256i e16 = e32[r][h];
              // The accumulator's exponent (zero: -127, below every product's).
              const __m256i ea = _mm256_sub_epi32(
                  _mm256_srli_epi32(_mm256_and_si256(_mm256_castps_si256(acc[r][h]), exp_mask), 23),
                  _mm256_set1_epi32(127));
              const __m256i e = _mm256_max_epi32(_mm256_max_epi32(e16, ea), lo_clamp);
              inv[r][h] = _mm256_castsi256_ps(
                  _mm256_slli_epi32(_mm256_sub_epi32(_mm256_set1_epi32(127 + 13), e), 23));
              delta[r][h] = _mm256_slli_epi32(_mm256_sub_epi32(_mm256_set1_epi32(53), e), 23);
              ulp[r][h] = _mm256_castsi256_ps(
                  _mm256_slli_epi32(_mm256_add_epi32(e, _mm256_set1_epi32(127 - 13)), 23));
              sum[r][h] = _mm256_cvttps_epi32(_mm256_mul_ps(acc[r][h], inv[r][h]));
            }
          // Pass 2: truncated terms, summed exactly.
          for (std::size_t k = g0; k < g1; ++k) {
            const __m256 b0 = _mm256_loadu_ps(panel + k * 16), b1 = _mm256_loadu_ps(panel + k * 16 + 8);
            for (std::size_t r = 0; r < R; ++r) {
              const __m256 av = _mm256_broadcast_ss(A + (i + r) * K + k);
              const __m256i p0 = _mm256_add_epi32(_mm256_castps_si256(_mm256_mul_ps(av, b0)), delta[r][0]);
              const __m256i p1 = _mm256_add_epi32(_mm256_castps_si256(_mm256_mul_ps(av, b1)), delta[r][1]);
              sum[r][0] = _mm256_add_epi32(sum[r][0], _mm256_cvttps_epi32(_mm256_castsi256_ps(p0)));
              sum[r][1] = _mm256_add_epi32(sum[r][1], _mm256_cvttps_epi32(_mm256_castsi256_ps(p1)));
            }
          }
          for (std::size_t r = 0; r < R; ++r)
            for (int h = 0; h < 2; ++h) {
              const __m256 s = _mm256_mul_ps(_mm256_cvtepi32_ps(sum[r][h]), ulp[r][h]);
              acc[r][h] = _mm256_castsi256_ps(_mm256_and_si256(_mm256_castps_si256(s), trunc_mask));
            }
          if (!fast && ((g1 - k0) % NC == 0 || g1 == k1))
            for (std::size_t r = 0; r < R; ++r)
              for (int h = 0; h < 2; ++h) {
                partial[r][h] = _mm256_add_ps(partial[r][h], acc[r][h]);
                acc[r][h] = _mm256_setzero_ps();
              }
        }
        const __m256 sb0 = _mm256_loadu_ps(SBT + kb * N + j), sb1 = _mm256_loadu_ps(SBT + kb * N + j + 8);
        for (std::size_t r = 0; r < R; ++r) {
          const __m256 sa = _mm256_broadcast_ss(SA + (i + r) * nkb + kb);
          const __m256 v0 = fast ? acc[r][0] : partial[r][0], v1 = fast ? acc[r][1] : partial[r][1];
          if (order == 1) {
            total[r][0] = _mm256_fmadd_ps(_mm256_mul_ps(v0, sa), sb0, total[r][0]);
            total[r][1] = _mm256_fmadd_ps(_mm256_mul_ps(v1, sa), sb1, total[r][1]);
          } else {
            total[r][0] = _mm256_fmadd_ps(v0, _mm256_mul_ps(sa, sb0), total[r][0]);
            total[r][1] = _mm256_fmadd_ps(v1, _mm256_mul_ps(sa, sb1), total[r][1]);
          }
        }
      }
      for (std::size_t r = 0; r < R; ++r) {
        _mm256_storeu_ps(out + (i + r) * N + j, total[r][0]);
        _mm256_storeu_ps(out + (i + r) * N + j + 8, total[r][1]);
      }
    }
  }
}

}  // namespace fp8flow::gemm_avx2
