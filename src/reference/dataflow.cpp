// The dataflow vocabulary, graph walks (cast counts, checks), the executor and TOML I/O.
#include "reference/dataflow.hpp"

#include <fmt/format.h>

#include <Eigen/Dense>
#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <sstream>
#include <toml++/toml.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "formats/batch.hpp"
#include "io/errors.hpp"

namespace fp8flow {

// ---- Names ---------------------------------------------------------------------------------------------
namespace {
template <class E, std::size_t N>
E parse_enum(std::string_view s, const std::array<std::pair<E, std::string_view>, N>& names, const char* what,
             std::string_view list) {
  for (const auto& [e, n] : names)
    if (n == s) return e;
  throw InputError(fmt::format("unknown {} '{}': expected one of {}", what, s, list));
}
template <class E, std::size_t N>
std::string_view enum_name(E e, const std::array<std::pair<E, std::string_view>, N>& names) {
  for (const auto& [v, n] : names)
    if (v == e) return n;
  return "?";
}

constexpr std::array<std::pair<Precision, std::string_view>, 4> kPrecisions{
    {{Precision::fp64, "fp64"}, {Precision::fp32, "fp32"}, {Precision::bf16, "bf16"}, {Precision::fp8, "fp8"}}};
constexpr std::array<std::pair<Op, std::string_view>, 15> kOps{{{Op::round, "round"},
                                                                {Op::quantize, "quantize"},
                                                                {Op::dequantize, "dequantize"},
                                                                {Op::transpose, "transpose"},
                                                                {Op::all_to_all, "all_to_all"},
                                                                {Op::router, "router"},
                                                                {Op::permute_pad, "permute_pad"},
                                                                {Op::gather_probs, "gather_probs"},
                                                                {Op::gemm, "gemm"},
                                                                {Op::swiglu_fwd, "swiglu_fwd"},
                                                                {Op::swiglu_bwd, "swiglu_bwd"},
                                                                {Op::unpermute_combine, "unpermute_combine"},
                                                                {Op::scatter_probs, "scatter_probs"},
                                                                {Op::router_bwd, "router_bwd"},
                                                                {Op::add, "add"}}};
constexpr std::array<std::pair<Phase, std::string_view>, 4> kPhases{
    {{Phase::inputs, "inputs"}, {Phase::weights, "weights"}, {Phase::fwd, "fwd"}, {Phase::bwd, "bwd"}}};
constexpr std::array<std::pair<CastKind, std::string_view>, 7> kCastKinds{
    {{CastKind::none, "none"},
     {CastKind::explicit_quantize, "explicit_quantize"},
     {CastKind::explicit_dequantize, "explicit_dequantize"},
     {CastKind::fused_quantize, "fused_quantize"},
     {CastKind::scaling_aware_transpose, "scaling_aware_transpose"},
     {CastKind::naive_transpose, "naive_transpose"},
     {CastKind::precision_round, "precision_round"}}};

// Operator arity: inputs, outputs.
std::pair<std::size_t, std::size_t> arity(Op op) {
  switch (op) {
    case Op::router: return {2, 2};
    case Op::gemm: case Op::swiglu_fwd: case Op::router_bwd: case Op::add: return {2, 1};
    case Op::swiglu_bwd: return {3, 2};
    default: return {1, 1};
  }
}
}  // namespace

std::string_view to_string(Precision p) { return enum_name(p, kPrecisions); }
Precision parse_precision(std::string_view s) { return parse_enum(s, kPrecisions, "precision", "fp64, fp32, bf16, fp8"); }
std::size_t storage_bytes(Precision p) {
  switch (p) {
    case Precision::fp64: return 8;
    case Precision::fp32: return 4;
    case Precision::bf16: return 2;
    case Precision::fp8: return 1;
  }
  return 8;
}
std::string_view to_string(Op op) { return enum_name(op, kOps); }
Op parse_op(std::string_view s) { return parse_enum(s, kOps, "op", kOpNames); }
std::string_view to_string(Phase p) { return enum_name(p, kPhases); }
Phase parse_phase(std::string_view s) { return parse_enum(s, kPhases, "phase", "inputs, weights, fwd, bwd"); }
std::string_view to_string(CastKind k) { return enum_name(k, kCastKinds); }

// ---- Graph walks ---------------------------------------------------------------------------------------
CastKind cast_kind(const Step& s) {
  switch (s.op) {
    case Op::quantize: return CastKind::explicit_quantize;
    case Op::dequantize: return CastKind::explicit_dequantize;
    case Op::transpose:
      return s.method == TransposeMethod::naive ? CastKind::naive_transpose : CastKind::scaling_aware_transpose;
    case Op::swiglu_fwd: case Op::swiglu_bwd: return s.recipe ? CastKind::fused_quantize : CastKind::none;
    case Op::round: return CastKind::precision_round;
    default: return CastKind::none;
  }
}
bool is_cast(const Step& s) { return cast_kind(s) != CastKind::none; }

namespace {
struct OperandName {
  std::string name;
  bool transposed;
};
OperandName operand_name(const std::string& s) {
  if (s.size() > 2 && s.ends_with("^T")) return {s.substr(0, s.size() - 2), true};
  return {s, false};
}
}  // namespace

CastCounts count_casts(const Dataflow& df, bool include_prologue) {
  CastCounts c;
  for (const Step& s : df.steps) {
    const bool prologue = s.phase == Phase::inputs || s.phase == Phase::weights;
    if (prologue != include_prologue) continue;
    switch (cast_kind(s)) {
      case CastKind::explicit_quantize: ++c.explicit_quantize; break;
      case CastKind::explicit_dequantize: ++c.explicit_dequantize; break;
      case CastKind::fused_quantize: ++c.fused_quantize; break;
      case CastKind::scaling_aware_transpose: ++c.sat; break;
      case CastKind::naive_transpose: ++c.naive_transpose; break;
      case CastKind::precision_round: ++c.precision_round; break;
      case CastKind::none: break;
    }
    if (s.op == Op::gemm) ++c.gemms;
  }
  return c;
}

std::vector<std::string> fp8_gemm_configs(const Dataflow& df) {
  std::map<std::string, Precision, std::less<>> prec;  // the inputs x, wr, w1, w2, dy are not fp8
  std::vector<std::string> out;
  for (const Step& s : df.steps) {
    if (s.op == Op::gemm && s.in.size() == 2) {
      auto is_fp8 = [&](const std::string& operand) {
        const auto it = prec.find(operand_name(operand).name);
        return it != prec.end() && it->second == Precision::fp8;
      };
      const std::string c = to_string(s.gemm_config);
      if (is_fp8(s.in[0]) && is_fp8(s.in[1]) && std::find(out.begin(), out.end(), c) == out.end()) out.push_back(c);
    }
    for (const auto& o : s.out) prec[o] = s.prec;
  }
  return out;
}

std::vector<CopyOrigin> copy_origins(const Dataflow& df) {
  std::set<std::string> from_fp8;  // tensors whose values went through an FP8 cast and back (dequantize)
  std::set<std::string> fp8;       // FP8 tensors
  std::vector<CopyOrigin> out;
  for (const Step& s : df.steps) {
    if (s.phase != Phase::fwd && s.phase != Phase::bwd) continue;
    const std::string in = s.in.empty() ? "" : operand_name(s.in[0]).name;
    switch (s.op) {
      case Op::quantize:
        out.push_back({s.out[0], in, from_fp8.contains(in) || fp8.contains(in) ? "dq_q" : "direct"});
        fp8.insert(s.out[0]);
        break;
      case Op::transpose:
        out.push_back({s.out[0], in, s.method == TransposeMethod::naive ? "naive" : "sat"});
        fp8.insert(s.out[0]);
        break;
      case Op::swiglu_fwd:
      case Op::swiglu_bwd:
        if (s.recipe) {
          out.push_back({s.out[0], in, "fused"});
          fp8.insert(s.out[0]);
        }
        break;
      case Op::dequantize: from_fp8.insert(s.out[0]); break;
      case Op::all_to_all:
      case Op::permute_pad:
      case Op::round:
        if (from_fp8.contains(in)) from_fp8.insert(s.out[0]);
        if (fp8.contains(in) && s.prec == Precision::fp8) fp8.insert(s.out[0]);
        break;
      default: break;
    }
  }
  return out;
}

int count_steps(const Dataflow& df, Op op, std::string_view tensor) {
  int n = 0;
  for (const Step& s : df.steps) {
    if (s.op != op) continue;
    if (tensor.empty()) {
      ++n;
      continue;
    }
    for (const auto& i : s.in)
      if (operand_name(i).name == tensor) {
        ++n;
        break;
      }
  }
  return n;
}

void check_dataflow(const Dataflow& df, bool complete) {
  std::set<std::string, std::less<>> defined{"x", "wr", "w1", "w2", "dy"};
  for (std::size_t i = 0; i < df.steps.size(); ++i) {
    const Step& s = df.steps[i];
    auto fail = [&](const std::string& what) {
      throw InputError(fmt::format("dataflow {}: step {} ({}): {}", df.name, i, to_string(s.op), what));
    };
    const auto [ni, no] = arity(s.op);
    if (s.in.size() != ni || s.out.size() != no)
      fail(fmt::format("{} inputs and {} outputs, expected {} and {}", s.in.size(), s.out.size(), ni, no));
    for (const auto& in : s.in) {
      const auto [name, t] = operand_name(in);
      if (t && s.op != Op::gemm) fail(fmt::format("input '{}': ^T is only for gemm operands", in));
      if (!defined.contains(name)) fail(fmt::format("input '{}' is not defined by an earlier step", name));
    }
    if (s.op == Op::quantize && !s.recipe) fail("quantize needs a recipe");
    if (s.recipe && s.op != Op::quantize && s.op != Op::swiglu_fwd && s.op != Op::swiglu_bwd)
      fail("only quantize, swiglu_fwd and swiglu_bwd take a recipe");
    if (s.op == Op::transpose && s.method == TransposeMethod::direct)
      fail("method direct quantizes the high-precision tensor: write it as quantize with an Nx1 tile");
    if (s.op == Op::round && s.prec == Precision::fp8) fail("round to fp8 is a quantize step");
    for (const auto& o : s.out) defined.insert(o);
  }
  if (!complete) return;
  // The layer's outputs, which the error ledger compares with the golden run: a dataflow that stops early
  // (a truncated file) is refused here rather than failing later.
  for (const char* out : {"y", "dx", "dwr", "dw1", "dw2"})
    if (!defined.contains(out))
      throw InputError(fmt::format("dataflow {}: no step computes '{}' (every dataflow must produce y, dx, dwr, dw1 and "
                                   "dw2; is the file complete?)",
                                   df.name, out));
}

// ---- Tensors -----------------------------------------------------------------------------------------
namespace {
std::vector<std::size_t> groups_or_single(const Tensor& t) {
  return t.groups.empty() ? std::vector<std::size_t>{t.rows} : t.groups;
}
std::vector<std::size_t> nonzero(const std::vector<std::size_t>& g) {
  std::vector<std::size_t> out;
  for (auto v : g)
    if (v) out.push_back(v);
  return out;
}
std::size_t ceil_div(std::size_t a, std::size_t b) { return (a + b - 1) / b; }
}  // namespace

std::size_t Tensor::scale_count() const {
  if (prec != Precision::fp8) return 0;
  if (q) return q->scale_inv.size();
  if (!recipe) return 0;
  const Granularity g = recipe->tile;
  if (g == kTensor) return 1;
  const std::size_t tr = static_cast<std::size_t>(g.rows), tc = static_cast<std::size_t>(g.cols);
  const std::size_t col_tiles = tc == 0 ? 1 : ceil_div(cols, tc);
  std::size_t row_tiles = 0;
  for (auto m : groups_or_single(*this)) row_tiles += tr == 0 ? (m ? 1 : 0) : ceil_div(m, tr);
  return row_tiles * col_tiles;
}
std::size_t Tensor::bytes() const { return rows * cols * storage_bytes(prec) + 4 * scale_count(); }

Env make_env(const MoeShape& s, const MoeInputs* in) {
  Env env;
  auto put = [&](const char* name, std::size_t rows, std::size_t cols, std::vector<std::size_t> groups,
                 const std::vector<double>* v) {
    Tensor t;
    t.rows = rows, t.cols = cols, t.groups = std::move(groups);
    if (v) t.v = *v;
    env[name] = std::move(t);
  };
  put("x", s.tokens, s.hidden, {}, in ? &in->x : nullptr);
  put("dy", s.tokens, s.hidden, {}, in ? &in->dy : nullptr);
  put("wr", s.experts, s.hidden, {}, in ? &in->wr : nullptr);
  put("w1", s.experts * 2 * s.ffn, s.hidden, std::vector<std::size_t>(s.experts, 2 * s.ffn), in ? &in->w1 : nullptr);
  put("w2", s.experts * s.hidden, s.ffn, std::vector<std::size_t>(s.experts, s.hidden), in ? &in->w2 : nullptr);
  return env;
}

Dataflow with_overrides(Dataflow df, const ExecOptions& o) {
  for (Step& s : df.steps) {
    if (o.gemm_config && s.op == Op::gemm) s.gemm_config = *o.gemm_config;
    if (o.transpose && s.op == Op::transpose && s.method != TransposeMethod::naive) s.method = *o.transpose;
  }
  return df;
}

// ---- Executor -------------------------------------------------------------------------------------------
namespace {

void round_to(std::vector<double>& v, Precision p, int threads) {
  switch (p) {
    case Precision::fp64: case Precision::fp8: return;
    case Precision::fp32:
      for (auto& e : v) e = static_cast<double>(static_cast<float>(e));
      return;
    case Precision::bf16: {
      // Training stacks round fp32 results to bf16 with RNE, overflow to Inf (torch .to(bfloat16)).
      std::vector<std::uint16_t> codes(v.size());
      BatchOptions bo;
      bo.threads = threads;
      encode(bf16, kRneNonsat, std::span<const double>(v), std::span<std::uint16_t>(codes), bo);
      decode(bf16, std::span<const std::uint16_t>(codes), std::span<double>(v), bo);
      return;
    }
  }
}

std::vector<float> to_float(const std::vector<double>& v) { return {v.begin(), v.end()}; }

struct Exec {
  const Dataflow& df;
  const Context& ctx;
  Env& env;
  const ExecOptions& o;
  std::size_t index = 0;

