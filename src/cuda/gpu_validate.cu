// GPU kernels against the CPU model, bit for bit (see gpu_validate.hpp). Host code only: it runs the kernels
// of quantize_kernels.cu / sat_kernels.cu on copies of the inputs and compares with src/quant.
#include <cuda_runtime.h>

#include <bit>
#include <chrono>
#include <cmath>
#include <limits>
#include <random>
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

// Milliseconds of one launch after a warm-up one (CUDA events).
template <class F>
double time_ms(F launch) {
  cudaEvent_t a, b;
  check(cudaEventCreate(&a), "event");
  check(cudaEventCreate(&b), "event");
  check(launch(), "warm-up launch");
  check(cudaEventRecord(a), "event record");
  check(launch(), "timed launch");
  check(cudaEventRecord(b), "event record");
  check(cudaEventSynchronize(b), "event sync");
  float ms = 0;
  check(cudaEventElapsedTime(&ms, a, b), "event elapsed");
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  return double(ms);
}

constexpr std::size_t kGoldenLimit = std::size_t(1) << 22;  // above: the CPU fast path (tested = golden)

}  // namespace

std::string op_name(const QuantSpec& s) {
  return std::string("quant_") + (s.tile == k128x128 ? "128x128" : "1x128_128x1") + "_e4m3_" +
         std::string(to_string(s.rule)) + (s.input == QuantInput::bf16 ? "_from_bf16" : "_from_f32") +
         (s.kernel == QuantKernel::v1 ? "_v1" : "");
}

GpuValidation validate_quantize_gpu(std::span<const float> x, std::size_t rows, std::size_t cols,
                                    const QuantSpec& spec, const std::vector<std::size_t>& groups) {
  const bool block = spec.tile == k128x128;
  if (!block && spec.tile != k1x128)
    throw std::invalid_argument("validate_quantize_gpu: granularity " + to_string(spec.tile) +
                                " has no GPU kernel (1x128 or 128x128)");
  if (spec.rule != ScaleRule::te_fp32 && spec.rule != ScaleRule::te_pow2 && spec.rule != ScaleRule::paper_swiglu)
    throw std::invalid_argument("validate_quantize_gpu: rule " + std::string(to_string(spec.rule)) +
                                " has no GPU kernel (te_fp32, te_pow2, paper_swiglu)");
  if (x.size() != rows * cols) throw std::invalid_argument("validate_quantize_gpu: size does not match the shape");
  GpuValidation v;
  v.op = op_name(spec);
  v.rows = rows;
  v.cols = cols;
  v.groups = groups;
  QuantParams qp = default_params(spec.rule);
  qp.eps = spec.rule == ScaleRule::paper_swiglu ? 0.0f : spec.eps;
  qp.input = spec.input == QuantInput::bf16 ? InputDtype::bf16 : InputDtype::f32;
  const std::vector<std::size_t> g = or_whole(groups, rows);
  const bool golden_ok = rows * cols <= kGoldenLimit;
  const QuantRecipe ra{block ? k128x128 : k1x128, &e4m3, spec.rule}, rb{k128x1, &e4m3, spec.rule};
  v.oracle = golden_ok || !fast::supports(ra, qp, g) ? "golden" : "fast";
  const auto t0 = std::chrono::steady_clock::now();
  const auto cpu_q = [&](const QuantRecipe& r) {
    return golden_ok ? golden::quantize(x, rows, cols, r, qp, g) : quantize(x, rows, cols, r, qp, g);
  };
  const QuantizedTensor a_ref = cpu_q(ra);
  // 1x128: the columnwise 128x1 quantization; 128x128: the same codes, stored transposed.
  const QuantizedTensor b_ref = with_codes_transposed(block ? a_ref : cpu_q(rb), true);
  v.cpu_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();

  const std::vector<RowTile> tiles = make_row_tiles(rows, groups);
  const GroupBounds bounds = group_bounds(rows, groups);
  const std::size_t scols = (cols + 127) / 128;
  DeviceArray<RowTile> d_tiles(tiles);
  DeviceArray<std::uint8_t> ac(rows * cols), bc(rows * cols);
  DeviceArray<float> as(block ? tiles.size() * scols : rows * scols), bs(block ? 1 : tiles.size() * cols);
  std::vector<std::uint16_t> h16;
  if (spec.input == QuantInput::bf16) {
    h16.resize(x.size());
    for (std::size_t i = 0; i < x.size(); ++i) {
      const std::uint32_t b = std::bit_cast<std::uint32_t>(x[i]);
      if (b & 0xFFFFu) throw std::invalid_argument("validate_quantize_gpu: bf16 input holds a non-bf16 value");
      h16[i] = std::uint16_t(b >> 16);
    }
  }
  DeviceArray<std::uint16_t> dx16(h16);
  DeviceArray<float> dx32(spec.input == QuantInput::bf16 ? std::vector<float>{} : std::vector<float>(x.begin(), x.end()));
  const void* dx = spec.input == QuantInput::bf16 ? static_cast<const void*>(dx16.p) : static_cast<const void*>(dx32.p);
  const QuantRule r = spec.rule == ScaleRule::te_fp32   ? QuantRule::te_fp32
                      : spec.rule == ScaleRule::te_pow2 ? QuantRule::te_pow2
                                                        : QuantRule::paper_swiglu;
  const auto launch = [&]() -> cudaError_t {
    if (spec.kernel == QuantKernel::v1)
      return quant_e4m3_v1(dx, spec.input, rows, cols, d_tiles.p, tiles.size(),
                           block ? QuantGranularity::g128x128 : QuantGranularity::g1x128, QuantV2Params{r, spec.eps},
                           ac.p, as.p, bc.p, block ? nullptr : bs.p, 0, false, spec.v1_bounds ? &bounds : nullptr);
    return quant_e4m3_v2(dx, spec.input, rows, cols, d_tiles.p, tiles.size(),
                         block ? QuantGranularity::g128x128 : QuantGranularity::g1x128, QuantV2Params{r, spec.eps}, ac.p,
                         as.p, bc.p, block ? nullptr : bs.p);
  };
  // First launch writes the compared outputs (over the 0xA5 poison); a second, timed launch follows.
  check(launch(), "quantize launch");
  check(cudaDeviceSynchronize(), "quantize");
  const std::vector<std::uint8_t> a_gpu = ac.to_host(), b_gpu = bc.to_host();
  const std::vector<float> as_gpu = as.to_host(), bs_gpu = bs.to_host();
  v.gpu_ms = time_ms(launch);

  const auto in_hex = [&](std::size_t r, std::size_t c) { return hex(std::bit_cast<std::uint32_t>(x[r * cols + c]), 8); };
  const auto same = [](std::size_t o, std::size_t i) { return std::pair{o, i}; };
  const auto swapped = [](std::size_t o, std::size_t i) { return std::pair{i, o}; };
  if (block) {
    v.parts.push_back(compare_codes("block codes", a_ref.codes, a_gpu, cols, same, in_hex, 128, 128, &tiles));
    v.parts.push_back(compare_scales("block scale_inv", a_ref.scale_inv, as_gpu, a_ref.scale_cols));
    v.parts.push_back(compare_codes("transposed codes", b_ref.codes, b_gpu, rows, swapped, in_hex, 128, 128, &tiles));
  } else {
    v.parts.push_back(compare_codes("rowwise codes", a_ref.codes, a_gpu, cols, same, in_hex, 1, 128, nullptr));
    v.parts.push_back(compare_scales("rowwise scale_inv", a_ref.scale_inv, as_gpu, a_ref.scale_cols));
    v.parts.push_back(compare_codes("colwise codes", b_ref.codes, b_gpu, rows, swapped, in_hex, 128, 1, &tiles));
    v.parts.push_back(compare_scales("colwise scale_inv", b_ref.scale_inv, bs_gpu, b_ref.scale_cols));
  }
  return v;
}

