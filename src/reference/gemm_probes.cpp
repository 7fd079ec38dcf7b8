#include "reference/gemm_probes.hpp"

#include <fmt/format.h>

#include <bit>
#include <cmath>

#include "formats/convert.hpp"
#include "formats/format_spec.hpp"
#include "formats/splitmix64.hpp"
#include "io/errors.hpp"

namespace fp8flow {

namespace {

// e4m3 code of x; x must be exactly representable (the probes are constructed, never rounded).
std::uint8_t enc(double x) {
  const auto c = static_cast<std::uint8_t>(encode(e4m3, x, kRneSatfinite));
  if (decode(e4m3, c) != x) throw std::logic_error(fmt::format("gemm probe: {} is not an e4m3 value", x));
  return c;
}
std::uint8_t enc_round(double x) { return static_cast<std::uint8_t>(encode(e4m3, x, kRneSatfinite)); }

// Column factor c_j: structured cases scale every product of output column j by c_j (sign and binade
// checks; the relative pattern is the same in every column).
double col_factor(std::size_t j) { return (j < 8 ? 1.0 : -1.0) * std::ldexp(1.0, -int(j % 8)); }

double uniform01(std::uint64_t& s) { return double(splitmix64_next(s) >> 11) * 0x1.0p-53; }
double normal(std::uint64_t& s) {
  const double u1 = std::max(uniform01(s), 1e-300), u2 = uniform01(s);
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
}
std::uint64_t name_seed(std::string_view name) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (char c : name) h = (h ^ std::uint8_t(c)) * 0x100000001b3ull;
  return h;
}

// Structured case skeleton: A rows hold the pattern, B[j, k] = boost[k] * c_j.
GemmProbeCase structured(std::string name, std::string what, std::size_t m, std::size_t n, std::size_t k,
                         const std::vector<double>& boost) {
  GemmProbeCase c{std::move(name), "structured", std::move(what), m, n, k, std::vector<std::uint8_t>(m * k, 0),
                  std::vector<std::uint8_t>(n * k)};
  for (std::size_t j = 0; j < n; ++j)
    for (std::size_t kk = 0; kk < k; ++kk) c.b[j * k + kk] = enc(boost.empty() ? col_factor(j) : boost[kk] * col_factor(j));
  return c;
}

GemmProbeCase spread(std::string name, std::size_t pos_large) {
  const std::size_t K = 1024;
  std::vector<double> boost(K, 1.0);
  boost[pos_large] = 256.0;
  auto c = structured(name, fmt::format("large product L = 2^a * 256 at k = {}, small t at every other k", pos_large),
                      64, 16, K, boost);
  struct Row { int a; double t; };
  std::vector<Row> rows;
  for (int a : {0, 8})
    for (int j = 0; j <= 9; ++j) rows.push_back({a, std::ldexp(1.0, -j)});
  for (int a : {0, 8})
    for (int j = 1; j <= 6; ++j)
      for (double mnt : {1.125, 1.375, 1.875}) rows.push_back({a, mnt * std::ldexp(1.0, -j)});
  for (int j = 1; j <= 8; ++j) rows.push_back({8, -std::ldexp(1.0, -j)});
  for (std::size_t i = 0; i < rows.size(); ++i)
    for (std::size_t kk = 0; kk < K; ++kk) c.a[i * K + kk] = enc(kk == pos_large ? std::ldexp(1.0, rows[i].a) : rows[i].t);
  return c;
}

std::vector<std::uint8_t> random_codes(std::size_t n, std::uint64_t& s, int kind) {
  std::vector<std::uint8_t> v(n);
  for (auto& x : v) {
    if (kind == 0) {  // uniform over finite codes
      std::uint8_t b = std::uint8_t(splitmix64_next(s));
      if ((b & 0x7F) == 0x7F) b ^= 1;
      x = b;
    } else if (kind == 1) {
      x = enc_round(normal(s));
    } else if (kind == 2) {
      x = enc_round(std::fabs(normal(s)));
    } else {  // extreme mix: +-448, +-256, +-1, +-2^-4, +-2^-9, 0
      static const double vals[] = {448, 256, 1, 0.0625, 0x1.0p-9, 0};
      const std::uint64_t r = splitmix64_next(s);
      x = enc(((r >> 8) & 1 ? -1.0 : 1.0) * vals[r % 6]);
    }
  }
  return v;
}

GemmProbeCase random_case(std::string name, std::size_t m, std::size_t n, std::size_t k, int kind) {
  std::uint64_t s = name_seed(name);
  static const char* kinds[] = {"uniform finite codes", "N(0,1) rounded to e4m3", "|N(0,1)| (no cancellation)",
                                "extreme values +-448, +-256, +-1, +-2^-4, +-2^-9, 0"};
  GemmProbeCase c{name, kind == 3 ? "structured" : "random", fmt::format("random: {}", kinds[kind]), m, n, k, {}, {}};
  c.a = random_codes(m * k, s, kind);
  c.b = random_codes(n * k, s, kind);
  return c;
}

GemmProbeCase activations_case(std::string name, std::size_t m, std::size_t n, std::size_t k) {
  std::uint64_t s = name_seed(name);
  GemmProbeCase c{name, "random", "random: N(0,1) with 1% outlier channels x 100 (clipped to 448)", m, n, k,
                  std::vector<std::uint8_t>(m * k), {}};
  std::vector<double> ch(k, 1.0);
  for (auto& x : ch) x = uniform01(s) < 0.01 ? 100.0 : 1.0;
  for (std::size_t i = 0; i < m; ++i)
    for (std::size_t kk = 0; kk < k; ++kk) c.a[i * k + kk] = enc_round(normal(s) * ch[kk]);
  c.b = random_codes(n * k, s, 1);
  return c;
}

}  // namespace

