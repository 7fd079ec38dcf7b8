// The format table and the generic encoder on hand-checked points from the OCP FP8 / MX specs.
#include <catch2/catch.hpp>

#include <fmt/format.h>

#include <cmath>
#include <limits>

#include "formats/convert.hpp"

using namespace fp8flow;

TEST_CASE("e4m3 encoding follows OCP FP8", "[formats][e4m3]") {
  SECTION("a tie rounds to the even mantissa") {
    CHECK(encode(e4m3, 4.25, kRneSatfinite) == 0x48);   // halfway between 4.0 (0x48) and 4.5 (0x49)
    CHECK(encode(e4m3, 4.75, kRneSatfinite) == 0x4A);   // halfway between 4.5 and 5.0: even is 5.0
  }
  SECTION("464 is the overflow tie: it rounds to 448, anything above overflows") {
    CHECK(encode(e4m3, 464.0, kRneNonsat) == 0x7E);
    CHECK(encode(e4m3, std::nextafter(464.0, 1e9), kRneNonsat) == 0x7F);
    CHECK(encode(e4m3, std::nextafter(464.0, 1e9), kRneSatfinite) == 0x7E);
    CHECK(encode(e4m3, -1e9, kRneSatfinite) == 0xFE);
  }
  SECTION("Inf saturates or becomes NaN keeping its sign (CUDA __NV_NOSAT); an input NaN loses its sign") {
    const double inf = std::numeric_limits<double>::infinity();
    CHECK(encode(e4m3, inf, kRneSatfinite) == 0x7E);
    CHECK(encode(e4m3, -inf, kRneSatfinite) == 0xFE);
    CHECK(encode(e4m3, -inf, kRneNonsat) == 0xFF);
    CHECK(encode(e4m3, -500.0, kRneNonsat) == 0xFF);
    CHECK(encode(e4m3, -std::numeric_limits<double>::quiet_NaN(), kRneSatfinite) == 0x7F);
  }
  SECTION("subnormals and underflow") {
    CHECK(encode(e4m3, std::ldexp(1.0, -9), kRneSatfinite) == 0x01);
    CHECK(encode(e4m3, std::ldexp(1.0, -10), kRneSatfinite) == 0x00);   // tie to even zero
    CHECK(encode(e4m3, -std::ldexp(1.0, -10), kRneSatfinite) == 0x80);  // tiny negatives keep the sign
    CHECK(encode(e4m3, std::ldexp(1.5, -10), kRneSatfinite) == 0x01);
    CHECK(encode(e4m3, std::ldexp(7.5, -9), kRneSatfinite) == 0x08);     // rounds up into the min normal
  }
  SECTION("float64 rounds once: no double rounding through float32") {
    const double x = 1.0625 + std::ldexp(1.0, -40);
    CHECK(encode(e4m3, x, kRneSatfinite) == 0x39);                     // 1.125
    CHECK(encode(e4m3, static_cast<float>(x), kRneSatfinite) == 0x38);  // float32 rounds to 1.0625 -> tie -> 1.0
  }
  SECTION("every non-NaN code survives decode then encode") {
    for (unsigned c = 0; c < 256; ++c) {
      if (is_nan_code(e4m3, c)) continue;
      INFO(fmt::format("code 0x{:02X}", c));
      CHECK(encode(e4m3, decode(e4m3, c), kRneNonsat) == c);
    }
  }
}

TEST_CASE("e5m2 has Inf and overflow at 61440 goes up", "[formats][e5m2]") {
  CHECK(encode(e5m2, 57344.0, kRneNonsat) == 0x7B);
  CHECK(encode(e5m2, 61440.0, kRneNonsat) == 0x7C);
  CHECK(encode(e5m2, 61440.0, kRneSatfinite) == 0x7B);
  CHECK(encode(e5m2, std::nextafter(61440.0, 0.0), kRneNonsat) == 0x7B);
  CHECK(std::isinf(decode(e5m2, 0xFC)));
  CHECK(encode(e5m2, std::ldexp(1.0, -17), kRneNonsat) == 0x00);
}

