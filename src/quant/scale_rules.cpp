// The scale rules, in the order and with the operations of their sources (PAPER.md section 3).
#include "quant/scale_rules.hpp"

#include <fmt/format.h>

#include <bit>
#include <cmath>
#include <limits>

#include "formats/convert.hpp"
#include "io/errors.hpp"

namespace fp8flow {

std::string_view to_string(ScaleRule r) {
  switch (r) {
    case ScaleRule::te_fp32: return "te_fp32";
    case ScaleRule::te_pow2: return "te_pow2";
    case ScaleRule::deepgemm: return "deepgemm";
    case ScaleRule::deepgemm_ue8m0: return "deepgemm_ue8m0";
    case ScaleRule::paper_swiglu: return "paper_swiglu";
    case ScaleRule::mx_floor: return "mx_floor";
    case ScaleRule::mx_ceil: return "mx_ceil";
    case ScaleRule::deepgemm_cpu: return "deepgemm_cpu";
    case ScaleRule::deepgemm_ue8m0_cpu: return "deepgemm_ue8m0_cpu";
  }
  return "?";
}

ScaleRule parse_scale_rule(std::string_view s) {
  for (ScaleRule r : kAllScaleRules)
    if (to_string(r) == s) return r;
  throw InputError(fmt::format("scale rule '{}': expected one of {}", s, kScaleRuleNames));
}

bool is_deepgemm(ScaleRule r) {
  return r == ScaleRule::deepgemm || r == ScaleRule::deepgemm_ue8m0 || r == ScaleRule::deepgemm_cpu ||
         r == ScaleRule::deepgemm_ue8m0_cpu;
}

Overflow source_overflow(ScaleRule r) { return is_deepgemm(r) ? Overflow::nonsat : Overflow::satfinite; }

bool pow2_scales(ScaleRule r) {
  return r != ScaleRule::te_fp32 && r != ScaleRule::deepgemm && r != ScaleRule::deepgemm_cpu;
}

std::string_view to_string(ScaleFormat f) { return f == ScaleFormat::fp32 ? "fp32" : "ue8m0"; }
ScaleFormat parse_scale_format(std::string_view s) {
  if (s == "fp32") return ScaleFormat::fp32;
  if (s == "ue8m0") return ScaleFormat::ue8m0;
  throw InputError(fmt::format("scale format '{}': expected fp32 or ue8m0", s));
}

QuantParams default_params(ScaleRule r) {
  QuantParams p;
  p.overflow = source_overflow(r);
  return p;
}

float amax_fmaxf(std::span<const float> block) {
  // Not std::fmax: glibc follows IEEE 754-2008 maxNum, where a *signaling* NaN operand makes the result NaN
  // (and the fold then forgets everything before it). CUDA's fmaxf (PTX max.f32) returns the other operand
  // for any NaN, quiet or signaling, which is what TE's amax kernels compute.
  float acc = 0.0f;
  for (float x : block) {
    const float a = std::fabs(x);
    if (a > acc) acc = a;  // false for NaN
  }
  return acc;
}

float amax_nan_propagating(std::span<const float> block) {
  float acc = 0.0f;
  for (float x : block) {
    const float a = std::fabs(x);
    if (std::isnan(a)) return std::numeric_limits<float>::quiet_NaN();
    if (a > acc) acc = a;
  }
  return acc;
}

namespace {
constexpr std::uint32_t kFp32ExpMask = 0xFF800000u;  // sign + exponent: clears the mantissa
constexpr std::uint32_t kBf16MaxBits = 0x7F7F0000u;  // bf16 max finite, 3.3895314e38
// DeepGEMM per_token_cast_to_fp8: x_amax.clamp(1e-4); the Python float becomes fp32 1e-4f.
constexpr float kDeepgemmAmaxFloor = 1e-4f;
// FP8-Flow-MoE Triton SwiGLU+quant: tl.maximum(amax, 1e-10).
constexpr float kPaperSwigluAmaxFloor = 1e-10f;
// The NaN every CUDA fp32 arithmetic instruction returns (recorded: DeepGEMM's sf of a NaN block on the H100).
constexpr std::uint32_t kCudaCanonicalNan = 0x7FFFFFFFu;

float pow2f(int e) { return std::ldexp(1.0f, e); }  // exact for e in [-149, 127]
}  // namespace

float te_scale_from_amax(float amax, float fmax, float eps, bool pow2, InputDtype input) {
  if (amax < eps) amax = eps;
  float scale;
  if (amax == 0.0f || std::isinf(amax) || std::isnan(amax)) {
    scale = 1.0f;
  } else {
    scale = fmax / amax;  // __fdiv_rn
    if (std::isinf(scale))
      scale = input == InputDtype::bf16 ? std::bit_cast<float>(kBf16MaxBits) : std::numeric_limits<float>::max();
    if (pow2) scale = std::bit_cast<float>(std::bit_cast<std::uint32_t>(scale) & kFp32ExpMask);
  }
  return scale;
}

float ceil_to_ue8m0(float sf) { return pow2f(int(ue8m0_from_float(sf, Ue8m0Rule::ceil, Overflow::satfinite)) - 127); }

BlockScale block_scale(ScaleRule r, const FormatSpec& payload, std::span<const float> block, const QuantParams& p) {
  const float fmax = float(max_finite(payload));
  switch (r) {
    case ScaleRule::te_fp32:
    case ScaleRule::te_pow2: {
      const float scale = te_scale_from_amax(amax_fmaxf(block), fmax, p.eps, r == ScaleRule::te_pow2, p.input);
      return {1.0f / scale, scale, BlockScale::mul, false};
    }
    case ScaleRule::deepgemm:
    case ScaleRule::deepgemm_ue8m0:
    case ScaleRule::deepgemm_cpu:
    case ScaleRule::deepgemm_ue8m0_cpu: {
      float amax = amax_nan_propagating(block);
      if (amax < kDeepgemmAmaxFloor) amax = kDeepgemmAmaxFloor;  // torch.clamp keeps NaN
      // `x_amax / 448.0` (a CPU scalar): torch's CUDA kernel multiplies by the scalar's fp32 reciprocal
      // (opmath 1.0f / 448.0f, rounded once on the host); the CPU kernel divides.
      const bool gpu = r == ScaleRule::deepgemm || r == ScaleRule::deepgemm_ue8m0;
      float sf = gpu ? amax * (1.0f / fmax) : amax / fmax;
      if (gpu && std::isnan(sf)) sf = std::bit_cast<float>(kCudaCanonicalNan);  // what the GPU stores
      if (r == ScaleRule::deepgemm_ue8m0 || r == ScaleRule::deepgemm_ue8m0_cpu) sf = ceil_to_ue8m0(sf);
      // x * (1.0 / sf): reciprocal() * 1.0 (exact), then the product
      return {sf, 1.0f / sf, BlockScale::mul, true, !gpu};
    }
    case ScaleRule::paper_swiglu: {
      // Triton's max reduction lowers to max.f32, which returns the non-NaN operand: NaN is ignored.
      const float amax = std::fmax(amax_fmaxf(block), kPaperSwigluAmaxFloor);
      // tl.fdiv(amax, 448, ieee_rounding=False) modelled as RN32 division (see docs/quantization.md).
      const float t = amax / fmax;
      const std::uint32_t b = std::bit_cast<std::uint32_t>(t);
      const std::uint32_t e = ((b >> 23) & 0xFFu) + ((b & 0x7FFFFFu) != 0 ? 1u : 0u);  // 255: Inf
      const float si = std::bit_cast<float>(e << 23);
      return {si, si, BlockScale::div, false};
    }
    case ScaleRule::mx_floor: {
      const float amax = amax_nan_propagating(block);
      if (!std::isfinite(amax)) {
        const float nan = std::numeric_limits<float>::quiet_NaN();
        return {nan, nan, BlockScale::div, false};  // E8M0 0xFF: the whole block is NaN
      }
      const int emax_elem = std::ilogb(max_finite(payload));
      int shared = amax == 0.0f ? -127 : std::ilogb(amax) - emax_elem;
      shared = shared < -127 ? -127 : shared;  // finite fp32 never exceeds 127 - emax_elem
      const float x = pow2f(shared);
      return {x, x, BlockScale::div, false};
    }
    case ScaleRule::mx_ceil: {
      const float v = amax_fmaxf(block) * (1.0f / fmax);
      const int e = ue8m0_from_float(v, Ue8m0Rule::ru, Overflow::satfinite);
      return {pow2f(e - 127), pow2f(127 - e), BlockScale::mul, false};
    }
  }
  throw std::logic_error("block_scale: unknown rule");
}

std::uint8_t cast_element(const FormatSpec& payload, float x, const BlockScale& s, Overflow overflow) {
  if (s.x86_nan && s.op == BlockScale::mul) {  // the NaN torch's x86 product gives, and its sign
    const float f = s.factor;
    const bool fnan = std::isnan(f), xnan = std::isnan(x);
    const bool invalid = (std::isinf(x) && f == 0.0f) || (x == 0.0f && std::isinf(f));
    if (fnan || xnan || invalid) {
      const bool neg = fnan ? std::signbit(f) : xnan ? std::signbit(x) : true;
      const std::uint32_t c = encode(payload, std::numeric_limits<float>::quiet_NaN(), CastPolicy{Rounding::rne, overflow});
      return std::uint8_t(neg ? c | sign_bit(payload) : c);
    }
  }
  const float y = s.op == BlockScale::mul ? x * s.factor : x / s.factor;
  std::uint32_t c = encode(payload, y, CastPolicy{Rounding::rne, overflow});
  if (s.torch_overflow_sign && std::signbit(y) && !std::isnan(y) && is_nan_code(payload, c)) c |= sign_bit(payload);
  return std::uint8_t(c);
}

}  // namespace fp8flow
