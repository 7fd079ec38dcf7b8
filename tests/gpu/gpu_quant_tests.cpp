// GPU quantize / transpose / dequantize kernels vs the CPU golden model, bit for bit, on adversarial inputs:
// wide dynamic range inside one tile, shifts that produce subnormals, NaN/Inf, zero rows and zero scales,
// unequal expert groups and tail shapes (partial tiles on both axes, sizes not multiples of 16).
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <iterator>
#include <limits>
#include <random>
#include <vector>

#include "cuda/gpu_validate.hpp"
#include "gpu_quant_tests.hpp"

namespace fp8flow::gpu_tests {
namespace {
using namespace fp8flow::cuda;

struct Shape {
  std::size_t rows, cols;
  std::vector<std::size_t> groups;
};

const std::vector<Shape>& shapes() {
  static const std::vector<Shape> s = {
      {1, 1, {}},         {1, 5, {}},        {7, 130, {}},      {128, 128, {}},
      {129, 200, {}},     {257, 1000, {}},   {256, 384, {}},    {1000, 384, {1, 127, 129, 300, 443}},
      {512, 1024, {48, 80, 16, 112, 64, 96, 32, 64}},            {300, 4096, {100, 37, 163}},
      {1024, 2048, {}},   {200, 256, {200}},
      // Groups of whole 128-row tiles: the SAT's aligned kernel (column blocks fastest, cp.async) with several
      // groups, and a partial last column block.
      {640, 1040, {128, 384, 128}},
      // As many tiles as windows without being the windows (the SAT's aligned kernel on straddling tiles).
      {228, 256, {100, 128}},
      // More blocks than fit on the GPU at once; unequal groups that are multiples of 16 (the released
      // Megatron path's align).
      {2304, 4096, {160, 448, 256, 1440}},
      // The most groups the SAT takes by their bounds (16, window tiles from the kernel parameters), and more
      // (17 and up: from the device tile list), both with groups that are not multiples of 16.
      {3000, 520, {16, 400, 32, 112, 48, 160, 272, 17, 303, 128, 96, 512, 64, 240, 80, 520}},
      {2100, 256, {1, 15, 16, 100, 28, 300, 64, 64, 129, 127, 256, 3, 5, 400, 80, 112, 200, 200}},
  };
  return s;
}

// Row r of an adversarial tensor: a per-row magnitude 2^[-40, 40], and inside each row values spread over
// 2^[-30, 0] of it (wide range within one 1x128 tile and one 128x1 column tile), with specials sprinkled in;
// one row in 20 each is all zero, all fp32 subnormals, or all bf16 subnormals (2^-127..2^-133).
std::vector<float> adversarial(std::size_t rows, std::size_t cols, std::uint64_t seed, bool bf16) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  std::vector<float> x(rows * cols);
  for (std::size_t r = 0; r < rows; ++r) {
    const int row_exp = int(u(rng) * 80) - 40;
    const int kind = int(u(rng) * 20);
    for (std::size_t c = 0; c < cols; ++c) {
      double v = (u(rng) * 2 - 1) * std::ldexp(1.0, row_exp - int(u(rng) * u(rng) * 31));
      const double pick = u(rng);
      if (kind == 0) v = 0.0;                                   // a zero row
      else if (kind == 1) v = (pick < 0.5 ? -1 : 1) * 1e-42;    // fp32 subnormals only (0 in bf16)
      else if (kind == 2) v = (pick < 0.5 ? -1 : 1) * std::ldexp(0.5 + pick, -127 - int(pick * 7));  // bf16 subnormals
      if (pick < 0.002) v = std::numeric_limits<double>::quiet_NaN();
      else if (pick < 0.003) v = -std::numeric_limits<double>::infinity();
      else if (pick < 0.004) v = std::numeric_limits<double>::infinity();
      else if (pick < 0.006) v = (pick < 0.005 ? -0.0 : 0.0);
      else if (pick < 0.008) v = 448.0 * std::ldexp(1.0, row_exp);   // a power-of-two boundary
      else if (pick < 0.009) v = 3.0e38;                              // scale overflows to Inf
      std::uint32_t bits = std::bit_cast<std::uint32_t>(float(v));
      if (bf16) bits &= 0xFFFF0000u;  // truncate to a bf16 value
      x[r * cols + c] = std::bit_cast<float>(bits);
    }
  }
  return x;
}

// A rowwise tensor built code by code: random bytes (every code, NaN and subnormals included) and random
// power-of-two scales 2^[-60, 60] per row block, with zero scales, 2^-127 and 2^127 sprinkled in.
QuantizedTensor random_codes(std::size_t rows, std::size_t cols, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  QuantizedTensor q;
  q.rows = rows;
  q.cols = cols;
  q.scale_rows = rows;
  q.scale_cols = (cols + 127) / 128;
  q.codes.resize(rows * cols);
  for (auto& c : q.codes) c = std::uint8_t(rng());
  q.scale_inv.resize(q.scale_rows * q.scale_cols);
  for (auto& s : q.scale_inv) {
    const unsigned pick = unsigned(rng() % 100);
    s = pick == 0 ? 0.0f : pick == 1 ? std::ldexp(1.0f, -127) : pick == 2 ? std::ldexp(1.0f, 127)
                                                                          : std::ldexp(1.0f, int(rng() % 121) - 60);
  }
  return q;
}

int report(const GpuValidation& v, int& cases) {
  ++cases;
  if (!v.ok()) fmt::print("{}", to_text(v));
  return v.ok() ? 0 : 1;
}

}  // namespace

