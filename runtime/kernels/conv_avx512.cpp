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

// The usual depthwise window, 3x3 with dilation 1 and stride S both ways: R output rows by 16
// columns from the (R - 1) * S + 3 input rows under them, with the nine weights in registers
// and every kernel-row test resolved at compile time (the loops unroll fully); only input
// rows in the padding are skipped at run time.
template <int S, int R>
SLMOPS_AVX512 inline void depthwise3x3_block(const float* x, int64_t H, int64_t W, int64_t iy0, int64_t ix0,
                                             const __m512 (&wv)[9], __m512 bias, const __mmask16 (&loads)[kMaxKW][2],
                                             __m512 lo, __m512 hi, bool use_lo, bool use_hi, __mmask16 store, float* y,
                                             int64_t OW) {
  const __m512i evens = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  __m512 acc[R];
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) acc[r] = bias;
  constexpr int kInRows = (R - 1) * S + 3;
#pragma GCC unroll 9
  for (int i = 0; i < kInRows; ++i) {
    const int64_t iy = iy0 + i;
    if (iy < 0 || iy >= H) continue;
    const float* row = x + iy * W;
    __m512 v[3];
#pragma GCC unroll 3
    for (int kx = 0; kx < 3; ++kx) {
      if constexpr (S == 1) {
        v[kx] = _mm512_maskz_loadu_ps(loads[kx][0], element_at(row, ix0 + kx));
      } else {
        const __m512 a = _mm512_maskz_loadu_ps(loads[kx][0], element_at(row, ix0 + kx));
        const __m512 b = _mm512_maskz_loadu_ps(loads[kx][1], element_at(row, ix0 + kx + 16));
        v[kx] = _mm512_permutex2var_ps(a, evens, b);
      }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      const int ky = i - r * S;
      if (ky < 0 || ky > 2) continue;
      acc[r] = _mm512_fmadd_ps(wv[ky * 3], v[0], acc[r]);
      acc[r] = _mm512_fmadd_ps(wv[ky * 3 + 1], v[1], acc[r]);
      acc[r] = _mm512_fmadd_ps(wv[ky * 3 + 2], v[2], acc[r]);
    }
  }
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) {
    __m512 v = acc[r];
    if (use_lo) v = _mm512_max_ps(v, lo);
    if (use_hi) v = _mm512_min_ps(v, hi);
    _mm512_mask_storeu_ps(y + r * OW, store, v);
  }
}

