// The training simulation (reference/train.hpp): gradients against finite differences, determinism over
// thread counts, the loss going down, the HDF5 tables of the schema, the relative-loss-error statistic on
// constructed inputs, and bad input.
#include <catch2/catch.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <set>

#include "io/errors.hpp"
#include "io/experiment.hpp"
#include "io/results_store.hpp"
#include "io/study_records.hpp"
#include "io/train_summary.hpp"
#include "reference/train.hpp"
#include "reference/train_model.hpp"

using namespace fp8flow;
using namespace fp8flow::train;

namespace {

// A small config whose fp64 forward+backward takes milliseconds.
TrainConfig small_fp64() {
  TrainConfig c = preset_config("tiny");
  c.hidden = 16, c.ffn = 8, c.experts = 4, c.topk = 2, c.layers = 2, c.seq = 8, c.batch = 2, c.align = 4;
  c.dataflow = "fp64";
  c.seed = 3;
  return c;
}

std::vector<std::uint8_t> text_corpus() {
  const std::string s =
      "The quick brown fox jumps over the lazy dog; pack my box with five dozen liquor jugs. 0123456789 "
      "Sphinx of black quartz, judge my vow! How vexingly quick daft zebras jump.";
  return {s.begin(), s.end()};
}

std::string corpus_path() { return std::string(FP8FLOW_SOURCE_DIR) + "/data/cmake-manuals.txt"; }

}  // namespace

TEST_CASE("train: every parameter's gradient matches central finite differences (fp64 dataflow)", "[train]") {
  const TrainConfig c = small_fp64();
  const auto corpus = text_corpus();
  const model::Batch b = model::make_batch(c, corpus, 0);
  auto w = model::to_compute(model::init_params(c));
  model::MoeRunner moe(c, c.batch * c.seq);
  std::vector<std::vector<double>> g;
  model::loss_and_grad(c, w, b, moe, &g);
  const auto layout = model::param_layout(c);
  REQUIRE(layout.size() == w.size());
  const double h = 1e-5;
  std::size_t checked = 0;
  for (std::size_t p = 0; p < w.size(); ++p) {
    // A few entries of every tensor: for emb the rows of tokens in the batch (the others must be exactly 0).
    std::vector<std::size_t> at;
    if (layout[p].name == "emb") {
      for (int k = 0; k < 3; ++k) at.push_back(std::size_t(b.tokens[std::size_t(k) * 5]) * c.hidden + std::size_t(k) * 3);
      at.push_back(std::size_t('~') * c.hidden);  // '~' is not in the text: gradient 0
    } else {
      for (std::size_t k = 0; k < 4; ++k) at.push_back((k * 7919 + p * 31) % w[p].size());
    }
    for (std::size_t i : at) {
      const double keep = w[p][i];
      w[p][i] = keep + h;
      const double up = model::loss_and_grad(c, w, b, moe, nullptr);
      w[p][i] = keep - h;
      const double down = model::loss_and_grad(c, w, b, moe, nullptr);
      w[p][i] = keep;
      const double fd = (up - down) / (2 * h);
      INFO(layout[p].name << "[" << i << "]: analytic " << g[p][i] << ", finite difference " << fd);
      CHECK(std::abs(fd - g[p][i]) <= 1e-6 * std::max(1.0, std::abs(g[p][i])) + 1e-9);
      ++checked;
    }
  }
  CHECK(checked >= 4 * w.size());
  CHECK(g[0][std::size_t('~') * c.hidden] == 0.0);
}

TEST_CASE("train: the reordered graph runs dy's steps after the forward, and matches the whole graph", "[train]") {
  for (const char* name : {"bf16", "fp8_blockwise", "fp8_double_quant", "fp8_flow", "fp64"}) {
    INFO(name);
    const Dataflow df = builtin_dataflow(name);
    std::size_t split = 0;
    const Dataflow t = model::training_order(df, split);
    CHECK(t.steps.size() == df.steps.size());
    for (std::size_t i = 0; i < split; ++i) {
      CHECK(t.steps[i].phase != Phase::bwd);
      for (const auto& in : t.steps[i].in) CHECK(in != "dy");
    }
    // Running the two parts with dy set in between = running the original graph with dy set up front.
    MoeShape s;
    s.tokens = 40, s.hidden = 128, s.ffn = 128, s.experts = 4, s.topk = 2, s.align = 32;
    const MoeInputs in = make_inputs(s, 5);
    const Context ctx{s, model::fp64_routing(s, in.x, in.wr)};
    Env whole = make_env(s, &in);
    ExecOptions o;
    o.threads = 1;
    execute(df, ctx, whole, o);
    Env parts = model::layer_env(s, in.x, in.wr, in.w1, in.w2);
    o.end_step = split;
    execute(t, ctx, parts, o);
    parts["dy"].v = in.dy;
    o.first_step = split;
    o.end_step = std::size_t(-1);
    execute(t, ctx, parts, o);
    for (const char* tensor : {"y", "dx", "dwr", "dw1", "dw2"}) {
      INFO(tensor);
      CHECK(parts.at(tensor).v == whole.at(tensor).v);
    }
  }
}

