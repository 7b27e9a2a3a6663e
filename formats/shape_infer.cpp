// Shape inference over the IR: the graph is written into an onnx::ModelProto without weight
// bytes, libonnx's InferShapes types it, and every value's type is copied back.
#include "formats/shape_infer.h"

#include <onnx/defs/schema.h>
#include <onnx/defs/shape_inference.h>
#include <onnx/defs/tensor_proto_util.h>
#include <onnx/onnx_pb.h>
#include <onnx/shape_inference/implementation.h>

#include <algorithm>
#include <list>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "formats/onnx_detail.h"

namespace onnx {
// libonnx's MatMul rule (onnx/defs/math/defs.cc): exported by libonnx.so, not declared in
// its installed headers. numpy.matmul shapes of inputs a and b into output 0.
void matmulShapeInference(InferenceContext& ctx, int input1Idx, int input2Idx);
}  // namespace onnx

namespace slmops::formats {
namespace {

// Initializers and tensor attributes up to this many elements keep their values: shape
// inference reads constant inputs (Reshape's shape, Slice's starts, ...), which are small.
// Larger ones go in as dtype + dims only.
constexpr uint64_t kKeepDataElements = 1024;

// ---------------------------------------------------------------------------------------------
// com.microsoft schemas (ONNX Runtime's contrib ops that slmops writes or runs), with the
// shape rules of ORT's docs/ContribOperators.md. libonnx knows none of them.

using onnx::InferenceContext;
using onnx::OpSchema;

// Output 0 of a MatMul-like op: numpy matmul of inputs 0 and `b` (when both shapes are known).
void matmul_output(InferenceContext& ctx, int b) {
  if (onnx::hasInputShape(ctx, 0) && onnx::hasInputShape(ctx, b)) onnx::matmulShapeInference(ctx, 0, b);
}

// Output `out` has input 0's element type and shape.
void like_input0(InferenceContext& ctx, size_t out) {
  onnx::propagateElemTypeFromInputToOutput(ctx, 0, out);
  if (onnx::hasInputShape(ctx, 0)) onnx::propagateShapeFromInputToOutput(ctx, 0, out);
}

const std::vector<std::string> kFloats = {"tensor(float)", "tensor(float16)", "tensor(bfloat16)", "tensor(double)"};
const std::vector<std::string> kInt8s = {"tensor(int8)", "tensor(uint8)"};

void register_contrib_schemas() {
  const char* ms = "com.microsoft";
  auto& ranges = onnx::OpSchemaRegistry::DomainToVersionRange::Instance();
  if (!ranges.Map().count(ms)) ranges.AddDomainToVersion(ms, 1, 1);
  auto reg = [](OpSchema s) { onnx::RegisterSchema(std::move(s)); };

  // MatMulNBits: Y[..., N] = A[..., K] x dequant(B); B [N, K/block_size, blob bytes].
  reg(OpSchema()
          .SetName("MatMulNBits").SetDomain(ms).SinceVersion(1)
          .Attr("K", "", onnx::AttributeProto::INT)
          .Attr("N", "", onnx::AttributeProto::INT)
          .Attr("bits", "", onnx::AttributeProto::INT, int64_t{4})
          .Attr("block_size", "", onnx::AttributeProto::INT)
          .Attr("accuracy_level", "", onnx::AttributeProto::INT, int64_t{0})
          .Input(0, "A", "", "T1")
          .Input(1, "B", "", "T2")
          .Input(2, "scales", "", "T1")
          .Input(3, "zero_points", "", "T3", OpSchema::Optional)
          .Input(4, "g_idx", "", "T4", OpSchema::Optional)
          .Input(5, "bias", "", "T1", OpSchema::Optional)
          .Output(0, "Y", "", "T1")
          .TypeConstraint("T1", kFloats, "")
          .TypeConstraint("T2", {"tensor(uint8)", "tensor(int32)"}, "")
          .TypeConstraint("T3", {"tensor(uint8)", "tensor(int32)", "tensor(float16)", "tensor(float)"}, "")
          .TypeConstraint("T4", {"tensor(int32)"}, "")
          .TypeAndShapeInferenceFunction([](InferenceContext& ctx) {
            onnx::propagateElemTypeFromInputToOutput(ctx, 0, 0);
            if (!onnx::hasInputShape(ctx, 0)) return;
            const auto& a = onnx::getInputShape(ctx, 0);
            if (a.dim_size() == 0) fail_shape_inference("MatMulNBits: A is a scalar");
            onnx::TensorShapeProto y;
            for (int i = 0; i + 1 < a.dim_size(); ++i) *y.add_dim() = a.dim(i);
            y.add_dim()->set_dim_value(onnx::getAttribute(ctx, "N", int64_t{-1}));
            if (y.dim(y.dim_size() - 1).dim_value() < 0) fail_shape_inference("MatMulNBits: no N attribute");
            onnx::updateOutputShape(ctx, 0, y);
          }));

  // DynamicQuantizeMatMul: Y (float) = A (float) x dequant(B); shapes as MatMul.
  reg(OpSchema()
          .SetName("DynamicQuantizeMatMul").SetDomain(ms).SinceVersion(1)
          .Input(0, "A", "", "T1")
          .Input(1, "B", "", "T2")
          .Input(2, "b_scale", "", "T1")
          .Input(3, "b_zero_point", "", "T2", OpSchema::Optional)
          .Input(4, "bias", "", "T1", OpSchema::Optional)
          .Output(0, "Y", "", "T1")
          .TypeConstraint("T1", {"tensor(float)"}, "")
          .TypeConstraint("T2", kInt8s, "")
          .TypeAndShapeInferenceFunction([](InferenceContext& ctx) {
            onnx::propagateElemTypeFromInputToOutput(ctx, 0, 0);
            matmul_output(ctx, 1);
          }));

  // MatMulIntegerToFloat: Y (a_scale's type) = (A - a_zp) x (B - b_zp) * a_scale * b_scale.
  reg(OpSchema()
          .SetName("MatMulIntegerToFloat").SetDomain(ms).SinceVersion(1)
          .Input(0, "A", "", "T1")
          .Input(1, "B", "", "T2")
          .Input(2, "a_scale", "", "T3")
          .Input(3, "b_scale", "", "T3")
          .Input(4, "a_zero_point", "", "T1", OpSchema::Optional)
          .Input(5, "b_zero_point", "", "T2", OpSchema::Optional)
          .Input(6, "bias", "", "T3", OpSchema::Optional)
          .Output(0, "Y", "", "T3")
          .TypeConstraint("T1", kInt8s, "")
          .TypeConstraint("T2", kInt8s, "")
          .TypeConstraint("T3", kFloats, "")
          .TypeAndShapeInferenceFunction([](InferenceContext& ctx) {
            onnx::propagateElemTypeFromInputToOutput(ctx, 2, 0);
            matmul_output(ctx, 1);
          }));

  // Element-wise activations: Y like X.
  for (const char* name : {"Gelu", "FastGelu", "BiasGelu"}) {
    OpSchema s;
    s.SetName(name).SetDomain(ms).SinceVersion(1)
        .Input(0, "X", "", "T")
        .Output(0, "Y", "", "T")
        .TypeConstraint("T", kFloats, "")
        .TypeAndShapeInferenceFunction([](InferenceContext& ctx) { like_input0(ctx, 0); });
    if (std::string(name) != "Gelu") s.Input(1, "bias", "", "T", OpSchema::Optional);
    reg(std::move(s));
  }

  // Skip(Simplified)LayerNormalization: output and input_skip_bias_sum like input; mean and
  // inv_std_var (training outputs) are not typed.
  for (bool simplified : {false, true}) {
    OpSchema s;
    s.SetName(simplified ? "SkipSimplifiedLayerNormalization" : "SkipLayerNormalization").SetDomain(ms)
        .SinceVersion(1)
        .Attr("epsilon", "", onnx::AttributeProto::FLOAT, 1e-5f)
        .Input(0, "input", "", "T")
        .Input(1, "skip", "", "T")
        .Input(2, "gamma", "", "T");
    if (simplified) {
      s.Input(3, "bias", "", "T", OpSchema::Optional);
    } else {
      s.Input(3, "beta", "", "T", OpSchema::Optional).Input(4, "bias", "", "T", OpSchema::Optional);
    }
    s.Output(0, "output", "", "T")
        .Output(1, "mean", "", "U", OpSchema::Optional)
        .Output(2, "inv_std_var", "", "U", OpSchema::Optional)
        .Output(3, "input_skip_bias_sum", "", "T", OpSchema::Optional)
        .TypeConstraint("T", kFloats, "")
        .TypeConstraint("U", {"tensor(float)"}, "")
        .TypeAndShapeInferenceFunction([](InferenceContext& ctx) {
          like_input0(ctx, 0);
          if (ctx.getNumOutputs() > 3) like_input0(ctx, 3);
        });
    reg(std::move(s));
  }

  // RotaryEmbedding: output like input.
  reg(OpSchema()
          .SetName("RotaryEmbedding")
          .SetDomain(ms)
          .SinceVersion(1)
          .Attr("interleaved", "", onnx::AttributeProto::INT, int64_t{0})
          .Attr("is_packed_batching", "", onnx::AttributeProto::INT, int64_t{0})
          .Attr("num_heads", "", onnx::AttributeProto::INT, int64_t{0})
          .Attr("rotary_embedding_dim", "", onnx::AttributeProto::INT, int64_t{0})
          .Attr("scale", "", onnx::AttributeProto::FLOAT, 1.0f)
          .Input(0, "input", "", "T")
          .Input(1, "position_ids", "", "M")
          .Input(2, "cos_cache", "", "T")
          .Input(3, "sin_cache", "", "T")
          .Output(0, "output", "", "T")
          .TypeConstraint("T", {"tensor(float)", "tensor(float16)", "tensor(bfloat16)"}, "")
          .TypeConstraint("M", {"tensor(int64)"}, "")
          .TypeAndShapeInferenceFunction([](InferenceContext& ctx) { like_input0(ctx, 0); }));

  // GroupQueryAttention: output [batch, seq, num_heads * head] like query (unpacked);
  // present_key/value [batch, kv_heads, ?, head] typed like query.
  reg(OpSchema()
          .SetName("GroupQueryAttention")
          .SetDomain(ms)
          .SinceVersion(1)
          .Attr("num_heads", "", onnx::AttributeProto::INT)
          .Attr("kv_num_heads", "", onnx::AttributeProto::INT)
          .Attr("scale", "", onnx::AttributeProto::FLOAT, 0.0f)
          .Attr("softcap", "", onnx::AttributeProto::FLOAT, 0.0f)
          .Attr("local_window_size", "", onnx::AttributeProto::INT, int64_t{-1})
          .Attr("do_rotary", "", onnx::AttributeProto::INT, int64_t{0})
          .Attr("rotary_interleaved", "", onnx::AttributeProto::INT, int64_t{0})
          .Attr("smooth_softmax", "", onnx::AttributeProto::INT, int64_t{0})
          .Attr("qk_output", "", onnx::AttributeProto::INT, int64_t{0})
          .Input(0, "query", "", "T")
          .Input(1, "key", "", "T", OpSchema::Optional)
          .Input(2, "value", "", "T", OpSchema::Optional)
          .Input(3, "past_key", "", "T", OpSchema::Optional)
          .Input(4, "past_value", "", "T", OpSchema::Optional)
          .Input(5, "seqlens_k", "", "M")
          .Input(6, "total_sequence_length", "", "M")
          .Input(7, "cos_cache", "", "T", OpSchema::Optional)
          .Input(8, "sin_cache", "", "T", OpSchema::Optional)
          .Input(9, "position_ids", "", "P", OpSchema::Optional)
          .Input(10, "attention_bias", "", "T", OpSchema::Optional)
          .Input(11, "head_sink", "", "T", OpSchema::Optional)
          .Output(0, "output", "", "T")
          .Output(1, "present_key", "", "T")
          .Output(2, "present_value", "", "T")
          .Output(3, "output_qk", "", "T", OpSchema::Optional)
          .TypeConstraint("T", {"tensor(float)", "tensor(float16)", "tensor(bfloat16)"}, "")
          .TypeConstraint("M", {"tensor(int32)"}, "")
          .TypeConstraint("P", {"tensor(int64)"}, "")
          .TypeAndShapeInferenceFunction([](InferenceContext& ctx) {
            for (size_t o = 0; o < 3 && o < ctx.getNumOutputs(); ++o)
              onnx::propagateElemTypeFromInputToOutput(ctx, 0, o);
            if (ctx.getNumInputs() > 1 && ctx.getInputType(1) && onnx::hasInputShape(ctx, 0))
              onnx::propagateShapeFromInputToOutput(ctx, 0, 0);  // unpacked: the query's shape
            if (ctx.getNumInputs() > 3 && ctx.getInputType(3) && onnx::hasInputShape(ctx, 3)) {
              const auto& past = onnx::getInputShape(ctx, 3);
              if (past.dim_size() != 4) fail_shape_inference("GroupQueryAttention: past_key must have rank 4");
              for (size_t o = 1; o < 3 && o < ctx.getNumOutputs(); ++o) {
                onnx::TensorShapeProto p;
                *p.add_dim() = past.dim(0);
                *p.add_dim() = past.dim(1);
                p.add_dim();  // the total length: known at run time
                *p.add_dim() = past.dim(3);
                onnx::updateOutputShape(ctx, o, p);
              }
            }
          }));

  // SimplifiedLayerNormalization (RMSNorm): ORT defines it in the ONNX domain (opset 1) and
  // slmops also runs it under com.microsoft.
  for (const char* domain : {"", ms}) {
    reg(OpSchema()
            .SetName("SimplifiedLayerNormalization").SetDomain(domain).SinceVersion(1)
            .Attr("axis", "", onnx::AttributeProto::INT, int64_t{-1})
            .Attr("epsilon", "", onnx::AttributeProto::FLOAT, 1e-5f)
            .Attr("stash_type", "", onnx::AttributeProto::INT, int64_t{1})
            .Input(0, "X", "", "T")
            .Input(1, "scale", "", "V")
            .Output(0, "Y", "", "V")
            .Output(1, "inv_std_var", "", "U", OpSchema::Optional)
            .TypeConstraint("T", kFloats, "")
            .TypeConstraint("U", {"tensor(float)", "tensor(double)"}, "")
            .TypeConstraint("V", kFloats, "")
            .TypeAndShapeInferenceFunction([](InferenceContext& ctx) {
              onnx::propagateElemTypeFromInputToOutput(ctx, 1, 0);
              if (onnx::hasInputShape(ctx, 0)) onnx::propagateShapeFromInputToOutput(ctx, 0, 0);
            }));
  }

  // com.microsoft Quantize/DequantizeLinear: element-wise, y_zero_point's type (uint8 when
  // absent) / x_scale's type.
  reg(OpSchema()
          .SetName("QuantizeLinear").SetDomain(ms).SinceVersion(1)
          .Attr("axis", "", onnx::AttributeProto::INT, int64_t{1})
          .Input(0, "x", "", "T1")
          .Input(1, "y_scale", "", "T1")
          .Input(2, "y_zero_point", "", "T2", OpSchema::Optional)
          .Output(0, "y", "", "T2")
          .TypeConstraint("T1", kFloats, "")
          .TypeConstraint("T2", {"tensor(int8)", "tensor(uint8)", "tensor(int16)", "tensor(uint16)"}, "")
          .TypeAndShapeInferenceFunction([](InferenceContext& ctx) {
            if (ctx.getNumInputs() > 2 && ctx.getInputType(2)) onnx::propagateElemTypeFromInputToOutput(ctx, 2, 0);
            else onnx::updateOutputElemType(ctx, 0, onnx::TensorProto::UINT8);
            if (onnx::hasInputShape(ctx, 0)) onnx::propagateShapeFromInputToOutput(ctx, 0, 0);
          }));
  reg(OpSchema()
          .SetName("DequantizeLinear").SetDomain(ms).SinceVersion(1)
          .Attr("axis", "", onnx::AttributeProto::INT, int64_t{1})
          .Input(0, "x", "", "T1")
          .Input(1, "x_scale", "", "T2")
          .Input(2, "x_zero_point", "", "T1", OpSchema::Optional)
          .Output(0, "y", "", "T2")
          .TypeConstraint("T1", {"tensor(int8)", "tensor(uint8)", "tensor(int16)", "tensor(uint16)", "tensor(int32)"}, "")
          .TypeConstraint("T2", kFloats, "")
          .TypeAndShapeInferenceFunction([](InferenceContext& ctx) {
            onnx::propagateElemTypeFromInputToOutput(ctx, 1, 0);
            if (onnx::hasInputShape(ctx, 0)) onnx::propagateShapeFromInputToOutput(ctx, 0, 0);
          }));
}

void ensure_schemas() {
  static std::once_flag once;
  std::call_once(once, [] {
    try {
      register_contrib_schemas();
    } catch (const std::exception&) {
      // A schema libonnx refuses only costs the types of that op's outputs.
    }
  });
}

// ---------------------------------------------------------------------------------------------
// IR -> ModelProto (structure only)

void type_to_proto(const ir::TensorType& t, onnx::TypeProto& tp) {
  auto* tt = tp.mutable_tensor_type();
  tt->set_elem_type(t.elem_code);
  if (!t.has_shape) return;
  auto* shape = tt->mutable_shape();
  for (auto& d : t.dims) {
    auto* pd = shape->add_dim();
    if (d.known()) pd->set_dim_value(d.value);
    else if (!d.param.empty()) pd->set_dim_param(d.param);
  }
}

ir::TensorType type_from_proto(const onnx::TypeProto& tp) {
  ir::TensorType t;
  const onnx::TypeProto* inner = &tp;
  std::string container;
  while (!inner->has_tensor_type()) {
    if (inner->has_sequence_type()) {
      container += container.empty() ? "sequence" : "(sequence";
      inner = &inner->sequence_type().elem_type();
    } else if (inner->has_optional_type()) {
      container += container.empty() ? "optional" : "(optional";
      inner = &inner->optional_type().elem_type();
    } else {
      return t;
    }
  }
  if (!container.empty()) {
    size_t opens = std::count(container.begin(), container.end(), '(');
    t.container = container + std::string(opens, ')');
  }
  const auto& tt = inner->tensor_type();
  if (tt.elem_type() == 0 && container.empty()) return t;
  t.is_tensor = container.empty();
  t.elem_code = tt.elem_type();
  if (tt.has_shape()) {
    t.has_shape = true;
    for (auto& d : tt.shape().dim()) {
      ir::Dim dim;
      if (d.has_dim_value()) dim.value = d.dim_value();
      else if (d.has_dim_param()) dim.param = d.dim_param();
      t.dims.push_back(dim);
    }
  }
  return t;
}

ir::TensorType type_of_tensor(const ir::Tensor& t) {
  ir::TensorType type = ir::TensorType::of(t.dtype, t.dims);
  type.elem_code = t.dtype_code;  // also when it is not a DType slmops knows
  return type;
}

// A tensor for libonnx: its values when small (and present), else dtype and dims only.
void tensor_for_inference(const ir::Tensor& t, const std::string& name, onnx::TensorProto& p) {
  if (t.has_data() && t.numel() <= kKeepDataElements && ir::is_known_dtype(t.dtype_code)) {
    detail::tensor_to_proto(t, p);
  } else {
    p.set_data_type(t.dtype_code);
    for (auto d : t.dims) p.add_dims(d);
  }
  p.set_name(name);
}

struct Scope {
  onnx::GraphProto* proto;
  ir::Graph* graph;
};

void graph_to_proto(ir::Graph& g, onnx::GraphProto& gp, std::vector<Scope>& scopes);

void attribute_to_proto(const ir::Attribute& a, onnx::AttributeProto& ap, std::vector<Scope>& scopes) {
  // The residual holds what the IR does not model (type protos, sparse tensors, ref_attr_name).
  if (!a.residual.empty()) ap.ParseFromString(a.residual);
  ap.set_name(a.name);
  ap.set_type(static_cast<onnx::AttributeProto::AttributeType>(a.type));
  switch (a.type) {
    case ir::AttrType::Float: ap.set_f(a.f); break;
    case ir::AttrType::Int: ap.set_i(a.i); break;
    case ir::AttrType::String: ap.set_s(a.s); break;
    case ir::AttrType::Floats:
      ap.clear_floats();
      for (float f : a.floats) ap.add_floats(f);
      break;
    case ir::AttrType::Ints:
      ap.clear_ints();
      for (int64_t i : a.ints) ap.add_ints(i);
      break;
    case ir::AttrType::Strings:
      ap.clear_strings();
      for (auto& s : a.strings) ap.add_strings(s);
      break;
    default: break;
  }
  if (a.t) tensor_for_inference(*a.t, a.t->name, *ap.mutable_t());
  for (auto& t : a.tensors) tensor_for_inference(t, t.name, *ap.add_tensors());
  if (a.g) graph_to_proto(*a.g, *ap.mutable_g(), scopes);
  for (auto& sg : a.graphs) graph_to_proto(*sg, *ap.add_graphs(), scopes);
}

void value_info_to_proto(const ir::ValueInfo& vi, onnx::ValueInfoProto& vp) {
  const ir::Value* v = vi.value;
  vp.set_name(v->file_name());
  if (v->type.is_tensor) {
    type_to_proto(v->type, *vp.mutable_type());
  } else if (v->initializer) {
    type_to_proto(type_of_tensor(*v->initializer), *vp.mutable_type());
  } else if (!vi.proto.empty()) {
    onnx::ValueInfoProto loaded;  // a non-tensor type (sequence, map, ...), as declared
    if (loaded.ParseFromString(vi.proto)) *vp.mutable_type() = loaded.type();
  }
}

void graph_to_proto(ir::Graph& g, onnx::GraphProto& gp, std::vector<Scope>& scopes) {
  scopes.push_back({&gp, &g});
  gp.set_name(g.name);
  std::unordered_map<const ir::Value*, bool> listed_as_input;
  for (auto& vi : g.inputs) {
    if (!vi.value) continue;
    value_info_to_proto(vi, *gp.add_input());
    listed_as_input[vi.value] = true;
  }
  for (ir::Value* v : g.initializers) {
    const ir::Tensor& t = *v->initializer;
    if (t.has_data() && t.numel() <= kKeepDataElements) {
      tensor_for_inference(t, v->file_name(), *gp.add_initializer());
    } else if (!listed_as_input.count(v)) {
      // A weight: its type as a graph input, without its bytes.
      auto* in = gp.add_input();
      in->set_name(v->file_name());
      type_to_proto(type_of_tensor(t), *in->mutable_type());
    }
  }
  for (auto& n : g.nodes()) {
    auto* np = gp.add_node();
    np->set_name(n->name);
    np->set_op_type(n->op_type);
    np->set_domain(n->domain);
    for (ir::Value* v : n->inputs) np->add_input(v ? v->file_name() : std::string());
    for (ir::Value* v : n->outputs) np->add_output(v ? v->file_name() : std::string());
    for (auto& a : n->attributes) attribute_to_proto(a, *np->add_attribute(), scopes);
  }
  for (auto& vi : g.outputs)
    if (vi.value) value_info_to_proto(vi, *gp.add_output());
  for (auto& vi : g.value_info)
    if (vi.value && vi.value->type.is_tensor) value_info_to_proto(vi, *gp.add_value_info());
}

// ---------------------------------------------------------------------------------------------
// ModelProto -> Value::inferred

void clear_inferred(ir::Graph& g) {
  auto clear = [](ir::Value* v) {
    if (v) v->inferred = {};
  };
  for (auto& vi : g.inputs) clear(vi.value);
  for (auto& vi : g.outputs) clear(vi.value);
  for (auto& vi : g.value_info) clear(vi.value);
  for (ir::Value* v : g.initializers) clear(v);
  for (auto& n : g.nodes()) {
    for (ir::Value* v : n->outputs) clear(v);
    for (auto& a : n->attributes) {
      if (a.g) clear_inferred(*a.g);
      for (auto& sg : a.graphs) clear_inferred(*sg);
    }
  }
}

// Declared types, before inference: what a failed run still knows.
void set_declared(ir::Graph& g) {
  auto declared = [](ir::Value* v) {
    if (v && v->type.is_tensor) v->inferred = v->type;
  };
  for (auto& vi : g.inputs) declared(vi.value);
  for (auto& vi : g.outputs) declared(vi.value);
  for (auto& vi : g.value_info) declared(vi.value);
  // An initializer's type is its tensor's (more exact than a declared input type).
  for (ir::Value* v : g.initializers) v->inferred = type_of_tensor(*v->initializer);
  for (auto& n : g.nodes())
    for (auto& a : n->attributes) {
      if (a.g) set_declared(*a.g);
      for (auto& sg : a.graphs) set_declared(*sg);
    }
}

void read_back(const Scope& s) {
  auto take = [&](const onnx::ValueInfoProto& vp) {
    if (!vp.has_type()) return;
    ir::Value* v = s.graph->find_value(vp.name());
    if (!v || v->kind == ir::Value::Kind::Undefined || v->kind == ir::Value::Kind::Captured ||
        v->kind == ir::Value::Kind::Initializer)
      return;
    ir::TensorType t = type_from_proto(vp.type());
    if (t.is_tensor) v->inferred = std::move(t);
  };
  for (auto& vp : s.proto->input()) take(vp);
  for (auto& vp : s.proto->value_info()) take(vp);
  for (auto& vp : s.proto->output()) take(vp);
}

// ---------------------------------------------------------------------------------------------
// Slice with run-time bounds. libonnx 1.12 types Slice only when starts/ends are constants;
// transformer exports slice their rotary tables and masks by the sequence length
// (Shape -> Gather -> Unsqueeze -> Slice), and without a shape there every value after them
// loses its shape too. Data propagation does know those bounds symbolically ([seq]), so
// the Slice output is computed here from it and fed back as a value_info for another round.

using ShapeData = std::unordered_map<std::string, onnx::TensorShapeProto>;

// The values of a small int tensor input as dims (a dim_param for a symbolic entry): from an
// initializer or Constant kept with its data, else from libonnx's propagated shape data.
bool input_dims(const std::string& name, const std::unordered_map<std::string, const onnx::TensorProto*>& consts,
                const ShapeData& data, std::vector<onnx::TensorShapeProto::Dimension>& out) {
  out.clear();
  if (auto it = consts.find(name); it != consts.end()) {
    const onnx::TensorProto& t = *it->second;
    if (t.data_type() != onnx::TensorProto::INT64 && t.data_type() != onnx::TensorProto::INT32) return false;
    std::vector<int64_t> v;
    try {
      if (t.data_type() == onnx::TensorProto::INT64) v = onnx::ParseData<int64_t>(&t);
      else for (int32_t x : onnx::ParseData<int32_t>(&t)) v.push_back(x);
    } catch (const std::exception&) {
      return false;
    }
    for (int64_t x : v) out.emplace_back().set_dim_value(x);
    return true;
  }
  if (auto it = data.find(name); it != data.end()) {
    out.assign(it->second.dim().begin(), it->second.dim().end());
    return true;
  }
  return false;
}

// Output dims of Slice-10+ on `in`, or false when a bound it needs is unknown.
bool slice_shape(const onnx::TensorShapeProto& in, const std::vector<std::vector<onnx::TensorShapeProto::Dimension>>& args,
                 onnx::TensorShapeProto& out) {
  const auto& starts = args[0];
  const auto& ends = args[1];
  const int rank = in.dim_size();
  std::vector<int64_t> axes, steps;
  for (size_t i = 0; i < starts.size(); ++i) axes.push_back(static_cast<int64_t>(i));
  if (!args[2].empty()) {
    axes.clear();
    for (auto& d : args[2]) {
      if (!d.has_dim_value()) return false;
      axes.push_back(d.dim_value() < 0 ? d.dim_value() + rank : d.dim_value());
    }
  }
  steps.assign(starts.size(), 1);
  if (!args[3].empty()) {
    steps.clear();
    for (auto& d : args[3]) {
      if (!d.has_dim_value() || d.dim_value() == 0) return false;
      steps.push_back(d.dim_value());
    }
  }
  if (ends.size() != starts.size() || axes.size() != starts.size() || steps.size() != starts.size()) return false;
  out = in;
  for (size_t i = 0; i < axes.size(); ++i) {
    if (axes[i] < 0 || axes[i] >= rank) return false;
    auto* d = out.mutable_dim(static_cast<int>(axes[i]));
    const auto& len = in.dim(static_cast<int>(axes[i]));
    const auto& s = starts[i];
    const auto& e = ends[i];
    if (len.has_dim_value() && s.has_dim_value() && e.has_dim_value()) {
      // numpy slicing: clamp start and end into the axis, then count the steps.
      int64_t n = len.dim_value(), st = steps[i];
      // ONNX Slice: starts into [0, n] (step > 0) or [0, n-1] (step < 0); ends into [0, n]
      // or [-1, n-1].
      auto clamp = [&](int64_t x, bool is_end) {
        if (x < 0) x += n;
        if (st > 0) return std::clamp<int64_t>(x, 0, n);
        return std::clamp<int64_t>(x, is_end ? -1 : 0, n - 1);
      };
      int64_t a = clamp(s.dim_value(), false), b = clamp(e.dim_value(), true);
      int64_t count = st > 0 ? std::max<int64_t>(0, (b - a + st - 1) / st) : std::max<int64_t>(0, (a - b - st - 1) / -st);
      d->clear_dim_param();
      d->set_dim_value(count);
    } else if (s.has_dim_value() && s.dim_value() == 0 && steps[i] == 1 && e.has_dim_param()) {
      // x[0:seq] along an axis at least seq long: seq elements.
      d->clear_dim_value();
      d->set_dim_param(e.dim_param());
    } else {
      d->clear_dim_value();
      d->clear_dim_param();
    }
  }
  return true;
}

// Types the outputs of Slice nodes libonnx left untyped; true when it added any.
bool type_slices(onnx::GraphProto& gp, const std::unordered_map<std::string, int>& opsets, const ShapeData& data) {
  auto it = opsets.find("");
  if (it == opsets.end() || it->second < 10) return false;
  std::unordered_map<std::string, const onnx::TypeProto*> types;
  for (auto& vp : gp.input()) types[vp.name()] = &vp.type();
  for (auto& vp : gp.value_info()) types[vp.name()] = &vp.type();
  std::unordered_map<std::string, const onnx::TensorProto*> consts;
  std::list<onnx::TypeProto> initializer_types;  // small initializers are not graph inputs
  for (auto& t : gp.initializer()) {
    consts[t.name()] = &t;
    if (types.count(t.name())) continue;
    auto* tt = initializer_types.emplace_back().mutable_tensor_type();
    tt->set_elem_type(t.data_type());
    auto* shape = tt->mutable_shape();
    for (int64_t d : t.dims()) shape->add_dim()->set_dim_value(d);
    types[t.name()] = &initializer_types.back();
  }
  for (auto& n : gp.node())
    if (n.op_type() == "Constant" && n.domain().empty() && n.output_size() == 1)
      for (auto& a : n.attribute())
        if (a.name() == "value" && a.has_t()) consts[n.output(0)] = &a.t();
  std::vector<onnx::ValueInfoProto> added;
  for (auto& n : gp.node()) {
    if (n.op_type() != "Slice" || !n.domain().empty() || n.input_size() < 3 || n.output_size() != 1) continue;
    auto known = types.find(n.output(0));
    if (known != types.end() && onnx::hasShape(*known->second)) continue;
    auto in = types.find(n.input(0));
    if (in == types.end() || !in->second->has_tensor_type() || !onnx::hasShape(*in->second)) continue;
    std::vector<std::vector<onnx::TensorShapeProto::Dimension>> args(4);
    bool ok = true;
    for (int k = 1; k < 5 && ok; ++k)
      if (k < n.input_size() && !n.input(k).empty()) ok = input_dims(n.input(k), consts, data, args[k - 1]);
    onnx::TensorShapeProto shape;
    if (!ok || !slice_shape(in->second->tensor_type().shape(), args, shape)) continue;
    auto& vp = added.emplace_back();
    vp.set_name(n.output(0));
    auto* tt = vp.mutable_type()->mutable_tensor_type();
    tt->set_elem_type(in->second->tensor_type().elem_type());
    *tt->mutable_shape() = shape;
  }
  for (auto& vp : added) {
    // Replaces a shapeless entry for the same name, if libonnx wrote one.
    bool replaced = false;
    for (auto& existing : *gp.mutable_value_info())
      if (existing.name() == vp.name()) {
        existing = vp;
        replaced = true;
      }
    if (!replaced) *gp.add_value_info() = vp;
  }
  return !added.empty();
}

// libonnx's inference functions trust the graph they get. Found by fuzz_onnx_load: Scan-9
// without num_scan_inputs dereferences the missing attribute; a node with an empty op type
// crashed; Shape's data propagation crashed on an input that no graph input, initializer or
// node defines. So, before inference:
// - attributes the node's schema does not know are dropped; a node that then lacks a required
//   attribute, has one of the wrong type, has fewer inputs or outputs than the schema needs,
//   or has no op type, is renamed to an op no schema has: inference skips it (and its
//   subgraphs) and leaves its outputs untyped, as for any unknown op. Graph attributes are
//   never removed: graph_to_proto's scopes point into them;
// - data propagation (which types Slice/Reshape from computed shapes) runs only when nothing
//   was set aside, every op has a schema and every input name is defined.
// Returns whether the graph is clean in that sense.
bool set_aside_unverified(onnx::GraphProto& gp, const std::unordered_map<std::string, int>& opsets,
                          std::unordered_set<std::string> defined) {
  bool clean = true;
  for (auto& v : gp.input()) defined.insert(v.name());
  for (auto& t : gp.initializer()) defined.insert(t.name());
  for (auto& n : gp.node())
    for (auto& o : n.output()) defined.insert(o);
  defined.insert("");  // an omitted optional input
  for (auto& n : *gp.mutable_node()) {
    const std::string domain = n.domain() == "ai.onnx" ? "" : n.domain();
    auto it = opsets.find(domain);
    const onnx::OpSchema* schema =
        n.op_type().empty() || it == opsets.end()
            ? nullptr
            : onnx::OpSchemaRegistry::Schema(n.op_type(), it->second, domain);
    bool ok = schema != nullptr;
    if (ok) {
      // Attributes the schema does not know go (a newer opset's, such as DequantizeLinear-21's
      // block_size under libonnx's opset-13 schema); inference then runs the known rule.
      // (Graph attributes stay: graph_to_proto's scopes point into them.)
      auto* attrs = n.mutable_attribute();
      for (int k = attrs->size() - 1; k >= 0; --k) {
        const auto& a = attrs->Get(k);
        if (!schema->attributes().count(a.name()) && !a.has_g() && a.graphs_size() == 0) attrs->DeleteSubrange(k, 1);
      }
      // What inference functions rely on: every required attribute present with its type,
      // attributes of the declared type, at least the inputs and outputs the schema needs.
      // (Not OpSchema::Verify: it also refuses extra inputs, which a newer opset than
      // libonnx knows adds, e.g. ReduceMean-18's axes input.)
      for (auto& [name, spec] : schema->attributes()) {
        const onnx::AttributeProto* a = nullptr;
        for (auto& x : n.attribute())
          if (x.name() == name) a = &x;
        if ((spec.required && !a) || (a && a->type() != spec.type)) ok = false;
      }
      if (n.input_size() < schema->min_input() || n.output_size() < schema->min_output()) ok = false;
    }
    for (auto& in : n.input()) clean = clean && defined.count(in) > 0;
    if (!ok) {
      clean = false;
      if (schema || n.op_type().empty()) {
        // An op no schema has: inference skips the node and its subgraphs. Its attributes
        // stay (graph_to_proto's scopes point into graph attributes).
        n.set_op_type("SlmopsUnverifiedNode");
        continue;
      }
    }
    for (auto& a : *n.mutable_attribute()) {
      if (a.has_g()) clean = set_aside_unverified(*a.mutable_g(), opsets, defined) && clean;
      for (auto& g : *a.mutable_graphs()) clean = set_aside_unverified(g, opsets, defined) && clean;
    }
  }
  return clean;
}

// Some inference rules index what they never checked against the input shapes, and those
// shapes are often libonnx's own results for earlier nodes (a weight read through Identity
// or DequantizeLinear has no declared type), so they cannot be checked before the run: the
// schemas InferShapes gets put a precondition in front of these rules. A node that fails it
// is set aside as above (its outputs stay untyped). Found by fuzz_onnx_load (F18):
// ConvTranspose takes its kernel from W's dims 2.. and then reads one kernel entry per
// spatial axis of X, so a W [1, 1] under an X [1, 1, 3, 3] read entry 0 of an empty vector.
// What else libonnx 1.12 (onnx/defs/nn/defs.cc, old.cc) reads unchecked is listed by rule.

// The shape a rule reads for input `i`: libonnx's rules read tensor_type().shape() once
// hasInputShape holds, whatever the type (a sequence's is empty). Null when there is none.
const onnx::TensorShapeProto* rule_input_shape(InferenceContext& ctx, size_t i) {
  if (!onnx::hasInputShape(ctx, i)) return nullptr;
  return &ctx.getInputType(i)->tensor_type().shape();
}

// Conv, ConvInteger, QLinearConv, ConvTranspose: X (input 0) and the weights of one rank,
// as the ops define. Without kernel_shape the rules take the kernel from W's dims 2.. and
// index it, the dilations, the pads and X's dims by each other's axes (W of lower rank:
// past the kernel's end; of higher rank: past the others'); ConvTranspose reads W's dim 1.
bool same_rank_as_weights(InferenceContext& ctx, size_t w) {
  const auto* x = rule_input_shape(ctx, 0);
  const auto* k = rule_input_shape(ctx, w);
  return !x || !k || x->dim_size() == k->dim_size();
}

// Window ops: every stride at least 1. The Conv and pooling rules divide by each stride
// (0: SIGFPE).
bool strides_positive(InferenceContext& ctx) {
  const auto* a = ctx.getAttribute("strides");
  return !a || std::all_of(a->ints().begin(), a->ints().end(), [](int64_t s) { return s >= 1; });
}

// MaxUnpool without output_shape reads dim 1 of I (input 1, the indices) once X's shape is
// known, with no check that I is typed or has that dim.
bool unpool_indices_shaped(InferenceContext& ctx) {
  const auto* x = rule_input_shape(ctx, 0);
  if (!x || x->dim_size() < 2 || ctx.getNumInputs() != 2) return true;
  const auto* indices = rule_input_shape(ctx, 1);
  return indices && indices->dim_size() >= 2;
}

// MaxRoiPool reads pooled_shape[0] and [1] having checked only that it has one entry per
// spatial axis of X: X needs two spatial axes.
bool roi_input_has_two_spatial_axes(InferenceContext& ctx) {
  const auto* x = rule_input_shape(ctx, 0);
  return !x || x->dim_size() >= 4;
}

// LayerNormalization-17 sets dims axis.. of Mean and InvStdDev to 1 after adding the rank
// to a negative axis once: an axis below -rank (or -1 on a scalar) writes before dim 0. The
// op's range is [-rank, rank).
bool axis_in_rank(InferenceContext& ctx) {
  const auto* x = rule_input_shape(ctx, 0);
  if (!x) return true;
  const auto* a = ctx.getAttribute("axis");
  const int64_t axis = a ? a->i() : -1;
  return axis >= -x->dim_size() && axis < x->dim_size();
}

using Precondition = bool (*)(InferenceContext&);

// ONNX-domain op -> what its rule needs (every version of the op).
const std::unordered_map<std::string, Precondition>& preconditions() {
  static const std::unordered_map<std::string, Precondition> table = {
      {"Conv", [](InferenceContext& c) { return strides_positive(c) && same_rank_as_weights(c, 1); }},
      {"ConvInteger", [](InferenceContext& c) { return strides_positive(c) && same_rank_as_weights(c, 1); }},
      {"QLinearConv", [](InferenceContext& c) { return strides_positive(c) && same_rank_as_weights(c, 3); }},
      {"ConvTranspose", [](InferenceContext& c) { return same_rank_as_weights(c, 1); }},
      {"AveragePool", strides_positive},
      {"MaxPool", strides_positive},
      {"LpPool", strides_positive},
      {"MaxUnpool", unpool_indices_shaped},
      {"MaxRoiPool", roi_input_has_two_spatial_axes},
      {"LayerNormalization", axis_in_rank},
  };
  return table;
}

// libonnx's registry, but an op with a precondition comes as a copy of its schema whose
// rule runs only when the precondition holds.
class GuardedSchemas final : public onnx::ISchemaRegistry {
 public:
  const OpSchema* GetSchema(const std::string& key, const int maxInclusiveVersion,
                            const std::string& domain) const override {
    const OpSchema* schema = onnx::OpSchemaRegistry::Schema(key, maxInclusiveVersion, domain);
    if (!schema || schema->domain() != onnx::ONNX_DOMAIN || !schema->has_type_and_shape_inference_function())
      return schema;
    auto it = preconditions().find(schema->Name());
    if (it == preconditions().end()) return schema;
    std::lock_guard<std::mutex> lock(mutex_);
    auto& guarded = guarded_[schema];
    if (!guarded) {
      guarded = std::make_unique<OpSchema>(*schema);
      guarded->TypeAndShapeInferenceFunction(
          [rule = schema->GetTypeAndShapeInferenceFunction(), holds = it->second](InferenceContext& ctx) {
            if (holds(ctx)) rule(ctx);
          });
    }
    return guarded.get();
  }

