// AVX2+FMA kernels of MatMulNBits (see nbits.h for the packed layouts and the arithmetic).
#include <immintrin.h>

#include "runtime/kernels/nbits.h"

namespace slmops::runtime::kernels::nbdetail {
namespace {

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// ---- float mode ---------------------------------------------------------------------------

// NC columns at once. Per 32-byte chunk (G groups of 8 elements): group j is
// (chunk & mask << bits*j) as int32 -> float (the value times 2^(bits*j); A was scaled by the
// inverse), the last group a plain shift. GPB = groups per block (block_size / 8).
template <int BITS, int NC, int GPB>
void gemv_cols(const NBitsPacked& W, const float* a, const float* asum, int64_t n, float* y) {
  constexpr int G = 32 / BITS, E = 256 / BITS;
  const int64_t chunks = W.k_padded / E, kbp = W.k_padded / W.block_size;
  const uint8_t* q[NC];
  const float* sc[NC];
  __m256 total[NC], blk[NC];
  for (int c = 0; c < NC; ++c) {
    q[c] = W.q.data() + (n + c) * W.col_bytes;
    sc[c] = W.scale.data() + (n + c) * kbp;
    total[c] = blk[c] = _mm256_setzero_ps();
  }
  const __m256i m0 = _mm256_set1_epi32((1 << BITS) - 1);
  int64_t b = 0;       // current block
  int64_t in_blk = 0;  // chunks done in the current block (GPB >= G)
  for (int64_t ch = 0; ch < chunks; ++ch) {
    __m256i v[NC];
    for (int c = 0; c < NC; ++c) v[c] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q[c] + ch * 32));
    const float* ac = a + ch * E;
    __m256i mask = m0;
#pragma GCC unroll 16
    for (int j = 0; j < G; ++j) {
      const __m256 av = _mm256_loadu_ps(ac + 8 * j);
#pragma GCC unroll 4
      for (int c = 0; c < NC; ++c) {
        const __m256i qi = j == G - 1 ? _mm256_srli_epi32(v[c], 32 - BITS) : _mm256_and_si256(v[c], mask);
        blk[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(qi), av, blk[c]);
      }
      mask = _mm256_slli_epi32(mask, BITS);
      if constexpr (GPB < G) {
        if ((j + 1) % GPB == 0) {
#pragma GCC unroll 4
          for (int c = 0; c < NC; ++c) {
            total[c] = _mm256_fmadd_ps(blk[c], _mm256_set1_ps(sc[c][b]), total[c]);
            blk[c] = _mm256_setzero_ps();
          }
          ++b;
        }
      }
    }
    if constexpr (GPB >= G) {
      if (++in_blk == GPB / G) {
#pragma GCC unroll 4
        for (int c = 0; c < NC; ++c) {
          total[c] = _mm256_fmadd_ps(blk[c], _mm256_set1_ps(sc[c][b]), total[c]);
          blk[c] = _mm256_setzero_ps();
        }
        ++b;
        in_blk = 0;
      }
    }
  }
  // Zero points: minus sum over blocks of zp * scale * sum(a in block).
  for (int c = 0; c < NC; ++c) {
    const float* z = W.zps.data() + (n + c) * kbp;
    __m256 corr = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= kbp; i += 8) corr = _mm256_fmadd_ps(_mm256_loadu_ps(z + i), _mm256_loadu_ps(asum + i), corr);
    float r = hsum(total[c]) - hsum(corr);
    for (; i < kbp; ++i) r -= z[i] * asum[i];
    y[n + c] = r;
  }
}

template <int BITS, int GPB>
void gemv_range(const NBitsPacked& W, const float* a, const float* asum, int64_t n0, int64_t n1, float* y) {
  int64_t n = n0;
  for (; n + 4 <= n1; n += 4) gemv_cols<BITS, 4, GPB>(W, a, asum, n, y);
  for (; n < n1; ++n) gemv_cols<BITS, 1, GPB>(W, a, asum, n, y);
}

