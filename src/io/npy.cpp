// .npy reading and writing; format reference in npy.hpp.
#include "io/npy.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cstring>
#include <fstream>
#include <limits>
#include <optional>
#include <variant>

#include "io/atomic_write.hpp"

namespace fp8flow::io {
namespace {

static_assert(std::endian::native == std::endian::little, "fp8flow assumes a little-endian host");

constexpr std::array<unsigned char, 6> kMagic{0x93, 'N', 'U', 'M', 'P', 'Y'};
constexpr std::size_t kAlign = 64;  // numpy >= 1.14 aligns the data start to 64 bytes

// ---- A tiny reader for the Python literal in the header: dict, str, bool, int, tuple/list ------------
struct PyValue;
using PyList = std::vector<PyValue>;
using PyDict = std::vector<std::pair<std::string, PyValue>>;
struct PyValue {
  std::variant<std::string, bool, long long, PyList, PyDict> v;
  bool is_list = false;  // [..] (numpy uses a list of tuples for structured dtypes) vs (..)
};

class LiteralParser {
 public:
  LiteralParser(std::string_view text, std::string_view file) : s_(text), file_(file) {}

  PyValue parse_all() {
    PyValue v = value(0);
    ws();
    if (i_ != s_.size()) fail(fmt::format("unexpected '{}' after the header dict", s_[i_]));
    return v;
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    throw InputError(fmt::format("{}: bad .npy header ({}): {}", file_, what, s_));
  }
  void ws() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\n' || s_[i_] == '\t' || s_[i_] == '\r')) ++i_;
  }
  bool eat(char c) {
    ws();
    if (i_ < s_.size() && s_[i_] == c) return ++i_, true;
    return false;
  }
  PyValue value(int depth) {
    if (depth > 16) fail("nested too deeply");
    ws();
    if (i_ >= s_.size()) fail("unexpected end");
    const char c = s_[i_];
    if (c == '{') return dict(depth);
    if (c == '(' || c == '[') return sequence(depth);
    if (c == '\'' || c == '"') return PyValue{string()};
    if (s_.substr(i_, 4) == "True") return i_ += 4, PyValue{true};
    if (s_.substr(i_, 5) == "False") return i_ += 5, PyValue{false};
    if ((c >= '0' && c <= '9') || c == '-') return PyValue{integer()};
    fail(fmt::format("unexpected '{}'", c));
  }
  std::string string() {
    const char q = s_[i_++];
    const std::size_t end = s_.find(q, i_);
    if (end == std::string_view::npos) fail("unterminated string");
    std::string r(s_.substr(i_, end - i_));
    i_ = end + 1;
    return r;
  }
  long long integer() {
    const std::size_t start = i_;
    if (s_[i_] == '-') ++i_;
    long long v = 0;
    bool any = false;
    while (i_ < s_.size() && s_[i_] >= '0' && s_[i_] <= '9') {
      if (v > (std::numeric_limits<long long>::max() - 9) / 10) fail("integer too large");
      v = v * 10 + (s_[i_++] - '0');
      any = true;
    }
    if (i_ < s_.size() && s_[i_] == 'L') ++i_;  // Python 2 long, written by old numpy
    if (!any) fail("bad integer");
    return s_[start] == '-' ? -v : v;
  }
  PyValue sequence(int depth) {
    const char close = s_[i_] == '(' ? ')' : ']';
    PyValue r{PyList{}};
    r.is_list = close == ']';
    ++i_;
    auto& items = std::get<PyList>(r.v);
    while (!eat(close)) {
      items.push_back(value(depth + 1));
      if (!eat(',')) {
        if (!eat(close)) fail(fmt::format("expected ',' or '{}'", close));
        break;
      }
    }
    return r;
  }
  PyValue dict(int depth) {
    ++i_;
    PyValue r{PyDict{}};
    auto& items = std::get<PyDict>(r.v);
    while (!eat('}')) {
      ws();
      if (i_ >= s_.size() || (s_[i_] != '\'' && s_[i_] != '"')) fail("dict key is not a string");
      std::string key = string();
      if (!eat(':')) fail("expected ':' after a key");
      items.emplace_back(std::move(key), value(depth + 1));
      if (!eat(',')) {
        if (!eat('}')) fail("expected ',' or '}'");
        break;
      }
    }
    return r;
  }

