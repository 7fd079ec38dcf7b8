// fp8flow._core: nanobind bindings of the C++ golden model (docs/python.md). Thin: every call converts
// arrays and names, releases the GIL and calls the library; the Python package (python/fp8flow) adds
// input normalisation (numpy, ml_dtypes, torch) and the report objects.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/vector.h>

#include <fmt/format.h>

#include <cstring>
#include <nlohmann/json.hpp>
#include <optional>

#include "formats/batch.hpp"
#include "formats/convert.hpp"
#include "io/errors.hpp"
#include "quant/compare.hpp"
#include "quant/quantize.hpp"
#include "quant/transpose.hpp"
#include "reference/dataflow.hpp"
#include "reference/gemm.hpp"
#include "reference/moe_layer.hpp"
#include "version.hpp"

namespace nb = nanobind;
using namespace nb::literals;
using namespace fp8flow;

namespace {

int g_threads = 0;  // fp8flow.set_threads: 0 = all cores

template <class T>
using In = nb::ndarray<const T, nb::c_contig, nb::device::cpu>;
template <class T>
using In2 = nb::ndarray<const T, nb::ndim<2>, nb::c_contig, nb::device::cpu>;
template <class T>
using Out = nb::ndarray<nb::numpy, T>;

// A numpy array owning `v`.
template <class T>
Out<T> to_numpy(std::vector<T>&& v, std::vector<std::size_t> shape) {
  auto* p = new std::vector<T>(std::move(v));
  nb::capsule owner(p, [](void* q) noexcept { delete static_cast<std::vector<T>*>(q); });
  return Out<T>(p->data(), shape.size(), shape.data(), owner);
}

template <class A>
std::vector<std::size_t> shape_of(const A& a) {
  std::vector<std::size_t> s(a.ndim());
  for (std::size_t i = 0; i < a.ndim(); ++i) s[i] = a.shape(i);
  return s;
}

const FormatSpec& format_of(const std::string& name) {
  try {
    return find_format(name);
  } catch (const std::invalid_argument& e) {
    throw InputError(fmt::format("format: {}", e.what()));
  }
}

CastPolicy policy_of(const std::string& round, const std::string& overflow) {
  try {
    return {parse_rounding(round), parse_overflow(overflow)};
  } catch (const std::invalid_argument& e) {
    throw InputError(e.what());
  }
}

std::vector<std::size_t> groups_of(const std::optional<std::vector<std::size_t>>& g, std::size_t rows) {
  std::vector<std::size_t> out = g.value_or(std::vector<std::size_t>{});
  check_row_groups(out, rows);
  return out;
}

nb::dict meta_of(const QuantizedTensor& q) {
  nb::dict d;
  d["recipe"] = q.recipe.name();
  d["format"] = std::string(q.recipe.payload->name);
  d["granularity"] = to_string(q.recipe.tile);
  d["scale"] = std::string(to_string(q.recipe.scale));
  d["shape"] = nb::make_tuple(q.rows, q.cols);
  d["scale_shape"] = nb::make_tuple(q.scale_rows, q.scale_cols);
  d["row_groups"] = q.row_groups;
  d["eps"] = q.params.eps;
  d["overflow"] = std::string(to_string(q.params.overflow));
  d["scale_format"] = std::string(to_string(q.params.scale_format));
  d["codes_layout"] = q.codes_transposed ? "transposed" : "rowwise";
  d["origin"] = q.origin;
  return d;
}

nb::tuple quantized_out(QuantizedTensor q) {
  const std::vector<std::size_t> cshape =
      q.codes_transposed ? std::vector<std::size_t>{q.cols, q.rows} : std::vector<std::size_t>{q.rows, q.cols};
  nb::dict meta = meta_of(q);
  nb::object scales;
  if (q.params.scale_format == ScaleFormat::ue8m0)
    scales = nb::cast(to_numpy(scales_to_ue8m0(q.scale_inv, "scale_inv"), {q.scale_rows, q.scale_cols}));
  else
    scales = nb::cast(to_numpy(std::move(q.scale_inv), {q.scale_rows, q.scale_cols}));
  return nb::make_tuple(to_numpy(std::move(q.codes), cshape), scales, meta);
}

// A quantized tensor from arrays: codes in `layout` (rowwise [rows, cols] or transposed [cols, rows]),
// scale_inv COMPACT (float32, or uint8 UE8M0 codes).
QuantizedTensor make_tensor(const In2<std::uint8_t>& codes, nb::handle scale_inv, const QuantRecipe& r,
                            const std::vector<std::size_t>* groups, bool transposed, const char* what) {
  QuantizedTensor q;
  q.recipe = r;
  q.params = default_params(r.scale);
  q.codes_transposed = transposed;
  q.rows = transposed ? codes.shape(1) : codes.shape(0);
  q.cols = transposed ? codes.shape(0) : codes.shape(1);
  if (groups) {
    check_row_groups(*groups, q.rows);
    q.row_groups = *groups;
  }
  q.codes.assign(codes.data(), codes.data() + codes.size());
  const TileGrid g = q.grid();
  q.scale_rows = g.row_tiles.size();
  q.scale_cols = g.col_tiles.size();
  In<float> sf;
  In<std::uint8_t> su;
  if (nb::try_cast(scale_inv, sf, false)) {
    q.scale_inv.assign(sf.data(), sf.data() + sf.size());
  } else if (nb::try_cast(scale_inv, su, false)) {
    q.scale_inv = scales_from_ue8m0(std::span<const std::uint8_t>(su.data(), su.size()));
    q.params.scale_format = ScaleFormat::ue8m0;
  } else {
    throw InputError(fmt::format("{} scale_inv: expected a C-contiguous float32 (or uint8 UE8M0) CPU array", what));
  }
  if (q.scale_inv.size() != q.scale_rows * q.scale_cols)
    throw InputError(fmt::format("{} scale_inv: {} values, but granularity {} on [{}, {}]{} needs a [{}, {}] grid",
                                 what, q.scale_inv.size(), to_string(r.tile), q.rows, q.cols,
                                 q.row_groups.empty() ? "" : fmt::format(" with {} groups", q.row_groups.size()),
                                 q.scale_rows, q.scale_cols));
  return q;
}

QuantRecipe recipe_of(const std::string& format, const std::string& granularity, const std::string& scale) {
  QuantRecipe r;
  r.payload = &format_of(format);
  r.tile = parse_granularity(granularity);
  r.scale = parse_scale_rule(scale);
  return r;
}

nb::tuple report_out(const CompareReport& rep) { return nb::make_tuple(to_json(rep).dump(), to_text(rep)); }

}  // namespace

