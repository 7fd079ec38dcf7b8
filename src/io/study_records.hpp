// One resolved run (io/experiment.hpp) executed by its study runner (reference/studies.hpp) and turned
// into the tables, histograms and tensors of the results store (io/results_store.hpp).
// The record's content depends only on the RunSpec: never on `threads` or on which MPI rank ran it.
#pragma once

#include <string>

#include "io/experiment.hpp"
#include "io/results_store.hpp"

namespace fp8flow::io {

// Runs `spec` and returns its record with provenance filled in (start/end time, threads, build).
RunRecord execute_run(const RunSpec& spec, const std::string& experiment, int threads);

}  // namespace fp8flow::io
