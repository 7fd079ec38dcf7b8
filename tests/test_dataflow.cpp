// Dataflow graphs: cast counts from the graph, structural checks, TOML round trip, determinism, and
// the executor's FP8 dataflows on the tiny preset.
#include <catch2/catch.hpp>
#include <bit>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <span>
#include <map>
#include <sstream>

#include "io/errors.hpp"
#include "reference/dataflow.hpp"
#include "reference/error_ledger.hpp"
#include "reference/traffic_model.hpp"

using namespace fp8flow;

namespace {
struct Setup {
  MoeShape shape;
  MoeInputs in;
  Context ctx;
  Env golden;
};
Setup setup() {
  MoeShape s = preset_shape("tiny");
  MoeInputs in = make_inputs(s, 5);
  const auto logits = moe::matmul_nt(in.x, in.wr, s.tokens, s.experts, s.hidden);
  Context ctx{s, make_routing(moe::scores(logits, s.tokens, s.experts, s.score), s)};
  Env g = make_env(s, &in);
  execute(builtin_dataflow("fp64"), ctx, g, ExecOptions{});
  return {s, std::move(in), std::move(ctx), std::move(g)};
}
Env run(const Setup& st, const Dataflow& df, ExecOptions o = {}) {
  Env env = make_env(st.shape, &st.in);
  execute(df, st.ctx, env, o);
  return env;
}
}  // namespace

TEST_CASE("dataflow cast counts are walked from the graph", "[dataflow]") {
  // Paper (PAPER.md 2, cast accounting): 12 explicit casts for TE blockwise + FP8 DeepEP, 2 for FP8-Flow.
  CHECK(count_casts(builtin_dataflow("fp8_blockwise")).explicit_casts() == 12);
  CHECK(count_casts(builtin_dataflow("fp8_flow")).explicit_casts() == 2);
  CHECK(count_casts(builtin_dataflow("fp8_flow")).sat == 4);  // "SAT runs 4x per layer"
  CHECK(count_casts(builtin_dataflow("fp8_flow")).fused_quantize == 2);
  // double_quant: 2 dispatch quants + (DQ, row Q, column Q) for each of the 4 GEMM inputs.
  CHECK(count_casts(builtin_dataflow("fp8_double_quant")).explicit_casts() == 14);
  CHECK(count_casts(builtin_dataflow("bf16")).explicit_casts() == 0);
  CHECK(count_casts(builtin_dataflow("fp64")).explicit_casts() == 0);
  CHECK(count_steps(builtin_dataflow("fp8_blockwise"), Op::quantize, "xp") == 2);
  CHECK(count_casts(builtin_dataflow("fp8_flow")).gemms == 8);
}

TEST_CASE("dataflow checks name the step and the undefined tensor", "[dataflow]") {
  Dataflow df{"broken", "", {Step{Op::permute_pad, {"nothing"}, {"xp"}}}};
  CHECK_THROWS_WITH(check_dataflow(df), Catch::Contains("step 0") && Catch::Contains("'nothing'"));
  Dataflow t{"bad_t", "", {Step{Op::add, {"x^T", "x"}, {"z"}}}};
  CHECK_THROWS_AS(check_dataflow(t), InputError);
}

TEST_CASE("dataflow fp8 gemm needs a column copy for a transposed activation", "[dataflow]") {
  const Setup st = setup();
  Dataflow df = builtin_dataflow("fp8_flow");
  for (auto& s : df.steps)
    if (s.op == Op::gemm && s.out[0] == "dw1") s.in = {"dh^T", "xp.col^T"};
  CHECK_THROWS_WITH(run(st, df), Catch::Contains("column copy"));
}