std::vector<std::string> gemm_probe_names() {
  return {"ones_stall", "alt_small", "paper_probe", "spread_first", "spread_last", "spread_mid", "group_scan",
          "mantissa_sum", "adv_extreme_k4096", "rand_codes_k128", "rand_codes_k1024", "rand_codes_k4096",
          "rand_normal_k256", "rand_normal_k4096", "rand_normal_k16384", "rand_normal_k65536", "rand_pos_k4096",
          "rand_pos_k65536", "rand_tail_k144", "rand_tail_k1040", "rand_tail_k4112", "rand_act_k7168"};
}

GemmProbeCase make_gemm_probe(std::string_view name) {
  const std::string nm(name);
  if (name == "ones_stall") {
    const std::size_t K = 65536;
    auto c = structured(nm, "row i: n_i ones then zeros, n_i = 16 .. 65536 (where the accumulator stalls)", 32, 16,
                        K, {});
    for (std::size_t i = 0; i < 32; ++i) {
      const std::size_t n_i = std::min<std::size_t>(K, std::size_t(std::llround(16.0 * std::pow(2.0, i * 12.0 / 31.0))));
      for (std::size_t kk = 0; kk < n_i; ++kk) c.a[i * K + kk] = enc(1.0);
    }
    return c;
  }
  if (name == "alt_small") {
    const std::size_t K = 65536;
    auto c = structured(nm, "row: 2^-e at even k, 1 at odd k, for the first len k (PAPER.md probe family)", 32, 16,
                        K, {});
    for (std::size_t i = 0; i < 32; ++i) {
      int e = 1 + int(i % 9);
      std::size_t len = std::size_t(4096) << (2 * (i / 9));  // 4096, 16384, 65536
      bool odd_small = false;
      if (i >= 27) e = 4, len = std::size_t(1024) << (i - 27) * 2, odd_small = true;  // 1024 .. 262144 -> capped
      len = std::min(len, K);
      for (std::size_t kk = 0; kk < len; ++kk)
        c.a[i * K + kk] = enc(((kk % 2 == 0) != odd_small) ? std::ldexp(1.0, -e) : 1.0);
    }
    return c;
  }
  if (name == "paper_probe") {
    const std::size_t K = 16384;
    GemmProbeCase c{nm, "structured", "PAPER.md 5: A = 1, B = 0.0625 (even k) / 1 (odd k), K = 16384; exact 8704",
                    16, 16, K, std::vector<std::uint8_t>(16 * K, enc(1.0)), std::vector<std::uint8_t>(16 * K)};
    for (std::size_t j = 0; j < 16; ++j)
      for (std::size_t kk = 0; kk < K; ++kk) c.b[j * K + kk] = enc(kk % 2 == 0 ? 0.0625 : 1.0);
    return c;
  }
  if (name == "spread_first") return spread(nm, 0);
  if (name == "spread_last") return spread(nm, 1023);
  if (name == "spread_mid") return spread(nm, 517);
  if (name == "group_scan") {
    // Row r = pair * 1024 + q: +L at 640, -L at p1 (pair), small 2^-9 at q. Where s survives tells which k
    // share an aligned group with the pair, whether earlier terms sit in the aligned accumulator, and N_C.
    const std::size_t K = 1024, p0 = 640;
    const std::size_t p1s[] = {641, 647, 655, 671};
    std::vector<double> boost(K, 1.0);
    boost[p0] = 256.0;
    for (std::size_t p1 : p1s) boost[p1] = 256.0;
    auto c = structured(nm, "+L at k = 640, -L at k = 641/647/655/671 (B boosted x256 there), 2^-9 at k = q "
                        "(row = pair*1024 + q)", 4096, 4, K, boost);
    for (std::size_t pair = 0; pair < 4; ++pair)
      for (std::size_t q = 0; q < K; ++q) {
        auto* row = &c.a[(pair * K + q) * K];
        row[p0] = enc(448.0);
        row[p1s[pair]] = enc(-448.0);
        if (q != p0 && q != p1s[pair]) row[q] = enc(0x1.0p-9);
      }
    return c;
  }
  if (name == "mantissa_sum") {
    const std::size_t K = 65536;
    auto c = structured(nm, "row: the same value v (1.125 .. 1.875, 0.875) len times (carries, stalls)", 32, 16, K, {});
    const double vals[] = {1.125, 1.25, 1.375, 1.5, 1.625, 1.75, 1.875, 0.875};
    for (std::size_t i = 0; i < 32; ++i) {
      const std::size_t len = std::size_t(64) << (2 * (i / 8));  // 64, 1024, 16384, 65536
      for (std::size_t kk = 0; kk < len; ++kk) c.a[i * K + kk] = enc(vals[i % 8]);
    }
    return c;
  }
  if (name == "adv_extreme_k4096") return random_case(nm, 64, 64, 4096, 3);
  auto starts = [&](std::string_view p) { return name.substr(0, p.size()) == p; };
  auto kval = [&]() { return std::size_t(std::stoull(nm.substr(nm.rfind('k') + 1))); };
  if (starts("rand_codes_k")) return random_case(nm, 64, 64, kval(), 0);
  if (starts("rand_normal_k")) return random_case(nm, 64, 64, kval(), 1);
  if (starts("rand_pos_k")) return random_case(nm, 64, 64, kval(), 2);
  if (starts("rand_tail_k")) return random_case(nm, 64, 64, kval(), 1);
  if (starts("rand_act_k")) return activations_case(nm, 64, 64, kval());
  throw InputError(fmt::format("gemm probe '{}': unknown (known: {})", name, fmt::join(gemm_probe_names(), ", ")));
}

