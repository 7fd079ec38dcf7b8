// MoE layer shapes, presets, seeded inputs and routing.
#include "formats/splitmix64.hpp"
#include "reference/moe_layer.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <numbers>
#include <numeric>

#include "formats/convert.hpp"
#include "io/errors.hpp"
#include "io/npy.hpp"

namespace fp8flow {

std::string_view to_string(ScoreFunction s) { return s == ScoreFunction::softmax ? "softmax" : "sigmoid"; }

std::string to_string(const MoeShape& s) {
  return fmt::format("tokens {} hidden {} ffn {} experts {} topk {} align {} score {}{}", s.tokens, s.hidden, s.ffn,
                     s.experts, s.topk, s.align, to_string(s.score), s.norm_topk ? " (normalised top-k)" : "");
}

void check_shape(const MoeShape& s) {
  auto need = [](bool ok, const char* field, std::size_t v, const char* what) {
    if (!ok) throw InputError(fmt::format("MoE shape: {} = {}: {}", field, v, what));
  };
  need(s.tokens > 0, "tokens", s.tokens, "expected > 0");
  need(s.hidden > 0, "hidden", s.hidden, "expected > 0");
  need(s.ffn > 0, "ffn", s.ffn, "expected > 0");
  need(s.experts > 0, "experts", s.experts, "expected > 0");
  need(s.topk > 0 && s.topk <= s.experts, "topk", s.topk, "expected 1..experts");
  need(s.align > 0, "align", s.align, "expected > 0");
}

MoeShape preset_shape(std::string_view name) {
  MoeShape s;
  if (name == "tiny") {
    s.tokens = 48, s.hidden = 256, s.ffn = 128, s.experts = 4, s.topk = 2;
  } else if (name == "quickstart") {
    s.tokens = 1024, s.hidden = 896, s.ffn = 256, s.experts = 32, s.topk = 8;
  } else if (name == "ds_v2_lite") {
    s.tokens = 4096, s.hidden = 2048, s.ffn = 1408, s.experts = 64, s.topk = 6;
  } else if (name == "ds_v3") {
    s.tokens = 4096, s.hidden = 7168, s.ffn = 2048, s.experts = 256, s.topk = 8;
  } else {
    throw InputError(fmt::format("unknown MoE preset '{}': expected one of {}", name, kPresetNames));
  }
  return s;
}

std::uint64_t moe_layer_bytes(const MoeShape& s, bool attribute) {
  // In long double: ds_v3's weights alone are ~10^10 values, and a TOML shape can be anything.
  const long double T = s.tokens, H = s.hidden, F = s.ffn, E = s.experts, K = s.topk;
  const long double W = 3 * E * F * H;                                // w1 [E, 2F, H] + w2 [E, H, F]
  const long double R = T * K + E * (s.align ? s.align - 1 : 0);      // routed rows, padding included
  const long double inputs = 8 * (2 * T * H + E * H + W);
  const long double env = 8 * (2 * W + R * (4 * H + 6 * F) + 4 * T * H + T * E);
  const long double total = 1.6L * (inputs + (attribute ? 3 : 2) * env) + (32u << 20);
  return total >= 1.8e19L ? UINT64_MAX : static_cast<std::uint64_t>(total);
}

namespace {

// splitmix64 (Steele, Lea, Flood 2014): the stream of one tensor.
struct SplitMix {
  std::uint64_t state;
  std::uint64_t next() { return splitmix64_next(state); }
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }  // [0, 1)
  double normal() {                                                          // Box-Muller, one value per call
    const double u1 = 1.0 - uniform(), u2 = uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * std::numbers::pi * u2);
  }
};

SplitMix stream(std::uint64_t seed, std::uint64_t tensor) { return SplitMix{seed * 0x100000001B3ull + tensor * 0x9E37ull}; }

std::vector<double> normal_tensor(std::size_t n, double sd, SplitMix rng) {
  std::vector<double> v(n);
  for (auto& e : v) e = sd * rng.normal();
  return v;
}

}  // namespace

MoeInputs make_inputs(const MoeShape& s, std::uint64_t seed) {
  check_shape(s);
  const std::size_t T = s.tokens, H = s.hidden, F = s.ffn, E = s.experts;
  MoeInputs in;
  // x: per-channel lognormal gains, 1 channel in 128 an outlier channel x64 (like real activations).
  SplitMix gr = stream(seed, 1);
  std::vector<double> gain(H);
  for (auto& g : gain) g = std::exp(0.5 * gr.normal());
  const std::size_t n_out = std::max<std::size_t>(1, H / 128);
  for (std::size_t i = 0; i < n_out; ++i) gain[gr.next() % H] *= 64.0;
  in.x = normal_tensor(T * H, 1.0, stream(seed, 2));
  for (std::size_t t = 0; t < T; ++t)
    for (std::size_t c = 0; c < H; ++c) in.x[t * H + c] *= gain[c];
  in.wr = normal_tensor(E * H, 1.0 / std::sqrt(double(H)), stream(seed, 3));
  in.w1 = normal_tensor(E * 2 * F * H, 1.0 / std::sqrt(double(H)), stream(seed, 4));
  in.w2 = normal_tensor(E * H * F, 1.0 / std::sqrt(double(F)), stream(seed, 5));
  in.dy = normal_tensor(T * H, 0x1.0p-12, stream(seed, 6));
  SplitMix tr = stream(seed, 7);
  for (std::size_t t = 0; t < T; ++t)
    if (tr.next() % 64 == 0)
      for (std::size_t c = 0; c < H; ++c) in.dy[t * H + c] *= 32.0;
  return in;
}

