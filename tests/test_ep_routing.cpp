// Expert-parallel routing model (src/reference/ep_routing.hpp) against the single-process reference:
// every copy delivered exactly once to its expert's rank, the received + expanded rows in exactly the
// permuted + padded order of moe_layer's Routing, and the FP8 dispatch and fp32 combine reproducing the
// fp8_flow dataflow's xp, prow, dout and y bit for bit, for R = 1..8 ranks (uneven splits included).
#include <catch2/catch.hpp>

#include <algorithm>
#include <bit>
#include <cstring>
#include <set>

#include "formats/batch.hpp"
#include "io/errors.hpp"
#include "reference/dataflow.hpp"
#include "reference/ep_routing.hpp"

using namespace fp8flow;

namespace {
Routing routing_for(const MoeShape& s, std::uint64_t seed) {
  const MoeInputs in = make_inputs(s, seed);
  const auto logits = moe::matmul_nt(in.x, in.wr, s.tokens, s.experts, s.hidden);
  return make_routing(moe::scores(logits, s.tokens, s.experts, s.score), s);
}
// 203 tokens over 16 experts, top-4: R = 3, 5, 6, 7 split neither tokens nor experts evenly.
MoeShape odd_shape() {
  MoeShape s;
  s.tokens = 203, s.hidden = 128, s.ffn = 128, s.experts = 16, s.topk = 4, s.align = 16;
  return s;
}
double to_bf16(double v) {
  const double in[1] = {v};
  std::uint16_t code[1];
  double out[1];
  encode(bf16, kRneNonsat, std::span<const double>(in), std::span<std::uint16_t>(code));
  decode(bf16, std::span<const std::uint16_t>(code), std::span<double>(out));
  return out[0];
}
}  // namespace

TEST_CASE("ep routing: every copy is delivered exactly once to the rank owning its expert", "[ep]") {
  const MoeShape s = odd_shape();
  const Routing r = routing_for(s, 11);
  for (std::size_t R = 1; R <= 8; ++R) {
    INFO("ranks " << R);
    const EpPlan plan = plan_ep(r, R);
    std::vector<int> seen(s.tokens * s.topk, 0);
    for (std::size_t q = 0; q < R; ++q) {
      const EpLocal& L = plan.local[q];
      for (std::size_t i = 0; i < L.recv_token.size(); ++i)
        for (std::size_t j = 0; j < s.topk; ++j) {
          const int le = L.slot_expert[i * s.topk + j];
          if (le < 0) continue;
          const std::size_t c = L.recv_token[i] * s.topk + j;
          ++seen[c];
          CHECK(plan.part.expert_begin(q) + std::size_t(le) == std::size_t(r.expert[c]));
        }
    }
    CHECK(std::count(seen.begin(), seen.end(), 1) == long(seen.size()));
  }
}

TEST_CASE("ep routing: a token goes to a rank once and only if a slot is there in token order", "[ep]") {
  const MoeShape s = odd_shape();
  const Routing r = routing_for(s, 12);
  for (std::size_t R = 1; R <= 8; ++R) {
    INFO("ranks " << R);
    const EpPlan plan = plan_ep(r, R);
    const EpPartition& P = plan.part;
    for (std::size_t p = 0; p < R; ++p)
      for (std::size_t q = 0; q < R; ++q) {
        std::vector<std::uint32_t> expect;  // independent: tokens of p with any expert in q's range
        for (std::size_t t = P.token_begin(p); t < P.token_begin(p + 1); ++t)
          for (std::size_t j = 0; j < s.topk; ++j) {
            const auto e = std::size_t(r.expert[t * s.topk + j]);
            if (e >= P.expert_begin(q) && e < P.expert_begin(q + 1)) {
              expect.push_back(std::uint32_t(t));
              break;
            }
          }
        CHECK(plan.send[p][q] == expect);
      }
    // The receive buffer is in ascending global token order (blocks of p = 0..R-1).
    for (const EpLocal& L : plan.local) CHECK(std::is_sorted(L.recv_token.begin(), L.recv_token.end()));
  }
}

