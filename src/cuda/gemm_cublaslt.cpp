#include "cuda/gemm_cublaslt.hpp"

#include <cublasLt.h>
#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>

#include "io/errors.hpp"

namespace fp8flow::cuda {

namespace {

void lt_check(cublasStatus_t st, const char* what, const std::string& combo) {
  if (st != CUBLAS_STATUS_SUCCESS)
    throw std::runtime_error(fmt::format("cuBLASLt {} failed: {} ({}) for {}", what, cublasLtGetStatusName(st),
                                         cublasLtGetStatusString(st), combo));
}
void cu_check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(fmt::format("CUDA {} failed: {}", what, cudaGetErrorString(e)));
}

cublasLtMatmulMatrixScale_t mode_of(Granularity g) {
  if (g.rows == 0 && g.cols == 0) return CUBLASLT_MATMUL_MATRIX_SCALE_SCALAR_32F;
  if (g.rows == 1 && g.cols == 128) return CUBLASLT_MATMUL_MATRIX_SCALE_VEC128_32F;
  return CUBLASLT_MATMUL_MATRIX_SCALE_BLK128x128_32F;
}

Granularity gran_a(GemmScaling s) { return s == GemmScaling::tensor ? kTensor : k1x128; }
Granularity gran_b(GemmScaling s) {
  return s == GemmScaling::tensor ? kTensor : s == GemmScaling::blk_1x128_128x128 ? k128x128 : k1x128;
}

}  // namespace

std::string to_string(GemmScaling s) {
  switch (s) {
    case GemmScaling::tensor: return "tensor";
    case GemmScaling::blk_1x128_128x128: return "1x128_128x128";
    case GemmScaling::blk_1x128_1x128: return "1x128_1x128";
  }
  return "?";
}

GemmScaling parse_gemm_scaling(const std::string& s) {
  for (auto v : {GemmScaling::tensor, GemmScaling::blk_1x128_128x128, GemmScaling::blk_1x128_1x128})
    if (to_string(v) == s) return v;
  throw InputError(fmt::format("GEMM scaling '{}': expected tensor, 1x128_128x128 or 1x128_1x128", s));
}

GemmScaling scaling_of(const GemmOperand& a, const GemmOperand& b) {
  auto is = [](Granularity g, Granularity h) { return g.rows == h.rows && g.cols == h.cols; };
  if (is(a.gran, kTensor) && is(b.gran, kTensor)) return GemmScaling::tensor;
  if (is(a.gran, k1x128) && is(b.gran, k128x128)) return GemmScaling::blk_1x128_128x128;
  if (is(a.gran, k1x128) && is(b.gran, k1x128)) return GemmScaling::blk_1x128_1x128;
  throw InputError(fmt::format("cuBLASLt FP8 GEMM: no scaling mode for A {} x B {} (supported: tensor x tensor, "
                               "1x128 x 128x128, 1x128 x 1x128)", fp8flow::to_string(a.gran),
                               fp8flow::to_string(b.gran)));
}

std::string CublasAlgoInfo::to_string() const {
  return fmt::format("algo {} tile {} stages {} splitK {} reduction {} swizzle {} custom {} cluster {} ws {}",
                     algo_id, tile_id, stages_id, splitk, reduction, swizzle, custom, cluster_id, workspace);
  // (inner_shape and waves are recorded separately by the algorithm probes; this string stays as recorded.)
}

