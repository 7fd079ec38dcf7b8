// What a cast did to a tensor, counted element by element from input value and output code: the
// numbers `fp8flow convert` prints and `fp8flow quickstart` tabulates.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>

#include "formats/convert.hpp"

namespace fp8flow::cli {

struct CastCounts {
  std::size_t total = 0;
  std::size_t nan_inputs = 0;         // NaN in the input
  std::size_t saturated = 0;          // |x| > max finite (Inf included) that became +-max finite
  std::size_t overflow_to_inf = 0;    // |x| > max finite (Inf included) that became +-Inf (nonsat, e5m2 & co.)
  std::size_t became_nan = 0;    // non-NaN x that became NaN (nonsat overflow in e4m3 & co.; ue8m0 rn of 0 or x < 0)
  std::size_t nan_outputs = 0;        // every NaN code in the output, NaN inputs included
  std::size_t underflow_to_zero = 0;  // non-zero finite x that became a zero code
  std::size_t subnormal = 0;          // outputs that are subnormal codes of the target format

  CastCounts& operator+=(const CastCounts& o) {
    total += o.total, nan_inputs += o.nan_inputs, saturated += o.saturated, overflow_to_inf += o.overflow_to_inf;
    became_nan += o.became_nan, nan_outputs += o.nan_outputs, underflow_to_zero += o.underflow_to_zero;
    subnormal += o.subnormal;
    return *this;
  }
};

// Classifies one (input, output code) pair of a cast into format f.
inline void count_cast(CastCounts& c, const FormatSpec& f, double x, std::uint32_t code) {
  const std::uint32_t mag = code & magnitude_mask(f);
  const bool out_nan = is_nan_code(f, code);
  const bool out_inf = is_inf_code(f, code);
  ++c.total;
  if (std::isnan(x)) ++c.nan_inputs;
  if (out_nan) ++c.nan_outputs;
  if (!std::isnan(x)) {
    const bool beyond = std::fabs(x) > max_finite(f);
    if (beyond && !out_nan && !out_inf && mag == max_code(f)) ++c.saturated;
    if (beyond && out_inf) ++c.overflow_to_inf;
    if (out_nan) ++c.became_nan;
    if (f.zero && x != 0 && std::isfinite(x) && mag == 0 && !out_nan) ++c.underflow_to_zero;
  }
  if (f.zero && f.man > 0 && !out_nan && mag != 0 && (mag >> f.man) == 0) ++c.subnormal;
}

// Counts over a whole cast; input(i) gives element i's value as a double (exact for every input type).
template <class Input, class Code>
CastCounts count_casts(const FormatSpec& f, std::size_t n, Input&& input, std::span<const Code> codes) {
  std::size_t nan_in = 0, sat = 0, inf = 0, ovnan = 0, nan_out = 0, under = 0, sub = 0;
#pragma omp parallel for schedule(static) reduction(+ : nan_in, sat, inf, ovnan, nan_out, under, sub)
  for (std::size_t i = 0; i < n; ++i) {
    CastCounts c;
    count_cast(c, f, input(i), codes[i]);
    nan_in += c.nan_inputs, sat += c.saturated, inf += c.overflow_to_inf, ovnan += c.became_nan;
    nan_out += c.nan_outputs, under += c.underflow_to_zero, sub += c.subnormal;
  }
  return {n, nan_in, sat, inf, ovnan, nan_out, under, sub};
}

}  // namespace fp8flow::cli
