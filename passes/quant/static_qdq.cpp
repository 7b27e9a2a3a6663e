// Static quantization (--mode int8-static | int16-static) in ONNX Runtime's QDQ layout, so
// that ORT's QDQ fusions turn DQ -> op -> Q into QLinearConv / QLinearMatMul / QGemm.
//
//   Before:  X ──► Conv(X, W, B) ──► Y ──► ...
//   After:   X ─► Q ─► DQ ─► Conv(·, DQ(W_q int8), DQ(B_q int32)) ─► Q ─► DQ ─► Y ──► ...
//
// Conditions: the weight of Conv / Gemm (B) / MatMul (an initializer input) is a float32
// initializer; activation inputs carried float32 data during calibration. As ORT's QDQ
// quantizer: the inputs and the output of every quantized node get one Q/DQ pair per tensor
// (shared by all its consumers); weights are int8 symmetric ([-127, 127], zero point 0), per
// tensor or per output channel; a 1-D bias is int32 with scale = input_scale * weight_scale
// (the weight scale grows when that scale is too small for int32, as ORT does); a graph
// output keeps its name and type: its producer writes a new value and the DequantizeLinear
// writes the output.
// Optional op types (when the filter allows them): Relu / Clip(min 0) are folded into the
// upstream output quantization (ORT's QDQRemovableActivation), data-movement ops (MaxPool,
// Flatten, Reshape, Transpose, Squeeze, Unsqueeze) reuse their input's scale and zero point
// for their output (QDQDirect8BitOp), any other op gets Q/DQ on its float activations.
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <set>
#include <unordered_map>
#include <unordered_set>

#include <fmt/format.h>

#include "ir/error.h"
#include "passes/quant/calibration.h"
#include "passes/quant/quantize.h"

