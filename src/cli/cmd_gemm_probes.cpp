// fp8flow gemm-probes --gpu -o DIR [--cases a,b,...] [--no-bf16]
//   Runs the accumulation probe suite through cuBLASLt on the GPU and records every output's bits
//   (DIR/gemm_probes.json + DIR/gemm_probes_out.npy; docs/gpu.md "Accumulation probes").
// fp8flow gemm-probes --check DIR [--accum auto|MODEL] [--acc-bits F --group G --promote-interval N ...]
//   CPU only: compares the recorded GPU outputs with a CPU accumulation model, bit for bit, per run
//   (auto: h100 for fast accumulation off, h100_fast for on; other models take the run's fast_accum).
// fp8flow gemm-probes --list
//   Lists the probe cases and what each probes.
#include <fmt/format.h>

#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <memory>
#include <sstream>

#include "cli/usage.hpp"
#include "cli/commands.hpp"
#include "io/errors.hpp"
#include "reference/gemm.hpp"
#include "reference/gemm_probes.hpp"
#ifdef FP8FLOW_HAVE_CUDA
#include "cuda/format_kernels.hpp"
#include "cuda/gemm_probe_runner.hpp"
#endif

namespace fp8flow::cli {

namespace {
struct ProbeArgs {
  bool gpu = false, list = false, no_bf16 = false, json = false;
  std::string out, cases, check, accum = "auto";
  AccumParams params;
};
std::vector<std::string> split_names(const std::string& s) {
  std::vector<std::string> v;
  std::stringstream ss(s);
  for (std::string t; std::getline(ss, t, ',');)
    if (!t.empty()) v.push_back(t);
  return v;
}
}  // namespace

void add_gemm_probes_command(CLI::App& app, const GlobalOptions& g) {
  auto a = std::make_shared<ProbeArgs>();
  auto* cmd = app.add_subcommand("gemm-probes", "FP8 GEMM accumulation probes: run them through cuBLASLt (--gpu) "
                                                "or list them");
  cmd->add_flag("--gpu", a->gpu, "Run the probes on the GPU through cuBLASLt and record the outputs");
  cmd->add_option("-o,--out", a->out, "Output directory (gemm_probes.json, gemm_probes_out.npy)");
  cmd->add_option("--cases", a->cases, "Comma-separated case names (default: all; see --list)");
  cmd->add_flag("--no-bf16", a->no_bf16, "Skip the bf16-output runs");
  cmd->add_flag("--list", a->list, "List the probe cases");
  cmd->add_option("--check", a->check, "Directory of recorded probe outputs to compare with a CPU model");
  cmd->add_option("--accum", a->accum, "--check: auto (h100 / h100_fast) or a model: " + std::string(kAccumModelNames))
      ->check(choice([](const std::string& s) { return s == "auto" ? AccumModel::h100 : parse_accum_model(s); }));
  cmd->add_option("--acc-bits", a->params.acc_fraction_bits, "--check: accumulator fraction bits");
  cmd->add_option("--group", a->params.group, "--check: products per aligned group");
  cmd->add_option("--promote-interval", a->params.promote_interval, "--check: N_C");
  cmd->add_flag("--acc-outside", [a](std::int64_t) { a->params.acc_in_alignment = false; },
                "--check: the accumulator does not join the alignment");
  cmd->add_flag("--round-terms", a->params.round_terms, "--check: aligned terms rounded (RNE), not truncated");
  cmd->add_flag("--acc-rn", a->params.acc_round_nearest, "--check: group result into fp32 by RN, not RZ");
  cmd->add_flag("--truncate-result", a->params.truncate_result,
                "--check: group result truncated to --acc-bits below its leading bit");
  cmd->add_flag("--align-exponent-sum", a->params.align_exponent_sum,
                "--check: products aligned by the sum of their operands' exponents");
  cmd->add_flag("--json", a->json, "--check: print per-run results as JSON");
  cmd->callback([a, &g] {
    const auto names = a->cases.empty() ? gemm_probe_names() : split_names(a->cases);
    if (a->list) {
      for (const auto& n : names) {
        const auto c = make_gemm_probe(n);
        fmt::print("{:<20} {:>5} x {:>3} x {:>5}  {:<10} {}\n", n, c.m, c.n, c.k, c.family, c.what);
      }
      return;
    }
    if (!a->check.empty()) {
      namespace fs = std::filesystem;
      const bool autom = a->accum == "auto";
      const AccumModel m = autom ? AccumModel::h100 : parse_accum_model(a->accum);
      const ProbeModelFn fn = [&](bool fast, std::string_view) {
        if (autom) return std::pair{fast ? AccumModel::h100_fast : AccumModel::h100, AccumParams{}};
        AccumParams p = a->params;
        p.fast_accum = fast;
        return std::pair{m, p};
      };
      const auto rows = check_gemm_probes(fs::path(a->check) / "gemm_probes.json",
                                          fs::path(a->check) / "gemm_probes_out.npy", fn,
                                          a->cases.empty() ? std::vector<std::string>{} : names, g.threads);
      std::size_t cmp = 0, ex = 0;
      nlohmann::json j;
      for (const auto& r : rows) {
        cmp += r.compared;
        ex += r.bit_exact;
        if (a->json) {
          j["runs"].push_back({{"case", r.case_name}, {"scaling", r.scaling}, {"fast_accum", r.fast_accum},
                               {"out", r.out}, {"compared", r.compared}, {"bit_exact", r.bit_exact},
                               {"first_mismatch", r.first_mismatch}});
        } else {
          fmt::print("{:<20} {:<14} fast {} {:<4} {:>7} / {:>7} bit-exact {:8.4f}%  {}\n", r.case_name, r.scaling,
                     r.fast_accum ? 1 : 0, r.out, r.bit_exact, r.compared, 100.0 * double(r.bit_exact) / double(r.compared),
                     r.first_mismatch);
        }
      }
      if (a->json) {
        j["bit_exact"] = ex;
        j["compared"] = cmp;
        fmt::print("{}\n", j.dump(1));
      } else {
        fmt::print("total: {} of {} outputs bit-exact ({:.4f}%)\n", ex, cmp, 100.0 * double(ex) / double(std::max<std::size_t>(cmp, 1)));
      }
      return;
    }
    if (!a->gpu) throw UsageError("gemm-probes: pass --gpu -o DIR to run the probes, --check DIR, or --list");
    if (a->out.empty()) throw UsageError("gemm-probes --gpu: pass -o DIR");
    as_usage([&] {  // unknown names fail before the GPU starts (exit 2)
      for (const auto& n : names) (void)make_gemm_probe(n);
    });
#ifdef FP8FLOW_HAVE_CUDA
    if (cuda::device_count() == 0) {
      fmt::print(stderr, "fp8flow gemm-probes: no CUDA device visible on this machine\n");
      std::exit(1);
    }
    const int refused = cuda::run_gemm_probes({a->out, a->cases.empty() ? std::vector<std::string>{} : names,
                                               !a->no_bf16, g.quiet});
    fmt::print("gemm-probes: {} runs refused by cuBLASLt (see gemm_probes.json)\n", refused);
#else
    (void)g;
    fmt::print(stderr, "fp8flow gemm-probes --gpu: this fp8flow was built without CUDA\n");
    std::exit(1);
#endif
  });
}

}  // namespace fp8flow::cli
