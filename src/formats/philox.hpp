// Counter-based random bits for stochastic rounding: Philox4x32-10 (Salmon et al., SC'11,
// "Parallel random numbers: as easy as 1, 2, 3"; the generator of cuRAND and JAX).
// Element i of a tensor draws from counter i under key = seed, so results do not depend on
// how the work is split across threads.
#pragma once

#include <array>
#include <cstdint>

#ifndef FP8FLOW_HD
#if defined(__CUDACC__)
#define FP8FLOW_HD __host__ __device__
#else
#define FP8FLOW_HD
#endif
#endif

namespace fp8flow {

struct Philox4x32 {
  static constexpr std::uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;  // round multipliers
  static constexpr std::uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;  // Weyl key increments

  FP8FLOW_HD static constexpr std::array<std::uint32_t, 4> block(std::array<std::uint32_t, 4> ctr,
                                                                 std::array<std::uint32_t, 2> key) {
    for (int round = 0; round < 10; ++round) {
      const std::uint64_t p0 = std::uint64_t(kM0) * ctr[0];
      const std::uint64_t p1 = std::uint64_t(kM1) * ctr[2];
      ctr = {std::uint32_t(p1 >> 32) ^ ctr[1] ^ key[0], std::uint32_t(p1),
             std::uint32_t(p0 >> 32) ^ ctr[3] ^ key[1], std::uint32_t(p0)};
      key[0] += kW0;
      key[1] += kW1;
    }
    return ctr;
  }
};

// 64 random bits for element `index` of the stream `seed`.
FP8FLOW_HD constexpr std::uint64_t philox_bits(std::uint64_t seed, std::uint64_t index) {
  const auto r = Philox4x32::block({std::uint32_t(index >> 1), std::uint32_t(index >> 33), 0u, 0u},
                                   {std::uint32_t(seed), std::uint32_t(seed >> 32)});
  return (index & 1) ? (std::uint64_t(r[3]) << 32 | r[2]) : (std::uint64_t(r[1]) << 32 | r[0]);
}

}  // namespace fp8flow