std::vector<float> adversarial_tensor(std::size_t rows, std::size_t cols, std::uint64_t seed, bool bf16) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  const double inf = std::numeric_limits<double>::infinity(), nan = std::numeric_limits<double>::quiet_NaN();
  const double rel_ulp = bf16 ? std::ldexp(1.0, -7) : std::ldexp(1.0, -23);  // one ulp of 448 * 2^j, relative
  std::vector<float> x(rows * cols);
  for (std::size_t r = 0; r < rows; ++r) {
    const int row_exp = int(u(rng) * 80) - 40;
    const int kind = int(u(rng) * 24);
    for (std::size_t c = 0; c < cols; ++c) {
      const double sgn = u(rng) < 0.5 ? -1.0 : 1.0;
      double v = sgn * u(rng) * std::ldexp(1.0, row_exp - int(u(rng) * u(rng) * 31));
      switch (kind) {
        case 0: v = 0.0; break;                                                    // a zero row
        case 1: v = sgn * std::ldexp(double(1 + (rng() & 0x7FFFFF)), -149); break;  // fp32 subnormals only
        case 2: v = sgn * std::ldexp(double(1 + (rng() & 0xFFFFFF)), -150 + int(rng() % 8)); break;  // sub/normal
        case 3: v = sgn * std::ldexp(1.0 + u(rng), 100 + int(rng() % 28)); break;    // huge (up to 2^128)
        case 4: v = sgn * u(rng) * 1e-11; break;                                     // amax under 1e-10
        case 5: {                                                                     // 448 * 2^j boundaries
          const int j = row_exp / 2 + int(rng() % 5) - 2;
          v = sgn * 448.0 * std::ldexp(1.0, j) * (1.0 + rel_ulp * double(int(rng() % 3) - 1));
          break;
        }
        case 6: v = (rng() & 1) ? nan : -nan; break;                                 // a NaN row
        default: break;
      }
      const double pick = u(rng);
      if (pick < 0.001) v = nan;
      else if (pick < 0.002) v = -nan;
      else if (pick < 0.003) v = -inf;
      else if (pick < 0.004) v = inf;
      else if (pick < 0.006) v = (pick < 0.005 ? -0.0 : 0.0);
      else if (pick < 0.008) v = sgn * 448.0 * std::ldexp(1.0, row_exp) * (1.0 + rel_ulp * double(int(rng() % 3) - 1));
      else if (pick < 0.0085) v = 3.0e38;                                            // te: scale overflows
      else if (pick < 0.009) v = sgn * double(std::numeric_limits<float>::max());
      float f = float(v);  // huge values above FLT_MAX become Inf, as intended
      std::uint32_t bits = std::bit_cast<std::uint32_t>(f);
      if (bf16) bits &= 0xFFFF0000u;  // truncate to a bf16 value (NaN payloads sit in the high half)
      x[r * cols + c] = std::bit_cast<float>(bits);
    }
  }
  return x;
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
  const GroupBounds bounds = group_bounds(rows, groups);
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
                                   d_osi.p, 0, false, &bounds),
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

