// The vector bodies of unary_math.h, written once over a GCC vector type F of floats and
// compiled for each level: 4 lanes in unary_math.cpp (baseline SSE2), 8 lanes with FMA in
// unary_math_avx2.cpp and unary_math_fma.cpp, 16 in unary_math_avx512f.cpp. Include only from
// those files.
#pragma once
#include <bit>
#include <cstdint>
#include <cstring>

#if defined(__FMA__) || defined(__SSE2__)
#include <immintrin.h>
#endif

#include "runtime/kernels/unary_math.h"

namespace slmops::runtime::kernels::detail {
namespace {

// The int32 vector with the lanes of F (a vector_size attribute on an alias template would
// be dropped, hence the specializations).
template <size_t Bytes>
struct IntVecOf;
template <>
struct IntVecOf<16> {
  typedef int32_t type __attribute__((vector_size(16)));
};
template <>
struct IntVecOf<32> {
  typedef int32_t type __attribute__((vector_size(32)));
};
template <>
struct IntVecOf<64> {
  typedef int32_t type __attribute__((vector_size(64)));
};
template <typename F>
using IntVec = typename IntVecOf<sizeof(F)>::type;

// v in every lane (a lane loop GCC turns into one broadcast; F{} + v would turn -0 into +0).
template <typename F>
[[gnu::always_inline]] inline F splat(float v) {
  F r;
  for (size_t i = 0; i < sizeof(F) / sizeof(float); ++i) r[i] = v;
  return r;
}

// a * b + c, fused where the file is compiled for FMA (one rounding instead of two).
template <typename F>
[[gnu::always_inline]] inline F madd(F a, F b, F c) {
#ifdef __FMA__
  if constexpr (sizeof(F) == 32) return reinterpret_cast<F>(_mm256_fmadd_ps(reinterpret_cast<__m256>(a),
                                                                            reinterpret_cast<__m256>(b),
                                                                            reinterpret_cast<__m256>(c)));
#endif
#ifdef __AVX512F__
  if constexpr (sizeof(F) == 64)
    return reinterpret_cast<F>(
        _mm512_fmadd_ps(reinterpret_cast<__m512>(a), reinterpret_cast<__m512>(b), reinterpret_cast<__m512>(c)));
#endif
  return a * b + c;
}

template <typename F>
[[gnu::always_inline]] inline F abs_v(F x) {
  using I = IntVec<F>;
  return __builtin_bit_cast(F, __builtin_bit_cast(I, x) & 0x7fffffff);
}

// |magnitude| with the sign bit of `sign`.
template <typename F>
[[gnu::always_inline]] inline F copysign_v(F magnitude, F sign) {
  using I = IntVec<F>;
  const I m = __builtin_bit_cast(I, magnitude) & 0x7fffffff;
  const I s = __builtin_bit_cast(I, sign) & static_cast<int32_t>(0x80000000u);
  return __builtin_bit_cast(F, m | s);
}

// e^x = 2^n · e^r,  n = round(x / ln 2),  r = x - n·ln 2 ∈ [-ln2/2, ln2/2],
// e^r from the Cephes expf polynomial (relative error about 1e-7). The input is clamped to
// [-104, 89], so n ∈ [-150, 128]; 2^n is applied as two factors 2^(n/2)·2^(n-n/2) that are
// both normal floats, so results below 2^-126 come out as denormals (gradual underflow, as
// libm) and results above FLT_MAX as inf. NaN propagates through the comparisons.
template <typename F>
[[gnu::always_inline]] inline F exp_v(F x) {
  using I = IntVec<F>;
  constexpr float kRound = 12582912.0f;  // 1.5·2^23: adding it rounds to an integer held in the low mantissa bits
  constexpr float kLog2e = 1.44269504088896341f;
  constexpr float kLn2Hi = 0.693359375f, kLn2Lo = -2.12194440e-4f;  // ln 2 = hi + lo, n·hi exact
  x = x < -104.0f ? splat<F>(-104.0f) : x;
  x = x > 89.0f ? splat<F>(89.0f) : x;
  const F t = x * kLog2e + kRound;
  const F n = t - kRound;
  const F r = madd(n, splat<F>(-kLn2Lo), madd(n, splat<F>(-kLn2Hi), x));
  F p = splat<F>(1.9875691500e-4f);
  p = madd(p, r, splat<F>(1.3981999507e-3f));
  p = madd(p, r, splat<F>(8.3334519073e-3f));
  p = madd(p, r, splat<F>(4.1665795894e-2f));
  p = madd(p, r, splat<F>(1.6666665459e-1f));
  p = madd(p, r, splat<F>(5.0000001201e-1f));
  p = madd(p, r * r, r) + 1.0f;
  const I e = __builtin_bit_cast(I, t) - std::bit_cast<int32_t>(kRound);
  const I e1 = e >> 1, e2 = e - e1;
  return p * __builtin_bit_cast(F, (e1 + 127) << 23) * __builtin_bit_cast(F, (e2 + 127) << 23);
}

// erf after N. Juffa's erff (faithfully rounded with FMA; polynomials fitted on the two
// ranges split at 475/512):
//   |x| <= 0.9277:  erf(x) = x + x · P(x²)
//   |x| >  0.9277:  erf(x) = sign(x) · (1 - e^(Q(|x|))),  Q(t) = -t + t·(...)
// |x| is clamped at 4 in the second branch: erf(4) = 1 - 1.5e-8 already rounds to 1.
template <typename F>
[[gnu::always_inline]] inline F erf_v(F a) {
  const F s = a * a;
  F small = splat<F>(-5.96761703e-4f);
  small = madd(small, s, splat<F>(4.99119423e-3f));
  small = madd(small, s, splat<F>(-2.67681349e-2f));
  small = madd(small, s, splat<F>(1.12819925e-1f));
  small = madd(small, s, splat<F>(-3.76125336e-1f));
  small = madd(small, s, splat<F>(1.28379166e-1f));
  small = madd(small, a, a);

  const F abs_a = abs_v(a);
  const F t = abs_a > 4.0f ? splat<F>(4.0f) : abs_a;
  const F t2 = t * t;
  F r = madd(splat<F>(-1.72853470e-5f), t, splat<F>(3.83197126e-4f));
  const F u = madd(splat<F>(-3.88396438e-3f), t, splat<F>(2.42546219e-2f));
  r = madd(r, t2, u);
  r = madd(r, t, splat<F>(-1.06777877e-1f));
  r = madd(r, t, splat<F>(-6.34846687e-1f));
  r = madd(r, t, splat<F>(-1.28717512e-1f));
  r = madd(r, t, -t);
  const F big = copysign_v(1.0f - exp_v(r), a);
  return abs_a > 0.927734375f ? big : small;
}

// sigmoid(x) = 1 / (1 + e^-x) for x >= 0 and e^x / (1 + e^x) below, both from e = e^-|x|
// (never overflows; tiny results stay denormal as in libm).
template <typename F>
[[gnu::always_inline]] inline F sigmoid_v(F x) {
  const F e = exp_v(-abs_v(x));
  const F d = 1.0f + e;
  return x >= 0.0f ? 1.0f / d : e / d;
}

// tanh: |x| < 0.55 from the odd Taylor series through x^19 (truncation below 1e-8
// relative); above, sign(x) · (1 - 2 / (e^(2|x|) + 1)), where the cancellation costs less
// than one ulp. |x| is clamped at 9: tanh(9) = 1 - 3e-8 already rounds to 1.
template <typename F>
[[gnu::always_inline]] inline F tanh_v(F x) {
  const F s = x * x;
  F p = splat<F>(-2.39129114e-4f);  // -443861162/1856156927625
  p = madd(p, s, splat<F>(5.90027440e-4f));   // 6404582/10854718875
  p = madd(p, s, splat<F>(-1.45583438e-3f));  // -929569/638512875
  p = madd(p, s, splat<F>(3.59212803e-3f));   // 21844/6081075
  p = madd(p, s, splat<F>(-8.86323552e-3f));  // -1382/155925
  p = madd(p, s, splat<F>(2.18694885e-2f));   // 62/2835
  p = madd(p, s, splat<F>(-5.39682540e-2f));  // -17/315
  p = madd(p, s, splat<F>(1.33333333e-1f));   // 2/15
  p = madd(p, s, splat<F>(-3.33333333e-1f));  // -1/3
  const F small = madd(p * s, x, x);

  const F abs_x = abs_v(x);
  const F t = abs_x > 9.0f ? splat<F>(9.0f) : abs_x;
  const F big = copysign_v(1.0f - 2.0f / (exp_v(t + t) + 1.0f), x);
  return abs_x < 0.55f ? small : big;
}

template <typename F>
[[gnu::always_inline]] inline F sqrt_v(F x) {
#ifdef __AVX__
  if constexpr (sizeof(F) == 32) return reinterpret_cast<F>(_mm256_sqrt_ps(reinterpret_cast<__m256>(x)));
#endif
#ifdef __AVX512F__
  if constexpr (sizeof(F) == 64) return reinterpret_cast<F>(_mm512_sqrt_ps(reinterpret_cast<__m512>(x)));
#endif
#ifdef __SSE2__
  if constexpr (sizeof(F) == 16) return reinterpret_cast<F>(_mm_sqrt_ps(reinterpret_cast<__m128>(x)));
#endif
  F y;
  for (size_t i = 0; i < sizeof(F) / sizeof(float); ++i) y[i] = __builtin_sqrtf(x[i]);
  return y;
}

// y = op(x) over n floats, whole vectors then one zero-padded tail vector.
template <typename F, typename Op>
[[gnu::always_inline]] inline void map_v(const float* x, float* y, int64_t n, Op op) {
  constexpr int64_t kWidth = sizeof(F) / sizeof(float);
  int64_t i = 0;
  for (; i + kWidth <= n; i += kWidth) {
    F v;
    std::memcpy(&v, x + i, sizeof v);
    v = op(v);
    std::memcpy(y + i, &v, sizeof v);
  }
  if (i < n) {
    float tail[kWidth] = {};
    std::memcpy(tail, x + i, (n - i) * sizeof(float));
    F v;
    std::memcpy(&v, tail, sizeof v);
    v = op(v);
    std::memcpy(tail, &v, sizeof v);
    std::memcpy(y + i, tail, (n - i) * sizeof(float));
  }
}

template <typename F>
void unary_as(UnaryOp op, const float* x, float* y, int64_t n) {
  switch (op) {
    case UnaryOp::Exp: return map_v<F>(x, y, n, [](F v) { return exp_v(v); });
    case UnaryOp::Erf: return map_v<F>(x, y, n, [](F v) { return erf_v(v); });
    case UnaryOp::Sigmoid: return map_v<F>(x, y, n, [](F v) { return sigmoid_v(v); });
    case UnaryOp::Tanh: return map_v<F>(x, y, n, [](F v) { return tanh_v(v); });
    case UnaryOp::Sqrt: return map_v<F>(x, y, n, [](F v) { return sqrt_v(v); });
    case UnaryOp::Square: return map_v<F>(x, y, n, [](F v) { return v * v; });
    case UnaryOp::Relu: return map_v<F>(x, y, n, [](F v) { const F zero = {}; return v > zero ? v : zero; });
  }
}

template <BinaryOp kOp, typename V>
[[gnu::always_inline]] inline V apply(V a, V b) {
  if constexpr (kOp == BinaryOp::Add)
    return a + b;
  else if constexpr (kOp == BinaryOp::Sub)
    return a - b;
  else if constexpr (kOp == BinaryOp::Mul)
    return a * b;
  else
    return a / b;
}

// y = x op z over n floats, a side with stride 0 repeating its one element: whole vectors, then
// the tail one element at a time (the same operation, so the same bits as the vectors').
template <typename F, BinaryOp kOp, bool kXStep, bool kZStep>
[[gnu::always_inline]] inline void binary_run(const float* x, const float* z, float* y, int64_t n) {
  constexpr int64_t kWidth = sizeof(F) / sizeof(float);
  const F xs = splat<F>(x[0]), zs = splat<F>(z[0]);
  int64_t i = 0;
  for (; i + kWidth <= n; i += kWidth) {
    F a = xs, b = zs;
    if constexpr (kXStep) std::memcpy(&a, x + i, sizeof a);
    if constexpr (kZStep) std::memcpy(&b, z + i, sizeof b);
    a = apply<kOp>(a, b);
    std::memcpy(y + i, &a, sizeof a);
  }
  for (; i < n; ++i) y[i] = apply<kOp>(x[kXStep ? i : 0], z[kZStep ? i : 0]);
}

template <typename F, BinaryOp kOp>
[[gnu::always_inline]] inline void binary_strides(const float* x, int64_t sx, const float* z, int64_t sz, float* y,
                                                  int64_t n) {
  if (sx && sz)
    binary_run<F, kOp, true, true>(x, z, y, n);
  else if (sx)
    binary_run<F, kOp, true, false>(x, z, y, n);
  else if (sz)
    binary_run<F, kOp, false, true>(x, z, y, n);
  else
    binary_run<F, kOp, false, false>(x, z, y, n);
}

template <typename F>
void binary_as(BinaryOp op, const float* x, int64_t sx, const float* z, int64_t sz, float* y, int64_t n) {
  if (n <= 0) return;
  switch (op) {
    case BinaryOp::Add:
      return binary_strides<F, BinaryOp::Add>(x, sx, z, sz, y, n);
    case BinaryOp::Sub:
      return binary_strides<F, BinaryOp::Sub>(x, sx, z, sz, y, n);
    case BinaryOp::Mul:
      return binary_strides<F, BinaryOp::Mul>(x, sx, z, sz, y, n);
    case BinaryOp::Div:
      return binary_strides<F, BinaryOp::Div>(x, sx, z, sz, y, n);
  }
}

}  // namespace
}  // namespace slmops::runtime::kernels::detail
