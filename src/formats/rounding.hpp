// Rounding modes and overflow policies: named, passed explicitly, never defaulted in library code.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace fp8flow {

enum class Rounding {
  rne,         // to nearest, ties to even (IEEE default; CUDA cvt.rn)
  rz,          // toward zero (truncate)
  ru,          // toward +inf
  rd,          // toward -inf
  rna,         // to nearest, ties away from zero
  stochastic,  // up with probability (x - down) / (up - down); random bits from Philox (see philox.hpp)
};

// What happens to a finite value beyond the largest finite code, and to +-Inf.
enum class Overflow {
  satfinite,  // clamp to +-max finite (CUDA __NV_SATFINITE, PTX cvt.*.satfinite, TE, Triton, CUTLASS)
  nonsat,     // IEEE-like: Inf where the format has it, else NaN (CUDA __NV_NOSAT, torch, ml_dtypes)
};

struct CastPolicy {
  Rounding rounding;
  Overflow overflow;
  friend constexpr bool operator==(CastPolicy, CastPolicy) = default;
};

inline constexpr CastPolicy kRneSatfinite{Rounding::rne, Overflow::satfinite};
inline constexpr CastPolicy kRneNonsat{Rounding::rne, Overflow::nonsat};

std::string_view to_string(Rounding r);
std::string_view to_string(Overflow o);
Rounding parse_rounding(std::string_view s);  // throws std::invalid_argument naming the value and the choices
Overflow parse_overflow(std::string_view s);
inline constexpr std::string_view kRoundingNames = "rne, rz, ru, rd, rna, stochastic";
inline constexpr std::string_view kOverflowNames = "satfinite, nonsat";

}  // namespace fp8flow
