#include "io/study_records.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <limits>
#include <memory>
#include <mutex>

#include <omp.h>

#include "io/errors.hpp"
#include "reference/dataflow.hpp"
#include "reference/error_ledger.hpp"
#include "reference/studies.hpp"

namespace fp8flow::io {

namespace {

struct MetricsRow {
  std::string method, reference;
  const Metrics* m;
};

// The metrics table: one row per (method, reference), one column per Metrics field, with units
// ("value" = the units of the compared tensor).
Table metrics_table(const std::vector<MetricsRow>& rows, std::string description) {
  Table t;
  t.name = "metrics";
  t.description = std::move(description);
  auto col_s = [&](auto get) {
    std::vector<std::string> v;
    for (const auto& r : rows) v.push_back(get(r));
    return v;
  };
  auto col_f = [&](auto get) {
    std::vector<double> v;
    for (const auto& r : rows) v.push_back(get(*r.m));
    return v;
  };
  auto col_i = [&](auto get) {
    std::vector<std::int64_t> v;
    for (const auto& r : rows) v.push_back(std::int64_t(get(*r.m)));
    return v;
  };
  t.add("method", "", col_s([](const MetricsRow& r) { return r.method; }));
  t.add("reference", "", col_s([](const MetricsRow& r) { return r.reference; }));
  t.add("n", "count", col_i([](const Metrics& m) { return m.n; }));
  t.add("finite", "count", col_i([](const Metrics& m) { return m.finite; }));
  t.add("max_abs_err", "value", col_f([](const Metrics& m) { return m.max_abs_err; }));
  t.add("max_rel_err", "1", col_f([](const Metrics& m) { return m.max_rel_err; }));
  t.add("rmse", "value", col_f([](const Metrics& m) { return m.rmse; }));
  t.add("sqnr_db", "dB", col_f([](const Metrics& m) { return m.sqnr_db; }));
  t.add("mean_err", "value", col_f([](const Metrics& m) { return m.mean_err; }));
  t.add("calc_diff", "1", col_f([](const Metrics& m) { return m.calc_diff; }));
  t.add("changed", "count", col_i([](const Metrics& m) { return m.changed; }));
  t.add("frac_changed", "1", col_f([](const Metrics& m) { return m.frac_changed; }));
  t.add("underflow_to_zero", "count", col_i([](const Metrics& m) { return m.underflow_to_zero; }));
  t.add("nan_created", "count", col_i([](const Metrics& m) { return m.nan_created; }));
  t.add("truth_nonfinite", "count", col_i([](const Metrics& m) { return m.truth_nonfinite; }));
  t.add("has_codes", "bool", col_i([](const Metrics& m) { return m.has_codes ? 1 : 0; }));
  t.add("codes_off", "count", col_i([](const Metrics& m) { return m.codes_off; }));
  t.add("frac_codes_off", "1", col_f([](const Metrics& m) { return m.frac_codes_off; }));
  t.add("lost_subnormals", "count", col_i([](const Metrics& m) { return m.lost_subnormals; }));
  t.add("subnormal_codes", "count", col_i([](const Metrics& m) { return m.subnormal_codes; }));
  t.add("saturated", "count", col_i([](const Metrics& m) { return m.saturated; }));
  return t;
}

Table histogram(std::string name, std::string description, std::string bin_units,
                const std::map<long long, std::size_t>& h) {
  Table t;
  t.name = std::move(name);
  t.description = std::move(description);
  std::vector<std::int64_t> bins, counts;
  for (const auto& [b, c] : h) {
    bins.push_back(b);
    counts.push_back(std::int64_t(c));
  }
  t.add("bin", std::move(bin_units), std::move(bins));
  t.add("count", "count", std::move(counts));
  return t;
}

std::vector<std::size_t> sizes(const nlohmann::json& a) { return a.get<std::vector<std::size_t>>(); }

void transpose_run(const RunSpec& spec, int threads, RunRecord& rec) {
  add_transpose_study(transpose_study(transpose_study_config(spec, threads)), rec);
}

void gemm_run(const RunSpec& spec, int threads, RunRecord& rec) {
  const auto& p = spec.params;
  GemmAccumStudyConfig c;
  c.m = p["shape"][0];
  c.n = p["shape"][1];
  c.k = p["shape"][2];
  c.format = &find_format(p["format"].get<std::string>());
  c.a_gran = parse_granularity(p["a_granularity"].get<std::string>());
  c.b_gran = parse_granularity(p["b_granularity"].get<std::string>());
  c.scale_spread_log2 = p["scale_spread_log2"];
  c.seed = p["seed"].get<std::uint64_t>();
  c.models.clear();
  for (const auto& m : p["accum_models"]) c.models.push_back(parse_accum_model(m.get<std::string>()));
  c.accum.promote_interval = p["promote_interval"];
  c.accum.acc_fraction_bits = p["acc_fraction_bits"];
  c.accum.group = p["group"];
  c.accum.fast_accum = p["fast_accum"];
  c.keep_tensors = p["save_tensors"].get<bool>();
  c.threads = threads;
  const GemmAccumStudyResult r = gemm_accum_study(c);

  std::vector<MetricsRow> rows;
  for (const auto& m : r.models) rows.push_back({std::string(to_string(m.model)), "exact", &m.vs_exact});
  rec.tables.push_back(metrics_table(rows, "each accumulation model's fp32 output against the exact model's"));
  std::string summary = "sqnr_dB vs exact:";
  for (const auto& m : r.models) {
    rec.histograms.push_back(histogram(fmt::format("ulp_log2_{}_vs_exact", to_string(m.model)),
                                       "fp32 ULP distance d = model - exact, binned: 0 for d = 0, +-b for 2^(b-1) <= |d| < 2^b",
                                       "log2 ulp bin", m.ulp_log2_hist));
    summary += fmt::format(" {} {:.1f}", to_string(m.model), m.vs_exact.sqnr_db);
  }
  rec.summary = summary;
  if (c.keep_tensors) {
    const auto grid = [&](std::size_t rows_, Granularity g) {
      const TileGrid t = make_tile_grid(rows_, c.k, g, {});
      return std::vector<std::size_t>{t.row_tiles.size(), t.col_tiles.size()};
    };
    rec.tensors.push_back({"a_codes", "A codes [M, K]", {c.m, c.k}, r.a_codes});
    rec.tensors.push_back({"a_scale_inv", "A COMPACT scale_inv", grid(c.m, c.a_gran), r.a_scale_inv});
    rec.tensors.push_back({"b_codes", "B codes [N, K]", {c.n, c.k}, r.b_codes});
    rec.tensors.push_back({"b_scale_inv", "B COMPACT scale_inv", grid(c.n, c.b_gran), r.b_scale_inv});
    rec.tensors.push_back({"out_exact", "exact model output [M, N]", {c.m, c.n}, r.exact_out});
    for (const auto& m : r.models)
      rec.tensors.push_back({fmt::format("out_{}", to_string(m.model)), "model output [M, N]", {c.m, c.n}, m.out});
  }
}


// ---- moe_dataflows ---------------------------------------------------------------------------------
// The fp64 golden run of one (shape, seed), shared by the runs of a `dataflow` sweep in this process
// (one entry: a sweep over dataflows computes the golden layer once). Deterministic, so caching it
// changes nothing in the records.
struct MoeGolden {
  std::string key;
  MoeShape shape;
  MoeInputs inputs;
  Context ctx;
  Env env;
};
std::shared_ptr<const MoeGolden> moe_golden(const MoeShape& shape, std::uint64_t seed, int threads) {
  static std::mutex mu;
  static std::shared_ptr<const MoeGolden> cached;
  const std::string key = fmt::format("{} seed {}", to_string(shape), seed);
  std::lock_guard lock(mu);
  if (cached && cached->key == key) return cached;
  cached.reset();  // free the previous one before building the next
  auto g = std::make_shared<MoeGolden>();
  g->key = key;
  g->shape = shape;
  g->inputs = make_inputs(shape, seed);
  // The routing comes from the fp64 scores and is shared by every dataflow (as `fp8flow moe` does).
  const auto logits = moe::matmul_nt(g->inputs.x, g->inputs.wr, shape.tokens, shape.experts, shape.hidden);
  g->ctx = Context{shape, make_routing(moe::scores(logits, shape.tokens, shape.experts, shape.score), shape)};
  g->env = make_env(shape, &g->inputs);
  ExecOptions o;
  o.threads = threads;
  execute(builtin_dataflow("fp64"), g->ctx, g->env, o);
  cached = g;
  return cached;
}

void moe_run(const RunSpec& spec, int threads, RunRecord& rec) {
  const auto& p = spec.params;
  MoeShape shape = preset_shape(p["preset"].get<std::string>());
  if (p["tokens"].get<std::int64_t>() > 0) shape.tokens = p["tokens"].get<std::size_t>();
  if (p["experts"].get<std::int64_t>() > 0) shape.experts = p["experts"].get<std::size_t>();
  if (p["topk"].get<std::int64_t>() > 0) shape.topk = p["topk"].get<std::size_t>();
  check_shape(shape);
  const auto seed = p["seed"].get<std::uint64_t>();
  const bool keep = p["save_tensors"].get<bool>();
  ExecOptions o;
  o.threads = threads;
  o.gemm_config = GemmConfig{parse_accum_model(p["accum"].get<std::string>()), {}};
  o.transpose = parse_transpose_method(p["transpose"].get<std::string>());
  const auto golden = moe_golden(shape, seed, threads);

  std::vector<std::string> dataflow_col, tensor_col, golden_col, prec_col;
  std::vector<double> rel_err_col;
  std::vector<TensorError> errors;  // kept alive for the MetricsRow pointers
  std::vector<std::size_t> owner;   // dataflow index of each error
  std::vector<Dataflow> dfs;
  for (const auto& name : p["dataflow"]) dfs.push_back(with_overrides(builtin_dataflow(name.get<std::string>()), o));
  errors.reserve(64 * dfs.size());
  std::string summary = "sqnr_dB y/dx/dw1:";
  for (std::size_t d = 0; d < dfs.size(); ++d) {
    Env env = make_env(shape, &golden->inputs);
    execute(dfs[d], golden->ctx, env, o);
    double sy = 0, sdx = 0, sdw1 = 0;
    for (auto& e : error_ledger(dfs[d], golden->env, env, false)) {
      if (e.tensor == "y") sy = e.all.sqnr_db;
      if (e.tensor == "dx") sdx = e.all.sqnr_db;
      if (e.tensor == "dw1") sdw1 = e.all.sqnr_db;
      errors.push_back(std::move(e));
      owner.push_back(d);
    }
    summary += fmt::format(" {} {:.1f}/{:.1f}/{:.1f}", dfs[d].name, sy, sdx, sdw1);
    if (keep)
      for (const char* t : {"y", "dx"}) {
        const auto it = env.find(t);
        if (it == env.end()) continue;
        rec.tensors.push_back({fmt::format("{}_{}", dfs[d].name, t),
                               fmt::format("{}'s layer output {} (values, float32) [{}, {}]", dfs[d].name, t,
                                           it->second.rows, it->second.cols),
                               {it->second.rows, it->second.cols},
                               std::vector<float>(it->second.v.begin(), it->second.v.end())});
      }
  }
  std::vector<MetricsRow> rows;
  for (std::size_t i = 0; i < errors.size(); ++i) {
    const TensorError& e = errors[i];
    rows.push_back({dfs[owner[i]].name, e.tensor, &e.all});
    golden_col.push_back(e.golden);
    prec_col.push_back(std::string(to_string(e.prec)));
    rel_err_col.push_back(std::isinf(e.all.sqnr_db) && e.all.sqnr_db > 0 ? 0.0 : std::pow(10.0, -e.all.sqnr_db / 20.0));
  }
  Table m = metrics_table(rows, "every tensor each dataflow defined (activations, gradients, weight gradients, "
                                "quantized copies) against the fp64 golden layer: one row per (dataflow, tensor)");
  // method/reference -> dataflow/tensor, then the golden tensor name, the storage precision, rel_err.
  m.columns[0].name = "dataflow";
  m.columns[1].name = "tensor";
  Column gc{"golden", "", std::move(golden_col)}, pc{"prec", "", std::move(prec_col)};
  m.columns.insert(m.columns.begin() + 2, std::move(pc));
  m.columns.insert(m.columns.begin() + 2, std::move(gc));
  Column rc{"rel_err", "1", std::move(rel_err_col)};
  auto at = std::find_if(m.columns.begin(), m.columns.end(), [](const Column& c) { return c.name == "sqnr_db"; });
  m.columns.insert(at + 1, std::move(rc));
  m.attrs = {{"shape", to_string(shape)}, {"routed_rows", golden->ctx.routing.rows()}};
  rec.tables.push_back(std::move(m));

  Table casts;
  casts.name = "casts";
  casts.description = "casts per forward+backward of each dataflow, counted from its graph (weight and bf16 input "
                      "copies not counted; prologue_* columns count them); paper: 12 conventional, 2 FP8-Flow";
  std::vector<std::string> names;
  std::vector<std::int64_t> ex, q, dq, nt, fq, sat, pr, g, pex, pq;
  for (const Dataflow& df : dfs) {
    const CastCounts c = count_casts(df), pc0 = count_casts(df, true);
    names.push_back(df.name);
    ex.push_back(c.explicit_casts()), q.push_back(c.explicit_quantize), dq.push_back(c.explicit_dequantize);
    nt.push_back(c.naive_transpose), fq.push_back(c.fused_quantize), sat.push_back(c.sat);
    pr.push_back(c.precision_round), g.push_back(c.gemms);
    pex.push_back(pc0.explicit_casts()), pq.push_back(pc0.explicit_quantize);
  }
  casts.add("dataflow", "", names).add("explicit_casts", "count", ex).add("explicit_quantize", "count", q);
  casts.add("explicit_dequantize", "count", dq).add("naive_transpose", "count", nt).add("fused_quantize", "count", fq);
  casts.add("scaling_aware_transpose", "count", sat).add("precision_round", "count", pr).add("gemms", "count", g);
  casts.add("prologue_explicit_casts", "count", pex).add("prologue_explicit_quantize", "count", pq);
  rec.tables.push_back(std::move(casts));
  rec.summary = summary;
}

// ---- train -----------------------------------------------------------------------------------------
// The tables of docs/results-format.md ("train"): steps, grad_error, layer_error, casts, router.
void train_run(const RunSpec& spec, int /*threads*/, RunRecord& rec, const std::function<void(double)>& on_progress) {
  // One thread per training run, whatever --threads says: at these tensor sizes the executor's OpenMP regions
  // (and Eigen's) cost more than they gain (measured: 60 quickstart steps took 35 s with 2 threads on a busy
  // 2-core machine, 3 s with one). `fp8flow train` runs several trainings at once instead. The results do
  // not depend on it either way.
  struct OneThread {
    int saved = omp_get_max_threads();
    OneThread() { omp_set_num_threads(1); }
    ~OneThread() { omp_set_num_threads(saved); }
  } one_thread;
  rec.provenance.threads = 1;
  const train::TrainConfig c = train_config(spec, 1);
  const train::TrainResult r = train::train(c, [&](int step) {
    if (on_progress) on_progress(double(step + 1) / double(c.steps));
  });
  auto ints = [](const auto& rows, auto get) {
    std::vector<std::int64_t> v;
    for (const auto& x : rows) v.push_back(std::int64_t(get(x)));
    return v;
  };
  auto reals = [](const auto& rows, auto get) {
    std::vector<double> v;
    for (const auto& x : rows) v.push_back(get(x));
    return v;
  };
  auto texts = [](const auto& rows, auto get) {
    std::vector<std::string> v;
    for (const auto& x : rows) v.push_back(get(x));
    return v;
  };
  using train::StepLog, train::GradErrorLog, train::LayerErrorLog, train::CastLog, train::RouterLog;
  Table steps;
  steps.name = "steps";
  steps.description = "every training step: mean next-byte cross-entropy of the step's batch (before the update), the "
                      "learning rate used, the global gradient norm before clipping";
  steps.add("step", "index", ints(r.steps, [](const StepLog& x) { return x.step; }));
  steps.add("loss", "value", reals(r.steps, [](const StepLog& x) { return x.loss; }));
  steps.add("lr", "value", reals(r.steps, [](const StepLog& x) { return x.lr; }));
  steps.add("grad_norm", "value", reals(r.steps, [](const StepLog& x) { return x.grad_norm; }));
  steps.attrs = {{"final_loss", r.final_loss}, {"diverged_step", r.diverged_step}, {"corpus", r.corpus_path},
                 {"corpus_bytes", r.corpus_bytes}, {"parameters", r.parameters}, {"tokens_per_step", c.batch * c.seq}};
  rec.tables.push_back(std::move(steps));

  Table ge;
  ge.name = "grad_error";
  ge.description = "sampled steps: each MoE layer's gradients (dx, dw1, dw2, dwr) in this dataflow against the fp64 "
                   "golden layer run on the same input, weights and upstream gradient; expert -1 = whole tensor, else "
                   "the expert's rows";
  ge.add("step", "index", ints(r.grad_error, [](const GradErrorLog& x) { return x.step; }));
  ge.add("layer", "index", ints(r.grad_error, [](const GradErrorLog& x) { return x.layer; }));
  ge.add("tensor", "", texts(r.grad_error, [](const GradErrorLog& x) { return x.tensor; }));
  ge.add("expert", "index", ints(r.grad_error, [](const GradErrorLog& x) { return x.expert; }));
  ge.add("sqnr_db", "dB", reals(r.grad_error, [](const GradErrorLog& x) { return x.sqnr_db; }));
  ge.add("rel_err", "1", reals(r.grad_error, [](const GradErrorLog& x) { return x.rel_err; }));
  rec.tables.push_back(std::move(ge));

  Table le;
  le.name = "layer_error";
  le.description = "sampled steps: each MoE layer's output y and input gradient dx against the fp64 golden layer on "
                   "the same input, weights and upstream gradient (error growth through depth)";
  le.add("step", "index", ints(r.layer_error, [](const LayerErrorLog& x) { return x.step; }));
  le.add("layer", "index", ints(r.layer_error, [](const LayerErrorLog& x) { return x.layer; }));
  le.add("tensor", "", texts(r.layer_error, [](const LayerErrorLog& x) { return x.tensor; }));
  le.add("sqnr_db", "dB", reals(r.layer_error, [](const LayerErrorLog& x) { return x.sqnr_db; }));
  le.add("rel_err", "1", reals(r.layer_error, [](const LayerErrorLog& x) { return x.rel_err; }));
  rec.tables.push_back(std::move(le));

  Table ca;
  ca.name = "casts";
  ca.description = "sampled steps, fp8 dataflows: every cast step writing an fp8 tensor (named as in the dataflow "
                   "graph): elements, fraction of nonzero inputs that became 0, fraction of codes at +-max or "
                   "non-finite, log2 of scale_inv over the tensor's scales (padding scales 0 left out)";
  ca.add("step", "index", ints(r.casts, [](const CastLog& x) { return x.step; }));
  ca.add("layer", "index", ints(r.casts, [](const CastLog& x) { return x.layer; }));
  ca.add("tensor", "", texts(r.casts, [](const CastLog& x) { return x.tensor; }));
  ca.add("n", "count", ints(r.casts, [](const CastLog& x) { return x.n; }));
  ca.add("underflow_frac", "1", reals(r.casts, [](const CastLog& x) { return x.underflow_frac; }));
  ca.add("saturation_frac", "1", reals(r.casts, [](const CastLog& x) { return x.saturation_frac; }));
  ca.add("scale_log2_min", "value", reals(r.casts, [](const CastLog& x) { return x.scale_log2_min; }));
  ca.add("scale_log2_max", "value", reals(r.casts, [](const CastLog& x) { return x.scale_log2_max; }));
  ca.add("scale_log2_mean", "value", reals(r.casts, [](const CastLog& x) { return x.scale_log2_mean; }));
  rec.tables.push_back(std::move(ca));

  Table ro;
  ro.name = "router";
  ro.description = "sampled steps: fraction of the step's routed token copies (tokens x top-k) sent to each expert";
  ro.add("step", "index", ints(r.router, [](const RouterLog& x) { return x.step; }));
  ro.add("layer", "index", ints(r.router, [](const RouterLog& x) { return x.layer; }));
  ro.add("expert", "index", ints(r.router, [](const RouterLog& x) { return x.expert; }));
  ro.add("load", "1", reals(r.router, [](const RouterLog& x) { return x.load; }));
  rec.tables.push_back(std::move(ro));

  rec.attrs = {{"final_loss", r.final_loss}, {"diverged_step", r.diverged_step}};
  double worst_dw = std::numeric_limits<double>::infinity();
  for (const auto& g : r.grad_error)
    if (g.expert < 0 && g.tensor != "dx") worst_dw = std::min(worst_dw, g.sqnr_db);
  rec.summary = r.diverged_step >= 0
                    ? fmt::format("diverged at step {}", r.diverged_step)
                    : fmt::format("final_loss {:.4f}; worst wgrad sqnr_dB {:.1f}", r.final_loss, worst_dw);
}

}  // namespace

std::uint64_t run_memory_bytes(const RunSpec& spec) {
  const auto& p = spec.params;
  if (spec.kind == "transpose_study")
    return transpose_study_bytes(p["shape"][0].get<std::uint64_t>(), p["shape"][1].get<std::uint64_t>());
  if (spec.kind == "gemm_accum_study") {
    const long double m = p["shape"][0].get<double>(), n = p["shape"][1].get<double>(), k = p["shape"][2].get<double>();
    // float32 + float64 operands and their codes, one float64 output per model plus the exact one.
    const long double models = p["accum_models"].size() + 1;
    const long double b = 1.5L * (13 * (m * k + n * k) + 8 * m * n * (models + 1)) + (32u << 20);
    return b >= 1.8e19L ? UINT64_MAX : static_cast<std::uint64_t>(b);
  }
  if (spec.kind == "moe_dataflows") {
    MoeShape shape = preset_shape(p["preset"].get<std::string>());
    if (p["tokens"].get<std::int64_t>() > 0) shape.tokens = p["tokens"].get<std::size_t>();
    if (p["experts"].get<std::int64_t>() > 0) shape.experts = p["experts"].get<std::size_t>();
    if (p["topk"].get<std::int64_t>() > 0) shape.topk = p["topk"].get<std::size_t>();
    return moe_layer_bytes(shape);
  }
  if (spec.kind == "train") {
    const train::TrainConfig c = train_config(spec, 1);
    std::error_code ec;
    const std::uintmax_t corpus = std::filesystem::file_size(train::resolve_corpus(c.corpus), ec);
    return train::train_bytes(c, ec ? 0 : corpus);
  }
  return 0;
}

train::TrainConfig train_config(const RunSpec& spec, int threads) {
  const auto& p = spec.params;
  train::TrainConfig c = train::preset_config(p.at("preset").get<std::string>());
  c.dataflow = p.at("dataflow").get<std::string>();
  c.transpose = parse_transpose_method(p.at("transpose").get<std::string>());
  c.gemm_config = GemmConfig{parse_accum_model(p.at("accum").get<std::string>()), {}};
  c.seed = p.at("seed").get<std::uint64_t>();
  c.steps = p.at("steps").get<int>();
  c.layers = p.at("layers").get<std::size_t>();
  c.experts = p.at("experts").get<std::size_t>();
  c.topk = p.at("topk").get<std::size_t>();
  c.hidden = p.at("hidden").get<std::size_t>();
  c.ffn = p.at("ffn").get<std::size_t>();
  c.seq = p.at("seq").get<std::size_t>();
  c.batch = p.at("batch").get<std::size_t>();
  c.lr = p.at("lr").get<double>();
  c.sample_every = p.at("sample_every").get<int>();
  c.corpus = p.at("corpus").get<std::string>();
  c.threads = threads;
  train::check_config(c);
  return c;
}

TransposeStudyConfig transpose_study_config(const RunSpec& spec, int threads) {
  const auto& p = spec.params;
  TransposeStudyConfig c;
  c.rows = p["shape"][0];
  c.cols = p["shape"][1];
  c.distribution = parse_distribution(p["distribution"].get<std::string>());
  c.seed = p["seed"].get<std::uint64_t>();
  c.groups = sizes(p["groups"]);
  c.eps = p["eps"].get<float>();
  c.tile = parse_granularity(p["granularity"].get<std::string>()).cols;
  c.payload = &find_format(p["format"].get<std::string>());
  c.keep_tensors = p["save_tensors"].get<bool>();
  c.threads = threads;
  return c;
}

void add_transpose_study(const TransposeStudyResult& r, RunRecord& rec) {
  std::vector<MetricsRow> rows;
  for (const auto& cmp : r.comparisons) rows.push_back({cmp.method, cmp.reference, &cmp.metrics});
  rec.tables.push_back(metrics_table(
      rows, "each method (rowwise 1xN tensor, and the naive / paper_kernel / exact / direct Nx1 column copies) against "
            "a reference: input (high precision), direct, exact (naive vs exact = double quantization error), rowwise "
            "(exact / paper_kernel vs rowwise = SAT underflow tail)"));

  const SatDiffReport& d = r.paper_vs_exact;
  Table diff;
  diff.name = "paper_vs_exact";
  diff.description = "output tiles where the paper's SAT kernel and the exact SAT differ, with the cause of each code";
  std::vector<std::int64_t> row_tile, col_block, group, r0, r1, c0, c1, count, below, sub, nanf, other;
  std::vector<double> maxdiff;
  for (const SatTileDiff& t : d.tiles_with_diffs) {
    row_tile.push_back(std::int64_t(t.row_tile));
    col_block.push_back(std::int64_t(t.col_block));
    group.push_back(std::int64_t(t.group));
    r0.push_back(std::int64_t(t.rows.begin));
    r1.push_back(std::int64_t(t.rows.end));
    c0.push_back(std::int64_t(t.cols.begin));
    c1.push_back(std::int64_t(t.cols.end));
    count.push_back(std::int64_t(t.count));
    below.push_back(std::int64_t(t.below_normal));
    sub.push_back(std::int64_t(t.input_subnormal_or_zero));
    nanf.push_back(std::int64_t(t.nan_made_finite));
    other.push_back(std::int64_t(t.other));
    maxdiff.push_back(t.max_abs_diff);
  }
  diff.add("row_tile", "index", row_tile).add("col_block", "index", col_block).add("group", "index", group);
  diff.add("rows_begin", "index", r0).add("rows_end", "index", r1).add("cols_begin", "index", c0).add("cols_end", "index", c1);
  diff.add("count", "count", count).add("below_normal", "count", below).add("input_subnormal_or_zero", "count", sub);
  diff.add("nan_made_finite", "count", nanf).add("other", "count", other).add("max_abs_diff", "value", maxdiff);
  diff.attrs = summary_json(d);
  rec.tables.push_back(std::move(diff));

  for (const auto& cmp : r.comparisons)
    if (cmp.reference == "input" && cmp.metrics.has_codes)
      rec.histograms.push_back(histogram(fmt::format("ulp_{}_vs_input", cmp.method),
                                         "code - best code under the tensor's own scale, in ULPs of the format", "ulp",
                                         cmp.metrics.ulp_hist));

  if (!r.tensors.empty()) {  // keep_tensors; r.tensors[0] is the rowwise tensor, [rows, cols] as the input
    const QuantizedTensor& in = r.tensors.front().second;
    rec.tensors.push_back({"x", "the high-precision input, float32 [rows, cols]", {in.rows, in.cols}, r.x});
    for (const auto& [name, q] : r.tensors) {
      const bool t = q.codes_transposed;
      rec.tensors.push_back({name + "_codes", t ? "codes stored transposed [cols, rows]" : "codes [rows, cols]",
                             t ? std::vector<std::size_t>{q.cols, q.rows} : std::vector<std::size_t>{q.rows, q.cols},
                             q.codes});
      rec.tensors.push_back({name + "_scale_inv", "COMPACT scale_inv grid [row tiles, col tiles]",
                             {q.scale_rows, q.scale_cols}, q.scale_inv});
    }
  }
  auto sqnr = [&](std::string_view m) {
    for (const auto& cmp : r.comparisons)
      if (cmp.method == m && cmp.reference == "input") return cmp.metrics.sqnr_db;
    return 0.0;
  };
  rec.summary = fmt::format("sqnr_dB naive {:.2f} paper {:.2f} exact {:.2f} direct {:.2f}; paper!=exact {}",
                            sqnr("naive"), sqnr("paper_kernel"), sqnr("exact"), sqnr("direct"), d.elements_differing);
}

RunRecord begin_run_record(const RunSpec& spec, const std::string& experiment, int threads) {
  RunRecord rec;
  rec.hash = spec.hash;
  rec.kind = spec.kind;
  rec.experiment = experiment;
  rec.label = run_label(spec);
  rec.params = spec.params;
  rec.provenance = Provenance::of_this_build();
  rec.provenance.threads = threads;
  rec.provenance.start_time = iso8601_utc_now();
  return rec;
}

RunRecord execute_run(const RunSpec& spec, const std::string& experiment, int threads,
                      const std::function<void(double)>& on_progress) {
  RunRecord rec = begin_run_record(spec, experiment, threads);
  if (spec.kind == "transpose_study") transpose_run(spec, threads, rec);
  else if (spec.kind == "gemm_accum_study") gemm_run(spec, threads, rec);
  else if (spec.kind == "moe_dataflows") moe_run(spec, threads, rec);
  else if (spec.kind == "train") train_run(spec, threads, rec, on_progress);
  else throw InputError(fmt::format("run {}: kind '{}' cannot run in this build", spec.hash, spec.kind));
  rec.provenance.end_time = iso8601_utc_now();
  return rec;
}

}  // namespace fp8flow::io
