// The arithmetic the v2 GPU quantize kernel (src/cuda/quantize_kernels.cu) uses, replayed on the CPU against
// the golden model (src/quant): amax as an integer max over |x| bits with NaN masked to 0 (bf16 pairs as
// 16-bit halves), the te_* scale, and for paper_swiglu the scale from the bits of RN32(max(amax, 1e-10) / 448)
// with the element division y / si done as y * 2^-E(si). The GPU tests prove the kernel bit-exact on the
// device; this proves, without a GPU and on adversarial inputs (NaN, Inf, subnormals, subnormal results,
// 448 * 2^j boundaries, tiny and huge blocks), that the reformulation itself is exact.
#include <catch2/catch.hpp>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "formats/convert.hpp"
#include "quant/quantize.hpp"

using namespace fp8flow;

namespace {

// The kernel's amax: max of |x| bits, NaN -> 0 (fp32 layout).
std::uint32_t amax_bits(const float* x, std::size_t n, std::size_t stride, std::size_t count) {
  std::uint32_t m = 0;
  for (std::size_t k = 0; k < count; ++k) {
    const std::uint32_t a = std::bit_cast<std::uint32_t>(x[k * stride]) & 0x7FFFFFFFu;
    m = std::max(m, a > 0x7F800000u ? 0u : a);
  }
  (void)n;
  return m;
}

struct Pair {
  float factor, si;
};
Pair kernel_scale(float amax, ScaleRule rule, float eps, bool bf16) {
  if (rule == ScaleRule::paper_swiglu) {
    const float t = std::fmax(amax, 1e-10f) / 448.0f;
    const std::uint32_t b = std::bit_cast<std::uint32_t>(t);
    const std::uint32_t e = ((b >> 23) & 0xFFu) + ((b & 0x7FFFFFu) != 0u ? 1u : 0u);
    const float rcp = e >= 255u ? 0.0f
                      : e == 254u ? std::bit_cast<float>(0x00400000u)
                                  : std::bit_cast<float>((254u - e) << 23);
    return {rcp, std::bit_cast<float>(e << 23)};
  }
  const float s = te_scale_from_amax(amax, 448.0f, eps, rule == ScaleRule::te_pow2,
                                     bf16 ? InputDtype::bf16 : InputDtype::f32);
  return {s, 1.0f / s};
}
std::uint8_t cast(float y) {
  return std::uint8_t(encode_bits<e4m3, float, Rounding::rne, Overflow::satfinite>(std::bit_cast<std::uint32_t>(y)));
}

std::vector<float> adversarial(std::size_t rows, std::size_t cols, std::uint64_t seed, bool bf16) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  std::vector<float> x(rows * cols);
  for (std::size_t r = 0; r < rows; ++r) {
    const int e = int(rng() % 300) - 160;  // block magnitudes 2^-160 .. 2^139 (tiny, subnormal, huge, Inf)
    const int kind = int(rng() % 8);
    for (std::size_t c = 0; c < cols; ++c) {
      double v = (u(rng) * 2 - 1) * std::ldexp(1.0, e - int(u(rng) * 24));
      if (kind == 0) v = 0.0;
      if (kind == 1) v = (u(rng) < 0.5 ? -448.0 : 448.0) * std::ldexp(1.0, e / 3) * (1 + double(int(rng() % 3) - 1) * 0x1p-23);
      const double p = u(rng);
      if (p < 0.003) v = std::numeric_limits<double>::quiet_NaN();
      else if (p < 0.004) v = -std::numeric_limits<double>::quiet_NaN();
      else if (p < 0.005) v = std::numeric_limits<double>::infinity();
      else if (p < 0.006) v = -0.0;
      float f = std::fabs(v) > double(std::numeric_limits<float>::max()) && std::isfinite(v)
                    ? float(std::copysign(std::numeric_limits<double>::infinity(), v))
                    : float(v);
      std::uint32_t b = std::bit_cast<std::uint32_t>(f);
      if (bf16) b &= 0xFFFF0000u;
      x[r * cols + c] = std::bit_cast<float>(b);
    }
  }
  return x;
}

}  // namespace

TEST_CASE("v2 GPU quantize arithmetic equals the golden model for 1x128 128x1 128x128 and te_* paper_swiglu",
          "[gpu_quant_math]") {
  const std::size_t rows = 300, cols = 260;  // tails on both axes
  for (const bool bf16 : {false, true})
    for (const ScaleRule rule : {ScaleRule::te_pow2, ScaleRule::te_fp32, ScaleRule::paper_swiglu})
      for (const float eps : {0.0f, 1e-10f}) {
        if (rule == ScaleRule::paper_swiglu && eps != 0.0f) continue;
        const std::vector<float> x = adversarial(rows, cols, 11 + std::uint64_t(rule) * 2 + bf16, bf16);
        QuantParams p = default_params(rule);
        p.eps = eps;
        p.input = bf16 ? InputDtype::bf16 : InputDtype::f32;
        for (const Granularity g : {k1x128, k128x1, k128x128}) {
          INFO("rule " << to_string(rule) << " granularity " << to_string(g) << " bf16 " << bf16 << " eps " << eps);
          const QuantizedTensor ref = golden::quantize(x, rows, cols, QuantRecipe{g, &e4m3, rule}, p);
          const TileGrid grid = ref.grid();
          std::size_t bad_codes = 0, bad_scales = 0;
          for (std::size_t i = 0; i < grid.row_tiles.size(); ++i)
            for (std::size_t j = 0; j < grid.col_tiles.size(); ++j) {
              const Range rr = grid.row_tiles[i], cc = grid.col_tiles[j];
              std::uint32_t m = 0;
              for (std::size_t r = rr.begin; r < rr.end; ++r)
                m = std::max(m, amax_bits(&x[r * cols + cc.begin], 0, 1, cc.size()));
              const Pair s = kernel_scale(std::bit_cast<float>(m), rule, eps, bf16);
              bad_scales += std::bit_cast<std::uint32_t>(s.si) !=
                            std::bit_cast<std::uint32_t>(ref.scale_inv[i * ref.scale_cols + j]);
              for (std::size_t r = rr.begin; r < rr.end; ++r)
                for (std::size_t c = cc.begin; c < cc.end; ++c)
                  bad_codes += cast(x[r * cols + c] * s.factor) != ref.codes[r * cols + c];
            }
          CHECK(bad_scales == 0);
          CHECK(bad_codes == 0);
        }
      }
}

TEST_CASE("paper_swiglu: y / si == y * 2^-E(si) for every power-of-two si the rule makes including subnormal results",
          "[gpu_quant_math]") {
  std::mt19937_64 rng(5);
  std::size_t checked = 0, bad = 0;
  for (int e = -42; e <= 120; ++e) {
    const float si = std::ldexp(1.0f, e), rcp = std::ldexp(1.0f, -e);
    for (int k = 0; k < 4000; ++k) {
      const float y = std::bit_cast<float>(std::uint32_t(rng()));  // every bit pattern: NaN, Inf, subnormals
      const float a = y / si, b = y * rcp;
      ++checked;
      bad += std::isnan(a) ? !std::isnan(b) : std::bit_cast<std::uint32_t>(a) != std::bit_cast<std::uint32_t>(b);
    }
  }
  INFO(checked << " checked");
  CHECK(bad == 0);
}
