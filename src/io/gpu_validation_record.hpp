// Results of GPU-vs-CPU bit-for-bit validation (fp8flow validate --gpu, every --op) and their HDF5
// record: a run of kind `gpu_validation` in the results store (docs/results-format.md). CPU code: the CUDA
// side (src/cuda/gpu_validate.hpp, ep_validate.hpp, gemm_validate.hpp) fills these structs, this file turns
// them into a RunRecord, so the writing is tested on machines without a GPU. The kernels (quantize,
// transpose, dequantize) and dispatch (one case per rank, one part per compared tensor) share
// gpu_validation_record; GEMMs, compared against a model and an error bound, have gemm_validation_record.
#pragma once

#include <cstddef>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "io/gemm_comparison.hpp"
#include "io/results_store.hpp"

namespace fp8flow::io {

struct BitCompare {
  std::string what;               // e.g. "colwise codes"
  std::size_t compared = 0, mismatches = 0;
  std::string first_mismatch;     // "codes[r=3, c=129] tile (0,1) input 0x3F8CCCCD: golden 0x38, gpu 0x39"
};

struct GpuValidation {
  std::string op;                 // "quant_1x128_128x1_e4m3_te_pow2_from_bf16", "sat_e4m3_1x128_paper_kernel", ...
  std::string input;              // what the input was: "activations seed 1", "adversarial seed 3", "x.npy"
  std::size_t rows = 0, cols = 0;
  std::vector<std::size_t> groups;
  std::string oracle;             // "golden" (scalar loops) or "fast" (the CPU fast path, itself tested = golden)
  std::vector<BitCompare> parts;
  double gpu_ms = -1.0;           // one warm launch, CUDA events (-1: not timed)
  double cpu_ms = -1.0;           // the CPU oracle, wall clock
  bool ok() const { return mismatches() == 0; }
  std::size_t mismatches() const;
  std::size_t compared() const;
  std::string first_mismatch() const;  // "<part>: <text>" of the first part with a mismatch, else ""
};

// The run: params (resolved, hashed into the run id; the caller includes what makes the run unique,
// e.g. gpu, shape, dist, seed, options), tables `cases` (one row per validation) and `ops` (per op:
// cases, elements, compared, mismatches, first mismatch, total GPU and CPU time), `parts` (one row per
// compared output of each case). Summary attributes on `cases`: cases, failing, elements, mismatches.
RunRecord gpu_validation_record(const nlohmann::json& params, const std::vector<GpuValidation>& results);

// One cuBLASLt FP8 GEMM of `fp8flow validate --gpu --op gemm` against a CPU accumulation model, bit for
// bit, and against the a-priori error bound around the exact product: what cuda::GemmValidation found
// (GemmComparison) plus the configuration its label spells out, so that the record has each as a column.
struct GemmValidationCase : GemmComparison {
  std::string scaling;              // "tensor", "1x128_128x128", "1x128_1x128" (cuda::to_string(GemmScaling))
  bool fast_accum = false;          // CUBLASLT_MATMUL_DESC_FAST_ACCUM
  std::string out;                  // output type: "f32" or "bf16"
  std::string model;                // the CPU accumulation model compared with: "h100", "h100_fast", ...
  bool bits_required = true;        // a bit mismatch fails the case (the fitted presets); else the bound only
  std::size_t m = 0, n = 0, k = 0;
  std::string op() const;           // "gemm_e4m3_1x128_128x128_f32_fast_accum_vs_h100_fast"
  double bit_exact_fraction() const;  // bit_exact / compared; NaN when nothing was compared (an error)
  bool bits_ok() const { return error.empty() && bit_exact == compared; }
  bool bound_ok() const { return error.empty() && bound_violations == 0; }
  bool ok() const { return bound_ok() && (!bits_required || bits_ok()); }  // validate's exit-status rule
};

// The run of `validate --gpu --op gemm`: kind gpu_validation, params as above (the caller's: op, shape
// [M, N, K], dist, seed, accum, gpu, build), tables `cases` (one row per GEMM: configuration, bit-exact
// count and fraction, mismatches, first mismatch, bound violations, worst |err|/bound, first violation,
// cuBLASLt error, ok), `ops` (per op, summed) and `parts` (two rows per case: the output bits and the error
// bound). `input` names the operands, e.g. "activations seed 1" (A: seed, B: seed + 1).
RunRecord gemm_validation_record(const nlohmann::json& params, const std::string& input,
                                 const std::vector<GemmValidationCase>& results);

// append_run_once (results_store.hpp), and the sentence `fp8flow validate` prints after "report: ":
// "written to FILE as run HASH" or "FILE already holds this validation as run HASH; not written again".
std::string store_gpu_validation(const std::filesystem::path& file, RunRecord rec);

}  // namespace fp8flow::io