template <int BITS>
void gemv_bits(const NBitsPacked& W, const float* a, const float* asum, int64_t n0, int64_t n1, float* y) {
  switch (W.block_size) {
    case 16: return gemv_range<BITS, 2>(W, a, asum, n0, n1, y);
    case 32: return gemv_range<BITS, 4>(W, a, asum, n0, n1, y);
    case 64: return gemv_range<BITS, 8>(W, a, asum, n0, n1, y);
    case 128: return gemv_range<BITS, 16>(W, a, asum, n0, n1, y);
    default: return gemv_range<BITS, 32>(W, a, asum, n0, n1, y);  // 256 (larger blocks never get here)
  }
}

// Several rows at once (M > 1): each group of 8 values is decoded and scaled once per column
// (w = q * 2^(bits*j) * scale, A pre-scaled by 2^(-bits*j)) and multiplied into R rows; one
// accumulator per row and column. R x NC = 4 x 2 keeps 8 independent FMA chains.
template <int BITS, int R, int NC>
void rows_cols(const NBitsPacked& W, const float* a, int64_t lda, int64_t n, float* Y, int64_t ldy) {
  constexpr int G = 32 / BITS, E = 256 / BITS;
  const int64_t chunks = W.k_padded / E, kbp = W.k_padded / W.block_size;
  const int shift = __builtin_ctzll(static_cast<unsigned long long>(W.block_size));
  const uint8_t* q[NC];
  const float* sc[NC];
  for (int c = 0; c < NC; ++c) {
    q[c] = W.q.data() + (n + c) * W.col_bytes;
    sc[c] = W.scale.data() + (n + c) * kbp;
  }
  __m256 acc[R][NC];
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < NC; ++c) acc[r][c] = _mm256_setzero_ps();
  const __m256i m0 = _mm256_set1_epi32((1 << BITS) - 1);
  for (int64_t ch = 0; ch < chunks; ++ch) {
    __m256i v[NC];
    for (int c = 0; c < NC; ++c) v[c] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q[c] + ch * 32));
    __m256i mask = m0;
#pragma GCC unroll 16
    for (int j = 0; j < G; ++j) {
      const int64_t k = ch * E + 8 * j;
      const int64_t blk = k >> shift;
      __m256 w[NC];
#pragma GCC unroll 2
      for (int c = 0; c < NC; ++c) {
        const __m256i qi = j == G - 1 ? _mm256_srli_epi32(v[c], 32 - BITS) : _mm256_and_si256(v[c], mask);
        w[c] = _mm256_mul_ps(_mm256_cvtepi32_ps(qi), _mm256_broadcast_ss(sc[c] + blk));
      }
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r) {
        const __m256 av = _mm256_loadu_ps(a + r * lda + k);
#pragma GCC unroll 2
        for (int c = 0; c < NC; ++c) acc[r][c] = _mm256_fmadd_ps(w[c], av, acc[r][c]);
      }
      mask = _mm256_slli_epi32(mask, BITS);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < NC; ++c) Y[r * ldy + n + c] = hsum(acc[r][c]);
}

template <int BITS, int R>
void rows_range(const NBitsPacked& W, const float* a, int64_t lda, int64_t n0, int64_t n1, float* Y, int64_t ldy) {
  int64_t n = n0;
  for (; n + 2 <= n1; n += 2) rows_cols<BITS, R, 2>(W, a, lda, n, Y, ldy);
  if (n < n1) rows_cols<BITS, R, 1>(W, a, lda, n, Y, ldy);
}

template <int BITS>
void rows_bits(const NBitsPacked& W, int64_t M, const float* a, int64_t lda, int64_t n0, int64_t n1, float* Y,
               int64_t ldy) {
  int64_t m = 0;
  for (; m + 4 <= M; m += 4) rows_range<BITS, 4>(W, a + m * lda, lda, n0, n1, Y + m * ldy, ldy);
  switch (M - m) {
    case 3: rows_range<BITS, 3>(W, a + m * lda, lda, n0, n1, Y + m * ldy, ldy); break;
    case 2: rows_range<BITS, 2>(W, a + m * lda, lda, n0, n1, Y + m * ldy, ldy); break;
    case 1: rows_range<BITS, 1>(W, a + m * lda, lda, n0, n1, Y + m * ldy, ldy); break;
    default: break;
  }
}

