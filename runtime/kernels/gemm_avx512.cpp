// AVX-512F micro-kernels of the SGEMM driver. The packed B strips are the FMA set's (16
// columns, gemm_kernels.h); the A panels are 8 rows high (GemmKernels::mr = 8), so that a
// tile has enough independent accumulators: with 2 FMA ports of 4 cycles' latency a k step
// needs at least 8 FMAs in flight.
//   micro:      8 x 16, one zmm accumulator per row: one B load, 8 broadcasts, 8 FMAs per k.
//   micro_wide: 8 x 32 over two consecutive strips, 16 accumulators: two B loads, 8
//               broadcasts, 16 FMAs per k (bound by the FMAs, not the loads).
//   *_direct:   the same, broadcasting from op(A)'s rows in place (no packed panel).
// The GEMV kernels are the FMA set's (memory-bound).
//
// The build compiles only *_avx2[_*].cpp files for a wider ISA; this file asks for AVX-512 per
// function (target attribute), and gemm.cpp calls it only after checking the CPU.
#include <immintrin.h>

#include "runtime/kernels/gemm_kernels.h"

namespace slmops::runtime::kernels::detail {
namespace {

constexpr int kRows = 8;  // this set's panel height
static_assert(kRows <= kMaxMR && kNR == 16, "the AVX-512 tiles are 8 rows by 16-float strips");

#define SLMOPS_AVX512 __attribute__((target("avx512f,avx2,fma")))

// R rows (R <= kRows: the valid rows of the panel) times W strips (1 or 2); `cols` masks the
// valid columns of the last strip (all 16 when it is full). beta == 0 never reads C. A is a
// packed panel, or with kDirect the rows of op(A) themselves (row r at a + r * lda, k
// contiguous): the same broadcasts from other addresses, so the same sums.
template <int R, int W, bool kDirect>
SLMOPS_AVX512 void tile(int64_t kc, const float* a, int64_t lda, const float* b, float* c, int64_t ldc, float alpha,
                        float beta, __mmask16 cols) {
  const int64_t a_row = kDirect ? lda : 1, a_step = kDirect ? 1 : kRows;
  const float* b2 = b + kc * kNR;  // the second strip (W == 2)
  __m512 acc[W][R];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 2
    for (int w = 0; w < W; ++w) acc[w][r] = _mm512_setzero_ps();
  for (int64_t k = 0; k < kc; ++k, a += a_step, b += kNR, b2 += kNR) {
    const __m512 bv0 = _mm512_loadu_ps(b);
    const __m512 bv1 = W == 2 ? _mm512_loadu_ps(b2) : bv0;
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const __m512 av = _mm512_set1_ps(a[r * a_row]);
      acc[0][r] = _mm512_fmadd_ps(av, bv0, acc[0][r]);
      if (W == 2) acc[W - 1][r] = _mm512_fmadd_ps(av, bv1, acc[W - 1][r]);
    }
  }
  const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 2
    for (int w = 0; w < W; ++w) {
      float* out = c + r * ldc + w * kNR;
      const __mmask16 m = w == W - 1 ? cols : static_cast<__mmask16>(0xffff);
      __m512 v = _mm512_mul_ps(va, acc[w][r]);
      if (beta != 0.f) v = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m, out), v);
      _mm512_mask_storeu_ps(out, m, v);
    }
  }
}

template <int W, bool kDirect>
void tile_rows(int64_t kc, const float* a, int64_t lda, const float* b, float* c, int64_t ldc, float alpha, float beta,
               int mr, __mmask16 cols) {
  // clang-format off
  switch (mr) {
    case 1: return tile<1, W, kDirect>(kc, a, lda, b, c, ldc, alpha, beta, cols);
    case 2: return tile<2, W, kDirect>(kc, a, lda, b, c, ldc, alpha, beta, cols);
    case 3: return tile<3, W, kDirect>(kc, a, lda, b, c, ldc, alpha, beta, cols);
    case 4: return tile<4, W, kDirect>(kc, a, lda, b, c, ldc, alpha, beta, cols);
    case 5: return tile<5, W, kDirect>(kc, a, lda, b, c, ldc, alpha, beta, cols);
    case 6: return tile<6, W, kDirect>(kc, a, lda, b, c, ldc, alpha, beta, cols);
    case 7: return tile<7, W, kDirect>(kc, a, lda, b, c, ldc, alpha, beta, cols);
    default: return tile<8, W, kDirect>(kc, a, lda, b, c, ldc, alpha, beta, cols);
  }
  // clang-format on
}

__mmask16 strip_mask(int nr) {
  return nr >= kNR ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << nr) - 1);
}

void micro(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, float alpha, float beta, int mr,
           int nr) {
  tile_rows<1, false>(kc, a, 0, b, c, ldc, alpha, beta, mr, strip_mask(nr));
}

void micro_wide(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, float alpha, float beta, int mr) {
  tile_rows<2, false>(kc, a, 0, b, c, ldc, alpha, beta, mr, static_cast<__mmask16>(0xffff));
}

void micro_direct(int64_t kc, const float* a, int64_t lda, const float* b, float* c, int64_t ldc, float alpha,
                  float beta, int mr, int nr) {
  tile_rows<1, true>(kc, a, lda, b, c, ldc, alpha, beta, mr, strip_mask(nr));
}

void micro_wide_direct(int64_t kc, const float* a, int64_t lda, const float* b, float* c, int64_t ldc, float alpha,
                       float beta, int mr) {
  tile_rows<2, true>(kc, a, lda, b, c, ldc, alpha, beta, mr, static_cast<__mmask16>(0xffff));
}

}  // namespace

const GemmKernels& avx512_kernels() {
  static const GemmKernels k{kRows,
                             micro,
                             micro_wide,
                             fma_kernels().gemv_dot,
                             fma_kernels().gemv_axpy,
                             fma_kernels().gemv_strips,
                             micro_direct,
                             micro_wide_direct};
  return k;
}

}  // namespace slmops::runtime::kernels::detail
