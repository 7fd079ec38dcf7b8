// The training simulation: model, data, AdamW, the MoE layer through the dataflow executor, and the
// logs of reference/train.hpp. docs/training.md describes the model and what is logged.
#include "reference/train.hpp"

#include <fmt/format.h>

#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <numbers>
#include <numeric>

#include "formats/format_spec.hpp"
#include "formats/splitmix64.hpp"
#include "io/errors.hpp"
#include "reference/dataflow.hpp"
#include "reference/moe_layer.hpp"
#include "reference/train_model.hpp"

namespace fp8flow::train {

namespace fs = std::filesystem;

// ---- Presets and checks ------------------------------------------------------------------------------

TrainConfig preset_config(std::string_view name) {
  TrainConfig c;
  c.preset = std::string(name);
  if (name == "tiny") {
    // hidden = ffn = 128: one 1x128 tile per row and 128x128 weight blocks, so every FP8 cast of the
    // paper's recipes is exercised at its real granularity.
    c.hidden = 128, c.ffn = 128, c.experts = 4, c.topk = 2, c.layers = 2, c.seq = 64, c.batch = 4;
    c.align = 32;
    c.steps = 200, c.lr = 3e-3, c.sample_every = 50;
  } else if (name == "quickstart") {
    c.hidden = 128, c.ffn = 128, c.experts = 4, c.topk = 2, c.layers = 2, c.seq = 64, c.batch = 2;
    c.align = 32;
    c.steps = 60, c.lr = 3e-3, c.sample_every = 30;
  } else if (name == "small") {
    c.hidden = 256, c.ffn = 256, c.experts = 8, c.topk = 2, c.layers = 4, c.seq = 128, c.batch = 8;
    c.align = 128;
    c.steps = 1000, c.lr = 2e-3, c.sample_every = 100;
  } else {
    throw InputError(fmt::format("unknown training preset '{}': expected one of {}", name, kTrainPresetNames));
  }
  return c;
}

void check_config(const TrainConfig& c) {
  auto need = [](bool ok, const char* field, auto v, const char* what) {
    if (!ok) throw InputError(fmt::format("training config: {} = {}: expected {}", field, v, what));
  };
  need(c.steps > 0, "steps", c.steps, "> 0");
  need(c.hidden > 0, "hidden", c.hidden, "> 0");
  need(c.ffn > 0, "ffn", c.ffn, "> 0");
  need(c.experts > 0, "experts", c.experts, "> 0");
  need(c.topk > 0 && c.topk <= c.experts, "topk", c.topk, "1..experts");
  need(c.layers > 0, "layers", c.layers, "> 0");
  need(c.seq > 1, "seq", c.seq, "> 1");
  need(c.batch > 0, "batch", c.batch, "> 0");
  need(c.conv_width > 0, "conv_width", c.conv_width, "> 0");
  need(c.align > 0, "align", c.align, "> 0");
  need(c.vocab == 256, "vocab", c.vocab, "256 (byte-level tokens)");
  need(c.lr > 0 && std::isfinite(c.lr), "lr", c.lr, "a finite number > 0");
  need(c.sample_every >= 0, "sample_every", c.sample_every, ">= 0");
  builtin_dataflow(c.dataflow);  // throws naming the dataflow
  if (c.transpose != TransposeMethod::paper_kernel && c.transpose != TransposeMethod::exact)
    throw InputError(fmt::format("training config: transpose = {}: expected paper_kernel or exact", to_string(c.transpose)));
}

// ---- Corpus ------------------------------------------------------------------------------------------

std::string resolve_corpus(const std::string& path) {
  const fs::path p(path);
  if (p.is_absolute() || fs::exists(p)) return path;
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec)
    for (fs::path dir = exe.parent_path(); !dir.empty(); dir = dir.parent_path()) {
      if (fs::exists(dir / p)) return (dir / p).string();
      if (dir == dir.root_path()) break;
    }
  return path;  // load_corpus names it in its error
}

