// Expert-parallel dispatch and combine over NCCL (see ep_dispatch.hpp and docs/ep.md). The layouts are
// those of the CPU model (src/reference/ep_routing.hpp); the order-defining steps are a prefix sum over
// [destination rank][token] flags (send order = token order) and stable radix sorts of (row, slot)
// indices by a key (local expert for the expansion, home rank for the combine), so that rows keep their
// (token, slot) order inside each group, exactly as the CPU model's sequential loops.
#include <cub/cub.cuh>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <nccl.h>

#include <algorithm>
#include <cstring>
#include <sstream>
#include <type_traits>
#include <stdexcept>

#include "cuda/ep_dispatch.hpp"
#include "cuda/ep_expert_kernels.hpp"
#include "cuda/quantize_kernels.hpp"
#include "io/errors.hpp"

namespace fp8flow::cuda {
namespace {

// fmt does not compile under nvcc here (its constexpr paths): a small "{}" formatter for messages.
inline void fmt_rest(std::ostringstream& os, const char* f) { os << f; }
template <class A, class... Rest>
void fmt_rest(std::ostringstream& os, const char* f, const A& a, const Rest&... rest) {
  const char* b = std::strstr(f, "{}");
  if (!b) {
    os << f;
    return;
  }
  os.write(f, b - f);
  os << a;
  fmt_rest(os, b + 2, rest...);
}
template <class... A>
std::string fmtr(const char* f, const A&... a) {
  std::ostringstream os;
  fmt_rest(os, f, a...);
  return os.str();
}

void ck(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(fmtr("{}: {}", what, cudaGetErrorString(e)));
}
void nk(ncclResult_t r, const char* what) {
  if (r != ncclSuccess) throw std::runtime_error(fmtr("{}: {}", what, ncclGetErrorString(r)));
}

constexpr float kDispatchEps = 1e-10f;  // dataflows.cpp kDispatchEps: FP8-Flow's pre-dispatch quantizer
constexpr int kMaxRanks = 64;           // one bit per destination rank in the flag kernel
constexpr std::size_t kAlign16 = 16;
std::size_t round16(std::size_t n) { return (n + kAlign16 - 1) / kAlign16 * kAlign16; }

// Partition (ep_routing.hpp EpPartition): floor splits.
__host__ __device__ inline std::size_t split_begin(std::size_t p, std::size_t n, std::size_t R) { return p * n / R; }
__device__ inline int owner_of(std::size_t x, std::size_t n, int R) {
  int p = 0;
  while (p + 1 < R && split_begin(std::size_t(p + 1), n, std::size_t(R)) <= x) ++p;
  return p;
}

// A dispatched row: [payload | scales (fp8) | token id | K local experts | K probs], 16-byte aligned parts.
struct RowLayout {
  std::size_t payload = 0, scale_off = 0, meta_off = 0, stride = 0;
};
RowLayout row_layout(EpPayload p, std::size_t H, std::size_t K) {
  RowLayout l;
  l.payload = p == EpPayload::fp8 ? H : 2 * H;
  l.scale_off = round16(l.payload);
  const std::size_t scales = p == EpPayload::fp8 ? 4 * ((H + 127) / 128) : 0;
  l.meta_off = l.scale_off + round16(scales);
  l.stride = round16(l.meta_off + 4 + 8 * K);
  return l;
}

// Copy n bytes, 16 at a time when both ends allow it.
__device__ inline void copy_bytes(std::uint8_t* dst, const std::uint8_t* src, std::size_t n) {
  if ((reinterpret_cast<std::uintptr_t>(dst) | reinterpret_cast<std::uintptr_t>(src) | n) % 16 == 0) {
    const uint4* s = reinterpret_cast<const uint4*>(src);
    uint4* d = reinterpret_cast<uint4*>(dst);
    for (std::size_t i = threadIdx.x; i < n / 16; i += blockDim.x) d[i] = s[i];
  } else {
    for (std::size_t i = threadIdx.x; i < n; i += blockDim.x) dst[i] = src[i];
  }
}
__device__ inline void zero_bytes(std::uint8_t* dst, std::size_t n) {
  for (std::size_t i = threadIdx.x; i < n; i += blockDim.x) dst[i] = 0;
}

// ---- Dispatch kernels ----------------------------------------------------------------------------------
__global__ void send_flags_kernel(const std::int32_t* expert, std::size_t Tp, int K, int R, std::size_t E,
                                  std::uint32_t* flags) {
  const std::size_t t = blockIdx.x * std::size_t(blockDim.x) + threadIdx.x;
  if (t >= Tp) return;
  unsigned long long mask = 0;
  for (int j = 0; j < K; ++j) mask |= 1ull << owner_of(std::size_t(expert[t * K + j]), E, R);
  for (int q = 0; q < R; ++q) flags[std::size_t(q) * Tp + t] = std::uint32_t((mask >> q) & 1ull);
}

__global__ void send_counts_kernel(const std::uint32_t* flags, const std::uint32_t* pos, std::size_t Tp, int R,
                                   std::uint64_t* count) {
  const int q = threadIdx.x;
  if (q >= R) return;
  count[q] = Tp == 0 ? 0 : std::uint64_t(pos[q * Tp + Tp - 1] + flags[q * Tp + Tp - 1] - pos[q * Tp]);
}

__global__ void pack_kernel(EpPayload payload, const std::uint8_t* codes, const float* si,
                            const std::uint16_t* x, const std::int32_t* expert, const float* prob,
                            const std::uint32_t* flags, const std::uint32_t* pos, std::size_t Tp, std::size_t t0,
                            std::size_t H, int K, int R, std::size_t E, RowLayout L, std::uint8_t* send) {
  const std::size_t t = blockIdx.x;
  const int q = int(blockIdx.y);
  if (!flags[q * Tp + t]) return;
  std::uint8_t* dst = send + std::size_t(pos[q * Tp + t]) * L.stride;
  if (payload == EpPayload::fp8) {
    copy_bytes(dst, codes + t * H, H);
    const std::size_t sc = (H + 127) / 128;
    float* ds = reinterpret_cast<float*>(dst + L.scale_off);
    for (std::size_t i = threadIdx.x; i < sc; i += blockDim.x) ds[i] = si[t * sc + i];
  } else {
    copy_bytes(dst, reinterpret_cast<const std::uint8_t*>(x + t * H), 2 * H);
  }
  std::int32_t* meta = reinterpret_cast<std::int32_t*>(dst + L.meta_off);
  const std::size_t eb = split_begin(std::size_t(q), E, std::size_t(R));
  if (threadIdx.x == 0) meta[0] = std::int32_t(t0 + t);
  for (int j = threadIdx.x; j < K; j += blockDim.x) {
    const std::size_t e = std::size_t(expert[t * K + j]);
    meta[1 + j] = owner_of(e, E, R) == q ? std::int32_t(e - eb) : -1;
    reinterpret_cast<float*>(meta + 1 + K)[j] = prob[t * K + j];
  }
}

// Keys for the expansion sort: local expert of (received row i, slot j), El for "not here".
__global__ void expand_keys_kernel(const std::uint8_t* recv, std::size_t n_rows, int K, RowLayout L,
                                   std::uint32_t El, std::uint32_t* keys, std::uint32_t* vals) {
  const std::size_t s = blockIdx.x * std::size_t(blockDim.x) + threadIdx.x;
  if (s >= n_rows * K) return;
  const std::int32_t* meta = reinterpret_cast<const std::int32_t*>(recv + (s / K) * L.stride + L.meta_off);
  const std::int32_t le = meta[1 + s % K];
  keys[s] = le < 0 ? El : std::uint32_t(le);
  vals[s] = std::uint32_t(s);
}

// Group bounds of sorted keys: start[k], end[k] (groups absent stay 0, 0).
__global__ void group_bounds_kernel(const std::uint32_t* k, std::size_t n, std::int64_t* start, std::int64_t* end) {
  const std::size_t s = blockIdx.x * std::size_t(blockDim.x) + threadIdx.x;
  if (s >= n) return;
  if (s == 0 || k[s] != k[s - 1]) start[k[s]] = std::int64_t(s);
  if (s + 1 == n || k[s] != k[s + 1]) end[k[s]] = std::int64_t(s + 1);
}

// Per local expert: valid, padded (to align), offset; and the total row count.
__global__ void expert_offsets_kernel(const std::int64_t* start, const std::int64_t* end, std::size_t El,
                                      std::size_t align, std::int64_t* valid, std::int64_t* padded,
                                      std::int64_t* offset, std::int64_t* rows) {
  if (threadIdx.x != 0 || blockIdx.x != 0) return;
  std::int64_t off = 0;
  for (std::size_t e = 0; e < El; ++e) {
    const std::int64_t v = end[e] - start[e];
    valid[e] = v;
    padded[e] = (v + std::int64_t(align) - 1) / std::int64_t(align) * std::int64_t(align);
    offset[e] = off;
    off += padded[e];
  }
  *rows = off;
}

__global__ void expand_copy_kernel(EpPayload payload, const std::uint8_t* recv, RowLayout L, std::size_t H, int K,
                                   std::uint32_t El, const std::uint32_t* keys, const std::uint32_t* vals,
                                   const std::int64_t* start, const std::int64_t* offset, std::int64_t* slot_row,
                                   std::uint8_t* perm, float* perm_si, float* prow, std::int32_t* row_expert) {
  const std::size_t s = blockIdx.x;
  const std::uint32_t e = keys[s];
  if (e >= El) return;
  const std::size_t v = vals[s], i = v / K, j = v % K;
  const std::size_t row = std::size_t(offset[e] + std::int64_t(s) - start[e]);
  const std::uint8_t* src = recv + i * L.stride;
  if (threadIdx.x == 0) {
    slot_row[v] = std::int64_t(row);
    prow[row] = reinterpret_cast<const float*>(src + L.meta_off + 4 + 4 * K)[j];
    row_expert[row] = std::int32_t(e);
  }
  if (payload == EpPayload::fp8) {
    copy_bytes(perm + row * H, src, H);
    const std::size_t sc = (H + 127) / 128;
    const float* ss = reinterpret_cast<const float*>(src + L.scale_off);
    for (std::size_t c = threadIdx.x; c < sc; c += blockDim.x) perm_si[row * sc + c] = ss[c];
  } else {
    copy_bytes(perm + row * 2 * H, src, 2 * H);
  }
}

// Padding rows: code 0 / bf16 0, scale 0, prob 0 (the executor's fp8 permute_pad).
__global__ void pad_rows_kernel(EpPayload payload, std::size_t H, const std::int64_t* valid,
                                const std::int64_t* padded, const std::int64_t* offset, std::uint8_t* perm,
                                float* perm_si, float* prow, std::int32_t* row_expert) {
  const std::size_t e = blockIdx.x;
  const std::size_t sc = (H + 127) / 128, rb = payload == EpPayload::fp8 ? H : 2 * H;
  for (std::int64_t r = offset[e] + valid[e]; r < offset[e] + padded[e]; ++r) {
    zero_bytes(perm + std::size_t(r) * rb, rb);
    if (payload == EpPayload::fp8)
      for (std::size_t c = threadIdx.x; c < sc; c += blockDim.x) perm_si[std::size_t(r) * sc + c] = 0.0f;
    if (threadIdx.x == 0) {
      prow[r] = 0.0f;
      row_expert[r] = std::int32_t(e);
    }
  }
}

// ---- Combine kernels -----------------------------------------------------------------------------------
// Expert side: key of (received row i, slot j) = home rank of token i if the slot is here, else R.
__global__ void combine_send_keys_kernel(const std::uint8_t* recv, std::size_t n_rows, int K, RowLayout L,
                                         std::size_t T, int R, std::uint32_t* keys, std::uint32_t* vals) {
  const std::size_t s = blockIdx.x * std::size_t(blockDim.x) + threadIdx.x;
  if (s >= n_rows * K) return;
  const std::int32_t* meta = reinterpret_cast<const std::int32_t*>(recv + (s / K) * L.stride + L.meta_off);
  keys[s] = meta[1 + s % K] < 0 ? std::uint32_t(R) : std::uint32_t(owner_of(std::size_t(meta[0]), T, R));
  vals[s] = std::uint32_t(s);
}
// Home side: key of copy c = t * K + j of a local token = rank owning its expert.
__global__ void combine_recv_keys_kernel(const std::int32_t* expert, std::size_t n, std::size_t E, int R,
                                         std::uint32_t* keys, std::uint32_t* vals) {
  const std::size_t c = blockIdx.x * std::size_t(blockDim.x) + threadIdx.x;
  if (c >= n) return;
  keys[c] = std::uint32_t(owner_of(std::size_t(expert[c]), E, R));
  vals[c] = std::uint32_t(c);
}
__global__ void scatter_index_kernel(const std::uint32_t* vals, std::size_t n, std::int64_t* index) {
  const std::size_t s = blockIdx.x * std::size_t(blockDim.x) + threadIdx.x;
  if (s < n) index[vals[s]] = std::int64_t(s);
}
// Send row s of the combine buffer = o row of the s-th sorted slot (sorted by home rank, stable).
__global__ void combine_pack_kernel(const std::uint32_t* vals, const std::int64_t* slot_row, const std::uint16_t* o,
                                    std::size_t H, std::uint16_t* send) {
  const std::size_t s = blockIdx.x;
  const std::size_t row = std::size_t(slot_row[vals[s]]);
  copy_bytes(reinterpret_cast<std::uint8_t*>(send + s * H), reinterpret_cast<const std::uint8_t*>(o + row * H), 2 * H);
}
// y[t, c] = bf16(fp32 sum over j = 0..K-1 of recv[index[t * K + j], c]), unpermute_combine's order.
__global__ void combine_reduce_kernel(const std::uint16_t* recv, const std::int64_t* index, std::size_t H, int K,
                                      std::uint16_t* y) {
  const std::size_t t = blockIdx.x;
  for (std::size_t c = threadIdx.x; c < H; c += blockDim.x) {
    float acc = 0.0f;
    for (int j = 0; j < K; ++j)
      acc = __fadd_rn(acc, __uint_as_float(std::uint32_t(recv[std::size_t(index[t * K + j]) * H + c]) << 16));
    y[t * H + c] = __bfloat16_as_ushort(__float2bfloat16_rn(acc));
  }
}

__device__ std::uint32_t mix32(std::uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ULL;
  return std::uint32_t(x ^ (x >> 33));
}
__global__ void fill_bf16_kernel(std::uint16_t* v, std::size_t n, std::uint64_t seed) {
  for (std::size_t i = blockIdx.x * std::size_t(blockDim.x) + threadIdx.x; i < n; i += std::size_t(gridDim.x) * blockDim.x) {
    const std::uint32_t h = mix32(i ^ (seed << 40));
    const float f = (float(h & 0xFFFF) / 32768.0f - 1.0f);  // [-1, 1)
    v[i] = std::uint16_t(__float_as_uint(f) >> 16);
  }
}

unsigned blocks_for(std::size_t n, unsigned threads = 256) { return unsigned((n + threads - 1) / threads); }
unsigned bits_for(std::size_t max_key) {
  unsigned b = 1;
  while ((std::size_t(1) << b) <= max_key) ++b;
  return b;
}

template <class T>
T* dmalloc(std::size_t n, const char* what) {
  void* p = nullptr;
  ck(cudaMalloc(&p, std::max<std::size_t>(n, 1) * sizeof(T)), what);
  return static_cast<T*>(p);
}

}  // namespace

// ---- Runtime state ---------------------------------------------------------------------------------------
struct EpRuntime::Impl {
  struct Rank {
    int dev = 0;
    cudaStream_t s = nullptr;
    ncclComm_t comm = nullptr;
    cudaEvent_t ev0 = nullptr, ev1 = nullptr;
    std::size_t Tp = 0, t0 = 0, El = 0, e0 = 0;
    // token side
    std::uint16_t* x = nullptr;
    std::int32_t* expert = nullptr;
    float* prob = nullptr;
    std::uint8_t* q_codes = nullptr;
    float* q_si = nullptr;
    RowTile* tiles = nullptr;
    std::size_t n_tiles = 0;
    std::uint32_t *flags = nullptr, *pos = nullptr;
    std::uint64_t *send_count_d = nullptr, *recv_count_d = nullptr;
    std::vector<std::uint64_t> send_count, send_off, recv_count, recv_off;
    std::uint8_t *send_buf = nullptr, *recv_buf = nullptr;
    // expert side
    std::size_t n_recv = 0, rows = 0;
    std::uint32_t *keys = nullptr, *keys_sorted = nullptr, *vals = nullptr, *vals_sorted = nullptr;
    std::int64_t *gstart = nullptr, *gend = nullptr;
    std::int64_t *valid = nullptr, *padded = nullptr, *offset = nullptr, *rows_d = nullptr;
    std::int64_t* slot_row = nullptr;
    std::uint8_t* perm = nullptr;
    float *perm_si = nullptr, *prow = nullptr;
    std::int32_t* row_expert = nullptr;
    // expert compute
    std::uint8_t *w1 = nullptr, *w2 = nullptr, *act = nullptr;
    float *w1_si = nullptr, *w2_si = nullptr, *act_si = nullptr;
    std::uint16_t *h = nullptr, *o = nullptr;
    // combine
    std::uint16_t *csend = nullptr, *crecv = nullptr, *y = nullptr;
    std::int64_t* combine_index = nullptr;
    std::uint32_t* cvals = nullptr;  // expert side, sorted by home rank (kept for the pack)
    std::vector<std::uint64_t> csend_count, csend_off, crecv_count, crecv_off;
    void* cub_tmp = nullptr;
    std::size_t cub_bytes = 0;
  };
  EpShape sh;
  std::vector<Rank> rk;
  EpPayload last = EpPayload::fp8;
  bool dispatched = false, weights = false, outputs = false, combine_ready = false;
  std::size_t cap_recv = 0, cap_slots = 0, cap_rows = 0;