PdlChainCheck check_pdl_chain(std::size_t rows, std::size_t cols, const std::vector<std::size_t>& groups, int rounds,
                              std::uint64_t seed) {
  const std::vector<RowTile> tiles = make_row_tiles(rows, groups);
  const GroupBounds bounds = group_bounds(rows, groups);
  const std::size_t n = rows * cols, scols = (cols + kSatTile - 1) / kSatTile, nt = tiles.size();
  const auto R = std::size_t(rounds);
  std::vector<std::uint16_t> xs(R * n);
  for (std::size_t r = 0; r < R; ++r) {
    const std::vector<float> x = adversarial_tensor(rows, cols, seed + r, true);
    for (std::size_t i = 0; i < n; ++i) xs[r * n + i] = std::uint16_t(std::bit_cast<std::uint32_t>(x[i]) >> 16);
  }
  DeviceArray<std::uint16_t> d_x(xs);
  DeviceArray<RowTile> d_tiles(tiles);
  DeviceArray<std::uint8_t> rc(n), cc(n), out(R * n);
  DeviceArray<float> rs(rows * scols), cs(nt * cols), osi(R * nt * cols);
  cudaStream_t st = nullptr;
  check(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking), "cudaStreamCreate");
  const auto chain = [&](bool pdl) {
    check(cudaMemsetAsync(out.p, 0xA5, out.n, st), "poison");
    check(cudaMemsetAsync(osi.p, 0xA5, osi.n * sizeof(float), st), "poison");
    for (std::size_t r = 0; r < R; ++r) {
      check(quant_e4m3_1x128_128x1_te(d_x.p + r * n, QuantInput::bf16, rows, cols, d_tiles.p, nt,
                                      TeQuantParams{true, 0.0f}, rc.p, rs.p, cc.p, cs.p, st, pdl, &bounds),
            "quantize launch");
      check(sat_transpose_e4m3_1x128(rc.p, rs.p, rows, cols, d_tiles.p, nt, SatMode::paper_kernel, out.p + r * n,
                                     osi.p + r * nt * cols, st, pdl, &bounds),
            "SAT launch");
    }
    check(cudaStreamSynchronize(st), "chain");
    std::vector<std::uint8_t> bytes = out.to_host();
    const std::vector<float> s = osi.to_host();
    const auto* sb = reinterpret_cast<const std::uint8_t*>(s.data());
    bytes.insert(bytes.end(), sb, sb + s.size() * sizeof(float));
    return bytes;
  };
  const std::vector<std::uint8_t> with = chain(true), without = chain(false);
  cudaStreamDestroy(st);
  PdlChainCheck c;
  c.compared = with.size();
  for (std::size_t i = 0; i < with.size(); ++i) {
    if (with[i] == without[i]) continue;
    if (c.mismatches++ == 0) c.first_round = i < R * n ? i / n : (i - R * n) / (nt * cols * sizeof(float));
  }
  return c;
}

std::string to_text(const GpuValidation& v) {
  std::string s = v.op + " [" + std::to_string(v.rows) + ", " + std::to_string(v.cols) + "]";
  if (!v.groups.empty()) s += " groups " + std::to_string(v.groups.size());
  if (!v.input.empty()) s += " on " + v.input;
  s += " vs " + v.oracle + (v.ok() ? ": bit-exact" : ": MISMATCH");
  if (v.gpu_ms >= 0) {
    char b[64];
    std::snprintf(b, sizeof b, " (gpu %.3f ms, cpu %.1f ms)", v.gpu_ms, v.cpu_ms);
    s += b;
  }
  s += "\n";
  for (const auto& p : v.parts) {
    s += "  " + p.what + ": " + std::to_string(p.compared) + " compared, " + std::to_string(p.mismatches) +
         " mismatches\n";
    if (p.mismatches) s += "    first: " + p.first_mismatch + "\n";
  }
  return s;
}

}  // namespace fp8flow::cuda
