#include "formats/splitmix64.hpp"
#include "quant/distributions.hpp"

#include <fmt/format.h>

#include <cmath>
#include <numbers>

#include "io/errors.hpp"

namespace fp8flow {

std::string_view to_string(Distribution d) {
  switch (d) {
    case Distribution::normal: return "normal";
    case Distribution::lognormal: return "lognormal";
    case Distribution::outliers: return "outliers";
    case Distribution::heavy_tail: return "heavy_tail";
    case Distribution::activations: return "activations";
  }
  return "?";
}

Distribution parse_distribution(std::string_view s) {
  for (auto d : {Distribution::normal, Distribution::lognormal, Distribution::outliers, Distribution::heavy_tail,
                 Distribution::activations})
    if (to_string(d) == s) return d;
  throw InputError(fmt::format("distribution '{}': expected one of {} or file:X.npy", s, kDistributionNames));
}

namespace {

struct Rng {
  std::uint64_t state;
  std::uint64_t next() { return splitmix64_next(state); }
  double uniform() { return (double(next() >> 11) + 0.5) * 0x1.0p-53; }  // (0, 1)
  double normal() {
    const double u = uniform(), v = uniform();
    return std::sqrt(-2.0 * std::log(u)) * std::cos(2.0 * std::numbers::pi * v);
  }
  double sign() { return (next() >> 63) ? -1.0 : 1.0; }
};

}  // namespace

std::vector<float> make_distribution(Distribution d, std::size_t rows, std::size_t cols, std::uint64_t seed) {
  Rng rng{seed * 0x2545F4914F6CDD1Dull + 1};
  std::vector<float> x(rows * cols);
  switch (d) {
    case Distribution::normal:
      for (auto& v : x) v = float(rng.normal());
      break;
    case Distribution::lognormal:
      for (auto& v : x) v = float(rng.sign() * std::exp(2.5 * rng.normal()));
      break;
    case Distribution::outliers: {
      std::vector<double> col_gain(cols, 1.0), row_gain(rows, 1.0);
      for (auto& g : col_gain) g = rng.uniform() < 0.02 ? 256.0 : 1.0;
      for (std::size_t r = 0; r < rows; ++r) {
        const double u = rng.uniform();
        row_gain[r] = r % 512 == 511 ? 0.0 : u < 0.01 ? 1024.0 : u < 0.03 ? std::ldexp(1.0, -20) : 1.0;
      }
      for (std::size_t r = 0; r < rows; ++r)
        for (std::size_t c = 0; c < cols; ++c) x[r * cols + c] = float(rng.normal() * row_gain[r] * col_gain[c]);
      break;
    }
    case Distribution::heavy_tail:
      for (auto& v : x) {
        const double a = rng.normal(), b = rng.normal(), z = rng.normal();
        v = float(z / std::sqrt((a * a + b * b) / 2.0));
      }
      break;
    case Distribution::activations: {
      std::vector<double> col_gain(cols), row_gain(rows);
      for (auto& g : col_gain) g = std::exp(rng.normal()) * (rng.uniform() < 1.0 / 128 ? 50.0 + 150.0 * rng.uniform() : 1.0);
      for (auto& g : row_gain) {
        const double u = rng.uniform();
        g = u < 0.01 ? 0.0 : u < 0.04 ? std::ldexp(1.0, -30) : std::exp2(-20.0 * rng.uniform());
      }
      for (std::size_t r = 0; r < rows; ++r)
        for (std::size_t c = 0; c < cols; ++c) {
          double v = rng.normal() * row_gain[r] * col_gain[c];
          if (rng.uniform() < 0.01) v = rng.sign() * row_gain[r] * std::exp2(-14.0 - 5.0 * rng.uniform());
          x[r * cols + c] = float(v);
        }
      break;
    }
  }
  return x;
}

}  // namespace fp8flow
