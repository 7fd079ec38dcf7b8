// Scaling-aware transposes (PAPER.md 3.5) and the double-quantizing naive path.
#include "formats/cpu_features.hpp"
#include "formats/parallel_chunks.hpp"
#include "quant/transpose.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <tuple>

#include "formats/convert.hpp"
#include "io/errors.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace fp8flow {

std::string_view to_string(TransposeMethod m) {
  switch (m) {
    case TransposeMethod::naive: return "naive";
    case TransposeMethod::paper_kernel: return "paper_kernel";
    case TransposeMethod::exact: return "exact";
    case TransposeMethod::direct: return "direct";
  }
  return "?";
}

TransposeMethod parse_transpose_method(std::string_view s) {
  for (auto m : {TransposeMethod::naive, TransposeMethod::paper_kernel, TransposeMethod::exact, TransposeMethod::direct})
    if (to_string(m) == s) return m;
  throw InputError(fmt::format("transpose method '{}': expected one of {}", s, kTransposeMethodNames));
}

namespace {
// On the bits (frexp per scale cost the 4096^2 transpose a few percent): +-0, or positive and finite with
// a zero mantissa (normal) or a single mantissa bit (subnormal).
bool is_pow2_or_zero(float v) {
  const std::uint32_t b = std::bit_cast<std::uint32_t>(v);
  const std::uint32_t field = (b >> 23) & 0xFFu, m = b & 0x7FFFFFu;
  if ((b & 0x7FFFFFFFu) == 0) return true;
  if ((b >> 31) != 0 || field == 0xFFu) return false;
  return field != 0 ? m == 0 : (m & (m - 1)) == 0;
}
int exponent_field(float v) { return int((std::bit_cast<std::uint32_t>(v) >> 23) & 0xFFu) - 127; }
}  // namespace

void check_sat_input(const QuantizedTensor& q, std::string_view what) {
  check_tensor(q, what);
  if (q.recipe.tile.rows != 1 || q.recipe.tile.cols < 2)
    throw InputError(fmt::format("{}: granularity {}: the transposes need a rowwise 1xN input (e.g. 1x128)", what,
                                 to_string(q.recipe.tile)));
  if (q.codes_transposed)
    throw InputError(fmt::format("{}: the input is already a column copy (codes stored transposed)", what));
  if (q.rows == 0 || q.cols == 0) throw InputError(fmt::format("{}: empty tensor [{}, {}]", what, q.rows, q.cols));
  for (std::size_t i = 0; i < q.scale_inv.size(); ++i)
    if (!is_pow2_or_zero(q.scale_inv[i]))
      throw InputError(fmt::format("{}: scale_inv[{}, {}] = {:.9g} is not a power of two (or 0): the scaling-aware "
                                   "transpose needs power-of-two scales (te_pow2, deepgemm_ue8m0, paper_swiglu, mx_*)",
                                   what, i / q.scale_cols, i % q.scale_cols, q.scale_inv[i]));
}

int sat_shift_fields(float tile_scale_inv, float row_scale_inv) {
  return exponent_field(tile_scale_inv) - exponent_field(row_scale_inv);
}

std::uint8_t sat_paper_kernel_code(const FormatSpec& f, std::uint8_t code, int k) {
  const int M = f.man;
  const std::uint32_t emask = (1u << f.exp) - 1u, mmask = (1u << M) - 1u;
  const std::uint32_t s = code & sign_bit(f);
  const int e = int((code >> M) & emask);
  const std::uint32_t m = code & mmask;
  int e2 = e - k;
  if (e2 < 1) e2 = 0;  // the kernel's clamp: keeps m under exponent field 0 (not a rounded subnormal)
  std::uint32_t out = s | (std::uint32_t(e2) << M) | m;
  if (e == 0) out = 0x00;  // input subnormals and +-0 become +0, even for k = 0
  return std::uint8_t(out);
}

