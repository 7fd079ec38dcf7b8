// Granularities: how many elements share one scale, and how a 2-D tensor is cut into tiles.
// Sources: TransformerEngine Float8BlockQuantizer (1x128, 128x128, columnwise 128x1);
// DeepGEMM per_token_cast_to_fp8 (1x128) / per_block_cast_to_fp8 (128x128); OCP MX v1.0 (1x32).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace fp8flow {

// rows x cols elements share one scale. 0 means "the whole dimension" (of the tensor, or of the
// expert group along rows): tensor = {0, 0}, row = {1, 0} (one scale per row), col = {0, 1}.
struct Granularity {
  int rows, cols;
  friend constexpr bool operator==(Granularity, Granularity) = default;
};

inline constexpr Granularity kTensor{0, 0};
inline constexpr Granularity kPerRow{1, 0};
inline constexpr Granularity kPerCol{0, 1};
inline constexpr Granularity k1x128{1, 128};
inline constexpr Granularity k128x1{128, 1};
inline constexpr Granularity k128x128{128, 128};
inline constexpr Granularity k1x32{1, 32};  // OCP MX block

std::string to_string(Granularity g);              // {1, 128} -> "1x128"; {0, 0} -> "tensor"
Granularity parse_granularity(std::string_view s);  // "128x128" -> {128, 128}; throws InputError on "128"
inline constexpr std::string_view kGranularityExamples = "tensor, row, col, 1x128, 128x1, 128x128, 1x32";

// Half-open index range [begin, end).
struct Range {
  std::size_t begin, end;
  std::size_t size() const { return end - begin; }
};

// The tiles of a rows x cols tensor. Along rows, tiles restart at every expert-group boundary
// (`row_groups` = group sizes summing to rows; empty = one group), so a tail tile is the last rows of a
// group. Tail tiles hold only the valid elements (TE) -- equivalent to DeepGEMM's zero padding, since a
// zero never raises an amax.
struct TileGrid {
  std::vector<Range> row_tiles, col_tiles;
  std::size_t size() const { return row_tiles.size() * col_tiles.size(); }
};
TileGrid make_tile_grid(std::size_t rows, std::size_t cols, Granularity g, const std::vector<std::size_t>& row_groups);

// Checks that group sizes are positive and sum to rows; throws InputError naming the value.
void check_row_groups(const std::vector<std::size_t>& row_groups, std::size_t rows);

}  // namespace fp8flow
