// fp8flow validate --gpu [--op quantize|transpose|dequantize|all] [--shape R,C] [--dist D] [--groups g1,...]
//                  [--seed S] [--eps E] [--json]
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
#include "io/errors.hpp"
#include "quant/distributions.hpp"
#include "quant/quant_io.hpp"
#include "quant/quantize.hpp"
#include "quant/transpose.hpp"
#ifdef FP8FLOW_HAVE_CUDA
#include "cuda/format_kernels.hpp"
#include "cuda/format_validation.hpp"
#include "cuda/gpu_validate.hpp"
#endif

namespace fp8flow::cli {

namespace {
struct ValidateArgs {
  bool gpu = false, json = false;
  std::string op = "all", shape = "1024,4096", dist = "activations", groups;
  std::uint64_t seed = 1;
  float eps = 0.0f;
};

#ifdef FP8FLOW_HAVE_CUDA
nlohmann::json to_json(const cuda::GpuValidation& v) {
  nlohmann::json j{{"op", v.op}, {"rows", v.rows}, {"cols", v.cols}, {"groups", v.groups}, {"oracle", v.oracle},
                   {"bit_exact", v.ok()}, {"mismatches", v.mismatches()}};
  for (const auto& p : v.parts)
    j["parts"].push_back({{"what", p.what}, {"compared", p.compared}, {"mismatches", p.mismatches},
                          {"first_mismatch", p.first_mismatch}});
  return j;
}

int run_gpu(const ValidateArgs& a, const GlobalOptions& g) {
  if (cuda::device_count() == 0) {
    fmt::print(stderr, "fp8flow validate: no CUDA device visible on this machine; nothing validated\n");
    return 1;
  }
  const auto shape = parse_size_list(a.shape, "--shape");
  if (shape.size() != 2 || shape[0] == 0 || shape[1] == 0)
    throw InputError(fmt::format("--shape '{}': expected R,C with R, C > 0, e.g. 1024,4096", a.shape));
  const std::size_t rows = shape[0], cols = shape[1];
  const std::vector<std::size_t> groups = a.groups.empty() ? std::vector<std::size_t>{}
                                                           : parse_size_list(a.groups, "--groups");
  check_row_groups(groups, rows);
  if (a.op != "all" && a.op != "quantize" && a.op != "transpose" && a.op != "dequantize")
    throw InputError(fmt::format("--op '{}': expected quantize, transpose, dequantize or all (gemm: not yet)", a.op));
  const Distribution d = parse_distribution(a.dist);
  const std::vector<float> x = make_distribution(d, rows, cols, a.seed);
  std::vector<float> xb(x.size());  // the same values rounded to bf16 (RNE), the GPU benchmark's input type
  for (std::size_t i = 0; i < x.size(); ++i) {
    std::uint32_t b = std::bit_cast<std::uint32_t>(x[i]);
    b = (b & 0x7F800000u) == 0x7F800000u ? (b & 0xFFFF0000u) | ((b & 0xFFFFu) ? 0x00400000u : 0u)
                                         : (b + 0x7FFFu + ((b >> 16) & 1u)) & 0xFFFF0000u;
    xb[i] = std::bit_cast<float>(b);
  }
  std::vector<cuda::GpuValidation> results;
  const bool all = a.op == "all";
  if (all || a.op == "quantize")
    for (const bool bf16 : {false, true})
      for (const bool pow2 : {true, false})
        results.push_back(cuda::validate_quantize_gpu(bf16 ? xb : x, rows, cols,
                                                      bf16 ? cuda::QuantInput::bf16 : cuda::QuantInput::f32,
                                                      cuda::TeQuantParams{pow2, a.eps}, groups));
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
  for (const auto& r : results) bad += r.ok() ? 0 : 1;
  if (a.json) {
    nlohmann::json j{{"gpu", cuda::gpu_name()}, {"dist", a.dist}, {"seed", a.seed}, {"eps", a.eps},
                     {"all_bit_exact", bad == 0}};
    for (const auto& r : results) j["results"].push_back(to_json(r));
    fmt::print("{}\n", j.dump(2));
  } else {
    fmt::print("GPU: {}; input {} [{}, {}] seed {}\n", cuda::gpu_name(), a.dist, rows, cols, a.seed);
    for (const auto& r : results) fmt::print("{}", cuda::to_text(r));
    fmt::print("{} of {} kernels bit-exact\n", results.size() - bad, results.size());
  }
  return bad ? 1 : 0;
}
#endif
}  // namespace

void add_validate_command(CLI::App& app, const GlobalOptions& g) {
  auto a = std::make_shared<ValidateArgs>();
  auto* cmd = app.add_subcommand("validate", "Check the CUDA kernels bit for bit against the CPU golden model");
  cmd->add_flag("--gpu", a->gpu, "Run the GPU kernels (required: the only validation target so far)");
  cmd->add_option("--op", a->op, "quantize, transpose, dequantize or all");
  cmd->add_option("--shape", a->shape, "R,C of the synthetic input (default 1024,4096)");
  cmd->add_option("--dist", a->dist, std::string("Input distribution: ") + std::string(kDistributionNames));
  cmd->add_option("--groups", a->groups, "Expert group sizes along rows, e.g. 300,724 (default: one group)");
  cmd->add_option("--seed", a->seed, "Input seed");
  cmd->add_option("--eps", a->eps, "te_* amax floor (0: TE default; 1e-10: FP8-Flow pre-dispatch)");
  cmd->add_flag("--json", a->json, "Print the report as JSON");
  cmd->callback([a, &g] {
    if (!a->gpu) throw InputError("validate: pass --gpu (GPU kernels against the CPU golden model)");
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
