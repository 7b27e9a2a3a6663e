#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstring>

#include "ir/dtype.h"

using namespace slmops::ir;

TEST_CASE("dtype traits follow ONNX codes and sizes") {
  CHECK(dtype_name(DType::Float) == "float");
  CHECK(traits(DType::Int4).bits == 4);
  CHECK(traits(DType::BFloat16).bits == 16);
  CHECK(storage_bytes(DType::Int4, 5) == 3);   // packed, rounded up
  CHECK(storage_bytes(DType::Float, 5) == 20);
  CHECK(dtype_from_name("uint4") == DType::UInt4);
  CHECK(!dtype_from_name("int3").has_value());
  CHECK(is_known_dtype(22));
  CHECK(!is_known_dtype(99));
}

TEST_CASE("float16 conversion round-trips every finite half and rounds to nearest even") {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    uint16_t x = static_cast<uint16_t>(h);
    if ((x & 0x7c00) == 0x7c00 && (x & 0x3ff)) continue;  // nan payloads are not preserved exactly
    CHECK_MESSAGE(float_to_half(half_to_float(x)) == x, "half bits ", h);
  }
  CHECK(float_to_half(65504.f) == 0x7bff);
  CHECK(float_to_half(65520.f) == 0x7c00);             // rounds up to inf
  CHECK(float_to_half(1.0f + 1.0f / 2048) == 0x3c00);  // halfway: ties to even (down)
  CHECK(float_to_half(1.0f + 3.0f / 2048) == 0x3c02);  // halfway: ties to even (up)
  CHECK(half_to_float(0x0001) == std::ldexp(1.0f, -24));
}

TEST_CASE("bfloat16 rounds to nearest even") {
  CHECK(float_to_bfloat16(1.0f) == 0x3f80);
  float halfway;
  uint32_t bits = 0x3f808000;  // exactly between 0x3f80 and 0x3f81
  std::memcpy(&halfway, &bits, 4);
  CHECK(float_to_bfloat16(halfway) == 0x3f80);
  bits = 0x3f818000;
  std::memcpy(&halfway, &bits, 4);
  CHECK(float_to_bfloat16(halfway) == 0x3f82);
  CHECK(bfloat16_to_float(0x4049) == doctest::Approx(3.140625));
}

TEST_CASE("int4 elements: first in the low nibble") {
  const uint8_t packed[] = {0x8f, 0x07};  // elements: 15 (-1), 8 (-8), 7, 0
  CHECK(element_as_double(DType::Int4, packed, 0) == -1);
  CHECK(element_as_double(DType::Int4, packed, 1) == -8);
  CHECK(element_as_double(DType::Int4, packed, 2) == 7);
  CHECK(element_as_double(DType::UInt4, packed, 0) == 15);
  CHECK(element_as_double(DType::UInt4, packed, 1) == 8);
}
