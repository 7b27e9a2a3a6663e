// AVX-512F bodies of the convolution kernels (conv.h): the strip im2col and the depthwise
// 2-D convolution. The build compiles this file for baseline x86-64; each function asks for
// AVX-512 itself (target attribute) and conv.cpp calls it only after checking cpu().
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <limits>

#include "runtime/kernels/conv.h"

namespace slmops::runtime::kernels::detail {
namespace {

#define SLMOPS_AVX512 __attribute__((target("avx512f,avx2,fma")))

// GCC 12 warns about the undefined first operand of _mm512_set1_ps / _mm512_setzero_ps
// placeholders (avx512fintrin.h) when they are used under a target attribute.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

// The address of element `offset` of `base`, which may lie outside the plane (its lanes are
// then masked off): computed as an integer, not as out-of-range pointer arithmetic.
inline const float* element_at(const float* base, int64_t offset) {
  return reinterpret_cast<const float*>(reinterpret_cast<uintptr_t>(base) + offset * int64_t{sizeof(float)});
}

// Lanes i of a 16-float load at input column `first` with 0 <= first + i < width.
inline __mmask16 lanes_inside(int64_t first, int64_t width) {
  const int64_t lo = std::clamp<int64_t>(-first, 0, 16), hi = std::clamp<int64_t>(width - first, 0, 16);
  if (hi <= lo) return 0;
  return static_cast<__mmask16>(((1u << hi) - 1) & ~((1u << lo) - 1));
}

// Rows of output computed together by the depthwise kernel: an input row loaded once feeds
// every output row whose window covers it, and R accumulators per column block hide the FMA
// latency on narrow planes (7 or 14 columns are one block).
constexpr int kRowsAtOnce = 4;
constexpr int kMaxKW = 8;

// Depthwise rows [oy0, oy0 + R) of one plane, columns [ox0, ox0 + 16) (stride S along rows).
// loads[kx] masks of the input columns of kernel column kx (two for S == 2: the 32 inputs
// ix0 .. ix0 + 31 whose even elements are the window's).
template <int S, int R>
SLMOPS_AVX512 inline void depthwise_block(const float* x, const WindowShape& s, const float* w, __m512 bias,
                                          int64_t oy0, int64_t ox0, const __mmask16 (&loads)[kMaxKW][2], __m512 lo,
                                          __m512 hi, bool use_lo, bool use_hi, __mmask16 store, float* y) {
  const int64_t H = s.in[0], W = s.in[1], OW = s.out[1], KH = s.kernel[0], KW = s.kernel[1];
  const int64_t sh = s.strides[0], dh = s.dilations[0], dw = s.dilations[1], ph = s.pad_begin[0];
  const int64_t pw = s.pad_begin[1];
  const __m512i evens = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  __m512 acc[R];
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) acc[r] = bias;
  // Input rows under the R output rows: from the first row of output oy0's window to the
  // last of oy0 + R - 1's.
  const int64_t iy_begin = std::max<int64_t>(0, oy0 * sh - ph);
  const int64_t iy_end = std::min<int64_t>(H, (oy0 + R - 1) * sh - ph + (KH - 1) * dh + 1);
  for (int64_t iy = iy_begin; iy < iy_end; ++iy) {
    // Kernel row of output row r over this input row, or -1.
    int64_t ky[R];
    bool any = false;
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      const int64_t d = iy - ((oy0 + r) * sh - ph);
      if (dh == 1)
        ky[r] = d >= 0 && d < KH ? d : -1;  // no division in the usual case
      else
        ky[r] = d >= 0 && d % dh == 0 && d / dh < KH ? d / dh : -1;
      any |= ky[r] >= 0;
    }
    if (!any) continue;
    const float* row = x + iy * W;
    for (int64_t kx = 0; kx < KW; ++kx) {
      const int64_t ix0 = ox0 * S - pw + kx * dw;
      __m512 v;
      if constexpr (S == 1) {
        v = _mm512_maskz_loadu_ps(loads[kx][0], element_at(row, ix0));
      } else {
        const __m512 a = _mm512_maskz_loadu_ps(loads[kx][0], element_at(row, ix0));
        const __m512 b = _mm512_maskz_loadu_ps(loads[kx][1], element_at(row, ix0 + 16));
        v = _mm512_permutex2var_ps(a, evens, b);
      }
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r)
        if (ky[r] >= 0) acc[r] = _mm512_fmadd_ps(_mm512_set1_ps(w[ky[r] * KW + kx]), v, acc[r]);
    }
  }
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) {
    __m512 v = acc[r];
    if (use_lo) v = _mm512_max_ps(v, lo);  // NaN -> lo, as x > lo ? x : lo
    if (use_hi) v = _mm512_min_ps(v, hi);
    _mm512_mask_storeu_ps(y + (oy0 + r) * OW + ox0, store, v);
  }
}