std::vector<std::uint8_t> load_corpus(const std::string& path, std::size_t min_bytes) {
  const std::string file = resolve_corpus(path);
  std::error_code ec;
  const fs::file_status st = fs::status(file, ec);
  if (ec || !fs::exists(st))
    throw InputError(fmt::format("corpus {}: cannot open (relative paths are looked up in the working directory, "
                                 "then above the executable; the shipped corpus is data/cmake-manuals.txt)",
                                 path));
  // A directory, /dev/zero or a FIFO has no size to check and could be read forever: a corpus is a file.
  if (!fs::is_regular_file(st))
    throw InputError(fmt::format("corpus {}: {}, expected a regular text file", file,
                                 fs::is_directory(st) ? "is a directory" : "not a regular file (a device or pipe)"));
  const std::uintmax_t size = fs::file_size(file, ec);
  if (ec) throw InputError(fmt::format("corpus {}: cannot read its size: {}", file, ec.message()));
  if (size > kMaxCorpusBytes)
    throw InputError(fmt::format("corpus {}: {} bytes, more than the {} MiB a training corpus may have (a byte-level "
                                 "model samples windows of it; cut it down)",
                                 file, size, kMaxCorpusBytes >> 20));
  std::ifstream in(file, std::ios::binary);
  if (!in) throw InputError(fmt::format("corpus {}: cannot open: {}", file, std::strerror(errno)));
  std::vector<std::uint8_t> bytes(static_cast<std::size_t>(size));
  if (size && !in.read(reinterpret_cast<char*>(bytes.data()), std::streamsize(size)))
    throw InputError(fmt::format("corpus {}: read error after {} of {} bytes", file, in.gcount(), size));
  if (bytes.size() < min_bytes)
    throw InputError(fmt::format("corpus {}: {} bytes, expected at least {} (two sequences)", file, bytes.size(), min_bytes));
  return bytes;
}

std::uint64_t train_bytes(const TrainConfig& c, std::uint64_t corpus_bytes) {
  const long double L = c.layers, E = c.experts, K = c.topk, H = c.hidden, F = c.ffn, V = c.vocab;
  const long double tokens = (long double)c.seq * c.batch;
  // Parameters: embedding + unembedding, per layer the experts (w1 [2F, H], w2 [H, F]), router and mixer.
  const long double params = 2 * V * H + L * (E * 3 * F * H + E * H + c.conv_width * H + 4 * H);
  // float64 weights, gradients, both AdamW moments, the dataflow's low-precision copies: ~8 copies.
  const long double weights = 8 * 8 * params;
  // Activations kept for the backward pass, per layer: the routed rows (padding included) through the experts.
  const long double rows = tokens * K + E * (c.align ? c.align - 1 : 0);
  const long double acts = 8 * L * (tokens * (8 * H + E) + rows * (3 * H + 6 * F)) + 8 * tokens * V * 3;
  // The golden fp64 layer of sampled steps holds one more layer's worth.
  MoeShape s;
  s.tokens = static_cast<std::size_t>(tokens), s.hidden = c.hidden, s.ffn = c.ffn, s.experts = c.experts,
  s.topk = c.topk, s.align = c.align;
  const long double golden = c.sample_every != 0 ? (long double)moe_layer_bytes(s) : 0;
  const long double total = 1.5L * (weights + acts) + golden + corpus_bytes + (64u << 20);
  return total >= 1.8e19L ? UINT64_MAX : static_cast<std::uint64_t>(total);
}

// ---- Statistics --------------------------------------------------------------------------------------

double tail_mean_loss(std::span<const double> loss) {
  if (loss.empty()) return std::numeric_limits<double>::quiet_NaN();
  const std::size_t n = std::max<std::size_t>(1, (loss.size() + 9) / 10);
  double s = 0;
  for (std::size_t i = loss.size() - n; i < loss.size(); ++i) s += loss[i];
  return s / double(n);
}

// ---- The model ---------------------------------------------------------------------------------------
namespace model {

namespace {
struct Rng {
  std::uint64_t state;
  std::uint64_t next() { return splitmix64_next(state); }
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
  double normal() {  // Box-Muller, one value per call
    const double u1 = 1.0 - uniform(), u2 = uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * std::numbers::pi * u2);
  }
};
Rng stream(std::uint64_t seed, std::uint64_t a, std::uint64_t b = 0) {
  Rng r{seed * 0xD1B54A32D192ED03ull ^ (a + 1) * 0x9E3779B97F4A7C15ull ^ (b + 1) * 0xBF58476D1CE4E5B9ull};
  r.next();
  return r;
}
}  // namespace