  int R() const { return sh.ranks; }
  void set(int r) const { ck(cudaSetDevice(rk[std::size_t(r)].dev), "cudaSetDevice"); }

  // Run fn(rank) on every rank between events; returns the max elapsed ms over ranks.
  template <class F>
  double timed(F&& fn) {
    for (int r = 0; r < R(); ++r) {
      set(r);
      ck(cudaEventRecord(rk[r].ev0, rk[r].s), "cudaEventRecord");
    }
    fn();
    double ms = 0;
    for (int r = 0; r < R(); ++r) {
      set(r);
      ck(cudaEventRecord(rk[r].ev1, rk[r].s), "cudaEventRecord");
    }
    for (int r = 0; r < R(); ++r) {
      set(r);
      ck(cudaEventSynchronize(rk[r].ev1), "cudaEventSynchronize");
      float e = 0;
      ck(cudaEventElapsedTime(&e, rk[r].ev0, rk[r].ev1), "cudaEventElapsedTime");
      ms = std::max(ms, double(e));
    }
    return ms;
  }
  void sort_pairs(Rank& k, const std::uint32_t* keys_in, std::uint32_t* keys_out, const std::uint32_t* vals_in,
                  std::uint32_t* vals_out, std::size_t n, std::size_t max_key) {
    if (n == 0) return;
    std::size_t bytes = k.cub_bytes;
    ck(cub::DeviceRadixSort::SortPairs(k.cub_tmp, bytes, keys_in, keys_out, vals_in, vals_out, n, 0,
                                       int(bits_for(max_key)), k.s),
       "cub::DeviceRadixSort::SortPairs");
  }
  std::vector<std::int64_t> download_i64(const Rank& k, const std::int64_t* d, std::size_t n) const {
    std::vector<std::int64_t> v(n);
    if (n) ck(cudaMemcpyAsync(v.data(), d, n * 8, cudaMemcpyDeviceToHost, k.s), "cudaMemcpyAsync D2H");
    ck(cudaStreamSynchronize(k.s), "cudaStreamSynchronize");
    return v;
  }
};

EpRuntime::EpRuntime(const EpShape& shape) : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  m.sh = shape;
  const int R = shape.ranks;
  if (R < 1 || R > kMaxRanks) throw InputError(fmtr("ep: ranks = {}: expected 1..{}", R, kMaxRanks));
  if (std::size_t(R) > shape.experts)
    throw InputError(fmtr("ep: ranks = {} exceeds the {} experts", R, shape.experts));
  if (shape.tokens == 0 || shape.hidden == 0 || shape.topk == 0 || shape.topk > shape.experts || shape.align == 0)
    throw InputError(fmtr("ep: shape tokens {} hidden {} experts {} topk {} align {}: all must be > 0, "
                                 "topk <= experts", shape.tokens, shape.hidden, shape.experts, shape.topk, shape.align));
  const int have = visible_devices();
  if (have < R) throw InputError(fmtr("ep: {} ranks need {} GPUs, {} visible", R, R, have));
  const std::size_t T = shape.tokens, H = shape.hidden, K = shape.topk, E = shape.experts;
  m.cap_recv = T;                       // a token reaches a rank at most once
  m.cap_slots = T * K;
  m.rk.resize(std::size_t(R));
  std::vector<int> devs(static_cast<std::size_t>(R));
  for (int r = 0; r < R; ++r) devs[std::size_t(r)] = r;
  std::vector<ncclComm_t> comms(static_cast<std::size_t>(R));
  nk(ncclCommInitAll(comms.data(), R, devs.data()), "ncclCommInitAll");
  const RowLayout widest = row_layout(EpPayload::bf16, H, K);
  for (int r = 0; r < R; ++r) {
    auto& k = m.rk[std::size_t(r)];
    k.dev = r;
    k.comm = comms[std::size_t(r)];
    m.set(r);
    ck(cudaStreamCreateWithFlags(&k.s, cudaStreamNonBlocking), "cudaStreamCreate");
    ck(cudaEventCreate(&k.ev0), "cudaEventCreate");
    ck(cudaEventCreate(&k.ev1), "cudaEventCreate");
    k.t0 = split_begin(std::size_t(r), T, std::size_t(R));
    k.Tp = split_begin(std::size_t(r + 1), T, std::size_t(R)) - k.t0;
    k.e0 = split_begin(std::size_t(r), E, std::size_t(R));
    k.El = split_begin(std::size_t(r + 1), E, std::size_t(R)) - k.e0;
    const std::size_t cap_rows = m.cap_slots + k.El * shape.align;
    m.cap_rows = std::max(m.cap_rows, cap_rows);
    const std::size_t sc = (H + 127) / 128;
    k.x = dmalloc<std::uint16_t>(k.Tp * H, "cudaMalloc x");
    k.expert = dmalloc<std::int32_t>(k.Tp * K, "cudaMalloc expert");
    k.prob = dmalloc<float>(k.Tp * K, "cudaMalloc prob");
    k.q_codes = dmalloc<std::uint8_t>(k.Tp * H, "cudaMalloc codes");
    k.q_si = dmalloc<float>(k.Tp * sc, "cudaMalloc scales");
    const std::vector<RowTile> tiles = make_row_tiles(k.Tp, {});
    k.n_tiles = tiles.size();
    k.tiles = dmalloc<RowTile>(tiles.size(), "cudaMalloc tiles");
    if (!tiles.empty())
      ck(cudaMemcpy(k.tiles, tiles.data(), tiles.size() * sizeof(RowTile), cudaMemcpyHostToDevice), "upload tiles");
    k.flags = dmalloc<std::uint32_t>(std::size_t(R) * k.Tp, "cudaMalloc flags");
    k.pos = dmalloc<std::uint32_t>(std::size_t(R) * k.Tp, "cudaMalloc pos");
    k.send_count_d = dmalloc<std::uint64_t>(std::size_t(R), "cudaMalloc counts");
    k.recv_count_d = dmalloc<std::uint64_t>(std::size_t(R), "cudaMalloc counts");
    k.send_buf = dmalloc<std::uint8_t>(std::min(std::size_t(R), K) * k.Tp * widest.stride, "cudaMalloc send");
    k.recv_buf = dmalloc<std::uint8_t>(m.cap_recv * widest.stride, "cudaMalloc recv");
    k.keys = dmalloc<std::uint32_t>(m.cap_slots, "cudaMalloc keys");
    k.keys_sorted = dmalloc<std::uint32_t>(m.cap_slots, "cudaMalloc keys");
    k.vals = dmalloc<std::uint32_t>(m.cap_slots, "cudaMalloc vals");
    k.vals_sorted = dmalloc<std::uint32_t>(m.cap_slots, "cudaMalloc vals");
    k.cvals = dmalloc<std::uint32_t>(m.cap_slots, "cudaMalloc vals");
    const std::size_t groups = std::max(k.El, std::size_t(R)) + 1;
    k.gstart = dmalloc<std::int64_t>(groups, "cudaMalloc bounds");
    k.gend = dmalloc<std::int64_t>(groups, "cudaMalloc bounds");
    k.valid = dmalloc<std::int64_t>(k.El, "cudaMalloc valid");
    k.padded = dmalloc<std::int64_t>(k.El, "cudaMalloc padded");
    k.offset = dmalloc<std::int64_t>(k.El, "cudaMalloc offset");
    k.rows_d = dmalloc<std::int64_t>(1, "cudaMalloc rows");
    k.slot_row = dmalloc<std::int64_t>(m.cap_slots, "cudaMalloc slot_row");
    k.perm = dmalloc<std::uint8_t>(cap_rows * 2 * H, "cudaMalloc permuted");
    k.perm_si = dmalloc<float>(cap_rows * sc, "cudaMalloc permuted scales");
    k.prow = dmalloc<float>(cap_rows, "cudaMalloc prow");
    k.row_expert = dmalloc<std::int32_t>(cap_rows, "cudaMalloc row_expert");
    k.o = dmalloc<std::uint16_t>(cap_rows * H, "cudaMalloc o");
    k.csend = dmalloc<std::uint16_t>(m.cap_slots * H, "cudaMalloc combine send");
    k.crecv = dmalloc<std::uint16_t>(k.Tp * K * H, "cudaMalloc combine recv");
    k.y = dmalloc<std::uint16_t>(k.Tp * H, "cudaMalloc y");
    k.combine_index = dmalloc<std::int64_t>(k.Tp * K, "cudaMalloc combine index");
    // cub scratch: the larger of the scan over R * Tp flags and a sort of cap_slots pairs.
    std::size_t scan_bytes = 0, sort_bytes = 0;
    ck(cub::DeviceScan::ExclusiveSum(nullptr, scan_bytes, k.flags, k.pos, std::max<std::size_t>(R * k.Tp, 1), k.s),
       "cub scan size");
    ck(cub::DeviceRadixSort::SortPairs(nullptr, sort_bytes, k.keys, k.keys_sorted, k.vals, k.vals_sorted,
                                       std::max<std::size_t>(m.cap_slots, 1), 0, 32, k.s),
       "cub sort size");
    k.cub_bytes = std::max(scan_bytes, sort_bytes);
    k.cub_tmp = dmalloc<std::uint8_t>(k.cub_bytes, "cudaMalloc cub");
    k.send_count.assign(std::size_t(R), 0);
    k.send_off.assign(std::size_t(R) + 1, 0);
    k.recv_count.assign(std::size_t(R), 0);
    k.recv_off.assign(std::size_t(R) + 1, 0);
  }
}