  int thread_count() const {
#ifdef _OPENMP
    return o.threads > 0 ? o.threads : omp_get_max_threads();
#else
    return 1;
#endif
  }
  [[noreturn]] void fail(const std::string& what) const {
    throw InputError(fmt::format("dataflow {}: step {} ({}): {}", df.name, index, to_string(df.steps[index].op), what));
  }
  const Tensor& get(const std::string& name) const {
    auto it = env.find(name);
    if (it == env.end()) fail(fmt::format("tensor '{}' is not defined", name));
    return it->second;
  }
  const Tensor& value_input(const std::string& name) const {
    const Tensor& t = get(name);
    if (t.prec == Precision::fp8 && !o.shape_only && t.v.empty()) fail(fmt::format("'{}' has no values", name));
    return t;
  }
  void put(const std::string& name, Tensor t) { env[name] = std::move(t); }

  Tensor like(const Tensor& in, Precision p) const {
    Tensor t;
    t.prec = p, t.rows = in.rows, t.cols = in.cols, t.groups = in.groups;
    return t;
  }

  // Values rounded to `p` (fp64 math), or kept exact when this step is the one replaced.
  Tensor finish(Tensor t, Precision p, bool exact) {
    t.prec = exact ? Precision::fp64 : p;
    t.exact = exact;
    if (!o.shape_only) round_to(t.v, t.prec, o.threads);
    return t;
  }