TEST_CASE("ep routing: expanded rows are the single-process permuted + padded rows", "[ep]") {
  const MoeShape s = odd_shape();
  const Routing r = routing_for(s, 13);
  for (std::size_t R = 1; R <= 8; ++R) {
    INFO("ranks " << R);
    const EpPlan plan = plan_ep(r, R);
    const EpPartition& P = plan.part;
    std::size_t total = 0;
    for (std::size_t q = 0; q < R; ++q) {
      const EpLocal& L = plan.local[q];
      const std::size_t e0 = P.expert_begin(q), e1 = P.expert_begin(q + 1);
      const std::size_t base = r.offset[e0], end = e1 < s.experts ? r.offset[e1] : r.rows();
      CHECK(L.rows == end - base);
      for (std::size_t e = e0; e < e1; ++e) {
        CHECK(L.valid[e - e0] == r.valid[e]);
        CHECK(L.padded[e - e0] == r.padded[e]);
        CHECK(L.offset[e - e0] + base == r.offset[e]);
      }
      for (std::size_t row = 0; row < L.rows; ++row) {
        const long ls = L.row_slot[row];
        const long gc = r.row_copy[base + row];
        if (ls < 0) {
          CHECK(gc < 0);
          continue;
        }
        const std::size_t c = L.recv_token[std::size_t(ls) / s.topk] * s.topk + std::size_t(ls) % s.topk;
        CHECK(long(c) == gc);
        CHECK(r.row[c] == base + row);
      }
      total += L.rows;
    }
    CHECK(total == r.rows());
  }
}

TEST_CASE("ep routing: fp8 dispatch and fp32 combine reproduce the fp8_flow dataflow bit for bit", "[ep]") {
  MoeShape s = preset_shape("tiny");
  const MoeInputs in = make_inputs(s, 21);
  const auto logits = moe::matmul_nt(in.x, in.wr, s.tokens, s.experts, s.hidden);
  const Context ctx{s, make_routing(moe::scores(logits, s.tokens, s.experts, s.score), s)};
  Env env = make_env(s, &in);
  execute(fp8_flow_ep_part(), ctx, env, ExecOptions{});
  const Tensor &xq = env.at("x.q"), &xp = env.at("xp"), &prow = env.at("prow"), &dyq = env.at("dy.q"),
               &dout = env.at("dout"), &o = env.at("o"), &y = env.at("y");
  REQUIRE(xp.q);
  for (std::size_t R = 1; R <= s.experts; ++R) {
    INFO("ranks " << R);
    const EpPlan plan = plan_ep(ctx.routing, R);
    std::vector<std::vector<double>> o_rank(R);
    for (std::size_t q = 0; q < R; ++q) {
      const std::size_t base = ctx.routing.offset[plan.part.expert_begin(q)], rows = plan.local[q].rows;
      for (const auto& [tok, perm] : {std::pair{&xq, &xp}, std::pair{&dyq, &dout}}) {
        const QuantizedTensor got = ep_dispatch_fp8(*tok->q, plan, q);
        const QuantizedTensor& want = *perm->q;
        REQUIRE(got.rows == rows);
        CHECK(std::equal(got.codes.begin(), got.codes.end(), want.codes.begin() + base * want.cols));
        CHECK(std::memcmp(got.scale_inv.data(), want.scale_inv.data() + base * want.scale_cols,
                          got.scale_inv.size() * sizeof(float)) == 0);
      }
      const auto pr = ep_dispatch_probs(env.at("probs").v, plan, q);
      CHECK(std::equal(pr.begin(), pr.end(), prow.v.begin() + base));
      o_rank[q].assign(o.v.begin() + base * o.cols, o.v.begin() + (base + rows) * o.cols);
    }
    std::vector<double> yc = ep_combine_fp32(o_rank, o.cols, plan);
    std::size_t bad = 0;
    for (std::size_t i = 0; i < yc.size(); ++i)
      bad += std::bit_cast<std::uint64_t>(to_bf16(yc[i])) != std::bit_cast<std::uint64_t>(y.v[i]);
    CHECK(bad == 0);
  }
}

TEST_CASE("ep routing: bad rank counts are refused with the numbers", "[ep]") {
  CHECK_THROWS_WITH(make_partition(0, 10, 4), Catch::Contains("ranks = 0"));
  CHECK_THROWS_WITH(make_partition(5, 10, 4), Catch::Contains("ranks = 5") && Catch::Contains("4 experts"));
  const EpPartition P = make_partition(3, 10, 7);
  std::set<std::size_t> owners;
  for (std::size_t t = 0; t < 10; ++t) {
    const std::size_t p = P.token_owner(t);
    CHECK(P.token_begin(p) <= t);
    CHECK(t < P.token_begin(p + 1));
  }
  for (std::size_t e = 0; e < 7; ++e) owners.insert(P.expert_owner(e));
  CHECK(owners.size() == 3);
}
