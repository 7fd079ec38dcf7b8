// Exhaustive bit-exact checks of the batch encoders and decoders against CUDA's own host conversion
// functions (cuda_fp8.h, cuda_fp6.h, cuda_fp4.h from the CUDA toolkit, compiled here by g++: the real
// NVIDIA code, not a copy). PAPER.md section 4: CUDA's host path is the bit-level oracle.
//
// Every float32 bit pattern (2^32 inputs) for each mode, every bf16 and f16 pattern (2^16), and every
// code for the decoders. Each mode is its own TEST_CASE so CTest runs and times them separately.
// On a mismatch the first mismatching input and both outputs are reported in hex.
#include <catch2/catch.hpp>

#if FP8FLOW_HAVE_CUDA_HEADERS

#include <cuda_fp4.h>
#include <cuda_fp6.h>
#include <cuda_fp8.h>
#include <fmt/format.h>

#include <atomic>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include "formats/batch.hpp"

using namespace fp8flow;

namespace {

// Inputs per parallel task: 256 KiB of float32 plus two 64 KiB code buffers stay in L2.
constexpr std::uint64_t kChunk = 1u << 15;
constexpr std::uint64_t kAllFloat32 = 1ull << 32;
constexpr std::uint64_t kNoMismatch = std::numeric_limits<std::uint64_t>::max();

// Our batch encoder over one chunk of inputs (serial: the chunks themselves run in parallel).
using OursFn = void (*)(std::span<const float>, std::span<std::uint8_t>);
using OracleFn = std::uint8_t (*)(float);

// All 2^32 float32 patterns through `ours` (batched) and `oracle` (CUDA, one call per value); the
// bit pattern of the first mismatching input, or kNoMismatch. Chunks run on all OpenMP threads.
// Both functions are template arguments, not run-time pointers: the compiler sees CUDA's function at
// the call site, inlines it and folds its format/saturation arguments (they are constants there), as
// it would in any program calling __nv_cvt_float_to_fp8 -- the same function, with no indirect call
// per value. CUDA's code has data-dependent branches, so it stays scalar (GCC 12 reports "control flow
// in loop"); it is the bulk of the time (docs/formats.md, Performance).
template <OursFn ours, OracleFn oracle>
std::uint64_t first_mismatch_all_float32() {
  std::atomic<std::uint64_t> first{kNoMismatch};
  const auto chunks = static_cast<long long>(kAllFloat32 / kChunk);
#pragma omp parallel
  {
    std::vector<float> in(kChunk);
    std::vector<std::uint8_t> got(kChunk), want(kChunk);
#pragma omp for schedule(dynamic, 64)
    for (long long c = 0; c < chunks; ++c) {
      const auto base = static_cast<std::uint32_t>(std::uint64_t(c) * kChunk);
      for (std::uint32_t i = 0; i < kChunk; ++i) in[i] = std::bit_cast<float>(base + i);
      ours(in, got);
      for (std::uint32_t i = 0; i < kChunk; ++i) want[i] = oracle(std::bit_cast<float>(base + i));
      if (std::memcmp(got.data(), want.data(), kChunk) == 0) continue;
      std::uint32_t i = 0;
      while (got[i] == want[i]) ++i;
      std::uint64_t seen = first.load();
      while (base + i < seen && !first.compare_exchange_weak(seen, base + i)) {
      }
    }
  }
  return first.load();
}

template <OursFn ours, OracleFn oracle>
void require_equal_on_all_float32() {
  const std::uint64_t bad = first_mismatch_all_float32<ours, oracle>();
  if (bad == kNoMismatch) {
    SUCCEED("all 2^32 float32 inputs agree");
    return;
  }
  const float x = std::bit_cast<float>(std::uint32_t(bad));
  std::uint8_t got = 0;
  ours(std::span<const float>(&x, 1), std::span<std::uint8_t>(&got, 1));
  FAIL(fmt::format("first mismatch: input 0x{:08X} ({}): fp8flow 0x{:02X}, CUDA 0x{:02X}", std::uint32_t(bad), x,
                   got, oracle(x)));
}

template <const FormatSpec& F, Rounding R, Overflow O>
void ours_encode(std::span<const float> in, std::span<std::uint8_t> out) {
  BatchOptions o;
  o.threads = 1;
  encode(F, CastPolicy{R, O}, in, out, o);
}

template <Ue8m0Rule Rule, Overflow O>
void ours_ue8m0(std::span<const float> in, std::span<std::uint8_t> out) {
  BatchOptions o;
  o.threads = 1;
  encode_ue8m0(Rule, O, in, out, o);
}

constexpr __nv_saturation_t cuda_saturation(Overflow o) {
  return o == Overflow::satfinite ? __NV_SATFINITE : __NV_NOSAT;
}
template <__nv_fp8_interpretation_t Fmt, Overflow O>
std::uint8_t cuda_fp8(float x) {
  return __nv_cvt_float_to_fp8(x, cuda_saturation(O), Fmt);
}
template <cudaRoundMode Mode, Overflow O>
std::uint8_t cuda_e8m0(float x) {
  return __nv_cvt_float_to_e8m0(x, cuda_saturation(O), Mode);
}
template <__nv_fp6_interpretation_t Fmt, cudaRoundMode Mode>
std::uint8_t cuda_fp6(float x) {
  return __nv_cvt_float_to_fp6(x, Fmt, Mode);
}
template <cudaRoundMode Mode>
std::uint8_t cuda_fp4(float x) {
  return __nv_cvt_float_to_fp4(x, __NV_E2M1, Mode);
}

// CUDA's decoders give binary16/bfloat16; widen with CUDA's own helpers (exact).
float cuda_half_to_float(__half_raw h) { return __internal_halfraw_to_float(h); }
float cuda_bf16_to_float(__nv_bfloat16_raw b) { return __internal_bf16raw_to_float(b); }

// Every code of F decoded by fp8flow's batch decoder against `oracle`. Bits must agree, except that
// CUDA returns its canonical NaN for NaN codes where fp8flow keeps the code's sign: both NaN suffices.
template <const FormatSpec& F, class Oracle>
void require_decode_equal(Oracle&& oracle) {
  constexpr unsigned kCodes = 1u << total_bits(F);
  std::vector<std::uint8_t> codes(kCodes);
  for (unsigned c = 0; c < kCodes; ++c) codes[c] = std::uint8_t(c);
  std::vector<float> got(kCodes);
  decode(F, codes, got);
  for (unsigned c = 0; c < kCodes; ++c) {
    const float want = oracle(std::uint8_t(c));
    INFO(fmt::format("{} code 0x{:02X}: fp8flow {} (0x{:08X}), CUDA {} (0x{:08X})", F.name, c, got[c],
                     std::bit_cast<std::uint32_t>(got[c]), want, std::bit_cast<std::uint32_t>(want)));
    if (std::isnan(want)) REQUIRE(std::isnan(got[c]));
    else REQUIRE(std::bit_cast<std::uint32_t>(got[c]) == std::bit_cast<std::uint32_t>(want));
  }
}

// All 2^16 bf16 or f16 patterns: fp8flow decodes them to float32 (exact) and encodes; CUDA converts
// the raw 16-bit value directly (__nv_cvt_bfloat16raw_to_fp8 / __nv_cvt_halfraw_to_fp8).
template <const FormatSpec& From, const FormatSpec& To, Overflow O, class Oracle>
void require_equal_on_all_16bit(Oracle&& oracle) {
  std::vector<std::uint16_t> codes(1u << 16);
  for (unsigned c = 0; c < codes.size(); ++c) codes[c] = std::uint16_t(c);
  std::vector<float> wide(codes.size());
  std::vector<std::uint8_t> got(codes.size());
  decode(From, codes, wide);
  encode(To, CastPolicy{Rounding::rne, O}, wide, got);
  for (unsigned c = 0; c < codes.size(); ++c) {
    const std::uint8_t want = oracle(std::uint16_t(c));
    if (got[c] == want) continue;
    FAIL(fmt::format("first mismatch: {} input 0x{:04X} -> {}: fp8flow 0x{:02X}, CUDA 0x{:02X}", From.name, c,
                     To.name, got[c], want));
  }
  SUCCEED();
}

}  // namespace