template <int S>
SLMOPS_AVX512 void depthwise3x3_plane(const float* x, const WindowShape& s, const float* w, float bias, float lo,
                                      float hi, float* y) {
  const int64_t H = s.in[0], W = s.in[1], OH = s.out[0], OW = s.out[1], ph = s.pad_begin[0], pw = s.pad_begin[1];
  const bool use_lo = lo != -std::numeric_limits<float>::infinity();
  const bool use_hi = hi != std::numeric_limits<float>::infinity();
  const __m512 vb = _mm512_set1_ps(bias), vlo = _mm512_set1_ps(lo), vhi = _mm512_set1_ps(hi);
  __m512 wv[9];
#pragma GCC unroll 9
  for (int i = 0; i < 9; ++i) wv[i] = _mm512_set1_ps(w[i]);
  for (int64_t ox0 = 0; ox0 < OW; ox0 += 16) {
    const int64_t ix0 = ox0 * S - pw;
    __mmask16 loads[kMaxKW][2] = {};
    for (int64_t kx = 0; kx < 3; ++kx) {
      loads[kx][0] = lanes_inside(ix0 + kx, W);
      loads[kx][1] = S == 2 ? lanes_inside(ix0 + kx + 16, W) : 0;
    }
    const __mmask16 store = static_cast<__mmask16>((1u << std::min<int64_t>(16, OW - ox0)) - 1);
    int64_t oy = 0;
    for (; oy + kRowsAtOnce <= OH; oy += kRowsAtOnce)
      depthwise3x3_block<S, kRowsAtOnce>(x, H, W, oy * S - ph, ix0, wv, vb, loads, vlo, vhi, use_lo, use_hi, store,
                                         y + oy * OW + ox0, OW);
    for (; oy < OH; ++oy)
      depthwise3x3_block<S, 1>(x, H, W, oy * S - ph, ix0, wv, vb, loads, vlo, vhi, use_lo, use_hi, store,
                               y + oy * OW + ox0, OW);
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

// C tile of R rows (R <= 8) by NS strips (1 to 3) of conv_gemm_strips: R * NS accumulators
// (up to 24 of the 32 registers), per k NS strip loads and R broadcasts of A[r, k] straight
// from the weight rows. `cols` masks the valid columns of the last strip.
template <int R, int NS>
SLMOPS_AVX512 void gemm_tile(int64_t kc, const float* a, int64_t lda, const float* b, int64_t ldb, int64_t sstride,
                             const float* bias, bool first, bool use_lo, bool use_hi, __m512 lo, __m512 hi, float* c,
                             int64_t ldc, __mmask16 cols) {
  const float* ar[R];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) ar[r] = a + r * lda;
  __m512 acc[NS][R];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 3
    for (int w = 0; w < NS; ++w) {
      const __mmask16 m = w == NS - 1 ? cols : static_cast<__mmask16>(0xffff);
      acc[w][r] = first ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(m, c + r * ldc + w * 16);
    }
  for (int64_t k = 0; k < kc; ++k) {
    __m512 bv[NS];
#pragma GCC unroll 3
    for (int w = 0; w < NS; ++w)  // the last strip masked: a row-major B may end there
      bv[w] = _mm512_maskz_loadu_ps(w == NS - 1 ? cols : static_cast<__mmask16>(0xffff), b + w * sstride + k * ldb);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const __m512 av = _mm512_set1_ps(ar[r][k]);
#pragma GCC unroll 3
      for (int w = 0; w < NS; ++w) acc[w][r] = _mm512_fmadd_ps(av, bv[w], acc[w][r]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 3
    for (int w = 0; w < NS; ++w) {
      // The bias after the products, as the GEMM's extra depth row added it before (same
      // sums, bit for bit, for a convolution that fits one block).
      __m512 v = first && bias ? _mm512_add_ps(acc[w][r], _mm512_set1_ps(bias[r])) : acc[w][r];
      if (use_lo) v = _mm512_max_ps(v, lo);
      if (use_hi) v = _mm512_min_ps(v, hi);
      _mm512_mask_storeu_ps(c + r * ldc + w * 16, w == NS - 1 ? cols : static_cast<__mmask16>(0xffff), v);
    }
}

// Rows of C across `width` columns: strips two at a time, the last three together when
// their count is odd (a single strip has too few accumulators to hide the FMA latency and
// one broadcast per FMA), the last strip masked when partial.
template <int R>
SLMOPS_AVX512 void gemm_rows(int64_t kc, int64_t width, const float* a, int64_t lda, const float* b, int64_t ldb,
                             int64_t sstride, const float* bias, bool first, bool use_lo, bool use_hi, float lo_bound,
                             float hi_bound, float* c, int64_t ldc) {
  const __m512 lo = _mm512_set1_ps(lo_bound), hi = _mm512_set1_ps(hi_bound);
  const int64_t strips = (width + 15) / 16;
  const int64_t tail = width - (strips - 1) * 16;
  const __mmask16 last = static_cast<__mmask16>((1u << tail) - 1);
  if (strips == 1)
    return gemm_tile<R, 1>(kc, a, lda, b, ldb, sstride, bias, first, use_lo, use_hi, lo, hi, c, ldc, last);
  int64_t t = 0;
  for (; strips - t >= 2 && strips - t != 3; t += 2)
    gemm_tile<R, 2>(kc, a, lda, b + t * sstride, ldb, sstride, bias, first, use_lo, use_hi, lo, hi, c + t * 16, ldc,
                    t + 2 == strips ? last : static_cast<__mmask16>(0xffff));
  if (strips - t == 3)
    gemm_tile<R, 3>(kc, a, lda, b + t * sstride, ldb, sstride, bias, first, use_lo, use_hi, lo, hi, c + t * 16, ldc,
                    last);
}

// R output positions by the 32 maps of a weight panel (2R accumulators): per k two loads of
// the panel row and R broadcasts of B(k, j), one from each position's strip row. With `pf`,
// one cache line per k of the panel the next tiles read (pf, pf + 32, ... : half of each of
// its rows) is fetched meanwhile.
template <int R>
SLMOPS_AVX512 void maps_tile(int64_t kc, const float* wt, const float* const* bp, int64_t ldb, bool first, float* ct,
                             const float* pf) {
  const float* br[R];
#pragma GCC unroll 7
  for (int r = 0; r < R; ++r) br[r] = bp[r];
  __m512 acc[R][2];
#pragma GCC unroll 7
  for (int r = 0; r < R; ++r) {
    acc[r][0] = first ? _mm512_setzero_ps() : _mm512_loadu_ps(ct + r * kMapPanel);
    acc[r][1] = first ? _mm512_setzero_ps() : _mm512_loadu_ps(ct + r * kMapPanel + 16);
  }
  for (int64_t k = 0; k < kc; ++k, wt += kMapPanel) {
    if (pf) _mm_prefetch(reinterpret_cast<const char*>(pf + k * kMapPanel), _MM_HINT_T0);
    const __m512 w0 = _mm512_loadu_ps(wt), w1 = _mm512_loadu_ps(wt + 16);
#pragma GCC unroll 7
    for (int r = 0; r < R; ++r) {
      const __m512 b = _mm512_set1_ps(br[r][k * ldb]);
      acc[r][0] = _mm512_fmadd_ps(b, w0, acc[r][0]);
      acc[r][1] = _mm512_fmadd_ps(b, w1, acc[r][1]);
    }
  }
#pragma GCC unroll 7
  for (int r = 0; r < R; ++r) {
    _mm512_storeu_ps(ct + r * kMapPanel, acc[r][0]);
    _mm512_storeu_ps(ct + r * kMapPanel + 16, acc[r][1]);
  }
}

}  // namespace

SLMOPS_AVX512 void conv_gemm_strips_avx512(int64_t M, int64_t kc, int64_t width, const float* A, int64_t lda,
                                           const float* B, int64_t ldb, int64_t sstride, const float* bias, bool first,
                                           bool last, float lo, float hi, float* C, int64_t ldc) {
  const bool use_lo = last && lo != -std::numeric_limits<float>::infinity();
  const bool use_hi = last && hi != std::numeric_limits<float>::infinity();
  // (The bounds go as floats: the lambda is not compiled for AVX-512, so no __m512 passes
  // through it.)
  for_each_row_tile<8>(M, [&](auto rows, int64_t m) {
    gemm_rows<rows()>(kc, width, A + m * lda, lda, B, ldb, sstride, bias ? bias + m : nullptr, first, use_lo, use_hi,
                      lo, hi, C + m * ldc, ldc);
  });
}

// Transposes the 16 x 16 block r (r[a][b] -> r[b][a]): per 128-bit lane, 4 x 4 transposes of
// the rows' quarters (unpack, shuffle), then the lanes regrouped (two lane shuffles).
SLMOPS_AVX512 inline void transpose16x16(__m512 (&r)[16]) {
  __m512 t[16];
  for (int g = 0; g < 4; ++g) {
    const __m512 lo01 = _mm512_unpacklo_ps(r[4 * g], r[4 * g + 1]), hi01 = _mm512_unpackhi_ps(r[4 * g], r[4 * g + 1]);
    const __m512 lo23 = _mm512_unpacklo_ps(r[4 * g + 2], r[4 * g + 3]),
                 hi23 = _mm512_unpackhi_ps(r[4 * g + 2], r[4 * g + 3]);
    // t[4g + e], lane L: rows 4g .. 4g + 3 at column 4L + e.
    t[4 * g] = _mm512_shuffle_ps(lo01, lo23, 0x44);
    t[4 * g + 1] = _mm512_shuffle_ps(lo01, lo23, 0xEE);
    t[4 * g + 2] = _mm512_shuffle_ps(hi01, hi23, 0x44);
    t[4 * g + 3] = _mm512_shuffle_ps(hi01, hi23, 0xEE);
  }
  for (int e = 0; e < 4; ++e) {
    // Column 4L + e is lane L of t[e], t[4 + e], t[8 + e], t[12 + e].
    const __m512 x = _mm512_shuffle_f32x4(t[e], t[4 + e], 0x88), y = _mm512_shuffle_f32x4(t[e], t[4 + e], 0xDD);
    const __m512 z = _mm512_shuffle_f32x4(t[8 + e], t[12 + e], 0x88),
                 w = _mm512_shuffle_f32x4(t[8 + e], t[12 + e], 0xDD);
    r[e] = _mm512_shuffle_f32x4(x, z, 0x88);
    r[8 + e] = _mm512_shuffle_f32x4(x, z, 0xDD);
    r[4 + e] = _mm512_shuffle_f32x4(y, w, 0x88);
    r[12 + e] = _mm512_shuffle_f32x4(y, w, 0xDD);
  }
}

SLMOPS_AVX512 void maps_to_rows_avx512(const float* ct, int64_t width, int64_t rows, const float* bias, float lo,
                                       float hi, float* y, int64_t ldy) {
  const bool use_lo = lo != -std::numeric_limits<float>::infinity(),
             use_hi = hi != std::numeric_limits<float>::infinity();
  const __m512 vlo = _mm512_set1_ps(lo), vhi = _mm512_set1_ps(hi);
  // Blocks of 16 maps (half a panel) by 16 positions.
  for (int64_t i0 = 0; i0 < rows; i0 += 16) {
    const float* src = ct + (i0 / kMapPanel) * width * kMapPanel + i0 % kMapPanel;
    const int64_t maps = std::min<int64_t>(16, rows - i0);
    for (int64_t j0 = 0; j0 < width; j0 += 16) {
      const int64_t n = std::min<int64_t>(16, width - j0);
      __m512 r[16];
      for (int64_t j = 0; j < 16; ++j)  // position j0 + j: its 16 maps
        r[j] = j < n ? _mm512_loadu_ps(src + (j0 + j) * kMapPanel) : _mm512_setzero_ps();
      transpose16x16(r);  // r[i]: map i0 + i at positions j0 ..
      const __mmask16 cols = n == 16 ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << n) - 1);
      for (int64_t i = 0; i < maps; ++i) {
        // + 0 without a bias too, as the portable loop (it turns -0 into +0)
        __m512 v = _mm512_add_ps(r[i], _mm512_set1_ps(bias ? bias[i0 + i] : 0.0f));
        if (use_lo) v = _mm512_max_ps(v, vlo);  // NaN -> lo, as v > lo ? v : lo
        if (use_hi) v = _mm512_min_ps(v, vhi);  // NaN -> hi, as v < hi ? v : hi
        _mm512_mask_storeu_ps(y + (i0 + i) * ldy + j0, cols, v);
      }
    }
  }
}

