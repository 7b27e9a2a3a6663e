// MatMulNBits prefill (nbits_gemm_dequant): 4-bit weights of 16 columns decoded to float in
// PackedB::wrap's strip layout with AVX2. Per 8 rows of 8 columns: each column's 8 nibbles
// (one 32-bit word) go to 8 int32 lanes by variable shifts, an 8 x 8 transpose turns the
// columns into rows, and each row is (q - zp) * scale with the 8 columns' zero points and
// scales in two vectors: the same float operations, in the same order, as the portable loop.
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "runtime/kernels/gemm.h"
#include "runtime/kernels/nbits.h"

namespace slmops::runtime::kernels::nbdetail {
namespace {

inline void transpose8(__m256& r0, __m256& r1, __m256& r2, __m256& r3, __m256& r4, __m256& r5, __m256& r6,
                       __m256& r7) {
  const __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
  const __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
  const __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
  const __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
  const __m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xEE);
  const __m256 s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xEE);
  const __m256 s4 = _mm256_shuffle_ps(t4, t6, 0x44), s5 = _mm256_shuffle_ps(t4, t6, 0xEE);
  const __m256 s6 = _mm256_shuffle_ps(t5, t7, 0x44), s7 = _mm256_shuffle_ps(t5, t7, 0xEE);
  r0 = _mm256_permute2f128_ps(s0, s4, 0x20);
  r1 = _mm256_permute2f128_ps(s1, s5, 0x20);
  r2 = _mm256_permute2f128_ps(s2, s6, 0x20);
  r3 = _mm256_permute2f128_ps(s3, s7, 0x20);
  r4 = _mm256_permute2f128_ps(s0, s4, 0x31);
  r5 = _mm256_permute2f128_ps(s1, s5, 0x31);
  r6 = _mm256_permute2f128_ps(s2, s6, 0x31);
  r7 = _mm256_permute2f128_ps(s3, s7, 0x31);
}

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