 private:
  mutable std::mutex mutex_;
  mutable std::unordered_map<const OpSchema*, std::unique_ptr<OpSchema>> guarded_;
};

const GuardedSchemas& guarded_schemas() {
  static const GuardedSchemas registry;
  return registry;
}

bool run_inference(ir::Model& m, bool with_value_info) {
  onnx::ModelProto mp;
  mp.set_ir_version(m.ir_version);
  std::unordered_map<std::string, int> opsets;
  for (auto& o : m.opsets) {
    auto* op = mp.add_opset_import();
    op->set_domain(o.domain);
    op->set_version(o.version);
    opsets[o.domain == "ai.onnx" ? "" : o.domain] = static_cast<int>(o.version);
  }
  std::vector<Scope> scopes;
  graph_to_proto(*m.graph, *mp.mutable_graph(), scopes);
  if (!with_value_info)
    for (auto& s : scopes) s.proto->clear_value_info();
  try {
    const bool clean = set_aside_unverified(*mp.mutable_graph(), opsets, {});
    // error_mode 0: a node whose rule fails leaves its outputs untyped and inference goes on.
    onnx::ShapeInferenceOptions opts(/*check_type=*/false, /*error_mode=*/0, /*data_prop=*/clean);
    // Each round after the first starts from the Slice outputs the one before typed; every
    // round types at least one more Slice, and a model rarely chains more than a few.
    for (int round = 0; round < 8; ++round) {
      ShapeData data;
      onnx::shape_inference::InferShapes(mp, &guarded_schemas(), opts, &data);
      if (!type_slices(*mp.mutable_graph(), opsets, data)) break;
    }
  } catch (const std::exception&) {
    return false;
  }
  for (auto& s : scopes) read_back(s);
  return true;
}

}  // namespace

void infer_shapes(ir::Model& m) {
  if (!m.graph) return;
  try {
    ensure_schemas();
    clear_inferred(*m.graph);
    set_declared(*m.graph);
    // Errors error_mode 0 still throws (a declared value_info that contradicts what a node
    // computes): try again without the declared value_info.
    if (!run_inference(m, true)) run_inference(m, false);
    m.shapes_inferred = true;
  } catch (const std::exception&) {
    // Inference is advisory: a model it cannot type loads all the same.
  }
}

void refresh_shapes(ir::Model& m) { infer_shapes(m); }

void ensure_shapes(ir::Model& m) {
  if (!m.shapes_inferred) infer_shapes(m);
}

bool op_exists_at(const std::string& op_type, const std::string& domain, int64_t opset) {
  ensure_schemas();
  const std::string dom = domain == "ai.onnx" ? "" : domain;
  return onnx::OpSchemaRegistry::Schema(op_type, static_cast<int>(opset), dom) != nullptr;
}

std::optional<bool> schema_allows(const std::string& op_type, const std::string& domain, int64_t opset, bool input,
                                  size_t index, ir::DType dt) {
  ensure_schemas();
  const std::string dom = domain == "ai.onnx" ? "" : domain;
  const OpSchema* schema = onnx::OpSchemaRegistry::Schema(op_type, static_cast<int>(opset), dom);
  if (!schema) return std::nullopt;
  const auto& params = input ? schema->inputs() : schema->outputs();
  if (params.empty()) return std::nullopt;
  const bool variadic = params.back().GetOption() == OpSchema::FormalParameterOption::Variadic;
  if (index >= params.size() && !variadic) return std::nullopt;
  const auto& param = params[std::min(index, params.size() - 1)];
  const char* name = nullptr;
  switch (dt) {
    case ir::DType::Float:
      name = "tensor(float)";
      break;
    case ir::DType::Float16:
      name = "tensor(float16)";
      break;
    case ir::DType::BFloat16:
      name = "tensor(bfloat16)";
      break;
    case ir::DType::Double:
      name = "tensor(double)";
      break;
    default:
      return std::nullopt;
  }
  for (const auto* t : param.GetTypes())
    if (t && *t == name) return true;
  return false;
}

bool is_known_op_type(const std::string& op_type) {
  ensure_schemas();
  static const std::unordered_set<std::string> names = [] {
    std::unordered_set<std::string> n;
    for (const auto& s : onnx::OpSchemaRegistry::get_all_schemas_with_history()) n.insert(s.Name());
    return n;
  }();
  return names.count(op_type) > 0;
}

}  // namespace slmops::formats
