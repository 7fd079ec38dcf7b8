// Batch conversions over spans: the fast paths behind `fp8flow convert`, the quantizers and benchmarks.
// Bit-identical to the scalar encode()/decode(); vectorised (AVX2 where the CPU has it, chosen at run
// time) and split across OpenMP threads for large inputs. Stochastic rounding draws element i's bits
// from philox_bits(seed, index0 + i), so results do not depend on the thread count.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "formats/convert.hpp"

namespace fp8flow {

struct BatchOptions {
  std::uint64_t seed = 0;     // stochastic rounding stream
  std::uint64_t index0 = 0;   // global index of element 0 (for slices of a larger tensor)
  int threads = 0;            // 0: OpenMP default; 1: serial
};

// Codes are stored one per byte (formats of <= 8 bits), uint16 (bf16, f16) or uint32 (f32).
// Each function checks that the output span matches the input and the container fits the format.
void encode(const FormatSpec& f, CastPolicy p, std::span<const float> in, std::span<std::uint8_t> out,
            const BatchOptions& o = {});
void encode(const FormatSpec& f, CastPolicy p, std::span<const double> in, std::span<std::uint8_t> out,
            const BatchOptions& o = {});
void encode(const FormatSpec& f, CastPolicy p, std::span<const float> in, std::span<std::uint16_t> out,
            const BatchOptions& o = {});
void encode(const FormatSpec& f, CastPolicy p, std::span<const double> in, std::span<std::uint16_t> out,
            const BatchOptions& o = {});
void encode(const FormatSpec& f, CastPolicy p, std::span<const double> in, std::span<std::uint32_t> out,
            const BatchOptions& o = {});

void decode(const FormatSpec& f, std::span<const std::uint8_t> in, std::span<float> out, const BatchOptions& o = {});
void decode(const FormatSpec& f, std::span<const std::uint8_t> in, std::span<double> out, const BatchOptions& o = {});
void decode(const FormatSpec& f, std::span<const std::uint16_t> in, std::span<float> out, const BatchOptions& o = {});
void decode(const FormatSpec& f, std::span<const std::uint16_t> in, std::span<double> out, const BatchOptions& o = {});

// UE8M0 under one of the named rules (rz/ru follow `overflow`).
void encode_ue8m0(Ue8m0Rule rule, Overflow overflow, std::span<const float> in, std::span<std::uint8_t> out,
                  const BatchOptions& o = {});

// Which instruction set the batch kernels dispatched to on this CPU ("avx2" or "generic").
const char* batch_isa();

}  // namespace fp8flow
