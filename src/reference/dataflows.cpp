// Every named dataflow of one MoE layer, forward and backward (PAPER.md section 2), and nothing else.
// Casts are steps: count them with count_casts(); docs/dataflows.md compares the counts with the paper.
#include <fmt/format.h>

#include "io/errors.hpp"
#include "reference/dataflow.hpp"

namespace fp8flow {
namespace {

using enum Op;
using enum Phase;
using P = Precision;

const QuantRecipe kRow{k1x128, &e4m3, ScaleRule::te_pow2};         // activations, gradients: 1x128
const QuantRecipe kCol{k128x1, &e4m3, ScaleRule::te_pow2};         // their column copies: 128x1
const QuantRecipe kWeight{k128x128, &e4m3, ScaleRule::te_pow2};    // weights: 128x128
const QuantRecipe kSwiglu{k1x128, &e4m3, ScaleRule::paper_swiglu}; // fused weighted SwiGLU + quant
constexpr float kDispatchEps = 1e-10f;                             // FP8-Flow's pre-dispatch quantizer (3.1)

struct Builder {
  Dataflow df;
  Phase phase = fwd;
  Step& add(Op op, std::vector<std::string> in, std::vector<std::string> out, P prec) {
    df.steps.push_back(Step{op, std::move(in), std::move(out), phase, prec});
    return df.steps.back();
  }
  void quantize(const std::string& in, const std::string& out, const QuantRecipe& r, float eps = 0.0f) {
    Step& s = add(Op::quantize, {in}, {out}, P::fp8);
    s.recipe = r;
    s.eps = eps;
  }
  void transpose(const std::string& in, const std::string& out) {
    add(Op::transpose, {in}, {out}, P::fp8).method = TransposeMethod::paper_kernel;
  }
  // FP8 x FP8 GEMMs run on the H100 model (GemmConfig's default): the golden layer is what the H100 computes.
  void gemm(const std::string& a, const std::string& b, const std::string& out, P prec) {
    add(Op::gemm, {a, b}, {out}, prec).gemm_config = GemmConfig{};
  }
  // Expert weight gradients accumulate into an fp32 main gradient (Megatron's main_grad, TE's
  // fuse_wgrad_accumulation): the wgrad GEMM's fp32 output is kept, never rounded to bf16.
  void wgrad(const std::string& a, const std::string& b, const std::string& out, P prec) {
    gemm(a, b, out, prec == P::fp64 ? P::fp64 : P::fp32);
  }
  // bf16 copies of the inputs (made by the previous layer) and of the weights.
  void bf16_prologue() {
    phase = inputs;
    for (const char* t : {"x", "dy"}) add(round, {t}, {t}, P::bf16);
    phase = weights;
    for (const char* t : {"wr", "w1", "w2"}) add(round, {t}, {t}, P::bf16);
  }
  void fp8_weights() {
    phase = weights;
    quantize("w1", "w1.q", kWeight);
    quantize("w2", "w2.q", kWeight);
  }
  // Router backward and the router's own GEMMs (high precision in every dataflow).
  void router_backward(P prec) {
    add(scatter_probs, {"dprow"}, {"dprobs"}, prec == P::fp64 ? P::fp64 : P::fp32);
    add(router_bwd, {"dprobs", "logits"}, {"dlogits"}, prec == P::fp64 ? P::fp64 : P::fp32);
    gemm("dlogits", "wr^T", "dx_router", prec);
    gemm("dlogits^T", "x^T", "dwr", prec);  // the router's grad (torch autograd in Megatron: bf16, not main_grad)
    add(Op::add, {"dx_moe", "dx_router"}, {"dx"}, prec);
  }
};

// Golden and bf16: the same graph, every value in one precision.
Dataflow plain(const char* name, const char* description, P prec) {
  Builder b;
  b.df.name = name;
  b.df.description = description;
  if (prec == P::bf16) b.bf16_prologue();
  b.phase = fwd;
  b.add(router, {"x", "wr"}, {"logits", "probs"}, prec);
  b.add(permute_pad, {"x"}, {"xp"}, prec);
  b.add(gather_probs, {"probs"}, {"prow"}, prec);
  b.gemm("xp", "w1", "h", prec);
  b.add(swiglu_fwd, {"h", "prow"}, {"act"}, prec);
  b.gemm("act", "w2", "o", prec);
  b.add(unpermute_combine, {"o"}, {"y"}, prec);
  b.phase = bwd;
  b.add(permute_pad, {"dy"}, {"dout"}, prec);
  b.gemm("dout", "w2^T", "dact", prec);
  b.wgrad("dout^T", "act^T", "dw2", prec);
  b.add(swiglu_bwd, {"dact", "h", "prow"}, {"dh", "dprow"}, prec);
  b.gemm("dh", "w1^T", "dxp", prec);
  b.wgrad("dh^T", "xp^T", "dw1", prec);
  b.add(unpermute_combine, {"dxp"}, {"dx_moe"}, prec);
  b.router_backward(prec);
  return b.df;
}

// Known-bad variants of fp8_blockwise, the negative controls of the risk rules (docs/risk.md "Controls").
// bf16_dispatch is not a control but the error floor `direct` refers to: fp8_blockwise with the all-to-alls in
// BF16, so that every FP8 copy is quantized directly from the high-precision tensor.
enum class Control { none, e5m2_fwd, per_tensor_act, bf16_dispatch };
const QuantRecipe kRowE5m2{k1x128, &e5m2, ScaleRule::te_pow2};
const QuantRecipe kWeightE5m2{k128x128, &e5m2, ScaleRule::te_pow2};
const QuantRecipe kPerTensor{kTensor, &e4m3, ScaleRule::te_fp32};

// TE blockwise + FP8 DeepEP: BF16 between operators; Q before and DQ after each all-to-all; every GEMM
// input quantized twice from BF16 (rowwise 1x128 and columnwise 128x1). Which copies round twice: x.q is
// quantized from bf16 for the dispatch and dequantized after it, so xp.q/xp.col (from x.dq) and likewise
// dout.q/dout.col (from dy.dq) are DQ->Q copies of an FP8 tensor; act.q/act.col and dh.q/dh.col are
// quantized directly from the bf16 operator outputs (docs/dataflows.md, "Which copies are requantized").
Dataflow fp8_blockwise(Control ctl = Control::none) {
  Builder b;
  b.df.name = ctl == Control::e5m2_fwd         ? "ctl_e5m2_fwd"
              : ctl == Control::per_tensor_act ? "ctl_per_tensor_act"
              : ctl == Control::bf16_dispatch  ? "fp8_blockwise_bf16_dispatch"
                                               : "fp8_blockwise";
  b.df.description =
      ctl == Control::e5m2_fwd
          ? "negative control: fp8_blockwise with E5M2 forward activations (x.q, xp.q, act.q) and weights"
      : ctl == Control::per_tensor_act
          ? "negative control: fp8_blockwise whose forward activations xp and act get one per-tensor te_fp32 scale "
            "(quantized per tensor, dequantized, then cast to the 1x128 GEMM layout)"
      : ctl == Control::bf16_dispatch
          ? "reference: fp8_blockwise with BF16 dispatch and combine-backward, so every FP8 copy (xp, act, dout, dh; "
            "rowwise and columnwise) is quantized directly from BF16: the floor of the transpose study's `direct`"
          : "TE blockwise FP8 (1x128 / 128x1 / 128x128 te_pow2) with FP8 dispatch: BF16 between "
            "operators, Q/DQ around every all-to-all, rowwise + columnwise Q from BF16 before every GEMM";
  b.bf16_prologue();
  if (ctl == Control::e5m2_fwd) {
    b.phase = weights;
    b.quantize("w1", "w1.q", kWeightE5m2);
    b.quantize("w2", "w2.q", kWeightE5m2);
  } else {
    b.fp8_weights();
  }
  const QuantRecipe& fwd_row = ctl == Control::e5m2_fwd ? kRowE5m2 : kRow;
  // The forward GEMM operand of activation t (rowwise 1x128).
  auto fwd_operand = [&](const std::string& t) {
    if (ctl == Control::per_tensor_act) {
      b.quantize(t, t + ".pt", kPerTensor);
      b.add(dequantize, {t + ".pt"}, {t + ".ptdq"}, P::bf16);
      b.quantize(t + ".ptdq", t + ".q", kRow);
    } else {
      b.quantize(t, t + ".q", fwd_row);
    }
  };
  b.phase = fwd;
  b.add(router, {"x", "wr"}, {"logits", "probs"}, P::bf16);
  if (ctl == Control::bf16_dispatch) {
    b.add(all_to_all, {"x"}, {"x"}, P::bf16);
    b.add(permute_pad, {"x"}, {"xp"}, P::bf16);
  } else {
    b.quantize("x", "x.q", fwd_row);
    b.add(all_to_all, {"x.q"}, {"x.q"}, P::fp8);
    b.add(dequantize, {"x.q"}, {"x.dq"}, P::bf16);
    b.add(permute_pad, {"x.dq"}, {"xp"}, P::bf16);
  }
  b.add(gather_probs, {"probs"}, {"prow"}, P::bf16);
  fwd_operand("xp");
  b.quantize("xp", "xp.col", kCol);
  b.gemm("xp.q", "w1.q", "h", P::bf16);
  b.add(swiglu_fwd, {"h", "prow"}, {"act"}, P::bf16);
  fwd_operand("act");
  b.quantize("act", "act.col", kCol);
  b.gemm("act.q", "w2.q", "o", P::bf16);
  b.add(unpermute_combine, {"o"}, {"y"}, P::bf16);
  b.phase = bwd;
  if (ctl == Control::bf16_dispatch) {
    b.add(all_to_all, {"dy"}, {"dy"}, P::bf16);
    b.add(permute_pad, {"dy"}, {"dout"}, P::bf16);
  } else {
    b.quantize("dy", "dy.q", kRow);
    b.add(all_to_all, {"dy.q"}, {"dy.q"}, P::fp8);
    b.add(dequantize, {"dy.q"}, {"dy.dq"}, P::bf16);
    b.add(permute_pad, {"dy.dq"}, {"dout"}, P::bf16);
  }
  b.quantize("dout", "dout.q", kRow);
  b.quantize("dout", "dout.col", kCol);
  b.gemm("dout.q", "w2.q^T", "dact", P::bf16);
  b.wgrad("dout.col^T", "act.col^T", "dw2", P::bf16);
  b.add(swiglu_bwd, {"dact", "h", "prow"}, {"dh", "dprow"}, P::bf16);
  b.quantize("dh", "dh.q", kRow);
  b.quantize("dh", "dh.col", kCol);
  b.gemm("dh.q", "w1.q^T", "dxp", P::bf16);
  b.wgrad("dh.col^T", "xp.col^T", "dw1", P::bf16);
  b.add(unpermute_combine, {"dxp"}, {"dx_moe"}, P::bf16);
  b.router_backward(P::bf16);
  return b.df;
}

// FP8 kept between operators (FP8 dispatch, fused SwiGLU quant) but every GEMM input goes through
// DQ(fp32) -> rowwise 1x128 + columnwise 128x1 requant (the artifact's double_quant ablation).
// FP8-Flow: quantize before dispatch and before combine-backward only; columnwise operands by the
// scaling-aware transpose. The two share everything but how a GEMM input's copies are made.
Dataflow fp8_kept(bool double_quant) {
  Builder b;
  b.df.name = double_quant ? "fp8_double_quant" : "fp8_flow";
  b.df.description = double_quant
                         ? "FP8 kept between operators; GEMM inputs by dequantize(fp32) -> rowwise 1x128 + "
                           "columnwise 128x1 te_pow2 requantize (double quantization)"
                         : "FP8-Flow-MoE: Q before dispatch and before combine-backward only, fused SwiGLU+quant, "
                           "column copies by the scaling-aware transpose";
  b.bf16_prologue();
  b.fp8_weights();
  // The GEMM operands made from an fp8 tensor t: returns the rowwise operand name; the column copy is t.col.
  auto operands = [&](const std::string& t) -> std::string {
    if (!double_quant) {
      b.transpose(t, t + ".col");
      return t;
    }
    b.add(dequantize, {t}, {t + ".dq"}, P::fp32);
    b.quantize(t + ".dq", t + ".q", kRow);
    b.quantize(t + ".dq", t + ".col", kCol);
    return t + ".q";
  };
  b.phase = fwd;
  b.add(router, {"x", "wr"}, {"logits", "probs"}, P::bf16);
  b.quantize("x", "x.q", kRow, kDispatchEps);
  b.add(all_to_all, {"x.q"}, {"x.q"}, P::fp8);
  b.add(permute_pad, {"x.q"}, {"xp"}, P::fp8);
  b.add(gather_probs, {"probs"}, {"prow"}, P::bf16);
  const std::string xp = operands("xp");
  b.gemm(xp, "w1.q", "h", P::bf16);
  b.add(swiglu_fwd, {"h", "prow"}, {"act"}, P::fp8).recipe = kSwiglu;
  const std::string act = operands("act");
  b.gemm(act, "w2.q", "o", P::bf16);
  b.add(unpermute_combine, {"o"}, {"y"}, P::bf16);
  b.phase = bwd;
  b.quantize("dy", "dy.q", kRow, kDispatchEps);
  b.add(all_to_all, {"dy.q"}, {"dy.q"}, P::fp8);
  b.add(permute_pad, {"dy.q"}, {"dout"}, P::fp8);
  const std::string dout = operands("dout");
  b.gemm(dout, "w2.q^T", "dact", P::bf16);
  b.wgrad("dout.col^T", "act.col^T", "dw2", P::bf16);
  b.add(swiglu_bwd, {"dact", "h", "prow"}, {"dh", "dprow"}, P::fp8).recipe = kSwiglu;
  const std::string dh = operands("dh");
  b.gemm(dh, "w1.q^T", "dxp", P::bf16);
  b.wgrad("dh.col^T", "xp.col^T", "dw1", P::bf16);
  b.add(unpermute_combine, {"dxp"}, {"dx_moe"}, P::bf16);
  b.router_backward(P::bf16);
  return b.df;
}

}  // namespace

std::vector<Dataflow> builtin_dataflows() {
  return {plain("fp64", "golden: every value float64, fp64 GEMMs", P::fp64),
          plain("bf16", "BF16 storage, FP32 accumulation", P::bf16), fp8_blockwise(), fp8_kept(true),
          fp8_kept(false)};
}

std::vector<Dataflow> control_dataflows() {
  return {fp8_blockwise(Control::e5m2_fwd), fp8_blockwise(Control::per_tensor_act),
          fp8_blockwise(Control::bf16_dispatch)};
}

Dataflow builtin_dataflow(std::string_view name) {
  for (auto& df : builtin_dataflows())
    if (df.name == name) return df;
  for (auto& df : control_dataflows())
    if (df.name == name) return df;
  throw InputError(fmt::format("unknown dataflow '{}': expected one of {}, a control ({}) or a .toml file", name,
                               kDataflowNames, kControlDataflowNames));
}

}  // namespace fp8flow
