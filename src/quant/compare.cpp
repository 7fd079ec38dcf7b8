// Kernel-output comparison with explanations (compare.hpp, docs/check.md).
#include "quant/compare.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>
#include <unordered_map>

#include "formats/convert.hpp"
#include "io/errors.hpp"

namespace fp8flow {

std::string_view to_string(MismatchCause c) {
  switch (c) {
    case MismatchCause::layout: return "layout";
    case MismatchCause::tile_scale: return "tile_scale";
    case MismatchCause::nan_inf: return "nan_inf";
    case MismatchCause::saturation: return "saturation";
    case MismatchCause::sign_of_zero: return "sign_of_zero";
    case MismatchCause::rounding_tie: return "rounding_tie";
    case MismatchCause::underflow: return "underflow";
    case MismatchCause::rounding_ulp: return "rounding_ulp";
    case MismatchCause::other: return "other";
  }
  return "other";
}

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// Tile, column tile and group of every logical row / column.
struct TileIndex {
  std::vector<std::size_t> row_tile, col_tile, group;
  std::vector<Range> row_ranges, col_ranges;
  std::vector<std::size_t> tile_group;  // group of each row tile
};

TileIndex index_of(const QuantizedTensor& q) {
  TileIndex t;
  const TileGrid g = q.grid();
  t.row_ranges = g.row_tiles;
  t.col_ranges = g.col_tiles;
  t.row_tile.assign(q.rows, 0);
  t.col_tile.assign(q.cols, 0);
  t.group.assign(q.rows, 0);
  for (std::size_t i = 0; i < g.row_tiles.size(); ++i)
    for (std::size_t r = g.row_tiles[i].begin; r < g.row_tiles[i].end; ++r) t.row_tile[r] = i;
  for (std::size_t j = 0; j < g.col_tiles.size(); ++j)
    for (std::size_t c = g.col_tiles[j].begin; c < g.col_tiles[j].end; ++c) t.col_tile[c] = j;
  std::size_t r0 = 0;
  for (std::size_t gi = 0; gi < q.row_groups.size(); ++gi) {
    for (std::size_t r = r0; r < r0 + q.row_groups[gi] && r < q.rows; ++r) t.group[r] = gi;
    r0 += q.row_groups[gi];
  }
  t.tile_group.assign(g.row_tiles.size(), 0);
  for (std::size_t i = 0; i < g.row_tiles.size(); ++i)
    if (g.row_tiles[i].size() > 0) t.tile_group[i] = t.group[g.row_tiles[i].begin];
  return t;
}

// Codes in value order: sign-magnitude to a signed integer (+0 and -0 both 0).
std::int64_t code_order(const FormatSpec& f, std::uint32_t c) {
  const std::int64_t mag = c & magnitude_mask(f);
  return (c & sign_bit(f)) ? -mag : mag;
}
std::int64_t float_order(std::uint32_t bits) {
  const std::int64_t mag = bits & 0x7FFFFFFFu;
  return (bits & 0x80000000u) ? -mag : mag;
}

MismatchCause classify_code(const FormatSpec& f, std::uint32_t g, std::uint32_t w, double precast) {
  const bool gn = is_nan_code(f, g), wn = is_nan_code(f, w), gi = is_inf_code(f, g), wi = is_inf_code(f, w);
  const std::uint32_t mg = g & magnitude_mask(f), mw = w & magnitude_mask(f), mx = max_code(f);
  if (gn || wn || gi || wi) {
    if (std::isnan(precast)) return MismatchCause::nan_inf;
    const bool g_max = !gn && !gi && mg == mx, w_max = !wn && !wi && mw == mx;
    if (g_max || w_max || std::isinf(precast) || std::fabs(precast) > max_finite(f)) return MismatchCause::saturation;
    return MismatchCause::nan_inf;
  }
  const double vg = decode(f, g), vw = decode(f, w);
  if (vg == 0 && vw == 0) return MismatchCause::sign_of_zero;
  const std::int64_t ulp = code_order(f, g) - code_order(f, w);
  const bool one_ulp = ulp == 1 || ulp == -1;
  if (one_ulp && !std::isnan(precast) && precast == (vg + vw) / 2) return MismatchCause::rounding_tie;
  if (!std::isnan(precast) && std::fabs(precast) > max_finite(f) && (mg == mx || mw == mx))
    return MismatchCause::saturation;
  const double mn = min_normal(f);
  if (std::fabs(vg) <= mn && std::fabs(vw) <= mn) return MismatchCause::underflow;
  if (one_ulp) return MismatchCause::rounding_ulp;
  return MismatchCause::other;
}

MismatchCause classify_float(std::uint32_t g, std::uint32_t w, double precast) {
  const float fg = std::bit_cast<float>(g), fw = std::bit_cast<float>(w);
  if (std::isnan(fg) || std::isnan(fw) || std::isinf(fg) || std::isinf(fw)) {
    const float mx = std::numeric_limits<float>::max();
    if (std::fabs(fg) == mx || std::fabs(fw) == mx) return MismatchCause::saturation;
    return MismatchCause::nan_inf;
  }
  if (fg == 0 && fw == 0) return MismatchCause::sign_of_zero;
  const std::int64_t ulp = float_order(g) - float_order(w);
  const bool one_ulp = ulp == 1 || ulp == -1;
  if (one_ulp && !std::isnan(precast) && precast == (double(fg) + double(fw)) / 2) return MismatchCause::rounding_tie;
  const float mn = std::numeric_limits<float>::min();
  if (std::fabs(fg) <= mn && std::fabs(fw) <= mn) return MismatchCause::underflow;
  if (one_ulp) return MismatchCause::rounding_ulp;
  return MismatchCause::other;
}

bool same_bits(float a, float b) { return std::bit_cast<std::uint32_t>(a) == std::bit_cast<std::uint32_t>(b); }
bool same_bits(std::span<const float> a, std::span<const float> b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](float x, float y) { return same_bits(x, y); });
}

