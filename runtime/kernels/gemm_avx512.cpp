// AVX-512F micro-kernel of the SGEMM driver: the same 6x16 tile and packed layouts as the
// AVX2 set (gemm_kernels.h), with one 16-float zmm accumulator per row. Per k step that is
// one B load, six broadcasts and six FMAs, where the AVX2 kernel needs two loads and twelve
// 8-wide FMAs for the same 96 multiply-adds, so the tile is bound by the loads (3.5 cycles)
// instead of the FMAs (6 cycles). The GEMV kernels are the AVX2 ones (memory-bound).
//
// The build compiles only *_avx2.cpp files for a wider ISA; this file asks for AVX-512 per
// function (target attribute), and gemm.cpp calls it only after checking the CPU.
#include <immintrin.h>

#include "runtime/kernels/gemm_kernels.h"

namespace slmops::runtime::kernels::detail {
namespace {

static_assert(kMR == 6 && kNR == 16, "the AVX-512 micro-kernel is written for a 6x16 tile");

__attribute__((target("avx512f,avx2,fma"))) void micro(int64_t kc, const float* a, const float* b, float* c,
                                                       int64_t ldc, float alpha, float beta, int mr, int nr) {
  for (int r = 0; r < mr; ++r) _mm_prefetch(reinterpret_cast<const char*>(c + r * ldc), _MM_HINT_T0);
  // Every loop over acc is unrolled fully, or GCC keeps the accumulators in memory.
  __m512 acc[kMR];
#pragma GCC unroll 6
  for (auto& v : acc) v = _mm512_setzero_ps();
  for (int64_t k = 0; k < kc; ++k, a += kMR, b += kNR) {
    const __m512 bv = _mm512_loadu_ps(b);
#pragma GCC unroll 6
    for (int r = 0; r < kMR; ++r) acc[r] = _mm512_fmadd_ps(_mm512_set1_ps(a[r]), bv, acc[r]);
  }
  // The valid columns of the tile; beta == 0 never reads C (it may hold garbage, even NaN).
  const __mmask16 cols = nr >= kNR ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << nr) - 1);
  const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
#pragma GCC unroll 6
  for (int r = 0; r < kMR; ++r) {
    if (r >= mr) break;
    float* out = c + r * ldc;
    __m512 v = _mm512_mul_ps(va, acc[r]);
    if (beta != 0.f) v = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(cols, out), v);
    _mm512_mask_storeu_ps(out, cols, v);
  }
}

// A kMR x 2*kNR tile: R rows of the A panel against two consecutive B strips, 2R zmm
// accumulators (12 for a full panel). With 2 FMA ports of 4 cycles' latency a k step needs at
// least 8 independent FMAs in flight; the single-strip tile above has 6. Per k step: two B
// loads, R broadcasts, 2R FMAs.
template <int R>
__attribute__((target("avx512f,avx2,fma"))) void micro_wide_rows(int64_t kc, const float* a, const float* b,
                                                                 float* c, int64_t ldc, float alpha, float beta) {
  const float* b2 = b + kc * kNR;
  __m512 acc0[R], acc1[R];
#pragma GCC unroll 6
  for (int r = 0; r < R; ++r) acc0[r] = acc1[r] = _mm512_setzero_ps();
  for (int64_t k = 0; k < kc; ++k, a += kMR, b += kNR, b2 += kNR) {
    const __m512 bv0 = _mm512_loadu_ps(b), bv1 = _mm512_loadu_ps(b2);
#pragma GCC unroll 6
    for (int r = 0; r < R; ++r) {
      const __m512 av = _mm512_set1_ps(a[r]);
      acc0[r] = _mm512_fmadd_ps(av, bv0, acc0[r]);
      acc1[r] = _mm512_fmadd_ps(av, bv1, acc1[r]);
    }
  }
  const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
#pragma GCC unroll 6
  for (int r = 0; r < R; ++r) {
    float* out = c + r * ldc;
    __m512 v0 = _mm512_mul_ps(va, acc0[r]), v1 = _mm512_mul_ps(va, acc1[r]);
    if (beta != 0.f) {  // beta == 0 never reads C
      v0 = _mm512_fmadd_ps(vb, _mm512_loadu_ps(out), v0);
      v1 = _mm512_fmadd_ps(vb, _mm512_loadu_ps(out + kNR), v1);
    }
    _mm512_storeu_ps(out, v0);
    _mm512_storeu_ps(out + kNR, v1);
  }
}

void micro_wide(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, float alpha, float beta, int mr) {
  switch (mr) {
    case 1: return micro_wide_rows<1>(kc, a, b, c, ldc, alpha, beta);
    case 2: return micro_wide_rows<2>(kc, a, b, c, ldc, alpha, beta);
    case 3: return micro_wide_rows<3>(kc, a, b, c, ldc, alpha, beta);
    case 4: return micro_wide_rows<4>(kc, a, b, c, ldc, alpha, beta);
    case 5: return micro_wide_rows<5>(kc, a, b, c, ldc, alpha, beta);
    default: return micro_wide_rows<6>(kc, a, b, c, ldc, alpha, beta);
  }
}

}  // namespace

const GemmKernels& avx512_kernels() {
  static const GemmKernels k{micro, micro_wide, avx2_kernels().gemv_dot, avx2_kernels().gemv_axpy, avx2_kernels().gemv_strips};
  return k;
}

}  // namespace slmops::runtime::kernels::detail
