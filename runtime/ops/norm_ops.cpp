// Normalizations: LayerNormalization, BatchNormalization, InstanceNormalization,
// LpNormalization, MeanVarianceNormalization and LRN.
#include <algorithm>

#include "runtime/ops/reduce_common.h"

namespace slmops::runtime::ops::reduction {
namespace {

constexpr int64_t kGrainElements = 1 << 14;

// Mean and (population) variance of x[0, n), in two passes for accuracy:
//   mean = Σx / n,  var = Σ(x - mean)² / n.
template <typename C>
struct Moments {
  C mean, var;
};
template <typename C>
Moments<C> moments(const C* x, int64_t n) {
  const C mean = fold(SumOp<C>{}, x, n) / static_cast<C>(n);
  return {mean, fold(SquaredDeviationOp<C>(mean), x, n) / static_cast<C>(n)};
}

// y = a·x + b over one row: the per-channel affine map that Batch and InstanceNormalization
// reduce to, with a = scale / sqrt(var + eps) and b = bias - mean·a.
template <typename T>
void affine_row(const T* x, T* y, int64_t n, compute_t<T> a, compute_t<T> b) {
  for (int64_t i = 0; i < n; ++i) y[i] = store<T>(load(x[i]) * a + b);
}

// Tensor `t` as n values of compute type C, broadcast to `shape` (n elements) when smaller.
template <typename C>
std::vector<C> broadcast_values(const Tensor& t, const std::vector<int64_t>& shape, const char* what) {
  std::vector<C> out(static_cast<size_t>(product(shape)));
  dispatch<kFloats | kHalfs>(t.dtype, what, [&](auto tag) {
    using T = decltype(tag);
    const T* p = t.values<T>();
    if (t.dims.size() > shape.size() || broadcast_shapes({t.dims, shape}) != shape)
      bad_input("{} {} does not broadcast to the normalized shape", what, describe(t));
    std::array<std::vector<int64_t>, 1> strides = {broadcast_strides(t.dims, shape)};
    for_each_broadcast<1>(shape, strides,
                          [&](int64_t o, const std::array<int64_t, 1>& off) { out[o] = load(p[off[0]]); });
  });
  return out;
}

// A per-channel parameter of BatchNormalization/InstanceNormalization as `count` values.
template <typename C>
std::vector<C> channel_values(const Tensor& t, int64_t count, const char* what) {
  if (static_cast<int64_t>(t.numel()) != count) bad_input("{} has {} elements, expected {}", what, t.numel(), count);
  return broadcast_values<C>(t, {count}, what);
}

// ---- LayerNormalization --------------------------------------------------------------------

// Normalizes rows of prod(dims[axis:]) elements: for each row
//   y = (x - mean) / sqrt(var + epsilon) · scale + bias,
// Mean and InvStdDev (optional outputs, shape dims[:axis] + 1s, of stash_type) per row.
void layer_norm(const ir::Node& n, OpContext& ctx) {
  const Tensor& x = ctx.in(0);
  const auto rank = static_cast<int64_t>(x.dims.size());
  const int64_t axis = normalize_axis(n.attr_int("axis", -1), rank);
  const double eps = n.attr_float("epsilon", 1e-5f);
  const AxisSplit s = flatten_at(x.dims, axis);
  const std::vector<int64_t> row_shape(x.dims.begin() + axis, x.dims.end());
  std::vector<double> means(s.outer), inv_stds(s.outer);
  Tensor& y = ctx.set_out(0, new_tensor(x.dtype, x.dims));
  dispatch<kFloats | kHalfs>(x.dtype, "LayerNormalization", [&](auto tag) {
    using T = decltype(tag);
    using C = compute_t<T>;
    const std::vector<C> scale = broadcast_values<C>(ctx.in(1), row_shape, "Scale");
    const std::vector<C> bias = ctx.has_input(2) ? broadcast_values<C>(ctx.in(2), row_shape, "B")
                                                 : std::vector<C>(s.axis, C(0));
    const T* in = x.values<T>();
    T* out = y.mutable_values<T>();
    const int64_t len = s.axis;
    auto rows = [&](int64_t b, int64_t e) {
      std::vector<C> xs, ys;
      for (int64_t r = b; r < e; ++r) {
        const C* xr = as_compute(in + r * len, len, xs);
        C* yr = compute_out(out + r * len, len, ys);
        const Moments<C> mv = moments(xr, len);
        const C inv = C(1) / std::sqrt(mv.var + static_cast<C>(eps));
        for (int64_t i = 0; i < len; ++i) yr[i] = (xr[i] - mv.mean) * inv * scale[i] + bias[i];
        commit(yr, out + r * len, len);
        means[r] = mv.mean;
        inv_stds[r] = inv;
      }
    };
    ctx.pool->parallel_for(s.outer, std::max<int64_t>(1, kGrainElements / std::max<int64_t>(1, len)), rows);
  });
  std::vector<int64_t> stat_shape = x.dims;
  std::fill(stat_shape.begin() + axis, stat_shape.end(), 1);
  const auto stash = static_cast<DType>(n.attr_int("stash_type", 1));
  if (wants_output(ctx, 1)) ctx.set_out(1, tensor_from_doubles(stash, stat_shape, means));
  if (wants_output(ctx, 2)) ctx.set_out(2, tensor_from_doubles(stash, stat_shape, inv_stds));
}

// ---- BatchNormalization / InstanceNormalization ---------------------------------------------

// BatchNormalization on X [N, C, ...] with per-channel scale, B, input_mean, input_var. The
// parameters have P elements: C, or C·D1·... with spatial=0 before opset 9; each is applied
// to rows of `inner` = numel / (N·P) elements.
//   Inference: y = (x - input_mean) / sqrt(input_var + eps) · scale + B.
//   Training (training_mode, opset >= 14): the batch's own mean and population variance per
//   channel replace input_mean/var, and outputs 1 and 2 are the running statistics
//     running = input · momentum + batch · (1 - momentum).
void batch_norm(const ir::Node& n, OpContext& ctx, bool training) {
  const Tensor& x = ctx.in(0);
  if (x.dims.size() < 2) bad_input("input X has rank {}, expected at least 2", x.dims.size());
  const double eps = n.attr_float("epsilon", 1e-5f);
  const double momentum = n.attr_float("momentum", 0.9f);
  const int64_t batch = x.dims[0];
  const auto channels = static_cast<int64_t>(ctx.in(1).numel());
  const int64_t inner = channels && batch ? static_cast<int64_t>(x.numel()) / (batch * channels) : 0;
  if (batch * channels * inner != static_cast<int64_t>(x.numel()))
    bad_input("scale has {} elements, which does not divide input X {}", channels, describe(x));
  Tensor& y = ctx.set_out(0, new_tensor(x.dtype, x.dims));
  dispatch<kFloats | kHalfs>(x.dtype, "BatchNormalization", [&](auto tag) {
    using T = decltype(tag);
    using C = compute_t<T>;
    const T* in = x.values<T>();
    std::vector<C> mean = channel_values<C>(ctx.in(3), channels, "input_mean");
    std::vector<C> var = channel_values<C>(ctx.in(4), channels, "input_var");
    if (training) {
      // Batch statistics per channel over N and the inner elements.
      std::vector<C> batch_mean(channels), batch_var(channels), xs;
      const C count = static_cast<C>(batch * inner);
      for (int64_t c = 0; c < channels; ++c) {
        C sum = 0, dev = 0;
        auto row = [&](int64_t b) { return as_compute(in + (b * channels + c) * inner, inner, xs); };
        for (int64_t b = 0; b < batch; ++b) sum += fold(SumOp<C>{}, row(b), inner);
        batch_mean[c] = sum / count;
        for (int64_t b = 0; b < batch; ++b) dev += fold(SquaredDeviationOp<C>(batch_mean[c]), row(b), inner);
        batch_var[c] = dev / count;
      }
      std::vector<double> running_mean(channels), running_var(channels);
      for (int64_t c = 0; c < channels; ++c) {
        running_mean[c] = mean[c] * momentum + batch_mean[c] * (1 - momentum);
        running_var[c] = var[c] * momentum + batch_var[c] * (1 - momentum);
      }
      if (wants_output(ctx, 1)) ctx.set_out(1, tensor_from_doubles(ctx.in(3).dtype, {channels}, running_mean));
      if (wants_output(ctx, 2)) ctx.set_out(2, tensor_from_doubles(ctx.in(4).dtype, {channels}, running_var));
      mean = std::move(batch_mean);
      var = std::move(batch_var);
    }
    const std::vector<C> scale = channel_values<C>(ctx.in(1), channels, "scale");
    const std::vector<C> bias = channel_values<C>(ctx.in(2), channels, "B");
    T* out = y.mutable_values<T>();
    auto rows = [&](int64_t b, int64_t e) {
      for (int64_t r = b; r < e; ++r) {
        const int64_t c = r % channels;
        const C a = scale[c] / std::sqrt(var[c] + static_cast<C>(eps));
        affine_row(in + r * inner, out + r * inner, inner, a, bias[c] - mean[c] * a);
      }
    };
    ctx.pool->parallel_for(batch * channels, std::max<int64_t>(1, kGrainElements / std::max<int64_t>(1, inner)), rows);
  });
}

// InstanceNormalization on X [N, C, ...]: each (n, c) row is normalized by its own mean and
// variance: y = (x - mean) / sqrt(var + eps) · scale[c] + B[c].
void instance_norm(const ir::Node& n, OpContext& ctx) {
  const Tensor& x = ctx.in(0);
  if (x.dims.size() < 2) bad_input("input has rank {}, expected at least 2", x.dims.size());
  const double eps = n.attr_float("epsilon", 1e-5f);
  const int64_t channels = x.dims[1], rows = x.dims[0] * channels, len = product(x.dims, 2);
  Tensor& y = ctx.set_out(0, new_tensor(x.dtype, x.dims));
  dispatch<kFloats | kHalfs>(x.dtype, "InstanceNormalization", [&](auto tag) {
    using T = decltype(tag);
    using C = compute_t<T>;
    const std::vector<C> scale = channel_values<C>(ctx.in(1), channels, "scale");
    const std::vector<C> bias = channel_values<C>(ctx.in(2), channels, "B");
    const T* in = x.values<T>();
    T* out = y.mutable_values<T>();
    auto run = [&](int64_t b, int64_t e) {
      std::vector<C> xs;
      for (int64_t r = b; r < e; ++r) {
        const int64_t c = r % channels;
        const Moments<C> mv = moments(as_compute(in + r * len, len, xs), len);
        const C a = scale[c] / std::sqrt(mv.var + static_cast<C>(eps));
        affine_row(in + r * len, out + r * len, len, a, bias[c] - mv.mean * a);
      }
    };
    ctx.pool->parallel_for(rows, std::max<int64_t>(1, kGrainElements / std::max<int64_t>(1, len)), run);
  });
}

// ---- normalizations by reduced statistics ---------------------------------------------------

// y = f(x, s_0, s_1, ...) element-wise, where the stats s_k are reductions of x with keepdims
// (so they broadcast against x).
template <size_t N, typename F>
Tensor map_with_stats(const Tensor& x, const std::array<Tensor, N>& stats, const char* what, F f) {
  Tensor y = new_tensor(x.dtype, x.dims);
  dispatch<kFloats | kHalfs>(x.dtype, what, [&](auto tag) {
    using T = decltype(tag);
    std::array<std::vector<int64_t>, N + 1> strides;
    strides[0] = strides_of(x.dims);
    for (size_t k = 0; k < N; ++k) strides[k + 1] = broadcast_strides(stats[k].dims, x.dims);
    const T* in = x.values<T>();
    T* out = y.mutable_values<T>();
    for_each_broadcast<N + 1>(x.dims, strides, [&](int64_t o, const std::array<int64_t, N + 1>& off) {
      std::array<compute_t<T>, N> s;
      for (size_t k = 0; k < N; ++k) s[k] = load(stats[k].template values<T>()[off[k + 1]]);
      out[o] = store<T>(f(load(in[off[0]]), s));
    });
  });
  return y;
}

// LpNormalization: y = x / ‖x‖_p along `axis`, p ∈ {1, 2}.
void lp_norm(const ir::Node& n, OpContext& ctx) {
  const Tensor& x = ctx.in(0);
  const int64_t axis = normalize_axis(n.attr_int("axis", -1), static_cast<int64_t>(x.dims.size()));
  const int64_t p = n.attr_int("p", 2);
  if (p != 1 && p != 2) bad_input("attribute p is {}, expected 1 or 2", p);
  std::vector<bool> reduced(x.dims.size(), false);
  reduced[axis] = true;
  const Tensor norm = reduce(x, reduced, p == 1 ? ReduceKind::L1 : ReduceKind::L2, true, ctx.pool);
  ctx.set_out(0, map_with_stats<1>(x, {norm}, "LpNormalization", [](auto v, const auto& s) { return v / s[0]; }));
}

// MeanVarianceNormalization over `axes` (default [0, 2, 3]), as ONNX defines it:
//   y = (x - E[x]) / (sqrt(E[x²] - E[x]²) + 1e-9).
void mean_variance_norm(const ir::Node& n, OpContext& ctx) {
  const Tensor& x = ctx.in(0);
  const auto rank = static_cast<int64_t>(x.dims.size());
  std::vector<int64_t> axes = n.attr("axes") ? n.attr_ints("axes") : std::vector<int64_t>{0, 2, 3};
  std::vector<bool> reduced(x.dims.size(), false);
  for (int64_t a : axes) reduced[normalize_axis(a, rank, "axes value")] = true;
  const Tensor mean = reduce(x, reduced, ReduceKind::Mean, true, ctx.pool);
  const Tensor sum_sq = reduce(x, reduced, ReduceKind::SumSquare, true, ctx.pool);
  const double count = static_cast<double>(x.numel()) / static_cast<double>(mean.numel());
  auto normalize = [count](auto v, const auto& s) {  // s = {E[x], Σx²}
    using C = decltype(v);
    const C mean_sq = s[1] / static_cast<C>(count);
    return (v - s[0]) / (std::sqrt(mean_sq - s[0] * s[0]) + C(1e-9));
  };
  ctx.set_out(0, map_with_stats<2>(x, {mean, sum_sq}, "MeanVarianceNormalization", normalize));
}

// ---- LRN -----------------------------------------------------------------------------------

// Local response normalization across channels of X [N, C, ...]:
//   y = x / (bias + alpha / size · Σ_{c' ∈ window(c)} x[c']²)^beta,
// window(c) = [c - floor((size-1)/2), c + ceil((size-1)/2)] clipped to [0, C).
void lrn(const ir::Node& n, OpContext& ctx) {
  const Tensor& x = ctx.in(0);
  if (x.dims.size() < 2) bad_input("input has rank {}, expected at least 2", x.dims.size());
  const int64_t size = n.attr_int("size", 0);
  if (size <= 0) bad_input("attribute size is {}, expected a positive window", size);
  const double alpha = n.attr_float("alpha", 1e-4f), beta = n.attr_float("beta", 0.75f);
  const double bias = n.attr_float("bias", 1.0f);
  const int64_t channels = x.dims[1], len = product(x.dims, 2);
  const int64_t before = (size - 1) / 2, after = size - 1 - before;
  Tensor& y = ctx.set_out(0, new_tensor(x.dtype, x.dims));
  dispatch<kFloats | kHalfs>(x.dtype, "LRN", [&](auto tag) {
    using T = decltype(tag);
    using C = compute_t<T>;
    const T* in = x.values<T>();
    T* out = y.mutable_values<T>();
    auto run = [&](int64_t b, int64_t e) {
      std::vector<C> sq(len);
      for (int64_t r = b; r < e; ++r) {
        const int64_t c = r % channels, first = r - c;  // first: row of channel 0 of this image
        std::fill(sq.begin(), sq.end(), C(0));
        for (int64_t k = std::max<int64_t>(0, c - before); k <= std::min(channels - 1, c + after); ++k) {
          const T* row = in + (first + k) * len;
          for (int64_t i = 0; i < len; ++i) sq[i] += load(row[i]) * load(row[i]);
        }
        for (int64_t i = 0; i < len; ++i) {
          const C d = std::pow(static_cast<C>(bias) + static_cast<C>(alpha / size) * sq[i], static_cast<C>(beta));
          out[r * len + i] = store<T>(load(in[r * len + i]) / d);
        }
      }
    };
    const int64_t work = std::max<int64_t>(1, len * size);
    ctx.pool->parallel_for(x.dims[0] * channels, std::max<int64_t>(1, kGrainElements / work), run);
  });
}

}  // namespace

void register_norm_ops() {
  register_kernel("", "LayerNormalization", 17, simple_kernel(layer_norm));
  register_kernel("", "BatchNormalization", 1,
                  simple_kernel([](const ir::Node& n, OpContext& ctx) { batch_norm(n, ctx, false); }));
  register_kernel("", "BatchNormalization", 14, simple_kernel([](const ir::Node& n, OpContext& ctx) {
                    batch_norm(n, ctx, n.attr_int("training_mode", 0) != 0);
                  }));
  register_kernel("", "InstanceNormalization", 1, simple_kernel(instance_norm));
  register_kernel("", "LpNormalization", 1, simple_kernel(lp_norm));
  register_kernel("", "MeanVarianceNormalization", 9, simple_kernel(mean_variance_norm));
  register_kernel("", "LRN", 1, simple_kernel(lrn));
}

}  // namespace slmops::runtime::ops::reduction