template <int S>
SLMOPS_AVX512 void depthwise_plane(const float* x, const WindowShape& s, const float* w, float bias, float lo, float hi,
                                   float* y) {
  const int64_t W = s.in[1], OH = s.out[0], OW = s.out[1], KW = s.kernel[1];
  const int64_t dw = s.dilations[1], pw = s.pad_begin[1];
  const bool use_lo = lo != -std::numeric_limits<float>::infinity();
  const bool use_hi = hi != std::numeric_limits<float>::infinity();
  const __m512 vb = _mm512_set1_ps(bias), vlo = _mm512_set1_ps(lo), vhi = _mm512_set1_ps(hi);
  for (int64_t ox0 = 0; ox0 < OW; ox0 += 16) {
    __mmask16 loads[kMaxKW][2] = {};
    for (int64_t kx = 0; kx < KW; ++kx) {
      const int64_t ix0 = ox0 * S - pw + kx * dw;
      loads[kx][0] = lanes_inside(ix0, W);
      loads[kx][1] = S == 2 ? lanes_inside(ix0 + 16, W) : 0;
    }
    const int64_t n = std::min<int64_t>(16, OW - ox0);
    const __mmask16 store = static_cast<__mmask16>((1u << n) - 1);
    int64_t oy = 0;
    for (; oy + kRowsAtOnce <= OH; oy += kRowsAtOnce)
      depthwise_block<S, kRowsAtOnce>(x, s, w, vb, oy, ox0, loads, vlo, vhi, use_lo, use_hi, store, y);
    for (; oy < OH; ++oy) depthwise_block<S, 1>(x, s, w, vb, oy, ox0, loads, vlo, vhi, use_lo, use_hi, store, y);
  }
}

// C tile of R rows (R <= 8) by NS strips (1 or 2) of conv_gemm_strips: R * NS accumulators,
// per k NS strip loads and R broadcasts of A[r, k] straight from the weight rows. `cols`
// masks the valid columns of the last strip.
template <int R, int NS>
SLMOPS_AVX512 void gemm_tile(int64_t kc, const float* a, int64_t lda, const float* b, const float* bias, bool first,
                             bool use_lo, bool use_hi, __m512 lo, __m512 hi, float* c, int64_t ldc, __mmask16 cols) {
  const float* b2 = b + kc * 16;
  const float* ar[R];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) ar[r] = a + r * lda;
  __m512 acc[NS][R];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 2
    for (int w = 0; w < NS; ++w) {
      const __mmask16 m = w == NS - 1 ? cols : static_cast<__mmask16>(0xffff);
      acc[w][r] = first ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(m, c + r * ldc + w * 16);
    }
  for (int64_t k = 0; k < kc; ++k) {
    const __m512 bv0 = _mm512_loadu_ps(b + k * 16);
    const __m512 bv1 = NS == 2 ? _mm512_loadu_ps(b2 + k * 16) : bv0;
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const __m512 av = _mm512_set1_ps(ar[r][k]);
      acc[0][r] = _mm512_fmadd_ps(av, bv0, acc[0][r]);
      if (NS == 2) acc[NS - 1][r] = _mm512_fmadd_ps(av, bv1, acc[NS - 1][r]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 2
    for (int w = 0; w < NS; ++w) {
      // The bias after the products, as the GEMM's extra depth row added it before (same
      // sums, bit for bit, for a convolution that fits one block).
      __m512 v = first && bias ? _mm512_add_ps(acc[w][r], _mm512_set1_ps(bias[r])) : acc[w][r];
      if (use_lo) v = _mm512_max_ps(v, lo);
      if (use_hi) v = _mm512_min_ps(v, hi);
      _mm512_mask_storeu_ps(c + r * ldc + w * 16, w == NS - 1 ? cols : static_cast<__mmask16>(0xffff), v);
    }
}

template <int R>
SLMOPS_AVX512 void gemm_rows(int64_t kc, int64_t width, const float* a, int64_t lda, const float* b, const float* bias,
                             bool first, bool use_lo, bool use_hi, __m512 lo, __m512 hi, float* c, int64_t ldc) {
  int64_t j = 0;
  for (; j + 32 <= width; j += 32)
    gemm_tile<R, 2>(kc, a, lda, b + j * kc, bias, first, use_lo, use_hi, lo, hi, c + j, ldc, 0xffff);
  for (; j < width; j += 16) {
    const int64_t n = std::min<int64_t>(16, width - j);
    gemm_tile<R, 1>(kc, a, lda, b + j * kc, bias, first, use_lo, use_hi, lo, hi, c + j, ldc,
                    static_cast<__mmask16>((1u << n) - 1));
  }
}

}  // namespace

