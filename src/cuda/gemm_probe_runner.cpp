#include "cuda/gemm_probe_runner.hpp"

#include <cublasLt.h>
#include <fmt/format.h>

#include <bit>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "cuda/format_validation.hpp"
#include "cuda/gemm_cublaslt.hpp"
#include "formats/splitmix64.hpp"
#include "io/npy.hpp"
#include "reference/gemm.hpp"
#include "reference/gemm_probes.hpp"

namespace fp8flow::cuda {

namespace {

// Relative Frobenius error of `got` against the CPU exact model.
double rel_error(const std::vector<float>& got, const std::vector<float>& ref) {
  double num = 0, den = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    const double d = double(got[i]) - double(ref[i]);
    num += d * d;
    den += double(ref[i]) * double(ref[i]);
  }
  return std::sqrt(num / std::max(den, 1e-300));
}

// Picks the scale layouts cuBLASLt reads (recorded in the index; the library default must agree).
nlohmann::json check_layouts(CublasGemmConfig& cfg) {
  nlohmann::json j;
  const std::size_t M = 256, N = 384, K = 640;
  std::uint64_t s = 12345;
  std::vector<std::uint8_t> a(M * K), b(N * K);
  for (auto& x : a) { x = std::uint8_t(splitmix64_next(s)) & 0x77; }   // finite, |x| <= 240-ish, no NaN
  for (auto& x : b) { x = std::uint8_t(splitmix64_next(s)) & 0xB7; }
  auto rnd_scales = [&](std::size_t n) {
    std::vector<float> v(n);
    for (auto& x : v) x = std::ldexp(1.0f + float(splitmix64_next(s) % 1000) / 1000.0f, int(splitmix64_next(s) % 9) - 4);
    return v;
  };
  const std::size_t KB = (K + 127) / 128;
  for (const bool blk : {true, false}) {  // 1x128 x 128x128, then 1x128 x 1x128
    auto sa = rnd_scales(M * KB);
    auto sb = rnd_scales(blk ? ((N + 127) / 128) * KB : N * KB);
    GemmOperand A{a, M, K, &e4m3, sa, k1x128}, B{b, N, K, &e4m3, sb, blk ? k128x128 : k1x128};
    const auto ref = gemm(A, B, AccumModel::exact, AccumParams{});
    double best = 1e300;
    int best_v = 0, best_b = 0;
    for (int v = 0; v < 2; ++v)
      for (int bl = 0; bl < (blk ? 3 : 1); ++bl) {
        CublasGemmConfig c = cfg;
        c.vec128_layout = v;
        c.blk128_layout = bl;
        double e = -1;
        std::string err;
        try {
          e = rel_error(gemm_cublaslt(A, B, c).out, ref);
        } catch (const std::exception& ex) {
          err = ex.what();
        }
        j[blk ? "1x128_128x128" : "1x128_1x128"].push_back({{"vec128_layout", v}, {"blk128_layout", bl},
                                                             {"rel_error", e}, {"error", err}});
        if (err.empty() && e < best) best = e, best_v = v, best_b = bl;
      }
    if (blk) cfg.blk128_layout = best_b;
    cfg.vec128_layout = best_v;
    j[blk ? "chosen_1x128_128x128" : "chosen_1x128_1x128"] = {{"vec128_layout", best_v}, {"blk128_layout", best_b},
                                                             {"rel_error", best}};
  }
  return j;
}

}  // namespace

int run_gemm_probes(const GemmProbeRunOptions& o) {
  namespace fs = std::filesystem;
  fs::create_directories(o.out_dir);
  CublasGemmConfig base;
  nlohmann::json idx;
  idx["gpu"] = gpu_name();
  idx["cublasLt_version"] = cublasLtGetVersion();
  idx["layout_check"] = check_layouts(base);
  idx["vec128_layout"] = base.vec128_layout;
  idx["blk128_layout"] = base.blk128_layout;
  if (!o.quiet) fmt::print("layouts: vec128 {} blk128 {}\n{}\n", base.vec128_layout, base.blk128_layout,
                           idx["layout_check"].dump());
  std::vector<std::uint32_t> bits;
  int refused = 0;
  const auto names = o.cases.empty() ? gemm_probe_names() : o.cases;
  for (const auto& name : names) {
    const auto t0 = std::chrono::steady_clock::now();
    const GemmProbeCase c = make_gemm_probe(name);
    for (std::string_view sc : kProbeScalings) {
      const GemmProbeScales s = make_gemm_probe_scales(c, sc);
      const GemmOperand A{c.a, c.m, c.k, &e4m3, s.sa, s.ga}, B{c.b, c.n, c.k, &e4m3, s.sb, s.gb};
      const std::uint64_t h = gemm_probe_hash(c, s);
      for (const bool fast : {false, true})
        for (const bool bf16 : {false, true}) {
          if (bf16 && (!o.bf16_outputs || c.family != "random")) continue;
          CublasGemmConfig cfg = base;
          cfg.fast_accum = fast;
          cfg.out = bf16 ? GemmOutType::bf16 : GemmOutType::f32;
          nlohmann::json r{{"case", c.name}, {"family", c.family}, {"scaling", std::string(sc)}, {"fast_accum", fast},
                           {"out", bf16 ? "bf16" : "f32"}, {"m", c.m}, {"n", c.n}, {"k", c.k},
                           {"hash", fmt::format("{:016x}", h)}};
          try {
            const auto res = gemm_cublaslt(A, B, cfg);
            r["offset"] = bits.size();
            r["count"] = res.out.size();
            r["algo"] = res.algo.to_string();
            for (std::size_t i = 0; i < res.out.size(); ++i)
              bits.push_back(bf16 ? std::uint32_t(res.bf16[i]) : std::bit_cast<std::uint32_t>(res.out[i]));
          } catch (const std::exception& e) {
            r["error"] = e.what();
            ++refused;
            if (!o.quiet) fmt::print("  {} {} fast {} {}: {}\n", c.name, sc, fast, bf16 ? "bf16" : "f32", e.what());
          }
          idx["runs"].push_back(r);
        }
    }
    if (!o.quiet)
      fmt::print("probe {:<20} [{} x {} x {}] {:.2f} s\n", name, c.m, c.n, c.k,
                 std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  io::write_npy(fs::path(o.out_dir) / "gemm_probes_out.npy", io::make_npy<std::uint32_t>({bits.size()}, bits));
  std::ofstream(fs::path(o.out_dir) / "gemm_probes.json") << idx.dump(1) << "\n";
  return refused;
}

}  // namespace fp8flow::cuda
