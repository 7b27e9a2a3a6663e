// The body of one depthwise 3x3 plane (dilation 1, stride S along both dims) as plain loops
// the compiler vectorizes: every output row sums its three input rows (a row in the padding
// reads a row of zeros), nine taps per output element in one pass, the columns whose taps are
// all inside the row in a loop without tests and the border columns one by one. conv.cpp runs
// it on CPUs without FMA; conv_fma.cpp has its own kernel and takes only
// depthwise3x3_rows_fit from here (internal linkage: no copy built for one ISA is ever called
// on a CPU without it).
#pragma once
#include <algorithm>
#include <cstdint>
#include <limits>
#include <vector>

#include "runtime/kernels/conv.h"

namespace slmops::runtime::kernels {
namespace {

template <int S>
void depthwise3x3_rows(const float* x, const WindowShape& s, const float* w, float bias, float lo, float hi, float* y) {
  const int64_t H = s.in[0], W = s.in[1], OH = s.out[0], OW = s.out[1], ph = s.pad_begin[0], pw = s.pad_begin[1];
  const bool use_lo = lo != -std::numeric_limits<float>::infinity();
  const bool use_hi = hi != std::numeric_limits<float>::infinity();
  thread_local std::vector<float> zeros;
  if (static_cast<int64_t>(zeros.size()) < W) zeros.assign(static_cast<size_t>(W), 0.0f);
  // Columns [a, b): every tap inside the row (ox * S - pw >= 0 and ox * S - pw + 2 < W).
  const int64_t a = std::min(OW, (pw + S - 1) / S);
  const int64_t b = std::clamp<int64_t>(W - 3 + pw >= 0 ? (W - 3 + pw) / S + 1 : 0, a, OW);
  const float w0 = w[0], w1 = w[1], w2 = w[2], w3 = w[3], w4 = w[4], w5 = w[5], w6 = w[6], w7 = w[7], w8 = w[8];
  for (int64_t oy = 0; oy < OH; ++oy) {
    const float* r[3];
    for (int ky = 0; ky < 3; ++ky) {
      const int64_t iy = oy * S - ph + ky;
      r[ky] = iy >= 0 && iy < H ? x + iy * W : zeros.data();
    }
    float* out = y + oy * OW;
    auto edge = [&](int64_t ox) {
      float acc = bias;
      for (int ky = 0; ky < 3; ++ky)
        for (int kx = 0; kx < 3; ++kx) {
          const int64_t ix = ox * S - pw + kx;
          if (ix >= 0 && ix < W) acc += w[ky * 3 + kx] * r[ky][ix];
        }
      return acc;
    };
    for (int64_t ox = 0; ox < a; ++ox) out[ox] = edge(ox);
    const float *r0 = r[0] - pw, *r1 = r[1] - pw, *r2 = r[2] - pw;
    for (int64_t ox = a; ox < b; ++ox) {
      const int64_t i = ox * S;
      float acc = bias;
      acc += w0 * r0[i] + w1 * r0[i + 1] + w2 * r0[i + 2];
      acc += w3 * r1[i] + w4 * r1[i + 1] + w5 * r1[i + 2];
      acc += w6 * r2[i] + w7 * r2[i + 1] + w8 * r2[i + 2];
      out[ox] = acc;
    }
    for (int64_t ox = b; ox < OW; ++ox) out[ox] = edge(ox);
    if (use_lo || use_hi)
      for (int64_t ox = 0; ox < OW; ++ox) {
        float v = out[ox];
        if (use_lo) v = v > lo ? v : lo;
        if (use_hi) v = v < hi ? v : hi;
        out[ox] = v;
      }
  }
}

// Whether depthwise3x3_rows takes the window.
inline bool depthwise3x3_rows_fit(const WindowShape& s) {
  return s.rank() == 2 && s.kernel[0] == 3 && s.kernel[1] == 3 && s.dilations[0] == 1 && s.dilations[1] == 1 &&
         s.strides[0] == s.strides[1] && (s.strides[0] == 1 || s.strides[0] == 2) && s.out_size() > 0;
}

// One plane through depthwise3x3_rows; false when the window is not one it takes.
inline bool depthwise3x3_plane_rows(const float* x, const WindowShape& s, const float* w, float bias, float lo,
                                    float hi, float* y) {
  if (!depthwise3x3_rows_fit(s)) return false;
  if (s.strides[0] == 1)
    depthwise3x3_rows<1>(x, s, w, bias, lo, hi, y);
  else
    depthwise3x3_rows<2>(x, s, w, bias, lo, hi, y);
  return true;
}

}  // namespace
}  // namespace slmops::runtime::kernels
