// The column copy of a rowwise 1xN tensor (PAPER.md 3.5), four ways:
//   naive         dequantize -> transpose -> Nx1 requantize under the input's own scale rule, scale format and
//                 params (double quantization; any rule: fp32 scales te_fp32/deepgemm, power-of-two, UE8M0)
//   paper_kernel  FP8-Flow-MoE's scaling-aware transpose, bit for bit, defects included
//   exact         the scaling-aware transpose done right: value(q) * 2^-k, correctly rounded
//   direct        Nx1 quantization of the original high-precision tensor (the reference)
// paper_kernel and exact need power-of-two scales (a shift of exponents); naive and direct take any rule.
// Output: a QuantizedTensor of the same logical shape [R, C] with granularity Nx1 whose codes are
// stored transposed ([C, R], rowwise of the transpose) and whose COMPACT scale grid is
// [sum over groups of ceil(m_g / N), C] -- the column scale_inv layout of PAPER.md.
// Expert groups (sizes along R) are transposed independently: tiles restart at each group.
#pragma once

#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "formats/rounding.hpp"
#include "quant/quantize.hpp"

namespace fp8flow {

enum class TransposeMethod { naive, paper_kernel, exact, direct };
std::string_view to_string(TransposeMethod m);
TransposeMethod parse_transpose_method(std::string_view s);  // throws InputError
inline constexpr std::string_view kTransposeMethodNames = "naive, paper_kernel, exact, direct";

// The input of naive / paper_kernel / exact: a rowwise 1xN tensor (N > 1) with codes stored row-major
// and every scale_inv a power of two or 0 (a padded row). Throws InputError naming the first bad value.
void check_sat_input(const QuantizedTensor& q, std::string_view what);

// ---- Per-element definitions (the spec; the fast paths are tables built from these) ----------------
// k = E(T) - E(si), E = unbiased fp32 exponent field (the kernel reads the bits; 0 and 2^-127 both give -127).
int sat_shift_fields(float tile_scale_inv, float row_scale_inv);
// paper_kernel: e' = e - k; e' < 1 -> 0; out = s|e'|m; input exponent field 0 -> 0x00.
std::uint8_t sat_paper_kernel_code(const FormatSpec& f, std::uint8_t code, int k);
// exact: cvt_sat(value(code) * si / T) under `rounding`, computed exactly; si == 0 gives value * 0.
// Rounding::stochastic takes `random` (64 bits, see philox.hpp); the transposes draw it as
// philox_bits(seed, r * cols + c) for input element (r, c).
std::uint8_t sat_exact_code(const FormatSpec& f, std::uint8_t code, float row_scale_inv, float tile_scale_inv,
                            Rounding rounding, std::uint64_t random = 0);

// exact, one row with shift k (value * 2^-k), as the AVX2 fast path computes it: compare/blend and a
// table of at most 32 entries per sign instead of a 256-entry table. With mag = code & magnitude mask:
//   mag >= hi (= (k+1) << M, e - k >= 1):  (mag - (k << M)) | sign   the shift is exact, stays normal
//   base <= mag < hi:                      win_pos / win_neg[mag - base]   the rounded ones (e in [k-M, k] and
//                                          a few more: (M+1) << M <= 32 codes)
//   0 < mag < base:                        deep_pos / deep_neg   |value| 2^-k < half the smallest subnormal:
//                                          0 (rne, rz, rna) or the smallest subnormal on ru/rd's side
//   mag == 0:                              zero_pos / zero_neg  (FNUZ: the NaN code 0x80 lands here)
//   mag > max_mag (NaN, Inf):              not covered: the 256-entry table (sat_shift_form_code gives -1)
// Table entries and constants are taken from sat_exact_code, and sat_exact_shift_form returns nothing
// unless the form equals sat_exact_code on all 256 codes (then the caller keeps the 256-entry table).
// k = kSatZeroRow stands for a row with scale_inv 0 (value * 0).
inline constexpr int kSatMaxShift = 40;  // every shift beyond gives the same codes (deterministic modes)
inline constexpr int kSatZeroRow = kSatMaxShift + 1;
struct SatShiftForm {
  std::uint8_t mag_mask = 0, sign = 0, max_mag = 0;
  std::uint8_t hi = 0xFF, sub = 0, base = 0;
  std::uint8_t deep_pos = 0, deep_neg = 0, zero_pos = 0, zero_neg = 0;
  std::uint8_t win_pos[32] = {}, win_neg[32] = {};
};
std::optional<SatShiftForm> sat_exact_shift_form(const FormatSpec& f, Rounding rounding, int k);
int sat_shift_form_code(const SatShiftForm& s, std::uint8_t code);  // -1: special, not covered

QuantizedTensor transpose_naive(const QuantizedTensor& rowwise, const std::vector<std::size_t>& groups);
QuantizedTensor transpose_paper_kernel(const QuantizedTensor& rowwise, const std::vector<std::size_t>& groups,
                                       int threads = 0);
// `seed` keys the Philox stream of Rounding::stochastic (ignored otherwise): element (r, c) of the INPUT
// draws philox_bits(seed, r * cols + c), so the codes do not depend on threads or tiling.
QuantizedTensor transpose_exact(const QuantizedTensor& rowwise, const std::vector<std::size_t>& groups,
                                Rounding rounding, int threads = 0, std::uint64_t seed = 0);
// paper_kernel or exact into `out`, reusing its buffers when the sizes match (benchmarks, loops).
// paper_kernel has no rounding step and ignores `rounding` and `seed`.
void transpose_sat_into(const QuantizedTensor& rowwise, const std::vector<std::size_t>& groups, TransposeMethod m,
                        Rounding rounding, int threads, QuantizedTensor& out, std::uint64_t seed = 0);
// Nx1 quantization of the high-precision x under `rule` with the given params, codes stored transposed.
// te_pow2 (the default) always stores fp32 scale_inv and saturates; any other rule takes `params` as given.
QuantizedTensor transpose_direct(std::span<const float> x, std::size_t rows, std::size_t cols, int n,
                                 const FormatSpec& payload, const QuantParams& params,
                                 const std::vector<std::size_t>& groups, ScaleRule rule = ScaleRule::te_pow2);

namespace golden {
// Scalar loops in the kernel's order: per group, per N-row tile, per column block: T, then every byte.
QuantizedTensor transpose_sat(const QuantizedTensor& rowwise, const std::vector<std::size_t>& groups,
                              TransposeMethod m, Rounding rounding, std::uint64_t seed = 0);
}  // namespace golden

// ---- Where paper_kernel and exact differ, and why ------------------------------------------------
struct SatTileDiff {
  std::size_t row_tile = 0, col_block = 0;  // output tile: row tile index (group-aware), input column block
  std::size_t group = 0;
  Range rows{}, cols{};
  std::size_t count = 0;                     // codes that differ
  std::size_t below_normal = 0;              // e - k < 1: mantissa kept under exponent 0 instead of rounding
  std::size_t input_subnormal_or_zero = 0;   // input exponent field 0 (subnormal or -0) forced to 0x00
  std::size_t nan_made_finite = 0;           // NaN input shifted by k > 0 into a finite code
  std::size_t other = 0;                     // anything else (NaN sign, padded rows)
  std::vector<int> k_values;                 // distinct k of the differing elements, ascending
  std::vector<std::size_t> diff_rows, diff_cols;  // distinct, ascending, first 16 of each
  double max_abs_diff = 0;                   // max |value(paper) - value(exact)| (dequantized)
};
struct SatDiffReport {
  std::size_t tiles = 0, tiles_differing = 0, elements = 0, elements_differing = 0;
  std::size_t below_normal = 0, input_subnormal_or_zero = 0, nan_made_finite = 0, other = 0;
  std::vector<SatTileDiff> tiles_with_diffs;
};
SatDiffReport compare_paper_exact(const QuantizedTensor& rowwise, const QuantizedTensor& paper,
                                  const QuantizedTensor& exact);
// The report's totals (tiles, elements, and the differing ones by cause): the JSON report's top level and the
// results store's diff-table attributes.
nlohmann::json summary_json(const SatDiffReport& r);
nlohmann::json to_json(const SatDiffReport& r, std::size_t max_tiles);
std::string to_text(const SatDiffReport& r, std::size_t max_tiles);

}  // namespace fp8flow
