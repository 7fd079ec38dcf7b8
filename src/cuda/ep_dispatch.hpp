// Expert-parallel dispatch and combine over NCCL (docs/ep.md), the GPU side of the CPU routing model in
// src/reference/ep_routing.hpp (same partition, same send order, same expansion order, same combine order).
//
// One process drives R local GPUs (ncclCommInitAll; R = 1 works too). Per rank p: its token shard
// x [T_p, H] (bf16 bits), the routing of its tokens (global expert ids [T_p, K], probs [T_p, K]).
//   dispatch(fp8):  quantize 1x128 e4m3 te_pow2 (eps 1e-10, the fp8_flow pre-dispatch rule, the existing
//                   quant_e4m3_1x128_128x1_te kernel) -> layout (flags + scan) -> counts over NCCL ->
//                   pack rows [codes | scales | token id | K local experts | K probs] -> grouped
//                   ncclSend/ncclRecv -> expand (stable sort by local expert; fused permute + pad)
//   dispatch(bf16): the same with bf16 payload rows and no scales (the baseline)
//   expert_forward: FC1 (fp32_seq FP8 GEMM, 1x128 x 128x128 scales, bf16 out), weighted SwiGLU + fused
//                   1x128 paper_swiglu quant, FC2 -> o bf16; reference kernels (not fast), same
//                   accumulation order and scale application as the CPU emulator (gemm.hpp)
//   combine:        every valid row back to its token's home rank (bf16), fp32 sum in slot order -> bf16 y
// All device work is asynchronous on per-rank streams; the host synchronises where NCCL needs counts.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace fp8flow::cuda {

struct EpShape {
  std::size_t tokens = 0, hidden = 0, experts = 0, topk = 0, align = 128;
  std::size_t ffn = 0;  // needed only for expert_forward
  int ranks = 1;
};

enum class EpPayload { fp8, bf16 };

// Wall-clock phases, ms: per phase the maximum over ranks of the CUDA-event time on each rank's stream.
struct EpTimings {
  double quantize = 0, layout = 0, counts = 0, pack = 0, all_to_all = 0, expand = 0;
  double total() const { return quantize + layout + counts + pack + all_to_all + expand; }
};
struct EpCombineTimings {
  double layout = 0, pack = 0, all_to_all = 0, reduce = 0;
  double total() const { return layout + pack + all_to_all + reduce; }
};

// What a rank holds, copied back to the host.
struct EpRankOutput {
  std::vector<std::uint32_t> recv_token;   // token id of each received row (from the metadata)
  std::vector<std::size_t> valid, padded, offset;  // per local expert
  std::size_t rows = 0;
  std::vector<std::uint8_t> codes;          // fp8 dispatch: [rows, H]
  std::vector<float> scale_inv;             // [rows, ceil(H/128)]
  std::vector<float> prow;                  // [rows]
  std::vector<std::uint16_t> bf16_rows;     // bf16 dispatch: [rows, H]
  std::vector<std::uint16_t> h;             // [rows, 2F]
  std::vector<std::uint8_t> act_codes;      // [rows, F]
  std::vector<float> act_scale_inv;         // [rows, ceil(F/128)]
  std::vector<std::uint16_t> o;             // [rows, H]
  std::vector<std::uint16_t> y;             // home rank: [T_p, H]
};

class EpRuntime {
 public:
  // Devices 0..ranks-1; throws std::runtime_error naming the CUDA/NCCL call on failure, InputError when
  // fewer GPUs are visible than ranks or the shape is invalid.
  explicit EpRuntime(const EpShape& shape);
  ~EpRuntime();
  EpRuntime(const EpRuntime&) = delete;
  EpRuntime& operator=(const EpRuntime&) = delete;

  const EpShape& shape() const;
  std::size_t token_begin(int p) const;
  std::size_t token_count(int p) const;
  std::size_t expert_begin(int q) const;
  std::size_t expert_count(int q) const;

  // Inputs of rank p: tokens [T_p, H] as bf16 bits; routing [T_p, K] global expert ids and probs.
  void set_tokens(int p, std::span<const std::uint16_t> x_bf16);
  void set_routing(int p, std::span<const std::int32_t> expert, std::span<const float> prob);
  // Expert weights of rank q's experts, e4m3 with 128x128 te_pow2 scales as fp8flow::quantize lays them
  // out: w1 codes [E_q * 2F, H], scales [E_q * ceil(2F/128), ceil(H/128)]; w2 [E_q * H, F], scales
  // [E_q * ceil(H/128), ceil(F/128)].
  void set_weights(int q, std::span<const std::uint8_t> w1, std::span<const float> w1_si,
                   std::span<const std::uint8_t> w2, std::span<const float> w2_si);
  // Random bf16 values in [-1, 1) as the tokens of every rank (benchmarks).
  void fill_random_tokens(std::uint64_t seed);
  // Random bf16 expert outputs o on every rank (benchmarks: combine without expert compute).
  void fill_random_outputs(std::uint64_t seed);

  EpTimings dispatch(EpPayload p);
  void expert_forward();                  // after dispatch(fp8), with weights set
  EpCombineTimings combine();             // after dispatch (any payload) and expert_forward or fill_random
  void synchronize();

  // Bytes on the wire of the last dispatch / combine: all rows (self included) and between distinct ranks.
  std::size_t dispatch_bytes(bool remote_only) const;
  std::size_t combine_bytes(bool remote_only) const;
  std::size_t dispatch_row_bytes(EpPayload p) const;

  EpRankOutput read(int q, bool expert_outputs) const;

  static int visible_devices();
  static std::string nccl_version();
  std::string device_name(int r) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace fp8flow::cuda
