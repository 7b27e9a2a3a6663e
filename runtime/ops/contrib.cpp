// com.microsoft contrib ops that ONNX Runtime's tools (quantizer, transformers optimizer,
// GenAI model builder) emit:
//   quantized matmuls (quant_contrib.cpp): MatMulNBits, DynamicQuantizeMatMul,
//     MatMulIntegerToFloat; QuantizeLinear / DequantizeLinear (quant.cpp, the 16-bit QDQ form)
//   activations: Gelu, BiasGelu, FastGelu, QuickGelu
//   attention (contrib_attention.cpp): RotaryEmbedding, GroupQueryAttention
//   normalizations: SkipLayerNormalization, SimplifiedLayerNormalization (also in the ONNX
//     domain, as ONNX Runtime accepts it), SkipSimplifiedLayerNormalization
// Float16 and bfloat16 compute through float; outputs keep the input type.
#include <algorithm>
#include <cmath>

#include "runtime/ops/quant_common.h"

namespace slmops::runtime::ops::contrib {
namespace {

// ---- activations -----------------------------------------------------------------------

float gelu_erf(float x) { return 0.5f * x * (1.0f + std::erf(x * static_cast<float>(M_SQRT1_2))); }

float gelu_tanh(float x) {
  constexpr float kAlpha = 0.7978845608028654f;  // sqrt(2 / pi)
  constexpr float kGamma = 0.044715f * kAlpha;
  const float inner = x * (kAlpha + kGamma * x * x);
  return x * (0.5f + 0.5f * std::tanh(inner));
}

// y = f(x + bias) with bias (optional, input 1) broadcast along the last dimension.
template <float (*F)(float)>
void biased_unary(const ir::Node&, OpContext& ctx) {
  const Tensor& x = ctx.in(0);
  const std::vector<float> bias = ctx.has_input(1) ? quant::float_values(ctx.in(1)) : std::vector<float>{};
  const int64_t n = static_cast<int64_t>(x.numel());
  const int64_t bn = static_cast<int64_t>(bias.size());
  if (bn && (x.dims.empty() || x.dims.back() % bn != 0 || bn != x.dims.back()))
    bad_input("bias {} does not match the last dimension of {}", bn, describe(x));
  Tensor& y = ctx.set_out(0, new_tensor(x.dtype, x.dims));
  dispatch<kFloats | kHalfs>(x.dtype, "Gelu", [&](auto tag) {
    using T = decltype(tag);
    const T* in = x.values<T>();
    T* out = y.mutable_values<T>();
    ctx.pool->parallel_for(n, 1 << 13, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        float v = to_f32(in[i]);
        if (bn) v += bias[i % bn];
        if constexpr (std::is_same_v<T, double>) out[i] = F(static_cast<float>(v));
        else out[i] = from_f32<T>(F(v));
      }
    });
  });
}

// QuickGelu: y = x * sigmoid(alpha * x) (alpha 1.702 by default; the SiLU of Llama's MLP
// is alpha 1, which ONNX Runtime's fusion and optimize --target onnxruntime write).
void quick_gelu(const ir::Node& node, OpContext& ctx) {
  const Tensor& x = ctx.in(0);
  const float alpha = node.attr_float("alpha", 1.702f);
  const int64_t n = static_cast<int64_t>(x.numel());
  Tensor& y = ctx.set_out(0, new_tensor(x.dtype, x.dims));
  dispatch<kFloats | kHalfs>(x.dtype, "QuickGelu", [&](auto tag) {
    using T = decltype(tag);
    const T* in = x.values<T>();
    T* out = y.mutable_values<T>();
    ctx.pool->parallel_for(n, 1 << 13, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        const float v = to_f32(in[i]), r = v / (1.0f + std::exp(-alpha * v));
        if constexpr (std::is_same_v<T, double>)
          out[i] = r;
        else
          out[i] = from_f32<T>(r);
      }
    });
  });
}

// ---- normalizations --------------------------------------------------------------------

// Rows of `width` values of x (+ skip, + bias). skip may repeat over leading rows.
struct RowInputs {
  std::vector<float> x;  // the sum, rows * width
  int64_t rows = 0, width = 0;
};

