// Pooling over any number of spatial dims: MaxPool (with Indices), AveragePool, LpPool, their
// Global forms (one window covering each plane), and MaxUnpool.
#include <algorithm>
#include <cmath>
#include <limits>

#include <emmintrin.h>

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

// Where the windows of a pool fall on an input plane. Outputs are handled a row at a time
// (a run along the last spatial dim with the same leading coordinates): all windows of an
// output row cover the same input rows, and output j of the row covers, in each of them,
// the elements first[j] + t * dilation for t < count[j].
class PoolGeometry {
 public:
  explicit PoolGeometry(kernels::WindowShape shape) : s(std::move(shape)) {
    const size_t last = s.rank() - 1;
    std::vector<std::vector<Span>> leading;
    for (size_t d = 0; d < last; ++d) leading.push_back(spans(d));
    last_ = spans(last);

    // The input rows of every output row: the product of the leading dims' spans, in
    // row-major order (MaxPool's ties go to the first element).
    const std::vector<int64_t> in_strides = strides_of(s.in);
    const int64_t out_rows = product(s.out, 0, last);
    rows_.resize(out_rows);
    std::vector<int64_t> o(last);
    for (int64_t r = 0; r < out_rows; ++r) {
      int64_t rest = r;
      for (size_t d = last; d-- > 0;) {
        o[d] = rest % s.out[d];
        rest /= s.out[d];
      }
      RowWindows& w = rows_[r];
      w.rows.push_back(0);
      for (size_t d = 0; d < last; ++d) {
        const Span& span = leading[d][o[d]];
        std::vector<int64_t> rows;
        for (int64_t row : w.rows)
          for (int64_t k = 0; k < span.count; ++k) rows.push_back(row + (span.first + k * s.dilations[d]) * in_strides[d]);
        w.rows.swap(rows);
        w.padded *= span.padded;
      }
    }
  }

  const kernels::WindowShape s;

  int64_t out_rows() const { return static_cast<int64_t>(rows_.size()); }
  int64_t row_length() const { return s.out.back(); }
  // Input elements under the window of output j of output row r: inside the input, and
  // inside input + padding.
  int64_t count(int64_t r, int64_t j) const { return static_cast<int64_t>(rows_[r].rows.size()) * last_[j].count; }
  int64_t padded_count(int64_t r, int64_t j) const { return rows_[r].padded * last_[j].padded; }

  // Calls f(offset) with the in-plane offset of every input element under that window.
  template <typename F>
  void visit(int64_t r, int64_t j, F&& f) const {
    const Span span = last_[j];
    const int64_t step = s.dilations.back();
    for (int64_t row : rows_[r].rows)
      for (int64_t t = 0; t < span.count; ++t) f(row + span.first + t * step);
  }

 private:
  // The kernel positions of the window of output o along a dim: `count` of them lie inside
  // the input, from index `first` on; `padded` lie inside input + padding.
  struct Span {
    int64_t first, count, padded;
  };
  struct RowWindows {
    std::vector<int64_t> rows;  // in-plane offsets of the input rows
    int64_t padded = 1;         // product of the leading dims' padded counts
  };

  std::vector<Span> spans(size_t d) const {
    const int64_t dil = s.dilations[d], k = s.kernel[d], in = s.in[d];
    std::vector<Span> out;
    for (int64_t o = 0; o < s.out[d]; ++o) {
      const int64_t start = o * s.strides[d] - s.pad_begin[d];
      // Kernel positions [lo, hi) land inside [0, in); [0, hi_padded) inside in + pad_end.
      const int64_t lo = start >= 0 ? 0 : (-start + dil - 1) / dil;
      const int64_t hi = start >= in ? 0 : std::min(k, (in - 1 - start) / dil + 1);
      const int64_t hi_padded = std::min(k, (in + s.pad_end[d] - start + dil - 1) / dil);
      out.push_back({start + lo * dil, std::max<int64_t>(0, hi - lo), std::max<int64_t>(0, hi_padded)});
    }
    return out;
  }

  std::vector<Span> last_;
  std::vector<RowWindows> rows_;
};

