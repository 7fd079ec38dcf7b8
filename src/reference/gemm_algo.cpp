#include "reference/gemm_algo.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>
#include <map>
#include <sstream>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "io/errors.hpp"
#include "reference/gemm_detail.hpp"

namespace fp8flow {

std::string_view to_string(SplitReduction r) {
  switch (r) {
    case SplitReduction::none: return "none";
    case SplitReduction::inplace: return "inplace";
    case SplitReduction::compute: return "compute";
    case SplitReduction::output: return "output";
  }
  return "?";
}

SplitReduction parse_split_reduction(std::string_view s) {
  for (auto r : {SplitReduction::none, SplitReduction::inplace, SplitReduction::compute, SplitReduction::output})
    if (to_string(r) == s) return r;
  throw InputError(fmt::format("--algo reduction '{}': expected none, inplace, compute or output", s));
}

SplitReduction split_reduction_from_cublas(int scheme) {
  switch (scheme) {
    case 0: return SplitReduction::none;
    case 1: return SplitReduction::inplace;
    case 2: return SplitReduction::compute;
    case 4: return SplitReduction::output;
    default: break;
  }
  throw InputError(fmt::format("cuBLASLt reduction scheme {}: expected 0, 1, 2 or 4", scheme));
}

std::string GemmAlgo::to_string() const {
  if (splitk <= 1) return "splitk=1";
  std::string s = fmt::format("splitk={},reduction={}", splitk, fp8flow::to_string(reduction));
  if (split_unit != 128) s += fmt::format(",unit={}", split_unit);
  if (!scale_per_split) s += ",scale=sum";
  return s;
}

GemmAlgo parse_gemm_algo(std::string_view text) {
  GemmAlgo g;
  if (text == "none" || text.empty()) return g;
  std::stringstream ss{std::string(text)};
  for (std::string field; std::getline(ss, field, ',');) {
    const auto eq = field.find('=');
    if (eq == std::string::npos)
      throw InputError(fmt::format("--algo '{}': field '{}' is not key=value (keys: splitk, reduction, unit, scale)",
                                   text, field));
    const std::string key = field.substr(0, eq), val = field.substr(eq + 1);
    auto integer = [&](int lo, int hi) {
      int v = 0;
      std::size_t used = 0;
      try {
        v = std::stoi(val, &used);
      } catch (const std::exception&) {
        used = 0;
      }
      if (used != val.size() || val.empty() || v < lo || v > hi)
        throw InputError(fmt::format("--algo {}={}: expected an integer in {}..{}", key, val, lo, hi));
      return v;
    };
    if (key == "splitk") g.splitk = integer(1, 1024);
    else if (key == "reduction") g.reduction = parse_split_reduction(val);
    else if (key == "unit") g.split_unit = integer(1, 1 << 20);
    else if (key == "scale") {
      if (val != "split" && val != "sum") throw InputError(fmt::format("--algo scale={}: expected split or sum", val));
      g.scale_per_split = val == "split";
    } else {
      throw InputError(fmt::format("--algo '{}': unknown key '{}' (keys: splitk, reduction, unit, scale)", text, key));
    }
  }
  if (g.splitk > 1 && g.reduction == SplitReduction::none)
    throw InputError(fmt::format("--algo '{}': splitk={} needs a reduction (inplace, compute, output)", text, g.splitk));
  return g;
}

std::vector<std::size_t> split_bounds(std::size_t K, const GemmAlgo& algo) {
  std::vector<std::size_t> b{0};
  if (algo.splitk <= 1) {
    b.push_back(K);
    return b;
  }
  const std::size_t unit = std::size_t(algo.split_unit);
  const std::size_t units = (K + unit - 1) / unit;
  const std::size_t per = (units + std::size_t(algo.splitk) - 1) / std::size_t(algo.splitk);
  for (std::size_t k = per * unit; k < K; k += per * unit) b.push_back(k);
  b.push_back(K);
  return b;
}

float round_to_bf16(float x) {
  if (std::isnan(x)) return x;
  std::uint32_t u = std::bit_cast<std::uint32_t>(x);
  u += 0x7FFFu + ((u >> 16) & 1u);
  return std::bit_cast<float>(u & 0xFFFF0000u);
}

// ---- the table ------------------------------------------------------------------------------------------

GemmAlgoTable::GemmAlgoTable(std::vector<GemmAlgoEntry> entries) : entries_(std::move(entries)) {
  for (const auto& e : entries_) ms_.push_back(e.m), ns_.push_back(e.n), ks_.push_back(e.k);
  for (auto* v : {&ms_, &ns_, &ks_}) {
    std::sort(v->begin(), v->end());
    v->erase(std::unique(v->begin(), v->end()), v->end());
  }
}

namespace {
std::size_t nearest_log2(const std::vector<std::size_t>& grid, std::size_t x) {
  std::size_t best = grid.front();
  double bd = std::numeric_limits<double>::infinity();
  for (std::size_t g : grid) {
    const double d = std::fabs(std::log2(double(g)) - std::log2(double(x)));
    if (d < bd || (d == bd && g > best)) bd = d, best = g;
  }
  return best;
}
}  // namespace

GemmAlgoTable::Lookup GemmAlgoTable::lookup(std::string_view scaling, bool fast_accum, bool bf16_out, std::size_t m,
                                            std::size_t n, std::size_t k) const {
  if (entries_.empty()) throw InputError("--algo auto: the algorithm table is empty");
  Lookup l;
  l.m = nearest_log2(ms_, m), l.n = nearest_log2(ns_, n), l.k = nearest_log2(ks_, k);
  l.exact = l.m == m && l.n == n && l.k == k;
  for (const auto& e : entries_)
    if (e.scaling == scaling && e.fast_accum == fast_accum && e.bf16_out == bf16_out && e.m == l.m && e.n == l.n &&
        e.k == l.k) {
      l.algo = e.algo;
      l.supported = e.supported;
      return l;
    }
  throw InputError(fmt::format("--algo auto: the algorithm table has no entry for scaling {}, fast accumulation {}, "
                               "{} output at M={} N={} K={}", scaling, fast_accum ? 1 : 0,
                               bf16_out ? "bf16" : "fp32", l.m, l.n, l.k));
}

// ---- the model ------------------------------------------------------------------------------------------

namespace {

struct Decoded {
  std::vector<float> v;  // [rows, K]
  std::vector<int> e;    // exponents (when the model needs them)
};

Decoded decode_rows(const GemmOperand& x, const std::vector<std::size_t>& rows, bool exps) {
  Decoded d;
  const std::size_t K = x.k;
  d.v.resize(rows.size() * K);
  std::vector<std::uint8_t> codes(rows.size() * K);
  for (std::size_t r = 0; r < rows.size(); ++r)
    std::copy_n(x.codes.begin() + std::ptrdiff_t(rows[r] * K), K, codes.begin() + std::ptrdiff_t(r * K));
  GemmOperand sub = x;
  sub.codes = codes;
  sub.rows = rows.size();
  d.v = gemm_detail::decode_operand(sub);
  if (exps) d.e = gemm_detail::operand_exponents(sub, d.v);
  return d;
}

// Output (i, j) (original indices; ar/br/ea/eb point at the decoded rows) under the algorithm.
float algo_output(const float* ar, const float* br, const int* ea, const int* eb, const GemmOperand& a,
                  const GemmOperand& b, std::size_t i, std::size_t j, AccumModel m, const AccumParams& p,
                  const GemmAlgo& algo, const std::vector<std::size_t>& bounds, bool bf16_out, float* prod,
                  int* esum) {
  using namespace gemm_detail;
  const std::size_t bw = std::min(block_width(a), block_width(b));
  const bool tensor = a.gran == kTensor && b.gran == kTensor;
  const int so = accum_preset_params(m, p).scale_order;
  float out = 0.0f;
  for (std::size_t s = 0; s + 1 < bounds.size(); ++s) {
    const std::size_t ks0 = bounds[s], ks1 = bounds[s + 1];
    float total = 0.0f;
    for (std::size_t k0 = ks0; k0 < ks1;) {
      const std::size_t k1 = std::min(ks1, (k0 / bw + 1) * bw);
      const std::size_t n = k1 - k0;
      for (std::size_t k = 0; k < n; ++k) prod[k] = ar[k0 + k] * br[k0 + k];
      if (ea)
        for (std::size_t k = 0; k < n; ++k) {
          const int x = ea[k0 + k], y = eb[k0 + k];
          esum[k] = (x == kNoExp || y == kNoExp) ? kNoExp : x + y;
        }
      const float partial = block_partial(prod, n, m, p, ea ? esum : nullptr);
      if (tensor && !algo.scale_per_split) total = total + partial;  // one block per split: total = partial
      else total = scale_add(partial, scale_at(a, i, k0), scale_at(b, j, k0), total, so, a, b);
      k0 = k1;
    }
    if (algo.reduction == SplitReduction::output && bf16_out) total = round_to_bf16(total);
    out = s == 0 ? total : out + total;
  }
  if (tensor && !algo.scale_per_split) out = out * (scale_at(a, i, 0) * scale_at(b, j, 0));
  return bf16_out ? round_to_bf16(out) : out;
}

}  // namespace

namespace {

// The rows `rows` of x restricted to k in [k0, k1) (k0, k1 on x's scale-block boundaries, or x tensor-scaled),
// with its scales as per-row 1x128 (a 128x128 operand's row takes its row block's scales) or tensor.
struct SubOperand {
  std::vector<std::uint8_t> codes;
  std::vector<float> scales;
  GemmOperand op;
};
SubOperand sub_operand(const GemmOperand& x, const std::vector<std::size_t>& rows, std::size_t k0, std::size_t k1,
                       bool unit_scales) {
  SubOperand s;
  const std::size_t n = k1 - k0;
  s.codes.resize(rows.size() * n);
  for (std::size_t r = 0; r < rows.size(); ++r)
    std::copy_n(x.codes.begin() + std::ptrdiff_t(rows[r] * x.k + k0), n, s.codes.begin() + std::ptrdiff_t(r * n));
  if (x.gran == kTensor) {
    s.scales = {unit_scales ? 1.0f : x.scale_inv[0]};
  } else {
    const std::size_t bwx = gemm_detail::block_width(x), nb = (n + bwx - 1) / bwx;
    s.scales.resize(rows.size() * nb);
    for (std::size_t r = 0; r < rows.size(); ++r)
      for (std::size_t b = 0; b < nb; ++b) s.scales[r * nb + b] = gemm_detail::scale_at(x, rows[r], k0 + b * bwx);
  }
  s.op = GemmOperand{s.codes, rows.size(), n, x.format, s.scales, x.gran == kTensor ? kTensor : Granularity{1, x.gran.cols}};
  return s;
}

}  // namespace

std::vector<float> gemm_algo_at(const GemmOperand& a, const GemmOperand& b, AccumModel m, const AccumParams& p,
                                const GemmAlgo& algo, bool bf16_out, const std::vector<std::size_t>& rows,
                                const std::vector<std::size_t>& cols, int threads) {
  using namespace gemm_detail;
  check_gemm_operands(a, b);
  check_accum_params(p);
  {  // The fast path: each split as a GEMM of the sampled rows over its K range (h100 / h100_fast).
    const bool tensor = a.gran == kTensor && b.gran == kTensor;
    const std::size_t bwb = std::min(block_width(a), block_width(b));
    const auto bounds = split_bounds(a.k, algo);
    bool aligned = true;
    for (std::size_t x : bounds) aligned = aligned && (tensor || x % bwb == 0 || x == a.k);
    if ((m == AccumModel::h100 || m == AccumModel::h100_fast) && aligned && !rows.empty() && !cols.empty()) {
      for (std::size_t r : rows)
        if (r >= a.rows) throw InputError(fmt::format("gemm: row {} outside A's {} rows", r, a.rows));
      for (std::size_t c : cols)
        if (c >= b.rows) throw InputError(fmt::format("gemm: column {} outside B's {} rows", c, b.rows));
      AccumParams q = accum_preset_params(m, p);
      q.scale_order = (a.gran == k1x128 && b.gran == k1x128) ? 1 : 0;
      const bool unit = tensor && !algo.scale_per_split;
      std::vector<float> out(rows.size() * cols.size(), 0.0f);
      for (std::size_t s = 0; s + 1 < bounds.size(); ++s) {
        const SubOperand sa = sub_operand(a, rows, bounds[s], bounds[s + 1], unit);
        const SubOperand sb = sub_operand(b, cols, bounds[s], bounds[s + 1], unit);
        auto part = gemm(sa.op, sb.op, AccumModel::hopper_fast, q, threads);
        for (std::size_t i = 0; i < out.size(); ++i) {
          float t = part[i];
          if (algo.reduction == SplitReduction::output && bf16_out) t = round_to_bf16(t);
          out[i] = s == 0 ? t : out[i] + t;
        }
      }
      for (std::size_t r = 0; r < rows.size(); ++r)
        for (std::size_t c = 0; c < cols.size(); ++c) {
          float& o = out[r * cols.size() + c];
          if (unit) o = o * (scale_at(a, rows[r], 0) * scale_at(b, cols[c], 0));
          if (bf16_out) o = round_to_bf16(o);
        }
      return out;
    }
  }
  if (m == AccumModel::exact && (algo.splitk > 1 || bf16_out))
    throw InputError("gemm: the exact model takes no split-K algorithm and no bf16 output");
  for (std::size_t r : rows)
    if (r >= a.rows) throw InputError(fmt::format("gemm: row {} outside A's {} rows", r, a.rows));
  for (std::size_t c : cols)
    if (c >= b.rows) throw InputError(fmt::format("gemm: column {} outside B's {} rows", c, b.rows));
  const bool ex = needs_exponents(m, p);
  const Decoded da = decode_rows(a, rows, ex), db = decode_rows(b, cols, ex);
  const std::size_t K = a.k;
  const auto bounds = split_bounds(K, algo);
  const std::size_t bw = std::min(block_width(a), block_width(b));
  std::vector<float> out(rows.size() * cols.size());
#ifdef _OPENMP
  const int t = threads > 0 ? threads : omp_get_max_threads();
#else
  const int t = 1;
  (void)threads;
#endif
#pragma omp parallel num_threads(t)
  {
    std::vector<float> prod(std::max(bw, K));
    std::vector<int> esum(ex ? std::max(bw, K) : 0);
#pragma omp for schedule(dynamic, 1)
    for (long long r = 0; r < static_cast<long long>(rows.size()); ++r)
      for (std::size_t c = 0; c < cols.size(); ++c) {
        const std::size_t ri = std::size_t(r);
        const float* ar = da.v.data() + ri * K;
        const float* br = db.v.data() + c * K;
        if (m == AccumModel::exact) {
          out[ri * cols.size() + c] = exact_output(ar, br, a, b, rows[ri], cols[c], bw);
          continue;
        }
        out[ri * cols.size() + c] =
            algo_output(ar, br, ex ? da.e.data() + ri * K : nullptr, ex ? db.e.data() + c * K : nullptr, a, b,
                        rows[ri], cols[c], m, p, algo, bounds, bf16_out, prod.data(), esum.data());
      }
  }
  return out;
}

std::vector<float> gemm_algo(const GemmOperand& a, const GemmOperand& b, AccumModel m, const AccumParams& p,
                             const GemmAlgo& algo, bool bf16_out, int threads) {
  if (algo.splitk <= 1) {  // the fast path, then the output rounding
    auto out = gemm(a, b, m, p, threads);
    if (bf16_out)
      for (auto& x : out) x = round_to_bf16(x);
    return out;
  }
  std::vector<std::size_t> rows(a.rows), cols(b.rows);
  for (std::size_t i = 0; i < rows.size(); ++i) rows[i] = i;
  for (std::size_t j = 0; j < cols.size(); ++j) cols[j] = j;
  return gemm_algo_at(a, b, m, p, algo, bf16_out, rows, cols, threads);
}

}  // namespace fp8flow
