// Reductions: ReduceSum/Mean/Max/Min/Prod/L1/L2/LogSum/LogSumExp/SumSquare over any set of
// axes, and ArgMax/ArgMin along one axis. register_reduce_ops() also registers the rest of
// the family (softmax, normalizations, Einsum, losses).
#include <algorithm>

#include "runtime/ops/reduce_common.h"

namespace slmops::runtime::ops::reduction {

AxisSplit split_at(const std::vector<int64_t>& dims, int64_t axis) {
  return {product(dims, 0, axis), dims.empty() ? 1 : dims[axis], product(dims, axis + 1)};
}

AxisSplit flatten_at(const std::vector<int64_t>& dims, int64_t axis) {
  return {product(dims, 0, axis), product(dims, axis), 1};
}

bool wants_output(const OpContext& ctx, size_t i) {
  return i < ctx.output_count() && i < ctx.node->outputs.size() && ctx.node->outputs[i] != nullptr;
}

namespace {

// ---- fold ops of the Reduce* family (Sum, Max and Min are in reduce_common.h) ---------------

// Integer results of float formulas (mean, sqrt, log) are computed in double and truncated.
template <typename C>
using real_t = std::conditional_t<std::is_floating_point_v<C>, C, double>;

template <typename C>
struct MeanOp : SumOp<C> {
  C finish(C a, int64_t count) const {
    if constexpr (std::is_integral_v<C>)
      return count ? static_cast<C>(a / static_cast<std::common_type_t<C, int64_t>>(count)) : C(0);
    else return a / static_cast<C>(count);
  }
};

template <typename C>
struct ProdOp {
  using Acc = C;
  Acc init() const { return C(1); }
  template <typename V>
  V step(V a, V x) const { return a * x; }
  template <typename V>
  V merge(V a, V b) const { return a * b; }
  C finish(Acc a, int64_t) const { return a; }
};

template <typename C>
struct L1Op : SumOp<C> {
  template <typename V>
  V step(V a, V x) const {
    if constexpr (std::is_unsigned_v<C>) return a + x;
    else return a + (x < C(0) ? -x : x);
  }
};

template <typename C>
struct SumSquareOp : SumOp<C> {
  template <typename V>
  V step(V a, V x) const { return a + x * x; }
};

// sqrt(Σ x²)
template <typename C>
struct L2Op : SumSquareOp<C> {
  C finish(C a, int64_t) const { return static_cast<C>(std::sqrt(static_cast<real_t<C>>(a))); }
};

// log(Σ x)
template <typename C>
struct LogSumOp : SumOp<C> {
  C finish(C a, int64_t) const { return static_cast<C>(std::log(static_cast<real_t<C>>(a))); }
};

// log(Σ exp(x)) without overflow: the accumulator is (m, s) with Σ exp(x) = s·exp(m), m the
// running maximum; adding x > m rescales s by exp(m - x).
template <typename C>
struct LogSumExpOp {
  using R = real_t<C>;
  struct Acc {
    R m, s;
  };
  static constexpr R kNegInf = -std::numeric_limits<R>::infinity();
  Acc init() const { return {kNegInf, R(0)}; }
  Acc merge(Acc a, Acc b) const {
    if (b.m > a.m) std::swap(a, b);
    if (b.m == kNegInf) return a;  // b holds nothing (or only -inf terms)
    return {a.m, a.s + b.s * std::exp(b.m - a.m)};
  }
  Acc step(Acc a, C x) const { return merge(a, Acc{static_cast<R>(x), R(1)}); }
  C finish(Acc a, int64_t) const { return static_cast<C>(a.m + std::log(a.s)); }
};

// ---- multi-axis reduction ------------------------------------------------------------------

// The input seen as groups of adjacent dimensions that are all reduced or all kept (size-1
// dimensions dropped). The last group is the contiguous `inner` run; the others are listed
// with their input strides. Output element j enumerates the kept groups (then the inner run
// when it is kept) in row-major order.
struct ReduceLayout {
  std::vector<int64_t> kept_sizes, kept_strides, red_sizes, red_strides;
  int64_t inner = 1;
  bool inner_reduced = false;
  int64_t outer = 1;  // product of kept_sizes
  int64_t runs = 1;   // product of red_sizes
  int64_t count = 1;  // input elements folded into each output element