// Runs fn(plane) over the N*C planes, in parallel.
void for_each_plane(const PoolGeometry& g, int64_t planes, ThreadPool* pool, const std::function<void(int64_t)>& fn) {
  const int64_t work = std::max<int64_t>(1, g.s.out_size() * g.s.kernel_size());
  parallel_range(pool, planes, std::max<int64_t>(1, (int64_t{1} << 15) / work), [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) fn(p);
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

// Whether every window of a 2-D pool lies inside the input (no padding, no ceil_mode
// overhang): then the windows need no clipping.
bool windows_inside_2d(const kernels::WindowShape& s) {
  if (s.rank() != 2) return false;
  for (size_t d = 0; d < 2; ++d)
    if (s.pad_begin[d] != 0 || s.out[d] < 1 ||
        (s.out[d] - 1) * s.strides[d] + (s.kernel[d] - 1) * s.dilations[d] >= s.in[d])
      return false;
  return true;
}

// MaxPool of float32 2-D planes whose windows lie inside the input, without Indices: plain
// loops (the CNN's 2x2 pool on 8x8 planes spent most of its time in the general window
// walk).
void max_pool_2d_inside(const kernels::WindowShape& s, const float* x, float* y, int64_t planes, ThreadPool* pool) {
  const int64_t H = s.in[0], W = s.in[1], OH = s.out[0], OW = s.out[1];
  const int64_t KH = s.kernel[0], KW = s.kernel[1], sh = s.strides[0], sw = s.strides[1];
  const int64_t dh = s.dilations[0], dw = s.dilations[1];
  parallel_range(pool, planes, std::max<int64_t>(1, (int64_t{1} << 15) / std::max<int64_t>(1, OH * OW * KH * KW)),
                 [=](int64_t p0, int64_t p1) {  // by value: stores to y would force reloads through a reference
                   for (int64_t p = p0; p < p1; ++p) {
                     const float* plane = x + p * H * W;
                     float* out = y + p * OH * OW;
                     if (KH == 2 && KW == 2 && dh == 1 && dw == 1) {  // the usual 2x2 pool, unrolled
                       for (int64_t oy = 0; oy < OH; ++oy) {
                         const float* r0 = plane + oy * sh * W;
                         const float* r1 = r0 + W;
                         int64_t ox = 0;
                         if (sw == 2)  // four outputs from eight columns of both rows (SSE2)
                           for (; ox + 4 <= OW; ox += 4) {
                             const float* a = r0 + 2 * ox;
                             const float* b = r1 + 2 * ox;
                             const __m128 a0 = _mm_loadu_ps(a), a1 = _mm_loadu_ps(a + 4);
                             const __m128 b0 = _mm_loadu_ps(b), b1 = _mm_loadu_ps(b + 4);
                             // Even and odd columns; _mm_max_ps(q, p) is std::max(p, q) bit for
                             // bit (p when either is NaN, p for -0 vs +0), in the scalar order.
                             const __m128 ae = _mm_shuffle_ps(a0, a1, _MM_SHUFFLE(2, 0, 2, 0));
                             const __m128 ao = _mm_shuffle_ps(a0, a1, _MM_SHUFFLE(3, 1, 3, 1));
                             const __m128 be = _mm_shuffle_ps(b0, b1, _MM_SHUFFLE(2, 0, 2, 0));
                             const __m128 bo = _mm_shuffle_ps(b0, b1, _MM_SHUFFLE(3, 1, 3, 1));
                             const __m128 ma = _mm_max_ps(ao, ae), mb = _mm_max_ps(bo, be);
                             _mm_storeu_ps(out + oy * OW + ox, _mm_max_ps(mb, ma));
                           }
                         for (; ox < OW; ++ox) {
                           const int64_t i = ox * sw;
                           out[oy * OW + ox] = std::max(std::max(r0[i], r0[i + 1]), std::max(r1[i], r1[i + 1]));
                         }
                       }
                       continue;
                     }
                     for (int64_t oy = 0; oy < OH; ++oy)
                       for (int64_t ox = 0; ox < OW; ++ox) {
                         const float* w0 = plane + oy * sh * W + ox * sw;
                         float best = -std::numeric_limits<float>::infinity();
                         for (int64_t ky = 0; ky < KH; ++ky)
                           for (int64_t kx = 0; kx < KW; ++kx) best = std::max(best, w0[ky * dh * W + kx * dw]);
                         out[oy * OW + ox] = best;
                       }
                   }
                 });
}

// MaxPool of float32 2-D planes with any padding, stride, dilation or ceil_mode, without
// Indices (the ResNet stem's 3x3 stride-2 pool with padding 1). Per output row: the largest
// element of each input column over the window's rows inside the input (one contiguous,
// vectorizable pass per row), into a row buffer that has `lowest` in the padding on both
// sides; then one contiguous pass per kernel column over that buffer (stride 2: over its even
// and odd elements, split apart first; larger strides window by window). The comparisons
// are the generic path's (v > best ? v : best from `lowest` on: NaN never wins), in another
// order (rows first), which can only change which of +0 and -0 is kept.
void max_pool_2d_padded(const kernels::WindowShape& s, const float* x, float* y, int64_t planes, ThreadPool* pool) {
  const int64_t H = s.in[0], W = s.in[1], OH = s.out[0], OW = s.out[1];
  const int64_t KH = s.kernel[0], KW = s.kernel[1], sh = s.strides[0], sw = s.strides[1];
  const int64_t dh = s.dilations[0], dw = s.dilations[1], ph = s.pad_begin[0], pw = s.pad_begin[1];
  const int64_t right = std::max<int64_t>(0, (OW - 1) * sw + (KW - 1) * dw + 1 - pw - W);
  const float lowest = std::numeric_limits<float>::lowest();
  parallel_range(pool, planes, std::max<int64_t>(1, (int64_t{1} << 15) / std::max<int64_t>(1, OH * OW * KH * KW)),
                 [=](int64_t p0, int64_t p1) {
                   thread_local std::vector<float> buffer, halves;
                   const int64_t span = pw + W + right;
                   buffer.assign(static_cast<size_t>(span), lowest);
                   float* row = buffer.data() + pw;  // row[-pw .. W + right)
                   // Stride 2: the row's even and odd elements apart, so that each kernel
                   // column's taps are contiguous (base[2 ox + t] = even or odd[ox + t / 2]).
                   const int64_t half = (span + 1) / 2;
                   if (sw == 2) halves.resize(static_cast<size_t>(2 * half));
                   float* even = halves.data();
                   float* odd = even + half;
                   for (int64_t p = p0; p < p1; ++p) {
                     const float* plane = x + p * H * W;
                     float* out = y + p * OH * OW;
                     for (int64_t oy = 0; oy < OH; ++oy, out += OW) {
                       std::fill(row, row + W, lowest);
                       for (int64_t ky = 0; ky < KH; ++ky) {
                         const int64_t iy = oy * sh - ph + ky * dh;
                         if (iy < 0 || iy >= H) continue;
                         const float* in = plane + iy * W;
                         for (int64_t ix = 0; ix < W; ++ix) row[ix] = in[ix] > row[ix] ? in[ix] : row[ix];
                       }
                       const float* base = row - pw;
                       if (sw > 2) {
                         for (int64_t ox = 0; ox < OW; ++ox) {
                           const float* w0 = base + ox * sw;
                           float best = lowest;
                           for (int64_t kx = 0; kx < KW; ++kx) best = w0[kx * dw] > best ? w0[kx * dw] : best;
                           out[ox] = best;
                         }
                         continue;
                       }
                       if (sw == 2)
                         for (int64_t i = 0; i < span / 2; ++i) even[i] = base[2 * i], odd[i] = base[2 * i + 1];
                       if (sw == 2 && span % 2) even[span / 2] = base[span - 1];
                       // One contiguous (vectorizable) pass per kernel column, in the order
                       // of the per-window loop: out = max(lowest, tap 0, tap 1, ...).
                       std::fill(out, out + OW, lowest);
                       for (int64_t kx = 0; kx < KW; ++kx) {
                         const int64_t t = kx * dw;
                         const float* tap = sw == 1 ? base + t : (t % 2 ? odd : even) + t / 2;
                         for (int64_t ox = 0; ox < OW; ++ox) out[ox] = tap[ox] > out[ox] ? tap[ox] : out[ox];
                       }
                     }
                   }
                 });
}

// Y = the largest element of each window; Indices (optional) = its flat position in X, with
// the spatial part row-major (storage_order 0) or column-major (1).
void max_pool(const kernels::WindowShape& s, bool column_major, OpContext& ctx) {
  const Tensor& x = ctx.in(0);
  if (x.dtype == DType::Float && ctx.output_count() == 1 && windows_inside_2d(s)) {
    Tensor& y = ctx.set_out(0, new_tensor(x.dtype, output_dims(x, s)));
    max_pool_2d_inside(s, x.values<float>(), y.mutable_values<float>(), x.dims[0] * x.dims[1], ctx.pool);
    return;
  }
  if (x.dtype == DType::Float && ctx.output_count() == 1 && s.rank() == 2 && s.out_size() > 0 && s.in_size() > 0) {
    Tensor& y = ctx.set_out(0, new_tensor(x.dtype, output_dims(x, s)));
    max_pool_2d_padded(s, x.values<float>(), y.mutable_values<float>(), x.dims[0] * x.dims[1], ctx.pool);
    return;
  }
  const PoolGeometry g(s);
  Tensor& y = ctx.set_out(0, new_tensor(x.dtype, output_dims(x, s)));
  int64_t* indices = nullptr;
  if (ctx.output_count() > 1) indices = ctx.set_out(1, new_tensor(DType::Int64, y.dims)).mutable_values<int64_t>();
  const int64_t in_size = s.in_size(), out_size = s.out_size();
  const std::vector<int64_t> in_strides = strides_of(s.in);
  // The position of in-plane offset `off` as Indices counts it.
  auto index_of = [&](int64_t plane, int64_t off) {
    if (!column_major) return plane * in_size + off;
    int64_t index = 0, scale = 1;
    for (size_t d = 0; d < s.rank(); ++d) {
      index += off / in_strides[d] % s.in[d] * scale;
      scale *= s.in[d];
    }
    return plane * in_size + index;
  };
  dispatch<kFloats | kHalfs | kSigned | kUnsigned>(x.dtype, "MaxPool", [&](auto tag) {
    using T = decltype(tag);
    const T* px = x.values<T>();
    T* py = y.mutable_values<T>();
    for_each_plane(g, x.dims[0] * x.dims[1], ctx.pool, [&](int64_t p) {
      const T* plane = px + p * in_size;
      int64_t o = p * out_size;
      for (int64_t r = 0; r < g.out_rows(); ++r)
        for (int64_t j = 0; j < g.row_length(); ++j, ++o) {
          Acc<T> best = std::numeric_limits<Acc<T>>::lowest();
          if (!indices) {  // branch-free when the position is not wanted
            g.visit(r, j, [&](int64_t off) { best = std::max(best, load(plane[off])); });
            py[o] = store<T>(best);
            continue;
          }
          int64_t best_off = -1;
          g.visit(r, j, [&](int64_t off) {
            const Acc<T> v = load(plane[off]);
            if (best_off < 0 || v > best) {
              best = v;
              best_off = off;
            }
          });
          py[o] = store<T>(best);
          indices[o] = best_off < 0 ? -1 : index_of(p, best_off);
        }
    });
  });
}

// ---- AveragePool and LpPool ----------------------------------------------------------------

// Y = finish(sum of term(x) over the window, elements in the window inside the input, inside
// input + padding) for float types; padding adds nothing.
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
    for_each_plane(g, x.dims[0] * x.dims[1], ctx.pool, [&](int64_t p) {
      const T* plane = px + p * in_size;
      int64_t o = p * out_size;
      for (int64_t r = 0; r < g.out_rows(); ++r)
        for (int64_t j = 0; j < g.row_length(); ++j, ++o) {
          Acc<T> sum = 0;
          g.visit(r, j, [&](int64_t off) { sum += term(load(plane[off])); });
          py[o] = store<T>(finish(sum, g.count(r, j), g.padded_count(r, j)));
        }
    });
  });
}

