#include "runtime/kernels/qdq.h"

#include <immintrin.h>

namespace slmops::runtime::kernels {
namespace {

constexpr float kRound = 12582912.0f;  // 1.5 * 2^23

// 16 floats as one GCC vector: the loops below are written on it so that they vectorize
// (element-wise, no reassociation) at whatever width the clone is compiled for.
using V16 = float __attribute__((vector_size(64)));
using I16 = int32_t __attribute__((vector_size(64)));
template <typename Q>
struct Narrow;  // 16 lanes of Q
template <>
struct Narrow<uint8_t> {
  using type = uint8_t __attribute__((vector_size(16)));
};
template <>
struct Narrow<int8_t> {
  using type = int8_t __attribute__((vector_size(16)));
};

// Always inlined: each clone below must compile its own copy at its own width.
template <typename Q>
__attribute__((always_inline)) inline void quantize(const float* x, int64_t n, float scale, int32_t zp, int32_t lo_q, int32_t hi_q, Q* y) {
  const float lo = static_cast<float>(lo_q - zp), hi = static_cast<float>(hi_q - zp);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    V16 v;
    __builtin_memcpy(&v, x + i, sizeof v);
    v = v / scale;
    v = v > lo ? v : lo;  // lo when v is NaN, as below
    v = v < hi ? v : hi;
    v = (v + kRound) - kRound;
    const I16 q = __builtin_convertvector(v, I16) + zp;  // within [lo_q, hi_q]: narrowing keeps it
    const typename Narrow<Q>::type narrow = __builtin_convertvector(q, typename Narrow<Q>::type);
    __builtin_memcpy(y + i, &narrow, sizeof narrow);
  }
  for (; i < n; ++i) {
    float v = x[i] / scale;
    v = v > lo ? v : lo;  // MAXPS(v, lo): lo when v is NaN
    v = v < hi ? v : hi;
    v = (v + kRound) - kRound;
    y[i] = static_cast<Q>(static_cast<int32_t>(v) + zp);
  }
}

// The requantization parameters of one output element: the same for all (per tensor) or one
// per element of the row (per output channel, the row being one pixel's channels). load()
// gives those of elements i..i+15 as vectors (a broadcast or three vector loads).
using U16 = uint32_t __attribute__((vector_size(64)));
struct Uniform {
  int32_t bias;
  float scale, offset;
  int32_t b(int64_t) const { return bias; }
  float s(int64_t) const { return scale; }
  float o(int64_t) const { return offset; }
  void load(int64_t, U16& vb, V16& vs, V16& vo) const {
    vb = U16{} + static_cast<uint32_t>(bias);
    vs = V16{} + scale;
    vo = V16{} + offset;
  }
};
struct PerElement {
  const int32_t* bias;
  const float *scale, *offset;
  int32_t b(int64_t i) const { return bias[i]; }
  float s(int64_t i) const { return scale[i]; }
  float o(int64_t i) const { return offset[i]; }
  void load(int64_t i, U16& vb, V16& vs, V16& vo) const {
    __builtin_memcpy(&vb, bias + i, sizeof vb);
    __builtin_memcpy(&vs, scale + i, sizeof vs);
    __builtin_memcpy(&vo, offset + i, sizeof vo);
  }
};

template <typename Q, typename P>
__attribute__((always_inline)) inline void requantize(const int32_t* acc, int64_t n, const P& p, int32_t zp,
                                                      int32_t lo_q, int32_t hi_q, Q* y) {
  const float lo = static_cast<float>(lo_q - zp), hi = static_cast<float>(hi_q - zp);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    U16 a, ub;
    V16 sc, off;
    p.load(i, ub, sc, off);
    __builtin_memcpy(&a, acc + i, sizeof a);
    V16 v = __builtin_convertvector(reinterpret_cast<I16>(a + ub), V16) * sc + off;
    v = v > lo ? v : lo;
    v = v < hi ? v : hi;
    v = (v + kRound) - kRound;
    const I16 q = __builtin_convertvector(v, I16) + zp;
    const typename Narrow<Q>::type narrow = __builtin_convertvector(q, typename Narrow<Q>::type);
    __builtin_memcpy(y + i, &narrow, sizeof narrow);
  }
  for (; i < n; ++i) {
    const uint32_t ub = static_cast<uint32_t>(p.b(i));
    float v = static_cast<float>(static_cast<int32_t>(static_cast<uint32_t>(acc[i]) + ub)) * p.s(i) + p.o(i);
    v = v > lo ? v : lo;
    v = v < hi ? v : hi;
    v = (v + kRound) - kRound;
    y[i] = static_cast<Q>(static_cast<int32_t>(v) + zp);
  }
}