// ---- float32 -> FP8 (E4M3, E5M2), RNE, satfinite and nonsat: __nv_cvt_float_to_fp8 -------------
TEST_CASE("e4m3 rne satfinite equals CUDA __nv_cvt_float_to_fp8 on all float32", "[exhaustive][oracle][cuda]") {
  require_equal_on_all_float32<ours_encode<e4m3, Rounding::rne, Overflow::satfinite>,
                               cuda_fp8<__NV_E4M3, Overflow::satfinite>>();
}
TEST_CASE("e4m3 rne nonsat equals CUDA __nv_cvt_float_to_fp8 on all float32", "[exhaustive][oracle][cuda]") {
  require_equal_on_all_float32<ours_encode<e4m3, Rounding::rne, Overflow::nonsat>,
                               cuda_fp8<__NV_E4M3, Overflow::nonsat>>();
}
TEST_CASE("e5m2 rne satfinite equals CUDA __nv_cvt_float_to_fp8 on all float32", "[exhaustive][oracle][cuda]") {
  require_equal_on_all_float32<ours_encode<e5m2, Rounding::rne, Overflow::satfinite>,
                               cuda_fp8<__NV_E5M2, Overflow::satfinite>>();
}
TEST_CASE("e5m2 rne nonsat equals CUDA __nv_cvt_float_to_fp8 on all float32", "[exhaustive][oracle][cuda]") {
  require_equal_on_all_float32<ours_encode<e5m2, Rounding::rne, Overflow::nonsat>,
                               cuda_fp8<__NV_E5M2, Overflow::nonsat>>();
}

