// Seeded synthetic inputs for the quantization studies. Deterministic across platforms: splitmix64
// bits, uniforms from the top 53 bits, normals by Box-Muller (no std:: distributions, whose output is
// library-defined). Each generator documents what it stresses; all but `normal` put rows of very
// different magnitude in one 128-row tile (the scaling-aware transpose's shift k), near-zero and zero
// rows, and elements at the E4M3 underflow edge relative to their row.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace fp8flow {

enum class Distribution {
  normal,       // N(0, 1): the easy case, k = 0..2 within a tile
  lognormal,    // +-exp(N(0, 2.5)): ~2^+-11 per element, every tile has a wide range
  outliers,     // N(0, 1); 2% outlier columns x2^8, 1% outlier rows x2^10, 2% near-zero rows x2^-20, zero rows
  heavy_tail,   // Student t with 2 degrees of freedom (infinite variance)
  activations,  // per-channel lognormal gains, outlier channels x50..200, rows scaled by 2^-U(0,20),
                // 3% rows x2^-30, 1% zero rows (padding), 1% elements 2^-14..2^-19 below their row (underflow edge)
};
std::string_view to_string(Distribution d);
Distribution parse_distribution(std::string_view s);  // throws InputError
inline constexpr std::string_view kDistributionNames = "normal, lognormal, outliers, heavy_tail, activations";

// rows x cols float32 values, row-major.
std::vector<float> make_distribution(Distribution d, std::size_t rows, std::size_t cols, std::uint64_t seed);

}  // namespace fp8flow