TEST_CASE("dataflow TOML round trip runs the same graph", "[dataflow][toml]") {
  const Dataflow df = builtin_dataflow("fp8_flow");
  const auto path = std::filesystem::temp_directory_path() / "fp8flow_test_dataflow.toml";
  std::ofstream(path) << to_toml(df);
  const Dataflow back = load_dataflow_toml(path.string());
  REQUIRE(back.steps.size() == df.steps.size());
  CHECK(count_casts(back).explicit_casts() == 2);
  const Setup st = setup();
  CHECK(run(st, df).at("dx").v == run(st, back).at("dx").v);
  std::filesystem::remove(path);
}

TEST_CASE("dataflow example TOML in experiments loads", "[dataflow][toml]") {
  const Dataflow df = load_dataflow_toml(std::string(FP8FLOW_SOURCE_DIR) + "/experiments/dataflows/fp8_flow_bf16_dispatch.toml");
  CHECK(count_casts(df).explicit_casts() == 4);
  const Setup st = setup();
  CHECK_NOTHROW(run(st, df));
}

TEST_CASE("dataflow results do not depend on the thread count", "[dataflow]") {
  const Setup st = setup();
  for (const char* name : {"bf16", "fp8_flow", "fp8_blockwise"}) {
    INFO(name);
    ExecOptions one, two;
    one.threads = 1;
    two.threads = 2;
    const Env a = run(st, builtin_dataflow(name), one), b = run(st, builtin_dataflow(name), two);
    for (const char* t : {"y", "dx", "dw1", "dw2", "dwr"}) CHECK(a.at(t).v == b.at(t).v);
  }
}

TEST_CASE("dataflow fp8 permute+pad copies bytes and scales, pad rows zero", "[dataflow]") {
  const Setup st = setup();
  const Env env = run(st, builtin_dataflow("fp8_flow"));
  const QuantizedTensor& x = *env.at("x.q").q;
  const QuantizedTensor& xp = *env.at("xp").q;
  const Routing& r = st.ctx.routing;
  for (std::size_t row = 0; row < r.rows(); ++row) {
    const long c = r.row_copy[row];
    for (std::size_t k = 0; k < xp.scale_cols; ++k)
      CHECK(xp.scale_inv[row * xp.scale_cols + k] == (c < 0 ? 0.0f : x.scale_inv[(c / r.topk) * x.scale_cols + k]));
    if (c >= 0)
      CHECK(std::equal(xp.codes.begin() + row * xp.cols, xp.codes.begin() + (row + 1) * xp.cols,
                       x.codes.begin() + (c / r.topk) * x.cols));
  }
}

TEST_CASE("dataflow errors: fp8 dataflows are close to golden, exact SAT never worse than paper_kernel", "[dataflow]") {
  const Setup st = setup();
  for (const auto& df : builtin_dataflows()) {
    const Env env = run(st, df);
    const auto ledger = error_ledger(df, st.golden, env, true);
    for (const auto& e : ledger) {
      INFO(df.name << " " << e.tensor << " sqnr " << e.all.sqnr_db);
      if (df.name == "fp64") CHECK(std::isinf(e.all.sqnr_db));
      else if (e.tensor == "y" || e.tensor == "dx" || e.tensor == "dw1" || e.tensor == "dw2") CHECK(e.all.sqnr_db > 15);
    }
  }
  ExecOptions ex;
  ex.transpose = TransposeMethod::exact;
  const Env pk = run(st, builtin_dataflow("fp8_flow"));
  const Env exact = run(st, with_overrides(builtin_dataflow("fp8_flow"), ex));
  CHECK(squared_error(st.golden, exact, "dw1") <= squared_error(st.golden, pk, "dw1") * 1.0001);
}

TEST_CASE("dataflow attribution: making every cast exact in turn explains the fp8_flow error", "[dataflow]") {
  const Setup st = setup();
  const Dataflow df = builtin_dataflow("fp8_flow");
  const Env env = run(st, df);
  const auto at = attribute_casts(df, st.ctx, st.in, st.golden, env, ExecOptions{});
  REQUIRE(!at.empty());
  // The fused SwiGLU quant feeds FC2: making it exact must remove part of y's error.
  bool found = false;
  for (const auto& a : at)
    if (a.kind == CastKind::fused_quantize && a.label.find("swiglu_fwd") != std::string::npos) {
      found = true;
      CHECK(a.share[0] > 0.05);
    }
  CHECK(found);
}

