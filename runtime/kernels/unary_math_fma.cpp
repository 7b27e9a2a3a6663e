// AVX+FMA build of the unary_math.h kernels (compiled with -mavx -mfma -mf16c, no AVX2: GCC
// splits the few integer vector steps into 128-bit halves; called only after the CPU check in
// unary_math.cpp).
#include "runtime/kernels/unary_math_impl.h"

namespace slmops::runtime::kernels::detail {

typedef float f32x8 __attribute__((vector_size(32)));

UnaryF32 unary_fma() { return &unary_as<f32x8>; }
// Float arithmetic only: AVX2 CPUs take this build too.
BinaryF32 binary_fma() { return &binary_as<f32x8>; }

}  // namespace slmops::runtime::kernels::detail
