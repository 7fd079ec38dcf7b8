// NumPy .npy files: the array format of `fp8flow convert`, `quantize`, `transpose` and the oracles.
// Source: numpy/lib/format.py ("NEP 1"): magic "\x93NUMPY", version byte pair (1.0, 2.0, 3.0), a
// little-endian header length (uint16 in v1, uint32 in v2/v3), then a Python dict literal
// {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), } padded with spaces and '\n' so that the
// data starts at a multiple of 64 bytes. v3 only differs from v2 by allowing a UTF-8 header.
//
// read_npy accepts C and Fortran order (converted to C order), little and big endian (byteswapped to
// native little endian), rank 0..8. write_npy writes v1.0 (v2.0 when the header does not fit 65535
// bytes), little endian, C order, atomically (temp file + rename).
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "io/errors.hpp"

namespace fp8flow::io {

// Element types we read and write. numpy has no bf16: we write bf16 data as uint16 codes, and read
// ml_dtypes' bfloat16 arrays (descr '<V2') as bf16. ml_dtypes' float8 arrays ('<V1', or '<f1' for
// float8_e5m2) read as u8 codes (NpyArray::float8_codes() tells them apart; their format must be given).
enum class DType { f16, bf16, f32, f64, u8, u16, u32, i8, i16, i32, i64, boolean };

std::string_view to_string(DType t);    // "float16", "bfloat16", "float32", ..., "bool" (numpy names)
std::size_t dtype_size(DType t);        // bytes per element
std::string npy_descr(DType t);         // "<f2", "<u2" (for bf16), "|u1", "|b1", ...
inline constexpr std::size_t kMaxNpyRank = 8;

// The C++ element type of a dtype, for view<T>(): f16/bf16 are viewed as std::uint16_t, bool as
// std::uint8_t (numpy stores one byte per bool, 0 or 1).
template <class T> constexpr bool dtype_matches(DType t) {
  if constexpr (std::is_same_v<T, float>) return t == DType::f32;
  else if constexpr (std::is_same_v<T, double>) return t == DType::f64;
  else if constexpr (std::is_same_v<T, std::uint8_t>) return t == DType::u8 || t == DType::boolean;
  else if constexpr (std::is_same_v<T, std::uint16_t>) return t == DType::u16 || t == DType::f16 || t == DType::bf16;
  else if constexpr (std::is_same_v<T, std::uint32_t>) return t == DType::u32;
  else if constexpr (std::is_same_v<T, std::int8_t>) return t == DType::i8;
  else if constexpr (std::is_same_v<T, std::int16_t>) return t == DType::i16;
  else if constexpr (std::is_same_v<T, std::int32_t>) return t == DType::i32;
  else if constexpr (std::is_same_v<T, std::int64_t>) return t == DType::i64;
  else if constexpr (std::is_same_v<T, bool>) return t == DType::boolean;
  else return false;
}
// The dtype make_npy<T> gives (uint16 -> u16, uint8 -> u8, bool -> boolean).
template <class T> constexpr DType dtype_of() {
  if constexpr (std::is_same_v<T, float>) return DType::f32;
  else if constexpr (std::is_same_v<T, double>) return DType::f64;
  else if constexpr (std::is_same_v<T, std::uint8_t>) return DType::u8;
  else if constexpr (std::is_same_v<T, std::uint16_t>) return DType::u16;
  else if constexpr (std::is_same_v<T, std::uint32_t>) return DType::u32;
  else if constexpr (std::is_same_v<T, std::int8_t>) return DType::i8;
  else if constexpr (std::is_same_v<T, std::int16_t>) return DType::i16;
  else if constexpr (std::is_same_v<T, std::int32_t>) return DType::i32;
  else if constexpr (std::is_same_v<T, std::int64_t>) return DType::i64;
  else if constexpr (std::is_same_v<T, bool>) return DType::boolean;
  else static_assert(sizeof(T) == 0, "no .npy dtype for this element type");
}

struct NpyArray {
  DType dtype = DType::f32;
  std::vector<std::size_t> shape;  // empty: a rank-0 scalar (one element)
  std::vector<std::byte> data;     // C order, native little endian after read
  std::string descr;               // the header's descr as read ('<f4', '<V2', ...); empty for built arrays