// ---- float32 -> UE8M0, RZ and RP, satfinite and nonsat: __nv_cvt_float_to_e8m0 ----------------
TEST_CASE("ue8m0 rz satfinite equals CUDA __nv_cvt_float_to_e8m0 on all float32", "[exhaustive][oracle][cuda]") {
  require_equal_on_all_float32<ours_ue8m0<Ue8m0Rule::rz, Overflow::satfinite>,
                               cuda_e8m0<cudaRoundZero, Overflow::satfinite>>();
}
TEST_CASE("ue8m0 rz nonsat equals CUDA __nv_cvt_float_to_e8m0 on all float32", "[exhaustive][oracle][cuda]") {
  require_equal_on_all_float32<ours_ue8m0<Ue8m0Rule::rz, Overflow::nonsat>,
                               cuda_e8m0<cudaRoundZero, Overflow::nonsat>>();
}
TEST_CASE("ue8m0 ru satfinite equals CUDA __nv_cvt_float_to_e8m0 on all float32", "[exhaustive][oracle][cuda]") {
  require_equal_on_all_float32<ours_ue8m0<Ue8m0Rule::ru, Overflow::satfinite>,
                               cuda_e8m0<cudaRoundPosInf, Overflow::satfinite>>();
}
TEST_CASE("ue8m0 ru nonsat equals CUDA __nv_cvt_float_to_e8m0 on all float32", "[exhaustive][oracle][cuda]") {
  require_equal_on_all_float32<ours_ue8m0<Ue8m0Rule::ru, Overflow::nonsat>,
                               cuda_e8m0<cudaRoundPosInf, Overflow::nonsat>>();
}

// ---- float32 -> FP6 (E2M3, E3M2) and FP4 (E2M1): always saturating, NaN -> +max ---------------
TEST_CASE("e2m3 rne satfinite equals CUDA __nv_cvt_float_to_fp6 on all float32", "[exhaustive][oracle][cuda]") {
  require_equal_on_all_float32<ours_encode<e2m3, Rounding::rne, Overflow::satfinite>,
                               cuda_fp6<__NV_E2M3, cudaRoundNearest>>();
}
TEST_CASE("e2m3 rz satfinite equals CUDA __nv_cvt_float_to_fp6 on all float32", "[exhaustive][oracle][cuda]") {
  require_equal_on_all_float32<ours_encode<e2m3, Rounding::rz, Overflow::satfinite>,
                               cuda_fp6<__NV_E2M3, cudaRoundZero>>();
}
TEST_CASE("e3m2 rne satfinite equals CUDA __nv_cvt_float_to_fp6 on all float32", "[exhaustive][oracle][cuda]") {
  require_equal_on_all_float32<ours_encode<e3m2, Rounding::rne, Overflow::satfinite>,
                               cuda_fp6<__NV_E3M2, cudaRoundNearest>>();
}
TEST_CASE("e3m2 rz satfinite equals CUDA __nv_cvt_float_to_fp6 on all float32", "[exhaustive][oracle][cuda]") {
  require_equal_on_all_float32<ours_encode<e3m2, Rounding::rz, Overflow::satfinite>,
                               cuda_fp6<__NV_E3M2, cudaRoundZero>>();
}
TEST_CASE("e2m1 rne satfinite equals CUDA __nv_cvt_float_to_fp4 on all float32", "[exhaustive][oracle][cuda]") {
  require_equal_on_all_float32<ours_encode<e2m1, Rounding::rne, Overflow::satfinite>, cuda_fp4<cudaRoundNearest>>();
}
TEST_CASE("e2m1 rz satfinite equals CUDA __nv_cvt_float_to_fp4 on all float32", "[exhaustive][oracle][cuda]") {
  require_equal_on_all_float32<ours_encode<e2m1, Rounding::rz, Overflow::satfinite>, cuda_fp4<cudaRoundZero>>();
}