TEST_CASE("train: results do not depend on the executor's thread count", "[train]") {
  TrainConfig c = preset_config("quickstart");
  c.steps = 3, c.sample_every = 2, c.dataflow = "fp8_flow", c.corpus = corpus_path();
  c.threads = 1;
  const TrainResult a = train::train(c);
  c.threads = 2;
  const TrainResult b = train::train(c);
  REQUIRE(a.steps.size() == 3);
  for (std::size_t i = 0; i < a.steps.size(); ++i) {
    CHECK(a.steps[i].loss == b.steps[i].loss);
    CHECK(a.steps[i].grad_norm == b.steps[i].grad_norm);
  }
  REQUIRE(a.grad_error.size() == b.grad_error.size());
  for (std::size_t i = 0; i < a.grad_error.size(); ++i) CHECK(a.grad_error[i].sqnr_db == b.grad_error[i].sqnr_db);
  REQUIRE(a.casts.size() == b.casts.size());
  for (std::size_t i = 0; i < a.casts.size(); ++i) CHECK(a.casts[i].underflow_frac == b.casts[i].underflow_frac);
  CHECK(a.final_loss == b.final_loss);
}

TEST_CASE("train: the loss goes down on the quickstart preset in bf16 and the logs are filled", "[train]") {
  TrainConfig c = preset_config("quickstart");
  c.dataflow = "bf16", c.corpus = corpus_path(), c.seed = 2;
  const TrainResult r = train::train(c);
  REQUIRE(r.steps.size() == std::size_t(c.steps));
  const double first = r.steps.front().loss;
  CHECK(first == Approx(std::log(256.0)).epsilon(0.1));  // uniform over bytes at initialisation
  CHECK(r.final_loss < first - 1.0);
  CHECK(r.casts.empty());  // bf16 quantizes nothing to fp8
  // Golden comparisons at steps 0, sample_every, ..., and the last; bf16 is close to fp64 but not exact.
  std::set<int> sampled;
  for (const auto& e : r.grad_error) sampled.insert(e.step);
  CHECK(sampled == std::set<int>{0, 30, c.steps - 1});
  for (const auto& e : r.layer_error) {
    CHECK(e.sqnr_db > 20);
    CHECK(std::isfinite(e.sqnr_db));
  }
  double load = 0;
  for (const auto& x : r.router)
    if (x.step == 0 && x.layer == 0) load += x.load;
  CHECK(load == Approx(1.0));
}

TEST_CASE("train: the HDF5 record has the schema's tables, columns and final_loss", "[train][results]") {
  const io::Experiment e = io::parse_experiment(
      "[experiment]\nname = \"t\"\nkind = \"train\"\n[params]\npreset = \"quickstart\"\ndataflow = \"fp8_flow\"\n"
      "steps = 2\nsample_every = 1\ncorpus = \"" + corpus_path() + "\"\n",
      "inline.toml");
  REQUIRE(e.runs.size() == 1);
  const auto& p = e.runs[0].params;
  for (const char* k : {"preset", "dataflow", "transpose", "seed", "steps", "layers", "experts", "lr"}) CHECK(p.contains(k));
  CHECK(p["layers"] == 2);  // resolved from the preset
  CHECK(io::run_label(e.runs[0]) == "fp8_flow(paper_kernel) seed=1");
  const auto dir = std::filesystem::temp_directory_path() / "fp8flow_test_train";
  std::filesystem::create_directories(dir);
  const auto file = dir / "t.h5";
  std::filesystem::remove(file);
  {
    io::ResultsWriter w(file, 0);
    w.add(io::execute_run(e.runs[0], e.name, 1));
    w.commit();
  }
  const io::ResultsFile f(file);
  const io::RunRecord r = f.read(e.runs[0].hash, false);
  CHECK(r.kind == "train");
  REQUIRE(r.attrs.contains("final_loss"));
  CHECK(r.attrs["final_loss"].get<double>() > 0);
  const std::vector<std::pair<std::string, std::vector<std::string>>> schema = {
      {"steps", {"step", "loss", "lr", "grad_norm"}},
      {"grad_error", {"step", "layer", "tensor", "expert", "sqnr_db", "rel_err"}},
      {"layer_error", {"step", "layer", "tensor", "sqnr_db", "rel_err"}},
      {"casts", {"step", "layer", "tensor", "n", "underflow_frac", "saturation_frac", "scale_log2_min",
                 "scale_log2_max", "scale_log2_mean"}},
      {"router", {"step", "layer", "expert", "load"}}};
  for (const auto& [name, cols] : schema) {
    INFO(name);
    const io::Table* t = nullptr;
    for (const auto& x : r.tables)
      if (x.name == name) t = &x;
    REQUIRE(t);
    std::vector<std::string> have;
    for (const auto& c : t->columns) have.push_back(c.name);
    CHECK(have == cols);
    CHECK(t->rows() > 0);
  }
  // fp8_flow casts: the dispatch quantizer, the fused SwiGLU quant, the scaling-aware transposes, weights.
  std::set<std::string> casts;
  for (const auto& t : r.tables)
    if (t.name == "casts")
      for (const auto& s : std::get<std::vector<std::string>>(t.find("tensor")->values)) casts.insert(s);
  for (const char* t : {"x.q", "act", "dh", "xp.col", "act.col", "dout.col", "dh.col", "w1.q", "w2.q"}) {
    INFO(t);
    CHECK(casts.contains(t));
  }
  std::filesystem::remove_all(dir);
}