  QuantizedTensor quantize_values(const Tensor& in, const QuantRecipe& r, float eps, Precision input_prec) {
    QuantParams p = default_params(r.scale);
    p.eps = eps;
    if (input_prec == Precision::bf16) p.input = InputDtype::bf16;
    const std::vector<float> x = to_float(in.v);
    QuantizedTensor q = quantize(x, in.rows, in.cols, r, p, nonzero(in.groups), o.threads);
    q.row_groups = nonzero(in.groups);
    return q;
  }
  Tensor fp8_tensor(const Tensor& shape, QuantizedTensor q, const QuantRecipe& r) {
    Tensor t = like(shape, Precision::fp8);
    t.recipe = r;
    t.column_copy = q.codes_transposed;
    if (!o.shape_only) {
      const std::vector<float> dq = dequantize(q);
      t.v.assign(dq.begin(), dq.end());
      t.q = std::move(q);
    }
    return t;
  }
  Tensor fp8_shape(const Tensor& shape, const QuantRecipe& r, bool column_copy) {
    Tensor t = like(shape, Precision::fp8);
    t.recipe = r;
    t.column_copy = column_copy;
    return t;
  }

  void run_step(const Step& s, bool exact) {
    switch (s.op) {
      case Op::round: {
        const Tensor& in = value_input(s.in[0]);
        if (in.prec == Precision::fp8) fail("round of an fp8 tensor: use dequantize");
        Tensor t = like(in, s.prec);
        t.v = in.v;
        put(s.out[0], finish(std::move(t), s.prec, exact));
        return;
      }
      case Op::all_to_all: put(s.out[0], get(s.in[0])); return;
      case Op::quantize: return quantize_step(s, exact);
      case Op::dequantize: {
        const Tensor& in = get(s.in[0]);
        if (in.exact) {  // an earlier cast was replaced by an exact one: nothing to decode
          Tensor t = like(in, Precision::fp64);
          t.v = in.v;
          t.exact = true;
          return put(s.out[0], std::move(t));
        }
        if (in.prec != Precision::fp8) fail(fmt::format("dequantize of '{}', which is {}", s.in[0], to_string(in.prec)));
        Tensor t = like(in, s.prec);
        t.v = in.v;  // RN32(q * scale_inv), already computed
        if (in.column_copy) fail("dequantize of a column copy");
        put(s.out[0], finish(std::move(t), s.prec, exact));
        return;
      }
      case Op::transpose: return transpose_step(s, exact);
      case Op::router: return router_step(s);
      case Op::permute_pad: return permute_step(s);
      case Op::gather_probs: {
        const Tensor& in = value_input(s.in[0]);
        Tensor t;
        t.prec = in.prec, t.rows = ctx.routing.rows(), t.cols = 1, t.groups = ctx.routing.padded;
        if (!o.shape_only) t.v = moe::gather_probs(in.v, ctx.routing);
        put(s.out[0], std::move(t));
        return;
      }
      case Op::scatter_probs: {
        const Tensor& in = value_input(s.in[0]);
        Tensor t;
        t.rows = ctx.routing.tokens, t.cols = ctx.routing.topk;
        if (!o.shape_only) t.v = moe::scatter_probs(in.v, ctx.routing);
        put(s.out[0], finish(std::move(t), s.prec, false));
        return;
      }
      case Op::gemm: return gemm_step(s);
      case Op::swiglu_fwd: return swiglu_fwd_step(s, exact);
      case Op::swiglu_bwd: return swiglu_bwd_step(s, exact);
      case Op::unpermute_combine: return combine_step(s);
      case Op::router_bwd: {
        const Tensor& dp = value_input(s.in[0]);
        const Tensor& lg = value_input(s.in[1]);
        Tensor t;
        t.rows = lg.rows, t.cols = lg.cols;
        if (!o.shape_only)
          t.v = moe::router_backward(dp.v, lg.v, ctx.routing, ctx.shape.score, ctx.shape.norm_topk);
        put(s.out[0], finish(std::move(t), s.prec, false));
        return;
      }
      case Op::add: {
        const Tensor& a = value_input(s.in[0]);
        const Tensor& b = value_input(s.in[1]);
        if (a.rows != b.rows || a.cols != b.cols) fail("add of tensors of different shapes");
        Tensor t = like(a, s.prec);
        if (!o.shape_only) {
          t.v.resize(a.v.size());
          for (std::size_t i = 0; i < a.v.size(); ++i) t.v[i] = a.v[i] + b.v[i];
        }
        put(s.out[0], finish(std::move(t), s.prec, false));
        return;
      }
    }
  }