// An element's contribution to the hash of its row (salted by its column) or column (salted by its row):
// sums of these are equal for equal rows whatever order the elements are visited in (storage order here).
std::uint64_t mix(std::uint64_t pos, std::uint32_t v) {
  std::uint64_t z = (pos << 32 | v) + 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Visits every element of a [rows, cols] tensor in its storage order: fn(r, c) with c fastest for row-major
// storage, r fastest for a column copy (transposed storage), so that the codes are read sequentially.
template <class Fn>
void for_each_stored(std::size_t rows, std::size_t cols, bool transposed, Fn&& fn) {
  if (transposed) {
    for (std::size_t c = 0; c < cols; ++c)
      for (std::size_t r = 0; r < rows; ++r) fn(r, c);
  } else {
    for (std::size_t r = 0; r < rows; ++r)
      for (std::size_t c = 0; c < cols; ++c) fn(r, c);
  }
}

// Whole-tensor findings: the same rows (or columns) in another order. `get(r, c)` / `ref(r, c)` read the
// logical element; the elements are visited in storage order (`transposed`).
template <class Get, class Ref>
void permutation_findings(std::size_t rows, std::size_t cols, bool transposed, Get get, Ref ref,
                          std::vector<std::string>& out) {
  std::vector<std::uint64_t> gr(rows, 0), wr(rows, 0), gc(cols, 0), wc(cols, 0);
  for_each_stored(rows, cols, transposed, [&](std::size_t r, std::size_t c) {
    const std::uint32_t g = get(r, c), w = ref(r, c);
    gr[r] += mix(c, g);
    wr[r] += mix(c, w);
    gc[c] += mix(r, g);
    wc[c] += mix(r, w);
  });
  const auto check = [&](bool by_rows, const std::vector<std::uint64_t>& hg, const std::vector<std::uint64_t>& hw) {
    const std::size_t n = hg.size();
    if (n < 2 || hg == hw) return;
    std::vector<std::uint64_t> sg = hg, sw = hw;
    std::sort(sg.begin(), sg.end());
    std::sort(sw.begin(), sw.end());
    if (sg != sw) return;
    std::unordered_map<std::uint64_t, std::size_t> where;
    for (std::size_t i = n; i-- > 0;) where[hw[i]] = i;
    std::string ex;
    std::size_t moved = 0, shown = 0;
    for (std::size_t i = 0; i < n; ++i) {
      if (hg[i] == hw[i]) continue;
      ++moved;
      if (shown < 4) {
        ex += fmt::format("{}got {} {} = golden {} {}", shown ? ", " : "", by_rows ? "row" : "column", i,
                          by_rows ? "row" : "column", where[hg[i]]);
        ++shown;
      }
    }
    out.push_back(fmt::format("{} permuted: the same {} in another order ({} of {} moved; {}{})",
                              by_rows ? "rows" : "columns", by_rows ? "rows" : "columns", moved, n, ex,
                              moved > shown ? ", ..." : ""));
  };
  check(true, gr, wr);
  check(false, gc, wc);
}

std::string value_text(double v) {
  if (std::isnan(v)) return "nan";
  return fmt::format("{:.9g}", v);
}

}  // namespace

