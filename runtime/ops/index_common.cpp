#include "runtime/ops/index_common.h"

#include <algorithm>

namespace slmops::runtime::ops::index {

AxisSplit split_at(const std::vector<int64_t>& dims, int64_t axis) {
  const size_t a = static_cast<size_t>(axis);
  return {product(dims, 0, a), a < dims.size() ? dims[a] : 1, product(dims, a + 1)};
}

std::vector<int64_t> axis_offsets(const AxisSplit& s, const std::vector<int64_t>& picks) {
  const int64_t count = static_cast<int64_t>(picks.size());
  std::vector<int64_t> offsets(s.outer * count);
  for (int64_t o = 0; o < s.outer; ++o)
    for (int64_t j = 0; j < count; ++j) offsets[o * count + j] = (o * s.n + picks[j]) * s.inner;
  return offsets;
}

std::vector<int64_t> read_indices(const Tensor& t, int64_t dim, const char* what) {
  if (t.dtype != DType::Int32 && t.dtype != DType::Int64)
    bad_input("{} indices must be int32 or int64, got {}", what, ir::dtype_name(t.dtype));
  std::vector<int64_t> v = to_int64s(t);
  for (int64_t& i : v) i = wrap_index(i, dim, what);
  return v;
}

int64_t scalar_int(const Tensor& t, const char* what) {
  if (t.numel() != 1) bad_input("{} must have one element, got {}", what, describe(t));
  return to_int64s(t)[0];
}

std::vector<int64_t> element_offsets(const std::vector<int64_t>& data_dims, const Tensor& indices, int64_t axis,
                                     const char* what) {
  const size_t rank = data_dims.size();
  if (rank == 0) bad_input("{} data must have rank >= 1", what);
  if (indices.dims.size() != rank)
    bad_input("{} indices must have the rank of data ({}), got {}", what, rank, describe(indices));
  for (size_t k = 0; k < rank; ++k)
    if (static_cast<int64_t>(k) != axis && indices.dims[k] > data_dims[k])
      bad_input("{} indices dimension {} is {}, larger than data's {}", what, k, indices.dims[k], data_dims[k]);
  std::vector<int64_t> offsets = read_indices(indices, data_dims[axis], what);
  std::array<std::vector<int64_t>, 1> strides = {strides_of(data_dims)};
  const int64_t axis_stride = strides[0][axis];
  strides[0][axis] = 0;  // the walk covers the other coordinates; the index value adds this one
  for_each_broadcast<1>(indices.dims, strides, [&](int64_t i, const std::array<int64_t, 1>& off) {
    offsets[i] = off[0] + offsets[i] * axis_stride;
  });
  return offsets;
}

SliceOffsets slice_offsets(const std::vector<int64_t>& data_dims, const Tensor& indices, int64_t batch_dims,
                           const char* what) {
  const int64_t r = static_cast<int64_t>(data_dims.size()), q = static_cast<int64_t>(indices.dims.size());
  if (q < 1) bad_input("{} indices must have rank >= 1", what);
  if (batch_dims < 0 || batch_dims >= std::min(q, r))
    bad_input("{} batch_dims {} must be in [0, {})", what, batch_dims, std::min(q, r));
  const int64_t k = indices.dims.back();
  if (batch_dims + k > r)
    bad_input("{} index tuples of length {} do not fit data of rank {} with {} batch dims", what, k, r, batch_dims);
  for (int64_t d = 0; d < batch_dims; ++d)
    if (indices.dims[d] != data_dims[d])
      bad_input("{} batch dimension {} is {} in indices and {} in data", what, d, indices.dims[d], data_dims[d]);
  if (indices.dtype != DType::Int32 && indices.dtype != DType::Int64)
    bad_input("{} indices must be int32 or int64, got {}", what, ir::dtype_name(indices.dtype));

  const std::vector<int64_t> coords = to_int64s(indices);
  const std::vector<int64_t> strides = strides_of(data_dims);
  const int64_t tuples = product(indices.dims, 0, q - 1);
  const int64_t per_batch = product(indices.dims, batch_dims, q - 1);
  const int64_t batch_stride = product(data_dims, batch_dims);
  SliceOffsets s;
  s.slice = product(data_dims, batch_dims + k);
  s.offsets.resize(tuples);
  for (int64_t t = 0; t < tuples; ++t) {
    int64_t off = (t / per_batch) * batch_stride;
    for (int64_t j = 0; j < k; ++j)
      off += wrap_index(coords[t * k + j], data_dims[batch_dims + j], what) * strides[batch_dims + j];
    s.offsets[t] = off;
  }
  return s;
}

void copy_chunks(const Tensor& src, const std::vector<int64_t>& src_offsets, int64_t chunk, Tensor& out,
                 ThreadPool* pool) {
  const int64_t count = static_cast<int64_t>(src_offsets.size());
  const int64_t grain = std::max<int64_t>(1, (1 << 14) / std::max<int64_t>(chunk, 1));
  dispatch_width(src.dtype, "this op", [&](auto tag) {
    using T = decltype(tag);
    const T* s = elements<T>(src);
    T* d = mutable_elements<T>(out);
    pool->parallel_for(count, grain, [&](int64_t b, int64_t e) {
      if (chunk == 1) {
        for (int64_t j = b; j < e; ++j) d[j] = s[src_offsets[j]];
      } else {
        for (int64_t j = b; j < e; ++j) std::copy_n(s + src_offsets[j], chunk, d + j * chunk);
      }
    });
  });
}

}  // namespace slmops::runtime::ops::index
