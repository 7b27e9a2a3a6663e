// MatMulNBits int8-mode kernels (nbits_int8_avx2.h) with vpdpbusd: u8 x s8 dot products of 4
// accumulated straight into int32, exact for every u8 (no nibble split for 8-bit weights, no
// int16 intermediate). Two builds of the same kernels: AVX-VNNI (VEX, e.g. Alder Lake,
// Sapphire Rapids) and AVX512-VNNI with AVX512VL on 256-bit vectors (e.g. Ice Lake, Cascade
// Lake). Every function carries its own target attribute (no file-wide pragma, so no inline
// library code here is built for those ISAs); callers check nbdetail::int8_vnni_kind() first.
// GCC 12's AVX-512 intrinsic headers trip -W(maybe-)uninitialized (their _mm512_undefined_*
// placeholders) when inlined under a target attribute; the warning is located in the header,
// so it is silenced for the whole file, before the include.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>

#include <cstdlib>
#include <cstring>
#include <new>

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

// ---- int8 mode, many rows, 4-bit: a register-tiled GEMM (AVX512-VNNI on 512-bit vectors) ----
//
// 32 columns at a time (two zmm of 16 int32 lanes) x 4 rows. The tile's weights are first
// unpacked from the int8-mode layout into 16-column panels of k quads (for each quad, 16
// columns x 4 bytes: the u8 operand of vpdpbusd), once per call in a per-thread buffer; then
// per block of k: a broadcast of 4 int8 values of a row times a panel gives 16 exact block
// dot products, scaled once per block: y += float(dot) * (a_scale * w_scale) - zp * w_scale *
// a_scale * sum(a_q). The 4-row kernel of nbits_int8_avx2.h instead sums each (row, column)
// in 8 lanes and reduces them at the end.
namespace {

constexpr int kPrefillCols = 32;

__attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512vnni"))) void unpack_panels(const NBitsPacked& W,
                                                                                            int64_t n0,
                                                                                            uint8_t* panels) {
  // panels: 2 x (k_padded / 4) quads x 64 bytes; columns past N are zeros.
  const int64_t quads = W.k_padded / 4;
  alignas(64) uint8_t e[64];
  for (int j = 0; j < kPrefillCols; ++j) {
    const int64_t n = n0 + j;
    uint8_t* dst = panels + (j / 16) * quads * 64 + (j % 16) * 4;
    if (n >= W.N) {
      for (int64_t q = 0; q < quads; ++q) std::memset(dst + q * 64, 0, 4);
      continue;
    }
    const uint8_t* src = W.group_q(n / 4) + (n % 4) * 32;
    for (int64_t c = 0; c < W.chunks; ++c, src += 128) {
      const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src));
      const __m256i low4 = _mm256_set1_epi8(0x0F);
      _mm256_store_si256(reinterpret_cast<__m256i*>(e), _mm256_and_si256(v, low4));
      _mm256_store_si256(reinterpret_cast<__m256i*>(e + 32), _mm256_and_si256(_mm256_srli_epi16(v, 4), low4));
      uint8_t* d = dst + c * 16 * 64;
      for (int q = 0; q < 16; ++q) std::memcpy(d + q * 64, e + 4 * q, 4);
    }
  }
}

