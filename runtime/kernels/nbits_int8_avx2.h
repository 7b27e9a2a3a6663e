// MatMulNBits int8-mode kernels and the AVX helpers shared with the float kernels. Not an
// ordinary header: a translation unit includes it (once per namespace) after
//   - including <immintrin.h>, <cstring> and runtime/kernels/nbits.h,
//   - defining NB_TARGET (empty, or a target attribute such as avxvnni) and
//   - defining `struct Int8Dot` with three NB_TARGET static functions on 32 bytes at a time:
//       pair_small(acc, lo, a0, hi, a1): acc + per int32 lane the dot products of 4 (u8, s8)
//                                        pairs of (lo, a0) and of (hi, a1); u8 values <= 15
//       small(u, s):     the same for one pair of vectors, from zero (u <= 15)
//       full(acc, v, s): acc + the dot products of (v, s) for any u8 v
// Everything is in an unnamed namespace: each instantiation (AVX2 in nbits_avx2_avx512.cpp,
// AVX-VNNI and AVX512-VNNI in nbits_vnni_avx2_avx512.cpp) keeps its own code, so no function built
// for a newer ISA can be shared with, or picked by the linker for, another.
namespace {

constexpr int kPrefetch = 2048;    // bytes ahead in the weight stream
constexpr int64_t kGroupBlock = 8;  // column groups kept in cache while M > 1 rows pass

NB_TARGET inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

NB_TARGET inline void prefetch(const uint8_t* p) {
  _mm_prefetch(reinterpret_cast<const char*>(p + kPrefetch), _MM_HINT_T0);
  _mm_prefetch(reinterpret_cast<const char*>(p + kPrefetch + 64), _MM_HINT_T0);
}

// Zero-point term of the 4 columns of group g: sum over blocks of zp * scale * sums[b].
NB_TARGET inline __m128 zp_term(const NBitsPacked& W, int64_t g, const float* sums) {
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
NB_TARGET inline void store_group(const NBitsPacked& W, int64_t g, const float* v, __m128 term, float* y) {
  alignas(16) float t[4];
  _mm_store_ps(t, term);
  for (int c = 0; c < 4; ++c)
    if (g * 4 + c < W.N) y[g * 4 + c] = v[c] - t[c];
}

// ---- int8 mode ------------------------------------------------------------------------------

// Columns c0 .. c0 + NC - 1 of group g, rows 0 .. R - 1 (raw sums: sum over blocks of
// float(dot(a_q, q)) * a_scale * b_scale). 4-bit chunks: 64 elements, byte i = q[i] | q[32+i] << 4.
template <int R, int NC>
NB_TARGET void int8_4bit(const NBitsPacked& W, const int8_t* aq, int64_t ldq, const float* asc, int64_t g, int c0,
               float (*out)[4]) {
  const uint8_t* q = W.group_q(g) + 32 * c0;
  const float* sb = W.group_scale(g) + c0;
  const int64_t kbp = W.kbp, bs = W.block_size;
  const __m256i low4 = _mm256_set1_epi8(0x0F);
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
            isum[r][c] = Int8Dot::pair_small(isum[r][c], lo, a0, hi, a1);
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
          const __m256 s0 = _mm256_cvtepi32_ps(Int8Dot::small(lo, a0));
          const __m256 s1 = _mm256_cvtepi32_ps(Int8Dot::small(hi, a1));
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

// 8-bit (and unpacked 2-bit) chunks: 32 elements, one byte each (q in 0..255: Int8Dot::full).
template <int R, int NC>
NB_TARGET void int8_8bit(const NBitsPacked& W, const int8_t* aq, int64_t ldq, const float* asc, int64_t g, int c0,
               float (*out)[4]) {
  const uint8_t* q = W.group_q(g) + 32 * c0;
  const float* sb = W.group_scale(g) + c0;
  const int64_t kbp = W.kbp, bs = W.block_size;
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
#pragma GCC unroll 4
        for (int r = 0; r < R; ++r) {
          const __m256i av = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(aq + r * ldq + ch * 32));
          isum[r][c] = Int8Dot::full(isum[r][c], v, av);
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
NB_TARGET void int8_group(const NBitsPacked& W, const int8_t* aq, int64_t ldq, const float* asc, const float* ablk,
                int64_t g, float* Y, int64_t ldy) {
  float out[R][4];
  if constexpr (R == 1) {
    if (W.bits == 4) int8_4bit<R, 4>(W, aq, ldq, asc, g, 0, out);
    else int8_8bit<R, 4>(W, aq, ldq, asc, g, 0, out);
  } else {
    const int valid = static_cast<int>((W.N - g * 4 < 4 ? W.N - g * 4 : 4));
    if (W.bits == 4 && valid == 4 && kWideInt8) {
      // Two columns per pass: each row's A chunk is loaded once for both (needs the 32
      // vector registers of the AVX-512 build).
      int8_4bit<R, 2>(W, aq, ldq, asc, g, 0, out);
      int8_4bit<R, 2>(W, aq, ldq, asc, g, 2, out);
    } else {
      for (int c = 0; c < valid; ++c) {
        if (W.bits == 4)
          int8_4bit<R, 1>(W, aq, ldq, asc, g, c, out);
        else
          int8_8bit<R, 1>(W, aq, ldq, asc, g, c, out);
      }
    }
  }
  for (int r = 0; r < R; ++r) store_group(W, g, out[r], zp_term(W, g, ablk + r * W.kbp), Y + r * ldy);
}

NB_TARGET void int8_gemm_impl(const NBitsPacked& W, int64_t M, const int8_t* aq, int64_t ldq, const float* ascale,
                    const float* ablksum, int64_t g0, int64_t g1, float* Y, int64_t ldy) {
  const int64_t kbp = W.kbp;
  for (int64_t gb = g0; gb < g1; gb += kGroupBlock) {
    const int64_t ge = g1 < gb + kGroupBlock ? g1 : gb + kGroupBlock;
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


}  // namespace