EpRuntime::~EpRuntime() {
  if (!impl_) return;
  for (int r = 0; r < impl_->R(); ++r) {
    auto& k = impl_->rk[std::size_t(r)];
    cudaSetDevice(k.dev);
    cudaStreamSynchronize(k.s);
    for (void* p : {(void*)k.x, (void*)k.expert, (void*)k.prob, (void*)k.q_codes, (void*)k.q_si, (void*)k.tiles,
                    (void*)k.flags, (void*)k.pos, (void*)k.send_count_d, (void*)k.recv_count_d, (void*)k.send_buf,
                    (void*)k.recv_buf, (void*)k.keys, (void*)k.keys_sorted, (void*)k.vals, (void*)k.vals_sorted,
                    (void*)k.cvals, (void*)k.gstart, (void*)k.gend, (void*)k.valid, (void*)k.padded,
                    (void*)k.offset, (void*)k.rows_d, (void*)k.slot_row, (void*)k.perm, (void*)k.perm_si,
                    (void*)k.prow, (void*)k.row_expert, (void*)k.w1, (void*)k.w2, (void*)k.act, (void*)k.w1_si,
                    (void*)k.w2_si, (void*)k.act_si, (void*)k.h, (void*)k.o, (void*)k.csend, (void*)k.crecv,
                    (void*)k.y, (void*)k.combine_index, k.cub_tmp})
      if (p) cudaFree(p);
    if (k.ev0) cudaEventDestroy(k.ev0);
    if (k.ev1) cudaEventDestroy(k.ev1);
    if (k.comm) ncclCommDestroy(k.comm);
    if (k.s) cudaStreamDestroy(k.s);
  }
}

