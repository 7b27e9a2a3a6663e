// Pooling over any number of spatial dims: MaxPool (with Indices), AveragePool, LpPool, their
// Global forms (one window covering each plane), and MaxUnpool.
#include <algorithm>
#include <cmath>
#include <limits>

#include "runtime/ops/nn_common.h"

namespace slmops::runtime::ops {
namespace {

// Element types that compute through float (16-bit floats), and the value type pools
// accumulate and compare in: float for those, the element type otherwise.
template <typename T>
constexpr bool is_16bit_float = std::is_same_v<T, Half> || std::is_same_v<T, BFloat16>;
template <typename T>
using Acc = std::conditional_t<is_16bit_float<T>, float, T>;

template <typename T>
Acc<T> load(T v) {
  if constexpr (is_16bit_float<T>) return to_f32(v);
  else return v;
}
template <typename T, typename A>
T store(A v) {
  if constexpr (is_16bit_float<T>) return from_f32<T>(static_cast<float>(v));
  else return static_cast<T>(v);
}

// Which kernel positions of every window lie inside the input, per spatial dim: the window
// of output index o along dim d covers input indices first[d][o] + k * dilation for k in
// [0, count[d][o]); padded[d][o] of its positions lie inside input + padding.
struct PoolGeometry {
  kernels::WindowShape s;
  std::vector<int64_t> in_strides;  // element strides of the spatial dims within a plane
  std::vector<std::vector<int64_t>> first, count, padded;

  explicit PoolGeometry(kernels::WindowShape shape) : s(std::move(shape)) {
    const size_t rank = s.rank();
    in_strides.assign(rank, 1);
    for (size_t d = rank - 1; d > 0; --d) in_strides[d - 1] = in_strides[d] * s.in[d];
    first.resize(rank);
    count.resize(rank);
    padded.resize(rank);
    for (size_t d = 0; d < rank; ++d) {
      const int64_t dil = s.dilations[d], k = s.kernel[d], in = s.in[d];
      for (int64_t o = 0; o < s.out[d]; ++o) {
        const int64_t start = o * s.strides[d] - s.pad_begin[d];
        // Kernel positions [lo, hi) land inside [0, in); [0, hi_padded) inside in + pad_end.
        const int64_t lo = start >= 0 ? 0 : (-start + dil - 1) / dil;
        const int64_t hi = start >= in ? 0 : std::min(k, (in - 1 - start) / dil + 1);
        const int64_t hi_padded = std::min(k, (in + s.pad_end[d] - start + dil - 1) / dil);
        first[d].push_back(start + lo * dil);
        count[d].push_back(std::max<int64_t>(0, hi - lo));
        padded[d].push_back(std::max<int64_t>(0, hi_padded));
      }
    }
  }
};

// Walks the output positions of a plane in order and, for each, the input elements of its
// window. Holds the scratch indices, so that each thread has its own.
class WindowWalker {
 public:
  explicit WindowWalker(const PoolGeometry& g) : g_(g), o_(g.s.rank(), 0), idx_(g.s.rank()) {}

  // Back to output position 0.
  void reset() { std::fill(o_.begin(), o_.end(), 0); }
  // To the next output position (row-major).
  void next() {
    for (size_t d = o_.size(); d-- > 0;) {
      if (++o_[d] < g_.s.out[d]) return;
      o_[d] = 0;
    }
  }
  // Input elements in the current window (inside the input; and inside input + padding).
  int64_t count() const { return product_of(g_.count); }
  int64_t padded_count() const { return product_of(g_.padded); }