// ---- int8 mode ----------------------------------------------------------------------------

// Rows [0, R) of one column. a: R rows of int8 A (stride ldq); asc: their block scales.
// 4-bit chunks hold 64 elements: byte i = q[i] | q[32 + i] << 4.
template <int R>
void int8_col_4bit(const NBitsPacked& W, const int8_t* aq, int64_t ldq, const float* asc, int64_t kbp, int64_t n,
                   float* Y, int64_t ldy) {
  const uint8_t* qp = W.q.data() + n * W.col_bytes;
  const float* sb = W.scale.data() + n * kbp;
  const int64_t chunks = W.k_padded / 64;
  const __m256i low4 = _mm256_set1_epi8(0x0F);
  const __m256i ones = _mm256_set1_epi16(1);
  __m256 acc[R];
  for (int r = 0; r < R; ++r) acc[r] = _mm256_setzero_ps();
  const int64_t bs = W.block_size;
  if (bs >= 64) {
    const int64_t cpb = bs / 64;
    for (int64_t b = 0; b < kbp; ++b) {
      __m256i isum[R];
      for (int r = 0; r < R; ++r) isum[r] = _mm256_setzero_si256();
      for (int64_t c = b * cpb; c < (b + 1) * cpb; ++c) {
        const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qp + c * 32));
        const __m256i lo = _mm256_and_si256(v, low4);
        const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low4);
#pragma GCC unroll 4
        for (int r = 0; r < R; ++r) {
          const int8_t* a = aq + r * ldq + c * 64;
          const __m256i a0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a));
          const __m256i a1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + 32));
          const __m256i p = _mm256_add_epi16(_mm256_maddubs_epi16(lo, a0), _mm256_maddubs_epi16(hi, a1));
          isum[r] = _mm256_add_epi32(isum[r], _mm256_madd_epi16(p, ones));
        }
      }
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r)
        acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[r]), _mm256_set1_ps(asc[r * kbp + b] * sb[b]), acc[r]);
    }
  } else {
    for (int64_t c = 0; c < chunks; ++c) {
      const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qp + c * 32));
      const __m256i lo = _mm256_and_si256(v, low4);
      const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low4);
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r) {
        const int8_t* a = aq + r * ldq + c * 64;
        const __m256i a0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a));
        const __m256i a1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + 32));
        const __m256 s0 = _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_maddubs_epi16(lo, a0), ones));
        const __m256 s1 = _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_maddubs_epi16(hi, a1), ones));
        const float* as = asc + r * kbp;
        __m256 f0, f1;
        if (bs == 32) {
          f0 = _mm256_set1_ps(as[2 * c] * sb[2 * c]);
          f1 = _mm256_set1_ps(as[2 * c + 1] * sb[2 * c + 1]);
        } else {  // 16: each 128-bit half is one block
          const int64_t b = 4 * c;
          f0 = _mm256_set_m128(_mm_set1_ps(as[b + 1] * sb[b + 1]), _mm_set1_ps(as[b] * sb[b]));
          f1 = _mm256_set_m128(_mm_set1_ps(as[b + 3] * sb[b + 3]), _mm_set1_ps(as[b + 2] * sb[b + 2]));
        }
        acc[r] = _mm256_fmadd_ps(s0, f0, acc[r]);
        acc[r] = _mm256_fmadd_ps(s1, f1, acc[r]);
      }
    }
  }
  for (int r = 0; r < R; ++r) Y[r * ldy + n] = hsum(acc[r]);
}

