// Scatters: ScatterElements (and the deprecated Scatter it replaced) and ScatterND. The output
// is a copy of data in which chunks addressed by the indices are replaced by (or, with a
// reduction, combined with) chunks of updates, applied in order so that duplicate indices
// behave as in the ONNX reference: the last write wins, reductions accumulate.
#include <algorithm>
#include <type_traits>

#include "runtime/ops/index_common.h"

namespace slmops::runtime::ops::index {
namespace {

enum class Reduction { None, Add, Mul, Max, Min };

Reduction reduction_of(const ir::Node& node, const char* op) {
  const std::string r = node.attr_string("reduction", "none");
  if (r == "none") return Reduction::None;
  if (r == "add") return Reduction::Add;
  if (r == "mul") return Reduction::Mul;
  if (r == "max") return Reduction::Max;
  if (r == "min") return Reduction::Min;
  bad_input("{} reduction '{}' is not one of none, add, mul, max, min", op, r);
}

// Calls fn with a reduction other than None as a compile-time constant (std::integral_constant).
template <typename Fn>
void with_reduction(Reduction r, Fn&& fn) {
  switch (r) {
    case Reduction::Add: return fn(std::integral_constant<Reduction, Reduction::Add>{});
    case Reduction::Mul: return fn(std::integral_constant<Reduction, Reduction::Mul>{});
    case Reduction::Max: return fn(std::integral_constant<Reduction, Reduction::Max>{});
    case Reduction::Min: return fn(std::integral_constant<Reduction, Reduction::Min>{});
    case Reduction::None: break;
  }
}

// current (op) update, in the arithmetic type C (see compute_t).
template <Reduction R, typename C>
C combine(C current, C update) {
  if constexpr (R == Reduction::Add) {
    return static_cast<C>(current + update);
  } else if constexpr (R == Reduction::Mul) {
    return static_cast<C>(current * update);
  } else if constexpr (R == Reduction::Max) {
    return std::max(current, update);
  } else {
    return std::min(current, update);
  }
}

// y = data; then for every j in order and i < chunk:
//   y[offsets[j] + i] = updates[j·chunk + i]                     (reduction none)
//   y[offsets[j] + i] = y[offsets[j] + i] (op) updates[j·chunk + i]  (add, mul, max, min)
void scatter_chunks(const Tensor& data, const Tensor& updates, const std::vector<int64_t>& offsets, int64_t chunk,
                    Reduction reduction, const char* op, Tensor& y) {
  if (updates.dtype != data.dtype)
    bad_input("{} updates type {} differs from data type {}", op, ir::dtype_name(updates.dtype),
              ir::dtype_name(data.dtype));
  const int64_t n = static_cast<int64_t>(data.numel());
  const int64_t count = static_cast<int64_t>(offsets.size());
  if (reduction == Reduction::None) {
    dispatch_width(data.dtype, op, [&](auto tag) {
      using T = decltype(tag);
      const T* u = elements<T>(updates);
      T* out = mutable_elements<T>(y);
      std::copy_n(elements<T>(data), n, out);
      for (int64_t j = 0; j < count; ++j) std::copy_n(u + j * chunk, chunk, out + offsets[j]);
    });
    return;
  }
  dispatch<kNumeric>(data.dtype, op, [&](auto tag) {
    using T = decltype(tag);
    const T* u = updates.values<T>();
    T* out = y.mutable_values<T>();
    std::copy_n(data.values<T>(), n, out);
    with_reduction(reduction, [&](auto r) {
      for (int64_t j = 0; j < count; ++j) {
        T* dst = out + offsets[j];
        const T* src = u + j * chunk;
        for (int64_t i = 0; i < chunk; ++i)
          dst[i] = store<T>(combine<decltype(r)::value, compute_t<T>>(load(dst[i]), load(src[i])));
      }
    });
  });
}

// ScatterElements / Scatter: y[i with i_axis replaced by indices[i]] = updates[i], for every
// index i of indices (updates has the shape of indices).
void scatter_elements(const ir::Node& node, OpContext& ctx) {
  const char* op = node.op_type.c_str();
  const Tensor& data = ctx.in(0);
  const Tensor& indices = ctx.in(1);
  const Tensor& updates = ctx.in(2);
  if (updates.dims != indices.dims)
    bad_input("{} updates {} must have the shape of indices {}", op, describe(updates), describe(indices));
  const int64_t axis = normalize_axis(node.attr_int("axis", 0), static_cast<int64_t>(data.dims.size()));
  const std::vector<int64_t> offsets = element_offsets(data.dims, indices, axis, op);
  scatter_chunks(data, updates, offsets, 1, reduction_of(node, op), op,
                 ctx.set_out(0, new_tensor(data.dtype, data.dims)));
}

// ScatterND: y[indices[t..., :]] = updates[t...], a slice of data.dims[k:] per index tuple;
// updates' shape is indices.dims[:-1] + data.dims[k:].
void scatter_nd(const ir::Node& node, OpContext& ctx) {
  const Tensor& data = ctx.in(0);
  const Tensor& indices = ctx.in(1);
  const Tensor& updates = ctx.in(2);
  const SliceOffsets s = slice_offsets(data.dims, indices, 0, "ScatterND");
  std::vector<int64_t> expected(indices.dims.begin(), indices.dims.end() - 1);
  expected.insert(expected.end(), data.dims.begin() + indices.dims.back(), data.dims.end());
  if (updates.dims != expected)
    bad_input("ScatterND updates {} must have shape indices.shape[:-1] + data.shape[k:] for indices {} and data {}",
              describe(updates), describe(indices), describe(data));
  scatter_chunks(data, updates, s.offsets, s.slice, reduction_of(node, "ScatterND"), "ScatterND",
                 ctx.set_out(0, new_tensor(data.dtype, data.dims)));
}

}  // namespace

void register_scatter_ops() {
  // One kernel per op: later opsets only add reductions (add/mul in 16, max/min in 18),
  // and the attribute's default "none" is the earlier behaviour.
  register_kernel("", "Scatter", 9, simple_kernel(scatter_elements));
  register_kernel("", "ScatterElements", 11, simple_kernel(scatter_elements));
  register_kernel("", "ScatterND", 11, simple_kernel(scatter_nd));
}

}  // namespace slmops::runtime::ops::index
