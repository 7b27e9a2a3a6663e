// Shared helpers for op implementations: type dispatch, broadcasting, attribute and input
// decoding. Kernels in runtime/kernels/ never include this (they see pointers and shapes).
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "ir/error.h"
#include "runtime/op_registry.h"
#include "runtime/value.h"

namespace slmops::runtime::ops {

// 16-bit float storage types; arithmetic converts through float.
struct Half {
  uint16_t bits;
};
struct BFloat16 {
  uint16_t bits;
};

template <typename T>
inline float to_f32(T v) {
  return static_cast<float>(v);
}
template <>
inline float to_f32(Half v) {
  return ir::half_to_float(v.bits);
}
template <>
inline float to_f32(BFloat16 v) {
  return ir::bfloat16_to_float(v.bits);
}
template <typename T>
inline T from_f32(float v) {
  return static_cast<T>(v);
}
template <>
inline Half from_f32<Half>(float v) {
  return Half{ir::float_to_half(v)};
}
template <>
inline BFloat16 from_f32<BFloat16>(float v) {
  return BFloat16{ir::float_to_bfloat16(v)};
}

template <typename T>
constexpr DType dtype_of();
template <> constexpr DType dtype_of<float>() { return DType::Float; }
template <> constexpr DType dtype_of<double>() { return DType::Double; }
template <> constexpr DType dtype_of<int8_t>() { return DType::Int8; }
template <> constexpr DType dtype_of<int16_t>() { return DType::Int16; }
template <> constexpr DType dtype_of<int32_t>() { return DType::Int32; }
template <> constexpr DType dtype_of<int64_t>() { return DType::Int64; }
template <> constexpr DType dtype_of<uint8_t>() { return DType::UInt8; }
template <> constexpr DType dtype_of<uint16_t>() { return DType::UInt16; }
template <> constexpr DType dtype_of<uint32_t>() { return DType::UInt32; }
template <> constexpr DType dtype_of<uint64_t>() { return DType::UInt64; }
template <> constexpr DType dtype_of<bool>() { return DType::Bool; }
template <> constexpr DType dtype_of<Half>() { return DType::Float16; }
template <> constexpr DType dtype_of<BFloat16>() { return DType::BFloat16; }

// Calls fn(T{}) with the C++ type of `dt`. Types outside `Mask` throw an error naming `what`.
enum TypeSet : unsigned {
  kFloats = 1,       // float, double
  kHalfs = 2,        // float16, bfloat16
  kSigned = 4,       // int8..int64
  kUnsigned = 8,     // uint8..uint64
  kBool = 16,
  kNumeric = kFloats | kHalfs | kSigned | kUnsigned,
  kAll = kNumeric | kBool,
};

[[noreturn]] inline void unsupported_type(DType dt, const char* what) {
  bad_input("{} does not support element type {}", what, ir::dtype_name(dt));
}

template <unsigned Mask = kAll, typename Fn>
inline void dispatch(DType dt, const char* what, Fn&& fn) {
  switch (dt) {
    case DType::Float: if constexpr (Mask & kFloats) return fn(float{}); break;
    case DType::Double: if constexpr (Mask & kFloats) return fn(double{}); break;
    case DType::Float16: if constexpr (Mask & kHalfs) return fn(Half{}); break;
    case DType::BFloat16: if constexpr (Mask & kHalfs) return fn(BFloat16{}); break;
    case DType::Int8: if constexpr (Mask & kSigned) return fn(int8_t{}); break;
    case DType::Int16: if constexpr (Mask & kSigned) return fn(int16_t{}); break;
    case DType::Int32: if constexpr (Mask & kSigned) return fn(int32_t{}); break;
    case DType::Int64: if constexpr (Mask & kSigned) return fn(int64_t{}); break;
    case DType::UInt8: if constexpr (Mask & kUnsigned) return fn(uint8_t{}); break;
    case DType::UInt16: if constexpr (Mask & kUnsigned) return fn(uint16_t{}); break;
    case DType::UInt32: if constexpr (Mask & kUnsigned) return fn(uint32_t{}); break;
    case DType::UInt64: if constexpr (Mask & kUnsigned) return fn(uint64_t{}); break;
    case DType::Bool: if constexpr (Mask & kBool) return fn(bool{}); break;
    default: break;
  }
  unsupported_type(dt, what);
}

// Numpy-style broadcast of shapes; throws naming the shapes when they do not broadcast.
std::vector<int64_t> broadcast_shapes(const std::vector<std::vector<int64_t>>& shapes);

// Element strides of `shape` laid into `out` (right-aligned); 0 where broadcast.
std::vector<int64_t> broadcast_strides(const std::vector<int64_t>& shape, const std::vector<int64_t>& out);

// Row-major strides of a shape.
std::vector<int64_t> strides_of(const std::vector<int64_t>& shape);

// Visits every element of `out` shape: fn(out_index, {offset in input k ...}). Inner loop is
// over the last dimension, so offsets advance by a constant stride there.
template <size_t N, typename Fn>
void for_each_broadcast(const std::vector<int64_t>& out, const std::array<std::vector<int64_t>, N>& in_strides,
                        Fn&& fn) {
  const size_t rank = out.size();
  int64_t total = 1;
  for (auto d : out) total *= d;
  if (total == 0) return;
  if (rank == 0) {
    std::array<int64_t, N> off{};
    fn(int64_t{0}, off);
    return;
  }
  std::vector<int64_t> idx(rank, 0);
  std::array<int64_t, N> off{};
  const int64_t inner = out[rank - 1];
  std::array<int64_t, N> inner_stride;
  for (size_t k = 0; k < N; ++k) inner_stride[k] = in_strides[k][rank - 1];
  for (int64_t o = 0; o < total; o += inner) {
    std::array<int64_t, N> cur = off;
    for (int64_t j = 0; j < inner; ++j) {
      fn(o + j, cur);
      for (size_t k = 0; k < N; ++k) cur[k] += inner_stride[k];
    }
    // advance the outer index
    for (int d = static_cast<int>(rank) - 2; d >= 0; --d) {
      ++idx[d];
      for (size_t k = 0; k < N; ++k) off[k] += in_strides[k][d];
      if (idx[d] < out[d]) break;
      for (size_t k = 0; k < N; ++k) off[k] -= in_strides[k][d] * out[d];
      idx[d] = 0;
    }
  }
}

// Input decoding.
std::vector<int64_t> to_int64s(const Tensor& t);      // any integer tensor as int64 values
std::vector<double> to_doubles(const Tensor& t);      // any numeric tensor as doubles
double scalar_as_double(const Tensor& t);             // first element
int64_t normalize_axis(int64_t axis, int64_t rank, const char* what = "axis");

// A float32 copy of any float-like tensor (float16/bfloat16/double/float), and back.
Tensor to_float_tensor(const Tensor& t);
Tensor from_float_tensor(const Tensor& f, DType dt);

// Fills a tensor of `dt` from doubles (for generic slow paths and tests).
Tensor tensor_from_doubles(DType dt, const std::vector<int64_t>& shape, const std::vector<double>& v);

// Reshape without copying (shares the buffer).
Tensor reshaped(const Tensor& t, std::vector<int64_t> shape);

inline int64_t product(const std::vector<int64_t>& v, size_t from = 0, size_t to = SIZE_MAX) {
  int64_t p = 1;
  for (size_t i = from; i < v.size() && i < to; ++i) p *= v[i];
  return p;
}

}  // namespace slmops::runtime::ops
