// Expert parallelism of the reference MoE layer, as a CPU model (docs/ep.md): which (token, top-k slot)
// copies each rank sends to each rank, in which order they land, and how the received rows map onto the
// reference's per-expert permuted + padded row order (moe_layer.hpp: Routing, permute_pad,
// unpermute_combine). The CUDA/NCCL implementation (src/cuda/ep_dispatch.hpp) is checked against this.
//
// Partition: R ranks; rank p holds tokens [token_begin(p), token_begin(p+1)) and experts
// [expert_begin(p), expert_begin(p+1)), contiguous floor splits (b(p) = p * N / R).
//
// Dispatch (DeepEP-style, one row per (token, destination rank)): rank p sends token t to rank q once if
// any of t's K slots routes to an expert of q; the row carries the payload (FP8 codes + 1x128 scales, or
// bf16), the token id, per slot the local expert index on q (-1: not on q) and the prob. Send order:
// ascending token id. Receive order on q: the blocks of p = 0..R-1 one after another, so the received rows
// are in ascending global token order.
//
// Expansion on q (fused permute + pad): each (received row i, slot j) whose expert is local becomes one
// row of its expert's group, in (i, j) order, groups padded to `align` with zero rows. Computed from the
// received metadata alone; since token order is preserved, q's permuted tensor is exactly rows
// [offset[e_begin], offset[e_end]) of the single-process permuted tensor (test_ep_routing.cpp checks it).
//
// Combine (bit-exact variant): q sends every valid permuted row back to the token's home rank, in (i, j)
// order; the home rank sums token t's K copies in slot order j = 0..K-1 in fp32 (unpermute_combine's
// accumulation), so the result equals the single-process combine bit for bit. (DeepEP instead reduces a
// token's copies on the expert rank first, which changes the fp32 summation order.)
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "quant/quantize.hpp"
#include "reference/dataflow.hpp"
#include "reference/moe_layer.hpp"

namespace fp8flow {

struct EpPartition {
  std::size_t ranks = 1, tokens = 0, experts = 0;
  std::size_t token_begin(std::size_t p) const { return p * tokens / ranks; }
  std::size_t expert_begin(std::size_t p) const { return p * experts / ranks; }
  std::size_t token_count(std::size_t p) const { return token_begin(p + 1) - token_begin(p); }
  std::size_t expert_count(std::size_t p) const { return expert_begin(p + 1) - expert_begin(p); }
  std::size_t token_owner(std::size_t t) const;   // the p with token_begin(p) <= t < token_begin(p + 1)
  std::size_t expert_owner(std::size_t e) const;
};
// Throws InputError when ranks is 0 or exceeds the expert count (a rank without experts).
EpPartition make_partition(std::size_t ranks, std::size_t tokens, std::size_t experts);

// What one rank holds after dispatch (computed from received metadata only).
struct EpLocal {
  std::vector<std::uint32_t> recv_token;          // [recv rows] global token id of each received row
  std::vector<std::size_t> recv_offset;           // [R + 1] first received row of source rank p
  std::vector<int> slot_expert;                   // [recv rows * K] local expert of (i, j), -1: elsewhere
  std::vector<long> slot_row;                     // [recv rows * K] local permuted row of (i, j), -1
  std::vector<std::size_t> valid, padded, offset; // per local expert
  std::vector<long> row_slot;                     // [rows] i * K + j of a permuted row, -1 for padding
  std::size_t rows = 0;                           // permuted rows (padded)
  std::size_t copies() const;                     // valid rows
};

struct EpPlan {
  EpPartition part;
  std::size_t topk = 0, align = 0;
  std::vector<std::vector<std::vector<std::uint32_t>>> send;          // [p][q] token ids, send order
  std::vector<EpLocal> local;                                         // [q]
  // Combine: [q][p] local permuted rows of q sent back to p, in send order; and for every copy
  // c = t * K + j, its index within the block its expert's rank sends to t's home rank.
  std::vector<std::vector<std::vector<std::uint32_t>>> combine_send;
  std::vector<std::uint32_t> combine_index;                           // [T * K]
  std::vector<std::uint32_t> combine_source;                          // [T * K] rank of the copy's expert
  std::size_t dispatch_rows() const;   // rows sent over all (p, q), self included
  std::size_t remote_dispatch_rows() const;  // p != q only
};

// The plan for routing r over `ranks` ranks (throws InputError as make_partition).
EpPlan plan_ep(const Routing& r, std::size_t ranks);

// ---- Simulating the data movement on the CPU (tests; the GPU path is checked against these) ----------
// Dispatch of a rowwise 1x128 (or 1xN) quantized [T, C] tensor: q's expanded, permuted + padded tensor
// (codes and scale rows copied, padding rows code 0 and scale 0, as the executor's fp8 permute_pad).
QuantizedTensor ep_dispatch_fp8(const QuantizedTensor& tokens, const EpPlan& plan, std::size_t q);
// Dispatch of plain values [T, C] (padding rows 0).
std::vector<double> ep_dispatch_values(const std::vector<double>& tokens, std::size_t C, const EpPlan& plan,
                                       std::size_t q);
// Per-row probs of q's permuted rows from probs [T, K] (padding 0): the metadata that travels.
std::vector<double> ep_dispatch_probs(const std::vector<double>& probs, const EpPlan& plan, std::size_t q);
// Combine: per_rank[q] is q's permuted output [local rows, C]; returns [T, C], each token the fp32 sum of
// its K copies in slot order (as float values widened to double; round to the output precision after).
std::vector<double> ep_combine_fp32(const std::vector<std::vector<double>>& per_rank, std::size_t C,
                                    const EpPlan& plan);

// The part of the fp8_flow dataflow that expert parallelism touches, cut from the named graph (not a
// copy): the prologue, the forward through the combine (y), and the backward through permute_pad of the
// quantized output gradient (dout). Throws if fp8_flow's graph no longer has those steps.
Dataflow fp8_flow_ep_part();

}  // namespace fp8flow
