// Scaling-aware transpose (SAT, PAPER.md 3.5) of a rowwise 1x128 power-of-two-scaled e4m3 tensor on sm_90,
// whole or split into expert groups along M. Same names and semantics as src/quant/transpose.hpp:
//   sat_e4m3_1x128_paper_kernel  e' = max(e - k, 0), mantissa kept, input exponent field 0 -> 0x00
//   sat_e4m3_1x128_exact         cvt_sat(value(q) * 2^-k): RNE onto the subnormal grid, NaN kept
//   transpose_e4m3_plain         the codes only, no scale work (a yardstick for the benchmarks)
// Per 128-row tile of a group and 128-column block: T = max_r si[r, cb], k = E(T) - E(si[r]).
// Layouts: in codes [M, K] row-major, si COMPACT [M, ceil(K/128)]; out codes [K, M] (transposed),
// column scale_inv [sum_g ceil(m_g/128), K]. One thread block per 128-row window of the global row grid
// and 128-column block (a window may hold parts of several group tiles); see docs/gpu.md.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <vector>

namespace fp8flow::cuda {

enum class SatMode : int { plain, paper_kernel, exact };
inline constexpr int kSatTile = 128;  // rows of a column scale, columns of a row scale

// One 128-row tile of an expert group (tiles restart at each group boundary).
struct RowTile {
  std::uint32_t row_begin, row_count;
};
// The tiles of `rows` rows split into `groups` (sizes summing to rows; empty = one group).
std::vector<RowTile> make_row_tiles(std::size_t rows, const std::vector<std::size_t>& groups);

// The groups' row boundaries, passed by value in the kernel parameters (at most kMaxBoundGroups groups):
// begin[g] is group g's first row, begin[n] = rows, entries past n equal rows too. n = 0: not given.
inline constexpr int kMaxBoundGroups = 16;
struct GroupBounds {
  std::uint32_t n = 0;
  std::uint32_t begin[kMaxBoundGroups + 1] = {};
};
// The bounds of the groups given to make_row_tiles(rows, groups); n = 0 for more than kMaxBoundGroups groups.
GroupBounds group_bounds(std::size_t rows, const std::vector<std::size_t>& groups);
// Whether bounds (n > 0) split `rows` rows into groups that make n_tiles tiles (the kernels' check that the
// bounds go with the tile list; it does not prove they are the same groups).
bool bounds_describe_tiles(const GroupBounds& bounds, std::size_t rows, std::size_t n_tiles);
// Whether every group of bounds (n > 0) starts on a multiple of 128 rows: the tiles are then the 128-row
// windows, tile i = rows [128 i, min(128 i + 128, rows)).
bool tiles_are_windows(const GroupBounds& bounds);

// d_tiles: make_row_tiles(...) copied to the device; out scale row of tile i is i. d_si / d_out_si unused
// (may be null) for SatMode::plain. Asynchronous on `s`; returns the launch error.
// pdl: launch with programmatic dependent launch (sm_90): the kernel may start while the previous kernel on
// `s` is finishing and waits for it before reading anything (src/cuda/launch_pdl.cuh). The quantize
// kernels take the same flag, so quantize -> SAT chains overlap each launch with the previous one's tail.
// bounds (optional, group_bounds() of the groups the tiles were made from): where the tiles are not the
// 128-row windows (groups that are not multiples of 128 rows), paper_kernel finds each window's tiles from
// them instead of the tile list and loads all the scales it needs at once. Same output either way, if they
// are the tiles' groups: the call checks only the tile count and `rows` (cudaErrorInvalidValue), not that
// the groups split the rows the same way.
cudaError_t sat_transpose_e4m3_1x128(const std::uint8_t* d_codes, const float* d_si, std::size_t rows,
                                     std::size_t cols, const RowTile* d_tiles, std::size_t n_tiles, SatMode mode,
                                     std::uint8_t* d_out_codes, float* d_out_si, cudaStream_t s = 0,
                                     bool pdl = false, const GroupBounds* bounds = nullptr);

}  // namespace fp8flow::cuda