  // An ml_dtypes float8 array: one-byte codes in a format the header does not name.
  bool float8_codes() const { return descr.size() == 3 && (descr[1] == 'V' || descr[1] == 'f') && descr[2] == '1'; }

  std::size_t size() const;        // product of shape (1 for rank 0)
  std::string shape_string() const;  // "(2, 3)", "()" -- numpy's spelling

  template <class T> std::span<const T> view() const {
    check_view(dtype_matches<T>(dtype), sizeof(T));
    return {reinterpret_cast<const T*>(data.data()), size()};
  }
  template <class T> std::span<T> view() {
    check_view(dtype_matches<T>(dtype), sizeof(T));
    return {reinterpret_cast<T*>(data.data()), size()};
  }

 private:
  void check_view(bool matches, std::size_t elem_size) const;  // throws InputError
};

// Reads a whole .npy file. Throws InputError naming the file and the problem (missing file, wrong magic,
// unknown version, truncated header or data, malformed header, unsupported dtype such as complex,
// object or structured, rank > 8, trailing bytes).
NpyArray read_npy(const std::filesystem::path& file);

// The header only (dtype, shape, descr; no data), from the file's first MiB: what a command checks its memory
// estimate against before reading the whole file. Throws InputError like read_npy.
NpyArray peek_npy(const std::filesystem::path& file);

// Parses .npy bytes already in memory; `name` is used in error messages.
NpyArray parse_npy(std::span<const std::byte> bytes, std::string_view name);

// The complete file image write_npy writes (header + data).
std::vector<std::byte> serialize_npy(const NpyArray& a);

// Atomic: writes FILE.partial-<pid> in the same directory, then renames it over `file`. On any failure
// the temporary is removed and an existing `file` is left untouched. Throws InputError.
void write_npy(const std::filesystem::path& file, const NpyArray& a);

// Builds an array of dtype_of<T>() (pass dtype afterwards to retag, e.g. u16 -> bf16 or f16).
// Throws std::invalid_argument if the number of values does not match the shape.
template <class T> NpyArray make_npy(std::vector<std::size_t> shape, std::span<const T> values);

extern template NpyArray make_npy<float>(std::vector<std::size_t>, std::span<const float>);
extern template NpyArray make_npy<double>(std::vector<std::size_t>, std::span<const double>);
extern template NpyArray make_npy<std::uint8_t>(std::vector<std::size_t>, std::span<const std::uint8_t>);
extern template NpyArray make_npy<std::uint16_t>(std::vector<std::size_t>, std::span<const std::uint16_t>);
extern template NpyArray make_npy<std::uint32_t>(std::vector<std::size_t>, std::span<const std::uint32_t>);
extern template NpyArray make_npy<std::int8_t>(std::vector<std::size_t>, std::span<const std::int8_t>);
extern template NpyArray make_npy<std::int16_t>(std::vector<std::size_t>, std::span<const std::int16_t>);
extern template NpyArray make_npy<std::int32_t>(std::vector<std::size_t>, std::span<const std::int32_t>);
extern template NpyArray make_npy<std::int64_t>(std::vector<std::size_t>, std::span<const std::int64_t>);
extern template NpyArray make_npy<bool>(std::vector<std::size_t>, std::span<const bool>);

// Convenience: make_npy(shape, vector) without spelling the span.
template <class T> NpyArray make_npy(std::vector<std::size_t> shape, const std::vector<T>& values) {
  return make_npy<T>(std::move(shape), std::span<const T>(values));
}

}  // namespace fp8flow::io
