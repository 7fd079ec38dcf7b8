// Philox4x32-10 against the known-answer vectors published with Random123 (kat_vectors,
// "philox4x32 10" lines: ctr[0..3] key[0..1] -> out[0..3], words as printed there, v[0] first).
// Word order: our block() takes {ctr.v[0], .., ctr.v[3]} and {key.v[0], key.v[1]} in the same order
// as Random123's r123array4x32 / r123array2x32, so the published vectors apply verbatim.
#include <catch2/catch.hpp>

#include <fmt/format.h>

#include <array>
#include <cstdint>
#include <set>

#include "formats/philox.hpp"

using namespace fp8flow;

namespace {
struct Kat {
  std::array<std::uint32_t, 4> ctr;
  std::array<std::uint32_t, 2> key;
  std::array<std::uint32_t, 4> out;
};
// Random123 1.14 examples/kat_vectors, philox4x32 with 10 rounds.
constexpr Kat kKat[] = {
    {{0x00000000u, 0x00000000u, 0x00000000u, 0x00000000u}, {0x00000000u, 0x00000000u},
     {0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u}},
    {{0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}, {0xffffffffu, 0xffffffffu},
     {0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu}},
    {{0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}, {0xa4093822u, 0x299f31d0u},
     {0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u}},
};
std::string hex4(const std::array<std::uint32_t, 4>& v) {
  return fmt::format("{:08x} {:08x} {:08x} {:08x}", v[0], v[1], v[2], v[3]);
}
}  // namespace

// The constexpr block() can be checked by the compiler too.
static_assert(Philox4x32::block({0, 0, 0, 0}, {0, 0}) ==
              std::array<std::uint32_t, 4>{0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u});

TEST_CASE("philox4x32-10 matches the Random123 known-answer vectors", "[philox]") {
  for (const Kat& k : kKat) {
    const auto got = Philox4x32::block(k.ctr, k.key);
    INFO(fmt::format("ctr {} key {:08x} {:08x}: expected {}, got {}", hex4(k.ctr), k.key[0], k.key[1], hex4(k.out),
                     hex4(got)));
    CHECK(got == k.out);
  }
}

TEST_CASE("philox_bits: element i draws half of block i/2 under key = seed", "[philox]") {
  // philox_bits(seed, i) = 64 bits of block(ctr = {i/2 low, i/2 high, 0, 0}, key = {seed low, seed high}):
  // even i takes words 1:0, odd i words 3:2 (high word first).
  for (const std::uint64_t seed : {0ull, 1ull, 0x0123456789abcdefull, ~0ull}) {
    for (const std::uint64_t i : {0ull, 1ull, 2ull, 3ull, 0xfffffffeull, 0xffffffffull, 0x100000000ull,
                                  0x123456789abull, ~0ull - 1, ~0ull}) {
      const auto r = Philox4x32::block({std::uint32_t(i >> 1), std::uint32_t(i >> 33), 0, 0},
                                       {std::uint32_t(seed), std::uint32_t(seed >> 32)});
      const std::uint64_t want = (i & 1) ? (std::uint64_t(r[3]) << 32 | r[2]) : (std::uint64_t(r[1]) << 32 | r[0]);
      INFO(fmt::format("seed 0x{:x} index 0x{:x}", seed, i));
      CHECK(philox_bits(seed, i) == want);
    }
  }
  SECTION("no two of the first 2^16 indices or of 256 seeds collide") {
    std::set<std::uint64_t> seen;
    for (std::uint64_t i = 0; i < (1u << 16); ++i) seen.insert(philox_bits(42, i));
    for (std::uint64_t s = 0; s < 256; ++s) seen.insert(philox_bits(s * 0x9E3779B97F4A7C15ull, 7));
    CHECK(seen.size() == (1u << 16) + 256);
  }
}
