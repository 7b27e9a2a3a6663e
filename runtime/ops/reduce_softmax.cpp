// Softmax, LogSoftmax and Hardmax. Before opset 13 they work on the input coerced to 2-D at
// `axis` (rows of prod(dims[axis:]) elements); from 13 along the single axis `axis`.
#include <algorithm>
#include <bit>
#include <cstring>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

#include "runtime/kernels/cpu_features.h"
#include "runtime/ops/reduce_common.h"

namespace slmops::runtime::ops::reduction {
namespace {

// exp(x) in place for x <= 0 (softmax inputs minus the row maximum), a SIMD vector F of
// floats at a time (GCC vector extensions, so any target gets SIMD code):
//   exp(x) = 2^n · exp(r),  n = round(x / ln 2),  r = x - n·ln 2 ∈ [-ln2/2, ln2/2],
// exp(r) from the Cephes expf polynomial (relative error about 2e-7). Inputs below -87.3
// (masked positions: -inf) give exactly 0: a tiny normal here would turn into a denormal
// after the division by the row sum, and denormals slow the next MatMul ~50x. NaN stays NaN.
template <typename F>
[[gnu::always_inline]] inline void exp_vector(float* y) {
  typedef int32_t I __attribute__((vector_size(sizeof(F))));
  constexpr float kRound = 12582912.0f;  // 1.5·2^23: adding it rounds to an integer held in the low mantissa bits
  constexpr float kLog2e = 1.44269504088896341f;
  constexpr float kLn2Hi = 0.693359375f, kLn2Lo = -2.12194440e-4f;  // ln 2 = hi + lo, n·hi exact
  constexpr float kMin = -87.33654f;                                   // ln 2^-126
  F in;
  std::memcpy(&in, y, sizeof in);
  F x = in < kMin ? F{} + kMin : in;
  const F t = x * kLog2e + kRound;
  const F n = t - kRound;
  const F r = (x - n * kLn2Hi) - n * kLn2Lo;
  F p = F{} + 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  // 2^n from its exponent bits; n is the integer in t's low mantissa bits. (The builtin
  // bit cast: std::bit_cast would pass AVX vectors by value outside AVX code.)
  const I e = __builtin_bit_cast(I, t) - std::bit_cast<int32_t>(kRound);
  x = p * __builtin_bit_cast(F, (e + 127) << 23);
  x = in < kMin ? F{} : x;
  std::memcpy(y, &x, sizeof x);
}

template <typename F>
[[gnu::always_inline]] inline void exp_inplace_as(float* y, int64_t n) {
  constexpr int64_t kWidth = sizeof(F) / sizeof(float);
  int64_t i = 0;
  for (; i + kWidth <= n; i += kWidth) exp_vector<F>(y + i);
  if (i < n) {  // the tail, padded with zeros
    float tail[kWidth] = {};
    std::memcpy(tail, y + i, (n - i) * sizeof(float));
    exp_vector<F>(tail);
    std::memcpy(y + i, tail, (n - i) * sizeof(float));
  }
}

typedef float f32x4 __attribute__((vector_size(16)));  // baseline SIMD: SSE2, NEON

#if defined(__x86_64__) || defined(__i386__)
// Eight lanes wide, compiled for (and only called on) CPUs with AVX2 and FMA.
typedef float f32x8 __attribute__((vector_size(32)));
__attribute__((target("avx2,fma"))) void exp_inplace_avx2(float* y, int64_t n) { exp_inplace_as<f32x8>(y, n); }
// The same without AVX2 (its integer steps in 128-bit halves), for CPUs with AVX and FMA only.
__attribute__((target("avx,fma"))) void exp_inplace_fma(float* y, int64_t n) { exp_inplace_as<f32x8>(y, n); }
// Sixteen lanes, for CPUs with AVX-512F.
typedef float f32x16 __attribute__((vector_size(64)));
__attribute__((target("avx512f,avx2,fma"))) void exp_inplace_avx512(float* y, int64_t n) {
  exp_inplace_as<f32x16>(y, n);
}
#endif

void exp_inplace(float* y, int64_t n) {
#if defined(__x86_64__) || defined(__i386__)
  if (kernels::cpu().avx512f) return exp_inplace_avx512(y, n);
  if (kernels::cpu().avx2) return exp_inplace_avx2(y, n);
  if (kernels::cpu().fma) return exp_inplace_fma(y, n);
#endif
  exp_inplace_as<f32x4>(y, n);
}
void exp_inplace(double* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = std::exp(y[i]);
}

#if defined(__x86_64__) || defined(__i386__)
// fold(op, x, n) for float, 16 lanes at a time: lane j of the one accumulator vector takes the
// elements that fold's partial vector j / 4, lane j % 4 takes, in the same order; the four
// quarters then merge as fold merges its four vectors, then its lanes, then the scalar tail.
// Every addition (or comparison) is fold's, so the result has the same bits: output bytes
// must not depend on the CPU's vector width (calibration reads softmax outputs).
// The 16-lane step is written out here (MaxOp's and SumOp's step, lane-wise) and takes
// references: an AVX-512 vector passed by value outside AVX-512 code would change the ABI.
template <typename Op>
[[gnu::always_inline]] __attribute__((target("avx512f,avx2,fma"))) inline void step_x16(f32x16& a, const f32x16& x) {
  if constexpr (std::is_same_v<Op, MaxOp<float>>) {
    // (x > a || x != x) ? x : a in mask registers (GCC scalarizes the vector ?: without AVX-512DQ)
    const __mmask16 take = _mm512_cmp_ps_mask(x, a, _CMP_GT_OQ) | _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q);
    a = _mm512_mask_blend_ps(take, a, x);
  } else if constexpr (std::is_same_v<Op, SumOp<float>>)
    a = a + x;
  else
    static_assert(sizeof(Op) == 0, "fold_x16: MaxOp<float> or SumOp<float>");
}

// Where fold_x16 takes its elements from: x itself (LoadX), or y = exp(x - m), written to y on
// the way (ExpOf: softmax's exp and sum in one pass; the tail's exp is the 16-lane polynomial
// on a zero-padded vector, as exp_inplace_as computes it).
#define SLMOPS_X16 [[gnu::always_inline]] __attribute__((target("avx512f,avx2,fma"))) inline
struct LoadX {
  const float* x;
  SLMOPS_X16 void vec(int64_t i, f32x16& v) const { std::memcpy(&v, x + i, sizeof v); }
  SLMOPS_X16 void tail(int64_t, int64_t) const {}
  float at(int64_t i) const { return x[i]; }
};
struct ExpOf {
  const float* x;
  float m;
  float* y;
  SLMOPS_X16 void vec(int64_t i, f32x16& v) const {
    std::memcpy(&v, x + i, sizeof v);
    v = v - m;
    std::memcpy(y + i, &v, sizeof v);
    exp_vector<f32x16>(y + i);
    std::memcpy(&v, y + i, sizeof v);
  }
  SLMOPS_X16 void tail(int64_t i, int64_t n) const {
    for (int64_t k = i; k < n; ++k) y[k] = x[k] - m;
    exp_inplace_as<f32x16>(y + i, n - i);
  }
  float at(int64_t i) const { return y[i]; }
};

// R rows at once (R independent chains: a row of 64 is too short for one row's dependent
// max and sum steps and merges to keep the core busy); every row's steps are fold_x16's.
template <int R, typename Op, typename Load>
SLMOPS_X16 void fold_x16(const Op& op, const Load (&load)[R], int64_t n, float (&acc)[R]) {
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) acc[r] = op.init();
  int64_t i = 0;
  while (i + 16 <= n) {
    f32x16 part[R];
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) part[r] = f32x16{} + op.init();
    for (const int64_t end = std::min(n, i + kBlock); i + 16 <= end; i += 16) {
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r) {
        f32x16 v;
        load[r].vec(i, v);
        step_x16<Op>(part[r], v);
      }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      f32x4 q = __builtin_shufflevector(part[r], part[r], 0, 1, 2, 3);
      q = op.merge(q, __builtin_shufflevector(part[r], part[r], 4, 5, 6, 7));
      q = op.merge(q, __builtin_shufflevector(part[r], part[r], 8, 9, 10, 11));
      q = op.merge(q, __builtin_shufflevector(part[r], part[r], 12, 13, 14, 15));
      for (int w = 0; w < 4; ++w) acc[r] = op.merge(acc[r], q[w]);
    }
  }
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) {
    load[r].tail(i, n);
    for (int64_t k = i; k < n; ++k) acc[r] = op.step(acc[r], load[r].at(k));
  }
}
#undef SLMOPS_X16
static_assert(sizeof(simd_t<float>) == sizeof(f32x4) && kBlock % 16 == 0, "fold_x16 mirrors fold's 4 x 4 lanes");

