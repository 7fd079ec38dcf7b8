// The error ledger of a dataflow run: every tensor it defined, against the fp64 golden run (metrics of
// src/quant/metrics.hpp, whole tensor and per expert), and the attribution of the output error to the
// casts: rerun with one cast replaced by an exact one (its output keeps the input's values) and see how
// much of each output's squared error disappears.
#pragma once

#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "quant/metrics.hpp"
#include "reference/dataflow.hpp"

namespace fp8flow {

struct TensorError {
  std::string tensor;        // name in the dataflow
  std::string golden;        // the golden tensor it is compared with ("xp.col" -> "xp")
  Precision prec;
  Metrics all;
  std::vector<Metrics> per_expert;  // for tensors grouped per expert (empty otherwise)
};

// Every tensor `df` defined (graph order, final binding) that has a golden counterpart: the same name, or
// the name up to its first '.' (quantized copies: "act.q", "act.col").
std::vector<TensorError> error_ledger(const Dataflow& df, const Env& golden, const Env& test, bool per_expert);

// The layer's outputs whose error the attribution tracks.
inline const std::vector<std::string> kLayerOutputs{"y", "dx", "dwr", "dw1", "dw2"};

struct CastAttribution {
  std::size_t step = 0;
  std::string label;                   // "quantize xp -> xp.col (quant_128x1_e4m3_te_pow2)"
  CastKind kind = CastKind::none;
  std::vector<double> share;           // per kLayerOutputs: 1 - err^2(cast exact) / err^2(as run)
};
// Squared error sum(test - golden)^2 of one tensor.
double squared_error(const Env& golden, const Env& test, const std::string& name);
std::vector<CastAttribution> attribute_casts(const Dataflow& df, const Context& ctx, const MoeInputs& in,
                                             const Env& golden, const Env& as_run, const ExecOptions& o);
std::string describe(const Step& s);

nlohmann::json to_json(const TensorError& e);
nlohmann::json to_json(const CastAttribution& a);

}  // namespace fp8flow
