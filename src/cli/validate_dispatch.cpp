// fp8flow validate --gpu --op dispatch [--preset P] [--tokens T] [--ranks R] [--seed S] [--json]
// (see validate_dispatch.hpp). Reports per rank and tensor: compared values, mismatches, the first one
// (rank, row with its expert / token / slot, column, both values in hex).
#include "cli/validate_dispatch.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "io/errors.hpp"
#include "reference/moe_layer.hpp"
#ifdef FP8FLOW_HAVE_CUDA
#include "cuda/ep_dispatch.hpp"
#include "cuda/ep_validate.hpp"
#endif

namespace fp8flow::cli {

int run_validate_dispatch(const std::string& preset, std::size_t tokens, int ranks, std::uint64_t seed, bool json,
                          int threads) {
  MoeShape s = preset_shape(preset);
  if (tokens) s.tokens = tokens;
  check_shape(s);
  if (ranks < 0) throw InputError(fmt::format("--ranks {}: expected >= 1 (0: every visible GPU)", ranks));
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
    throw InputError(fmt::format("--ranks {}: the preset has only {} experts (a rank would hold none)", R, s.experts));
  cuda::EpValidationOptions o;
  o.shape = s;
  o.ranks = R;
  o.seed = seed;
  o.threads = threads;
  const cuda::EpValidationResult res = cuda::validate_ep_dispatch_gpu(o);
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
  }
  return res.ok() ? 0 : 1;
#else
  fmt::print(stderr, "fp8flow validate --op dispatch: this fp8flow was built without CUDA (no nvcc at configure "
                     "time); rebuild where /usr/local/cuda exists\n");
  (void)json, (void)threads, (void)seed;
  return 1;
#endif
}

}  // namespace fp8flow::cli
