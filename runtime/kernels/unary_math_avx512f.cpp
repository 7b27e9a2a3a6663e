// AVX-512F build of the unary_math.h kernels, 16 lanes (compiled with -mavx512f -mavx512dq;
// called only after the CPU check in unary_math.cpp).
// GCC 12 warns about the undefined first operand of the _mm512 placeholders in
// avx512fintrin.h (as in conv_avx512.cpp).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include "runtime/kernels/unary_math_impl.h"

namespace slmops::runtime::kernels::detail {

typedef float f32x16 __attribute__((vector_size(64)));

UnaryF32 unary_avx512() { return &unary_as<f32x16>; }
BinaryF32 binary_avx512() { return &binary_as<f32x16>; }

#pragma GCC diagnostic pop

}  // namespace slmops::runtime::kernels::detail
