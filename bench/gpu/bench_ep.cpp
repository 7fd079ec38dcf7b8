// fp8flow-ep-bench: expert-parallel dispatch (BF16 vs FP8) and combine over NCCL on R local GPUs
// (src/cuda/ep_dispatch.hpp, docs/ep.md), at the paper's shape by default: 32768 tokens in all (split over
// the ranks), hidden 7168, 256 experts, top-8; uniform random routing (distinct experts per token).
// Each phase is timed with CUDA events on every rank's stream (max over ranks), median over --reps after 3
// warm-ups. Bytes on the wire are counted from the actual send counts; bandwidth = bytes between distinct
// ranks / all-to-all time (aggregate over ranks, and per rank).
// Usage: fp8flow-ep-bench [--tokens N] [--hidden H] [--experts E] [--topk K] [--ranks R] [--reps N] [--seed S]
//                         [--json FILE]
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cuda/ep_dispatch.hpp"
#include "formats/splitmix64.hpp"

using namespace fp8flow;
using namespace fp8flow::cuda;

namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

struct Args {
  std::size_t tokens = 32768, hidden = 7168, experts = 256, topk = 8;
  int ranks = 0, reps = 20;
  std::uint64_t seed = 1;
  std::string json;
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    auto val = [&]() -> std::string {
      if (i + 1 >= argc) {
        fmt::print(stderr, "{}: missing value\n", k);
        std::exit(2);
      }
      return argv[++i];
    };
    if (k == "--tokens") a.tokens = std::stoull(val());
    else if (k == "--hidden") a.hidden = std::stoull(val());
    else if (k == "--experts") a.experts = std::stoull(val());
    else if (k == "--topk") a.topk = std::stoull(val());
    else if (k == "--ranks") a.ranks = std::stoi(val());
    else if (k == "--reps") a.reps = std::stoi(val());
    else if (k == "--seed") a.seed = std::stoull(val());
    else if (k == "--json") a.json = val();
    else {
      fmt::print(stderr, "unknown option {}\n", k);
      std::exit(2);
    }
  }
  return a;
}

// Uniform routing: K distinct experts per token (partial Fisher-Yates), probs normalised random weights.
void make_routing(const Args& a, std::size_t t0, std::size_t n, std::vector<std::int32_t>& expert,
                  std::vector<float>& prob) {
  expert.resize(n * a.topk);
  prob.resize(n * a.topk);
  std::vector<std::int32_t> perm(a.experts);
  for (std::size_t t = 0; t < n; ++t) {
    std::uint64_t state = a.seed * 1000003 + t0 + t;
    for (std::size_t e = 0; e < a.experts; ++e) perm[e] = std::int32_t(e);
    float sum = 0;
    for (std::size_t j = 0; j < a.topk; ++j) {
      const std::size_t pick = j + splitmix64_next(state) % (a.experts - j);
      std::swap(perm[j], perm[pick]);
      expert[t * a.topk + j] = perm[j];
      sum += prob[t * a.topk + j] = 0.5f + float(splitmix64_next(state) % 1000) / 1000.0f;
    }
    for (std::size_t j = 0; j < a.topk; ++j) prob[t * a.topk + j] /= sum;
  }
}

}  // namespace

