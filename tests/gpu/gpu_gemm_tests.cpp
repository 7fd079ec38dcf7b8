// GPU test `gemm_cublaslt`: cuBLASLt FP8 GEMMs (tensorwise, 1x128 x 128x128, 1x128 x 1x128; fast accumulation
// off/on; fp32 and bf16 output) on shapes with K tails, compared with the fitted CPU presets (h100,
// h100_fast) bit for bit, and with the a-priori error bound around the exact result. Fails on any bound
// violation, a cuBLASLt error, or any output that is not bit-exact (the presets reproduced all 389,120
// recorded H100 outputs; docs/gemm.md "Fitted presets"). Blockwise scaling with fast accumulation is skipped:
// cuBLASLt 13 has no such kernel on sm_90.
#include <fmt/format.h>

#include <bit>
#include <cmath>
#include <vector>

#include "cuda/gemm_validate.hpp"
#include "formats/convert.hpp"
#include "formats/splitmix64.hpp"
#include "gpu_quant_tests.hpp"
#include "reference/gemm_algo.hpp"
#include "reference/gemm_cases.hpp"

namespace fp8flow::gpu_tests {

namespace {

double normal(std::uint64_t& s) {
  const double u1 = std::max(double(splitmix64_next(s) >> 11) * 0x1.0p-53, 1e-300);
  const double u2 = double(splitmix64_next(s) >> 11) * 0x1.0p-53;
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
}
}  // namespace

int gemm_cublaslt() {
  struct Shape { std::size_t m, n, k; };
  const Shape shapes[] = {{128, 128, 128}, {96, 208, 144}, {200, 136, 4112}, {64, 64, 16384}};
  std::size_t cases = 0, failed = 0, compared = 0, exact = 0;
  std::uint64_t s = 2024;
  for (const auto sh : shapes) {
    std::vector<std::uint8_t> a(sh.m * sh.k), b(sh.n * sh.k);
    for (std::size_t r = 0; r < sh.m; ++r) {  // rows of different magnitude, 1% outliers x 64
      const double row = std::ldexp(1.0, int(splitmix64_next(s) % 7) - 3);
      for (std::size_t k = 0; k < sh.k; ++k)
        a[r * sh.k + k] = std::uint8_t(encode(e4m3, normal(s) * row * ((splitmix64_next(s) % 100) ? 1.0 : 64.0),
                                              kRneSatfinite));
    }
    for (auto& x : b) x = std::uint8_t(encode(e4m3, normal(s), kRneSatfinite));
    const std::size_t kb = (sh.k + 127) / 128;
    auto scales = [&](std::size_t n) {
      std::vector<float> v(n);
      for (auto& x : v) x = 0.5f + float(splitmix64_next(s) % 4096) / 4096.0f;
      return v;
    };
    for (const auto sc : {cuda::GemmScaling::tensor, cuda::GemmScaling::blk_1x128_128x128,
                          cuda::GemmScaling::blk_1x128_1x128}) {
      const Granularity ga = sc == cuda::GemmScaling::tensor ? kTensor : k1x128;
      const Granularity gb = sc == cuda::GemmScaling::tensor ? kTensor
                             : sc == cuda::GemmScaling::blk_1x128_128x128 ? k128x128 : k1x128;
      const auto sa = scales(ga == kTensor ? 1 : sh.m * kb);
      const auto sbv = scales(gb == kTensor ? 1 : (gb.rows == 1 ? sh.n : (sh.n + 127) / 128) * kb);
      const GemmOperand A{a, sh.m, sh.k, &e4m3, sa, ga}, B{b, sh.n, sh.k, &e4m3, sbv, gb};
      std::vector<std::pair<cuda::CublasGemmConfig, AccumModel>> runs;
      for (const bool fast : {false, true})
        for (const auto out : {cuda::GemmOutType::f32, cuda::GemmOutType::bf16}) {
          if (fast && sc != cuda::GemmScaling::tensor) continue;  // no blockwise fast-accumulation kernel
          cuda::CublasGemmConfig cfg;
          cfg.fast_accum = fast;
          cfg.out = out;
          runs.emplace_back(cfg, fast ? AccumModel::h100_fast : AccumModel::h100);
        }
      cases += runs.size();
      try {
        for (const auto& v : cuda::validate_gemm_gpu(A, B, runs)) {
          fmt::print("{}", cuda::to_text(v));
          compared += v.compared;
          exact += v.bit_exact;
          if (!v.bound_ok() || !v.bits_ok()) ++failed;
        }
      } catch (const std::exception& e) {
        fmt::print("{} [{}, {}, {}]: ERROR {}\n", cuda::to_string(sc), sh.m, sh.n, sh.k, e.what());
        failed += runs.size();
      }
    }
  }
  fmt::print("gemm_cublaslt: {} cases, {} failed; {} of {} outputs bit-exact with the fitted presets ({:.4f}%)\n",
             cases, failed, exact, compared, 100.0 * double(exact) / double(std::max<std::size_t>(compared, 1)));
  return failed ? 1 : 0;
}

}  // namespace fp8flow::gpu_tests


