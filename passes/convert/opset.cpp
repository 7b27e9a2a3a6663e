// The opset pass: converts the model to another default-domain opset with libonnx's version
// converter (formats::convert_opset), then raises the IR version to the one the opset came
// with when it is older (a pytorch-converted IR 3 model at opset 13 becomes IR 7).
//
// Going down, ops that have no form in the target opset are first written in older ops on
// the IR, as their ONNX function bodies define them: LayerNormalization (17) as ReduceMean /
// Sub / Mul / Add / Sqrt / Reciprocal (with Casts to its stash type), HardSwish (14) as
// Mul(x, HardSigmoid(x, 1/6, 1/2)), CastLike (15) as Cast to the type of its second input,
// Shape-15's start / end as a Slice of the whole shape.
// Any other such op stops the conversion with one line naming the node.
#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <limits>

#include "formats/onnx_io.h"
#include "formats/shape_infer.h"
#include "ir/edit.h"
#include "ir/error.h"
#include "passes/convert/versions.h"
#include "passes/optimize/pattern.h"
#include "passes/registry.h"

namespace slmops::passes {

namespace {

struct OpsetOptions {
  int64_t version = 17;
  static const OptionTable<OpsetOptions>& table() {
    static const OptionTable<OpsetOptions> t({
        {"version",
         &OpsetOptions::version,
         "the default-domain opset to convert to (7 to 17: what Debian's libonnx 1.12 version converter knows)",
         {},
         false,
         {7, 17}},
    });
    return t;
  }
};

std::string node_label(const ir::Node* n) {
  return n->name.empty() ? fmt::format("a {} node", n->op_type) : fmt::format("node '{}' ({})", n->name, n->op_type);
}

ir::Value* scalar_float(ir::Graph& g, std::string_view prefix, float x) {
  ir::Buffer b = ir::Buffer::allocate(4);
  std::memcpy(b.mutable_data(), &x, 4);
  return ir::add_initializer(g, prefix, ir::DType::Float, {}, std::move(b));
}

// One new node reading `in`, with one fresh output named from `base`.
ir::Value* emit(ir::Graph& g, const std::string& op, std::vector<ir::Value*> in, const std::string& base,
                std::vector<ir::Attribute> attrs = {}) {
  return g.add_node(op, std::move(in), {g.unique_name(base)}, std::move(attrs), g.unique_name(base + "_" + op))
      ->outputs[0];
}

// LayerNormalization-17 as its function body: reductions over axes [axis, rank) in the stash
// type (float), the normalized value cast back to X's type, then scaled and shifted.
void lower_layer_norm(ir::Graph& g, ir::Node* n) {
  ir::Value* x = n->inputs[0];
  const ir::DType xt = dtype_of(x);
  if (xt == ir::DType::Undefined)
    bad_input(
        "--opset: {}: the type of its input '{}' is unknown, so it cannot be written "
        "in older ops",
        node_label(n), x->name);
  const int64_t stash = n->attr_int("stash_type", 1);
  if (stash != 1 && stash != static_cast<int64_t>(xt))
    bad_input("--opset: {}: stash_type {} is not float or the input's type", node_label(n), stash);
  const int64_t axis = n->attr_int("axis", -1);
  std::vector<int64_t> axes;
  if (axis < 0) {
    for (int64_t a = axis; a < 0; ++a) axes.push_back(a);
  } else {
    auto shape = partial_shape(x);
    if (!shape)
      bad_input("--opset: {}: axis {} needs the rank of '{}', which is unknown", node_label(n), axis, x->name);
    for (int64_t a = axis; a < static_cast<int64_t>(shape->size()); ++a) axes.push_back(a);
  }
  const std::string base = n->name.empty() ? "layer_norm" : n->name;
  const bool cast = stash == 1 && xt != ir::DType::Float;
  ir::Value* xs = cast ? emit(g, "Cast", {x}, base + "_x", ir::attribute_list(ir::Attribute::make_int("to", 1))) : x;
  auto reduce = [&](ir::Value* v, const std::string& what) {
    return emit(g, "ReduceMean", {v}, base + what,
                ir::attribute_list(ir::Attribute::make_ints("axes", axes), ir::Attribute::make_int("keepdims", 1)));
  };
  ir::Value* mean = reduce(xs, "_mean");
  ir::Value* d = emit(g, "Sub", {xs, mean}, base + "_centered");
  ir::Value* var = reduce(emit(g, "Mul", {d, d}, base + "_sq"), "_var");
  ir::Value* eps = scalar_float(g, base + "_epsilon", n->attr_float("epsilon", 1e-5f));
  if (stash != 1)
    eps = emit(g, "Cast", {eps}, base + "_epsilon", ir::attribute_list(ir::Attribute::make_int("to", stash)));
  ir::Value* inv =
      emit(g, "Reciprocal", {emit(g, "Sqrt", {emit(g, "Add", {var, eps}, base + "_var_eps")}, base + "_std")},
           base + "_inv_std");
  ir::Value* y = emit(g, "Mul", {d, inv}, base + "_normalized");
  if (cast)
    y = emit(g, "Cast", {y}, base + "_normalized",
             ir::attribute_list(ir::Attribute::make_int("to", static_cast<int64_t>(xt))));
  y = emit(g, "Mul", {y, n->inputs[1]}, base + "_scaled");
  if (n->inputs.size() > 2 && n->inputs[2]) y = emit(g, "Add", {y, n->inputs[2]}, base + "_shifted");
  std::vector<ir::Value*> outs = n->outputs;
  g.remove_node(n);
  ir::Value* results[3] = {y, mean, inv};
  for (size_t k = 0; k < outs.size() && k < 3; ++k) {
    if (!outs[k]) continue;
    g.replace_all_uses(results[k], outs[k]);  // the Mean and InvStdDev outputs feed later steps
    ir::move_output(results[k]->producer, results[k], outs[k]);
  }
}

// Ops of the default domain that have no schema at `target` are written in older ops where
// their function body allows it (and Shape-15's range as a Slice), refused with the node
// named otherwise.
void lower_new_ops(ir::Graph& g, int64_t target) {
  std::vector<ir::Node*> nodes;
  for (auto& n : g.nodes()) nodes.push_back(n.get());
  bool changed = false;
  for (ir::Node* n : nodes) {
    for (auto& a : n->attributes) {
      if (a.g) lower_new_ops(*a.g, target);
      for (auto& sg : a.graphs) lower_new_ops(*sg, target);
    }
    if (!ir::is_default_domain(n->domain)) continue;
    const bool shape_range = n->op_type == "Shape" && (n->attr("start") || n->attr("end"));
    if (formats::op_exists_at(n->op_type, "", target) && !(shape_range && target < 15)) continue;
    changed = true;
    if (n->op_type == "LayerNormalization") {
      lower_layer_norm(g, n);
    } else if (n->op_type == "HardSwish") {
      ir::Value* hs = emit(
          g, "HardSigmoid", {n->inputs[0]}, n->name.empty() ? "hard_swish" : n->name,
          ir::attribute_list(ir::Attribute::make_float("alpha", 1.0f / 6), ir::Attribute::make_float("beta", 0.5f)));
      ir::replace_node(g, n, "Mul", "", {n->inputs[0], hs}, {});
    } else if (n->op_type == "Shape" && target < 15) {
      // Shape-15's start / end: the whole shape, then a Slice of it.
      const int64_t start = n->attr_int("start", 0);
      const int64_t end = n->attr_int("end", std::numeric_limits<int64_t>::max());
      const std::string base = n->name.empty() ? "shape" : n->name;
      ir::Value* whole = emit(g, "Shape", {n->inputs[0]}, base + "_whole");
      auto one = [&](const char* what, int64_t v) {
        ir::Buffer b = ir::Buffer::allocate(8);
        std::memcpy(b.mutable_data(), &v, 8);
        return ir::add_initializer(g, base + what, ir::DType::Int64, {1}, std::move(b));
      };
      ir::replace_node(g, n, "Slice", "", {whole, one("_start", start), one("_end", end), one("_axis", 0)}, {});
    } else if (n->op_type == "CastLike" && dtype_of(n->inputs[1]) != ir::DType::Undefined) {
      ir::replace_node(g, n, "Cast", "", {n->inputs[0]},
                       ir::attribute_list(ir::Attribute::make_int("to", static_cast<int64_t>(dtype_of(n->inputs[1])))));
    } else {
      int64_t since = target + 1;
      while (since < 30 && !formats::op_exists_at(n->op_type, "", since)) ++since;
      bad_input("--opset {}: {} has no form in opset {} ({} came in opset {})", target, node_label(n), target,
                n->op_type, since);
    }
  }
  if (changed) ir::sort_nodes(g);
}

}  // namespace

PassInfo opset_pass_info() {
  PassInfo p;
  p.name = "opset";
  p.summary = "convert to another default-domain opset, up or down (libonnx's version converter)";
  p.options = OpsetOptions::table().specs();
  p.run = [](ir::Model& m, const nlohmann::json& j, PassContext& ctx) {
    const int64_t target = OpsetOptions::table().from_json(j).version;
    const int64_t before = m.opset("");
    const size_t nodes_before = m.graph->node_count();
    if (target < before) {
      formats::ensure_shapes(m);
      lower_new_ops(*m.graph, target);
    }
    ir::Model out = formats::convert_opset(m, target);
    // Leaving IR 3, whose files must list every initializer as a graph input, the weights
    // become plain initializers (constants, as ONNX Runtime treats them), as a file of the new
    // IR version would have them.
    const int64_t frozen = ir_for_opset(target) >= 4 ? freeze_legacy_initializer_inputs(out) : 0;
    out.ir_version = std::max(out.ir_version, ir_for_opset(target));
    ctx.report = {{"opset_before", before},
                  {"opset_after", out.opset("")},
                  {"nodes_before", nodes_before},
                  {"nodes_after", out.graph->node_count()},
                  {"ir_version_after", out.ir_version},
                  {"legacy_initializer_inputs_frozen", frozen}};
    m = std::move(out);
  };
  return p;
}

}  // namespace slmops::passes
