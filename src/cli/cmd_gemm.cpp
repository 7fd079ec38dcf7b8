// fp8flow gemm A.npy B.npy OUT.npy: FP8 GEMM emulation, OUT = A . B^T in float32.
#include <fmt/format.h>

#include <bit>

#include "cli/commands.hpp"
#include "cli/gemm_operand_files.hpp"
#include "cli/limits.hpp"
#include "cli/usage.hpp"
#include "formats/convert.hpp"
#include "io/atomic_write.hpp"
#include "io/errors.hpp"
#include "io/npy.hpp"
#include "io/gemm_algo_table.hpp"
#include "reference/gemm.hpp"
#include "reference/gemm_algo.hpp"

namespace fp8flow::cli {
namespace {

struct GemmArgs {
  std::string a, b, out, format = "e4m3", format_b, accum = "fp32_seq", scale_a, scale_b;
  std::string gran_a = "tensor", gran_b = "tensor";
  std::string algo = "none", algo_table, out_dtype = "f32";
  AccumParams params;
};

// The scaling name of the algorithm table (cuBLASLt's modes), or "" for granularities it has no mode for.
std::string table_scaling(Granularity a, Granularity b) {
  if (a == kTensor && b == kTensor) return "tensor";
  if (a == k1x128 && b == k128x128) return "1x128_128x128";
  if (a == k1x128 && b == k1x128) return "1x128_1x128";
  return "";
}


}  // namespace

void add_gemm_command(CLI::App& app, const GlobalOptions& g) {
  auto args = std::make_shared<GemmArgs>();
  auto* cmd = app.add_subcommand("gemm", "FP8 GEMM emulation: OUT[M,N] = A[M,K] . B[N,K]^T (float32), "
                                         "codes and scales in, with a chosen accumulation model");
  cmd->add_option("A", args->a, "A codes, uint8 [M, K]")->required();
  cmd->add_option("B", args->b, "B codes, uint8 [N, K] (K-major, i.e. B^T as Hopper's TN GEMMs take it)")->required();
  cmd->add_option("OUT", args->out, "output .npy, float32 [M, N]")->required();
  const auto format_check = choice([](const std::string& s) { return &find_format(s); });
  cmd->add_option("--format", args->format, "format of A's codes (and B's unless --format-b)")->capture_default_str()
      ->check(format_check);
  cmd->add_option("--format-b", args->format_b, "format of B's codes (default: --format)")->check(format_check);
  cmd->add_option("--accum", args->accum, std::string("accumulation model: ") + std::string(kAccumModelNames))
      ->capture_default_str()->check(choice(parse_accum_model));
  cmd->add_option("--scale-a", args->scale_a, "A's scale_inv, float32, COMPACT tile grid");
  cmd->add_option("--scale-b", args->scale_b, "B's scale_inv, float32, COMPACT tile grid");
  cmd->add_option("--granularity-a", args->gran_a, "A's scale tiles: tensor, 1x128, 128x128, ...")->capture_default_str()
      ->check(choice(parse_granularity));
  cmd->add_option("--granularity-b", args->gran_b, "B's scale tiles")->capture_default_str()->check(choice(parse_granularity));
  cmd->add_option("--promote-interval", args->params.promote_interval, "N_C: products per promotion to fp32")
      ->capture_default_str();
  cmd->add_option("--acc-bits", args->params.acc_fraction_bits, "fraction bits of the limited accumulator")
      ->capture_default_str();
  cmd->add_option("--group", args->params.group, "hopper_fast: products per aligned group")->capture_default_str();
  cmd->add_flag("--fast-accum", args->params.fast_accum, "hopper_fast: never promote (cuBLASLt fast accumulation)");
  cmd->add_option("--algo", args->algo,
                  "GEMM algorithm: none (one pass over K), splitk=N,reduction=inplace|compute|output[,unit=U]"
                  "[,scale=split|sum], or auto (what cuBLASLt's heuristic picks on the H100 for this shape; "
                  "docs/gemm.md \"Algorithms\")")
      ->capture_default_str()
      ->check(choice([](const std::string& v) { return v == "auto" ? GemmAlgo{} : parse_gemm_algo(v); }));
  cmd->add_option("--algo-table", args->algo_table, "--algo auto: the recorded H100 table (default: the shipped one)");
  cmd->add_option("--out-dtype", args->out_dtype, "f32 or bf16 (cuBLASLt's RNE output rounding; written as uint16 codes)")
      ->capture_default_str()
      ->check(CLI::IsMember({"f32", "bf16"}));
  cmd->callback([args, &g] {
    const FormatSpec& fa = find_format(args->format);
    const FormatSpec& fb = args->format_b.empty() ? fa : find_format(args->format_b);
    const AccumModel m = parse_accum_model(args->accum);
    io::resolve_output(args->out);
    {  // the operands, the float32 output and its serialized image, the model's per-row workspace
      const std::uint64_t ea = npy_elements(args->a), eb = npy_elements(args->b);
      const auto pa = ea ? io::peek_npy(args->a) : io::NpyArray{}, pb = eb ? io::peek_npy(args->b) : io::NpyArray{};
      const std::uint64_t M = pa.shape.size() == 2 ? pa.shape[0] : 0, N = pb.shape.size() == 2 ? pb.shape[0] : 0;
      const std::uint64_t out = M && N && M > (std::uint64_t(1) << 40) / N ? std::uint64_t(1) << 40 : M * N;
      check_memory(g, fmt::format("gemm {} x {}", args->a, args->b), 2 * (ea + eb) + 12 * out + (std::uint64_t(64) << 20));
    }
    const auto a = load_gemm_operand(args->a, args->scale_a, args->gran_a, fa, "a");
    const auto b = load_gemm_operand(args->b, args->scale_b, args->gran_b, fb, "b");
    if (args->out_dtype != "f32" && args->out_dtype != "bf16")
      throw InputError(fmt::format("--out-dtype {}: expected f32 or bf16", args->out_dtype));
    const bool bf16 = args->out_dtype == "bf16";
    GemmAlgo algo;
    std::string algo_note;
    if (args->algo == "auto") {
      const std::string sc = table_scaling(a.op.gran, b.op.gran);
      if (sc.empty())
        throw InputError(fmt::format("--algo auto: cuBLASLt has no scaling mode for A {} x B {} (tensor x tensor, "
                                     "1x128 x 128x128, 1x128 x 1x128)", to_string(a.op.gran), to_string(b.op.gran)));
      const bool fast = accum_preset_params(m, args->params).fast_accum;
      const std::string path = args->algo_table.empty() ? io::default_gemm_algo_table_path() : args->algo_table;
      const GemmAlgoTable table = io::read_gemm_algo_table(path);
      auto l = table.lookup(sc, fast, bf16, a.op.rows, b.op.rows, a.op.k);
      if (!l.supported && fast) {
        fmt::print(stderr, "warning: cuBLASLt has no fast-accumulation algorithm for {} scaling; using the entry "
                           "for fast accumulation off (a blockwise GEMM promotes per 128-block either way)\n", sc);
        l = table.lookup(sc, false, bf16, a.op.rows, b.op.rows, a.op.k);
      }
      if (!l.exact)
        fmt::print(stderr, "warning: --algo auto: M={} N={} K={} is not in the H100 table; using the entry of the "
                           "nearest grid point on a log2 scale, M={} N={} K={} ({})\n", a.op.rows, b.op.rows,
                   a.op.k, l.m, l.n, l.k, l.algo.to_string());
      algo = l.algo;
      algo_note = fmt::format(", algo auto -> {}", algo.to_string());
    } else {
      algo = parse_gemm_algo(args->algo);
      if (algo.splitk > 1) algo_note = ", algo " + algo.to_string();
    }
    const auto out = gemm_algo(a.op, b.op, m, args->params, algo, bf16, g.threads);
    if (bf16) {
      std::vector<std::uint16_t> codes(out.size());
      for (std::size_t i = 0; i < out.size(); ++i) codes[i] = std::uint16_t(std::bit_cast<std::uint32_t>(out[i]) >> 16);
      auto arr = io::make_npy<std::uint16_t>({a.op.rows, b.op.rows}, codes);
      arr.dtype = io::DType::bf16;
      io::write_npy(args->out, arr);
    } else {
      io::write_npy(args->out, io::make_npy<float>({a.op.rows, b.op.rows}, out));
    }
    if (!g.quiet)
      fmt::print("gemm [{} x {}] . [{} x {}]^T, accum {}{}, {} out: wrote {}\n", a.op.rows, a.op.k, b.op.rows, b.op.k,
                 to_string(m), algo_note, args->out_dtype, args->out);
  });
}

}  // namespace fp8flow::cli