// The mean over the window's elements inside the input, or (count_include_pad) over its
// positions inside input + padding.
void average_pool(const kernels::WindowShape& s, bool count_include_pad, OpContext& ctx) {
  sum_pool(
      s, "AveragePool", ctx, [](auto v) { return v; },
      [count_include_pad](auto sum, int64_t count, int64_t padded) {
        const int64_t n = count_include_pad ? padded : count;
        return n > 0 ? sum / static_cast<decltype(sum)>(n) : sum;
      });
}

// (sum |x|^p)^(1/p) over the window.
void lp_pool(const kernels::WindowShape& s, double p, OpContext& ctx) {
  sum_pool(
      s, "LpPool", ctx, [p](auto v) { return static_cast<decltype(v)>(std::pow(std::abs(v), p)); },
      [p](auto sum, int64_t, int64_t) { return static_cast<decltype(sum)>(std::pow(sum, 1.0 / p)); });
}

// LpPool-1 has a float p, later versions an int.
double lp_order(const ir::Node& n) {
  const ir::Attribute* a = n.attr("p");
  const double p = !a ? 2.0 : a->type == ir::AttrType::Float ? a->f : static_cast<double>(a->i);
  if (!(p > 0)) bad_input("p {} must be positive", p);
  return p;
}

// ---- MaxUnpool -----------------------------------------------------------------------------

