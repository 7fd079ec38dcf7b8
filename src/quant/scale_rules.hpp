// Scale rules: how a block's scale is chosen and how its elements are cast. Each rule reproduces its
// source bit for bit (PAPER.md section 3; docs/quantization.md has the derivations and edge cases).
//
//   te_fp32, te_pow2   TransformerEngine Float8BlockQuantizer (quantize_scale_calc.py, TE 2.x)
//   deepgemm           DeepGEMM deep_gemm/utils/math.py per_token_cast_to_fp8 / per_block_cast_to_fp8, as torch
//                      runs them on the GPU (amax / 448.0 is amax * RN32(1/448) there; recorded on an H100)
//   deepgemm_ue8m0     the same with use_ue8m0=True (sf rounded up by ceil_to_ue8m0)
//   deepgemm_cpu       the same Python run by torch on the CPU (amax / 448.0 divides)
//   deepgemm_ue8m0_cpu the same with use_ue8m0=True
//   paper_swiglu       FP8-Flow-MoE fused weighted SwiGLU + quant (Triton), quantize-given-y part
//   mx_floor           OCP MX v1.0 shared exponent (floor), E8M0 scale
//   mx_ceil            NVIDIA MXFP8 (TE, DeepGEMM ue8m0): amax/FMAX rounded up to a power of two
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "formats/format_spec.hpp"
#include "formats/rounding.hpp"

namespace fp8flow {

enum class ScaleRule {
  te_fp32, te_pow2, deepgemm, deepgemm_ue8m0, paper_swiglu, mx_floor, mx_ceil, deepgemm_cpu, deepgemm_ue8m0_cpu
};
inline constexpr ScaleRule kAllScaleRules[] = {
    ScaleRule::te_fp32,  ScaleRule::te_pow2, ScaleRule::deepgemm,     ScaleRule::deepgemm_ue8m0,
    ScaleRule::paper_swiglu, ScaleRule::mx_floor, ScaleRule::mx_ceil, ScaleRule::deepgemm_cpu,
    ScaleRule::deepgemm_ue8m0_cpu};
std::string_view to_string(ScaleRule r);  // the enumerator name
ScaleRule parse_scale_rule(std::string_view s);  // throws InputError listing the names
inline constexpr std::string_view kScaleRuleNames =
    "te_fp32, te_pow2, deepgemm, deepgemm_ue8m0, paper_swiglu, mx_floor, mx_ceil, deepgemm_cpu, deepgemm_ue8m0_cpu";
// The DeepGEMM rules (GPU and CPU execution, with and without UE8M0).
bool is_deepgemm(ScaleRule r);

// The element cast of the source: TE, Triton and MX kernels saturate; the torch-based DeepGEMM
// references cast with .to(torch.float8_e4m3fn), which does not.
Overflow source_overflow(ScaleRule r);
// Whether every scale the rule produces is a power of two (then storable as UE8M0).
bool pow2_scales(ScaleRule r);

// How scales are stored: fp32 scale_inv, or the UE8M0 code of a power-of-two scale_inv.
enum class ScaleFormat { fp32, ue8m0 };
std::string_view to_string(ScaleFormat f);
ScaleFormat parse_scale_format(std::string_view s);  // throws InputError

// Which high-precision dtype the block was read from. TE clamps an infinite scale to the largest finite
// value of the *input* dtype (bf16 0x7F7F = 3.3895e38, else FLT_MAX); only te_fp32 sees the difference.
enum class InputDtype { f32, bf16, f16 };

struct QuantParams {
  float eps = 0.0f;                 // te_*: amax floor (TE default 0; FP8-Flow's pre-dispatch quantizer 1e-10)
  Overflow overflow = Overflow::satfinite;  // element cast; set from source_overflow(rule) unless overridden
  ScaleFormat scale_format = ScaleFormat::fp32;
  InputDtype input = InputDtype::f32;
};
// The parameters a rule uses when nothing is overridden: eps 0, the source's overflow, fp32 scales.
QuantParams default_params(ScaleRule r);

// A block's scale and how its elements are brought into the payload range before the cast.
struct BlockScale {
  float scale_inv;       // what is stored (dequantize multiplies by it)
  float factor;          // element multiplier (op == mul) or divisor (op == div)
  enum Op : std::uint8_t { mul, div } op;
  // torch's .to(float8) keeps the sign when a non-NaN input overflows to NaN (-Inf -> 0xFF); arithmetic
  // NaNs are the canonical +NaN of CUDA (0x7F). Set by the deepgemm rules; others follow CUDA's cvt.
  bool torch_overflow_sign = false;
  // torch on an x86 CPU (deepgemm*_cpu): a NaN product keeps the sign of the NaN it came from (the factor's
  // if both are NaN, as recorded), and Inf * 0 gives x86's default NaN, whose sign bit is set; the cast then
  // keeps that sign (NaN -> 0x7F | sign). On CUDA every arithmetic NaN is the canonical +NaN (0x7F).
  bool x86_nan = false;
};

// The rule applied to one block's float32 elements (valid elements only; any order).
BlockScale block_scale(ScaleRule r, const FormatSpec& payload, std::span<const float> block, const QuantParams& p);
// One element: cast(RN32(x op factor)) with RNE and the params' overflow policy (see torch_overflow_sign).
std::uint8_t cast_element(const FormatSpec& payload, float x, const BlockScale& s, Overflow overflow);

// ---- Pieces of the rules, named for tests and the fast paths ----------------------------------------
// TE amax: fold fmaxf(acc, |x|) from 0. fmaxf returns the non-NaN operand, so NaN never enters.
float amax_fmaxf(std::span<const float> block);
// torch.amax(x.abs()): NaN propagates.
float amax_nan_propagating(std::span<const float> block);
// TE scale from a block amax (section 3.1); returns the scale (not its inverse).
float te_scale_from_amax(float amax, float fmax, float eps, bool pow2, InputDtype input);
// DeepGEMM ceil_to_ue8m0 on fp32 bits: 2^(clamp(field + (mantissa != 0), 1, 254) - 127).
float ceil_to_ue8m0(float sf);

}  // namespace fp8flow
