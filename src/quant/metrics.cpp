#include "quant/metrics.hpp"

#include <fmt/format.h>

#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>
#include <vector>

#include "formats/convert.hpp"

namespace fp8flow {

namespace {

void value_stats(Metrics& m, std::span<const double> x, std::span<const double> y) {
  m.n = x.size();
  double se = 0, sx2 = 0, sy2 = 0, sxy = 0, sum_err = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    if (!std::isfinite(x[i])) {
      ++m.truth_nonfinite;
      continue;
    }
    if (std::isnan(y[i])) {
      ++m.nan_created;
      ++m.changed;
      continue;
    }
    if (!std::isfinite(y[i])) {
      ++m.changed;
      continue;
    }
    ++m.finite;
    const double e = y[i] - x[i];
    if (e != 0) ++m.changed;
    if (x[i] != 0 && y[i] == 0) ++m.underflow_to_zero;
    m.max_abs_err = std::max(m.max_abs_err, std::fabs(e));
    if (x[i] != 0) m.max_rel_err = std::max(m.max_rel_err, std::fabs(e) / std::fabs(x[i]));
    se += e * e;
    sum_err += e;
    sx2 += x[i] * x[i];
    sy2 += y[i] * y[i];
    sxy += x[i] * y[i];
  }
  if (m.finite > 0) {
    m.rmse = std::sqrt(se / double(m.finite));
    m.mean_err = sum_err / double(m.finite);
  }
  m.sqnr_db = se == 0 ? std::numeric_limits<double>::infinity() : 10.0 * std::log10(sx2 / se);
  m.calc_diff = (sx2 + sy2) == 0 ? 0.0 : 1.0 - 2.0 * sxy / (sx2 + sy2);
  m.frac_changed = m.n ? double(m.changed) / double(m.n) : 0.0;
}

// Signed-magnitude codes in increasing value order: +-0 both map to 0.
long long ordinal(const FormatSpec& f, std::uint32_t c) {
  const long long mag = c & magnitude_mask(f);
  return (c & sign_bit(f)) ? -mag : mag;
}

}  // namespace

Metrics compare(std::span<const double> truth, std::span<const double> test) {
  Metrics m;
  if (truth.size() != test.size()) throw std::invalid_argument("compare: truth and test differ in size");
  value_stats(m, truth, test);
  return m;
}

Metrics compare(std::span<const double> truth, const QuantizedTensor& q) {
  if (truth.size() != q.size()) throw std::invalid_argument("compare: truth and tensor differ in size");
  const std::vector<float> dq = dequantize(q);
  const std::vector<double> y(dq.begin(), dq.end());
  Metrics m;
  value_stats(m, truth, y);
  m.has_codes = true;
  const FormatSpec& f = *q.recipe.payload;
  const std::vector<float> s = element_scale_inv(q);
  const double fmax = max_finite(f);
  for (std::size_t r = 0; r < q.rows; ++r)
    for (std::size_t c = 0; c < q.cols; ++c) {
      const std::size_t i = r * q.cols + c;
      const std::uint32_t code = q.codes[q.code_index(r, c)];
      const bool sub = ((code & magnitude_mask(f)) >> f.man) == 0 && (code & ((1u << f.man) - 1u)) != 0;
      if (sub) ++m.subnormal_codes;
      if (!std::isfinite(truth[i]) || is_nan_code(f, code) || !(s[i] > 0) || !std::isfinite(s[i])) continue;
      const double scaled = truth[i] / double(s[i]);
      const std::uint32_t best = encode(f, scaled, kRneSatfinite);
      const long long d = ordinal(f, code) - ordinal(f, best);
      ++m.ulp_hist[d];
      if (d != 0) ++m.codes_off;
      const bool best_sub = ((best & magnitude_mask(f)) >> f.man) == 0 && (best & ((1u << f.man) - 1u)) != 0;
      if (best_sub && code != best) ++m.lost_subnormals;
      if ((code & magnitude_mask(f)) == max_code(f) && std::fabs(scaled) > fmax) ++m.saturated;
    }
  m.frac_codes_off = m.n ? double(m.codes_off) / double(m.n) : 0.0;
  return m;
}

nlohmann::json to_json(const Metrics& m) {
  const auto num = [](double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(v > 0 ? "inf" : "nan"); };
  nlohmann::json j = {{"n", m.n},
                      {"finite", m.finite},
                      {"max_abs_err", num(m.max_abs_err)},
                      {"max_rel_err", num(m.max_rel_err)},
                      {"rmse", num(m.rmse)},
                      {"sqnr_db", num(m.sqnr_db)},
                      {"mean_err", num(m.mean_err)},
                      {"calc_diff", num(m.calc_diff)},
                      {"changed", m.changed},
                      {"frac_changed", m.frac_changed},
                      {"underflow_to_zero", m.underflow_to_zero},
                      {"nan_created", m.nan_created},
                      {"truth_nonfinite", m.truth_nonfinite}};
  if (m.has_codes) {
    nlohmann::json h = nlohmann::json::object();
    for (const auto& [k, v] : m.ulp_hist) h[std::to_string(k)] = v;
    j["ulp_hist"] = h;
    j["codes_off"] = m.codes_off;
    j["frac_codes_off"] = m.frac_codes_off;
    j["lost_subnormals"] = m.lost_subnormals;
    j["subnormal_codes"] = m.subnormal_codes;
    j["saturated"] = m.saturated;
  }
  return j;
}

std::string to_text(const Metrics& m) {
  std::string s = fmt::format(
      "n {}  finite {}\nmax_abs_err {:.6g}\nmax_rel_err {:.6g}\nrmse {:.6g}\nsqnr_db {:.4f}\nmean_err {:.6g}\n"
      "calc_diff {:.6g}\nfrac_changed {:.6g} ({})\nunderflow_to_zero {}\nnan_created {}\ntruth_nonfinite {}\n",
      m.n, m.finite, m.max_abs_err, m.max_rel_err, m.rmse, m.sqnr_db, m.mean_err, m.calc_diff, m.frac_changed,
      m.changed, m.underflow_to_zero, m.nan_created, m.truth_nonfinite);
  if (m.has_codes) {
    s += fmt::format("frac_codes_off {:.6g} ({})\nlost_subnormals {}\nsubnormal_codes {}\nsaturated {}\nulp_hist", 
                     m.frac_codes_off, m.codes_off, m.lost_subnormals, m.subnormal_codes, m.saturated);
    for (const auto& [k, v] : m.ulp_hist) s += fmt::format(" {:+d}:{}", k, v);
    s += "\n";
  }
  return s;
}

}  // namespace fp8flow
