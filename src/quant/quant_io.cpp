#include "quant/quant_io.hpp"

#include <fmt/format.h>

#include <charconv>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "formats/convert.hpp"
#include "io/atomic_write.hpp"
#include "io/errors.hpp"

namespace fp8flow {

namespace fs = std::filesystem;

fs::path codes_path(const fs::path& prefix) { return fs::path(prefix) += ".codes.npy"; }
fs::path scales_path(const fs::path& prefix) { return fs::path(prefix) += ".scale_inv.npy"; }
fs::path meta_path(const fs::path& prefix) { return fs::path(prefix) += ".meta.json"; }

InputTensor read_input_npy(const fs::path& file, const FormatSpec* from) {
  const io::NpyArray a = io::read_npy(file);
  if (a.shape.size() != 2)
    throw InputError(fmt::format("{}: shape {}: expected a 2-D array [rows, cols]", file.string(), a.shape_string()));
  if (a.size() == 0)
    throw InputError(fmt::format("{}: shape {}: the tensor is empty", file.string(), a.shape_string()));
  InputTensor t;
  t.rows = a.shape[0];
  t.cols = a.shape[1];
  t.x.resize(a.size());
  t.truth.resize(a.size());
  const std::string dtype = a.float8_codes() ? fmt::format("'{}' (ml_dtypes float8)", a.descr)
                                             : std::string(io::to_string(a.dtype));
  auto not_codes = [&](std::string_view what) {
    if (from)
      throw InputError(fmt::format("{}: dtype {} holds {} values, not {} codes: drop --from {}", file.string(), dtype,
                                   what, from->name, from->name));
  };
  auto codes = [&](const auto& v, int bits) {
    if (!from)
      throw InputError(fmt::format("{}: dtype {} holds raw codes: say which format they are in with --from FORMAT (e.g. "
                                   "--from {})",
                                   file.string(), dtype, bits == 16 ? "bf16" : "e4m3"));
    if (storage_bits(*from) != bits)
      throw InputError(fmt::format("{}: dtype {} cannot hold {} codes ({}-bit storage)", file.string(), dtype,
                                   from->name, storage_bits(*from)));
    for (std::size_t i = 0; i < v.size(); ++i) t.x[i] = decode_f32(*from, v[i]), t.truth[i] = t.x[i];
    t.dtype = from == &bf16 ? InputDtype::bf16 : from == &f16 ? InputDtype::f16 : InputDtype::f32;
  };
  switch (a.dtype) {
    case io::DType::f32: {
      not_codes("float32");
      const auto v = a.view<float>();
      for (std::size_t i = 0; i < v.size(); ++i) t.x[i] = v[i], t.truth[i] = v[i];
      break;
    }
    case io::DType::f64: {
      not_codes("float64");
      const auto v = a.view<double>();
      for (std::size_t i = 0; i < v.size(); ++i) t.x[i] = float(v[i]), t.truth[i] = v[i];
      break;
    }
    case io::DType::f16: {
      if (from != &f16) not_codes("float16");
      const auto v = a.view<std::uint16_t>();
      for (std::size_t i = 0; i < v.size(); ++i) t.x[i] = decode_f32(f16, v[i]), t.truth[i] = t.x[i];
      t.dtype = InputDtype::f16;
      break;
    }
    case io::DType::bf16: {
      if (from != &bf16) not_codes("bfloat16");
      const auto v = a.view<std::uint16_t>();
      for (std::size_t i = 0; i < v.size(); ++i) t.x[i] = decode_f32(bf16, v[i]), t.truth[i] = t.x[i];
      t.dtype = InputDtype::bf16;
      break;
    }
    case io::DType::u16: codes(a.view<std::uint16_t>(), 16); break;
    case io::DType::u8: codes(a.view<std::uint8_t>(), 8); break;
    default:
      throw InputError(fmt::format("{}: dtype {}: expected float16, bfloat16, float32 or float64 values, or uint16 / "
                                   "uint8 / ml_dtypes float8 codes with --from FORMAT",
                                   file.string(), dtype));
  }
  t.dtype_name = from && (a.dtype == io::DType::u8 || a.dtype == io::DType::u16)
                     ? fmt::format("{} codes ({})", from->name, dtype)
                     : dtype;
  for (double v : t.truth) {
    if (std::isnan(v)) ++t.nan;
    else if (std::isinf(v)) ++t.inf;
  }
  return t;
}

void save_quantized(const fs::path& prefix, const QuantizedTensor& q) {
  check_tensor(q, prefix.string());
  const std::vector<std::size_t> code_shape =
      q.codes_transposed ? std::vector<std::size_t>{q.cols, q.rows} : std::vector<std::size_t>{q.rows, q.cols};
  const io::NpyArray codes = io::make_npy<std::uint8_t>(code_shape, std::span<const std::uint8_t>(q.codes));
  io::NpyArray scales = q.params.scale_format == ScaleFormat::ue8m0
                            ? io::make_npy<std::uint8_t>({q.scale_rows, q.scale_cols},
                                                         scales_to_ue8m0(q.scale_inv, scales_path(prefix).string()))
                            : io::make_npy<float>({q.scale_rows, q.scale_cols}, std::span<const float>(q.scale_inv));
  const nlohmann::json meta = {{"fp8flow_quantized", 1},
                               {"recipe", q.recipe.name()},
                               {"format", q.recipe.payload->name},
                               {"granularity", to_string(q.recipe.tile)},
                               {"rule", to_string(q.recipe.scale)},
                               {"shape", {q.rows, q.cols}},
                               {"codes_layout", q.codes_transposed ? "transposed" : "rowwise"},
                               {"codes_shape", code_shape},
                               {"scale_shape", {q.scale_rows, q.scale_cols}},
                               {"scale_format", to_string(q.params.scale_format)},
                               {"overflow", to_string(q.params.overflow)},
                               {"eps", q.params.eps},
                               {"input_dtype", q.params.input == InputDtype::f32    ? "float32"
                                               : q.params.input == InputDtype::bf16 ? "bfloat16"
                                                                                    : "float16"},
                               {"row_groups", q.row_groups},
                               {"origin", q.origin}};
  // All three files or none (io::write_all_atomically): a failure never leaves a mixed old/new set.
  const std::vector<std::byte> code_bytes = io::serialize_npy(codes), scale_bytes = io::serialize_npy(scales);
  const std::string meta_text = meta.dump(2) + "\n";
  const fs::path cp = codes_path(prefix), sp = scales_path(prefix), mp = meta_path(prefix);
  io::write_all_atomically({
      {cp, [&](const fs::path& tmp) { io::write_bytes(tmp, code_bytes.data(), code_bytes.size(), cp.string()); }},
      {sp, [&](const fs::path& tmp) { io::write_bytes(tmp, scale_bytes.data(), scale_bytes.size(), sp.string()); }},
      {mp, [&](const fs::path& tmp) { io::write_bytes(tmp, meta_text.data(), meta_text.size(), mp.string()); }},
  });
}

QuantizedTensor load_quantized(const fs::path& prefix) {
  const fs::path mp = meta_path(prefix);
  std::ifstream f(mp);
  if (!f) throw InputError(fmt::format("{}: cannot open (is '{}' the prefix given to quantize?)", mp.string(),
                                       prefix.string()));
  nlohmann::json meta;
  try {
    meta = nlohmann::json::parse(f);
  } catch (const nlohmann::json::exception& e) {
    throw InputError(fmt::format("{}: not valid JSON: {}", mp.string(), e.what()));
  }
  QuantizedTensor q;
  const auto field = [&](const char* name) -> const nlohmann::json& {
    if (!meta.contains(name)) throw InputError(fmt::format("{}: field '{}' is missing", mp.string(), name));
    return meta[name];
  };
  try {
    q.recipe.payload = &find_format(field("format").get<std::string>());
    q.recipe.tile = parse_granularity(field("granularity").get<std::string>());
    q.recipe.scale = parse_scale_rule(field("rule").get<std::string>());
    const auto shape = field("shape").get<std::vector<std::size_t>>();
    if (shape.size() != 2) throw InputError("shape: expected [rows, cols]");
    q.rows = shape[0];
    q.cols = shape[1];
    const std::string layout = field("codes_layout").get<std::string>();
    if (layout != "rowwise" && layout != "transposed")
      throw InputError(fmt::format("codes_layout '{}': expected rowwise or transposed", layout));
    q.codes_transposed = layout == "transposed";
    q.params.scale_format = parse_scale_format(field("scale_format").get<std::string>());
    q.params.overflow = parse_overflow(field("overflow").get<std::string>());
    q.params.eps = field("eps").get<float>();
    const std::string in = meta.value("input_dtype", std::string("float32"));
    q.params.input = in == "bfloat16" ? InputDtype::bf16 : in == "float16" ? InputDtype::f16 : InputDtype::f32;
    q.row_groups = meta.value("row_groups", std::vector<std::size_t>{});
    q.origin = meta.value("origin", std::string("quantize"));
  } catch (const nlohmann::json::exception& e) {
    throw InputError(fmt::format("{}: {}", mp.string(), e.what()));
  } catch (const InputError& e) {
    throw InputError(fmt::format("{}: {}", mp.string(), e.what()));
  } catch (const std::invalid_argument& e) {
    throw InputError(fmt::format("{}: {}", mp.string(), e.what()));
  }
  check_row_groups(q.row_groups, q.rows);
  const io::NpyArray codes = io::read_npy(codes_path(prefix));
  const std::vector<std::size_t> want =
      q.codes_transposed ? std::vector<std::size_t>{q.cols, q.rows} : std::vector<std::size_t>{q.rows, q.cols};
  if (codes.dtype != io::DType::u8 || codes.shape != want)
    throw InputError(fmt::format("{}: dtype {} shape {}: expected uint8 shape ({}, {}) as {} says",
                                 codes_path(prefix).string(), io::to_string(codes.dtype), codes.shape_string(),
                                 want[0], want[1], mp.string()));
  const auto cv = codes.view<std::uint8_t>();
  q.codes.assign(cv.begin(), cv.end());
  const io::NpyArray scales = io::read_npy(scales_path(prefix));
  const TileGrid g = q.grid();
  const std::vector<std::size_t> grid{g.row_tiles.size(), g.col_tiles.size()};
  const io::DType sdt = q.params.scale_format == ScaleFormat::ue8m0 ? io::DType::u8 : io::DType::f32;
  if (scales.dtype != sdt || scales.shape != grid)
    throw InputError(fmt::format("{}: dtype {} shape {}: expected {} shape ({}, {}) for granularity {} on [{}, {}]",
                                 scales_path(prefix).string(), io::to_string(scales.dtype), scales.shape_string(),
                                 io::to_string(sdt), grid[0], grid[1], to_string(q.recipe.tile), q.rows, q.cols));
  if (sdt == io::DType::u8) {
    q.scale_inv = scales_from_ue8m0(scales.view<std::uint8_t>());
  } else {
    const auto sv = scales.view<float>();
    q.scale_inv.assign(sv.begin(), sv.end());
  }
  q.scale_rows = grid[0];
  q.scale_cols = grid[1];
  check_tensor(q, prefix.string());
  return q;
}

std::vector<std::size_t> parse_size_list(const std::string& s, const std::string& what) {
  std::vector<std::size_t> out;
  std::size_t pos = 0;
  while (pos <= s.size()) {
    const std::size_t end = std::min(s.find(',', pos), s.size());
    std::size_t v = 0;
    const auto r = std::from_chars(s.data() + pos, s.data() + end, v);
    if (r.ec != std::errc{} || r.ptr != s.data() + end || v == 0)
      throw InputError(fmt::format("{} '{}': expected positive integers separated by commas", what, s));
    out.push_back(v);
    pos = end + 1;
  }
  return out;
}

}  // namespace fp8flow
