// GPU test driver: `fp8flow-gpu-tests NAME`. Exit 0 pass, 1 fail, 77 skipped (no GPU), 2 usage.
#include <fmt/format.h>

#include <cstdio>
#include <string_view>

#include "cuda/format_kernels.hpp"
#include "cuda/format_validation.hpp"
#include "gpu_quant_tests.hpp"

namespace {
using namespace fp8flow::cuda;

int report(const ExhaustiveResult& r) {
  fmt::print("{}: {} checked, {} mismatches, {:.2f} s\n", r.what, r.checked, r.mismatches, r.seconds);
  if (r.mismatches)
    fmt::print("  first mismatching input 0x{:08X}: ours 0x{:X}, hardware 0x{:X}\n", r.first_input, r.ours,
               r.hardware);
  return r.mismatches ? 1 : 0;
}
}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    fmt::print(stderr, "usage: fp8flow-gpu-tests formats_encode_exhaustive|formats_decode|quantize_bitexact|"
               "transpose_bitexact|dequantize_bitexact|gemm_cublaslt|gemm_algo_auto|quantize_v2_bitexact|"
               "quantize_v2_bitexact_small|quantize_swiglu_edges|pdl_chain|ep_dispatch_1gpu|ep_dispatch_2gpu|"
               "moe_fused_bitexact|moe_fused_bitexact_small\n");
    return 2;
  }
  if (device_count() == 0) {
    fmt::print("SKIPPED: no CUDA device visible (this machine has no GPU; GPU tests run on the device machine)\n");
    return 77;
  }
  fmt::print("GPU: {}\n", gpu_name());
  const std::string_view t = argv[1];
  if (t == "formats_encode_exhaustive") return report(check_encode_all_f32_vs_ptx(false)) | report(check_encode_all_f32_vs_ptx(true));
  if (t == "formats_decode") return report(check_decode_all_codes_vs_ptx(false)) | report(check_decode_all_codes_vs_ptx(true));
  if (t == "quantize_bitexact") return fp8flow::gpu_tests::quantize_bitexact();
  if (t == "quantize_v2_bitexact") return fp8flow::gpu_tests::quantize_v2_bitexact(false);
  if (t == "quantize_v2_bitexact_small") return fp8flow::gpu_tests::quantize_v2_bitexact(true);
  if (t == "quantize_swiglu_edges") return fp8flow::gpu_tests::quantize_swiglu_edges();
  if (t == "transpose_bitexact") return fp8flow::gpu_tests::transpose_bitexact();
  if (t == "dequantize_bitexact") return fp8flow::gpu_tests::dequantize_bitexact();
  if (t == "pdl_chain") return fp8flow::gpu_tests::pdl_chain();
  if (t == "gemm_cublaslt") return fp8flow::gpu_tests::gemm_cublaslt();
  if (t == "gemm_algo_auto") return fp8flow::gpu_tests::gemm_algo_auto();
  if (t == "ep_dispatch_1gpu") return fp8flow::gpu_tests::ep_dispatch(1);
  if (t == "ep_dispatch_2gpu") return fp8flow::gpu_tests::ep_dispatch(2);
  if (t == "moe_fused_bitexact") return fp8flow::gpu_tests::moe_fused_bitexact(false);
  if (t == "moe_fused_bitexact_small") return fp8flow::gpu_tests::moe_fused_bitexact(true);
  fmt::print(stderr, "unknown test '{}'\n", t);
  return 2;
}