std::vector<ParamInfo> param_layout(const TrainConfig& c) {
  const std::size_t V = c.vocab, H = c.hidden, F = c.ffn, E = c.experts;
  std::vector<ParamInfo> p{{"emb", V, H, false}, {"wout", V, H, true}};
  for (std::size_t l = 0; l < c.layers; ++l) {
    p.push_back({fmt::format("l{}.conv", l), c.conv_width, H, false});
    p.push_back({fmt::format("l{}.wm", l), H, H, true});
    p.push_back({fmt::format("l{}.wr", l), E, H, true});
    p.push_back({fmt::format("l{}.w1", l), E * 2 * F, H, true});
    p.push_back({fmt::format("l{}.w2", l), E * H, F, true});
  }
  return p;
}

Params init_params(const TrainConfig& c) {
  const auto layout = param_layout(c);
  const double H = double(c.hidden), F = double(c.ffn), depth = std::sqrt(2.0 * double(c.layers));
  Params p(layout.size());
  for (std::size_t i = 0; i < layout.size(); ++i) {
    const ParamInfo& info = layout[i];
    double sd = 1.0 / std::sqrt(H);
    if (info.name == "emb") sd = 1.0;
    else if (info.name.ends_with(".conv")) sd = 1.0 / std::sqrt(double(c.conv_width));
    else if (info.name.ends_with(".wm")) sd = 1.0 / std::sqrt(H) / depth;
    else if (info.name.ends_with(".w2")) sd = 1.0 / std::sqrt(F) / depth;
    else if (info.name == "wout") sd = 0.25 / std::sqrt(H);  // logits ~ N(0, 1/16): initial loss ~ ln 256
    Rng r = stream(c.seed, 1000 + i);
    p[i].resize(info.rows * info.cols);
    for (auto& v : p[i]) v = static_cast<float>(sd * r.normal());
  }
  return p;
}

Batch make_batch(const TrainConfig& c, std::span<const std::uint8_t> corpus, int step) {
  Batch b;
  b.tokens.resize(c.batch * c.seq);
  b.targets.resize(c.batch * c.seq);
  Rng r = stream(c.seed, 7, std::uint64_t(step));
  const std::size_t span = corpus.size() - c.seq - 1;
  for (std::size_t s = 0; s < c.batch; ++s) {
    const std::size_t start = std::size_t(r.next() % (span + 1));
    for (std::size_t t = 0; t < c.seq; ++t) {
      b.tokens[s * c.seq + t] = corpus[start + t];
      b.targets[s * c.seq + t] = corpus[start + t + 1];
    }
  }
  return b;
}