  void quantize_step(const Step& s, bool exact) {
    const Tensor& in = value_input(s.in[0]);
    const QuantRecipe& r = *s.recipe;
    const bool column = r.tile.rows > 1 && r.tile.cols == 1;
    if (exact) {
      Tensor t = like(in, Precision::fp64);
      t.v = in.v;
      t.exact = true;
      return put(s.out[0], std::move(t));
    }
    if (o.shape_only) return put(s.out[0], fp8_shape(in, r, column));
    QuantizedTensor q = quantize_values(in, r, s.eps, in.prec);
    if (column) q = with_codes_transposed(std::move(q), true);
    put(s.out[0], fp8_tensor(in, std::move(q), r));
  }

  void transpose_step(const Step& s, bool exact) {
    const Tensor& in = get(s.in[0]);
    if (exact || (in.prec != Precision::fp8 && in.exact)) {  // no codes to shift: the values are the copy
      Tensor t = like(in, Precision::fp64);
      t.v = in.v;
      t.exact = true;
      return put(s.out[0], std::move(t));
    }
    if (in.prec != Precision::fp8 || in.column_copy)
      fail(fmt::format("transpose needs a rowwise fp8 tensor, '{}' is {}", s.in[0], to_string(in.prec)));
    const int n = in.recipe ? in.recipe->tile.cols : 128;
    const QuantRecipe r{{n, 1}, in.recipe ? in.recipe->payload : &e4m3, ScaleRule::te_pow2};
    if (o.shape_only) return put(s.out[0], fp8_shape(in, r, true));
    const auto groups = nonzero(in.groups);
    QuantizedTensor q;
    switch (s.method) {
      case TransposeMethod::paper_kernel: q = transpose_paper_kernel(*in.q, groups, o.threads); break;
      case TransposeMethod::exact: q = transpose_exact(*in.q, groups, Rounding::rne, o.threads); break;
      case TransposeMethod::naive: q = transpose_naive(*in.q, groups); break;
      case TransposeMethod::direct: fail("direct is a quantize step");
    }
    put(s.out[0], fp8_tensor(in, std::move(q), r));
  }

