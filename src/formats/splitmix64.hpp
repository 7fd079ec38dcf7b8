// splitmix64 (Steele, Lea, Flood, "Fast splittable pseudorandom number generators", OOPSLA 2014): the
// seeded generator of fp8flow's synthetic tensors, so that a seed means the same bits on every platform.
// (Stochastic rounding uses counter-based Philox instead: philox.hpp.)
#pragma once

#include <cstdint>

namespace fp8flow {

// Advance `state` and return the next 64 random bits.
inline std::uint64_t splitmix64_next(std::uint64_t& state) {
  std::uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

}  // namespace fp8flow