// The float rows of softmax_row below 16 lanes wide, R rows at a time, for CPUs with
// AVX-512F, in three passes (max; exp and sum; scale): the same bits (fold_x16; x - m, exp and
// the scaling are element-wise, and the exp is the 16-lane build of the one polynomial).
template <int R>
__attribute__((target("avx512f,avx2,fma"))) void softmax_rows_x16(const float* const (&x)[R], float* const (&y)[R],
                                                                  int64_t n, bool log) {
  float m[R], s[R];
  LoadX xs[R];
  for (int r = 0; r < R; ++r) xs[r] = LoadX{x[r]};
  fold_x16(MaxOp<float>{}, xs, n, m);
  ExpOf es[R];
  for (int r = 0; r < R; ++r) es[r] = ExpOf{x[r], m[r], y[r]};
  fold_x16(SumOp<float>{}, es, n, s);
  for (int r = 0; r < R; ++r) {
    if (log) {
      const float log_s = std::log(s[r]);
      for (int64_t i = 0; i < n; ++i) y[r][i] = (x[r][i] - m[r]) - log_s;
    } else {
      const float inv = 1.0f / s[r];
      for (int64_t i = 0; i < n; ++i) y[r][i] *= inv;
    }
  }
}
#endif

// Whether softmax_rows_x16 runs here (AVX-512F; read once, not per row).
bool rows_x16() {
#if defined(__x86_64__) || defined(__i386__)
  static const bool has = kernels::cpu().avx512f;
  return has;
#else
  return false;
#endif
}