template <typename Q>
__attribute__((always_inline)) inline void dequantize(const Q* q, int64_t n, float scale, int32_t zp, float* y) {
  for (int64_t i = 0; i < n; ++i) y[i] = static_cast<float>(static_cast<int32_t>(q[i]) - zp) * scale;
}

}  // namespace

// Each entry point is compiled for AVX-512, AVX2 and baseline x86-64, chosen at load time
// (target_clones): the loops are the same source, element by element, so every version gives
// the same bits; only the vector width differs.
#define SLMOPS_QDQ_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))

SLMOPS_QDQ_CLONES void quantize_f32_u8(const float* x, int64_t n, float scale, int32_t zp, uint8_t* y) {
  quantize<uint8_t>(x, n, scale, zp, 0, 255, y);
}
SLMOPS_QDQ_CLONES void quantize_f32_s8(const float* x, int64_t n, float scale, int32_t zp, int8_t* y) {
  quantize<int8_t>(x, n, scale, zp, -128, 127, y);
}
SLMOPS_QDQ_CLONES void dequantize_u8_f32(const uint8_t* q, int64_t n, float scale, int32_t zp, float* y) { dequantize(q, n, scale, zp, y); }
SLMOPS_QDQ_CLONES void dequantize_s8_f32(const int8_t* q, int64_t n, float scale, int32_t zp, float* y) { dequantize(q, n, scale, zp, y); }

SLMOPS_QDQ_CLONES void requantize_s32_u8(const int32_t* acc, int64_t n, int32_t bias, float scale, float offset,
                                         int32_t zp, uint8_t* y) {
  requantize<uint8_t>(acc, n, Uniform{bias, scale, offset}, zp, 0, 255, y);
}
SLMOPS_QDQ_CLONES void requantize_s32_s8(const int32_t* acc, int64_t n, int32_t bias, float scale, float offset,
                                         int32_t zp, int8_t* y) {
  requantize<int8_t>(acc, n, Uniform{bias, scale, offset}, zp, -128, 127, y);
}
SLMOPS_QDQ_CLONES void requantize_s32_u8_per_element(const int32_t* acc, int64_t n, const int32_t* bias,
                                                     const float* scale, const float* offset, int32_t zp, uint8_t* y) {
  requantize<uint8_t>(acc, n, PerElement{bias, scale, offset}, zp, 0, 255, y);
}
SLMOPS_QDQ_CLONES void requantize_s32_s8_per_element(const int32_t* acc, int64_t n, const int32_t* bias,
                                                     const float* scale, const float* offset, int32_t zp, int8_t* y) {
  requantize<int8_t>(acc, n, PerElement{bias, scale, offset}, zp, -128, 127, y);
}

SLMOPS_QDQ_CLONES void scale_s32_f32(const int32_t* acc, int64_t n, const int32_t* acc_offset, const float* scale,
                                     bool per_element, const float* bias, float* y) {
  // Two roundings, as the loops this replaces: the product, then the bias added to it. The
  // offset is added to the accumulator first, wrapping as the GEMM's own corrections do.
  auto at = [&](int64_t i) {
    const uint32_t a = static_cast<uint32_t>(acc[i]) + (acc_offset ? static_cast<uint32_t>(acc_offset[i]) : 0u);
    return static_cast<float>(static_cast<int32_t>(a));
  };
  if (per_element)
    for (int64_t i = 0; i < n; ++i) y[i] = at(i) * scale[i];
  else
    for (int64_t i = 0; i < n; ++i) y[i] = at(i) * scale[0];
  if (bias)
    for (int64_t i = 0; i < n; ++i) y[i] += bias[i];
}

SLMOPS_QDQ_CLONES void min_max_f32(const float* x, int64_t n, float& mn, float& mx) {
  // 16 independent lanes (one vector) so that the loop vectorizes without reassociation.
  constexpr int kLanes = 16;
  V16 lo, hi;
  for (int j = 0; j < kLanes; ++j) lo[j] = hi[j] = x[0];
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    V16 v;
    __builtin_memcpy(&v, x + i, sizeof v);
    lo = v < lo ? v : lo;
    hi = hi < v ? v : hi;
  }
  float l0 = lo[0], h0 = hi[0];
  for (; i < n; ++i) {
    l0 = x[i] < l0 ? x[i] : l0;
    h0 = h0 < x[i] ? x[i] : h0;
  }
  mn = l0, mx = h0;
  for (int j = 1; j < kLanes; ++j) {
    mn = lo[j] < mn ? lo[j] : mn;
    mx = mx < hi[j] ? hi[j] : mx;
  }
}

