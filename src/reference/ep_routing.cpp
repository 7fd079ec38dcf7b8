// Expert-parallel routing model (see ep_routing.hpp). Each side computes only from what it knows: the
// sender from its tokens' routing and the expert partition, the receiver from the received metadata.
#include "reference/ep_routing.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <stdexcept>

#include "io/errors.hpp"

namespace fp8flow {

std::size_t EpPartition::token_owner(std::size_t t) const {
  std::size_t p = std::min(ranks - 1, t * ranks / std::max<std::size_t>(tokens, 1));
  while (p > 0 && token_begin(p) > t) --p;
  while (p + 1 < ranks && token_begin(p + 1) <= t) ++p;
  return p;
}

std::size_t EpPartition::expert_owner(std::size_t e) const {
  std::size_t p = std::min(ranks - 1, e * ranks / std::max<std::size_t>(experts, 1));
  while (p > 0 && expert_begin(p) > e) --p;
  while (p + 1 < ranks && expert_begin(p + 1) <= e) ++p;
  return p;
}

EpPartition make_partition(std::size_t ranks, std::size_t tokens, std::size_t experts) {
  if (ranks == 0) throw InputError("expert parallelism: ranks = 0; expected at least 1");
  if (ranks > experts)
    throw InputError(fmt::format("expert parallelism: ranks = {} exceeds the {} experts (a rank would hold none)",
                                 ranks, experts));
  return EpPartition{ranks, tokens, experts};
}

std::size_t EpLocal::copies() const {
  std::size_t n = 0;
  for (auto v : valid) n += v;
  return n;
}

std::size_t EpPlan::dispatch_rows() const {
  std::size_t n = 0;
  for (const auto& row : send)
    for (const auto& v : row) n += v.size();
  return n;
}
std::size_t EpPlan::remote_dispatch_rows() const {
  std::size_t n = 0;
  for (std::size_t p = 0; p < send.size(); ++p)
    for (std::size_t q = 0; q < send[p].size(); ++q)
      if (p != q) n += send[p][q].size();
  return n;
}

EpPlan plan_ep(const Routing& r, std::size_t ranks) {
  EpPlan plan;
  plan.part = make_partition(ranks, r.tokens, r.experts);
  plan.topk = r.topk;
  plan.align = r.align;
  const EpPartition& P = plan.part;
  const std::size_t R = ranks, K = r.topk;

  // ---- Senders: rank p walks its tokens in order; token t goes to q once if a slot's expert is on q.
  plan.send.assign(R, std::vector<std::vector<std::uint32_t>>(R));
  // The metadata that travels with a row to q: per slot the local expert on q, or -1.
  struct Meta {
    std::uint32_t token;
    std::vector<int> local_expert;
  };
  std::vector<std::vector<std::vector<Meta>>> wire(R, std::vector<std::vector<Meta>>(R));
  for (std::size_t p = 0; p < R; ++p)
    for (std::size_t t = P.token_begin(p); t < P.token_begin(p + 1); ++t)
      for (std::size_t q = 0; q < R; ++q) {
        Meta m{static_cast<std::uint32_t>(t), std::vector<int>(K, -1)};
        bool any = false;
        for (std::size_t j = 0; j < K; ++j) {
          const auto e = static_cast<std::size_t>(r.expert[t * K + j]);
          if (P.expert_owner(e) == q) {
            m.local_expert[j] = static_cast<int>(e - P.expert_begin(q));
            any = true;
          }
        }
        if (!any) continue;
        plan.send[p][q].push_back(m.token);
        wire[p][q].push_back(std::move(m));
      }

  // ---- Receivers: blocks of p = 0..R-1; expansion from the metadata alone.
  plan.local.resize(R);
  for (std::size_t q = 0; q < R; ++q) {
    EpLocal& L = plan.local[q];
    const std::size_t El = P.expert_count(q);
    L.recv_offset.assign(R + 1, 0);
    for (std::size_t p = 0; p < R; ++p) {
      L.recv_offset[p + 1] = L.recv_offset[p] + wire[p][q].size();
      for (const Meta& m : wire[p][q]) {
        L.recv_token.push_back(m.token);
        L.slot_expert.insert(L.slot_expert.end(), m.local_expert.begin(), m.local_expert.end());
      }
    }
    const std::size_t n = L.recv_token.size();
    L.valid.assign(El, 0);
    for (int e : L.slot_expert)
      if (e >= 0) ++L.valid[static_cast<std::size_t>(e)];
    L.padded.assign(El, 0);
    L.offset.assign(El, 0);
    for (std::size_t e = 0; e < El; ++e) {
      L.padded[e] = (L.valid[e] + plan.align - 1) / plan.align * plan.align;
      if (e > 0) L.offset[e] = L.offset[e - 1] + L.padded[e - 1];
    }
    L.rows = El ? L.offset.back() + L.padded.back() : 0;
    L.slot_row.assign(n * K, -1);
    L.row_slot.assign(L.rows, -1);
    std::vector<std::size_t> next(L.offset);
    for (std::size_t s = 0; s < n * K; ++s) {  // (i, j) order: token order, then slot order
      const int e = L.slot_expert[s];
      if (e < 0) continue;
      const std::size_t row = next[static_cast<std::size_t>(e)]++;
      L.slot_row[s] = static_cast<long>(row);
      L.row_slot[row] = static_cast<long>(s);
    }
  }

  // ---- Combine: q sends its valid rows back to each token's home rank in (i, j) order.
  plan.combine_send.assign(R, std::vector<std::vector<std::uint32_t>>(R));
  for (std::size_t q = 0; q < R; ++q) {
    const EpLocal& L = plan.local[q];
    for (std::size_t s = 0; s < L.slot_row.size(); ++s) {
      if (L.slot_row[s] < 0) continue;
      const std::size_t home = P.token_owner(L.recv_token[s / K]);
      plan.combine_send[q][home].push_back(static_cast<std::uint32_t>(L.slot_row[s]));
    }
  }
  // Home rank p: copy (t, j) comes from q = owner(expert); its index is the number of earlier copies
  // (t', j') < (t, j) of p's tokens with the same source rank (lexicographic order, as sent).
  plan.combine_index.assign(r.tokens * K, 0);
  plan.combine_source.assign(r.tokens * K, 0);
  for (std::size_t p = 0; p < R; ++p) {
    std::vector<std::uint32_t> next(R, 0);
    for (std::size_t c = P.token_begin(p) * K; c < P.token_begin(p + 1) * K; ++c) {
      const auto q = static_cast<std::uint32_t>(P.expert_owner(static_cast<std::size_t>(r.expert[c])));
      plan.combine_source[c] = q;
      plan.combine_index[c] = next[q]++;
    }
  }
  return plan;
}

QuantizedTensor ep_dispatch_fp8(const QuantizedTensor& in, const EpPlan& plan, std::size_t q) {
  if (in.codes_transposed || in.recipe.tile.rows != 1)
    throw InputError("ep_dispatch_fp8: needs a rowwise 1xN quantized tensor");
  if (in.rows != plan.part.tokens)
    throw InputError(fmt::format("ep_dispatch_fp8: {} rows, expected {} tokens", in.rows, plan.part.tokens));
  const EpLocal& L = plan.local.at(q);
  QuantizedTensor out = in;
  out.rows = L.rows;
  out.row_groups.clear();
  for (auto g : L.padded)
    if (g) out.row_groups.push_back(g);
  out.codes.assign(out.rows * out.cols, 0);
  out.scale_rows = out.rows;
  out.scale_inv.assign(out.rows * out.scale_cols, 0.0f);
  out.origin = "ep_dispatch";
  const std::size_t K = plan.topk;
  for (std::size_t row = 0; row < L.rows; ++row) {
    if (L.row_slot[row] < 0) continue;
    const std::size_t t = L.recv_token[static_cast<std::size_t>(L.row_slot[row]) / K];
    std::copy_n(in.codes.begin() + t * in.cols, in.cols, out.codes.begin() + row * out.cols);
    std::copy_n(in.scale_inv.begin() + t * in.scale_cols, in.scale_cols, out.scale_inv.begin() + row * out.scale_cols);
  }
  return out;
}

std::vector<double> ep_dispatch_values(const std::vector<double>& in, std::size_t C, const EpPlan& plan,
                                       std::size_t q) {
  if (in.size() != plan.part.tokens * C) throw InputError("ep_dispatch_values: input is not [tokens, C]");
  const EpLocal& L = plan.local.at(q);
  std::vector<double> out(L.rows * C, 0.0);
  for (std::size_t row = 0; row < L.rows; ++row) {
    if (L.row_slot[row] < 0) continue;
    const std::size_t t = L.recv_token[static_cast<std::size_t>(L.row_slot[row]) / plan.topk];
    std::copy_n(in.begin() + t * C, C, out.begin() + row * C);
  }
  return out;
}

std::vector<double> ep_dispatch_probs(const std::vector<double>& probs, const EpPlan& plan, std::size_t q) {
  const std::size_t K = plan.topk;
  if (probs.size() != plan.part.tokens * K) throw InputError("ep_dispatch_probs: probs is not [tokens, topk]");
  const EpLocal& L = plan.local.at(q);
  std::vector<double> out(L.rows, 0.0);
  for (std::size_t row = 0; row < L.rows; ++row) {
    if (L.row_slot[row] < 0) continue;
    const auto s = static_cast<std::size_t>(L.row_slot[row]);
    out[row] = probs[L.recv_token[s / K] * K + s % K];
  }
  return out;
}

std::vector<double> ep_combine_fp32(const std::vector<std::vector<double>>& per_rank, std::size_t C,
                                    const EpPlan& plan) {
  const EpPartition& P = plan.part;
  const std::size_t R = P.ranks, K = plan.topk;
  if (per_rank.size() != R) throw InputError("ep_combine_fp32: one tensor per rank expected");
  // The wire: block [q][p] holds the rows q sends to p, in send order.
  std::vector<std::vector<std::vector<float>>> wire(R, std::vector<std::vector<float>>(R));
  for (std::size_t q = 0; q < R; ++q) {
    if (per_rank[q].size() != plan.local[q].rows * C) throw InputError("ep_combine_fp32: rank tensor size");
    for (std::size_t p = 0; p < R; ++p)
      for (std::uint32_t row : plan.combine_send[q][p])
        for (std::size_t c = 0; c < C; ++c) wire[q][p].push_back(static_cast<float>(per_rank[q][row * C + c]));
  }
  // Home ranks: fp32 sum of the K copies in slot order (unpermute_combine's accumulation).
  std::vector<double> out(P.tokens * C, 0.0);
  for (std::size_t t = 0; t < P.tokens; ++t) {
    const std::size_t p = P.token_owner(t);
    for (std::size_t c = 0; c < C; ++c) {
      float acc = 0.0f;
      for (std::size_t j = 0; j < K; ++j) {
        const std::size_t copy = t * K + j;
        acc += wire[plan.combine_source[copy]][p][std::size_t(plan.combine_index[copy]) * C + c];
      }
      out[t * C + c] = acc;
    }
  }
  return out;
}

Dataflow fp8_flow_ep_part() {
  Dataflow df = builtin_dataflow("fp8_flow");
  std::vector<Step> keep;
  bool have_y = false, have_dout = false;
  for (const Step& s : df.steps) {
    if (s.phase == Phase::bwd && have_dout) break;
    const bool bwd_dispatch = s.phase == Phase::bwd && (s.op == Op::quantize || s.op == Op::all_to_all ||
                                                          s.op == Op::permute_pad);
    if (s.phase != Phase::bwd || bwd_dispatch) keep.push_back(s);
    if (s.op == Op::unpermute_combine && s.out[0] == "y") have_y = true;
    if (s.op == Op::permute_pad && s.out[0] == "dout") have_dout = true;
  }
  if (!have_y || !have_dout)
    throw std::logic_error("fp8_flow_ep_part: fp8_flow no longer combines into y or permutes dy into dout");
  df.name = "fp8_flow_ep_part";
  df.description = "fp8_flow through the forward combine (y) and the backward dispatch (dout)";
  df.steps = std::move(keep);
  check_dataflow(df);
  return df;
}

}  // namespace fp8flow
