// Constructed FP8 GEMMs that reveal how a hardware GEMM accumulates (docs/gpu.md "Accumulation probes"):
// one large product plus many small addends (how many fraction bits survive, truncation vs rounding),
// K ones and repeated mantissas (where a limited accumulator stalls), the alternating-small PAPER.md probe,
// a scan of a small term's position around a cancelling +-L pair (the product groups and the promotion
// interval N_C), adversarial extreme-value mixes, and random operands (bit-exact statistics, K up to 65536,
// K tails). Every case is a pure function of its name: the GPU records only outputs, the CPU regenerates
// the inputs (and checks them against the recorded input hash).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "quant/granularity.hpp"

namespace fp8flow {

struct GemmProbeCase {
  std::string name, family;         // family: "structured" (unit scales) or "random" (random scales)
  std::string what;                 // one line: what the case probes
  std::size_t m = 0, n = 0, k = 0;
  std::vector<std::uint8_t> a, b;   // e4m3 codes, A [m, k], B [n, k]
};

struct GemmProbeScales {
  Granularity ga = kTensor, gb = kTensor;
  std::vector<float> sa, sb;        // COMPACT scale_inv (src/reference/gemm.hpp)
};

// Scalings a probe runs under: "tensor", "1x128_128x128" (A 1x128, B 128x128), "1x128_1x128".
inline constexpr std::string_view kProbeScalings[] = {"tensor", "1x128_128x128", "1x128_1x128"};

std::vector<std::string> gemm_probe_names();
GemmProbeCase make_gemm_probe(std::string_view name);  // InputError for an unknown name
// Unit scales for structured cases; random non-power-of-two scales (seeded by the name) for random ones.
GemmProbeScales make_gemm_probe_scales(const GemmProbeCase& c, std::string_view scaling);
// FNV-1a over the codes and the scales' bits: detects a generator that no longer matches recorded data.
std::uint64_t gemm_probe_hash(const GemmProbeCase& c, const GemmProbeScales& s);

}  // namespace fp8flow

#include <filesystem>
#include <functional>

#include "reference/gemm.hpp"

namespace fp8flow {

// One recorded GPU run compared with a CPU model, output by output (bits; bf16 outputs as the model's fp32
// result rounded to bf16 by RNE).
struct GemmProbeCheck {
  std::string case_name, scaling, out, algo;
  bool fast_accum = false;
  std::size_t compared = 0, bit_exact = 0;
  std::string first_mismatch;  // "out[r, c]: model 0x..., gpu 0x..."
};

// The CPU model a recorded run is compared with.
using ProbeModelFn = std::function<std::pair<AccumModel, AccumParams>(bool fast_accum, std::string_view scaling)>;

// Reads DIR/gemm_probes.json + DIR/gemm_probes_out.npy (or the given pair of files), regenerates each run's
// inputs (InputError if the input hash differs from the recorded one), runs the model, counts bit-exact
// outputs. `cases`: empty = all recorded runs.
std::vector<GemmProbeCheck> check_gemm_probes(const std::filesystem::path& index_json,
                                              const std::filesystem::path& outputs_npy, const ProbeModelFn& model,
                                              const std::vector<std::string>& cases = {}, int threads = 0);

}  // namespace fp8flow