TEST_CASE("tail_mean_loss: the final loss is the mean over the last 10% of steps", "[train][stats]") {
  {
    std::vector<double> l(20);
    for (std::size_t i = 0; i < l.size(); ++i) l[i] = double(i);
    CHECK(tail_mean_loss(l) == 18.5);
    CHECK(tail_mean_loss(std::vector<double>{4.0, 3.0}) == 3.0);
  }
}

TEST_CASE("train_summary: variants paired with bf16 by seed", "[train][stats]") {
  std::vector<io::RunRecord> runs;
  auto add = [&](const char* df, const char* tr, int seed, double loss) {
    io::RunRecord r;
    r.kind = "train";
    r.hash = fmt::format("{}{}{}", df, tr, seed);
    r.params = {{"preset", "tiny"}, {"dataflow", df}, {"transpose", tr}, {"seed", seed}, {"steps", 10}};
    r.attrs = {{"final_loss", loss}};
    runs.push_back(r);
  };
  add("fp8_flow", "exact", 1, 2.002);
  add("bf16", "paper_kernel", 1, 2.0);
  add("bf16", "paper_kernel", 2, 4.0);
  add("fp8_flow", "exact", 2, 4.008);
  add("fp8_flow", "exact", 3, 9.0);  // no bf16 run of seed 3: not paired
  const auto s = io::summarize_train_runs(runs);
  REQUIRE(s.size() == 2);
  CHECK(s[0].variant == "bf16");
  CHECK(s[0].reference == "fp64");
  CHECK_FALSE(s[0].rel);  // no fp64 runs
  CHECK(s[1].variant == "fp8_flow(exact)");
  CHECK(s[1].reference == "bf16");
  REQUIRE(s[1].rel);
  CHECK(s[1].rel->n == 2);
  CHECK(s[1].rel->mean == Approx(0.0015));
}

TEST_CASE("train: the FP8 GEMM model reaches the layer (default h100, accum overrides it)", "[train][accum]") {
  TrainConfig c = preset_config("quickstart");
  c.dataflow = "fp8_flow";
  c.steps = 1;
  c.sample_every = 0;
  CHECK(c.gemm_config.accum == AccumModel::h100);
  const TrainResult h = train::train(c);
  c.gemm_config.accum = AccumModel::fp32_seq;
  const TrainResult s = train::train(c);
  c.gemm_config.accum = AccumModel::h100;
  const TrainResult h2 = train::train(c);
  REQUIRE(h.steps.size() == 1);
  CHECK(h.steps[0].loss != s.steps[0].loss);   // the layer's output differs, so does the loss
  CHECK(h.steps[0].loss == h2.steps[0].loss);  // and the model, not chance, made the difference
  const io::Experiment e = io::parse_experiment(
      "[experiment]\nname = \"t\"\nkind = \"train\"\n[params]\npreset = \"quickstart\"\n[sweep]\n"
      "accum = [\"h100\", \"fp32_seq\"]\n", "x.toml");
  REQUIRE(e.runs.size() == 2);
  CHECK(e.runs[0].params["accum"] == "h100");
  CHECK(io::train_config(e.runs[1], 1).gemm_config.accum == AccumModel::fp32_seq);
  CHECK(e.runs[0].hash != e.runs[1].hash);
  CHECK_THROWS_WITH(io::parse_experiment("[experiment]\nname = \"t\"\nkind = \"train\"\n[params]\naccum = \"abacus\"\n",
                                         "x.toml"),
                    Catch::Contains("accum") && Catch::Contains("abacus"));
}

TEST_CASE("train: bad input is an InputError naming the value", "[train][errors]") {
  auto message = [](auto&& f) {
    try {
      f();
    } catch (const InputError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  CHECK_THAT(message([] { preset_config("huge"); }), Catch::Contains("huge") && Catch::Contains("tiny"));
  TrainConfig c = preset_config("tiny");
  c.steps = 0;
  CHECK_THAT(message([&] { check_config(c); }), Catch::Contains("steps = 0"));
  c = preset_config("tiny");
  c.dataflow = "fp7";
  CHECK_THAT(message([&] { check_config(c); }), Catch::Contains("fp7"));
  c = preset_config("tiny");
  c.corpus = "/nonexistent/corpus.txt";
  CHECK_THAT(message([&] { train::train(c); }), Catch::Contains("/nonexistent/corpus.txt"));
  CHECK_THAT(message([] {
               io::parse_experiment("[experiment]\nname = \"t\"\nkind = \"train\"\n[params]\nexperts = 2\ntopk = 3\n", "x.toml");
             }),
             Catch::Contains("topk"));
}
