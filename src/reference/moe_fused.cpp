#include "reference/moe_fused.hpp"

#include <fmt/format.h>

#include <algorithm>

#include "io/errors.hpp"
#include "reference/moe_fp32.hpp"

namespace fp8flow {
namespace {

void need(bool ok, std::string_view what) {
  if (!ok) throw InputError(std::string(what));
}

void check_swiglu(std::size_t h_size, std::size_t prob_size, std::size_t rows, std::size_t ffn) {
  need(ffn % 128 == 0, fmt::format("fused SwiGLU: ffn = {} is not a multiple of 128", ffn));
  need(h_size == rows * 2 * ffn, fmt::format("fused SwiGLU: h has {} values, expected rows {} x 2F {}", h_size, rows, 2 * ffn));
  need(prob_size == rows, fmt::format("fused SwiGLU: prob has {} values, expected rows = {}", prob_size, rows));
}

QuantizedTensor quantize_rows(const std::vector<float>& y, std::size_t rows, std::size_t cols) {
  return quantize(y, rows, cols, swiglu_quant_recipe(), default_params(ScaleRule::paper_swiglu));
}

}  // namespace

QuantRecipe swiglu_quant_recipe() { return {k1x128, &e4m3, ScaleRule::paper_swiglu}; }

std::vector<float> swiglu_fwd_values(std::span<const std::uint16_t> h, std::span<const float> prob,
                                     std::size_t rows, std::size_t ffn) {
  check_swiglu(h.size(), prob.size(), rows, ffn);
  std::vector<float> y(rows * ffn);
#pragma omp parallel for schedule(static)
  for (std::size_t r = 0; r < rows; ++r) {
    const std::uint16_t* hr = h.data() + r * 2 * ffn;
    for (std::size_t f = 0; f < ffn; ++f)
      y[r * ffn + f] = moe32::swiglu_fwd(moe32::bf16_to_f32(hr[f]), moe32::bf16_to_f32(hr[ffn + f]), prob[r]);
  }
  return y;
}

QuantizedTensor swiglu_quant_fwd(std::span<const std::uint16_t> h, std::span<const float> prob, std::size_t rows,
                                 std::size_t ffn) {
  return quantize_rows(swiglu_fwd_values(h, prob, rows, ffn), rows, ffn);
}

std::vector<float> swiglu_bwd_values(std::span<const std::uint16_t> dact, std::span<const std::uint16_t> h,
                                     std::span<const float> prob, std::size_t rows, std::size_t ffn,
                                     std::vector<float>& dprob) {
  check_swiglu(h.size(), prob.size(), rows, ffn);
  need(dact.size() == rows * ffn, fmt::format("fused SwiGLU backward: dact has {} values, expected {}", dact.size(), rows * ffn));
  std::vector<float> dh(rows * 2 * ffn);
  dprob.assign(rows, 0.0f);
  constexpr std::size_t L = moe32::kSwigluLanes, V = moe32::kSwigluVec;
#pragma omp parallel for schedule(static)
  for (std::size_t r = 0; r < rows; ++r) {
    const std::uint16_t* hr = h.data() + r * 2 * ffn;
    const std::uint16_t* gr = dact.data() + r * ffn;
    float lane[L];
    for (std::size_t l = 0; l < L; ++l) {
      float acc = 0.0f;
      for (std::size_t c0 = 0; c0 < ffn; c0 += L * V)
        for (std::size_t i = 0; i < V; ++i) {
          const std::size_t f = c0 + l * V + i;
          if (f >= ffn) break;
          const moe32::SwigluGrad d = moe32::swiglu_bwd(moe32::bf16_to_f32(hr[f]), moe32::bf16_to_f32(hr[ffn + f]),
                                                    moe32::bf16_to_f32(gr[f]), prob[r]);
          dh[r * 2 * ffn + f] = d.dgate;
          dh[r * 2 * ffn + ffn + f] = d.dup;
          acc = moe32::add(acc, d.dw_term);
        }
      lane[l] = acc;
    }
    for (std::size_t o = L / 2; o >= 1; o /= 2) {
      float next[L];
      for (std::size_t l = 0; l < L; ++l) next[l] = moe32::add(lane[l], lane[l ^ o]);
      std::copy_n(next, L, lane);
    }
    dprob[r] = moe32::canonical_nan(lane[0]);
  }
  return dh;
}

SwigluQuantGrad swiglu_quant_bwd(std::span<const std::uint16_t> dact, std::span<const std::uint16_t> h,
                                 std::span<const float> prob, std::size_t rows, std::size_t ffn) {
  SwigluQuantGrad g;
  const std::vector<float> dh = swiglu_bwd_values(dact, h, prob, rows, ffn, g.dprob);
  g.dh = quantize_rows(dh, rows, 2 * ffn);
  return g;
}

std::vector<std::int32_t> row_sources(const Routing& r) {
  std::vector<std::int32_t> out(r.row_copy.size());
  for (std::size_t i = 0; i < out.size(); ++i) out[i] = static_cast<std::int32_t>(r.row_copy[i]);
  return out;
}

std::vector<std::int32_t> copy_rows(const Routing& r) {
  std::vector<std::int32_t> out(r.row.size());
  for (std::size_t i = 0; i < out.size(); ++i) out[i] = static_cast<std::int32_t>(r.row[i]);
  return out;
}

Fp8Rows permute_pad_fp8(std::span<const std::uint8_t> codes, std::span<const float> scale_inv,
                        std::span<const float> probs, std::size_t tokens, std::size_t cols, std::size_t topk,
                        std::span<const std::int32_t> row_src) {
  const std::size_t sc = (cols + 127) / 128;
  need(codes.size() == tokens * cols, fmt::format("permute_pad: codes has {} bytes, expected {} x {}", codes.size(), tokens, cols));
  need(scale_inv.size() == tokens * sc, fmt::format("permute_pad: scale_inv has {} values, expected {} x {}", scale_inv.size(), tokens, sc));
  need(probs.empty() || probs.size() == tokens * topk,
       fmt::format("permute_pad: probs has {} values, expected tokens x topk = {}", probs.size(), tokens * topk));
  Fp8Rows o;
  o.rows = row_src.size(), o.cols = cols;
  o.codes.assign(o.rows * cols, 0);
  o.scale_inv.assign(o.rows * sc, 0.0f);
  if (!probs.empty()) o.prob.assign(o.rows, 0.0f);
  for (std::size_t row = 0; row < o.rows; ++row) {
    const std::int32_t c = row_src[row];
    if (c < 0) continue;
    need(std::size_t(c) < tokens * topk, fmt::format("permute_pad: row {} names copy {} of {}", row, c, tokens * topk));
    const std::size_t t = std::size_t(c) / topk;
    std::copy_n(codes.begin() + t * cols, cols, o.codes.begin() + row * cols);
    std::copy_n(scale_inv.begin() + t * sc, sc, o.scale_inv.begin() + row * sc);
    if (!probs.empty()) o.prob[row] = probs[std::size_t(c)];
  }
  return o;
}

std::vector<std::uint16_t> unpermute_combine_bf16(std::span<const std::uint16_t> in, std::size_t in_rows,
                                                  std::size_t cols, std::span<const std::int32_t> copy_row,
                                                  std::size_t tokens, std::size_t topk,
                                                  std::span<const float> merge_probs) {
  need(in.size() == in_rows * cols, fmt::format("unpermute: input has {} values, expected {} x {}", in.size(), in_rows, cols));
  need(copy_row.size() == tokens * topk, fmt::format("unpermute: {} copy rows, expected tokens x topk = {}", copy_row.size(), tokens * topk));
  need(merge_probs.empty() || merge_probs.size() == tokens * topk,
       fmt::format("unpermute: merging probs has {} values, expected {}", merge_probs.size(), tokens * topk));
  for (std::size_t i = 0; i < copy_row.size(); ++i)
    need(copy_row[i] >= 0 && std::size_t(copy_row[i]) < in_rows,
         fmt::format("unpermute: copy {} names row {} of {}", i, copy_row[i], in_rows));
  std::vector<std::uint16_t> out(tokens * cols);
#pragma omp parallel for schedule(static)
  for (std::size_t t = 0; t < tokens; ++t)
    for (std::size_t c = 0; c < cols; ++c) {
      float acc = 0.0f;
      for (std::size_t j = 0; j < topk; ++j) {
        const float v = moe32::bf16_to_f32(in[std::size_t(copy_row[t * topk + j]) * cols + c]);
        acc = moe32::add(acc, merge_probs.empty() ? v : moe32::mul(merge_probs[t * topk + j], v));
      }
      out[t * cols + c] = moe32::f32_to_bf16(acc);
    }
  return out;
}

}  // namespace fp8flow