namespace fp8flow::gpu_tests {

// GPU test `gemm_algo_auto`: cuBLASLt choosing its algorithm as torch._scaled_mm does (split-K included),
// against the CPU model running the algorithm cuBLASLt reports (split-K count, reduction scheme; docs/gemm.md
// "Algorithms"), bit for bit on the sampled outputs of seeded cases (3 scalings x fast accumulation x fp32/bf16,
// normal / outliers / mixed exponents / cancellation / zeros; long K at small M, N where split-K occurs).
int gemm_algo_auto() {
  struct Shape { std::size_t m, n, k; };
  const Shape shapes[] = {{16, 16, 16384}, {64, 64, 65536}, {32, 64, 8192}, {8, 32, 32768}, {256, 512, 2048},
                          {1024, 1024, 1024}};
  const char* dists[] = {"normal", "outliers", "mixed_exp", "cancel", "zeros"};
  std::size_t runs = 0, failed = 0, compared = 0, exact = 0;
  std::uint64_t seed = 900001;
  for (const auto sh : shapes)
    for (const char* sc : {"tensor", "1x128_128x128", "1x128_1x128"})
      for (const char* d : dists) {
        const GemmCase c{sh.m, sh.n, sh.k, sc, d, seed++};
        const auto a = gemm_case_operand(c, 0), b = gemm_case_operand(c, 1);
        const auto sa = gemm_case_scales(c, 0), sb = gemm_case_scales(c, 1);
        const GemmOperand A{a, c.m, c.k, &e4m3, sa, gemm_case_gran_a(c)}, B{b, c.n, c.k, &e4m3, sb, gemm_case_gran_b(c)};
        const GemmSample smp = gemm_case_sample(c, 1024);
        for (const bool fast : {false, true})
          for (const bool bf16 : {false, true}) {
            if (fast && c.scaling != "tensor") continue;  // no blockwise fast-accumulation kernel on sm_90
            cuda::CublasGemmConfig cfg;
            cfg.torch_heuristic = true;
            cfg.fast_accum = fast;
            cfg.out = bf16 ? cuda::GemmOutType::bf16 : cuda::GemmOutType::f32;
            ++runs;
            try {
              const auto g = cuda::gemm_cublaslt(A, B, cfg);
              GemmAlgo algo;
              algo.splitk = std::max(1, g.algo.splitk);
              if (algo.splitk > 1) algo.reduction = split_reduction_from_cublas(g.algo.reduction);
              const auto cpu = gemm_algo_at(A, B, fast ? AccumModel::h100_fast : AccumModel::h100, {}, algo, bf16,
                                            smp.rows, smp.cols);
              std::size_t ok = 0;
              std::string first;
              for (std::size_t r = 0; r < smp.rows.size(); ++r)
                for (std::size_t q = 0; q < smp.cols.size(); ++q) {
                  const float m = cpu[r * smp.cols.size() + q], o = g.out[smp.rows[r] * c.n + smp.cols[q]];
                  if (std::bit_cast<std::uint32_t>(m) == std::bit_cast<std::uint32_t>(o) || (std::isnan(m) && std::isnan(o)))
                    ++ok;
                  else if (first.empty())
                    first = fmt::format("[{}, {}] model {:#010x} gpu {:#010x}", smp.rows[r], smp.cols[q],
                                        std::bit_cast<std::uint32_t>(m), std::bit_cast<std::uint32_t>(o));
                }
              compared += smp.size();
              exact += ok;
              if (ok != smp.size()) {
                ++failed;
                fmt::print("{} fast {} {} ({}; {}): {} of {} bit-exact, first {}\n", c.name(), int(fast),
                           bf16 ? "bf16" : "f32", algo.to_string(), g.algo.to_string(), ok, smp.size(), first);
              }
            } catch (const std::exception& e) {
              ++failed;
              fmt::print("{} fast {} {}: ERROR {}\n", c.name(), int(fast), bf16 ? "bf16" : "f32", e.what());
            }
          }
      }
  fmt::print("gemm_algo_auto: {} runs, {} failed; {} of {} sampled outputs bit-exact ({:.4f}%)\n", runs, failed, exact,
             compared, 100.0 * double(exact) / double(std::max<std::size_t>(compared, 1)));
  return failed ? 1 : 0;
}

}  // namespace fp8flow::gpu_tests