std::uint8_t sat_exact_code(const FormatSpec& f, std::uint8_t code, float row_scale_inv, float tile_scale_inv,
                            Rounding rounding, std::uint64_t random) {
  const double v = decode(f, code);
  // si / T = 2^-k is exact in double, and so is v * 2^-k: one rounding, in the encoder.
  const double x = row_scale_inv == 0.0f ? v * 0.0 : v * (double(row_scale_inv) / double(tile_scale_inv));
  return std::uint8_t(encode(f, x, CastPolicy{rounding, Overflow::satfinite}, random));
}

int sat_shift_form_code(const SatShiftForm& s, std::uint8_t code) {
  const std::uint8_t mag = code & s.mag_mask;
  const bool neg = (code & s.sign) != 0;
  if (mag > s.max_mag) return -1;
  if (mag >= s.hi) return (mag - s.sub) | (code & s.sign);
  if (mag >= s.base) return neg ? s.win_neg[mag - s.base] : s.win_pos[mag - s.base];
  if (mag == 0) return neg ? s.zero_neg : s.zero_pos;
  return neg ? s.deep_neg : s.deep_pos;
}

std::optional<SatShiftForm> sat_exact_shift_form(const FormatSpec& f, Rounding rounding, int k) {
  const int M = f.man;
  // Signed formats with a zero, one byte, and a window of (M+1) << M <= 32 codes (every FP8/FP6/FP4 format).
  if (!f.sign || !f.zero || total_bits(f) > 8 || ((M + 1) << M) > 32 || rounding == Rounding::stochastic ||
      k < 0 || k > kSatZeroRow)
    return std::nullopt;
  const auto golden = [&](unsigned c) {
    return k == kSatZeroRow ? sat_exact_code(f, std::uint8_t(c), 0.0f, 1.0f, rounding)
                            : sat_exact_code(f, std::uint8_t(c), std::ldexp(1.0f, -k), 1.0f, rounding);
  };
  SatShiftForm s;
  s.mag_mask = std::uint8_t(magnitude_mask(f));
  s.sign = std::uint8_t(sign_bit(f));
  s.max_mag = std::uint8_t(max_code(f));  // NaN and Inf codes lie above (FNUZ's NaN 0x80 has mag 0)
  // mag >= (k+1) << M: exponent field e >= k + 1, so e - k >= 1 and value * 2^-k is a normal code, exactly.
  // The zero row has no such codes. Below, e <= k: value * 2^-k = (2^M + m) 2^(e-k-1) quanta of the
  // subnormal grid, a non-trivial rounding only while that is >= 1/2 quantum, i.e. e >= k - M; the
  // window [base, hi) covers those M+1 binades (32 codes for M = 3; more binades for smaller M).
  const int hi = k == kSatZeroRow ? int(s.max_mag) + 1 : std::min((k + 1) << M, int(s.max_mag) + 1);
  s.hi = k == kSatZeroRow || hi > int(s.max_mag) ? std::uint8_t(0xFF) : std::uint8_t(hi);
  s.sub = s.hi == 0xFF ? 0 : std::uint8_t(k << M);
  s.base = std::uint8_t(std::max(0, hi - 32));
  for (int mag = s.base; mag < hi; ++mag) {
    s.win_pos[mag - s.base] = golden(unsigned(mag));
    s.win_neg[mag - s.base] = golden(unsigned(mag) | s.sign);
  }
  s.deep_pos = golden(1u);
  s.deep_neg = golden(1u | s.sign);
  s.zero_pos = golden(0u);
  s.zero_neg = golden(s.sign);
  for (unsigned c = 0; c < 256; ++c) {
    const int got = sat_shift_form_code(s, std::uint8_t(c));
    if (got >= 0 && std::uint8_t(got) != golden(c)) return std::nullopt;
  }
  return s;
}

