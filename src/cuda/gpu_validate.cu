// GPU kernels against the CPU model, bit for bit (see gpu_validate.hpp). Host code only: it runs the kernels
// of quantize_kernels.cu / sat_kernels.cu on copies of the inputs and compares with src/quant.
#include <cuda_runtime.h>

#include <bit>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "cuda/gpu_validate.hpp"
#include "cuda/quantize_kernels.hpp"
#include "cuda/sat_kernels.hpp"

namespace fp8flow::cuda {
namespace {

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(std::string("CUDA error in ") + what + ": " + cudaGetErrorString(e));
}

// A device copy of a host vector (or uninitialised storage), freed on scope exit.
template <class T>
struct DeviceArray {
  T* p = nullptr;
  std::size_t n = 0;
  explicit DeviceArray(std::size_t count) : n(count) {
    check(cudaMalloc(&p, (n ? n : 1) * sizeof(T)), "cudaMalloc");
    check(cudaMemset(p, 0xA5, (n ? n : 1) * sizeof(T)), "cudaMemset");  // poison: unwritten output shows
  }
  explicit DeviceArray(const std::vector<T>& h) : DeviceArray(h.size()) {
    check(cudaMemcpy(p, h.data(), n * sizeof(T), cudaMemcpyHostToDevice), "cudaMemcpy H2D");
  }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  ~DeviceArray() { cudaFree(p); }
  std::vector<T> to_host() const {
    std::vector<T> h(n);
    check(cudaMemcpy(h.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost), "cudaMemcpy D2H");
    return h;
  }
};

std::string hex(std::uint32_t v, int digits) {
  char b[16];
  std::snprintf(b, sizeof b, "0x%0*X", digits, v);
  return b;
}

std::size_t row_tile_of(const std::vector<RowTile>& tiles, std::size_t r) {
  for (std::size_t i = 0; i < tiles.size(); ++i)
    if (r >= tiles[i].row_begin && r < tiles[i].row_begin + tiles[i].row_count) return i;
  return tiles.size();
}

// Codes stored [outer, inner]; `logical(o, i)` gives (r, c); `input(r, c)` describes the input element.
template <class Logical, class Input>
BitCompare compare_codes(std::string what, const std::vector<std::uint8_t>& golden,
                         const std::vector<std::uint8_t>& gpu, std::size_t inner, Logical logical, Input input,
                         int tile_rows, int tile_cols, const std::vector<RowTile>* tiles) {
  BitCompare b{std::move(what), golden.size(), 0, {}};
  if (golden.size() != gpu.size()) throw std::logic_error("compare_codes: sizes differ");
  for (std::size_t i = 0; i < golden.size(); ++i) {
    if (golden[i] == gpu[i]) continue;
    if (b.mismatches++ == 0) {
      const auto [r, c] = logical(i / inner, i % inner);
      const std::size_t tr = tiles ? row_tile_of(*tiles, r) : r / std::size_t(tile_rows);
      b.first_mismatch = "codes[r=" + std::to_string(r) + ", c=" + std::to_string(c) + "] tile (" +
                         std::to_string(tr) + "," + std::to_string(c / std::size_t(tile_cols)) + ") input " +
                         input(r, c) + ": golden " + hex(golden[i], 2) + ", gpu " + hex(gpu[i], 2);
    }
  }
  return b;
}

BitCompare compare_scales(std::string what, const std::vector<float>& golden, const std::vector<float>& gpu,
                          std::size_t scale_cols) {
  BitCompare b{std::move(what), golden.size(), 0, {}};
  if (golden.size() != gpu.size()) throw std::logic_error("compare_scales: sizes differ");
  for (std::size_t i = 0; i < golden.size(); ++i) {
    const auto g = std::bit_cast<std::uint32_t>(golden[i]), d = std::bit_cast<std::uint32_t>(gpu[i]);
    if (g == d) continue;
    if (b.mismatches++ == 0) {
      char buf[200];
      std::snprintf(buf, sizeof buf, "scale_inv[%zu, %zu]: golden %s (%.9g), gpu %s (%.9g)", i / scale_cols,
                    i % scale_cols, hex(g, 8).c_str(), double(golden[i]), hex(d, 8).c_str(), double(gpu[i]));
      b.first_mismatch = buf;
    }
  }
  return b;
}

std::vector<std::size_t> or_whole(const std::vector<std::size_t>& groups, std::size_t rows) {
  return groups.empty() ? std::vector<std::size_t>{rows} : groups;
}

constexpr std::size_t kGoldenLimit = std::size_t(1) << 22;  // above: the CPU fast path (tested = golden)

}  // namespace