// Scale layouts (rows = the operand's rows: M for A, N for B; KB = ceil(K/128)):
//  VEC128_32F   layout 0: s[kb * rows + r]  (rows contiguous, "outer-dim-major", as torch._scaled_mm passes it)
//               layout 1: s[r * KB + kb]    (our COMPACT layout unchanged)
//  BLK128x128   layout 0: s[rb * L4 + kb], L4 = KB rounded up to a multiple of 4 (16-byte aligned rows)
//               layout 1: s[rb * KB + kb]   (COMPACT unchanged)
//               layout 2: s[kb * RB + rb]
std::vector<float> device_scale_layout(std::span<const float> c, std::size_t rows, std::size_t k, Granularity g,
                                       const CublasGemmConfig& cfg) {
  const std::size_t kb_n = (k + 127) / 128;
  if (g.rows == 0 && g.cols == 0) return {c.begin(), c.end()};
  if (g.rows == 1 && g.cols == 128) {
    if (c.size() != rows * kb_n) throw InputError("device_scale_layout: 1x128 scale count");
    if (cfg.vec128_layout == 1) return {c.begin(), c.end()};
    std::vector<float> s(rows * kb_n);
    for (std::size_t r = 0; r < rows; ++r)
      for (std::size_t kb = 0; kb < kb_n; ++kb) s[kb * rows + r] = c[r * kb_n + kb];
    return s;
  }
  const std::size_t rb_n = (rows + 127) / 128;
  if (c.size() != rb_n * kb_n) throw InputError("device_scale_layout: 128x128 scale count");
  if (cfg.blk128_layout == 1) return {c.begin(), c.end()};
  if (cfg.blk128_layout == 2) {
    std::vector<float> s(rb_n * kb_n);
    for (std::size_t rb = 0; rb < rb_n; ++rb)
      for (std::size_t kb = 0; kb < kb_n; ++kb) s[kb * rb_n + rb] = c[rb * kb_n + kb];
    return s;
  }
  const std::size_t l4 = (kb_n + 3) / 4 * 4;
  std::vector<float> s(rb_n * l4, 0.0f);
  for (std::size_t rb = 0; rb < rb_n; ++rb)
    for (std::size_t kb = 0; kb < kb_n; ++kb) s[rb * l4 + kb] = c[rb * kb_n + kb];
  return s;
}

struct CublasFp8Gemm::Impl {
  cublasLtHandle_t h = nullptr;
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t la = nullptr, lb = nullptr, lc = nullptr, ld = nullptr;
  cublasLtMatmulAlgo_t algo{};
  void* ws = nullptr;
  std::size_t ws_bytes = 0;
  std::string combo;
  cublasLtMatmulDescAttributes_t sa_ptr_attr = CUBLASLT_MATMUL_DESC_A_SCALE_POINTER;
  bool own_handle = true;
};

CublasFp8Gemm::CublasFp8Gemm(std::size_t m, std::size_t n, std::size_t k, GemmScaling scaling,
                             const CublasGemmConfig& cfg)
    : CublasFp8Gemm(m, n, k, scaling, cfg, nullptr, false) {}