  std::string_view s_;
  std::string_view file_;
  std::size_t i_ = 0;
};

struct DescrInfo {
  DType dtype;
  bool big_endian;
};

// numpy's descr string -> our dtype. Explains the unsupported kinds rather than just refusing them.
DescrInfo parse_descr(const std::string& d, std::string_view file) {
  auto bad = [&](std::string_view why) -> InputError {
    return InputError(fmt::format("{}: unsupported .npy dtype '{}': {} (supported: float16/32/64, uint8/16/32, "
                                  "int8/16/32/64, bool, ml_dtypes bfloat16 ('<V2') and float8 ('<V1', '<f1'); little or big endian)",
                                  file, d, why));
  };
  if (d.size() < 2) throw bad("malformed descr");
  const char order = d[0];
  if (order != '<' && order != '>' && order != '|' && order != '=') throw bad("no byte-order character");
  const char kind = d[1];
  const std::string_view size_text = std::string_view(d).substr(2);
  int size = 0;
  for (char c : size_text) {
    if (c < '0' || c > '9' || size > 1000) throw bad("malformed descr");
    size = size * 10 + (c - '0');
  }
  std::optional<DType> t;
  // ml_dtypes (numpy has no bf16 or float8): np.save writes its bfloat16 arrays as '<V2' and its float8 types
  // as '<V1' (float8_e4m3fn, e8m0fnu, ...) or '<f1' (float8_e5m2). Two bytes can only be bfloat16, ml_dtypes'
  // one 16-bit type; one byte is a float8 code whose format the caller must be told (--from / --format).
  if ((kind == 'V' || kind == 'f') && size == 1) return {DType::u8, false};
  if (kind == 'V' && size == 2) return {DType::bf16, order == '>'};
  switch (kind) {
    case 'f': t = size == 2 ? DType::f16 : size == 4 ? DType::f32 : size == 8 ? DType::f64 : std::optional<DType>{}; break;
    case 'u': t = size == 1 ? DType::u8 : size == 2 ? DType::u16 : size == 4 ? DType::u32 : std::optional<DType>{}; break;
    case 'i':
      t = size == 1 ? DType::i8 : size == 2 ? DType::i16 : size == 4 ? DType::i32 : size == 8 ? DType::i64
                                                                                               : std::optional<DType>{};
      break;
    case 'b': t = size == 1 ? DType::boolean : std::optional<DType>{}; break;
    case 'c': throw bad("complex numbers are not supported");
    case 'O': throw bad("object arrays are not supported");
    case 'U': case 'S': case 'a': throw bad("string arrays are not supported");
    case 'V': throw bad("void/structured arrays are not supported");
    case 'M': case 'm': throw bad("datetime arrays are not supported");
    default: throw bad("unknown kind");
  }
  if (!t) throw bad("this element size is not supported");
  if (order == '|' && size != 1) throw bad("'|' (not applicable) byte order on a multi-byte type");
  return {*t, order == '>' && size > 1};
}

std::string shape_text(const std::vector<std::size_t>& shape) {
  if (shape.empty()) return "()";
  if (shape.size() == 1) return fmt::format("({},)", shape[0]);
  return fmt::format("({})", fmt::join(shape, ", "));
}

std::size_t checked_count(const std::vector<std::size_t>& shape, std::size_t elem, std::string_view file) {
  std::size_t n = 1;
  for (std::size_t d : shape) {
    if (d != 0 && n > std::numeric_limits<std::size_t>::max() / d)
      throw InputError(fmt::format("{}: .npy shape {} is too large", file, shape_text(shape)));
    n *= d;
  }
  if (elem != 0 && n > std::numeric_limits<std::size_t>::max() / elem)
    throw InputError(fmt::format("{}: .npy shape {} is too large", file, shape_text(shape)));
  return n;
}

void byteswap_inplace(std::span<std::byte> data, std::size_t elem) {
  for (std::size_t i = 0; i + elem <= data.size(); i += elem) std::reverse(data.begin() + i, data.begin() + i + elem);
}

// Fortran order (first index fastest) -> C order (last index fastest).
std::vector<std::byte> fortran_to_c(std::span<const std::byte> in, const std::vector<std::size_t>& shape,
                                    std::size_t elem) {
  const std::size_t rank = shape.size();
  std::vector<std::byte> out(in.size());
  const std::size_t n = in.size() / elem;
  if (n == 0) return out;
  std::vector<std::size_t> fstride(rank), idx(rank, 0);
  std::size_t s = 1;
  for (std::size_t k = 0; k < rank; ++k) fstride[k] = s, s *= shape[k];
  std::size_t src = 0;  // Fortran element offset of the current C-order multi-index
  for (std::size_t i = 0; i < n; ++i) {
    std::memcpy(out.data() + i * elem, in.data() + src * elem, elem);
    for (std::size_t k = rank; k-- > 0;) {  // increment the C-order counter, last index first
      if (++idx[k] < shape[k]) {
        src += fstride[k];
        break;
      }
      src -= (shape[k] - 1) * fstride[k];
      idx[k] = 0;
    }
  }
  return out;
}

}  // namespace

