// Element types. Enum values are ONNX's TensorProto.DataType codes so that formats/ can
// convert with a cast; the traits table below is indexed by the enum (ggml's type_traits).
#pragma once
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace slmops::ir {

enum class DType : int32_t {
  Undefined = 0,
  Float = 1,
  UInt8 = 2,
  Int8 = 3,
  UInt16 = 4,
  Int16 = 5,
  Int32 = 6,
  Int64 = 7,
  String = 8,
  Bool = 9,
  Float16 = 10,
  Double = 11,
  UInt32 = 12,
  UInt64 = 13,
  Complex64 = 14,
  Complex128 = 15,
  BFloat16 = 16,
  Float8E4M3FN = 17,
  Float8E4M3FNUZ = 18,
  Float8E5M2 = 19,
  Float8E5M2FNUZ = 20,
  UInt4 = 21,
  Int4 = 22,
  Float4E2M1 = 23,
};
inline constexpr int kDTypeCount = 24;

struct DTypeTraits {
  std::string_view name;  // ONNX spelling, lower case: "float", "int4", ...
  int bits;               // storage bits per element (4 for packed int4; 0 for string/undefined)
  bool is_float;
  bool is_signed;
  bool is_integer;
};

const DTypeTraits& traits(DType t);
inline std::string_view dtype_name(DType t) { return traits(t).name; }
bool is_known_dtype(int32_t code);
std::optional<DType> dtype_from_name(std::string_view name);

// Bytes needed to store `count` elements (sub-byte types are packed, rounded up).
size_t storage_bytes(DType t, uint64_t count);

// Scalar conversions used by reference code and tests.
float half_to_float(uint16_t h);
uint16_t float_to_half(float f);  // round to nearest even, saturates to inf like IEEE
float bfloat16_to_float(uint16_t b);
uint16_t float_to_bfloat16(float f);  // round to nearest even

// Element `i` of a buffer of type t, as double (numeric types only, not string/complex).
double element_as_double(DType t, const void* data, uint64_t i);

}  // namespace slmops::ir