// One contiguous row: y = softmax(x), or log softmax:
//   m = max x,  s = Σ exp(x - m),  softmax = exp(x - m) / s,  log softmax = (x - m) - log s.
template <typename C>
void softmax_row(const C* x, C* y, int64_t n, bool log, bool wide = true) {
#if defined(__x86_64__) || defined(__i386__)
  if constexpr (std::is_same_v<C, float>)
    if (wide && rows_x16()) return softmax_rows_x16<1>({x}, {y}, n, log);
#endif
  const C m = fold(MaxOp<C>{}, x, n);
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] - m;
  exp_inplace(y, n);
  const C s = fold(SumOp<C>{}, y, n);
  if (log) {
    const C log_s = std::log(s);
    for (int64_t i = 0; i < n; ++i) y[i] = (x[i] - m) - log_s;
  } else {
    const C inv = C(1) / s;
    for (int64_t i = 0; i < n; ++i) y[i] *= inv;
  }
}

// `len` columns of `rows` rows `stride` apart: the same per column, with the column maxima
// and sums kept in m and s so that every inner loop runs along a row.
template <typename C>
void softmax_columns(const C* x, C* y, int64_t rows, int64_t stride, int64_t len, bool log, C* m, C* s) {
  std::fill(m, m + len, MaxOp<C>{}.init());
  std::fill(s, s + len, C(0));
  for (int64_t k = 0; k < rows; ++k) fold_into(MaxOp<C>{}, m, x + k * stride, len);
  for (int64_t k = 0; k < rows; ++k) {
    C* yr = y + k * stride;
    for (int64_t i = 0; i < len; ++i) yr[i] = x[k * stride + i] - m[i];
    exp_inplace(yr, len);
    fold_into(SumOp<C>{}, s, yr, len);
  }
  if (log) {
    for (int64_t i = 0; i < len; ++i) s[i] = std::log(s[i]);
    for (int64_t k = 0; k < rows; ++k)
      for (int64_t i = 0; i < len; ++i) y[k * stride + i] = (x[k * stride + i] - m[i]) - s[i];
  } else {
    for (int64_t i = 0; i < len; ++i) s[i] = C(1) / s[i];
    for (int64_t k = 0; k < rows; ++k)
      for (int64_t i = 0; i < len; ++i) y[k * stride + i] *= s[i];
  }
}

// Elements processed per parallel task, at least.
constexpr int64_t kGrainElements = 1 << 14;

template <typename T>
void softmax_typed(const T* x, T* y, const AxisSplit& s, bool log, ThreadPool* pool) {
  using C = compute_t<T>;
  if (s.inner == 1) {
    // Rows are contiguous: one row per step (16-bit types through float copies of the row).
    auto rows = [&](int64_t b, int64_t e) {
      std::vector<C> xs, ys;
      [[maybe_unused]] const bool pairs = std::is_same_v<T, float> && rows_x16();
      for (int64_t o = b; o < e; ++o) {
        T* yr = y + o * s.axis;
#if defined(__x86_64__) || defined(__i386__)
        if constexpr (std::is_same_v<T, float>)
          if (pairs && o + 1 < e) {  // two rows at once
            softmax_rows_x16<2>({x + o * s.axis, x + (o + 1) * s.axis}, {yr, yr + s.axis}, s.axis, log);
            ++o;
            continue;
          }
#endif
        C* out = compute_out(yr, s.axis, ys);
        softmax_row(as_compute(x + o * s.axis, s.axis, xs), out, s.axis, log);
        commit(out, yr, s.axis);
      }
    };
    pool->parallel_for(s.outer, std::max<int64_t>(1, kGrainElements / std::max<int64_t>(1, s.axis)), rows);
    return;
  }
  // Strided: tasks are (outer index, block of up to kBlock inner columns).
  const int64_t col_blocks = (s.inner + kBlock - 1) / kBlock;
  auto blocks = [&](int64_t b, int64_t e) {
    std::vector<C> m(kBlock), sum(kBlock), xs, ys;
    for (int64_t t = b; t < e; ++t) {
      const int64_t o = t / col_blocks, c0 = (t % col_blocks) * kBlock, len = std::min(kBlock, s.inner - c0);
      const int64_t base = o * s.axis * s.inner + c0;
      if constexpr (std::is_same_v<T, C>) {
        softmax_columns(x + base, y + base, s.axis, s.inner, len, log, m.data(), sum.data());
      } else {
        // Gather the block as a dense [axis, len] float array, and scatter the result back.
        xs.resize(s.axis * len);
        ys.resize(s.axis * len);
        for (int64_t k = 0; k < s.axis; ++k)
          std::transform(x + base + k * s.inner, x + base + k * s.inner + len, xs.begin() + k * len, load<T>);
        softmax_columns(xs.data(), ys.data(), s.axis, len, len, log, m.data(), sum.data());
        for (int64_t k = 0; k < s.axis; ++k) commit(ys.data() + k * len, y + base + k * s.inner, len);
      }
    }
  };
  const int64_t work = std::max<int64_t>(1, s.axis * std::min(s.inner, kBlock));
  pool->parallel_for(s.outer * col_blocks, std::max<int64_t>(1, kGrainElements / work), blocks);
}

