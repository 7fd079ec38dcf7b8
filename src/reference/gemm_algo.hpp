// The GEMM algorithm as explicit parameters of the CPU model (docs/gemm.md "Algorithms"): how cuBLASLt's chosen
// kernel splits K (split-K count, how K is cut into the splits) and how the splits' partial results are reduced
// (cuBLASLt's CUBLASLT_REDUCTION_SCHEME_*), plus `auto`: the algorithm cuBLASLt's default heuristic picks on
// the H100 for a shape and configuration, looked up in a table recorded there (data/gemm_algos_h100/).
//
// Per output, split s covers K range [k_s, k_{s+1}) and forms its own result exactly as the unsplit model does
// over that range (accumulator chain, promotion every N_C, per-128-block scaling); the splits are then reduced.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "reference/gemm.hpp"

namespace fp8flow {

// cuBLASLt CUBLASLT_REDUCTION_SCHEME_*: none (0), inplace (1: the splits add into the output, in split order
// in this model), compute (2: partials in the compute type, fp32, summed by a reduction kernel), output
// (4: partials stored in the output type, then summed).
enum class SplitReduction { none, inplace, compute, output };
std::string_view to_string(SplitReduction r);
SplitReduction parse_split_reduction(std::string_view s);  // InputError listing the names
SplitReduction split_reduction_from_cublas(int scheme);    // 0, 1, 2, 4; InputError otherwise

struct GemmAlgo {
  int splitk = 1;                                // number of K splits
  SplitReduction reduction = SplitReduction::none;
  int split_unit = 128;                          // every split but the last covers a multiple of this many k
  // Tensor scaling: true: each split's partial is multiplied by RN(sa * sb) before the reduction; false: the
  // reduced sum is scaled once (blockwise scaling is always applied per 128-block, inside each split).
  bool scale_per_split = true;
  std::string to_string() const;                 // "splitk=4,reduction=compute" ("splitk=1" when unsplit)
  friend bool operator==(const GemmAlgo&, const GemmAlgo&) = default;
};

// "splitk=N,reduction=R,unit=U,scale=split|sum" (any subset, any order; "none" = splitk=1); InputError naming
// the field and value. "auto" is not parsed here (see GemmAlgoTable).
GemmAlgo parse_gemm_algo(std::string_view s);

// Splits of [0, K): the boundaries k_0 = 0 < k_1 < ... < k_S = K. Each split but the last takes
// ceil(ceil(K / unit) / S) units (cuBLASLt's split-K cuts K in whole k-tiles); fewer splits if K runs out.
std::vector<std::size_t> split_bounds(std::size_t K, const GemmAlgo& algo);

// One recorded H100 heuristic pick (data/gemm_algos_h100/table.csv): the configuration, the shape, and what
// the model needs of the algorithm.
struct GemmAlgoEntry {
  std::string scaling;  // tensor, 1x128_128x128, 1x128_1x128
  bool fast_accum = false, bf16_out = false;
  std::size_t m = 0, n = 0, k = 0;
  bool supported = true;  // false: cuBLASLt has no algorithm for it (blockwise with fast accumulation)
  GemmAlgo algo;
  int algo_id = -1, tile = -1, stages = -1;  // recorded for reference
};

// The heuristic's table and the rule for shapes it does not hold: each of M, N, K is mapped to the nearest
// recorded value on a log2 scale (ties to the larger), the entry of that grid point is used, and the lookup
// says it was not exact (the CLI prints a warning).
class GemmAlgoTable {
 public:
  explicit GemmAlgoTable(std::vector<GemmAlgoEntry> entries);
  struct Lookup {
    GemmAlgo algo;
    bool exact = true;         // the shape is in the table
    bool supported = true;
    std::size_t m = 0, n = 0, k = 0;  // the grid point used
  };
  // InputError if the configuration has no entries at all.
  Lookup lookup(std::string_view scaling, bool fast_accum, bool bf16_out, std::size_t m, std::size_t n,
                std::size_t k) const;
  std::size_t size() const { return entries_.size(); }

 private:
  std::vector<GemmAlgoEntry> entries_;
  std::vector<std::size_t> ms_, ns_, ks_;
};

// The GEMM under a model and an algorithm; bf16_out: the output rounded to bf16 (RNE) as cuBLASLt writes it
// (returned widened to float). algo.splitk == 1 and fp32 output give exactly gemm().
std::vector<float> gemm_algo(const GemmOperand& a, const GemmOperand& b, AccumModel m, const AccumParams& p,
                             const GemmAlgo& algo, bool bf16_out = false, int threads = 0);
// Selected outputs only, rows x cols (row-major): replays sampled recordings of large GEMMs (only the listed
// rows of A and B are decoded).
std::vector<float> gemm_algo_at(const GemmOperand& a, const GemmOperand& b, AccumModel m, const AccumParams& p,
                                const GemmAlgo& algo, bool bf16_out, const std::vector<std::size_t>& rows,
                                const std::vector<std::size_t>& cols, int threads = 0);

float round_to_bf16(float x);  // RNE, NaN stays NaN

}  // namespace fp8flow
