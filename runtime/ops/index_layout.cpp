// Ops that move elements to computed places without looking at them: DepthToSpace,
// SpaceToDepth, Trilu, ReverseSequence and OneHot.
#include <algorithm>

#include "runtime/ops/index_common.h"

namespace slmops::runtime::ops::index {
namespace {

// y = transpose(reshape(x, view), perm), stored with shape `out_shape`.
void permuted_copy(const Tensor& x, const std::vector<int64_t>& view, const std::vector<size_t>& perm,
                   const std::vector<int64_t>& out_shape, OpContext& ctx) {
  const std::vector<int64_t> strides = strides_of(view);
  std::vector<int64_t> dims, src_strides;
  for (size_t p : perm) {
    dims.push_back(view[p]);
    src_strides.push_back(strides[p]);
  }
  Tensor& y = ctx.set_out(0, new_tensor(x.dtype, out_shape));
  strided_copy(x, y, StridedCopy::into_contiguous(dims, src_strides), ctx.pool);
}

// The [N, C, H, W] dims of a DepthToSpace/SpaceToDepth input and its blocksize b > 0.
struct BlockShape {
  int64_t n, c, h, w, b;
};
BlockShape block_shape(const ir::Node& node, const Tensor& x) {
  if (x.dims.size() != 4) bad_input("{} input must be 4-D [N, C, H, W], got {}", node.op_type, describe(x));
  const int64_t b = node.attr_int("blocksize", 0);
  if (b <= 0) bad_input("{} blocksize must be positive, got {}", node.op_type, b);
  return {x.dims[0], x.dims[1], x.dims[2], x.dims[3], b};
}

// Moves depth into b×b spatial blocks: [N, C, H, W] -> [N, C/b², H·b, W·b].
//   DCR: view [N, b, b, C/b², H, W], permute (0, 3, 4, 1, 5, 2)
//   CRD: view [N, C/b², b, b, H, W], permute (0, 1, 4, 2, 5, 3)
void depth_to_space(const ir::Node& node, OpContext& ctx) {
  const Tensor& x = ctx.in(0);
  const auto [n, c, h, w, b] = block_shape(node, x);
  if (c % (b * b) != 0) bad_input("DepthToSpace channels {} are not a multiple of blocksize² = {}", c, b * b);
  const int64_t oc = c / (b * b);
  const std::string mode = node.attr_string("mode", "DCR");
  const std::vector<int64_t> out_shape = {n, oc, h * b, w * b};
  if (mode == "DCR") permuted_copy(x, {n, b, b, oc, h, w}, {0, 3, 4, 1, 5, 2}, out_shape, ctx);
  else if (mode == "CRD") permuted_copy(x, {n, oc, b, b, h, w}, {0, 1, 4, 2, 5, 3}, out_shape, ctx);
  else bad_input("DepthToSpace mode '{}' is not DCR or CRD", mode);
}

// The inverse of DepthToSpace in DCR mode: [N, C, H, W] -> [N, C·b², H/b, W/b] by
//   view [N, C, H/b, b, W/b, b], permute (0, 3, 5, 1, 2, 4).
void space_to_depth(const ir::Node& node, OpContext& ctx) {
  const Tensor& x = ctx.in(0);
  const auto [n, c, h, w, b] = block_shape(node, x);
  if (h % b != 0 || w % b != 0) bad_input("SpaceToDepth height {} and width {} must be multiples of blocksize {}", h, w, b);
  permuted_copy(x, {n, c, h / b, b, w / b, b}, {0, 3, 5, 1, 2, 4}, {n, c * b * b, h / b, w / b}, ctx);
}

// Keeps the upper (j - i >= k) or lower (j - i <= k) triangle of each matrix in the last two
// axes and zeroes the rest.
void trilu(const ir::Node& node, OpContext& ctx) {
  const Tensor& x = ctx.in(0);
  const size_t rank = x.dims.size();
  if (rank < 2) bad_input("Trilu input must have rank >= 2, got {}", describe(x));
  const int64_t k = ctx.has_input(1) ? scalar_int(ctx.in(1), "Trilu k") : 0;
  const bool upper = node.attr_int("upper", 1) != 0;
  const int64_t rows = x.dims[rank - 2], cols = x.dims[rank - 1];
  const int64_t matrices = product(x.dims, 0, rank - 2);
  Tensor& y = ctx.set_out(0, new_tensor(x.dtype, x.dims));
  dispatch_width(x.dtype, "Trilu", [&](auto tag) {
    using T = decltype(tag);
    const T* px = elements<T>(x);
    T* py = mutable_elements<T>(y);
    auto row_range = [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        const int64_t i = r % rows;
        // Row i keeps columns [i + k, cols) (upper) or [0, i + k] (lower).
        const int64_t split = std::clamp<int64_t>(upper ? i + k : i + k + 1, 0, cols);
        const T* in = px + r * cols;
        T* out = py + r * cols;
        if (upper) {
          std::fill(out, out + split, T{});
          std::copy(in + split, in + cols, out + split);
        } else {
          std::copy(in, in + split, out);
          std::fill(out + split, out + cols, T{});
        }
      }
    };
    ctx.pool->parallel_for(matrices * rows, std::max<int64_t>(1, (1 << 14) / std::max<int64_t>(cols, 1)), row_range);
  });
}

// Reverses the first sequence_lens[b] steps of every batch entry b along the time axis and
// keeps the rest; batch and time are axes 0 and 1 (in either order).
void reverse_sequence(const ir::Node& node, OpContext& ctx) {
  const Tensor& x = ctx.in(0);
  const int64_t batch_axis = node.attr_int("batch_axis", 1), time_axis = node.attr_int("time_axis", 0);
  if (x.dims.size() < 2) bad_input("ReverseSequence input must have rank >= 2, got {}", describe(x));
  if (!((batch_axis == 0 && time_axis == 1) || (batch_axis == 1 && time_axis == 0)))
    bad_input("ReverseSequence batch_axis {} and time_axis {} must be 0 and 1", batch_axis, time_axis);
  const int64_t batch = x.dims[batch_axis], time = x.dims[time_axis];
  const std::vector<int64_t> lens = to_int64s(ctx.in(1));
  if (static_cast<int64_t>(lens.size()) != batch)
    bad_input("ReverseSequence sequence_lens has {} entries for a batch of {}", lens.size(), batch);
  for (int64_t len : lens)
    if (len < 0 || len > time) bad_input("ReverseSequence sequence length {} is outside [0, {}]", len, time);

  // One chunk of Π dims[2:] elements per (dims[0], dims[1]) position, in output order.
  const int64_t inner = product(x.dims, 2);
  std::vector<int64_t> offsets(batch * time);
  for (int64_t a0 = 0; a0 < x.dims[0]; ++a0)
    for (int64_t a1 = 0; a1 < x.dims[1]; ++a1) {
      const int64_t b = batch_axis == 0 ? a0 : a1, t = batch_axis == 0 ? a1 : a0;
      const int64_t src_t = t < lens[b] ? lens[b] - 1 - t : t;
      const int64_t src = batch_axis == 0 ? b * time + src_t : src_t * batch + b;
      offsets[a0 * x.dims[1] + a1] = src * inner;
    }
  copy_chunks(x, offsets, inner, ctx.set_out(0, new_tensor(x.dtype, x.dims)), ctx.pool);
}

// y has indices' shape with a new axis of size depth at `axis`; with y seen as
// [outer, depth, inner] around it, y[o, d, i] = values[1] if d == indices[o, i] else values[0].
// Negative indices count from depth (opset 11) or, before, select nothing.
void one_hot(const ir::Node& node, OpContext& ctx, bool wrap_negative) {
  const Tensor& indices = ctx.in(0);
  const Tensor& values = ctx.in(2);
  const int64_t depth = static_cast<int64_t>(scalar_as_double(ctx.in(1)));
  if (depth < 1) bad_input("OneHot depth must be positive, got {}", depth);
  if (values.numel() != 2) bad_input("OneHot values must be [off_value, on_value], got {}", describe(values));
  const int64_t rank = static_cast<int64_t>(indices.dims.size());
  const int64_t axis = normalize_axis(node.attr_int("axis", -1), rank + 1);

  std::vector<int64_t> shape = indices.dims;
  shape.insert(shape.begin() + axis, depth);
  const int64_t inner = product(indices.dims, axis);
  const std::vector<double> idx = to_doubles(indices);
  Tensor& y = ctx.set_out(0, new_tensor(values.dtype, shape));
  dispatch_width(values.dtype, "OneHot", [&](auto tag) {
    using T = decltype(tag);
    const T* v = elements<T>(values);
    T* out = mutable_elements<T>(y);
    std::fill_n(out, y.numel(), v[0]);
    for (size_t p = 0; p < idx.size(); ++p) {
      int64_t d = static_cast<int64_t>(idx[p]);
      if (d < 0 && wrap_negative) d += depth;
      if (d < 0 || d >= depth) continue;
      const int64_t o = static_cast<int64_t>(p) / inner, i = static_cast<int64_t>(p) % inner;
      out[(o * depth + d) * inner + i] = v[1];
    }
  });
}

}  // namespace

void register_layout_ops() {
  register_kernel("", "DepthToSpace", 1, simple_kernel(depth_to_space));  // mode (opset 11) defaults to DCR
  register_kernel("", "SpaceToDepth", 1, simple_kernel(space_to_depth));
  register_kernel("", "Trilu", 14, simple_kernel(trilu));
  register_kernel("", "ReverseSequence", 10, simple_kernel(reverse_sequence));
  register_kernel("", "OneHot", 9, simple_kernel([](const ir::Node& n, OpContext& c) { one_hot(n, c, false); }));
  register_kernel("", "OneHot", 11, simple_kernel([](const ir::Node& n, OpContext& c) { one_hot(n, c, true); }));
}

}  // namespace slmops::runtime::ops::index
