#include "reference/gemm.hpp"

#include <fmt/format.h>

#include <cmath>
#include <limits>

#include "formats/batch.hpp"
#include "formats/convert.hpp"
#include "io/errors.hpp"
#include "reference/gemm_detail.hpp"

namespace fp8flow {

std::string_view to_string(AccumModel m) {
  switch (m) {
    case AccumModel::exact: return "exact";
    case AccumModel::fp32_seq: return "fp32_seq";
    case AccumModel::fp32_pairwise: return "fp32_pairwise";
    case AccumModel::promote: return "promote";
    case AccumModel::hopper_fast: return "hopper_fast";
  }
  return "?";
}

AccumModel parse_accum_model(std::string_view s) {
  for (AccumModel m : {AccumModel::exact, AccumModel::fp32_seq, AccumModel::fp32_pairwise, AccumModel::promote,
                       AccumModel::hopper_fast})
    if (to_string(m) == s) return m;
  throw InputError(fmt::format("accumulation model '{}': expected one of {}", s, kAccumModelNames));
}

namespace gemm_detail {

std::size_t block_width(const GemmOperand& x) { return x.gran.cols == 0 ? x.k : std::size_t(x.gran.cols); }

std::size_t scale_count(const GemmOperand& x) {
  const std::size_t gr = x.gran.rows == 0 ? x.rows : std::size_t(x.gran.rows);
  const std::size_t bw = block_width(x);
  return (gr == 0 ? 1 : (x.rows + gr - 1) / gr) * (bw == 0 ? 1 : (x.k + bw - 1) / bw);
}

float scale_at(const GemmOperand& x, std::size_t row, std::size_t k0) {
  const std::size_t gr = x.gran.rows == 0 ? x.rows : std::size_t(x.gran.rows);
  const std::size_t bw = block_width(x);
  const std::size_t cols = (x.k + bw - 1) / bw;
  return x.scale_inv[(row / gr) * cols + k0 / bw];
}

std::vector<float> decode_operand(const GemmOperand& x) {
  std::vector<float> v(x.codes.size());
  decode(*x.format, x.codes, v);
  return v;
}

// floor(log2|x|) for finite non-zero x.
int ilog2(double x) {
  int e = 0;
  std::frexp(x, &e);
  return e - 1;
}

double trunc_to(double x, double ulp) { return std::trunc(x / ulp) * ulp; }

// Round toward zero to float32 (the tensor core's accumulator register is fp32; its adder truncates).
float rz_to_float(double x) {
  float f = static_cast<float>(x);  // RN
  if (std::fabs(double(f)) > std::fabs(x)) f = std::nextafter(f, 0.0f);
  return f;
}

// Keep `bits` fraction bits after the leading one, truncating (a limited-precision accumulator).
double trunc_precision(double x, int bits) {
  if (x == 0 || !std::isfinite(x)) return x;
  return trunc_to(x, std::ldexp(1.0, ilog2(x) - bits));
}

float pairwise(const float* p, std::size_t n) {
  if (n == 1) return p[0];
  const std::size_t m = n / 2;
  return pairwise(p, m) + pairwise(p + m, n - m);
}

// The partial sum of one scale block's products under model m (not `exact`).
float block_partial(const float* p, std::size_t n, AccumModel m, const AccumParams& ap) {
  const std::size_t nc = std::size_t(ap.promote_interval);
  switch (m) {
    case AccumModel::fp32_seq: {
      float acc = 0.0f;
      for (std::size_t k = 0; k < n; ++k) acc = acc + p[k];
      return acc;
    }
    case AccumModel::fp32_pairwise: {
      float acc = 0.0f;
      for (std::size_t b = 0; b < n; b += nc) acc = acc + pairwise(p + b, std::min(nc, n - b));
      return acc;
    }
    case AccumModel::promote: {
      float partial = 0.0f;
      double limited = 0.0;
      for (std::size_t k = 0; k < n; ++k) {
        limited = trunc_precision(limited + double(p[k]), ap.acc_fraction_bits);  // exact add, then truncate
        if ((k + 1) % nc == 0 || k + 1 == n) {
          partial = partial + static_cast<float>(limited);
          limited = 0.0;
        }
      }
      return partial;
    }
    case AccumModel::hopper_fast: {
      float partial = 0.0f, acc = 0.0f;
      const std::size_t g = std::size_t(ap.group);
      for (std::size_t b = 0; b < n; b += g) {
        const std::size_t e = std::min(n, b + g);
        double maxabs = std::fabs(double(acc));
        bool finite = std::isfinite(acc);
        for (std::size_t k = b; k < e; ++k) {
          maxabs = std::max(maxabs, std::fabs(double(p[k])));
          finite = finite && std::isfinite(p[k]);
        }
        if (!finite) {  // Inf/NaN operands: IEEE propagation
          double s = acc;
          for (std::size_t k = b; k < e; ++k) s += p[k];
          acc = static_cast<float>(s);
        } else if (maxabs != 0.0) {
          const double ulp = std::ldexp(1.0, ilog2(maxabs) - ap.acc_fraction_bits);
          double s = trunc_to(acc, ulp);
          for (std::size_t k = b; k < e; ++k) s += trunc_to(p[k], ulp);  // exact: all multiples of ulp
          acc = rz_to_float(s);
        }
        const bool promote_now = !ap.fast_accum && ((e % nc) == 0 || e == n);
        if (promote_now) {
          partial = partial + acc;
          acc = 0.0f;
        }
      }
      return ap.fast_accum ? acc : partial;
    }
    case AccumModel::exact: break;
  }
  return std::numeric_limits<float>::quiet_NaN();
}

// The exact model for output (i, j): integer block sums, binary128 scale combination, one rounding.
float exact_output(const float* arow, const float* brow, const GemmOperand& a, const GemmOperand& b, std::size_t i,
                   std::size_t j, std::size_t bw) {
  // Products of two small-format values are exact in double; a block of them sums exactly in binary128
  // as long as the exponent spread fits its 113 bits, which holds for every <= 8-bit format.
  __float128 total = 0;
  for (std::size_t k0 = 0; k0 < a.k; k0 += bw) {
    const std::size_t k1 = std::min(a.k, k0 + bw);
    __float128 block = 0;
    for (std::size_t k = k0; k < k1; ++k) block += static_cast<__float128>(double(arow[k]) * double(brow[k]));
    total += block * (static_cast<__float128>(scale_at(a, i, k0)) * static_cast<__float128>(scale_at(b, j, k0)));
  }
  return static_cast<float>(total);
}

}  // namespace gemm_detail

void check_gemm_operands(const GemmOperand& a, const GemmOperand& b) {
  using namespace gemm_detail;
  for (const auto* x : {&a, &b}) {
    const char* name = x == &a ? "A" : "B";
    if (x->rows == 0 || x->k == 0) throw InputError(fmt::format("gemm: operand {} is empty", name));
    if (x->codes.size() != x->rows * x->k)
      throw InputError(fmt::format("gemm: operand {} has {} codes, expected {} x {}", name, x->codes.size(), x->rows,
                                   x->k));
    if (storage_bits(*x->format) != 8)
      throw InputError(fmt::format("gemm: operand {} format {} is not an 8-bit-or-less format", name, x->format->name));
    if (x->scale_inv.size() != scale_count(*x))
      throw InputError(fmt::format("gemm: operand {} has {} scales, expected {} for granularity {} on [{}, {}]", name,
                                   x->scale_inv.size(), scale_count(*x), to_string(x->gran), x->rows, x->k));
  }
  if (a.k != b.k) throw InputError(fmt::format("gemm: A has K = {} but B has K = {}", a.k, b.k));
  const std::size_t wa = block_width(a), wb = block_width(b);
  if (std::max(wa, wb) % std::min(wa, wb) != 0 && std::max(wa, wb) != a.k)
    throw InputError(fmt::format("gemm: scale blocks along K differ ({} for A, {} for B) and do not nest", wa, wb));
}

std::vector<float> gemm_golden(const GemmOperand& a, const GemmOperand& b, AccumModel m, const AccumParams& p) {
  using namespace gemm_detail;
  check_gemm_operands(a, b);
  check_accum_params(p);
  const auto av = decode_operand(a), bv = decode_operand(b);
  const std::size_t bw = std::min(block_width(a), block_width(b));
  std::vector<float> out(a.rows * b.rows);
  std::vector<float> prod(bw);
  for (std::size_t i = 0; i < a.rows; ++i)
    for (std::size_t j = 0; j < b.rows; ++j) {
      const float* ar = av.data() + i * a.k;
      const float* br = bv.data() + j * b.k;
      if (m == AccumModel::exact) {
        out[i * b.rows + j] = exact_output(ar, br, a, b, i, j, bw);
        continue;
      }
      float total = 0.0f;
      for (std::size_t k0 = 0; k0 < a.k; k0 += bw) {
        const std::size_t n = std::min(a.k, k0 + bw) - k0;
        for (std::size_t k = 0; k < n; ++k) prod[k] = ar[k0 + k] * br[k0 + k];  // exact for <= 8-bit formats
        const float partial = block_partial(prod.data(), n, m, p);
        const float s = scale_at(a, i, k0) * scale_at(b, j, k0);
        total = std::fma(partial, s, total);
      }
      out[i * b.rows + j] = total;
    }
  return out;
}

void check_accum_params(const AccumParams& p) {
  if (p.promote_interval < 1)
    throw InputError(fmt::format("gemm: promote_interval = {}: expected >= 1", p.promote_interval));
  if (p.acc_fraction_bits < 1 || p.acc_fraction_bits > 40)
    throw InputError(fmt::format("gemm: acc_fraction_bits = {}: expected 1..40", p.acc_fraction_bits));
  if (p.group < 1) throw InputError(fmt::format("gemm: group = {}: expected >= 1", p.group));
}

}  // namespace fp8flow
