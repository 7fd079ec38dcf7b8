// fp8flow convert IN.npy OUT.npy --to FORMAT [--round MODE] [--overflow POLICY] [--seed N] [--from FORMAT]
// fp8flow convert IN.npy OUT.npy --decode FORMAT [--to f32|f64]
//
// Element-wise casts of whole .npy tensors through the batch API (formats/batch.hpp). Codes of formats of
// <= 8 bits are stored one per byte (uint8), bf16/f16 codes as uint16; --to f32 writes float32 and the
// pseudo-target f64 writes float64 (decoded values). float64 input is rounded once, from double.
// Options are checked and the input read before OUT.npy is touched; OUT.npy is written atomically.
#include <fmt/format.h>

#include <algorithm>
#include <bit>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <vector>

#include "cli/cast_stats.hpp"
#include "cli/commands.hpp"
#include "cli/limits.hpp"
#include "io/atomic_write.hpp"
#include "formats/batch.hpp"
#include "io/errors.hpp"
#include "io/npy.hpp"

namespace fp8flow::cli {
namespace {

struct ConvertArgs {
  std::string in, out, to, round = "rne", overflow = "satfinite", from, decode;
  std::uint64_t seed = 0;
  bool json = false;
};

// --to also accepts the pseudo-target f64 (decode to float64); every other name is a FormatSpec.
bool is_f64(std::string_view name) { return name == "f64" || name == "float64"; }

CLI::Validator format_validator(bool allow_f64) {
  return CLI::Validator(
      [allow_f64](std::string& s) -> std::string {
        if (allow_f64 && is_f64(s)) return {};
        try {
          find_format(s);
          return {};
        } catch (const std::invalid_argument& e) {
          return e.what();
        }
      },
      "FORMAT");
}

// The input as values: float32 (exact copies of float32/float16/decoded codes) or float64.
struct Values {
  std::vector<float> f;
  std::vector<double> d;
  bool is_double = false;
  std::size_t size() const { return is_double ? d.size() : f.size(); }
  double at(std::size_t i) const { return is_double ? d[i] : double(f[i]); }
};

// Reads the input tensor as values; codes are decoded with `from` (exactly: every format fits float32,
// and f64 output decodes codes straight to double).
Values load_values(const io::NpyArray& a, const std::string& file, const FormatSpec* from, bool want_double,
                   const BatchOptions& bo) {
  Values v;
  const std::size_t n = a.size();
  auto need_from = [&] {
    if (!from)
      throw InputError(fmt::format("{}: dtype {} holds raw codes: say which format they are in with --from FORMAT "
                                   "(or --decode FORMAT)",
                                   file, a.float8_codes() ? fmt::format("'{}' (ml_dtypes float8)", a.descr)
                                                          : std::string(io::to_string(a.dtype))));
  };
  auto check_width = [&](int bits) {
    if (storage_bits(*from) != bits)
      throw InputError(fmt::format("{}: dtype {} cannot hold {} codes ({} codes are stored as {})", file,
                                   io::to_string(a.dtype), from->name, from->name,
                                   storage_bits(*from) == 8 ? "uint8" : storage_bits(*from) == 16 ? "uint16" : "uint32"));
  };
  auto decode_codes = [&](auto codes) {
    if (want_double) {
      v.is_double = true, v.d.resize(n);
      decode(*from, codes, std::span<double>(v.d), bo);
    } else {
      v.f.resize(n);
      decode(*from, codes, std::span<float>(v.f), bo);
    }
  };
  switch (a.dtype) {
    case io::DType::f32: {
      if (from && from != &f32)
        throw InputError(fmt::format("{}: float32 input with --from {}: --from is for raw uint8/uint16 codes", file,
                                     from->name));
      const auto s = a.view<float>();
      v.f.assign(s.begin(), s.end());
      break;
    }
    case io::DType::f64: {
      if (from)
        throw InputError(fmt::format("{}: float64 input with --from {}: --from is for raw uint8/uint16 codes", file,
                                     from->name));
      const auto s = a.view<double>();
      v.is_double = true, v.d.assign(s.begin(), s.end());
      break;
    }
    case io::DType::f16:  // numpy float16 is IEEE binary16: f16 codes with a float dtype
      if (from && from != &f16)
        throw InputError(fmt::format("{}: float16 input holds f16 values, not {} codes", file, from->name));
      from = &f16;
      decode_codes(a.view<std::uint16_t>());
      break;
    case io::DType::bf16:  // ml_dtypes bfloat16 ('<V2'): bf16 codes with a type that says so
      if (from && from != &bf16)
        throw InputError(fmt::format("{}: bfloat16 input holds bf16 values, not {} codes", file, from->name));
      from = &bf16;
      decode_codes(a.view<std::uint16_t>());
      break;
    case io::DType::u8:
      need_from(), check_width(8);
      decode_codes(a.view<std::uint8_t>());
      break;
    case io::DType::u16:
      need_from(), check_width(16);
      decode_codes(a.view<std::uint16_t>());
      break;
    case io::DType::u32: {
      need_from(), check_width(32);  // f32 codes: the bits of float32 values
      const auto s = a.view<std::uint32_t>();
      v.f.resize(n);
      std::transform(s.begin(), s.end(), v.f.begin(), [](std::uint32_t b) { return std::bit_cast<float>(b); });
      break;
    }
    default:
      throw InputError(fmt::format("{}: cannot convert dtype {}: expected float32, float64, float16, bfloat16 "
                                   "(ml_dtypes), or uint8/uint16/ml_dtypes float8 codes with --from FORMAT",
                                   file, io::to_string(a.dtype)));
  }
  if (want_double && !v.is_double) {
    v.d.assign(v.f.begin(), v.f.end());  // exact
    v.f.clear(), v.is_double = true;
  }
  return v;
}

nlohmann::json counts_json(const CastCounts& c) {
  return {{"elements", c.total},         {"saturated", c.saturated},
          {"overflow_to_inf", c.overflow_to_inf}, {"became_nan", c.became_nan},
          {"nan_outputs", c.nan_outputs}, {"nan_inputs", c.nan_inputs},
          {"underflow_to_zero", c.underflow_to_zero}, {"subnormal", c.subnormal}};
}

void run_convert(const ConvertArgs& a, const GlobalOptions& g) {
  // ---- Options (usage errors, exit 2) ----------------------------------------------------------------
  std::string to = a.to;
  std::string from_name = a.from;
  if (!a.decode.empty()) {
    if (!a.from.empty()) throw CLI::ValidationError("--decode", "--decode FORMAT already names the input format; drop --from");
    from_name = a.decode;
    if (to.empty()) to = "f32";
    if (!is_f64(to) && &find_format(to) != &f32)
      throw CLI::ValidationError("--to", "--decode writes float32 (default) or float64: use --to f32 or --to f64");
  }
  if (to.empty()) throw CLI::RequiredError("--to");
  const bool to_f64 = is_f64(to);
  const FormatSpec* target = to_f64 ? nullptr : &find_format(to);
  const FormatSpec* from = from_name.empty() ? nullptr : &find_format(from_name);

  const bool ue8m0_rule = target == &ue8m0 && (a.round == "rz" || a.round == "ru" || a.round == "ceil" ||
                                                a.round == "rn" || a.round == "floor");
  std::optional<Rounding> rounding;
  if (!ue8m0_rule) {
    try {
      rounding = parse_rounding(a.round);
    } catch (const std::invalid_argument&) {
      throw CLI::ValidationError("--round", fmt::format("'{}': expected one of {} (and for --to ue8m0: {})", a.round,
                                                         kRoundingNames, kUe8m0RuleNames));
    }
  }
  const Overflow overflow = parse_overflow(a.overflow);  // CLI::IsMember already checked it
  const BatchOptions bo{.seed = a.seed, .index0 = 0, .threads = g.threads};

  // ---- Input (bad input, exit 1) ----------------------------------------------------------------------
  io::resolve_output(a.out);  // a read-only or directory output fails before the work
  // The file's bytes, the values (float64 at worst), the output codes and its serialized image.
  check_memory(g, fmt::format("convert {}", a.in), 32 * npy_elements(a.in) + (std::uint64_t(64) << 20));
  const io::NpyArray in = io::read_npy(a.in);
  const Values v = load_values(in, a.in, from, to_f64 || (target == &f32 && in.dtype == io::DType::f64), bo);
  const std::size_t n = v.size();

  io::NpyArray out;
  out.shape = in.shape;
  CastCounts counts;
  std::string stored_as;
  auto input = [&v](std::size_t i) { return v.at(i); };

  if (to_f64) {
    out = io::make_npy<double>(in.shape, v.d);
    counts.total = n;
    for (double x : v.d) counts.nan_inputs += std::isnan(x), counts.nan_outputs += std::isnan(x);
    stored_as = "float64 values";
  } else if (total_bits(*target) <= 8) {
    std::vector<std::uint8_t> codes(n);
    if (ue8m0_rule) {
      const Ue8m0Rule rule = parse_ue8m0_rule(a.round);
      if (v.is_double) {
        // CUDA's rz/ru are the generic directed roundings, which read the double exactly. ceil (fp32 bits),
        // rn and floor are defined on float32 here; rounding the input to float32 first would be a
        // second rounding, so ask for float32 input instead.
        if (rule != Ue8m0Rule::rz && rule != Ue8m0Rule::ru)
          throw InputError(fmt::format("{}: the ue8m0 rule '{}' is defined on float32 inputs; convert the float64 "
                                       "input to float32 first, or use --round rz|ru",
                                       a.in, a.round));
        encode(ue8m0, {rule == Ue8m0Rule::rz ? Rounding::rz : Rounding::ru, overflow}, std::span<const double>(v.d),
               std::span<std::uint8_t>(codes), bo);
      } else {
        encode_ue8m0(rule, overflow, v.f, codes, bo);
      }
    } else if (v.is_double) {
      encode(*target, {*rounding, overflow}, std::span<const double>(v.d), std::span<std::uint8_t>(codes), bo);
    } else {
      encode(*target, {*rounding, overflow}, std::span<const float>(v.f), std::span<std::uint8_t>(codes), bo);
    }
    counts = count_casts(*target, n, input, std::span<const std::uint8_t>(codes));
    out = io::make_npy<std::uint8_t>(in.shape, codes);
    stored_as = fmt::format("{} codes as uint8", target->name);
  } else if (total_bits(*target) <= 16) {
    std::vector<std::uint16_t> codes(n);
    if (v.is_double)
      encode(*target, {*rounding, overflow}, std::span<const double>(v.d), std::span<std::uint16_t>(codes), bo);
    else
      encode(*target, {*rounding, overflow}, std::span<const float>(v.f), std::span<std::uint16_t>(codes), bo);
    counts = count_casts(*target, n, input, std::span<const std::uint16_t>(codes));
    out = io::make_npy<std::uint16_t>(in.shape, codes);
    stored_as = fmt::format("{} codes as uint16", target->name);
  } else {  // f32: from float32-exact values a copy; from float64 one rounding under the policy
    std::vector<std::uint32_t> codes(n);
    if (v.is_double)
      encode(f32, {*rounding, overflow}, std::span<const double>(v.d), std::span<std::uint32_t>(codes), bo);
    else
      std::transform(v.f.begin(), v.f.end(), codes.begin(), [](float x) { return std::bit_cast<std::uint32_t>(x); });
    counts = count_casts(f32, n, input, std::span<const std::uint32_t>(codes));
    out = io::make_npy<std::uint32_t>(in.shape, codes);
    out.dtype = io::DType::f32;
    stored_as = "float32 values";
  }

  io::write_npy(a.out, out);

  const std::string policy = ue8m0_rule ? fmt::format("ue8m0 rule {}", a.round)
                                        : fmt::format("round {}", a.round);
  if (a.json) {
    nlohmann::json j{{"input", a.in},
                     {"input_dtype", io::to_string(in.dtype)},
                     {"from", from ? nlohmann::json(from->name) : nlohmann::json()},
                     {"shape", in.shape},
                     {"output", a.out},
                     {"to", to_f64 ? std::string("f64") : std::string(target->name)},
                     {"stored_as", stored_as},
                     {"round", a.round},
                     {"overflow", a.overflow},
                     {"seed", a.seed},
                     {"counts", counts_json(counts)}};
    fmt::print("{}\n", j.dump(2));
  } else if (!g.quiet) {
    fmt::print("{} ({}{}, shape {}) -> {} ({}), {}, overflow {}{}\n", a.in, io::to_string(in.dtype),
               from && in.dtype != io::DType::f16 ? fmt::format(" {} codes", from->name) : "", in.shape_string(), a.out,
               stored_as, policy, a.overflow, a.round == "stochastic" ? fmt::format(", seed {}", a.seed) : "");
    fmt::print("  elements {}  saturated {}  overflow->inf {}  nan out {} (nan in {})  underflow->0 {}  subnormal {}\n",
               counts.total, counts.saturated, counts.overflow_to_inf, counts.nan_outputs, counts.nan_inputs,
               counts.underflow_to_zero, counts.subnormal);
  }
}

}  // namespace

void add_convert_command(CLI::App& app, const GlobalOptions& g) {
  auto a = std::make_shared<ConvertArgs>();
  auto* cmd = app.add_subcommand(
      "convert",
      "Cast a .npy tensor element-wise into a number format (codes: uint8 per element for <= 8-bit formats, "
      "uint16 for bf16/f16), or decode codes back to float32/float64");
  cmd->add_option("IN", a->in, "Input .npy: float32, float64, float16, or uint8/uint16 codes with --from")
      ->required();
  cmd->add_option("OUT", a->out, "Output .npy (written atomically: a failure leaves an existing file untouched)")
      ->required();
  cmd->add_option("--to", a->to,
                  "Target format (see `fp8flow formats`), or f64: decode to float64. --to f32 writes float32")
      ->check(format_validator(true));
  cmd->add_option("--round", a->round,
                  fmt::format("Rounding: {} (default rne); for --to ue8m0 also the rules {} (rz/ru are CUDA's "
                              "__nv_cvt_float_to_e8m0)",
                              kRoundingNames, kUe8m0RuleNames));
  cmd->add_option("--overflow", a->overflow,
                  "satfinite (default; CUDA __NV_SATFINITE, TE: overflow and +-Inf -> +-max) or nonsat (Inf where "
                  "the format has it, else NaN; CUDA __NV_NOSAT, torch, ml_dtypes)")
      ->check(CLI::IsMember({"satfinite", "nonsat"}));
  cmd->add_option("--seed", a->seed, "Seed of the Philox stream for --round stochastic (default 0)");
  cmd->add_option("--from", a->from, "Format of raw uint8/uint16 input codes (e.g. --from bf16 on uint16)")
      ->check(format_validator(false));
  cmd->add_option("--decode", a->decode,
                  "Decode uint8/uint16 codes of FORMAT to float32 (or float64 with --to f64)")
      ->check(format_validator(false));
  cmd->add_flag("--json", a->json, "Print the counts as JSON");
  cmd->callback([a, &g] { run_convert(*a, g); });
}

}  // namespace fp8flow::cli
