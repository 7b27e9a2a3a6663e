// The AVX+FMA build of the vectorizable convolution loops (compiled with -mavx -mfma -mf16c;
// conv.cpp calls it only when cpu().fma).
#include "runtime/kernels/depthwise_impl.h"

namespace slmops::runtime::kernels::detail {

bool depthwise3x3_plane_fma(const float* x, const WindowShape& s, const float* w, float bias, float lo, float hi,
                            float* y) {
  return depthwise3x3_plane_rows(x, s, w, bias, lo, hi, y);
}

}  // namespace slmops::runtime::kernels::detail
