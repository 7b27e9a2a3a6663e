// GEMM kernels: plain functions on pointers and shapes (they never see the IR).
//   C[M,N] = alpha * op(A)[M,K] * op(B)[K,N] + beta * C
// Row-major; lda/ldb/ldc are row strides in elements; op(X) is X or its transpose. beta == 0
// never reads C (it may hold garbage). The optimized path is chosen once by CPU features;
// sgemm_reference is the plain loop the tests compare against.
#pragma once
#include <cstdint>
#include <memory>

namespace slmops::runtime {
class ThreadPool;
}

namespace slmops::runtime::kernels {

void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
           const float* B, int64_t ldb, float beta, float* C, int64_t ldc, ThreadPool* pool);

void sgemm_reference(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                     int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc);

// op(B)[K,N] copied once into the blocked layout sgemm's inner kernel reads, for operands
// that do not change between calls (weights): later products skip the packing pass, and a
// single-row product (M == 1) streams it contiguously. Holds about K * N floats.
class PackedB {
 public:
  PackedB() = default;
  PackedB(bool trans_b, int64_t K, int64_t N, const float* B, int64_t ldb);

  // A K x N operand (K <= kWrapMaxK, one depth block) whose packed layout the caller writes,
  // in `memory`: at least packed_floats(K, N) floats, 64-byte aligned, owned by the caller
  // and alive while this is used. The layout is strips of kStrip columns, one after another,
  // each K rows of kStrip floats: element (k, n) at (n / kStrip) * K * kStrip + k * kStrip +
  // n % kStrip. Columns N .. round_up(N, kStrip) - 1 must be written as zeros. Conv writes
  // its im2col rows this way instead of a column matrix that sgemm would pack again.
  static constexpr int64_t kStrip = 16;
  static constexpr int64_t kWrapMaxK = 256;
  static PackedB wrap(int64_t K, int64_t N, float* memory);
  // The same for any K, in depth blocks of `depth_block` rows (1 <= depth_block <=
  // kMaxDepthBlock; the last may be shorter): the block of rows [k0, k0 + kc) starts at
  // k0 * round_up(N, kStrip), and inside it strip s at s * kc * kStrip, row k at (k - k0) *
  // kStrip. A convolution picks a block of whole channels (a multiple of its kernel size), so
  // each block is one StripIm2col call. An A operand multiplied with it must have the same
  // depth block (PackedA's constructor takes one).
  static PackedB wrap_blocked(int64_t K, int64_t N, int64_t depth_block, float* memory);
  static constexpr int64_t kMaxDepthBlock = 256;
  static int64_t packed_floats(int64_t K, int64_t N) { return K * ((N + kStrip - 1) / kStrip * kStrip); }

  int64_t rows() const { return k_; }  // K
  int64_t cols() const { return n_; }  // N
  int64_t depth_block() const { return kc_; }
  // The packed rows [k0, k0 + KC) (a depth block of the driver) from column n0 on; n0 is a
  // multiple of the strip width. For the driver in gemm.cpp.
  const float* block(int64_t k0, int64_t n0) const;

 private:
  struct Free {
    void operator()(float* p) const;
  };
  int64_t k_ = 0, n_ = 0;
  int64_t n_padded_ = 0;  // N rounded up to whole strips
  int64_t kc_ = kMaxDepthBlock;  // rows of a depth block
  std::unique_ptr<float[], Free> data_;
  float* base_ = nullptr;  // data_.get(), or the caller's memory of wrap()
};

// op(A)[M,K] copied once into the panel layout sgemm's inner kernel reads (kMR rows
// interleaved by depth), for a left operand used in many products (a convolution's weights
// against each image's columns): sgemm_packed_ab then skips packing A on every call.
class PackedA {
 public:
  // depth_block: rows of op(A)'s transpose per depth block (0: the driver's own, 256); a
  // product with a PackedB needs the same as the PackedB's.
  PackedA(bool trans_a, int64_t M, int64_t K, const float* A, int64_t lda, int64_t depth_block = 0);
  int64_t rows() const { return m_; }   // M
  int64_t depth() const { return k_; }  // K
  int64_t depth_block() const { return kc_; }
  // The panels of rows [m0, ...) for the depth block starting at k0 (m0 a multiple of the
  // panel height, k0 of the driver's depth block). For the driver in gemm.cpp.
  const float* block(int64_t k0, int64_t m0) const;

 private:
  struct Free {
    void operator()(float* p) const;
  };
  int64_t m_ = 0, k_ = 0, m_padded_ = 0, kc_ = 0;
  std::unique_ptr<float[], Free> data_;
};

// sgemm with op(B) pre-packed: C[M,N] = alpha * op(A)[M,K] * B + beta * C, K and N from B.
void sgemm_packed(bool trans_a, int64_t M, float alpha, const float* A, int64_t lda, const PackedB& B, float beta,
                  float* C, int64_t ldc, ThreadPool* pool);

// op(A) pre-packed (a convolution's weights): C[M,N] = alpha * A * op(B)[K,N] + beta * C, M and
// K from A.
void sgemm_packed_a(const PackedA& A, bool trans_b, int64_t N, float alpha, const float* B, int64_t ldb, float beta,
                    float* C, int64_t ldc, ThreadPool* pool);

// Both operands pre-packed: C[M,N] = alpha * A * B + beta * C, A.depth() == B.rows().
void sgemm_packed_ab(const PackedA& A, const PackedB& B, float alpha, float beta, float* C, int64_t ldc,
                     ThreadPool* pool);

}  // namespace slmops::runtime::kernels