// Y = zeros with X's elements placed where Indices says (as MaxPool made them). Indices are
// flat positions in the shape MaxPool's input is inferred to have, (out - 1) * stride +
// kernel - pads; an explicit output_shape (which may be larger, as when that input had an
// odd size) receives each element at the same coordinates.
void max_unpool(const WindowAttrs& a, OpContext& ctx) {
  const Tensor& x = ctx.in(0);
  const Tensor& ind = ctx.in(1);
  if (ind.dtype != DType::Int64 || ind.dims != x.dims) bad_input("I {} must be int64 shaped like X {}", describe(ind), describe(x));
  const std::vector<int64_t> spatial = spatial_dims(x);
  const size_t rank = spatial.size();
  if (a.kernel_shape.size() != rank) bad_input("kernel_shape has {} values, expected {}", a.kernel_shape.size(), rank);
  const std::vector<int64_t> strides = ones_or(a.strides, rank, "strides");
  const std::vector<int64_t> pads = pads_or_zeros(a, rank);
  std::vector<int64_t> inferred = {x.dims[0], x.dims[1]};
  for (size_t d = 0; d < rank; ++d)
    inferred.push_back((spatial[d] - 1) * strides[d] + a.kernel_shape[d] - pads[d] - pads[rank + d]);
  const std::vector<int64_t> y_dims = ctx.has_input(2) ? to_int64s(ctx.in(2)) : inferred;
  if (y_dims.size() != inferred.size()) bad_input("output_shape has {} values, X has rank {}", y_dims.size(), x.dims.size());

  Tensor& y = ctx.set_out(0, new_zero_tensor(x.dtype, y_dims));
  const std::vector<int64_t> from_strides = strides_of(inferred), to_strides = strides_of(y_dims);
  const int64_t positions = product(inferred);
  const size_t width = ir::traits(x.dtype).bits / 8;
  const int64_t* pi = ind.values<int64_t>();
  for (uint64_t i = 0; i < x.numel(); ++i) {
    if (pi[i] < 0 || pi[i] >= positions) bad_input("I holds {}, outside the unpooled shape's {} positions", pi[i], positions);
    int64_t to = 0;
    for (size_t d = 0; d < inferred.size(); ++d) {
      const int64_t coord = pi[i] / from_strides[d] % inferred[d];
      if (coord >= y_dims[d]) bad_input("I holds {}, outside output_shape", pi[i]);
      to += coord * to_strides[d];
    }
    std::memcpy(y.data.mutable_data() + to * width, x.data.data() + i * width, width);
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
