// fp8flow gemm / check gemm: an FP8 GEMM operand from .npy files.
#include "cli/gemm_operand_files.hpp"

#include <fmt/format.h>

#include <vector>

#include "cli/usage.hpp"
#include "io/errors.hpp"
#include "quant/granularity.hpp"

namespace fp8flow::cli {

LoadedOperand load_gemm_operand(const std::string& file, const std::string& scale_file, const std::string& gran,
                                const FormatSpec& fmt, const char* name) {
  LoadedOperand l;
  l.codes = io::read_npy(file);
  if (l.codes.dtype != io::DType::u8 || l.codes.shape.size() != 2)
    throw InputError(fmt::format("{}: operand {} must be a 2-D uint8 (or ml_dtypes float8) array of {} codes, got {} {}",
                                 file, name, fmt.name, io::to_string(l.codes.dtype), l.codes.shape_string()));
  l.op.codes = l.codes.view<std::uint8_t>();
  l.op.rows = l.codes.shape[0];
  l.op.k = l.codes.shape[1];
  l.op.format = &fmt;
  l.op.gran = parse_granularity(gran);
  if (scale_file.empty()) {
    if (l.op.gran != kTensor)
      throw UsageError(fmt::format("--granularity-{} {} needs --scale-{} S.npy", name, gran, name));
    l.scales = io::make_npy<float>({1}, std::vector<float>{1.0f});
  } else {
    l.scales = io::read_npy(scale_file);
    if (l.scales.dtype != io::DType::f32)
      throw InputError(fmt::format("{}: scales must be float32 scale_inv values, got {}", scale_file,
                                   io::to_string(l.scales.dtype)));
  }
  l.op.scale_inv = l.scales.view<float>();
  return l;
}

}  // namespace fp8flow::cli
