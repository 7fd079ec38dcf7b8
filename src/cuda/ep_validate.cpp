// Expert-parallel GPU path vs the CPU routing model and the fp8_flow dataflow (see ep_validate.hpp).
#include "cuda/ep_validate.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <bit>
#include <chrono>
#include <cstring>

#include "cuda/ep_dispatch.hpp"
#include "formats/batch.hpp"
#include "io/errors.hpp"
#include "reference/dataflow.hpp"
#include "reference/ep_routing.hpp"

namespace fp8flow::cuda {
namespace {

std::vector<std::uint16_t> bf16_bits(std::span<const double> v) {
  std::vector<std::uint16_t> out(v.size());
  encode(bf16, kRneNonsat, v, std::span<std::uint16_t>(out));  // the values are bf16 already: identity
  return out;
}
float bf16_value(std::uint16_t b) { return std::bit_cast<float>(std::uint32_t(b) << 16); }

// "row 17 (expert 3, token 5 slot 1)" or "(padding of expert 3)" for rank-local permuted rows.
struct RowNames {
  const Routing& r;
  std::size_t base, e0;
  std::string operator()(std::size_t row) const {
    const long c = r.row_copy[base + row];
    std::size_t e = e0;
    while (e + 1 < r.experts && r.offset[e + 1] <= base + row) ++e;
    if (c < 0) return fmt::format("row {} (padding of expert {})", row, e);
    return fmt::format("row {} (expert {}, token {} slot {})", row, e, std::size_t(c) / r.topk, std::size_t(c) % r.topk);
  }
};

template <class T, class Name, class Show>
BitCompare compare(std::string what, const std::vector<T>& cpu, const std::vector<T>& gpu, std::size_t cols,
                   Name name, Show show) {
  BitCompare b{std::move(what), std::max(cpu.size(), gpu.size()), 0, {}};
  if (cpu.size() != gpu.size()) {
    b.mismatches = b.compared;
    b.first_mismatch = fmt::format("sizes differ: cpu {} values, gpu {}", cpu.size(), gpu.size());
    return b;
  }
  for (std::size_t i = 0; i < cpu.size(); ++i) {
    if (std::memcmp(&cpu[i], &gpu[i], sizeof(T)) == 0) continue;
    if (b.mismatches++ == 0)
      b.first_mismatch = fmt::format("{} column {}: cpu {}, gpu {}", name(i / cols), i % cols, show(cpu[i]), show(gpu[i]));
  }
  return b;
}
std::string show_code(std::uint8_t v) { return fmt::format("0x{:02X}", v); }
std::string show_bf16(std::uint16_t v) { return fmt::format("0x{:04X} ({:.9g})", v, bf16_value(v)); }
std::string show_f32(float v) { return fmt::format("0x{:08X} ({:.9g})", std::bit_cast<std::uint32_t>(v), v); }
std::string show_u32(std::uint32_t v) { return fmt::format("{}", v); }
std::string show_size(std::size_t v) { return fmt::format("{}", v); }

template <class T>
std::vector<T> slice(const std::vector<T>& v, std::size_t row0, std::size_t rows, std::size_t cols) {
  return std::vector<T>(v.begin() + long(row0 * cols), v.begin() + long((row0 + rows) * cols));
}
std::vector<float> to_f32(std::span<const double> v) { return {v.begin(), v.end()}; }

}  // namespace

bool EpValidationResult::ok() const {
  return std::all_of(parts.begin(), parts.end(), [](const GpuValidation& v) { return v.ok(); });
}

EpValidationResult validate_ep_dispatch_gpu(const EpValidationOptions& o) {
  const MoeShape& s = o.shape;
  check_shape(s);
  const int R = o.ranks;
  const std::size_t T = s.tokens, H = s.hidden, F = s.ffn, K = s.topk;
  EpValidationResult res;

  // ---- CPU: the fp8_flow dataflow on one process, and the routing model.
  const auto c0 = std::chrono::steady_clock::now();
  const MoeInputs in = make_inputs(s, o.seed);
  const auto logits = moe::matmul_nt(in.x, in.wr, T, s.experts, H);
  const Context ctx{s, make_routing(moe::scores(logits, T, s.experts, s.score), s)};
  Env env = make_env(s, &in);
  ExecOptions eo;
  eo.threads = o.threads;
  execute(fp8_flow_ep_part(), ctx, env, eo);
  const EpPlan plan = plan_ep(ctx.routing, std::size_t(R));
  res.cpu_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - c0).count();
  const Routing& rt = ctx.routing;
  const QuantizedTensor &w1q = *env.at("w1.q").q, &w2q = *env.at("w2.q").q;
  const std::vector<std::uint16_t> x_bits = bf16_bits(env.at("x").v), dy_bits = bf16_bits(env.at("dy").v);
  const std::vector<float> probs = to_f32(env.at("probs").v);

