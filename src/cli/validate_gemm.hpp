// `fp8flow validate --gpu --op gemm` (validate_gemm.cpp): cuBLASLt FP8 GEMMs vs the fitted CPU model.
#pragma once

#include <cstdint>
#include <string>

namespace fp8flow::cli {
// shape "M,N,K" (or "" for 512,512,4096); accum "auto" (h100 / h100_fast matched to fast accumulation),
// h100 or h100_fast (only that mode), or any other model (both modes against it). output: an HDF5 results
// store to append the results to as a gpu_validation run (io::gemm_validation_record; "" = none). Returns
// the exit status: 1 on an error-bound violation, a cuBLASLt error or (against h100 / h100_fast) any bit
// mismatch, else 0. algo "auto": cuBLASLt chooses its algorithm as torch._scaled_mm does (split-K included) and
// the model runs the algorithm of the H100 table (algo_table, "" = the shipped one); "none": split-K forced off
// on the GPU, the model unsplit.
int run_validate_gemm(const std::string& shape, const std::string& dist, std::uint64_t seed, const std::string& accum,
                      bool json, int threads, const std::string& output = "", const std::string& algo = "auto",
                      const std::string& algo_table = "");
}  // namespace fp8flow::cli
