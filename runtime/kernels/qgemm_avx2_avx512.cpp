// Integer GEMM micro-kernels (see qgemm.h): AVX2 vpmaddwd on int16-widened operands, and
// vpdpbusd (AVX-VNNI or AVX512-VNNI+VL, both on 256-bit vectors) on u8 x s8. Compiled with
// -mavx2 -mfma; the VNNI functions carry their own target attribute and run only after the
// CPU check in cpu_has_vnni().
#include <immintrin.h>

#include "runtime/kernels/cpu_features.h"
#include "runtime/kernels/qgemm.h"

namespace slmops::runtime::kernels::qdetail {
namespace {

static_assert(kQMR == 4 && kQNR == 16, "the micro-kernels are written for a 4x16 tile");

// Writes the 4x16 accumulator tile to C (store or add), clipped to mr x nr.
#define SLMOPS_QSTORE_TILE()                                                                 \
  if (mr == kQMR && nr == kQNR) {                                                            \
    for (int r = 0; r < kQMR; ++r) {                                                         \
      __m256i* out0 = reinterpret_cast<__m256i*>(c + r * ldc);                               \
      __m256i* out1 = reinterpret_cast<__m256i*>(c + r * ldc + 8);                           \
      __m256i v0 = acc[r][0], v1 = acc[r][1];                                                \
      if (accumulate) {                                                                      \
        v0 = _mm256_add_epi32(v0, _mm256_loadu_si256(out0));                                 \
        v1 = _mm256_add_epi32(v1, _mm256_loadu_si256(out1));                                 \
      }                                                                                      \
      _mm256_storeu_si256(out0, v0);                                                         \
      _mm256_storeu_si256(out1, v1);                                                         \
    }                                                                                        \
  } else {                                                                                   \
    alignas(32) int32_t tile[kQMR][kQNR];                                                    \
    for (int r = 0; r < kQMR; ++r) {                                                         \
      _mm256_store_si256(reinterpret_cast<__m256i*>(tile[r]), acc[r][0]);                    \
      _mm256_store_si256(reinterpret_cast<__m256i*>(tile[r] + 8), acc[r][1]);                \
    }                                                                                        \
    for (int r = 0; r < mr; ++r)                                                             \
      for (int j = 0; j < nr; ++j) {                                                         \
        int32_t& o = c[r * ldc + j];                                                         \
        o = accumulate ? static_cast<int32_t>(static_cast<uint32_t>(o) + static_cast<uint32_t>(tile[r][j])) \
                       : tile[r][j];                                                         \
      }                                                                                      \
  }

inline int32_t load_i32(const void* p) {
  int32_t v;
  __builtin_memcpy(&v, p, 4);
  return v;
}

// A: int16 rows; B: per k pair, 16 columns x (b[2p], b[2p+1]) int16.
// The eight accumulators are named variables: as an array, GCC copied each to another register
// every iteration (8 vmovdqa per 8 vpmaddwd); named, the loop is 25 instructions (resnet18 int8
// QDQ about 4% less CPU time on Zen 3).
void micro_avx2(int64_t kc, const void* a_, const uint8_t* b, int32_t* c, int64_t ldc, int mr, int nr,
                bool accumulate) {
  const int16_t* a = static_cast<const int16_t*>(a_);
  const int16_t *a0 = a, *a1 = a + kc, *a2 = a + 2 * kc, *a3 = a + 3 * kc;
  __m256i c00 = _mm256_setzero_si256(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00, c31 = c00;
  const int64_t pairs = kc / 2;
  for (int64_t p = 0; p < pairs; ++p, b += 64) {
    const __m256i b0 = _mm256_load_si256(reinterpret_cast<const __m256i*>(b));
    const __m256i b1 = _mm256_load_si256(reinterpret_cast<const __m256i*>(b + 32));
    __m256i av = _mm256_set1_epi32(load_i32(a0 + 2 * p));
    c00 = _mm256_add_epi32(c00, _mm256_madd_epi16(av, b0));
    c01 = _mm256_add_epi32(c01, _mm256_madd_epi16(av, b1));
    av = _mm256_set1_epi32(load_i32(a1 + 2 * p));
    c10 = _mm256_add_epi32(c10, _mm256_madd_epi16(av, b0));
    c11 = _mm256_add_epi32(c11, _mm256_madd_epi16(av, b1));
    av = _mm256_set1_epi32(load_i32(a2 + 2 * p));
    c20 = _mm256_add_epi32(c20, _mm256_madd_epi16(av, b0));
    c21 = _mm256_add_epi32(c21, _mm256_madd_epi16(av, b1));
    av = _mm256_set1_epi32(load_i32(a3 + 2 * p));
    c30 = _mm256_add_epi32(c30, _mm256_madd_epi16(av, b0));
    c31 = _mm256_add_epi32(c31, _mm256_madd_epi16(av, b1));
  }
  __m256i acc[kQMR][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}};
  SLMOPS_QSTORE_TILE()
}

// A: uint8 rows; B: per k quad, 16 columns x 4 int8.
#define SLMOPS_VNNI_BODY(DPBUSD)                                                      \
  const uint8_t* a = static_cast<const uint8_t*>(a_);                                 \
  __m256i acc[kQMR][2];                                                               \
  _Pragma("GCC unroll 4") for (auto& row : acc) row[0] = row[1] = _mm256_setzero_si256(); \
  const int64_t quads = kc / 4;                                                       \
  for (int64_t q = 0; q < quads; ++q, b += 64) {                                      \
    const __m256i b0 = _mm256_load_si256(reinterpret_cast<const __m256i*>(b));        \
    const __m256i b1 = _mm256_load_si256(reinterpret_cast<const __m256i*>(b + 32));   \
    _Pragma("GCC unroll 4") for (int r = 0; r < kQMR; ++r) {                          \
      const __m256i av = _mm256_set1_epi32(load_i32(a + r * kc + 4 * q));             \
      acc[r][0] = DPBUSD(acc[r][0], av, b0);                                          \
      acc[r][1] = DPBUSD(acc[r][1], av, b1);                                          \
    }                                                                                 \
  }                                                                                   \
  SLMOPS_QSTORE_TILE()

__attribute__((target("avxvnni"))) void micro_avxvnni(int64_t kc, const void* a_, const uint8_t* b, int32_t* c,
                                                       int64_t ldc, int mr, int nr, bool accumulate) {
  SLMOPS_VNNI_BODY(_mm256_dpbusd_avx_epi32)
}

__attribute__((target("avx512vnni,avx512vl"))) void micro_avx512vnni(int64_t kc, const void* a_, const uint8_t* b,
                                                                      int32_t* c, int64_t ldc, int mr, int nr,
                                                                      bool accumulate) {
  SLMOPS_VNNI_BODY(_mm256_dpbusd_epi32)
}

// kQMR rows x 4 panels: per k quad four 64-byte B loads, kQMR broadcasts and 16 dot
// products into zmm accumulators (the ymm tile above has 8, two per row).
__attribute__((target("avx512f,avx512bw,avx512vnni"))) void micro4_avx512vnni(int64_t kc, const void* a_,
                                                                                const uint8_t* b, int64_t panel_stride,
                                                                                int32_t* c, int64_t ldc, int mr,
                                                                                bool accumulate) {
  const uint8_t* a = static_cast<const uint8_t*>(a_);
  __m512i acc[kQMR][4];
#pragma GCC unroll 4
  for (int r = 0; r < kQMR; ++r)
#pragma GCC unroll 4
    for (int j = 0; j < 4; ++j) acc[r][j] = _mm512_setzero_si512();
  const int64_t quads = kc / 4;
  for (int64_t q = 0; q < quads; ++q, b += 64) {
    __m512i bv[4];
#pragma GCC unroll 4
    for (int j = 0; j < 4; ++j) bv[j] = _mm512_loadu_si512(b + j * panel_stride);
#pragma GCC unroll 4
    for (int r = 0; r < kQMR; ++r) {
      const __m512i av = _mm512_set1_epi32(load_i32(a + r * kc + 4 * q));
#pragma GCC unroll 4
      for (int j = 0; j < 4; ++j) acc[r][j] = _mm512_dpbusd_epi32(acc[r][j], av, bv[j]);
    }
  }
#pragma GCC unroll 4
  for (int r = 0; r < kQMR; ++r) {
    if (r >= mr) break;
#pragma GCC unroll 4
    for (int j = 0; j < 4; ++j) {
      int32_t* out = c + r * ldc + j * kQNR;
      __m512i v = acc[r][j];
      if (accumulate) v = _mm512_add_epi32(v, _mm512_loadu_si512(out));  // wraps, as the uint32 sums
      _mm512_storeu_si512(out, v);
    }
  }
}

}  // namespace

QMicro4Fn vnni_micro4() {
  return kernels::cpu().avx512vnni ? micro4_avx512vnni : nullptr;
}

bool cpu_has_avx2() { return kernels::cpu().avx2; }

bool cpu_has_vnni() { return kernels::cpu().avxvnni || kernels::cpu().avx512vnni; }

QMicroFn avx2_micro() { return micro_avx2; }

QMicroFn vnni_micro() {
  if (kernels::cpu().avxvnni) return micro_avxvnni;
  if (kernels::cpu().avx512vnni) return micro_avx512vnni;
  return nullptr;
}

}  // namespace slmops::runtime::kernels::qdetail
