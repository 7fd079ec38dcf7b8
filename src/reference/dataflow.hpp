// Dataflows as data (STYLE.md): one MoE layer's forward and backward written as a list of Steps over
// named tensors. Every cast -- quantize, dequantize, the scaling-aware transpose, a quant fused into an
// operator, a precision rounding -- is a Step (or a field of one) with its granularity and scale rule;
// cast counts, the error ledger's attribution and the traffic model are computed by walking the list.
// The executor is the only implementation of the layer: no copy per dataflow.
//
// Operand names in a gemm may end in "^T": the operand is the transpose of the named tensor. For FP8
// operands "^T" needs a column copy (a transpose step or a quantize with an Nx1 tile) or a 128x128 tensor
// (whose transpose is exact: bytes and scales re-indexed).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "quant/quantize.hpp"
#include "quant/transpose.hpp"
#include "reference/gemm.hpp"
#include "reference/moe_layer.hpp"

namespace fp8flow {

// Storage precision of a tensor in the environment.
enum class Precision { fp64, fp32, bf16, fp8 };
std::string_view to_string(Precision p);
Precision parse_precision(std::string_view s);  // throws InputError
std::size_t storage_bytes(Precision p);         // per element (fp8: codes only; scales counted apart)

enum class Op {
  round,              // in -> out: value rounded to `prec` (bf16 copies of inputs and weights)
  quantize,           // in -> out: `recipe` (Nx1 tiles give a column copy, codes stored transposed)
  dequantize,         // fp8 in -> out in `prec`
  transpose,          // fp8 rowwise 1xN in -> column copy, `method` (naive | paper_kernel | exact)
  all_to_all,         // identity on one process; bytes counted by the traffic model
  router,             // x, wr -> logits, probs (top-k from the shared routing; math in fp32 unless fp64)
  permute_pad,        // [T, C] -> [rows, C] per expert, padded (fp8: bytes and scales copied, pad scale 0)
  gather_probs,       // probs [T, K] -> per-row [rows, 1]
  gemm,               // a, b -> out = a . b^T per expert group; fp8 x fp8 via the emulator (`gemm_config`)
  swiglu_fwd,         // h, prow -> act (weighted); `recipe` set: fused quant to fp8
  swiglu_bwd,         // dact, h, prow -> dh, dprow; `recipe` set: fused quant of dh
  unpermute_combine,  // [rows, C] -> [T, C]: fp32 (or fp64) sum of the top-k copies, rounded to `prec`
  scatter_probs,      // per-row [rows, 1] -> [T, K]
  router_bwd,         // dprobs, logits -> dlogits
  add,                // a, b -> a + b
};
std::string_view to_string(Op op);
Op parse_op(std::string_view s);  // throws InputError listing the names
inline constexpr std::string_view kOpNames =
    "round, quantize, dequantize, transpose, all_to_all, router, permute_pad, gather_probs, gemm, swiglu_fwd, "
    "swiglu_bwd, unpermute_combine, scatter_probs, router_bwd, add";

// weights: done once per step or microbatch (not counted, as in the paper); inputs: the bf16 copies of
// the layer's inputs (made by the previous layer); fwd / bwd: the layer itself.
enum class Phase { inputs, weights, fwd, bwd };
std::string_view to_string(Phase p);
Phase parse_phase(std::string_view s);

struct Step {
  Op op;
  std::vector<std::string> in, out;
  Phase phase = Phase::fwd;
  Precision prec = Precision::fp32;          // output precision (non-fp8 outputs); fp64 also means fp64 math
  std::optional<QuantRecipe> recipe = {};    // quantize; fused quant of swiglu_fwd / swiglu_bwd
  float eps = 0.0f;                          // te_* amax floor of `recipe`
  TransposeMethod method = TransposeMethod::exact;
  GemmConfig gemm_config = {};               // fp8 gemm: accumulation model (default h100); TOML key `accum`
};

struct Dataflow {
  std::string name, description;
  std::vector<Step> steps;
};

// ---- The named dataflows (dataflows.cpp) -----------------------------------------------------------
// fp64, bf16, fp8_blockwise, fp8_double_quant, fp8_flow (scaling-aware transpose: paper_kernel; the
// `exact` variant via ExecOptions::transpose or `--transpose exact`).
std::vector<Dataflow> builtin_dataflows();
Dataflow builtin_dataflow(std::string_view name);  // the named and the control dataflows; throws InputError
inline constexpr std::string_view kDataflowNames = "fp64, bf16, fp8_blockwise, fp8_double_quant, fp8_flow";
// Negative controls of the risk rules (docs/risk.md "Controls"): recipes known to hurt, which the calibration
// experiment (experiments/calibration.toml) runs and the rules must fail. Not part of "all".
//   ctl_e5m2_fwd        fp8_blockwise with E5M2 forward activations and weights
//   ctl_per_tensor_act  fp8_blockwise with one per-tensor scale for the forward activations xp and act
// and one reference variant (a positive control, the floor the transpose study's `direct` refers to):
//   fp8_blockwise_bf16_dispatch  fp8_blockwise with BF16 all-to-alls: every FP8 copy quantized directly from BF16
std::vector<Dataflow> control_dataflows();
inline constexpr std::string_view kControlDataflowNames = "ctl_e5m2_fwd, ctl_per_tensor_act, fp8_blockwise_bf16_dispatch";

// ---- Walking the graph -------------------------------------------------------------------------------
// The kinds of cast, as the paper counts them: an explicit cast is a separate Q or DQ kernel.
enum class CastKind { none, explicit_quantize, explicit_dequantize, fused_quantize, scaling_aware_transpose,
                      naive_transpose, precision_round };
std::string_view to_string(CastKind k);
CastKind cast_kind(const Step& s);
bool is_cast(const Step& s);

struct CastCounts {
  int explicit_quantize = 0, explicit_dequantize = 0, fused_quantize = 0, sat = 0, naive_transpose = 0,
      precision_round = 0, fp8_gemms = 0, gemms = 0;
  int explicit_casts() const { return explicit_quantize + explicit_dequantize + 2 * naive_transpose; }
};
// Forward + backward (phases fwd and bwd); weight and input preparation are listed apart.
CastCounts count_casts(const Dataflow& df, bool include_prologue = false);
int count_steps(const Dataflow& df, Op op, std::string_view tensor = {});
// The distinct GEMM configs (to_string(GemmConfig)) of the graph's FP8 x FP8 GEMMs, in step order: what a
// result records as its GEMM model. Empty for a dataflow without FP8 GEMMs.
std::vector<std::string> fp8_gemm_configs(const Dataflow& df);
// How each FP8 tensor of the forward and backward is made (docs/dataflows.md "Which copies are requantized"):
//   direct  quantized from a high-precision tensor that never went through FP8
//   dq_q    quantized from values that went through an FP8 cast and a dequantize (double quantization)
//   sat     scaling-aware transpose of an FP8 tensor;  naive  DQ -> T -> Q transpose step
//   fused   quantized inside SwiGLU forward/backward (from the operator's fp32 result)
struct CopyOrigin {
  std::string tensor, source, origin;
};
std::vector<CopyOrigin> copy_origins(const Dataflow& df);

// Structural checks: every input defined before use, gemm operands exist, recipes valid for their op.
// Throws InputError naming the dataflow, the step index and the problem.
// Throws InputError naming the step. `complete`: also require the layer outputs y, dx, dwr, dw1, dw2 (a
// whole layer, as user dataflow files must be; partial graphs such as one EP rank's are checked without).
void check_dataflow(const Dataflow& df, bool complete = false);

// ---- The tensor environment and the executor ---------------------------------------------------------
struct Tensor {
  Precision prec = Precision::fp64;
  std::size_t rows = 0, cols = 0;
  std::vector<std::size_t> groups;         // row groups (one per expert, zeros allowed); empty: one group
  std::vector<double> v;                   // logical values (fp8: dequantized); empty in shape-only runs
  std::optional<QuantizedTensor> q;        // fp8 codes and scales
  std::optional<QuantRecipe> recipe;       // fp8: how it was made (also in shape-only runs)
  bool column_copy = false;                // fp8 codes stored transposed (an Nx1 column copy)
  bool exact = false;                      // a cast replaced by an exact one made this (ledger attribution)
  std::size_t scale_count() const;         // fp8 scales (fp32 each)
  std::size_t bytes() const;               // storage: elements * precision + scales
};
using Env = std::map<std::string, Tensor, std::less<>>;

struct ExecOptions {
  int threads = 0;
  std::optional<GemmConfig> gemm_config;         // overrides every fp8 gemm's config (`--accum`)
  std::optional<TransposeMethod> transpose;      // overrides every paper_kernel/exact transpose step
  long exact_step = -1;                          // replace this cast step by an exact one (attribution)
  bool shape_only = false;                       // track shapes and precisions only (traffic model)
  std::function<void(std::size_t, const Env&)> before_step, after_step;  // observers (traffic model)
  // Run only the steps [first_step, end_step) (the whole graph is still checked): a training loop runs the
  // forward part, then sets `dy` and runs the backward part on the same Env (reference/train.hpp).
  std::size_t first_step = 0, end_step = static_cast<std::size_t>(-1);
};

struct Context {
  MoeShape shape;
  Routing routing;                               // shared by every dataflow: a routing flip would dominate
};

// Inputs x, wr, w1, w2, dy as fp64 tensors (shape_only: empty values).
Env make_env(const MoeShape& s, const MoeInputs* in);
// Run every step in order on `env`.
void execute(const Dataflow& df, const Context& ctx, Env& env, const ExecOptions& o);

// Apply the CLI overrides to the graph itself (so that listings show what ran).
Dataflow with_overrides(Dataflow df, const ExecOptions& o);

// ---- TOML ------------------------------------------------------------------------------------------
// A user dataflow: name, description, and [[step]] tables with op, in, out, phase, prec, recipe, eps,
// method, accum (the names of this file). Throws InputError naming file, step and field.
// A user dataflow file (docs/dataflows.md). Every error starts with `path:line:` and names the step and
// field; unknown keys and a dataflow that never computes a layer output (a truncated file) are refused.
Dataflow load_dataflow_toml(const std::string& path);
Dataflow parse_dataflow_toml(std::string_view text, const std::string& path);
std::string to_toml(const Dataflow& df);

}  // namespace fp8flow
