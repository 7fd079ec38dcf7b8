// fp8flow inspect FORMAT CODE|VALUE [--code N] [--json]
//
//   fp8flow inspect e4m3 0x7e          a code: hex with 0x and hex digits only
//   fp8flow inspect e4m3 --code 126    a code in decimal (or 0x.. hex)
//   fp8flow inspect e4m3 300.5         a value: anything else strtod reads (1e-3, -0, inf, nan, 0x1.8p3)
//
// A code is decoded field by field; a value is shown under every rounding mode and overflow policy, with
// its representable neighbours and the ulp there (for ue8m0 also under the five named rules).
// Values are printed exactly (every decoded value is a dyadic rational with a finite decimal expansion).
#include <fmt/format.h>

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "cli/usage.hpp"
#include "cli/commands.hpp"
#include "formats/convert.hpp"
#include "io/errors.hpp"

namespace fp8flow::cli {
namespace {

// The exact decimal expansion of a finite double (m * 2^e with integer m): schoolbook on a digit string.
std::string exact_decimal(double x) {
  if (std::isnan(x)) return "nan";
  if (std::isinf(x)) return x < 0 ? "-inf" : "inf";
  const bool neg = std::signbit(x);
  int e = 0;
  double fr = std::frexp(std::fabs(x), &e);  // |x| = fr * 2^e, fr in [0.5, 1)
  std::uint64_t m = static_cast<std::uint64_t>(std::ldexp(fr, 53));
  e -= 53;
  while (m != 0 && (m & 1) == 0 && e < 0) m >>= 1, ++e;
  // Integer part digits (most significant first) and fraction digits.
  std::string in = std::to_string(m), frac;
  for (; e > 0; --e) {  // multiply by 2
    int carry = 0;
    for (auto it = in.rbegin(); it != in.rend(); ++it) {
      const int d = (*it - '0') * 2 + carry;
      *it = char('0' + d % 10), carry = d / 10;
    }
    if (carry) in.insert(in.begin(), char('0' + carry));
  }
  for (; e < 0; ++e) {  // divide (in . frac) by 2
    std::string all = in + frac;
    std::string q;
    int rem = 0;
    for (char c : all) {
      const int d = rem * 10 + (c - '0');
      q.push_back(char('0' + d / 2)), rem = d % 2;
    }
    if (rem) q.push_back('5');
    in = q.substr(0, in.size());
    frac = q.substr(in.size());
  }
  const auto nz = in.find_first_not_of('0');
  in = nz == std::string::npos ? "0" : in.substr(nz);
  return (neg ? "-" : "") + in + (frac.empty() ? "" : "." + frac);
}

std::string hex_code(const FormatSpec& f, std::uint32_t c) {
  return fmt::format("0x{:0{}X}", c, (total_bits(f) + 3) / 4);
}

std::string value_class(const FormatSpec& f, std::uint32_t c) {
  const std::uint32_t mag = c & magnitude_mask(f);
  if (is_nan_code(f, c)) return "NaN";
  if (is_inf_code(f, c)) return "Inf";
  if (f.zero && mag == 0) return "zero";
  if (f.zero && (mag >> f.man) == 0) return "subnormal";
  return "normal";
}

std::optional<std::uint32_t> parse_hex_code(const std::string& s) {
  if (s.size() < 3 || s[0] != '0' || (s[1] != 'x' && s[1] != 'X')) return {};
  if (s.find_first_not_of("0123456789abcdefABCDEF", 2) != std::string::npos) return {};
  if (s.size() > 10) throw UsageError(fmt::format("code '{}' is wider than 32 bits", s));
  return static_cast<std::uint32_t>(std::stoull(s.substr(2), nullptr, 16));
}

nlohmann::json decode_code(const FormatSpec& f, std::uint32_t c) {
  if (total_bits(f) < 32 && c >> total_bits(f))
    throw UsageError(fmt::format("code {} does not fit {} ({} bits: 0x0..{})", hex_code(f, c), f.name, total_bits(f),
                                 hex_code(f, (1u << total_bits(f)) - 1)));
  const std::uint32_t mag = c & magnitude_mask(f);
  const int field = int(mag >> f.man);
  const std::uint32_t mant = mag & ((1u << f.man) - 1u);
  const std::string cls = value_class(f, c);
  const double v = decode(f, c);
  std::string bin;
  for (int b = total_bits(f) - 1; b >= 0; --b) {
    bin.push_back((c >> b) & 1 ? '1' : '0');
    if ((f.sign && b == magnitude_bits(f)) || (b == f.man && f.man > 0)) bin.push_back('.');
  }
  nlohmann::json j{{"format", f.name},     {"code", hex_code(f, c)},
                   {"code_decimal", c},    {"bits", bin},
                   {"sign", f.sign ? int((c >> magnitude_bits(f)) & 1) : 0},
                   {"exponent_field", field}, {"mantissa_field", mant},
                   {"class", cls},         {"value", exact_decimal(v)}};
  if (cls == "normal" || cls == "subnormal") {
    const int e = std::max(field, min_field(f)) - f.bias;
    const double significand = double((cls == "normal" ? (1u << f.man) : 0u) + mant) / double(1u << f.man);
    j["formula"] = fmt::format("{}{} x 2^{}", (v < 0 ? "-" : ""), exact_decimal(significand), e);
  }
  return j;
}

// Largest representable value < x and smallest > x (nullopt past the ends), by walking all codes of
// formats up to 16 bits and by nextafter for f32: slow and obviously right.
std::pair<std::optional<double>, std::optional<double>> strict_neighbours(const FormatSpec& f, double x) {
  std::optional<double> lo, hi;
  if (&f == &f32) {
    const float fx = static_cast<float>(x);
    float below = double(fx) < x ? fx : std::nextafter(fx, -INFINITY);
    float above = double(fx) > x ? fx : std::nextafter(fx, INFINITY);
    if (std::isfinite(below)) lo = below;
    if (std::isfinite(above)) hi = above;
    return {lo, hi};
  }
  for (std::uint32_t c = 0; c < (1u << total_bits(f)); ++c) {
    if (is_nan_code(f, c) || is_inf_code(f, c)) continue;
    const double v = decode(f, c);
    if (v < x && (!lo || v > *lo)) lo = v;
    if (v > x && (!hi || v < *hi)) hi = v;
  }
  return {lo, hi};
}

nlohmann::json encode_row(const FormatSpec& f, double x, std::string_view label, std::uint32_t c) {
  const double q = decode(f, c);
  nlohmann::json r{{"mode", label}, {"code", hex_code(f, c)}, {"value", exact_decimal(q)}, {"class", value_class(f, c)}};
  if (std::isfinite(q) && std::isfinite(x)) {
    r["abs_error"] = q - x;  // in double arithmetic (exact unless q and x are many binades apart)
    r["rel_error"] = x != 0 ? (q - x) / std::fabs(x) : (q == 0 ? 0.0 : INFINITY);
  } else {
    r["abs_error"] = nullptr, r["rel_error"] = nullptr;
  }
  return r;
}

nlohmann::json inspect_value(const FormatSpec& f, double x, const std::string& text) {
  nlohmann::json j{{"format", f.name}, {"input", text}, {"value", exact_decimal(x)}};
  nlohmann::json rows = nlohmann::json::array();
  for (Rounding r : {Rounding::rne, Rounding::rz, Rounding::ru, Rounding::rd, Rounding::rna})
    for (Overflow o : {Overflow::satfinite, Overflow::nonsat})
      rows.push_back(encode_row(f, x, fmt::format("{} {}", to_string(r), to_string(o)), encode(f, x, CastPolicy{r, o})));
  j["roundings"] = rows;
  if (&f == &ue8m0) {
    const float fx = static_cast<float>(x);
    nlohmann::json rules = nlohmann::json::array();
    for (Ue8m0Rule r : {Ue8m0Rule::rz, Ue8m0Rule::ru, Ue8m0Rule::ceil, Ue8m0Rule::rn, Ue8m0Rule::floor})
      for (Overflow o : {Overflow::satfinite, Overflow::nonsat}) {
        if (r != Ue8m0Rule::rz && r != Ue8m0Rule::ru && o == Overflow::nonsat) continue;  // others ignore it
        const std::string label = r == Ue8m0Rule::rz || r == Ue8m0Rule::ru
                                      ? fmt::format("rule {} {}", to_string(r), to_string(o))
                                      : fmt::format("rule {}", to_string(r));
        rules.push_back(encode_row(f, x, label, ue8m0_from_float(fx, r, o)));
      }
    j["ue8m0_rules"] = rules;
    if (double(fx) != x && !std::isnan(x))
      j["ue8m0_rules_note"] = fmt::format("the rules read float32: {} was rounded to {}", text, exact_decimal(fx));
  }
  if (std::isfinite(x) && !(x < 0 && !f.sign)) {
    const auto [lo, hi] = strict_neighbours(f, x);
    j["representable"] = decode(f, encode(f, x, kRneNonsat)) == x;
    j["below"] = lo ? nlohmann::json(exact_decimal(*lo)) : nlohmann::json();
    j["above"] = hi ? nlohmann::json(exact_decimal(*hi)) : nlohmann::json();
    // Spacing of f's values around x: 2^(max(E, emin) - man), E = floor(log2|x|), capped at the top binade.
    if (x != 0 || f.zero) {
      int E = x != 0 ? std::ilogb(x) : emin(f);
      E = std::max(E, emin(f));
      E = std::min(E, std::ilogb(max_finite(f)));
      j["ulp"] = exact_decimal(std::ldexp(1.0, E - f.man));
    }
    if (lo && hi && !j["representable"].get<bool>())
      j["stochastic_p_up"] = (x - *lo) / (*hi - *lo);
  }
  return j;
}

void print_text(const nlohmann::json& j) {
  auto s = [](const nlohmann::json& v) { return v.is_null() ? std::string("-") : v.is_string() ? v.get<std::string>() : v.dump(); };
  if (j.contains("code")) {
    fmt::print("{} code {} ({})  bits {}\n", s(j["format"]), s(j["code"]), s(j["code_decimal"]), s(j["bits"]));
    fmt::print("  sign {}  exponent field {}  mantissa field {}  class {}\n", s(j["sign"]), s(j["exponent_field"]),
               s(j["mantissa_field"]), s(j["class"]));
    fmt::print("  value {}{}\n", s(j["value"]), j.contains("formula") ? "  = " + s(j["formula"]) : "");
    return;
  }
  fmt::print("{} {} (exactly {} as a double)\n", s(j["format"]), s(j["input"]), s(j["value"]));
  if (j.contains("representable"))
    fmt::print("  {}  below {}  above {}  ulp {}\n", j["representable"].get<bool>() ? "representable" : "not representable",
               s(j["below"]), s(j["above"]), j.contains("ulp") ? s(j["ulp"]) : "-");
  if (j.contains("stochastic_p_up")) fmt::print("  stochastic: P(round up) = {}\n", s(j["stochastic_p_up"]));
  auto table = [&](const nlohmann::json& rows) {
    fmt::print("  {:<20} {:<8} {:<24} {:<10} {:>13} {:>13}\n", "mode", "code", "value", "class", "abs error", "rel error");
    for (const auto& r : rows)
      fmt::print("  {:<20} {:<8} {:<24} {:<10} {:>13.6g} {:>13.6g}\n", s(r["mode"]), s(r["code"]), s(r["value"]),
                 s(r["class"]), r["abs_error"].is_null() ? NAN : r["abs_error"].get<double>(),
                 r["rel_error"].is_null() ? NAN : r["rel_error"].get<double>());
  };
  table(j["roundings"]);
  if (j.contains("ue8m0_rules")) {
    fmt::print("  ue8m0 rules (rz/ru: CUDA __nv_cvt_float_to_e8m0; ceil: DeepGEMM; rn: ml_dtypes; floor: OCP MX)\n");
    table(j["ue8m0_rules"]);
    if (j.contains("ue8m0_rules_note")) fmt::print("  note: {}\n", s(j["ue8m0_rules_note"]));
  }
}

struct InspectArgs {
  std::string format, what, code;
  bool json = false;
};

void run_inspect(const InspectArgs& a) {
  const FormatSpec& f = find_format(a.format);
  nlohmann::json j;
  if (!a.code.empty()) {
    if (!a.what.empty()) throw CLI::ValidationError("--code", "give either a CODE|VALUE argument or --code, not both");
    std::size_t used = 0;
    unsigned long long c = 0;
    try {
      c = std::stoull(a.code, &used, 0);  // decimal, or 0x.. hex
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != a.code.size() || a.code[0] == '-' || (a.code.size() > 1 && a.code[0] == '0' && a.code[1] != 'x' && a.code[1] != 'X'))
      throw UsageError(fmt::format("--code '{}': expected a decimal integer like 126 or hex like 0x7E", a.code));
    if (c > 0xFFFFFFFFull) throw UsageError(fmt::format("--code {}: wider than 32 bits", a.code));
    j = decode_code(f, static_cast<std::uint32_t>(c));
  } else if (a.what.empty()) {
    throw CLI::RequiredError("CODE|VALUE (or --code N)");
  } else if (const auto c = parse_hex_code(a.what)) {
    j = decode_code(f, *c);
  } else {
    errno = 0;
    char* end = nullptr;
    const double x = std::strtod(a.what.c_str(), &end);
    if (end == a.what.c_str() || *end != '\0')
      throw UsageError(fmt::format("'{}': expected a code (0x7E) or a value (300.5, -1e-3, inf, nan)", a.what));
    j = inspect_value(f, x, a.what);
  }
  if (a.json) fmt::print("{}\n", j.dump(2));
  else print_text(j);
}

}  // namespace

void add_inspect_command(CLI::App& app, const GlobalOptions&) {
  auto a = std::make_shared<InspectArgs>();
  auto* cmd = app.add_subcommand(
      "inspect",
      "Decode a code, or show how a value encodes under each rounding and overflow policy.\n"
      "  fp8flow inspect e4m3 0x7e        code (hex: 0x followed by hex digits only)\n"
      "  fp8flow inspect e4m3 --code 126  code in decimal\n"
      "  fp8flow inspect e4m3 300.5       value (anything else: 1e-3, -0, inf, nan, 0x1.8p3)");
  cmd->add_option("FORMAT", a->format, "Format name or alias (see `fp8flow formats`)")->required()
      ->check(choice([](const std::string& s) { return &find_format(s); }));
  cmd->add_option("CODE|VALUE", a->what, "0x.. hex code, or a value");
  cmd->add_option("--code", a->code, "A code in decimal (126) or hex (0x7E)");
  cmd->add_flag("--json", a->json, "Print JSON");
  cmd->callback([a] { run_inspect(*a); });
}

}  // namespace fp8flow::cli
