// Helpers shared by the indexing and selection ops (index_*.cpp, misc.cpp): index decoding,
// axis splitting, chunked gathers and scatter addressing, element arithmetic through float.
// Element movement by storage width (dispatch_width, elements) comes from tensor_copy.h.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include "runtime/ops/common.h"
#include "runtime/ops/tensor_copy.h"

namespace slmops::runtime::ops::index {

// A shape seen as [outer, n, inner] around one axis: element (o, j, i) is at
// (o·n + j)·inner + i.
struct AxisSplit {
  int64_t outer = 1, n = 1, inner = 1;
};
AxisSplit split_at(const std::vector<int64_t>& dims, int64_t axis);

// The offsets of the slices (o, picks[j], :) of a tensor split as `s`, in (o, j) order: the
// source offsets for copy_chunks with chunk s.inner that select `picks` along the axis.
std::vector<int64_t> axis_offsets(const AxisSplit& s, const std::vector<int64_t>& picks);

// Index `i` into a dimension of size `dim`, negative counting from the end; throws naming
// `what` when it is outside [-dim, dim).
inline int64_t wrap_index(int64_t i, int64_t dim, const char* what) {
  if (i < -dim || i >= dim) bad_input("{} index {} is out of range [{}, {})", what, i, -dim, dim);
  return i < 0 ? i + dim : i;
}

// An int32/int64 index tensor as int64 values wrapped by wrap_index.
std::vector<int64_t> read_indices(const Tensor& t, int64_t dim, const char* what);

// The integer value of a scalar (or one-element) input.
int64_t scalar_int(const Tensor& t, const char* what);

// GatherElements/ScatterElements addressing: the offset in `data` of every element of
// `indices` (same rank), whose value replaces its coordinate on `axis`:
//   offset(i) = Σ_{k≠axis} i_k·stride_k + wrap(indices[i])·stride_axis.
std::vector<int64_t> element_offsets(const std::vector<int64_t>& data_dims, const Tensor& indices, int64_t axis,
                                     const char* what);

// GatherND/ScatterND addressing: the last axis of `indices` holds k coordinates that pick a
// slice data[b..., i_0, ..., i_{k-1}, :, ...] of `slice` elements for each index tuple; the
// first `batch_dims` axes of indices and data are matched one to one.
//   offset = Σ_{d<batch_dims} b_d·stride_d + Σ_{j<k} wrap(i_j)·stride_{batch_dims+j}
struct SliceOffsets {
  std::vector<int64_t> offsets;  // one per index tuple, in row-major order of indices[..., 0]
  int64_t slice = 1;             // elements per slice: Π data.dims[batch_dims + k:]
};
SliceOffsets slice_offsets(const std::vector<int64_t>& data_dims, const Tensor& indices, int64_t batch_dims,
                           const char* what);

// out elements [j·chunk, (j+1)·chunk) = src elements [src_offsets[j], src_offsets[j] + chunk)
// for every j; `out` must already have src's element type and offsets.size()·chunk elements.
// Gather, GatherElements, GatherND, Compress, Unique and ReverseSequence are all such a copy.
void copy_chunks(const Tensor& src, const std::vector<int64_t>& src_offsets, int64_t chunk, Tensor& out,
                 ThreadPool* pool);

// Arithmetic and comparisons on element values: float16/bfloat16 go through float, other
// types are used as they are.
template <typename T>
constexpr bool is_half_v = std::is_same_v<T, Half> || std::is_same_v<T, BFloat16>;
template <typename T>
using compute_t = std::conditional_t<is_half_v<T>, float, T>;
template <typename T>
decltype(auto) load(const T& v) {
  if constexpr (is_half_v<T>) return to_f32(v);
  else return (v);
}
template <typename T>
T store(compute_t<T> v) {
  if constexpr (is_half_v<T>) return from_f32<T>(v);
  else return v;
}

// Registration of each op file, called by register_misc_ops() (misc.cpp).
void register_gather_ops();   // index_gather.cpp: Gather, GatherElements, GatherND, Compress
void register_scatter_ops();  // index_scatter.cpp: ScatterElements, Scatter, ScatterND
void register_select_ops();   // index_select.cpp: TopK, Unique, NonZero, NonMaxSuppression
void register_layout_ops();   // index_layout.cpp: DepthToSpace, SpaceToDepth, Trilu, ReverseSequence, OneHot
void register_text_ops();     // index_text.cpp: StringNormalizer, TfIdfVectorizer

}  // namespace slmops::runtime::ops::index