int quantize_bitexact() {
  int fails = 0, cases = 0;
  std::size_t compared = 0;
  std::uint64_t seed = 1;
  // The shared shapes, and one whose tile boundaries fall at rows 16 mod 32 (groups that are multiples of 16,
  // not 32; 16-row tiles; a partial last column block): two blocks write the two 16-byte halves of a
  // 32-byte sector of the column copy. Each case with the groups' bounds (window tilings: tiles from the
  // block index) and without (tiles loaded from the list).
  std::vector<Shape> quant_shapes = shapes();
  quant_shapes.push_back({2000, 1040, {16, 208, 48, 400, 144, 1184}});
  // The v1 kernel: 1x128 + 128x1 and 128x128 + transposed copy; te_pow2 and te_fp32 with eps 0 and 1e-10,
  // paper_swiglu (its own floor).
  struct RuleEps {
    ScaleRule rule;
    float eps;
  };
  const RuleEps rules[] = {{ScaleRule::te_pow2, 0.0f},  {ScaleRule::te_pow2, 1e-10f}, {ScaleRule::te_fp32, 0.0f},
                           {ScaleRule::te_fp32, 1e-10f}, {ScaleRule::paper_swiglu, 0.0f}};
  for (const Shape& s : quant_shapes)
    for (const bool bf16 : {false, true})
      for (const Granularity g : {k1x128, k128x128})
        for (const RuleEps& re : rules)
          for (const bool bounds : {true, false}) {
            const auto x = adversarial(s.rows, s.cols, seed++, bf16);
            QuantSpec spec{bf16 ? QuantInput::bf16 : QuantInput::f32, g, re.rule, re.eps, QuantKernel::v1};
            spec.v1_bounds = bounds;
            const auto v = validate_quantize_gpu(x, s.rows, s.cols, spec, s.groups);
            for (const auto& p : v.parts) compared += p.compared;
            fails += report(v, cases);
          }
  // Refused before any launch (the pointers are never dereferenced): group bounds that do not describe the
  // tile list, and a code array without its scale array.
  {
    static std::uint8_t codes[1];
    static float si[1];
    const auto refused = [&](const char* what, cudaError_t e) {
      ++cases;
      if (e == cudaErrorInvalidValue) return;
      ++fails;
      fmt::print("FAIL: quant_e4m3_v1 with {} gave '{}', not cudaErrorInvalidValue\n", what, cudaGetErrorName(e));
    };
    const std::size_t n_tiles = make_row_tiles(256, {100, 156}).size();
    for (const GroupBounds& wrong : {group_bounds(256, {50, 50, 156}), group_bounds(300, {100, 200})})
      refused("mismatching group bounds",
              quant_e4m3_v1(codes, QuantInput::bf16, 256, 128, nullptr, n_tiles, QuantGranularity::g1x128,
                            QuantV2Params{}, codes, si, codes, si, 0, false, &wrong));
    refused("1x128 column codes without scales",
            quant_e4m3_v1(codes, QuantInput::bf16, 256, 128, nullptr, n_tiles, QuantGranularity::g1x128,
                          QuantV2Params{}, codes, si, codes, nullptr));
    refused("128x128 codes without scales",
            quant_e4m3_v1(codes, QuantInput::bf16, 256, 128, nullptr, n_tiles, QuantGranularity::g128x128,
                          QuantV2Params{}, codes, nullptr, nullptr, nullptr));
  }
  fmt::print("quantize_bitexact: {} cases, {} failing, {} values compared\n", cases, fails, compared);
  return fails ? 1 : 0;
}