namespace slmops::passes::quant {
namespace {

// ---- Scales and zero points (ONNX Runtime's quant_utils) -----------------------------------

struct QType {
  ir::DType dt;
  int32_t qmin, qmax;  // the range compute_scale_zp maps onto
  bool symmetric;
};

// Activations: ORT's QUInt8 / QUInt16 asymmetric, or with --symmetric-activations QInt8 /
// QInt16 on the symmetric range [-(2^(b-1) - 1), 2^(b-1) - 1].
QType activation_qtype(bool bits16, bool symmetric) {
  if (bits16) return symmetric ? QType{ir::DType::Int16, -32767, 32767, true} : QType{ir::DType::UInt16, 0, 65535, false};
  return symmetric ? QType{ir::DType::Int8, -127, 127, true} : QType{ir::DType::UInt8, 0, 255, false};
}

struct QParams {
  float scale = 1;
  int32_t zero_point = 0;
};

// compute_scale_zp: the range widened to include 0 (and symmetrised), scale in float64 then
// stored as float32, zero point rounded half to even.
QParams compute_scale_zp(float rmin, float rmax, int32_t qmin, int32_t qmax, bool symmetric) {
  rmin = std::min(rmin, 0.0f);
  rmax = std::max(rmax, 0.0f);
  if (symmetric) {
    const float a = std::max(std::fabs(rmin), std::fabs(rmax));
    rmin = -a;
    rmax = a;
  }
  const double dr = static_cast<double>(rmax - rmin);  // float32 subtraction, as numpy does
  const double scale = dr / (static_cast<double>(qmax) - static_cast<double>(qmin));
  if (!(scale >= static_cast<double>(FLT_MIN))) return {1.0f, 0};
  QParams p;
  p.scale = static_cast<float>(scale);
  const double zp = symmetric ? std::nearbyint((qmin + qmax) / 2.0)
                              : std::nearbyint(static_cast<double>(qmin) - static_cast<double>(rmin) / scale);
  p.zero_point = static_cast<int32_t>(std::clamp(zp, static_cast<double>(qmin), static_cast<double>(qmax)));
  return p;
}

// ---- Weights ------------------------------------------------------------------------------------

// x viewed as [pre, dim, post] around `axis`; axis < 0 means per tensor.
struct AxisView {
  int64_t dim = 1, post = 1;
  int64_t channel(int64_t i) const { return (i / post) % dim; }
};

AxisView axis_view(const std::vector<int64_t>& dims, int64_t axis) {
  AxisView v;
  if (axis < 0) {
    v.post = static_cast<int64_t>(ir::element_count(dims));
    v.dim = 1;
    v.post = std::max<int64_t>(v.post, 1);
    return v;
  }
  v.dim = dims[axis];
  v.post = 1;
  for (size_t d = axis + 1; d < dims.size(); ++d) v.post *= dims[d];
  return v;
}

// int8 symmetric scales ([-127, 127]) per channel of `axis` (one when axis < 0).
std::vector<float> weight_scales(const ir::Tensor& w, int64_t axis) {
  const AxisView v = axis_view(w.dims, axis);
  const int64_t channels = axis < 0 ? 1 : v.dim;
  std::vector<float> lo(channels, std::numeric_limits<float>::infinity()),
      hi(channels, -std::numeric_limits<float>::infinity());
  const float* x = w.values<float>();
  const int64_t n = static_cast<int64_t>(w.numel());
  for (int64_t i = 0; i < n; ++i) {
    const int64_t c = axis < 0 ? 0 : v.channel(i);
    lo[c] = std::min(lo[c], x[i]);
    hi[c] = std::max(hi[c], x[i]);
  }
  std::vector<float> s(channels);
  for (int64_t c = 0; c < channels; ++c) {
    if (lo[c] > hi[c]) lo[c] = hi[c] = 0;
    s[c] = compute_scale_zp(lo[c], hi[c], -127, 127, true).scale;
  }
  return s;
}

// quantize_nparray: float32 x / scale, rounded half to even, clipped to int8.
std::vector<int8_t> quantize_weight(const ir::Tensor& w, int64_t axis, const std::vector<float>& scales) {
  const AxisView v = axis_view(w.dims, axis);
  const float* x = w.values<float>();
  const int64_t n = static_cast<int64_t>(w.numel());
  std::vector<int8_t> q(n);
  for (int64_t i = 0; i < n; ++i) {
    const float s = scales[axis < 0 ? 0 : v.channel(i)];
    const float r = std::nearbyint(x[i] / s);
    q[i] = static_cast<int8_t>(std::clamp(r, -128.0f, 127.0f));
  }
  return q;
}

// ORT's _adjust_weight_scale_for_int32_bias: when input_scale * weight_scale is too small to
// hold the bias in int32, the weight scale grows by the missing ratio.
void adjust_scales_for_bias(std::vector<float>& wscale, float in_scale, const ir::Tensor& bias) {
  const double qrange = 2147483647.0 - (-2147483647.0);
  const float* b = bias.values<float>();
  const int64_t n = static_cast<int64_t>(bias.numel());
  auto adjust = [&](float& ws, double absmax) {
    const double smallest = 1.0001 * (2.0 * absmax) / qrange;
    const double cand = static_cast<double>(in_scale) * static_cast<double>(ws);
    if (cand < smallest && cand > 0.0) ws = static_cast<float>(static_cast<double>(ws) * (smallest / cand));
  };
  if (wscale.size() == 1) {
    double absmax = 0;
    for (int64_t i = 0; i < n; ++i) absmax = std::max(absmax, std::fabs(static_cast<double>(b[i])));
    adjust(wscale[0], absmax);
  } else if (static_cast<int64_t>(wscale.size()) == n) {
    for (int64_t i = 0; i < n; ++i) adjust(wscale[i], std::fabs(static_cast<double>(b[i])));
  }
}

ir::Buffer scalar_int(ir::DType dt, int32_t v) {
  switch (dt) {
    case ir::DType::UInt8: { uint8_t x = static_cast<uint8_t>(v); return ir::Buffer::copy_of(&x, 1); }
    case ir::DType::Int8: { int8_t x = static_cast<int8_t>(v); return ir::Buffer::copy_of(&x, 1); }
    case ir::DType::UInt16: { uint16_t x = static_cast<uint16_t>(v); return ir::Buffer::copy_of(&x, 2); }
    case ir::DType::Int16: { int16_t x = static_cast<int16_t>(v); return ir::Buffer::copy_of(&x, 2); }
    default: { int32_t x = v; return ir::Buffer::copy_of(&x, 4); }
  }
}

// ---- The plan ---------------------------------------------------------------------------------

enum class Role { Weighted, Removable, Shared, Generic };

const std::set<std::string> kWeighted = {"Conv", "MatMul", "Gemm"};
const std::set<std::string> kRemovable = {"Relu", "Clip"};
const std::set<std::string> kShared = {"MaxPool", "Flatten", "Reshape", "Transpose", "Squeeze", "Unsqueeze"};

struct NodePlan {
  ir::Node* node = nullptr;
  Role role = Role::Generic;
  std::vector<ir::Value*> acts;     // activation inputs that get Q/DQ (weighted: by input slot)
  std::vector<ir::Value*> outs;     // outputs that get Q/DQ
  std::vector<int> weight_slots;    // inputs quantized as int8 weights
  int bias_slot = -1;               // input quantized as int32 bias
  int64_t weight_axis = -1;         // per-channel axis of input 1's weight (-1: per tensor)
  std::string skip;                 // why the node stays float ("" when planned)
};

bool is_float_initializer(const ir::Graph& g, const ir::Value* v) { return float_initializer(g, v) != nullptr; }

// A value that may carry a float activation: a graph input or a node output of this graph.
bool is_activation(const ir::Graph& g, const ir::Value* v) {
  if (!v || v->graph != &g) return false;
  if (v->kind == ir::Value::Kind::NodeOutput) return v->producer != nullptr;
  if (v->kind == ir::Value::Kind::Input) return true;
  if (v->kind == ir::Value::Kind::Initializer) {
    for (auto& i : g.inputs)
      if (i.value == v) return true;  // an input with a default: callers may feed it
  }
  return false;
}

bool declared_non_float(const ir::Value* v) {
  return v->type.is_tensor && v->type.elem_code != 0 && v->type.elem() != ir::DType::Float;
}

// Clip whose lower bound is 0 (attribute before opset 11, input after).
bool clip_min_is_zero(const ir::Graph& g, const ir::Node& n) {
  if (const auto* a = n.attr("min")) return a->f == 0.0f;
  if (n.inputs.size() < 2 || !n.inputs[1]) return false;
  const ir::Tensor* t = float_initializer(g, n.inputs[1]);
  return t && t->numel() == 1 && t->values<float>()[0] == 0.0f;
}

// Plans the node `n` allowed by the filter; `has_range` tells whether a tensor can be
// quantized (after calibration; before it, every candidate can).
NodePlan plan_node(const ir::Graph& g, ir::Node* n, const std::function<bool(const ir::Value*)>& has_range) {
  NodePlan p;
  p.node = n;
  if (!ir::is_default_domain(n->domain)) {
    p.skip = "skipped: not an ONNX-domain op";
    return p;
  }
  auto act_ok = [&](const ir::Value* v, const char* what) -> bool {
    if (!is_activation(g, v) || declared_non_float(v)) {
      p.skip = fmt::format("skipped: {} '{}' is not a float activation", what, v ? v->name : "");
      return false;
    }
    if (!has_range(v)) {
      p.skip = fmt::format("skipped: {} '{}' carried no float32 data during calibration", what, v->name);
      return false;
    }
    return true;
  };
  const std::string& op = n->op_type;
  if (kWeighted.count(op)) {
    p.role = Role::Weighted;
    const size_t nin = n->inputs.size();
    if (nin < 2 || !n->inputs[0] || !n->inputs[1]) {
      p.skip = "skipped: missing inputs";
      return p;
    }
    // MatMul and Gemm: constant float inputs are weights, the others activations.
    auto split_ab = [&] {
      for (int k = 0; k < 2; ++k) {
        if (is_float_initializer(g, n->inputs[k])) {
          p.weight_slots.push_back(k);
        } else {
          if (!act_ok(n->inputs[k], k == 0 ? "input A" : "input B")) return false;
          p.acts.push_back(n->inputs[k]);
        }
      }
      if (p.acts.empty()) {
        p.skip = "skipped: both inputs are constants";
        return false;
      }
      return true;
    };
    if (op == "Conv") {
      if (!is_float_initializer(g, n->inputs[1])) {
        p.skip = "skipped: the weight is not a float32 initializer";
        return p;
      }
      if (!act_ok(n->inputs[0], "input")) return p;
      p.acts.push_back(n->inputs[0]);
      p.weight_slots.push_back(1);
      p.weight_axis = 0;
    } else if (op == "MatMul") {
      if (!split_ab()) return p;
      const ir::Tensor* b = float_initializer(g, n->inputs[1]);
      p.weight_axis = b && b->dims.size() >= 2 ? static_cast<int64_t>(b->dims.size()) - 1 : -1;
    } else {  // Gemm
      if (!split_ab()) return p;
      p.weight_axis = n->attr_int("transB", 0) ? 0 : 1;
    }
    // Bias: Conv input 2, Gemm C when 1-D; needs one activation input and one weight.
    const int bslot = 2;
    if (op != "MatMul" && nin > 2 && n->inputs[bslot] && p.acts.size() == 1 && p.weight_slots.size() == 1 &&
        p.weight_slots[0] == 1) {
      const ir::Tensor* b = float_initializer(g, n->inputs[bslot]);
      if (b && b->dims.size() == 1) p.bias_slot = bslot;
    }
    for (ir::Value* o : n->outputs)
      if (o && !declared_non_float(o) && has_range(o)) p.outs.push_back(o);
    return p;
  }
  if (kRemovable.count(op) && (op == "Relu" || clip_min_is_zero(g, *n))) {
    p.role = Role::Removable;
    if (!n->inputs.empty() && act_ok(n->inputs[0], "input")) p.acts.push_back(n->inputs[0]);
    if (!p.skip.empty()) return p;
    if (n->outputs.empty() || !n->outputs[0] || !has_range(n->outputs[0])) {
      p.skip = "skipped: output carried no float32 data during calibration";
      return p;
    }
    p.outs.push_back(n->outputs[0]);
    return p;
  }
  if (kShared.count(op)) {
    p.role = Role::Shared;
    if (n->inputs.empty() || !act_ok(n->inputs[0], "input")) return p;
    for (size_t k = 1; k < n->outputs.size(); ++k)
      if (n->outputs[k] && (!n->outputs[k]->consumers.empty() || n->outputs[k]->is_graph_output())) {
        p.skip = "skipped: a second output (indices) is used";
        return p;
      }
    p.acts.push_back(n->inputs[0]);
    if (!n->outputs.empty() && n->outputs[0]) p.outs.push_back(n->outputs[0]);
    return p;
  }
  p.role = Role::Generic;
  for (ir::Value* v : n->inputs) {
    if (!v || !is_activation(g, v) || declared_non_float(v)) continue;
    if (has_range(v)) p.acts.push_back(v);
  }
  for (ir::Value* o : n->outputs)
    if (o && !declared_non_float(o) && has_range(o)) p.outs.push_back(o);
  if (p.acts.empty() && p.outs.empty()) p.skip = "skipped: no float activations";
  return p;
}

// ---- The rewrite ------------------------------------------------------------------------------

class QdqRewriter {
 public:
  QdqRewriter(ir::Graph& g, QType act) : g_(g), act_(act) {}

