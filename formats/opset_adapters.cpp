// libonnx's version converter with the down-adapters Debian's libonnx 1.12 lacks.
//
// Its DefaultVersionConverter steps one opset at a time and needs an adapter for every op
// whose schema changed at the version it crosses. Going up it has them; going down from 14
// and later it has almost none (only GRU/LSTM/RNN 14 -> 13): Add, Relu, Reshape 14, Pow,
// Shape 15, Where, LeakyRelu 16 and the rest fail with "No Adapter From Version $16 for
// Where". Between 14 and 17 those schema changes only widen the types, or add an attribute
// whose default keeps the old behaviour (Reshape allowzero, ScatterND reduction, Shape
// start, BatchNormalization training_mode). So the missing step down from version v is a
// checked no-op: the node must be a valid node of the older schema (its attributes known to
// it, or set to the newer schema's default and then dropped; its input and output counts in
// range; its tensor types allowed), or the conversion stops with one line naming the node.
// RoiAlign 16 is the exception: its default coordinate mode changed, so a node converts only
// when it spells out the old mode. Ops with no older form (LayerNormalization 17, CastLike
// 15, HardSwish 14) are lowered on the IR before this runs (passes/convert/opset.cpp).
#include "formats/opset_adapters.h"

#include <onnx/defs/data_type_utils.h>
#include <onnx/defs/schema.h>
#include <onnx/version_converter/convert.h>

#include <algorithm>
#include <string>

namespace slmops::formats {

namespace {

namespace vc = onnx::version_conversion;

// The first opset whose changes libonnx 1.12 has no down-adapters for.
constexpr int64_t kFirstUnadapted = 14;

std::string node_label(const onnx::Node* node) {
  std::string op = node->kind().toString();
  if (node->has_name() && !node->name().empty()) return "node '" + node->name() + "' (" + op + ")";
  return "a " + op + " node";
}

[[noreturn]] void refuse(const onnx::Node* node, int64_t from, int64_t to, const std::string& why) {
  // ONNX_ASSERTM's "failed: " marker: convert_opset keeps the text after it.
  throw std::runtime_error("failed: " + node_label(node) + " has no form in opset " + std::to_string(to) + " (from " +
                           std::to_string(from) + "): " + why);
}

// "tensor(float)" for a TensorProto elem type, "" when unknown.
std::string type_string(int32_t elem) {
  if (elem <= 0) return {};
  onnx::TypeProto tp;
  tp.mutable_tensor_type()->set_elem_type(elem);
  try {
    return *onnx::Utils::DataTypeUtils::ToType(tp);
  } catch (const std::exception&) {
    return {};
  }
}

bool attribute_equals(const onnx::Node* node, onnx::Symbol sym, const onnx::AttributeProto& dflt) {
  switch (node->kindOf(sym)) {
    case onnx::AttributeKind::i:
      return dflt.has_i() && node->i(sym) == dflt.i();
    case onnx::AttributeKind::f:
      return dflt.has_f() && node->f(sym) == dflt.f();
    case onnx::AttributeKind::s:
      return dflt.has_s() && node->s(sym) == dflt.s();
    default:
      return false;
  }
}

// A value's type against the older schema's formal parameter (a type constraint or a type).
void check_type(const onnx::Node* node, const onnx::OpSchema& old, const onnx::OpSchema::FormalParameter& param,
                const onnx::Value* v, int64_t from, int64_t to) {
  const std::string t = type_string(v->elemType());
  if (t.empty()) return;  // unknown here: ONNX Runtime's load checks it
  const std::string& ts = param.GetTypeStr();
  for (const auto& c : old.typeConstraintParams()) {
    if (c.type_param_str != ts) continue;
    if (std::find(c.allowed_type_strs.begin(), c.allowed_type_strs.end(), t) == c.allowed_type_strs.end())
      refuse(node, from, to, "type " + t + " of '" + v->uniqueName() + "' is not allowed there");
    return;
  }
  if (ts != t) refuse(node, from, to, "type " + t + " of '" + v->uniqueName() + "' is not allowed there");
}

class CheckedDown final : public vc::Adapter {
 public:
  CheckedDown(const std::string& op, int64_t from, const onnx::OpSchema* old_schema, const onnx::OpSchema* new_schema)
      : Adapter(op, onnx::OpSetID(from), onnx::OpSetID(from - 1)), old_(old_schema), new_(new_schema) {}

