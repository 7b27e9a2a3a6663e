// Data moves in AVX2 registers shared by kernels and converters (no arithmetic, so every caller
// gets the same bits whatever else its code is compiled for): 8 values as float32, and an 8x8
// transpose. For AVX2 code only: files compiled with -mavx2, or functions with
// __attribute__((target("avx2"))). Always inlined, so no out-of-line copy is shared between them.
#pragma once
#include <immintrin.h>

#include <cstddef>

#define SLMOPS_AVX2_MOVE inline __attribute__((target("avx2"), always_inline))

namespace slmops::runtime::kernels {

// 8 float32 values at p (ES 4), or 8 bfloat16 values (ES 2) widened: a bfloat16 is the top half
// of a float32. Any alignment.
template <size_t ES>
SLMOPS_AVX2_MOVE __m256 load8_as_float(const void* p) {
  static_assert(ES == 4 || ES == 2, "float32 or bfloat16");
  if constexpr (ES == 4) {
    return _mm256_loadu_ps(static_cast<const float*>(p));
  } else {
    const __m128i h = _mm_loadu_si128(static_cast<const __m128i*>(p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  }
}

// Rows r0..r7 of an 8x8 block become its columns.
SLMOPS_AVX2_MOVE void transpose8(__m256& r0, __m256& r1, __m256& r2, __m256& r3, __m256& r4, __m256& r5, __m256& r6,
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

}  // namespace slmops::runtime::kernels
