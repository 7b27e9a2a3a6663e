// The AVX+FMA build of the convolution kernels (compiled with -mavx -mfma -mf16c, no AVX2:
// conv.cpp calls it only when cpu().fma): the strip im2col, the GEMM on strips and the
// depthwise 3x3 plane. What AVX2-only CPUs run.
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#include "runtime/kernels/depthwise_impl.h"

namespace slmops::runtime::kernels::detail {
namespace {

constexpr int64_t kLanes = 8;

// Lane masks for _mm256_maskload_ps / _mm256_maskstore_ps (AVX: masked-off lanes are not
// read, do not fault and load as 0): entry b has lane i all ones where bit i of b is set.
struct LaneMaskTable {
  alignas(32) int32_t lanes[256][kLanes];
};
constexpr LaneMaskTable make_lane_masks() {
  LaneMaskTable t{};
  for (int b = 0; b < 256; ++b)
    for (int i = 0; i < kLanes; ++i) t.lanes[b][i] = (b >> i) & 1 ? -1 : 0;
  return t;
}
constexpr LaneMaskTable kLaneMasks = make_lane_masks();
inline __m256i lane_mask(uint32_t bits) {
  return _mm256_load_si256(reinterpret_cast<const __m256i*>(kLaneMasks.lanes[bits & 0xff]));
}

// The even elements of the 16 floats a, b (a's 8 then b's): two lane permutes and a shuffle
// (as the depthwise copy below splits its rows).
inline __m256 even_lanes(__m256 a, __m256 b) {
  const __m256 lo4 = _mm256_permute2f128_ps(a, b, 0x20), hi4 = _mm256_permute2f128_ps(a, b, 0x31);
  return _mm256_shuffle_ps(lo4, hi4, 0x88);
}

// n floats from src to dst in loads that stay within [src, src + n), each size's last load
// overlapping the one before it (a narrow plane's rows are 7 or 14 floats): no loop that the
// compiler turns into a memcpy call, which costs more than such a row.
inline void copy_short(const float* src, int64_t n, float* dst) {  // n < 8
  if (n >= 4) {
    _mm_storeu_ps(dst, _mm_loadu_ps(src));
    _mm_storeu_ps(dst + n - 4, _mm_loadu_ps(src + n - 4));
  } else if (n >= 2) {
    std::memcpy(dst, src, 2 * sizeof(float));
    std::memcpy(dst + n - 2, src + n - 2, 2 * sizeof(float));
  } else if (n == 1) {
    dst[0] = src[0];
  }
}
inline void copy_floats(const float* src, int64_t n, float* dst) {
  if (n < kLanes) return copy_short(src, n, dst);
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) _mm256_storeu_ps(dst + i, _mm256_loadu_ps(src + i));
  if (i < n) _mm256_storeu_ps(dst + n - kLanes, _mm256_loadu_ps(src + n - kLanes));
}

// n zeros at dst, stored as copy_floats stores (the padding of a narrow plane's rows is a
// few floats, where memset's call costs more).
inline void zero_floats(float* dst, int64_t n) {
  const __m256 zero = _mm256_setzero_ps();
  const __m128 zero4 = _mm_setzero_ps();
  if (n >= kLanes) {
    int64_t i = 0;
    for (; i + kLanes <= n; i += kLanes) _mm256_storeu_ps(dst + i, zero);
    if (i < n) _mm256_storeu_ps(dst + n - kLanes, zero);
  } else if (n >= 4) {
    _mm_storeu_ps(dst, zero4);
    _mm_storeu_ps(dst + n - 4, zero4);
  } else if (n >= 2) {
    _mm_storel_pi(reinterpret_cast<__m64*>(dst), zero4);
    _mm_storel_pi(reinterpret_cast<__m64*>(dst + n - 2), zero4);
  } else if (n == 1) {
    dst[0] = 0.0f;
  }
}

// Output row `oy` of a 3x3 plane from its three padded input rows r0..r2 (taps of column j at
// j, j + 1, j + 2; for S = 2 the odd columns `half` floats on), 8 columns per vector, each
// sum in two chains. Full-width stores may run past the row into later rows of the plane
// (written again when their turn comes); only a vector that would pass the end of the plane
// (`room` floats from out) is stored in pieces. (Two output rows sharing their input rows'
// loads, with the weights broadcast from memory for want of registers, measured slower.)
template <int S, bool UseLo, bool UseHi>
inline void depthwise3x3_row(const float* r0, int64_t stride, int64_t half, int64_t owv, const __m256 (&wv)[9],
                             __m256 bias, __m256 lo, __m256 hi, float* out, int64_t room) {
  const float* r1 = r0 + stride;
  const float* r2 = r1 + stride;
  const int64_t odd = S == 1 ? 1 : half, next = S == 1 ? 2 : 1;  // taps 1 and 2 of column j
  for (int64_t j = 0; j < owv; j += kLanes) {
    __m256 a = _mm256_fmadd_ps(wv[0], _mm256_loadu_ps(r0 + j), bias);
    __m256 b = _mm256_mul_ps(wv[1], _mm256_loadu_ps(r0 + j + odd));
    a = _mm256_fmadd_ps(wv[2], _mm256_loadu_ps(r0 + j + next), a);
    b = _mm256_fmadd_ps(wv[3], _mm256_loadu_ps(r1 + j), b);
    a = _mm256_fmadd_ps(wv[4], _mm256_loadu_ps(r1 + j + odd), a);
    b = _mm256_fmadd_ps(wv[5], _mm256_loadu_ps(r1 + j + next), b);
    a = _mm256_fmadd_ps(wv[6], _mm256_loadu_ps(r2 + j), a);
    b = _mm256_fmadd_ps(wv[7], _mm256_loadu_ps(r2 + j + odd), b);
    a = _mm256_fmadd_ps(wv[8], _mm256_loadu_ps(r2 + j + next), a);
    __m256 acc = _mm256_add_ps(a, b);
    // The max first, as _mm512_max_ps(v, lo) does elsewhere: a NaN sum becomes lo.
    if (UseLo) acc = _mm256_max_ps(acc, lo);
    if (UseHi) acc = _mm256_min_ps(acc, hi);
    if (j + kLanes <= room) {
      _mm256_storeu_ps(out + j, acc);
    } else {
      alignas(32) float tail[kLanes];
      _mm256_store_ps(tail, acc);
      copy_short(tail, room - j, out + j);
    }
  }
}

// One 3x3 plane of stride S from a zero-padded copy, 8 outputs per vector. The copy makes
// every window's taps plain loads, also on narrow planes (7 or 14 columns, where the loops of
// depthwise_impl.h left most columns to scalar border code): for S = 1 the padded rows as
// they are; for S = 2 each padded row split into its even and odd columns, so that the taps
// of 8 consecutive outputs are 8 consecutive floats (kx 0: even[ox], 1: odd[ox], 2: even[ox
// + 1]). Row width: the outputs rounded up to whole vectors, plus the taps past them. Only
// the padding of each row is zeroed (the copy writes the rest), and rows are copied with
// vector loads: on a 14x14 plane a memset of the buffer and a memcpy call per row cost as
// much as the arithmetic.
template <int S>
void depthwise3x3_padded(const float* x, const WindowShape& s, const float* w, float bias, float lo, float hi,
                         float* y) {
  const int64_t H = s.in[0], W = s.in[1], OH = s.out[0], OW = s.out[1], ph = s.pad_begin[0], pw = s.pad_begin[1];
  const int64_t blocks = (OW + kLanes - 1) / kLanes, owv = blocks * kLanes;
  const int64_t rows = (OH - 1) * S + 3;               // padded rows: input rows -ph .. (OH - 1) * S - ph + 2
  const int64_t half = owv + 1;                        // S = 2: floats per even / odd row
  const int64_t stride = S == 1 ? owv + 2 : 2 * half;  // floats per padded row
  thread_local std::vector<float> buffer;
  if (buffer.size() < static_cast<size_t>(rows * stride)) buffer.resize(static_cast<size_t>(rows * stride));
  // Padded column px holds input column px - pw; px < (owv - 1) * S + 3.
  const int64_t px0 = std::min<int64_t>(std::max<int64_t>(0, pw), (owv - 1) * S + 3);
  const int64_t px1 = std::clamp<int64_t>(W + pw, px0, (owv - 1) * S + 3);
  for (int64_t py = 0; py < rows; ++py) {
    const int64_t iy = py - ph;
    float* dst = buffer.data() + py * stride;
    if (iy < 0 || iy >= H || px1 == px0) {
      zero_floats(dst, stride);
      continue;
    }
    const float* src = x + iy * W;
    if (S == 1) {
      zero_floats(dst, px0);
      copy_floats(src + px0 - pw, px1 - px0, dst + px0);
      zero_floats(dst + px1, stride - px1);
    } else {
      zero_floats(dst, stride);
      // 16 columns at a time from an even one: their even and odd halves by two lane
      // permutes and two shuffles; then 8 at a time by two shuffles (narrow rows: 14 or 28
      // columns); the first (odd) column and the last few one by one.
      int64_t px = px0;
      if (px & 1) dst[half + px / 2] = src[px - pw], ++px;
      for (; px + 16 <= px1; px += 16) {
        const __m256 a = _mm256_loadu_ps(src + px - pw), b = _mm256_loadu_ps(src + px - pw + 8);
        const __m256 lo4 = _mm256_permute2f128_ps(a, b, 0x20), hi4 = _mm256_permute2f128_ps(a, b, 0x31);
        _mm256_storeu_ps(dst + px / 2, _mm256_shuffle_ps(lo4, hi4, 0x88));
        _mm256_storeu_ps(dst + half + px / 2, _mm256_shuffle_ps(lo4, hi4, 0xDD));
      }
      for (; px + 8 <= px1; px += 8) {
        const __m128 a = _mm_loadu_ps(src + px - pw), b = _mm_loadu_ps(src + px - pw + 4);
        _mm_storeu_ps(dst + px / 2, _mm_shuffle_ps(a, b, 0x88));
        _mm_storeu_ps(dst + half + px / 2, _mm_shuffle_ps(a, b, 0xDD));
      }
      for (; px < px1; ++px) dst[(px & 1) * half + px / 2] = src[px - pw];
    }
  }
  const __m256 vb = _mm256_set1_ps(bias), vlo = _mm256_set1_ps(lo), vhi = _mm256_set1_ps(hi);
  const bool use_lo = lo != -std::numeric_limits<float>::infinity(),
             use_hi = hi != std::numeric_limits<float>::infinity();
  __m256 wv[9];
  for (int t = 0; t < 9; ++t) wv[t] = _mm256_set1_ps(w[t]);
  auto rows_with = [&](auto use_lo_c, auto use_hi_c) {
    for (int64_t oy = 0; oy < OH; ++oy)
      depthwise3x3_row<S, use_lo_c(), use_hi_c()>(buffer.data() + oy * S * stride, stride, half, owv, wv, vb, vlo, vhi,
                                                  y + oy * OW, (OH - oy) * OW);
  };
  using Yes = std::true_type;
  using No = std::false_type;
  if (use_lo && use_hi)
    rows_with(Yes{}, Yes{});
  else if (use_lo)
    rows_with(Yes{}, No{});
  else if (use_hi)
    rows_with(No{}, Yes{});
  else
    rows_with(No{}, No{});
}

// C tile of R rows (R <= 6) by one strip of conv_gemm_strips: 2R accumulators (12 of the 16
// registers for R = 6), per k two loads of the strip row and R broadcasts of A[r, k] straight
// from the weight rows. Full: all 16 columns valid; else the first n (B and C masked: a
// row-major B may end there).
template <int R, bool Full>
void strips_tile(int64_t kc, const float* a, int64_t lda, const float* b, int64_t ldb, const float* bias, bool first,
                 bool use_lo, bool use_hi, __m256 lo, __m256 hi, float* c, int64_t ldc, int n) {
  const uint32_t cols = Full ? 0xffffu : (1u << n) - 1;
  const __m256i m0 = lane_mask(cols), m1 = lane_mask(cols >> 8);
  const float* ar[R];
#pragma GCC unroll 6
  for (int r = 0; r < R; ++r) ar[r] = a + r * lda;
  __m256 acc[R][2];
#pragma GCC unroll 6
  for (int r = 0; r < R; ++r) {
    float* cr = c + r * ldc;
    if (first) {
      acc[r][0] = acc[r][1] = _mm256_setzero_ps();
    } else if (Full) {
      acc[r][0] = _mm256_loadu_ps(cr);
      acc[r][1] = _mm256_loadu_ps(cr + 8);
    } else {
      acc[r][0] = _mm256_maskload_ps(cr, m0);
      acc[r][1] = _mm256_maskload_ps(element_at(cr, 8), m1);
    }
  }
  for (int64_t k = 0; k < kc; ++k) {
    const float* row = b + k * ldb;
    const __m256 b0 = Full ? _mm256_loadu_ps(row) : _mm256_maskload_ps(row, m0);
    const __m256 b1 = Full ? _mm256_loadu_ps(row + 8) : _mm256_maskload_ps(element_at(row, 8), m1);
#pragma GCC unroll 6
    for (int r = 0; r < R; ++r) {
      const __m256 av = _mm256_broadcast_ss(ar[r] + k);
      acc[r][0] = _mm256_fmadd_ps(av, b0, acc[r][0]);
      acc[r][1] = _mm256_fmadd_ps(av, b1, acc[r][1]);
    }
  }
#pragma GCC unroll 6
  for (int r = 0; r < R; ++r) {
    float* cr = c + r * ldc;
#pragma GCC unroll 2
    for (int h = 0; h < 2; ++h) {
      // The bias after the products, as the AVX-512 kernel adds it.
      __m256 v = first && bias ? _mm256_add_ps(acc[r][h], _mm256_set1_ps(bias[r])) : acc[r][h];
      if (use_lo) v = _mm256_max_ps(v, lo);  // NaN -> lo, as x > lo ? x : lo
      if (use_hi) v = _mm256_min_ps(v, hi);
      if (Full)
        _mm256_storeu_ps(cr + 8 * h, v);
      else
        _mm256_maskstore_ps(const_cast<float*>(element_at(cr, 8 * h)), h == 0 ? m0 : m1, v);
    }
  }
}

// Rows of C across `width` columns, one strip at a time (the last one masked when partial).
template <int R>
void strips_rows(int64_t kc, int64_t width, const float* a, int64_t lda, const float* b, int64_t ldb, int64_t sstride,
                 const float* bias, bool first, bool use_lo, bool use_hi, __m256 lo, __m256 hi, float* c, int64_t ldc) {
  int64_t j = 0;
  for (; j + 16 <= width; j += 16, b += sstride)
    strips_tile<R, true>(kc, a, lda, b, ldb, bias, first, use_lo, use_hi, lo, hi, c + j, ldc, 16);
  if (j < width)
    strips_tile<R, false>(kc, a, lda, b, ldb, bias, first, use_lo, use_hi, lo, hi, c + j, ldc,
                          static_cast<int>(width - j));
}

}  // namespace