namespace {

using Mat = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using MapC = Eigen::Map<const Mat>;
using MapM = Eigen::Map<Mat>;
constexpr double kNormEps = 1e-6;

// out[T, N] = a[T, K] . w[N, K]^T
std::vector<double> linear(const std::vector<double>& a, const std::vector<double>& w, std::size_t T, std::size_t N,
                           std::size_t K) {
  std::vector<double> out(T * N);
  MapM(out.data(), long(T), long(N)).noalias() = MapC(a.data(), long(T), long(K)) * MapC(w.data(), long(N), long(K)).transpose();
  return out;
}
// da[T, K] = dout[T, N] . w[N, K];  dw[N, K] += dout^T . a
void linear_backward(const std::vector<double>& dout, const std::vector<double>& a, const std::vector<double>& w,
                     std::size_t T, std::size_t N, std::size_t K, std::vector<double>& da, std::vector<double>& dw) {
  da.assign(T * K, 0.0);
  MapM(da.data(), long(T), long(K)).noalias() = MapC(dout.data(), long(T), long(N)) * MapC(w.data(), long(N), long(K));
  MapM(dw.data(), long(N), long(K)).noalias() += MapC(dout.data(), long(T), long(N)).transpose() * MapC(a.data(), long(T), long(K));
}

// u = x / sqrt(mean(x^2) + eps) per row; r = 1 / sqrt(...) kept for the backward.
void rmsnorm(const std::vector<double>& x, std::size_t T, std::size_t H, std::vector<double>& u, std::vector<double>& r) {
  u.resize(T * H);
  r.resize(T);
  for (std::size_t t = 0; t < T; ++t) {
    double ss = 0;
    for (std::size_t c = 0; c < H; ++c) ss += x[t * H + c] * x[t * H + c];
    r[t] = 1.0 / std::sqrt(ss / double(H) + kNormEps);
    for (std::size_t c = 0; c < H; ++c) u[t * H + c] = x[t * H + c] * r[t];
  }
}
// dx += r (du - u mean(du . u))
void rmsnorm_backward(const std::vector<double>& du, const std::vector<double>& u, const std::vector<double>& r,
                      std::size_t T, std::size_t H, std::vector<double>& dx) {
  for (std::size_t t = 0; t < T; ++t) {
    double dot = 0;
    for (std::size_t c = 0; c < H; ++c) dot += du[t * H + c] * u[t * H + c];
    dot /= double(H);
    for (std::size_t c = 0; c < H; ++c) dx[t * H + c] += r[t] * (du[t * H + c] - u[t * H + c] * dot);
  }
}

std::vector<double> to_double(const std::vector<float>& v) { return {v.begin(), v.end()}; }

}  // namespace

// The layer's MoE: forward steps of the graph, then (after dy is known) its backward steps, on one Env.
struct MoeRunner::Layer {
  Context ctx;
  Env env;
};

MoeRunner::MoeRunner(const TrainConfig& c, std::size_t tokens)
    : dataflow_(training_order(with_overrides(builtin_dataflow(c.dataflow), [&] {
        ExecOptions o;
        o.transpose = c.transpose;
        o.gemm_config = c.gemm_config;
        return o;
      }()), split_)),
      threads_(c.threads) {
  shape_.tokens = tokens, shape_.hidden = c.hidden, shape_.ffn = c.ffn, shape_.experts = c.experts;
  shape_.topk = c.topk, shape_.align = c.align;
  check_shape(shape_);
  layers_.resize(c.layers);
}
MoeRunner::~MoeRunner() = default;
MoeRunner::MoeRunner(MoeRunner&&) noexcept = default;

Dataflow training_order(const Dataflow& df, std::size_t& split) {
  auto backward = [](const Step& s) {
    if (s.phase == Phase::bwd) return true;
    return std::any_of(s.in.begin(), s.in.end(), [](const std::string& n) { return n == "dy"; });
  };
  Dataflow out = df;
  out.steps.clear();
  for (const Step& s : df.steps)
    if (!backward(s)) out.steps.push_back(s);
  split = out.steps.size();
  for (const Step& s : df.steps)
    if (backward(s)) out.steps.push_back(s);
  check_dataflow(out);  // the forward part must not need anything made from dy
  for (std::size_t i = 0; i < split; ++i)
    for (const auto& o : out.steps[i].out)
      if (o == "dy") throw InputError(fmt::format("dataflow {}: a forward step writes dy", df.name));
  return out;
}

Env layer_env(const MoeShape& s, const std::vector<double>& x, const std::vector<double>& wr,
              const std::vector<double>& w1, const std::vector<double>& w2) {
  Env env = make_env(s, nullptr);
  env["x"].v = x;
  env["wr"].v = wr;
  env["w1"].v = w1;
  env["w2"].v = w2;
  env["dy"].v.assign(s.tokens * s.hidden, 0.0);
  return env;
}

Routing fp64_routing(const MoeShape& s, const std::vector<double>& x, const std::vector<double>& wr) {
  const auto logits = linear(x, wr, s.tokens, s.experts, s.hidden);
  return make_routing(moe::scores(logits, s.tokens, s.experts, s.score), s);
}