  ReduceLayout(const std::vector<int64_t>& dims, const std::vector<bool>& reduced) {
    std::vector<int64_t> sizes;
    std::vector<bool> flags;
    for (size_t d = 0; d < dims.size(); ++d) {
      if (dims[d] == 1) continue;
      if (!flags.empty() && flags.back() == reduced[d]) sizes.back() *= dims[d];
      else {
        sizes.push_back(dims[d]);
        flags.push_back(reduced[d]);
      }
    }
    if (sizes.empty()) return;  // a single element
    inner = sizes.back();
    inner_reduced = flags.back();
    int64_t stride = inner;
    for (size_t g = sizes.size() - 1; g-- > 0;) {
      auto& sz = flags[g] ? red_sizes : kept_sizes;
      auto& st = flags[g] ? red_strides : kept_strides;
      sz.insert(sz.begin(), sizes[g]);
      st.insert(st.begin(), stride);
      stride *= sizes[g];
    }
    outer = product(kept_sizes);
    runs = product(red_sizes);
    count = runs * (inner_reduced ? inner : 1);
  }
};

// Elements folded per parallel task, at least.
constexpr int64_t kGrainElements = 1 << 15;

template <typename T, typename Op>
void reduce_typed(const ReduceLayout& L, const T* x, T* y, const Op& op, ThreadPool* pool) {
  using C = compute_t<T>;
  using Acc = typename Op::Acc;
  if (L.inner_reduced) {
    // One output per kept index: fold the contiguous inner run of every reduced index.
    pool->parallel_for(L.outer, std::max<int64_t>(1, kGrainElements / L.count), [&](int64_t b, int64_t e) {
      StridedCounter kept(L.kept_sizes, L.kept_strides), red(L.red_sizes, L.red_strides);
      std::vector<C> scratch;
      kept.seek(b);
      for (int64_t j = b; j < e; ++j, kept.next()) {
        Acc acc = op.init();
        red.seek(0);
        for (int64_t r = 0; r < L.runs; ++r, red.next())
          for_blocks(x + kept.offset() + red.offset(), L.inner, scratch,
                     [&](const C* p, int64_t len) { acc = fold(op, acc, p, len); });
        y[j] = store<T>(op.finish(acc, L.count));
      }
    });
    return;
  }
  // The inner run is kept: each task folds rows of up to kBlock output columns, element-wise,
  // over every reduced index.
  const int64_t col_blocks = (L.inner + kBlock - 1) / kBlock;
  const int64_t grain = std::max<int64_t>(1, kGrainElements / (L.count * std::min(L.inner, kBlock)));
  pool->parallel_for(L.outer * col_blocks, grain, [&](int64_t b, int64_t e) {
    StridedCounter kept(L.kept_sizes, L.kept_strides), red(L.red_sizes, L.red_strides);
    std::vector<C> scratch;
    std::vector<Acc> acc;
    for (int64_t t = b; t < e; ++t) {
      const int64_t o = t / col_blocks, c0 = (t % col_blocks) * kBlock, len = std::min(kBlock, L.inner - c0);
      kept.seek(o);
      acc.assign(len, op.init());
      red.seek(0);
      for (int64_t r = 0; r < L.runs; ++r, red.next())
        fold_into(op, acc.data(), as_compute(x + kept.offset() + red.offset() + c0, len, scratch), len);
      T* out = y + o * L.inner + c0;
      for (int64_t i = 0; i < len; ++i) out[i] = store<T>(op.finish(acc[i], L.count));
    }
  });
}

template <typename T, typename Op>
void reduce_with(const Tensor& x, const std::vector<bool>& reduced, Tensor& y, const Op& op, ThreadPool* pool) {
  if (x.numel() == 0) {  // every output folds nothing
    T* out = y.mutable_values<T>();
    for (uint64_t i = 0; i < y.numel(); ++i) out[i] = store<T>(op.finish(op.init(), 0));
    return;
  }
  reduce_typed(ReduceLayout(x.dims, reduced), x.values<T>(), y.mutable_values<T>(), op, pool);
}

const char* kind_name(ReduceKind k) {
  static const char* names[] = {"ReduceSum", "ReduceMean", "ReduceMax",    "ReduceMin",       "ReduceProd",
                                "ReduceL1",  "ReduceL2",   "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare"};
  return names[static_cast<int>(k)];
}

}  // namespace

Tensor reduce(const Tensor& x, const std::vector<bool>& reduced, ReduceKind kind, bool keepdims, ThreadPool* pool) {
  std::vector<int64_t> out_dims;
  for (size_t d = 0; d < x.dims.size(); ++d) {
    if (!reduced[d]) out_dims.push_back(x.dims[d]);
    else if (keepdims) out_dims.push_back(1);
  }
  Tensor y = new_tensor(x.dtype, out_dims);
  dispatch<kNumeric>(x.dtype, kind_name(kind), [&](auto tag) {
    using T = decltype(tag);
    using C = compute_t<T>;
    switch (kind) {
      case ReduceKind::Sum: return reduce_with<T>(x, reduced, y, SumOp<C>{}, pool);
      case ReduceKind::Mean: return reduce_with<T>(x, reduced, y, MeanOp<C>{}, pool);
      case ReduceKind::Max: return reduce_with<T>(x, reduced, y, MaxOp<C>{}, pool);
      case ReduceKind::Min: return reduce_with<T>(x, reduced, y, MinOp<C>{}, pool);
      case ReduceKind::Prod: return reduce_with<T>(x, reduced, y, ProdOp<C>{}, pool);
      case ReduceKind::L1: return reduce_with<T>(x, reduced, y, L1Op<C>{}, pool);
      case ReduceKind::L2: return reduce_with<T>(x, reduced, y, L2Op<C>{}, pool);
      case ReduceKind::LogSum: return reduce_with<T>(x, reduced, y, LogSumOp<C>{}, pool);
      case ReduceKind::LogSumExp: return reduce_with<T>(x, reduced, y, LogSumExpOp<C>{}, pool);
      case ReduceKind::SumSquare: return reduce_with<T>(x, reduced, y, SumSquareOp<C>{}, pool);
    }
  });
  return y;
}

namespace {

// Reduce* ops. `axes_from_input`: the axes are input 1 (ReduceSum from opset 13, the others
// from 18) and noop_with_empty_axes applies; before, they are the `axes` attribute.
void reg_reduce(ReduceKind kind, int axes_input_since) {
  auto make = [kind](bool axes_from_input) {
    return simple_kernel([kind, axes_from_input](const ir::Node& n, OpContext& ctx) {
      const Tensor& x = ctx.in(0);
      const auto rank = static_cast<int64_t>(x.dims.size());
      std::vector<int64_t> axes;
      if (!axes_from_input) axes = n.attr_ints("axes");
      else if (ctx.has_input(1)) axes = to_int64s(ctx.in(1));
      if (axes.empty() && axes_from_input && n.attr_int("noop_with_empty_axes", 0) != 0) {
        ctx.set_out(0, x);
        return;
      }
      // No axes: reduce them all.
      std::vector<bool> reduced(x.dims.size(), axes.empty());
      for (int64_t a : axes) {
        const int64_t d = normalize_axis(a, rank, "axes value");
        if (reduced[d]) bad_input("axes lists axis {} twice", d);
        reduced[d] = true;
      }
      ctx.set_out(0, reduce(x, reduced, kind, n.attr_int("keepdims", 1) != 0, ctx.pool));
    });
  };
  const char* name = kind_name(kind);
  register_kernel("", name, 1, make(false));
  register_kernel("", name, axes_input_since, make(true));
}

// ArgMax / ArgMin along `axis`: the index of the first (or, with select_last_index, the last)
// extreme value. `Better(a, b)` is true when a replaces the current best b on a strict win.
template <typename Better>
void reg_arg(const char* name, Better better) {
  register_kernel("", name, 1, simple_kernel([name, better](const ir::Node& n, OpContext& ctx) {
    const Tensor& x = ctx.in(0);
    const auto rank = static_cast<int64_t>(x.dims.size());
    const int64_t axis = normalize_axis(n.attr_int("axis", 0), rank);
    const bool last = n.attr_int("select_last_index", 0) != 0;
    const AxisSplit s = split_at(x.dims, axis);
    if (s.axis == 0) bad_input("{} along axis {} of size 0", name, axis);
    std::vector<int64_t> out_dims = x.dims;
    if (n.attr_int("keepdims", 1) != 0) out_dims[axis] = 1;
    else out_dims.erase(out_dims.begin() + axis);
    Tensor& y = ctx.set_out(0, new_tensor(DType::Int64, out_dims));
    int64_t* out = y.mutable_values<int64_t>();
    dispatch<kNumeric>(x.dtype, name, [&](auto tag) {
      using T = decltype(tag);
      using C = compute_t<T>;
      const T* in = x.values<T>();
      // Ties go to the later index with select_last_index.
      auto wins = [&](C v, C best) { return better(v, best) || (last && v == best); };
      // For each outer index: the best value and its index, kept per inner column; the rows
      // of the axis are scanned in order so the inner loop is contiguous.
      const int64_t grain = std::max<int64_t>(1, kGrainElements / std::max<int64_t>(1, s.axis * s.inner));
      ctx.pool->parallel_for(s.outer, grain, [&](int64_t b, int64_t e) {
        std::vector<C> best(s.inner);
        for (int64_t o = b; o < e; ++o) {
          const T* slab = in + o * s.axis * s.inner;
          int64_t* idx = out + o * s.inner;
          for (int64_t i = 0; i < s.inner; ++i) {
            best[i] = load(slab[i]);
            idx[i] = 0;
          }
          for (int64_t k = 1; k < s.axis; ++k) {
            const T* row = slab + k * s.inner;
            for (int64_t i = 0; i < s.inner; ++i) {
              const C v = load(row[i]);
              if (wins(v, best[i])) {
                best[i] = v;
                idx[i] = k;
              }
            }
          }
        }
      });
    });
  }));
}

}  // namespace
}  // namespace slmops::runtime::ops::reduction

namespace slmops::runtime {
void register_reduce_ops() {
  using namespace ops::reduction;
  reg_reduce(ReduceKind::Sum, 13);
  for (ReduceKind k : {ReduceKind::Mean, ReduceKind::Max, ReduceKind::Min, ReduceKind::Prod, ReduceKind::L1,
                       ReduceKind::L2, ReduceKind::LogSum, ReduceKind::LogSumExp, ReduceKind::SumSquare})
    reg_reduce(k, 18);
  reg_arg("ArgMax", [](auto v, auto best) { return v > best; });
  reg_arg("ArgMin", [](auto v, auto best) { return v < best; });
  register_softmax_ops();
  register_norm_ops();
  register_einsum_op();
  register_loss_ops();
}
}  // namespace slmops::runtime
