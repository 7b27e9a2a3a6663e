// MatMulNBits prefill (nbits_gemm_dequant): 4-bit weights of 16 columns decoded to float in
// PackedB::wrap's strip layout with AVX2. Per 8 rows of 8 columns: each column's 8 nibbles
// (one 32-bit word) go to 8 int32 lanes by variable shifts, an 8 x 8 transpose turns the
// columns into rows, and each row is (q - zp) * scale with the 8 columns' zero points and
// scales in two vectors: the same float operations, in the same order, as the portable loop.
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "runtime/kernels/avx2_moves.h"
#include "runtime/kernels/gemm.h"
#include "runtime/kernels/nbits.h"

namespace slmops::runtime::kernels::nbdetail {
namespace {

// 8 rows (k .. k + 7, k even) of the 8 columns at cols[0..7] as floats, one vector per column.
inline __m256 nibbles8(const uint8_t* col, int64_t k) {
  uint32_t word;
  std::memcpy(&word, col + k / 2, 4);
  const __m256i shifts = _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28);
  const __m256i v = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32(static_cast<int>(word)), shifts),
                                     _mm256_set1_epi32(0xF));
  return _mm256_cvtepi32_ps(v);
}

}  // namespace

void dequant_strip4_avx2(const NBitsSource& W, int64_t n0, int64_t k0, int64_t kc, float* dst) {
  constexpr int64_t S = PackedB::kStrip;
  static_assert(S == 16, "two halves of 8 columns");
  const int64_t kb = W.k_blocks(), bs = W.block_size, col_bytes = kb * W.blob_bytes();
  for (int half = 0; half < 2; ++half) {
    const uint8_t* cols[8];
    for (int j = 0; j < 8; ++j) cols[j] = W.B + (n0 + half * 8 + j) * col_bytes;
    for (int64_t b0 = k0; b0 < k0 + kc;) {
      const int64_t blk = b0 / bs, b1 = std::min(k0 + kc, (blk + 1) * bs);
      alignas(32) float sc[8], zp[8];
      for (int j = 0; j < 8; ++j) {
        const int64_t n = n0 + half * 8 + j;
        sc[j] = W.scales[n * kb + blk];
        zp[j] = W.zero_point(n, blk);
      }
      const __m256 scv = _mm256_load_ps(sc), zpv = _mm256_load_ps(zp);
      for (int64_t k = b0; k < b1; k += 8) {
        __m256 r0 = nibbles8(cols[0], k), r1 = nibbles8(cols[1], k), r2 = nibbles8(cols[2], k),
               r3 = nibbles8(cols[3], k), r4 = nibbles8(cols[4], k), r5 = nibbles8(cols[5], k),
               r6 = nibbles8(cols[6], k), r7 = nibbles8(cols[7], k);
        transpose8(r0, r1, r2, r3, r4, r5, r6, r7);
        float* d = dst + (k - k0) * S + half * 8;
        _mm256_storeu_ps(d + 0 * S, _mm256_mul_ps(_mm256_sub_ps(r0, zpv), scv));
        _mm256_storeu_ps(d + 1 * S, _mm256_mul_ps(_mm256_sub_ps(r1, zpv), scv));
        _mm256_storeu_ps(d + 2 * S, _mm256_mul_ps(_mm256_sub_ps(r2, zpv), scv));
        _mm256_storeu_ps(d + 3 * S, _mm256_mul_ps(_mm256_sub_ps(r3, zpv), scv));
        _mm256_storeu_ps(d + 4 * S, _mm256_mul_ps(_mm256_sub_ps(r4, zpv), scv));
        _mm256_storeu_ps(d + 5 * S, _mm256_mul_ps(_mm256_sub_ps(r5, zpv), scv));
        _mm256_storeu_ps(d + 6 * S, _mm256_mul_ps(_mm256_sub_ps(r6, zpv), scv));
        _mm256_storeu_ps(d + 7 * S, _mm256_mul_ps(_mm256_sub_ps(r7, zpv), scv));
      }
      b0 = b1;
    }
  }
}

}  // namespace slmops::runtime::kernels::nbdetail
