#include "formats/cpu_features.hpp"
#include "formats/batch.hpp"
#include "formats/parallel_chunks.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <stdexcept>
#include <utility>

namespace fp8flow {

#define FP8FLOW_DECLARE_ISA(NS)                                                                           \
  namespace NS {                                                                                          \
  template <class In, class Code>                                                                         \
  void encode_range(const FormatSpec&, CastPolicy, const In*, Code*, std::size_t, std::uint64_t,          \
                    std::uint64_t);                                                                       \
  template <class Code, class Out>                                                                        \
  void decode_range(const FormatSpec&, const Code*, Out*, std::size_t);                                   \
  }
FP8FLOW_DECLARE_ISA(isa_generic)
FP8FLOW_DECLARE_ISA(isa_avx2)
#undef FP8FLOW_DECLARE_ISA

namespace {


constexpr std::size_t kChunk = 1 << 16;  // elements per parallel task: large enough to amortise, L2-sized

// Run body(begin, end) over [0, n) in chunks, across threads when the input is large (> 4 chunks).
template <class Body>
void parallel_chunks(std::size_t n, int threads, Body&& body) {
  fp8flow::parallel_chunks(n, kChunk, 4 * kChunk + 1, threads, std::forward<Body>(body));
}

void check_sizes(const FormatSpec& f, std::size_t in, std::size_t out, int code_bits, const char* what) {
  if (in != out)
    throw std::invalid_argument(fmt::format("{}: input has {} elements but output has {}", what, in, out));
  if (storage_bits(f) != code_bits)
    throw std::invalid_argument(fmt::format("{}: format {} is stored in {}-bit codes, not {}-bit", what, f.name,
                                            storage_bits(f), code_bits));
}

template <class In, class Code>
void encode_impl(const FormatSpec& f, CastPolicy p, std::span<const In> in, std::span<Code> out,
                 const BatchOptions& o) {
  check_sizes(f, in.size(), out.size(), int(sizeof(Code) * 8), "encode");
  if constexpr (std::is_same_v<In, float>) {
    if (f.man > 23) throw std::invalid_argument("encode: f32 codes from float32 input: use a double input");
  }
  parallel_chunks(in.size(), o.threads, [&](std::size_t b, std::size_t e) {
    if constexpr (std::is_same_v<In, float> && sizeof(Code) == 1) {
      if (cpu_has_avx2()) return isa_avx2::encode_range(f, p, in.data() + b, out.data() + b, e - b, o.seed, o.index0 + b);
    }
    isa_generic::encode_range(f, p, in.data() + b, out.data() + b, e - b, o.seed, o.index0 + b);
  });
}

template <class Code, class Out>
void decode_impl(const FormatSpec& f, std::span<const Code> in, std::span<Out> out, const BatchOptions& o) {
  check_sizes(f, in.size(), out.size(), int(sizeof(Code) * 8), "decode");
  parallel_chunks(in.size(), o.threads, [&](std::size_t b, std::size_t e) {
    if constexpr (std::is_same_v<Out, float> && sizeof(Code) == 1) {
      if (cpu_has_avx2()) return isa_avx2::decode_range(f, in.data() + b, out.data() + b, e - b);
    }
    isa_generic::decode_range(f, in.data() + b, out.data() + b, e - b);
  });
}

}  // namespace

void encode(const FormatSpec& f, CastPolicy p, std::span<const float> in, std::span<std::uint8_t> out,
            const BatchOptions& o) { encode_impl(f, p, in, out, o); }
void encode(const FormatSpec& f, CastPolicy p, std::span<const double> in, std::span<std::uint8_t> out,
            const BatchOptions& o) { encode_impl(f, p, in, out, o); }
void encode(const FormatSpec& f, CastPolicy p, std::span<const float> in, std::span<std::uint16_t> out,
            const BatchOptions& o) { encode_impl(f, p, in, out, o); }
void encode(const FormatSpec& f, CastPolicy p, std::span<const double> in, std::span<std::uint16_t> out,
            const BatchOptions& o) { encode_impl(f, p, in, out, o); }
void encode(const FormatSpec& f, CastPolicy p, std::span<const double> in, std::span<std::uint32_t> out,
            const BatchOptions& o) { encode_impl(f, p, in, out, o); }

void decode(const FormatSpec& f, std::span<const std::uint8_t> in, std::span<float> out, const BatchOptions& o) {
  decode_impl(f, in, out, o);
}
void decode(const FormatSpec& f, std::span<const std::uint8_t> in, std::span<double> out, const BatchOptions& o) {
  decode_impl(f, in, out, o);
}
void decode(const FormatSpec& f, std::span<const std::uint16_t> in, std::span<float> out, const BatchOptions& o) {
  decode_impl(f, in, out, o);
}
void decode(const FormatSpec& f, std::span<const std::uint16_t> in, std::span<double> out, const BatchOptions& o) {
  decode_impl(f, in, out, o);
}

void encode_ue8m0(Ue8m0Rule rule, Overflow overflow, std::span<const float> in, std::span<std::uint8_t> out,
                  const BatchOptions& o) {
  if (rule == Ue8m0Rule::rz || rule == Ue8m0Rule::ru)
    return encode(ue8m0, {rule == Ue8m0Rule::rz ? Rounding::rz : Rounding::ru, overflow}, in, out, o);
  check_sizes(ue8m0, in.size(), out.size(), 8, "encode_ue8m0");
  parallel_chunks(in.size(), o.threads, [&](std::size_t b, std::size_t e) {
    for (std::size_t i = b; i < e; ++i) out[i] = ue8m0_from_float(in[i], rule, overflow);
  });
}

const char* batch_isa() { return cpu_has_avx2() ? "avx2" : "generic"; }

}  // namespace fp8flow