GemmProbeScales make_gemm_probe_scales(const GemmProbeCase& c, std::string_view scaling) {
  GemmProbeScales s;
  if (scaling == "tensor") {
    s.ga = s.gb = kTensor;
  } else if (scaling == "1x128_128x128") {
    s.ga = k1x128, s.gb = k128x128;
  } else if (scaling == "1x128_1x128") {
    s.ga = s.gb = k1x128;
  } else {
    throw InputError(fmt::format("probe scaling '{}': expected tensor, 1x128_128x128 or 1x128_1x128", scaling));
  }
  const std::size_t kb = (c.k + 127) / 128;
  auto count = [&](Granularity g, std::size_t rows) {
    if (g.rows == 0) return std::size_t(1);
    return (g.rows == 1 ? rows : (rows + 127) / 128) * kb;
  };
  s.sa.assign(count(s.ga, c.m), 1.0f);
  s.sb.assign(count(s.gb, c.n), 1.0f);
  if (c.family == "random") {
    std::uint64_t st = name_seed(std::string(c.name) + "/" + std::string(scaling));
    // fp32 values in [0.5, 2): not powers of two, so where and how the scales are applied shows in the bits.
    for (auto* v : {&s.sa, &s.sb})
      for (auto& x : *v) x = std::bit_cast<float>(std::uint32_t(0x3F000000u + (splitmix64_next(st) % 0x1000000u)));
  }
  return s;
}

std::uint64_t gemm_probe_hash(const GemmProbeCase& c, const GemmProbeScales& s) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  auto add = [&](std::uint8_t x) { h = (h ^ x) * 0x100000001b3ull; };
  for (auto x : c.a) add(x);
  for (auto x : c.b) add(x);
  for (const auto* v : {&s.sa, &s.sb})
    for (float f : *v) {
      const auto u = std::bit_cast<std::uint32_t>(f);
      for (int i = 0; i < 4; ++i) add(std::uint8_t(u >> (8 * i)));
    }
  return h;
}

}  // namespace fp8flow

