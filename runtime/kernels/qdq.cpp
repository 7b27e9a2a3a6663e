#include "runtime/kernels/qdq.h"

namespace slmops::runtime::kernels {
namespace {

constexpr float kRound = 12582912.0f;  // 1.5 * 2^23

template <typename Q>
void quantize(const float* x, int64_t n, float scale, int32_t zp, int32_t lo_q, int32_t hi_q, Q* y) {
  const float lo = static_cast<float>(lo_q - zp), hi = static_cast<float>(hi_q - zp);
  for (int64_t i = 0; i < n; ++i) {
    float v = x[i] / scale;
    v = v > lo ? v : lo;  // MAXPS(v, lo): lo when v is NaN
    v = v < hi ? v : hi;
    v = (v + kRound) - kRound;
    y[i] = static_cast<Q>(static_cast<int32_t>(v) + zp);
  }
}

template <typename Q>
void dequantize(const Q* q, int64_t n, float scale, int32_t zp, float* y) {
  for (int64_t i = 0; i < n; ++i) y[i] = static_cast<float>(static_cast<int32_t>(q[i]) - zp) * scale;
}

}  // namespace

void quantize_f32_u8(const float* x, int64_t n, float scale, int32_t zp, uint8_t* y) {
  quantize<uint8_t>(x, n, scale, zp, 0, 255, y);
}
void quantize_f32_s8(const float* x, int64_t n, float scale, int32_t zp, int8_t* y) {
  quantize<int8_t>(x, n, scale, zp, -128, 127, y);
}
void dequantize_u8_f32(const uint8_t* q, int64_t n, float scale, int32_t zp, float* y) { dequantize(q, n, scale, zp, y); }
void dequantize_s8_f32(const int8_t* q, int64_t n, float scale, int32_t zp, float* y) { dequantize(q, n, scale, zp, y); }

void min_max_f32(const float* x, int64_t n, float& mn, float& mx) {
  // 16 independent lanes so that the loop vectorizes without reassociation flags.
  constexpr int kLanes = 16;
  float lo[kLanes], hi[kLanes];
  for (int j = 0; j < kLanes; ++j) lo[j] = hi[j] = x[0];
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int j = 0; j < kLanes; ++j) {
      const float v = x[i + j];
      lo[j] = v < lo[j] ? v : lo[j];
      hi[j] = hi[j] < v ? v : hi[j];
    }
  for (; i < n; ++i) {
    lo[0] = x[i] < lo[0] ? x[i] : lo[0];
    hi[0] = hi[0] < x[i] ? x[i] : hi[0];
  }
  mn = lo[0], mx = hi[0];
  for (int j = 1; j < kLanes; ++j) {
    mn = lo[j] < mn ? lo[j] : mn;
    mx = mx < hi[j] ? hi[j] : mx;
  }
}

}  // namespace slmops::runtime::kernels