namespace {
std::vector<double> read_real(const std::string& file, std::vector<std::size_t> shape) {
  const io::NpyArray a = io::read_npy(file);
  if (a.shape != shape) {
    std::string want;
    for (auto d : shape) want += fmt::format("{}{}", want.empty() ? "" : ", ", d);
    throw InputError(fmt::format("{}: shape {}, expected ({})", file, a.shape_string(), want));
  }
  if (a.dtype == io::DType::f64) {
    auto v = a.view<double>();
    return {v.begin(), v.end()};
  }
  if (a.dtype == io::DType::f32) {
    auto v = a.view<float>();
    return {v.begin(), v.end()};
  }
  if (a.dtype == io::DType::bf16 || a.dtype == io::DType::f16) {  // ml_dtypes bfloat16 ('<V2') or numpy float16
    const FormatSpec& f = a.dtype == io::DType::bf16 ? bf16 : f16;
    auto v = a.view<std::uint16_t>();
    std::vector<double> out(v.size());
    for (std::size_t i = 0; i < v.size(); ++i) out[i] = decode_f32(f, v[i]);
    return out;
  }
  throw InputError(fmt::format("{}: dtype {}, expected float32, float64, float16 or bfloat16 (ml_dtypes)", file,
                               a.float8_codes() ? "'" + a.descr + "' (float8 codes)" : std::string(io::to_string(a.dtype))));
}
}  // namespace

MoeInputs load_inputs(const std::string& dir, MoeShape& s) {
  const io::NpyArray x = io::read_npy(dir + "/x.npy"), w1 = io::read_npy(dir + "/w1.npy");
  if (x.shape.size() != 2) throw InputError(fmt::format("{}/x.npy: expected [tokens, hidden]", dir));
  if (w1.shape.size() != 3 || w1.shape[1] % 2 != 0)
    throw InputError(fmt::format("{}/w1.npy: expected [experts, 2*ffn, hidden]", dir));
  s.tokens = x.shape[0], s.hidden = x.shape[1], s.experts = w1.shape[0], s.ffn = w1.shape[1] / 2;
  check_shape(s);
  MoeInputs in;
  in.x = read_real(dir + "/x.npy", {s.tokens, s.hidden});
  in.wr = read_real(dir + "/wr.npy", {s.experts, s.hidden});
  in.w1 = read_real(dir + "/w1.npy", {s.experts, 2 * s.ffn, s.hidden});
  in.w2 = read_real(dir + "/w2.npy", {s.experts, s.hidden, s.ffn});
  in.dy = read_real(dir + "/dy.npy", {s.tokens, s.hidden});
  return in;
}

namespace {
void layout_rows(Routing& r) {
  const std::size_t E = r.experts;
  r.padded.assign(E, 0);
  r.offset.assign(E, 0);
  for (std::size_t e = 0; e < E; ++e) {
    r.padded[e] = (r.valid[e] + r.align - 1) / r.align * r.align;
    if (e > 0) r.offset[e] = r.offset[e - 1] + r.padded[e - 1];
  }
}
}  // namespace

Routing make_routing(const std::vector<double>& scores, const MoeShape& s) {
  check_shape(s);
  Routing r;
  r.tokens = s.tokens, r.topk = s.topk, r.experts = s.experts, r.align = s.align;
  const std::size_t T = s.tokens, K = s.topk, E = s.experts;
  if (scores.size() != T * E) throw InputError("make_routing: scores must be [tokens, experts]");
  r.expert.resize(T * K);
  std::vector<int> idx(E);
  for (std::size_t t = 0; t < T; ++t) {
    std::iota(idx.begin(), idx.end(), 0);
    std::stable_sort(idx.begin(), idx.end(), [&](int a, int b) { return scores[t * E + a] > scores[t * E + b]; });
    for (std::size_t j = 0; j < K; ++j) r.expert[t * K + j] = idx[j];
  }
  r.valid.assign(E, 0);
  for (int e : r.expert) ++r.valid[static_cast<std::size_t>(e)];
  layout_rows(r);
  // Rows of an expert in token order (then slot order), as a stable permute kernel writes them.
  r.row.resize(T * K);
  r.row_copy.assign(r.rows(), -1);
  std::vector<std::size_t> next(r.offset);
  for (std::size_t c = 0; c < T * K; ++c) {
    const auto e = static_cast<std::size_t>(r.expert[c]);
    r.row[c] = next[e]++;
    r.row_copy[r.row[c]] = static_cast<long>(c);
  }
  return r;
}

Routing uniform_routing(const MoeShape& s) {
  check_shape(s);
  Routing r;
  r.tokens = s.tokens, r.topk = s.topk, r.experts = s.experts, r.align = s.align;
  const std::size_t copies = s.tokens * s.topk;
  r.valid.assign(s.experts, copies / s.experts);
  for (std::size_t e = 0; e < copies % s.experts; ++e) ++r.valid[e];
  layout_rows(r);
  return r;
}

}  // namespace fp8flow