NB_MODULE(_core, m) {
  m.doc() = "fp8flow's C++ golden model (bindings; use the fp8flow package, which wraps these)";
  m.attr("__version__") = std::string(kVersion);
  m.attr("git_commit") = std::string(kGitCommit);
  nb::register_exception_translator([](const std::exception_ptr& p, void*) {
    try {
      std::rethrow_exception(p);
    } catch (const InputError& e) {
      PyErr_SetString(PyExc_ValueError, e.what());
    }
  });

  m.def("set_threads", [](int n) {
    if (n < 0) throw InputError(fmt::format("set_threads({}): expected 0 (all cores) or more", n));
    g_threads = n;
  }, "n"_a, "Worker threads of the long calls (0: all cores).");
  m.def("get_threads", [] { return g_threads; }, "Worker threads of the long calls (0: all cores).");
  m.def("formats", [] {
    std::vector<std::string> v;
    for (const FormatSpec* f : all_formats) v.emplace_back(f->name);
    return v;
  }, "Names of every format.");

  // ---- encode / decode ----------------------------------------------------------------------------
  m.def("encode_f32", [](In<float> x, const std::string& format, const std::string& round, const std::string& overflow,
                         std::uint64_t seed) -> nb::object {
    const FormatSpec& f = format_of(format);
    const CastPolicy p = policy_of(round, overflow);
    std::span<const float> in(x.data(), x.size());
    BatchOptions o{seed, 0, g_threads};
    if (storage_bits(f) == 8) {
      std::vector<std::uint8_t> out(x.size());
      {
        nb::gil_scoped_release r;
        if (&f == &ue8m0) throw InputError("encode to ue8m0: use encode_ue8m0 with a rule (rz, ru, ceil, rn, floor)");
        encode(f, p, in, std::span<std::uint8_t>(out), o);
      }
      return nb::cast(to_numpy(std::move(out), shape_of(x)));
    }
    if (storage_bits(f) == 16) {
      std::vector<std::uint16_t> out(x.size());
      {
        nb::gil_scoped_release r;
        encode(f, p, in, std::span<std::uint16_t>(out), o);
      }
      return nb::cast(to_numpy(std::move(out), shape_of(x)));
    }
    throw InputError(fmt::format("encode to {}: float32 in, float32 out is the identity", format));
  }, "x"_a, "format"_a, "round"_a, "overflow"_a, "seed"_a);
  m.def("encode_f64", [](In<double> x, const std::string& format, const std::string& round, const std::string& overflow,
                         std::uint64_t seed) -> nb::object {
    const FormatSpec& f = format_of(format);
    const CastPolicy p = policy_of(round, overflow);
    std::span<const double> in(x.data(), x.size());
    BatchOptions o{seed, 0, g_threads};
    if (&f == &ue8m0) throw InputError("encode to ue8m0: use encode_ue8m0 with a rule (rz, ru, ceil, rn, floor)");
    if (storage_bits(f) == 8) {
      std::vector<std::uint8_t> out(x.size());
      {
        nb::gil_scoped_release r;
        encode(f, p, in, std::span<std::uint8_t>(out), o);
      }
      return nb::cast(to_numpy(std::move(out), shape_of(x)));
    }
    if (storage_bits(f) == 16) {
      std::vector<std::uint16_t> out(x.size());
      {
        nb::gil_scoped_release r;
        encode(f, p, in, std::span<std::uint16_t>(out), o);
      }
      return nb::cast(to_numpy(std::move(out), shape_of(x)));
    }
    std::vector<std::uint32_t> out(x.size());
    {
      nb::gil_scoped_release r;
      encode(f, p, in, std::span<std::uint32_t>(out), o);
    }
    return nb::cast(to_numpy(std::move(out), shape_of(x)));
  }, "x"_a, "format"_a, "round"_a, "overflow"_a, "seed"_a);
  m.def("encode_ue8m0", [](In<float> x, const std::string& rule, const std::string& overflow) {
    Ue8m0Rule r;
    Overflow o;
    try {
      r = parse_ue8m0_rule(rule);
      o = parse_overflow(overflow);
    } catch (const std::invalid_argument& e) {
      throw InputError(e.what());
    }
    std::vector<std::uint8_t> out(x.size());
    {
      nb::gil_scoped_release rel;
      encode_ue8m0(r, o, std::span<const float>(x.data(), x.size()), out, BatchOptions{0, 0, g_threads});
    }
    return to_numpy(std::move(out), shape_of(x));
  }, "x"_a, "rule"_a, "overflow"_a);
  m.def("decode_u8", [](In<std::uint8_t> c, const std::string& format, bool f64) -> nb::object {
    const FormatSpec& f = format_of(format);
    if (storage_bits(f) != 8) throw InputError(fmt::format("decode: {} codes are not 8-bit (uint8 given)", format));
    std::span<const std::uint8_t> in(c.data(), c.size());
    if (f64) {
      std::vector<double> out(c.size());
      {
        nb::gil_scoped_release r;
        decode(f, in, std::span<double>(out), BatchOptions{0, 0, g_threads});
      }
      return nb::cast(to_numpy(std::move(out), shape_of(c)));
    }
    std::vector<float> out(c.size());
    {
      nb::gil_scoped_release r;
      decode(f, in, std::span<float>(out), BatchOptions{0, 0, g_threads});
    }
    return nb::cast(to_numpy(std::move(out), shape_of(c)));
  }, "codes"_a, "format"_a, "f64"_a);
  m.def("decode_u16", [](In<std::uint16_t> c, const std::string& format, bool f64) -> nb::object {
    const FormatSpec& f = format_of(format);
    if (storage_bits(f) != 16) throw InputError(fmt::format("decode: {} codes are not 16-bit (uint16 given)", format));
    std::span<const std::uint16_t> in(c.data(), c.size());
    if (f64) {
      std::vector<double> out(c.size());
      {
        nb::gil_scoped_release r;
        decode(f, in, std::span<double>(out), BatchOptions{0, 0, g_threads});
      }
      return nb::cast(to_numpy(std::move(out), shape_of(c)));
    }
    std::vector<float> out(c.size());
    {
      nb::gil_scoped_release r;
      decode(f, in, std::span<float>(out), BatchOptions{0, 0, g_threads});
    }
    return nb::cast(to_numpy(std::move(out), shape_of(c)));
  }, "codes"_a, "format"_a, "f64"_a);

  // ---- quantize / dequantize ----------------------------------------------------------------------
  m.def("quantize", [](In2<float> x, const std::string& format, const std::string& granularity,
                       const std::string& scale, std::optional<std::vector<std::size_t>> groups,
                       std::optional<float> eps, std::optional<std::string> overflow, const std::string& scale_format,
                       const std::string& input_dtype) {
    const QuantRecipe r = recipe_of(format, granularity, scale);
    QuantParams p = default_params(r.scale);
    if (eps) {
      if (r.scale != ScaleRule::te_fp32 && r.scale != ScaleRule::te_pow2)
        throw InputError(fmt::format("eps {}: only the te_fp32 and te_pow2 rules take an eps (rule is {})", *eps,
                                     to_string(r.scale)));
      p.eps = *eps;
    }
    if (overflow) p.overflow = policy_of("rne", *overflow).overflow;
    p.scale_format = parse_scale_format(scale_format);
    if (input_dtype == "bf16") p.input = InputDtype::bf16;
    else if (input_dtype == "f16") p.input = InputDtype::f16;
    else if (input_dtype != "f32")
      throw InputError(fmt::format("input_dtype '{}': expected f32, bf16 or f16", input_dtype));
    check_recipe(r, p);
    const std::size_t rows = x.shape(0), cols = x.shape(1);
    const auto g = groups_of(groups, rows);
    QuantizedTensor q;
    {
      nb::gil_scoped_release rel;
      q = quantize(std::span<const float>(x.data(), x.size()), rows, cols, r, p, g, g_threads);
    }
    if (p.scale_format == ScaleFormat::ue8m0) q.params.scale_format = ScaleFormat::ue8m0;
    return quantized_out(std::move(q));
  }, "x"_a, "format"_a, "granularity"_a, "scale"_a, "groups"_a.none(), "eps"_a.none(), "overflow"_a.none(),
     "scale_format"_a, "input_dtype"_a);
  m.def("quantize_precast", [](In2<float> x, const std::string& format, const std::string& granularity,
                               const std::string& scale, std::optional<std::vector<std::size_t>> groups,
                               std::optional<float> eps, const std::string& input_dtype) {
    const QuantRecipe r = recipe_of(format, granularity, scale);
    QuantParams p = default_params(r.scale);
    if (eps) p.eps = *eps;
    if (input_dtype == "bf16") p.input = InputDtype::bf16;
    else if (input_dtype == "f16") p.input = InputDtype::f16;
    const auto g = groups_of(groups, x.shape(0));
    std::vector<double> out;
    {
      nb::gil_scoped_release rel;
      out = quantize_precast(std::span<const float>(x.data(), x.size()), x.shape(0), x.shape(1), r, p, g);
    }
    return to_numpy(std::move(out), {x.shape(0), x.shape(1)});
  }, "x"_a, "format"_a, "granularity"_a, "scale"_a, "groups"_a.none(), "eps"_a.none(), "input_dtype"_a);
  m.def("dequantize", [](In2<std::uint8_t> codes, nb::handle scale_inv, const std::string& format,
                         const std::string& granularity, std::optional<std::vector<std::size_t>> groups, bool transposed) {
    const QuantRecipe r = recipe_of(format, granularity, "te_fp32");
    const std::vector<std::size_t> g = groups.value_or(std::vector<std::size_t>{});
    const QuantizedTensor q = make_tensor(codes, scale_inv, r, &g, transposed, "dequantize");
    std::vector<float> out;
    {
      nb::gil_scoped_release rel;
      const std::vector<float> logical = dequantize(q);
      if (!transposed) {
        out = logical;
      } else {
        out.resize(logical.size());
        for (std::size_t i = 0; i < q.rows; ++i)
          for (std::size_t j = 0; j < q.cols; ++j) out[j * q.rows + i] = logical[i * q.cols + j];
      }
    }
    return to_numpy(std::move(out), shape_of(codes));
  }, "codes"_a, "scale_inv"_a, "format"_a, "granularity"_a, "groups"_a.none(), "transposed"_a);

  // ---- transposes ---------------------------------------------------------------------------------
  m.def("transpose", [](In2<std::uint8_t> codes, nb::handle scale_inv, const std::string& method,
                        std::optional<std::vector<std::size_t>> groups, const std::string& round, std::uint64_t seed,
                        const std::string& format, int block) {
    const TransposeMethod mth = parse_transpose_method(method);
    if (mth == TransposeMethod::direct)
      throw InputError("method direct quantizes the high-precision tensor: call transpose_direct(x, ...)");
    const Rounding rounding = policy_of(round, "satfinite").rounding;
    if (mth != TransposeMethod::exact && (rounding == Rounding::stochastic || seed != 0))
      throw InputError(fmt::format("round stochastic / seed: only method exact rounds (method is {})", method));
    if (block < 2) throw InputError(fmt::format("block {}: expected N >= 2", block));
    const QuantRecipe r{Granularity{1, block}, &format_of(format), ScaleRule::te_pow2};
    QuantizedTensor in = make_tensor(codes, scale_inv, r, nullptr, false, "transpose input");
    check_sat_input(in, "transpose input");
    const auto g = groups_of(groups, in.rows);
    QuantizedTensor out;
    {
      nb::gil_scoped_release rel;
      out = mth == TransposeMethod::naive          ? transpose_naive(in, g)
            : mth == TransposeMethod::paper_kernel ? transpose_paper_kernel(in, g, g_threads)
                                                   : transpose_exact(in, g, rounding, g_threads, seed);
    }
    out.params.scale_format = ScaleFormat::fp32;
    return quantized_out(std::move(out));
  }, "codes"_a, "scale_inv"_a, "method"_a, "groups"_a.none(), "round"_a, "seed"_a, "format"_a, "block"_a);
  m.def("transpose_direct", [](In2<float> x, const std::string& format, int block,
                               std::optional<std::vector<std::size_t>> groups, std::optional<float> eps,
                               const std::string& input_dtype) {
    if (block < 2) throw InputError(fmt::format("block {}: expected N >= 2", block));
    QuantParams p = default_params(ScaleRule::te_pow2);
    if (eps) p.eps = *eps;
    if (input_dtype == "bf16") p.input = InputDtype::bf16;
    else if (input_dtype == "f16") p.input = InputDtype::f16;
    const auto g = groups_of(groups, x.shape(0));
    QuantizedTensor out;
    {
      nb::gil_scoped_release rel;
      out = transpose_direct(std::span<const float>(x.data(), x.size()), x.shape(0), x.shape(1), block,
                             format_of(format), p, g);
    }
    return quantized_out(std::move(out));
  }, "x"_a, "format"_a, "block"_a, "groups"_a.none(), "eps"_a.none(), "input_dtype"_a);

  // ---- gemm ---------------------------------------------------------------------------------------
  m.def("gemm", [](In2<std::uint8_t> a, In2<std::uint8_t> b, std::optional<In<float>> scale_a,
                   std::optional<In<float>> scale_b, const std::string& granularity_a, const std::string& granularity_b,
                   const std::string& accum, const std::string& format, const std::string& format_b,
                   int promote_interval, int acc_bits, int group, bool fast_accum) {
    GemmOperand A, B;
    A.codes = {a.data(), a.size()};
    A.rows = a.shape(0);
    A.k = a.shape(1);
    A.format = &format_of(format);
    A.gran = parse_granularity(granularity_a);
    B.codes = {b.data(), b.size()};
    B.rows = b.shape(0);
    B.k = b.shape(1);
    B.format = &format_of(format_b.empty() ? format : format_b);
    B.gran = parse_granularity(granularity_b);
    static const float kOne = 1.0f;
    if (!scale_a && A.gran != kTensor) throw InputError(fmt::format("granularity_a {} needs scale_a", granularity_a));
    if (!scale_b && B.gran != kTensor) throw InputError(fmt::format("granularity_b {} needs scale_b", granularity_b));
    A.scale_inv = scale_a ? std::span<const float>(scale_a->data(), scale_a->size()) : std::span<const float>(&kOne, 1);
    B.scale_inv = scale_b ? std::span<const float>(scale_b->data(), scale_b->size()) : std::span<const float>(&kOne, 1);
    AccumParams p;
    p.promote_interval = promote_interval;
    p.acc_fraction_bits = acc_bits;
    p.group = group;
    p.fast_accum = fast_accum;
    const AccumModel m = parse_accum_model(accum);
    std::vector<float> out;
    {
      nb::gil_scoped_release rel;
      out = gemm(A, B, m, p, g_threads);
    }
    return to_numpy(std::move(out), {A.rows, B.rows});
  }, "a"_a, "b"_a, "scale_a"_a.none(), "scale_b"_a.none(), "granularity_a"_a, "granularity_b"_a, "accum"_a,
     "format"_a, "format_b"_a, "promote_interval"_a, "acc_bits"_a, "group"_a, "fast_accum"_a);

  // ---- compare ------------------------------------------------------------------------------------
  m.def("compare_quantized", [](In2<std::uint8_t> got_codes, nb::handle got_scales, In2<std::uint8_t> want_codes,
                                nb::handle want_scales, const std::string& format, const std::string& granularity,
                                std::optional<std::vector<std::size_t>> groups, bool got_transposed,
                                bool want_transposed, std::optional<In<double>> input,
                                std::optional<In<double>> precast, std::size_t max_listed) {
    const QuantRecipe r = recipe_of(format, granularity, "te_fp32");
    const std::vector<std::size_t> g = groups.value_or(std::vector<std::size_t>{});
    const QuantizedTensor want = make_tensor(want_codes, want_scales, r, &g, want_transposed, "want");
    // got: codes of the same logical shape; its scale grid may have another shape (layout findings).
    QuantizedTensor got;
    got.recipe = r;
    got.rows = got_transposed ? got_codes.shape(1) : got_codes.shape(0);
    got.cols = got_transposed ? got_codes.shape(0) : got_codes.shape(1);
    if (got.rows != want.rows || got.cols != want.cols)
      throw InputError(fmt::format("got codes {} [{}, {}] but want is [{}, {}] (logical)",
                                   got_transposed ? "transposed" : "rowwise", got_codes.shape(0), got_codes.shape(1),
                                   want.rows, want.cols));
    got.row_groups = g;
    got.codes_transposed = got_transposed;
    got.codes.assign(got_codes.data(), got_codes.data() + got_codes.size());
    In2<float> sf;
    In2<std::uint8_t> su;
    if (nb::try_cast(got_scales, sf, false)) {
      got.scale_rows = sf.shape(0);
      got.scale_cols = sf.shape(1);
      got.scale_inv.assign(sf.data(), sf.data() + sf.size());
    } else if (nb::try_cast(got_scales, su, false)) {
      got.scale_rows = su.shape(0);
      got.scale_cols = su.shape(1);
      got.scale_inv = scales_from_ue8m0(std::span<const std::uint8_t>(su.data(), su.size()));
    } else {
      throw InputError("got scale_inv: expected a 2-D C-contiguous float32 (or uint8 UE8M0) CPU array");
    }
    CompareContext ctx;
    if (input) ctx.input = {input->data(), input->size()};
    if (precast) ctx.precast = {precast->data(), precast->size()};
    ctx.max_listed = max_listed;
    CompareReport rep;
    {
      nb::gil_scoped_release rel;
      rep = compare_quantized(got, want, ctx);
    }
    return report_out(rep);
  }, "got_codes"_a, "got_scales"_a, "want_codes"_a, "want_scales"_a, "format"_a, "granularity"_a, "groups"_a.none(),
     "got_transposed"_a, "want_transposed"_a, "input"_a.none(), "precast"_a.none(), "max_listed"_a);
  m.def("compare_values", [](In2<float> got, In2<float> want, std::optional<In<double>> input, std::size_t max_listed) {
    if (got.shape(0) != want.shape(0) || got.shape(1) != want.shape(1)) {
      if (got.size() != want.size())
        throw InputError(fmt::format("got shape [{}, {}], want [{}, {}]", got.shape(0), got.shape(1), want.shape(0),
                                     want.shape(1)));
    }
    CompareContext ctx;
    if (input) ctx.input = {input->data(), input->size()};
    ctx.max_listed = max_listed;
    CompareReport rep;
    {
      nb::gil_scoped_release rel;
      rep = compare_values({got.data(), got.size()}, {want.data(), want.size()}, want.shape(0), want.shape(1), ctx);
    }
    return report_out(rep);
  }, "got"_a, "want"_a, "input"_a.none(), "max_listed"_a);
  // ---- dataflows ----------------------------------------------------------------------------------
  m.def("run_dataflow", [](const std::string& dataflow, In2<double> x, In2<double> wr, In<double> w1, In<double> w2,
                           In2<double> dy, std::size_t topk, std::size_t align, const std::string& score,
                           std::optional<std::string> transpose, std::optional<std::string> accum) {
    if (w1.ndim() != 3 || w1.shape(1) % 2 != 0)
      throw InputError(fmt::format("w1: shape with {} dims: expected [experts, 2*ffn, hidden]", w1.ndim()));
    MoeShape s;
    s.tokens = x.shape(0);
    s.hidden = x.shape(1);
    s.experts = w1.shape(0);
    s.ffn = w1.shape(1) / 2;
    s.topk = topk;
    s.align = align;
    if (score != "softmax" && score != "sigmoid")
      throw InputError(fmt::format("score '{}': expected softmax or sigmoid", score));
    s.score = score == "sigmoid" ? ScoreFunction::sigmoid : ScoreFunction::softmax;
    check_shape(s);
    const auto need = [](const auto& a, std::vector<std::size_t> shape, const char* what) {
      std::vector<std::size_t> got(a.ndim());
      for (std::size_t i = 0; i < a.ndim(); ++i) got[i] = a.shape(i);
      if (got != shape)
        throw InputError(fmt::format("{}: shape [{}], expected [{}]", what, fmt::join(got, ", "), fmt::join(shape, ", ")));
    };
    need(wr, {s.experts, s.hidden}, "wr");
    need(w2, {s.experts, s.hidden, s.ffn}, "w2");
    need(dy, {s.tokens, s.hidden}, "dy");
    MoeInputs in;
    in.x.assign(x.data(), x.data() + x.size());
    in.wr.assign(wr.data(), wr.data() + wr.size());
    in.w1.assign(w1.data(), w1.data() + w1.size());
    in.w2.assign(w2.data(), w2.data() + w2.size());
    in.dy.assign(dy.data(), dy.data() + dy.size());
    ExecOptions o;
    o.threads = g_threads;
    if (accum) o.gemm_config = GemmConfig{parse_accum_model(*accum), {}};
    if (transpose) o.transpose = parse_transpose_method(*transpose);
    Dataflow df = dataflow.ends_with(".toml") ? load_dataflow_toml(dataflow) : builtin_dataflow(dataflow);
    df = with_overrides(std::move(df), o);
    Env env;
    {
      nb::gil_scoped_release rel;
      const auto logits = moe::matmul_nt(in.x, in.wr, s.tokens, s.experts, s.hidden);
      const Context ctx{s, make_routing(moe::scores(logits, s.tokens, s.experts, s.score), s)};
      env = make_env(s, &in);
      execute(df, ctx, env, o);
    }
    nb::dict out;
    for (auto& [name, t] : env) {
      nb::dict d;
      d["prec"] = std::string(to_string(t.prec));
      d["groups"] = t.groups;
      d["values"] = to_numpy(std::move(t.v), {t.rows, t.cols});
      if (t.q) d["quantized"] = quantized_out(std::move(*t.q));
      out[nb::str(name.c_str())] = d;
    }
    return out;
  }, "dataflow"_a, "x"_a, "wr"_a, "w1"_a, "w2"_a, "dy"_a, "topk"_a, "align"_a, "score"_a, "transpose"_a.none(),
     "accum"_a.none());

  m.def("group_blocks_to_codes", [](In<std::uint8_t> blocks, std::size_t rows, std::size_t cols,
                                    std::vector<std::size_t> groups) {
    QuantizedTensor shape;
    shape.rows = rows;
    shape.cols = cols;
    check_row_groups(groups, rows);
    shape.row_groups = groups;
    shape.codes_transposed = true;
    return to_numpy(codes_from_group_blocks({blocks.data(), blocks.size()}, shape), {cols, rows});
  }, "blocks"_a, "rows"_a, "cols"_a, "groups"_a,
     "Per-group column copies [cols, m_g] concatenated flat -> one [cols, rows] column copy.");
}
