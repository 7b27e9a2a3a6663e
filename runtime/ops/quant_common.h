// Helpers shared by the quantization ops (quant.cpp, quant_conv.cpp, contrib.cpp): element
// access for the quantized integer types (int4/uint4 packed two per byte, first element in
// the low nibble), ONNX Runtime's rounding and saturation, scale/zero-point decoding and
// numpy-style batched matmul shapes.
#pragma once
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "runtime/ops/common.h"

namespace slmops::runtime::ops::quant {

// Range of a quantized integer type.
struct QRange {
  int32_t lo, hi;
};
inline bool is_quant_int(DType t) {
  switch (t) {
    case DType::UInt8: case DType::Int8: case DType::UInt16: case DType::Int16:
    case DType::UInt4: case DType::Int4: return true;
    default: return false;
  }
}
inline QRange qrange(DType t) {
  switch (t) {
    case DType::UInt8: return {0, 255};
    case DType::Int8: return {-128, 127};
    case DType::UInt16: return {0, 65535};
    case DType::Int16: return {-32768, 32767};
    case DType::UInt4: return {0, 15};
    case DType::Int4: return {-8, 7};
    case DType::Int32: return {std::numeric_limits<int32_t>::min(), std::numeric_limits<int32_t>::max()};
    default: bad_input("{} is not a quantized integer type", ir::dtype_name(t));
  }
}

// Element i of an integer tensor buffer (int4/uint4 packed, low nibble first), as int32.
inline int32_t get_int(DType t, const uint8_t* p, int64_t i) {
  switch (t) {
    case DType::UInt8: return p[i];
    case DType::Int8: return static_cast<int8_t>(p[i]);
    case DType::UInt16: return reinterpret_cast<const uint16_t*>(p)[i];
    case DType::Int16: return reinterpret_cast<const int16_t*>(p)[i];
    case DType::Int32: return reinterpret_cast<const int32_t*>(p)[i];
    case DType::UInt4: return (p[i >> 1] >> ((i & 1) * 4)) & 0xF;
    case DType::Int4: {
      int32_t v = (p[i >> 1] >> ((i & 1) * 4)) & 0xF;
      return v >= 8 ? v - 16 : v;
    }
    default: bad_input("{} is not an integer type here", ir::dtype_name(t));
  }
}

// Stores v (already in range) as element i. Packed types need the buffer zeroed first or
// the other nibble preserved: this keeps the other nibble.
inline void set_int(DType t, uint8_t* p, int64_t i, int32_t v) {
  switch (t) {
    case DType::UInt8: case DType::Int8: p[i] = static_cast<uint8_t>(v); break;
    case DType::UInt16: case DType::Int16: reinterpret_cast<uint16_t*>(p)[i] = static_cast<uint16_t>(v); break;
    case DType::Int32: reinterpret_cast<int32_t*>(p)[i] = v; break;
    case DType::UInt4: case DType::Int4: {
      uint8_t& b = p[i >> 1];
      const int sh = static_cast<int>(i & 1) * 4;
      b = static_cast<uint8_t>((b & ~(0xF << sh)) | ((v & 0xF) << sh));
      break;
    }
    default: bad_input("{} is not an integer type here", ir::dtype_name(t));
  }
}

// ONNX Runtime's (MLAS) QuantizeLinear of one value: x / scale in float, clamped to the range
// shifted by the zero point (NaN goes to the low end, as MAXPS does), rounded half to even,
// plus the zero point.
inline int32_t quantize_value(float x, float scale, int32_t zp, QRange r) {
  float v = x / scale;
  const float lo = static_cast<float>(r.lo - zp), hi = static_cast<float>(r.hi - zp);
  v = v > lo ? v : lo;  // MAXPS(v, lo): lo when v is NaN
  v = v < hi ? v : hi;
  return static_cast<int32_t>(std::nearbyintf(v)) + zp;
}

// MLAS requantization of an int32 accumulator: float(acc) * scale, clamped, rounded half to
// even, plus the zero point.
inline int32_t requantize_value(int32_t acc, float scale, int32_t zp, QRange r) {
  float v = static_cast<float>(acc) * scale;
  const float lo = static_cast<float>(r.lo - zp), hi = static_cast<float>(r.hi - zp);
  v = v > lo ? v : lo;
  v = v < hi ? v : hi;
  return static_cast<int32_t>(std::nearbyintf(v)) + zp;
}

// All values of a float-like tensor (float, float16, bfloat16, double) as float.
std::vector<float> float_values(const Tensor& t);
// All values of an integer tensor (any width, int4 too) as int32.
std::vector<int32_t> int_values(const Tensor& t);

// numpy matmul of A[..., M, K] and B[..., K, N] (1-D operands promoted and their dimension
// dropped from the output), batch dimensions broadcast.
struct MatMulShape {
  int64_t M = 1, N = 1, K = 1;
  std::vector<int64_t> out_dims;
  // Per output matrix: the index of the A matrix and of the B matrix it uses.
  std::vector<int64_t> a_batch, b_batch;
};
MatMulShape matmul_shape(const std::vector<int64_t>& a, const std::vector<int64_t>& b);
// Whether the products of s are one tall product: B is 2-D (the same for every output matrix)
// and A's matrices are consecutive, so the output is A's (batch x M) rows times B.
bool stacks_into_one(const MatMulShape& s, size_t b_rank);

// The node input's value when it is a constant initializer (usable at plan time), as the
// session holds it (aligned; the same buffer the executor feeds at run time); else nullptr.
inline const Tensor* constant_input(const ir::Node& n, size_t i, const PlanContext& pc) {
  if (i >= n.inputs.size() || !n.inputs[i]) return nullptr;
  const ir::Value* v = n.inputs[i];
  if (v->kind != ir::Value::Kind::Initializer || !v->initializer || !v->initializer->has_data()) return nullptr;
  if (v->initializer->storage == Tensor::Storage::Opaque) return nullptr;
  return &pc.constant(v);
}

// The scale and zero point of a QuantizeLinear / DequantizeLinear node when both are constant
// initializers, float32 scales, the zero point given (it names the integer type) and no
// block_size: one value (per tensor) or one per index of `axis`.
struct QdqConstants {
  std::vector<float> scale;
  std::vector<int32_t> zp;
  DType type = DType::Undefined;  // the integer type (the zero point's)
  int64_t axis = 1;               // as the attribute says (not normalized)
  bool per_tensor() const { return scale.size() == 1; }
};
bool qdq_constants(const ir::Node& n, const PlanContext& pc, QdqConstants& out);

// An int32 bias made by DequantizeLinear (group.dq[input]) with a zero point of 0 and the scale
// a_scale * w_scale[c] for every channel c, as ONNX Runtime's QDQ selectors require for
// QLinearConv / QGemm: its values in `bias` (channels of them). False when it does not qualify.
bool qdq_int32_bias(const QdqGroup& g, size_t input, const PlanContext& pc, float a_scale,
                    const std::vector<float>& w_scale, int64_t channels, std::vector<int32_t>& bias);

// ONNX Runtime's DynamicQuantizeLinear parameters (uint8) for n floats.
void dynamic_quantize_params(const float* x, int64_t n, float& scale, uint8_t& zp);

void register_quant_family();

}  // namespace slmops::runtime::ops::quant