namespace {

// The origin recorded with a SAT column copy (PREFIX.meta.json): the method, and for exact a rounding other
// than rne with the seed of a stochastic one, so the file says how to make it again.
std::string sat_origin(TransposeMethod m, Rounding rounding, std::uint64_t seed) {
  std::string o = fmt::format("transpose:{}", to_string(m));
  if (m == TransposeMethod::exact && rounding != Rounding::rne) o += fmt::format(" round={}", to_string(rounding));
  if (m == TransposeMethod::exact && rounding == Rounding::stochastic) o += fmt::format(" seed={}", seed);
  return o;
}

QuantizedTensor sat_output(const QuantizedTensor& in, const std::vector<std::size_t>& groups, std::string origin) {
  QuantizedTensor out;
  out.rows = in.rows;
  out.cols = in.cols;
  out.recipe = {Granularity{in.recipe.tile.cols, 1}, in.recipe.payload, in.recipe.scale};
  out.params = in.params;
  out.row_groups = groups;
  out.codes_transposed = true;
  out.origin = std::move(origin);
  const TileGrid g = out.grid();
  out.scale_rows = g.row_tiles.size();
  out.scale_cols = in.cols;
  out.scale_inv.assign(out.scale_rows * out.scale_cols, 0.0f);
  out.codes.assign(in.rows * in.cols, 0);
  return out;
}

float tile_max_scale(const QuantizedTensor& in, Range rows, std::size_t cb) {
  float t = 0.0f;
  for (std::size_t r = rows.begin; r < rows.end; ++r) t = std::max(t, in.scale_inv[r * in.scale_cols + cb]);
  return t;
}

}  // namespace

namespace golden {
QuantizedTensor transpose_sat(const QuantizedTensor& in, const std::vector<std::size_t>& groups, TransposeMethod m,
                              Rounding rounding, std::uint64_t seed) {
  check_sat_input(in, "transpose");
  if (m != TransposeMethod::paper_kernel && m != TransposeMethod::exact)
    throw std::invalid_argument("golden::transpose_sat: paper_kernel or exact");
  QuantizedTensor out = sat_output(in, groups, sat_origin(m, rounding, seed));
  const std::size_t N = std::size_t(in.recipe.tile.cols), R = in.rows, C = in.cols;
  const TileGrid g = out.grid();
  for (std::size_t ti = 0; ti < g.row_tiles.size(); ++ti) {
    const Range rt = g.row_tiles[ti];
    for (std::size_t cb = 0; cb < in.scale_cols; ++cb) {
      const std::size_t c0 = cb * N, c1 = std::min(C, c0 + N);
      const float T = tile_max_scale(in, rt, cb);
      for (std::size_t c = c0; c < c1; ++c) out.scale_inv[ti * C + c] = T;
      for (std::size_t r = rt.begin; r < rt.end; ++r) {
        const float si = in.scale_inv[r * in.scale_cols + cb];
        for (std::size_t c = c0; c < c1; ++c) {
          const std::uint8_t q = in.codes[r * C + c];
          const std::uint64_t random = rounding == Rounding::stochastic ? philox_bits(seed, r * C + c) : 0;
          out.codes[c * R + r] = m == TransposeMethod::paper_kernel
                                     ? sat_paper_kernel_code(*in.recipe.payload, q, sat_shift_fields(T, si))
                                     : sat_exact_code(*in.recipe.payload, q, si, T, rounding, random);
        }
      }
    }
  }
  return out;
}
}  // namespace golden

// ---- Fast path: one 256-entry table per shift k, a tile buffer, and OpenMP over row tiles ----------
// With AVX2 the table lookups are vpshufb (32 codes at a time) and the tile is transposed in 16x16 byte
// blocks (transpose_fast_avx2.cpp); otherwise transpose_kernels.inc's scalar loop.
#define FP8FLOW_DECLARE_ISA(NS)                                                                             \
  namespace NS {                                                                                            \
  void sat_tile_lut(const std::uint8_t*, std::size_t, std::size_t, std::size_t, std::size_t, std::size_t,   \
                    const std::uint8_t* const*, std::uint8_t*, std::uint8_t*, std::size_t);                 \
  }
