// fp8flow transpose IN_PREFIX OUT_PREFIX --method naive|paper_kernel|exact [--groups g1,g2,...]
//                   [--round rne|rz|ru|rd|rna|stochastic] [--seed N]
#include <fmt/format.h>

#include "cli/commands.hpp"
#include "cli/limits.hpp"
#include "cli/usage.hpp"
#include "io/atomic_write.hpp"
#include "io/errors.hpp"
#include "quant/quant_io.hpp"
#include "quant/transpose.hpp"

namespace fp8flow::cli {

namespace {
struct TransposeArgs {
  std::string in, out, method, groups, rounding = "rne";
  std::uint64_t seed = 0;
};
}  // namespace

void add_transpose_command(CLI::App& app, const GlobalOptions& g) {
  auto a = std::make_shared<TransposeArgs>();
  auto* cmd = app.add_subcommand("transpose", "Column copy (Nx1, stored transposed) of a rowwise 1xN pow2 tensor");
  cmd->add_option("IN_PREFIX", a->in, "Rowwise quantized tensor (from quantize)")->required();
  cmd->add_option("OUT_PREFIX", a->out, "Writes OUT_PREFIX.codes.npy [cols, rows], .scale_inv.npy, .meta.json")
      ->required();
  cmd->add_option("--method", a->method, "naive, paper_kernel or exact")->required()->check(choice(parse_transpose_method));
  cmd->add_option("--groups", a->groups, "Expert group sizes along rows, e.g. 300,212 (default: one group)")
      ->check(choice([](const std::string& s) { return parse_size_list(s, "--groups"); }));
  cmd->add_option("--round", a->rounding,
                  "exact: rounding of the shifted values (rne, rz, ru, rd, rna, stochastic)")
      ->check(choice(parse_rounding));
  cmd->add_option("--seed", a->seed,
                  "exact --round stochastic: seed of the Philox stream; input element (r, c) draws counter "
                  "r * cols + c (default 0)");
  cmd->callback([a, &g] {
    const TransposeMethod m = parse_transpose_method(a->method);
    if (m != TransposeMethod::exact && (a->rounding == "stochastic" || a->seed != 0))
      throw UsageError(fmt::format("--round stochastic / --seed: only --method exact rounds (got --method {})",
                                   a->method));
    if (m == TransposeMethod::direct)
      throw UsageError("--method direct: needs the high-precision tensor; use `fp8flow quantize IN.npy OUT "
                       "--granularity 128x1` or `fp8flow transpose-study`");
    const Rounding rounding = parse_rounding(a->rounding);
    io::resolve_output(codes_path(a->out)), io::resolve_output(scales_path(a->out)), io::resolve_output(meta_path(a->out));
    // codes in and out, float32 scales both ways, the exact method's float copy.
    check_memory(g, fmt::format("transpose {}", a->in), 16 * npy_elements(codes_path(a->in).string()) + (std::uint64_t(64) << 20));
    const QuantizedTensor in = load_quantized(a->in);
    check_sat_input(in, a->in);
    const std::vector<std::size_t> groups = a->groups.empty() ? std::vector<std::size_t>{}
                                                              : parse_size_list(a->groups, "--groups");
    check_row_groups(groups, in.rows);
    QuantizedTensor out = m == TransposeMethod::naive          ? transpose_naive(in, groups)
                          : m == TransposeMethod::paper_kernel ? transpose_paper_kernel(in, groups, g.threads)
                                                               : transpose_exact(in, groups, rounding, g.threads, a->seed);
    out.params.scale_format = ScaleFormat::fp32;  // an all-padding tile has scale 0.0, not storable as ue8m0
    save_quantized(a->out, out);
    if (!g.quiet)
      fmt::print("{} [{}, {}] --{}--> {}: codes [{}, {}], column scale_inv [{}, {}]{}{}\n", a->in, in.rows, in.cols,
                 to_string(m), a->out, out.cols, out.rows, out.scale_rows, out.scale_cols,
                 groups.empty() ? "" : fmt::format(", {} groups", groups.size()),
                 rounding == Rounding::stochastic ? fmt::format(", stochastic seed {}", a->seed) : "");
  });
}

}  // namespace fp8flow::cli
