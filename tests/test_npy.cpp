// The .npy reader and writer (src/io/npy.*): round trips of every dtype, and files written byte by byte
// here (Fortran order, big endian, v1/v2/v3 headers) as numpy's format.py specifies them.
#include <catch2/catch.hpp>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <unistd.h>
#include <vector>

#include "io/atomic_write.hpp"
#include "io/npy.hpp"

using namespace fp8flow;
using namespace fp8flow::io;
namespace fs = std::filesystem;

namespace {

fs::path temp_dir() {
  const fs::path d = fs::temp_directory_path() / ("fp8flow-test-npy-" + std::to_string(::getpid()));
  fs::create_directories(d);
  return d;
}

void write_bytes(const fs::path& p, const std::vector<std::byte>& b) {
  std::ofstream out(p, std::ios::binary);
  out.write(reinterpret_cast<const char*>(b.data()), std::streamsize(b.size()));
}

std::vector<std::byte> read_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::vector<char> c((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::byte> b(c.size());
  std::memcpy(b.data(), c.data(), c.size());
  return b;
}

// A .npy image as numpy writes it: magic, version, header length (2 bytes in v1, 4 in v2/v3), the dict
// padded with spaces to a 64-byte boundary and ended by '\n', then the raw data.
std::vector<std::byte> npy_image(int major, std::string dict, const std::vector<std::uint8_t>& data) {
  const std::size_t prefix = major == 1 ? 10 : 12;
  const std::size_t total = (prefix + dict.size() + 1 + 63) / 64 * 64;
  dict.resize(total - prefix - 1, ' ');
  dict.push_back('\n');
  std::vector<std::byte> b;
  for (unsigned char c : std::string("\x93NUMPY")) b.push_back(std::byte(c));
  b.push_back(std::byte(major));
  b.push_back(std::byte(0));
  for (std::size_t k = 0; k < prefix - 8; ++k) b.push_back(std::byte((dict.size() >> (8 * k)) & 0xFF));
  for (char c : dict) b.push_back(std::byte(c));
  for (auto v : data) b.push_back(std::byte(v));
  return b;
}

std::string error_of(const std::vector<std::byte>& image) {
  try {
    parse_npy(image, "x.npy");
  } catch (const InputError& e) {
    return e.what();
  }
  return "(no error)";
}

template <class T> void check_round_trip(std::vector<std::size_t> shape, std::vector<T> values) {
  const NpyArray a = make_npy<T>(shape, std::span<const T>(values));
  const NpyArray b = parse_npy(serialize_npy(a), "mem.npy");
  CHECK(b.dtype == a.dtype);
  CHECK(b.shape == shape);
  const auto v = b.template view<T>();
  CHECK(std::equal(v.begin(), v.end(), values.begin(), values.end()));
}

}  // namespace

TEST_CASE("npy round trips every dtype and rank", "[io][npy]") {
  check_round_trip<float>({2, 3}, {1.5f, -2.f, 0.f, -0.f, 1e-40f, 3.4e38f});
  check_round_trip<double>({3}, {0.1, -1e300, 5e-324});
  check_round_trip<std::uint8_t>({2, 2}, {0, 1, 0x7f, 0xff});
  check_round_trip<std::uint16_t>({1, 1, 2}, {0x3f80, 0xffff});
  check_round_trip<std::uint32_t>({1}, {0xdeadbeef});
  check_round_trip<std::int8_t>({2}, {-128, 127});
  check_round_trip<std::int16_t>({2}, {-32768, 32767});
  check_round_trip<std::int32_t>({2}, {-5, 7});
  check_round_trip<std::int64_t>({2}, {-(1ll << 62), 1ll << 40});
  check_round_trip<float>({}, {42.f});                             // rank 0: one element, shape ()
  check_round_trip<float>({0, 3}, {});                             // empty
  check_round_trip<std::uint8_t>({1, 1, 1, 1, 1, 1, 1, 2}, {7, 9});  // rank 8
  SECTION("bool") {
    const bool vals[] = {true, false, true};
    const NpyArray b = parse_npy(serialize_npy(make_npy<bool>({3}, std::span<const bool>(vals))), "mem.npy");
    CHECK(b.dtype == DType::boolean);
    CHECK(b.view<std::uint8_t>()[0] == 1);
    CHECK(b.view<std::uint8_t>()[1] == 0);
  }
  SECTION("f16 and bf16 data are tagged float16 / stored as uint16") {
    const std::vector<std::uint16_t> v{0x3c00, 0x7c00};
    NpyArray a = make_npy<std::uint16_t>({2}, v);
    a.dtype = DType::f16;
    CHECK(parse_npy(serialize_npy(a), "m").dtype == DType::f16);
    a.dtype = DType::bf16;
    CHECK(npy_descr(DType::bf16) == "<u2");
    CHECK(parse_npy(serialize_npy(a), "m").dtype == DType::u16);
  }
}

TEST_CASE("npy writer follows numpy's layout", "[io][npy]") {
  const std::vector<float> v{1.f, 2.f};
  const auto bytes = serialize_npy(make_npy<float>({2}, v));
  SECTION("v1.0 header, 64-byte aligned data, numpy's dict spelling") {
    const std::string head(reinterpret_cast<const char*>(bytes.data()), bytes.size() - 8);
    CHECK(head.substr(0, 8) == std::string("\x93NUMPY\x01\x00", 8));
    CHECK(head.size() % 64 == 0);
    CHECK(head.find("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }") == 10);
    CHECK(head.back() == '\n');
  }
  SECTION("rank 0 is shape ()") {
    const std::vector<float> one{1.f};
    const auto b = serialize_npy(make_npy<float>({}, one));
    CHECK(std::string(reinterpret_cast<const char*>(b.data()), b.size()).find("'shape': ()") != std::string::npos);
  }
}

TEST_CASE("npy reader handles v1 v2 v3 headers and byte order and Fortran order", "[io][npy]") {
  const std::vector<std::uint8_t> le{0x00, 0x00, 0xc0, 0x3f, 0x00, 0x00, 0x20, 0xc1};  // 1.5f, -10.f
  const std::vector<std::uint8_t> be{0x3f, 0xc0, 0x00, 0x00, 0xc1, 0x20, 0x00, 0x00};
  for (int major : {1, 2, 3}) {
    INFO("version " << major << ".0");
    const auto a = parse_npy(npy_image(major, "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", le), "m");
    CHECK(a.view<float>()[0] == 1.5f);
    CHECK(a.view<float>()[1] == -10.f);
  }
  SECTION("big endian is byteswapped to native") {
    const auto a = parse_npy(npy_image(1, "{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }", be), "m");
    CHECK(a.view<float>()[0] == 1.5f);
    CHECK(a.view<float>()[1] == -10.f);
    const auto u = parse_npy(npy_image(1, "{'descr': '>u2', 'fortran_order': False, 'shape': (1,), }", {0x12, 0x34}), "m");
    CHECK(u.view<std::uint16_t>()[0] == 0x1234);
    const auto d = parse_npy(
        npy_image(1, "{'descr': '>f8', 'fortran_order': False, 'shape': (), }", {0x3f, 0xb9, 0x99, 0x99, 0x99, 0x99, 0x99, 0x9a}), "m");
    CHECK(d.view<double>()[0] == 0.1);
  }
  SECTION("Fortran order is converted to C order") {
    // numpy: np.asfortranarray(np.arange(6, dtype='<i2').reshape(2, 3)) stores 0 3 1 4 2 5.
    const std::vector<std::uint8_t> f{0, 0, 3, 0, 1, 0, 4, 0, 2, 0, 5, 0};
    const auto a = parse_npy(npy_image(1, "{'descr': '<i2', 'fortran_order': True, 'shape': (2, 3), }", f), "m");
    REQUIRE(a.shape == std::vector<std::size_t>{2, 3});
    for (int i = 0; i < 6; ++i) CHECK(a.view<std::int16_t>()[i] == i);
    // Rank 3: element (i, j, k) of shape (2, 3, 2) sits at i + 2j + 6k in Fortran order.
    std::vector<std::uint8_t> f3(12);
    for (int i = 0; i < 2; ++i)
      for (int j = 0; j < 3; ++j)
        for (int k = 0; k < 2; ++k) f3[i + 2 * j + 6 * k] = std::uint8_t(100 + 6 * i + 2 * j + k);
    const auto b = parse_npy(npy_image(1, "{'descr': '|u1', 'fortran_order': True, 'shape': (2, 3, 2), }", f3), "m");
    for (int c = 0; c < 12; ++c) CHECK(b.view<std::uint8_t>()[c] == 100 + c);
  }
  SECTION("key order, double quotes and a missing trailing comma are accepted") {
    const auto a = parse_npy(npy_image(1, "{\"shape\": (2,), \"fortran_order\": False, \"descr\": \"<f4\"}", le), "m");
    CHECK(a.view<float>()[1] == -10.f);
  }
}

TEST_CASE("npy reader rejects bad files with the file name and the problem", "[io][npy]") {
  const std::string ok = "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }";
  const std::vector<std::uint8_t> data(8, 0);
  using Catch::Matchers::Contains;
  SECTION("wrong magic") {
    auto img = npy_image(1, ok, data);
    img[1] = std::byte('X');
    CHECK_THAT(error_of(img), Contains("x.npy") && Contains("wrong magic"));
  }
  SECTION("truncated data, header or length") {
    auto img = npy_image(1, ok, data);
    img.pop_back();
    CHECK_THAT(error_of(img), Contains("x.npy") && Contains("truncated") && Contains("needs 8 data bytes, found 7"));
    img.resize(40);
    CHECK_THAT(error_of(img), Contains("truncated") && Contains("header"));
    img.resize(9);
    CHECK_THAT(error_of(img), Contains("truncated"));
  }
  SECTION("trailing bytes") {
    auto img = npy_image(1, ok, data);
    img.push_back(std::byte{0});
    CHECK_THAT(error_of(img), Contains("1 unexpected bytes"));
  }
  SECTION("unknown version") {
    auto img = npy_image(1, ok, data);
    img[6] = std::byte{4};
    CHECK_THAT(error_of(img), Contains("version 4.0"));
  }
  SECTION("unsupported dtypes are named and explained") {
    auto descr = [&](std::string d) { return "{'descr': " + d + ", 'fortran_order': False, 'shape': (1,), }"; };
    CHECK_THAT(error_of(npy_image(1, descr("'<c8'"), data)), Contains("x.npy") && Contains("'<c8'") && Contains("complex"));
    CHECK_THAT(error_of(npy_image(1, descr("'|O'"), data)), Contains("object"));
    CHECK_THAT(error_of(npy_image(1, descr("[('a', '<f4'), ('b', '<i4')]"), data)), Contains("structured"));
    CHECK_THAT(error_of(npy_image(1, descr("'<U3'"), data)), Contains("string"));
    CHECK_THAT(error_of(npy_image(1, descr("'<u8'"), data)), Contains("element size"));
  }
  SECTION("malformed headers") {
    CHECK_THAT(error_of(npy_image(1, "{'descr': '<f4', 'shape': (2,), }", data)), Contains("no 'fortran_order'"));
    CHECK_THAT(error_of(npy_image(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2,) ", data)), Contains("bad .npy header"));
    CHECK_THAT(error_of(npy_image(1, "{'descr': '<f4', 'fortran_order': 0, 'shape': (2,), }", data)), Contains("fortran_order"));
    CHECK_THAT(error_of(npy_image(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (-2,), }", data)), Contains("shape"));
    CHECK_THAT(error_of(npy_image(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1,1,1,1,1,1,1,1,1), }", data)),
               Contains("rank 9"));
  }
  SECTION("a missing file") {
    CHECK_THROWS_WITH(read_npy("/nonexistent/dir/in.npy"), Contains("/nonexistent/dir/in.npy") && Contains("cannot open"));
  }
}

TEST_CASE("npy views check the element type", "[io][npy]") {
  const std::vector<float> v{1.f};
  const NpyArray a = make_npy<float>({1}, v);
  CHECK_THROWS_AS(a.view<double>(), InputError);
  CHECK_THROWS_AS(a.view<std::uint32_t>(), InputError);
  CHECK(a.view<float>().size() == 1);
  CHECK_THROWS_AS(make_npy<float>({2}, v), std::invalid_argument);
}

TEST_CASE("write_npy is atomic", "[io][npy]") {
  const fs::path dir = temp_dir();
  const fs::path file = dir / "out.npy";
  const std::vector<float> old_values{1.f, 2.f, 3.f};
  write_npy(file, make_npy<float>({3}, old_values));
  const auto before = read_bytes(file);
  SECTION("a file round-trips through disk") {
    CHECK(read_npy(file).view<float>()[2] == 3.f);
  }
  SECTION("an inconsistent array is refused before the file is touched") {
    NpyArray bad = make_npy<float>({3}, old_values);
    bad.shape = {4};
    CHECK_THROWS_AS(write_npy(file, bad), InputError);
    CHECK(read_bytes(file) == before);
  }
  SECTION("a failing rename leaves the old file and no temporary") {
    // The destination is a non-empty directory: the temporary is written, the rename fails.
    const fs::path blocked = dir / "blocked.npy";
    fs::create_directories(blocked / "keep");
    CHECK_THROWS_AS(write_npy(blocked, make_npy<float>({3}, old_values)), InputError);
    CHECK(fs::is_directory(blocked / "keep"));
    CHECK_FALSE(fs::exists(partial_path(blocked)));
  }
  SECTION("an unwritable directory gives an error naming the file") {
    CHECK_THROWS_WITH(write_npy("/nonexistent/dir/out.npy", make_npy<float>({3}, old_values)),
                      Catch::Matchers::Contains("/nonexistent/dir/out.npy"));
  }
  for (const auto& e : fs::directory_iterator(dir))
    CHECK((e.path().filename() == "out.npy" || e.path().filename() == "blocked.npy"));
  fs::remove_all(dir);
}
