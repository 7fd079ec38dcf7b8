// Results of GPU-vs-CPU bit-for-bit validation (fp8flow validate --gpu) and their HDF5 record: a run of
// kind `gpu_validation` in the results store (docs/results-format.md). CPU code: the CUDA side
// (src/cuda/gpu_validate.hpp) fills these structs, this file turns them into a RunRecord, so the
// writing is tested on machines without a GPU.
#pragma once

#include <cstddef>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

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

// Appends the run to the HDF5 store `file` (created if absent). Returns false (nothing written) when
// the same run (same hash) is already there. Throws InputError for a file that is not an fp8flow store
// or is locked by another writer.
bool write_gpu_validation(const std::filesystem::path& file, RunRecord rec);

}  // namespace fp8flow::io