// 8-bit (and unpacked 2-bit) chunks: 32 elements, one byte each. q (0..255) is split in
// nibbles so that vpmaddubsw cannot saturate: q * a = lo * a + 16 * hi * a.
template <int R>
void int8_col_8bit(const NBitsPacked& W, const int8_t* aq, int64_t ldq, const float* asc, int64_t kbp, int64_t n,
                   float* Y, int64_t ldy) {
  const uint8_t* qp = W.q.data() + n * W.col_bytes;
  const float* sb = W.scale.data() + n * kbp;
  const __m256i low4 = _mm256_set1_epi8(0x0F);
  const __m256i ones = _mm256_set1_epi16(1), sixteen = _mm256_set1_epi16(16);
  __m256 acc[R];
  for (int r = 0; r < R; ++r) acc[r] = _mm256_setzero_ps();
  const int64_t bs = W.block_size;
  const int64_t cpb = bs >= 32 ? bs / 32 : 1;
  const int64_t blocks_c = W.k_padded / (bs >= 32 ? bs : 32);
  for (int64_t bc = 0; bc < blocks_c; ++bc) {
    __m256i isum[R];
    for (int r = 0; r < R; ++r) isum[r] = _mm256_setzero_si256();
    for (int64_t c = bc * cpb; c < (bc + 1) * cpb; ++c) {
      const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qp + c * 32));
      const __m256i lo = _mm256_and_si256(v, low4);
      const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low4);
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r) {
        const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(aq + r * ldq + c * 32));
        const __m256i plo = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, a), ones);
        const __m256i phi = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, a), sixteen);
        isum[r] = _mm256_add_epi32(isum[r], _mm256_add_epi32(plo, phi));
      }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      const float* as = asc + r * kbp;
      __m256 f;
      if (bs >= 32) f = _mm256_set1_ps(as[bc] * sb[bc]);
      else f = _mm256_set_m128(_mm_set1_ps(as[2 * bc + 1] * sb[2 * bc + 1]), _mm_set1_ps(as[2 * bc] * sb[2 * bc]));
      acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[r]), f, acc[r]);
    }
  }
  for (int r = 0; r < R; ++r) Y[r * ldy + n] = hsum(acc[r]);
}

template <int R>
void int8_cols(const NBitsPacked& W, const int8_t* aq, int64_t ldq, const float* asc, int64_t n0, int64_t n1,
               float* Y, int64_t ldy) {
  const int64_t kbp = W.k_padded / W.block_size;
  for (int64_t n = n0; n < n1; ++n) {
    if (W.bits == 4) int8_col_4bit<R>(W, aq, ldq, asc, kbp, n, Y, ldy);
    else int8_col_8bit<R>(W, aq, ldq, asc, kbp, n, Y, ldy);
  }
}

}  // namespace

void float_gemv_avx2(const NBitsPacked& W, const float* a_scaled, const float* asum, int64_t n0, int64_t n1,
                     float* y) {
  switch (W.bits) {
    case 2: return gemv_bits<2>(W, a_scaled, asum, n0, n1, y);
    case 4: return gemv_bits<4>(W, a_scaled, asum, n0, n1, y);
    default: return gemv_bits<8>(W, a_scaled, asum, n0, n1, y);
  }
}

void float_gemm_avx2(const NBitsPacked& W, int64_t M, const float* a_scaled, int64_t lda, int64_t n0, int64_t n1,
                     float* Y, int64_t ldy) {
  switch (W.bits) {
    case 2: return rows_bits<2>(W, M, a_scaled, lda, n0, n1, Y, ldy);
    case 4: return rows_bits<4>(W, M, a_scaled, lda, n0, n1, Y, ldy);
    default: return rows_bits<8>(W, M, a_scaled, lda, n0, n1, Y, ldy);
  }
}

void int8_gemm_avx2(const NBitsPacked& W, int64_t M, const int8_t* aq, int64_t ldq, const float* ascale, int64_t n0,
                    int64_t n1, float* Y, int64_t ldy) {
  const int64_t kbp = W.k_padded / W.block_size;
  int64_t m = 0;
  for (; m + 4 <= M; m += 4)
    int8_cols<4>(W, aq + m * ldq, ldq, ascale + m * kbp, n0, n1, Y + m * ldy, ldy);
  switch (M - m) {
    case 3: int8_cols<3>(W, aq + m * ldq, ldq, ascale + m * kbp, n0, n1, Y + m * ldy, ldy); break;
    case 2: int8_cols<2>(W, aq + m * ldq, ldq, ascale + m * kbp, n0, n1, Y + m * ldy, ldy); break;
    case 1: int8_cols<1>(W, aq + m * ldq, ldq, ascale + m * kbp, n0, n1, Y + m * ldy, ldy); break;
    default: break;
  }
}

}  // namespace slmops::runtime::kernels::nbdetail
