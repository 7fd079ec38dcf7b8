// AVX2 kernel for the fp32_seq model: 6 rows x 16 columns of outputs per tile, one fp32 accumulator
// lane per output. fma(a, b, acc) equals acc + a*b rounded once, and a*b is exact for <= 8-bit
// formats, so every lane performs exactly the golden model's sequence acc = acc + p_k in k order.
// BT is B packed in panels of 16 columns ([N/16][K][16]), so a k step reads one 64-byte line.
// Compiled with -mavx2 -mfma (CMake, *_avx2.cpp); called only when the CPU has AVX2 and FMA.
#include <immintrin.h>

#include <cstddef>

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