std::vector<double> MoeRunner::forward(std::size_t l, const std::vector<double>& x, const std::vector<double>& wr,
                                       const std::vector<double>& w1, const std::vector<double>& w2,
                                       const Observer& obs) {
  Layer& L = layers_[l];
  L.ctx = Context{shape_, fp64_routing(shape_, x, wr)};
  L.env = layer_env(shape_, x, wr, w1, w2);
  ExecOptions o;
  o.threads = threads_;
  o.end_step = split_;
  if (obs) {
    o.before_step = [&](std::size_t i, const Env& e) { obs(l, dataflow_.steps[i], e, true); };
    o.after_step = [&](std::size_t i, const Env& e) { obs(l, dataflow_.steps[i], e, false); };
  }
  execute(dataflow_, L.ctx, L.env, o);
  return L.env.at("y").v;
}

void MoeRunner::backward(std::size_t l, const std::vector<double>& dy, const Observer& obs) {
  Layer& L = layers_[l];
  L.env["dy"].v = dy;
  ExecOptions o;
  o.threads = threads_;
  o.first_step = split_;
  if (obs) {
    o.before_step = [&](std::size_t i, const Env& e) { obs(l, dataflow_.steps[i], e, true); };
    o.after_step = [&](std::size_t i, const Env& e) { obs(l, dataflow_.steps[i], e, false); };
  }
  execute(dataflow_, L.ctx, L.env, o);
}

const Env& MoeRunner::env(std::size_t l) const { return layers_[l].env; }
const Context& MoeRunner::context(std::size_t l) const { return layers_[l].ctx; }

double loss_and_grad(const TrainConfig& c, const std::vector<std::vector<double>>& w, const Batch& b, MoeRunner& moe,
                     std::vector<std::vector<double>>* grads, const Hooks& hooks) {
  const std::size_t V = c.vocab, H = c.hidden, T = b.tokens.size(), S = c.seq, Kc = c.conv_width;
  const std::size_t L = c.layers;
  auto idx = [](std::size_t l, std::size_t k) { return 2 + 5 * l + k; };  // k: conv, wm, wr, w1, w2
  // ---- forward
  struct Saved {
    std::vector<double> u, ru, cmix, v, rv;
  };
  std::vector<Saved> sv(L);
  std::vector<double> x(T * H);
  for (std::size_t t = 0; t < T; ++t)
    std::copy_n(w[0].begin() + std::ptrdiff_t(b.tokens[t] * H), H, x.begin() + std::ptrdiff_t(t * H));
  for (std::size_t l = 0; l < L; ++l) {
    Saved& s = sv[l];
    rmsnorm(x, T, H, s.u, s.ru);
    const std::vector<double>& conv = w[idx(l, 0)];
    s.cmix.assign(T * H, 0.0);
    for (std::size_t t = 0; t < T; ++t) {
      const std::size_t pos = t % S;  // position in its sequence: no mixing across sequences
      for (std::size_t j = 0; j < Kc && j <= pos; ++j)
        for (std::size_t ch = 0; ch < H; ++ch) s.cmix[t * H + ch] += conv[j * H + ch] * s.u[(t - j) * H + ch];
    }
    const std::vector<double> m = linear(s.cmix, w[idx(l, 1)], T, H, H);
    for (std::size_t i = 0; i < T * H; ++i) x[i] += m[i];
    rmsnorm(x, T, H, s.v, s.rv);
    const std::vector<double> y = moe.forward(l, s.v, w[idx(l, 2)], w[idx(l, 3)], w[idx(l, 4)], hooks.observer);
    for (std::size_t i = 0; i < T * H; ++i) x[i] += y[i];
  }
  std::vector<double> z, rz;
  rmsnorm(x, T, H, z, rz);
  std::vector<double> logits = linear(z, w[1], T, V, H);
  double loss = 0;
  for (std::size_t t = 0; t < T; ++t) {  // softmax cross-entropy; logits become dlogits
    double* row = logits.data() + t * V;
    const double mx = *std::max_element(row, row + V);
    double sum = 0;
    for (std::size_t k = 0; k < V; ++k) sum += std::exp(row[k] - mx);
    loss += std::log(sum) + mx - row[b.targets[t]];
    for (std::size_t k = 0; k < V; ++k) row[k] = std::exp(row[k] - mx) / sum / double(T);
    row[b.targets[t]] -= 1.0 / double(T);
  }
  loss /= double(T);
  if (!grads) return loss;
  // ---- backward
  auto& g = *grads;
  g.resize(w.size());
  for (std::size_t i = 0; i < w.size(); ++i) g[i].assign(w[i].size(), 0.0);
  std::vector<double> dz;
  linear_backward(logits, z, w[1], T, V, H, dz, g[1]);
  std::vector<double> dx(T * H, 0.0);
  rmsnorm_backward(dz, z, rz, T, H, dx);
  for (std::size_t l = L; l-- > 0;) {
    Saved& s = sv[l];
    moe.backward(l, dx, hooks.observer);  // dy of the MoE = dL/dx of the residual stream
    if (hooks.after_backward) hooks.after_backward(l, s.v, w[idx(l, 2)], w[idx(l, 3)], w[idx(l, 4)], dx);
    const Env& env = moe.env(l);
    g[idx(l, 2)] = env.at("dwr").v;
    g[idx(l, 3)] = env.at("dw1").v;
    g[idx(l, 4)] = env.at("dw2").v;
    rmsnorm_backward(env.at("dx").v, s.v, s.rv, T, H, dx);
    std::vector<double> dc;
    linear_backward(dx, s.cmix, w[idx(l, 1)], T, H, H, dc, g[idx(l, 1)]);
    const std::vector<double>& conv = w[idx(l, 0)];
    std::vector<double>& dconv = g[idx(l, 0)];
    std::vector<double> du(T * H, 0.0);
    for (std::size_t t = 0; t < T; ++t) {
      const std::size_t pos = t % S;
      for (std::size_t j = 0; j < Kc && j <= pos; ++j)
        for (std::size_t ch = 0; ch < H; ++ch) {
          dconv[j * H + ch] += dc[t * H + ch] * s.u[(t - j) * H + ch];
          du[(t - j) * H + ch] += conv[j * H + ch] * dc[t * H + ch];
        }
    }
    rmsnorm_backward(du, s.u, s.ru, T, H, dx);
  }
  for (std::size_t t = 0; t < T; ++t)
    for (std::size_t ch = 0; ch < H; ++ch) g[0][b.tokens[t] * H + ch] += dx[t * H + ch];
  return loss;
}