// ---- All bf16 and f16 inputs -> FP8 -------------------------------------------------------------
template <__nv_fp8_interpretation_t Fmt, Overflow O>
std::uint8_t cuda_bf16_to_fp8(std::uint16_t v) {
  __nv_bfloat16_raw r;
  r.x = v;
  return __nv_cvt_bfloat16raw_to_fp8(r, cuda_saturation(O), Fmt);
}
template <__nv_fp8_interpretation_t Fmt, Overflow O>
std::uint8_t cuda_f16_to_fp8(std::uint16_t v) {
  __half_raw r;
  r.x = v;
  return __nv_cvt_halfraw_to_fp8(r, cuda_saturation(O), Fmt);
}

TEST_CASE("all bf16 inputs to e4m3 and e5m2 equal CUDA __nv_cvt_bfloat16raw_to_fp8", "[oracle][cuda]") {
  SECTION("e4m3 satfinite") { require_equal_on_all_16bit<bf16, e4m3, Overflow::satfinite>(cuda_bf16_to_fp8<__NV_E4M3, Overflow::satfinite>); }
  SECTION("e4m3 nonsat") { require_equal_on_all_16bit<bf16, e4m3, Overflow::nonsat>(cuda_bf16_to_fp8<__NV_E4M3, Overflow::nonsat>); }
  SECTION("e5m2 satfinite") { require_equal_on_all_16bit<bf16, e5m2, Overflow::satfinite>(cuda_bf16_to_fp8<__NV_E5M2, Overflow::satfinite>); }
  SECTION("e5m2 nonsat") { require_equal_on_all_16bit<bf16, e5m2, Overflow::nonsat>(cuda_bf16_to_fp8<__NV_E5M2, Overflow::nonsat>); }
}
TEST_CASE("all f16 inputs to e4m3 and e5m2 equal CUDA __nv_cvt_halfraw_to_fp8", "[oracle][cuda]") {
  SECTION("e4m3 satfinite") { require_equal_on_all_16bit<f16, e4m3, Overflow::satfinite>(cuda_f16_to_fp8<__NV_E4M3, Overflow::satfinite>); }
  SECTION("e4m3 nonsat") { require_equal_on_all_16bit<f16, e4m3, Overflow::nonsat>(cuda_f16_to_fp8<__NV_E4M3, Overflow::nonsat>); }
  SECTION("e5m2 satfinite") { require_equal_on_all_16bit<f16, e5m2, Overflow::satfinite>(cuda_f16_to_fp8<__NV_E5M2, Overflow::satfinite>); }
  SECTION("e5m2 nonsat") { require_equal_on_all_16bit<f16, e5m2, Overflow::nonsat>(cuda_f16_to_fp8<__NV_E5M2, Overflow::nonsat>); }
}

// ---- Every code decoded -------------------------------------------------------------------------
TEST_CASE("decoding every e4m3 e5m2 ue8m0 e2m3 e3m2 e2m1 code equals CUDA", "[oracle][cuda]") {
  SECTION("e4m3: __nv_cvt_fp8_to_halfraw") {
    require_decode_equal<e4m3>([](std::uint8_t c) { return cuda_half_to_float(__nv_cvt_fp8_to_halfraw(c, __NV_E4M3)); });
  }
  SECTION("e5m2: __nv_cvt_fp8_to_halfraw") {
    require_decode_equal<e5m2>([](std::uint8_t c) { return cuda_half_to_float(__nv_cvt_fp8_to_halfraw(c, __NV_E5M2)); });
  }
  SECTION("ue8m0: __nv_cvt_e8m0_to_bf16raw") {
    require_decode_equal<ue8m0>([](std::uint8_t c) { return cuda_bf16_to_float(__nv_cvt_e8m0_to_bf16raw(c)); });
  }
  SECTION("e2m3: __nv_cvt_fp6_to_halfraw") {
    require_decode_equal<e2m3>([](std::uint8_t c) { return cuda_half_to_float(__nv_cvt_fp6_to_halfraw(c, __NV_E2M3)); });
  }
  SECTION("e3m2: __nv_cvt_fp6_to_halfraw") {
    require_decode_equal<e3m2>([](std::uint8_t c) { return cuda_half_to_float(__nv_cvt_fp6_to_halfraw(c, __NV_E3M2)); });
  }
  SECTION("e2m1: __nv_cvt_fp4_to_halfraw") {
    require_decode_equal<e2m1>([](std::uint8_t c) { return cuda_half_to_float(__nv_cvt_fp4_to_halfraw(c, __NV_E2M1)); });
  }
}

#endif  // FP8FLOW_HAVE_CUDA_HEADERS
