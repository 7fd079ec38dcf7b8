// fp8flow gemm-algos --gpu --table FILE.csv
//   The algorithm cuBLASLt's heuristic picks as torch._scaled_mm asks it, over a grid of shapes and every
//   scaling x fast accumulation x output type (docs/gemm.md "Algorithms").
// fp8flow gemm-algos --check DIR --set fit|heldout [--unit U] [--scale split|sum] [--json]
//   CPU: replays the recorded outputs with h100 / h100_fast under the recorded algorithm (split-K count and
//   reduction scheme of each run) and counts bit-exact outputs per configuration.
// fp8flow gemm-algos --gpu --record fit|heldout -o DIR [--dump DIR2]
//   Runs a recorded set's cases with that algorithm and records the sampled outputs (DIR/gemm_algo_SET.json,
//   DIR/gemm_algo_SET_out.npy); --dump also writes operands and full outputs for torch_gemm_compare.py.
#include <fmt/format.h>

#include <bit>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>

#include "cli/commands.hpp"
#include "io/errors.hpp"
#include "io/npy.hpp"
#include "reference/gemm_algo.hpp"
#include "reference/gemm_cases.hpp"
#ifdef FP8FLOW_HAVE_CUDA
#include "cuda/format_kernels.hpp"
#include "cuda/gemm_algo_runner.hpp"
#endif