bool GpuValidation::ok() const { return mismatches() == 0; }
std::size_t GpuValidation::mismatches() const {
  std::size_t n = 0;
  for (const auto& p : parts) n += p.mismatches;
  return n;
}

GpuValidation validate_quantize_gpu(std::span<const float> x, std::size_t rows, std::size_t cols, QuantInput input,
                                    TeQuantParams p, const std::vector<std::size_t>& groups) {
  const ScaleRule rule = p.pow2 ? ScaleRule::te_pow2 : ScaleRule::te_fp32;
  GpuValidation v;
  v.op = std::string("quant_1x128_128x1_e4m3_") + std::string(to_string(rule)) +
         (input == QuantInput::bf16 ? "_from_bf16" : "_from_f32");
  v.rows = rows;
  v.cols = cols;
  v.groups = groups;
  QuantParams qp = default_params(rule);
  qp.eps = p.eps;
  qp.input = input == QuantInput::bf16 ? InputDtype::bf16 : InputDtype::f32;
  const std::vector<std::size_t> g = or_whole(groups, rows);
  const bool golden_ok = rows * cols <= kGoldenLimit;
  v.oracle = golden_ok ? "golden" : "fast";
  const QuantRecipe rr{k1x128, &e4m3, rule}, cr{k128x1, &e4m3, rule};
  const QuantizedTensor row_ref =
      golden_ok ? golden::quantize(x, rows, cols, rr, qp, g) : quantize(x, rows, cols, rr, qp, g);
  const QuantizedTensor col_ref =
      with_codes_transposed(golden_ok ? golden::quantize(x, rows, cols, cr, qp, g) : quantize(x, rows, cols, cr, qp, g),
                            true);

  const std::vector<RowTile> tiles = make_row_tiles(rows, groups);
  DeviceArray<RowTile> d_tiles(tiles);
  DeviceArray<std::uint8_t> rc(rows * cols), cc(rows * cols);
  DeviceArray<float> rs(rows * ((cols + 127) / 128)), cs(tiles.size() * cols);
  if (input == QuantInput::bf16) {
    std::vector<std::uint16_t> h(x.size());
    for (std::size_t i = 0; i < x.size(); ++i) {
      const std::uint32_t b = std::bit_cast<std::uint32_t>(x[i]);
      if (b & 0xFFFFu) throw std::invalid_argument("validate_quantize_gpu: bf16 input holds a non-bf16 value");
      h[i] = std::uint16_t(b >> 16);
    }
    DeviceArray<std::uint16_t> dx(h);
    check(quant_e4m3_1x128_128x1_te(dx.p, input, rows, cols, d_tiles.p, tiles.size(), p, rc.p, rs.p, cc.p, cs.p),
          "quantize launch");
    check(cudaDeviceSynchronize(), "quantize");
  } else {
    DeviceArray<float> dx(std::vector<float>(x.begin(), x.end()));
    check(quant_e4m3_1x128_128x1_te(dx.p, input, rows, cols, d_tiles.p, tiles.size(), p, rc.p, rs.p, cc.p, cs.p),
          "quantize launch");
    check(cudaDeviceSynchronize(), "quantize");
  }
  const auto in_hex = [&](std::size_t r, std::size_t c) { return hex(std::bit_cast<std::uint32_t>(x[r * cols + c]), 8); };
  v.parts.push_back(compare_codes(
      "rowwise codes", row_ref.codes, rc.to_host(), cols, [](std::size_t o, std::size_t i) { return std::pair{o, i}; },
      in_hex, 1, 128, nullptr));
  v.parts.push_back(compare_scales("rowwise scale_inv", row_ref.scale_inv, rs.to_host(), row_ref.scale_cols));
  v.parts.push_back(compare_codes(
      "colwise codes", col_ref.codes, cc.to_host(), rows, [](std::size_t o, std::size_t i) { return std::pair{i, o}; },
      in_hex, 128, 1, &tiles));
  v.parts.push_back(compare_scales("colwise scale_inv", col_ref.scale_inv, cs.to_host(), col_ref.scale_cols));
  return v;
}

