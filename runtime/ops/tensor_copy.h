// Data movement shared by the tensor ops (Transpose, Slice, Concat, Split, Expand, Tile,
// Pad, ...). These ops never look at element values, so they work on storage words of the
// element's width (1, 2, 4, 8 or 16 bytes) or on std::string for string tensors.
#pragma once
#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include "runtime/ops/common.h"

namespace slmops::runtime::ops {

// Elements per parallel chunk of a copy: below this, threading costs more than it saves.
inline constexpr int64_t kCopyGrainElements = 1 << 15;

// A storage word of W bytes (complex128 and other wide types).
template <size_t W>
struct alignas(W) Word {
  uint8_t bytes[W];
};

// Calls fn(T{}) with a type of the same storage width as `dt` (std::string for strings).
// Sub-byte types (int4, ...) throw an error naming `what`.
template <typename Fn>
void dispatch_width(DType dt, const char* what, Fn&& fn) {
  if (dt == DType::String) return fn(std::string{});
  switch (ir::traits(dt).bits) {
    case 8: return fn(uint8_t{});
    case 16: return fn(uint16_t{});
    case 32: return fn(uint32_t{});
    case 64: return fn(uint64_t{});
    case 128: return fn(Word<16>{});
    default: unsupported_type(dt, what);
  }
}

// Element storage of a tensor as T (as chosen by dispatch_width).
template <typename T>
const T* elements(const Tensor& t) {
  if constexpr (std::is_same_v<T, std::string>) return t.strings.data();
  else return t.values<T>();
}
template <typename T>
T* mutable_elements(Tensor& t) {
  if constexpr (std::is_same_v<T, std::string>) return t.strings.data();
  else return t.mutable_values<T>();
}

// An element-wise copy between two strided layouts of the same iteration shape:
//   dst[dst_offset + Σ_k i_k·dst_strides[k]] = src[src_offset + Σ_k i_k·src_strides[k]]
// for every index i of `dims`. Strides and offsets count elements; source strides may be
// 0 (broadcast) or negative (reversed). Transpose, Slice, Expand, Tile, Concat and Split
// are all one such copy.
struct StridedCopy {
  std::vector<int64_t> dims, src_strides, dst_strides;
  int64_t src_offset = 0, dst_offset = 0;

  // The common case of writing a whole contiguous output of shape `dims`.
  static StridedCopy into_contiguous(std::vector<int64_t> dims, std::vector<int64_t> src_strides,
                                     int64_t src_offset = 0);
};

// Runs `c` from `src` into `dst` (both of the same element type; dst already allocated).
// Merges axes that are contiguous in both layouts, copies contiguous runs with memcpy and
// blocks transposes into cache-sized tiles; large copies run on `pool`.
void strided_copy(const Tensor& src, Tensor& dst, const StridedCopy& c, ThreadPool* pool);

// A new tensor of shape `dims` written by `c` (a copy into contiguous storage, as made by
// into_contiguous); `src` itself, reshaped, when the copy would reproduce it unchanged.
Tensor copy_to_new(const Tensor& src, const StridedCopy& c, const std::vector<int64_t>& dims, ThreadPool* pool);

// Sets every element of `dst` to the first element of `value` (same element type).
void fill_with(Tensor& dst, const Tensor& value, ThreadPool* pool);

}  // namespace slmops::runtime::ops
