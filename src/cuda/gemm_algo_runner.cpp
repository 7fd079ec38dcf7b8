#include "cuda/gemm_algo_runner.hpp"

#include <cublasLt.h>
#include <fmt/format.h>

#include <bit>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "cuda/format_validation.hpp"
#include "cuda/gemm_cublaslt.hpp"
#include "io/npy.hpp"
#include "reference/gemm.hpp"
#include "reference/gemm_cases.hpp"

namespace fp8flow::cuda {

namespace {

const GemmScaling kScalings[] = {GemmScaling::tensor, GemmScaling::blk_1x128_128x128, GemmScaling::blk_1x128_1x128};

nlohmann::json algo_json(const CublasAlgoInfo& a) {
  return {{"algo_id", a.algo_id}, {"tile", a.tile_id}, {"stages", a.stages_id}, {"splitk", a.splitk},
          {"reduction", a.reduction}, {"swizzle", a.swizzle}, {"custom", a.custom}, {"cluster", a.cluster_id},
          {"inner_shape", a.inner_shape}, {"workspace", a.workspace}, {"waves", a.waves}};
}

}  // namespace

int run_gemm_algo_table(const std::string& csv_path, bool quiet) {
  namespace fs = std::filesystem;
  if (fs::path(csv_path).has_parent_path()) fs::create_directories(fs::path(csv_path).parent_path());
  std::ofstream f(csv_path);
  f << "# cuBLASLt " << cublasLtGetVersion() << " on " << gpu_name()
    << "; heuristic as torch._scaled_mm asks it (1 result, 32 MiB workspace)\n";
  f << "scaling,fast_accum,out,m,n,k,algo_id,tile,stages,splitk,reduction,swizzle,custom,cluster,inner_shape,"
       "workspace,waves,error\n";
  const std::size_t Ms[] = {1, 2, 4, 8, 16, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048, 3072,
                            4096, 6144, 8192};
  const std::size_t Ns[] = {16, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048, 3072, 4096, 6144,
                            8192};
  const std::size_t Ks[] = {16, 32, 64, 128, 256, 512, 1024, 2048, 3072, 4096, 6144, 7168, 8192, 12288, 16384,
                            24576, 32768, 49152, 65536};
  cublasLtHandle_t h = nullptr;
  if (cublasLtCreate(&h) != CUBLAS_STATUS_SUCCESS) throw std::runtime_error("cublasLtCreate failed");
  int refused = 0;
  const auto t0 = std::chrono::steady_clock::now();
  for (GemmScaling sc : kScalings)
    for (const bool fast : {false, true})
      for (const bool bf16 : {false, true})
        for (std::size_t m : Ms)
          for (std::size_t n : Ns)
            for (std::size_t k : Ks) {
              CublasGemmConfig cfg;
              cfg.torch_heuristic = true;
              cfg.fast_accum = fast;
              cfg.out = bf16 ? GemmOutType::bf16 : GemmOutType::f32;
              f << to_string(sc) << ',' << int(fast) << ',' << (bf16 ? "bf16" : "f32") << ',' << m << ',' << n << ','
                << k << ',';
              try {
                CublasFp8Gemm g(m, n, k, sc, cfg, h, true);
                const auto& a = g.algo();
                f << a.algo_id << ',' << a.tile_id << ',' << a.stages_id << ',' << a.splitk << ',' << a.reduction
                  << ',' << a.swizzle << ',' << a.custom << ',' << a.cluster_id << ',' << a.inner_shape << ','
                  << a.workspace << ',' << a.waves << ",\n";
              } catch (const std::exception& e) {
                ++refused;
                std::string msg = e.what();
                for (auto& ch : msg)
                  if (ch == ',' || ch == '\n') ch = ';';
                f << ",,,,,,,,,,," << msg.substr(0, 120) << "\n";
              }
            }
  cublasLtDestroy(h);
  if (!quiet)
    fmt::print("algorithm table: {} refused; {:.1f} s\n", refused,
               std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  return refused;
}

int run_gemm_algo_record(const std::string& set, const std::string& out_dir, const std::string& dump_dir,
                         bool quiet) {
  namespace fs = std::filesystem;
  fs::create_directories(out_dir);
  const auto cases = gemm_case_set(set);
  nlohmann::json idx;
  idx["set"] = set;
  idx["gpu"] = gpu_name();
  idx["cublasLt_version"] = cublasLtGetVersion();
  idx["selection"] = "torch_heuristic (torch._scaled_mm: 1 heuristic result, 32 MiB workspace)";
  std::vector<std::uint32_t> bits;
  int refused = 0, ci = 0;
  const auto t0 = std::chrono::steady_clock::now();
  for (const auto& c : cases) {
    const auto a = gemm_case_operand(c, 0), b = gemm_case_operand(c, 1);
    const auto sa = gemm_case_scales(c, 0), sb = gemm_case_scales(c, 1);
    const GemmOperand A{a, c.m, c.k, &e4m3, sa, gemm_case_gran_a(c)}, B{b, c.n, c.k, &e4m3, sb, gemm_case_gran_b(c)};
    const GemmSample smp = gemm_case_sample(c, gemm_case_sample_cap(c));
    fs::path cdir;
    if (!dump_dir.empty()) {
      cdir = fs::path(dump_dir) / fmt::format("case{:04d}", ci);
      fs::create_directories(cdir);
      io::write_npy(cdir / "a.npy", io::make_npy<std::uint8_t>({c.m, c.k}, a));
      io::write_npy(cdir / "b.npy", io::make_npy<std::uint8_t>({c.n, c.k}, b));
      io::write_npy(cdir / "sa.npy", io::make_npy<float>({sa.size()}, sa));
      io::write_npy(cdir / "sb.npy", io::make_npy<float>({sb.size()}, sb));
      std::vector<std::uint32_t> rr(smp.rows.begin(), smp.rows.end()), cc(smp.cols.begin(), smp.cols.end());
      io::write_npy(cdir / "rows.npy", io::make_npy<std::uint32_t>({rr.size()}, rr));
      io::write_npy(cdir / "cols.npy", io::make_npy<std::uint32_t>({cc.size()}, cc));
      std::ofstream(cdir / "meta.json") << nlohmann::json{{"name", c.name()}, {"scaling", c.scaling},
                                                          {"m", c.m}, {"n", c.n}, {"k", c.k}}.dump() << "\n";
    }
    for (const bool fast : {false, true})
      for (const bool bf16 : {false, true}) {
        CublasGemmConfig cfg;
        cfg.torch_heuristic = true;
        cfg.fast_accum = fast;
        cfg.out = bf16 ? GemmOutType::bf16 : GemmOutType::f32;
        nlohmann::json r{{"case", c.name()}, {"scaling", c.scaling}, {"dist", c.dist}, {"seed", c.seed},
                         {"m", c.m}, {"n", c.n}, {"k", c.k}, {"fast_accum", fast}, {"out", bf16 ? "bf16" : "f32"},
                         {"dump", ci}};
        try {
          const auto res = gemm_cublaslt(A, B, cfg);
          r["algo"] = algo_json(res.algo);
          r["offset"] = bits.size();
          r["count"] = smp.size();
          for (std::size_t i : smp.rows)
            for (std::size_t j : smp.cols)
              bits.push_back(bf16 ? std::uint32_t(res.bf16[i * c.n + j])
                                  : std::bit_cast<std::uint32_t>(res.out[i * c.n + j]));
          if (!cdir.empty()) {  // the sampled outputs, [rows, cols] (rows.npy, cols.npy)
            const auto fn = cdir / fmt::format("out_f{}_{}.npy", int(fast), bf16 ? "bf16" : "f32");
            const std::vector<std::uint32_t> u(bits.end() - std::ptrdiff_t(smp.size()), bits.end());
            io::write_npy(fn, io::make_npy<std::uint32_t>({smp.rows.size(), smp.cols.size()}, u));
          }
        } catch (const std::exception& e) {
          r["error"] = e.what();
          ++refused;
        }
        idx["runs"].push_back(r);
      }
    ++ci;
  }
  io::write_npy(fs::path(out_dir) / fmt::format("gemm_algo_{}_out.npy", set),
                io::make_npy<std::uint32_t>({bits.size()}, bits));
  std::ofstream(fs::path(out_dir) / fmt::format("gemm_algo_{}.json", set)) << idx.dump(1) << "\n";
  if (!quiet)
    fmt::print("set {}: {} cases, {} runs refused, {} outputs; {:.1f} s\n", set, cases.size(), refused, bits.size(),
               std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  return refused;
}

}  // namespace fp8flow::cuda
