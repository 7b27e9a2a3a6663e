// Portable build of the unary_math.h kernels (4-lane vectors, baseline x86-64) and the
// dispatch between it and the AVX-512F, AVX2+FMA and AVX+FMA builds.
#include "runtime/kernels/unary_math.h"

#include "runtime/kernels/cpu_features.h"
#include "runtime/kernels/unary_math_impl.h"

namespace slmops::runtime::kernels {
namespace detail {

typedef float f32x4 __attribute__((vector_size(16)));

UnaryF32 unary_portable() { return &unary_as<f32x4>; }
BinaryF32 binary_portable() { return &binary_as<f32x4>; }

}  // namespace detail

void unary_f32(UnaryOp op, const float* x, float* y, int64_t n) {
  static const detail::UnaryF32 best = cpu().avx512f ? detail::unary_avx512()
                                       : cpu().avx2  ? detail::unary_avx2()
                                       : cpu().fma   ? detail::unary_fma()
                                                     : detail::unary_portable();
  best(op, x, y, n);
}

void binary_f32(BinaryOp op, const float* x, int64_t sx, const float* z, int64_t sz, float* y, int64_t n) {
  static const detail::BinaryF32 best = cpu().avx512f ? detail::binary_avx512()
                                        : cpu().fma   ? detail::binary_fma()
                                                      : detail::binary_portable();
  best(op, x, sx, z, sz, y, n);
}

}  // namespace slmops::runtime::kernels