  void router_step(const Step& s) {
    const Tensor& x = value_input(s.in[0]);
    const Tensor& wr = value_input(s.in[1]);
    const MoeShape& sh = ctx.shape;
    Tensor logits;
    logits.rows = x.rows, logits.cols = wr.rows;
    Tensor probs;
    probs.rows = x.rows, probs.cols = sh.topk;
    if (!o.shape_only) {
      // logits = x . wr^T: fp32 accumulation unless the step is fp64 (the router stays high precision).
      logits.v = value_gemm_group(x.v.data(), x.cols, x.rows, x.cols, false, wr.v.data(), wr.cols, wr.rows, wr.cols,
                                  false, s.prec == Precision::fp64);
    }
    const Precision lp = s.prec == Precision::fp64 ? Precision::fp64 : Precision::fp32;
    logits = finish(std::move(logits), lp, false);
    if (!o.shape_only)
      probs.v = moe::topk_probs(moe::scores(logits.v, x.rows, wr.rows, sh.score), ctx.routing, sh.norm_topk);
    put(s.out[0], std::move(logits));
    put(s.out[1], finish(std::move(probs), s.prec, false));
  }

  void permute_step(const Step& s) {
    const Tensor& in = get(s.in[0]);
    const Routing& r = ctx.routing;
    Tensor t = like(in, in.prec);
    t.rows = r.rows();
    t.groups = r.padded;
    t.recipe = in.recipe;
    t.exact = in.exact;
    if (o.shape_only) return put(s.out[0], std::move(t));
    t.v = moe::permute_pad(in.v, in.cols, r);
    if (in.prec == Precision::fp8) {
      // Fused FP8 permute+pad: bytes and scale rows copied bit-exactly; pad rows code 0x00, scale 0.
      const QuantizedTensor& qi = *in.q;
      if (in.column_copy || qi.recipe.tile.rows != 1)
        fail(fmt::format("permute_pad of fp8 '{}' needs a rowwise 1xN tensor", s.in[0]));
      QuantizedTensor q = qi;
      q.rows = r.rows();
      q.row_groups = nonzero(r.padded);
      q.codes.assign(q.rows * q.cols, 0);
      q.scale_rows = q.rows;
      q.scale_inv.assign(q.rows * q.scale_cols, 0.0f);
      q.origin = "permute_pad";
      for (std::size_t row = 0; row < r.rows(); ++row) {
        if (r.row_copy[row] < 0) continue;
        const std::size_t tok = static_cast<std::size_t>(r.row_copy[row]) / r.topk;
        std::copy_n(qi.codes.begin() + tok * qi.cols, qi.cols, q.codes.begin() + row * q.cols);
        std::copy_n(qi.scale_inv.begin() + tok * qi.scale_cols, qi.scale_cols, q.scale_inv.begin() + row * q.scale_cols);
      }
      t.q = std::move(q);
    }
    put(s.out[0], std::move(t));
  }

  void combine_step(const Step& s) {
    const Tensor& in = value_input(s.in[0]);
    const Routing& r = ctx.routing;
    Tensor t;
    t.rows = r.tokens, t.cols = in.cols;
    if (!o.shape_only) {
      if (s.prec == Precision::fp64) {
        t.v = moe::unpermute_combine(in.v, in.cols, r);
      } else {  // fp32 accumulator over the top-k copies, slot order (the fused unpermute+unpad kernel)
        t.v.assign(r.tokens * in.cols, 0.0);
        for (std::size_t tok = 0; tok < r.tokens; ++tok)
          for (std::size_t c = 0; c < in.cols; ++c) {
            float acc = 0.0f;
            for (std::size_t j = 0; j < r.topk; ++j) acc += static_cast<float>(in.v[r.row[tok * r.topk + j] * in.cols + c]);
            t.v[tok * in.cols + c] = acc;
          }
      }
    }
    put(s.out[0], finish(std::move(t), s.prec, false));
  }

  void swiglu_fwd_step(const Step& s, bool exact) {
    const Tensor& h = value_input(s.in[0]);
    const Tensor& w = value_input(s.in[1]);
    if (h.cols % 2) fail("swiglu_fwd needs an even number of columns");
    Tensor t = like(h, s.prec);
    t.cols = h.cols / 2;
    if (!o.shape_only) t.v = moe::swiglu_forward(h.v, w.v, h.rows, t.cols);
    put(s.out[0], fused_output(std::move(t), s, exact));
  }

  void swiglu_bwd_step(const Step& s, bool exact) {
    const Tensor& g = value_input(s.in[0]);
    const Tensor& h = value_input(s.in[1]);
    const Tensor& w = value_input(s.in[2]);
    Tensor dh = like(h, s.prec), dw = like(w, s.prec);
    if (!o.shape_only) moe::swiglu_backward(g.v, h.v, w.v, h.rows, g.cols, dh.v, dw.v);
    put(s.out[0], fused_output(std::move(dh), s, exact));
    // Prob gradients: fp32 (atomics in the kernel), fp64 in the golden dataflow.
    put(s.out[1], finish(std::move(dw), s.prec == Precision::fp64 ? Precision::fp64 : Precision::fp32, false));
  }

  // An operator's output: rounded to the step precision, or quantized by the fused recipe.
  Tensor fused_output(Tensor t, const Step& s, bool exact) {
    if (!s.recipe || exact) return finish(std::move(t), s.recipe ? Precision::fp64 : s.prec, exact);
    if (o.shape_only) return fp8_shape(t, *s.recipe, false);
    round_to(t.v, Precision::fp32, o.threads);  // the fused kernel computes y in fp32, then quantizes
    QuantizedTensor q = quantize_values(t, *s.recipe, s.eps, Precision::fp32);
    return fp8_tensor(t, std::move(q), *s.recipe);
  }