CublasFp8Gemm::CublasFp8Gemm(std::size_t m, std::size_t n, std::size_t k, GemmScaling scaling,
                             const CublasGemmConfig& cfg, void* handle, bool plan_only)
    : impl_(new Impl) {
  auto& I = *impl_;
  I.combo = fmt::format("e4m3 GEMM M={} N={} K={} scaling {} fast_accum {} out {}", m, n, k, to_string(scaling),
                        cfg.fast_accum ? 1 : 0, cfg.out == GemmOutType::f32 ? "f32" : "bf16");
  try {
    if (k % 16 != 0)
      throw InputError(fmt::format("cuBLASLt FP8 GEMM needs K a multiple of 16 (16-byte aligned rows): K = {}", k));
    if (handle) {
      I.h = static_cast<cublasLtHandle_t>(handle);
      I.own_handle = false;
    } else {
      lt_check(cublasLtCreate(&I.h), "cublasLtCreate", I.combo);
    }
    lt_check(cublasLtMatmulDescCreate(&I.op, CUBLAS_COMPUTE_32F, CUDA_R_32F), "MatmulDescCreate", I.combo);
    const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    lt_check(cublasLtMatmulDescSetAttribute(I.op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta), "TRANSA", I.combo);
    lt_check(cublasLtMatmulDescSetAttribute(I.op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb), "TRANSB", I.combo);
    const std::int8_t fa = cfg.fast_accum ? 1 : 0;
    lt_check(cublasLtMatmulDescSetAttribute(I.op, CUBLASLT_MATMUL_DESC_FAST_ACCUM, &fa, sizeof fa), "FAST_ACCUM",
             I.combo);
    // cuBLAS A = our B, cuBLAS B = our A.
    const std::int32_t mode_a = mode_of(gran_b(scaling)), mode_b = mode_of(gran_a(scaling));
    if (scaling != GemmScaling::tensor || cfg.torch_heuristic) {
      lt_check(cublasLtMatmulDescSetAttribute(I.op, CUBLASLT_MATMUL_DESC_A_SCALE_MODE, &mode_a, sizeof mode_a),
               "A_SCALE_MODE", I.combo);
      lt_check(cublasLtMatmulDescSetAttribute(I.op, CUBLASLT_MATMUL_DESC_B_SCALE_MODE, &mode_b, sizeof mode_b),
               "B_SCALE_MODE", I.combo);
    }
    // Dummy non-null scale pointers for the heuristic query; run() sets the real ones.
    const void* dummy = reinterpret_cast<const void*>(std::uintptr_t(256));
    lt_check(cublasLtMatmulDescSetAttribute(I.op, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &dummy, sizeof dummy),
             "A_SCALE_POINTER", I.combo);
    lt_check(cublasLtMatmulDescSetAttribute(I.op, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &dummy, sizeof dummy),
             "B_SCALE_POINTER", I.combo);
    const cudaDataType_t dt = cfg.out == GemmOutType::f32 ? CUDA_R_32F : CUDA_R_16BF;
    lt_check(cublasLtMatrixLayoutCreate(&I.la, CUDA_R_8F_E4M3, k, n, k), "layout A", I.combo);
    lt_check(cublasLtMatrixLayoutCreate(&I.lb, CUDA_R_8F_E4M3, k, m, k), "layout B", I.combo);
    lt_check(cublasLtMatrixLayoutCreate(&I.lc, dt, n, m, n), "layout C", I.combo);
    lt_check(cublasLtMatrixLayoutCreate(&I.ld, dt, n, m, n), "layout D", I.combo);
    cublasLtMatmulPreference_t pref = nullptr;
    lt_check(cublasLtMatmulPreferenceCreate(&pref), "PreferenceCreate", I.combo);
    I.ws_bytes = cfg.workspace_bytes;
    lt_check(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &I.ws_bytes,
                                                  sizeof I.ws_bytes), "PREF_MAX_WORKSPACE_BYTES", I.combo);
    cublasLtMatmulHeuristicResult_t res[32] = {};
    int got = 0;
    const cublasStatus_t hs = cublasLtMatmulAlgoGetHeuristic(I.h, I.op, I.la, I.lb, I.lc, I.ld, pref,
                                                             cfg.torch_heuristic ? 1 : 32, res, &got);
    cublasLtMatmulPreferenceDestroy(pref);
    const char* blk_fast = "AlgoGetHeuristic (cuBLASLt 13 on sm_90 has no fast-accumulation kernel for block "
                           "scaling: blockwise GEMMs always promote per 128-block; use fast_accum = 0)";
    const bool is_blk_fast = scaling != GemmScaling::tensor && cfg.fast_accum;
    lt_check(hs, is_blk_fast ? blk_fast : "AlgoGetHeuristic", I.combo);
    if (got == 0) lt_check(CUBLAS_STATUS_NOT_SUPPORTED, is_blk_fast ? blk_fast : "AlgoGetHeuristic (no algorithm)",
                           I.combo);
    int pick = -1;
    for (int i = 0; i < got && pick < 0; ++i) {
      std::uint32_t sk = 1;
      std::size_t w = 0;
      cublasLtMatmulAlgoConfigGetAttribute(&res[i].algo, CUBLASLT_ALGO_CONFIG_SPLITK_NUM, &sk, sizeof sk, &w);
      if (res[i].state == CUBLAS_STATUS_SUCCESS && (cfg.allow_split_k || cfg.torch_heuristic || sk <= 1)) pick = i;
    }
    cublasLtMatmulAlgo_t forced{};
    std::size_t forced_ws = 0;
    if (pick < 0) {
      // Small M, N with long K: the heuristic offers only split-K algorithms (seen on the H100 for M, N <= 64
      // and K >= 7168). Take the best one with SPLITK_NUM forced to 1 and no reduction, if cuBLASLt accepts it.
      for (int i = 0; i < got && pick < 0; ++i) {
        if (res[i].state != CUBLAS_STATUS_SUCCESS) continue;
        cublasLtMatmulAlgo_t a = res[i].algo;
        const std::uint32_t one = 1, none = CUBLASLT_REDUCTION_SCHEME_NONE;
        cublasLtMatmulHeuristicResult_t chk{};
        if (cublasLtMatmulAlgoConfigSetAttribute(&a, CUBLASLT_ALGO_CONFIG_SPLITK_NUM, &one, sizeof one) ==
                CUBLAS_STATUS_SUCCESS &&
            cublasLtMatmulAlgoConfigSetAttribute(&a, CUBLASLT_ALGO_CONFIG_REDUCTION_SCHEME, &none, sizeof none) ==
                CUBLAS_STATUS_SUCCESS &&
            cublasLtMatmulAlgoCheck(I.h, I.op, I.la, I.lb, I.lc, I.ld, &a, &chk) == CUBLAS_STATUS_SUCCESS &&
            chk.workspaceSize <= I.ws_bytes) {
          forced = a;
          forced_ws = chk.workspaceSize;
          pick = i;
        }
      }
      if (pick < 0)
        lt_check(CUBLAS_STATUS_NOT_SUPPORTED, "AlgoGetHeuristic (no algorithm without split-K, none accepts "
                 "SPLITK_NUM = 1)", I.combo);
      res[pick].algo = forced;
      res[pick].workspaceSize = forced_ws;
    }
    I.algo = res[pick].algo;
    auto get = [&](cublasLtMatmulAlgoConfigAttributes_t a) {
      std::uint32_t v = 0;  // every attribute read here fits 32 bits (ID is int32, others uint32/uint16)
      std::size_t w = 0;
      if (cublasLtMatmulAlgoConfigGetAttribute(&I.algo, a, &v, sizeof v, &w) != CUBLAS_STATUS_SUCCESS) return -1;
      if (w == 2) v &= 0xFFFFu;
      return int(v);
    };
    info_.algo_id = get(CUBLASLT_ALGO_CONFIG_ID);
    info_.tile_id = get(CUBLASLT_ALGO_CONFIG_TILE_ID);
    info_.stages_id = get(CUBLASLT_ALGO_CONFIG_STAGES_ID);
    info_.splitk = get(CUBLASLT_ALGO_CONFIG_SPLITK_NUM);
    info_.reduction = get(CUBLASLT_ALGO_CONFIG_REDUCTION_SCHEME);
    info_.swizzle = get(CUBLASLT_ALGO_CONFIG_CTA_SWIZZLING);
    info_.custom = get(CUBLASLT_ALGO_CONFIG_CUSTOM_OPTION);
    info_.cluster_id = get(CUBLASLT_ALGO_CONFIG_CLUSTER_SHAPE_ID);
    info_.inner_shape = get(CUBLASLT_ALGO_CONFIG_INNER_SHAPE_ID);
    info_.waves = res[pick].wavesCount;
    info_.workspace = res[pick].workspaceSize;
    if (info_.workspace > 0 && !plan_only) cu_check(cudaMalloc(&I.ws, info_.workspace), "cudaMalloc(workspace)");
  } catch (...) {
    this->~CublasFp8Gemm();
    throw;
  }
}

