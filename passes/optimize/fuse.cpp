// fuse: patterns of standard ONNX ops that one standard op computes.
//
//   Before: Conv(x, W, B) -> c;  BatchNormalization(c, s, b, mean, var) -> y
//   After:  Conv(x, W * s / sqrt(var + eps), (B - mean) * s / sqrt(var + eps) + b) -> y
//   Before: Conv(x, W) -> c;  Add(c, C[1,M,1,1]) -> y        After: Conv(x, W, C[M]) -> y
//   Before: MatMul(A[M,K], B[K,N]) -> p;  Add(p, C[N]) -> y  After: Gemm(A, B, C) -> y
//   Before: ReduceMean(x) -> m; Sub(x, m) -> d; ReduceMean(Pow(d, 2)) -> v; Add(v, eps) -> e;
//           Sqrt(e) -> r; Div(d, r) -> n; Mul(n, gamma) -> g; Add(g, beta) -> y
//   After:  LayerNormalization(x, gamma, beta, axis=-1, epsilon=eps) -> y      (opset >= 17)
// Every weight it touches must be a float constant; new weights are new initializers (the old
// ones are dropped by cleanup when nothing else reads them). With target onnxruntime,
// fuse_onnxruntime (fuse_ort.cpp) runs after these.
#include <cmath>

#include "ir/dtype.h"
#include "ir/edit.h"
#include "ir/error.h"
#include "passes/cleanup.h"
#include "passes/common/opset.h"
#include "passes/optimize/fuse_util.h"
#include "passes/optimize/optimize.h"
#include "passes/optimize/pattern.h"
#include "passes/registry.h"