const EpShape& EpRuntime::shape() const { return impl_->sh; }
std::size_t EpRuntime::token_begin(int p) const { return impl_->rk.at(std::size_t(p)).t0; }
std::size_t EpRuntime::token_count(int p) const { return impl_->rk.at(std::size_t(p)).Tp; }
std::size_t EpRuntime::expert_begin(int q) const { return impl_->rk.at(std::size_t(q)).e0; }
std::size_t EpRuntime::expert_count(int q) const { return impl_->rk.at(std::size_t(q)).El; }

int EpRuntime::visible_devices() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return n;
}
std::string EpRuntime::nccl_version() {
  int v = 0;
  if (ncclGetVersion(&v) != ncclSuccess) return "unknown";
  return fmtr("{}.{}.{}", v / 10000, (v / 100) % 100, v % 100);
}
std::string EpRuntime::device_name(int r) const {
  cudaDeviceProp p{};
  ck(cudaGetDeviceProperties(&p, impl_->rk.at(std::size_t(r)).dev), "cudaGetDeviceProperties");
  return p.name;
}

void EpRuntime::set_tokens(int p, std::span<const std::uint16_t> x) {
  auto& k = impl_->rk.at(std::size_t(p));
  if (x.size() != k.Tp * impl_->sh.hidden)
    throw InputError(fmtr("ep rank {}: {} token values, expected {} x {}", p, x.size(), k.Tp, impl_->sh.hidden));
  impl_->set(p);
  ck(cudaMemcpy(k.x, x.data(), x.size_bytes(), cudaMemcpyHostToDevice), "upload tokens");
}

