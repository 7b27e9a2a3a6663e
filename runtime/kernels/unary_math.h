// Element-wise float32 math on arrays: exp, erf, sigmoid, tanh, sqrt, square, relu, and the
// binary add, sub, mul, div with one side repeated or not. Plain
// functions on pointers (they never see the IR), in a portable version (unary_math.cpp,
// 4-lane GCC vectors), an AVX2+FMA version (unary_math_avx2.cpp, 8 lanes), an AVX+FMA one
// (unary_math_fma.cpp, 8 lanes, for CPUs without AVX2) and an AVX-512F one
// (unary_math_avx512f.cpp, 16 lanes), chosen once by CPU features as in gemm.cpp.
//
// The transcendental ones are float polynomials, not libm: within 2 ulp of the correctly
// rounded result over the whole float range (tests/unit/test_unary_math.cpp measures it
// against the double-precision libm functions), with libm's values at the edges: exp gives
// denormals down to -103.97 and inf above 88.72, NaN stays NaN, erf/tanh/sigmoid saturate to
// exactly +-1 / 0 / 1.
#pragma once
#include <cstdint>

namespace slmops::runtime::kernels {

enum class UnaryOp : uint8_t {
  Exp,      // e^x
  Erf,      // erf(x)
  Sigmoid,  // 1 / (1 + e^-x)
  Tanh,     // tanh(x)
  Sqrt,     // sqrt(x) (correctly rounded: the instruction)
  Square,   // x * x
  Relu,     // x > 0 ? x : 0 (NaN and -0 give +0, as the Relu kernel for other types)
};

// y[i] = op(x[i]) for i < n. x and y may be the same array.
void unary_f32(UnaryOp op, const float* x, float* y, int64_t n);

// The four arithmetic ops: one IEEE operation per element, so every build gives the same bits.
enum class BinaryOp : uint8_t { Add, Sub, Mul, Div };

// y[i] = x[i * sx] op z[i * sz] for i < n, each stride 0 (one element repeated) or 1. y may be
// x or z.
void binary_f32(BinaryOp op, const float* x, int64_t sx, const float* z, int64_t sz, float* y, int64_t n);

namespace detail {
using UnaryF32 = void (*)(UnaryOp, const float*, float*, int64_t);
using BinaryF32 = void (*)(BinaryOp, const float*, int64_t, const float*, int64_t, float*, int64_t);
BinaryF32 binary_portable();
BinaryF32 binary_fma();  // AVX + FMA (cpu().fma): AVX2 CPUs too, float arithmetic needs no AVX2
BinaryF32 binary_avx512();
// Plain C++ (any x86-64), AVX2+FMA (cpu().avx2) and AVX+FMA (cpu().fma: the same code with
// its integer steps in 128-bit halves). For tests.
UnaryF32 unary_portable();
UnaryF32 unary_avx2();
UnaryF32 unary_fma();
UnaryF32 unary_avx512();  // AVX-512F (cpu().avx512f), 16 lanes
}  // namespace detail

}  // namespace slmops::runtime::kernels