FP8FLOW_DECLARE_ISA(isa_generic)
FP8FLOW_DECLARE_ISA(isa_avx2)
#undef FP8FLOW_DECLARE_ISA
namespace isa_avx2 {  // transpose_fast_avx2.cpp: the same tile job with vpshufb lookups and 16x16 byte transposes
void sat_xor_form(const std::uint8_t* t, std::uint8_t* x);
void sat_tile_pshufb(const std::uint8_t*, std::size_t, std::size_t, std::size_t, std::size_t, std::size_t,
                     const std::uint8_t* const*, const std::uint8_t* const*, const SatShiftForm* const*,
                     std::uint8_t*, std::uint8_t*, std::size_t);
}  // namespace isa_avx2

namespace {


// Every shift at or beyond kMaxShift gives the same result as kMaxShift: paper_kernel's e - k < 1 for all
// e <= 31, and exact's value(q) * 2^-k lies below half the smallest subnormal of every 8-bit format
// (deterministic modes only: stochastic rounding's P(up) keeps shrinking with k, see transpose_sat_fast).
constexpr int kMaxShift = kSatMaxShift;
constexpr int kZeroRow = kSatZeroRow;  // exact: a row with scale_inv 0 (value * 0)

struct ShiftTables {
  std::vector<std::array<std::uint8_t, 256>> t;
  std::vector<std::array<std::uint8_t, 256>> x;  // AVX2: t in the vpshufb form (isa_avx2::sat_xor_form)
  std::vector<std::optional<SatShiftForm>> form;  // AVX2, exact: the compare/blend form where it exists
  ShiftTables(const FormatSpec& f, TransposeMethod m, Rounding rounding) : t(kZeroRow + 1) {
    for (int k = 0; k <= kMaxShift; ++k)
      for (unsigned c = 0; c < 256; ++c)
        t[k][c] = m == TransposeMethod::paper_kernel
                      ? sat_paper_kernel_code(f, std::uint8_t(c), k)
                      : sat_exact_code(f, std::uint8_t(c), std::ldexp(1.0f, -k), 1.0f, rounding);
    for (unsigned c = 0; c < 256; ++c)
      t[kZeroRow][c] = m == TransposeMethod::paper_kernel ? t[kMaxShift][c]
                                                           : sat_exact_code(f, std::uint8_t(c), 0.0f, 1.0f, rounding);
    if (cpu_has_avx2()) {
      x.resize(t.size());
      for (std::size_t k = 0; k < t.size(); ++k) isa_avx2::sat_xor_form(t[k].data(), x[k].data());
      form.resize(t.size());
      if (m == TransposeMethod::exact)
        for (std::size_t k = 0; k < t.size(); ++k) form[k] = sat_exact_shift_form(f, rounding, int(k));
    }
  }
};

// The tables of (format, method, rounding), built once per process (they are pure functions of the three)
// and kept: building them costs ~10^4 scalar conversions, as much as transposing a 512x512 tensor.
const ShiftTables& shift_tables(const FormatSpec& f, TransposeMethod m, Rounding rounding) {
  static std::mutex mu;
  static std::map<std::tuple<const FormatSpec*, TransposeMethod, Rounding>, std::unique_ptr<const ShiftTables>> cache;
  const std::lock_guard<std::mutex> lock(mu);
  auto& t = cache[{&f, m, rounding}];
  if (!t) t = std::make_unique<const ShiftTables>(f, m, rounding);
  return *t;
}

// std::ilogb for the positive finite scales here: the exponent field, or libm for a subnormal.
int ilogb_fast(float v) {
  const int field = int((std::bit_cast<std::uint32_t>(v) >> 23) & 0xFFu);
  return field != 0 ? field - 127 : std::ilogb(v);
}

int row_table(TransposeMethod m, float T, float si) {
  int k;
  if (m == TransposeMethod::paper_kernel) {
    k = sat_shift_fields(T, si);
  } else {
    if (si == 0.0f) return kZeroRow;
    k = ilogb_fast(T) - ilogb_fast(si);
  }
  return std::clamp(k, 0, kMaxShift);
}

// exact under Rounding::stochastic, one h x w tile: codes that stay normal (e - k >= 1, the shift is exact)
// are shifted; every other code takes sat_exact_code with its own Philox draw, the golden loop's call,
// with the true si and T (no shift clamp: P(up) keeps shrinking with k). Columns go out as in sat_tile_lut.
void sat_tile_stochastic(const QuantizedTensor& in, std::size_t row0, std::size_t h, std::size_t c0, std::size_t w,
                         std::size_t cb, float T, std::uint64_t seed, std::uint8_t* __restrict buf,
                         std::uint8_t* __restrict dst) {
  const FormatSpec& f = *in.recipe.payload;
  const std::size_t R = in.rows, C = in.cols;
  const std::uint32_t mag_mask = magnitude_mask(f), sbit = sign_bit(f), max_mag = max_code(f);
  for (std::size_t r = 0; r < h; ++r) {
    const std::size_t row = row0 + r;
    const float si = in.scale_inv[row * in.scale_cols + cb];
    // (k + 1) << M as a bound on mag; si == 0 (value * 0): none stays normal.
    const long long k = si == 0.0f ? -1 : std::ilogb(T) - std::ilogb(si);
    const long long hi = k < 0 || k > 64 ? (1ll << 62) : (k + 1) << f.man;
    const std::uint8_t* src = in.codes.data() + row * C + c0;
    for (std::size_t c = 0; c < w; ++c) {
      const std::uint32_t q = src[c], mag = q & mag_mask;
      buf[c * h + r] = (mag <= max_mag && (long long)mag >= hi)
                           ? std::uint8_t((mag - (std::uint32_t(k) << f.man)) | (q & sbit))
                           : sat_exact_code(f, std::uint8_t(q), si, T, Rounding::stochastic,
                                            philox_bits(seed, row * C + c0 + c));
    }
  }
  for (std::size_t c = 0; c < w; ++c) std::memcpy(dst + (c0 + c) * R + row0, buf + c * h, h);
}

void transpose_sat_fast(const QuantizedTensor& in, const std::vector<std::size_t>& groups, TransposeMethod m,
                        Rounding rounding, int threads, QuantizedTensor& out, std::uint64_t seed) {
  check_sat_input(in, "transpose");
  if (m != TransposeMethod::paper_kernel && m != TransposeMethod::exact)
    throw std::invalid_argument("transpose_sat_into: paper_kernel or exact");
  if (m == TransposeMethod::paper_kernel) rounding = Rounding::rne;  // no rounding step: one set of tables
  // Reuse out's buffers: every code and scale is written below, so no clearing is needed.
  std::vector<std::uint8_t> codes = std::move(out.codes);
  std::vector<float> scales = std::move(out.scale_inv);
  out = QuantizedTensor{};
  out.rows = in.rows;
  out.cols = in.cols;
  out.recipe = {Granularity{in.recipe.tile.cols, 1}, in.recipe.payload, in.recipe.scale};
  out.params = in.params;
  out.row_groups = groups;
  out.codes_transposed = true;
  out.origin = sat_origin(m, rounding, seed);
  const TileGrid g = out.grid();
  out.scale_rows = g.row_tiles.size();
  out.scale_cols = in.cols;
  codes.resize(in.rows * in.cols);
  scales.resize(out.scale_rows * out.scale_cols);
  out.codes = std::move(codes);
  out.scale_inv = std::move(scales);

  const bool stochastic = rounding == Rounding::stochastic;
  const ShiftTables* tables = stochastic ? nullptr : &shift_tables(*in.recipe.payload, m, rounding);
  const std::size_t N = std::size_t(in.recipe.tile.cols), R = in.rows, C = in.cols;
  const auto ntiles = static_cast<long long>(g.row_tiles.size());
  const std::uint8_t* __restrict src = in.codes.data();
  std::uint8_t* __restrict dst = out.codes.data();
  float* __restrict tscale = out.scale_inv.data();
  // Per-task scratch: one tile's table pointers and the tile buffer (the AVX2 kernel uses a row-major and a
  // column-major tile). Row tiles have at most N rows.
  struct Scratch {
    std::vector<const std::uint8_t*> lut, xlut;
    std::vector<const SatShiftForm*> form;
    std::vector<std::uint8_t> buf;
    explicit Scratch(std::size_t n) : lut(n), xlut(n), form(n), buf(2 * n * n) {}
  };
  const auto tile = [&](std::size_t ti, std::size_t cb, Scratch& s) {
    const Range rt = g.row_tiles[ti];
    const std::size_t h = rt.size();
    const std::size_t c0 = cb * N, w = std::min(C, c0 + N) - c0;
    const float T = tile_max_scale(in, rt, cb);
    for (std::size_t c = 0; c < w; ++c) tscale[ti * C + c0 + c] = T;
    if (stochastic) {
      sat_tile_stochastic(in, rt.begin, h, c0, w, cb, T, seed, s.buf.data(), dst);
      return;
    }
    const bool avx2 = !tables->x.empty();
    for (std::size_t r = 0; r < h; ++r) {
      const int k = row_table(m, T, in.scale_inv[(rt.begin + r) * in.scale_cols + cb]);
      s.lut[r] = tables->t[std::size_t(k)].data();
      if (avx2) {
        s.xlut[r] = tables->x[std::size_t(k)].data();
        s.form[r] = tables->form[std::size_t(k)] ? &*tables->form[std::size_t(k)] : nullptr;
      }
    }
    if (avx2)
      isa_avx2::sat_tile_pshufb(src, C, rt.begin, h, c0, w, s.lut.data(), s.xlut.data(), s.form.data(), s.buf.data(),
                                dst, R);
    else isa_generic::sat_tile_lut(src, C, rt.begin, h, c0, w, s.lut.data(), s.buf.data(), dst, R);
  };
  // One row tile per task, its column blocks left to right (the AVX2 kernel prefetches the next block's
  // input rows and output columns while it works on one); tensors under 2^18 elements stay on the calling
  // thread.
  const std::size_t serial_below = R * C < (std::size_t(1) << 18) ? std::size_t(ntiles) + 1 : 0;
  parallel_chunks(std::size_t(ntiles), 1, serial_below, threads, [&](std::size_t b, std::size_t e) {
    Scratch s(N);
    for (std::size_t ti = b; ti < e; ++ti)
      for (std::size_t cb = 0; cb < in.scale_cols; ++cb) tile(ti, cb, s);
  });
}

}  // namespace

