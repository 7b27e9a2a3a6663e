// Per-tensor QuantizeLinear / DequantizeLinear of float32 to and from 8-bit integers, the
// loops the QDQ models run around every float op (ONNX Runtime's MlasQuantizeLinear /
// dequantize). Plain loops written so that the compiler vectorizes them:
//
//   quantize:   y = clamp(rne(x / scale), lo - zp, hi - zp) + zp     (NaN -> lo - zp)
//   dequantize: y = float(int32(q) - zp) * scale
//
// rne (round half to even) is (v + 1.5 * 2^23) - 1.5 * 2^23 in the default rounding mode,
// exact for |v| < 2^22; v is clamped to [-255, 255] first, so this equals nearbyintf(v).
#pragma once
#include <cstdint>

namespace slmops::runtime::kernels {

void quantize_f32_u8(const float* x, int64_t n, float scale, int32_t zp, uint8_t* y);
void quantize_f32_s8(const float* x, int64_t n, float scale, int32_t zp, int8_t* y);
void dequantize_u8_f32(const uint8_t* q, int64_t n, float scale, int32_t zp, float* y);
void dequantize_s8_f32(const int8_t* q, int64_t n, float scale, int32_t zp, float* y);
// Requantization of int32 accumulators (ONNX Runtime's MlasRequantizeOutput, per tensor):
//   y = clamp(rne(float(acc + bias) * scale + offset), lo - zp, hi - zp) + zp   (acc + bias wraps)
// offset carries a float bias (bias / y_scale); with 0 it is MLAS's formula exactly.
void requantize_s32_u8(const int32_t* acc, int64_t n, int32_t bias, float scale, float offset, int32_t zp, uint8_t* y);
void requantize_s32_s8(const int32_t* acc, int64_t n, int32_t bias, float scale, float offset, int32_t zp, int8_t* y);
// The same with one bias, scale and offset per element (a row of per-channel outputs, as the
// channels-last integer convolution makes them).
void requantize_s32_u8_per_element(const int32_t* acc, int64_t n, const int32_t* bias, const float* scale,
                                   const float* offset, int32_t zp, uint8_t* y);
void requantize_s32_s8_per_element(const int32_t* acc, int64_t n, const int32_t* bias, const float* scale,
                                   const float* offset, int32_t zp, int8_t* y);
// int32 accumulators back to float: y = float(acc + acc_offset[i]) * scale (scale[i] per
// element or scale[0]) (+ bias[i] when bias is given; acc_offset may be nullptr; the int32 sum
// wraps), in AVX-512 / AVX2 clones (DynamicQuantizeMatMul's rescale).
void scale_s32_f32(const int32_t* acc, int64_t n, const int32_t* acc_offset, const float* scale, bool per_element,
                   const float* bias, float* y);
// dst[c * ldd + r] = src[r * lds + c] for rows x cols bytes (16 x 16 blocks in SSE2 registers):
// the channels-last integer convolution's layout changes.
void transpose_u8(const uint8_t* src, int64_t rows, int64_t cols, int64_t lds, uint8_t* dst, int64_t ldd);
// out[i] = table[in[i] ^ flip] (a 256-entry byte table; flip 0x80 indexes int8 values as
// value + 128), 64 bytes per step with AVX-512 VBMI.
void lookup_u8(const uint8_t* table, const uint8_t* in, int64_t n, uint8_t flip, uint8_t* out);
// Smallest and largest of x[0..n) with NaN skipped (std::min / std::max order); n >= 1.
void min_max_f32(const float* x, int64_t n, float& mn, float& mx);

}  // namespace slmops::runtime::kernels