TEST_CASE("dataflow traffic: fp8_flow keeps fewer activation bytes than bf16 and fp8_blockwise", "[dataflow][traffic]") {
  const MoeShape s = preset_shape("ds_v3");
  const double bf16 = traffic_model(builtin_dataflow("bf16"), s).saved_bytes();
  const double block = traffic_model(builtin_dataflow("fp8_blockwise"), s).saved_bytes();
  const double flow = traffic_model(builtin_dataflow("fp8_flow"), s).saved_bytes();
  CHECK(flow <= block);  // both keep fp8 column copies; FP8-Flow saves casts, not stash (docs)
  CHECK(flow < bf16);
}

namespace {
float bf16_rne(float f) {  // finite values only
  std::uint32_t u = std::bit_cast<std::uint32_t>(f);
  u += 0x7FFFu + ((u >> 16) & 1u);
  return std::bit_cast<float>(u & 0xFFFF0000u);
}
}  // namespace

TEST_CASE("dataflow FP8 GEMMs default to the H100 model, --accum overrides every one", "[dataflow][accum]") {
  CHECK(fp8_gemm_configs(builtin_dataflow("fp8_flow")) == std::vector<std::string>{"h100"});
  CHECK(fp8_gemm_configs(builtin_dataflow("fp8_blockwise")) == std::vector<std::string>{"h100"});
  CHECK(fp8_gemm_configs(builtin_dataflow("bf16")).empty());
  ExecOptions o;
  o.gemm_config = GemmConfig{AccumModel::fp32_seq, {}};
  CHECK(fp8_gemm_configs(with_overrides(builtin_dataflow("fp8_flow"), o)) == std::vector<std::string>{"fp32_seq"});
  o.gemm_config = GemmConfig{AccumModel::hopper_fast, AccumParams{64}};
  CHECK(fp8_gemm_configs(with_overrides(builtin_dataflow("fp8_flow"), o)) ==
        std::vector<std::string>{"hopper_fast(promote_interval=64)"});

  // FC1 of fp8_flow recomputed expert by expert from the env's FP8 operands with gemm(..., h100), rounded to
  // bf16 as the step stores it: the executor ran the H100 model.
  const Setup st = setup();
  const Env env = run(st, builtin_dataflow("fp8_flow"));
  const QuantizedTensor& xp = *env.at("xp").q;
  const QuantizedTensor& w1 = *env.at("w1.q").q;
  const std::vector<std::size_t> groups = env.at("xp").groups;
  const std::size_t H = st.shape.hidden, F2 = 2 * st.shape.ffn, kb = H / 128;
  REQUIRE(groups.size() == st.shape.experts);
  REQUIRE(F2 % 128 == 0);
  std::size_t r0 = 0;
  std::size_t compared = 0;
  for (std::size_t g = 0; g < groups.size(); ++g) {
    const std::size_t m = groups[g];
    if (m == 0) continue;
    const GemmOperand a{std::span(xp.codes).subspan(r0 * H, m * H), m, H, &e4m3,
                        std::span(xp.scale_inv).subspan(r0 * kb, m * kb), k1x128};
    const std::size_t t0 = g * (F2 / 128);
    const GemmOperand b{std::span(w1.codes).subspan(g * F2 * H, F2 * H), F2, H, &e4m3,
                        std::span(w1.scale_inv).subspan(t0 * kb, (F2 / 128) * kb), k128x128};
    const std::vector<float> h100 = gemm(a, b, AccumModel::h100, AccumParams{});
    const std::vector<float> seq = gemm(a, b, AccumModel::fp32_seq, AccumParams{});
    for (std::size_t i = 0; i < m * F2; ++i) {
      CHECK(env.at("h").v[r0 * F2 + i] == double(bf16_rne(h100[i])));
      compared += 1;
    }
    CHECK(h100 != seq);  // the models differ on this data, so the check above tells them apart
    r0 += m;
  }
  CHECK(compared == env.at("h").v.size());
}