void EpRuntime::set_routing(int p, std::span<const std::int32_t> expert, std::span<const float> prob) {
  auto& k = impl_->rk.at(std::size_t(p));
  const std::size_t n = k.Tp * impl_->sh.topk;
  if (expert.size() != n || prob.size() != n)
    throw InputError(fmtr("ep rank {}: routing of {} / {} entries, expected {}", p, expert.size(), prob.size(), n));
  for (auto e : expert)
    if (e < 0 || std::size_t(e) >= impl_->sh.experts)
      throw InputError(fmtr("ep rank {}: expert id {} outside 0..{}", p, e, impl_->sh.experts - 1));
  impl_->set(p);
  ck(cudaMemcpy(k.expert, expert.data(), expert.size_bytes(), cudaMemcpyHostToDevice), "upload experts");
  ck(cudaMemcpy(k.prob, prob.data(), prob.size_bytes(), cudaMemcpyHostToDevice), "upload probs");
}

void EpRuntime::set_weights(int q, std::span<const std::uint8_t> w1, std::span<const float> w1_si,
                            std::span<const std::uint8_t> w2, std::span<const float> w2_si) {
  Impl& m = *impl_;
  auto& k = m.rk.at(std::size_t(q));
  const std::size_t H = m.sh.hidden, F = m.sh.ffn, El = k.El;
  const auto cdiv = [](std::size_t a, std::size_t b) { return (a + b - 1) / b; };
  if (F == 0) throw InputError("ep: set_weights needs shape.ffn > 0");
  if (w1.size() != El * 2 * F * H || w1_si.size() != El * cdiv(2 * F, 128) * cdiv(H, 128) ||
      w2.size() != El * H * F || w2_si.size() != El * cdiv(H, 128) * cdiv(F, 128))
    throw InputError(fmtr("ep rank {}: weight sizes do not match {} experts of [2F={}, H={}] / [H, F]", q, El,
                                 2 * F, H));
  m.set(q);
  auto up = [&](auto*& d, auto s, const char* what) {
    using T = std::remove_const_t<typename decltype(s)::element_type>;
    if (!d) d = dmalloc<T>(s.size(), what);
    ck(cudaMemcpy(d, s.data(), s.size_bytes(), cudaMemcpyHostToDevice), what);
  };
  up(k.w1, w1, "upload w1");
  up(k.w1_si, w1_si, "upload w1 scales");
  up(k.w2, w2, "upload w2");
  up(k.w2_si, w2_si, "upload w2 scales");
  if (!k.h) k.h = dmalloc<std::uint16_t>(m.cap_rows * 2 * F, "cudaMalloc h");
  if (!k.act) k.act = dmalloc<std::uint8_t>(m.cap_rows * F, "cudaMalloc act");
  if (!k.act_si) k.act_si = dmalloc<float>(m.cap_rows * cdiv(F, 128), "cudaMalloc act scales");
  m.weights = true;
}

