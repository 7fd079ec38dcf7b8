// A-priori error bound of a hardware FP8 GEMM output against the exact result, from K and the block
// maxima (docs/gemm.md "Error bound"). Used by `fp8flow validate --gpu --op gemm` and the GPU tests as the
// check that does not depend on the fitted accumulation model.
#include <algorithm>
#include <cmath>

#include "reference/gemm.hpp"
#include "reference/gemm_detail.hpp"

namespace fp8flow {

std::vector<double> gemm_error_bound(const GemmOperand& a, const GemmOperand& b, const AccumParams& p, bool bf16_out,
                                     const std::vector<float>* exact_in) {
  using namespace gemm_detail;
  check_gemm_operands(a, b);
  const auto av = decode_operand(a), bv = decode_operand(b);
  const std::size_t M = a.rows, N = b.rows, K = a.k;
  const std::size_t sbw = std::min(block_width(a), block_width(b));  // scale block (K for tensor scaling)
  const std::size_t mb = 128;                                        // width of the maxima blocks
  const std::size_t nmb = (K + mb - 1) / mb;
  auto maxima = [&](const std::vector<float>& v, std::size_t rows) {
    std::vector<double> m(rows * nmb, 0.0);
    for (std::size_t r = 0; r < rows; ++r)
      for (std::size_t k = 0; k < K; ++k) {
        double& x = m[r * nmb + k / mb];
        x = std::max(x, double(std::fabs(v[r * K + k])));
      }
    return m;
  };
  const auto am = maxima(av, M), bm = maxima(bv, N);
  // Products summed in the limited accumulator before it is added to fp32: the promotion interval, or (fast
  // accumulation) the whole scale block.
  const std::size_t L = p.fast_accum ? sbw : std::min<std::size_t>(std::size_t(p.promote_interval), sbw);
  const double u_acc = std::ldexp(1.0, -p.acc_fraction_bits), u32 = 0x1.0p-24;
  const double u_out = bf16_out ? 0x1.0p-8 : 0x1.0p-24;
  std::vector<float> own;
  if (!exact_in) own = gemm(a, b, AccumModel::exact, p, 0);
  const std::vector<float>& exact = exact_in ? *exact_in : own;
  std::vector<double> bound(M * N);
  for (std::size_t i = 0; i < M; ++i)
    for (std::size_t j = 0; j < N; ++j) {
      double err = 0.0, mag = 0.0;
      std::size_t adds = 0;
      for (std::size_t k0 = 0; k0 < K; k0 += sbw) {          // scale blocks
        const std::size_t k1 = std::min(K, k0 + sbw);
        const double s = std::fabs(double(scale_at(a, i, k0)) * double(scale_at(b, j, k0)));
        for (std::size_t c0 = k0; c0 < k1; c0 += L) {        // accumulation intervals
          const std::size_t c1 = std::min(k1, c0 + L);
          double S = 0.0;                                    // >= sum |a_k b_k| over the interval
          for (std::size_t kb = c0 / mb; kb * mb < c1; ++kb) {
            const std::size_t lo = std::max(c0, kb * mb), hi = std::min(c1, (kb + 1) * mb);
            S += double(hi - lo) * am[i * nmb + kb] * bm[j * nmb + kb];
          }
          // Each aligned term (g products and the accumulator) loses < 2^-F of the running magnitude
          // (<= S) per group: < 2 (c1 - c0) 2^-F S over the interval; the group results enter an fp32 register
          // (one rounding each).
          const double groups = std::ceil(double(c1 - c0) / double(p.group));
          err += s * S * (2.0 * double(c1 - c0) * u_acc + 2.0 * groups * u32);
          mag += s * S;
          ++adds;
        }
      }
      err += 2.0 * double(adds + 1) * u32 * mag;             // fp32 promotion adds and scale products
      bound[i * N + j] = err + u_out * (std::fabs(double(exact[i * N + j])) + err) * 2.0;
    }
  return bound;
}

}  // namespace fp8flow