  ir::Value* scalar_float(const std::string& prefix, float v) {
    return add_initializer(g_, prefix, ir::DType::Float, {}, ir::Buffer::copy_of(&v, sizeof v));
  }

  // Inserts Q -> DQ on the activation `x`; every reader of x then reads the DQ output.
  // A node output keeps its Value (name, type, graph-output entry): the producer writes a new
  // value instead and the DequantizeLinear writes x.
  void insert(ir::Value* x, const QParams& p) {
    ir::Value* s = scalar_float(x->name + "_scale", p.scale);
    ir::Value* z = add_initializer(g_, x->name + "_zero_point", act_.dt, {}, scalar_int(act_.dt, p.zero_point));
    if (x->kind == ir::Value::Kind::NodeOutput && x->producer) {
      ir::Node* producer = x->producer;
      ir::Value* pre = g_.new_value(g_.unique_name(x->name + "_QuantizeLinear_Input"), ir::Value::Kind::NodeOutput);
      pre->type = x->type;
      ir::move_output(producer, x, pre);
      ir::Node* q = g_.add_node("QuantizeLinear", {pre, s, z}, {g_.unique_name(x->name + "_quantized")}, {},
                                x->name + "_QuantizeLinear");
      ir::Node* dq = g_.add_node("DequantizeLinear", {q->outputs[0], s, z}, {""}, {}, x->name + "_DequantizeLinear");
      ir::move_output(dq, dq->outputs[0], x);
    } else {
      ir::Node* q = g_.add_node("QuantizeLinear", {x, s, z}, {g_.unique_name(x->name + "_quantized")}, {},
                                x->name + "_QuantizeLinear");
      ir::Node* dq = g_.add_node("DequantizeLinear", {q->outputs[0], s, z},
                                 {g_.unique_name(x->name + "_DequantizeLinear_Output")}, {}, x->name + "_DequantizeLinear");
      std::vector<ir::Node*> readers = x->consumers;
      std::sort(readers.begin(), readers.end());
      readers.erase(std::unique(readers.begin(), readers.end()), readers.end());
      for (ir::Node* c : readers) {
        if (c == q) continue;
        for (size_t k = 0; k < c->inputs.size(); ++k)
          if (c->inputs[k] == x) c->set_input(k, dq->outputs[0]);
      }
    }
  }