void EpRuntime::fill_random_tokens(std::uint64_t seed) {
  Impl& m = *impl_;
  for (int r = 0; r < m.R(); ++r) {
    auto& k = m.rk[std::size_t(r)];
    m.set(r);
    fill_bf16_kernel<<<1024, 256, 0, k.s>>>(k.x, k.Tp * m.sh.hidden, seed * 7919 + std::uint64_t(r));
    ck(cudaGetLastError(), "fill_bf16_kernel");
  }
}

void EpRuntime::fill_random_outputs(std::uint64_t seed) {
  Impl& m = *impl_;
  for (int r = 0; r < m.R(); ++r) {
    auto& k = m.rk[std::size_t(r)];
    m.set(r);
    fill_bf16_kernel<<<1024, 256, 0, k.s>>>(k.o, m.cap_rows * m.sh.hidden, seed + std::uint64_t(r));
    ck(cudaGetLastError(), "fill_bf16_kernel");
  }
  m.outputs = true;
}

EpTimings EpRuntime::dispatch(EpPayload payload) {
  Impl& m = *impl_;
  const int R = m.R();
  const std::size_t H = m.sh.hidden, K = m.sh.topk, E = m.sh.experts, T = m.sh.tokens;
  const RowLayout L = row_layout(payload, H, K);
  EpTimings tm;
  if (payload == EpPayload::fp8)
    tm.quantize = m.timed([&] {
      for (int r = 0; r < R; ++r) {
        auto& k = m.rk[std::size_t(r)];
        m.set(r);
        // v2 (register tiles, static shared memory): usable on every device of the process, unlike v1,
        // whose dynamic shared-memory attribute is set once per process, i.e. on one device only.
        ck(quant_e4m3_v2(k.x, QuantInput::bf16, k.Tp, H, k.tiles, k.n_tiles, QuantGranularity::g1x128,
                         QuantV2Params{QuantRule::te_pow2, kDispatchEps}, k.q_codes, k.q_si, nullptr, nullptr, k.s),
           "quant_e4m3_v2 (1x128 te_pow2)");
      }
    });
  // Layout: flags [q][t], exclusive scan (send position; blocks of q consecutive), counts.
  tm.layout = m.timed([&] {
    for (int r = 0; r < R; ++r) {
      auto& k = m.rk[std::size_t(r)];
      m.set(r);
      if (k.Tp) {
        send_flags_kernel<<<blocks_for(k.Tp), 256, 0, k.s>>>(k.expert, k.Tp, int(K), R, E, k.flags);
        ck(cudaGetLastError(), "send_flags_kernel");
        std::size_t bytes = k.cub_bytes;
        ck(cub::DeviceScan::ExclusiveSum(k.cub_tmp, bytes, k.flags, k.pos, R * k.Tp, k.s), "cub scan");
      }
      send_counts_kernel<<<1, kMaxRanks, 0, k.s>>>(k.flags, k.pos, k.Tp, R, k.send_count_d);
      ck(cudaGetLastError(), "send_counts_kernel");
    }
  });
  // Counts over NCCL, then to the host (NCCL needs them to size the receives).
  tm.counts = m.timed([&] {
    nk(ncclGroupStart(), "ncclGroupStart");
    for (int r = 0; r < R; ++r) {
      auto& k = m.rk[std::size_t(r)];
      for (int q = 0; q < R; ++q) {
        nk(ncclSend(k.send_count_d + q, 1, ncclUint64, q, k.comm, k.s), "ncclSend counts");
        nk(ncclRecv(k.recv_count_d + q, 1, ncclUint64, q, k.comm, k.s), "ncclRecv counts");
      }
    }
    nk(ncclGroupEnd(), "ncclGroupEnd");
    for (int r = 0; r < R; ++r) {
      auto& k = m.rk[std::size_t(r)];
      m.set(r);
      ck(cudaMemcpyAsync(k.send_count.data(), k.send_count_d, R * 8, cudaMemcpyDeviceToHost, k.s), "D2H counts");
      ck(cudaMemcpyAsync(k.recv_count.data(), k.recv_count_d, R * 8, cudaMemcpyDeviceToHost, k.s), "D2H counts");
    }
    for (int r = 0; r < R; ++r) {
      m.set(r);
      ck(cudaStreamSynchronize(m.rk[std::size_t(r)].s), "cudaStreamSynchronize");
    }
  });
  for (auto& k : m.rk) {
    for (int q = 0; q < R; ++q) {
      k.send_off[q + 1] = k.send_off[q] + k.send_count[q];
      k.recv_off[q + 1] = k.recv_off[q] + k.recv_count[q];
    }
    k.n_recv = k.recv_off[R];
    if (k.n_recv > m.cap_recv) throw std::runtime_error("ep: received more rows than tokens (layout bug)");
  }
  tm.pack = m.timed([&] {
    for (int r = 0; r < R; ++r) {
      auto& k = m.rk[std::size_t(r)];
      m.set(r);
      if (!k.Tp) continue;
      pack_kernel<<<dim3(unsigned(k.Tp), unsigned(R)), 128, 0, k.s>>>(payload, k.q_codes, k.q_si, k.x, k.expert,
                                                                     k.prob, k.flags, k.pos, k.Tp, k.t0, H, int(K), R,
                                                                     E, L, k.send_buf);
      ck(cudaGetLastError(), "pack_kernel");
    }
  });
  tm.all_to_all = m.timed([&] {
    nk(ncclGroupStart(), "ncclGroupStart");
    for (int r = 0; r < R; ++r) {
      auto& k = m.rk[std::size_t(r)];
      for (int q = 0; q < R; ++q) {
        if (k.send_count[q])
          nk(ncclSend(k.send_buf + k.send_off[q] * L.stride, k.send_count[q] * L.stride, ncclUint8, q, k.comm, k.s),
             "ncclSend rows");
        if (k.recv_count[q])
          nk(ncclRecv(k.recv_buf + k.recv_off[q] * L.stride, k.recv_count[q] * L.stride, ncclUint8, q, k.comm, k.s),
             "ncclRecv rows");
      }
    }
    nk(ncclGroupEnd(), "ncclGroupEnd");
  });
  // Expansion: stable sort of (i, j) by local expert, bounds, offsets, copy rows, pad.
  tm.expand = m.timed([&] {
    for (int r = 0; r < R; ++r) {
      auto& k = m.rk[std::size_t(r)];
      m.set(r);
      const std::size_t n = k.n_recv * K;
      const auto El = std::uint32_t(k.El);
      ck(cudaMemsetAsync(k.gstart, 0, (k.El + 1) * 8, k.s), "memset");
      ck(cudaMemsetAsync(k.gend, 0, (k.El + 1) * 8, k.s), "memset");
      ck(cudaMemsetAsync(k.slot_row, 0xFF, std::max<std::size_t>(n, 1) * 8, k.s), "memset");
      if (n) {
        expand_keys_kernel<<<blocks_for(n), 256, 0, k.s>>>(k.recv_buf, k.n_recv, int(K), L, El, k.keys, k.vals);
        ck(cudaGetLastError(), "expand_keys_kernel");
        m.sort_pairs(k, k.keys, k.keys_sorted, k.vals, k.vals_sorted, n, El);
        group_bounds_kernel<<<blocks_for(n), 256, 0, k.s>>>(k.keys_sorted, n, k.gstart, k.gend);
        ck(cudaGetLastError(), "group_bounds_kernel");
      }
      expert_offsets_kernel<<<1, 1, 0, k.s>>>(k.gstart, k.gend, k.El, m.sh.align, k.valid, k.padded, k.offset,
                                              k.rows_d);
      ck(cudaGetLastError(), "expert_offsets_kernel");
      if (n) {
        expand_copy_kernel<<<unsigned(n), 128, 0, k.s>>>(payload, k.recv_buf, L, H, int(K), El, k.keys_sorted,
                                                         k.vals_sorted, k.gstart, k.offset, k.slot_row, k.perm,
                                                         k.perm_si, k.prow, k.row_expert);
        ck(cudaGetLastError(), "expand_copy_kernel");
      }
      if (k.El) {
        pad_rows_kernel<<<unsigned(k.El), 128, 0, k.s>>>(payload, H, k.valid, k.padded, k.offset, k.perm, k.perm_si,
                                                         k.prow, k.row_expert);
        ck(cudaGetLastError(), "pad_rows_kernel");
      }
    }
  });
  for (int r = 0; r < R; ++r) {
    auto& k = m.rk[std::size_t(r)];
    m.set(r);
    k.rows = std::size_t(m.download_i64(k, k.rows_d, 1)[0]);
  }
  (void)T;
  m.last = payload;
  m.dispatched = true;
  m.combine_ready = false;
  return tm;
}