std::vector<std::uint8_t> codes_to_group_blocks(const QuantizedTensor& q) {
  if (!q.codes_transposed || q.row_groups.size() < 2) return q.codes;
  std::vector<std::uint8_t> out;
  out.reserve(q.codes.size());
  std::size_t r0 = 0;
  for (std::size_t m : q.row_groups) {
    for (std::size_t c = 0; c < q.cols; ++c)
      for (std::size_t r = r0; r < r0 + m; ++r) out.push_back(q.codes[c * q.rows + r]);
    r0 += m;
  }
  return out;
}

std::vector<std::uint8_t> codes_from_group_blocks(std::span<const std::uint8_t> blocks, const QuantizedTensor& shape) {
  if (blocks.size() != shape.rows * shape.cols)
    throw InputError(fmt::format("per-group blocks: {} codes for a [{}, {}] tensor", blocks.size(), shape.rows,
                                 shape.cols));
  if (!shape.codes_transposed || shape.row_groups.size() < 2) return {blocks.begin(), blocks.end()};
  std::vector<std::uint8_t> out(blocks.size());
  std::size_t r0 = 0, k = 0;
  for (std::size_t m : shape.row_groups) {
    for (std::size_t c = 0; c < shape.cols; ++c)
      for (std::size_t r = r0; r < r0 + m; ++r) out[c * shape.rows + r] = blocks[k++];
    r0 += m;
  }
  return out;
}

std::vector<double> quantize_precast(std::span<const float> x, std::size_t rows, std::size_t cols,
                                     const QuantRecipe& r, const QuantParams& p,
                                     const std::vector<std::size_t>& row_groups) {
  if (x.size() != rows * cols)
    throw InputError(fmt::format("quantize_precast: {} values for a [{}, {}] tensor", x.size(), rows, cols));
  std::vector<double> out(x.size(), kNaN);
  const TileGrid g = make_tile_grid(rows, cols, r.tile, row_groups);
  std::vector<float> block;
  for (const Range rr : g.row_tiles)
    for (const Range cc : g.col_tiles) {
      block.clear();
      for (std::size_t i = rr.begin; i < rr.end; ++i)
        for (std::size_t j = cc.begin; j < cc.end; ++j) block.push_back(x[i * cols + j]);
      const BlockScale s = block_scale(r.scale, *r.payload, block, p);
      for (std::size_t i = rr.begin; i < rr.end; ++i)
        for (std::size_t j = cc.begin; j < cc.end; ++j) {
          const float v = x[i * cols + j];
          out[i * cols + j] = s.op == BlockScale::mul ? double(v * s.factor) : double(v / s.factor);
        }
    }
  return out;
}