  struct Weight {
    ir::Value* dq_out = nullptr;
    std::vector<float> scales;
    int64_t axis = -1;
    int64_t bytes = 0;
  };

  // int8 symmetric weight behind a DequantizeLinear (shared when two nodes read one weight).
  const Weight& weight(ir::Value* w, int64_t axis, const std::vector<float>* scales_override) {
    auto key = std::make_pair(w, axis);
    auto it = weights_.find(key);
    if (it != weights_.end()) return it->second;
    const ir::Tensor& t = *float_initializer(g_, w);
    Weight r;
    r.axis = axis;
    r.scales = scales_override ? *scales_override : weight_scales(t, axis);
    std::vector<int8_t> q = quantize_weight(t, axis, r.scales);
    ir::Value* qv = add_initializer(g_, w->name + "_quantized", ir::DType::Int8, t.dims,
                                    ir::Buffer::copy_of(q.data(), q.size()));
    const int64_t c = static_cast<int64_t>(r.scales.size());
    std::vector<int64_t> sdims = axis < 0 ? std::vector<int64_t>{} : std::vector<int64_t>{c};
    ir::Value* sv = add_initializer(g_, w->name + "_scale", ir::DType::Float, sdims,
                                    ir::Buffer::copy_of(r.scales.data(), r.scales.size() * sizeof(float)));
    std::vector<int8_t> zeros(c, 0);
    ir::Value* zv = add_initializer(g_, w->name + "_zero_point", ir::DType::Int8, sdims,
                                    ir::Buffer::copy_of(zeros.data(), zeros.size()));
    std::vector<ir::Attribute> attrs;
    if (axis >= 0) attrs.push_back(ir::Attribute::make_int("axis", axis));
    ir::Node* dq = g_.add_node("DequantizeLinear", {qv, sv, zv}, {g_.unique_name(w->name + "_DequantizeLinear_Output")},
                               std::move(attrs), w->name + "_DequantizeLinear");
    r.dq_out = dq->outputs[0];
    r.bytes = static_cast<int64_t>(q.size()) + c * 5;
    return weights_.emplace(key, std::move(r)).first->second;
  }