  // ---- GEMM ----
  // One group: op(A) [M, K] . op(B) [N, K]^T, A given as its stored [ar, ac] block (row stride lda).
  std::vector<double> value_gemm_group(const double* a, std::size_t lda, std::size_t ar, std::size_t ac, bool ta,
                                       const double* b, std::size_t ldb, std::size_t br, std::size_t bc, bool tb,
                                       bool fp64) const {
    using Eigen::Dynamic, Eigen::RowMajor, Eigen::Stride, Eigen::OuterStride;
    const std::size_t M = ta ? ac : ar, K = ta ? ar : ac, N = tb ? bc : br;
    std::vector<double> out(M * N, 0.0);
    if (M == 0 || N == 0 || K == 0) return out;
    // op(A) and op(B)^T materialised as [M, K] and [K, N] row-major matrices of the accumulation type.
    auto run = [&]<class S>(S) {
      using Mat = Eigen::Matrix<S, Dynamic, Dynamic, RowMajor>;
      using In = Eigen::Map<const Eigen::Matrix<double, Dynamic, Dynamic, RowMajor>, 0, OuterStride<>>;
      const In am(a, static_cast<long>(ar), static_cast<long>(ac), OuterStride<>(static_cast<long>(lda)));
      const In bm(b, static_cast<long>(br), static_cast<long>(bc), OuterStride<>(static_cast<long>(ldb)));
      // Whole-matrix (vectorised) copies and casts; the values are those of an element-by-element copy.
      Mat A = ta ? Mat(am.transpose().template cast<S>()) : Mat(am.template cast<S>());
      Mat Bt = tb ? Mat(bm.template cast<S>()) : Mat(bm.transpose().template cast<S>());
      // Fixed row chunks, each a single-threaded Eigen product: the result does not depend on --threads.
      constexpr std::size_t kChunk = 256;
      const long chunks = static_cast<long>(ceil_div(M, kChunk));
#pragma omp parallel for schedule(dynamic) num_threads(thread_count())
      for (long c = 0; c < chunks; ++c) {
        const std::size_t r0 = static_cast<std::size_t>(c) * kChunk, n = std::min(kChunk, M - r0);
        Mat C = A.middleRows(r0, n) * Bt;
        Eigen::Map<Eigen::Matrix<double, Dynamic, Dynamic, RowMajor>>(out.data() + r0 * N, static_cast<long>(n),
                                                                       static_cast<long>(N)) = C.template cast<double>();
      }
    };
    if (fp64) run(double{});
    else run(float{});
    return out;
  }

  struct OwnedOperand {
    std::vector<std::uint8_t> codes;
    std::vector<float> scales;
    GemmOperand op;
  };
  // The operand of group g (rows [r0, r0 + m) of the stored tensor, scale-tile rows from t0, nt of them).
  void fp8_operand(const Tensor& t, bool transposed, std::size_t r0, std::size_t m, std::size_t t0, std::size_t nt,
                   const std::string& name, OwnedOperand& out) const {
    const QuantizedTensor& q = *t.q;
    const Granularity g = q.recipe.tile;
    const std::size_t C = q.cols;
    out.op.format = q.recipe.payload;
    if (!transposed && !q.codes_transposed && g.rows == 1) {  // rowwise 1xN
      out.codes.assign(q.codes.begin() + r0 * C, q.codes.begin() + (r0 + m) * C);
      out.scales.assign(q.scale_inv.begin() + r0 * q.scale_cols, q.scale_inv.begin() + (r0 + m) * q.scale_cols);
      out.op.rows = m, out.op.k = C, out.op.gran = g;
    } else if (!transposed && !q.codes_transposed && g.rows > 1 && g.cols > 1) {  // NxN blocks, as stored
      out.codes.assign(q.codes.begin() + r0 * C, q.codes.begin() + (r0 + m) * C);
      out.scales.assign(q.scale_inv.begin() + t0 * q.scale_cols, q.scale_inv.begin() + (t0 + nt) * q.scale_cols);
      out.op.rows = m, out.op.k = C, out.op.gran = g;
    } else if (transposed && q.codes_transposed && g.cols == 1) {  // column copy [C, R] with Nx1 tiles
      const std::size_t R = q.rows;
      out.codes.resize(C * m);
      for (std::size_t c = 0; c < C; ++c) std::copy_n(q.codes.begin() + c * R + r0, m, out.codes.begin() + c * m);
      out.scales.resize(C * nt);
      for (std::size_t c = 0; c < C; ++c)
        for (std::size_t i = 0; i < nt; ++i) out.scales[c * nt + i] = q.scale_inv[(t0 + i) * q.scale_cols + c];
      out.op.rows = C, out.op.k = m, out.op.gran = {1, g.rows};
    } else if (transposed && !q.codes_transposed && g.rows == g.cols && g.rows > 1) {  // NxN: exact transpose
      out.codes.resize(C * m);
      for (std::size_t i = 0; i < m; ++i)
        for (std::size_t c = 0; c < C; ++c) out.codes[c * m + i] = q.codes[(r0 + i) * C + c];
      out.scales.resize(q.scale_cols * nt);
      for (std::size_t i = 0; i < nt; ++i)
        for (std::size_t c = 0; c < q.scale_cols; ++c) out.scales[c * nt + i] = q.scale_inv[(t0 + i) * q.scale_cols + c];
      out.op.rows = C, out.op.k = m, out.op.gran = g;
    } else {
      fail(fmt::format("fp8 operand '{}{}' ({} tiles{}): {}", name, transposed ? "^T" : "", to_string(g),
                       q.codes_transposed ? ", column copy" : "",
                       transposed ? "a transposed operand needs a column copy (transpose step or Nx1 quantize) "
                                    "or NxN blocks"
                                  : "a column copy can only be used transposed (^T)"));
    }
    out.op.codes = out.codes;
    out.op.scale_inv = out.scales;
  }