std::string_view to_string(DType t) {
  switch (t) {
    case DType::f16: return "float16";
    case DType::bf16: return "bfloat16";
    case DType::f32: return "float32";
    case DType::f64: return "float64";
    case DType::u8: return "uint8";
    case DType::u16: return "uint16";
    case DType::u32: return "uint32";
    case DType::i8: return "int8";
    case DType::i16: return "int16";
    case DType::i32: return "int32";
    case DType::i64: return "int64";
    case DType::boolean: return "bool";
  }
  return "?";
}

std::size_t dtype_size(DType t) {
  switch (t) {
    case DType::u8: case DType::i8: case DType::boolean: return 1;
    case DType::f16: case DType::bf16: case DType::u16: case DType::i16: return 2;
    case DType::f32: case DType::u32: case DType::i32: return 4;
    case DType::f64: case DType::i64: return 8;
  }
  return 0;
}

std::string npy_descr(DType t) {
  switch (t) {
    case DType::f16: return "<f2";
    case DType::bf16: return "<u2";  // numpy has no bf16: stored as raw uint16 codes
    case DType::f32: return "<f4";
    case DType::f64: return "<f8";
    case DType::u8: return "|u1";
    case DType::u16: return "<u2";
    case DType::u32: return "<u4";
    case DType::i8: return "|i1";
    case DType::i16: return "<i2";
    case DType::i32: return "<i4";
    case DType::i64: return "<i8";
    case DType::boolean: return "|b1";
  }
  return "?";
}

std::size_t NpyArray::size() const {
  std::size_t n = 1;
  for (std::size_t d : shape) n *= d;
  return n;
}

std::string NpyArray::shape_string() const { return shape_text(shape); }

void NpyArray::check_view(bool matches, std::size_t elem_size) const {
  if (!matches || elem_size != dtype_size(dtype))
    throw InputError(fmt::format("array of dtype {} viewed as a {}-byte element type that does not match it",
                                 to_string(dtype), elem_size));
  if (data.size() != size() * elem_size)
    throw InputError(fmt::format("array of shape {} holds {} bytes, expected {}", shape_string(), data.size(),
                                 size() * elem_size));
}

namespace {
NpyArray parse_npy_impl(std::span<const std::byte> bytes, std::string_view name, bool header_only);
}

NpyArray parse_npy(std::span<const std::byte> bytes, std::string_view name) { return parse_npy_impl(bytes, name, false); }

NpyArray peek_npy(const std::filesystem::path& file) {
  const std::string name = file.string();
  std::error_code ec;
  if (std::filesystem::is_directory(file, ec)) throw InputError(fmt::format("{}: is a directory, not a .npy file", name));
  std::ifstream in(file, std::ios::binary);
  if (!in) throw InputError(fmt::format("{}: cannot open for reading: {}", name, std::strerror(errno)));
  std::vector<std::byte> bytes(std::size_t(1) << 20);
  in.read(reinterpret_cast<char*>(bytes.data()), std::streamsize(bytes.size()));
  bytes.resize(static_cast<std::size_t>(in.gcount()));
  return parse_npy_impl(bytes, name, true);
}

