// Golden quantize/dequantize, recipes and scale layouts.
#include "quant/quantize.hpp"

#include <fmt/format.h>

#include <cmath>
#include <limits>

#include "formats/convert.hpp"
#include "io/errors.hpp"

namespace fp8flow {

std::string QuantRecipe::name() const {
  return fmt::format("quant_{}_{}_{}", to_string(tile), payload->name, to_string(scale));
}

QuantRecipe parse_recipe(std::string_view name) {
  const auto bad = [&](std::string_view why) {
    return InputError(fmt::format("recipe '{}': {}; expected quant_<granularity>_<format>_<rule>, e.g. "
                                  "quant_1x128_e4m3_te_pow2",
                                  name, why));
  };
  constexpr std::string_view kPrefix = "quant_";
  if (!name.starts_with(kPrefix)) throw bad("no 'quant_' prefix");
  std::string_view rest = name.substr(kPrefix.size());
  const auto a = rest.find('_');
  if (a == std::string_view::npos) throw bad("missing format");
  const auto b = rest.find('_', a + 1);
  if (b == std::string_view::npos) throw bad("missing scale rule");
  QuantRecipe r;
  r.tile = parse_granularity(rest.substr(0, a));
  try {
    r.payload = &find_format(rest.substr(a + 1, b - a - 1));
  } catch (const std::invalid_argument& e) {
    throw InputError(fmt::format("recipe '{}': {}", name, e.what()));
  }
  r.scale = parse_scale_rule(rest.substr(b + 1));
  return r;
}

void check_recipe(const QuantRecipe& r, const QuantParams& p) {
  if (storage_bits(*r.payload) != 8 || r.payload == &ue8m0)
    throw InputError(fmt::format("format '{}': quantization needs an element format of at most 8 bits with a sign "
                                 "(e4m3, e5m2, e4m3fnuz, e5m2fnuz, e2m1, e2m3, e3m2)",
                                 r.payload->name));
  if (p.scale_format == ScaleFormat::ue8m0 && !pow2_scales(r.scale))
    throw InputError(fmt::format("scale format 'ue8m0': rule {} makes scales that are not powers of two; use fp32",
                                 to_string(r.scale)));
  if (!(p.eps >= 0.0f) || std::isinf(p.eps)) throw InputError(fmt::format("eps {}: expected a finite value >= 0", p.eps));
}

void check_tensor(const QuantizedTensor& q, std::string_view what) {
  const TileGrid g = q.grid();
  if (q.codes.size() != q.size())
    throw InputError(fmt::format("{}: {} codes for a [{}, {}] tensor", what, q.codes.size(), q.rows, q.cols));
  if (q.scale_rows != g.row_tiles.size() || q.scale_cols != g.col_tiles.size() ||
      q.scale_inv.size() != q.scale_rows * q.scale_cols)
    throw InputError(fmt::format("{}: scale_inv has shape [{}, {}] ({} values) but granularity {} on [{}, {}] needs "
                                 "[{}, {}]",
                                 what, q.scale_rows, q.scale_cols, q.scale_inv.size(), to_string(q.recipe.tile), q.rows,
                                 q.cols, g.row_tiles.size(), g.col_tiles.size()));
}

namespace golden {

QuantizedTensor quantize(std::span<const float> x, std::size_t rows, std::size_t cols, const QuantRecipe& r,
                         const QuantParams& p, const std::vector<std::size_t>& row_groups) {
  check_recipe(r, p);
  if (x.size() != rows * cols)
    throw InputError(fmt::format("quantize: {} values for a [{}, {}] tensor", x.size(), rows, cols));
  QuantizedTensor q;
  q.rows = rows;
  q.cols = cols;
  q.recipe = r;
  q.params = p;
  q.row_groups = row_groups;
  const TileGrid g = make_tile_grid(rows, cols, r.tile, row_groups);
  q.scale_rows = g.row_tiles.size();
  q.scale_cols = g.col_tiles.size();
  q.scale_inv.resize(g.size());
  q.codes.resize(rows * cols);
  std::vector<float> block;
  for (std::size_t i = 0; i < g.row_tiles.size(); ++i) {
    for (std::size_t j = 0; j < g.col_tiles.size(); ++j) {
      const Range rr = g.row_tiles[i], cc = g.col_tiles[j];
      block.clear();
      for (std::size_t row = rr.begin; row < rr.end; ++row)
        for (std::size_t c = cc.begin; c < cc.end; ++c) block.push_back(x[row * cols + c]);
      const BlockScale s = block_scale(r.scale, *r.payload, block, p);
      q.scale_inv[i * q.scale_cols + j] = s.scale_inv;
      for (std::size_t row = rr.begin; row < rr.end; ++row)
        for (std::size_t c = cc.begin; c < cc.end; ++c)
          q.codes[row * cols + c] = cast_element(*r.payload, x[row * cols + c], s, p.overflow);
    }
  }
  return q;
}

}  // namespace golden

QuantizedTensor quantize(std::span<const float> x, std::size_t rows, std::size_t cols, const QuantRecipe& r,
                         const QuantParams& p, const std::vector<std::size_t>& row_groups, int threads) {
  if (fast::supports(r, p, row_groups)) {
    check_recipe(r, p);
    if (x.size() != rows * cols)
      throw InputError(fmt::format("quantize: {} values for a [{}, {}] tensor", x.size(), rows, cols));
    check_row_groups(row_groups, rows);
    QuantizedTensor q = fast::quantize(x, rows, cols, r, p, threads);
    q.row_groups = row_groups;
    return q;
  }
  return golden::quantize(x, rows, cols, r, p, row_groups);
}

std::vector<float> element_scale_inv(const QuantizedTensor& q) {
  const TileGrid g = q.grid();
  std::vector<float> s(q.size());
  for (std::size_t i = 0; i < g.row_tiles.size(); ++i)
    for (std::size_t j = 0; j < g.col_tiles.size(); ++j) {
      const float v = q.scale_inv[i * q.scale_cols + j];
      for (std::size_t r = g.row_tiles[i].begin; r < g.row_tiles[i].end; ++r)
        for (std::size_t c = g.col_tiles[j].begin; c < g.col_tiles[j].end; ++c) s[r * q.cols + c] = v;
    }
  return s;
}

std::vector<float> dequantize(const QuantizedTensor& q) {
  check_tensor(q, "dequantize");
  const std::vector<float> s = element_scale_inv(q);
  std::vector<float> out(q.size());
  for (std::size_t r = 0; r < q.rows; ++r)
    for (std::size_t c = 0; c < q.cols; ++c)
      out[r * q.cols + c] = decode_f32(*q.recipe.payload, q.codes[q.code_index(r, c)]) * s[r * q.cols + c];
  return out;
}

QuantizedTensor requantize(const QuantizedTensor& q, const QuantRecipe& r, const QuantParams& p) {
  const std::vector<float> x = dequantize(q);
  return quantize(x, q.rows, q.cols, r, p, q.row_groups);
}

QuantizedTensor with_codes_transposed(QuantizedTensor q, bool transposed) {
  if (q.codes_transposed == transposed) return q;
  std::vector<std::uint8_t> out(q.codes.size());
  const std::size_t R = q.codes_transposed ? q.cols : q.rows, C = q.codes_transposed ? q.rows : q.cols;
  for (std::size_t r = 0; r < R; ++r)
    for (std::size_t c = 0; c < C; ++c) out[c * R + r] = q.codes[r * C + c];
  q.codes = std::move(out);
  q.codes_transposed = transposed;
  return q;
}

ScaleArray scale_layout(const QuantizedTensor& q, ScaleLayout layout) {
  if (layout == ScaleLayout::compact) return {q.scale_inv, q.scale_rows, q.scale_cols};
  const Granularity t = q.recipe.tile;
  const auto roundup4 = [](std::size_t n) { return (n + 3) / 4 * 4; };
  if (t.rows == 1 && t.cols > 1) {  // 1xN: (ceil(K/N), roundup(M, 4)), scale of row m, block kb at [kb][m]
    ScaleArray a{std::vector<float>(q.scale_cols * roundup4(q.scale_rows), 0.0f), q.scale_cols, roundup4(q.scale_rows)};
    for (std::size_t m = 0; m < q.scale_rows; ++m)
      for (std::size_t kb = 0; kb < q.scale_cols; ++kb) a.values[kb * a.cols + m] = q.scale_inv[m * q.scale_cols + kb];
    return a;
  }
  if (t.rows > 1 && t.rows == t.cols) {  // NxN: (ceil(M/N), roundup(ceil(K/N), 4))
    ScaleArray a{std::vector<float>(q.scale_rows * roundup4(q.scale_cols), 0.0f), q.scale_rows, roundup4(q.scale_cols)};
    for (std::size_t i = 0; i < q.scale_rows; ++i)
      for (std::size_t j = 0; j < q.scale_cols; ++j) a.values[i * a.cols + j] = q.scale_inv[i * q.scale_cols + j];
    return a;
  }
  throw InputError(fmt::format("granularity {}: no GEMM_READY scale layout (only 1xN and NxN)", to_string(t)));
}

std::vector<std::uint8_t> scales_to_ue8m0(std::span<const float> scale_inv, std::string_view what) {
  std::vector<std::uint8_t> out(scale_inv.size());
  for (std::size_t i = 0; i < scale_inv.size(); ++i) {
    const float v = scale_inv[i];
    if (std::isnan(v) || std::isinf(v)) {
      out[i] = 0xFF;
      continue;
    }
    int e = 0;
    const float m = std::frexp(v, &e);  // v = m * 2^e, m in [0.5, 1)
    if (!(v > 0.0f) || m != 0.5f || e - 1 < -127 || e - 1 > 127)
      throw InputError(fmt::format("{}: scale_inv[{}] = {} is not a power of two in [2^-127, 2^127]; cannot be "
                                   "stored as ue8m0",
                                   what, i, v));
    out[i] = std::uint8_t(e - 1 + 127);
  }
  return out;
}

std::vector<float> scales_from_ue8m0(std::span<const std::uint8_t> codes) {
  std::vector<float> out(codes.size());
  for (std::size_t i = 0; i < codes.size(); ++i)
    out[i] = codes[i] == 0xFF ? std::numeric_limits<float>::quiet_NaN() : std::ldexp(1.0f, int(codes[i]) - 127);
  return out;
}

}  // namespace fp8flow
