// GPU kernel vs CPU golden model on the same inputs, compared bit for bit (codes and fp32 scale bits).
// Each comparison reports the count and the first mismatch: coordinate, tile, input (hex), both outputs.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "cuda/quantize_kernels.hpp"
#include "io/gpu_validation_record.hpp"
#include "quant/quantize.hpp"
#include "quant/transpose.hpp"

namespace fp8flow::cuda {

using io::BitCompare;     // the result structs live in src/io (CPU code: HDF5 records, CPU-side tests)
using io::GpuValidation;

// Which quantize kernel: v1 (tile staged in shared memory) or v2 (tile in registers); both serve 1x128 +
// 128x1 and 128x128 + transposed copy with te_fp32, te_pow2 and paper_swiglu.
enum class QuantKernel { v1, v2 };
struct QuantSpec {
  QuantInput input = QuantInput::f32;
  Granularity tile = k1x128;           // k1x128 (rowwise + 128x1 columnwise) or k128x128 (+ transposed copy)
  ScaleRule rule = ScaleRule::te_pow2; // te_fp32, te_pow2, paper_swiglu
  float eps = 0.0f;                    // te_* amax floor
  QuantKernel kernel = QuantKernel::v2;
  // v1: pass the groups' bounds, so that where the tiles are the 128-row windows each block takes its tile
  // from its index (false: every block loads it from the tile list). Same output either way.
  bool v1_bounds = true;
};
// The op name of a spec, e.g. "quant_128x128_e4m3_paper_swiglu_from_bf16" (v1 adds "_v1").
std::string op_name(const QuantSpec& s);

// Quantize x ([rows, cols] fp32; with input == bf16 every value must be a bf16 value, passed to the GPU as
// bf16 bits) as `spec` says on both sides and compare codes (both outputs) and scales bit for bit.
// Tiles along rows restart per group. Throws std::invalid_argument for a spec the kernels do not serve.
GpuValidation validate_quantize_gpu(std::span<const float> x, std::size_t rows, std::size_t cols,
                                    const QuantSpec& spec, const std::vector<std::size_t>& groups);

// An adversarial tensor (deterministic in seed): per-row magnitudes 2^[-40, 40] with 2^30 of range inside a
// row, zero rows, fp32-subnormal rows and mixed subnormal/normal rows, huge rows (up to FLT_MAX) and tiny rows
// (amax below paper_swiglu's 1e-10 floor), +-NaN, +-Inf, +-0, 448 * 2^j and its fp32 neighbours (power-of-two
// boundaries of both rules). bf16: every value truncated to a bf16 value.
std::vector<float> adversarial_tensor(std::size_t rows, std::size_t cols, std::uint64_t seed, bool bf16);

// Transpose a rowwise 1x128 te_pow2 e4m3 tensor: naive, paper_kernel or exact (RNE).
GpuValidation validate_transpose_gpu(const QuantizedTensor& rowwise, const std::vector<std::size_t>& groups,
                                     TransposeMethod m);
// Dequantize a rowwise 1x128 e4m3 tensor.
GpuValidation validate_dequantize_gpu(const QuantizedTensor& rowwise);

std::string to_text(const GpuValidation& v);

// Programmatic dependent launch across a producer -> consumer chain: `rounds` rounds of quantize v1 (bf16,
// te_pow2, 1x128 + 128x1) into one set of buffers, each followed by the SAT paper_kernel transpose of its
// rowwise output into that round's own output, all launched back to back on one stream with pdl = true
// (each kernel may start before the previous one ends and must wait for it: the SAT for the codes it reads,
// the next quantize for the buffers the SAT still reads). Every round's SAT codes and scales are compared
// byte for byte with the same chain launched without PDL. Inputs: adversarial_tensor(rows, cols, seed + r).
struct PdlChainCheck {
  std::size_t compared = 0;    // bytes
  std::size_t mismatches = 0;  // bytes
  std::size_t first_round = 0; // of the first mismatching byte (valid when mismatches > 0)
};
PdlChainCheck check_pdl_chain(std::size_t rows, std::size_t cols, const std::vector<std::size_t>& groups, int rounds,
                              std::uint64_t seed);

}  // namespace fp8flow::cuda
