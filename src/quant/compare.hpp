// "Does my kernel match?": compare a kernel's outputs with the golden ones and explain where and why they
// differ (docs/check.md). Numerics only, no files: `fp8flow check` (src/cli/cmd_check.cpp) and the Python
// package (python/, fp8flow.compare) read the arrays and call these.
//
// Codes are compared bit for bit, never with a tolerance. Each differing element is listed with its
// coordinates (row, column, tile, expert group), the input value, both codes with their decoded values and
// the distance in ulps, and classified by its likely cause (MismatchCause). Whole-tensor layout
// differences (codes stored transposed, per-group blocks, permuted rows) are detected first: when one
// explains every difference, the report says so and the elements are classified `layout`.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "quant/quantize.hpp"

namespace fp8flow {

// The likely cause of one differing element, first match in this order:
//   layout        a whole-tensor layout finding explains the difference (see CompareReport::layout)
//   tile_scale    the element's tile has a different scale_inv in got than in want
//   nan_inf       NaN or Inf involved and not an overflow: NaN sign/encoding, NaN made finite or lost
//   saturation    overflow policy: one side +-max finite, the other Inf/NaN, or the input beyond the range
//   sign_of_zero  +0 against -0
//   rounding_tie  one ulp apart and the exact pre-cast value lies half-way: tie direction (rne/rna/rz)
//   underflow     subnormal flush or underflow: one side 0 or subnormal, the other below the normal range
//   rounding_ulp  one ulp apart (not a tie, or no pre-cast value known)
//   other         anything else (several ulps, sign flips, ...)
enum class MismatchCause : std::uint8_t {
  layout, tile_scale, nan_inf, saturation, sign_of_zero, rounding_tie, underflow, rounding_ulp, other
};
inline constexpr std::size_t kMismatchCauses = 9;
std::string_view to_string(MismatchCause c);
inline constexpr std::string_view kMismatchCauseNames =
    "layout, tile_scale, nan_inf, saturation, sign_of_zero, rounding_tie, underflow, rounding_ulp, other";

struct ElementMismatch {
  std::size_t row = 0, col = 0;                    // logical coordinates [rows, cols]
  std::size_t row_tile = 0, col_tile = 0, group = 0;  // scale tile (group-aware) and expert group
  double input = 0;                                // the input value at (row, col); NaN when unknown
  double precast = 0;                              // the exact value the cast rounds (payload units); NaN: unknown
  std::uint32_t got_code = 0, want_code = 0;       // codes (float32 bits for value comparisons)
  double got_value = 0, want_value = 0;            // decoded values times the tile's scale_inv
  float got_scale_inv = 1, want_scale_inv = 1;
  std::int64_t ulp = 0;                            // got - want in code order (+-0 count as one point)
  MismatchCause cause = MismatchCause::other;
};

struct ScaleMismatch {
  std::size_t row_tile = 0, col_tile = 0, group = 0;
  Range rows{}, cols{};       // the tile's logical rows and columns
  float got = 0, want = 0;    // scale_inv values
  double log2_ratio = 0;      // log2(got / want) (NaN when either is 0, Inf or NaN)
};

struct CompareReport {
  std::string what;            // "codes" (a quantized tensor, codes and scales) or "values" (float32 outputs)
  std::string format;          // the payload format name ("f32" for values)
  std::size_t rows = 0, cols = 0;
  std::size_t elements = 0, elements_mismatched = 0;
  std::size_t scales = 0, scales_mismatched = 0;
  std::array<std::size_t, kMismatchCauses> by_cause{};  // differing elements per MismatchCause
  std::vector<ElementMismatch> mismatches;       // the first max_listed, in the golden tensor's storage order
                                                 // (row-major; column by column for a column copy)
  std::vector<ScaleMismatch> scale_mismatches;   // the first max_listed tiles
  std::vector<std::string> layout;               // whole-tensor findings (empty: none)
  std::int64_t max_abs_ulp = 0;                  // over the finite, same-scale differences
  bool bitexact() const { return elements_mismatched == 0 && scales_mismatched == 0; }
};

// What else is known about the elements, in logical order [rows, cols] (empty spans: unknown).
struct CompareContext {
  std::span<const double> input;    // the high-precision input (quantize, convert) or the value the input
                                    // codes stand for (transpose: decoded code * row scale_inv)
  std::span<const double> precast;  // the value the golden cast rounds, in payload units (ties are found here)
  std::size_t max_listed = 20;      // how many element and scale mismatches to list
};

// A kernel's quantized tensor against the golden one: same logical shape, recipe and format; codes and
// the COMPACT scale grid (which may differ in shape only when a layout finding explains it). Throws
// InputError when shapes or formats cannot be compared at all.
CompareReport compare_quantized(const QuantizedTensor& got, const QuantizedTensor& want, const CompareContext& ctx);

// float32 outputs (dequantize, gemm), [rows, cols] row-major each, bit for bit; ulps in float32 order.
CompareReport compare_values(std::span<const float> got, std::span<const float> want, std::size_t rows,
                             std::size_t cols, const CompareContext& ctx);

// The exact value quantize's element cast rounds, per element in logical order (payload units): for each
// tile the rule's BlockScale, then RN32(x op factor). NaN inputs give NaN.
std::vector<double> quantize_precast(std::span<const float> x, std::size_t rows, std::size_t cols,
                                     const QuantRecipe& r, const QuantParams& p,
                                     const std::vector<std::size_t>& row_groups);

// Codes stored as per-group blocks: for a column copy ([cols, rows] storage) each expert group's
// [cols, m_g] block after the previous one (the FP8-Flow-MoE Triton SAT returns one such tensor per group;
// concatenated flat); for a rowwise tensor the same as row-major. To and from the tensor's own storage.
std::vector<std::uint8_t> codes_to_group_blocks(const QuantizedTensor& q);
std::vector<std::uint8_t> codes_from_group_blocks(std::span<const std::uint8_t> blocks, const QuantizedTensor& shape);

nlohmann::json to_json(const CompareReport& r);
std::string to_text(const CompareReport& r);

}  // namespace fp8flow