  // Calls f(offset) with the in-plane offset of every input element of the current window.
  template <typename F>
  void visit(F&& f) {
    const size_t rank = o_.size(), last = rank - 1;
    int64_t base = 0;
    for (size_t d = 0; d < rank; ++d) {
      if (g_.count[d][o_[d]] == 0) return;
      base += g_.first[d][o_[d]] * g_.in_strides[d];
      idx_[d] = 0;
    }
    const int64_t step = g_.s.dilations[last];
    const int64_t n = g_.count[last][o_[last]];
    while (true) {
      for (int64_t t = 0; t < n; ++t) f(base + t * step);
      // Odometer over the leading dims of the window.
      size_t d = last;
      for (; d > 0; --d) {
        const int64_t stride = g_.s.dilations[d - 1] * g_.in_strides[d - 1];
        base += stride;
        if (++idx_[d - 1] < g_.count[d - 1][o_[d - 1]]) break;
        base -= stride * idx_[d - 1];
        idx_[d - 1] = 0;
      }
      if (d == 0) return;
    }
  }

 private:
  int64_t product_of(const std::vector<std::vector<int64_t>>& per_dim) const {
    int64_t p = 1;
    for (size_t d = 0; d < o_.size(); ++d) p *= per_dim[d][o_[d]];
    return p;
  }

