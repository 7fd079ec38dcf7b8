// FP8 e4m3 GEMM through cuBLASLt: D[M,N] = A[M,K] . B[N,K]^T (our emulator's convention, both K-major),
// tensorwise (one fp32 scale_inv per operand) or blockwise scaling (A 1x128 x B 128x128, A 1x128 x B 1x128)
// through cuBLASLt's block-scaling modes (VEC128_32F, BLK128x128_32F; CUDA >= 12.9, Hopper), fast
// accumulation on/off, fp32 or bf16 output. Scales come in our COMPACT layout (src/reference/gemm.hpp) and
// are converted to the layouts cuBLASLt expects (docs/gpu.md "FP8 GEMM").
//
// Mapping: cuBLASLt is column-major, so we ask it for D^T (N x M, column-major = D row-major [M, N]) =
// op(B')^T . A'^T with cuBLAS "A" = our B (transa = T) and cuBLAS "B" = our A (transb = N): the TN form that
// Hopper's FP8 GEMMs require. Hence the cuBLAS A-scale is our B's scale and vice versa.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "reference/gemm.hpp"

namespace fp8flow::cuda {

enum class GemmOutType { f32, bf16 };
enum class GemmScaling {
  tensor,            // scalar fp32 scale_inv per operand
  blk_1x128_128x128, // A (activations) 1x128 (VEC128_32F), B (weights) 128x128 (BLK128x128_32F)
  blk_1x128_1x128,   // both 1x128 (VEC128_32F)
};
std::string to_string(GemmScaling s);
GemmScaling parse_gemm_scaling(const std::string& s);  // "tensor", "1x128_128x128", "1x128_1x128"; InputError
// The scaling a pair of operands asks for (from their granularities); InputError for combinations cuBLASLt
// has no mode for (e.g. 128x128 activations with tensor weights).
GemmScaling scaling_of(const GemmOperand& a, const GemmOperand& b);

struct CublasGemmConfig {
  bool fast_accum = false;           // CUBLASLT_MATMUL_DESC_FAST_ACCUM
  GemmOutType out = GemmOutType::f32;
  bool allow_split_k = false;        // false: take the best heuristic with SPLITK_NUM == 1 (a fixed k order)
  // true: choose the algorithm exactly as torch._scaled_mm does (torch 2.11, aten/src/ATen/cuda/CUDABlas.cpp
  // scaled_gemm): scale modes set explicitly (SCALAR_32F too), preferences = MAX_WORKSPACE_BYTES only (32 MiB on
  // Hopper), cublasLtMatmulAlgoGetHeuristic asked for ONE result, that result run as is (split-K included).
  // allow_split_k is then ignored.
  bool torch_heuristic = false;
  std::size_t workspace_bytes = 32u << 20;
  // Scale-tensor layout variants, for probing the layout on a new cuBLASLt (0 = the layout documented in
  // docs/gpu.md and verified on the H100; others: see scale layouts in gemm_cublaslt.cu).
  int vec128_layout = 0, blk128_layout = 0;
};

struct CublasAlgoInfo {
  int algo_id = -1, tile_id = -1, stages_id = -1, splitk = -1, reduction = -1, swizzle = -1, custom = -1;
  int cluster_id = -1, inner_shape = -1;
  std::size_t workspace = 0;
  float waves = 0;                   // the heuristic's wavesCount
  std::string to_string() const;
};

// A planned GEMM on device pointers: descriptors made and the algorithm chosen once, run many times
// (the benchmark times run() alone). Throws std::runtime_error naming the cublasStatus and the combination
// when cuBLASLt refuses it (no algorithm: CUBLAS_STATUS_NOT_SUPPORTED).
class CublasFp8Gemm {
 public:
  CublasFp8Gemm(std::size_t m, std::size_t n, std::size_t k, GemmScaling scaling, const CublasGemmConfig& cfg);
  // plan_only: choose the algorithm (algo()) without allocating its workspace; run() must not be called.
  // handle: a cuBLASLt handle to use (not destroyed here); null: create one.
  CublasFp8Gemm(std::size_t m, std::size_t n, std::size_t k, GemmScaling scaling, const CublasGemmConfig& cfg,
                void* handle, bool plan_only);
  ~CublasFp8Gemm();
  CublasFp8Gemm(const CublasFp8Gemm&) = delete;
  CublasFp8Gemm& operator=(const CublasFp8Gemm&) = delete;
  // d_a [M,K] codes, d_b [N,K] codes, scales in cuBLASLt layout (see device_scale_layout), d_out [M,N]
  // (float or bf16 bits per cfg.out).
  void run(const std::uint8_t* d_a, const std::uint8_t* d_b, const float* d_sa, const float* d_sb, void* d_out,
           cudaStream_t s = 0);
  const CublasAlgoInfo& algo() const { return info_; }
  std::string describe() const;

 private:
  struct Impl;
  Impl* impl_;
  CublasAlgoInfo info_;
};

// Converts a COMPACT scale_inv (src/reference/gemm.hpp) of an operand with `rows` rows into the layout
// cuBLASLt reads for its granularity (tensor: 1 value; 1x128: VEC128_32F; 128x128: BLK128x128_32F).
std::vector<float> device_scale_layout(std::span<const float> compact, std::size_t rows, std::size_t k,
                                       Granularity g, const CublasGemmConfig& cfg);

struct CublasGemmResult {
  std::vector<float> out;            // [M, N]; bf16 output widened exactly to float
  std::vector<std::uint16_t> bf16;   // raw bf16 bits when cfg.out == bf16
  CublasAlgoInfo algo;
};
// Host in, host out: copies operands to the device, plans, runs once, copies back.
CublasGemmResult gemm_cublaslt(const GemmOperand& a, const GemmOperand& b, const CublasGemmConfig& cfg);

}  // namespace fp8flow::cuda
