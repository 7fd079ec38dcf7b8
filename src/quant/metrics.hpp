// Error metrics of a quantized (or any approximated) tensor against a float64 ground truth.
// Everything is accumulated in float64. Elements whose truth is NaN/Inf are counted and left out of the
// error sums; so are elements whose test value is NaN (counted as nan_created).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <nlohmann/json_fwd.hpp>
#include <span>
#include <string>

#include "quant/quantize.hpp"

namespace fp8flow {

struct Metrics {
  std::size_t n = 0;                 // elements compared
  std::size_t finite = 0;            // of which truth and test are both finite (in the error sums)
  double max_abs_err = 0;            // max |y - x|
  double max_rel_err = 0;            // max |y - x| / |x| over x != 0
  double rmse = 0;                   // sqrt(mean (y - x)^2)
  double sqnr_db = 0;                // 10 log10(sum x^2 / sum (y - x)^2); +inf when exact
  double mean_err = 0;               // mean (y - x): the bias
  double calc_diff = 0;              // DeepGEMM: 1 - 2 sum xy / sum (x^2 + y^2); 0 when both are all zero
  std::size_t changed = 0;           // y != x (value)
  double frac_changed = 0;
  std::size_t underflow_to_zero = 0; // x finite nonzero, y == 0
  std::size_t nan_created = 0;       // y NaN where x is finite
  std::size_t truth_nonfinite = 0;   // x NaN or Inf
  // Code statistics (only when the test is a QuantizedTensor): with s the test's own per-element
  // scale_inv, best = RNE-satfinite code of x / s, the code the test could have had under its scale.
  bool has_codes = false;
  std::map<long long, std::size_t> ulp_hist;  // ordinal(test code) - ordinal(best), in ULPs of the format
  std::size_t codes_off = 0;         // test code != best
  double frac_codes_off = 0;
  std::size_t lost_subnormals = 0;   // best is a nonzero subnormal, test code differs
  std::size_t subnormal_codes = 0;   // test codes in the subnormal range
  std::size_t saturated = 0;         // test code is +-max and |x / s| > max finite
};

// Values against values.
Metrics compare(std::span<const double> truth, std::span<const double> test);
// A quantized tensor (dequantized, logical order) against the truth in logical order [rows, cols].
Metrics compare(std::span<const double> truth, const QuantizedTensor& q);

nlohmann::json to_json(const Metrics& m);
std::string to_text(const Metrics& m);  // one block, "name value" lines

}  // namespace fp8flow
