// The fused MoE kernels (src/cuda/moe_kernels.hpp) against their CPU twins (reference/moe_fused.hpp), bit for
// bit, on adversarial inputs: NaN/Inf and zero rows, exp over- and underflow, bf16 subnormals, padding rows
// (prob 0), F % 256 == 128 (a half-idle warp), one token, empty experts, expert groups that are not
// multiples of 16 or 128, hidden sizes that are not multiples of 16 (the bytewise paths), top-k up to 9.
// Every output buffer is poisoned (0xFF) before the launch, so an unwritten byte is a mismatch.
#include <cuda_runtime.h>
#include <fmt/format.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "cuda/moe_kernels.hpp"
#include "gpu_quant_tests.hpp"
#include "reference/moe_fp32.hpp"
#include "reference/moe_fused.hpp"

namespace fp8flow::gpu_tests {
namespace {

struct Fail {
  std::size_t mismatches = 0;
  std::string first;
};

#define CU(x)                                                                                     \
  do {                                                                                            \
    const cudaError_t e_ = (x);                                                                   \
    if (e_ != cudaSuccess) throw std::runtime_error(fmt::format("{}: {}", #x, cudaGetErrorString(e_))); \
  } while (0)

template <class T>
struct Dev {
  T* p = nullptr;
  std::size_t n = 0;
  explicit Dev(std::size_t count) : n(count) {
    CU(cudaMalloc(&p, std::max<std::size_t>(n, 1) * sizeof(T)));
    CU(cudaMemset(p, 0xFF, std::max<std::size_t>(n, 1) * sizeof(T)));
  }
  Dev(const std::vector<T>& v) : Dev(v.size()) {
    if (n) CU(cudaMemcpy(p, v.data(), n * sizeof(T), cudaMemcpyHostToDevice));
  }
  ~Dev() { cudaFree(p); }
  Dev(const Dev&) = delete;
  std::vector<T> get() const {
    std::vector<T> v(n);
    if (n) CU(cudaMemcpy(v.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost));
    return v;
  }
};

// Compare two arrays by their bits; remember the first mismatch.
template <class T>
void compare(const char* what, const std::vector<T>& gpu, const std::vector<T>& cpu, std::size_t cols, Fail& f) {
  if (gpu.size() != cpu.size()) {
    ++f.mismatches;
    if (f.first.empty()) f.first = fmt::format("{}: size {} vs {}", what, gpu.size(), cpu.size());
    return;
  }
  for (std::size_t i = 0; i < gpu.size(); ++i) {
    if (std::memcmp(&gpu[i], &cpu[i], sizeof(T)) == 0) continue;
    if (f.mismatches++ == 0) {
      std::uint64_t g = 0, c = 0;
      std::memcpy(&g, &gpu[i], sizeof(T));
      std::memcpy(&c, &cpu[i], sizeof(T));
      f.first = fmt::format("{} [{}, {}]: gpu 0x{:X}, cpu 0x{:X}", what, i / cols, i % cols, g, c);
    }
  }
}

std::uint16_t bf16(double v) { return moe32::f32_to_bf16(float(v)); }

// Adversarial bf16 tensor [rows, cols]: per-row magnitude 2^[-20, 12] (exp's overflow at |a| > 89 included),
// values spread over 2^-24 of it; zero rows, bf16-subnormal rows, rows with +-Inf / NaN, -0.
std::vector<std::uint16_t> adversarial_bf16(std::size_t rows, std::size_t cols, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  std::vector<std::uint16_t> x(rows * cols);
  for (std::size_t r = 0; r < rows; ++r) {
    const int kind = int(rng() % 16);
    const double mag = std::ldexp(1.0, int(rng() % 33) - 20);
    for (std::size_t c = 0; c < cols; ++c) {
      double v = (u(rng) < 0.5 ? -1 : 1) * mag * std::ldexp(0.5 + u(rng), -int(rng() % 25));
      if (kind == 0) v = 0.0;
      else if (kind == 1) v = (u(rng) < 0.5 ? -1 : 1) * std::ldexp(1.0 + u(rng), -130);  // bf16 subnormal
      else if (kind == 2) v = (u(rng) < 0.5 ? -1 : 1) * (60.0 + 100.0 * u(rng));        // exp(-a) over/underflow
      const std::uint64_t p = rng() % 2000;
      if (p == 0) v = std::numeric_limits<double>::infinity();
      else if (p == 1) v = -std::numeric_limits<double>::infinity();
      else if (p == 2) v = std::numeric_limits<double>::quiet_NaN();
      else if (p == 3) v = -0.0;
      x[r * cols + c] = bf16(v);
    }
  }
  return x;
}

std::vector<float> probs_for(std::size_t rows, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<float> p(rows);
  for (std::size_t r = 0; r < rows; ++r) {
    const std::uint64_t k = rng() % 20;
    p[r] = k == 0 ? 0.0f : k == 1 ? 1.0f : moe32::bf16_to_f32(bf16(std::ldexp(double(rng() % 1000 + 1) / 1000.0, -int(rng() % 4))));
  }
  if (rows > 3) p[3] = std::numeric_limits<float>::infinity();
  return p;
}

int swiglu_case(std::size_t rows, std::size_t F, std::uint64_t seed, std::size_t& values) {
  const std::vector<std::uint16_t> h = adversarial_bf16(rows, 2 * F, seed), g = adversarial_bf16(rows, F, seed + 1);
  const std::vector<float> w = probs_for(rows, seed + 2);
  Fail f;
  {  // forward
    Dev<std::uint16_t> dh(h);
    Dev<float> dw(w);
    Dev<std::uint8_t> codes(rows * F);
    Dev<float> si(rows * F / 128);
    CU(cuda::swiglu_quant_fwd(dh.p, dw.p, rows, F, codes.p, si.p));
    CU(cudaDeviceSynchronize());
    const QuantizedTensor q = swiglu_quant_fwd(h, w, rows, F);
    compare("act codes", codes.get(), q.codes, F, f);
    compare("act scale_inv", si.get(), q.scale_inv, F / 128, f);
    values += q.codes.size() + q.scale_inv.size();
  }
  {  // backward
    Dev<std::uint16_t> dg(g), dh(h);
    Dev<float> dw(w);
    Dev<std::uint8_t> codes(rows * 2 * F);
    Dev<float> si(rows * 2 * F / 128), dprob(rows);
    CU(cuda::swiglu_quant_bwd(dg.p, dh.p, dw.p, rows, F, codes.p, si.p, dprob.p));
    CU(cudaDeviceSynchronize());
    const SwigluQuantGrad q = swiglu_quant_bwd(g, h, w, rows, F);
    compare("dh codes", codes.get(), q.dh.codes, 2 * F, f);
    compare("dh scale_inv", si.get(), q.dh.scale_inv, 2 * F / 128, f);
    compare("dprob", dprob.get(), q.dprob, 1, f);
    values += q.dh.codes.size() + q.dh.scale_inv.size() + q.dprob.size();
  }
  fmt::print("  swiglu rows {:5} F {:5}: {}\n", rows, F, f.mismatches ? fmt::format("{} mismatches, first {}", f.mismatches, f.first) : "bit-exact");
  return f.mismatches ? 1 : 0;
}

Routing routing_for(std::size_t T, std::size_t E, std::size_t K, std::size_t align, std::uint64_t seed) {
  MoeShape s;
  s.tokens = T, s.hidden = 128, s.ffn = 128, s.experts = E, s.topk = K, s.align = align;
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> n(0.0, 1.0);
  std::vector<double> scores(T * E);
  for (std::size_t t = 0; t < T; ++t)
    for (std::size_t e = 0; e < E; ++e)  // every third expert never chosen while K <= 2E/3: empty experts
      scores[t * E + e] = (e % 3 == 2 && K <= 2 * E / 3) ? -1e9 : n(rng);
  return make_routing(scores, s);
}

int permute_case(std::size_t T, std::size_t E, std::size_t K, std::size_t align, std::size_t H, std::uint64_t seed,
                 std::size_t& values) {
  const Routing r = routing_for(T, E, K, align, seed);
  const std::size_t sc = (H + 127) / 128, rows = r.rows();
  std::mt19937_64 rng(seed + 9);
  std::vector<std::uint8_t> codes(T * H);
  std::vector<float> si(T * sc), probs(T * K);
  for (auto& c : codes) c = std::uint8_t(rng());  // every code, NaN 0x7F/0xFF included
  for (auto& s : si) s = std::ldexp(1.0f, int(rng() % 60) - 30);
  for (auto& p : probs) p = float(rng() % 1000) / 999.0f;
  const std::vector<std::int32_t> src = row_sources(r), dst = copy_rows(r);
  Fail f;
  {
    const Fp8Rows want = permute_pad_fp8(codes, si, probs, T, H, K, src);
    Dev<std::uint8_t> dc(codes), oc(rows * H);
    Dev<float> ds(si), dp(probs), os(rows * sc), op(rows);
    Dev<std::int32_t> dsrc(src);
    CU(cuda::permute_pad_fp8(dc.p, ds.p, dp.p, T, H, K, dsrc.p, rows, oc.p, os.p, op.p));
    CU(cudaDeviceSynchronize());
    compare("permuted codes", oc.get(), want.codes, H, f);
    compare("permuted scale_inv", os.get(), want.scale_inv, sc, f);
    compare("permuted prob", op.get(), want.prob, 1, f);
    values += want.codes.size() + want.scale_inv.size() + want.prob.size();
  }
  {  // bf16 rows back to tokens, plain and merged by probs
    std::vector<std::uint16_t> o = adversarial_bf16(rows, H, seed + 3);
    Dev<std::uint16_t> din(o);
    Dev<std::int32_t> ddst(dst);
    Dev<float> dp(probs);
    for (bool merge : {false, true}) {
      Dev<std::uint16_t> out(T * H);
      CU(cuda::unpermute_combine_bf16(din.p, rows, H, ddst.p, T, K, merge ? dp.p : nullptr, out.p));
      CU(cudaDeviceSynchronize());
      const std::vector<std::uint16_t> want =
          unpermute_combine_bf16(o, rows, H, dst, T, K, merge ? std::span<const float>(probs) : std::span<const float>());
      compare(merge ? "unpermuted (merging probs)" : "unpermuted", out.get(), want, H, f);
      values += want.size();
    }
  }
  std::size_t empty = 0;
  for (std::size_t v : r.valid) empty += v == 0;
  fmt::print("  permute T {:5} E {:3} K {} align {:3} H {:5} ({} rows, {} empty experts): {}\n", T, E, K, align, H,
             rows, empty, f.mismatches ? fmt::format("{} mismatches, first {}", f.mismatches, f.first) : "bit-exact");
  return f.mismatches ? 1 : 0;
}

int refusals() {
  int fails = 0;
  auto expect = [&](cudaError_t e, const char* what) {
    if (e != cudaErrorInvalidValue) {
      ++fails;
      fmt::print("  {}: expected cudaErrorInvalidValue, got {}\n", what, cudaGetErrorString(e));
    }
    cudaGetLastError();
  };
  Dev<std::uint16_t> h(4 * 256);
  Dev<float> p(4), si(64);
  Dev<std::uint8_t> c(4 * 256);
  Dev<std::int32_t> idx(64);
  expect(cuda::swiglu_quant_fwd(h.p, p.p, 2, 100, c.p, si.p), "swiglu fwd with F = 100");
  expect(cuda::swiglu_quant_bwd(h.p, h.p, p.p, 2, 128, c.p, si.p, nullptr), "swiglu bwd without dprob");
  expect(cuda::unpermute_combine_bf16(h.p, 4, 8, idx.p, 1, 33, nullptr, h.p), "unpermute with topk 33");
  expect(cuda::permute_pad_fp8(c.p, si.p, p.p, 2, 128, 2, idx.p, 4, c.p, si.p, nullptr), "permute with probs, no prob out");
  // No rows: nothing to do, success without a launch.
  if (cuda::swiglu_quant_fwd(h.p, p.p, 0, 128, c.p, si.p) != cudaSuccess) ++fails;
  if (cuda::permute_pad_fp8(c.p, si.p, nullptr, 0, 128, 2, idx.p, 0, c.p, si.p, nullptr) != cudaSuccess) ++fails;
  fmt::print("  refusals: {}\n", fails ? "FAILED" : "ok (4 calls refused before any launch, 2 empty calls succeed)");
  return fails ? 1 : 0;
}

}  // namespace

int moe_fused_bitexact(bool small) {
  int fails = 0;
  std::size_t values = 0;
  try {
    fails |= refusals();
    std::vector<std::pair<std::size_t, std::size_t>> sw = {{1, 128}, {7, 384}, {129, 256}, {37, 1408}, {300, 2048}};
    if (!small) sw.insert(sw.end(), {{4099, 2048}, {2000, 1024}, {513, 4096}});
    std::uint64_t seed = 100;
    for (auto [rows, F] : sw) fails |= swiglu_case(rows, F, seed += 7, values);
    struct P { std::size_t T, E, K, align, H; };
    std::vector<P> pc = {{1, 4, 2, 16, 128},  {1, 8, 1, 1, 200},    {53, 8, 2, 16, 200}, {53, 9, 3, 128, 896},
                         {300, 32, 8, 16, 1024}, {257, 12, 9, 7, 136}, {64, 6, 4, 1, 8},    {100, 4, 4, 128, 7168}, {33, 5, 2, 16, 130}};
    if (!small) pc.insert(pc.end(), {{2048, 64, 8, 128, 7168}, {4096, 256, 8, 16, 2048}});
    for (const P& p : pc) fails |= permute_case(p.T, p.E, p.K, p.align, p.H, seed += 7, values);
  } catch (const std::exception& e) {
    fmt::print("error: {}\n", e.what());
    return 1;
  }
  fmt::print("moe_fused_bitexact{}: {} values compared, {}\n", small ? "_small" : "", values, fails ? "FAILED" : "all bit-exact");
  return fails ? 1 : 0;
}

}  // namespace fp8flow::gpu_tests
