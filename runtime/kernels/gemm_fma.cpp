// AVX+FMA inner kernels of the SGEMM driver (compiled with -mavx -mfma -mf16c, no AVX2: float
// arithmetic needs none, so CPUs and VMs that have FMA without AVX2 run them too; see
// gemm_kernels.h for the packed layouts and what each kernel computes).
#include <immintrin.h>

#include <algorithm>

#include "runtime/kernels/gemm_kernels.h"

namespace slmops::runtime::kernels::detail {
namespace {

static_assert(kMR == 6 && kNR == 16, "the FMA micro-kernel is written for a 6x16 tile");

float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// The 6x16 tile lives in 12 ymm accumulators; each k step loads one B row (two vectors),
// broadcasts six A values and issues 12 FMAs, so the loop is bound by the two FMA ports
// rather than by loads. Packed operands are 32-byte aligned (see gemm.cpp). A is a packed
// panel, or with kDirect op(A)'s rows in place (row r at a + r * lda; rows past mr unread).
template <bool kDirect>
void tile(int64_t kc, const float* a, int64_t lda, const float* b, float* c, int64_t ldc, float alpha, float beta,
          int mr, int nr) {
  // The C tile is touched only at the end: start fetching it now, so that the loads (or the
  // stores' ownership requests) do not stall then.
  for (int r = 0; r < mr; ++r) {
    _mm_prefetch(reinterpret_cast<const char*>(c + r * ldc), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(c + r * ldc + kNR - 1), _MM_HINT_T0);
  }
  // Every loop over acc is unrolled fully, or GCC keeps the accumulators in memory.
  __m256 acc[kMR][2];
#pragma GCC unroll 6
  for (auto& row : acc) row[0] = row[1] = _mm256_setzero_ps();
  // Direct rows past mr read row 0 again (the tile's extra rows are never stored).
  int64_t row_at[kMR];
  for (int r = 0; r < kMR; ++r) row_at[r] = kDirect ? (r < mr ? r * lda : 0) : r;
  for (int64_t k = 0; k < kc; ++k, a += kDirect ? 1 : kMR, b += kNR) {
    const __m256 b0 = _mm256_load_ps(b), b1 = _mm256_load_ps(b + 8);
#pragma GCC unroll 6
    for (int r = 0; r < kMR; ++r) {
      const __m256 ar = _mm256_broadcast_ss(a + row_at[r]);
      acc[r][0] = _mm256_fmadd_ps(ar, b0, acc[r][0]);
      acc[r][1] = _mm256_fmadd_ps(ar, b1, acc[r][1]);
    }
  }
  const __m256 va = _mm256_set1_ps(alpha);
  if (mr == kMR && nr == kNR) {
    const __m256 vb = _mm256_set1_ps(beta);
#pragma GCC unroll 12
    for (int i = 0; i < 2 * kMR; ++i) {
      float* out = c + (i / 2) * ldc + (i % 2) * 8;
      __m256 v = _mm256_mul_ps(va, acc[i / 2][i % 2]);
      if (beta != 0.f) v = _mm256_fmadd_ps(vb, _mm256_loadu_ps(out), v);
      _mm256_storeu_ps(out, v);
    }
    return;
  }
  alignas(32) float tile[kMR][kNR];
#pragma GCC unroll 6
  for (int r = 0; r < kMR; ++r) {
    _mm256_store_ps(tile[r], acc[r][0]);
    _mm256_store_ps(tile[r] + 8, acc[r][1]);
  }
  store_tile_edge(tile, mr, nr, c, ldc, alpha, beta);
}

void micro(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, float alpha, float beta, int mr, int nr) {
  tile<false>(kc, a, 0, b, c, ldc, alpha, beta, mr, nr);
}
void micro_direct(int64_t kc, const float* a, int64_t lda, const float* b, float* c, int64_t ldc, float alpha,
                  float beta, int mr, int nr) {
  tile<true>(kc, a, lda, b, c, ldc, alpha, beta, mr, nr);
}

// R dot products sharing the loads of x: y[r] = x . W[r * ldw ...].
template <int R>
void dot_rows(int64_t K, const float* x, const float* W, int64_t ldw, float* y) {
  __m256 acc[R];
  for (auto& v : acc) v = _mm256_setzero_ps();
  int64_t k = 0;
  for (; k + 8 <= K; k += 8) {
    const __m256 xv = _mm256_loadu_ps(x + k);
    for (int r = 0; r < R; ++r) acc[r] = _mm256_fmadd_ps(_mm256_loadu_ps(W + r * ldw + k), xv, acc[r]);
  }
  for (int r = 0; r < R; ++r) {
    float s = hsum(acc[r]);
    for (int64_t t = k; t < K; ++t) s += x[t] * W[r * ldw + t];
    y[r] = s;
  }
}

void gemv_dot(int64_t K, const float* x, const float* W, int64_t ldw, int64_t n, float* y) {
  int64_t j = 0;
  for (; j + 4 <= n; j += 4) dot_rows<4>(K, x, W + j * ldw, ldw, y + j);
  for (; j < n; ++j) dot_rows<1>(K, x, W + j * ldw, ldw, y + j);
}

// y[0, n) += sum over R rows of x[r] * W[r * ldw ...]: R row streams per pass over y.
template <int R>
void axpy_rows(const float* x, const float* W, int64_t ldw, int64_t n, float* y) {
  __m256 xv[R];
  for (int r = 0; r < R; ++r) xv[r] = _mm256_set1_ps(x[r]);
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) {
    __m256 acc = _mm256_loadu_ps(y + j);
    for (int r = 0; r < R; ++r) acc = _mm256_fmadd_ps(xv[r], _mm256_loadu_ps(W + r * ldw + j), acc);
    _mm256_storeu_ps(y + j, acc);
  }
  for (; j < n; ++j)
    for (int r = 0; r < R; ++r) y[j] += x[r] * W[r * ldw + j];
}

void gemv_axpy(int64_t K, const float* x, const float* W, int64_t ldw, int64_t n, float* y) {
  std::fill(y, y + n, 0.f);
  int64_t k = 0;
  for (; k + 4 <= K; k += 4) axpy_rows<4>(x + k, W + k * ldw, ldw, n, y);
  for (; k < K; ++k) axpy_rows<1>(x + k, W + k * ldw, ldw, n, y);
}

// R strips at once: R independent memory streams keep more loads in flight than one (which
// is what bounds this memory-bound loop), and each broadcast of x serves 2R FMAs.
template <int R>
void strip_rows(int64_t kc, const float* x, const float* strips, float* y) {
  __m256 acc[R][2];
  for (auto& a : acc) a[0] = a[1] = _mm256_setzero_ps();
  for (int64_t k = 0; k < kc; ++k) {
    const __m256 xv = _mm256_broadcast_ss(x + k);
    for (int r = 0; r < R; ++r) {
      const float* row = strips + (r * kc + k) * kNR;
      acc[r][0] = _mm256_fmadd_ps(xv, _mm256_load_ps(row), acc[r][0]);
      acc[r][1] = _mm256_fmadd_ps(xv, _mm256_load_ps(row + 8), acc[r][1]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int h = 0; h < 2; ++h) {
      float* out = y + r * kNR + h * 8;
      _mm256_storeu_ps(out, _mm256_add_ps(acc[r][h], _mm256_loadu_ps(out)));
    }
}

void gemv_strips(int64_t kc, const float* x, const float* strips, int64_t count, float* y) {
  int64_t s = 0;
  for (; s + 4 <= count; s += 4) strip_rows<4>(kc, x, strips + s * kc * kNR, y + s * kNR);
  for (; s < count; ++s) strip_rows<1>(kc, x, strips + s * kc * kNR, y + s * kNR);
}

}  // namespace

const GemmKernels& fma_kernels() {
  static const GemmKernels k{kMR, micro, nullptr, gemv_dot, gemv_axpy, gemv_strips, micro_direct, nullptr};
  return k;
}

}  // namespace slmops::runtime::kernels::detail
