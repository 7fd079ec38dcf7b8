// report::paired_relative_error (issue 23): the paired-by-seed relative loss error, its Student t interval and
// the pass / fail / inconclusive decision on the paper's criterion, on constructed inputs with known answers.
#include <catch2/catch.hpp>
#include <cmath>
#include <vector>

#include "io/errors.hpp"
#include "report/paired_stats.hpp"

using namespace fp8flow;
using namespace fp8flow::report;

namespace {
// Closed forms of the two-sided 97.5% Student t quantile (an oracle independent of Boost):
// nu = 1: tan(pi (p - 1/2)); nu = 2: (2p - 1) / sqrt(2 p (1 - p)); nu = 4: 2 sqrt(q - 1) with a = 4p(1 - p),
// q = cos(acos(sqrt a) / 3) / sqrt a. p = 0.975: 12.706, 4.303, 2.776 (the tables' values).
constexpr double kP = 0.975;
double t1() { return std::tan(M_PI * (kP - 0.5)); }
double t2() { return (2 * kP - 1) / std::sqrt(2 * kP * (1 - kP)); }
double t4() {
  const double a = 4 * kP * (1 - kP), q = std::cos(std::acos(std::sqrt(a)) / 3) / std::sqrt(a);
  return 2 * std::sqrt(q - 1);
}
// Losses whose relative errors vs a baseline of 1..n are exactly `rel`.
PairedRelError of(const std::vector<double>& rel) {
  std::vector<double> loss, base;
  for (std::size_t i = 0; i < rel.size(); ++i) {
    base.push_back(double(i + 1));
    loss.push_back(double(i + 1) * (1 + rel[i]));
  }
  return paired_relative_error(loss, base);
}
}  // namespace

TEST_CASE("student_t_quantile matches closed forms", "[report][stats]") {
  CHECK(t2() == Approx(4.3027).epsilon(1e-4));
  CHECK(student_t_quantile(0.95, 1) == Approx(t1()).epsilon(1e-12));
  CHECK(student_t_quantile(0.95, 2) == Approx(t2()).epsilon(1e-12));
  CHECK(student_t_quantile(0.95, 4) == Approx(t4()).epsilon(1e-12));
  CHECK_THROWS_AS(student_t_quantile(1.0, 3), InputError);
  CHECK_THROWS_AS(student_t_quantile(0.95, 0), InputError);
}

TEST_CASE("paired_relative_error: interval and decision", "[report][stats]") {
  SECTION("0.1%, 0.2%, 0.3%: the interval reaches 0.25%, inconclusive, and says how many seeds would decide") {
    const PairedRelError r = paired_relative_error(std::vector<double>{2.002, 4.008, 1.003}, std::vector<double>{2.0, 4.0, 1.0});
    CHECK(r.n == 3);
    CHECK(r.mean == Approx(0.002).epsilon(1e-9));
    CHECK(r.sd == Approx(0.001).epsilon(1e-6));
    const double half = t2() * 0.001 / std::sqrt(3.0);
    CHECK(r.half_width == Approx(half).epsilon(1e-6));
    CHECK(r.low == Approx(0.002 - half).epsilon(1e-6));
    CHECK(r.high == Approx(0.002 + half).epsilon(1e-6));
    CHECK(r.decision == Decision::inconclusive);
    // Margin 0.0005 with sd 0.001: t_{n-1} / sqrt(n) < 0.5 first at n = 18 (t_16 = 2.1199: 0.5142 at n = 17,
    // t_17 = 2.1098: 0.4973 at n = 18).
    REQUIRE(r.seeds_to_decide);
    CHECK(*r.seeds_to_decide == 18);
  }
  SECTION("equal relative errors: zero width, decided at once") {
    const PairedRelError r = of({0.001, 0.001});
    CHECK(r.mean == Approx(0.001).epsilon(1e-9));
    CHECK(r.half_width == Approx(0.0).margin(1e-12));
    CHECK(r.decision == Decision::pass);
    CHECK_FALSE(r.seeds_to_decide);
    CHECK(of({0.004, 0.004}).decision == Decision::fail);
    CHECK(of({-0.004, -0.004}).decision == Decision::fail);  // lower by more than the criterion fails too
  }
  SECTION("pass needs the whole interval inside, fail the whole interval outside") {
    CHECK(of({0.0, 0.0005, -0.0005, 0.0002}).decision == Decision::pass);
    CHECK(of({0.01, 0.011, 0.009}).decision == Decision::fail);
    const PairedRelError r = of({0.001, 0.005});  // mean 0.3%, interval [-2.2%, +2.8%]
    CHECK(r.decision == Decision::inconclusive);
    REQUIRE(r.seeds_to_decide);
    CHECK(*r.seeds_to_decide > 2);
  }
  SECTION("less evidence is never greener: one seed is inconclusive, however small its error") {
    const PairedRelError r = of({0.00001});
    CHECK(r.decision == Decision::inconclusive);
    CHECK(std::isnan(r.half_width));
    CHECK_FALSE(r.seeds_to_decide);  // no variance estimate from one seed
    CHECK(of({0.05}).decision == Decision::inconclusive);
  }
  SECTION("a diverged run (NaN loss) fails") {
    const PairedRelError r = paired_relative_error(std::vector<double>{std::nan(""), 1.0}, std::vector<double>{1.0, 1.0});
    CHECK(r.decision == Decision::fail);
    CHECK(paired_relative_error(std::vector<double>{std::nan("")}, std::vector<double>{1.0}).decision == Decision::fail);
  }
  SECTION("a mean on the criterion: no seed count decides") {
    CHECK_FALSE(seeds_to_decide(0.0025, 0.001, 0.0025));
    CHECK(seeds_to_decide(0.0, 0.0, 0.0025) == std::size_t(2));
  }
  SECTION("seeds_to_decide is the first n whose interval fits, checked against the quantile itself") {
    for (const double sd : {0.0005, 0.001, 0.003})
      for (const double mean : {0.0, 0.001, 0.002, 0.004}) {
        const auto n = seeds_to_decide(mean, sd, 0.0025);
        REQUIRE(n);
        const double margin = std::fabs(0.0025 - std::fabs(mean));
        CHECK(student_t_quantile(0.95, double(*n - 1)) * sd / std::sqrt(double(*n)) < margin);
        if (*n > 2) CHECK(student_t_quantile(0.95, double(*n - 2)) * sd / std::sqrt(double(*n - 1)) >= margin);
      }
  }
  SECTION("bad input") {
    CHECK_THROWS_AS(paired_relative_error(std::vector<double>{1.0}, std::vector<double>{1.0, 2.0}), InputError);
    CHECK_THROWS_AS(paired_relative_error(std::vector<double>{}, std::vector<double>{}), InputError);
    CHECK_THROWS_AS(paired_relative_error(std::vector<double>{1.0}, std::vector<double>{0.0}), InputError);
    CHECK_THROWS_AS(paired_relative_error(std::vector<double>{1.0}, std::vector<double>{NAN}), InputError);
  }
}