SLMOPS_AVX512 void conv_gemm_strips_avx512(int64_t M, int64_t kc, int64_t width, const float* A, int64_t lda,
                                           const float* B, const float* bias, bool first, bool last, float lo, float hi,
                                           float* C, int64_t ldc) {
  const bool use_lo = last && lo != -std::numeric_limits<float>::infinity();
  const bool use_hi = last && hi != std::numeric_limits<float>::infinity();
  const __m512 vlo = _mm512_set1_ps(lo), vhi = _mm512_set1_ps(hi);
  int64_t m = 0;
  for (; m + 8 <= M; m += 8)
    gemm_rows<8>(kc, width, A + m * lda, lda, B, bias ? bias + m : nullptr, first, use_lo, use_hi, vlo, vhi,
                 C + m * ldc, ldc);
  const float* a = A + m * lda;
  const float* bm = bias ? bias + m : nullptr;
  float* c = C + m * ldc;
  switch (M - m) {
    case 7:
      gemm_rows<7>(kc, width, a, lda, B, bm, first, use_lo, use_hi, vlo, vhi, c, ldc);
      break;
    case 6:
      gemm_rows<6>(kc, width, a, lda, B, bm, first, use_lo, use_hi, vlo, vhi, c, ldc);
      break;
    case 5:
      gemm_rows<5>(kc, width, a, lda, B, bm, first, use_lo, use_hi, vlo, vhi, c, ldc);
      break;
    case 4:
      gemm_rows<4>(kc, width, a, lda, B, bm, first, use_lo, use_hi, vlo, vhi, c, ldc);
      break;
    case 3:
      gemm_rows<3>(kc, width, a, lda, B, bm, first, use_lo, use_hi, vlo, vhi, c, ldc);
      break;
    case 2:
      gemm_rows<2>(kc, width, a, lda, B, bm, first, use_lo, use_hi, vlo, vhi, c, ldc);
      break;
    case 1:
      gemm_rows<1>(kc, width, a, lda, B, bm, first, use_lo, use_hi, vlo, vhi, c, ldc);
      break;
    default:
      break;
  }
}

SLMOPS_AVX512 void strip_im2col_avx512(const StripTables& t, const float* x, int64_t c0, int64_t c1, int64_t t0,
                                       int64_t t1, float* col, int64_t strip_rows) {
  const int64_t ksize = t.ksize, plane = t.plane;
  for (int64_t s = t0; s < t1; ++s) {
    float* dst = col + (s - t0) * strip_rows * 16;
    const uint16_t* masks = t.mask + s * ksize;
    if (t.shifted[s] == 1) {
      // The 16 windows start at consecutive elements: row k is one masked load (lanes in the
      // padding are not read, and load as 0).
      const int64_t origin = t.origin[s * 16];
      for (int64_t c = c0; c < c1; ++c) {
        const float* src = element_at(x, c * plane + origin);
        for (int64_t k = 0; k < ksize; ++k, dst += 16)
          _mm512_storeu_ps(dst, _mm512_maskz_loadu_ps(masks[k], element_at(src, t.delta[k])));
      }
      continue;
    }
    if (t.shifted[s] == 2) {
      // Windows two elements apart (stride 2 within one output row): the 32 elements from the
      // first window's on, two masked loads, and their even lanes. Lanes of the load masks:
      // inside the input, as the per-window masks say for the even ones (an odd element
      // between two inside ones is inside too; the others are not used).
      const __m512i evens = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
      const int64_t origin = t.origin[s * 16];
      for (int64_t c = c0; c < c1; ++c) {
        const float* src = element_at(x, c * plane + origin);
        for (int64_t k = 0; k < ksize; ++k, dst += 16) {
          const uint32_t m = masks[k];
          // Spread window mask bit i to load bit 2i (pdep by hand: 16 bits).
          uint32_t spread = m;
          spread = (spread | (spread << 8)) & 0x00ff00ffu;
          spread = (spread | (spread << 4)) & 0x0f0f0f0fu;
          spread = (spread | (spread << 2)) & 0x33333333u;
          spread = (spread | (spread << 1)) & 0x55555555u;
          const float* p = element_at(src, t.delta[k]);
          const __m512 lo = _mm512_maskz_loadu_ps(static_cast<__mmask16>(spread), p);
          const __m512 hi = _mm512_maskz_loadu_ps(static_cast<__mmask16>(spread >> 16), element_at(p, 16));
          _mm512_storeu_ps(dst, _mm512_permutex2var_ps(lo, evens, hi));
        }
      }
      continue;
    }
    const __m512i origin = _mm512_loadu_si512(t.origin + s * 16);
    for (int64_t c = c0; c < c1; ++c) {
      const float* src = x + c * plane;
      for (int64_t k = 0; k < ksize; ++k, dst += 16) {
        const __m512i idx = _mm512_add_epi32(origin, _mm512_set1_epi32(t.delta[k]));
        _mm512_storeu_ps(dst, _mm512_mask_i32gather_ps(_mm512_setzero_ps(), masks[k], idx, src, 4));
      }
    }
  }
}

void depthwise_plane_avx512(const float* x, const WindowShape& s, const float* w, float bias, float lo, float hi,
                            float* y) {
  if (s.strides[1] == 1)
    depthwise_plane<1>(x, s, w, bias, lo, hi, y);
  else
    depthwise_plane<2>(x, s, w, bias, lo, hi, y);
}

#pragma GCC diagnostic pop

}  // namespace slmops::runtime::kernels::detail