TEST_CASE("fnuz formats have no negative zero and one NaN", "[formats][fnuz]") {
  CHECK(encode(e4m3fnuz, -0.0, kRneSatfinite) == 0x00);
  CHECK(encode(e4m3fnuz, -std::ldexp(1.0, -12), kRneSatfinite) == 0x00);
  CHECK(encode(e4m3fnuz, 240.0, kRneNonsat) == 0x7F);
  CHECK(encode(e4m3fnuz, 1e6, kRneNonsat) == 0x80);
  CHECK(std::isnan(decode(e4m3fnuz, 0x80)));
  CHECK(decode(e4m3fnuz, 0x01) == std::ldexp(1.0, -10));
}

TEST_CASE("directed rounding", "[formats][rounding]") {
  const double x = 1.0 + std::ldexp(1.0, -5);  // between 1.0 (0x38) and 1.125 (0x39)
  CHECK(encode(e4m3, x, {Rounding::rz, Overflow::nonsat}) == 0x38);
  CHECK(encode(e4m3, x, {Rounding::ru, Overflow::nonsat}) == 0x39);
  CHECK(encode(e4m3, -x, {Rounding::ru, Overflow::nonsat}) == 0xB8);
  CHECK(encode(e4m3, -x, {Rounding::rd, Overflow::nonsat}) == 0xB9);
  CHECK(encode(e4m3, 1.0625, {Rounding::rna, Overflow::nonsat}) == 0x39);  // tie away
  CHECK(encode(e4m3, 1e6, {Rounding::rz, Overflow::nonsat}) == 0x7E);      // IEEE: rz overflow -> max
  CHECK(encode(e5m2, 1e6, {Rounding::rz, Overflow::nonsat}) == 0x7B);
  CHECK(encode(e5m2, 1e6, {Rounding::ru, Overflow::nonsat}) == 0x7C);
  CHECK(encode(e5m2, -1e6, {Rounding::ru, Overflow::nonsat}) == 0xFB);
}

TEST_CASE("ue8m0 rules", "[formats][ue8m0]") {
  CHECK(ue8m0_from_float(1.0f, Ue8m0Rule::ceil, Overflow::satfinite) == 127);
  CHECK(ue8m0_from_float(1.5f, Ue8m0Rule::ceil, Overflow::satfinite) == 128);
  CHECK(ue8m0_from_float(0.0f, Ue8m0Rule::ceil, Overflow::satfinite) == 1);
  CHECK(ue8m0_from_float(1.5f, Ue8m0Rule::rz, Overflow::satfinite) == 127);
  CHECK(ue8m0_from_float(1.5f, Ue8m0Rule::ru, Overflow::satfinite) == 128);
  CHECK(ue8m0_from_float(-1.5f, Ue8m0Rule::ru, Overflow::satfinite) == 128);
  CHECK(ue8m0_from_float(std::ldexp(1.0f, -127), Ue8m0Rule::rz, Overflow::satfinite) == 0);
  CHECK(ue8m0_from_float(std::ldexp(1.0f, -127), Ue8m0Rule::ru, Overflow::satfinite) == 0);
  CHECK(ue8m0_from_float(std::ldexp(1.5f, -127), Ue8m0Rule::ru, Overflow::satfinite) == 1);
  CHECK(ue8m0_from_float(INFINITY, Ue8m0Rule::rz, Overflow::satfinite) == 0xFE);
  CHECK(ue8m0_from_float(INFINITY, Ue8m0Rule::rz, Overflow::nonsat) == 0xFF);
  CHECK(decode(ue8m0, 0) == std::ldexp(1.0, -127));
  CHECK(decode_f32(ue8m0, 0) == std::ldexp(1.0f, -127));
  CHECK(decode(ue8m0, 0xFE) == std::ldexp(1.0, 127));
}