void conv_gemm_strips_fma(int64_t M, int64_t kc, int64_t width, const float* A, int64_t lda, const float* B,
                          int64_t ldb, int64_t sstride, const float* bias, bool first, bool last, float lo, float hi,
                          float* C, int64_t ldc) {
  const bool use_lo = last && lo != -std::numeric_limits<float>::infinity();
  const bool use_hi = last && hi != std::numeric_limits<float>::infinity();
  const __m256 vlo = _mm256_set1_ps(lo), vhi = _mm256_set1_ps(hi);
  for_each_row_tile<6>(M, [&](auto rows, int64_t m) {
    strips_rows<rows()>(kc, width, A + m * lda, lda, B, ldb, sstride, bias ? bias + m : nullptr, first, use_lo, use_hi,
                        vlo, vhi, C + m * ldc, ldc);
  });
}

void strip_im2col_fma(const StripTables& t, const float* x, int64_t c0, int64_t c1, int64_t t0, int64_t t1, float* col,
                      int64_t strip_rows) {
  const int64_t ksize = t.ksize, plane = t.plane;
  const __m256 zero = _mm256_setzero_ps();
  for (int64_t s = t0; s < t1; ++s) {
    float* dst = col + (s - t0) * strip_rows * 16;
    const uint16_t* masks = t.mask + s * ksize;
    const int64_t origin = t.origin[s * 16];
    if (const int step = t.shifted[s]; step == 1 || step == 2) {
      // The 16 windows start at consecutive elements (step 1: row k is two loads, masked where
      // a lane lies in the padding) or two apart (stride 2 within one output row: the 32
      // elements from the first window's on, four loads masked as the AVX-512 kernel's, and
      // their even lanes).
      for (int64_t c = c0; c < c1; ++c) {
        const float* src = element_at(x, c * plane + origin);
        for (int64_t k = 0; k < ksize; ++k, dst += 16) {
          const uint32_t m = masks[k];
          const float* p = element_at(src, t.delta[k]);
          if (step == 1 && m == 0xffff) {
            _mm256_storeu_ps(dst, _mm256_loadu_ps(p));
            _mm256_storeu_ps(dst + 8, _mm256_loadu_ps(p + 8));
          } else if (step == 1) {
            _mm256_storeu_ps(dst, m & 0xff ? _mm256_maskload_ps(p, lane_mask(m)) : zero);
            _mm256_storeu_ps(dst + 8, m >> 8 ? _mm256_maskload_ps(element_at(p, 8), lane_mask(m >> 8)) : zero);
          } else if (m == 0xffff) {
            // Every window inside: plain loads but for the 32nd element, which no window uses
            // and which may lie past the image.
            _mm256_storeu_ps(dst, even_lanes(_mm256_loadu_ps(p), _mm256_loadu_ps(p + 8)));
            _mm256_storeu_ps(dst + 8, even_lanes(_mm256_loadu_ps(p + 16), _mm256_maskload_ps(p + 24, lane_mask(0x7f))));
          } else {
            const uint32_t spread = spread_to_even_bits(m);
            __m256 q[4];
            for (int h = 0; h < 4; ++h) {
              const uint32_t bits = (spread >> (8 * h)) & 0xff;
              q[h] = bits ? _mm256_maskload_ps(element_at(p, 8 * h), lane_mask(bits)) : zero;
            }
            _mm256_storeu_ps(dst, even_lanes(q[0], q[1]));
            _mm256_storeu_ps(dst + 8, even_lanes(q[2], q[3]));
          }
        }
      }
      continue;
    }
    // Any other spacing: lane by lane.
    const int32_t* org = t.origin + s * 16;
    for (int64_t c = c0; c < c1; ++c) {
      const float* src = x + c * plane;
      for (int64_t k = 0; k < ksize; ++k, dst += 16) {
        const uint32_t m = masks[k];
        for (int i = 0; i < 16; ++i) dst[i] = (m >> i) & 1 ? src[int64_t{org[i]} + t.delta[k]] : 0.0f;
      }
    }
  }
}

namespace {}  // namespace

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
