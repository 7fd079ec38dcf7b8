// The fp64 MoE layer: gradients against central finite differences, and the fp64 dataflow against an
// MPFR (133-bit) evaluation of the same graph.
#include <boost/multiprecision/mpfr.hpp>
#include <catch2/catch.hpp>
#include <cmath>
#include <limits>

#include "reference/dataflow.hpp"
#include "reference/moe_layer.hpp"

using namespace fp8flow;

namespace {

struct Tiny {
  MoeShape shape;
  MoeInputs in;
  Context ctx;
};

Tiny tiny(std::size_t tokens = 48, std::size_t align = 128) {
  MoeShape s = preset_shape("tiny");
  s.tokens = tokens;
  s.align = align;
  MoeInputs in = make_inputs(s, 3);
  const auto logits = moe::matmul_nt(in.x, in.wr, s.tokens, s.experts, s.hidden);
  Routing r = make_routing(moe::scores(logits, s.tokens, s.experts, s.score), s);
  return {s, std::move(in), Context{s, std::move(r)}};
}

Env run_fp64(const Tiny& t) {
  Env env = make_env(t.shape, &t.in);
  ExecOptions o;
  execute(builtin_dataflow("fp64"), t.ctx, env, o);
  return env;
}

double loss_at(const Tiny& t, const MoeInputs& in) {
  const auto r = moe::layer(in.x, in.wr, in.w1, in.w2, in.dy, t.shape, t.ctx.routing);
  return moe::loss(r.y, in.dy);
}

}  // namespace

TEST_CASE("moe routing: each expert's rows padded to align with the copies first", "[moe]") {
  const Tiny t = tiny(48, 16);
  const Routing& r = t.ctx.routing;
  std::size_t copies = 0;
  for (std::size_t e = 0; e < r.experts; ++e) {
    CHECK(r.padded[e] % 16 == 0);
    CHECK(r.padded[e] >= r.valid[e]);
    CHECK(r.padded[e] - r.valid[e] < 16);
    for (std::size_t i = 0; i < r.padded[e]; ++i) CHECK((r.row_copy[r.offset[e] + i] >= 0) == (i < r.valid[e]));
    copies += r.valid[e];
  }
  CHECK(copies == t.shape.tokens * t.shape.topk);
}

TEST_CASE("moe fp64 gradients match central finite differences", "[moe][golden]") {
  for (ScoreFunction f : {ScoreFunction::softmax, ScoreFunction::sigmoid}) {
    Tiny t = tiny(24, 128);
    t.shape.score = f;
    t.ctx.shape.score = f;
    INFO("score " << to_string(f));
    const Env env = run_fp64(t);
    struct Param {
      const char* grad;
      std::vector<double> MoeInputs::*field;
    };
    for (const Param p : {Param{"dx", &MoeInputs::x}, Param{"dwr", &MoeInputs::wr}, Param{"dw1", &MoeInputs::w1},
                          Param{"dw2", &MoeInputs::w2}}) {
      const auto& g = env.at(p.grad).v;
      const std::size_t n = (t.in.*p.field).size();
      double gmax = 0;
      for (double v : g) gmax = std::max(gmax, std::abs(v));
      REQUIRE(gmax > 0);
      for (std::size_t k = 0; k < 12; ++k) {
        // Spread probes over the tensor; for the router weight every probe is informative.
        const std::size_t i = (k * 7919 + 13) % n;
        MoeInputs a = t.in, b = t.in;
        const double h = 1e-5 * std::max(1.0, std::abs((t.in.*p.field)[i]));
        (a.*p.field)[i] += h;
        (b.*p.field)[i] -= h;
        const double fd = (loss_at(t, a) - loss_at(t, b)) / (2 * h);
        INFO(p.grad << "[" << i << "] analytic " << g[i] << " fd " << fd);
        // Central differences: truncation O(h^2 f''') and cancellation ~eps |L| / h, both << 1e-6 gmax here.
        CHECK(std::abs(fd - g[i]) <= 1e-6 * gmax + 1e-6 * std::abs(g[i]));
      }
    }
  }
}

TEST_CASE("moe fp64 dataflow is within a few ulps (norm-wise) of a 133-bit MPFR evaluation on tiny", "[moe][golden][mpfr]") {
  using Mp = boost::multiprecision::number<boost::multiprecision::mpfr_float_backend<40>,
                                           boost::multiprecision::et_off>;
  static_assert(std::numeric_limits<Mp>::digits >= 113);
  const Tiny t = tiny();
  const Env env = run_fp64(t);
  auto conv = [](const std::vector<double>& v) { return std::vector<Mp>(v.begin(), v.end()); };
  const auto r = moe::layer(conv(t.in.x), conv(t.in.wr), conv(t.in.w1), conv(t.in.w2), conv(t.in.dy), t.shape,
                            t.ctx.routing);
  const std::pair<const char*, const std::vector<Mp>*> outs[] = {
      {"logits", &r.logits}, {"probs", &r.probs}, {"h", &r.h},    {"act", &r.act},   {"y", &r.y},
      {"dact", &r.dact},     {"dh", &r.dh},       {"dw2", &r.dw2}, {"dw1", &r.dw1},  {"dlogits", &r.dlogits},
      {"dwr", &r.dwr},       {"dx", &r.dx}};
  for (const auto& [name, ref] : outs) {
    const auto& v = env.at(name).v;
    REQUIRE(v.size() == ref->size());
    // Norm-wise: ||fp64 - exact|| / ||exact|| in units of the fp64 unit roundoff u = 2^-53. Every fp64
    // operator is a dot product (recursive summation: O(K u) worst case, O(sqrt(K) u) typical) or an
    // elementwise expression of a few roundings, so a few u must hold. The element-wise maximum, in ulps
    // of the tensor's largest magnitude, is printed for information (outlier channels make single dot
    // products cancel, so it reaches ~10-20 ulps on tiny).
    double vmax = 0, emax = 0, num = 0, den = 0;
    for (std::size_t i = 0; i < v.size(); ++i) {
      const double exact = static_cast<double>((*ref)[i]);
      const double err = static_cast<double>(abs(Mp(v[i]) - (*ref)[i]));
      vmax = std::max(vmax, std::abs(exact));
      emax = std::max(emax, err);
      num += err * err;
      den += exact * exact;
    }
    const double ulp = std::ldexp(1.0, std::ilogb(vmax) - 52);
    const double rel_u = std::sqrt(num / den) / 0x1.0p-53;
    INFO(name << ": norm-wise error " << rel_u << " u; max error " << emax / ulp << " ulp of max |value| " << vmax);
    CHECK(rel_u <= 32.0);  // 32 u = 16 ulp(1) norm-wise; measured 3-16 u (dlogits, softmax backward, is the largest)
  }
}
