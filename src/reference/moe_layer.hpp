// One Mixture-of-Experts layer, forward and backward, as the primitive operators the dataflows chain
// (PAPER.md section 2): router, permute+pad, grouped GEMMs, weighted SwiGLU (section 3.3), unpermute
// + combine, and their backward. The primitives are templates over the real type so that the same
// code runs in float64 (the golden dataflow) and in MPFR (tests: >= 113-bit evaluation of the graph).
//
// Layout (row-major everywhere):
//   x [T, H]  tokens;  wr [E, H] router;  w1 [E * 2F, H] per expert (gate rows 0..F-1, up rows F..2F-1);
//   w2 [E * H, F] per expert;  dy [T, H] output gradient (the loss is L = sum(y * dy)).
//   Permuted rows: expert e owns rows [offset_e, offset_e + padded_e); its valid_e copies come first
//   in token order, then padding rows (zero data, zero prob, zero scale) up to a multiple of `align`.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace fp8flow {

enum class ScoreFunction { softmax, sigmoid };
std::string_view to_string(ScoreFunction s);

struct MoeShape {
  std::size_t tokens = 0, hidden = 0, ffn = 0, experts = 0, topk = 0;
  std::size_t align = 128;          // each expert's rows padded to a multiple of this (PAPER.md 2, step 4)
  ScoreFunction score = ScoreFunction::softmax;
  bool norm_topk = true;            // probs = top-k scores / their sum
};
std::string to_string(const MoeShape& s);
void check_shape(const MoeShape& s);  // throws InputError naming the field

// Presets: ds_v3 (7168, 2048, 256, top-8), ds_v2_lite (2048, 1408, 64, top-6), quickstart
// (896, 256, 32, top-8, 1024 tokens), tiny (seconds even in MPFR).
MoeShape preset_shape(std::string_view name);  // throws InputError listing the names
// Bytes `fp8flow moe` (or a moe_dataflows run) holds at its peak for this shape: the float64 inputs, the
// golden and one dataflow's environment (weights, their gradients, the routed activations), one more with
// `attribute`. Saturates instead of overflowing. Calibrated against peak RSS (docs/hardening.md).
std::uint64_t moe_layer_bytes(const MoeShape& s, bool attribute = false);
inline constexpr std::string_view kPresetNames = "tiny, quickstart, ds_v2_lite, ds_v3";

// Seeded inputs and weights (documented in docs/dataflows.md):
//   x  = N(0,1) * g_c per channel c, g_c = exp(0.5 N(0,1)); outlier channels (1 in 128, at least 1) x 64
//   wr = N(0,1) / sqrt(H);  w1 = N(0,1) / sqrt(H);  w2 = N(0,1) / sqrt(F)
//   dy = N(0,1) * 2^-12 (gradient magnitudes), 1 token in 64 x 32 (outlier tokens)
// splitmix64 + Box-Muller: identical on every platform; one stream per tensor (seed, tensor id).
struct MoeInputs {
  std::vector<double> x, wr, w1, w2, dy;
};
MoeInputs make_inputs(const MoeShape& s, std::uint64_t seed);
// From a directory of .npy files x.npy [T,H], wr.npy [E,H], w1.npy [E,2F,H], w2.npy [E,H,F], dy.npy [T,H]
// (float32 or float64); the shape is taken from them (topk and align from `s`).
MoeInputs load_inputs(const std::string& dir, MoeShape& s);

// Which expert each (token, slot) copy goes to and where its row lands after permute+pad.
struct Routing {
  std::size_t tokens = 0, topk = 0, experts = 0, align = 0;
  std::vector<int> expert;                // [T*K] expert of copy (t, j), j in descending score order
  std::vector<std::size_t> row;           // [T*K] permuted row of copy (t, j)
  std::vector<std::size_t> valid, padded, offset;  // per expert
  std::vector<long> row_copy;             // [rows] copy index t*K + j of a row, -1 for padding
  std::size_t rows() const { return offset.empty() ? 0 : offset.back() + padded.back(); }
};
// Top-k of the scores [T, E] (ties: lower expert index first), then rows grouped per expert.
Routing make_routing(const std::vector<double>& scores, const MoeShape& s);
// The same layout for given per-expert counts (no token identities): the traffic model's uniform routing.
Routing uniform_routing(const MoeShape& s);

