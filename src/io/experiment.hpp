// Experiment files (TOML, docs/experiments.md): what to run, its parameters and its sweep axes, resolved
// into a flat list of runs, each identified by a hash of its resolved parameters.
//
//   [experiment]                      [experiment]
//   name = "demo"                     name = "demo"
//   kind = "transpose_study"          [[study]]
//   [params]                          kind = "transpose_study"
//   shape = [256, 512]                params = { shape = [256, 512] }
//   [sweep]                           sweep = { seed = [1, 2] }
//   seed = [1, 2, 3]                  [[study]]
//   distribution = ["normal", ...]    kind = "gemm_accum_study"
//   [sweep.zip]                       ...
//   shape = [[256, 512], [512, 256]]
//   groups = [[], [128, 128, 256]]
//
// Every problem (syntax, unknown key, wrong type, bad value, inconsistent combination) is an InputError
// that starts with `file:line:column:` and names the key and what was expected.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace fp8flow::io {

// A kind of study an experiment can run. `built == false`: the kind is known (files may name it) but
// its implementation has not landed; check/run reject it with `note`.
struct ExperimentKind {
  std::string_view name, description;
  bool built;
  std::string_view note;
};
const std::vector<ExperimentKind>& experiment_kinds();

// One resolved run: the kind and every one of its parameters (defaults filled in, canonical types).
struct RunSpec {
  std::string kind;
  nlohmann::json params;  // object, keys sorted
  std::string hash;       // run_hash(kind, params)
  std::string study;      // the [[study]] name it came from ("" when unnamed)
};

// 16 hex digits: FNV-1a 64 of canonical_run_json(kind, params).
std::string run_hash(std::string_view kind, const nlohmann::json& params);
// {"kind":...,"params":{...}} with sorted keys and no whitespace: what the hash covers.
std::string canonical_run_json(std::string_view kind, const nlohmann::json& params);
// A short human label of the key parameters, e.g. "activations 1024x2048 seed=1".
std::string run_label(const RunSpec& r);

struct Experiment {
  std::string source;  // file name as given (used in messages)
  std::string name, description;
  std::vector<RunSpec> runs;  // expansion order, duplicates (same hash) removed
  std::size_t duplicates = 0;
};

// Parses and validates; throws InputError "file:line:column: ..." on any problem.
Experiment load_experiment(const std::filesystem::path& file);
Experiment parse_experiment(std::string_view toml_text, std::string_view source_name);

// Guard against accidental explosions of the cartesian product.
inline constexpr std::size_t kMaxRuns = 1'000'000;

}  // namespace fp8flow::io