namespace {

// dst[c * ldd + r] = src[r * lds + c] for a 16 x 16 block of bytes: four rounds of unpacks
// (bytes, then pairs, quads and halves of rows), SSE2 only.
inline void transpose16x16_u8(const uint8_t* src, int64_t lds, uint8_t* dst, int64_t ldd) {
  __m128i a[16], b[16];
  for (int r = 0; r < 16; ++r) a[r] = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + r * lds));
  for (int r = 0; r < 16; r += 2) {  // b[r]: columns 0-7 of rows r, r + 1; b[r + 1]: columns 8-15
    b[r] = _mm_unpacklo_epi8(a[r], a[r + 1]);
    b[r + 1] = _mm_unpackhi_epi8(a[r], a[r + 1]);
  }
  for (int r = 0; r < 16; r += 4)  // a[r + j]: columns 4j..4j+3 of rows r..r+3
    for (int h = 0; h < 2; ++h) {
      a[r + 2 * h] = _mm_unpacklo_epi16(b[r + h], b[r + h + 2]);
      a[r + 2 * h + 1] = _mm_unpackhi_epi16(b[r + h], b[r + h + 2]);
    }
  for (int r = 0; r < 16; r += 8)  // b[r + j]: columns 2j, 2j+1 of rows r..r+7
    for (int q = 0; q < 4; ++q) {
      b[r + 2 * q] = _mm_unpacklo_epi32(a[r + q], a[r + q + 4]);
      b[r + 2 * q + 1] = _mm_unpackhi_epi32(a[r + q], a[r + q + 4]);
    }
  for (int j = 0; j < 8; ++j) {  // column 2j and 2j + 1, all 16 rows
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + (2 * j) * ldd), _mm_unpacklo_epi64(b[j], b[j + 8]));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + (2 * j + 1) * ldd), _mm_unpackhi_epi64(b[j], b[j + 8]));
  }
}

}  // namespace

namespace {

// 64 lookups per step: vpermi2b picks from 128 table bytes by the low 7 bits of each index,
// once for each half of the table, and bit 7 chooses between the two.
__attribute__((target("avx512f,avx512bw,avx512vbmi"))) void lookup_u8_vbmi(const uint8_t* table, const uint8_t* in,
                                                                           int64_t n, uint8_t flip, uint8_t* out) {
  const __m512i t0 = _mm512_loadu_si512(table), t1 = _mm512_loadu_si512(table + 64);
  const __m512i t2 = _mm512_loadu_si512(table + 128), t3 = _mm512_loadu_si512(table + 192);
  const __m512i fl = _mm512_set1_epi8(static_cast<char>(flip));
  int64_t i = 0;
  for (; i + 64 <= n; i += 64) {
    const __m512i x = _mm512_xor_si512(_mm512_loadu_si512(in + i), fl);
    const __m512i lo = _mm512_permutex2var_epi8(t0, x, t1), hi = _mm512_permutex2var_epi8(t2, x, t3);
    _mm512_storeu_si512(out + i, _mm512_mask_blend_epi8(_mm512_movepi8_mask(x), lo, hi));
  }
  for (; i < n; ++i) out[i] = table[in[i] ^ flip];
}

}  // namespace

void lookup_u8(const uint8_t* table, const uint8_t* in, int64_t n, uint8_t flip, uint8_t* out) {
  static const bool vbmi = __builtin_cpu_supports("avx512vbmi") && __builtin_cpu_supports("avx512bw");
  if (vbmi) {
    lookup_u8_vbmi(table, in, n, flip, out);
    return;
  }
  for (int64_t i = 0; i < n; ++i) out[i] = table[in[i] ^ flip];
}

void transpose_u8(const uint8_t* src, int64_t rows, int64_t cols, int64_t lds, uint8_t* dst, int64_t ldd) {
  const int64_t r16 = rows / 16 * 16, c16 = cols / 16 * 16;
  for (int64_t c = 0; c < c16; c += 16) {
    for (int64_t r = 0; r < r16; r += 16) transpose16x16_u8(src + r * lds + c, lds, dst + c * ldd + r, ldd);
    for (int64_t cc = c; cc < c + 16; ++cc)
      for (int64_t r = r16; r < rows; ++r) dst[cc * ldd + r] = src[r * lds + cc];
  }
  for (int64_t cc = c16; cc < cols; ++cc)
    for (int64_t r = 0; r < rows; ++r) dst[cc * ldd + r] = src[r * lds + cc];
}

}  // namespace slmops::runtime::kernels