  void gemm_step(const Step& s) {
    const auto [an, ta] = operand_name(s.in[0]);
    const auto [bn, tb] = operand_name(s.in[1]);
    const Tensor& A = get(an);
    const Tensor& B = get(bn);
    const auto ga = groups_or_single(A), gb = groups_or_single(B);
    if (ga.size() != gb.size())
      fail(fmt::format("operands '{}' and '{}' have {} and {} groups", an, bn, ga.size(), gb.size()));
    const bool fp8 = A.prec == Precision::fp8 && B.prec == Precision::fp8;
    const bool fp64 = A.prec == Precision::fp64 || B.prec == Precision::fp64 || s.prec == Precision::fp64;
    Tensor out;
    std::vector<std::size_t> out_groups;
    std::size_t out_rows = 0;
    for (std::size_t g = 0; g < ga.size(); ++g) {
      const std::size_t m = ta ? A.cols : ga[g];
      const std::size_t k = ta ? ga[g] : A.cols, kb = tb ? gb[g] : B.cols;
      if (k != kb) fail(fmt::format("group {}: K of '{}' is {} but K of '{}' is {}", g, s.in[0], k, s.in[1], kb));
      out_groups.push_back(m);
      out_rows += m;
    }
    out.cols = tb ? B.cols : gb[0];
    for (std::size_t g = 1; g < gb.size(); ++g)
      if ((tb ? B.cols : gb[g]) != out.cols) fail("output columns differ between groups");
    out.rows = out_rows;
    if (ga.size() > 1) out.groups = out_groups;
    if (!o.shape_only) {
      out.v.assign(out.rows * out.cols, 0.0);
      std::size_t ra = 0, rb = 0, ta0 = 0, tb0 = 0, ro = 0;
      auto tile_rows = [](const Tensor& t) {
        return t.prec == Precision::fp8 && t.q && t.q->recipe.tile.rows > 1 ? std::size_t(t.q->recipe.tile.rows) : 0;
      };
      const std::size_t tra = tile_rows(A), trb = tile_rows(B);
      for (std::size_t g = 0; g < ga.size(); ++g) {
        const std::size_t nta = tra ? ceil_div(ga[g], tra) : 0, ntb = trb ? ceil_div(gb[g], trb) : 0;
        const std::size_t m = out_groups[g];
        std::vector<double> part;
        if (fp8) {
          OwnedOperand oa, ob;
          if (ga[g] && gb[g] && m && out.cols) {
            fp8_operand(A, ta, ra, ga[g], ta0, nta, an, oa);
            fp8_operand(B, tb, rb, gb[g], tb0, ntb, bn, ob);
            const std::vector<float> r = gemm(oa.op, ob.op, s.gemm_config, o.threads);
            part.assign(r.begin(), r.end());
          }
        } else {
          part = value_gemm_group(A.v.data() + ra * A.cols, A.cols, ga[g], A.cols, ta, B.v.data() + rb * B.cols, B.cols,
                                  gb[g], B.cols, tb, fp64);
        }
        if (!part.empty()) std::copy(part.begin(), part.end(), out.v.begin() + ro * out.cols);
        ra += ga[g], rb += gb[g], ta0 += nta, tb0 += ntb, ro += m;
      }
    }
    put(s.out[0], finish(std::move(out), s.prec, false));
  }
};

}  // namespace

void execute(const Dataflow& df, const Context& ctx, Env& env, const ExecOptions& o) {
  check_dataflow(df);
  Exec ex{df, ctx, env, o};
  for (ex.index = o.first_step; ex.index < std::min(df.steps.size(), o.end_step); ++ex.index) {
    const Step& s = df.steps[ex.index];
    if (o.before_step) o.before_step(ex.index, env);
    ex.run_step(s, static_cast<long>(ex.index) == o.exact_step && is_cast(s));
    if (o.after_step) o.after_step(ex.index, env);
  }
}

// ---- TOML ------------------------------------------------------------------------------------------------
Dataflow load_dataflow_toml(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec))
    throw InputError(fmt::format("{}: {}", path, std::filesystem::exists(path, ec) ? "not a regular file" : "no such file"));
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError(fmt::format("{}: cannot open: {}", path, std::strerror(errno)));
  std::ostringstream text;
  text << in.rdbuf();
  return parse_dataflow_toml(text.str(), path);
}

