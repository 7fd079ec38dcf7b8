// te_pow2_scale_e4m3 (src/quant/pow2_scale.hpp, the division-free te_pow2 scale the v1 GPU quantize kernel
// uses) against the golden rule te_scale_from_amax (an IEEE fp32 division 448 / amax, masked to its power of
// two) and RN32(1 / scale). eps 0: every non-negative fp32 amax (2^31 patterns, with NaNs) and -0 / negative
// NaNs; the bf16 and fp32 inputs' overflow clamps (they differ before the mask) on every amax small enough
// to overflow the quotient. eps 1e-10: every amax within a binade of eps, and every 61st pattern elsewhere.
#include <catch2/catch.hpp>

#include <bit>
#include <cstdint>

#include "quant/pow2_scale.hpp"
#include "quant/scale_rules.hpp"

using namespace fp8flow;

namespace {
// Mismatches of te_pow2_scale_e4m3 on amax bit patterns lo, lo + step, ... < hi; first one in *first.
std::uint64_t mismatches(std::uint64_t lo, std::uint64_t hi, std::uint64_t step, float eps, InputDtype in,
                         std::uint64_t* first) {
  std::uint64_t bad = 0;
  for (std::uint64_t i = lo; i < hi; i += step) {
    const float amax = std::bit_cast<float>(std::uint32_t(i));
    const Pow2ScaleBits got = te_pow2_scale_e4m3(amax, eps);
    const float ref = te_scale_from_amax(amax, 448.0f, eps, true, in);
    const float ref_inv = 1.0f / ref;
    if (got.scale != std::bit_cast<std::uint32_t>(ref) || got.scale_inv != std::bit_cast<std::uint32_t>(ref_inv))
      if (bad++ == 0) *first = i;
  }
  return bad;
}
}  // namespace

TEST_CASE("te_pow2_scale_e4m3 equals the golden te_pow2 scale and its inverse", "[quant][pow2]") {
  std::uint64_t first = 0;
  const auto check = [&](std::uint64_t lo, std::uint64_t hi, std::uint64_t step, float eps, InputDtype in) {
    const std::uint64_t bad = mismatches(lo, hi, step, eps, in, &first);
    INFO("amax bits [0x" << std::hex << lo << ", 0x" << hi << ") step " << std::dec << step << ", eps " << eps
                         << ", " << (in == InputDtype::bf16 ? "bf16" : "fp32") << " input: " << bad
                         << " mismatches, first at 0x" << std::hex << first);
    CHECK(bad == 0);
  };
  check(0, 1ull << 31, 1, 0.0f, InputDtype::bf16);                   // every amax >= 0, +NaNs
  check(0x80000000ull, 0x80000001ull, 1, 0.0f, InputDtype::bf16);    // -0
  check(0xFF800001ull, 1ull << 32, 4099, 0.0f, InputDtype::bf16);    // negative NaNs
  check(0, 0x05000000ull, 1, 0.0f, InputDtype::f32);                 // 448 / amax overflows below ~2^-118
  const std::uint32_t e = std::bit_cast<std::uint32_t>(1e-10f) & 0x7F800000u;
  check(e - 0x00800000u, e + 0x01000000u, 1, 1e-10f, InputDtype::bf16);  // around eps
  check(0, 1ull << 31, 61, 1e-10f, InputDtype::bf16);
}