TEST_CASE("dataflow weight gradients stay fp32 (main_grad), only their final bf16 rounding went", "[dataflow][accum]") {
  const Setup st = setup();
  for (const char* name : {"bf16", "fp8_blockwise", "fp8_flow"}) {
    INFO(name);
    const Dataflow df = builtin_dataflow(name);
    Dataflow old = df;  // the same graph with the expert wgrads rounded to bf16, as before
    int wgrads = 0;
    for (Step& s : old.steps)
      if (s.op == Op::gemm && (s.out[0] == "dw1" || s.out[0] == "dw2")) {
        CHECK(s.prec == Precision::fp32);
        s.prec = Precision::bf16;
        ++wgrads;
      }
    CHECK(wgrads == 2);
    const Env a = run(st, df), b = run(st, old);
    for (const char* t : {"dw1", "dw2"}) {
      INFO(t);
      REQUIRE(a.at(t).v.size() == b.at(t).v.size());
      std::size_t off_grid = 0;
      for (std::size_t i = 0; i < a.at(t).v.size(); ++i) {
        const float f = float(a.at(t).v[i]);
        CHECK(double(f) == a.at(t).v[i]);        // an fp32 value
        CHECK(double(bf16_rne(f)) == b.at(t).v[i]);  // bf16 of it is what the old graph stored
        off_grid += bf16_rne(f) != f;
      }
      CHECK(off_grid > a.at(t).v.size() / 2);  // most fp32 gradients are not bf16 values
    }
    for (const char* t : {"y", "dx", "dwr"}) CHECK(a.at(t).v == b.at(t).v);
  }
}

TEST_CASE("every FP8 copy is made as docs/dataflows.md says (direct, DQ->Q, SAT, fused)", "[dataflow][docs]") {
  // The table between the copy-origins markers of docs/dataflows.md, against copy_origins() of each graph.
  std::ifstream doc(std::string(FP8FLOW_SOURCE_DIR) + "/docs/dataflows.md");
  REQUIRE(doc);
  std::map<std::string, std::map<std::string, std::pair<std::string, std::string>>> documented;
  bool in = false;
  for (std::string line; std::getline(doc, line);) {
    if (line.find("<!-- copy-origins") != std::string::npos) in = true;
    else if (line.find("<!-- end copy-origins") != std::string::npos) in = false;
    else if (in && line.starts_with("| ") && !line.starts_with("| dataflow")) {
      std::vector<std::string> cells;
      std::stringstream ss(line);
      for (std::string c; std::getline(ss, c, '|');) {
        c.erase(0, c.find_first_not_of(' '));
        c.erase(c.find_last_not_of(' ') + 1);
        if (!c.empty()) cells.push_back(c);
      }
      REQUIRE(cells.size() == 4);
      documented[cells[0]][cells[1]] = {cells[2], cells[3]};
    }
  }
  REQUIRE(documented.size() == 4);
  for (const auto& [name, rows] : documented) {
    INFO(name);
    std::map<std::string, std::pair<std::string, std::string>> walked;
    for (const CopyOrigin& o : copy_origins(builtin_dataflow(name))) walked[o.tensor] = {o.source, o.origin};
    CHECK(walked == rows);
  }
  // The controls' graphs say what they are: ctl_per_tensor_act requantizes its forward activations.
  std::map<std::string, std::string> pt;
  for (const CopyOrigin& o : copy_origins(builtin_dataflow("ctl_per_tensor_act"))) pt[o.tensor] = o.origin;
  CHECK(pt.at("xp.pt") == "dq_q");
  CHECK(pt.at("act.pt") == "direct");
  CHECK(pt.at("act.q") == "dq_q");
}