GpuValidation validate_transpose_gpu(const QuantizedTensor& in, const std::vector<std::size_t>& groups,
                                     TransposeMethod m) {
  check_sat_input(in, "validate --gpu --op transpose");
  if (in.recipe.tile != k1x128 || in.recipe.payload != &e4m3)
    throw std::invalid_argument("validate_transpose_gpu: the GPU kernels take 1x128 e4m3 input");
  GpuValidation v;
  v.op = m == TransposeMethod::naive ? std::string("transpose_naive_e4m3_1x128")
                                     : std::string("sat_e4m3_1x128_") + std::string(to_string(m));
  v.rows = in.rows;
  v.cols = in.cols;
  v.groups = groups;
  const std::size_t rows = in.rows, cols = in.cols;
  const bool golden_ok = rows * cols <= kGoldenLimit;
  v.oracle = golden_ok ? "golden" : "fast";
  const std::vector<std::size_t> g = or_whole(groups, rows);
  QuantizedTensor ref;
  switch (m) {
    case TransposeMethod::naive: ref = transpose_naive(in, g); v.oracle = "golden"; break;
    case TransposeMethod::paper_kernel:
    case TransposeMethod::exact:
      ref = golden_ok ? golden::transpose_sat(in, g, m, Rounding::rne)
                      : (m == TransposeMethod::exact ? transpose_exact(in, g, Rounding::rne) : transpose_paper_kernel(in, g));
      break;
    case TransposeMethod::direct: throw std::invalid_argument("validate_transpose_gpu: direct has no GPU kernel here");
  }
  const std::vector<RowTile> tiles = make_row_tiles(rows, groups);
  DeviceArray<RowTile> d_tiles(tiles);
  DeviceArray<std::uint8_t> d_in(in.codes), d_out(rows * cols);
  DeviceArray<float> d_si(in.scale_inv), d_osi(tiles.size() * cols);
  if (m == TransposeMethod::naive)
    check(transpose_naive_e4m3_1x128(d_in.p, d_si.p, rows, cols, d_tiles.p, tiles.size(), in.params.eps, d_out.p,
                                     d_osi.p),
          "naive launch");
  else
    check(sat_transpose_e4m3_1x128(d_in.p, d_si.p, rows, cols, d_tiles.p, tiles.size(),
                                   m == TransposeMethod::exact ? SatMode::exact : SatMode::paper_kernel, d_out.p,
                                   d_osi.p),
          "sat launch");
  check(cudaDeviceSynchronize(), "transpose");
  const auto in_hex = [&](std::size_t r, std::size_t c) {
    return hex(in.codes[r * cols + c], 2) + " (row scale_inv " +
           hex(std::bit_cast<std::uint32_t>(in.scale_inv[r * in.scale_cols + c / 128]), 8) + ")";
  };
  v.parts.push_back(compare_codes(
      "transposed codes", ref.codes, d_out.to_host(), rows,
      [](std::size_t o, std::size_t i) { return std::pair{i, o}; }, in_hex, 128, 1, &tiles));
  v.parts.push_back(compare_scales("column scale_inv", ref.scale_inv, d_osi.to_host(), ref.scale_cols));
  return v;
}

GpuValidation validate_dequantize_gpu(const QuantizedTensor& in) {
  check_sat_input(in, "validate --gpu --op dequantize");
  GpuValidation v;
  v.op = "dequant_e4m3_1x128";
  v.rows = in.rows;
  v.cols = in.cols;
  v.oracle = "golden";
  const std::vector<float> ref = dequantize(in);
  DeviceArray<std::uint8_t> d_in(in.codes);
  DeviceArray<float> d_si(in.scale_inv), d_out(in.rows * in.cols);
  check(dequant_e4m3_1x128(d_in.p, d_si.p, in.rows, in.cols, d_out.p), "dequantize launch");
  check(cudaDeviceSynchronize(), "dequantize");
  v.parts.push_back(compare_scales("values (fp32 bits)", ref, d_out.to_host(), in.cols));
  return v;
}

std::string to_text(const GpuValidation& v) {
  std::string s = v.op + " [" + std::to_string(v.rows) + ", " + std::to_string(v.cols) + "]";
  if (!v.groups.empty()) s += " groups " + std::to_string(v.groups.size());
  s += " vs " + v.oracle + (v.ok() ? ": bit-exact\n" : ": MISMATCH\n");
  for (const auto& p : v.parts) {
    s += "  " + p.what + ": " + std::to_string(p.compared) + " compared, " + std::to_string(p.mismatches) +
         " mismatches\n";
    if (p.mismatches) s += "    first: " + p.first_mismatch + "\n";
  }
  return s;
}

}  // namespace fp8flow::cuda