CublasFp8Gemm::~CublasFp8Gemm() {
  if (!impl_) return;
  auto& I = *impl_;
  if (I.ws) cudaFree(I.ws);
  if (I.ld) cublasLtMatrixLayoutDestroy(I.ld);
  if (I.lc) cublasLtMatrixLayoutDestroy(I.lc);
  if (I.lb) cublasLtMatrixLayoutDestroy(I.lb);
  if (I.la) cublasLtMatrixLayoutDestroy(I.la);
  if (I.op) cublasLtMatmulDescDestroy(I.op);
  if (I.h && I.own_handle) cublasLtDestroy(I.h);
  delete impl_;
  impl_ = nullptr;
}

std::string CublasFp8Gemm::describe() const { return impl_->combo + "; " + info_.to_string(); }

void CublasFp8Gemm::run(const std::uint8_t* d_a, const std::uint8_t* d_b, const float* d_sa, const float* d_sb,
                        void* d_out, cudaStream_t s) {
  auto& I = *impl_;
  // cuBLAS A = our B: its scale is our B's.
  lt_check(cublasLtMatmulDescSetAttribute(I.op, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &d_sb, sizeof d_sb),
           "A_SCALE_POINTER", I.combo);
  lt_check(cublasLtMatmulDescSetAttribute(I.op, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &d_sa, sizeof d_sa),
           "B_SCALE_POINTER", I.combo);
  const float alpha = 1.0f, beta = 0.0f;
  lt_check(cublasLtMatmul(I.h, I.op, &alpha, d_b, I.la, d_a, I.lb, &beta, d_out, I.lc, d_out, I.ld, &I.algo, I.ws,
                          info_.workspace, s),
           "Matmul", I.combo);
}

