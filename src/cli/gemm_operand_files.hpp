// One FP8 GEMM operand read from .npy files (codes, and scale_inv for its granularity), as `fp8flow gemm` and
// `fp8flow check gemm` take them.
#pragma once

#include <string>

#include "formats/format_spec.hpp"
#include "io/npy.hpp"
#include "reference/gemm.hpp"

namespace fp8flow::cli {

struct LoadedOperand {
  io::NpyArray codes, scales;  // own the data the GemmOperand views
  GemmOperand op;
};

// `name` is the operand's letter ("a" or "b") as the options spell it (--scale-a, --granularity-a).
// A 2-D uint8 (or ml_dtypes float8) array of `fmt` codes; float32 scales in the COMPACT tile grid of `gran`.
// A missing scale file for a tiled granularity is a usage error (exit 2); bad files are InputError (exit 1).
LoadedOperand load_gemm_operand(const std::string& file, const std::string& scale_file, const std::string& gran,
                                const FormatSpec& fmt, const char* name);

}  // namespace fp8flow::cli
