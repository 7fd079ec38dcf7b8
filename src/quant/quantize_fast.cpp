// Fast path for 1xN te_fp32/te_pow2 quantization: ISA dispatch and OpenMP over row blocks.
#include <fmt/format.h>

#include <stdexcept>

#include "formats/cpu_features.hpp"
#include "formats/parallel_chunks.hpp"
#include "quant/quantize.hpp"


namespace fp8flow {

#define FP8FLOW_DECLARE_ISA(NS)                                                                              \
  namespace NS {                                                                                             \
  void quantize_rows_1xn_te(const FormatSpec&, Overflow, const float*, std::size_t, std::size_t, std::size_t, \
                            std::size_t, bool, float, InputDtype, std::uint8_t*, float*, std::size_t);       \
  }
FP8FLOW_DECLARE_ISA(isa_generic)
FP8FLOW_DECLARE_ISA(isa_avx2)
#undef FP8FLOW_DECLARE_ISA

namespace fast {

const char* isa() { return cpu_has_avx2() ? "avx2" : "generic"; }

bool supports(const QuantRecipe& r, const QuantParams&, const std::vector<std::size_t>&) {
  // Row groups do not change 1xN tiles, so any grouping is served.
  return r.tile.rows == 1 && r.tile.cols > 0 && (r.scale == ScaleRule::te_fp32 || r.scale == ScaleRule::te_pow2) &&
         storage_bits(*r.payload) == 8 && r.payload != &ue8m0;
}

void quantize_into(std::span<const float> x, std::size_t rows, std::size_t cols, const QuantRecipe& r,
                   const QuantParams& p, int threads, std::span<std::uint8_t> codes, std::span<float> scale_inv) {
  const std::size_t n = std::size_t(r.tile.cols), scale_cols = (cols + n - 1) / n;
  if (codes.size() != rows * cols || scale_inv.size() != rows * scale_cols || x.size() != rows * cols)
    throw std::invalid_argument("fast::quantize_into: buffer sizes do not match the shape");
  const bool pow2 = r.scale == ScaleRule::te_pow2;
  const auto body = [&](std::size_t b, std::size_t e) {
    if (cpu_has_avx2())
      isa_avx2::quantize_rows_1xn_te(*r.payload, p.overflow, x.data(), b, e, cols, n, pow2, p.eps, p.input,
                                     codes.data(), scale_inv.data(), scale_cols);
    else
      isa_generic::quantize_rows_1xn_te(*r.payload, p.overflow, x.data(), b, e, cols, n, pow2, p.eps, p.input,
                                        codes.data(), scale_inv.data(), scale_cols);
  };
  // Tasks of 16 rows; inputs under 2^18 elements stay on the calling thread.
  constexpr std::size_t kRowsPerTask = 16, kSerialElements = std::size_t(1) << 18;
  const std::size_t serial_rows = cols == 0 ? rows + 1 : (kSerialElements + cols - 1) / cols;
  parallel_chunks(rows, kRowsPerTask, serial_rows, threads, body);
}

QuantizedTensor quantize(std::span<const float> x, std::size_t rows, std::size_t cols, const QuantRecipe& r,
                         const QuantParams& p, int threads) {
  QuantizedTensor q;
  q.rows = rows;
  q.cols = cols;
  q.recipe = r;
  q.params = p;
  const std::size_t n = std::size_t(r.tile.cols);
  q.scale_rows = rows;
  q.scale_cols = (cols + n - 1) / n;
  q.codes.resize(rows * cols);
  q.scale_inv.resize(q.scale_rows * q.scale_cols);
  quantize_into(x, rows, cols, r, p, threads, q.codes, q.scale_inv);
  return q;
}

}  // namespace fast
}  // namespace fp8flow
