// GPU kernel vs CPU golden model on the same inputs, compared bit for bit (codes and fp32 scale bits).
// Each comparison reports the count and the first mismatch: coordinate, tile, input (hex), both outputs.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "cuda/quantize_kernels.hpp"
#include "quant/quantize.hpp"
#include "quant/transpose.hpp"

namespace fp8flow::cuda {

struct BitCompare {
  std::string what;               // e.g. "colwise codes"
  std::size_t compared = 0, mismatches = 0;
  std::string first_mismatch;     // "codes[r=3, c=129] tile (0,1) input 0x3F8CCCCD: golden 0x38, gpu 0x39"
};

struct GpuValidation {
  std::string op;                 // "quant_1x128_128x1_e4m3_te_pow2", "sat_e4m3_1x128_paper_kernel", ...
  std::size_t rows = 0, cols = 0;
  std::vector<std::size_t> groups;
  std::string oracle;             // "golden" (scalar loops) or "fast" (the CPU fast path, itself tested = golden)
  std::vector<BitCompare> parts;
  bool ok() const;
  std::size_t mismatches() const;
};

// Quantize x ([rows, cols] fp32; with input == bf16 every value must be a bf16 value, passed to the GPU as
// bf16 bits) with te_pow2 / te_fp32 1x128 rowwise and 128x1 columnwise (column tiles restart per group).
GpuValidation validate_quantize_gpu(std::span<const float> x, std::size_t rows, std::size_t cols, QuantInput input,
                                    TeQuantParams p, const std::vector<std::size_t>& groups);
// Transpose a rowwise 1x128 te_pow2 e4m3 tensor: naive, paper_kernel or exact (RNE).
GpuValidation validate_transpose_gpu(const QuantizedTensor& rowwise, const std::vector<std::size_t>& groups,
                                     TransposeMethod m);
// Dequantize a rowwise 1x128 e4m3 tensor.
GpuValidation validate_dequantize_gpu(const QuantizedTensor& rowwise);

std::string to_text(const GpuValidation& v);

}  // namespace fp8flow::cuda
