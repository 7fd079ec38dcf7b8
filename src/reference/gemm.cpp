#include "reference/gemm.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

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
    case AccumModel::h100: return "h100";
    case AccumModel::h100_fast: return "h100_fast";
  }
  return "?";
}

AccumModel parse_accum_model(std::string_view s) {
  for (AccumModel m : {AccumModel::exact, AccumModel::fp32_seq, AccumModel::fp32_pairwise, AccumModel::promote,
                       AccumModel::hopper_fast, AccumModel::h100, AccumModel::h100_fast})
    if (to_string(m) == s) return m;
  throw InputError(fmt::format("accumulation model '{}': expected one of {}", s, kAccumModelNames));
}

AccumParams accum_preset_params(AccumModel m, const AccumParams& p) {
  if (m != AccumModel::h100 && m != AccumModel::h100_fast) return p;
  // Fitted to cuBLASLt 13 on an NVIDIA H100 80GB HBM3 by the accumulation probes (docs/gemm.md
  // "Fitted presets", data/gemm_probes_h100.*, tests/test_gemm_probes.cpp).
  AccumParams f;
  f.promote_interval = 128;    // spread_* probes: smalls survive outside the 128-product interval of L
  f.acc_fraction_bits = 13;    // spread_* (truncation of t to 2^(e-13)), random operands
  f.group = 32;                // group_scan: all of k-block [640, 672) aligned together (one wgmma k = 32)
  f.acc_in_alignment = true;   // group_scan, fast accumulation: s before the block is lost against +-L
  f.truncate_result = true;    // random operands: the aligned sum keeps 1 + 13 significant bits
  f.scale_order = 2;           // rand_* 1x128 x 1x128: RN(P * sa) then fma with sb matches more outputs
  f.align_exponent_sum = true; // rand_*: aligning by ea + eb (not the normalised product) fixes the rest
  f.fast_accum = m == AccumModel::h100_fast;
  return f;
}