#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "io/npy.hpp"

namespace fp8flow {

namespace {
std::uint16_t to_bf16_rne(float f) {
  std::uint32_t b = std::bit_cast<std::uint32_t>(f);
  if ((b & 0x7F800000u) == 0x7F800000u && (b & 0x7FFFFFu)) return std::uint16_t((b >> 16) | 0x40u);
  b += 0x7FFFu + ((b >> 16) & 1u);
  return std::uint16_t(b >> 16);
}
}  // namespace

std::vector<GemmProbeCheck> check_gemm_probes(const std::filesystem::path& index_json,
                                              const std::filesystem::path& outputs_npy, const ProbeModelFn& model,
                                              const std::vector<std::string>& cases, int threads) {
  std::ifstream f(index_json);
  if (!f) throw InputError(fmt::format("{}: cannot open the probe index", index_json.string()));
  nlohmann::json idx;
  try {
    idx = nlohmann::json::parse(f);
  } catch (const std::exception& e) {
    throw InputError(fmt::format("{}: not valid JSON: {}", index_json.string(), e.what()));
  }
  const io::NpyArray arr = io::read_npy(outputs_npy);
  if (arr.dtype != io::DType::u32)
    throw InputError(fmt::format("{}: expected uint32 output bits", outputs_npy.string()));
  const auto bits = arr.view<std::uint32_t>();
  std::vector<GemmProbeCheck> res;
  std::map<std::string, GemmProbeCase> cache;
  for (const auto& r : idx.at("runs")) {
    if (r.contains("error")) continue;
    const std::string name = r.at("case").get<std::string>();
    if (!cases.empty() && std::find(cases.begin(), cases.end(), name) == cases.end()) continue;
    if (!cache.count(name)) {
      cache.clear();
      cache.emplace(name, make_gemm_probe(name));
    }
    const GemmProbeCase& c = cache.at(name);
    const std::string sc = r.at("scaling").get<std::string>();
    const GemmProbeScales s = make_gemm_probe_scales(c, sc);
    const std::string h = fmt::format("{:016x}", gemm_probe_hash(c, s));
    if (h != r.at("hash").get<std::string>())
      throw InputError(fmt::format("{}: case {} {}: recorded input hash {} but the generator gives {} (the probe "
                                   "generator changed since the data was recorded)", index_json.string(), name, sc,
                                   r.at("hash").get<std::string>(), h));
    const std::size_t off = r.at("offset").get<std::size_t>(), cnt = r.at("count").get<std::size_t>();
    if (off + cnt > bits.size() || cnt != c.m * c.n)
      throw InputError(fmt::format("{}: run {} {} points outside the {} recorded outputs", index_json.string(), name,
                                   sc, bits.size()));
    GemmProbeCheck chk;
    chk.case_name = name;
    chk.scaling = sc;
    chk.out = r.at("out").get<std::string>();
    chk.fast_accum = r.at("fast_accum").get<bool>();
    chk.algo = r.value("algo", "");
    const auto [m, p] = model(chk.fast_accum, sc);
    const GemmOperand A{c.a, c.m, c.k, &e4m3, s.sa, s.ga}, B{c.b, c.n, c.k, &e4m3, s.sb, s.gb};
    const std::vector<float> out = gemm(A, B, m, p, threads);
    const bool bf16 = chk.out == "bf16";
    chk.compared = cnt;
    for (std::size_t i = 0; i < cnt; ++i) {
      const std::uint32_t mb = bf16 ? to_bf16_rne(out[i]) : std::bit_cast<std::uint32_t>(out[i]);
      if (mb == bits[off + i]) {
        ++chk.bit_exact;
      } else if (chk.first_mismatch.empty()) {
        const float gv = bf16 ? std::bit_cast<float>(bits[off + i] << 16) : std::bit_cast<float>(bits[off + i]);
        chk.first_mismatch = fmt::format("out[{}, {}]: model 0x{:08X} ({:.9g}), gpu 0x{:08X} ({:.9g})", i / c.n,
                                         i % c.n, mb, bf16 ? std::bit_cast<float>(mb << 16) : out[i], bits[off + i], gv);
      }
    }
    res.push_back(std::move(chk));
  }
  return res;
}

}  // namespace fp8flow
