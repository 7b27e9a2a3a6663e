// fuse --target onnxruntime: the com.microsoft contrib ops ONNX Runtime makes at session
// creation, for users who deploy to ONNX Runtime and want the saved model pre-fused. Never
// part of the default chain: a model with these ops runs only in ONNX Runtime (and slmops).
//
//   Gelu:      x * 0.5 * (1 + Erf(x / sqrt(2)))   (any association of the two Muls)  -> Gelu(x)
//   BiasGelu:  Gelu(Add(a, bias[N]))                                              -> BiasGelu(a, bias)
//   FastGelu:  0.5 * x * (1 + Tanh(sqrt(2/pi) * (x + 0.044715 * x^3)))           -> FastGelu(x)
//   QuickGelu: x * Sigmoid(alpha * x), x * Sigmoid(x)                             -> QuickGelu(x, alpha)
//   SimplifiedLayerNormalization (RMSNorm, ai.onnx domain in ORT):
//              Mul(x, 1 / Sqrt(ReduceMean(Pow(x, 2)) + eps)) * gamma, or Div(x, Sqrt(...)) * gamma
//   SkipLayerNormalization / SkipSimplifiedLayerNormalization: either norm of Add(a, b), with a
//              and b of one 3-D shape; the Add's other readers read the fused node's output 3.
//   FusedMatMul: MatMul(Transpose(A, swap last two), B), the same for B, and a scalar Mul after
//              it (alpha).
#include <cmath>

#include "ir/edit.h"
#include "passes/optimize/fuse_util.h"
#include "passes/optimize/pattern.h"

