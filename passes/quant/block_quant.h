// Block-wise weight quantization of one matrix: the numerics behind int4/int8-weight
// (MatMulNBits and blocked DequantizeLinear). Plain functions on float arrays; no IR.
//
// Layout: the weight W is ONNX MatMul's B, row-major [K, N]. Blocks run along K: block b of
// column n holds W[b*bs .. b*bs+bs-1, n] (the last block may be short when bs does not
// divide K; then its missing rows count as zeros). Results are N-major, as MatMulNBits
// wants them: q[n*K + k] (unpacked integers in [0, 2^bits - 1]), scales[n*kb + b],
// zero_points[n*kb + b] with kb = ceil(K / bs).
//
// dequant(q) = (q - zp) * scale.
// Symmetric: zp = 2^(bits-1) (MatMulNBits' default when zero_points is absent); the scale is
//   the block's signed value of largest magnitude divided by -2^(bits-1), so that value maps
//   exactly to 0 and the others to [0, 2^bits-1] (as ONNX Runtime's MLAS blockwise quantizer).
// Asymmetric: range [min(0, lo), max(0, hi)] over the block; scale = range / (2^bits - 1);
//   zp = round(-min / scale) clamped to [0, 2^bits-1]. A block of zeros gets scale 1, zp mid.
// q = clamp(roundf(w * (1 / scale) + zp), 0, 2^bits-1) as MLAS computes it: halves round up.
#pragma once
#include <cstdint>
#include <vector>

namespace slmops::runtime {
class ThreadPool;
}

namespace slmops::passes::quant {

struct BlockParams {
  int bits = 4;             // 2..8
  int64_t block_size = 32;  // >= 16, power of two
  bool symmetric = true;
};

struct BlockQuantized {
  int64_t K = 0, N = 0, k_blocks = 0;
  std::vector<uint8_t> q;            // [N, K] unpacked
  std::vector<float> scales;         // [N, k_blocks]
  std::vector<uint8_t> zero_points;  // [N, k_blocks] unpacked (all 2^(bits-1) when symmetric)
};

// Round-to-nearest. Deterministic; the reference for the others' tests.
BlockQuantized quantize_rtn(const float* W, int64_t K, int64_t N, const BlockParams& p,
                            runtime::ThreadPool* pool = nullptr);

// The same codes written straight into MatMulNBits' packed B (bits 4 or 8; K must be a
// multiple of block_size), without the unpacked [N, K] array: B holds N * k_blocks *
// block_size * bits / 8 bytes; scales and zero_points (unpacked) N * k_blocks each. Equals
// pack_matmulnbits_b(quantize_rtn(...)) byte for byte.
void quantize_rtn_packed(const float* W, int64_t K, int64_t N, const BlockParams& p, uint8_t* B, float* scales,
                         uint8_t* zero_points, runtime::ThreadPool* pool = nullptr);

// The same codes from the weight's transpose: Wt row-major [N, K] (a Linear layer's weight as
// PyTorch stores it, one row per output column of MatMul's B), so each row's blocks are
// contiguous. Bytes equal quantize_rtn_packed(W) with W = Wt^T. Single-threaded (callers run
// one weight per thread).
void quantize_rtn_rows_packed(const float* Wt, int64_t K, int64_t N, const BlockParams& p, uint8_t* B, float* scales,
                              uint8_t* zero_points);
// The same from bfloat16 rows (raw bits, as a checkpoint stores them; any alignment), widened as
// they are read.
void quantize_rtn_rows_packed_bf16(const void* Wt, int64_t K, int64_t N, const BlockParams& p, uint8_t* B,
                                   float* scales, uint8_t* zero_points);

// HQQ (Badri & Shaji 2023): half-quadratic optimisation, from the asymmetric RTN init, of the
// lp (p < 1) norm of the dequantization error; no data. The zero point stays an integer (as
// MatMulNBits stores it), so the quadratic step fits scale and zero point together (with the
// scale fixed an integer zero point could only slide the window along the grid). Per block the
// result is never worse than RTN in squared error (it falls back to RTN where it would be).
// Asymmetric only (a symmetric request keeps zp fixed and optimises nothing: RTN).
BlockQuantized quantize_hqq(const float* W, int64_t K, int64_t N, const BlockParams& p, int iterations = 20,
                            runtime::ThreadPool* pool = nullptr);

struct GptqOptions {
  double damp = 0.01;      // added to diag(H): damp * mean(diag(H))
  bool act_order = false;  // process rows of W (input features) by decreasing diag(H); the
                           // scales then come from the original blocks before any update
  int64_t lazy_block = 128;
};

// GPTQ (Frantar et al. 2022) for one layer: H = sum over calibration rows x x^T ([K, K],
// row-major, double) of the layer's input X [rows, K]. Quantizes W row k (input feature)
// by row, spreading each row's rounding error over the rows not yet quantized through the
// Cholesky factor of H^-1. Scales/zero points per block are chosen (RTN rule) on the
// error-updated weights when the block's first row is reached. Dead inputs (H[k,k] == 0)
// have their weights zeroed as in the paper's code. H must be symmetric (one triangle is read).
// When H + damp is not positive definite, damp grows x10 up to 4 times, then Error(Failure).
BlockQuantized quantize_gptq(const float* W, int64_t K, int64_t N, const std::vector<double>& H,
                             const BlockParams& p, const GptqOptions& g, runtime::ThreadPool* pool = nullptr);

// U, upper triangular with U^T U = inverse(Hp + damp I), Hp[i][j] = H[perm[i]][perm[j]] (a zero
// diagonal entry of H reads as 1): the factor GPTQ and SparseGPT spread errors with. False
// when Hp + damp I is not positive definite (or the result is not finite).
bool inverse_cholesky_upper(const std::vector<double>& H, const std::vector<int64_t>& perm, double damp,
                            std::vector<float>& U, runtime::ThreadPool* pool);

// Dequantizes back to [K, N] row-major (tests, error reports).
std::vector<float> dequantize(const BlockQuantized& b, int64_t block_size);

// Packs q (N-major, unpacked) into MatMulNBits' B: [N, k_blocks, block_size*bits/8] bytes,
// the first element in the low bits; rows past K inside the last block are padded with the
// zero point (so they dequantize to 0). bits 4 or 8 (2 packs the same way).
std::vector<uint8_t> pack_matmulnbits_b(const BlockQuantized& b, int bits, int64_t block_size);
// Packs zero points [N, k_blocks] into [N, ceil(k_blocks*bits/8)] bytes (low bits first,
// padding with 0 bits... as ONNX Runtime's pack). bits 4 or 8.
std::vector<uint8_t> pack_zero_points(const BlockQuantized& b, int bits);

}  // namespace slmops::passes::quant
