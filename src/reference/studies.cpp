#include "formats/splitmix64.hpp"
#include "reference/studies.hpp"

#include <fmt/format.h>

#include <bit>
#include <cmath>
#include <cstdlib>
#include <stdexcept>

#include "io/errors.hpp"

namespace fp8flow {

namespace {

std::vector<double> to_double(const std::vector<float>& v) { return {v.begin(), v.end()}; }

// splitmix64 (Steele, Lea, Flood 2014): the same generator as quant/distributions.cpp, so a seed means
// the same bits on every platform. `stream` separates the operands drawn from one seed.
struct SplitMix64 {
  std::uint64_t state;
  std::uint64_t next() { return splitmix64_next(state); }
};
SplitMix64 make_rng(std::uint64_t seed, std::uint64_t stream) {
  SplitMix64 r{seed ^ (0xD1B54A32D192ED03ull * (stream + 1))};
  r.next();
  return r;
}

// Ordered integer image of a float32: adjacent floats differ by 1, -0 and +0 both map to 0.
long long fp32_ordinal(float f) {
  const auto b = std::bit_cast<std::uint32_t>(f);
  const long long mag = b & 0x7FFFFFFFu;
  return (b & 0x80000000u) ? -mag : mag;
}

}  // namespace

// ---- transpose_study -----------------------------------------------------------------------------

TransposeStudyResult transpose_study(const TransposeStudyConfig& c) {
  if (c.rows == 0 || c.cols == 0) throw InputError(fmt::format("transpose_study: empty shape [{}, {}]", c.rows, c.cols));
  InputTensor in;
  in.rows = c.rows;
  in.cols = c.cols;
  in.x = make_distribution(c.distribution, c.rows, c.cols, c.seed);
  in.truth = to_double(in.x);
  if (c.progress) c.progress(1);
  return transpose_study(c, in);
}

TransposeStudyResult transpose_study(const TransposeStudyConfig& c, const InputTensor& in) {
  if (in.rows == 0 || in.cols == 0)
    throw InputError(fmt::format("transpose_study: empty shape [{}, {}]", in.rows, in.cols));
  if (c.tile < 2) throw InputError(fmt::format("transpose_study: tile 1x{}: expected a width of at least 2", c.tile));
  check_row_groups(c.groups, in.rows);
  const std::vector<float>& x = in.x;

  TransposeStudyResult r;
  r.rowwise_recipe = QuantRecipe{Granularity{1, c.tile}, c.payload, ScaleRule::te_pow2};
  QuantParams p = default_params(ScaleRule::te_pow2);
  p.eps = c.eps;
  p.input = in.dtype;
  check_recipe(r.rowwise_recipe, p);
  std::size_t step = 1;
  auto done = [&] {
    if (c.progress) c.progress(++step);
  };
  const QuantizedTensor rowwise = quantize(x, in.rows, in.cols, r.rowwise_recipe, p, {}, c.threads);
  done();
  const QuantizedTensor naive = transpose_naive(rowwise, c.groups);
  done();
  const QuantizedTensor paper = transpose_paper_kernel(rowwise, c.groups, c.threads);
  done();
  const QuantizedTensor exact = transpose_exact(rowwise, c.groups, Rounding::rne, c.threads);
  done();
  const QuantizedTensor direct = transpose_direct(x, in.rows, in.cols, c.tile, *c.payload, p, c.groups);
  done();
  const std::vector<double> dq_row = to_double(dequantize(rowwise)), dq_direct = to_double(dequantize(direct)),
                            dq_exact = to_double(dequantize(exact));
  done();

  const std::pair<const char*, const QuantizedTensor*> copies[] = {
      {"rowwise", &rowwise}, {"naive", &naive}, {"paper_kernel", &paper}, {"exact", &exact}, {"direct", &direct}};
  for (const auto& [name, q] : copies) r.comparisons.push_back({name, "input", compare(in.truth, *q)});
  done();
  for (const auto& [name, q] : copies) r.comparisons.push_back({name, "direct", compare(dq_direct, *q)});
  done();
  r.comparisons.push_back({"naive", "exact", compare(dq_exact, naive)});        // double quantization
  r.comparisons.push_back({"exact", "rowwise", compare(dq_row, exact)});        // SAT underflow tail
  r.comparisons.push_back({"paper_kernel", "rowwise", compare(dq_row, paper)});
  done();
  r.paper_vs_exact = compare_paper_exact(rowwise, paper, exact);
  done();
  if (c.keep_tensors) {
    r.x = x;
    for (const auto& [name, q] : copies) r.tensors.emplace_back(name, *q);
  }
  return r;
}

std::uint64_t transpose_study_bytes(std::uint64_t rows, std::uint64_t cols) {
  // Per element: x 4 + truth 8 + five code copies 5 + dq_row/dq_direct/dq_exact 24 + a float32 dequantize in
  // flight 4 + compare()'s work arrays 16; scales are 1/128 of that. Measured peak RSS: see docs/hardening.md.
  constexpr std::uint64_t kCap = std::uint64_t(1) << 60;
  const std::uint64_t n = rows && cols > kCap / rows ? kCap : rows * cols;
  return n > kCap / 64 ? kCap : 64 * n + (std::uint64_t(32) << 20);
}

const Metrics& TransposeStudyResult::metrics(std::string_view method, std::string_view reference) const {
  for (const StudyComparison& c : comparisons)
    if (c.method == method && c.reference == reference) return c.metrics;
  throw std::out_of_range(fmt::format("transpose_study: no comparison of {} against {}", method, reference));
}

// ---- gemm_accum_study ----------------------------------------------------------------------------

std::vector<std::uint8_t> random_finite_codes(const FormatSpec& format, std::size_t count, std::uint64_t seed,
                                              std::uint64_t stream) {
  if (total_bits(format) > 8) throw InputError(fmt::format("random codes: format {} is wider than 8 bits", format.name));
  SplitMix64 rng = make_rng(seed, stream);
  const std::uint32_t mask = (1u << total_bits(format)) - 1u;
  std::vector<std::uint8_t> codes(count);
  for (auto& code : codes) {
    std::uint32_t v;
    do v = std::uint32_t(rng.next() >> 56) & mask;
    while (is_nan_code(format, v) || is_inf_code(format, v));
    code = static_cast<std::uint8_t>(v);
  }
  return codes;
}

long long ulp_log2_bin(float test, float exact) {
  const long long d = fp32_ordinal(test) - fp32_ordinal(exact);
  if (d == 0) return 0;
  const auto mag = static_cast<unsigned long long>(d < 0 ? -d : d);
  const long long bin = std::bit_width(mag);  // 2^(bin-1) <= |d| < 2^bin
  return d < 0 ? -bin : bin;
}

GemmAccumStudyResult gemm_accum_study(const GemmAccumStudyConfig& c) {
  if (c.m == 0 || c.n == 0 || c.k == 0)
    throw InputError(fmt::format("gemm_accum_study: empty shape m={} n={} k={}", c.m, c.n, c.k));
  if (c.scale_spread_log2 < 0 || c.scale_spread_log2 > 60)
    throw InputError(fmt::format("gemm_accum_study: scale_spread_log2 = {}: expected 0..60", c.scale_spread_log2));
  const std::vector<std::uint8_t> a_codes = random_finite_codes(*c.format, c.m * c.k, c.seed, 0);
  const std::vector<std::uint8_t> b_codes = random_finite_codes(*c.format, c.n * c.k, c.seed, 1);
  auto scales = [&](std::size_t rows, Granularity g, std::uint64_t stream) {
    SplitMix64 rng = make_rng(c.seed, stream);
    std::vector<float> s(make_tile_grid(rows, c.k, g, {}).size());
    const auto span = std::uint64_t(2 * c.scale_spread_log2 + 1);
    for (auto& v : s) v = std::ldexp(1.0f, int(rng.next() % span) - c.scale_spread_log2);
    return s;
  };
  const std::vector<float> a_scales = scales(c.m, c.a_gran, 2), b_scales = scales(c.n, c.b_gran, 3);
  const GemmOperand a{a_codes, c.m, c.k, c.format, a_scales, c.a_gran};
  const GemmOperand b{b_codes, c.n, c.k, c.format, b_scales, c.b_gran};
  check_gemm_operands(a, b);

  const std::vector<float> exact = gemm(a, b, AccumModel::exact, c.accum, c.threads);
  const std::vector<double> truth = to_double(exact);
  GemmAccumStudyResult r;
  for (const AccumModel m : c.models) {
    GemmAccumStudyResult::Model entry{m, {}, {}, {}};
    std::vector<float> out = m == AccumModel::exact ? exact : gemm(a, b, m, c.accum, c.threads);
    entry.vs_exact = compare(truth, to_double(out));
    for (std::size_t i = 0; i < out.size(); ++i) ++entry.ulp_log2_hist[ulp_log2_bin(out[i], exact[i])];
    if (c.keep_tensors) entry.out = std::move(out);
    r.models.push_back(std::move(entry));
  }
  if (c.keep_tensors) {
    r.a_codes = a_codes;
    r.b_codes = b_codes;
    r.a_scale_inv = a_scales;
    r.b_scale_inv = b_scales;
    r.exact_out = exact;
  }
  return r;
}

}  // namespace fp8flow