void transpose_sat_into(const QuantizedTensor& rowwise, const std::vector<std::size_t>& groups, TransposeMethod m,
                        Rounding rounding, int threads, QuantizedTensor& out, std::uint64_t seed) {
  transpose_sat_fast(rowwise, groups, m, rounding, threads, out, seed);
}

QuantizedTensor transpose_paper_kernel(const QuantizedTensor& rowwise, const std::vector<std::size_t>& groups,
                                       int threads) {
  QuantizedTensor out;
  transpose_sat_fast(rowwise, groups, TransposeMethod::paper_kernel, Rounding::rne, threads, out, 0);
  return out;
}

QuantizedTensor transpose_exact(const QuantizedTensor& rowwise, const std::vector<std::size_t>& groups,
                                Rounding rounding, int threads, std::uint64_t seed) {
  QuantizedTensor out;
  transpose_sat_fast(rowwise, groups, TransposeMethod::exact, rounding, threads, out, seed);
  return out;
}

QuantizedTensor transpose_naive(const QuantizedTensor& rowwise, const std::vector<std::size_t>& groups) {
  // Any scale rule and scale format (issue 23): DQ -> transpose -> Q under the rowwise tensor's own rule and
  // params, so that double quantization is measured where it rounds twice (fp32 scales: te_fp32, deepgemm)
  // as well as where it is nearly lossless (power-of-two scales). Only the SAT methods need power-of-two scales.
  check_tensor(rowwise, "transpose");
  if (rowwise.recipe.tile.rows != 1 || rowwise.recipe.tile.cols < 2)
    throw InputError(fmt::format("transpose: granularity {}: the transposes need a rowwise 1xN input (e.g. 1x128)",
                                 to_string(rowwise.recipe.tile)));
  if (rowwise.codes_transposed)
    throw InputError("transpose: the input is already a column copy (codes stored transposed)");
  const std::vector<float> dq = dequantize(rowwise);  // fp32, as the artifact's double_quant path
  const QuantRecipe r{Granularity{rowwise.recipe.tile.cols, 1}, rowwise.recipe.payload, rowwise.recipe.scale};
  QuantizedTensor out =
      with_codes_transposed(golden::quantize(dq, rowwise.rows, rowwise.cols, r, rowwise.params, groups), true);
  out.origin = "transpose:naive";
  return out;
}