// v2 quantize kernel: 1x128 (+128x1) and 128x128 (+ transposed copy) x te_pow2 / te_fp32 (eps 0, 1e-10) /
// paper_swiglu x {fp32, bf16}, on the adversarial tensor (NaN, Inf, -0, subnormals, 448 * 2^j boundaries,
// huge and tiny rows) and on a random normal tensor, over every shape (tails on both axes, unequal groups).
// `small`: the shapes up to 512 x 1024 elements only (for compute-sanitizer, where kernels run ~50x slower).
int quantize_v2_bitexact(bool small) {
  int fails = 0, cases = 0;
  std::size_t compared = 0;
  std::uint64_t seed = 9000;
  struct Cfg {
    Granularity tile;
    ScaleRule rule;
    float eps;
  };
  const std::vector<Cfg> cfgs = {
      {k1x128, ScaleRule::te_pow2, 0.0f},     {k1x128, ScaleRule::te_pow2, 1e-10f},   {k1x128, ScaleRule::te_fp32, 0.0f},
      {k1x128, ScaleRule::te_fp32, 1e-10f},   {k1x128, ScaleRule::paper_swiglu, 0.0f}, {k128x128, ScaleRule::te_pow2, 0.0f},
      {k128x128, ScaleRule::te_pow2, 1e-10f}, {k128x128, ScaleRule::te_fp32, 0.0f},   {k128x128, ScaleRule::te_fp32, 1e-10f},
      {k128x128, ScaleRule::paper_swiglu, 0.0f}};
  std::mt19937_64 rng(77);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (const Shape& s : shapes()) {
    if (small && s.rows * s.cols > 512 * 1024) continue;
    for (const bool bf16 : {false, true}) {
      std::vector<std::vector<float>> inputs;
      inputs.push_back(adversarial_tensor(s.rows, s.cols, seed++, bf16));
      std::vector<float> r(s.rows * s.cols);
      for (auto& v : r) {
        v = nd(rng) * std::ldexp(1.0f, int(rng() % 16) - 8);
        if (bf16) v = std::bit_cast<float>(std::bit_cast<std::uint32_t>(v) & 0xFFFF0000u);
      }
      inputs.push_back(std::move(r));
      for (std::size_t k = 0; k < inputs.size(); ++k)
        for (const Cfg& c : cfgs) {
          const QuantSpec spec{bf16 ? QuantInput::bf16 : QuantInput::f32, c.tile, c.rule, c.eps, QuantKernel::v2};
          auto v = validate_quantize_gpu(inputs[k], s.rows, s.cols, spec, s.groups);
          v.input = k == 0 ? "adversarial" : "normal";
          compared += v.compared();
          fails += report(v, cases);
        }
    }
  }
  fmt::print("quantize_v2_bitexact{}: {} cases (1x128+128x1 and 128x128+transposed; te_pow2, te_fp32, paper_swiglu; "
             "fp32 and bf16; adversarial and normal), {} failing, {} values compared\n",
             small ? "_small" : "", cases, fails, compared);
  return fails ? 1 : 0;
}

