// MatMulNBits int8-mode kernels (nbits_int8_avx2.h) with vpdpbusd: u8 x s8 dot products of 4
// accumulated straight into int32, exact for every u8 (no nibble split for 8-bit weights, no
// int16 intermediate). Two builds of the same kernels: AVX-VNNI (VEX, e.g. Alder Lake,
// Sapphire Rapids) and AVX512-VNNI with AVX512VL on 256-bit vectors (e.g. Ice Lake, Cascade
// Lake). Every function carries its own target attribute (no file-wide pragma, so no inline
// library code here is built for those ISAs); callers check nbdetail::int8_vnni_kind() first.
#include <immintrin.h>

#include <cstring>

#include "runtime/kernels/cpu_features.h"
#include "runtime/kernels/nbits.h"

namespace slmops::runtime::kernels::nbdetail {

namespace avxvnni {
#define NB_TARGET __attribute__((target("avxvnni")))
namespace {
constexpr bool kWideInt8 = false;  // 16 vector registers
struct Int8Dot {
  NB_TARGET static __m256i pair_small(__m256i acc, __m256i lo, __m256i a0, __m256i hi, __m256i a1) {
    return _mm256_dpbusd_avx_epi32(_mm256_dpbusd_avx_epi32(acc, lo, a0), hi, a1);
  }
  NB_TARGET static __m256i small(__m256i u, __m256i s) {
    return _mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), u, s);
  }
  NB_TARGET static __m256i full(__m256i acc, __m256i v, __m256i s) { return _mm256_dpbusd_avx_epi32(acc, v, s); }
};
}  // namespace
#include "runtime/kernels/nbits_int8_avx2.h"
#undef NB_TARGET
}  // namespace avxvnni

namespace avx512vnni {
#define NB_TARGET __attribute__((target("avx512f,avx512vl,avx512bw,avx512vnni")))
namespace {
constexpr bool kWideInt8 = true;  // 32 vector registers
struct Int8Dot {
  NB_TARGET static __m256i pair_small(__m256i acc, __m256i lo, __m256i a0, __m256i hi, __m256i a1) {
    return _mm256_dpbusd_epi32(_mm256_dpbusd_epi32(acc, lo, a0), hi, a1);
  }
  NB_TARGET static __m256i small(__m256i u, __m256i s) { return _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s); }
  NB_TARGET static __m256i full(__m256i acc, __m256i v, __m256i s) { return _mm256_dpbusd_epi32(acc, v, s); }
};
}  // namespace
#include "runtime/kernels/nbits_int8_avx2.h"
#undef NB_TARGET
}  // namespace avx512vnni

int int8_vnni_kind() {
  static const int kind = [] {
    const CpuFeatures& f = kernels::cpu();
    if (!f.avx2) return 0;
    // The AVX-512 build first where both exist (Zen 4, Sapphire Rapids): the same vpdpbusd on
    // 256-bit vectors, with 32 registers, which the multi-row kernel uses for two columns.
    if (f.avx512vnni) return 2;
    if (f.avxvnni) return 1;
    return 0;
  }();
  return kind;
}

void int8_gemm_vnni(const NBitsPacked& W, int64_t M, const int8_t* aq, int64_t ldq, const float* ascale,
                    const float* ablksum, int64_t g0, int64_t g1, float* Y, int64_t ldy) {
  if (int8_vnni_kind() == 1) avxvnni::int8_gemm_impl(W, M, aq, ldq, ascale, ablksum, g0, g1, Y, ldy);
  else avx512vnni::int8_gemm_impl(W, M, aq, ldq, ascale, ablksum, g0, g1, Y, ldy);
}

}  // namespace slmops::runtime::kernels::nbdetail