QuantizedTensor transpose_direct(std::span<const float> x, std::size_t rows, std::size_t cols, int n,
                                 const FormatSpec& payload, const QuantParams& params,
                                 const std::vector<std::size_t>& groups, ScaleRule rule) {
  QuantParams p = params;
  if (rule == ScaleRule::te_pow2) {  // the study's reference (PAPER.md 3.5): fp32 scale_inv, saturating
    p.overflow = Overflow::satfinite;
    p.scale_format = ScaleFormat::fp32;
  }
  const QuantRecipe r{Granularity{n, 1}, &payload, rule};
  QuantizedTensor out = with_codes_transposed(golden::quantize(x, rows, cols, r, p, groups), true);
  out.origin = "transpose:direct";
  return out;
}

// ---- paper_kernel vs exact ------------------------------------------------------------------------
SatDiffReport compare_paper_exact(const QuantizedTensor& in, const QuantizedTensor& paper, const QuantizedTensor& exact) {
  check_sat_input(in, "compare");
  if (paper.codes.size() != in.codes.size() || exact.codes.size() != in.codes.size() ||
      paper.scale_inv != exact.scale_inv || !paper.codes_transposed || !exact.codes_transposed)
    throw std::invalid_argument("compare_paper_exact: outputs of the same input expected");
  const FormatSpec& f = *in.recipe.payload;
  const std::size_t N = std::size_t(in.recipe.tile.cols), R = in.rows, C = in.cols;
  const TileGrid g = paper.grid();
  // Which group each row tile belongs to.
  std::vector<std::size_t> tile_group(g.row_tiles.size(), 0);
  {
    std::size_t grp = 0, end = paper.row_groups.empty() ? R : paper.row_groups[0];
    for (std::size_t ti = 0; ti < g.row_tiles.size(); ++ti) {
      while (g.row_tiles[ti].begin >= end) end += paper.row_groups[++grp];
      tile_group[ti] = grp;
    }
  }
  SatDiffReport rep;
  rep.elements = R * C;
  const std::uint32_t emask = (1u << f.exp) - 1u;
  for (std::size_t ti = 0; ti < g.row_tiles.size(); ++ti) {
    const Range rt = g.row_tiles[ti];
    for (std::size_t cb = 0; cb < in.scale_cols; ++cb) {
      const std::size_t c0 = cb * N, c1 = std::min(C, c0 + N);
      ++rep.tiles;
      SatTileDiff d;
      d.row_tile = ti;
      d.col_block = cb;
      d.group = tile_group[ti];
      d.rows = rt;
      d.cols = {c0, c1};
      std::set<int> ks;
      std::set<std::size_t> rows, cols;
      const float T = paper.scale_inv[ti * C + c0];
      for (std::size_t r = rt.begin; r < rt.end; ++r) {
        const float si = in.scale_inv[r * in.scale_cols + cb];
        const int k = sat_shift_fields(T, si);
        for (std::size_t c = c0; c < c1; ++c) {
          const std::uint8_t a = paper.codes[c * R + r], b = exact.codes[c * R + r];
          if (a == b) continue;
          ++d.count;
          const std::uint8_t q = in.codes[r * C + c];
          const int e = int((q >> f.man) & emask);
          if (e == 0) ++d.input_subnormal_or_zero;
          else if (is_nan_code(f, q) && k > 0) ++d.nan_made_finite;
          else if (e - k < 1) ++d.below_normal;
          else ++d.other;
          ks.insert(k);
          rows.insert(r);
          cols.insert(c);
          const double diff = std::fabs(decode(f, a) - decode(f, b)) * double(T);
          if (diff > d.max_abs_diff) d.max_abs_diff = diff;
        }
      }
      if (d.count == 0) continue;
      d.k_values.assign(ks.begin(), ks.end());
      for (auto it = rows.begin(); it != rows.end() && d.diff_rows.size() < 16; ++it) d.diff_rows.push_back(*it);
      for (auto it = cols.begin(); it != cols.end() && d.diff_cols.size() < 16; ++it) d.diff_cols.push_back(*it);
      ++rep.tiles_differing;
      rep.elements_differing += d.count;
      rep.below_normal += d.below_normal;
      rep.input_subnormal_or_zero += d.input_subnormal_or_zero;
      rep.nan_made_finite += d.nan_made_finite;
      rep.other += d.other;
      rep.tiles_with_diffs.push_back(std::move(d));
    }
  }
  return rep;
}

