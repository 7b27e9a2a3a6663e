// GEMM kernels: plain functions on pointers and shapes (they never see the IR).
//   C[M,N] = alpha * op(A)[M,K] * op(B)[K,N] + beta * C
// Row-major; lda/ldb/ldc are row strides in elements. The optimized path is chosen once by
// CPU features; sgemm_reference is the plain loop the tests compare against.
#pragma once
#include <cstdint>

namespace slmops::runtime {
class ThreadPool;
}

namespace slmops::runtime::kernels {

void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
           const float* B, int64_t ldb, float beta, float* C, int64_t ldc, ThreadPool* pool);

void sgemm_reference(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                     int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc);

}  // namespace slmops::runtime::kernels
