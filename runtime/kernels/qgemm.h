// Integer GEMM for the quantized ops (MatMulInteger, QLinearMatMul, ConvInteger, QLinearConv,
// DynamicQuantizeMatMul):
//
//   C[m, n] = sum_k (A[m, k] - a_zp[m]) * (B[k, n] - b_zp[n])      (int32, wrapping)
//
// A and B are uint8 or int8 each; zero points are per tensor or per row of A / per column of B.
// Results are exact integers (mod 2^32, as ONNX Runtime's MLAS computes them), whatever kernel
// runs. Internally every product is u8 x s8: a signed A is shifted by +128 and an unsigned B by
// -128, the shifts folded into the zero points, and the zero points applied after the raw
// product from row sums of A and column sums of B.
//
// Kernels, chosen once by CPU features (qgemm_kernel_name() says which):
//   vnni  - AVX-VNNI or AVX512-VNNI vpdpbusd on 256-bit vectors (u8 x s8 -> s32, exact).
//   avx2  - AVX2 vpmaddwd on operands widened to int16. vpmaddubsw is not used for u8 x s8:
//           it saturates the sum of two products to int16 (2 * 255 * 127 > 32767), which is
//           exactly the error MLAS's non-VNNI AVX2 path is known for.
//   scalar- portable C++.
// qgemm_reference is the plain loop the tests compare against.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

namespace slmops::runtime {
class ThreadPool;
}

namespace slmops::runtime::kernels {

enum class QGemmIsa { Scalar, Avx2, Vnni };

// The best kernel set this CPU runs (cached at first call).
QGemmIsa qgemm_best_isa();
const char* qgemm_isa_name(QGemmIsa isa);

// op(B)[K, N] (B or its transpose; uint8 or int8) packed for one kernel set, with its column
// sums. Made once for constant weights; qgemm() packs on the fly for other operands.
class QPackedB {
 public:
  QPackedB() = default;
  // B row-major with row stride ldb; trans_b: B is stored [N, K] (row stride ldb).
  QPackedB(int64_t K, int64_t N, const void* B, int64_t ldb, bool b_signed, bool trans_b = false,
           QGemmIsa isa = qgemm_best_isa());

  int64_t rows() const { return k_; }
  int64_t cols() const { return n_; }
  bool is_signed() const { return signed_; }
  QGemmIsa isa() const { return isa_; }
  // Sum over k of the canonical (signed, shifted) B values, per column.
  const int32_t* col_sums() const { return colsum_.data(); }
  const uint8_t* data() const { return data_.get(); }
  int64_t padded_k() const { return kp_; }  // K rounded up to a multiple of 4

 private:
  struct Free {
    void operator()(uint8_t* p) const;
  };
  int64_t k_ = 0, n_ = 0, kp_ = 0;
  bool signed_ = false;
  QGemmIsa isa_ = QGemmIsa::Scalar;
  std::unique_ptr<uint8_t[], Free> data_;
  std::vector<int32_t> colsum_;
};

// Zero points of one operand: one value (per tensor) or one per row of A / column of B.
struct QZeroPoints {
  const int32_t* values = nullptr;  // nullptr: all zero
  bool per_channel = false;
  int32_t at(int64_t i) const { return values ? values[per_channel ? i : 0] : 0; }
};

// Called on the thread that computed them, once the block C[m0:m1, n0:n1] is final: a
// caller that turns the int32 results into something else (a rescale to float) does it
// there, while the block is in that core's cache, instead of in a pass over all of C after.
using QBlockDone = std::function<void(int64_t m0, int64_t m1, int64_t n0, int64_t n1)>;

// Writes A[row, k0 .. k0 + n) to dst (raw values, as A would hold them): an A that is never
// stored whole, such as a convolution's im2col matrix, made row by row into the kernel's tiles.
using QRowFill = std::function<void(int64_t row, int64_t k0, int64_t n, uint8_t* dst)>;

// C[M, N] (row stride ldc) from A[M, K] (row stride lda) and a packed B. With fill_a, A's rows
// come from it (A and lda are not read).
void qgemm_packed(int64_t M, const void* A, int64_t lda, bool a_signed, QZeroPoints a_zp, const QPackedB& B,
                  QZeroPoints b_zp, int32_t* C, int64_t ldc, ThreadPool* pool, const QBlockDone* block_done = nullptr,
                  const QRowFill* fill_a = nullptr);

// The same with B packed on the fly (B[K, N] row-major, row stride ldb).
void qgemm(int64_t M, int64_t N, int64_t K, const void* A, int64_t lda, bool a_signed, QZeroPoints a_zp,
           const void* B, int64_t ldb, bool b_signed, QZeroPoints b_zp, int32_t* C, int64_t ldc, ThreadPool* pool,
           QGemmIsa isa = qgemm_best_isa());

void qgemm_reference(int64_t M, int64_t N, int64_t K, const void* A, int64_t lda, bool a_signed, QZeroPoints a_zp,
                     const void* B, int64_t ldb, bool b_signed, QZeroPoints b_zp, int32_t* C, int64_t ldc);

namespace qdetail {
// Register tile and packing constants shared by qgemm.cpp and qgemm_avx2_avx512.cpp.
inline constexpr int kQMR = 4;   // rows of A per micro tile
inline constexpr int kQNR = 16;  // columns of B per panel
inline constexpr int64_t kQKC = 512;  // depth block (multiple of 4)

// Packed B layouts, one panel of kQNR columns after another, each panel kp deep:
//   Vnni/Scalar: for each k quad q: 16 columns x 4 int8 (b[4q..4q+3]) = 64 bytes.
//   Avx2:        for each k pair p: 16 columns x 2 int16 (b[2p], b[2p+1]) = 64 bytes.
// Packed A block (per micro tile, kc deep, kQMR rows, zero rows past M):
//   Vnni/Scalar: row r at a + r * kc, uint8 (canonical, shifted).
//   Avx2:        row r at a + r * kc, int16.
// C tile: acc (true) adds the raw products to C, else stores them.
using QMicroFn = void (*)(int64_t kc, const void* a, const uint8_t* b, int32_t* c, int64_t ldc, int mr, int nr,
                          bool acc);
QMicroFn avx2_micro();
QMicroFn vnni_micro();  // nullptr when the compiler cannot build it
// The VNNI tile over kQMR rows and four full panels side by side (64 columns, panel j at
// b + j * panel_stride bytes), 16 zmm accumulators (AVX-512 VNNI); nullptr without it.
using QMicro4Fn = void (*)(int64_t kc, const void* a, const uint8_t* b, int64_t panel_stride, int32_t* c,
                           int64_t ldc, int mr, bool acc);
QMicro4Fn vnni_micro4();
bool cpu_has_avx2();
bool cpu_has_vnni();
}  // namespace qdetail

}  // namespace slmops::runtime::kernels