nlohmann::json summary_json(const SatDiffReport& r) {
  return {{"tiles", r.tiles},
          {"tiles_differing", r.tiles_differing},
          {"elements", r.elements},
          {"elements_differing", r.elements_differing},
          {"below_normal", r.below_normal},
          {"input_subnormal_or_zero", r.input_subnormal_or_zero},
          {"nan_made_finite", r.nan_made_finite},
          {"other", r.other}};
}

nlohmann::json to_json(const SatDiffReport& r, std::size_t max_tiles) {
  nlohmann::json tiles = nlohmann::json::array();
  for (std::size_t i = 0; i < r.tiles_with_diffs.size() && i < max_tiles; ++i) {
    const SatTileDiff& d = r.tiles_with_diffs[i];
    tiles.push_back({{"row_tile", d.row_tile},
                     {"col_block", d.col_block},
                     {"group", d.group},
                     {"rows", {d.rows.begin, d.rows.end}},
                     {"cols", {d.cols.begin, d.cols.end}},
                     {"count", d.count},
                     {"below_normal", d.below_normal},
                     {"input_subnormal_or_zero", d.input_subnormal_or_zero},
                     {"nan_made_finite", d.nan_made_finite},
                     {"other", d.other},
                     {"k_values", d.k_values},
                     {"diff_rows_first16", d.diff_rows},
                     {"diff_cols_first16", d.diff_cols},
                     {"max_abs_diff", d.max_abs_diff}});
  }
  nlohmann::json j = summary_json(r);
  j["tiles_listed"] = tiles.size();
  j["per_tile"] = std::move(tiles);
  return j;
}

