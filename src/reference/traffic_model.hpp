// Memory traffic of a dataflow, from the graph alone: a shape-only run of the executor (uniform routing,
// every expert gets T*K/E rows, padded) records the bytes each step reads and writes (elements times
// storage precision, plus fp32 scales of fp8 tensors) and the activations the forward keeps for the
// backward (tensors made by the inputs or fwd phases and read by a bwd step). Scaled to any shape:
// pass the model's MoeShape (tokens = tokens per microbatch on this rank).
#pragma once

#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "reference/dataflow.hpp"

namespace fp8flow {

struct StepTraffic {
  std::size_t step = 0;
  Op op;
  Phase phase;
  std::string label;
  double read = 0, written = 0;  // bytes
};
struct SavedTensor {
  std::string name;
  Precision prec;
  double bytes = 0;
};
struct Traffic {
  std::string dataflow;
  MoeShape shape;
  std::vector<StepTraffic> steps;
  std::vector<SavedTensor> saved;
  double read(Phase p) const;
  double written(Phase p) const;
  double saved_bytes() const;
};

Traffic traffic_model(const Dataflow& df, const MoeShape& shape);
nlohmann::json to_json(const Traffic& t, bool per_step);
std::string to_text(const std::vector<Traffic>& ts);  // one table, a row per dataflow

}  // namespace fp8flow