CompareReport compare_quantized(const QuantizedTensor& got, const QuantizedTensor& want, const CompareContext& ctx) {
  if (got.rows != want.rows || got.cols != want.cols)
    throw InputError(fmt::format("compare: got shape [{}, {}], golden [{}, {}]", got.rows, got.cols, want.rows,
                                 want.cols));
  if (got.recipe.payload != want.recipe.payload)
    throw InputError(fmt::format("compare: got format {}, golden {}", got.recipe.payload->name,
                                 want.recipe.payload->name));
  if (got.codes.size() != want.size() || want.codes.size() != want.size())
    throw InputError(fmt::format("compare: {} codes for a [{}, {}] tensor", got.codes.size(), want.rows, want.cols));
  if (!ctx.input.empty() && ctx.input.size() != want.size())
    throw InputError(fmt::format("compare: {} input values for a [{}, {}] tensor", ctx.input.size(), want.rows,
                                 want.cols));
  if (!ctx.precast.empty() && ctx.precast.size() != want.size())
    throw InputError(fmt::format("compare: {} pre-cast values for a [{}, {}] tensor", ctx.precast.size(), want.rows,
                                 want.cols));
  const FormatSpec& f = *want.recipe.payload;
  CompareReport rep;
  rep.what = "codes";
  rep.format = std::string(f.name);
  rep.rows = want.rows;
  rep.cols = want.cols;
  rep.elements = want.size();
  rep.scales = want.scale_inv.size();
  const TileIndex ti = index_of(want);
  const std::size_t sc = want.scale_cols;

  // Scales: the same grid, or (a layout finding) the transposed or GEMM-ready one.
  bool scales_transposed = false;
  if (got.scale_rows != want.scale_rows || got.scale_cols != want.scale_cols ||
      got.scale_inv.size() != want.scale_inv.size()) {
    bool explained = false;
    if (got.scale_rows == want.scale_cols && got.scale_cols == want.scale_rows &&
        got.scale_inv.size() == want.scale_inv.size()) {
      std::vector<float> t(want.scale_inv.size());
      for (std::size_t i = 0; i < want.scale_rows; ++i)
        for (std::size_t j = 0; j < want.scale_cols; ++j) t[j * want.scale_rows + i] = want.scale_inv[i * sc + j];
      if (same_bits(got.scale_inv, t)) {
        rep.layout.push_back(fmt::format("scale_inv stored transposed: [{}, {}] where the golden grid is [{}, {}]",
                                         got.scale_rows, got.scale_cols, want.scale_rows, want.scale_cols));
        scales_transposed = explained = true;
      }
    }
    if (!explained) {
      try {
        const ScaleArray gr = scale_layout(want, ScaleLayout::gemm_ready);
        if (got.scale_inv.size() == gr.values.size() && same_bits(got.scale_inv, gr.values))
          rep.layout.push_back(fmt::format("scale_inv in the GEMM-ready layout [{}, {}] (transposed, padded); the "
                                           "golden COMPACT grid is [{}, {}]",
                                           gr.rows, gr.cols, want.scale_rows, want.scale_cols));
      } catch (const InputError&) {
      }
      if (rep.layout.empty())
        throw InputError(fmt::format("compare: got scale_inv [{}, {}] ({} values), golden grid [{}, {}] for "
                                     "granularity {} on [{}, {}]",
                                     got.scale_rows, got.scale_cols, got.scale_inv.size(), want.scale_rows,
                                     want.scale_cols, to_string(want.recipe.tile), want.rows, want.cols));
      // A GEMM-ready grid: every scale counts as differing (layout); elements are compared by value below
      // against the golden scales, so that the codes are still checked.
      rep.scales_mismatched = rep.scales;
    }
  }
  const bool scales_comparable = rep.scales_mismatched == 0;
  const auto got_scale = [&](std::size_t i, std::size_t j) -> float {
    if (!scales_comparable) return want.scale_inv[i * sc + j];
    return scales_transposed ? got.scale_inv[j * want.scale_rows + i] : got.scale_inv[i * sc + j];
  };
  if (scales_transposed) {
    rep.scales_mismatched = rep.scales;  // in place, a transposed grid is a different array (layout)
  } else if (scales_comparable) {
    for (std::size_t i = 0; i < want.scale_rows; ++i)
      for (std::size_t j = 0; j < want.scale_cols; ++j) {
        const float g = got_scale(i, j), w = want.scale_inv[i * sc + j];
        if (same_bits(g, w)) continue;
        ++rep.scales_mismatched;
        if (rep.scale_mismatches.size() < ctx.max_listed) {
          ScaleMismatch m;
          m.row_tile = i;
          m.col_tile = j;
          m.group = ti.tile_group[i];
          m.rows = ti.row_ranges[i];
          m.cols = ti.col_ranges[j];
          m.got = g;
          m.want = w;
          m.log2_ratio = (g > 0 && w > 0 && std::isfinite(g) && std::isfinite(w)) ? std::log2(double(g) / double(w)) : kNaN;
          rep.scale_mismatches.push_back(m);
        }
      }
  }

  const auto gcode = [&](std::size_t r, std::size_t c) -> std::uint32_t { return got.codes[got.code_index(r, c)]; };
  const auto wcode = [&](std::size_t r, std::size_t c) -> std::uint32_t { return want.codes[want.code_index(r, c)]; };

  // Whole-tensor code layout findings (only when codes differ at all).
  bool codes_differ;
  if (got.codes_transposed == want.codes_transposed) {
    codes_differ = got.codes != want.codes;
  } else {
    codes_differ = false;
    for_each_stored(want.rows, want.cols, want.codes_transposed, [&](std::size_t r, std::size_t c) {
      codes_differ = codes_differ || gcode(r, c) != wcode(r, c);
    });
  }
  bool layout_explains = false;
  if (codes_differ) {
    const std::string want_layout = want.codes_transposed ? fmt::format("[{}, {}] (a column copy)", want.cols, want.rows)
                                                          : fmt::format("[{}, {}]", want.rows, want.cols);
    const QuantizedTensor other = with_codes_transposed(want, !want.codes_transposed);
    if (got.codes == other.codes) {
      rep.layout.push_back(fmt::format("codes stored the other way round: the got buffer holds the golden codes as "
                                       "[{}, {}] where the checked layout is {}",
                                       other.codes_transposed ? want.cols : want.rows,
                                       other.codes_transposed ? want.rows : want.cols, want_layout));
      layout_explains = true;
    } else if (want.codes_transposed && want.row_groups.size() > 1 && got.codes == codes_to_group_blocks(want)) {
      rep.layout.push_back(fmt::format("codes stored as per-group blocks [cols, m_g] one after another ({} groups) "
                                       "where the checked layout is one {} array",
                                       want.row_groups.size(), want_layout));
      layout_explains = true;
    } else {
      const std::size_t before = rep.layout.size();
      permutation_findings(want.rows, want.cols, want.codes_transposed, gcode, wcode, rep.layout);
      layout_explains = rep.layout.size() > before;
    }
  }

  std::int64_t max_ulp = 0;
  if (codes_differ) for_each_stored(want.rows, want.cols, want.codes_transposed, [&](std::size_t r, std::size_t c) {
      const std::uint32_t g = gcode(r, c), w = wcode(r, c);
      if (g == w) return;
      ++rep.elements_mismatched;
      const std::size_t rt = ti.row_tile[r], ct = ti.col_tile[c];
      const float sg = got_scale(rt, ct), sw = want.scale_inv[rt * sc + ct];
      const std::size_t idx = r * want.cols + c;
      const double input = ctx.input.empty() ? kNaN : ctx.input[idx];
      const double precast = !ctx.precast.empty() ? ctx.precast[idx]
                             : (!ctx.input.empty() && sw != 0) ? ctx.input[idx] / double(sw)
                                                               : kNaN;
      MismatchCause cause;
      if (layout_explains) cause = MismatchCause::layout;
      else if (!same_bits(sg, sw)) cause = MismatchCause::tile_scale;
      else cause = classify_code(f, g, w, precast);
      ++rep.by_cause[std::size_t(cause)];
      const std::int64_t ulp = code_order(f, g) - code_order(f, w);
      if (cause != MismatchCause::layout && cause != MismatchCause::tile_scale && !is_nan_code(f, g) &&
          !is_nan_code(f, w) && !is_inf_code(f, g) && !is_inf_code(f, w))
        max_ulp = std::max(max_ulp, ulp < 0 ? -ulp : ulp);
      if (rep.mismatches.size() < ctx.max_listed) {
        ElementMismatch m;
        m.row = r;
        m.col = c;
        m.row_tile = rt;
        m.col_tile = ct;
        m.group = ti.group[r];
        m.input = input;
        m.precast = precast;
        m.got_code = g;
        m.want_code = w;
        m.got_scale_inv = sg;
        m.want_scale_inv = sw;
        m.got_value = decode(f, g) * double(sg);
        m.want_value = decode(f, w) * double(sw);
        m.ulp = ulp;
        m.cause = cause;
        rep.mismatches.push_back(m);
      }
    });
  rep.max_abs_ulp = max_ulp;
  return rep;
}