namespace {
NpyArray parse_npy_impl(std::span<const std::byte> bytes, std::string_view name, bool header_only) {
  auto u8 = [&](std::size_t i) { return static_cast<unsigned>(bytes[i]); };
  if (bytes.size() < kMagic.size() ||
      !std::equal(kMagic.begin(), kMagic.end(), bytes.begin(), [](unsigned char m, std::byte b) {
        return m == static_cast<unsigned char>(b);
      }))
    throw InputError(fmt::format("{}: not a .npy file (wrong magic: expected \\x93NUMPY at the start)", name));
  if (bytes.size() < 8) throw InputError(fmt::format("{}: truncated .npy file: {} bytes, no version", name, bytes.size()));
  const unsigned major = u8(6), minor = u8(7);
  if ((major != 1 && major != 2 && major != 3) || minor != 0)
    throw InputError(fmt::format("{}: unsupported .npy format version {}.{} (expected 1.0, 2.0 or 3.0)", name, major, minor));
  const std::size_t len_bytes = major == 1 ? 2 : 4;
  const std::size_t prefix = 8 + len_bytes;
  if (bytes.size() < prefix)
    throw InputError(fmt::format("{}: truncated .npy file: {} bytes, header length missing", name, bytes.size()));
  std::size_t hlen = 0;
  for (std::size_t k = 0; k < len_bytes; ++k) hlen |= std::size_t(u8(8 + k)) << (8 * k);
  if (bytes.size() - prefix < hlen)
    throw InputError(fmt::format("{}: truncated .npy file: header of {} bytes announced, {} present", name, hlen,
                                 bytes.size() - prefix));
  const std::string header(reinterpret_cast<const char*>(bytes.data()) + prefix, hlen);

  const PyValue root = LiteralParser(header, name).parse_all();
  const auto* dict = std::get_if<PyDict>(&root.v);
  if (!dict) throw InputError(fmt::format("{}: bad .npy header (not a dict): {}", name, header));
  auto find = [&](std::string_view key) -> const PyValue& {
    for (const auto& [k, v] : *dict)
      if (k == key) return v;
    throw InputError(fmt::format("{}: bad .npy header (no '{}' key): {}", name, key, header));
  };
  const PyValue& descr_v = find("descr");
  const auto* descr = std::get_if<std::string>(&descr_v.v);
  if (!descr)
    throw InputError(fmt::format("{}: unsupported .npy dtype: structured arrays are not supported (descr is not a "
                                 "string): {}",
                                 name, header));
  const auto* fortran = std::get_if<bool>(&find("fortran_order").v);
  if (!fortran) throw InputError(fmt::format("{}: bad .npy header ('fortran_order' is not True/False): {}", name, header));
  const auto* shape_list = std::get_if<PyList>(&find("shape").v);
  if (!shape_list) throw InputError(fmt::format("{}: bad .npy header ('shape' is not a tuple): {}", name, header));
  if (shape_list->size() > kMaxNpyRank)
    throw InputError(fmt::format("{}: .npy array of rank {} (at most {} supported)", name, shape_list->size(), kMaxNpyRank));

  const DescrInfo info = parse_descr(*descr, name);
  NpyArray a;
  a.dtype = info.dtype;
  a.descr = *descr;
  for (const PyValue& d : *shape_list) {
    const auto* n = std::get_if<long long>(&d.v);
    if (!n || *n < 0) throw InputError(fmt::format("{}: bad .npy header (shape entries must be integers >= 0): {}", name, header));
    a.shape.push_back(static_cast<std::size_t>(*n));
  }
  const std::size_t elem = dtype_size(a.dtype);
  const std::size_t nbytes = checked_count(a.shape, elem, name) * elem;
  const std::size_t start = prefix + hlen;
  if (header_only) return a;
  const std::size_t have = bytes.size() - start;
  if (have < nbytes)
    throw InputError(fmt::format("{}: truncated .npy file: shape {} of {} needs {} data bytes, found {}", name,
                                 a.shape_string(), to_string(a.dtype), nbytes, have));
  if (have > nbytes)
    throw InputError(fmt::format("{}: .npy file has {} unexpected bytes after the data of shape {} of {}", name,
                                 have - nbytes, a.shape_string(), to_string(a.dtype)));
  a.data.assign(bytes.begin() + start, bytes.end());
  if (info.big_endian) byteswap_inplace(a.data, elem);
  if (*fortran && a.shape.size() > 1) a.data = fortran_to_c(a.data, a.shape, elem);
  return a;
}
}  // namespace

