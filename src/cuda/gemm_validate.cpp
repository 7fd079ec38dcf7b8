#include "cuda/gemm_validate.hpp"

#include <fmt/format.h>

#include <bit>
#include <cmath>
#include <cstring>

namespace fp8flow::cuda {

namespace {
std::uint16_t bf16_rne(float f) {
  std::uint32_t b = std::bit_cast<std::uint32_t>(f);
  if ((b & 0x7F800000u) == 0x7F800000u && (b & 0x7FFFFFu)) return std::uint16_t((b >> 16) | 0x40u);
  b += 0x7FFFu + ((b >> 16) & 1u);
  return std::uint16_t(b >> 16);
}
std::string hex_codes(std::span<const std::uint8_t> row, std::size_t k, std::size_t max) {
  std::string s;
  for (std::size_t i = 0; i < std::min(k, max); ++i) s += fmt::format("{:02X}", row[i]);
  return k > max ? s + fmt::format("... ({} codes)", k) : s;
}
}  // namespace

GemmValidation validate_gemm_gpu(const GemmOperand& a, const GemmOperand& b, const CublasGemmConfig& cfg,
                                 AccumModel model, int threads) {
  return validate_gemm_gpu(a, b, {{cfg, model}}, threads).front();
}

std::vector<GemmValidation> validate_gemm_gpu(const GemmOperand& a, const GemmOperand& b,
                                              const std::vector<std::pair<CublasGemmConfig, AccumModel>>& runs,
                                              int threads, const GemmAlgoTable* table) {
  const std::size_t M = a.rows, N = b.rows, K = a.k;
  const AccumParams p0{};
  const std::vector<float> exact = gemm(a, b, AccumModel::exact, p0, threads);
  std::vector<std::pair<std::string, std::vector<float>>> models;  // key: model, algorithm, output type
  std::vector<std::pair<std::pair<bool, bool>, std::vector<double>>> bounds;  // (fast, bf16) -> bound
  std::vector<GemmValidation> res;
  for (const auto& [cfg, model] : runs) {
    const bool bf16 = cfg.out == GemmOutType::bf16;
    GemmValidation v;
    v.label = fmt::format("{} fast_accum={} {} [{}, {}, {}] vs {}", to_string(scaling_of(a, b)), cfg.fast_accum ? 1 : 0,
                          bf16 ? "bf16" : "f32", M, N, K, fp8flow::to_string(model));
    CublasGemmResult g;
    try {
      g = gemm_cublaslt(a, b, cfg);
    } catch (const std::exception& e) {
      v.error = e.what();
      res.push_back(std::move(v));
      continue;
    }
    v.algo = g.algo.to_string();
    GemmAlgo algo;
    if (table) {
      const std::string sc = to_string(scaling_of(a, b));
      auto l = table->lookup(sc, cfg.fast_accum, bf16, M, N, K);
      if (!l.supported) l = table->lookup(sc, false, bf16, M, N, K);
      algo = l.algo;
      v.label += fmt::format(" algo auto -> {}{}", algo.to_string(),
                             l.exact ? "" : fmt::format(" (table point M={} N={} K={})", l.m, l.n, l.k));
      const int gsk = std::max(1, g.algo.splitk);
      if (gsk != algo.splitk || (gsk > 1 && split_reduction_from_cublas(g.algo.reduction) != algo.reduction))
        v.algo += fmt::format("; differs from the table's {}", algo.to_string());
    }
    const std::string key = fmt::format("{}/{}/{}", fp8flow::to_string(model), algo.to_string(), bf16 ? 1 : 0);
    const std::vector<float>* cpu = nullptr;
    for (const auto& [m, o] : models)
      if (m == key) cpu = &o;
    if (!cpu) cpu = &models.emplace_back(key, gemm_algo(a, b, model, p0, algo, bf16, threads)).second;
    // The bound uses the preset's accumulator parameters with this run's fast accumulation setting.
    AccumParams bp = accum_preset_params(model, p0);
    bp.fast_accum = cfg.fast_accum;
    const std::vector<double>* bound = nullptr;
    for (const auto& [key, bv] : bounds)
      if (key == std::pair{cfg.fast_accum, bf16}) bound = &bv;
    if (!bound) bound = &bounds.emplace_back(std::pair{cfg.fast_accum, bf16}, gemm_error_bound(a, b, bp, bf16, &exact)).second;
    v.compared = M * N;
    for (std::size_t i = 0; i < M; ++i)
      for (std::size_t j = 0; j < N; ++j) {
        const std::size_t o = i * N + j;
        const float c = (*cpu)[o];
        const std::uint32_t mb = bf16 ? bf16_rne(c) : std::bit_cast<std::uint32_t>(c);
        const std::uint32_t gb = bf16 ? g.bf16[o] : std::bit_cast<std::uint32_t>(g.out[o]);
        const float mv = bf16 ? std::bit_cast<float>(mb << 16) : c;
        if (mb == gb) {
          ++v.bit_exact;
        } else if (v.first_mismatch.empty()) {
          v.first_mismatch = fmt::format(
              "out[{}, {}]: model 0x{:0{}X} ({:.9g}), gpu 0x{:0{}X} ({:.9g}), exact {:.9g}; A row {}: {}; B row {}: {}",
              i, j, mb, bf16 ? 4 : 8, mv, gb, bf16 ? 4 : 8, g.out[o], exact[o], i,
              hex_codes(a.codes.subspan(i * K, K), K, 32), j, hex_codes(b.codes.subspan(j * K, K), K, 32));
        }
        const double err = std::fabs(double(g.out[o]) - double(exact[o]));
        const double r = (*bound)[o] > 0 ? err / (*bound)[o] : (err > 0 ? INFINITY : 0.0);
        v.worst_err_over_bound = std::max(v.worst_err_over_bound, r);
        if (!(err <= (*bound)[o]) && v.bound_violations++ == 0)
          v.first_violation = fmt::format("out[{}, {}]: gpu {:.9g}, exact {:.9g}, |err| {:.3g} > bound {:.3g}", i, j,
                                          g.out[o], exact[o], err, (*bound)[o]);
      }
    res.push_back(std::move(v));
  }
  return res;
}

std::string to_text(const GemmValidation& v) {
  if (!v.error.empty()) return fmt::format("{}: ERROR {}\n", v.label, v.error);
  std::string s = fmt::format("{}: {} of {} bit-exact ({:.4f}%), bound violations {} (worst |err|/bound {:.3g})\n",
                              v.label, v.bit_exact, v.compared, 100.0 * double(v.bit_exact) / double(v.compared),
                              v.bound_violations, v.worst_err_over_bound);
  s += fmt::format("  cuBLASLt {}\n", v.algo);
  if (!v.first_mismatch.empty()) s += "  first bit mismatch " + v.first_mismatch + "\n";
  if (!v.first_violation.empty()) s += "  first bound violation " + v.first_violation + "\n";
  return s;
}

}  // namespace fp8flow::cuda