CompareReport compare_values(std::span<const float> got, std::span<const float> want, std::size_t rows,
                             std::size_t cols, const CompareContext& ctx) {
  if (want.size() != rows * cols || got.size() != want.size())
    throw InputError(fmt::format("compare: got {} values, golden {}, for a [{}, {}] tensor", got.size(), want.size(),
                                 rows, cols));
  if (!ctx.input.empty() && ctx.input.size() != want.size())
    throw InputError(fmt::format("compare: {} input values for a [{}, {}] tensor", ctx.input.size(), rows, cols));
  CompareReport rep;
  rep.what = "values";
  rep.format = "f32";
  rep.rows = rows;
  rep.cols = cols;
  rep.elements = want.size();
  const auto gb = [&](std::size_t r, std::size_t c) { return std::bit_cast<std::uint32_t>(got[r * cols + c]); };
  const auto wb = [&](std::size_t r, std::size_t c) { return std::bit_cast<std::uint32_t>(want[r * cols + c]); };
  bool differ = false;
  for (std::size_t i = 0; i < want.size() && !differ; ++i) differ = !same_bits(got[i], want[i]);
  bool layout_explains = false;
  if (differ) {
    if (rows > 1 && cols > 1) {
      bool transposed = true;  // got holds want^T as a [cols, rows] buffer
      for (std::size_t r = 0; r < rows && transposed; ++r)
        for (std::size_t c = 0; c < cols; ++c)
          if (std::bit_cast<std::uint32_t>(got[c * rows + r]) != wb(r, c)) {
            transposed = false;
            break;
          }
      if (transposed) {
        rep.layout.push_back(fmt::format("values stored transposed: the got buffer holds the golden [{}, {}] as [{}, {}]",
                                         rows, cols, cols, rows));
        layout_explains = true;
      }
    }
    if (!layout_explains) {
      permutation_findings(rows, cols, false, gb, wb, rep.layout);
      layout_explains = !rep.layout.empty();
    }
  }
  std::int64_t max_ulp = 0;
  for (std::size_t r = 0; r < rows; ++r)
    for (std::size_t c = 0; c < cols; ++c) {
      const std::uint32_t g = gb(r, c), w = wb(r, c);
      if (g == w) continue;
      ++rep.elements_mismatched;
      const std::size_t idx = r * cols + c;
      const double input = ctx.input.empty() ? kNaN : ctx.input[idx];
      const double precast = ctx.precast.empty() ? kNaN : ctx.precast[idx];
      const MismatchCause cause = layout_explains ? MismatchCause::layout : classify_float(g, w, precast);
      ++rep.by_cause[std::size_t(cause)];
      const std::int64_t ulp = float_order(g) - float_order(w);
      const float fg = std::bit_cast<float>(g), fw = std::bit_cast<float>(w);
      if (cause != MismatchCause::layout && std::isfinite(fg) && std::isfinite(fw))
        max_ulp = std::max(max_ulp, ulp < 0 ? -ulp : ulp);
      if (rep.mismatches.size() < ctx.max_listed) {
        ElementMismatch m;
        m.row = r;
        m.col = c;
        m.input = input;
        m.precast = precast;
        m.got_code = g;
        m.want_code = w;
        m.got_value = fg;
        m.want_value = fw;
        m.ulp = ulp;
        m.cause = cause;
        rep.mismatches.push_back(m);
      }
    }
  rep.max_abs_ulp = max_ulp;
  return rep;
}

