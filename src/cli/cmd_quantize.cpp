// fp8flow quantize IN.npy OUT_PREFIX ... and fp8flow dequantize PREFIX OUT.npy (docs/quantization.md).
#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "cli/commands.hpp"
#include "cli/limits.hpp"
#include "cli/usage.hpp"
#include "formats/convert.hpp"
#include "io/atomic_write.hpp"
#include "io/errors.hpp"
#include "io/npy.hpp"
#include "quant/metrics.hpp"
#include "quant/quant_io.hpp"

namespace fp8flow::cli {

namespace {
struct QuantizeArgs {
  std::string in, out, format = "e4m3", granularity = "1x128", rule = "te_pow2", scale_format = "fp32", overflow, from;
  float eps = 0.0f;
  bool eps_given = false, json = false;
};
}  // namespace

void add_quantize_command(CLI::App& app, const GlobalOptions& g) {
  auto a = std::make_shared<QuantizeArgs>();
  auto* cmd = app.add_subcommand("quantize", "Quantize a 2-D .npy tensor with a scale rule and granularity");
  cmd->add_option("IN", a->in, "Input .npy, 2-D: float16/bfloat16/float32/float64 (ml_dtypes bfloat16 too), or "
                                "codes with --from")->required();
  cmd->add_option("OUT_PREFIX", a->out, "Writes OUT_PREFIX.codes.npy, .scale_inv.npy, .meta.json (all three or none)")
      ->required();
  cmd->add_option("--from", a->from, "Format of raw input codes: bf16/f16 on uint16, an 8-bit format on uint8 or "
                                     "ml_dtypes float8 arrays")
      ->check(choice([](const std::string& s) { return &find_format(s); }));
  cmd->add_option("--format", a->format, "Element format (e4m3, e5m2, ...)")
      ->check(choice([](const std::string& s) { return &find_format(s); }));
  cmd->add_option("--granularity", a->granularity, "tensor, row, col, 1x128, 128x1, 128x128, 1x32, RxC")
      ->check(choice(parse_granularity));
  cmd->add_option("--scale", a->rule, "Scale rule: " + std::string(kScaleRuleNames))
      ->check(choice(parse_scale_rule));
  cmd->add_option("--scale-format", a->scale_format, "Scale storage: fp32 or ue8m0 (power-of-two rules only)")
      ->check(choice(parse_scale_format));
  cmd->add_option("--overflow", a->overflow, "Element cast overflow: satfinite or nonsat (default: the rule's source)")
      ->check(choice(parse_overflow));
  auto* eps = cmd->add_option("--eps", a->eps, "te_*: amax floor (default 0; FP8-Flow uses 1e-10)");
  cmd->add_flag("--json", a->json, "Print the metrics as JSON");
  cmd->callback([a, eps, &g] {
    QuantRecipe r;
    QuantParams p;
    as_usage([&] {
      r.payload = &find_format(a->format);
      r.tile = parse_granularity(a->granularity);
      r.scale = parse_scale_rule(a->rule);
      p = default_params(r.scale);
      p.scale_format = parse_scale_format(a->scale_format);
      if (!a->overflow.empty()) p.overflow = parse_overflow(a->overflow);
      if (eps->count() > 0) {
        if (r.scale != ScaleRule::te_fp32 && r.scale != ScaleRule::te_pow2)
          throw UsageError(fmt::format("--eps {}: only the te_fp32 and te_pow2 rules take an eps (rule is {})", a->eps,
                                       to_string(r.scale)));
        p.eps = a->eps;
      }
      check_recipe(r, p);
    });
    const FormatSpec* from = a->from.empty() ? nullptr : &find_format(a->from);
    io::resolve_output(codes_path(a->out)), io::resolve_output(scales_path(a->out)), io::resolve_output(meta_path(a->out));
    // The file's bytes, float32 + float64 copies, codes, scales and their serialized images.
    check_memory(g, fmt::format("quantize {}", a->in), 24 * npy_elements(a->in) + (std::uint64_t(64) << 20));
    const InputTensor in = read_input_npy(a->in, from);
    p.input = in.dtype;
    const QuantizedTensor q = quantize(in.x, in.rows, in.cols, r, p, {}, g.threads);
    if (p.scale_format == ScaleFormat::ue8m0) scales_to_ue8m0(q.scale_inv, scales_path(a->out).string());  // check first
    const Metrics m = compare(in.truth, q);
    save_quantized(a->out, q);
    if (a->json) {
      nlohmann::json j = {{"recipe", r.name()},     {"input", a->in},          {"shape", {in.rows, in.cols}},
                          {"input_dtype", in.dtype_name}, {"input_nan", in.nan}, {"input_inf", in.inf},
                          {"scale_shape", {q.scale_rows, q.scale_cols}}, {"metrics", to_json(m)}};
      fmt::print("{}\n", j.dump(2));
      return;
    }
    if (!g.quiet)
      fmt::print("{} [{}, {}] {} -> {}.{{codes,scale_inv}}.npy (scales [{}, {}] {}, overflow {}{})\n", r.name(), in.rows,
                 in.cols, in.dtype_name, a->out, q.scale_rows, q.scale_cols, to_string(p.scale_format),
                 to_string(p.overflow), r.scale == ScaleRule::te_fp32 || r.scale == ScaleRule::te_pow2
                                            ? fmt::format(", eps {}", p.eps)
                                            : "");
    if (in.nan + in.inf > 0)  // a note about the input: stderr, also under -q
      fmt::print(stderr, "fp8flow: note: input has {} NaN and {} Inf (handled per {} semantics; left out of the error "
                         "sums)\n",
                 in.nan, in.inf, to_string(r.scale));
    if (!g.quiet) fmt::print("{}", to_text(m));
  });
}

void add_dequantize_command(CLI::App& app, const GlobalOptions& g) {
  auto prefix = std::make_shared<std::string>();
  auto out = std::make_shared<std::string>();
  auto* cmd = app.add_subcommand("dequantize", "Decode PREFIX.{codes,scale_inv}.npy to float32 (RN32(q*scale_inv))");
  cmd->add_option("PREFIX", *prefix, "Prefix written by quantize or transpose")->required();
  cmd->add_option("OUT", *out, "Output .npy (float32, in the codes' layout)")->required();
  cmd->callback([prefix, out, &g] {
    io::resolve_output(*out);
    check_memory(g, fmt::format("dequantize {}", *prefix), 24 * npy_elements(codes_path(*prefix).string()) + (std::uint64_t(64) << 20));
    const QuantizedTensor q = load_quantized(*prefix);
    const std::vector<float> v = dequantize(q);
    io::NpyArray a;
    if (q.codes_transposed) {  // a column copy decodes to the transpose, as its codes are stored
      std::vector<float> t(v.size());
      for (std::size_t r = 0; r < q.rows; ++r)
        for (std::size_t c = 0; c < q.cols; ++c) t[c * q.rows + r] = v[r * q.cols + c];
      a = io::make_npy<float>({q.cols, q.rows}, std::span<const float>(t));
    } else {
      a = io::make_npy<float>({q.rows, q.cols}, std::span<const float>(v));
    }
    io::write_npy(*out, a);
    if (!g.quiet) fmt::print("{} -> {} float32 {}\n", *prefix, *out, a.shape_string());
  });
}

}  // namespace fp8flow::cli
