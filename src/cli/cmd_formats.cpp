// fp8flow formats [--json]: the table of number formats and their derived parameters.
#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "cli/commands.hpp"
#include "formats/convert.hpp"

namespace fp8flow::cli {
namespace {

std::string_view specials_name(Specials s) {
  switch (s) {
    case Specials::ieee_inf_nan: return "inf+nan";
    case Specials::nan_all_ones: return "nan(all ones)";
    case Specials::nan_neg_zero: return "nan(0x80), no -0";
    case Specials::none: return "none";
  }
  return "?";
}

nlohmann::json format_json(const FormatSpec& f) {
  return {{"name", f.name},
          {"alias", f.alias},
          {"bits", total_bits(f)},
          {"exponent_bits", f.exp},
          {"mantissa_bits", f.man},
          {"bias", f.bias},
          {"signed", f.sign},
          {"has_zero", f.zero},
          {"specials", specials_name(f.specials)},
          {"max_finite", max_finite(f)},
          {"min_normal", min_normal(f)},
          {"min_subnormal", min_subnormal(f)},
          {"max_code", fmt::format("0x{:02X}", max_code(f))},
          {"nan_code", has_nan(f) ? nlohmann::json(fmt::format("0x{:02X}", nan_code(f))) : nlohmann::json()},
          {"note", f.note}};
}

}  // namespace

void add_formats_command(CLI::App& app, const GlobalOptions&) {
  auto* cmd = app.add_subcommand("formats", "List the number formats with their parameters");
  auto json = std::make_shared<bool>(false);
  cmd->add_flag("--json", *json, "Print JSON");
  cmd->callback([json] {
    if (*json) {
      nlohmann::json out = nlohmann::json::array();
      for (const FormatSpec* f : all_formats) out.push_back(format_json(*f));
      fmt::print("{}\n", out.dump(2));
      return;
    }
    fmt::print("{:<9} {:<9} {:>4} {:>3} {:>3} {:>4} {:<17} {:>13} {:>13} {:>13}\n", "format", "alias", "bits", "E",
               "M", "bias", "specials", "max", "min normal", "min subnorm");
    for (const FormatSpec* f : all_formats)
      fmt::print("{:<9} {:<9} {:>4} {:>3} {:>3} {:>4} {:<17} {:>13.6g} {:>13.6g} {:>13.6g}\n", f->name, f->alias,
                 total_bits(*f), f->exp, f->man, f->bias, specials_name(f->specials), max_finite(*f), min_normal(*f),
                 min_subnormal(*f));
  });
}

}  // namespace fp8flow::cli
