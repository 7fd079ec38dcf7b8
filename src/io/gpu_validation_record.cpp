// gpu_validation runs for the HDF5 results store (see gpu_validation_record.hpp).
#include "io/gpu_validation_record.hpp"

#include <fmt/format.h>

#include <cmath>
#include <limits>
#include <map>

#include "io/experiment.hpp"

namespace fp8flow::io {

std::size_t GpuValidation::mismatches() const {
  std::size_t n = 0;
  for (const auto& p : parts) n += p.mismatches;
  return n;
}
std::size_t GpuValidation::compared() const {
  std::size_t n = 0;
  for (const auto& p : parts) n += p.compared;
  return n;
}
std::string GpuValidation::first_mismatch() const {
  for (const auto& p : parts)
    if (p.mismatches) return p.what + ": " + p.first_mismatch;
  return {};
}

namespace {
std::string join(const std::vector<std::size_t>& v) {
  std::string s;
  for (std::size_t i = 0; i < v.size(); ++i) s += (i ? "," : "") + std::to_string(v[i]);
  return s;
}
std::int64_t i64(std::size_t v) { return static_cast<std::int64_t>(v); }
// "quantize " for params {"op": "quantize", ...}: the run's label names the validate --op.
std::string op_of(const nlohmann::json& params) {
  const auto it = params.find("op");
  return it != params.end() && it->is_string() ? it->get<std::string>() + " " : std::string{};
}
// Per-op sums of the cases, in first-seen order, and the `ops` table built from them (kernel and GEMM runs).
struct OpAgg {
  std::int64_t cases = 0, failing = 0, elements = 0, compared = 0, mismatches = 0, violations = 0;
  double gpu_ms = 0, cpu_ms = 0;
  std::string first;
  // One more case of this op; `first_failure` (made only when needed) describes it if it is the first to fail.
  template <class FirstFailure>
  void add_case(bool ok, std::size_t n_elements, std::size_t n_compared, std::size_t n_mismatches,
                FirstFailure&& first_failure) {
    ++cases;
    failing += ok ? 0 : 1;
    elements += std::int64_t(n_elements);
    compared += std::int64_t(n_compared);
    mismatches += std::int64_t(n_mismatches);
    if (first.empty() && !ok) first = first_failure();
  }
};
struct OpSums {
  std::map<std::string, OpAgg> agg;
  std::vector<std::string> order;
  OpAgg& at(const std::string& op) {
    if (!agg.contains(op)) order.push_back(op);
    return agg[op];
  }
};
enum class OpExtra { timings, violations };

// The `parts` table: one row per compared output of a case.
struct PartRows {
  std::vector<std::string> op, input, what, first;
  std::vector<std::int64_t> cas, compared, mism;
  void add(std::size_t case_index, std::string op_name, std::string input_name, std::string part,
           std::size_t n, std::size_t bad, std::string first_text) {
    cas.push_back(std::int64_t(case_index));
    op.push_back(std::move(op_name));
    input.push_back(std::move(input_name));
    what.push_back(std::move(part));
    compared.push_back(std::int64_t(n));
    mism.push_back(std::int64_t(bad));
    first.push_back(std::move(first_text));
  }
  Table table(std::string description) const {
    Table t{"parts", std::move(description), {}, nlohmann::json::object()};
    t.add("case", "index", cas)
        .add("op", "", op)
        .add("input", "", input)
        .add("part", "", what)
        .add("compared", "count", compared)
        .add("mismatches", "count", mism)
        .add("first_mismatch", "", first);
    return t;
  }
};
Table ops_table(std::string description, const OpSums& s, OpExtra extra) {
  std::vector<std::string> op, first;
  std::vector<std::int64_t> cases, failing, elements, compared, mism, viol;
  std::vector<double> gpu, cpu;
  for (const std::string& name : s.order) {
    const OpAgg& a = s.agg.at(name);
    op.push_back(name);
    cases.push_back(a.cases);
    failing.push_back(a.failing);
    elements.push_back(a.elements);
    compared.push_back(a.compared);
    mism.push_back(a.mismatches);
    viol.push_back(a.violations);
    first.push_back(a.first);
    gpu.push_back(a.gpu_ms);
    cpu.push_back(a.cpu_ms);
  }
  Table t{"ops", std::move(description), {}, nlohmann::json::object()};
  t.add("op", "", op)
      .add("cases", "count", cases)
      .add("failing", "count", failing)
      .add("elements", "count", elements)
      .add("compared", "count", compared)
      .add("mismatches", "count", mism);
  if (extra == OpExtra::violations) t.add("bound_violations", "count", viol);
  t.add("first_mismatch", "", first);
  if (extra == OpExtra::timings) t.add("gpu_ms", "ms", gpu).add("cpu_ms", "ms", cpu);
  return t;
}
}  // namespace

RunRecord gpu_validation_record(const nlohmann::json& params, const std::vector<GpuValidation>& results) {
  RunRecord rec;
  rec.kind = "gpu_validation";
  rec.params = params;
  rec.hash = run_hash(rec.kind, params);
  rec.experiment = "validate --gpu";
  rec.provenance = Provenance::of_this_build();

  std::vector<std::string> op, input, groups, oracle, first;
  std::vector<std::int64_t> rows, cols, elements, compared, mism, exact, parts_n;
  std::vector<double> gpu_ms, cpu_ms;
  PartRows prt;
  OpSums sums;
  std::size_t failing = 0, total_elements = 0, total_mism = 0;
  for (std::size_t i = 0; i < results.size(); ++i) {
    const GpuValidation& v = results[i];
    op.push_back(v.op);
    input.push_back(v.input);
    groups.push_back(join(v.groups));
    oracle.push_back(v.oracle);
    first.push_back(v.first_mismatch());
    rows.push_back(i64(v.rows));
    cols.push_back(i64(v.cols));
    elements.push_back(i64(v.rows * v.cols));
    compared.push_back(i64(v.compared()));
    mism.push_back(i64(v.mismatches()));
    exact.push_back(v.ok() ? 1 : 0);
    parts_n.push_back(i64(v.parts.size()));
    gpu_ms.push_back(v.gpu_ms);
    cpu_ms.push_back(v.cpu_ms);
    for (const BitCompare& p : v.parts) {
      prt.add(i, v.op, v.input, p.what, p.compared, p.mismatches, p.first_mismatch);
    }
    OpAgg& a = sums.at(v.op);
    a.add_case(v.ok(), v.rows * v.cols, v.compared(), v.mismatches(),
               [&] { return v.input + ": " + v.first_mismatch(); });
    a.gpu_ms += v.gpu_ms > 0 ? v.gpu_ms : 0.0;
    a.cpu_ms += v.cpu_ms > 0 ? v.cpu_ms : 0.0;
    failing += v.ok() ? 0 : 1;
    total_elements += v.rows * v.cols;
    total_mism += v.mismatches();
  }

  Table cases{"cases", "one row per validation: a GPU kernel and the CPU golden model on one input, compared bit "
                       "for bit (codes and fp32 scale bits)", {}, nlohmann::json::object()};
  cases.add("op", "", op)
      .add("input", "", input)
      .add("rows", "count", rows)
      .add("cols", "count", cols)
      .add("groups", "", groups)
      .add("oracle", "", oracle)
      .add("elements", "count", elements)
      .add("parts", "count", parts_n)
      .add("compared", "count", compared)
      .add("mismatches", "count", mism)
      .add("bit_exact", "bool", exact)
      .add("first_mismatch", "", first)
      .add("gpu_ms", "ms", gpu_ms)
      .add("cpu_ms", "ms", cpu_ms);
  cases.attrs = {{"cases", i64(results.size())}, {"failing", i64(failing)}, {"elements", i64(total_elements)},
                 {"mismatches", i64(total_mism)}};

  Table ops = ops_table("one row per kernel configuration (op): its cases summed", sums, OpExtra::timings);

  Table parts = prt.table("one row per compared output of each case (codes, scale_inv, ...)");

  rec.tables = {std::move(cases), std::move(ops), std::move(parts)};
  rec.label = fmt::format("gpu_validation {}{} cases", op_of(params), results.size());
  rec.summary = fmt::format("{} of {} bit-exact, {} mismatches", results.size() - failing, results.size(), total_mism);
  return rec;
}

std::string GemmValidationCase::op() const {
  return fmt::format("gemm_e4m3_{}_{}{}_vs_{}", scaling, out, fast_accum ? "_fast_accum" : "", model);
}
double GemmValidationCase::bit_exact_fraction() const {
  return compared ? double(bit_exact) / double(compared) : std::numeric_limits<double>::quiet_NaN();
}

RunRecord gemm_validation_record(const nlohmann::json& params, const std::string& input,
                                 const std::vector<GemmValidationCase>& results) {
  RunRecord rec;
  rec.kind = "gpu_validation";
  rec.params = params;
  rec.hash = run_hash(rec.kind, params);
  rec.experiment = "validate --gpu";
  rec.provenance = Provenance::of_this_build();

  std::vector<std::string> op, inp, scaling, out, model, algo, first, first_v, error, label;
  std::vector<std::int64_t> rows, cols, k, fast, required, elements, compared, exact_n, mism, exact, viol, bound_ok,
      ok;
  std::vector<double> fraction, worst;
  PartRows prt;
  OpSums sums;
  std::size_t failing = 0, total_compared = 0, total_exact = 0, total_elements = 0, total_viol = 0, errors = 0;
  for (std::size_t i = 0; i < results.size(); ++i) {
    const GemmValidationCase& v = results[i];
    const std::size_t mismatches = v.compared - v.bit_exact;
    op.push_back(v.op());
    inp.push_back(input);
    label.push_back(v.label);
    rows.push_back(i64(v.m));
    cols.push_back(i64(v.n));
    k.push_back(i64(v.k));
    scaling.push_back(v.scaling);
    fast.push_back(v.fast_accum ? 1 : 0);
    out.push_back(v.out);
    model.push_back(v.model);
    required.push_back(v.bits_required ? 1 : 0);
    algo.push_back(v.algo);
    elements.push_back(i64(v.m * v.n));
    compared.push_back(i64(v.compared));
    exact_n.push_back(i64(v.bit_exact));
    fraction.push_back(v.bit_exact_fraction());
    mism.push_back(i64(mismatches));
    exact.push_back(v.bits_ok() ? 1 : 0);
    first.push_back(v.first_mismatch);
    viol.push_back(i64(v.bound_violations));
    worst.push_back(v.worst_err_over_bound);
    first_v.push_back(v.first_violation);
    bound_ok.push_back(v.bound_ok() ? 1 : 0);
    error.push_back(v.error);
    ok.push_back(v.ok() ? 1 : 0);
    // Two checks per GEMM: the output bits against the model and |gpu - exact| against the bound.
    const auto part = [&](std::string what, std::size_t n, std::size_t bad, const std::string& text) {
      prt.add(i, v.op(), input, std::move(what), n, bad, v.error.empty() ? text : "cuBLASLt error: " + v.error);
    };
    part("output bits vs " + v.model, v.compared, mismatches, v.first_mismatch);
    part("error bound", v.compared, v.bound_violations, v.first_violation);

    OpAgg& a = sums.at(v.op());
    a.add_case(v.ok(), v.m * v.n, v.compared, mismatches, [&] {
      return !v.error.empty() ? "cuBLASLt error: " + v.error
             : !v.bound_ok()  ? "error bound: " + v.first_violation
                              : "output bits: " + v.first_mismatch;
    });
    a.violations += i64(v.bound_violations);
    failing += v.ok() ? 0 : 1;
    total_compared += v.compared;
    total_exact += v.bit_exact;
    total_elements += v.m * v.n;
    total_viol += v.bound_violations;
    errors += v.error.empty() ? 0 : 1;
  }
  const double total_fraction =
      total_compared ? double(total_exact) / double(total_compared) : std::numeric_limits<double>::quiet_NaN();

  Table cases{"cases", "one row per GEMM: cuBLASLt FP8 vs the CPU accumulation model (oracle) bit for bit, and "
                       "|gpu - exact| vs the a-priori error bound", {}, nlohmann::json::object()};
  cases.add("op", "", op)
      .add("input", "", inp)
      .add("label", "", label)
      .add("rows", "count", rows)
      .add("cols", "count", cols)
      .add("k", "count", k)
      .add("scaling", "", scaling)
      .add("fast_accum", "bool", fast)
      .add("out", "", out)
      .add("oracle", "", model)
      .add("bits_required", "bool", required)
      .add("algo", "", algo)
      .add("elements", "count", elements)
      .add("compared", "count", compared)
      .add("bit_exact_count", "count", exact_n)
      .add("bit_exact_fraction", "1", fraction)
      .add("mismatches", "count", mism)
      .add("bit_exact", "bool", exact)
      .add("first_mismatch", "", first)
      .add("bound_violations", "count", viol)
      .add("worst_err_over_bound", "1", worst)
      .add("first_violation", "", first_v)
      .add("bound_ok", "bool", bound_ok)
      .add("error", "", error)
      .add("ok", "bool", ok);
  cases.attrs = {{"cases", i64(results.size())},          {"failing", i64(failing)},
                 {"elements", i64(total_elements)},       {"compared", i64(total_compared)},
                 {"bit_exact", i64(total_exact)},         {"mismatches", i64(total_compared - total_exact)},
                 {"bit_exact_fraction", total_fraction},  {"bound_violations", i64(total_viol)},
                 {"errors", i64(errors)}};

  Table ops = ops_table("one row per GEMM configuration (op): its cases summed", sums, OpExtra::violations);

  Table parts = prt.table("two rows per GEMM: the output bits vs the model (mismatches) and the error bound "
                          "(mismatches = violations)");

  rec.tables = {std::move(cases), std::move(ops), std::move(parts)};
  rec.label = fmt::format("gpu_validation {}{} cases", op_of(params), results.size());
  rec.summary = fmt::format("{} of {} GEMMs pass, {} of {} outputs bit-exact ({:.4f}%), {} bound violations, {} "
                            "errors", results.size() - failing, results.size(), total_exact, total_compared,
                            100.0 * total_fraction, total_viol, errors);
  return rec;
}

std::string store_gpu_validation(const std::filesystem::path& file, RunRecord rec) {
  const std::string hash = rec.hash;
  return append_run_once(file, std::move(rec))
             ? fmt::format("written to {} as run {}", file.string(), hash)
             : fmt::format("{} already holds this validation as run {}; not written again", file.string(), hash);
}

}  // namespace fp8flow::io
