// Reads the H100 algorithm table (data/gemm_algos_h100/table.csv; docs/gemm.md "Algorithms") into a
// GemmAlgoTable. Lines starting with '#' are comments; the header names the columns; a malformed line throws
// InputError naming the file, the line number and the field.
#pragma once

#include <string>

#include "reference/gemm_algo.hpp"

namespace fp8flow::io {

GemmAlgoTable read_gemm_algo_table(const std::string& path);
// The table shipped with fp8flow: $FP8FLOW_ALGO_TABLE if set, else data/gemm_algos_h100/table.csv under the
// source tree this fp8flow was built from.
std::string default_gemm_algo_table_path();

}  // namespace fp8flow::io