namespace slmops::passes {
namespace {

constexpr const char* kMs = "com.microsoft";

ir::Value* in0(const ir::Node* n) { return n && !n->inputs.empty() ? n->inputs[0] : nullptr; }

// The Mul node reading `v` alone, and its other operand.
std::pair<ir::Node*, ir::Value*> mul_by(const ir::Value* v) {
  ir::Node* m = sole_reader_op(v, "Mul");
  return {m, m ? other_input(*m, v) : nullptr};
}

// The output of x * 0.5 * p for a Mul `m1` = p * o: returns the last Mul, or nullptr.
ir::Node* times_half_x(ir::Node* m1, ir::Value* o, ir::Value* x) {
  if (o == x) {  // (p * x) * 0.5
    auto [m2, c] = mul_by(m1->outputs[0]);
    return m2 && const_all_near(c, 0.5) ? m2 : nullptr;
  }
  if (const_all_near(o, 0.5)) {  // (p * 0.5) * x
    auto [m2, c] = mul_by(m1->outputs[0]);
    return m2 && c == x ? m2 : nullptr;
  }
  ir::Node* h = producer_of(o, "Mul");  // p * (x * 0.5)
  if (h && sole_reader(o) && other_input(*h, x) && const_all_near(other_input(*h, x), 0.5)) return m1;
  return nullptr;
}

// The part both Gelu forms share: act -> Add(1) -> x * 0.5 * that. Replaces the last Mul by
// op(x) and returns op, or nullptr when the pattern does not match.
const char* finish_gelu(ir::Graph& g, ir::Node* act, ir::Value* x, const char* op) {
  ir::Node* add = sole_reader_op(act->outputs[0], "Add");
  if (!add || !const_all_near(other_input(*add, act->outputs[0]), 1.0)) return nullptr;
  auto [m1, o] = mul_by(add->outputs[0]);
  ir::Node* last = m1 ? times_half_x(m1, o, x) : nullptr;
  if (!last) return nullptr;
  ir::replace_node(g, last, op, kMs, {x}, {});
  return op;
}

const char* fuse_gelu(ir::Graph& g, ir::Node* erf) {
  ir::Node* scale = erf->inputs.empty() ? nullptr : erf->inputs[0]->producer;
  if (!scale || !sole_reader(erf->inputs[0]) || scale->inputs.size() != 2) return nullptr;
  ir::Value* x = scale->inputs[0];
  const bool div = scale->op_type == "Div" && const_all_near(scale->inputs[1], std::sqrt(2.0), 1e-3);
  const bool mul = scale->op_type == "Mul" && const_all_near(scale->inputs[1], std::sqrt(0.5), 1e-3);
  if (!div && !mul) return nullptr;
  return finish_gelu(g, erf, x, "Gelu");
}

const char* fuse_bias_gelu(ir::Graph& g, ir::Node* gelu) {
  ir::Node* add = producer_of(in0(gelu), "Add");
  if (!add || !sole_reader(in0(gelu)) || add->inputs.size() != 2) return nullptr;
  ir::Value* bias = add->inputs[1];
  ir::Value* a = add->inputs[0];
  if (!ir::constant_tensor(bias)) std::swap(a, bias);
  if (!ir::constant_tensor(bias) || bias->initializer->dims.size() != 1) return nullptr;
  auto shape = partial_shape(a);
  if (!shape || shape->empty() || shape->back() != bias->initializer->dims[0]) return nullptr;
  ir::replace_node(g, gelu, "BiasGelu", kMs, {a, bias}, {});
  return "BiasGelu";
}

// 0.5 * x * (1 + Tanh(sqrt(2/pi) * (x + 0.044715 * x^3))), with x^3 as Pow(x, 3) or x*x*x.
const char* fuse_fast_gelu(ir::Graph& g, ir::Node* tanh) {
  ir::Node* outer = producer_of(in0(tanh), "Mul");
  if (!outer || !sole_reader(in0(tanh))) return nullptr;
  ir::Value* inner_v = nullptr;
  for (ir::Value* v : outer->inputs)
    if (const_all_near(v, std::sqrt(2.0 / M_PI), 1e-3)) inner_v = other_input(*outer, v);
  ir::Node* sum = producer_of(inner_v, "Add");
  if (!sum || !sole_reader(inner_v) || sum->inputs.size() != 2) return nullptr;
  ir::Value* x = nullptr;
  for (int k = 0; k < 2 && !x; ++k) {
    ir::Node* cubic = producer_of(sum->inputs[1 - k], "Mul");
    if (!cubic) continue;
    ir::Value* c = nullptr;
    for (ir::Value* v : cubic->inputs)
      if (const_all_near(v, 0.044715, 1e-4)) c = other_input(*cubic, v);
    ir::Node* pow = producer_of(c, "Pow");
    if (pow && in0(pow) == sum->inputs[k] && const_all_near(pow->inputs[1], 3.0)) x = sum->inputs[k];
  }
  if (!x) return nullptr;
  return finish_gelu(g, tanh, x, "FastGelu");
}

const char* fuse_quick_gelu(ir::Graph& g, ir::Node* sig) {
  auto [m, x] = mul_by(sig->outputs[0]);
  if (!m || !x) return nullptr;
  float alpha = 1.0f;
  if (in0(sig) != x) {
    ir::Node* scale = producer_of(in0(sig), "Mul");
    if (!scale || !sole_reader(in0(sig)) || !other_input(*scale, x)) return nullptr;
    auto a = const_scalar(other_input(*scale, x));
    if (!a) return nullptr;
    alpha = static_cast<float>(*a);
  }
  ir::replace_node(g, m, "QuickGelu", kMs, {x}, attribute_list(ir::Attribute::make_float("alpha", alpha)));
  return "QuickGelu";
}

// ReduceMean over the last axis (keepdims) of Pow(x, 2); returns x.
ir::Value* mean_square_input(const ir::Node* rm, int64_t opset) {
  ir::Node* pow = producer_of(mean_over_last(rm, opset), "Pow");
  if (!pow || !sole_reader(in0(rm)) || !const_all_near(pow->inputs[1], 2.0)) return nullptr;
  return in0(pow);
}

const char* fuse_rms_norm(ir::Graph& g, ir::Node* sqrt, int64_t opset) {
  ir::Node* add = producer_of(in0(sqrt), "Add");
  if (!add || !sole_reader(in0(sqrt)) || add->inputs.size() != 2) return nullptr;
  ir::Node* rm = add->inputs[0]->producer;
  ir::Value* x = mean_square_input(rm, opset);
  auto eps = const_scalar(add->inputs[1]);
  if (!x || !eps || !sole_reader(add->inputs[0]) || dtype_of(x) != ir::DType::Float) return nullptr;
  // x / sqrt, or x * (1 / sqrt), or x * Reciprocal(sqrt).
  ir::Node* normed = nullptr;
  if (!sole_reader(sqrt->outputs[0])) return nullptr;
  ir::Node* next = sqrt->outputs[0]->consumers[0];
  if (next->op_type == "Div" && next->inputs[0] == x && next->inputs[1] == sqrt->outputs[0]) {
    normed = next;
  } else if ((next->op_type == "Div" && const_all_near(next->inputs[0], 1.0) && next->inputs[1] == sqrt->outputs[0]) ||
             next->op_type == "Reciprocal") {
    auto [m, o] = mul_by(next->outputs[0]);
    if (m && o == x) normed = m;
  }
  if (!normed) return nullptr;
  auto [gm, gamma] = mul_by(normed->outputs[0]);
  if (!gm || !ir::constant_tensor(gamma) || gamma->initializer->dims.size() != 1) return nullptr;
  ir::replace_node(g, gm, "SimplifiedLayerNormalization", "", {x, gamma},
                   attribute_list(ir::Attribute::make_int("axis", -1),
                                  ir::Attribute::make_float("epsilon", static_cast<float>(*eps)),
                                  ir::Attribute::make_int("stash_type", 1)));
  return "SimplifiedLayerNormalization";
}

// LayerNormalization or SimplifiedLayerNormalization of Add(a, b) -> the Skip form.
const char* fuse_skip(ir::Graph& g, ir::Node* norm) {
  const bool simplified = norm->op_type == "SimplifiedLayerNormalization";
  ir::Node* add = producer_of(in0(norm), "Add");
  if (!add || add->inputs.size() != 2 || norm->inputs.size() < 2) return nullptr;
  for (size_t k = 1; k < norm->outputs.size(); ++k)
    if (norm->outputs[k] && (!norm->outputs[k]->consumers.empty() || norm->outputs[k]->is_graph_output()))
      return nullptr;
  if (norm->attr_int("axis", -1) != -1) {
    auto s = partial_shape(in0(norm));
    if (!s || norm->attr_int("axis", -1) != static_cast<int64_t>(s->size()) - 1) return nullptr;
  }
  auto sa = partial_shape(add->inputs[0]), sb = partial_shape(add->inputs[1]);
  if (!sa || !sb || sa->size() != 3 || *sa != *sb || ir::constant_tensor(add->inputs[0]) ||
      ir::constant_tensor(add->inputs[1]))
    return nullptr;
  for (int64_t d : *sa)
    if (d < 0) {
      // Symbolic dims must be the same symbol: compare the declared/inferred names.
      const auto& ta = add->inputs[0]->inferred.dims;
      const auto& tb = add->inputs[1]->inferred.dims;
      if (ta.size() != 3 || ta != tb) return nullptr;
      break;
    }
  ir::Value* sum = add->outputs[0];
  std::vector<ir::Value*> inputs{add->inputs[0], add->inputs[1], norm->inputs[1]};
  if (!simplified && norm->inputs.size() > 2 && norm->inputs[2]) inputs.push_back(norm->inputs[2]);
  const float eps = norm->attr_float("epsilon", 1e-5f);
  const bool others_read_sum = sum->consumers.size() > 1 || sum->is_graph_output();
  ir::Node* skip = ir::replace_node(g, norm, simplified ? "SkipSimplifiedLayerNormalization" : "SkipLayerNormalization",
                                    kMs, inputs, attribute_list(ir::Attribute::make_float("epsilon", eps)));
  for (size_t k = 1; k < skip->outputs.size(); ++k)
    if (skip->outputs[k]) skip->outputs[k]->producer = nullptr;  // unread norm statistics
  skip->outputs.resize(1);
  if (others_read_sum) {
    // Output 3 (input_skip_bias_sum) stands for the Add for its other readers.
    g.remove_node(add);
    skip->outputs.resize(4, nullptr);
    skip->outputs[3] = sum;
    sum->producer = skip;
  }
  return simplified ? "SkipSimplifiedLayerNormalization" : "SkipLayerNormalization";
}

// Transpose swapping the last two axes and nothing else, read only by `mm`.
ir::Value* swapped_source(const ir::Value* v) {
  ir::Node* t = producer_of(v, "Transpose");
  if (!t || !sole_reader(v)) return nullptr;
  auto p = t->attr("perm") ? std::optional(t->attr_ints("perm")) : std::nullopt;
  if (!p || p->size() < 2) return nullptr;
  const size_t r = p->size();
  for (size_t i = 0; i + 2 < r; ++i)
    if ((*p)[i] != static_cast<int64_t>(i)) return nullptr;
  if ((*p)[r - 2] != static_cast<int64_t>(r - 1) || (*p)[r - 1] != static_cast<int64_t>(r - 2)) return nullptr;
  return in0(t);
}

const char* fuse_matmul(ir::Graph& g, ir::Node* mm) {
  if (mm->inputs.size() != 2 || dtype_of(mm->inputs[0]) != ir::DType::Float) return nullptr;
  ir::Value* a = mm->inputs[0];
  ir::Value* b = mm->inputs[1];
  ir::Value* sa = swapped_source(a);
  ir::Value* sb = swapped_source(b);
  auto [scale, c] = mul_by(mm->outputs[0]);
  auto alpha = scale && c ? const_scalar(c) : std::nullopt;
  if (alpha && dtype_of(c) != ir::DType::Float) alpha.reset();
  if (!sa && !sb && !alpha) return nullptr;
  ir::Node* last = alpha ? scale : mm;
  auto attrs =
      attribute_list(ir::Attribute::make_float("alpha", alpha ? static_cast<float>(*alpha) : 1.0f),
                     ir::Attribute::make_int("transA", sa ? 1 : 0), ir::Attribute::make_int("transB", sb ? 1 : 0));
  ir::replace_node(g, last, "FusedMatMul", kMs, {sa ? sa : a, sb ? sb : b}, std::move(attrs));
  return "FusedMatMul";
}

}  // namespace

int64_t fuse_onnxruntime(ir::Model& m, ir::Graph& g, OptimizeStats& st) {
  const int64_t opset = m.opset("");
  return apply_rules(
      g,
      [&](ir::Node* n) -> const char* {
        if (n->outputs.empty() || !n->outputs[0]) return nullptr;
        if (n->domain == kMs) return n->op_type == "Gelu" ? fuse_bias_gelu(g, n) : nullptr;
        if (!ir::is_default_domain(n->domain)) return nullptr;
        const std::string& op = n->op_type;
        if (op == "Erf") return fuse_gelu(g, n);
        if (op == "Tanh") return fuse_fast_gelu(g, n);
        if (op == "Sigmoid") return fuse_quick_gelu(g, n);
        if (op == "Sqrt") return fuse_rms_norm(g, n, opset);
        if (op == "LayerNormalization" || op == "SimplifiedLayerNormalization") return fuse_skip(g, n);
        if (op == "MatMul") return fuse_matmul(g, n);
        return nullptr;
      },
      st);
}

}  // namespace slmops::passes
