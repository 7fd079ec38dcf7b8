// fp8flow validate --gpu [--op quantize|transpose|dequantize|all] [--shape R,C] [--dist D|adversarial]
//                  [--input X.npy] [--granularity 1x128|128x128|all] [--rule te_fp32|te_pow2|paper_swiglu|all]
//                  [--groups g1,...] [--seed S] [--eps E] [-o report.h5] [--json]
// (--op gemm: validate_gemm.cpp, --op dispatch: validate_dispatch.cpp; -o works for every --op)
// Runs the CUDA kernels (src/cuda) and the CPU golden model on the same inputs and compares codes and scales
// bit for bit; prints the first mismatch (coordinate, tile, input hex, both outputs) and the total count.
// Exit status 1 on any mismatch, and where the build has no CUDA or the machine no GPU.
#include <fmt/format.h>

#include <bit>
#include <cstdlib>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli/commands.hpp"
#include "cli/usage.hpp"
#include "cli/validate_dispatch.hpp"
#include "cli/validate_gemm.hpp"
#include "io/errors.hpp"
#include "io/results_store.hpp"
#include "quant/distributions.hpp"
#include "quant/quant_io.hpp"
#include "quant/quantize.hpp"
#include "quant/transpose.hpp"
#include "reference/gemm.hpp"
#include "reference/moe_layer.hpp"
#ifdef FP8FLOW_HAVE_CUDA
#include "cuda/format_kernels.hpp"
#include "cuda/format_validation.hpp"
#include "cuda/gpu_validate.hpp"
#include "io/gpu_validation_record.hpp"
#include "io/npy.hpp"
#endif