  const PoolGeometry& g_;
  std::vector<int64_t> o_, idx_;
};

// Runs fn(plane, walker) over the N*C planes, in parallel; fn walks the plane's outputs.
template <typename Fn>
void for_each_plane(const PoolGeometry& g, int64_t planes, ThreadPool* pool, Fn&& fn) {
  const int64_t work = std::max<int64_t>(1, g.s.out_size() * g.s.kernel_size());
  parallel_range(pool, planes, std::max<int64_t>(1, (int64_t{1} << 15) / work), [&](int64_t p0, int64_t p1) {
    WindowWalker walker(g);
    for (int64_t p = p0; p < p1; ++p) {
      walker.reset();
      fn(p, walker);
    }
  });
}

// X's [N, C] and spatial dims, checked to have at least one spatial dim.
std::vector<int64_t> spatial_dims(const Tensor& x) {
  if (x.dims.size() < 3) bad_input("X must have a batch, a channel and at least one spatial dim, got {}", describe(x));
  return {x.dims.begin() + 2, x.dims.end()};
}

std::vector<int64_t> output_dims(const Tensor& x, const kernels::WindowShape& s) {
  std::vector<int64_t> dims = {x.dims[0], x.dims[1]};
  dims.insert(dims.end(), s.out.begin(), s.out.end());
  return dims;
}

// The geometry of a windowed pool node: kernel_shape is required.
kernels::WindowShape pool_window(const WindowAttrs& a, const Tensor& x) {
  const std::vector<int64_t> spatial = spatial_dims(x);
  if (a.kernel_shape.size() != spatial.size())
    bad_input("kernel_shape has {} values, X {} has {} spatial dims", a.kernel_shape.size(), describe(x), spatial.size());
  return forward_window(a, spatial, a.kernel_shape);
}

// One window covering each whole plane (the Global* pools).
kernels::WindowShape global_window(const Tensor& x) {
  kernels::WindowShape s;
  s.in = s.kernel = spatial_dims(x);
  s.out = s.strides = s.dilations = std::vector<int64_t>(s.in.size(), 1);
  s.pad_begin = s.pad_end = std::vector<int64_t>(s.in.size(), 0);
  return s;
}

// ---- MaxPool -------------------------------------------------------------------------------

// Y = the largest element of each window; Indices (optional) = its flat position in X, with
// the spatial part row-major (storage_order 0) or column-major (1).
void max_pool(const kernels::WindowShape& s, bool column_major, OpContext& ctx) {
  const Tensor& x = ctx.in(0);
  const PoolGeometry g(s);
  Tensor& y = ctx.set_out(0, new_tensor(x.dtype, output_dims(x, s)));
  int64_t* indices = nullptr;
  if (ctx.output_count() > 1) indices = ctx.set_out(1, new_tensor(DType::Int64, y.dims)).mutable_values<int64_t>();
  const int64_t in_size = s.in_size(), out_size = s.out_size();
  // The position of in-plane offset `off` as Indices counts it.
  auto index_of = [&](int64_t plane, int64_t off) {
    if (!column_major) return plane * in_size + off;
    int64_t index = 0, scale = 1;
    for (size_t d = 0; d < s.rank(); ++d) {
      index += off / g.in_strides[d] % s.in[d] * scale;
      scale *= s.in[d];
    }
    return plane * in_size + index;
  };
  dispatch<kFloats | kHalfs | kSigned | kUnsigned>(x.dtype, "MaxPool", [&](auto tag) {
    using T = decltype(tag);
    const T* px = x.values<T>();
    T* py = y.mutable_values<T>();
    for_each_plane(g, static_cast<int64_t>(x.dims[0] * x.dims[1]), ctx.pool, [&](int64_t p, WindowWalker& w) {
      const T* plane = px + p * in_size;
      for (int64_t j = 0; j < out_size; ++j, w.next()) {
        Acc<T> best = std::numeric_limits<Acc<T>>::lowest();
        int64_t best_off = -1;
        w.visit([&](int64_t off) {
          const Acc<T> v = load(plane[off]);
          if (best_off < 0 || v > best) {
            best = v;
            best_off = off;
          }
        });
        py[p * out_size + j] = store<T>(best);
        if (indices) indices[p * out_size + j] = best_off < 0 ? -1 : index_of(p, best_off);
      }
    });
  });
}

// ---- AveragePool and LpPool ----------------------------------------------------------------

// Y = finish(sum of term(x) over the window, window) for float types; padding adds nothing.
template <typename Term, typename Finish>
void sum_pool(const kernels::WindowShape& s, const char* op, OpContext& ctx, Term term, Finish finish) {
  const Tensor& x = ctx.in(0);
  const PoolGeometry g(s);
  Tensor& y = ctx.set_out(0, new_tensor(x.dtype, output_dims(x, s)));
  const int64_t in_size = s.in_size(), out_size = s.out_size();
  dispatch<kFloats | kHalfs>(x.dtype, op, [&](auto tag) {
    using T = decltype(tag);
    const T* px = x.values<T>();
    T* py = y.mutable_values<T>();
    for_each_plane(g, static_cast<int64_t>(x.dims[0] * x.dims[1]), ctx.pool, [&](int64_t p, WindowWalker& w) {
      const T* plane = px + p * in_size;
      for (int64_t j = 0; j < out_size; ++j, w.next()) {
        Acc<T> sum = 0;
        w.visit([&](int64_t off) { sum += term(load(plane[off])); });
        py[p * out_size + j] = store<T>(finish(sum, w));
      }
    });
  });
}

// The mean over the window's elements inside the input, or (count_include_pad) over its
// positions inside input + padding.
void average_pool(const kernels::WindowShape& s, bool count_include_pad, OpContext& ctx) {
  sum_pool(
      s, "AveragePool", ctx, [](auto v) { return v; },
      [count_include_pad](auto sum, const WindowWalker& w) {
        const int64_t n = count_include_pad ? w.padded_count() : w.count();
        return n > 0 ? sum / static_cast<decltype(sum)>(n) : sum;
      });
}

// (sum |x|^p)^(1/p) over the window.
void lp_pool(const kernels::WindowShape& s, double p, OpContext& ctx) {
  sum_pool(
      s, "LpPool", ctx, [p](auto v) { return static_cast<decltype(v)>(std::pow(std::abs(v), p)); },
      [p](auto sum, const WindowWalker&) { return static_cast<decltype(sum)>(std::pow(sum, 1.0 / p)); });
}

// LpPool-1 has a float p, later versions an int.
double lp_order(const ir::Node& n) {
  const ir::Attribute* a = n.attr("p");
  const double p = !a ? 2.0 : a->type == ir::AttrType::Float ? a->f : static_cast<double>(a->i);
  if (!(p > 0)) bad_input("p {} must be positive", p);
  return p;
}

// ---- MaxUnpool -----------------------------------------------------------------------------

// Y = zeros with X's elements placed at the flat positions Indices gives (as MaxPool made them).
void max_unpool(const WindowAttrs& a, OpContext& ctx) {
  const Tensor& x = ctx.in(0);
  const Tensor& ind = ctx.in(1);
  if (ind.dtype != DType::Int64 || ind.dims != x.dims) bad_input("I {} must be int64 shaped like X {}", describe(ind), describe(x));
  std::vector<int64_t> y_dims;
  if (ctx.has_input(2)) {
    y_dims = to_int64s(ctx.in(2));
    if (y_dims.size() != x.dims.size()) bad_input("output_shape has {} values, X has rank {}", y_dims.size(), x.dims.size());
  } else {
    // The size MaxPool's input had: (out - 1) * stride + kernel - pads.
    const std::vector<int64_t> spatial = spatial_dims(x);
    const size_t rank = spatial.size();
    if (a.kernel_shape.size() != rank) bad_input("kernel_shape has {} values, expected {}", a.kernel_shape.size(), rank);
    const std::vector<int64_t> strides = ones_or(a.strides, rank, "strides");
    const std::vector<int64_t> pads = pads_or_zeros(a, rank);
    y_dims = {x.dims[0], x.dims[1]};
    for (size_t d = 0; d < rank; ++d)
      y_dims.push_back((spatial[d] - 1) * strides[d] + a.kernel_shape[d] - pads[d] - pads[rank + d]);
  }
  Tensor& y = ctx.set_out(0, new_zero_tensor(x.dtype, y_dims));
  const size_t width = ir::traits(x.dtype).bits / 8;
  const int64_t* pi = ind.values<int64_t>();
  const int64_t y_count = static_cast<int64_t>(y.numel());
  for (uint64_t i = 0; i < x.numel(); ++i) {
    if (pi[i] < 0 || pi[i] >= y_count) bad_input("I holds {}, outside Y of {} elements", pi[i], y_count);
    std::memcpy(y.data.mutable_data() + pi[i] * width, x.data.data() + i * width, width);
  }
}

// ---- registration --------------------------------------------------------------------------

// A kernel holding the node's window attributes, running fn(attrs, node, ctx).
template <typename Fn>
KernelFactory window_kernel(Fn fn) {
  return [fn](const ir::Node& n, const PlanContext&) -> std::unique_ptr<Kernel> {
    struct K : Kernel {
      K(const ir::Node& node, Fn f) : node(node), attrs(node), fn(std::move(f)) {}
      void run(OpContext& ctx) override { fn(attrs, node, ctx); }
      const ir::Node& node;
      WindowAttrs attrs;
      Fn fn;
    };
    return std::make_unique<K>(n, fn);
  };
}

}  // namespace

void register_pool_ops() {
  register_kernel("", "MaxPool", 1, window_kernel([](const WindowAttrs& a, const ir::Node& n, OpContext& ctx) {
    max_pool(pool_window(a, ctx.in(0)), n.attr_int("storage_order", 0) != 0, ctx);
  }));
  register_kernel("", "AveragePool", 1, window_kernel([](const WindowAttrs& a, const ir::Node& n, OpContext& ctx) {
    average_pool(pool_window(a, ctx.in(0)), n.attr_int("count_include_pad", 0) != 0, ctx);
  }));
  register_kernel("", "LpPool", 1, window_kernel([](const WindowAttrs& a, const ir::Node& n, OpContext& ctx) {
    lp_pool(pool_window(a, ctx.in(0)), lp_order(n), ctx);
  }));
  register_kernel("", "MaxUnpool", 9, window_kernel([](const WindowAttrs& a, const ir::Node&, OpContext& ctx) {
    max_unpool(a, ctx);
  }));
  register_kernel("", "GlobalMaxPool", 1, simple_kernel([](const ir::Node&, OpContext& ctx) {
    max_pool(global_window(ctx.in(0)), false, ctx);
  }));
  register_kernel("", "GlobalAveragePool", 1, simple_kernel([](const ir::Node&, OpContext& ctx) {
    average_pool(global_window(ctx.in(0)), false, ctx);
  }));
  register_kernel("", "GlobalLpPool", 1, simple_kernel([](const ir::Node& n, OpContext& ctx) {
    lp_pool(global_window(ctx.in(0)), lp_order(n), ctx);
  }));
}

}  // namespace slmops::runtime::ops