int main(int argc, char** argv) {
  const Args a = parse(argc, argv);
  const int have = EpRuntime::visible_devices();
  if (have == 0) {
    fmt::print("SKIPPED: no CUDA device visible\n");
    return 77;
  }
  int R = a.ranks ? a.ranks : have;
  if (R > have) {
    fmt::print("--ranks {} but {} GPU(s) visible: running on {}\n", R, have, have);
    R = have;
  }
  EpShape sh{a.tokens, a.hidden, a.experts, a.topk, 128, 0, R};
  EpRuntime ep(sh);
  std::vector<std::string> gpus;
  for (int r = 0; r < R; ++r) gpus.push_back(ep.device_name(r));
  fmt::print("fp8flow-ep-bench: {} rank(s) [{}], NCCL {}; tokens {} ({} per rank), hidden {}, experts {}, top-{}; "
             "median of {} reps\n",
             R, fmt::join(gpus, ", "), EpRuntime::nccl_version(), a.tokens, a.tokens / std::size_t(R), a.hidden,
             a.experts, a.topk, a.reps);
  for (int p = 0; p < R; ++p) {
    std::vector<std::int32_t> ex;
    std::vector<float> pr;
    make_routing(a, ep.token_begin(p), ep.token_count(p), ex, pr);
    ep.set_routing(p, ex, pr);
  }
  ep.fill_random_tokens(a.seed);
  nlohmann::json out{{"gpus", gpus}, {"nccl", EpRuntime::nccl_version()}, {"ranks", R}, {"tokens", a.tokens},
                     {"hidden", a.hidden}, {"experts", a.experts}, {"topk", a.topk}, {"reps", a.reps}};
  fmt::print("{:<14} {:>9} {:>9} {:>9} {:>9} {:>10} {:>9} {:>10} {:>11} {:>11} {:>10}\n", "dispatch", "quant ms",
             "layout", "counts", "pack", "all2all", "expand", "total ms", "remote MB", "all2all GB/s", "row bytes");
  for (const EpPayload p : {EpPayload::bf16, EpPayload::fp8}) {
    const char* name = p == EpPayload::fp8 ? "fp8" : "bf16";
    for (int w = 0; w < 3; ++w) ep.dispatch(p);
    std::vector<double> q, l, c, pk, aa, ex, tot;
    for (int i = 0; i < a.reps; ++i) {
      const EpTimings t = ep.dispatch(p);
      q.push_back(t.quantize), l.push_back(t.layout), c.push_back(t.counts), pk.push_back(t.pack);
      aa.push_back(t.all_to_all), ex.push_back(t.expand), tot.push_back(t.total());
    }
    const double remote = double(ep.dispatch_bytes(true)), all = double(ep.dispatch_bytes(false));
    const double gbs = remote / (median(aa) * 1e-3) / 1e9;
    fmt::print("{:<14} {:>9.3f} {:>9.3f} {:>9.3f} {:>9.3f} {:>10.3f} {:>9.3f} {:>10.3f} {:>11.1f} {:>11.1f} {:>10}\n",
               name, median(q), median(l), median(c), median(pk), median(aa), median(ex), median(tot), remote / 1e6,
               gbs, ep.dispatch_row_bytes(p));
    out["dispatch"][name] = {{"quantize_ms", median(q)}, {"layout_ms", median(l)}, {"counts_ms", median(c)},
                             {"pack_ms", median(pk)}, {"all_to_all_ms", median(aa)}, {"expand_ms", median(ex)},
                             {"total_ms", median(tot)}, {"remote_bytes", remote}, {"all_bytes", all},
                             {"row_bytes", ep.dispatch_row_bytes(p)}, {"all_to_all_GBps", gbs},
                             {"all_to_all_GBps_per_rank", gbs / R}};
  }
  // Combine (bf16 rows back to the home ranks, fp32 slot-order sum), after the fp8 dispatch above.
  ep.fill_random_outputs(a.seed + 1);
  for (int w = 0; w < 3; ++w) ep.combine();
  std::vector<double> l, pk, aa, rd, tot;
  for (int i = 0; i < a.reps; ++i) {
    const EpCombineTimings t = ep.combine();
    l.push_back(t.layout), pk.push_back(t.pack), aa.push_back(t.all_to_all), rd.push_back(t.reduce);
    tot.push_back(t.total());
  }
  const double remote = double(ep.combine_bytes(true)), all = double(ep.combine_bytes(false));
  const double gbs = remote / (median(aa) * 1e-3) / 1e9;
  fmt::print("{:<14} {:>9} {:>9.3f} {:>9} {:>9.3f} {:>10.3f} {:>9.3f} {:>10.3f} {:>11.1f} {:>11.1f} {:>10}\n",
             "combine bf16", "-", median(l), "-", median(pk), median(aa), median(rd), median(tot), remote / 1e6, gbs,
             a.hidden * 2);
  fmt::print("(combine: layout = grouping by home rank incl. count download; expand column = fp32 slot-order reduce)\n");
  out["combine"] = {{"layout_ms", median(l)}, {"pack_ms", median(pk)}, {"all_to_all_ms", median(aa)},
                    {"reduce_ms", median(rd)}, {"total_ms", median(tot)}, {"remote_bytes", remote},
                    {"all_bytes", all}, {"all_to_all_GBps", gbs}, {"all_to_all_GBps_per_rank", gbs / R}};
  if (!a.json.empty()) std::ofstream(a.json) << out.dump(2) << "\n";
  return 0;
}
