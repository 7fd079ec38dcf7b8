// libFuzzer target: the .npy reader (io/npy.hpp) on arbitrary bytes. Every input must either parse into an
// array whose data matches its shape and dtype, or throw InputError; serialize + parse must round-trip.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>

#include "io/errors.hpp"
#include "io/npy.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace fp8flow;
  const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(data), size);
  io::NpyArray a;
  try {
    a = io::parse_npy(bytes, "fuzz.npy");
  } catch (const InputError&) {
    return 0;
  }
  if (a.data.size() != a.size() * io::dtype_size(a.dtype)) std::abort();
  // What we read we can write, and read back to the same bytes (C order, little endian); bf16 is written as
  // its uint16 codes (numpy has no bf16).
  const auto image = io::serialize_npy(a);
  const io::NpyArray b = io::parse_npy(image, "roundtrip.npy");
  const io::DType written = a.dtype == io::DType::bf16 ? io::DType::u16 : a.dtype;
  if (b.dtype != written || b.shape != a.shape || b.data != a.data) std::abort();
  return 0;
}
