// fp8flow check quantize|transpose|dequantize|convert|gemm: a kernel's outputs (.npy) against the golden
// model, with a report that says where and why they differ (src/quant/compare.hpp, docs/check.md).
// Exit 0 only when bit-exact; 1 on a mismatch or bad input (file and field named); 2 usage.
#include <fmt/format.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>

#include "cli/cmd_check.hpp"
#include "cli/gemm_operand_files.hpp"
#include "cli/usage.hpp"
#include "formats/batch.hpp"
#include "formats/convert.hpp"
#include "io/errors.hpp"
#include "io/experiment.hpp"
#include "io/npy.hpp"
#include "io/results_store.hpp"
#include "quant/compare.hpp"
#include "quant/quant_io.hpp"
#include "quant/transpose.hpp"
#include "reference/gemm.hpp"

namespace fp8flow::cli {

namespace {

// Options every check takes.
struct CommonArgs {
  bool json = false;
  std::string out, label;
  std::size_t max_listed = 20;
};

// A kernel's output tensor: one .npy or a comma-separated list (per expert group), concatenated flat.
struct GotArray {
  std::vector<std::string> files;
  io::DType dtype = io::DType::u8;
  std::vector<std::size_t> shape;  // of the single file (empty for a list)
  std::vector<std::byte> data;
  std::size_t size = 0;
  std::string name() const { return fmt::format("{}", fmt::join(files, ",")); }
};

GotArray read_got(const std::string& spec, const std::string& option) {
  GotArray g;
  std::size_t p = 0;
  while (p <= spec.size()) {
    const auto q = spec.find(',', p);
    g.files.push_back(spec.substr(p, q == std::string::npos ? std::string::npos : q - p));
    if (q == std::string::npos) break;
    p = q + 1;
  }
  for (const auto& f : g.files) {
    if (f.empty()) throw InputError(fmt::format("{} '{}': empty file name in the list", option, spec));
    const io::NpyArray a = io::read_npy(f);
    if (g.files.size() > 1 && a.dtype != (f == g.files.front() ? a.dtype : g.dtype))
      throw InputError(fmt::format("{} {}: dtype {} differs from the list's first file ({})", option, f,
                                   io::to_string(a.dtype), io::to_string(g.dtype)));
    g.dtype = a.dtype;
    if (g.files.size() == 1) g.shape = a.shape;
    g.data.insert(g.data.end(), a.data.begin(), a.data.end());
    g.size += a.size();
  }
  return g;
}

std::vector<std::uint8_t> got_codes(const GotArray& g, const std::string& option) {
  if (g.dtype != io::DType::u8 && g.dtype != io::DType::i8)
    throw InputError(fmt::format("{} {}: dtype {}: expected uint8 codes (numpy: arr.view(np.uint8); torch: "
                                 "t.view(torch.uint8))",
                                 option, g.name(), io::to_string(g.dtype)));
  std::vector<std::uint8_t> v(g.size);
  std::memcpy(v.data(), g.data.data(), g.size);
  return v;
}

std::vector<float> got_floats(const GotArray& g, const std::string& option) {
  if (g.dtype != io::DType::f32)
    throw InputError(fmt::format("{} {}: dtype {}: expected float32", option, g.name(), io::to_string(g.dtype)));
  std::vector<float> v(g.size);
  std::memcpy(v.data(), g.data.data(), g.size * sizeof(float));
  return v;
}

std::string shape_text(const std::vector<std::size_t>& s) {
  return fmt::format("[{}]", fmt::join(s, ", "));
}

enum class CodesLayout { rowwise, transposed, group_blocks };
CodesLayout parse_codes_layout(const std::string& s) {
  if (s == "rowwise") return CodesLayout::rowwise;
  if (s == "transposed") return CodesLayout::transposed;
  if (s == "group_blocks") return CodesLayout::group_blocks;
  throw InputError(fmt::format("--codes-layout '{}': expected rowwise, transposed or group_blocks", s));
}

// The kernel's codes into a tensor shaped like `want`, stored as the layout says.
void set_got_codes(QuantizedTensor& got, const GotArray& g, CodesLayout layout, const std::string& option) {
  std::vector<std::uint8_t> codes = got_codes(g, option);
  if (codes.size() != got.size())
    throw InputError(fmt::format("{} {}: {} codes ({}), the golden tensor has [{}, {}] = {}", option, g.name(),
                                 codes.size(), g.files.size() == 1 ? shape_text(g.shape) : "a list", got.rows,
                                 got.cols, got.size()));
  if (g.files.size() == 1 && g.shape.size() == 2 && layout != CodesLayout::group_blocks) {
    const std::size_t r = layout == CodesLayout::rowwise ? got.rows : got.cols;
    const std::size_t c = layout == CodesLayout::rowwise ? got.cols : got.rows;
    if (g.shape[0] != r || g.shape[1] != c)
      throw InputError(fmt::format("{} {}: shape {} but --codes-layout {} expects [{}, {}]{}", option, g.name(),
                                   shape_text(g.shape), layout == CodesLayout::rowwise ? "rowwise" : "transposed", r,
                                   c, g.shape[0] == c && g.shape[1] == r ? " (the other layout matches the shape)" : ""));
  }
  got.codes_transposed = layout != CodesLayout::rowwise;
  got.codes = layout == CodesLayout::group_blocks ? codes_from_group_blocks(codes, got) : std::move(codes);
}

enum class ScaleLayoutArg { compact, gemm_ready, transposed };
ScaleLayoutArg parse_scale_layout_arg(const std::string& s) {
  if (s == "compact") return ScaleLayoutArg::compact;
  if (s == "gemm_ready") return ScaleLayoutArg::gemm_ready;
  if (s == "transposed") return ScaleLayoutArg::transposed;
  throw InputError(fmt::format("--scale-layout '{}': expected compact, gemm_ready or transposed", s));
}

std::size_t round_up4(std::size_t n) { return (n + 3) / 4 * 4; }

// A scale array in `layout` to the COMPACT grid [rt, ct] of a tensor with granularity `tile`:
//   gemm_ready  TE's GEMM-ready scale_inv: 1xN tiles [ct, roundup(rows, 4)] (transposed, padded);
//               NxN and Nx1 tiles [rt, roundup(ct, 4)] (padded); NxN tiles of codes stored transposed
//               [ct, roundup(rt, 4)] (the stored tensor's own grid). Padding entries are not compared.
//   transposed  [ct, rt].
std::vector<float> compact_scales(std::span<const float> v, const std::vector<std::size_t>& shape, std::size_t rt,
                                  std::size_t ct, Granularity tile, ScaleLayoutArg layout, const std::string& what,
                                  bool codes_transposed = false) {
  std::vector<float> out(rt * ct);
  const auto need = [&](std::size_t a, std::size_t b) {
    if (v.size() != a * b || (shape.size() == 2 && (shape[0] != a || shape[1] != b)))
      throw InputError(fmt::format("{}: {} scale_inv values{} but the {} layout of a [{}, {}] tile grid is [{}, {}]",
                                   what, v.size(), shape.size() == 2 ? fmt::format(" (shape {})", shape_text(shape)) : "",
                                   layout == ScaleLayoutArg::compact ? "compact"
                                   : layout == ScaleLayoutArg::transposed ? "transposed" : "gemm_ready",
                                   rt, ct, a, b));
  };
  switch (layout) {
    case ScaleLayoutArg::compact:
      need(rt, ct);
      std::copy(v.begin(), v.end(), out.begin());
      break;
    case ScaleLayoutArg::transposed:
      need(ct, rt);
      for (std::size_t i = 0; i < rt; ++i)
        for (std::size_t j = 0; j < ct; ++j) out[i * ct + j] = v[j * rt + i];
      break;
    case ScaleLayoutArg::gemm_ready:
      if (tile.rows == 1 && tile.cols > 1) {
        const std::size_t pad = round_up4(rt);
        need(ct, pad);
        for (std::size_t i = 0; i < rt; ++i)
          for (std::size_t j = 0; j < ct; ++j) out[i * ct + j] = v[j * pad + i];
      } else if (tile.rows > 1 && tile.cols > 1 && codes_transposed) {
        // NxN tiles of a tensor whose codes are stored transposed (TE's columnwise 128x128 copy): the
        // GEMM-ready grid of the stored [cols, rows] tensor, [col tiles, roundup(row tiles, 4)].
        const std::size_t pad = round_up4(rt);
        need(ct, pad);
        for (std::size_t i = 0; i < rt; ++i)
          for (std::size_t j = 0; j < ct; ++j) out[i * ct + j] = v[j * pad + i];
      } else if (tile.rows > 1 && tile.cols >= 1) {
        const std::size_t pad = round_up4(ct);
        need(rt, pad);
        for (std::size_t i = 0; i < rt; ++i)
          for (std::size_t j = 0; j < ct; ++j) out[i * ct + j] = v[i * pad + j];
      } else {
        throw InputError(fmt::format("{}: granularity {} has no GEMM-ready scale layout (1xN, NxN and Nx1 have)",
                                     what, to_string(tile)));
      }
      break;
  }
  return out;
}

void set_got_scales(QuantizedTensor& got, const GotArray& g, ScaleLayoutArg layout, const std::string& option) {
  std::vector<float> v;
  if (g.dtype == io::DType::u8 && got.params.scale_format == ScaleFormat::ue8m0) {
    v = scales_from_ue8m0(got_codes(g, option));
  } else {
    v = got_floats(g, option);
  }
  got.scale_inv = compact_scales(v, g.files.size() == 1 ? g.shape : std::vector<std::size_t>{}, got.scale_rows,
                                 got.scale_cols, got.recipe.tile, layout, fmt::format("{} {}", option, g.name()),
                                 got.codes_transposed);
}

InputTensor read_input(const std::string& file, const std::string& from) {
  if (from.empty()) return read_input_npy(file);
  if (from != "bf16") throw UsageError(fmt::format("--from '{}': expected bf16 (uint16 bf16 codes)", from));
  const io::NpyArray a = io::read_npy(file);
  if ((a.dtype != io::DType::u16 && a.dtype != io::DType::bf16) || a.shape.size() != 2)  // bf16: ml_dtypes' '<V2'
    throw InputError(fmt::format("{}: --from bf16 needs a 2-D uint16 array of bf16 codes, got {} {}", file,
                                 io::to_string(a.dtype), a.shape_string()));
  InputTensor t;
  t.rows = a.shape[0];
  t.cols = a.shape[1];
  const auto v = a.view<std::uint16_t>();
  t.x.resize(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) t.x[i] = decode_f32(bf16, v[i]);
  t.truth.assign(t.x.begin(), t.x.end());
  t.dtype = InputDtype::bf16;
  t.dtype_name = "bfloat16";
  return t;
}

std::uint64_t digest(const std::vector<std::byte>& d) {
  std::uint64_t h = 1469598103934665603ull;
  for (std::byte b : d) {
    h ^= std::uint64_t(b);
    h *= 1099511628211ull;
  }
  return h;
}

// The report: text or JSON on stdout, optionally a kernel_check run in a results store; exit status.
void finish(const CommonArgs& c, const CompareReport& rep, nlohmann::json params, const GlobalOptions& g) {
  if (!c.out.empty()) {
    io::RunRecord rec;
    rec.kind = "kernel_check";
    rec.params = params;
    rec.hash = io::run_hash(rec.kind, params);
    rec.experiment = "check";
    rec.label = c.label.empty() ? fmt::format("check {}", params.value("op", "")) : c.label;
    rec.summary = fmt::format("{}: {} of {} {} differ, {} of {} scales", rep.bitexact() ? "bit-exact" : "MISMATCH",
                              rep.elements_mismatched, rep.elements, rep.what, rep.scales_mismatched, rep.scales);
    rec.provenance = io::Provenance::of_this_build();
    rec.provenance.threads = g.threads;
    rec.attrs = {{"bitexact", rep.bitexact() ? 1 : 0},
                 {"elements", rep.elements},
                 {"elements_mismatched", rep.elements_mismatched},
                 {"scales", rep.scales},
                 {"scales_mismatched", rep.scales_mismatched},
                 {"max_abs_ulp", rep.max_abs_ulp},
                 {"layout", fmt::format("{}", fmt::join(rep.layout, "; "))}};
    std::vector<std::string> cname;
    std::vector<std::int64_t> ccount;
    for (std::size_t i = 0; i < kMismatchCauses; ++i) {
      cname.emplace_back(to_string(MismatchCause(i)));
      ccount.push_back(std::int64_t(rep.by_cause[i]));
    }
    io::Table causes{"causes", "differing elements per likely cause (docs/check.md)", {}, nlohmann::json::object()};
    causes.add("cause", "", cname).add("count", "count", ccount);
    std::vector<std::int64_t> row, col, rt, ct, grp, gc, wc, ulp;
    std::vector<double> in, gv, wv, gs, ws;
    std::vector<std::string> cause;
    for (const auto& m : rep.mismatches) {
      row.push_back(std::int64_t(m.row));
      col.push_back(std::int64_t(m.col));
      rt.push_back(std::int64_t(m.row_tile));
      ct.push_back(std::int64_t(m.col_tile));
      grp.push_back(std::int64_t(m.group));
      gc.push_back(m.got_code);
      wc.push_back(m.want_code);
      ulp.push_back(m.ulp);
      in.push_back(m.input);
      gv.push_back(m.got_value);
      wv.push_back(m.want_value);
      gs.push_back(m.got_scale_inv);
      ws.push_back(m.want_scale_inv);
      cause.emplace_back(to_string(m.cause));
    }
    io::Table mism{"mismatches", "the first differing elements, in the golden tensor's storage order", {}, nlohmann::json::object()};
    mism.add("row", "count", row)
        .add("col", "count", col)
        .add("row_tile", "count", rt)
        .add("col_tile", "count", ct)
        .add("group", "count", grp)
        .add("input", "value", in)
        .add("got_code", "", gc)
        .add("want_code", "", wc)
        .add("got_value", "value", gv)
        .add("want_value", "value", wv)
        .add("got_scale_inv", "1", gs)
        .add("want_scale_inv", "1", ws)
        .add("ulp", "count", ulp)
        .add("cause", "", cause);
    std::vector<std::int64_t> srt, sct, sg;
    std::vector<double> sgot, swant;
    for (const auto& m : rep.scale_mismatches) {
      srt.push_back(std::int64_t(m.row_tile));
      sct.push_back(std::int64_t(m.col_tile));
      sg.push_back(std::int64_t(m.group));
      sgot.push_back(m.got);
      swant.push_back(m.want);
    }
    io::Table sm{"scale_mismatches", "the first differing scale_inv tiles", {}, nlohmann::json::object()};
    sm.add("row_tile", "count", srt).add("col_tile", "count", sct).add("group", "count", sg).add("got", "1", sgot).add(
        "want", "1", swant);
    rec.tables = {std::move(causes), std::move(mism), std::move(sm)};
    const bool added = io::append_run_once(c.out, std::move(rec));
    if (!g.quiet && !c.json)
      fmt::print(stderr, "{} kernel_check run {} in {}\n", added ? "stored" : "already stored",
                 io::run_hash("kernel_check", params), c.out);
  }
  if (c.json) {
    nlohmann::json j = to_json(rep);
    j["check"] = params;
    fmt::print("{}\n", j.dump(2));
  } else {
    fmt::print("{}", to_text(rep));
  }
  std::fflush(stdout);
  if (!rep.bitexact()) throw CheckFailed();
}

void add_common(CLI::App* cmd, CommonArgs& c) {
  cmd->add_flag("--json", c.json, "Print the report as JSON");
  cmd->add_option("-o,--out", c.out, "Also store the report as a kernel_check run in this HDF5 results store");
  cmd->add_option("--label", c.label, "Label of the stored run (default: check OP)");
  cmd->add_option("--max-mismatches", c.max_listed, "How many differing elements and scales to list (default 20)");
}

struct RecipeArgs {
  std::string format = "e4m3", granularity = "1x128", rule = "te_pow2", recipe, scale_format = "fp32", overflow, groups;
  float eps = 0.0f;
  CLI::Option* eps_opt = nullptr;
};

void add_recipe(CLI::App* cmd, RecipeArgs& r) {
  cmd->add_option("--format", r.format, "Element format (e4m3, e5m2, ...)")->capture_default_str();
  cmd->add_option("--granularity", r.granularity, "tensor, row, col, 1x128, 128x1, 128x128, 1x32, RxC")
      ->capture_default_str();
  cmd->add_option("--scale", r.rule, "Scale rule: te_fp32, te_pow2, deepgemm, deepgemm_ue8m0, paper_swiglu, mx_floor, "
                                     "mx_ceil")->capture_default_str();
  cmd->add_option("--recipe", r.recipe, "A recipe name instead, e.g. quant_1x128_e4m3_te_pow2");
  cmd->add_option("--scale-format", r.scale_format, "Scale storage: fp32 or ue8m0 (uint8 scale files)");
  cmd->add_option("--overflow", r.overflow, "Element cast overflow: satfinite or nonsat (default: the rule's source)");
  r.eps_opt = cmd->add_option("--eps", r.eps, "te_*: amax floor (default 0; FP8-Flow uses 1e-10)");
  cmd->add_option("--groups", r.groups, "Expert group sizes along rows, e.g. 300,212 (tiles restart per group)");
}

std::pair<QuantRecipe, QuantParams> recipe_of_options(const RecipeArgs& a) {
  QuantRecipe r;
  if (!a.recipe.empty()) {
    r = parse_recipe(a.recipe);
  } else {
    try {
      r.payload = &find_format(a.format);
    } catch (const std::invalid_argument& e) {
      throw InputError(fmt::format("--format: {}", e.what()));
    }
    r.tile = parse_granularity(a.granularity);
    r.scale = parse_scale_rule(a.rule);
  }
  QuantParams p = default_params(r.scale);
  p.scale_format = parse_scale_format(a.scale_format);
  if (!a.overflow.empty()) {
    try {
      p.overflow = parse_overflow(a.overflow);
    } catch (const std::invalid_argument& e) {
      throw InputError(fmt::format("--overflow: {}", e.what()));
    }
  }
  if (a.eps_opt && a.eps_opt->count() > 0) {
    if (r.scale != ScaleRule::te_fp32 && r.scale != ScaleRule::te_pow2)
      throw InputError(fmt::format("--eps {}: only the te_fp32 and te_pow2 rules take an eps (rule is {})", a.eps,
                                   to_string(r.scale)));
    p.eps = a.eps;
  }
  check_recipe(r, p);
  return {r, p};
}

// The recipe options; every failure is a usage error (exit 2, docs/cli.md).
std::pair<QuantRecipe, QuantParams> recipe_of(const RecipeArgs& a) {
  return as_usage([&] { return recipe_of_options(a); });
}

// --groups: expert group sizes along rows. Empty groups (a kernel's m_splits may hold zeros; the FP8-Flow-MoE
// fork drops them before its kernel) are left out of the golden computation; `index` maps a kept group back
// to its position in the list as given, so that reports name the user's group numbers.
struct Groups {
  std::vector<std::size_t> kept, index;
  std::size_t given = 0;
};
Groups groups_of(const std::string& s, std::size_t rows) {
  Groups g;
  std::vector<std::size_t> all;
  for (std::size_t p = 0; !s.empty() && p <= s.size();) {
    const std::size_t q = std::min(s.find(',', p), s.size());
    const std::string item = s.substr(p, q - p);
    std::size_t used = 0;
    unsigned long long v = 0;
    try {
      v = std::stoull(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (item.empty() || used != item.size() || item[0] == '-' || item[0] == '+')
      throw UsageError(fmt::format("--groups '{}': expected sizes >= 0 separated by commas ('{}')", s, item));
    all.push_back(std::size_t(v));
    p = q + 1;
  }
  g.given = all.size();
  for (std::size_t i = 0; i < all.size(); ++i)
    if (all[i] > 0) {
      g.kept.push_back(all[i]);
      g.index.push_back(i);
    }
  if (!all.empty() && g.kept.empty()) throw UsageError(fmt::format("--groups {}: every group is empty", s));
  check_row_groups(g.kept, rows);
  return g;
}
void name_groups(CompareReport& rep, const Groups& g) {
  if (g.index.empty()) return;
  for (auto& m : rep.mismatches) m.group = g.index.at(m.group);
  for (auto& m : rep.scale_mismatches) m.group = g.index.at(m.group);
}

// ---- check quantize ----------------------------------------------------------------------------------
struct QuantizeCheck {
  CommonArgs c;
  RecipeArgs r;
  std::string input, from, codes, scales, codes_layout = "rowwise", scale_layout = "compact";
};

void add_check_quantize(CLI::App* check, const GlobalOptions& g) {
  auto a = std::make_shared<QuantizeCheck>();
  auto* cmd = check->add_subcommand("quantize", "A quantize kernel's codes and scale_inv against fp8flow quantize");
  cmd->add_option("X", a->input, "The kernel's input .npy (float16/32/64, 2-D; uint16 bf16 codes with --from bf16)")
      ->required();
  cmd->add_option("--codes", a->codes, "The kernel's codes .npy (uint8), or a comma-separated list concatenated")
      ->required();
  cmd->add_option("--scales", a->scales, "The kernel's scale_inv .npy (float32; uint8 with --scale-format ue8m0)")
      ->required();
  cmd->add_option("--from", a->from, "Input element type when X holds codes: bf16");
  cmd->add_option("--codes-layout", a->codes_layout, "rowwise [rows, cols], transposed [cols, rows] (a column copy)")
      ->capture_default_str();
  cmd->add_option("--scale-layout", a->scale_layout, "compact, gemm_ready (TE's padded layout) or transposed")
      ->capture_default_str();
  add_recipe(cmd, a->r);
  add_common(cmd, a->c);
  cmd->callback([a, &g] {
    const auto [recipe, params0] = recipe_of(a->r);
    QuantParams params = params0;
    const CodesLayout cl = parse_codes_layout(a->codes_layout);
    const ScaleLayoutArg sl = parse_scale_layout_arg(a->scale_layout);
    const InputTensor in = read_input(a->input, a->from);
    params.input = in.dtype;
    const Groups grp = groups_of(a->r.groups, in.rows);
    const std::vector<std::size_t>& groups = grp.kept;
    const QuantizedTensor want_rw = golden::quantize(in.x, in.rows, in.cols, recipe, params, groups);
    const QuantizedTensor want = cl == CodesLayout::rowwise ? want_rw : with_codes_transposed(want_rw, true);
    QuantizedTensor got = want;
    const GotArray gc = read_got(a->codes, "--codes");
    const GotArray gs = read_got(a->scales, "--scales");
    set_got_codes(got, gc, cl, "--codes");
    set_got_scales(got, gs, sl, "--scales");
    const auto pre = quantize_precast(in.x, in.rows, in.cols, recipe, params, groups);
    CompareReport rep = compare_quantized(got, want, {in.truth, pre, a->c.max_listed});
    name_groups(rep, grp);
    nlohmann::json p = {{"op", "quantize"},
                        {"input_file", a->input},
                        {"codes_file", a->codes},
                        {"scales_file", a->scales},
                        {"recipe", recipe.name()},
                        {"eps", params.eps},
                        {"overflow", to_string(params.overflow)},
                        {"scale_format", to_string(params.scale_format)},
                        {"groups", groups},
                        {"codes_layout", a->codes_layout},
                        {"scale_layout", a->scale_layout},
                        {"shape", {in.rows, in.cols}},
                        {"got_digest", fmt::format("{:016x}", digest(gc.data) ^ (digest(gs.data) * 31))}};
    finish(a->c, rep, p, g);
  });
}

// ---- check transpose ---------------------------------------------------------------------------------
struct TransposeCheck {
  CommonArgs c;
  std::string in_codes, in_scales, codes, scales, method, groups, rounding = "rne", format = "e4m3";
  std::string codes_layout, scale_layout = "compact", input_scale_layout = "compact";
  int block = 128;
  std::uint64_t seed = 0;
};

void add_check_transpose(CLI::App* check, const GlobalOptions& g) {
  auto a = std::make_shared<TransposeCheck>();
  auto* cmd = check->add_subcommand("transpose", "A scaling-aware transpose kernel's column copy against "
                                                 "fp8flow transpose (naive, paper_kernel, exact)");
  cmd->add_option("ROW_CODES", a->in_codes, "The kernel's input: rowwise codes .npy, uint8 [rows, cols]")->required();
  cmd->add_option("ROW_SCALES", a->in_scales, "... and their 1xN power-of-two scale_inv .npy, float32")->required();
  cmd->add_option("--codes", a->codes, "The kernel's column-copy codes .npy; a comma-separated list is one "
                                       "[cols, m_g] tensor per expert group (the FP8-Flow-MoE Triton SAT)")
      ->required();
  cmd->add_option("--scales", a->scales, "The kernel's column scale_inv .npy [sum_g ceil(m_g/N), cols]; or a "
                                         "comma-separated list, one [ceil(m_g/N), cols] per group")
      ->required();
  cmd->add_option("--method", a->method, "naive, paper_kernel or exact")->required();
  cmd->add_option("--groups", a->groups, "Expert group sizes along rows, e.g. 300,212 (default: one group)");
  cmd->add_option("--round", a->rounding, "exact: rounding (rne, rz, ru, rd, rna, stochastic)")->capture_default_str();
  cmd->add_option("--seed", a->seed, "exact --round stochastic: Philox seed");
  cmd->add_option("--format", a->format, "Element format of the codes")->capture_default_str();
  cmd->add_option("--block", a->block, "N of the 1xN input tiles and Nx1 output tiles")->capture_default_str();
  cmd->add_option("--codes-layout", a->codes_layout,
                  "transposed [cols, rows] (default for one file), group_blocks (default for a list), rowwise");
  cmd->add_option("--scale-layout", a->scale_layout, "compact or gemm_ready (padded to a multiple of 4 columns)")
      ->capture_default_str();
  cmd->add_option("--input-scale-layout", a->input_scale_layout,
                  "compact [rows, ceil(cols/N)], gemm_ready [ceil(cols/N), roundup(rows, 4)] or transposed")
      ->capture_default_str();
  add_common(cmd, a->c);
  cmd->callback([a, &g] {
    const TransposeMethod m = as_usage([&] { return parse_transpose_method(a->method); });
    if (m == TransposeMethod::direct)
      throw UsageError("--method direct: quantizes the high-precision tensor; check it with `fp8flow check quantize "
                       "X.npy --granularity 128x1 --codes-layout transposed`");
    Rounding rounding;
    try {
      rounding = parse_rounding(a->rounding);
    } catch (const std::invalid_argument& e) {
      throw UsageError(fmt::format("--round: {}", e.what()));
    }
    if (a->block < 2) throw UsageError(fmt::format("--block {}: expected N >= 2", a->block));
    QuantizedTensor in;
    try {
      in.recipe = {Granularity{1, a->block}, &find_format(a->format), ScaleRule::te_pow2};
    } catch (const std::invalid_argument& e) {
      throw UsageError(fmt::format("--format: {}", e.what()));
    }
    in.params = default_params(ScaleRule::te_pow2);
    const io::NpyArray rc = io::read_npy(a->in_codes);
    if ((rc.dtype != io::DType::u8 && rc.dtype != io::DType::i8) || rc.shape.size() != 2)
      throw InputError(fmt::format("{}: ROW_CODES must be a 2-D uint8 array [rows, cols], got {} {}", a->in_codes,
                                   io::to_string(rc.dtype), rc.shape_string()));
    in.rows = rc.shape[0];
    in.cols = rc.shape[1];
    in.codes.resize(rc.size());
    std::memcpy(in.codes.data(), rc.data.data(), rc.size());
    const TileGrid grid = in.grid();
    in.scale_rows = grid.row_tiles.size();
    in.scale_cols = grid.col_tiles.size();
    const io::NpyArray rs = io::read_npy(a->in_scales);
    if (rs.dtype != io::DType::f32)
      throw InputError(fmt::format("{}: ROW_SCALES must be float32 scale_inv, got {}", a->in_scales,
                                   io::to_string(rs.dtype)));
    in.scale_inv = compact_scales(rs.view<float>(), rs.shape, in.scale_rows, in.scale_cols, in.recipe.tile,
                                  parse_scale_layout_arg(a->input_scale_layout), fmt::format("ROW_SCALES {}", a->in_scales));
    check_sat_input(in, a->in_codes);
    const Groups grp = groups_of(a->groups, in.rows);
    const std::vector<std::size_t>& groups = grp.kept;
    const QuantizedTensor want = m == TransposeMethod::naive          ? transpose_naive(in, groups)
                                 : m == TransposeMethod::paper_kernel ? transpose_paper_kernel(in, groups, g.threads)
                                                                      : transpose_exact(in, groups, rounding, g.threads, a->seed);
    QuantizedTensor got = want;
    const GotArray gc = read_got(a->codes, "--codes");
    const GotArray gs = read_got(a->scales, "--scales");
    const std::string cls = !a->codes_layout.empty() ? a->codes_layout : gc.files.size() > 1 ? "group_blocks" : "transposed";
    const CodesLayout cl = parse_codes_layout(cls);
    // One file per group: per kept group, or per group as given (empty groups as empty [cols, 0] tensors).
    if (gc.files.size() > 1 && gc.files.size() != std::max<std::size_t>(groups.size(), 1) &&
        gc.files.size() != grp.given)
      throw InputError(fmt::format("--codes: {} files for {} expert groups (one [cols, m_g] tensor per group)",
                                   gc.files.size(), std::max<std::size_t>(groups.size(), 1)));
    set_got_codes(got, gc, cl, "--codes");
    set_got_scales(got, gs, parse_scale_layout_arg(a->scale_layout), "--scales");
    const std::vector<float> dq = dequantize(in);
    const std::vector<double> input(dq.begin(), dq.end());
    CompareReport rep = compare_quantized(got, want, {input, {}, a->c.max_listed});
    name_groups(rep, grp);
    nlohmann::json p = {{"op", "transpose"},
                        {"row_codes_file", a->in_codes},
                        {"row_scales_file", a->in_scales},
                        {"codes_file", a->codes},
                        {"scales_file", a->scales},
                        {"method", to_string(m)},
                        {"round", to_string(rounding)},
                        {"seed", a->seed},
                        {"format", a->format},
                        {"block", a->block},
                        {"groups", groups},
                        {"codes_layout", cls},
                        {"scale_layout", a->scale_layout},
                        {"shape", {in.rows, in.cols}},
                        {"got_digest", fmt::format("{:016x}", digest(gc.data) ^ (digest(gs.data) * 31))}};
    finish(a->c, rep, p, g);
  });
}

// ---- check dequantize --------------------------------------------------------------------------------
struct DequantizeCheck {
  CommonArgs c;
  RecipeArgs r;
  std::string in_codes, in_scales, out, codes_layout = "rowwise", scale_layout = "compact";
};

void add_check_dequantize(CLI::App* check, const GlobalOptions& g) {
  auto a = std::make_shared<DequantizeCheck>();
  auto* cmd = check->add_subcommand("dequantize", "A dequantize kernel's float32 output against RN32(code * scale_inv)");
  cmd->add_option("CODES", a->in_codes, "The kernel's input codes .npy, uint8")->required();
  cmd->add_option("SCALES", a->in_scales, "... and their scale_inv .npy (float32; uint8 with --scale-format ue8m0)")
      ->required();
  cmd->add_option("--values", a->out, "The kernel's output .npy, float32, in the codes' layout")->required();
  cmd->add_option("--codes-layout", a->codes_layout, "rowwise or transposed (a column copy [cols, rows])")
      ->capture_default_str();
  cmd->add_option("--scale-layout", a->scale_layout, "compact, gemm_ready or transposed")->capture_default_str();
  add_recipe(cmd, a->r);
  add_common(cmd, a->c);
  cmd->callback([a, &g] {
    const auto [recipe, params] = recipe_of(a->r);
    const CodesLayout cl = parse_codes_layout(a->codes_layout);
    if (cl == CodesLayout::group_blocks) throw InputError("--codes-layout group_blocks: not for dequantize");
    const io::NpyArray codes = io::read_npy(a->in_codes);
    if ((codes.dtype != io::DType::u8 && codes.dtype != io::DType::i8) || codes.shape.size() != 2)
      throw InputError(fmt::format("{}: CODES must be a 2-D uint8 array, got {} {}", a->in_codes,
                                   io::to_string(codes.dtype), codes.shape_string()));
    QuantizedTensor q;
    q.recipe = recipe;
    q.params = params;
    const bool tr = cl == CodesLayout::transposed;
    q.rows = tr ? codes.shape[1] : codes.shape[0];
    q.cols = tr ? codes.shape[0] : codes.shape[1];
    q.row_groups = groups_of(a->r.groups, q.rows).kept;
    q.codes_transposed = tr;
    q.codes.resize(codes.size());
    std::memcpy(q.codes.data(), codes.data.data(), codes.size());
    const TileGrid grid = q.grid();
    q.scale_rows = grid.row_tiles.size();
    q.scale_cols = grid.col_tiles.size();
    const GotArray sc = read_got(a->in_scales, "SCALES");
    set_got_scales(q, sc, parse_scale_layout_arg(a->scale_layout), "SCALES");
    const std::vector<float> logical = dequantize(q);
    const std::size_t sr = codes.shape[0], scn = codes.shape[1];
    std::vector<float> want(logical.size());
    std::vector<double> input(logical.size());
    for (std::size_t r = 0; r < q.rows; ++r)
      for (std::size_t c = 0; c < q.cols; ++c) {
        const std::size_t s = q.code_index(r, c);
        want[s] = logical[r * q.cols + c];
        input[s] = decode(*recipe.payload, q.codes[s]);
      }
    const GotArray out = read_got(a->out, "--values");
    if (out.files.size() == 1 && out.shape != codes.shape)
      throw InputError(fmt::format("--values {}: shape {} but CODES is {}", a->out, shape_text(out.shape),
                                   codes.shape_string()));
    const std::vector<float> got = got_floats(out, "--values");
    const CompareReport rep = compare_values(got, want, sr, scn, {input, {}, a->c.max_listed});
    nlohmann::json p = {{"op", "dequantize"},       {"codes_file", a->in_codes},         {"scales_file", a->in_scales},
                        {"values_file", a->out},            {"recipe", recipe.name()},      {"codes_layout", a->codes_layout},
                        {"scale_layout", a->scale_layout}, {"groups", q.row_groups}, {"shape", {sr, scn}},
                        {"got_digest", fmt::format("{:016x}", digest(out.data))}};
    finish(a->c, rep, p, g);
  });
}

// ---- check convert -----------------------------------------------------------------------------------
struct ConvertCheck {
  CommonArgs c;
  std::string input, codes, to, rounding = "rne", overflow = "satfinite";
  std::uint64_t seed = 0;
};

void add_check_convert(CLI::App* check, const GlobalOptions& g) {
  auto a = std::make_shared<ConvertCheck>();
  auto* cmd = check->add_subcommand("convert", "A conversion kernel's codes against fp8flow convert (no scaling)");
  cmd->add_option("X", a->input, "The kernel's input .npy (float16/32/64, any shape)")->required();
  cmd->add_option("--codes", a->codes, "The kernel's codes .npy (uint8, X's shape)")->required();
  cmd->add_option("--to", a->to, "Format of the codes (e4m3, e5m2, e4m3fnuz, e5m2fnuz, e2m1, e2m3, e3m2)")->required();
  cmd->add_option("--round", a->rounding, "rne, rz, ru, rd, rna, stochastic")->capture_default_str();
  cmd->add_option("--overflow", a->overflow, "satfinite or nonsat")->capture_default_str();
  cmd->add_option("--seed", a->seed, "--round stochastic: Philox seed (element i draws counter i)");
  add_common(cmd, a->c);
  cmd->callback([a, &g] {
    const FormatSpec* f;
    CastPolicy pol;
    try {
      f = &find_format(a->to);
      pol = {parse_rounding(a->rounding), parse_overflow(a->overflow)};
    } catch (const std::invalid_argument& e) {
      throw InputError(e.what());
    }
    if (storage_bits(*f) != 8 || f == &ue8m0)
      throw InputError(fmt::format("--to {}: check convert compares 8-bit signed element codes", a->to));
    const io::NpyArray x = io::read_npy(a->input);
    const std::size_t n = x.size();
    const std::size_t rows = x.shape.size() == 2 ? x.shape[0] : 1, cols = x.shape.size() == 2 ? x.shape[1] : n;
    if (n == 0) throw InputError(fmt::format("{}: empty array", a->input));
    std::vector<double> truth(n);
    QuantizedTensor want;
    want.rows = rows;
    want.cols = cols;
    want.recipe = {kTensor, f, ScaleRule::te_fp32};
    want.scale_rows = want.scale_cols = 1;
    want.scale_inv = {1.0f};
    want.codes.resize(n);
    BatchOptions bo;
    bo.seed = a->seed;
    bo.threads = g.threads;
    switch (x.dtype) {
      case io::DType::f32: {
        const auto v = x.view<float>();
        encode(*f, pol, v, std::span<std::uint8_t>(want.codes), bo);
        std::copy(v.begin(), v.end(), truth.begin());
        break;
      }
      case io::DType::f64: {
        const auto v = x.view<double>();
        encode(*f, pol, v, std::span<std::uint8_t>(want.codes), bo);
        std::copy(v.begin(), v.end(), truth.begin());
        break;
      }
      case io::DType::f16: {
        const auto v = x.view<std::uint16_t>();
        std::vector<float> xf(n);
        for (std::size_t i = 0; i < n; ++i) xf[i] = decode_f32(f16, v[i]);
        encode(*f, pol, std::span<const float>(xf), std::span<std::uint8_t>(want.codes), bo);
        std::copy(xf.begin(), xf.end(), truth.begin());
        break;
      }
      default:
        throw InputError(fmt::format("{}: dtype {}: expected float16, float32 or float64", a->input,
                                     io::to_string(x.dtype)));
    }
    QuantizedTensor got = want;
    const GotArray gc = read_got(a->codes, "--codes");
    if (gc.files.size() == 1 && gc.shape != x.shape)
      throw InputError(fmt::format("--codes {}: shape {} but X is {}", a->codes, shape_text(gc.shape), x.shape_string()));
    set_got_codes(got, gc, CodesLayout::rowwise, "--codes");
    got.codes_transposed = false;
    const CompareReport rep = compare_quantized(got, want, {truth, truth, a->c.max_listed});
    nlohmann::json p = {{"op", "convert"},      {"input_file", a->input},       {"codes_file", a->codes},
                        {"to", f->name},        {"round", a->rounding},    {"overflow", a->overflow},
                        {"seed", a->seed},      {"shape", x.shape},
                        {"got_digest", fmt::format("{:016x}", digest(gc.data))}};
    finish(a->c, rep, p, g);
  });
}

// ---- check gemm --------------------------------------------------------------------------------------
struct GemmCheck {
  CommonArgs c;
  std::string a, b, out, format = "e4m3", format_b, accum = "fp32_seq", scale_a, scale_b, gran_a = "tensor",
                         gran_b = "tensor";
  AccumParams params;
};


void add_check_gemm(CLI::App* check, const GlobalOptions& g) {
  auto a = std::make_shared<GemmCheck>();
  auto* cmd = check->add_subcommand("gemm", "An FP8 GEMM's float32 output against fp8flow gemm's accumulation model");
  cmd->add_option("A", a->a, "A codes, uint8 [M, K]")->required();
  cmd->add_option("B", a->b, "B codes, uint8 [N, K] (K-major)")->required();
  cmd->add_option("--values", a->out, "The kernel's output .npy, float32 [M, N]")->required();
  cmd->add_option("--format", a->format, "format of A's codes (and B's unless --format-b)")->capture_default_str();
  cmd->add_option("--format-b", a->format_b, "format of B's codes");
  cmd->add_option("--accum", a->accum, std::string("accumulation model: ") + std::string(kAccumModelNames))
      ->capture_default_str();
  cmd->add_option("--scale-a", a->scale_a, "A's scale_inv, float32, COMPACT tile grid");
  cmd->add_option("--scale-b", a->scale_b, "B's scale_inv, float32, COMPACT tile grid");
  cmd->add_option("--granularity-a", a->gran_a, "A's scale tiles")->capture_default_str();
  cmd->add_option("--granularity-b", a->gran_b, "B's scale tiles")->capture_default_str();
  cmd->add_option("--promote-interval", a->params.promote_interval, "N_C")->capture_default_str();
  cmd->add_option("--acc-bits", a->params.acc_fraction_bits, "fraction bits of the limited accumulator")
      ->capture_default_str();
  cmd->add_option("--group", a->params.group, "hopper_fast: products per aligned group")->capture_default_str();
  cmd->add_flag("--fast-accum", a->params.fast_accum, "hopper_fast: never promote");
  add_common(cmd, a->c);
  cmd->callback([a, &g] {
    const FormatSpec* fa;
    const FormatSpec* fb;
    try {
      fa = &find_format(a->format);
      fb = a->format_b.empty() ? fa : &find_format(a->format_b);
    } catch (const std::invalid_argument& e) {
      throw InputError(fmt::format("--format: {}", e.what()));
    }
    const AccumModel m = parse_accum_model(a->accum);
    const auto A = load_gemm_operand(a->a, a->scale_a, a->gran_a, *fa, "a");
    const auto B = load_gemm_operand(a->b, a->scale_b, a->gran_b, *fb, "b");
    const auto want = gemm(A.op, B.op, m, a->params, g.threads);
    const GotArray out = read_got(a->out, "--values");
    if (out.files.size() == 1 && out.shape != std::vector<std::size_t>{A.op.rows, B.op.rows})
      throw InputError(fmt::format("--values {}: shape {} but the product is [{}, {}]", a->out, shape_text(out.shape),
                                   A.op.rows, B.op.rows));
    const std::vector<float> got = got_floats(out, "--values");
    const CompareReport rep = compare_values(got, want, A.op.rows, B.op.rows, {{}, {}, a->c.max_listed});
    nlohmann::json p = {{"op", "gemm"},          {"a_file", a->a},           {"b_file", a->b},
                        {"values_file", a->out},         {"accum", to_string(m)}, {"scale_a_file", a->scale_a},
                        {"scale_b_file", a->scale_b}, {"granularity_a", a->gran_a}, {"granularity_b", a->gran_b},
                        {"format", a->format},   {"format_b", a->format_b.empty() ? a->format : a->format_b},
                        {"promote_interval", a->params.promote_interval},
                        {"acc_bits", a->params.acc_fraction_bits},
                        {"group", a->params.group},
                        {"fast_accum", a->params.fast_accum},
                        {"shape", {A.op.rows, B.op.rows}},
                        {"got_digest", fmt::format("{:016x}", digest(out.data))}};
    finish(a->c, rep, p, g);
  });
}

}  // namespace

void add_check_command(CLI::App& app, const GlobalOptions& g) {
  CLI::App* check = app.get_subcommand("check");  // shared with `check EXPERIMENT` (cmd_run.cpp)
  add_check_quantize(check, g);
  add_check_transpose(check, g);
  add_check_dequantize(check, g);
  add_check_convert(check, g);
  add_check_gemm(check, g);
}

}  // namespace fp8flow::cli