void EpRuntime::expert_forward() {
  Impl& m = *impl_;
  if (!m.dispatched || m.last != EpPayload::fp8) throw std::logic_error("ep: expert_forward needs an fp8 dispatch");
  if (!m.weights) throw std::logic_error("ep: expert_forward needs set_weights on every rank");
  const std::size_t H = m.sh.hidden, F = m.sh.ffn;
  for (int r = 0; r < m.R(); ++r) {
    auto& k = m.rk[std::size_t(r)];
    m.set(r);
    if (!k.w1) throw std::logic_error(fmtr("ep: rank {} has no weights", r));
    ck(gemm_e4m3_fp32_seq_1x128_128x128_bf16(k.perm, k.perm_si, k.rows, H, k.w1, k.w1_si, 2 * F, k.row_expert, k.h,
                                             k.s),
       "FC1 gemm");
    ck(swiglu_quant_e4m3_1x128_paper_swiglu(k.h, k.prow, k.rows, F, k.act, k.act_si, k.s), "swiglu quant");
    ck(gemm_e4m3_fp32_seq_1x128_128x128_bf16(k.act, k.act_si, k.rows, F, k.w2, k.w2_si, H, k.row_expert, k.o, k.s),
       "FC2 gemm");
  }
  m.outputs = true;
}

