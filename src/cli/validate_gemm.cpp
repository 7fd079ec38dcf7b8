// fp8flow validate --gpu --op gemm [--shape M,N,K] [--dist D] [--seed S] [--accum auto|MODEL] [-o report.h5]
// [--algo auto|none] [--algo-table FILE] [--json] (see validate_gemm.hpp). -o appends the results as a
// gpu_validation run (io::gemm_validation_record).
#include "cli/usage.hpp"
#include "cli/validate_gemm.hpp"

#include <fmt/format.h>

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <vector>

#include "io/errors.hpp"
#include "io/gemm_algo_table.hpp"
#include "quant/distributions.hpp"
#include "quant/quantize.hpp"
#include "reference/gemm.hpp"
#ifdef FP8FLOW_HAVE_CUDA
#include "cuda/format_kernels.hpp"
#include "cuda/format_validation.hpp"
#include "cuda/gemm_validate.hpp"
#include "io/gpu_validation_record.hpp"
#endif

namespace fp8flow::cli {

int run_validate_gemm(const std::string& shape, const std::string& dist, std::uint64_t seed, const std::string& accum,
                      bool json, int threads, const std::string& output, const std::string& algo,
                      const std::string& algo_table) {
  std::size_t M = 512, N = 512, K = 4096;
  if (!shape.empty()) {
    std::vector<std::size_t> v;
    std::size_t pos = 0;
    try {
      while (pos <= shape.size()) {
        const std::size_t c = shape.find(',', pos);
        v.push_back(std::stoull(shape.substr(pos, c == std::string::npos ? std::string::npos : c - pos)));
        if (c == std::string::npos) break;
        pos = c + 1;
      }
    } catch (const std::exception&) {
      v.clear();
    }
    if (v.size() != 3 || !v[0] || !v[1] || !v[2] || v[2] % 16)
      throw UsageError(fmt::format("--shape '{}': --op gemm expects M,N,K with K a multiple of 16 (cuBLASLt FP8), "
                                   "e.g. 512,512,4096", shape));
    M = v[0], N = v[1], K = v[2];
  }
  const AccumModel model = accum == "auto" ? AccumModel::h100 : parse_accum_model(accum);
  const Distribution d = parse_distribution(dist);
  if (algo != "auto" && algo != "none")
    throw UsageError(fmt::format("--algo {}: --op gemm takes auto (cuBLASLt chooses as torch._scaled_mm does, the "
                                 "model runs the H100 table's algorithm) or none (split-K forced off)", algo));
  std::optional<GemmAlgoTable> table;
  if (algo == "auto") table = io::read_gemm_algo_table(algo_table.empty() ? io::default_gemm_algo_table_path() : algo_table);
#ifdef FP8FLOW_HAVE_CUDA
  if (cuda::device_count() == 0) {
    fmt::print(stderr, "fp8flow validate: no CUDA device visible on this machine; nothing validated\n");
    return 1;
  }
  // Exit status: a bound violation or a cuBLASLt error fails, and so does any bit mismatch against a fitted
  // preset (they reproduce every recorded H100 output); against other models only the bound counts.
  const bool preset = accum == "auto" || model == AccumModel::h100 || model == AccumModel::h100_fast;
  const std::vector<float> xa = make_distribution(d, M, K, seed), xb = make_distribution(d, N, K, seed + 1);
  std::vector<cuda::GemmValidation> results;
  std::vector<io::GemmValidationCase> cases;  // the same results with their configuration, for the store
  for (const auto sc : {cuda::GemmScaling::tensor, cuda::GemmScaling::blk_1x128_128x128,
                        cuda::GemmScaling::blk_1x128_1x128}) {
    const Granularity ga = sc == cuda::GemmScaling::tensor ? kTensor : k1x128;
    const Granularity gb = sc == cuda::GemmScaling::tensor ? kTensor
                           : sc == cuda::GemmScaling::blk_1x128_128x128 ? k128x128 : k1x128;
    const QuantParams qp = default_params(ScaleRule::te_fp32);
    const QuantizedTensor qa = quantize(xa, M, K, QuantRecipe{ga, &e4m3, ScaleRule::te_fp32}, qp, {}, threads);
    const QuantizedTensor qb = quantize(xb, N, K, QuantRecipe{gb, &e4m3, ScaleRule::te_fp32}, qp, {}, threads);
    const GemmOperand A{qa.codes, M, K, &e4m3, qa.scale_inv, ga}, B{qb.codes, N, K, &e4m3, qb.scale_inv, gb};
    std::vector<std::pair<cuda::CublasGemmConfig, AccumModel>> runs;
    for (const bool fast : {false, true}) {
      if ((model == AccumModel::h100 && accum != "auto" && fast) || (model == AccumModel::h100_fast && !fast)) continue;
      const AccumModel m = accum == "auto" ? (fast ? AccumModel::h100_fast : AccumModel::h100) : model;
      if (fast && sc != cuda::GemmScaling::tensor) continue;  // cuBLASLt 13 on sm_90: no such kernel
      for (const auto out : {cuda::GemmOutType::f32, cuda::GemmOutType::bf16}) {
        cuda::CublasGemmConfig cfg;
        cfg.torch_heuristic = table.has_value();
        cfg.fast_accum = fast;
        cfg.out = out;
        runs.emplace_back(cfg, m);
      }
    }
    std::vector<cuda::GemmValidation> got = cuda::validate_gemm_gpu(A, B, runs, threads, table ? &*table : nullptr);  // one per run, in order
    if (got.size() != runs.size())
      throw std::logic_error(fmt::format("validate_gemm_gpu returned {} results for {} runs", got.size(), runs.size()));
    for (std::size_t i = 0; i < got.size(); ++i) {
      const cuda::GemmValidation& r = got[i];
      io::GemmValidationCase c;
      static_cast<io::GemmComparison&>(c) = r;
      c.scaling = cuda::to_string(sc);
      c.fast_accum = runs[i].first.fast_accum;
      c.out = runs[i].first.out == cuda::GemmOutType::bf16 ? "bf16" : "f32";
      c.model = std::string(to_string(runs[i].second));
      c.bits_required = preset;
      c.m = M, c.n = N, c.k = K;
      cases.push_back(std::move(c));
      results.push_back(std::move(got[i]));
    }
  }
  std::size_t bad = 0, compared = 0, exact = 0;
  for (const auto& c : cases) {
    compared += c.compared;
    exact += c.bit_exact;
    bad += c.ok() ? 0 : 1;
  }
  const std::string input = fmt::format("{} seed {}", dist, seed);  // B: seed + 1
  std::string stored;
  if (!output.empty())  // the HDF5 results store: one run of kind gpu_validation
    stored = io::store_gpu_validation(
        output, io::gemm_validation_record(
                    nlohmann::json{{"op", "gemm"}, {"shape", std::vector<std::size_t>{M, N, K}}, {"dist", dist},
                                   {"seed", std::int64_t(seed)}, {"accum", accum}, {"algo", algo}, {"gpu", cuda::gpu_name()},
                                   {"build", io::Provenance::of_this_build().git_commit}},
                    input, cases));
  if (json) {
    nlohmann::json j{{"gpu", cuda::gpu_name()}, {"op", "gemm"}, {"shape", {M, N, K}}, {"dist", dist}, {"seed", seed},
                     {"accum", accum}, {"algo", algo}, {"bit_exact_fraction", double(exact) / double(compared)}, {"ok", bad == 0}};
    for (const auto& r : results)
      j["results"].push_back({{"label", r.label}, {"algo", r.algo}, {"compared", r.compared},
                              {"bit_exact", r.bit_exact}, {"first_mismatch", r.first_mismatch},
                              {"bound_violations", r.bound_violations}, {"worst_err_over_bound", r.worst_err_over_bound},
                              {"first_violation", r.first_violation}, {"error", r.error}});
    if (!stored.empty()) j["report"] = stored;
    fmt::print("{}\n", j.dump(2));
  } else {
    fmt::print("GPU: {}; gemm [{}, {}, {}] input {} seed {} (A te_fp32 per its scaling, B likewise)\n",
               cuda::gpu_name(), M, N, K, dist, seed);
    for (const auto& r : results) fmt::print("{}", cuda::to_text(r));
    fmt::print("{} of {} outputs bit-exact ({:.4f}%); {} of {} GEMMs failed ({})\n", exact, compared,
               100.0 * double(exact) / double(compared), bad, results.size(),
               preset ? "bit mismatch against the fitted preset, error bound violated or cuBLASLt error"
                      : "error bound violated or cuBLASLt error");
    if (!stored.empty()) fmt::print("report: {}\n", stored);
  }
  return bad ? 1 : 0;
#else
  (void)M, (void)N, (void)K, (void)model, (void)d, (void)json, (void)threads, (void)seed, (void)output, (void)table;
  fmt::print(stderr, "fp8flow validate --gpu: this fp8flow was built without CUDA\n");
  return 1;
#endif
}

}  // namespace fp8flow::cli
