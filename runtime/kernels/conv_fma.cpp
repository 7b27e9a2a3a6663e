// The AVX+FMA build of the vectorizable convolution loops (compiled with -mavx -mfma -mf16c;
// conv.cpp calls it only when cpu().fma).
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "runtime/kernels/depthwise_impl.h"

namespace slmops::runtime::kernels::detail {
namespace {

constexpr int64_t kLanes = 8;

// One 3x3 plane of stride S from a zero-padded copy, 8 outputs per vector. The copy makes
// every window's taps plain loads, also on narrow planes (7 or 14 columns, where the loops of
// depthwise_impl.h left most columns to scalar border code): for S = 1 the padded rows as
// they are; for S = 2 each padded row split into its even and odd columns, so that the taps
// of 8 consecutive outputs are 8 consecutive floats (kx 0: even[ox], 1: odd[ox], 2: even[ox
// + 1]). Row width: the outputs rounded up to whole vectors, plus the taps past them.
template <int S>
void depthwise3x3_padded(const float* x, const WindowShape& s, const float* w, float bias, float lo, float hi,
                         float* y) {
  const int64_t H = s.in[0], W = s.in[1], OH = s.out[0], OW = s.out[1], ph = s.pad_begin[0], pw = s.pad_begin[1];
  const int64_t blocks = (OW + kLanes - 1) / kLanes, owv = blocks * kLanes;
  const int64_t rows = (OH - 1) * S + 3;               // padded rows: input rows -ph .. (OH - 1) * S - ph + 2
  const int64_t half = owv + 1;                        // S = 2: floats per even / odd row
  const int64_t stride = S == 1 ? owv + 2 : 2 * half;  // floats per padded row
  thread_local std::vector<float> buffer;
  buffer.assign(static_cast<size_t>(rows * stride), 0.0f);
  for (int64_t py = 0; py < rows; ++py) {
    const int64_t iy = py - ph;
    if (iy < 0 || iy >= H) continue;
    const float* src = x + iy * W;
    float* dst = buffer.data() + py * stride;
    // Padded column px holds input column px - pw; px < (owv - 1) * S + 3.
    const int64_t px0 = std::max<int64_t>(0, pw), px1 = std::min<int64_t>((owv - 1) * S + 3, W + pw);
    if (S == 1) {
      if (px1 > px0) std::memcpy(dst + px0, src + px0 - pw, static_cast<size_t>(px1 - px0) * sizeof(float));
    } else {
      // 16 columns at a time from an even one: their even and odd halves by two lane
      // permutes and two shuffles; the first (odd) column and the tail one by one.
      int64_t px = px0;
      if (px & 1) dst[half + px / 2] = src[px - pw], ++px;
      for (; px + 16 <= px1; px += 16) {
        const __m256 a = _mm256_loadu_ps(src + px - pw), b = _mm256_loadu_ps(src + px - pw + 8);
        const __m256 lo4 = _mm256_permute2f128_ps(a, b, 0x20), hi4 = _mm256_permute2f128_ps(a, b, 0x31);
        _mm256_storeu_ps(dst + px / 2, _mm256_shuffle_ps(lo4, hi4, 0x88));
        _mm256_storeu_ps(dst + half + px / 2, _mm256_shuffle_ps(lo4, hi4, 0xDD));
      }
      for (; px < px1; ++px) dst[(px & 1) * half + px / 2] = src[px - pw];
    }
  }
  const __m256 vb = _mm256_set1_ps(bias), vlo = _mm256_set1_ps(lo), vhi = _mm256_set1_ps(hi);
  const bool use_lo = lo != -std::numeric_limits<float>::infinity(),
             use_hi = hi != std::numeric_limits<float>::infinity();
  __m256 wv[9];
  for (int t = 0; t < 9; ++t) wv[t] = _mm256_set1_ps(w[t]);
  alignas(32) float tail[kLanes];
  for (int64_t oy = 0; oy < OH; ++oy) {
    const float* r = buffer.data() + oy * S * stride;
    float* out = y + oy * OW;
    for (int64_t j = 0; j < owv; j += kLanes) {
      __m256 acc = vb;
#pragma GCC unroll 3
      for (int ky = 0; ky < 3; ++ky) {
        const float* row = r + ky * stride;
        if (S == 1) {
          acc = _mm256_fmadd_ps(wv[ky * 3 + 0], _mm256_loadu_ps(row + j), acc);
          acc = _mm256_fmadd_ps(wv[ky * 3 + 1], _mm256_loadu_ps(row + j + 1), acc);
          acc = _mm256_fmadd_ps(wv[ky * 3 + 2], _mm256_loadu_ps(row + j + 2), acc);
        } else {
          acc = _mm256_fmadd_ps(wv[ky * 3 + 0], _mm256_loadu_ps(row + j), acc);
          acc = _mm256_fmadd_ps(wv[ky * 3 + 1], _mm256_loadu_ps(row + half + j), acc);
          acc = _mm256_fmadd_ps(wv[ky * 3 + 2], _mm256_loadu_ps(row + j + 1), acc);
        }
      }
      // The max first, as _mm512_max_ps(v, lo) does elsewhere: a NaN sum becomes lo.
      if (use_lo) acc = _mm256_max_ps(acc, vlo);
      if (use_hi) acc = _mm256_min_ps(acc, vhi);
      if (j + kLanes <= OW) {
        _mm256_storeu_ps(out + j, acc);
      } else {
        _mm256_store_ps(tail, acc);
        std::copy(tail, tail + (OW - j), out + j);
      }
    }
  }
}

}  // namespace

bool depthwise3x3_plane_fma(const float* x, const WindowShape& s, const float* w, float bias, float lo, float hi,
                            float* y) {
  if (!depthwise3x3_rows_fit(s)) return false;
  if (s.strides[0] == 1)
    depthwise3x3_padded<1>(x, s, w, bias, lo, hi, y);
  else
    depthwise3x3_padded<2>(x, s, w, bias, lo, hi, y);
  return true;
}

}  // namespace slmops::runtime::kernels::detail