// Hardmax: 1 at the first maximum along the axis, 0 elsewhere.
template <typename T>
void hardmax_typed(const T* x, T* y, const AxisSplit& s) {
  std::fill(y, y + s.outer * s.axis * s.inner, store<T>(0));
  for (int64_t o = 0; o < s.outer; ++o)
    for (int64_t i = 0; i < s.inner; ++i) {
      const int64_t base = o * s.axis * s.inner + i;
      int64_t best = 0;
      for (int64_t k = 1; k < s.axis; ++k)
        if (load(x[base + k * s.inner]) > load(x[base + best * s.inner])) best = k;
      if (s.axis > 0) y[base + best * s.inner] = store<T>(1);
    }
}

// Registers an op computing y from x and the axis split, in both axis conventions.
template <typename Run>
void reg_axis_op(const char* name, Run run) {
  auto make = [name, run](bool coerce_2d) {
    return simple_kernel([name, run, coerce_2d](const ir::Node& n, OpContext& ctx) {
      const Tensor& x = ctx.in(0);
      const auto rank = static_cast<int64_t>(x.dims.size());
      const int64_t axis = normalize_axis(n.attr_int("axis", coerce_2d ? 1 : -1), rank);
      const AxisSplit s = coerce_2d ? flatten_at(x.dims, axis) : split_at(x.dims, axis);
      Tensor& y = ctx.set_out(0, new_tensor(x.dtype, x.dims));
      dispatch<kFloats | kHalfs>(x.dtype, name, [&](auto tag) {
        using T = decltype(tag);
        run(x.values<T>(), y.mutable_values<T>(), s, ctx.pool);
      });
    });
  };
  register_kernel("", name, 1, make(true));
  register_kernel("", name, 13, make(false));
}

}  // namespace

namespace detail {
bool softmax_row_has_x16() { return rows_x16(); }
void softmax_row_f32(const float* x, float* y, int64_t n, bool log, bool wide) { softmax_row(x, y, n, log, wide); }
void softmax_row_pair_f32(const float* x0, const float* x1, float* y0, float* y1, int64_t n, bool log) {
#if defined(__x86_64__) || defined(__i386__)
  if (rows_x16()) return softmax_rows_x16<2>({x0, x1}, {y0, y1}, n, log);
#endif
  softmax_row(x0, y0, n, log);
  softmax_row(x1, y1, n, log);
}
}  // namespace detail

void softmax(const Tensor& x, Tensor& y, const AxisSplit& s, bool log, ThreadPool* pool) {
  dispatch<kFloats | kHalfs>(x.dtype, log ? "LogSoftmax" : "Softmax", [&](auto tag) {
    using T = decltype(tag);
    softmax_typed(x.values<T>(), y.mutable_values<T>(), s, log, pool);
  });
}

void register_softmax_ops() {
  reg_axis_op("Softmax", [](const auto* x, auto* y, const AxisSplit& s, ThreadPool* pool) {
    softmax_typed(x, y, s, false, pool);
  });
  reg_axis_op("LogSoftmax", [](const auto* x, auto* y, const AxisSplit& s, ThreadPool* pool) {
    softmax_typed(x, y, s, true, pool);
  });
  reg_axis_op("Hardmax", [](const auto* x, auto* y, const AxisSplit& s, ThreadPool*) { hardmax_typed(x, y, s); });
}

}  // namespace slmops::runtime::ops::reduction