  // int32 bias: scale = input_scale * weight_scale (float32 product), zero point 0.
  ir::Value* bias(ir::Value* b, float in_scale, const Weight& w, int64_t& bytes) {
    const ir::Tensor& t = *float_initializer(g_, b);
    const int64_t n = static_cast<int64_t>(t.numel());
    const bool per_channel = w.scales.size() > 1;
    if (per_channel && static_cast<int64_t>(w.scales.size()) != n)
      bad_input("bias '{}' has {} values but the weight has {} output channels", b->name, n, w.scales.size());
    std::vector<float> bscale(per_channel ? n : 1);
    for (size_t i = 0; i < bscale.size(); ++i) bscale[i] = in_scale * w.scales[per_channel ? i : 0];
    std::vector<int32_t> q(n);
    const float* x = t.values<float>();
    for (int64_t i = 0; i < n; ++i) {
      const double s = bscale[per_channel ? i : 0];
      double r = s > 0 ? std::nearbyint(static_cast<double>(x[i]) / s) : 0.0;
      r = std::clamp(r, -2147483648.0, 2147483647.0);
      q[i] = static_cast<int32_t>(r);
    }
    ir::Value* qv = add_initializer(g_, b->name + "_quantized", ir::DType::Int32, t.dims,
                                    ir::Buffer::copy_of(q.data(), q.size() * sizeof(int32_t)));
    std::vector<int64_t> sdims = per_channel ? std::vector<int64_t>{n} : std::vector<int64_t>{};
    ir::Value* sv = add_initializer(g_, b->name + "_scale", ir::DType::Float, sdims,
                                    ir::Buffer::copy_of(bscale.data(), bscale.size() * sizeof(float)));
    std::vector<int32_t> zeros(bscale.size(), 0);
    ir::Value* zv = add_initializer(g_, b->name + "_zero_point", ir::DType::Int32, sdims,
                                    ir::Buffer::copy_of(zeros.data(), zeros.size() * sizeof(int32_t)));
    std::vector<ir::Attribute> attrs;
    if (per_channel) attrs.push_back(ir::Attribute::make_int("axis", 0));
    // A bias shared by several nodes (through Identity) gets one DequantizeLinear per node (its
    // scale follows each node's input and weight scales); node names must stay unique.
    const int use = bias_uses_[b]++;
    ir::Node* dq =
        g_.add_node("DequantizeLinear", {qv, sv, zv}, {g_.unique_name(b->name + "_DequantizeLinear_Output")},
                    std::move(attrs), b->name + "_DequantizeLinear" + (use > 0 ? "_" + std::to_string(use) : ""));
    bytes = n * 4 + static_cast<int64_t>(bscale.size()) * 8;
    return dq->outputs[0];
  }