namespace {
nlohmann::json num(double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(value_text(v)); }
std::string code_text(const CompareReport& r, std::uint32_t c) {
  return r.what == "values" ? fmt::format("0x{:08x}", c) : fmt::format("0x{:02x}", c);
}
double pct(std::size_t a, std::size_t b) { return b ? 100.0 * double(a) / double(b) : 0.0; }
}  // namespace

nlohmann::json to_json(const CompareReport& r) {
  nlohmann::json causes = nlohmann::json::object();
  for (std::size_t i = 0; i < kMismatchCauses; ++i)
    if (r.by_cause[i]) causes[std::string(to_string(MismatchCause(i)))] = r.by_cause[i];
  nlohmann::json els = nlohmann::json::array();
  for (const auto& m : r.mismatches) {
    nlohmann::json e = {{"row", m.row},
                        {"col", m.col},
                        {"row_tile", m.row_tile},
                        {"col_tile", m.col_tile},
                        {"group", m.group},
                        {"input", num(m.input)},
                        {"precast", num(m.precast)},
                        {"got_code", m.got_code},
                        {"want_code", m.want_code},
                        {"got_value", num(m.got_value)},
                        {"want_value", num(m.want_value)},
                        {"ulp", m.ulp},
                        {"cause", to_string(m.cause)}};
    if (r.what == "codes") {
      e["got_scale_inv"] = num(m.got_scale_inv);
      e["want_scale_inv"] = num(m.want_scale_inv);
    }
    els.push_back(std::move(e));
  }
  nlohmann::json sc = nlohmann::json::array();
  for (const auto& m : r.scale_mismatches)
    sc.push_back({{"row_tile", m.row_tile},
                  {"col_tile", m.col_tile},
                  {"group", m.group},
                  {"rows", {m.rows.begin, m.rows.end}},
                  {"cols", {m.cols.begin, m.cols.end}},
                  {"got", num(m.got)},
                  {"want", num(m.want)},
                  {"log2_ratio", num(m.log2_ratio)}});
  return {{"bitexact", r.bitexact()},
          {"what", r.what},
          {"format", r.format},
          {"shape", {r.rows, r.cols}},
          {"elements", r.elements},
          {"elements_mismatched", r.elements_mismatched},
          {"element_mismatch_fraction", r.elements ? double(r.elements_mismatched) / double(r.elements) : 0.0},
          {"scales", r.scales},
          {"scales_mismatched", r.scales_mismatched},
          {"scale_mismatch_fraction", r.scales ? double(r.scales_mismatched) / double(r.scales) : 0.0},
          {"max_abs_ulp", r.max_abs_ulp},
          {"causes", causes},
          {"layout", r.layout},
          {"mismatches", els},
          {"scale_mismatches", sc}};
}

