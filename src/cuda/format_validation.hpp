// GPU checks of the shared format core against the hardware's own conversions (sm_89+ PTX cvt).
#pragma once

#include <cstdint>
#include <string>

namespace fp8flow::cuda {

struct ExhaustiveResult {
  std::string what;                 // e.g. "encode e4m3 rne satfinite vs cvt.rn.satfinite.e4m3x2.f32"
  std::uint64_t checked = 0;
  std::uint64_t mismatches = 0;
  std::uint32_t first_input = 0;    // bit pattern of the first (lowest) mismatching input
  std::uint32_t ours = 0, hardware = 0;
  double seconds = 0;
};

// All 2^32 float32 bit patterns: our encode_bits<e4m3|e5m2, float, rne, satfinite> on the device
// against PTX cvt.rn.satfinite.{e4m3,e5m2}x2.f32.
ExhaustiveResult check_encode_all_f32_vs_ptx(bool e5m2);
// All 256 codes: our decode_as<e4m3|e5m2, float> against PTX cvt.rn.f16x2.{e4m3,e5m2}x2 (widened to f32).
ExhaustiveResult check_decode_all_codes_vs_ptx(bool e5m2);
// All 65536 bf16 inputs through cvt.rn.satfinite.e4m3x2.f32 vs our path (bf16 -> f32 exact -> encode).
std::string gpu_name();

}  // namespace fp8flow::cuda