EpCombineTimings EpRuntime::combine() {
  Impl& m = *impl_;
  if (!m.dispatched) throw std::logic_error("ep: combine before dispatch");
  if (!m.outputs) throw std::logic_error("ep: combine needs expert outputs (expert_forward or fill_random_outputs)");
  const int R = m.R();
  const std::size_t H = m.sh.hidden, K = m.sh.topk, E = m.sh.experts, T = m.sh.tokens;
  const RowLayout L = row_layout(m.last, H, K);
  EpCombineTimings tm;
  // Layout (known after dispatch, as DeepEP's handle): expert side groups its valid slots by home rank,
  // home side indexes its copies by source rank; both stable, so both agree on the order.
  tm.layout = m.timed([&] {
    for (int r = 0; r < R; ++r) {
      auto& k = m.rk[std::size_t(r)];
      m.set(r);
      const std::size_t n = k.n_recv * K;
      ck(cudaMemsetAsync(k.gstart, 0, (R + 1) * 8, k.s), "memset");
      ck(cudaMemsetAsync(k.gend, 0, (R + 1) * 8, k.s), "memset");
      if (n) {
        combine_send_keys_kernel<<<blocks_for(n), 256, 0, k.s>>>(k.recv_buf, k.n_recv, int(K), L, T, R, k.keys, k.vals);
        ck(cudaGetLastError(), "combine_send_keys_kernel");
        m.sort_pairs(k, k.keys, k.keys_sorted, k.vals, k.cvals, n, std::size_t(R));
        group_bounds_kernel<<<blocks_for(n), 256, 0, k.s>>>(k.keys_sorted, n, k.gstart, k.gend);
        ck(cudaGetLastError(), "group_bounds_kernel");
      }
      const auto s = m.download_i64(k, k.gstart, std::size_t(R));
      const auto e = m.download_i64(k, k.gend, std::size_t(R));
      k.csend_count.assign(std::size_t(R), 0);
      k.csend_off.assign(std::size_t(R) + 1, 0);
      for (int p = 0; p < R; ++p) {
        k.csend_count[p] = std::uint64_t(e[p] - s[p]);
        k.csend_off[p] = std::uint64_t(s[p]);
      }
      // Home side.
      const std::size_t nh = k.Tp * K;
      ck(cudaMemsetAsync(k.gstart, 0, (R + 1) * 8, k.s), "memset");
      ck(cudaMemsetAsync(k.gend, 0, (R + 1) * 8, k.s), "memset");
      if (nh) {
        combine_recv_keys_kernel<<<blocks_for(nh), 256, 0, k.s>>>(k.expert, nh, E, R, k.keys, k.vals);
        ck(cudaGetLastError(), "combine_recv_keys_kernel");
        m.sort_pairs(k, k.keys, k.keys_sorted, k.vals, k.vals_sorted, nh, std::size_t(R));
        group_bounds_kernel<<<blocks_for(nh), 256, 0, k.s>>>(k.keys_sorted, nh, k.gstart, k.gend);
        scatter_index_kernel<<<blocks_for(nh), 256, 0, k.s>>>(k.vals_sorted, nh, k.combine_index);
        ck(cudaGetLastError(), "scatter_index_kernel");
      }
      const auto hs = m.download_i64(k, k.gstart, std::size_t(R));
      const auto he = m.download_i64(k, k.gend, std::size_t(R));
      k.crecv_count.assign(std::size_t(R), 0);
      k.crecv_off.assign(std::size_t(R) + 1, 0);
      for (int q = 0; q < R; ++q) {
        k.crecv_count[q] = std::uint64_t(he[q] - hs[q]);
        k.crecv_off[q] = std::uint64_t(hs[q]);
      }
    }
  });
  for (int p = 0; p < R; ++p)
    for (int q = 0; q < R; ++q)
      if (m.rk[std::size_t(q)].csend_count[p] != m.rk[std::size_t(p)].crecv_count[q])
        throw std::runtime_error(fmtr("ep combine: rank {} sends {} rows to rank {}, which expects {}", q,
                                             m.rk[std::size_t(q)].csend_count[p], p,
                                             m.rk[std::size_t(p)].crecv_count[q]));
  tm.pack = m.timed([&] {
    for (int r = 0; r < R; ++r) {
      auto& k = m.rk[std::size_t(r)];
      m.set(r);
      std::size_t valid = 0;
      for (auto c : k.csend_count) valid += c;
      if (!valid) continue;
      combine_pack_kernel<<<unsigned(valid), 128, 0, k.s>>>(k.cvals, k.slot_row, k.o, H, k.csend);
      ck(cudaGetLastError(), "combine_pack_kernel");
    }
  });
  tm.all_to_all = m.timed([&] {
    nk(ncclGroupStart(), "ncclGroupStart");
    for (int r = 0; r < R; ++r) {
      auto& k = m.rk[std::size_t(r)];
      for (int q = 0; q < R; ++q) {
        if (k.csend_count[q])
          nk(ncclSend(k.csend + k.csend_off[q] * H, k.csend_count[q] * H * 2, ncclUint8, q, k.comm, k.s),
             "ncclSend combine");
        if (k.crecv_count[q])
          nk(ncclRecv(k.crecv + k.crecv_off[q] * H, k.crecv_count[q] * H * 2, ncclUint8, q, k.comm, k.s),
             "ncclRecv combine");
      }
    }
    nk(ncclGroupEnd(), "ncclGroupEnd");
  });
  tm.reduce = m.timed([&] {
    for (int r = 0; r < R; ++r) {
      auto& k = m.rk[std::size_t(r)];
      m.set(r);
      if (!k.Tp) continue;
      combine_reduce_kernel<<<unsigned(k.Tp), 256, 0, k.s>>>(k.crecv, k.combine_index, H, int(K), k.y);
      ck(cudaGetLastError(), "combine_reduce_kernel");
    }
  });
  m.combine_ready = true;
  return tm;
}

void EpRuntime::synchronize() {
  for (int r = 0; r < impl_->R(); ++r) {
    impl_->set(r);
    ck(cudaStreamSynchronize(impl_->rk[std::size_t(r)].s), "cudaStreamSynchronize");
  }
}

std::size_t EpRuntime::dispatch_row_bytes(EpPayload p) const { return row_layout(p, impl_->sh.hidden, impl_->sh.topk).stride; }

std::size_t EpRuntime::dispatch_bytes(bool remote_only) const {
  const Impl& m = *impl_;
  const std::size_t S = dispatch_row_bytes(m.last);
  std::size_t n = 0;
  for (int r = 0; r < m.R(); ++r)
    for (int q = 0; q < m.R(); ++q)
      if (!remote_only || q != r) n += m.rk[std::size_t(r)].send_count[std::size_t(q)] * S;
  return n;
}

std::size_t EpRuntime::combine_bytes(bool remote_only) const {
  const Impl& m = *impl_;
  std::size_t n = 0;
  for (int r = 0; r < m.R(); ++r)
    for (int q = 0; q < m.R(); ++q)
      if ((!remote_only || q != r) && m.rk[std::size_t(r)].csend_count.size())
        n += m.rk[std::size_t(r)].csend_count[std::size_t(q)] * m.sh.hidden * 2;
  return n;
}

EpRankOutput EpRuntime::read(int q, bool expert_outputs) const {
  const Impl& m = *impl_;
  const auto& k = m.rk.at(std::size_t(q));
  m.set(q);
  ck(cudaStreamSynchronize(k.s), "cudaStreamSynchronize");
  const std::size_t H = m.sh.hidden, K = m.sh.topk, F = m.sh.ffn, sc = (H + 127) / 128;
  EpRankOutput out;
  out.rows = k.rows;
  const RowLayout L = row_layout(m.last, H, K);
  std::vector<std::uint8_t> recv(k.n_recv * L.stride);
  if (!recv.empty()) ck(cudaMemcpy(recv.data(), k.recv_buf, recv.size(), cudaMemcpyDeviceToHost), "D2H recv");
  for (std::size_t i = 0; i < k.n_recv; ++i) {
    std::int32_t t = 0;
    std::memcpy(&t, recv.data() + i * L.stride + L.meta_off, 4);
    out.recv_token.push_back(std::uint32_t(t));
  }
  auto get = [&](auto& v, const auto* d, std::size_t n) {
    v.resize(n);
    if (n) ck(cudaMemcpy(v.data(), d, n * sizeof(v[0]), cudaMemcpyDeviceToHost), "D2H");
  };
  std::vector<std::int64_t> valid, padded, offset;
  get(valid, k.valid, k.El);
  get(padded, k.padded, k.El);
  get(offset, k.offset, k.El);
  out.valid.assign(valid.begin(), valid.end());
  out.padded.assign(padded.begin(), padded.end());
  out.offset.assign(offset.begin(), offset.end());
  get(out.prow, k.prow, k.rows);
  if (m.last == EpPayload::fp8) {
    get(out.codes, k.perm, k.rows * H);
    get(out.scale_inv, k.perm_si, k.rows * sc);
  } else {
    get(out.bf16_rows, reinterpret_cast<const std::uint16_t*>(k.perm), k.rows * H);
  }
  if (expert_outputs && m.weights) {
    get(out.h, k.h, k.rows * 2 * F);
    get(out.act_codes, k.act, k.rows * F);
    get(out.act_scale_inv, k.act_si, k.rows * ((F + 127) / 128));
    get(out.o, k.o, k.rows * H);
  }
  if (m.combine_ready) get(out.y, k.y, k.Tp * H);
  return out;
}

}  // namespace fp8flow::cuda
