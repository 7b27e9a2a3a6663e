#include "ir/dtype.h"

#include <array>
#include <bit>
#include <cmath>
#include <cstring>

namespace slmops::ir {
namespace {

constexpr std::array<DTypeTraits, kDTypeCount> kTraits = {{
    {"undefined", 0, false, false, false},
    {"float", 32, true, true, false},
    {"uint8", 8, false, false, true},
    {"int8", 8, false, true, true},
    {"uint16", 16, false, false, true},
    {"int16", 16, false, true, true},
    {"int32", 32, false, true, true},
    {"int64", 64, false, true, true},
    {"string", 0, false, false, false},
    {"bool", 8, false, false, false},
    {"float16", 16, true, true, false},
    {"double", 64, true, true, false},
    {"uint32", 32, false, false, true},
    {"uint64", 64, false, false, true},
    {"complex64", 64, false, true, false},
    {"complex128", 128, false, true, false},
    {"bfloat16", 16, true, true, false},
    {"float8e4m3fn", 8, true, true, false},
    {"float8e4m3fnuz", 8, true, true, false},
    {"float8e5m2", 8, true, true, false},
    {"float8e5m2fnuz", 8, true, true, false},
    {"uint4", 4, false, false, true},
    {"int4", 4, false, true, true},
    {"float4e2m1", 4, true, true, false},
}};
static_assert(kTraits.size() == kDTypeCount, "one traits row per DType");
static_assert(static_cast<int>(DType::Float4E2M1) == kDTypeCount - 1, "traits table covers the enum");

}  // namespace

const DTypeTraits& traits(DType t) {
  auto i = static_cast<int>(t);
  return kTraits[(i >= 0 && i < kDTypeCount) ? i : 0];
}

bool is_known_dtype(int32_t code) { return code > 0 && code < kDTypeCount; }

std::optional<DType> dtype_from_name(std::string_view name) {
  for (int i = 1; i < kDTypeCount; ++i)
    if (kTraits[i].name == name) return static_cast<DType>(i);
  if (name == "fp32" || name == "float32") return DType::Float;
  if (name == "fp16") return DType::Float16;
  if (name == "bf16") return DType::BFloat16;
  return std::nullopt;
}

size_t storage_bytes(DType t, uint64_t count) {
  int bits = traits(t).bits;
  return static_cast<size_t>((count * static_cast<uint64_t>(bits) + 7) / 8);
}

float half_to_float(uint16_t h) {
  uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1f;
  uint32_t mant = h & 0x3ff;
  uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: value = mant * 2^-24
      float f = std::ldexp(static_cast<float>(mant), -24);
      return sign ? -f : f;
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | (mant << 13);
  } else {
    bits = sign | ((exp + 112) << 23) | (mant << 13);
  }
  return std::bit_cast<float>(bits);
}

uint16_t float_to_half(float f) {
  uint32_t x = std::bit_cast<uint32_t>(f);
  uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000);
  uint32_t absx = x & 0x7fffffffu;
  if (absx >= 0x7f800000u)  // inf or nan
    return sign | 0x7c00 | (absx > 0x7f800000u ? 0x200 : 0);
  if (absx >= 0x477ff000u)  // rounds to >= 65520: overflow to inf
    return sign | 0x7c00;
  if (absx < 0x38800000u) {  // below the smallest normal half: subnormal or zero
    // value / 2^-24, rounded to nearest even
    float v = std::bit_cast<float>(absx) * 16777216.0f;
    float r = std::nearbyint(v);
    return sign | static_cast<uint16_t>(r);
  }
  uint32_t mant = absx & 0x7fffff;
  uint32_t exp = (absx >> 23) - 112;
  uint32_t h = (exp << 10) | (mant >> 13);
  uint32_t rest = mant & 0x1fff;
  if (rest > 0x1000 || (rest == 0x1000 && (h & 1))) ++h;  // round half to even
  return sign | static_cast<uint16_t>(h);
}

float bfloat16_to_float(uint16_t b) { return std::bit_cast<float>(static_cast<uint32_t>(b) << 16); }

uint16_t float_to_bfloat16(float f) {
  uint32_t x = std::bit_cast<uint32_t>(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((x >> 16) | 0x40);  // quiet nan
  uint32_t lsb = (x >> 16) & 1;
  x += 0x7fff + lsb;
  return static_cast<uint16_t>(x >> 16);
}

double element_as_double(DType t, const void* data, uint64_t i) {
  auto p = static_cast<const uint8_t*>(data);
  auto load = [&](auto tag) {
    using T = decltype(tag);
    T v;
    std::memcpy(&v, p + i * sizeof(T), sizeof(T));
    return static_cast<double>(v);
  };
  switch (t) {
    case DType::Float: return load(float{});
    case DType::Double: return load(double{});
    case DType::UInt8: return load(uint8_t{});
    case DType::Int8: return load(int8_t{});
    case DType::UInt16: return load(uint16_t{});
    case DType::Int16: return load(int16_t{});
    case DType::Int32: return load(int32_t{});
    case DType::Int64: return load(int64_t{});
    case DType::UInt32: return load(uint32_t{});
    case DType::UInt64: return load(uint64_t{});
    case DType::Bool: return p[i] ? 1.0 : 0.0;
    case DType::Float16: {
      uint16_t h;
      std::memcpy(&h, p + i * 2, 2);
      return half_to_float(h);
    }
    case DType::BFloat16: {
      uint16_t h;
      std::memcpy(&h, p + i * 2, 2);
      return bfloat16_to_float(h);
    }
    case DType::UInt4:
    case DType::Int4: {
      // first element in the low nibble, second in the high nibble
      uint8_t byte = p[i / 2];
      int v = (i % 2 == 0) ? (byte & 0x0f) : (byte >> 4);
      if (t == DType::Int4 && v >= 8) v -= 16;
      return v;
    }
    default: return std::nan("");
  }
}

}  // namespace slmops::ir