// ---- Primitives (templates: double for the golden path, MPFR in the tests) -------------------------
namespace moe {

// out[M, N] = a[M, K] . b[N, K]^T, k ascending.
template <class R>
std::vector<R> matmul_nt(const std::vector<R>& a, const std::vector<R>& b, std::size_t M, std::size_t N,
                         std::size_t K) {
  std::vector<R> out(M * N, R(0));
  for (std::size_t i = 0; i < M; ++i)
    for (std::size_t j = 0; j < N; ++j) {
      R acc(0);
      for (std::size_t k = 0; k < K; ++k) acc += a[i * K + k] * b[j * K + k];
      out[i * N + j] = acc;
    }
  return out;
}

template <class R> R sigmoid(const R& v) {
  using std::exp;
  return R(1) / (R(1) + exp(-v));
}

// Scores from logits [T, E].
template <class R>
std::vector<R> scores(const std::vector<R>& logits, std::size_t T, std::size_t E, ScoreFunction f) {
  using std::exp;
  std::vector<R> s(T * E);
  for (std::size_t t = 0; t < T; ++t) {
    if (f == ScoreFunction::sigmoid) {
      for (std::size_t e = 0; e < E; ++e) s[t * E + e] = sigmoid(logits[t * E + e]);
      continue;
    }
    R mx = logits[t * E];
    for (std::size_t e = 1; e < E; ++e) mx = logits[t * E + e] > mx ? logits[t * E + e] : mx;
    R sum(0);
    for (std::size_t e = 0; e < E; ++e) sum += (s[t * E + e] = exp(logits[t * E + e] - mx));
    for (std::size_t e = 0; e < E; ++e) s[t * E + e] /= sum;
  }
  return s;
}

// probs [T, K]: the routed scores, normalised over the top-k when norm_topk.
template <class R>
std::vector<R> topk_probs(const std::vector<R>& sc, const Routing& r, bool norm_topk) {
  const std::size_t T = r.tokens, K = r.topk, E = r.experts;
  std::vector<R> p(T * K);
  for (std::size_t t = 0; t < T; ++t) {
    R sum(0);
    for (std::size_t j = 0; j < K; ++j) sum += (p[t * K + j] = sc[t * E + r.expert[t * K + j]]);
    if (norm_topk)
      for (std::size_t j = 0; j < K; ++j) p[t * K + j] /= sum;
  }
  return p;
}

// dlogits [T, E] from dprobs [T, K].
template <class R>
std::vector<R> router_backward(const std::vector<R>& dprobs, const std::vector<R>& logits, const Routing& r,
                               ScoreFunction f, bool norm_topk) {
  const std::size_t T = r.tokens, K = r.topk, E = r.experts;
  const std::vector<R> sc = scores(logits, T, E, f);
  std::vector<R> dl(T * E, R(0)), ds(E);
  for (std::size_t t = 0; t < T; ++t) {
    for (auto& v : ds) v = R(0);
    R S(0), dot(0);
    for (std::size_t j = 0; j < K; ++j) {
      const R s = sc[t * E + r.expert[t * K + j]];
      S += s;
      dot += dprobs[t * K + j] * s;
    }
    for (std::size_t j = 0; j < K; ++j) {
      const int e = r.expert[t * K + j];
      // p_j = s_j / S: dp/ds_i = delta_ij / S - s_j / S^2
      ds[e] = norm_topk ? dprobs[t * K + j] / S - dot / (S * S) : dprobs[t * K + j];
    }
    if (f == ScoreFunction::sigmoid) {
      for (std::size_t e = 0; e < E; ++e) dl[t * E + e] = ds[e] * sc[t * E + e] * (R(1) - sc[t * E + e]);
    } else {
      R inner(0);
      for (std::size_t e = 0; e < E; ++e) inner += ds[e] * sc[t * E + e];
      for (std::size_t e = 0; e < E; ++e) dl[t * E + e] = sc[t * E + e] * (ds[e] - inner);
    }
  }
  return dl;
}

// [T, C] -> [rows, C]: each copy (t, j) gets token t's row; padding rows are zero.
template <class R>
std::vector<R> permute_pad(const std::vector<R>& in, std::size_t C, const Routing& r) {
  std::vector<R> out(r.rows() * C, R(0));
  for (std::size_t row = 0; row < r.rows(); ++row) {
    if (r.row_copy[row] < 0) continue;
    const std::size_t t = static_cast<std::size_t>(r.row_copy[row]) / r.topk;
    for (std::size_t c = 0; c < C; ++c) out[row * C + c] = in[t * C + c];
  }
  return out;
}
// probs [T, K] -> per-row prob [rows] (padding rows 0).
template <class R> std::vector<R> gather_probs(const std::vector<R>& p, const Routing& r) {
  std::vector<R> out(r.rows(), R(0));
  for (std::size_t row = 0; row < r.rows(); ++row)
    if (r.row_copy[row] >= 0) out[row] = p[static_cast<std::size_t>(r.row_copy[row])];
  return out;
}
// per-row [rows] -> [T, K].
template <class R> std::vector<R> scatter_probs(const std::vector<R>& pr, const Routing& r) {
  std::vector<R> out(r.tokens * r.topk, R(0));
  for (std::size_t c = 0; c < out.size(); ++c) out[c] = pr[r.row[c]];
  return out;
}
// [rows, C] -> [T, C]: sum of the top-k copies in slot order j = 0..K-1 (padding rows skipped).
template <class R>
std::vector<R> unpermute_combine(const std::vector<R>& in, std::size_t C, const Routing& r) {
  std::vector<R> out(r.tokens * C, R(0));
  for (std::size_t t = 0; t < r.tokens; ++t)
    for (std::size_t j = 0; j < r.topk; ++j) {
      const std::size_t row = r.row[t * r.topk + j];
      for (std::size_t c = 0; c < C; ++c) out[t * C + c] += in[row * C + c];
    }
  return out;
}

// Weighted SwiGLU (PAPER.md 3.3): h [M, 2F] = [a | b], act = silu(a) * b * w.
template <class R>
std::vector<R> swiglu_forward(const std::vector<R>& h, const std::vector<R>& w, std::size_t M, std::size_t F) {
  std::vector<R> act(M * F);
  for (std::size_t i = 0; i < M; ++i)
    for (std::size_t f = 0; f < F; ++f) {
      const R& a = h[i * 2 * F + f];
      const R& b = h[i * 2 * F + F + f];
      act[i * F + f] = a * sigmoid(a) * b * w[i];
    }
  return act;
}
// Backward: g = dact [M, F]. dh [M, 2F] = [g' dsilu b | g' silu] with g' = g w; dw = sum_f silu b g.
template <class R>
void swiglu_backward(const std::vector<R>& g, const std::vector<R>& h, const std::vector<R>& w, std::size_t M,
                     std::size_t F, std::vector<R>& dh, std::vector<R>& dw) {
  dh.assign(M * 2 * F, R(0));
  dw.assign(M, R(0));
  for (std::size_t i = 0; i < M; ++i) {
    R acc(0);
    for (std::size_t f = 0; f < F; ++f) {
      const R& a = h[i * 2 * F + f];
      const R& b = h[i * 2 * F + F + f];
      const R s = sigmoid(a);
      const R silu = a * s;
      const R dsilu = s * (R(1) + a * (R(1) - s));
      const R gp = g[i * F + f] * w[i];
      dh[i * 2 * F + f] = gp * dsilu * b;
      dh[i * 2 * F + F + f] = gp * silu;
      acc += silu * b * g[i * F + f];
    }
    dw[i] = acc;
  }
}

// Grouped GEMM helpers over the routing's expert groups.
// Forward-style: out rows of expert e = act rows of e [m_e, K] . w_e [N, K]^T.
template <class R>
std::vector<R> grouped_nt(const std::vector<R>& act, const std::vector<R>& w, const Routing& r, std::size_t N,
                          std::size_t K) {
  std::vector<R> out(r.rows() * N, R(0));
  for (std::size_t e = 0; e < r.experts; ++e)
    for (std::size_t i = r.offset[e]; i < r.offset[e] + r.valid[e]; ++i)  // padding rows stay 0
      for (std::size_t n = 0; n < N; ++n) {
        R acc(0);
        for (std::size_t k = 0; k < K; ++k) acc += act[i * K + k] * w[(e * N + n) * K + k];
        out[i * N + n] = acc;
      }
  return out;
}
// dgrad: out rows of e = g rows of e [m_e, N] . w_e [N, K]  (w_e stored [N, K]).
template <class R>
std::vector<R> grouped_nn(const std::vector<R>& g, const std::vector<R>& w, const Routing& r, std::size_t N,
                          std::size_t K) {
  std::vector<R> out(r.rows() * K, R(0));
  for (std::size_t e = 0; e < r.experts; ++e)
    for (std::size_t i = r.offset[e]; i < r.offset[e] + r.valid[e]; ++i)
      for (std::size_t n = 0; n < N; ++n) {
        const R gv = g[i * N + n];
        for (std::size_t k = 0; k < K; ++k) out[i * K + k] += gv * w[(e * N + n) * K + k];
      }
  return out;
}
// wgrad: dw_e [N, K] = g_e^T [N, m_e] . a_e [m_e, K].
template <class R>
std::vector<R> grouped_tn(const std::vector<R>& g, const std::vector<R>& a, const Routing& r, std::size_t N,
                          std::size_t K) {
  std::vector<R> out(r.experts * N * K, R(0));
  for (std::size_t e = 0; e < r.experts; ++e)
    for (std::size_t i = r.offset[e]; i < r.offset[e] + r.valid[e]; ++i)
      for (std::size_t n = 0; n < N; ++n) {
        const R gv = g[i * N + n];
        for (std::size_t k = 0; k < K; ++k) out[(e * N + n) * K + k] += gv * a[i * K + k];
      }
  return out;
}

// Everything the golden layer produces (also the tensors the error ledger reads).
template <class R> struct LayerResult {
  std::vector<R> logits, probs, xp, pp, h, act, o, y;
  std::vector<R> dout, dact, dh, dpp, dxp, dx_moe, dprobs, dlogits, dx_router, dx, dwr, dw1, dw2;
};

// The whole layer in one real type, in the operator order of the dataflows (the MPFR oracle and the
// finite-difference checks use this; the executor chains the same primitives).
template <class R>
LayerResult<R> layer(const std::vector<R>& x, const std::vector<R>& wr, const std::vector<R>& w1,
                     const std::vector<R>& w2, const std::vector<R>& dy, const MoeShape& s, const Routing& r) {
  const std::size_t T = s.tokens, H = s.hidden, F = s.ffn, E = s.experts;
  LayerResult<R> o;
  o.logits = matmul_nt(x, wr, T, E, H);
  o.probs = topk_probs(scores(o.logits, T, E, s.score), r, s.norm_topk);
  o.xp = permute_pad(x, H, r);
  o.pp = gather_probs(o.probs, r);
  o.h = grouped_nt(o.xp, w1, r, 2 * F, H);
  o.act = swiglu_forward(o.h, o.pp, r.rows(), F);
  o.o = grouped_nt(o.act, w2, r, H, F);
  o.y = unpermute_combine(o.o, H, r);
  o.dout = permute_pad(dy, H, r);
  o.dact = grouped_nn(o.dout, w2, r, H, F);
  o.dw2 = grouped_tn(o.dout, o.act, r, H, F);
  swiglu_backward(o.dact, o.h, o.pp, r.rows(), F, o.dh, o.dpp);
  o.dxp = grouped_nn(o.dh, w1, r, 2 * F, H);
  o.dw1 = grouped_tn(o.dh, o.xp, r, 2 * F, H);
  o.dx_moe = unpermute_combine(o.dxp, H, r);
  o.dprobs = scatter_probs(o.dpp, r);
  o.dlogits = router_backward(o.dprobs, o.logits, r, s.score, s.norm_topk);
  // dx_router = dlogits [T, E] . wr [E, H]; dwr = dlogits^T . x
  o.dx_router.assign(T * H, R(0));
  o.dwr.assign(E * H, R(0));
  for (std::size_t t = 0; t < T; ++t)
    for (std::size_t e = 0; e < E; ++e) {
      const R d = o.dlogits[t * E + e];
      for (std::size_t c = 0; c < H; ++c) {
        o.dx_router[t * H + c] += d * wr[e * H + c];
        o.dwr[e * H + c] += d * x[t * H + c];
      }
    }
  o.dx.resize(T * H);
  for (std::size_t i = 0; i < T * H; ++i) o.dx[i] = o.dx_moe[i] + o.dx_router[i];
  return o;
}

// The loss whose gradients the backward computes: L = sum(y * dy).
template <class R> R loss(const std::vector<R>& y, const std::vector<R>& dy) {
  R acc(0);
  for (std::size_t i = 0; i < y.size(); ++i) acc += y[i] * dy[i];
  return acc;
}

}  // namespace moe
}  // namespace fp8flow