namespace fp8flow::cli {

namespace {
struct ValidateArgs {
  bool gpu = false, json = false;
  std::string op = "all", shape = "1024,4096", dist = "activations", groups, accum = "auto", algo = "auto", algo_table;
  bool shape_set = false;
  std::uint64_t seed = 1;
  float eps = 0.0f;
  std::string granularity = "all", rule = "all", input, out;  // quantize: 1x128|128x128, te_*|paper_swiglu
  std::string preset = "tiny";                                 // dispatch: MoE preset, tokens, ranks
  std::size_t tokens = 0;
  int ranks = 0;
};

#ifdef FP8FLOW_HAVE_CUDA
nlohmann::json to_json(const cuda::GpuValidation& v) {
  nlohmann::json j{{"op", v.op}, {"input", v.input}, {"rows", v.rows}, {"cols", v.cols}, {"groups", v.groups},
                   {"oracle", v.oracle}, {"bit_exact", v.ok()}, {"mismatches", v.mismatches()},
                   {"gpu_ms", v.gpu_ms}, {"cpu_ms", v.cpu_ms}};
  for (const auto& p : v.parts)
    j["parts"].push_back({{"what", p.what}, {"compared", p.compared}, {"mismatches", p.mismatches},
                          {"first_mismatch", p.first_mismatch}});
  return j;
}

int run_gpu(const ValidateArgs& a, const GlobalOptions& g) {
  // Quantize options first, so that bad values fail the same way with or without a GPU.
  std::vector<Granularity> grans;
  for (const Granularity t : {k1x128, k128x128})
    if (a.granularity == "all" || a.granularity == to_string(t)) grans.push_back(t);
  if (grans.empty())
    throw UsageError(fmt::format("--granularity '{}': expected 1x128, 128x128 or all", a.granularity));
  std::vector<ScaleRule> rules;
  for (const ScaleRule r : {ScaleRule::te_pow2, ScaleRule::te_fp32, ScaleRule::paper_swiglu})
    if (a.rule == "all" || a.rule == to_string(r)) rules.push_back(r);
  if (rules.empty())
    throw UsageError(fmt::format("--rule '{}': expected te_fp32, te_pow2, paper_swiglu or all", a.rule));
  // The input: a user .npy (2-D float32), the adversarial tensor, or a synthetic distribution.
  std::size_t rows = 0, cols = 0;
  std::vector<float> x;
  std::string input_desc;
  if (!a.input.empty()) {
    if (a.shape_set) throw UsageError(fmt::format("--input {}: the shape comes from the file; drop --shape", a.input));
    // float32, or bfloat16 / float16 (exact in float32; ml_dtypes bfloat16 arrays included)
    InputTensor in = read_input_npy(a.input);
    if (in.dtype_name == "float64")
      throw InputError(fmt::format("--input {}: expected a 2-D float32, bfloat16 or float16 array, got float64 (the GPU "
                                   "kernels read float32; convert it first)",
                                   a.input));
    rows = in.rows;
    cols = in.cols;
    x = std::move(in.x);
    input_desc = a.input;
  } else {
    const auto shape = as_usage([&] { return parse_size_list(a.shape, "--shape"); });
    if (a.dist != "adversarial") as_usage([&] { return parse_distribution(a.dist); });
    if (shape.size() != 2 || shape[0] == 0 || shape[1] == 0)
      throw UsageError(fmt::format("--shape '{}': expected R,C with R, C > 0, e.g. 1024,4096", a.shape));
    rows = shape[0];
    cols = shape[1];
    if (a.dist == "adversarial") x = cuda::adversarial_tensor(rows, cols, a.seed, false);
    else x = make_distribution(parse_distribution(a.dist), rows, cols, a.seed);
    input_desc = fmt::format("{} seed {}", a.dist, a.seed);
  }
  const std::vector<std::size_t> groups = a.groups.empty() ? std::vector<std::size_t>{}
                                                           : as_usage([&] { return parse_size_list(a.groups, "--groups"); });
  as_usage([&] { check_row_groups(groups, rows); });
  if (a.op != "all" && a.op != "quantize" && a.op != "transpose" && a.op != "dequantize")
    throw UsageError(fmt::format("--op '{}': expected quantize, transpose, dequantize, gemm or all", a.op));
  if (cuda::device_count() == 0) {
    fmt::print(stderr, "fp8flow validate: no CUDA device visible on this machine; nothing validated\n");
    return 1;
  }
  std::vector<float> xb(x.size());  // the same values rounded to bf16 (RNE), the GPU benchmark's input type
  for (std::size_t i = 0; i < x.size(); ++i) {
    std::uint32_t b = std::bit_cast<std::uint32_t>(x[i]);
    b = (b & 0x7F800000u) == 0x7F800000u ? (b & 0xFFFF0000u) | ((b & 0xFFFFu) ? 0x00400000u : 0u)
                                         : (b + 0x7FFFu + ((b >> 16) & 1u)) & 0xFFFF0000u;
    xb[i] = std::bit_cast<float>(b);
  }
  std::vector<cuda::GpuValidation> results;
  const bool all = a.op == "all";
  if (all || a.op == "quantize") {
    // adversarial: a bf16 tensor of its own (bf16 neighbours of the 448 * 2^j boundaries); else RNE of x.
    const std::vector<float> xb_adv = a.dist == "adversarial" && a.input.empty()
                                          ? cuda::adversarial_tensor(rows, cols, a.seed, true) : std::vector<float>{};
    for (const Granularity t : grans)
      for (const ScaleRule r : rules)
        for (const bool bf16 : {false, true}) {
          const std::vector<float>& in = bf16 ? (xb_adv.empty() ? xb : xb_adv) : x;
          const auto spec = [&](cuda::QuantKernel k) {
            return cuda::QuantSpec{bf16 ? cuda::QuantInput::bf16 : cuda::QuantInput::f32, t, r, a.eps, k};
          };
          results.push_back(cuda::validate_quantize_gpu(in, rows, cols, spec(cuda::QuantKernel::v2), groups));
          results.push_back(cuda::validate_quantize_gpu(in, rows, cols, spec(cuda::QuantKernel::v1), groups));
        }
  }
  if (all || a.op == "transpose" || a.op == "dequantize") {
    QuantParams p = default_params(ScaleRule::te_pow2);
    p.eps = a.eps;
    const QuantizedTensor rowwise = quantize(x, rows, cols, QuantRecipe{k1x128, &e4m3, ScaleRule::te_pow2}, p, {},
                                             g.threads);
    if (all || a.op == "transpose")
      for (const auto m : {TransposeMethod::paper_kernel, TransposeMethod::exact, TransposeMethod::naive})
        results.push_back(cuda::validate_transpose_gpu(rowwise, groups, m));
    if (all || a.op == "dequantize") results.push_back(cuda::validate_dequantize_gpu(rowwise));
  }
  std::size_t bad = 0;
  for (auto& r : results) {
    bad += r.ok() ? 0 : 1;
    r.input = input_desc;
  }
  std::string stored;
  if (!a.out.empty()) {  // the HDF5 results store: one run of kind gpu_validation
    io::RunRecord rec = io::gpu_validation_record(
        nlohmann::json{{"op", a.op}, {"granularity", a.granularity}, {"rule", a.rule}, {"input", input_desc},
                       {"shape", std::vector<std::size_t>{rows, cols}}, {"groups", groups}, {"eps", double(a.eps)},
                       {"seed", std::int64_t(a.seed)}, {"gpu", cuda::gpu_name()}, {"build", io::Provenance::of_this_build().git_commit}},
        results);
    stored = io::store_gpu_validation(a.out, std::move(rec));
  }
  if (a.json) {
    nlohmann::json j{{"gpu", cuda::gpu_name()}, {"dist", a.dist}, {"seed", a.seed}, {"eps", a.eps},
                     {"all_bit_exact", bad == 0}};
    for (const auto& r : results) j["results"].push_back(to_json(r));
    if (!stored.empty()) j["report"] = stored;
    fmt::print("{}\n", j.dump(2));
  } else {
    fmt::print("GPU: {}; input {} [{}, {}]\n", cuda::gpu_name(), input_desc, rows, cols);
    for (const auto& r : results) fmt::print("{}", cuda::to_text(r));
    fmt::print("{} of {} kernels bit-exact\n", results.size() - bad, results.size());
    if (!stored.empty()) fmt::print("report: {}\n", stored);
  }
  return bad ? 1 : 0;
}
#endif
}  // namespace

void add_validate_command(CLI::App& app, const GlobalOptions& g) {
  auto a = std::make_shared<ValidateArgs>();
  auto* cmd = app.add_subcommand("validate", "Check the CUDA kernels bit for bit against the CPU golden model");
  cmd->add_flag("--gpu", a->gpu, "Run the GPU kernels (required: the only validation target so far)");
  cmd->add_option("--op", a->op, "quantize, transpose, dequantize, gemm, dispatch or all (all: not gemm, dispatch)")
      ->check(CLI::IsMember({"quantize", "transpose", "dequantize", "gemm", "dispatch", "all"}));
  cmd->add_option("--accum", a->accum, "--op gemm: CPU model, auto (h100 / h100_fast per fast accumulation) or one of " +
                  std::string(kAccumModelNames))
      ->check(choice([](const std::string& s) { return s == "auto" ? AccumModel::h100 : parse_accum_model(s); }));
  cmd->add_option("--algo", a->algo, "--op gemm: auto (cuBLASLt picks as torch._scaled_mm does; the model runs the "
                  "H100 table's algorithm) or none (split-K forced off)")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "none"}));
  cmd->add_option("--algo-table", a->algo_table, "--op gemm --algo auto: the H100 algorithm table (default: shipped)");
  cmd->add_option("--shape", a->shape, "R,C of the synthetic input (default 1024,4096); --op gemm: M,N,K "
                  "(default 512,512,4096)")->each([a](const std::string&) { a->shape_set = true; });
  cmd->add_option("--dist", a->dist, std::string("Input distribution: ") + std::string(kDistributionNames) +
                  ", adversarial (NaN, Inf, -0, subnormals, 448 boundaries, huge/tiny rows)")
      ->check(choice([](const std::string& s) { return s == "adversarial" ? Distribution{} : parse_distribution(s); }));
  cmd->add_option("--granularity", a->granularity, "--op quantize: 1x128 (rowwise + 128x1), 128x128 (+ transposed copy) "
                  "or all (default)");
  cmd->add_option("--rule", a->rule, "--op quantize: te_fp32, te_pow2, paper_swiglu or all (default)");
  cmd->add_option("--input", a->input, "A 2-D float32 .npy as the input instead of --dist/--shape");
  cmd->add_option("-o,--output", a->out, "Append the results as a gpu_validation run to this HDF5 store");
  cmd->add_option("--groups", a->groups, "Expert group sizes along rows, e.g. 300,724 (default: one group)");
  cmd->add_option("--seed", a->seed, "Input seed");
  cmd->add_option("--preset", a->preset, "--op dispatch: MoE preset (" + std::string(kPresetNames) + "; default tiny)")
      ->check(choice(preset_shape));
  cmd->add_option("--tokens", a->tokens, "--op dispatch: tokens (default: the preset's)");
  cmd->add_option("--ranks", a->ranks, "--op dispatch: expert-parallel ranks, one GPU each (default: every GPU)");
  cmd->add_option("--eps", a->eps, "te_* amax floor (0: TE default; 1e-10: FP8-Flow pre-dispatch)");
  cmd->add_flag("--json", a->json, "Print the report as JSON");
  cmd->callback([a, &g] {
    if (!a->gpu) throw UsageError("validate: pass --gpu (GPU kernels against the CPU golden model)");
    // A bad -o fails now, not after minutes on the GPU: absent, or an fp8flow store this build can extend.
    if (!a->out.empty()) io::existing_runs(a->out);
    if (a->op == "dispatch") {  // expert-parallel dispatch/combine over NCCL (validate_dispatch.cpp, docs/ep.md)
      const int rc = run_validate_dispatch(a->preset, a->tokens, a->ranks, a->seed, a->json, g.threads, a->out);
      if (rc != 0) std::exit(rc);
      return;
    }
    if (a->op == "gemm") {  // cuBLASLt FP8 GEMMs vs the fitted accumulation model (validate_gemm.cpp)
      const int rc = run_validate_gemm(a->shape_set ? a->shape : "", a->dist, a->seed, a->accum, a->json, g.threads,
                                     a->out, a->algo, a->algo_table);
      if (rc != 0) std::exit(rc);
      return;
    }
#ifdef FP8FLOW_HAVE_CUDA
    const int rc = run_gpu(*a, g);
    if (rc != 0) std::exit(rc);
#else
    (void)g;
    fmt::print(stderr, "fp8flow validate --gpu: this fp8flow was built without CUDA (no nvcc at configure time); "
                       "rebuild where /usr/local/cuda exists\n");
    std::exit(1);
#endif
  });
}

}  // namespace fp8flow::cli