std::string to_text(const SatDiffReport& r, std::size_t max_tiles) {
  std::string s = fmt::format(
      "paper_kernel vs exact: {} of {} codes differ ({:.4g}%) in {} of {} tiles\n"
      "  causes: below normal range (e-k<1, mantissa kept) {}, input subnormal/-0 -> 0x00 {}, NaN made finite {}, "
      "other {}\n",
      r.elements_differing, r.elements, r.elements ? 100.0 * double(r.elements_differing) / double(r.elements) : 0.0,
      r.tiles_differing, r.tiles, r.below_normal, r.input_subnormal_or_zero, r.nan_made_finite, r.other);
  for (std::size_t i = 0; i < r.tiles_with_diffs.size() && i < max_tiles; ++i) {
    const SatTileDiff& d = r.tiles_with_diffs[i];
    s += fmt::format("  tile (row tile {}, col block {}, group {}) rows [{}, {}) cols [{}, {}): {} differ "
                     "(below {}, sub/-0 {}, NaN {}, other {}), k = {}, rows {}{}, max |diff| {:.4g}\n",
                     d.row_tile, d.col_block, d.group, d.rows.begin, d.rows.end, d.cols.begin, d.cols.end, d.count,
                     d.below_normal, d.input_subnormal_or_zero, d.nan_made_finite, d.other,
                     fmt::join(d.k_values, ","), fmt::join(d.diff_rows, ","), d.diff_rows.size() == 16 ? ",..." : "",
                     d.max_abs_diff);
  }
  if (r.tiles_with_diffs.size() > max_tiles)
    s += fmt::format("  ... {} more tiles\n", r.tiles_with_diffs.size() - max_tiles);
  return s;
}

}  // namespace fp8flow