template <int R>
__attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512vnni"))) void prefill_rows(
    const NBitsPacked& W, const uint8_t* panels, const float* sb, const float* zsb, const int8_t* aq, int64_t ldq,
    const float* ascale, const float* ablksum, int64_t n0, float* Y, int64_t ldy) {
  const int64_t quads = W.k_padded / 4, qpb = W.block_size / 4, kbp = W.kbp;
  const uint8_t* p0 = panels;
  const uint8_t* p1 = panels + quads * 64;
  __m512 acc[R][2];
  for (int r = 0; r < R; ++r) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
  for (int64_t b = 0; b < kbp; ++b) {
    __m512i isum[R][2];
    for (int r = 0; r < R; ++r) isum[r][0] = isum[r][1] = _mm512_setzero_si512();
    for (int64_t q = b * qpb; q < (b + 1) * qpb; ++q) {
      const __m512i w0 = _mm512_load_si512(p0 + q * 64), w1 = _mm512_load_si512(p1 + q * 64);
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r) {
        int32_t a4;
        std::memcpy(&a4, aq + r * ldq + 4 * q, 4);
        const __m512i av = _mm512_set1_epi32(a4);
        isum[r][0] = _mm512_dpbusd_epi32(isum[r][0], w0, av);
        isum[r][1] = _mm512_dpbusd_epi32(isum[r][1], w1, av);
      }
    }
    const __m512 s0 = _mm512_loadu_ps(sb + b * kPrefillCols), s1 = _mm512_loadu_ps(sb + b * kPrefillCols + 16);
    const __m512 z0 = _mm512_loadu_ps(zsb + b * kPrefillCols), z1 = _mm512_loadu_ps(zsb + b * kPrefillCols + 16);
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      const __m512 as = _mm512_set1_ps(ascale[r * kbp + b]), ab = _mm512_set1_ps(ablksum[r * kbp + b]);
      acc[r][0] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[r][0]), _mm512_mul_ps(s0, as), acc[r][0]);
      acc[r][1] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[r][1]), _mm512_mul_ps(s1, as), acc[r][1]);
      acc[r][0] = _mm512_fnmadd_ps(z0, ab, acc[r][0]);
      acc[r][1] = _mm512_fnmadd_ps(z1, ab, acc[r][1]);
    }
  }
  const int64_t valid = W.N - n0 < kPrefillCols ? W.N - n0 : kPrefillCols;
  const __mmask16 m0 = valid >= 16 ? 0xFFFF : static_cast<__mmask16>((1u << valid) - 1);
  const __mmask16 m1 = valid >= 32 ? 0xFFFF : valid <= 16 ? 0 : static_cast<__mmask16>((1u << (valid - 16)) - 1);
  for (int r = 0; r < R; ++r) {
    _mm512_mask_storeu_ps(Y + r * ldy + n0, m0, acc[r][0]);
    _mm512_mask_storeu_ps(Y + r * ldy + n0 + 16, m1, acc[r][1]);
  }
}

}  // namespace

bool int8_prefill_usable(const NBitsPacked& W) {
  return W.mode == NBitsMode::Int8 && W.bits == 4 && W.vnni && kernels::cpu().avx512vnni &&
         kernels::cpu().avx512bw_dq_vl && W.block_size % 4 == 0;
}

int64_t int8_prefill_tiles(const NBitsPacked& W) { return (W.N + kPrefillCols - 1) / kPrefillCols; }

void int8_gemm_prefill(const NBitsPacked& W, int64_t M, const int8_t* aq, int64_t ldq, const float* ascale,
                       const float* ablksum, int64_t t0, int64_t t1, float* Y, int64_t ldy) {
  const int64_t quads = W.k_padded / 4, kbp = W.kbp;
  struct Buffer {
    uint8_t* p = nullptr;
    size_t size = 0;
    ~Buffer() { std::free(p); }
  };
  thread_local Buffer buf;
  const size_t need = static_cast<size_t>(2 * quads * 64 + 2 * kbp * kPrefillCols * sizeof(float));
  if (buf.size < need) {
    std::free(buf.p);
    buf.p = static_cast<uint8_t*>(std::aligned_alloc(64, (need + 63) / 64 * 64));
    if (!buf.p) throw std::bad_alloc();
    buf.size = need;
  }
  uint8_t* panels = buf.p;
  float* sb = reinterpret_cast<float*>(buf.p + 2 * quads * 64);
  float* zsb = sb + kbp * kPrefillCols;
  for (int64_t t = t0; t < t1; ++t) {
    const int64_t n0 = t * kPrefillCols;
    unpack_panels(W, n0, panels);
    for (int64_t b = 0; b < kbp; ++b)
      for (int j = 0; j < kPrefillCols; ++j) {
        const int64_t n = n0 + j;
        const float s = n < W.N ? W.scale_at(n, b) : 0.f;
        sb[b * kPrefillCols + j] = s;
        zsb[b * kPrefillCols + j] = n < W.N ? W.zp_at(n, b) * s : 0.f;
      }
    int64_t m = 0;
    for (; m + 4 <= M; m += 4)
      prefill_rows<4>(W, panels, sb, zsb, aq + m * ldq, ldq, ascale + m * kbp, ablksum + m * kbp, n0, Y + m * ldy, ldy);
    switch (M - m) {
      case 3:
        prefill_rows<3>(W, panels, sb, zsb, aq + m * ldq, ldq, ascale + m * kbp, ablksum + m * kbp, n0, Y + m * ldy,
                        ldy);
        break;
      case 2:
        prefill_rows<2>(W, panels, sb, zsb, aq + m * ldq, ldq, ascale + m * kbp, ablksum + m * kbp, n0, Y + m * ldy,
                        ldy);
        break;
      case 1:
        prefill_rows<1>(W, panels, sb, zsb, aq + m * ldq, ldq, ascale + m * kbp, ablksum + m * kbp, n0, Y + m * ldy,
                        ldy);
        break;
      default:
        break;
    }
  }
}

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
