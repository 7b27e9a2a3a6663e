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
//     s * sum q a - s * zp * sum a. With AVX-512 the GEMV takes two columns per vector. M > 1
//     decodes and scales each group of 8 once per column and multiplies it into 4 rows.
//   Int8 (accuracy_level 4): as ONNX Runtime's CompInt8, each row of A is quantized per block
//     to int8 (scale = max|a| / 127, q = round_half_even(a * 127 / max|a|)), the block dot
//     products are exact integers (vpdpbusd with VNNI; else AVX2 vpmaddubsw, which cannot
//     saturate on q in 0..15 and int8 A: 2 * 15 * 128 < 32767, 8-bit q split in nibbles), and
//     Y = sum_blocks sa * sb * dot - sum_blocks zp * sb * sa * sum(a_q).
//
// nbits_gemm_reference computes the same thing with plain loops from the original layout.
#pragma once
#include <cstddef>
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
  // Default 2^(bits-1). Inline: the prefill dequantizer asks for one per column and block.
  float zero_point(int64_t n, int64_t blk) const {
    if (zp_float) return zp_float[n * k_blocks() + blk];
    if (zp_packed) {
      const int64_t row_bytes = (k_blocks() * bits + 7) / 8, bit = blk * bits;
      return static_cast<float>((zp_packed[n * row_bytes + bit / 8] >> (bit % 8)) & ((1 << bits) - 1));
    }
    return static_cast<float>(1 << (bits - 1));
  }
};

// The packed weights. Columns go in groups of 4 (N padded with zero columns) so that a group
// is one sequential stream: for each 32-byte chunk of K, the chunks of the 4 columns follow
// each other (128 bytes); the group's scales (and zero points) are interleaved the same way,
// [block][4]. Chunk encoding per mode: Float, lane L of the chunk holds element 8j + L at bit
// bits * j; Int8 4-bit, byte i holds elements i (low nibble) and 32 + i (high nibble); Int8
// 8-bit and 2-bit, one byte per element.
class NBitsPacked {
 public:
  NBitsPacked() = default;
  // use_avx2 / use_avx512: allow those kernels when the CPU has them (tests turn them off;
  // use_avx512 also allows the VNNI int8 kernels).
  NBitsPacked(const NBitsSource& src, NBitsMode mode, bool use_avx2 = true, bool use_avx512 = true);

  static constexpr int kGroup = 4;
  enum class Zp { Const, U8, F32 };

  int64_t N = 0, K = 0, bits = 4, block_size = 32, k_blocks = 0;
  NBitsMode mode = NBitsMode::Float;
  bool avx2 = false;       // the AVX2 kernels run (CPU supports AVX2 + FMA and it was asked)
  bool avx512 = false;     // the float GEMV uses its AVX-512 version (CPU has AVX512F/BW/DQ/VL)
  bool vnni = false;       // the int8 kernels use vpdpbusd (AVX-VNNI or AVX512-VNNI)
  int64_t chunk = 64;      // elements per 32-byte chunk
  int64_t k_padded = 0;    // K rounded up to whole chunks and whole blocks
  int64_t chunks = 0;      // k_padded / chunk
  int64_t kbp = 0;         // blocks in k_padded (>= k_blocks; the extra ones have scale 0)
  int64_t groups = 0;      // ceil(N / 4)
  std::vector<uint8_t> q;  // [groups][chunks][4][32]
  std::vector<float> scale;  // [groups][kbp][4]
  Zp zp_kind = Zp::Const;
  float zp_const = 8.f;          // Zp::Const: 2^(bits - 1)
  std::vector<uint8_t> zp_u8;    // Zp::U8: [groups][kbp][4]
  std::vector<float> zp_f32;     // Zp::F32: [groups][kbp][4]

  const uint8_t* group_q(int64_t g) const { return q.data() + g * chunks * 128; }
  const float* group_scale(int64_t g) const { return scale.data() + g * kbp * 4; }
  float scale_at(int64_t n, int64_t b) const { return scale[((n / 4) * kbp + b) * 4 + n % 4]; }
  float zp_at(int64_t n, int64_t b) const {
    const size_t i = static_cast<size_t>(((n / 4) * kbp + b) * 4 + n % 4);
    return zp_kind == Zp::Const ? zp_const : zp_kind == Zp::U8 ? static_cast<float>(zp_u8[i]) : zp_f32[i];
  }
};

// Y[M, N] (row stride ldy) = A[M, K] (row stride lda) x W^T (+ bias[N] when not null).
void nbits_gemm(int64_t M, const float* A, int64_t lda, const NBitsPacked& W, const float* bias, float* Y,
                int64_t ldy, ThreadPool* pool);

