// Library-level study runners: one call = one run of an experiment, returning plain result structs.
// The CLI (`fp8flow run`, `fp8flow transpose-study`) and the HDF5 store are built on these; nothing here
// prints or writes files. Results depend only on the config (never on `threads`).
//
//   transpose_study    PAPER.md 3.5: the four column copies (naive, paper_kernel, exact, direct) of a
//                      1xN te_pow2 rowwise quantization of a seeded synthetic tensor, each against the
//                      high-precision input and against direct; plus where paper_kernel and exact differ.
//   gemm_accum_study   PAPER.md 5: random FP8 codes with random power-of-two block scales, every listed
//                      AccumModel against the `exact` model.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "formats/format_spec.hpp"
#include "quant/distributions.hpp"
#include "quant/metrics.hpp"
#include "quant/quant_io.hpp"
#include "quant/quantize.hpp"
#include "quant/transpose.hpp"
#include "reference/gemm.hpp"

namespace fp8flow {

// ---- transpose_study -----------------------------------------------------------------------------
struct TransposeStudyConfig {
  std::size_t rows = 1024, cols = 2048;
  Distribution distribution = Distribution::activations;
  std::uint64_t seed = 1;
  std::vector<std::size_t> groups;  // expert-group sizes along rows; empty: one group
  float eps = 0.0f;                 // te_pow2 amax floor of the rowwise and the direct quantization
  int tile = 128;                   // rowwise 1xN, column copies Nx1
  const FormatSpec* payload = &e4m3;
  bool keep_tensors = false;        // fill TransposeStudyResult::x and ::copies
  int threads = 0;
  // Called after each of the study's kTransposeStudySteps steps with the number done (a progress bar).
  std::function<void(std::size_t)> progress;
};
inline constexpr std::size_t kTransposeStudySteps = 11;
// Bytes a transpose study of [rows, cols] holds at its peak (the input in float32 and float64, five
// quantized copies, three dequantized float64 copies, the metrics' work arrays), rounded up.
std::uint64_t transpose_study_bytes(std::uint64_t rows, std::uint64_t cols);

// One row of the study's metrics table: `method` measured against `reference`.
struct StudyComparison {
  std::string method, reference;
  Metrics metrics;
};

struct TransposeStudyResult {
  QuantRecipe rowwise_recipe;
  // methods x references: every copy (and the rowwise tensor) vs "input" and vs "direct"; then the error
  // split: exact vs direct is the tile-scale cost, naive vs "exact" the double quantization, naive vs
  // direct the second rounding alone, exact and paper_kernel vs "rowwise" the SAT underflow tail.
  std::vector<StudyComparison> comparisons;
  SatDiffReport paper_vs_exact;
  // Only with keep_tensors: the input and the quantized tensors (rowwise, naive, paper_kernel, exact, direct).
  std::vector<float> x;
  std::vector<std::pair<std::string, QuantizedTensor>> tensors;
  // The comparison of `method` against `reference` (std::out_of_range if the study has none).
  const Metrics& metrics(std::string_view method, std::string_view reference) const;
};
inline constexpr const char* kTransposeStudyMethods[] = {"rowwise", "naive", "paper_kernel", "exact", "direct"};

// Throws InputError for an unusable config (groups not summing to rows, tile < 2, ...).
TransposeStudyResult transpose_study(const TransposeStudyConfig& c);
// The same study of a given input (a user's .npy, say): `in.x` is quantized, `in.truth` is the reference of
// the "input" rows (as precise as the source: a float64 file keeps its doubles), `in.dtype` the source type
// the scale rule sees. The config's rows, cols, distribution and seed are not used.
TransposeStudyResult transpose_study(const TransposeStudyConfig& c, const InputTensor& in);

// ---- gemm_accum_study ----------------------------------------------------------------------------
struct GemmAccumStudyConfig {
  std::size_t m = 128, n = 128, k = 4096;   // OUT[m, n] = A[m, k] . B[n, k]^T
  const FormatSpec* format = &e4m3;
  Granularity a_gran = k1x128, b_gran = k128x128;
  int scale_spread_log2 = 8;                // scale_inv = 2^e, e uniform in [-spread, spread]
  std::uint64_t seed = 1;
  std::vector<AccumModel> models{AccumModel::fp32_seq, AccumModel::fp32_pairwise, AccumModel::promote,
                                 AccumModel::hopper_fast};
  AccumParams accum;
  bool keep_tensors = false;
  int threads = 0;
};

struct GemmAccumStudyResult {
  struct Model {
    AccumModel model;
    Metrics vs_exact;
    // fp32 ULP distance d = ordinal(model) - ordinal(exact) per output, binned by magnitude:
    // bin 0: d == 0; bin b > 0: 2^(b-1) <= d < 2^b; bin -b: the same for -d.
    std::map<long long, std::size_t> ulp_log2_hist;
    std::vector<float> out;  // only with keep_tensors
  };
  std::vector<Model> models;
  // Only with keep_tensors: the operands and the exact output.
  std::vector<std::uint8_t> a_codes, b_codes;
  std::vector<float> a_scale_inv, b_scale_inv, exact_out;
};

// Random finite codes of `format` (NaN and Inf codes redrawn), splitmix64 from `seed` (stream 0: A, 1: B).
std::vector<std::uint8_t> random_finite_codes(const FormatSpec& format, std::size_t count, std::uint64_t seed,
                                              std::uint64_t stream);
// The binned fp32 ULP distance described above.
long long ulp_log2_bin(float test, float exact);

// Throws InputError for an unusable config (operands with different K blocks, ...).
GemmAccumStudyResult gemm_accum_study(const GemmAccumStudyConfig& c);

}  // namespace fp8flow