std::vector<std::vector<double>> to_compute(const Params& p) {
  std::vector<std::vector<double>> w;
  w.reserve(p.size());
  for (const auto& v : p) w.push_back(to_double(v));
  return w;
}

}  // namespace model

// ---- Logging helpers ---------------------------------------------------------------------------------
namespace {

struct ErrorStat {
  double sqnr_db, rel_err;
};
// SQNR and relative L2 error of `test` against `truth` over [begin, end).
ErrorStat error_stat(const std::vector<double>& truth, const std::vector<double>& test, std::size_t begin,
                     std::size_t end) {
  double sig = 0, err = 0;
  for (std::size_t i = begin; i < end; ++i) {
    sig += truth[i] * truth[i];
    const double d = test[i] - truth[i];
    err += d * d;
  }
  if (err == 0) return {std::numeric_limits<double>::infinity(), 0.0};
  if (sig == 0) return {-std::numeric_limits<double>::infinity(), std::numeric_limits<double>::infinity()};
  return {10.0 * std::log10(sig / err), std::sqrt(err / sig)};
}

// A cast step that writes an fp8 tensor (quantize, scaling-aware/naive transpose, fused SwiGLU quant).
bool fp8_cast(const Step& s) { return is_cast(s) && s.op != Op::round && s.op != Op::dequantize && s.prec == Precision::fp8; }

// The values a cast step quantizes (before it runs).
std::vector<double> cast_input(const Step& s, const Env& env) {
  auto vals = [&](std::size_t i) -> const std::vector<double>& { return env.at(s.in[i]).v; };
  auto fp32 = [](std::vector<double> v) {
    for (auto& e : v) e = double(float(e));
    return v;
  };
  if (s.op == Op::swiglu_fwd) {  // the fused kernel's fp32 output before its quantization
    const Tensor& h = env.at(s.in[0]);
    return fp32(moe::swiglu_forward(h.v, vals(1), h.rows, h.cols / 2));
  }
  if (s.op == Op::swiglu_bwd) {
    const Tensor& h = env.at(s.in[1]);
    std::vector<double> dh, dw;
    moe::swiglu_backward(vals(0), h.v, vals(2), h.rows, h.cols / 2, dh, dw);
    return fp32(std::move(dh));
  }
  return vals(0);
}

CastLog cast_stats(int step, int layer, const std::string& name, const std::vector<double>& in, const Tensor& out) {
  CastLog c{step, layer, name, 0, 0, 0, 0, 0, 0};
  const QuantizedTensor& q = *out.q;
  c.n = std::int64_t(q.codes.size());
  std::size_t nonzero = 0, under = 0;
  for (std::size_t i = 0; i < in.size() && i < out.v.size(); ++i)
    if (in[i] != 0) {
      ++nonzero;
      under += out.v[i] == 0;
    }
  c.underflow_frac = nonzero ? double(under) / double(nonzero) : 0.0;
  const FormatSpec& f = *q.recipe.payload;
  std::size_t sat = 0;
  for (std::uint8_t code : q.codes)
    sat += (code & magnitude_mask(f)) == max_code(f) || is_nan_code(f, code) || is_inf_code(f, code);
  c.saturation_frac = c.n ? double(sat) / double(c.n) : 0.0;
  double lo = std::numeric_limits<double>::infinity(), hi = -lo, sum = 0;
  std::size_t ns = 0;
  for (float s : q.scale_inv)
    if (s > 0 && std::isfinite(s)) {  // padding rows carry scale 0: not a scale of the data
      const double e = std::log2(double(s));
      lo = std::min(lo, e), hi = std::max(hi, e), sum += e, ++ns;
    }
  const double nan = std::numeric_limits<double>::quiet_NaN();
  c.scale_log2_min = ns ? lo : nan;
  c.scale_log2_max = ns ? hi : nan;
  c.scale_log2_mean = ns ? sum / double(ns) : nan;
  return c;
}

double lr_at(const TrainConfig& c, int step) {
  const double warm = std::max(1.0, std::floor(c.warmup_frac * c.steps));
  if (step < warm) return c.lr * (step + 1) / warm;
  const double p = c.steps > warm ? (step - warm) / std::max(1.0, c.steps - warm) : 1.0;
  return c.lr * (c.lr_min_frac + (1 - c.lr_min_frac) * 0.5 * (1 + std::cos(std::numbers::pi * p)));
}

}  // namespace

