// fp8flow-dump-codes: writes our codes and decoded values as raw little-endian files, for the Python
// oracle (tests/oracles/ml_dtypes_oracle.py) to compare with ml_dtypes. Not a user tool: the CLI is.
//
//   fp8flow-dump-codes decode FORMAT OUT.f64
//       every code 0 .. 2^bits - 1 of FORMAT decoded to float64
//   fp8flow-dump-codes encode FORMAT ROUNDING OVERFLOW scalar|batch f32|f64 IN OUT
//       IN: raw float32 or float64 values; OUT: one code per element, uint8 (<= 8-bit formats) or
//       uint16 (bf16, f16)
//   fp8flow-dump-codes ue8m0 RULE OVERFLOW scalar|batch IN.f32 OUT.u8
//
// Exit status: 0 done, 1 bad input file, 2 usage.
#include <fmt/format.h>

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "formats/batch.hpp"
#include "formats/convert.hpp"

using namespace fp8flow;

namespace {

struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

template <class T>
std::vector<T> read_raw(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) throw std::runtime_error(fmt::format("{}: cannot open", path));
  const auto size = static_cast<std::size_t>(in.tellg());
  if (size % sizeof(T) != 0)
    throw std::runtime_error(fmt::format("{}: {} bytes is not a whole number of {}-byte values", path, size, sizeof(T)));
  std::vector<T> v(size / sizeof(T));
  in.seekg(0);
  in.read(reinterpret_cast<char*>(v.data()), std::streamsize(size));
  if (!in) throw std::runtime_error(fmt::format("{}: read failed", path));
  return v;
}

template <class T>
void write_raw(const std::string& path, const std::vector<T>& v) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(v.data()), std::streamsize(v.size() * sizeof(T)));
  if (!out) throw std::runtime_error(fmt::format("{}: write failed", path));
}

bool parse_api(const std::string& s) {
  if (s != "scalar" && s != "batch") throw UsageError(fmt::format("API '{}': expected scalar or batch", s));
  return s == "batch";
}

template <class In, class Code>
std::vector<Code> encode_all(const FormatSpec& f, CastPolicy p, bool batch, const std::vector<In>& in) {
  std::vector<Code> out(in.size());
  if (batch) {
    encode(f, p, std::span<const In>(in), std::span<Code>(out), {});
  } else {
    for (std::size_t i = 0; i < in.size(); ++i) out[i] = static_cast<Code>(encode(f, in[i], p));
  }
  return out;
}

template <class In>
void encode_cmd(const FormatSpec& f, CastPolicy p, bool batch, const std::string& in_path, const std::string& out_path) {
  const auto in = read_raw<In>(in_path);
  if (storage_bits(f) == 8) write_raw(out_path, encode_all<In, std::uint8_t>(f, p, batch, in));
  else if (storage_bits(f) == 16) write_raw(out_path, encode_all<In, std::uint16_t>(f, p, batch, in));
  else throw UsageError(fmt::format("format {}: only formats of at most 16 bits are dumped", f.name));
}

int run(const std::vector<std::string>& a) {
  if (a.size() == 3 && a[0] == "decode") {
    const FormatSpec& f = find_format(a[1]);
    if (total_bits(f) > 16) throw UsageError("decode: only formats of at most 16 bits");
    std::vector<double> out(std::size_t(1) << total_bits(f));
    for (std::size_t c = 0; c < out.size(); ++c) out[c] = decode(f, std::uint32_t(c));
    write_raw(a[2], out);
    return 0;
  }
  if (a.size() == 8 && a[0] == "encode") {
    const FormatSpec& f = find_format(a[1]);
    const CastPolicy p{parse_rounding(a[2]), parse_overflow(a[3])};
    const bool batch = parse_api(a[4]);
    if (a[5] == "f32") encode_cmd<float>(f, p, batch, a[6], a[7]);
    else if (a[5] == "f64") encode_cmd<double>(f, p, batch, a[6], a[7]);
    else throw UsageError(fmt::format("input type '{}': expected f32 or f64", a[5]));
    return 0;
  }
  if (a.size() == 6 && a[0] == "ue8m0") {
    const Ue8m0Rule rule = parse_ue8m0_rule(a[1]);
    const Overflow o = parse_overflow(a[2]);
    const bool batch = parse_api(a[3]);
    const auto in = read_raw<float>(a[4]);
    std::vector<std::uint8_t> out(in.size());
    if (batch) encode_ue8m0(rule, o, std::span<const float>(in), std::span<std::uint8_t>(out), {});
    else
      for (std::size_t i = 0; i < in.size(); ++i) out[i] = ue8m0_from_float(in[i], rule, o);
    write_raw(a[5], out);
    return 0;
  }
  throw UsageError("expected: decode FORMAT OUT | encode FORMAT ROUNDING OVERFLOW scalar|batch f32|f64 IN OUT | "
                   "ue8m0 RULE OVERFLOW scalar|batch IN OUT");
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(std::vector<std::string>(argv + 1, argv + argc));
  } catch (const UsageError& e) {
    fmt::print(stderr, "fp8flow-dump-codes: {}\n", e.what());
    return 2;
  } catch (const std::invalid_argument& e) {  // unknown format / rounding / overflow / rule name
    fmt::print(stderr, "fp8flow-dump-codes: {}\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    fmt::print(stderr, "fp8flow-dump-codes: {}\n", e.what());
    return 1;
  }
}