NpyArray read_npy(const std::filesystem::path& file) {
  const std::string name = file.string();
  std::error_code ec;
  if (std::filesystem::is_directory(file, ec)) throw InputError(fmt::format("{}: is a directory, not a .npy file", name));
  std::ifstream in(file, std::ios::binary);
  if (!in) throw InputError(fmt::format("{}: cannot open for reading: {}", name, std::strerror(errno)));
  std::vector<std::byte> bytes;
  in.seekg(0, std::ios::end);
  const std::streamoff n = in.tellg();
  if (n < 0) throw InputError(fmt::format("{}: cannot read", name));
  in.seekg(0, std::ios::beg);
  bytes.resize(static_cast<std::size_t>(n));
  if (!in.read(reinterpret_cast<char*>(bytes.data()), n)) throw InputError(fmt::format("{}: read error", name));
  return parse_npy(bytes, name);
}

std::vector<std::byte> serialize_npy(const NpyArray& a) {
  if (a.shape.size() > kMaxNpyRank)
    throw InputError(fmt::format("cannot write a .npy array of rank {} (at most {})", a.shape.size(), kMaxNpyRank));
  const std::size_t nbytes = a.size() * dtype_size(a.dtype);
  if (a.data.size() != nbytes)
    throw InputError(fmt::format("cannot write a .npy array: shape {} of {} needs {} bytes, the array holds {}",
                                 a.shape_string(), to_string(a.dtype), nbytes, a.data.size()));
  std::string dict = fmt::format("{{'descr': '{}', 'fortran_order': False, 'shape': {}, }}", npy_descr(a.dtype),
                                 shape_text(a.shape));
  // v1.0 has a uint16 header length; fall back to v2.0 (uint32) for huge shapes, as numpy does.
  int version = 1;
  std::size_t prefix = 10;
  auto padded = [&](std::size_t pre) { return (pre + dict.size() + 1 + kAlign - 1) / kAlign * kAlign - pre; };
  std::size_t hlen = padded(prefix);
  if (hlen > 0xFFFF) version = 2, prefix = 12, hlen = padded(prefix);
  dict.resize(hlen - 1, ' ');
  dict.push_back('\n');

  std::vector<std::byte> out;
  out.reserve(prefix + hlen + nbytes);
  for (unsigned char c : kMagic) out.push_back(std::byte{c});
  out.push_back(std::byte(version));
  out.push_back(std::byte{0});
  for (std::size_t k = 0; k < prefix - 8; ++k) out.push_back(std::byte((hlen >> (8 * k)) & 0xFF));
  for (char c : dict) out.push_back(static_cast<std::byte>(c));
  out.insert(out.end(), a.data.begin(), a.data.end());
  return out;
}

void write_npy(const std::filesystem::path& file, const NpyArray& a) {
  const std::vector<std::byte> bytes = serialize_npy(a);  // validate before touching the filesystem
  write_atomically(file, [&](const std::filesystem::path& tmp) { write_bytes(tmp, bytes.data(), bytes.size(), file.string()); });
}

template <class T> NpyArray make_npy(std::vector<std::size_t> shape, std::span<const T> values) {
  NpyArray a;
  a.dtype = dtype_of<T>();
  a.shape = std::move(shape);
  if (a.size() != values.size())
    throw std::invalid_argument(fmt::format("make_npy: shape {} needs {} values, got {}", a.shape_string(), a.size(),
                                            values.size()));
  a.data.resize(values.size() * sizeof(T));
  if (!values.empty()) std::memcpy(a.data.data(), values.data(), a.data.size());
  return a;
}

template NpyArray make_npy<float>(std::vector<std::size_t>, std::span<const float>);
template NpyArray make_npy<double>(std::vector<std::size_t>, std::span<const double>);
template NpyArray make_npy<std::uint8_t>(std::vector<std::size_t>, std::span<const std::uint8_t>);
template NpyArray make_npy<std::uint16_t>(std::vector<std::size_t>, std::span<const std::uint16_t>);
template NpyArray make_npy<std::uint32_t>(std::vector<std::size_t>, std::span<const std::uint32_t>);
template NpyArray make_npy<std::int8_t>(std::vector<std::size_t>, std::span<const std::int8_t>);
template NpyArray make_npy<std::int16_t>(std::vector<std::size_t>, std::span<const std::int16_t>);
template NpyArray make_npy<std::int32_t>(std::vector<std::size_t>, std::span<const std::int32_t>);
template NpyArray make_npy<std::int64_t>(std::vector<std::size_t>, std::span<const std::int64_t>);
template NpyArray make_npy<bool>(std::vector<std::size_t>, std::span<const bool>);

}  // namespace fp8flow::io