CublasGemmResult gemm_cublaslt(const GemmOperand& a, const GemmOperand& b, const CublasGemmConfig& cfg) {
  check_gemm_operands(a, b);
  if (a.format->name != e4m3.name || b.format->name != e4m3.name)
    throw InputError(fmt::format("cuBLASLt FP8 GEMM: operands must be e4m3 (A {}, B {})", a.format->name,
                                 b.format->name));
  const GemmScaling sc = scaling_of(a, b);
  const std::size_t M = a.rows, N = b.rows, K = a.k;
  CublasFp8Gemm g(M, N, K, sc, cfg);
  const auto sa = device_scale_layout(a.scale_inv, M, K, a.gran, cfg);
  const auto sb = device_scale_layout(b.scale_inv, N, K, b.gran, cfg);
  const std::size_t osz = cfg.out == GemmOutType::f32 ? 4 : 2;
  std::uint8_t *da = nullptr, *db = nullptr;
  float *dsa = nullptr, *dsb = nullptr;
  void* dout = nullptr;
  CublasGemmResult r;
  try {
    cu_check(cudaMalloc(&da, M * K), "cudaMalloc(A)");
    cu_check(cudaMalloc(&db, N * K), "cudaMalloc(B)");
    cu_check(cudaMalloc(&dsa, sa.size() * 4), "cudaMalloc(scale A)");
    cu_check(cudaMalloc(&dsb, sb.size() * 4), "cudaMalloc(scale B)");
    cu_check(cudaMalloc(&dout, M * N * osz), "cudaMalloc(D)");
    cu_check(cudaMemcpy(da, a.codes.data(), M * K, cudaMemcpyHostToDevice), "copy A");
    cu_check(cudaMemcpy(db, b.codes.data(), N * K, cudaMemcpyHostToDevice), "copy B");
    cu_check(cudaMemcpy(dsa, sa.data(), sa.size() * 4, cudaMemcpyHostToDevice), "copy scale A");
    cu_check(cudaMemcpy(dsb, sb.data(), sb.size() * 4, cudaMemcpyHostToDevice), "copy scale B");
    g.run(da, db, dsa, dsb, dout);
    cu_check(cudaDeviceSynchronize(), "cublasLtMatmul execution");
    r.out.resize(M * N);
    if (cfg.out == GemmOutType::f32) {
      cu_check(cudaMemcpy(r.out.data(), dout, M * N * 4, cudaMemcpyDeviceToHost), "copy D");
    } else {
      r.bf16.resize(M * N);
      cu_check(cudaMemcpy(r.bf16.data(), dout, M * N * 2, cudaMemcpyDeviceToHost), "copy D");
      for (std::size_t i = 0; i < M * N; ++i) {
        const std::uint32_t w = std::uint32_t(r.bf16[i]) << 16;
        std::memcpy(&r.out[i], &w, 4);
      }
    }
  } catch (...) {
    cudaFree(da), cudaFree(db), cudaFree(dsa), cudaFree(dsb), cudaFree(dout);
    throw;
  }
  cudaFree(da), cudaFree(db), cudaFree(dsa), cudaFree(dsb), cudaFree(dout);
  r.algo = g.algo();
  return r;
}

}  // namespace fp8flow::cuda
