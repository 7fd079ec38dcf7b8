// The fast path of the GEMM emulator: the same arithmetic as gemm_golden, output by output, in parallel;
// fp32_seq additionally has an AVX2 register-blocked kernel (gemm_avx2.cpp) that vectorises ACROSS
// outputs, so each output still sees its products added one by one in k order.
#include <algorithm>
#include <cmath>
#include <cstdint>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "formats/cpu_features.hpp"
#include "reference/gemm.hpp"
#include "reference/gemm_detail.hpp"

namespace fp8flow {

namespace gemm_avx2 {
// Rows [i0, i1) x the full 16-column panels; BT is B packed as [N/16][K][16]. See gemm_avx2.cpp.
void fp32_seq_tiles(const float* A, const float* BT, const float* SA, const float* SBT, float* out, std::size_t M,
                    std::size_t N, std::size_t K, std::size_t bw, std::size_t i0, std::size_t i1);
inline constexpr std::size_t kTileRows = 6, kTileCols = 16;
// h100 / h100_fast: rows [i0, i1) in pairs x full 16-column panels; see gemm_avx2.cpp.
void h100_tiles(const float* A, const std::int16_t* EA, const float* BT, const std::int8_t* EBT, const float* SA,
                const float* SBT, float* out, std::size_t N, std::size_t K, std::size_t bw, std::size_t i0,
                std::size_t i1, bool fast, int order);
inline constexpr std::size_t kH100TileRows = 4;
}  // namespace gemm_avx2


std::vector<float> gemm(const GemmOperand& a, const GemmOperand& b, AccumModel m, const AccumParams& p, int threads) {
  using namespace gemm_detail;
  check_gemm_operands(a, b);
  check_accum_params(p);
  const std::size_t M = a.rows, N = b.rows, K = a.k;
  const auto av = decode_operand(a), bv = decode_operand(b);
  const bool ex = needs_exponents(m, p);
  const std::vector<int> ea = ex ? operand_exponents(a, av) : std::vector<int>{},
                         eb = ex ? operand_exponents(b, bv) : std::vector<int>{};
  const std::size_t bw = std::min(block_width(a), block_width(b));
  const std::size_t nkb = (K + bw - 1) / bw;
  std::vector<float> out(M * N);
#ifdef _OPENMP
  const int t = threads > 0 ? threads : omp_get_max_threads();
#else
  const int t = 1;
  (void)threads;
#endif

  const int so = accum_preset_params(m, p).scale_order;
  // Per-output scalar path (also the tails of the tiled kernel).
  auto one = [&](std::size_t i, std::size_t j, float* prod, int* esum) {
    const float* ar = av.data() + i * K;
    const float* br = bv.data() + j * K;
    if (m == AccumModel::exact) return exact_output(ar, br, a, b, i, j, bw);
    float total = 0.0f;
    for (std::size_t k0 = 0; k0 < K; k0 += bw) {
      const std::size_t n = std::min(K, k0 + bw) - k0;
      for (std::size_t k = 0; k < n; ++k) prod[k] = ar[k0 + k] * br[k0 + k];
      if (ex)
        for (std::size_t k = 0; k < n; ++k) {
          const int x = ea[i * K + k0 + k], y = eb[j * K + k0 + k];
          esum[k] = (x == kNoExp || y == kNoExp) ? kNoExp : x + y;
        }
      total = scale_add(block_partial(prod, n, m, p, ex ? esum : nullptr), scale_at(a, i, k0), scale_at(b, j, k0),
                        total, so, a, b);
    }
    return total;
  };

  auto exps_in = [](const std::vector<int>& e, int lo, int hi) {
    for (int x : e)
      if (x != kNoExp && (x < lo || x > hi)) return false;
    return true;
  };
  bool finite = true;
  for (float x : av) finite = finite && std::isfinite(x);
  for (float x : bv) finite = finite && std::isfinite(x);
  // The AVX2 tiles serve the fitted presets, and hopper_fast with exactly their parameters (gemm_algo_at runs
  // split-K that way, with an explicit scale order).
  const AccumParams pre = accum_preset_params(AccumModel::h100, p);
  auto preset_like = [&](const AccumParams& q) {
    return q.promote_interval == pre.promote_interval && q.acc_fraction_bits == pre.acc_fraction_bits &&
           q.group == pre.group && q.acc_in_alignment == pre.acc_in_alignment && q.round_terms == pre.round_terms &&
           q.acc_round_nearest == pre.acc_round_nearest && q.truncate_result == pre.truncate_result &&
           q.align_exponent_sum == pre.align_exponent_sum;
  };
  const bool h100_tiled = (m == AccumModel::h100 || m == AccumModel::h100_fast ||
                           (m == AccumModel::hopper_fast && preset_like(p))) &&
                          finite && cpu_has_avx2() && N >= gemm_avx2::kTileCols &&
                          exps_in(ea, -30, 30) && exps_in(eb, -30, 30);
  const bool tiled = (m == AccumModel::fp32_seq || h100_tiled) && cpu_has_avx2() && N >= gemm_avx2::kTileCols;
  const std::size_t tile_rows = h100_tiled ? gemm_avx2::kH100TileRows : gemm_avx2::kTileRows;
  std::vector<float> BT, SA, SBT;
  std::vector<std::int16_t> EA16;  // two rows' int8 exponents per k (h100_tiles)
  std::vector<std::int8_t> EBT8;
  if (h100_tiled) {
    const std::size_t panels = N / gemm_avx2::kTileCols;
    auto e8 = [](int e) { return std::uint8_t(std::int8_t(e == kNoExp ? -64 : e)); };
    EA16.assign((M / 2) * K, 0);
    for (std::size_t pr = 0; pr < M / 2; ++pr)
      for (std::size_t k = 0; k < K; ++k)
        EA16[pr * K + k] = std::int16_t(std::uint16_t(e8(ea[(2 * pr) * K + k]) | (e8(ea[(2 * pr + 1) * K + k]) << 8)));
    EBT8.resize(panels * K * 2 * gemm_avx2::kTileCols);
    for (std::size_t pj = 0; pj < panels; ++pj)
      for (std::size_t k = 0; k < K; ++k)
        for (std::size_t c = 0; c < gemm_avx2::kTileCols; ++c) {
          const std::int8_t e = std::int8_t(e8(eb[(pj * gemm_avx2::kTileCols + c) * K + k]));
          EBT8[(pj * K + k) * 32 + 2 * c] = EBT8[(pj * K + k) * 32 + 2 * c + 1] = e;
        }
  }
  if (tiled) {
    // B packed in panels of 16 columns, [N/16][K][16]: a k step loads 16 neighbouring outputs' operands
    // from one cache line, and a panel is read front to back.
    const std::size_t panels = N / gemm_avx2::kTileCols;
    BT.resize(panels * K * gemm_avx2::kTileCols);
    for (std::size_t pj = 0; pj < panels; ++pj)
      for (std::size_t k = 0; k < K; ++k)
        for (std::size_t c = 0; c < gemm_avx2::kTileCols; ++c)
          BT[(pj * K + k) * gemm_avx2::kTileCols + c] =
              h100_tiled ? std::ldexp(bv[(pj * gemm_avx2::kTileCols + c) * K + k], -40)  // see h100_tiles
                         : bv[(pj * gemm_avx2::kTileCols + c) * K + k];
    SA.resize(M * nkb);
    SBT.resize(nkb * N);
    for (std::size_t kb = 0; kb < nkb; ++kb) {
      for (std::size_t i = 0; i < M; ++i) SA[i * nkb + kb] = scale_at(a, i, kb * bw);
      for (std::size_t j = 0; j < N; ++j) SBT[kb * N + j] = scale_at(b, j, kb * bw);
    }
  }
  const std::size_t full_rows = tiled ? M / tile_rows * tile_rows : 0;
  const std::size_t full_cols = tiled ? N / gemm_avx2::kTileCols * gemm_avx2::kTileCols : 0;
  const long long row_tiles = static_cast<long long>(tiled ? full_rows / tile_rows : 0);
  const int order = so == 2 ? ((a.gran == k1x128 && b.gran == k1x128) ? 1 : 0) : so;

#pragma omp parallel num_threads(t)
  {
    std::vector<float> prod(bw);
    std::vector<int> esum(ex ? bw : 0);
#pragma omp for schedule(dynamic, 4)
    for (long long rt = 0; rt < row_tiles; ++rt) {
      const std::size_t i0 = std::size_t(rt) * tile_rows;
      if (h100_tiled)
        gemm_avx2::h100_tiles(av.data(), EA16.data(), BT.data(), EBT8.data(), SA.data(), SBT.data(), out.data(), N,
                              K, bw, i0, i0 + tile_rows, accum_preset_params(m, p).fast_accum, order);
      else
        gemm_avx2::fp32_seq_tiles(av.data(), BT.data(), SA.data(), SBT.data(), out.data(), M, N, K, bw, i0,
                                  i0 + tile_rows);
      for (std::size_t i = i0; i < i0 + tile_rows; ++i)
        for (std::size_t j = full_cols; j < N; ++j) out[i * N + j] = one(i, j, prod.data(), esum.data());
    }
#pragma omp for schedule(dynamic, 1)
    for (long long i = static_cast<long long>(full_rows); i < static_cast<long long>(M); ++i)
      for (std::size_t j = 0; j < N; ++j) out[std::size_t(i) * N + j] = one(std::size_t(i), j, prod.data(), esum.data());
  }
  return out;
}

}  // namespace fp8flow
