// AVX2+FMA kernels of MatMulNBits (see nbits.h for the packed layouts and the arithmetic).
// Every kernel walks one group of 4 interleaved columns at a time, so the weights of a task
// are one sequential stream (prefetched a kilobyte ahead).
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "runtime/kernels/nbits.h"

namespace slmops::runtime::kernels::nbdetail {
namespace {

constexpr int kPrefetch = 1024;     // bytes ahead in the weight stream
constexpr int64_t kGroupBlock = 8;  // column groups kept in cache while M > 1 rows pass

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

inline void prefetch(const uint8_t* p) {
  _mm_prefetch(reinterpret_cast<const char*>(p + kPrefetch), _MM_HINT_T0);
  _mm_prefetch(reinterpret_cast<const char*>(p + kPrefetch + 64), _MM_HINT_T0);
}

// Zero-point term of the 4 columns of group g: sum over blocks of zp * scale * sums[b].
__m128 zp_term(const NBitsPacked& W, int64_t g, const float* sums) {
  const float* sc = W.group_scale(g);
  const int64_t kbp = W.kbp;
  __m128 acc = _mm_setzero_ps();
  switch (W.zp_kind) {
    case NBitsPacked::Zp::Const:
      for (int64_t b = 0; b < kbp; ++b) acc = _mm_fmadd_ps(_mm_loadu_ps(sc + 4 * b), _mm_set1_ps(sums[b]), acc);
      return _mm_mul_ps(acc, _mm_set1_ps(W.zp_const));
    case NBitsPacked::Zp::U8: {
      const uint8_t* z = W.zp_u8.data() + g * kbp * 4;
      for (int64_t b = 0; b < kbp; ++b) {
        int32_t word;
        std::memcpy(&word, z + 4 * b, 4);
        const __m128 zv = _mm_cvtepi32_ps(_mm_cvtepu8_epi32(_mm_cvtsi32_si128(word)));
        acc = _mm_fmadd_ps(_mm_mul_ps(_mm_loadu_ps(sc + 4 * b), zv), _mm_set1_ps(sums[b]), acc);
      }
      return acc;
    }
    default: {
      const float* z = W.zp_f32.data() + g * kbp * 4;
      for (int64_t b = 0; b < kbp; ++b)
        acc = _mm_fmadd_ps(_mm_mul_ps(_mm_loadu_ps(sc + 4 * b), _mm_loadu_ps(z + 4 * b)), _mm_set1_ps(sums[b]), acc);
      return acc;
    }
  }
}

// Y[row][g * 4 + c] = v[c] - term[c] for the columns that exist.
inline void store_group(const NBitsPacked& W, int64_t g, const float* v, __m128 term, float* y) {
  alignas(16) float t[4];
  _mm_store_ps(t, term);
  for (int c = 0; c < 4; ++c)
    if (g * 4 + c < W.N) y[g * 4 + c] = v[c] - t[c];
}

// ---- float mode, one row ------------------------------------------------------------------

// The 4 columns of group g. Per 32-byte chunk (G groups of 8 elements): group j is
// (chunk & mask << bits*j) as int32 -> float (the value times 2^(bits*j); A was scaled by the
// inverse), the last group a plain shift. Per block (GPB = block_size / 8 groups) the partial
// sums are multiplied by the block's scale.
template <int BITS, int GPB>
void gemv_group(const NBitsPacked& W, const float* a, const float* asum, int64_t g, float* y) {
  constexpr int G = 32 / BITS, E = 256 / BITS;
  const uint8_t* q = W.group_q(g);
  const float* sc = W.group_scale(g);
  __m256 total[4], blk[4];
  for (int c = 0; c < 4; ++c) total[c] = blk[c] = _mm256_setzero_ps();
  const __m256i m0 = _mm256_set1_epi32((1 << BITS) - 1);
  int64_t b = 0;       // current block
  int64_t in_blk = 0;  // chunks done in the current block (GPB >= G)
  auto flush = [&] {
#pragma GCC unroll 4
    for (int c = 0; c < 4; ++c) {
      total[c] = _mm256_fmadd_ps(blk[c], _mm256_broadcast_ss(sc + 4 * b + c), total[c]);
      blk[c] = _mm256_setzero_ps();
    }
    ++b;
  };
  for (int64_t ch = 0; ch < W.chunks; ++ch) {
    const uint8_t* p = q + ch * 128;
    prefetch(p);
    __m256i v[4];
#pragma GCC unroll 4
    for (int c = 0; c < 4; ++c) v[c] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 32 * c));
    const float* ac = a + ch * E;
    __m256i mask = m0;
#pragma GCC unroll 16
    for (int j = 0; j < G; ++j) {
      const __m256 av = _mm256_loadu_ps(ac + 8 * j);
#pragma GCC unroll 4
      for (int c = 0; c < 4; ++c) {
        const __m256i qi = j == G - 1 ? _mm256_srli_epi32(v[c], 32 - BITS) : _mm256_and_si256(v[c], mask);
        blk[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(qi), av, blk[c]);
      }
      mask = _mm256_slli_epi32(mask, BITS);
      if constexpr (GPB < G) {
        if ((j + 1) % GPB == 0) flush();
      }
    }
    if constexpr (GPB >= G) {
      if (++in_blk == GPB / G) {
        flush();
        in_blk = 0;
      }
    }
  }
  float v4[4];
  for (int c = 0; c < 4; ++c) v4[c] = hsum(total[c]);
  store_group(W, g, v4, zp_term(W, g, asum), y);
}