RowInputs sum_inputs(const Tensor& x, const Tensor* skip, const Tensor* bias, int64_t width) {
  RowInputs r;
  r.width = width;
  r.rows = width ? static_cast<int64_t>(x.numel()) / width : 0;
  r.x = quant::float_values(x);
  if (skip) {
    const auto s = quant::float_values(*skip);
    const int64_t sn = static_cast<int64_t>(s.size());
    if (sn == 0 || static_cast<int64_t>(r.x.size()) % sn != 0 || sn % width != 0)
      bad_input("skip {} does not match input {}", describe(*skip), describe(x));
    for (size_t i = 0; i < r.x.size(); ++i) r.x[i] += s[i % sn];
  }
  if (bias) {
    const auto b = quant::float_values(*bias);
    if (static_cast<int64_t>(b.size()) != width) bad_input("bias must have {} values", width);
    for (size_t i = 0; i < r.x.size(); ++i) r.x[i] += b[i % width];
  }
  return r;
}

Tensor float_out(DType dt, const std::vector<int64_t>& dims, const float* v) {
  Tensor t = new_tensor(dt, dims);
  const int64_t n = static_cast<int64_t>(t.numel());
  dispatch<kFloats | kHalfs>(dt, "normalization output", [&](auto tag) {
    using T = decltype(tag);
    T* p = t.mutable_values<T>();
    for (int64_t i = 0; i < n; ++i) {
      if constexpr (std::is_same_v<T, double>) p[i] = v[i];
      else p[i] = from_f32<T>(v[i]);
    }
  });
  return t;
}

// Normalizes rows: LayerNorm (simplified = false) or RMSNorm (true). Writes y, per-row mean
// and 1 / std (or 1 / rms).
void normalize_rows(const RowInputs& in, const std::vector<float>& gamma, const std::vector<float>& beta, float eps,
                    bool simplified, std::vector<float>& y, std::vector<float>& mean, std::vector<float>& inv,
                    ThreadPool* pool) {
  const int64_t w = in.width;
  y.resize(in.x.size());
  mean.assign(static_cast<size_t>(in.rows), 0.f);
  inv.assign(static_cast<size_t>(in.rows), 0.f);
  const int64_t gn = static_cast<int64_t>(gamma.size()), bn = static_cast<int64_t>(beta.size());
  pool->parallel_for(in.rows, std::max<int64_t>(1, 4096 / std::max<int64_t>(w, 1)), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* x = in.x.data() + r * w;
      float* o = y.data() + r * w;
      double m = 0, v = 0;
      if (simplified) {
        for (int64_t i = 0; i < w; ++i) v += static_cast<double>(x[i]) * x[i];
        v /= static_cast<double>(w);
      } else {
        for (int64_t i = 0; i < w; ++i) m += x[i];
        m /= static_cast<double>(w);
        for (int64_t i = 0; i < w; ++i) v += (x[i] - m) * (x[i] - m);
        v /= static_cast<double>(w);
      }
      const float is = static_cast<float>(1.0 / std::sqrt(v + eps));
      mean[r] = static_cast<float>(m);
      inv[r] = is;
      for (int64_t i = 0; i < w; ++i) {
        float val = (x[i] - static_cast<float>(m)) * is;
        if (gn) val *= gamma[i % gn];
        if (bn) val += beta[i % bn];
        o[i] = val;
      }
    }
  });
}

