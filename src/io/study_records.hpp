// One resolved run (io/experiment.hpp) executed by its study runner (reference/studies.hpp) and turned
// into the tables, histograms and tensors of the results store (io/results_store.hpp).
// The record's content depends only on the RunSpec: never on `threads` or on which MPI rank ran it.
#pragma once

#include <functional>
#include <string>

#include "io/experiment.hpp"
#include "io/results_store.hpp"
#include "reference/studies.hpp"
#include "reference/train.hpp"

namespace fp8flow::io {

// Runs `spec` and returns its record with provenance filled in (start/end time, threads, build).
// `on_progress(fraction)` (optional) is called as a long run advances (train: after every step).
RunRecord execute_run(const RunSpec& spec, const std::string& experiment, int threads,
                      const std::function<void(double)>& on_progress = {});

// A resolved `transpose_study` run: its study config, and the tables a result adds to the run's record
// (execute_run uses both; `fp8flow transpose-study --out` records the study it has already computed).
TransposeStudyConfig transpose_study_config(const RunSpec& spec, int threads);
void add_transpose_study(const TransposeStudyResult& r, RunRecord& rec);
// The record of `spec` before its study runs: identity, parameters, provenance with start time and threads.
RunRecord begin_run_record(const RunSpec& spec, const std::string& experiment, int threads);

// Bytes running `spec` holds at its peak (reference/*'s estimates for its kind; train counts its corpus's
// size): what `run` and `check` compare with the memory limit before anything runs.
std::uint64_t run_memory_bytes(const RunSpec& spec);

// The training config of a resolved `train` run (io/experiment.cpp resolves the preset's values).
train::TrainConfig train_config(const RunSpec& spec, int threads);

}  // namespace fp8flow::io