namespace fp8flow::cli {

namespace {
struct AlgoArgs {
  bool gpu = false, json = false;
  std::string table, record, out, dump, check, set = "fit", scale = "split", only;
  int unit = 128;
};

bool same_output(float model, std::uint32_t gpu, bool bf16) {
  if (bf16) {
    const std::uint32_t mb = std::bit_cast<std::uint32_t>(model) >> 16;
    const float g = std::bit_cast<float>(gpu << 16);
    return mb == (gpu & 0xFFFFu) || (std::isnan(model) && std::isnan(g));
  }
  return std::bit_cast<std::uint32_t>(model) == gpu || (std::isnan(model) && std::isnan(std::bit_cast<float>(gpu)));
}

int check_recording(const AlgoArgs& a, const GlobalOptions& g) {
  namespace fs = std::filesystem;
  const fs::path jf = fs::path(a.check) / fmt::format("gemm_algo_{}.json", a.set);
  const fs::path nf = fs::path(a.check) / fmt::format("gemm_algo_{}_out.npy", a.set);
  std::ifstream in(jf);
  if (!in) throw InputError(fmt::format("{}: cannot open", jf.string()));
  nlohmann::json idx;
  try {
    idx = nlohmann::json::parse(in);
  } catch (const std::exception& e) {
    throw InputError(fmt::format("{}: not JSON: {}", jf.string(), e.what()));
  }
  const auto bits_arr = io::read_npy(nf.string());
  if (bits_arr.dtype != io::DType::u32) throw InputError(fmt::format("{}: expected uint32", nf.string()));
  const auto bits = bits_arr.view<std::uint32_t>();
  struct Tally { std::size_t runs = 0, compared = 0, exact = 0; std::string first; };
  std::map<std::string, Tally> per_config;
  nlohmann::json jruns = nlohmann::json::array();
  std::string cur;
  std::vector<std::uint8_t> A, B;
  std::vector<float> SA, SB;
  for (const auto& r : idx.at("runs")) {
    if (r.contains("error")) continue;
    GemmCase c{r.at("m"), r.at("n"), r.at("k"), r.at("scaling"), r.at("dist"), r.at("seed")};
    if (!a.only.empty() && c.name().find(a.only) == std::string::npos) continue;
    const GemmSample smp = gemm_case_sample(c, gemm_case_sample_cap(c));
    if (c.name() != cur) {  // only the sampled rows are generated (the model reads no others)
      check_gemm_case(c);
      A.assign(c.m * c.k, 0), B.assign(c.n * c.k, 0);
      for (std::size_t i : smp.rows) gemm_case_row(c, 0, i, A.data() + i * c.k);
      for (std::size_t j : smp.cols) gemm_case_row(c, 1, j, B.data() + j * c.k);
      SA = gemm_case_scales(c, 0), SB = gemm_case_scales(c, 1);
      cur = c.name();
    }
    const GemmOperand opa{A, c.m, c.k, &e4m3, SA, gemm_case_gran_a(c)}, opb{B, c.n, c.k, &e4m3, SB, gemm_case_gran_b(c)};
    const bool fast = r.at("fast_accum"), bf16 = r.at("out") == "bf16";
    GemmAlgo algo;
    algo.splitk = std::max(1, r.at("algo").at("splitk").get<int>());
    algo.reduction = algo.splitk > 1 ? split_reduction_from_cublas(r.at("algo").at("reduction")) : SplitReduction::none;
    algo.split_unit = a.unit;
    algo.scale_per_split = a.scale == "split";
    const std::size_t off = r.at("offset"), cnt = r.at("count");
    if (cnt != smp.size() || off + cnt > bits.size())
      throw InputError(fmt::format("{}: run {} records {} outputs at {}, the sample has {} ({} recorded in all)",
                                   jf.string(), c.name(), cnt, off, smp.size(), bits.size()));
    const auto out = gemm_algo_at(opa, opb, fast ? AccumModel::h100_fast : AccumModel::h100, AccumParams{}, algo,
                                  bf16, smp.rows, smp.cols, g.threads);
    std::size_t ex = 0;
    std::string first;
    for (std::size_t i = 0; i < cnt; ++i) {
      if (same_output(out[i], bits[off + i], bf16)) { ++ex; continue; }
      if (first.empty())
        first = fmt::format("[{}, {}] model {:#010x} gpu {:#010x}", smp.rows[i / smp.cols.size()],
                            smp.cols[i % smp.cols.size()], std::bit_cast<std::uint32_t>(out[i]) >> (bf16 ? 16 : 0),
                            bits[off + i]);
    }
    const std::string cfg = fmt::format("{} fast {} {}", c.scaling, fast ? 1 : 0, bf16 ? "bf16" : "f32");
    auto& t = per_config[cfg];
    ++t.runs, t.compared += cnt, t.exact += ex;
    if (t.first.empty() && !first.empty()) t.first = c.name() + " " + first;
    jruns.push_back({{"case", c.name()}, {"fast_accum", fast}, {"out", bf16 ? "bf16" : "f32"},
                     {"algo", algo.to_string()}, {"compared", cnt}, {"bit_exact", ex}, {"first_mismatch", first}});
    if (!a.json && !g.quiet && ex != cnt)
      fmt::print("  {:<44} fast {} {:<4} {:<28} {:>5}/{:<5} {}\n", c.name(), fast ? 1 : 0, bf16 ? "bf16" : "f32",
                 algo.to_string(), ex, cnt, first);
  }
  std::size_t cmp = 0, ex = 0;
  nlohmann::json jcfg;
  for (const auto& [k, t] : per_config) {
    cmp += t.compared, ex += t.exact;
    jcfg[k] = {{"runs", t.runs}, {"compared", t.compared}, {"bit_exact", t.exact}, {"first_mismatch", t.first}};
    if (!a.json)
      fmt::print("{:<26} {:>4} runs {:>8} / {:>8} bit-exact {:9.5f}%\n", k, t.runs, t.exact, t.compared,
                 100.0 * double(t.exact) / double(std::max<std::size_t>(t.compared, 1)));
  }
  if (a.json)
    fmt::print("{}\n", nlohmann::json{{"set", a.set}, {"gpu", idx.value("gpu", "")}, {"configs", jcfg},
                                      {"compared", cmp}, {"bit_exact", ex}, {"runs", jruns}}.dump(1));
  else
    fmt::print("{} set: {} of {} recorded outputs bit-exact ({:.5f}%)\n", a.set, ex, cmp,
               100.0 * double(ex) / double(std::max<std::size_t>(cmp, 1)));
  return ex == cmp ? 0 : 1;
}
}  // namespace

void add_gemm_algos_command(CLI::App& app, const GlobalOptions& g) {
  auto a = std::make_shared<AlgoArgs>();
  auto* cmd = app.add_subcommand("gemm-algos", "cuBLASLt's default FP8 GEMM algorithm (as torch._scaled_mm picks "
                                               "it): record the heuristic's table and outputs on the GPU");
  cmd->add_flag("--gpu", a->gpu, "Run on the GPU");
  cmd->add_option("--table", a->table, "--gpu: write the heuristic's picks over the shape grid to this CSV");
  cmd->add_option("--record", a->record, "--gpu: record the outputs of a case set (fit, heldout)");
  cmd->add_option("-o,--out", a->out, "--record: output directory");
  cmd->add_option("--dump", a->dump, "--record: also write operands and full outputs here (torch comparison)");
  cmd->add_option("--check", a->check, "CPU: directory of recorded outputs to replay with the model");
  cmd->add_option("--set", a->set, "--check: which recorded set (fit, heldout)")
      ->capture_default_str()
      ->check(CLI::IsMember({"fit", "heldout"}));
  cmd->add_option("--unit", a->unit, "--check: split-K unit in k (model parameter)")
      ->capture_default_str()
      ->check(CLI::Range(1, 1 << 20));
  cmd->add_option("--scale", a->scale, "--check: tensor scale per split (split) or after the reduction (sum)")
      ->capture_default_str()
      ->check(CLI::IsMember({"split", "sum"}));
  cmd->get_option("--record")->check(CLI::IsMember({"fit", "heldout"}));
  cmd->add_option("--only", a->only, "--check: only cases whose name contains this");
  cmd->add_flag("--json", a->json, "--check: JSON output");
  cmd->callback([a, &g] {
    if (!a->check.empty()) {
      if (a->scale != "split" && a->scale != "sum") throw InputError("gemm-algos --scale: expected split or sum");
      if (check_recording(*a, g) != 0) std::exit(1);
      return;
    }
    if (!a->gpu) throw InputError("gemm-algos: pass --gpu with --table FILE or --record SET -o DIR");
    if (a->table.empty() && a->record.empty()) throw InputError("gemm-algos --gpu: pass --table FILE or --record SET");
    if (!a->record.empty()) {
      (void)gemm_case_set(a->record);  // unknown set: InputError before the GPU starts
      if (a->out.empty()) throw InputError("gemm-algos --record: pass -o DIR");
    }
#ifdef FP8FLOW_HAVE_CUDA
    if (cuda::device_count() == 0) {
      fmt::print(stderr, "fp8flow gemm-algos: no CUDA device visible on this machine\n");
      std::exit(1);
    }
    if (!a->table.empty()) cuda::run_gemm_algo_table(a->table, g.quiet);
    if (!a->record.empty()) cuda::run_gemm_algo_record(a->record, a->out, a->dump, g.quiet);
#else
    (void)g;
    fmt::print(stderr, "fp8flow gemm-algos --gpu: this fp8flow was built without CUDA\n");
    std::exit(1);
#endif
  });
}

}  // namespace fp8flow::cli
