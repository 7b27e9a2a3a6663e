#include "runtime/kernels/qdq.h"

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

template <typename Q>
__attribute__((always_inline)) inline void requantize(const int32_t* acc, int64_t n, int32_t bias, float scale,
                                                      float offset, int32_t zp, int32_t lo_q, int32_t hi_q, Q* y) {
  const float lo = static_cast<float>(lo_q - zp), hi = static_cast<float>(hi_q - zp);
  const uint32_t ub = static_cast<uint32_t>(bias);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    using U16 = uint32_t __attribute__((vector_size(64)));
    U16 a;
    __builtin_memcpy(&a, acc + i, sizeof a);
    V16 v = __builtin_convertvector(reinterpret_cast<I16>(a + ub), V16) * scale + offset;
    v = v > lo ? v : lo;
    v = v < hi ? v : hi;
    v = (v + kRound) - kRound;
    const I16 q = __builtin_convertvector(v, I16) + zp;
    const typename Narrow<Q>::type narrow = __builtin_convertvector(q, typename Narrow<Q>::type);
    __builtin_memcpy(y + i, &narrow, sizeof narrow);
  }
  for (; i < n; ++i) {
    float v = static_cast<float>(static_cast<int32_t>(static_cast<uint32_t>(acc[i]) + ub)) * scale + offset;
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
  requantize<uint8_t>(acc, n, bias, scale, offset, zp, 0, 255, y);
}
SLMOPS_QDQ_CLONES void requantize_s32_s8(const int32_t* acc, int64_t n, int32_t bias, float scale, float offset,
                                         int32_t zp, int8_t* y) {
  requantize<int8_t>(acc, n, bias, scale, offset, zp, -128, 127, y);
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

}  // namespace slmops::runtime::kernels
