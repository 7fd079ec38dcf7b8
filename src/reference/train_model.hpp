// The pieces of the training simulation (reference/train.hpp) that tests reach into: parameter layout and
// initialisation, batches, the per-layer MoE runner over the dataflow executor, and the loss with its
// gradients at given weights (the finite-difference checks call it directly).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "reference/dataflow.hpp"
#include "reference/train.hpp"

namespace fp8flow::train::model {

// Parameters in this order: emb [V, H], wout [V, H], then per layer l: l.conv [width, H], l.wm [H, H],
// l.wr [E, H], l.w1 [E*2F, H], l.w2 [E*H, F] (the MoE weights in the executor's layout, moe_layer.hpp).
struct ParamInfo {
  std::string name;
  std::size_t rows, cols;
  bool decay;  // AdamW weight decay applies (matrices; not the embedding nor the mixing kernel)
};
std::vector<ParamInfo> param_layout(const TrainConfig& c);
using Params = std::vector<std::vector<float>>;  // fp32 master weights
Params init_params(const TrainConfig& c);        // seeded: N(0, sd) per tensor, docs/training.md
std::vector<std::vector<double>> to_compute(const Params& p);

struct Batch {
  std::vector<std::uint8_t> tokens, targets;  // [batch * seq]; targets = the next byte
};
// `batch` windows of seq + 1 bytes at seeded offsets (stream of (seed, step)).
Batch make_batch(const TrainConfig& c, std::span<const std::uint8_t> corpus, int step);

// The dataflow's steps reordered for training: every step not needing dy first (the prologue's bf16
// copies of x and the weights, the forward), then the ones that do (dy's copies, the backward). `split`
// is the index of the first backward step. Throws InputError if the forward part would need dy.
Dataflow training_order(const Dataflow& df, std::size_t& split);
// An Env with x, wr, w1, w2 (fp64 values) and dy = 0 of the layer shape `s`.
Env layer_env(const MoeShape& s, const std::vector<double>& x, const std::vector<double>& wr,
              const std::vector<double>& w1, const std::vector<double>& w2);
// Routing from the float64 router logits x . wr^T.
Routing fp64_routing(const MoeShape& s, const std::vector<double>& x, const std::vector<double>& wr);

// Called before (before = true) and after each executed step of a layer's graph.
using Observer = std::function<void(std::size_t layer, const Step& s, const Env& env, bool before)>;

// One Env per layer: forward() runs the graph up to `split`, backward() sets dy and runs the rest.
class MoeRunner {
 public:
  MoeRunner(const TrainConfig& c, std::size_t tokens);
  ~MoeRunner();
  MoeRunner(MoeRunner&&) noexcept;
  std::vector<double> forward(std::size_t layer, const std::vector<double>& x, const std::vector<double>& wr,
                              const std::vector<double>& w1, const std::vector<double>& w2, const Observer& obs);
  void backward(std::size_t layer, const std::vector<double>& dy, const Observer& obs);
  const Env& env(std::size_t layer) const;
  const Context& context(std::size_t layer) const;
  const Dataflow& dataflow() const { return dataflow_; }
  std::size_t split() const { return split_; }

 private:
  struct Layer;
  std::size_t split_ = 0;
  Dataflow dataflow_;
  int threads_;
  MoeShape shape_;
  std::vector<Layer> layers_;
};

struct Hooks {
  Observer observer;
  // After a layer's backward: its input x, weights and upstream gradient dy (the golden comparison).
  std::function<void(std::size_t layer, const std::vector<double>& x, const std::vector<double>& wr,
                     const std::vector<double>& w1, const std::vector<double>& w2, const std::vector<double>& dy)>
      after_backward;
};

// Mean next-byte cross-entropy of `b` at weights `w` (parameter order of param_layout); with `grads`
// also every parameter's gradient (the MoE's from the dataflow's backward).
double loss_and_grad(const TrainConfig& c, const std::vector<std::vector<double>>& w, const Batch& b, MoeRunner& moe,
                     std::vector<std::vector<double>>* grads, const Hooks& hooks = {});

}  // namespace fp8flow::train::model
