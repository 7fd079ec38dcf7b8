#include "io/gemm_algo_table.hpp"

#include <fmt/format.h>

#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>
#include <vector>

#include "io/errors.hpp"

namespace fp8flow::io {

namespace {
std::vector<std::string> split_csv(const std::string& line) {
  std::vector<std::string> v;
  std::stringstream ss(line);
  for (std::string f; std::getline(ss, f, ',');) v.push_back(f);
  if (!line.empty() && line.back() == ',') v.emplace_back();
  return v;
}
}  // namespace

GemmAlgoTable read_gemm_algo_table(const std::string& path) {
  std::ifstream in(path);
  if (!in)
    throw InputError(fmt::format("{}: cannot open the GEMM algorithm table (the H100 table is recorded by "
                                 "scripts/device/gemm_algos.sh on an H100: copy its gemm_algo_table.csv to "
                                 "data/gemm_algos_h100/table.csv, or pass --algo-table FILE; docs/gemm.md "
                                 "\"Algorithms\")", path));
  std::vector<GemmAlgoEntry> entries;
  std::map<std::string, std::size_t> col;
  std::string line;
  for (std::size_t ln = 1; std::getline(in, line); ++ln) {
    if (line.empty() || line[0] == '#') continue;
    const auto f = split_csv(line);
    if (col.empty()) {
      for (std::size_t i = 0; i < f.size(); ++i) col[f[i]] = i;
      for (const char* need : {"scaling", "fast_accum", "out", "m", "n", "k", "splitk", "reduction"})
        if (!col.count(need)) throw InputError(fmt::format("{}:{}: header lacks column '{}'", path, ln, need));
      continue;
    }
    auto field = [&](const char* name) -> const std::string& {
      const std::size_t i = col.at(name);
      static const std::string empty;
      return i < f.size() ? f[i] : empty;
    };
    auto num = [&](const char* name) -> long long {
      const std::string& s = field(name);
      std::size_t used = 0;
      long long v = 0;
      try {
        v = std::stoll(s, &used);
      } catch (const std::exception&) {
        used = 0;
      }
      if (s.empty() || used != s.size())
        throw InputError(fmt::format("{}:{}: field {} = '{}' is not an integer", path, ln, name, s));
      return v;
    };
    GemmAlgoEntry e;
    e.scaling = field("scaling");
    if (e.scaling != "tensor" && e.scaling != "1x128_128x128" && e.scaling != "1x128_1x128")
      throw InputError(fmt::format("{}:{}: scaling '{}' is not tensor, 1x128_128x128 or 1x128_1x128", path, ln,
                                   e.scaling));
    e.fast_accum = num("fast_accum") != 0;
    if (field("out") != "f32" && field("out") != "bf16")
      throw InputError(fmt::format("{}:{}: out '{}' is not f32 or bf16", path, ln, field("out")));
    e.bf16_out = field("out") == "bf16";
    e.m = std::size_t(num("m")), e.n = std::size_t(num("n")), e.k = std::size_t(num("k"));
    if (field("splitk").empty()) {  // cuBLASLt had no algorithm
      e.supported = false;
    } else {
      e.algo.splitk = int(std::max(1LL, num("splitk")));
      e.algo.reduction = e.algo.splitk > 1 ? split_reduction_from_cublas(int(num("reduction"))) : SplitReduction::none;
      if (col.count("algo_id") && !field("algo_id").empty()) e.algo_id = int(num("algo_id"));
      if (col.count("tile") && !field("tile").empty()) e.tile = int(num("tile"));
      if (col.count("stages") && !field("stages").empty()) e.stages = int(num("stages"));
    }
    entries.push_back(e);
  }
  if (entries.empty()) throw InputError(fmt::format("{}: no entries", path));
  return GemmAlgoTable(std::move(entries));
}

std::string default_gemm_algo_table_path() {
  if (const char* env = std::getenv("FP8FLOW_ALGO_TABLE"); env && *env) return env;
#ifdef FP8FLOW_SOURCE_DIR
  return std::string(FP8FLOW_SOURCE_DIR) + "/data/gemm_algos_h100/table.csv";
#else
  return "data/gemm_algos_h100/table.csv";
#endif
}

}  // namespace fp8flow::io