template <int BITS>
void gemv_bits(const NBitsPacked& W, const float* a, const float* asum, int64_t g0, int64_t g1, float* y) {
  for (int64_t g = g0; g < g1; ++g) {
    switch (W.block_size) {
      case 16: gemv_group<BITS, 2>(W, a, asum, g, y); break;
      case 32: gemv_group<BITS, 4>(W, a, asum, g, y); break;
      case 64: gemv_group<BITS, 8>(W, a, asum, g, y); break;
      case 128: gemv_group<BITS, 16>(W, a, asum, g, y); break;
      default: gemv_group<BITS, 32>(W, a, asum, g, y); break;  // 256 (larger blocks never get here)
    }
  }
}

// ---- float mode, several rows ---------------------------------------------------------------

// Columns c0, c0 + NC - 1 of group g for R rows: each group of 8 values is decoded and scaled
// once per column (w = q * 2^(bits*j) * scale) and multiplied into the R rows; one accumulator
// per row and column (R x NC = 4 x 2: 8 independent FMA chains). Raw sums (no zero points).
template <int BITS, int R, int NC>
void rows_cols(const NBitsPacked& W, const float* a, int64_t lda, int64_t g, int c0, float (*out)[4]) {
  constexpr int G = 32 / BITS, E = 256 / BITS;
  const int shift = __builtin_ctzll(static_cast<unsigned long long>(W.block_size));
  const uint8_t* q = W.group_q(g) + 32 * c0;
  const float* sc = W.group_scale(g) + c0;
  __m256 acc[R][NC];
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < NC; ++c) acc[r][c] = _mm256_setzero_ps();
  const __m256i m0 = _mm256_set1_epi32((1 << BITS) - 1);
  for (int64_t ch = 0; ch < W.chunks; ++ch) {
    const uint8_t* p = q + ch * 128;
    prefetch(p);
    __m256i v[NC];
    for (int c = 0; c < NC; ++c) v[c] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 32 * c));
    __m256i mask = m0;
