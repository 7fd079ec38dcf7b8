// Scaled quantization of a 2-D float32 tensor: recipe, quantized tensor, quantize / dequantize /
// requantize, and the scale layouts. Golden scalar loops here (spec order); the fast path for
// 1xN te_* recipes lives in quantize_fast.cpp and is tested equal to this one bit for bit.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "formats/format_spec.hpp"
#include "quant/granularity.hpp"
#include "quant/scale_rules.hpp"

namespace fp8flow {

struct QuantRecipe {
  Granularity tile;
  const FormatSpec* payload;
  ScaleRule scale;
  std::string name() const;  // "quant_1x128_e4m3_deepgemm_ue8m0"
  friend bool operator==(const QuantRecipe&, const QuantRecipe&) = default;
};
QuantRecipe parse_recipe(std::string_view name);  // inverse of name(); throws InputError

// A quantized tensor: everything needed to decode it, and how it was made.
struct QuantizedTensor {
  std::size_t rows = 0, cols = 0;        // logical shape [rows, cols]
  QuantRecipe recipe{k1x128, &e4m3, ScaleRule::te_pow2};
  QuantParams params;
  std::vector<std::size_t> row_groups;   // expert-group sizes along rows (tiles restart per group); empty: one
  bool codes_transposed = false;         // codes stored [cols, rows] (a column copy, rowwise of the transpose)
  std::vector<std::uint8_t> codes;       // row-major in storage order
  std::vector<float> scale_inv;          // COMPACT: one per tile, grid [row tiles, col tiles], row-major
  std::size_t scale_rows = 0, scale_cols = 0;
  std::string origin = "quantize";       // how it was made: "quantize", "transpose:exact", ...

  std::size_t size() const { return rows * cols; }
  std::size_t code_index(std::size_t r, std::size_t c) const { return codes_transposed ? c * rows + r : r * cols + c; }
  TileGrid grid() const { return make_tile_grid(rows, cols, recipe.tile, row_groups); }
};

// Checks that recipe and params fit together (element format of <= 8 bits, UE8M0 storage only for
// power-of-two rules); throws InputError naming the field.
void check_recipe(const QuantRecipe& r, const QuantParams& p);
// Checks the internal consistency of a tensor (sizes of codes and scales against shape and grid).
void check_tensor(const QuantizedTensor& q, std::string_view what);

// quantize: x is [rows, cols] row-major float32. Dispatches to the fast path where one exists.
QuantizedTensor quantize(std::span<const float> x, std::size_t rows, std::size_t cols, const QuantRecipe& r,
                         const QuantParams& p, const std::vector<std::size_t>& row_groups = {}, int threads = 0);

namespace golden {
// Scalar loops in the order of the sources: per tile, the rule's scale, then every element cast.
QuantizedTensor quantize(std::span<const float> x, std::size_t rows, std::size_t cols, const QuantRecipe& r,
                         const QuantParams& p, const std::vector<std::size_t>& row_groups = {});
}  // namespace golden

namespace fast {
// True when a fast path serves this recipe (tiles 1xN, rules te_fp32/te_pow2, 8-bit payload).
bool supports(const QuantRecipe& r, const QuantParams& p, const std::vector<std::size_t>& row_groups);
QuantizedTensor quantize(std::span<const float> x, std::size_t rows, std::size_t cols, const QuantRecipe& r,
                         const QuantParams& p, int threads);
// The same into caller-owned buffers (codes rows*cols, scale_inv rows*ceil(cols/N)); no allocation.
void quantize_into(std::span<const float> x, std::size_t rows, std::size_t cols, const QuantRecipe& r,
                   const QuantParams& p, int threads, std::span<std::uint8_t> codes, std::span<float> scale_inv);
const char* isa();  // "avx2" or "generic"
}  // namespace fast

// Dequantize: RN32(float(q) * scale_inv), in logical order [rows, cols].
std::vector<float> dequantize(const QuantizedTensor& q);
// Per-element scale_inv in logical order (for metrics).
std::vector<float> element_scale_inv(const QuantizedTensor& q);
// Quantize the dequantized values again under another recipe (double quantization).
QuantizedTensor requantize(const QuantizedTensor& q, const QuantRecipe& r, const QuantParams& p);
// The same tensor with its codes stored the other way round (values and scales unchanged).
QuantizedTensor with_codes_transposed(QuantizedTensor q, bool transposed);

// ---- Scale layouts -------------------------------------------------------------------------------
enum class ScaleLayout { compact, gemm_ready };
struct ScaleArray {
  std::vector<float> values;
  std::size_t rows, cols;
};
// COMPACT: the per-tile grid above. GEMM_READY (TE, PAPER.md 3.1): 1xN tiles (ceil(K/N), roundup(M,4)),
// i.e. transposed with M padded to a multiple of 4; NxN blocks (ceil(M/N), roundup(ceil(K/N),4)).
// Padding entries are 0. Other granularities have no GEMM_READY layout (throws InputError).
ScaleArray scale_layout(const QuantizedTensor& q, ScaleLayout layout);

// UE8M0 storage of power-of-two scale_inv values (Inf -> 0xFF); throws InputError for others.
std::vector<std::uint8_t> scales_to_ue8m0(std::span<const float> scale_inv, std::string_view what);
std::vector<float> scales_from_ue8m0(std::span<const std::uint8_t> codes);

}  // namespace fp8flow