// ---- Training ----------------------------------------------------------------------------------------

TrainResult train(const TrainConfig& c, const std::function<void(int)>& on_step) {
  check_config(c);
  TrainResult res;
  res.corpus_path = resolve_corpus(c.corpus);
  const std::vector<std::uint8_t> corpus = load_corpus(c.corpus, 2 * (c.seq + 1));
  res.corpus_bytes = corpus.size();
  const auto layout = model::param_layout(c);
  model::Params master = model::init_params(c);
  for (const auto& p : master) res.parameters += p.size();
  model::Params m1(master.size()), m2(master.size());  // AdamW moments (fp32)
  for (std::size_t i = 0; i < master.size(); ++i) m1[i].assign(master[i].size(), 0.0f), m2[i].assign(master[i].size(), 0.0f);

  const std::size_t T = c.batch * c.seq;
  model::MoeRunner moe(c, T);
  const Dataflow golden_df = builtin_dataflow("fp64");
  std::vector<double> losses;
  std::vector<std::vector<double>> grads;

  for (int step = 0; step < c.steps; ++step) {
    const bool sampled = c.sample_every > 0 && (step % c.sample_every == 0 || step == c.steps - 1);
    const model::Batch batch = model::make_batch(c, corpus, step);
    const std::vector<std::vector<double>> w = model::to_compute(master);
    model::Hooks hooks;
    std::vector<double> pending_input;
    if (sampled) {
      hooks.observer = [&](std::size_t layer, const Step& s, const Env& env, bool before) {
        if (!fp8_cast(s)) return;
        if (before) {
          pending_input = cast_input(s, env);
          return;
        }
        const Tensor& out = env.at(s.out[0]);
        if (out.prec == Precision::fp8 && out.q)
          res.casts.push_back(cast_stats(step, int(layer), s.out[0], pending_input, out));
      };
      hooks.after_backward = [&](std::size_t layer, const std::vector<double>& x, const std::vector<double>& wr,
                                 const std::vector<double>& w1, const std::vector<double>& w2,
                                 const std::vector<double>& dy) {
        const int l = int(layer);
        const Context& ctx = moe.context(layer);
        const Env& env = moe.env(layer);
        Env gold = model::layer_env(ctx.shape, x, wr, w1, w2);
        gold["dy"].v = dy;
        ExecOptions o;
        o.threads = c.threads;
        execute(golden_df, ctx, gold, o);
        for (const char* t : {"y", "dx"}) {
          const auto& truth = gold.at(t).v;
          const ErrorStat e = error_stat(truth, env.at(t).v, 0, truth.size());
          res.layer_error.push_back({step, l, t, e.sqnr_db, e.rel_err});
        }
        const std::size_t H = c.hidden, F = c.ffn;
        const std::pair<const char*, std::size_t> per_expert[] = {{"dx", 0}, {"dw1", 2 * F * H}, {"dw2", H * F}, {"dwr", H}};
        for (const auto& [t, block] : per_expert) {
          const auto& truth = gold.at(t).v;
          const auto& test = env.at(t).v;
          const ErrorStat all = error_stat(truth, test, 0, truth.size());
          res.grad_error.push_back({step, l, t, -1, all.sqnr_db, all.rel_err});
          if (block == 0) continue;
          for (std::size_t e = 0; e < c.experts; ++e) {
            const ErrorStat s = error_stat(truth, test, e * block, (e + 1) * block);
            res.grad_error.push_back({step, l, t, int(e), s.sqnr_db, s.rel_err});
          }
        }
        const Routing& r = ctx.routing;
        for (std::size_t e = 0; e < c.experts; ++e)
          res.router.push_back({step, l, int(e), double(r.valid[e]) / double(r.tokens * r.topk)});
      };
    }
    const double loss = model::loss_and_grad(c, w, batch, moe, &grads, hooks);
    // Global-norm clipping, then AdamW on the fp32 master weights (update arithmetic in float64).
    double ss = 0;
    for (const auto& g : grads)
      for (double v : g) ss += v * v;
    const double norm = std::sqrt(ss);
    const double clip = norm > c.grad_clip && c.grad_clip > 0 ? c.grad_clip / norm : 1.0;
    const double lr = lr_at(c, step);
    const double bc1 = 1 - std::pow(c.beta1, step + 1), bc2 = 1 - std::pow(c.beta2, step + 1);
    for (std::size_t i = 0; i < master.size(); ++i) {
      const double wd = layout[i].decay ? c.weight_decay : 0.0;
      for (std::size_t k = 0; k < master[i].size(); ++k) {
        const double g = grads[i][k] * clip;
        const double a = c.beta1 * m1[i][k] + (1 - c.beta1) * g;
        const double b = c.beta2 * m2[i][k] + (1 - c.beta2) * g * g;
        m1[i][k] = float(a), m2[i][k] = float(b);
        const double p = master[i][k];
        master[i][k] = float(p - lr * ((a / bc1) / (std::sqrt(b / bc2) + c.adam_eps) + wd * p));
      }
    }
    res.steps.push_back({step, loss, lr, norm});
    losses.push_back(loss);
    if (on_step) on_step(step);
    if (!std::isfinite(loss) || !std::isfinite(norm)) {  // diverged: the record says where; final_loss is NaN
      res.diverged_step = step;
      break;
    }
  }
  res.final_loss = res.diverged_step >= 0 ? std::numeric_limits<double>::quiet_NaN() : tail_mean_loss(losses);
  return res;
}

}  // namespace fp8flow::train