Dataflow parse_dataflow_toml(std::string_view text, const std::string& path) {
  toml::table tbl;
  try {
    tbl = toml::parse(text, path);
  } catch (const toml::parse_error& e) {
    throw InputError(fmt::format("{}:{}:{}: {}", path, e.source().begin.line, e.source().begin.column, e.description()));
  }
  auto at = [&](const toml::source_region& r) { return fmt::format("{}:{}", path, r.begin.line); };
  for (auto&& [k, v] : tbl)
    if (k.str() != "name" && k.str() != "description" && k.str() != "step")
      throw InputError(fmt::format("{}: unknown key '{}'; expected name, description and [[step]] tables", at(k.source()),
                                   k.str()));
  Dataflow df;
  const toml::node* name = tbl.get("name");
  if (!name) throw InputError(fmt::format("{}:1: name = \"...\" is missing", path));
  if (!name->is_string() || name->as_string()->get().empty())
    throw InputError(fmt::format("{}: name: expected a non-empty string", at(name->source())));
  df.name = name->as_string()->get();
  if (const toml::node* d = tbl.get("description")) {
    if (!d->is_string()) throw InputError(fmt::format("{}: description: expected a string", at(d->source())));
    df.description = d->as_string()->get();
  }
  const toml::node* steps_node = tbl.get("step");
  const toml::array* steps = steps_node ? steps_node->as_array() : nullptr;
  if (!steps || steps->empty())
    throw InputError(fmt::format("{}: no [[step]] tables", steps_node ? at(steps_node->source()) : path));
  std::vector<toml::source_region> step_at;
  for (std::size_t i = 0; i < steps->size(); ++i) {
    const toml::table* st = (*steps)[i].as_table();
    if (!st) throw InputError(fmt::format("{}: step {} is not a table", at((*steps)[i].source()), i));
    step_at.push_back(st->source());
    auto where = [&](const char* field) {
      const toml::node* n = st->get(field);
      return fmt::format("{}: [[step]] {} field '{}'", at(n ? n->source() : st->source()), i, field);
    };
    for (auto&& [k, v] : *st) {
      static const std::set<std::string, std::less<>> known{"op", "in", "out", "phase", "prec",
                                                            "recipe", "method", "accum", "eps"};
      if (!known.contains(k.str()))
        throw InputError(fmt::format("{}: [[step]] {}: unknown key '{}'; expected op, in, out, phase, prec, recipe, "
                                     "method, accum, eps",
                                     at(k.source()), i, k.str()));
    }
    auto str = [&](const char* field, bool required) -> std::optional<std::string> {
      const toml::node* node = st->get(field);
      if (!node) {
        if (required) throw InputError(where(field) + ": missing");
        return std::nullopt;
      }
      if (const auto* v = node->as_string()) return v->get();
      throw InputError(where(field) + ": expected a string");
    };
    auto list = [&](const char* field) {
      std::vector<std::string> out;
      const toml::node* node = st->get(field);
      const toml::array* a = node ? node->as_array() : nullptr;
      if (!a) throw InputError(where(field) + (node ? ": expected an array of tensor names" : ": missing"));
      for (const auto& n : *a) {
        const auto* v = n.as_string();
        if (!v) throw InputError(where(field) + ": expected strings");
        out.push_back(v->get());
      }
      return out;
    };
    Step s{};
    try {
      s.op = parse_op(*str("op", true));
    } catch (const InputError& e) {
      if (std::string_view(e.what()).starts_with(path)) throw;
      throw InputError(fmt::format("{}: {}", where("op"), e.what()));
    }
    s.in = list("in");
    s.out = list("out");
    auto field = [&](const char* f, auto parse) {
      if (auto v = str(f, false)) {
        try {
          parse(*v);
        } catch (const std::exception& e) {
          throw InputError(fmt::format("{}: {}", where(f), e.what()));
        }
      }
    };
    field("phase", [&](const std::string& v) { s.phase = parse_phase(v); });
    field("prec", [&](const std::string& v) { s.prec = parse_precision(v); });
    field("recipe", [&](const std::string& v) { s.recipe = parse_recipe(v); });
    field("method", [&](const std::string& v) { s.method = parse_transpose_method(v); });
    field("accum", [&](const std::string& v) { s.gemm_config.accum = parse_accum_model(v); });
    if (const toml::node* e = st->get("eps")) {
      auto v = e->value<double>();
      if (!v || !std::isfinite(*v) || *v < 0) throw InputError(where("eps") + ": expected a finite number >= 0");
      s.eps = static_cast<float>(*v);
    }
    df.steps.push_back(std::move(s));
  }
  // The graph: the first step that breaks it is named with its line.
  try {
    check_dataflow(df, false);
  } catch (const InputError& e) {
    Dataflow prefix = df;
    for (std::size_t k = 1; k <= df.steps.size(); ++k) {
      prefix.steps.assign(df.steps.begin(), df.steps.begin() + std::ptrdiff_t(k));
      try {
        check_dataflow(prefix, false);
      } catch (const InputError&) {
        throw InputError(fmt::format("{}: {}", at(step_at[k - 1]), e.what()));
      }
    }
    throw InputError(fmt::format("{}: {}", path, e.what()));
  }
  try {
    check_dataflow(df, true);
  } catch (const InputError& e) {
    throw InputError(fmt::format("{}:{}: {}", path, step_at.back().end.line, e.what()));
  }
  return df;
}

std::string to_toml(const Dataflow& df) {
  // TOML basic strings take JSON's escapes, so a JSON dump quotes any name (quotes, newlines) safely.
  auto q = [](const std::string& s) { return nlohmann::json(s).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace); };
  std::ostringstream os;
  auto list = [&](const std::vector<std::string>& v) {
    std::string s = "[";
    for (std::size_t i = 0; i < v.size(); ++i) s += fmt::format("{}{}", i ? ", " : "", q(v[i]));
    return s + "]";
  };
  os << fmt::format("name = {}\ndescription = {}\n", q(df.name), q(df.description));
  for (const Step& s : df.steps) {
    os << fmt::format("\n[[step]]\nop = \"{}\"\nin = {}\nout = {}\nphase = \"{}\"\nprec = \"{}\"\n", to_string(s.op),
                      list(s.in), list(s.out), to_string(s.phase), to_string(s.prec));
    if (s.recipe) os << fmt::format("recipe = {}\n", q(s.recipe->name()));
    if (s.eps != 0.0f) os << fmt::format("eps = {}\n", s.eps);
    if (s.op == Op::transpose) os << fmt::format("method = \"{}\"\n", to_string(s.method));
    if (s.op == Op::gemm) os << fmt::format("accum = \"{}\"\n", to_string(s.gemm_config.accum));
  }
  return os.str();
}

}  // namespace fp8flow
