// libFuzzer target: the quantized-tensor reader (quant/quant_io.hpp, load_quantized): PREFIX.meta.json plus
// PREFIX.codes.npy and PREFIX.scale_inv.npy. The input is split at the first two "\n@@\n" markers into the
// three files; whatever they hold, load_quantized either returns a tensor that dequantizes, or throws
// InputError.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>

#include "io/errors.hpp"
#include "quant/quant_io.hpp"
#include "quant/quantize.hpp"

namespace {
const std::filesystem::path& work_dir() {
  static const std::filesystem::path dir = [] {
    auto d = std::filesystem::temp_directory_path() / ("fp8flow-fuzz-quant-" + std::to_string(::getpid()));
    std::filesystem::create_directories(d);
    return d;
  }();
  return dir;
}
void put(const std::filesystem::path& p, std::string_view s) {
  std::ofstream(p, std::ios::binary | std::ios::trunc).write(s.data(), std::streamsize(s.size()));
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace fp8flow;
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  constexpr std::string_view kSep = "\n@@\n";
  const std::size_t a = in.find(kSep);
  const std::size_t b = a == std::string_view::npos ? a : in.find(kSep, a + kSep.size());
  const std::string_view meta = in.substr(0, a);
  const std::string_view codes = a == std::string_view::npos ? std::string_view{} : in.substr(a + kSep.size(), b == std::string_view::npos ? std::string_view::npos : b - a - kSep.size());
  const std::string_view scales = b == std::string_view::npos ? std::string_view{} : in.substr(b + kSep.size());
  const std::filesystem::path prefix = work_dir() / "q";
  put(meta_path(prefix), meta);
  put(codes_path(prefix), codes);
  put(scales_path(prefix), scales);
  try {
    const QuantizedTensor q = load_quantized(prefix);
    const auto v = dequantize(q);
    if (v.size() != q.rows * q.cols) std::abort();
  } catch (const InputError&) {
  }
  return 0;
}