// The paper_swiglu scale at its edges, one 128x128 block (and its 128 rows) each: all zero (scale_inv 2^-42),
// amax = 448 * 2^j exactly and one ulp above (the ceil to a power of two), amax below the 1e-10 floor,
// FLT_MAX, an Inf (scale_inv Inf: finite -> +-0, Inf -> NaN), all NaN (ignored: like all zero), subnormal;
// the same blocks also through the v1 kernel with te_pow2.
int quantize_swiglu_edges() {
  int fails = 0, cases = 0;
  const std::size_t n = 128;
  const float specials[] = {0.0f, 448.0f, std::nextafter(448.0f, 1e9f), 448.0f * 0x1p-20f,
                            std::nextafter(448.0f * 0x1p-20f, 1.0f), 1e-11f, 1e-10f * 448.0f,
                            std::numeric_limits<float>::max(), std::numeric_limits<float>::infinity(),
                            std::numeric_limits<float>::quiet_NaN(), 0x1p-149f, 0x1p-126f,
                            0x1.8p-130f};  // a bf16 subnormal: every row and column amax subnormal
  for (const float top : specials)
    for (const bool bf16 : {false, true}) {
      std::vector<float> x(n * n);
      std::mt19937_64 rng(std::bit_cast<std::uint32_t>(top));
      for (std::size_t i = 0; i < x.size(); ++i) {
        float v = std::isnan(top) ? top : top * (float(rng() % 1001) / 1000.0f) * ((rng() & 1) ? -1.0f : 1.0f);
        if (i % 97 == 0) v = top;  // the amax itself, in every row
        std::uint32_t b = std::bit_cast<std::uint32_t>(v);
        if (bf16) b &= 0xFFFF0000u;
        x[i] = std::bit_cast<float>(b);
      }
      for (const Granularity t : {k1x128, k128x128}) {
        auto v = validate_quantize_gpu(x, n, n, QuantSpec{bf16 ? QuantInput::bf16 : QuantInput::f32, t,
                                                          ScaleRule::paper_swiglu, 0.0f, QuantKernel::v2},
                                       {});
        v.input = fmt::format("edge amax {:a}", double(top));
        fails += report(v, cases);
      }
      // The same blocks through v1 (1x128 + 128x1 with te_pow2 and paper_swiglu; 128x128 with paper_swiglu):
      // its packed bf16 maxima on NaN/Inf/subnormal tiles, and the paper_swiglu scale at its edges.
      for (const auto& [t, rule] : {std::pair{k1x128, ScaleRule::te_pow2}, std::pair{k1x128, ScaleRule::paper_swiglu},
                                    std::pair{k128x128, ScaleRule::paper_swiglu}}) {
        auto v1 = validate_quantize_gpu(x, n, n, QuantSpec{bf16 ? QuantInput::bf16 : QuantInput::f32, t, rule,
                                                           0.0f, QuantKernel::v1},
                                        {});
        v1.input = fmt::format("edge amax {:a}", double(top));
        fails += report(v1, cases);
      }
    }
  fmt::print("quantize_swiglu_edges: {} cases, {} failing\n", cases, fails);
  return fails ? 1 : 0;
}