 private:
  ir::Graph& g_;
  QType act_;
  std::map<std::pair<ir::Value*, int64_t>, Weight> weights_;
  std::map<const ir::Value*, int> bias_uses_;
};

std::string type_label(ir::DType dt) { return std::string(ir::dtype_name(dt)); }

// PyTorch's exporter shares identical constants through Identity nodes: the (zero) biases of
// the BatchNorm-folded convolutions of a ResNet read Identity(one initializer). Behind the
// Identity a bias is not an initializer, so it stayed float and the integer Conv kernel had to
// add it in float after the rescale. Weighted nodes read such an initializer directly (the
// Identity goes when nothing else reads it), so their biases become int32 as ORT's quantizer
// makes them. Returns the number of inputs rewired.
int64_t bypass_constant_identities(ir::Graph& g) {
  int64_t rewired = 0;
  std::vector<ir::Node*> identities;
  for (const auto& n : g.nodes())
    if (n->op_type == "Identity" && ir::is_default_domain(n->domain) && n->inputs.size() == 1 &&
        n->outputs.size() == 1 && n->outputs[0] && !n->outputs[0]->is_graph_output() &&
        float_initializer(g, n->inputs[0]))
      identities.push_back(n.get());
  for (ir::Node* id : identities) {
    ir::Value* out = id->outputs[0];
    const std::vector<ir::Node*> readers(out->consumers.begin(), out->consumers.end());
    for (ir::Node* r : readers) {
      if (!kWeighted.count(r->op_type) || !ir::is_default_domain(r->domain)) continue;
      for (size_t i = 1; i < r->inputs.size(); ++i)
        if (r->inputs[i] == out) {
          r->set_input(i, id->inputs[0]);
          ++rewired;
        }
    }
    if (out->consumers.empty()) g.remove_node(id);
  }
  return rewired;
}

}  // namespace

void quantize_static(ir::Model& m, const QuantizeOptions& o, const NodeFilter& f, const FeedSource& calib,
                     int threads, QuantReport& report) {
  const bool bits16 = o.mode == "int16-static";
  if (!bits16 && o.mode != "int8-static") bad_input("quantize_static: mode '{}' is not a static mode", o.mode);
  const QType act = activation_qtype(bits16, o.symmetric_activations);
  ir::Graph& g = *m.graph;
  const int64_t rewired = bypass_constant_identities(g);

  CalibConfig cfg;
  cfg.method = parse_calib_method(o.calib_method);
  cfg.percentile = o.calib_percentile;
  cfg.samples = o.calib_samples;

  // 1. Plan every node the filter allows, assuming every tensor calibrates.
  std::vector<ir::Node*> order = g.topological_order();
  std::vector<ir::Node*> allowed;
  for (ir::Node* n : order)
    if (f.allows(*n)) allowed.push_back(n);
  std::vector<const ir::Value*> wanted;
  std::unordered_set<const ir::Value*> wanted_set;
  auto want = [&](const ir::Value* v) {
    if (wanted_set.insert(v).second) wanted.push_back(v);
  };
  for (ir::Node* n : allowed) {
    NodePlan p = plan_node(g, n, [](const ir::Value*) { return true; });
    if (!p.skip.empty()) continue;
    for (ir::Value* v : p.acts) want(v);
    if (p.role != Role::Shared)
      for (ir::Value* v : p.outs) want(v);
  }

  // 2. Calibrate those tensors on the float model.
  CalibrationResult cal;
  if (!wanted.empty()) cal = calibrate(m, wanted, calib, cfg, threads);
  auto has_range = [&](const ir::Value* v) { return cal.ranges.count(v) > 0; };

  // 3. Final plan: which tensors get which parameters.
  std::vector<NodePlan> plans;
  for (ir::Node* n : allowed) plans.push_back(plan_node(g, n, has_range));
  std::unordered_map<const ir::Value*, QParams> params;  // by the original tensor
  std::vector<ir::Value*> qdq_order;
  auto own = [&](ir::Value* v) {
    if (params.count(v)) return;
    const Range r = cal.ranges.at(v);
    params[v] = compute_scale_zp(r.lo, r.hi, act.qmin, act.qmax, act.symmetric);
    qdq_order.push_back(v);
  };
  std::unordered_map<ir::Node*, ir::Value*> folded;  // removed Relu/Clip -> upstream output
  for (NodePlan& p : plans) {
    if (!p.skip.empty()) continue;
    if (p.role == Role::Removable) {
      ir::Value* x = p.acts[0];
      ir::Value* y = p.outs[0];
      const bool foldable = !act.symmetric && params.count(x) && x->kind == ir::Value::Kind::NodeOutput &&
                            x->producer && x->consumers.size() == 1 && !x->is_graph_output() && !y->is_graph_output();
      if (foldable) {
        // ORT's try_replacing_upstream_output: the producer writes y directly and its output
        // quantization (zero point at qmin for the range [0, max]) does the clamping.
        qdq_order.erase(std::find(qdq_order.begin(), qdq_order.end(), x));
        params.erase(x);
        own(y);
        folded[p.node] = x;
        continue;
      }
      own(x);
      own(y);
      continue;
    }
    if (p.role == Role::Shared) {
      ir::Value* x = p.acts[0];
      own(x);
      for (ir::Value* y : p.outs)
        if (!params.count(y)) {
          params[y] = params[x];
          qdq_order.push_back(y);
        }
      continue;
    }
    for (ir::Value* v : p.acts) own(v);
    for (ir::Value* v : p.outs) own(v);
  }

  // 4. Rewrite. Opsets first: per-axis DequantizeLinear needs 13, 16-bit QDQ needs 21.
  // Folded nodes are deleted below: keep every planned node's name and type for the report.
  std::vector<std::pair<std::string, std::string>> ids;
  for (const NodePlan& p : plans) ids.emplace_back(p.node->name, p.node->op_type);
  require_opset(m, "", bits16 ? 21 : 13);
  QdqRewriter rw(g, act);
  for (auto& [node, x] : folded) {
    ir::Value* y = node->outputs[0];
    ir::Node* producer = x->producer;
    g.remove_node(node);
    ir::move_output(producer, x, y);
  }
  for (ir::Value* v : qdq_order) rw.insert(v, params.at(v));

  int64_t nodes_done = 0;
  for (size_t pi = 0; pi < plans.size(); ++pi) {
    NodePlan& p = plans[pi];
    NodeReport nr;
    nr.node = ids[pi].first;
    nr.op_type = ids[pi].second;
    if (!p.skip.empty()) {
      nr.how = p.skip;
      report.nodes.push_back(std::move(nr));
      continue;
    }
    ++nodes_done;
    const std::string at = type_label(act.dt) + (act.symmetric ? " symmetric" : " asymmetric");
    if (p.role == Role::Removable) {
      nr.how = folded.count(p.node) ? fmt::format("folded into the {} output quantization of its input", at)
                                    : fmt::format("QDQ {} activations", at);
      report.nodes.push_back(std::move(nr));
      continue;
    }
    if (p.role == Role::Shared) {
      nr.how = fmt::format("QDQ {} activations, output shares the input's scale", at);
      report.nodes.push_back(std::move(nr));
      continue;
    }
    if (p.role == Role::Generic) {
      nr.how = fmt::format("QDQ {} activations", at);
      report.nodes.push_back(std::move(nr));
      continue;
    }
    // Weighted: weights to int8 behind DequantizeLinear, bias to int32.
    ir::Node* n = p.node;
    const float in_scale = p.acts.size() == 1 ? params.at(p.acts[0]).scale : 0.0f;
    std::string wdesc;
    bool has_bias = false;
    for (int slot : p.weight_slots) {
      ir::Value* w = n->inputs[slot];
      const int64_t axis = o.per_channel && slot == 1 ? p.weight_axis : -1;
      const bool with_bias = p.bias_slot >= 0 && slot == 1;
      std::vector<float> scales = weight_scales(*float_initializer(g, w), axis);
      if (with_bias) adjust_scales_for_bias(scales, in_scale, *float_initializer(g, n->inputs[p.bias_slot]));
      nr.bytes_before += static_cast<int64_t>(float_initializer(g, w)->nbytes());
      const auto& W = rw.weight(w, axis, &scales);
      nr.bytes_after += W.bytes;
      n->set_input(slot, W.dq_out);
      ir::erase_initializer(g, w);
      wdesc = axis < 0 ? "int8 symmetric weights per tensor" : fmt::format("int8 symmetric weights per channel (axis {})", axis);
      if (with_bias) {
        ir::Value* b = n->inputs[p.bias_slot];
        nr.bytes_before += static_cast<int64_t>(float_initializer(g, b)->nbytes());
        int64_t bytes = 0;
        ir::Value* bq = rw.bias(b, in_scale, W, bytes);
        nr.bytes_after += bytes;
        n->set_input(p.bias_slot, bq);
        ir::erase_initializer(g, b);
        has_bias = true;
      }
    }
    nr.how = fmt::format("QDQ {} activations, {}{}", at, wdesc, has_bias ? ", int32 bias" : "");
    report.nodes.push_back(std::move(nr));
  }

  // Tidy: drop declarations of values a folded activation removed, restore a topological
  // node order (new nodes were appended), forget dead values.
  ir::prune_value_info(g);
  ir::sort_nodes(g);
  g.compact_values();

  if (rewired > 0) report.extra["identity_constants_bypassed"] = rewired;
  report.extra["activation_type"] = type_label(act.dt);
  report.extra["activation_symmetric"] = act.symmetric;
  report.extra["weight_type"] = "int8";
  report.extra["per_channel"] = o.per_channel;
  report.extra["calibration"] = {{"method", calib_method_name(cfg.method)},
                                 {"samples", cal.samples},
                                 {"batches", cal.batches},
                                 {"passes", cal.passes},
                                 {"tensors_calibrated", static_cast<int64_t>(cal.ranges.size())},
                                 {"tensors_quantized", static_cast<int64_t>(qdq_order.size())},
                                 {"seconds", cal.seconds}};
  if (cfg.method == CalibMethod::Entropy) {
    report.extra["calibration"]["bins"] = cfg.entropy_bins;
    report.extra["calibration"]["quantized_bins"] = cfg.entropy_quantized_bins;
  }
  if (cfg.method == CalibMethod::Percentile) {
    report.extra["calibration"]["bins"] = cfg.percentile_bins;
    report.extra["calibration"]["percentile"] = cfg.percentile;
  }
  (void)nodes_done;
}

}  // namespace slmops::passes::quant
