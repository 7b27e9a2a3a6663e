// AVX2+FMA kernels of MatMulNBits (see nbits.h for the packed layouts and the arithmetic).
// Every kernel walks one group of 4 interleaved columns at a time, so the weights of a task
// are one sequential stream (prefetched a kilobyte ahead).
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "runtime/kernels/cpu_features.h"
#include "runtime/kernels/nbits.h"

namespace slmops::runtime::kernels::nbdetail {

// Int8 dot products with vpmaddubsw + vpmaddwd. u8 x s8 pairs only for u8 <= 15, where the
// int16 sum of two products cannot saturate (2 * 15 * 128 < 32767); `full` splits any u8 in
// nibbles: v * s = lo * s + 16 * hi * s.
#define NB_TARGET
namespace {
constexpr bool kWideInt8 = false;  // 16 vector registers: one column per pass
struct Int8Dot {
  static __m256i pair_small(__m256i acc, __m256i lo, __m256i a0, __m256i hi, __m256i a1) {
    const __m256i p = _mm256_add_epi16(_mm256_maddubs_epi16(lo, a0), _mm256_maddubs_epi16(hi, a1));
    return _mm256_add_epi32(acc, _mm256_madd_epi16(p, _mm256_set1_epi16(1)));
  }
  static __m256i small(__m256i u, __m256i s) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
  }
  static __m256i full(__m256i acc, __m256i v, __m256i s) {
    const __m256i low4 = _mm256_set1_epi8(0x0F);
    const __m256i lo = _mm256_and_si256(v, low4), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low4);
    const __m256i plo = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, s), _mm256_set1_epi16(1));
    const __m256i phi = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, s), _mm256_set1_epi16(16));
    return _mm256_add_epi32(acc, _mm256_add_epi32(plo, phi));
  }
};
}  // namespace
#include "runtime/kernels/nbits_int8_avx2.h"
#undef NB_TARGET

namespace {

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

// The same with AVX-512 (when the CPU has it): one zmm holds the chunks of two neighbouring
// columns (they are adjacent in the group layout), so each group of 8 elements of A is one
// broadcast and the decode + FMA work per weight halves. Same arithmetic as gemv_group.
#define SLMOPS_AVX512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl")))
// GCC 12's AVX-512 intrinsic headers trip -W(maybe-)uninitialized (their _mm512_undefined_*
// placeholders) when used under a target attribute.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

SLMOPS_AVX512 inline float hsum256_512(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

template <int BITS, int GPB>
SLMOPS_AVX512 void gemv_group_512(const NBitsPacked& W, const float* a, const float* asum, int64_t g, float* y) {
  constexpr int G = 32 / BITS, E = 256 / BITS;
  const uint8_t* q = W.group_q(g);
  const float* sc = W.group_scale(g);
  __m512 total[2], blk[2];
  for (int c = 0; c < 2; ++c) total[c] = blk[c] = _mm512_setzero_ps();
  const __m512i m0 = _mm512_set1_epi32((1 << BITS) - 1);
  // Scale lanes: columns 0,1 (pair 0) and 2,3 (pair 1) of the block's 4 scales.
  const __m512i idx0 = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
  const __m512i idx1 = _mm512_set_epi32(3, 3, 3, 3, 3, 3, 3, 3, 2, 2, 2, 2, 2, 2, 2, 2);
  int64_t b = 0, in_blk = 0;
  auto flush = [&]() SLMOPS_AVX512 {
    const __m512 s4 = _mm512_castps128_ps512(_mm_loadu_ps(sc + 4 * b));
    total[0] = _mm512_fmadd_ps(blk[0], _mm512_permutexvar_ps(idx0, s4), total[0]);
    total[1] = _mm512_fmadd_ps(blk[1], _mm512_permutexvar_ps(idx1, s4), total[1]);
    blk[0] = blk[1] = _mm512_setzero_ps();
    ++b;
  };
  for (int64_t ch = 0; ch < W.chunks; ++ch) {
    const uint8_t* p = q + ch * 128;
    _mm_prefetch(reinterpret_cast<const char*>(p + kPrefetch), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(p + kPrefetch + 64), _MM_HINT_T0);
    const __m512i v0 = _mm512_loadu_si512(p), v1 = _mm512_loadu_si512(p + 64);
    const float* ac = a + ch * E;
    __m512i mask = m0;
#pragma GCC unroll 16
    for (int j = 0; j < G; ++j) {
      const __m512 av = _mm512_broadcast_f32x8(_mm256_loadu_ps(ac + 8 * j));
      const __m512i q0 = j == G - 1 ? _mm512_srli_epi32(v0, 32 - BITS) : _mm512_and_si512(v0, mask);
      const __m512i q1 = j == G - 1 ? _mm512_srli_epi32(v1, 32 - BITS) : _mm512_and_si512(v1, mask);
      blk[0] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(q0), av, blk[0]);
      blk[1] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(q1), av, blk[1]);
      mask = _mm512_slli_epi32(mask, BITS);
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
  for (int c = 0; c < 2; ++c) {
    v4[2 * c] = hsum256_512(_mm512_castps512_ps256(total[c]));
    v4[2 * c + 1] = hsum256_512(_mm512_extractf32x8_ps(total[c], 1));
  }
  store_group(W, g, v4, zp_term(W, g, asum), y);
}

#pragma GCC diagnostic pop

bool cpu_has_avx512() { return kernels::cpu().avx512bw_dq_vl; }

template <int BITS, int GPB>
void gemv_groups(const NBitsPacked& W, const float* a, const float* asum, int64_t g0, int64_t g1, float* y) {
  if (W.avx512)
    for (int64_t g = g0; g < g1; ++g) gemv_group_512<BITS, GPB>(W, a, asum, g, y);
  else
    for (int64_t g = g0; g < g1; ++g) gemv_group<BITS, GPB>(W, a, asum, g, y);
}

template <int BITS>
void gemv_bits(const NBitsPacked& W, const float* a, const float* asum, int64_t g0, int64_t g1, float* y) {
  switch (W.block_size) {
    case 16: return gemv_groups<BITS, 2>(W, a, asum, g0, g1, y);
    case 32: return gemv_groups<BITS, 4>(W, a, asum, g0, g1, y);
    case 64: return gemv_groups<BITS, 8>(W, a, asum, g0, g1, y);
    case 128: return gemv_groups<BITS, 16>(W, a, asum, g0, g1, y);
    default: return gemv_groups<BITS, 32>(W, a, asum, g0, g1, y);  // 256 (larger blocks never get here)
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

}  // namespace

bool avx512_usable() { return cpu_has_avx512(); }

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
  int8_gemm_impl(W, M, aq, ldq, ascale, ablksum, g0, g1, Y, ldy);
}

}  // namespace slmops::runtime::kernels::nbdetail
