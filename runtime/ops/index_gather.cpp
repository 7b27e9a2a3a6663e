// Gathers: Gather, GatherElements, GatherND and Compress. Each one computes where every
// output chunk comes from in the data tensor and hands the offsets to copy_chunks, so they
// work for every element type, strings included.
#include "runtime/ops/index_common.h"

namespace slmops::runtime::ops::index {
namespace {

// y[o, j..., i] = data[o, indices[j...], i] for data seen as [outer, n, inner] around axis;
// y's shape is data.dims[:axis] + indices.dims + data.dims[axis+1:].
void gather(const ir::Node& node, OpContext& ctx) {
  const Tensor& data = ctx.in(0);
  const Tensor& indices = ctx.in(1);
  const int64_t rank = static_cast<int64_t>(data.dims.size());
  if (rank == 0) bad_input("Gather data must have rank >= 1");
  const int64_t axis = normalize_axis(node.attr_int("axis", 0), rank);
  const AxisSplit s = split_at(data.dims, axis);
  const std::vector<int64_t> idx = read_indices(indices, s.n, "Gather");

  std::vector<int64_t> shape(data.dims.begin(), data.dims.begin() + axis);
  shape.insert(shape.end(), indices.dims.begin(), indices.dims.end());
  shape.insert(shape.end(), data.dims.begin() + axis + 1, data.dims.end());
  copy_chunks(data, axis_offsets(s, idx), s.inner, ctx.set_out(0, new_tensor(data.dtype, shape)), ctx.pool);
}

// y[i] = data[i with i_axis replaced by indices[i]]; y has the shape of indices.
void gather_elements(const ir::Node& node, OpContext& ctx) {
  const Tensor& data = ctx.in(0);
  const Tensor& indices = ctx.in(1);
  const int64_t axis = normalize_axis(node.attr_int("axis", 0), static_cast<int64_t>(data.dims.size()));
  const std::vector<int64_t> offsets = element_offsets(data.dims, indices, axis, "GatherElements");
  copy_chunks(data, offsets, 1, ctx.set_out(0, new_tensor(data.dtype, indices.dims)), ctx.pool);
}

// y[b..., t...] = data[b..., indices[b..., t..., :]] (a slice when the index tuples are
// shorter than data's rank); y's shape is indices.dims[:-1] + data.dims[batch_dims + k:].
void gather_nd(const ir::Node& node, OpContext& ctx) {
  const Tensor& data = ctx.in(0);
  const Tensor& indices = ctx.in(1);
  const int64_t batch_dims = node.attr_int("batch_dims", 0);
  const SliceOffsets s = slice_offsets(data.dims, indices, batch_dims, "GatherND");
  std::vector<int64_t> shape(indices.dims.begin(), indices.dims.end() - 1);
  const int64_t k = indices.dims.back();
  shape.insert(shape.end(), data.dims.begin() + batch_dims + k, data.dims.end());
  copy_chunks(data, s.offsets, s.slice, ctx.set_out(0, new_tensor(data.dtype, shape)), ctx.pool);
}

// Keeps the slices along `axis` whose condition entry is true (of the flattened input when
// there is no axis). Condition entries past the axis length are ignored, as in ONNX Runtime.
void compress(const ir::Node& node, OpContext& ctx) {
  const Tensor& x = ctx.in(0);
  const Tensor& cond = ctx.in(1);
  if (cond.dtype != DType::Bool || cond.dims.size() != 1)
    bad_input("Compress condition must be a 1-D bool tensor, got {}", describe(cond));
  std::vector<int64_t> dims = x.dims;
  int64_t axis = 0;
  if (node.attr("axis")) axis = normalize_axis(node.attr_int("axis", 0), static_cast<int64_t>(dims.size()));
  else dims = {static_cast<int64_t>(x.numel())};

  const AxisSplit s = split_at(dims, axis);
  const bool* keep = cond.values<bool>();
  std::vector<int64_t> kept;
  for (int64_t j = 0; j < std::min<int64_t>(s.n, cond.dims[0]); ++j)
    if (keep[j]) kept.push_back(j);
  dims[axis] = static_cast<int64_t>(kept.size());
  copy_chunks(x, axis_offsets(s, kept), s.inner, ctx.set_out(0, new_tensor(x.dtype, dims)), ctx.pool);
}

}  // namespace

void register_gather_ops() {
  register_kernel("", "Gather", 1, simple_kernel(gather));
  register_kernel("", "GatherElements", 11, simple_kernel(gather_elements));
  register_kernel("", "GatherND", 11, simple_kernel(gather_nd));  // batch_dims (opset 12) defaults to 0
  register_kernel("", "Compress", 9, simple_kernel(compress));
}

}  // namespace slmops::runtime::ops::index
