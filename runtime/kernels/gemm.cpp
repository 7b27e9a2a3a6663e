#include "runtime/kernels/gemm.h"

#include "runtime/thread_pool.h"

namespace slmops::runtime::kernels {

void sgemm_reference(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                     int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      double acc = 0;
      for (int64_t k = 0; k < K; ++k) {
        float a = trans_a ? A[k * lda + m] : A[m * lda + k];
        float b = trans_b ? B[n * ldb + k] : B[k * ldb + n];
        acc += static_cast<double>(a) * b;
      }
      float prev = beta == 0.f ? 0.f : beta * C[m * ldc + n];
      C[m * ldc + n] = alpha * static_cast<float>(acc) + prev;
    }
}

// Placeholder until the blocked AVX2 kernel lands: rows split across threads, inner loop in
// i-k-j order so B and C rows stream.
void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
           const float* B, int64_t ldb, float beta, float* C, int64_t ldc, ThreadPool* pool) {
  auto rows = [&](int64_t m0, int64_t m1) {
    for (int64_t m = m0; m < m1; ++m) {
      float* c = C + m * ldc;
      for (int64_t n = 0; n < N; ++n) c[n] = beta == 0.f ? 0.f : beta * c[n];
      for (int64_t k = 0; k < K; ++k) {
        float a = alpha * (trans_a ? A[k * lda + m] : A[m * lda + k]);
        if (a == 0.f) continue;
        if (!trans_b) {
          const float* b = B + k * ldb;
          for (int64_t n = 0; n < N; ++n) c[n] += a * b[n];
        } else {
          for (int64_t n = 0; n < N; ++n) c[n] += a * B[n * ldb + k];
        }
      }
    }
  };
  if (pool) pool->parallel_for(M, 1, rows);
  else rows(0, M);
}

}  // namespace slmops::runtime::kernels
