// Helpers shared by the reduction and normalization op files (reduce*.cpp, norm_ops.cpp):
// compute types, vectorizable folds, the [outer, axis, inner] view of a tensor, the generic
// multi-axis reduction and the softmax rows that SoftmaxCrossEntropyLoss reuses.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#include "runtime/ops/common.h"

namespace slmops::runtime::ops::reduction {

// ---- element types -------------------------------------------------------------------------

template <typename T>
inline constexpr bool is_half_v = std::is_same_v<T, Half> || std::is_same_v<T, BFloat16>;

// The type arithmetic on T is done in: float for float16/bfloat16, T itself otherwise.
template <typename T>
using compute_t = std::conditional_t<is_half_v<T>, float, T>;

template <typename T>
inline compute_t<T> load(T v) {
  if constexpr (is_half_v<T>) return to_f32(v);
  else return v;
}
template <typename T>
inline T store(compute_t<T> v) {
  if constexpr (is_half_v<T>) return from_f32<T>(v);
  else return v;
}

// Elements per block: of conversions to the compute type, of the column blocks of strided
// loops, and of the partial sums in fold.
inline constexpr int64_t kBlock = 512;

// Calls f(p, len) for consecutive blocks of x[0, n), with p pointing at the block's elements
// as compute_t<T>: into `x` itself when T is its own compute type (one block), else into
// `scratch` after conversion (blocks of kBlock).
template <typename T, typename F>
void for_blocks(const T* x, int64_t n, std::vector<compute_t<T>>& scratch, F&& f) {
  if constexpr (std::is_same_v<T, compute_t<T>>) {
    f(x, n);
  } else {
    scratch.resize(static_cast<size_t>(std::min(n, kBlock)));
    for (int64_t b = 0; b < n; b += kBlock) {
      const int64_t len = std::min(kBlock, n - b);
      for (int64_t i = 0; i < len; ++i) scratch[i] = load(x[b + i]);
      f(static_cast<const compute_t<T>*>(scratch.data()), len);
    }
  }
}

// x[0, n) as compute_t<T>: `x` itself when T is its own compute type, else a converted copy
// in `scratch`.
template <typename T>
const compute_t<T>* as_compute(const T* x, int64_t n, std::vector<compute_t<T>>& scratch) {
  if constexpr (std::is_same_v<T, compute_t<T>>) {
    return x;
  } else {
    scratch.resize(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) scratch[i] = load(x[i]);
    return scratch.data();
  }
}

// Where to compute n results bound for y[0, n): `y` itself when T is its own compute type,
// else `scratch`, which commit() then stores into y.
template <typename T>
compute_t<T>* compute_out(T* y, int64_t n, std::vector<compute_t<T>>& scratch) {
  if constexpr (std::is_same_v<T, compute_t<T>>) {
    return y;
  } else {
    scratch.resize(static_cast<size_t>(n));
    return scratch.data();
  }
}
template <typename T>
void commit(const compute_t<T>* p, T* y, int64_t n) {
  if constexpr (!std::is_same_v<T, compute_t<T>>)
    for (int64_t i = 0; i < n; ++i) y[i] = store<T>(p[i]);
}

// ---- folds ---------------------------------------------------------------------------------
// A fold op over compute type C: init() is the identity, step(acc, x) adds one element,
// merge(a, b) joins two partial accumulators, finish(acc, count) gives the result of folding
// `count` elements. All reductions (Reduce*, softmax, norms) are written with these. Ops
// whose accumulator is C itself write step and merge as templates, so that they also run
// lane-wise on SIMD vectors of C (see fold).

// A GCC vector of C at the baseline SIMD width (16 bytes: SSE2, NEON); arithmetic,
// comparisons and ?: work on it lane by lane.
template <typename C>
struct simd {
  typedef C type __attribute__((vector_size(16)));
};
template <typename C>
using simd_t = typename simd<C>::type;

template <typename C>
simd_t<C> load_simd(const C* p) {
  simd_t<C> v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
template <typename C>
void store_simd(C* p, simd_t<C> v) {
  std::memcpy(p, &v, sizeof v);
}

// Whether Op folds C through SIMD vectors: floating point with a plain C accumulator.
// (Integer folds are left to the compiler's own vectorizer.)
template <typename Op, typename C>
inline constexpr bool kSimdFold =
    (std::is_same_v<C, float> || std::is_same_v<C, double>)&&std::is_same_v<typename Op::Acc, C>;

template <typename C>
struct SumOp {
  using Acc = C;
  Acc init() const { return C(0); }
  template <typename V>
  V step(V a, V x) const { return a + x; }
  template <typename V>
  V merge(V a, V b) const { return a + b; }
  C finish(Acc a, int64_t) const { return a; }
};

// Σ (x - center)²: the variance numerator around a known mean.
template <typename C>
struct SquaredDeviationOp : SumOp<C> {
  C center;
  explicit SquaredDeviationOp(C c) : center(c) {}
  template <typename V>
  V step(V a, V x) const { return a + (x - center) * (x - center); }
};

// Max and Min propagate NaN (like numpy): x != x is true for a NaN x, and once the
// accumulator is NaN no comparison replaces it.
template <typename C>
struct MaxOp {
  using Acc = C;
  Acc init() const {
    if constexpr (std::is_floating_point_v<C>) return -std::numeric_limits<C>::infinity();
    else return std::numeric_limits<C>::lowest();
  }
  template <typename V>
  V step(V a, V x) const { return (x > a || x != x) ? x : a; }
  template <typename V>
  V merge(V a, V b) const { return step(a, b); }
  C finish(Acc a, int64_t) const { return a; }
};

template <typename C>
struct MinOp {
  using Acc = C;
  Acc init() const {
    if constexpr (std::is_floating_point_v<C>) return std::numeric_limits<C>::infinity();
    else return std::numeric_limits<C>::max();
  }
  template <typename V>
  V step(V a, V x) const { return (x < a || x != x) ? x : a; }
  template <typename V>
  V merge(V a, V b) const { return step(a, b); }
  C finish(Acc a, int64_t) const { return a; }
};

// Folds x[0, n) into `acc`. SIMD folds keep four vectors of partial accumulators, merged
// into `acc` every kBlock elements (blocked summation: the rounding error of a long float
// sum grows with the block count, not the element count); the order of additions differs
// from a sequential fold.
template <typename Op, typename C>
typename Op::Acc fold(const Op& op, typename Op::Acc acc, const C* x, int64_t n) {
  int64_t i = 0;
  if constexpr (kSimdFold<Op, C>) {
    using V = simd_t<C>;
    constexpr int64_t kWidth = sizeof(V) / sizeof(C), kVectors = 4, kStep = kWidth * kVectors;
    static_assert(kBlock % kStep == 0);
    while (i + kStep <= n) {
      V part[kVectors];
      for (V& p : part) p = V{} + op.init();
      for (const int64_t end = std::min(n, i + kBlock); i + kStep <= end; i += kStep)
        for (int64_t k = 0; k < kVectors; ++k) part[k] = op.step(part[k], load_simd(x + i + k * kWidth));
      for (int64_t k = 1; k < kVectors; ++k) part[0] = op.merge(part[0], part[k]);
      for (int64_t w = 0; w < kWidth; ++w) acc = op.merge(acc, part[0][w]);
    }
  }
  for (; i < n; ++i) acc = op.step(acc, x[i]);
  return acc;
}

template <typename Op, typename C>
typename Op::Acc fold(const Op& op, const C* x, int64_t n) {
  return fold(op, op.init(), x, n);
}

// acc[i] = step(acc[i], x[i]) for i in [0, n): folds a row into a row of accumulators.
template <typename Op, typename C>
void fold_into(const Op& op, typename Op::Acc* acc, const C* x, int64_t n) {
  int64_t i = 0;
  if constexpr (kSimdFold<Op, C>) {
    constexpr int64_t kWidth = sizeof(simd_t<C>) / sizeof(C);
    for (; i + kWidth <= n; i += kWidth) store_simd(acc + i, op.step(load_simd(acc + i), load_simd(x + i)));
  }
  for (; i < n; ++i) acc[i] = op.step(acc[i], x[i]);
}

// ---- shapes --------------------------------------------------------------------------------

// Walks a row-major index over `sizes` and tracks the matching offset under `strides` (both
// vectors are referenced, not copied).
class StridedCounter {
 public:
  StridedCounter(const std::vector<int64_t>& sizes, const std::vector<int64_t>& strides)
      : sizes_(sizes), strides_(strides), idx_(sizes.size(), 0) {}
  // Positions the counter at linear index `i`.
  void seek(int64_t i) {
    offset_ = 0;
    for (size_t d = sizes_.size(); d-- > 0;) {
      idx_[d] = i % sizes_[d];
      i /= sizes_[d];
      offset_ += idx_[d] * strides_[d];
    }
  }
  int64_t offset() const { return offset_; }
  void next() {
    for (size_t d = sizes_.size(); d-- > 0;) {
      offset_ += strides_[d];
      if (++idx_[d] < sizes_[d]) return;
      offset_ -= strides_[d] * sizes_[d];
      idx_[d] = 0;
    }
  }

 private:
  const std::vector<int64_t>& sizes_;
  const std::vector<int64_t>& strides_;
  std::vector<int64_t> idx_;
  int64_t offset_ = 0;
};

// A tensor seen as [outer, axis, inner]: element (o, k, i) is at (o·axis + k)·inner + i.
struct AxisSplit {
  int64_t outer = 1, axis = 1, inner = 1;
};
// Around dims[axis] (opset >= 13 softmax, ArgMax, ...).
AxisSplit split_at(const std::vector<int64_t>& dims, int64_t axis);
// Coerced to 2-D at `axis`: [prod(dims[:axis]), prod(dims[axis:])] with inner = 1 (opset < 13
// softmax family).
AxisSplit flatten_at(const std::vector<int64_t>& dims, int64_t axis);

// True when the node has output `i` and it is used (not omitted).
bool wants_output(const OpContext& ctx, size_t i);

// ---- shared kernels ------------------------------------------------------------------------

enum class ReduceKind { Sum, Mean, Max, Min, Prod, L1, L2, LogSum, LogSumExp, SumSquare };

// Reduces `x` over the dimensions flagged in `reduced` (one flag per dimension); reduced
// dimensions stay as 1 when `keepdims`. Any numeric type; the result has x's type.
Tensor reduce(const Tensor& x, const std::vector<bool>& reduced, ReduceKind kind, bool keepdims, ThreadPool* pool);

// y = softmax(x) or log(softmax(x)) along the middle axis of `s`; x and y are float, double,
// float16 or bfloat16 tensors of the same type and shape.
void softmax(const Tensor& x, Tensor& y, const AxisSplit& s, bool log, ThreadPool* pool);
namespace detail {
// One float row through the 16-lane path where the CPU has it (wide) or the generic folds
// (!wide), for the test that the two give the same bits; has_x16: whether wide differs.
void softmax_row_f32(const float* x, float* y, int64_t n, bool log, bool wide);
// Two rows at once, as the Softmax kernel runs contiguous float rows on AVX-512F CPUs.
void softmax_row_pair_f32(const float* x0, const float* x1, float* y0, float* y1, int64_t n, bool log);
bool softmax_row_has_x16();
}  // namespace detail

// The op families, registered by register_reduce_ops() (reduce.cpp).
void register_softmax_ops();  // reduce_softmax.cpp: Softmax, LogSoftmax, Hardmax
void register_norm_ops();     // norm_ops.cpp: LayerNormalization, BatchNormalization, ...
void register_einsum_op();    // reduce_einsum.cpp: Einsum
void register_loss_ops();     // reduce_loss.cpp: SoftmaxCrossEntropyLoss, NegativeLogLikelihoodLoss

}  // namespace slmops::runtime::ops::reduction