std::string to_string(const GemmConfig& c) {
  const std::string name(to_string(c.accum));
  if (c.accum == AccumModel::h100 || c.accum == AccumModel::h100_fast || c.accum == AccumModel::exact)
    return name;  // these read no parameter
  const AccumParams d;
  const AccumParams& p = c.params;
  std::vector<std::string> parts;
  if (c.accum != AccumModel::fp32_seq && p.promote_interval != d.promote_interval)
    parts.push_back(fmt::format("promote_interval={}", p.promote_interval));
  if ((c.accum == AccumModel::promote || c.accum == AccumModel::hopper_fast) &&
      p.acc_fraction_bits != d.acc_fraction_bits)
    parts.push_back(fmt::format("acc_fraction_bits={}", p.acc_fraction_bits));
  if (c.accum == AccumModel::hopper_fast) {
    if (p.group != d.group) parts.push_back(fmt::format("group={}", p.group));
    if (p.fast_accum != d.fast_accum) parts.push_back(fmt::format("fast_accum={}", p.fast_accum));
    if (p.acc_in_alignment != d.acc_in_alignment) parts.push_back(fmt::format("acc_in_alignment={}", p.acc_in_alignment));
    if (p.round_terms != d.round_terms) parts.push_back(fmt::format("round_terms={}", p.round_terms));
    if (p.acc_round_nearest != d.acc_round_nearest)
      parts.push_back(fmt::format("acc_round_nearest={}", p.acc_round_nearest));
    if (p.truncate_result != d.truncate_result) parts.push_back(fmt::format("truncate_result={}", p.truncate_result));
    if (p.align_exponent_sum != d.align_exponent_sum)
      parts.push_back(fmt::format("align_exponent_sum={}", p.align_exponent_sum));
  }
  if (p.scale_order != d.scale_order) parts.push_back(fmt::format("scale_order={}", p.scale_order));
  if (parts.empty()) return name;
  return fmt::format("{}({})", name, fmt::join(parts, ", "));
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
std::vector<int> operand_exponents(const GemmOperand& x, const std::vector<float>& v) {
  std::vector<int> e(v.size());
  const int emin = 1 - x.format->bias;
  for (std::size_t i = 0; i < v.size(); ++i)
    e[i] = (v[i] == 0.0f || !std::isfinite(v[i])) ? kNoExp : std::max(ilog2(v[i]), emin);
  return e;
}

bool needs_exponents(AccumModel m, const AccumParams& p) {
  return (m == AccumModel::hopper_fast || m == AccumModel::h100 || m == AccumModel::h100_fast) &&
         accum_preset_params(m, p).align_exponent_sum;
}

float block_partial(const float* p, std::size_t n, AccumModel m, const AccumParams& ap, const int* esums) {
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
    case AccumModel::hopper_fast:
    case AccumModel::h100:
    case AccumModel::h100_fast: {
      const AccumParams q = accum_preset_params(m, ap);
      const std::size_t nci = std::size_t(q.promote_interval);
      float partial = 0.0f, acc = 0.0f;
      const std::size_t g = std::size_t(q.group);
      auto cut = [&](double x, double ulp) { return q.round_terms ? std::nearbyint(x / ulp) * ulp : trunc_to(x, ulp); };
      for (std::size_t b = 0; b < n; b += g) {
        const std::size_t e = std::min(n, b + g);
        // The alignment exponent: the largest among the accumulator's and the products' (their own, or
        // with align_exponent_sum the sum of their operands' exponents).
        int emax = (q.acc_in_alignment && acc != 0.0f && std::isfinite(acc)) ? ilog2(acc) : kNoExp;
        bool finite = std::isfinite(acc);
        for (std::size_t k = b; k < e; ++k) {
          finite = finite && std::isfinite(p[k]);
          if (p[k] == 0.0f || !std::isfinite(p[k])) continue;
          emax = std::max(emax, (q.align_exponent_sum && esums) ? esums[k] : ilog2(p[k]));
        }
        if (!finite) {  // Inf/NaN operands: IEEE propagation
          double s = acc;
          for (std::size_t k = b; k < e; ++k) s += p[k];
          acc = static_cast<float>(s);
        } else if (emax != kNoExp) {
          const double ulp = std::ldexp(1.0, emax - q.acc_fraction_bits);
          double s = q.acc_in_alignment ? cut(acc, ulp) : double(acc);
          for (std::size_t k = b; k < e; ++k) s += cut(p[k], ulp);  // exact: multiples of ulp (+ acc)
          if (q.truncate_result) s = trunc_precision(s, q.acc_fraction_bits);
          acc = q.acc_round_nearest ? static_cast<float>(s) : rz_to_float(s);
        }
        const bool promote_now = !q.fast_accum && ((e % nci) == 0 || e == n);
        if (promote_now) {
          partial = partial + acc;
          acc = 0.0f;
        }
      }
      return q.fast_accum ? acc : partial;
    }
    case AccumModel::exact: break;
  }
  return std::numeric_limits<float>::quiet_NaN();
}

float scale_add(float partial, float sa, float sb, float total, int order, const GemmOperand& a,
                const GemmOperand& b) {
  if (order == 2) order = (a.gran == k1x128 && b.gran == k1x128) ? 1 : 0;
  if (order == 1) return std::fma(partial * sa, sb, total);
  return std::fma(partial, sa * sb, total);
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
  const bool ex = needs_exponents(m, p);
  const std::vector<int> ea = ex ? operand_exponents(a, av) : std::vector<int>{},
                         eb = ex ? operand_exponents(b, bv) : std::vector<int>{};
  const std::size_t bw = std::min(block_width(a), block_width(b));
  std::vector<float> out(a.rows * b.rows);
  std::vector<float> prod(bw);
  std::vector<int> esum(ex ? bw : 0);
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
        if (ex)
          for (std::size_t k = 0; k < n; ++k) {
            const int x = ea[i * a.k + k0 + k], y = eb[j * b.k + k0 + k];
            esum[k] = (x == kNoExp || y == kNoExp) ? kNoExp : x + y;
          }
        const float partial = block_partial(prod.data(), n, m, p, ex ? esum.data() : nullptr);
        total = scale_add(partial, scale_at(a, i, k0), scale_at(b, j, k0), total,
                          accum_preset_params(m, p).scale_order, a, b);
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
  if (p.scale_order < 0 || p.scale_order > 2)
    throw InputError(fmt::format("gemm: scale_order = {}: expected 0, 1 or 2", p.scale_order));
}

}  // namespace fp8flow