SLMOPS_AVX512 void conv_gemm_maps_avx512(int64_t panels, int64_t kc, int64_t width, const float* wt, int64_t wt_pstride,
                                         const float* B, int64_t ldb, int64_t sstride, bool first, float* ct,
                                         int64_t ct_pstride) {
  constexpr int kR = static_cast<int>(kMapPositions);
  static_assert(kR == 7, "maps_tile is instantiated for 1 to 7 positions");
  for (int64_t p = 0; p < panels; ++p)
    for (int64_t j0 = 0; j0 < width; j0 += kR) {
      const float* bp[kR];
      const int R = static_cast<int>(std::min<int64_t>(kR, width - j0));
      for (int r = 0; r < R; ++r) bp[r] = B + ((j0 + r) / 16) * sstride + (j0 + r) % 16;
      const float* w = wt + p * wt_pstride;
      float* c = ct + p * ct_pstride + j0 * kMapPanel;
      // The first two tiles of a panel fetch the next panel's rows (it is read from memory or
      // L3 once per convolution; the other tiles find this one in L1/L2).
      const float* pf = p + 1 < panels && j0 < 2 * kR ? wt + (p + 1) * wt_pstride + (j0 / kR) * 16 : nullptr;
      switch (R) {
#define SLMOPS_POSITIONS(N)                     \
  case N:                                       \
    maps_tile<N>(kc, w, bp, ldb, first, c, pf); \
    break;
        SLMOPS_POSITIONS(7)
        SLMOPS_POSITIONS(6)
        SLMOPS_POSITIONS(5)
        SLMOPS_POSITIONS(4)
        SLMOPS_POSITIONS(3)
        SLMOPS_POSITIONS(2)
        SLMOPS_POSITIONS(1)
#undef SLMOPS_POSITIONS
        default:
          break;
      }
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
          const uint32_t spread = spread_to_even_bits(m);
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
  const bool k3x3 = s.kernel[0] == 3 && s.kernel[1] == 3 && s.dilations[0] == 1 && s.dilations[1] == 1;
  if (k3x3 && s.strides[0] == 1 && s.strides[1] == 1) return depthwise3x3_plane<1>(x, s, w, bias, lo, hi, y);
  if (k3x3 && s.strides[0] == 2 && s.strides[1] == 2) return depthwise3x3_plane<2>(x, s, w, bias, lo, hi, y);
  if (s.strides[1] == 1)
    depthwise_plane<1>(x, s, w, bias, lo, hi, y);
  else
    depthwise_plane<2>(x, s, w, bias, lo, hi, y);
}

#pragma GCC diagnostic pop

}  // namespace slmops::runtime::kernels::detail