std::string to_text(const CompareReport& r) {
  std::string s = fmt::format("{} {} [{}, {}]: {} of {} {} differ ({:.4g}%)", r.what, r.format, r.rows, r.cols,
                              r.elements_mismatched, r.elements, r.what == "codes" ? "codes" : "values",
                              pct(r.elements_mismatched, r.elements));
  if (r.what == "codes")
    s += fmt::format(", {} of {} scales differ ({:.4g}%)", r.scales_mismatched, r.scales,
                     pct(r.scales_mismatched, r.scales));
  s += "\n";
  if (r.bitexact()) return s + "BIT-EXACT\n";
  if (r.elements_mismatched) {
    s += "causes:";
    for (std::size_t i = 0; i < kMismatchCauses; ++i)
      if (r.by_cause[i]) s += fmt::format(" {} {}", to_string(MismatchCause(i)), r.by_cause[i]);
    s += fmt::format("; max |ulp| {} (finite, same scale)\n", r.max_abs_ulp);
  }
  for (const auto& l : r.layout) s += fmt::format("layout: {}\n", l);
  if (!r.mismatches.empty()) {
    s += fmt::format("first {} differing elements (row, col; tile = scale tile row, col; group = expert group):\n",
                     r.mismatches.size());
    s += fmt::format("  {:>6} {:>6} {:>9} {:>5} {:>14} {:>24} {:>24} {:>6}  {}\n", "row", "col", "tile", "group",
                     "input", "got", "golden", "ulp", "cause");
    for (const auto& m : r.mismatches) {
      const std::string tile = fmt::format("({},{})", m.row_tile, m.col_tile);
      s += fmt::format("  {:>6} {:>6} {:>9} {:>5} {:>14} {:>24} {:>24} {:>6}  {}\n", m.row, m.col, tile, m.group,
                       value_text(m.input), fmt::format("{} ({})", code_text(r, m.got_code), value_text(m.got_value)),
                       fmt::format("{} ({})", code_text(r, m.want_code), value_text(m.want_value)), m.ulp,
                       to_string(m.cause));
      if (m.cause == MismatchCause::tile_scale)
        s += fmt::format("  {:>6} {:>6}   tile scale_inv got {} golden {}\n", "", "", value_text(m.got_scale_inv),
                         value_text(m.want_scale_inv));
    }
  }
  if (!r.scale_mismatches.empty()) {
    s += fmt::format("first {} differing scales:\n", r.scale_mismatches.size());
    for (const auto& m : r.scale_mismatches)
      s += fmt::format("  tile ({},{}) group {} rows [{}, {}) cols [{}, {}): got {} golden {}{}\n", m.row_tile,
                       m.col_tile, m.group, m.rows.begin, m.rows.end, m.cols.begin, m.cols.end, value_text(m.got),
                       value_text(m.want),
                       std::isnan(m.log2_ratio) ? "" : fmt::format(" (ratio 2^{:.4g})", m.log2_ratio));
  }
  return s + "MISMATCH\n";
}

}  // namespace fp8flow
