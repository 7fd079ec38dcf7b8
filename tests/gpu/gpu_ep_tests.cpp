// Expert-parallel dispatch / expert compute / combine over NCCL (src/cuda/ep_dispatch.hpp) against the CPU
// routing model and the fp8_flow dataflow, bit for bit (src/cuda/ep_validate.hpp), on R ranks, one GPU each.
// Shapes: the tiny preset, an uneven token split, partial 128-blocks along K (F = 192) with a sigmoid router
// and align 16, and quickstart at 256 tokens.
#include <fmt/format.h>

#include "cuda/ep_dispatch.hpp"
#include "cuda/ep_validate.hpp"
#include "gpu_quant_tests.hpp"

namespace fp8flow::gpu_tests {

int ep_dispatch(int ranks) {
  const int have = cuda::EpRuntime::visible_devices();
  if (have < ranks) {
    fmt::print("SKIPPED: {} ranks need {} GPUs, {} visible\n", ranks, ranks, have);
    return 77;
  }
  struct Case {
    const char* name;
    MoeShape shape;
    std::uint64_t seed;
  };
  MoeShape uneven = preset_shape("tiny");
  uneven.tokens = 47;
  MoeShape partial;
  partial.tokens = 301, partial.hidden = 384, partial.ffn = 192, partial.experts = 8, partial.topk = 3;
  partial.align = 16, partial.score = ScoreFunction::sigmoid;
  MoeShape qs = preset_shape("quickstart");
  qs.tokens = 256;
  const Case cases[] = {{"tiny", preset_shape("tiny"), 3}, {"tiny, 47 tokens", uneven, 4},
                        {"partial K blocks, sigmoid, align 16", partial, 5}, {"quickstart, 256 tokens", qs, 6}};
  int failed = 0;
  for (const Case& c : cases) {
    cuda::EpValidationOptions o;
    o.shape = c.shape;
    o.ranks = ranks;
    o.seed = c.seed;
    const cuda::EpValidationResult r = cuda::validate_ep_dispatch_gpu(o);
    fmt::print("== {} ({}), {} rank(s), NCCL {}: {}\n", c.name, to_string(c.shape), ranks, r.nccl,
               r.ok() ? "bit-exact" : "MISMATCH");
    for (const auto& v : r.parts) fmt::print("{}", cuda::to_text(v));
    failed += r.ok() ? 0 : 1;
  }
  fmt::print("{} of {} cases bit-exact on {} rank(s)\n", std::size(cases) - std::size_t(failed), std::size(cases), ranks);
  return failed ? 1 : 0;
}

}  // namespace fp8flow::gpu_tests
