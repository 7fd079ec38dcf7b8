#include "quant/granularity.hpp"

#include <fmt/format.h>

#include <charconv>

#include "io/errors.hpp"

namespace fp8flow {

std::string to_string(Granularity g) {
  if (g == kTensor) return "tensor";
  if (g == kPerRow) return "row";
  if (g == kPerCol) return "col";
  return fmt::format("{}x{}", g.rows, g.cols);
}

Granularity parse_granularity(std::string_view s) {
  if (s == "tensor") return kTensor;
  if (s == "row") return kPerRow;
  if (s == "col") return kPerCol;
  const auto bad = [&] {
    return InputError(fmt::format("granularity '{}': expected RxC with positive R and C, or one of {}", s,
                                  kGranularityExamples));
  };
  const auto x = s.find('x');
  if (x == std::string_view::npos) throw bad();
  int r = 0, c = 0;
  const auto a = std::from_chars(s.data(), s.data() + x, r);
  const auto b = std::from_chars(s.data() + x + 1, s.data() + s.size(), c);
  if (a.ec != std::errc{} || a.ptr != s.data() + x || b.ec != std::errc{} || b.ptr != s.data() + s.size() || r <= 0 ||
      c <= 0)
    throw bad();
  return {r, c};
}

void check_row_groups(const std::vector<std::size_t>& row_groups, std::size_t rows) {
  if (row_groups.empty()) return;
  std::size_t sum = 0;
  for (std::size_t i = 0; i < row_groups.size(); ++i) {
    if (row_groups[i] == 0) throw InputError(fmt::format("groups: group {} has size 0: sizes must be positive", i));
    sum += row_groups[i];
  }
  if (sum != rows)
    throw InputError(fmt::format("groups: sizes sum to {} but the tensor has {} rows", sum, rows));
}

namespace {
void cut(std::vector<Range>& out, std::size_t begin, std::size_t end, int tile) {
  const std::size_t t = tile == 0 ? (end - begin) : std::size_t(tile);
  if (t == 0) return;
  for (std::size_t b = begin; b < end; b += t) out.push_back({b, std::min(end, b + t)});
}
}  // namespace

TileGrid make_tile_grid(std::size_t rows, std::size_t cols, Granularity g, const std::vector<std::size_t>& row_groups) {
  check_row_groups(row_groups, rows);
  TileGrid grid;
  if (row_groups.empty()) {
    cut(grid.row_tiles, 0, rows, g.rows);
  } else {
    std::size_t off = 0;
    for (std::size_t s : row_groups) {
      cut(grid.row_tiles, off, off + s, g.rows);
      off += s;
    }
  }
  cut(grid.col_tiles, 0, cols, g.cols);
  return grid;
}

}  // namespace fp8flow