#pragma GCC unroll 16
    for (int j = 0; j < G; ++j) {
      const int64_t k = ch * E + 8 * j;
      const int64_t blk = k >> shift;
      __m256 w[NC];
#pragma GCC unroll 2
      for (int c = 0; c < NC; ++c) {
        const __m256i qi = j == G - 1 ? _mm256_srli_epi32(v[c], 32 - BITS) : _mm256_and_si256(v[c], mask);
        w[c] = _mm256_mul_ps(_mm256_cvtepi32_ps(qi), _mm256_broadcast_ss(sc + 4 * blk + c));
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
    for (int c = 0; c < NC; ++c) out[r][c0 + c] = hsum(acc[r][c]);
}

template <int BITS, int R>
void rows_group(const NBitsPacked& W, const float* a, int64_t lda, const float* asum, int64_t g, float* Y,
                int64_t ldy) {
  float out[R][4];
  const int valid = static_cast<int>(std::min<int64_t>(4, W.N - g * 4));
  rows_cols<BITS, R, 2>(W, a, lda, g, 0, out);
  if (valid > 2) rows_cols<BITS, R, 2>(W, a, lda, g, 2, out);
  for (int r = 0; r < R; ++r) store_group(W, g, out[r], zp_term(W, g, asum + r * W.kbp), Y + r * ldy);
}

template <int BITS>
void rows_bits(const NBitsPacked& W, int64_t M, const float* a, int64_t lda, const float* asum, int64_t g0,
               int64_t g1, float* Y, int64_t ldy) {
  // Blocks of kGroupBlock groups stay in L2 while every row of A passes over them.
  for (int64_t gb = g0; gb < g1; gb += kGroupBlock) {
    const int64_t ge = std::min(g1, gb + kGroupBlock);
    int64_t m = 0;
    for (; m + 4 <= M; m += 4)
      for (int64_t g = gb; g < ge; ++g) rows_group<BITS, 4>(W, a + m * lda, lda, asum + m * W.kbp, g, Y + m * ldy, ldy);
    for (int64_t g = gb; g < ge; ++g) switch (M - m) {
        case 3: rows_group<BITS, 3>(W, a + m * lda, lda, asum + m * W.kbp, g, Y + m * ldy, ldy); break;
        case 2: rows_group<BITS, 2>(W, a + m * lda, lda, asum + m * W.kbp, g, Y + m * ldy, ldy); break;
        case 1: rows_group<BITS, 1>(W, a + m * lda, lda, asum + m * W.kbp, g, Y + m * ldy, ldy); break;
        default: break;
      }
  }
}

// ---- int8 mode ------------------------------------------------------------------------------

// Columns c0 .. c0 + NC - 1 of group g, rows 0 .. R - 1 (raw sums: sum over blocks of
// float(dot(a_q, q)) * a_scale * b_scale). 4-bit chunks: 64 elements, byte i = q[i] | q[32+i] << 4;
// vpmaddubsw(q in 0..15, int8 a) cannot saturate (2 * 15 * 128 < 32767).
template <int R, int NC>
void int8_4bit(const NBitsPacked& W, const int8_t* aq, int64_t ldq, const float* asc, int64_t g, int c0,
               float (*out)[4]) {
  const uint8_t* q = W.group_q(g) + 32 * c0;
  const float* sb = W.group_scale(g) + c0;
  const int64_t kbp = W.kbp, bs = W.block_size;
  const __m256i low4 = _mm256_set1_epi8(0x0F);
  const __m256i ones = _mm256_set1_epi16(1);
  __m256 acc[R][NC];
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < NC; ++c) acc[r][c] = _mm256_setzero_ps();
  if (bs >= 64) {
    const int64_t cpb = bs / 64;
    for (int64_t b = 0; b < kbp; ++b) {
      __m256i isum[R][NC];
      for (int r = 0; r < R; ++r)
        for (int c = 0; c < NC; ++c) isum[r][c] = _mm256_setzero_si256();
      for (int64_t ch = b * cpb; ch < (b + 1) * cpb; ++ch) {
        const uint8_t* p = q + ch * 128;
        prefetch(p);
#pragma GCC unroll 4
        for (int c = 0; c < NC; ++c) {
          const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 32 * c));
          const __m256i lo = _mm256_and_si256(v, low4);
          const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low4);
#pragma GCC unroll 4
          for (int r = 0; r < R; ++r) {
            const int8_t* ar = aq + r * ldq + ch * 64;
            const __m256i a0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ar));
            const __m256i a1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ar + 32));
            const __m256i pr = _mm256_add_epi16(_mm256_maddubs_epi16(lo, a0), _mm256_maddubs_epi16(hi, a1));
            isum[r][c] = _mm256_add_epi32(isum[r][c], _mm256_madd_epi16(pr, ones));
          }
        }
      }
      for (int r = 0; r < R; ++r)
        for (int c = 0; c < NC; ++c)
          acc[r][c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[r][c]), _mm256_set1_ps(asc[r * kbp + b] * sb[4 * b + c]),
                                      acc[r][c]);
    }
  } else {
    for (int64_t ch = 0; ch < W.chunks; ++ch) {
      const uint8_t* p = q + ch * 128;
      prefetch(p);
#pragma GCC unroll 4
      for (int c = 0; c < NC; ++c) {
        const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 32 * c));
        const __m256i lo = _mm256_and_si256(v, low4);
        const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low4);
