// fp8flow validate --gpu --op dispatch [--preset P] [--tokens T] [--ranks R] [--seed S] [-o report.h5] [--json]
// (see validate_dispatch.hpp). Reports per rank and tensor: compared values, mismatches, the first one
// (rank, row with its expert / token / slot, column, both values in hex). -o appends them as a gpu_validation
// run: one case per rank, one part per compared tensor (io::gpu_validation_record).
#include "cli/usage.hpp"
#include "cli/validate_dispatch.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <vector>

#include "io/errors.hpp"
#include "reference/moe_layer.hpp"
#ifdef FP8FLOW_HAVE_CUDA
#include "cuda/ep_dispatch.hpp"
#include "cuda/ep_validate.hpp"
#include "io/gpu_validation_record.hpp"
#endif

namespace fp8flow::cli {

int run_validate_dispatch(const std::string& preset, std::size_t tokens, int ranks, std::uint64_t seed, bool json,
                          int threads, const std::string& output) {
  MoeShape s = preset_shape(preset);
  if (tokens) s.tokens = tokens;
  check_shape(s);
  if (ranks < 0) throw UsageError(fmt::format("--ranks {}: expected >= 1 (0: every visible GPU)", ranks));
#ifdef FP8FLOW_HAVE_CUDA
  const int have = cuda::EpRuntime::visible_devices();
  if (have == 0) {
    fmt::print(stderr, "fp8flow validate --op dispatch: no CUDA device visible on this machine; nothing validated\n");
    return 1;
  }
  int R = ranks == 0 ? std::min<int>(have, int(s.experts)) : ranks;
  if (R > have) {
    fmt::print(stderr, "fp8flow validate --op dispatch: --ranks {} asks for {} GPUs but {} {} visible; running on {}\n",
               ranks, ranks, have, have == 1 ? "is" : "are", have);
    R = have;
  }
  if (std::size_t(R) > s.experts)
    throw UsageError(fmt::format("--ranks {}: the preset has only {} experts (a rank would hold none)", R, s.experts));
  cuda::EpValidationOptions o;
  o.shape = s;
  o.ranks = R;
  o.seed = seed;
  o.threads = threads;
  const cuda::EpValidationResult res = cuda::validate_ep_dispatch_gpu(o);
  std::string stored;
  if (!output.empty()) {  // the HDF5 results store: one run of kind gpu_validation
    // shape: [tokens, hidden, ffn, experts, topk, align]; moe_shape adds the score function. The inputs
    // (x, router, weights, dy) are make_inputs(shape, seed): dist "moe_inputs".
    const nlohmann::json params{
        {"op", "dispatch"}, {"preset", preset}, {"shape", std::vector<std::size_t>{s.tokens, s.hidden, s.ffn,
                                                                                  s.experts, s.topk, s.align}},
        {"moe_shape", to_string(s)}, {"dist", "moe_inputs"}, {"seed", std::int64_t(seed)}, {"ranks", R},
        {"gpu", res.gpus.empty() ? std::string() : res.gpus.front()}, {"gpus", res.gpus}, {"nccl", res.nccl},
        {"build", io::Provenance::of_this_build().git_commit}};
    stored = io::store_gpu_validation(output, io::gpu_validation_record(params, res.parts));
  }
  if (json) {
    nlohmann::json j{{"op", "dispatch"}, {"preset", preset}, {"shape", to_string(s)}, {"ranks", R},
                     {"gpus", res.gpus}, {"nccl", res.nccl}, {"seed", seed}, {"all_bit_exact", res.ok()},
                     {"cpu_ms", res.cpu_ms}, {"gpu_ms", res.gpu_ms}};
    for (const auto& v : res.parts) {
      nlohmann::json r{{"op", v.op}, {"rows", v.rows}, {"bit_exact", v.ok()}, {"mismatches", v.mismatches()}};
      for (const auto& p : v.parts)
        r["parts"].push_back({{"what", p.what}, {"compared", p.compared}, {"mismatches", p.mismatches},
                              {"first_mismatch", p.first_mismatch}});
      j["results"].push_back(r);
    }
    if (!stored.empty()) j["report"] = stored;
    fmt::print("{}\n", j.dump(2));
  } else {
    fmt::print("expert-parallel dispatch/combine on {} rank(s): {}; NCCL {}\n", R, fmt::join(res.gpus, ", "), res.nccl);
    fmt::print("shape {} seed {}; CPU reference {:.0f} ms, GPU path {:.0f} ms\n", to_string(s), seed, res.cpu_ms,
               res.gpu_ms);
    std::size_t bad = 0, parts = 0;
    for (const auto& v : res.parts) {
      fmt::print("{} ({} permuted rows) vs {}: {}\n", v.op, v.rows, v.oracle, v.ok() ? "bit-exact" : "MISMATCH");
      for (const auto& p : v.parts) {
        ++parts;
        bad += p.mismatches ? 1 : 0;
        fmt::print("  {}: {} compared, {} mismatches\n", p.what, p.compared, p.mismatches);
        if (p.mismatches) fmt::print("    first: {}\n", p.first_mismatch);
      }
    }
    fmt::print("{} of {} comparisons bit-exact\n", parts - bad, parts);
    if (!stored.empty()) fmt::print("report: {}\n", stored);
  }
  return res.ok() ? 0 : 1;
#else
  fmt::print(stderr, "fp8flow validate --op dispatch: this fp8flow was built without CUDA (no nvcc at configure "
                     "time); rebuild where /usr/local/cuda exists\n");
  (void)json, (void)threads, (void)seed, (void)output;
  return 1;
#endif
}

}  // namespace fp8flow::cli