// Float mode for many rows (prefill): W is dequantized, (q - zp) * scale as the GEMV and ONNX
// Runtime's CompFp32 compute it, into sgemm's packed layout one tile at a time (at most
// PackedB::kWrapMaxK deep and kDequantCols wide, in a per-thread scratch buffer that stays in
// cache) and each tile runs through the fp32 packed GEMM. The cost over an fp32 MatMul is the
// decoding, about N * K table lookups per call: with M >= kDequantMinRows rows that is a few
// percent of the product, where the group kernel of nbits_gemm re-decodes every weight for
// every 4 rows. Threads split the columns.
inline constexpr int64_t kDequantMinRows = 16;
inline constexpr int64_t kDequantCols = 256;
void nbits_gemm_dequant(int64_t M, const float* A, int64_t lda, const NBitsSource& W, const float* bias, float* Y,
                        int64_t ldy, ThreadPool* pool);

// Plain loops on the original layout, in the given mode (Int8 quantizes A like nbits_gemm).
void nbits_gemm_reference(int64_t M, const float* A, int64_t lda, const NBitsSource& W, NBitsMode mode,
                          const float* bias, float* Y, int64_t ldy);

// ONNX Runtime's per-block int8 quantization of one row of A (K values; blocks of bs, the
// last one zero padded): q[k_blocks * bs], scale[k_blocks], and scale * sum(q) per block.
void nbits_quantize_row(const float* a, int64_t K, int64_t bs, int8_t* q, float* scale, float* scaled_sum);

bool nbits_cpu_avx2();
// Whether int8 mode (accuracy_level 4) with kDequantMinRows rows or more should run as int8
// here: only on CPUs with VNNI (vpdpbusd). Without it, AVX2's pmaddubsw dot products are slower
// than dequantizing W and running the fp32 GEMM (a GPT-2-small decoder at 1 x 128 on Zen 3:
// 892 ms against 541 ms), and since accuracy_level names the lowest precision allowed for A,
// fp32 products are within the contract (ONNX Runtime's CompFp32 values).
bool nbits_int8_prefill_fast();
bool nbits_cpu_avx512();  // AVX512F, BW, DQ and VL (checked once)

namespace nbdetail {
bool avx512_usable();  // the CPU has AVX512F/BW/DQ/VL (checked once; nbits_avx2_avx512.cpp)
// AVX2 kernels (nbits_avx2_avx512.cpp) over column groups [g0, g1); they write only columns < N.
// float_gemv: y = A x W^T for one row (zero points included). a_scaled: A with group j of
// each chunk scaled by 2^(-bits * j) (1 for the last group), k_padded long; asum: its
// per-block sums of the unscaled A.
void float_gemv_avx2(const NBitsPacked& W, const float* a_scaled, const float* asum, int64_t g0, int64_t g1,
                     float* y);
// M rows of pre-scaled A (row stride lda; block sums asum[m * kbp + b]).
void float_gemm_avx2(const NBitsPacked& W, int64_t M, const float* a_scaled, int64_t lda, const float* asum,
                     int64_t g0, int64_t g1, float* Y, int64_t ldy);
// M rows of int8 A (row stride ldq) with block scales ascale[m * kbp + b] and scaled block
// sums ablksum[m * kbp + b] (scale * sum of the int8 values).
void int8_gemm_avx2(const NBitsPacked& W, int64_t M, const int8_t* aq, int64_t ldq, const float* ascale,
                    const float* ablksum, int64_t g0, int64_t g1, float* Y, int64_t ldy);
// The same with vpdpbusd (nbits_vnni_avx2_avx512.cpp): AVX-VNNI or AVX512-VNNI, whichever
// int8_vnni_kind() found (1 and 2; 0: neither, do not call).
int int8_vnni_kind();
void int8_gemm_vnni(const NBitsPacked& W, int64_t M, const int8_t* aq, int64_t ldq, const float* ascale,
                    const float* ablksum, int64_t g0, int64_t g1, float* Y, int64_t ldy);
// Int8 mode, 4-bit, many rows, on AVX512-VNNI (nbits_vnni_avx2_avx512.cpp): tiles of 32
// columns [t0, t1) of int8_prefill_tiles(W), all M rows (A quantized as for int8_gemm_vnni).
bool int8_prefill_usable(const NBitsPacked& W);
int64_t int8_prefill_tiles(const NBitsPacked& W);
void int8_gemm_prefill(const NBitsPacked& W, int64_t M, const int8_t* aq, int64_t ldq, const float* ascale,
                       const float* ablksum, int64_t t0, int64_t t1, float* Y, int64_t ldy);
// One strip of 16 columns n0 .. n0 + 15 (all < N) of 4-bit W, rows [k0, k0 + kc) (kc a
// multiple of 8, k0 of the block size), dequantized into PackedB::wrap's layout
// (nbits_dequant_avx2.cpp; the CPU must have AVX2).
void dequant_strip4_avx2(const NBitsSource& W, int64_t n0, int64_t k0, int64_t kc, float* dst);
}  // namespace nbdetail

}  // namespace slmops::runtime::kernels
