// Block-quantized weight GEMM for com.microsoft MatMulNBits:
//
//   Y[M, N] = A[M, K] x W^T,   W[n, k] = (q[n, k] - zp[n, k / bs]) * scale[n, k / bs]
//
// q has `bits` (2, 4 or 8) bits, stored as ONNX Runtime does: B[N][k_blocks][bs * bits / 8],
// first element in the low bits. The weights are re-packed once (NBitsPacked) for one of two
// compute modes:
//
//   Float (accuracy_level 0-3): the GEMV (M == 1) decodes a 32-byte chunk of q straight into
//     registers and multiplies with A in fp32; no float copy of W is ever made. Each 32-bit
//     lane of a chunk holds one element of 8 consecutive groups of 8 (nibble j of lane L is
//     element 8j + L), so a mask and an int->float conversion give 8 values of one group; the
//     mask keeps the value shifted left by bits * j and A is pre-scaled by 2^(-bits * j) to
//     match (exact powers of two). Zero points are folded out: sum (q - zp) s a =
//     s * sum q a - s * zp * sum a. M > 1 dequantizes panels of 16..64 columns and calls sgemm.
//   Int8 (accuracy_level 4): as ONNX Runtime's CompInt8, each row of A is quantized per block
//     to int8 (scale = max|a| / 127, q = round_half_even(a * 127 / max|a|)), the block dot
//     products are exact integers (AVX2 vpmaddubsw on q in 0..15 and int8 A cannot saturate:
//     2 * 15 * 128 < 32767), and Y = sum_blocks sa * sb * dot - sum_blocks zp * sb * sa * sum(a_q).
//
// nbits_gemm_reference computes the same thing with plain loops from the original layout.
#pragma once
#include <cstdint>
#include <vector>

namespace slmops::runtime {
class ThreadPool;
}

namespace slmops::runtime::kernels {

enum class NBitsMode { Float, Int8 };

// The weights as MatMulNBits receives them (pointers stay owned by the caller).
struct NBitsSource {
  int64_t N = 0, K = 0, bits = 4, block_size = 32;
  const uint8_t* B = nullptr;          // [N][k_blocks][blob_bytes]
  const float* scales = nullptr;       // [N * k_blocks]
  const uint8_t* zp_packed = nullptr;  // [N][ceil(k_blocks * bits / 8)], or nullptr
  const float* zp_float = nullptr;     // [N * k_blocks] zero points in A's type, or nullptr
  int64_t k_blocks() const { return (K + block_size - 1) / block_size; }
  int64_t blob_bytes() const { return block_size * bits / 8; }
  int q(int64_t n, int64_t k) const;        // quantized element
  float zero_point(int64_t n, int64_t blk) const;  // default 2^(bits-1)
};

class NBitsPacked {
 public:
  NBitsPacked() = default;
  NBitsPacked(const NBitsSource& src, NBitsMode mode, bool use_avx2 = true);

  int64_t N = 0, K = 0, bits = 4, block_size = 32, k_blocks = 0;
  NBitsMode mode = NBitsMode::Float;
  bool avx2 = false;        // the AVX2 kernels run (CPU supports AVX2 + FMA and it was asked)
  int64_t chunk = 64;       // elements per 32-byte chunk (256 / bits)
  int64_t k_padded = 0;     // K rounded up to whole chunks and whole blocks
  int64_t col_bytes = 0;    // packed bytes per column
  std::vector<uint8_t> q;   // N * col_bytes
  std::vector<float> scale;  // [N][k_blocks]
  std::vector<float> zps;    // zero point * scale, [N][k_blocks]
  std::vector<float> zp;     // zero points, [N][k_blocks]
  bool zp_integer = true;   // zero points are integers (not float)
};

// Y[M, N] (row stride ldy) = A[M, K] (row stride lda) x W^T (+ bias[N] when not null).
void nbits_gemm(int64_t M, const float* A, int64_t lda, const NBitsPacked& W, const float* bias, float* Y,
                int64_t ldy, ThreadPool* pool);

// Plain loops on the original layout, in the given mode (Int8 quantizes A like nbits_gemm).
void nbits_gemm_reference(int64_t M, const float* A, int64_t lda, const NBitsSource& W, NBitsMode mode,
                          const float* bias, float* Y, int64_t ldy);

// ONNX Runtime's per-block int8 quantization of one row of A (K values; blocks of bs, the
// last one zero padded): q[k_blocks * bs], scale[k_blocks], and scale * sum(q) per block.
void nbits_quantize_row(const float* a, int64_t K, int64_t bs, int8_t* q, float* scale, float* scaled_sum);

bool nbits_cpu_avx2();

namespace nbdetail {
// AVX2 kernels (nbits_avx2.cpp). Y for columns [n0, n1) of rows [0, M).
void float_gemv_avx2(const NBitsPacked& W, const float* a_scaled, const float* asum, int64_t n0, int64_t n1,
                     float* y);
// Rows [0, M) of A pre-scaled like float_gemv_avx2's (row stride lda), columns [n0, n1);
// without the zero-point term.
void float_gemm_avx2(const NBitsPacked& W, int64_t M, const float* a_scaled, int64_t lda, int64_t n0, int64_t n1,
                     float* Y, int64_t ldy);
void int8_gemm_avx2(const NBitsPacked& W, int64_t M, const int8_t* aq, int64_t ldq, const float* ascale,
                    int64_t n0, int64_t n1, float* Y, int64_t ldy);
}  // namespace nbdetail

}  // namespace slmops::runtime::kernels