int transpose_bitexact() {
  int fails = 0, cases = 0;
  std::size_t compared = 0;
  std::uint64_t seed = 1000;
  for (const Shape& s : shapes()) {
    std::vector<QuantizedTensor> inputs;
    inputs.push_back(random_codes(s.rows, s.cols, seed++));
    for (const float eps : {0.0f, 1e-10f}) {  // te_pow2 quantization of adversarial fp32
      QuantParams p = default_params(ScaleRule::te_pow2);
      p.eps = eps;
      const auto x = adversarial(s.rows, s.cols, seed++, false);
      inputs.push_back(quantize(x, s.rows, s.cols, QuantRecipe{k1x128, &e4m3, ScaleRule::te_pow2}, p));
    }
    for (const auto& in : inputs)
      for (const auto m : {TransposeMethod::paper_kernel, TransposeMethod::exact, TransposeMethod::naive}) {
        const auto v = validate_transpose_gpu(in, s.groups, m);
        for (const auto& p : v.parts) compared += p.compared;
        fails += report(v, cases);
      }
  }
  // Group bounds that do not describe the tile list are refused before any launch: another tile count, and
  // the same tile count for other rows.
  const std::size_t n_tiles = make_row_tiles(256, {100, 156}).size();  // 3 tiles, 2 windows
  for (const GroupBounds& wrong : {group_bounds(256, {50, 50, 156}), group_bounds(300, {100, 200})}) {
    const cudaError_t e = sat_transpose_e4m3_1x128(nullptr, nullptr, 256, 128, nullptr, n_tiles,
                                                   SatMode::paper_kernel, nullptr, nullptr, 0, false, &wrong);
    ++cases;
    if (e != cudaErrorInvalidValue) {
      ++fails;
      fmt::print("FAIL: mismatching group bounds (begin[n] = {}) gave '{}', not cudaErrorInvalidValue\n",
                 wrong.begin[wrong.n], cudaGetErrorName(e));
    }
  }
  fmt::print("transpose_bitexact: {} cases (paper_kernel, exact, naive; bounds checks), {} failing, {} values compared\n",
             cases, fails, compared);
  return fails ? 1 : 0;
}

int dequantize_bitexact() {
  int fails = 0, cases = 0;
  std::uint64_t seed = 5000;
  for (const Shape& s : shapes()) fails += report(validate_dequantize_gpu(random_codes(s.rows, s.cols, seed++)), cases);
  fmt::print("dequantize_bitexact: {} cases, {} failing\n", cases, fails);
  return fails ? 1 : 0;
}

// quantize -> SAT chains launched with programmatic dependent launch equal the same chains without it
// (check_pdl_chain): short kernels (small shapes) so that each launch overlaps the previous one's tail.
int pdl_chain() {
  struct Case {
    std::size_t rows, cols;
    std::vector<std::size_t> groups;
  };
  const Case cases[] = {{256, 512, {}},
                        {700, 520, {1, 127, 129, 443}},
                        {2304, 4096, {160, 448, 256, 1440}},
                        {28672, 1280, {}},
                        // groups of 16 rows mod 32: tiles sharing 32-byte sectors of the column copy
                        {2000, 1040, {16, 208, 48, 400, 144, 1184}}};
  int fails = 0;
  std::uint64_t seed = 7000;
  for (const Case& c : cases) {
    const PdlChainCheck r = check_pdl_chain(c.rows, c.cols, c.groups, 8, seed);
    seed += 8;
    fmt::print("pdl chain [{}, {}] groups {}: 8 rounds, {} bytes compared, {} differ{}\n", c.rows, c.cols,
               c.groups.empty() ? std::string("(one)") : fmt::format("{}", fmt::join(c.groups, ",")), r.compared,
               r.mismatches, r.mismatches ? fmt::format(" (first in round {})", r.first_round) : std::string());
    fails += r.mismatches != 0;
  }
  fmt::print("pdl_chain: {} cases, {} failing\n", std::size(cases), fails);
  return fails ? 1 : 0;
}

}  // namespace fp8flow::gpu_tests