  // ---- GPU.
  const auto g0 = std::chrono::steady_clock::now();
  EpShape es{T, H, s.experts, K, s.align, F, R};
  EpRuntime ep(es);
  res.nccl = EpRuntime::nccl_version();
  for (int r = 0; r < R; ++r) res.gpus.push_back(ep.device_name(r));
  const auto cdiv = [](std::size_t a, std::size_t b) { return (a + b - 1) / b; };
  for (int p = 0; p < R; ++p) {
    const std::size_t t0 = ep.token_begin(p), tn = ep.token_count(p);
    std::vector<std::int32_t> ex(rt.expert.begin() + long(t0 * K), rt.expert.begin() + long((t0 + tn) * K));
    ep.set_routing(p, ex, std::span<const float>(probs).subspan(t0 * K, tn * K));
    ep.set_tokens(p, std::span<const std::uint16_t>(x_bits).subspan(t0 * H, tn * H));
    const std::size_t e0 = ep.expert_begin(p), en = ep.expert_count(p);
    const std::size_t w1t = cdiv(2 * F, 128), w2t = cdiv(H, 128);
    ep.set_weights(p, std::span<const std::uint8_t>(w1q.codes).subspan(e0 * 2 * F * H, en * 2 * F * H),
                   std::span<const float>(w1q.scale_inv).subspan(e0 * w1t * w1q.scale_cols, en * w1t * w1q.scale_cols),
                   std::span<const std::uint8_t>(w2q.codes).subspan(e0 * H * F, en * H * F),
                   std::span<const float>(w2q.scale_inv).subspan(e0 * w2t * w2q.scale_cols, en * w2t * w2q.scale_cols));
  }
  ep.dispatch(EpPayload::bf16);
  const auto nR = static_cast<std::size_t>(R);
  std::vector<EpRankOutput> bf(nR), f8(nR), dd(nR);
  for (int q = 0; q < R; ++q) bf[std::size_t(q)] = ep.read(q, false);
  ep.dispatch(EpPayload::fp8);
  ep.expert_forward();
  ep.combine();
  for (int q = 0; q < R; ++q) f8[std::size_t(q)] = ep.read(q, true);
  for (int p = 0; p < R; ++p)
    ep.set_tokens(p, std::span<const std::uint16_t>(dy_bits).subspan(ep.token_begin(p) * H, ep.token_count(p) * H));
  ep.dispatch(EpPayload::fp8);
  for (int q = 0; q < R; ++q) dd[std::size_t(q)] = ep.read(q, false);
  res.gpu_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - g0).count();

  // ---- Compare, rank by rank, with the slices of the single-process tensors.
  const std::vector<double> xp_bf16 = moe::permute_pad(env.at("x").v, H, rt);
  const std::vector<std::uint16_t> xp_bf16_bits = bf16_bits(xp_bf16);
  const Tensor &xp = env.at("xp"), &prow = env.at("prow"), &h = env.at("h"), &act = env.at("act"), &ot = env.at("o"),
               &y = env.at("y"), &dout = env.at("dout");
  const std::vector<std::uint16_t> h_bits = bf16_bits(h.v), o_bits = bf16_bits(ot.v), y_bits = bf16_bits(y.v);
  const std::vector<float> prow_f = to_f32(prow.v);
  for (int q = 0; q < R; ++q) {
    const EpLocal& L = plan.local[std::size_t(q)];
    const EpRankOutput &B = bf[std::size_t(q)], &G = f8[std::size_t(q)], &D = dd[std::size_t(q)];
    const std::size_t e0 = plan.part.expert_begin(std::size_t(q)), base = rt.offset[e0], rows = L.rows;
    const RowNames name{rt, base, e0};
    const auto recv_name = [&](std::size_t i) { return fmt::format("received row {}", i); };
    const auto expert_name = [&](std::size_t i) { return fmt::format("local expert {} (expert {})", i, e0 + i); };
    GpuValidation v;
    v.op = fmt::format("ep_dispatch_combine rank {} of {}", q, R);
    v.input = fmt::format("moe inputs seed {}", o.seed);
    v.rows = rows, v.cols = H;
    v.groups = L.padded;
    v.oracle = "ep_routing model + fp8_flow dataflow";
    v.parts.push_back(compare("received token ids (fp8 dispatch)", L.recv_token, G.recv_token, 1, recv_name, show_u32));
    v.parts.push_back(compare("received token ids (bf16 dispatch)", L.recv_token, B.recv_token, 1, recv_name, show_u32));
    v.parts.push_back(compare("rows per expert (valid)", L.valid, G.valid, 1, expert_name, show_size));
    v.parts.push_back(compare("rows per expert (padded)", L.padded, G.padded, 1, expert_name, show_size));
    v.parts.push_back(compare("bf16 dispatch xp", slice(xp_bf16_bits, base, rows, H), B.bf16_rows, H, name, show_bf16));
    v.parts.push_back(compare("fp8 dispatch xp codes", slice(xp.q->codes, base, rows, H), G.codes, H, name, show_code));
    v.parts.push_back(compare("fp8 dispatch xp scale_inv", slice(xp.q->scale_inv, base, rows, xp.q->scale_cols),
                              G.scale_inv, xp.q->scale_cols, name, show_f32));
    v.parts.push_back(compare("prow (dispatched probs)", slice(prow_f, base, rows, 1), G.prow, 1, name, show_f32));
    v.parts.push_back(compare("h = FC1 (bf16)", slice(h_bits, base, rows, 2 * F), G.h, 2 * F, name, show_bf16));
    v.parts.push_back(compare("act codes (SwiGLU + quant)", slice(act.q->codes, base, rows, F), G.act_codes, F, name,
                              show_code));
    v.parts.push_back(compare("act scale_inv", slice(act.q->scale_inv, base, rows, act.q->scale_cols), G.act_scale_inv,
                              act.q->scale_cols, name, show_f32));
    v.parts.push_back(compare("o = FC2 (bf16)", slice(o_bits, base, rows, H), G.o, H, name, show_bf16));
    const std::size_t t0 = plan.part.token_begin(std::size_t(q)), tn = plan.part.token_count(std::size_t(q));
    v.parts.push_back(compare("y = combine (bf16, home rank)", slice(y_bits, t0, tn, H), G.y, H,
                              [&](std::size_t i) { return fmt::format("token {}", t0 + i); }, show_bf16));
    v.parts.push_back(compare("dout codes (combine-backward dispatch)", slice(dout.q->codes, base, rows, H), D.codes, H,
                              name, show_code));
    v.parts.push_back(compare("dout scale_inv", slice(dout.q->scale_inv, base, rows, dout.q->scale_cols), D.scale_inv,
                              dout.q->scale_cols, name, show_f32));
    v.cpu_ms = res.cpu_ms;
    v.gpu_ms = res.gpu_ms;
    res.parts.push_back(std::move(v));
  }
  return res;
}

}  // namespace fp8flow::cuda