namespace slmops::passes {

ir::Value* add_float_initializer(ir::Graph& g, std::string_view prefix, std::vector<int64_t> dims,
                                 const std::vector<float>& values) {
  return ir::add_initializer(g, prefix, ir::DType::Float, std::move(dims),
                             ir::Buffer::copy_of(values.data(), values.size() * sizeof(float)));
}

void take_outputs(ir::Graph& g, ir::Node* writer, ir::Node* last) {
  ir::Value* from = writer->outputs[0];
  ir::Value* to = last->outputs[0];
  g.remove_node(last);
  ir::move_output(writer, from, to);
}

ir::Value* other_input(const ir::Node& n, const ir::Value* v) {
  if (n.inputs.size() != 2) return nullptr;
  if (n.inputs[0] == v) return n.inputs[1];
  if (n.inputs[1] == v) return n.inputs[0];
  return nullptr;
}

ir::Node* sole_reader_op(const ir::Value* v, std::string_view op) {
  if (!sole_reader(v)) return nullptr;
  ir::Node* c = v->consumers[0];
  return c->op_type == op && ir::is_default_domain(c->domain) ? c : nullptr;
}

ir::Value* mean_over_last(const ir::Node* n, int64_t opset) {
  if (!n || n->op_type != "ReduceMean" || n->inputs.empty() || n->attr_int("keepdims", 1) != 1) return nullptr;
  std::optional<std::vector<int64_t>> axes;
  if (opset < 18) {
    if (n->attr("axes")) axes = n->attr_ints("axes");
  } else if (n->inputs.size() > 1) {
    axes = const_ints(n->inputs[1]);
  }
  if (!axes || axes->size() != 1) return nullptr;
  auto shape = partial_shape(n->inputs[0]);
  const int64_t a = (*axes)[0];
  if (!(a == -1 || (shape && a == static_cast<int64_t>(shape->size()) - 1))) return nullptr;
  return n->inputs[0];
}

namespace {

bool float_const(const ir::Value* v) { return ir::constant_tensor(v) && v->initializer->dtype == ir::DType::Float; }

// Conv's output channels and its bias values (zeros when it has none), or nothing.
std::optional<std::vector<float>> conv_bias(const ir::Node& conv) {
  if (conv.inputs.size() < 2 || !float_const(conv.inputs[1])) return std::nullopt;
  const int64_t m = conv.inputs[1]->initializer->dims.at(0);
  if (conv.inputs.size() > 2 && conv.inputs[2]) {
    auto b = const_floats(conv.inputs[2]);
    if (!b || static_cast<int64_t>(b->size()) != m) return std::nullopt;
    return b;
  }
  return std::vector<float>(m, 0.0f);
}

void set_conv_bias(ir::Graph& g, ir::Node& conv, const std::vector<float>& bias) {
  ir::Value* b = add_float_initializer(g, conv.inputs[1]->name + "_bias", {static_cast<int64_t>(bias.size())}, bias);
  if (conv.inputs.size() < 3) {
    conv.inputs.push_back(b);
    b->consumers.push_back(&conv);
  } else {
    conv.set_input(2, b);
  }
}

bool fuse_conv_bn(ir::Graph& g, ir::Node* conv) {
  ir::Node* bn = sole_reader_op(conv->outputs[0], "BatchNormalization");
  if (!bn || bn->inputs.size() < 5 || bn->inputs[0] != conv->outputs[0]) return false;
  for (size_t k = 1; k < bn->outputs.size(); ++k)
    if (bn->outputs[k] && (!bn->outputs[k]->consumers.empty() || bn->outputs[k]->is_graph_output())) return false;
  if (bn->attr_int("training_mode", 0) != 0) return false;
  auto bias = conv_bias(*conv);
  auto scale = const_floats(bn->inputs[1]), shift = const_floats(bn->inputs[2]);
  auto mean = const_floats(bn->inputs[3]), var = const_floats(bn->inputs[4]);
  if (!bias || !scale || !shift || !mean || !var) return false;
  const size_t m = bias->size();
  if (scale->size() != m || shift->size() != m || mean->size() != m || var->size() != m) return false;
  const float eps = bn->attr_float("epsilon", 1e-5f);
  auto w = const_floats(conv->inputs[1]);
  const size_t per = w->size() / m;
  for (size_t o = 0; o < m; ++o) {
    const float s = (*scale)[o] / std::sqrt((*var)[o] + eps);
    for (size_t i = 0; i < per; ++i) (*w)[o * per + i] *= s;
    (*bias)[o] = ((*bias)[o] - (*mean)[o]) * s + (*shift)[o];
  }
  ir::Value* nw = add_float_initializer(g, conv->inputs[1]->name + "_bn", conv->inputs[1]->initializer->dims, *w);
  conv->set_input(1, nw);
  set_conv_bias(g, *conv, *bias);
  take_outputs(g, conv, bn);
  return true;
}

bool fuse_conv_add(ir::Graph& g, ir::Node* conv) {
  ir::Node* add = sole_reader_op(conv->outputs[0], "Add");
  if (!add) return false;
  ir::Value* c = other_input(*add, conv->outputs[0]);
  auto bias = conv_bias(*conv);
  auto cv = const_floats(c);
  if (!bias || !cv || !float_const(c) || cv->size() != bias->size()) return false;
  // C must broadcast along the channel axis only: [M,1,...,1] right-aligned to the output rank.
  const auto& cd = c->initializer->dims;
  const size_t out_rank = conv->inputs[1]->initializer->dims.size();
  if (cd.size() > out_rank || cd.size() < out_rank - 1) return false;
  for (size_t i = 0; i < cd.size(); ++i) {
    const size_t axis = out_rank - cd.size() + i;
    if (axis == 1 ? cd[i] != static_cast<int64_t>(bias->size()) : cd[i] != 1) return false;
  }
  for (size_t o = 0; o < bias->size(); ++o) (*bias)[o] += (*cv)[o];
  set_conv_bias(g, *conv, *bias);
  take_outputs(g, conv, add);
  return true;
}

bool fuse_matmul_add(ir::Graph& g, ir::Node* mm) {
  ir::Node* add = sole_reader_op(mm->outputs[0], "Add");
  if (!add || mm->inputs.size() != 2) return false;
  ir::Value* a = mm->inputs[0];
  ir::Value* b = mm->inputs[1];
  ir::Value* c = other_input(*add, mm->outputs[0]);
  auto a_shape = partial_shape(a);
  if (!a_shape || a_shape->size() != 2 || !float_const(b) || b->initializer->dims.size() != 2 || !float_const(c))
    return false;
  if (dtype_of(a) != ir::DType::Float) return false;
  const int64_t n = b->initializer->dims[1];
  const auto& cd = c->initializer->dims;
  const bool row = (cd.size() == 1 && cd[0] == n) || (cd.size() == 2 && cd[0] == 1 && cd[1] == n);
  if (!row) return false;
  ir::Value* out = add->outputs[0];
  g.remove_node(add);
  ir::Node* gemm = ir::replace_node(g, mm, "Gemm", "", {a, b, c}, {});
  ir::move_output(gemm, gemm->outputs[0], out);
  return true;
}

// Mul(x, Div(1, y)) -> Div(x, y).
bool fuse_div_mul(ir::Graph& g, ir::Node* div) {
  if (div->inputs.size() != 2 || !const_all_near(div->inputs[0], 1.0, 0.0) || div->inputs[0]->initializer->numel() != 1)
    return false;
  ir::Node* mul = sole_reader_op(div->outputs[0], "Mul");
  if (!mul) return false;
  ir::Value* x = other_input(*mul, div->outputs[0]);
  if (!x || dtype_of(x) != dtype_of(div->inputs[1]) || dtype_of(x) == ir::DType::Undefined) return false;
  ir::replace_node(g, mul, "Div", "", {x, div->inputs[1]}, {});
  return true;
}

bool fuse_layer_norm(ir::Graph& g, ir::Node* mean_node, int64_t opset) {
  ir::Value* x = mean_over_last(mean_node, opset);
  if (!x || dtype_of(x) != ir::DType::Float) return false;
  // Sub(x, mean) -> d, read by the variance and the Div.
  if (mean_node->outputs[0]->consumers.size() != 1) return false;
  ir::Node* sub = mean_node->outputs[0]->consumers[0];
  if (sub->op_type != "Sub" || sub->inputs.size() != 2 || sub->inputs[0] != x) return false;
  ir::Value* d = sub->outputs[0];
  ir::Node *sq = nullptr, *div = nullptr;
  for (ir::Node* c : d->consumers) {
    if ((c->op_type == "Pow" && c->inputs[0] == d && const_all_near(c->inputs[1], 2.0)) ||
        (c->op_type == "Mul" && c->inputs.size() == 2 && c->inputs[0] == d && c->inputs[1] == d))
      sq = c;
    else if (c->op_type == "Div" && c->inputs[0] == d)
      div = c;
    else
      return false;
  }
  if (!sq || !div || d->is_graph_output()) return false;
  ir::Node* var = sole_reader_op(sq->outputs[0], "ReduceMean");
  if (!var || mean_over_last(var, opset) != sq->outputs[0]) return false;
  ir::Node* add_eps = sole_reader_op(var->outputs[0], "Add");
  if (!add_eps) return false;
  auto eps = const_scalar(other_input(*add_eps, var->outputs[0]));
  ir::Node* sqrt = sole_reader_op(add_eps->outputs[0], "Sqrt");
  if (!eps || !sqrt || div->inputs[1] != sqrt->outputs[0] || !sole_reader(sqrt->outputs[0])) return false;
  // Optional Mul(gamma) and Add(beta), each a constant over the last axis.
  ir::Node* last = div;
  ir::Value *gamma = nullptr, *beta = nullptr;
  auto shape = partial_shape(x);
  if (ir::Node* mul = sole_reader_op(div->outputs[0], "Mul")) {
    ir::Value* c = other_input(*mul, div->outputs[0]);
    if (float_const(c) && c->initializer->dims.size() == 1) {
      gamma = c;
      last = mul;
      if (ir::Node* add = sole_reader_op(mul->outputs[0], "Add")) {
        ir::Value* b = other_input(*add, mul->outputs[0]);
        if (float_const(b) && b->initializer->dims == c->initializer->dims) {
          beta = b;
          last = add;
        }
      }
    }
  }
  const int64_t width = gamma ? gamma->initializer->dims[0] : (shape && !shape->empty() ? shape->back() : -1);
  if (width <= 0 || (shape && !shape->empty() && shape->back() >= 0 && shape->back() != width)) return false;
  if (!gamma) gamma = add_float_initializer(g, "layer_norm_scale", {width}, std::vector<float>(width, 1.0f));
  std::vector<ir::Value*> inputs{x, gamma};
  if (beta) inputs.push_back(beta);
  // The new node writes the chain's last output; the rest of the chain (read by nothing else,
  // checked above) goes now, readers first, so that no later round matches its remains.
  ir::Node* mul = last == div ? nullptr : div->outputs[0]->consumers[0];
  ir::replace_node(g, last, "LayerNormalization", "", inputs,
                   attribute_list(ir::Attribute::make_int("axis", -1),
                                  ir::Attribute::make_float("epsilon", static_cast<float>(*eps))));
  if (mul && mul != last) g.remove_node(mul);
  for (ir::Node* n : {div, sqrt, add_eps, var, sq, sub, mean_node})
    if (n != last) g.remove_node(n);
  return true;
}

}  // namespace

int64_t apply_rules(ir::Graph& g, const std::function<const char*(ir::Node*)>& rule, OptimizeStats& st) {
  int64_t fired = 0;
  size_t resume = 0;  // nodes before this position of the order were tried and did not match
  for (bool again = true; again;) {
    again = false;
    auto order = g.topological_order();
    for (size_t i = resume; i < order.size(); ++i) {
      const char* name = rule(order[i]);
      if (!name) continue;
      ++st.fusions[name];
      ++fired;
      // A fusion changes the node at i and later ones; earlier nodes may now match too only
      // when they read what changed, which a later round of the pass covers.
      resume = i;
      again = true;
      break;
    }
  }
  if (fired) ir::sort_nodes(g);
  return fired;
}

int64_t fuse_standard(ir::Model& m, ir::Graph& g, OptimizeStats& st) {
  const int64_t opset = m.opset("");
  return apply_rules(
      g,
      [&](ir::Node* n) -> const char* {
        if (!ir::is_default_domain(n->domain) || n->outputs.empty() || !n->outputs[0]) return nullptr;
        if (n->op_type == "Conv") {
          if (fuse_conv_bn(g, n)) return "Conv+BatchNormalization";
          if (fuse_conv_add(g, n)) return "Conv+Add";
        } else if (n->op_type == "MatMul" && opset >= 9) {
          if (fuse_matmul_add(g, n)) return "MatMul+Add->Gemm";
        } else if (n->op_type == "Div") {
          if (fuse_div_mul(g, n)) return "Div+Mul->Div";
        } else if (n->op_type == "ReduceMean" && opset >= 17) {
          if (fuse_layer_norm(g, n, opset)) return "LayerNormalization";
        }
        return nullptr;
      },
      st);
}

}  // namespace slmops::passes
