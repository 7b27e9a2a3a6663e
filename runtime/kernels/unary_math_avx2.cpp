// AVX2+FMA build of the unary_math.h kernels (compiled with -mavx2 -mfma; called only after
// the CPU check in unary_math.cpp).
#include "runtime/kernels/unary_math_impl.h"

namespace slmops::runtime::kernels::detail {

typedef float f32x8 __attribute__((vector_size(32)));

UnaryF32 unary_avx2() { return &unary_as<f32x8>; }

}  // namespace slmops::runtime::kernels::detail