// SkipLayerNormalization(input, skip, gamma, beta?, bias?) -> output, mean?, inv_std_var?,
// input_skip_bias_sum?; SkipSimplifiedLayerNormalization(input, skip, gamma, bias?) -> the same
// outputs (mean unused).
template <bool Simplified>
void skip_norm(const ir::Node& n, OpContext& ctx) {
  const Tensor& x = ctx.in(0);
  if (x.dims.empty()) bad_input("input must have rank >= 1");
  const int64_t w = x.dims.back();
  const Tensor* beta_t = nullptr;
  const Tensor* bias_t = nullptr;
  if constexpr (Simplified) {
    bias_t = ctx.has_input(3) ? &ctx.in(3) : nullptr;
  } else {
    beta_t = ctx.has_input(3) ? &ctx.in(3) : nullptr;
    bias_t = ctx.has_input(4) ? &ctx.in(4) : nullptr;
  }
  const RowInputs in = sum_inputs(x, &ctx.in(1), bias_t, w);
  const auto gamma = quant::float_values(ctx.in(2));
  const std::vector<float> beta = beta_t ? quant::float_values(*beta_t) : std::vector<float>{};
  if (static_cast<int64_t>(gamma.size()) != w) bad_input("gamma must have {} values", w);
  const float eps = n.attr_float("epsilon", 1e-12f);
  std::vector<float> y, mean, inv;
  normalize_rows(in, gamma, beta, eps, Simplified, y, mean, inv, ctx.pool);
  ctx.set_out(0, float_out(x.dtype, x.dims, y.data()));
  std::vector<int64_t> stat_dims = x.dims;
  stat_dims.back() = 1;
  if (ctx.output_count() > 1 && (*ctx.outputs).size() > 1 && n.outputs[1])
    ctx.set_out(1, Tensor::from_values<float>("", DType::Float, stat_dims, mean));
  if (ctx.output_count() > 2 && n.outputs[2]) ctx.set_out(2, Tensor::from_values<float>("", DType::Float, stat_dims, inv));
  if (ctx.output_count() > 3 && n.outputs[3]) ctx.set_out(3, float_out(x.dtype, x.dims, in.x.data()));
}

// SimplifiedLayerNormalization(X, scale) -> Y, inv_std_var?: RMSNorm over the dimensions
// from `axis` on.
void simplified_layer_norm(const ir::Node& n, OpContext& ctx) {
  const Tensor& x = ctx.in(0);
  const int64_t rank = static_cast<int64_t>(x.dims.size());
  const int64_t axis = normalize_axis(n.attr_int("axis", -1), rank);
  const int64_t w = product(x.dims, axis);
  const RowInputs in = sum_inputs(x, nullptr, nullptr, w);
  const auto scale = quant::float_values(ctx.in(1));
  if (scale.empty() || w % static_cast<int64_t>(scale.size()) != 0)
    bad_input("scale {} does not match the normalized size {}", describe(ctx.in(1)), w);
  std::vector<float> y, mean, inv;
  normalize_rows(in, scale, {}, n.attr_float("epsilon", 1e-5f), true, y, mean, inv, ctx.pool);
  ctx.set_out(0, float_out(x.dtype, x.dims, y.data()));
  if (ctx.output_count() > 1 && n.outputs[1]) {
    std::vector<int64_t> stat_dims = x.dims;
    for (int64_t d = axis; d < rank; ++d) stat_dims[d] = 1;
    ctx.set_out(1, Tensor::from_values<float>("", DType::Float, stat_dims, inv));
  }
}

}  // namespace
}  // namespace slmops::runtime::ops::contrib

namespace slmops::runtime {
void register_contrib_attention_ops();  // contrib_attention.cpp
namespace ops::quant {
void register_contrib_quant_ops();  // quant_contrib.cpp
}

void register_contrib_ops() {
  using namespace ops::contrib;
  const char* ms = "com.microsoft";
  ops::quant::register_contrib_quant_ops();
  register_contrib_attention_ops();
  register_kernel(ms, "Gelu", 1, simple_kernel(biased_unary<gelu_erf>));
  register_kernel(ms, "BiasGelu", 1, simple_kernel(biased_unary<gelu_erf>));
  register_kernel(ms, "FastGelu", 1, simple_kernel(biased_unary<gelu_tanh>));
  register_kernel(ms, "QuickGelu", 1, simple_kernel(quick_gelu));
  register_kernel(ms, "SkipLayerNormalization", 1, simple_kernel(skip_norm<false>));
  register_kernel(ms, "SkipSimplifiedLayerNormalization", 1, simple_kernel(skip_norm<true>));
  register_kernel(ms, "SimplifiedLayerNormalization", 1, simple_kernel(simplified_layer_norm));
  register_kernel("", "SimplifiedLayerNormalization", 1, simple_kernel(simplified_layer_norm));
}
}  // namespace slmops::runtime
