// Files of the quantization commands. A quantized tensor under PREFIX is three files:
//   PREFIX.codes.npy      uint8, [rows, cols] (or [cols, rows] for a column copy: codes_layout "transposed")
//   PREFIX.scale_inv.npy  float32 COMPACT grid [row tiles, col tiles] (uint8 UE8M0 codes with scale_format ue8m0)
//   PREFIX.meta.json      format, granularity, rule, recipe, shape, scale_format, overflow, eps, row_groups,
//                         codes_layout, origin
// Everything is validated before anything is written; each file is written atomically.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "io/npy.hpp"
#include "quant/quantize.hpp"

namespace fp8flow {

// A 2-D high-precision input: float32 values to quantize and the exact (float64) values they came from.
struct InputTensor {
  std::size_t rows = 0, cols = 0;
  std::vector<float> x;        // what the quantizer reads (float64 inputs rounded to nearest float32)
  std::vector<double> truth;   // the file's values exactly
  InputDtype dtype = InputDtype::f32;
  std::string dtype_name;
  std::size_t nan = 0, inf = 0;
};
// Reads a 2-D float16/float32/float64 .npy; throws InputError naming the file for anything else.
// A 2-D tensor of values: float16/32/64, bfloat16 (ml_dtypes' '<V2' arrays), or raw codes decoded exactly with
// `from` (uint16 bf16/f16 codes; uint8 or ml_dtypes float8 codes of an 8-bit format). Throws InputError naming
// the file, its dtype and what was expected (e.g. "say which format with --from").
InputTensor read_input_npy(const std::filesystem::path& file, const FormatSpec* from = nullptr);

std::filesystem::path codes_path(const std::filesystem::path& prefix);
std::filesystem::path scales_path(const std::filesystem::path& prefix);
std::filesystem::path meta_path(const std::filesystem::path& prefix);

void save_quantized(const std::filesystem::path& prefix, const QuantizedTensor& q);
QuantizedTensor load_quantized(const std::filesystem::path& prefix);

// "1,2,3" -> {1, 2, 3}; throws InputError naming `what`.
std::vector<std::size_t> parse_size_list(const std::string& s, const std::string& what);

}  // namespace fp8flow