#pragma GCC unroll 4
        for (int r = 0; r < R; ++r) {
          const int8_t* ar = aq + r * ldq + ch * 64;
          const __m256i a0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ar));
          const __m256i a1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ar + 32));
          const __m256 s0 = _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_maddubs_epi16(lo, a0), ones));
          const __m256 s1 = _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_maddubs_epi16(hi, a1), ones));
          const float* as = asc + r * kbp;
          __m256 f0, f1;
          if (bs == 32) {
            f0 = _mm256_set1_ps(as[2 * ch] * sb[4 * (2 * ch) + c]);
            f1 = _mm256_set1_ps(as[2 * ch + 1] * sb[4 * (2 * ch + 1) + c]);
          } else {  // 16: each 128-bit half is one block
            const int64_t b = 4 * ch;
            f0 = _mm256_set_m128(_mm_set1_ps(as[b + 1] * sb[4 * (b + 1) + c]), _mm_set1_ps(as[b] * sb[4 * b + c]));
            f1 = _mm256_set_m128(_mm_set1_ps(as[b + 3] * sb[4 * (b + 3) + c]),
                                 _mm_set1_ps(as[b + 2] * sb[4 * (b + 2) + c]));
          }
          acc[r][c] = _mm256_fmadd_ps(s0, f0, acc[r][c]);
          acc[r][c] = _mm256_fmadd_ps(s1, f1, acc[r][c]);
        }
      }
    }
  }
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < NC; ++c) out[r][c0 + c] = hsum(acc[r][c]);
}

// 8-bit (and unpacked 2-bit) chunks: 32 elements, one byte each. q (0..255) is split in
// nibbles so that vpmaddubsw cannot saturate: q * a = lo * a + 16 * hi * a.
template <int R, int NC>
void int8_8bit(const NBitsPacked& W, const int8_t* aq, int64_t ldq, const float* asc, int64_t g, int c0,
               float (*out)[4]) {
  const uint8_t* q = W.group_q(g) + 32 * c0;
  const float* sb = W.group_scale(g) + c0;
  const int64_t kbp = W.kbp, bs = W.block_size;
  const __m256i low4 = _mm256_set1_epi8(0x0F);
  const __m256i ones = _mm256_set1_epi16(1), sixteen = _mm256_set1_epi16(16);
  __m256 acc[R][NC];
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < NC; ++c) acc[r][c] = _mm256_setzero_ps();
  const int64_t cpb = bs >= 32 ? bs / 32 : 1;
  const int64_t units = W.chunks / cpb;  // blocks (bs >= 32) or chunks of two blocks (bs 16)
  for (int64_t u = 0; u < units; ++u) {
    __m256i isum[R][NC];
    for (int r = 0; r < R; ++r)
      for (int c = 0; c < NC; ++c) isum[r][c] = _mm256_setzero_si256();
    for (int64_t ch = u * cpb; ch < (u + 1) * cpb; ++ch) {
      const uint8_t* p = q + ch * 128;
      prefetch(p);
#pragma GCC unroll 4
      for (int c = 0; c < NC; ++c) {
        const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 32 * c));
        const __m256i lo = _mm256_and_si256(v, low4);
        const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low4);