  onnx::Node* adapt(std::shared_ptr<onnx::Graph>, onnx::Node* node) const override {
    const int64_t from = initial_version().version(), to = target_version().version();
    const std::string op = node->kind().toString();
    if (op == "RoiAlign") {
      onnx::Symbol mode("coordinate_transformation_mode");
      if (!node->hasAttribute(mode) || node->kindOf(mode) != onnx::AttributeKind::s ||
          node->s(mode) != "output_half_pixel")
        refuse(node, from, to, "its coordinate_transformation_mode is half_pixel, which RoiAlign 10 cannot express");
      node->removeAttribute(mode);
    }
    for (onnx::Symbol sym : node->attributeNames()) {
      const std::string name = sym.toString();
      if (old_->attributes().count(name)) continue;
      auto it = new_->attributes().find(name);
      if (it == new_->attributes().end() || !attribute_equals(node, sym, it->second.default_value))
        refuse(node, from, to, "attribute '" + name + "' is not in " + op + "'s older schema");
      node->removeAttribute(sym);
    }
    const auto n_in = static_cast<int>(node->inputs().size());
    const auto n_out = static_cast<int>(node->outputs().size());
    if (n_in < old_->min_input() || n_in > old_->max_input())
      refuse(node, from, to,
             std::to_string(n_in) + " inputs, the older schema takes " + std::to_string(old_->min_input()) + " to " +
                 std::to_string(old_->max_input()));
    if (n_out < old_->min_output() || n_out > old_->max_output())
      refuse(node, from, to,
             std::to_string(n_out) + " outputs, the older schema gives " + std::to_string(old_->min_output()) + " to " +
                 std::to_string(old_->max_output()));
    const auto& ins = old_->inputs();
    for (int k = 0; k < n_in && !ins.empty(); ++k)
      check_type(node, *old_, ins[std::min<size_t>(static_cast<size_t>(k), ins.size() - 1)], node->inputs()[k], from,
                 to);
    const auto& outs = old_->outputs();
    for (int k = 0; k < n_out && !outs.empty(); ++k)
      check_type(node, *old_, outs[std::min<size_t>(static_cast<size_t>(k), outs.size() - 1)], node->outputs()[k], from,
                 to);
    return node;
  }

 private:
  const onnx::OpSchema* old_;
  const onnx::OpSchema* new_;
};

class Converter final : public vc::DefaultVersionConverter {
 public:
  Converter() {
    for (const auto& [op, domains] : all_schemas) {
      auto d = domains.find("");
      if (d == domains.end()) continue;
      const auto& versions = d->second;
      for (auto it = std::next(versions.begin(), versions.empty() ? 0 : 1); it != versions.end(); ++it) {
        const int64_t v = it->first;
        if (v < kFirstUnadapted) continue;
        const std::string from = onnx::OpSetID(v).toString(), to = onnx::OpSetID(v - 1).toString();
        auto a = adapters.find(op);
        if (a != adapters.end()) {
          auto f = a->second.find(from);
          if (f != a->second.end() && f->second.count(to)) continue;  // libonnx has one
        }
        // all_schemas' pointers are into a vector its constructor dropped: ask the registry.
        const auto* older = onnx::OpSchemaRegistry::Schema(op, static_cast<int>(v - 1), "");
        const auto* newer = onnx::OpSchemaRegistry::Schema(op, static_cast<int>(v), "");
        if (older && newer) registerAdapter(std::make_unique<CheckedDown>(op, v, older, newer));
      }
    }
  }
};

}  // namespace

onnx::ModelProto convert_version(const onnx::ModelProto& mp, int64_t target) {
  int64_t initial = 0;
  for (const auto& o : mp.opset_import())
    if (o.domain().empty() || o.domain() == "ai.onnx") initial = o.version();
  static const Converter converter;  // builds its tables once
  return converter.convert_version(mp, onnx::OpSetID(initial), onnx::OpSetID(target));
}

}  // namespace slmops::formats