#pragma GCC unroll 4
        for (int r = 0; r < R; ++r) {
          const __m256i av = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(aq + r * ldq + ch * 32));
          const __m256i plo = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, av), ones);
          const __m256i phi = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, av), sixteen);
          isum[r][c] = _mm256_add_epi32(isum[r][c], _mm256_add_epi32(plo, phi));
        }
      }
    }
    for (int r = 0; r < R; ++r) {
      const float* as = asc + r * kbp;
      for (int c = 0; c < NC; ++c) {
        __m256 f;
        if (bs >= 32) f = _mm256_set1_ps(as[u] * sb[4 * u + c]);
        else
          f = _mm256_set_m128(_mm_set1_ps(as[2 * u + 1] * sb[4 * (2 * u + 1) + c]),
                              _mm_set1_ps(as[2 * u] * sb[4 * (2 * u) + c]));
        acc[r][c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[r][c]), f, acc[r][c]);
      }
    }
  }
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < NC; ++c) out[r][c0 + c] = hsum(acc[r][c]);
}

// One group for R rows: one row takes the 4 columns together; more rows one column at a time.
template <int R>
void int8_group(const NBitsPacked& W, const int8_t* aq, int64_t ldq, const float* asc, const float* ablk,
                int64_t g, float* Y, int64_t ldy) {
  float out[R][4];
  if constexpr (R == 1) {
    if (W.bits == 4) int8_4bit<R, 4>(W, aq, ldq, asc, g, 0, out);
    else int8_8bit<R, 4>(W, aq, ldq, asc, g, 0, out);
  } else {
    const int valid = static_cast<int>(std::min<int64_t>(4, W.N - g * 4));
    for (int c = 0; c < valid; ++c) {
      if (W.bits == 4) int8_4bit<R, 1>(W, aq, ldq, asc, g, c, out);
      else int8_8bit<R, 1>(W, aq, ldq, asc, g, c, out);
    }
  }
  for (int r = 0; r < R; ++r) store_group(W, g, out[r], zp_term(W, g, ablk + r * W.kbp), Y + r * ldy);
}

}  // namespace

void float_gemv_avx2(const NBitsPacked& W, const float* a_scaled, const float* asum, int64_t g0, int64_t g1,
                     float* y) {
  switch (W.bits) {
    case 2: return gemv_bits<2>(W, a_scaled, asum, g0, g1, y);
    case 4: return gemv_bits<4>(W, a_scaled, asum, g0, g1, y);
    default: return gemv_bits<8>(W, a_scaled, asum, g0, g1, y);
  }
}

void float_gemm_avx2(const NBitsPacked& W, int64_t M, const float* a_scaled, int64_t lda, const float* asum,
                     int64_t g0, int64_t g1, float* Y, int64_t ldy) {
  switch (W.bits) {
    case 2: return rows_bits<2>(W, M, a_scaled, lda, asum, g0, g1, Y, ldy);
    case 4: return rows_bits<4>(W, M, a_scaled, lda, asum, g0, g1, Y, ldy);
    default: return rows_bits<8>(W, M, a_scaled, lda, asum, g0, g1, Y, ldy);
  }
}

void int8_gemm_avx2(const NBitsPacked& W, int64_t M, const int8_t* aq, int64_t ldq, const float* ascale,
                    const float* ablksum, int64_t g0, int64_t g1, float* Y, int64_t ldy) {
  const int64_t kbp = W.kbp;
  for (int64_t gb = g0; gb < g1; gb += kGroupBlock) {
    const int64_t ge = std::min(g1, gb + kGroupBlock);
    int64_t m = 0;
    for (; m + 4 <= M; m += 4)
      for (int64_t g = gb; g < ge; ++g)
        int8_group<4>(W, aq + m * ldq, ldq, ascale + m * kbp, ablksum + m * kbp, g, Y + m * ldy, ldy);
    for (int64_t g = gb; g < ge; ++g) switch (M - m) {
      case 3: int8_group<3>(W, aq + m * ldq, ldq, ascale + m * kbp, ablksum + m * kbp, g, Y + m * ldy, ldy); break;
      case 2: int8_group<2>(W, aq + m * ldq, ldq, ascale + m * kbp, ablksum + m * kbp, g, Y + m * ldy, ldy); break;
      case 1: int8_group<1>(W, aq + m * ldq, ldq, ascale + m * kbp, ablksum + m * kbp, g, Y + m * ldy, ldy); break;
      default: break;
    }
  }
}

}  // namespace slmops::runtime::kernels::nbdetail
