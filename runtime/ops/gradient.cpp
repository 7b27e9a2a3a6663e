// ai.onnx.preview.training.Gradient (opset 1): dy/dx for each x named in the attribute xs,
// by reverse-mode differentiation of the part of the enclosing graph that computes y.
//
// Plan time: walk back from y through the producers of values, stopping at the values that
// xs and zs name; the nodes met are the forward sub-computation, taken in graph order. A
// value depends on xs when it is an x or an output of a node reading such a value; the nodes
// that do lie on a path from xs to y and need a gradient rule, or planning fails naming the
// node. Any other leaf must be a constant (an initializer), as the spec makes xs and zs the
// whole set of independent variables of y. Every forward node gets its own kernel, found and
// made the way the executor makes one.
//
// Run time: the forward nodes run again on the Gradient node's inputs (which the spec lets
// differ from the graph's values of xs and zs) and every intermediate is kept. Then, from
// dy/dy = ones(shape of y), the nodes are visited in reverse and each rule turns the gradient
// of a node's output into gradients of its inputs, summed where a value has several readers:
//   dL/da = reduce_to(dL/dy * dy/da, shape of a)
// where reduce_to sums over the axes along which a was broadcast. An x that y does not
// depend on gets zeros.
#include <algorithm>
#include <array>
#include <optional>
#include <unordered_map>
#include <unordered_set>

#include "ir/edit.h"
#include "runtime/executor.h"
#include "runtime/ops/common.h"

namespace slmops::runtime::ops {
namespace {

// ---- gradient rules --------------------------------------------------------------------------

enum class Rule {
  Add, Sub, Mul, Div, Neg, Identity, Relu, Sigmoid, Tanh, Exp, Log, Sqrt, MatMul,
  Reshape,     // Reshape, Flatten, Squeeze, Unsqueeze: the gradient takes the input's shape
  NoGradient,  // Shape, Size: integer outputs through which nothing flows back
};

struct RuleEntry {
  const char* op_type;
  Rule rule;
};

// The one list of differentiable ops (default ONNX domain, any opset).
constexpr RuleEntry kRules[] = {
    {"Add", Rule::Add},         {"Sub", Rule::Sub},           {"Mul", Rule::Mul},
    {"Div", Rule::Div},         {"Neg", Rule::Neg},           {"Identity", Rule::Identity},
    {"Relu", Rule::Relu},       {"Sigmoid", Rule::Sigmoid},   {"Tanh", Rule::Tanh},
    {"Exp", Rule::Exp},         {"Log", Rule::Log},           {"Sqrt", Rule::Sqrt},
    {"MatMul", Rule::MatMul},   {"Reshape", Rule::Reshape},   {"Flatten", Rule::Reshape},
    {"Squeeze", Rule::Reshape}, {"Unsqueeze", Rule::Reshape}, {"Shape", Rule::NoGradient},
    {"Size", Rule::NoGradient},
};

std::optional<Rule> find_rule(const ir::Node& n) {
  if (!ir::is_default_domain(n.domain)) return std::nullopt;
  for (const RuleEntry& e : kRules)
    if (n.op_type == e.op_type) return e.rule;
  return std::nullopt;
}

std::string rule_list() {
  std::string s;
  for (const RuleEntry& e : kRules) s += (s.empty() ? "" : ", ") + std::string(e.op_type);
  return s;
}

// ---- tensor arithmetic for the rules (T is float or double) ---------------------------------

template <typename T>
Tensor filled(const std::vector<int64_t>& dims, T v) {
  Tensor t = new_tensor(dtype_of<T>(), dims);
  std::fill_n(t.mutable_values<T>(), t.numel(), v);
  return t;
}

// out[i] = f(a[i]).
template <typename T, typename F>
Tensor map_each(const Tensor& a, F f) {
  Tensor out = new_tensor(dtype_of<T>(), a.dims);
  const T* pa = a.values<T>();
  T* po = out.mutable_values<T>();
  for (uint64_t i = 0; i < a.numel(); ++i) po[i] = f(pa[i]);
  return out;
}

// out[i] = f(a[i], b[i]) for two tensors of one shape.
template <typename T, typename F>
Tensor zip(const Tensor& a, const Tensor& b, F f) {
  if (a.dims != b.dims) failure("shapes {} and {} differ", describe(a), describe(b));
  Tensor out = new_tensor(dtype_of<T>(), a.dims);
  const T* pa = a.values<T>();
  const T* pb = b.values<T>();
  T* po = out.mutable_values<T>();
  for (uint64_t i = 0; i < a.numel(); ++i) po[i] = f(pa[i], pb[i]);
  return out;
}

// out = f(a, b) elementwise over the numpy broadcast of the two shapes.
template <typename T, typename F>
Tensor broadcast_zip(const Tensor& a, const Tensor& b, F f) {
  const std::vector<int64_t> dims = broadcast_shapes({a.dims, b.dims});
  Tensor out = new_tensor(dtype_of<T>(), dims);
  const T* pa = a.values<T>();
  const T* pb = b.values<T>();
  T* po = out.mutable_values<T>();
  const std::array<std::vector<int64_t>, 2> strides = {broadcast_strides(a.dims, dims),
                                                       broadcast_strides(b.dims, dims)};
  for_each_broadcast<2>(dims, strides, [&](int64_t o, const std::array<int64_t, 2>& off) {
    po[o] = f(pa[off[0]], pb[off[1]]);
  });
  return out;
}

// The gradient of an input of shape `dims` that an op broadcast to t's shape: t summed over
// the broadcast axes (the leading axes dims lacks and those where dims has 1), in double.
template <typename T>
Tensor reduce_to(const Tensor& t, const std::vector<int64_t>& dims) {
  if (t.dims == dims) return t;
  if (broadcast_shapes({dims, t.dims}) != t.dims)
    failure("cannot reduce {} to a shape of rank {} that does not broadcast to it", describe(t), dims.size());
  std::vector<double> acc(ir::element_count(dims), 0.0);
  const T* pt = t.values<T>();
  const std::array<std::vector<int64_t>, 1> strides = {broadcast_strides(dims, t.dims)};
  for_each_broadcast<1>(t.dims, strides, [&](int64_t o, const std::array<int64_t, 1>& off) {
    acc[off[0]] += static_cast<double>(pt[o]);
  });
  Tensor out = new_tensor(dtype_of<T>(), dims);
  std::transform(acc.begin(), acc.end(), out.mutable_values<T>(), [](double v) { return static_cast<T>(v); });
  return out;
}

// c[i] = op(a[i]) · op(b[i]) for every index i of the broadcast batch axes (all but the last
// two), where op transposes the last two axes when asked. Both operands have rank >= 2.
template <typename T>
Tensor batched_matmul(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b) {
  const size_t ra = a.dims.size(), rb = b.dims.size();
  const int64_t a0 = a.dims[ra - 2], a1 = a.dims[ra - 1], b0 = b.dims[rb - 2], b1 = b.dims[rb - 1];
  const int64_t m = trans_a ? a1 : a0, k = trans_a ? a0 : a1, n = trans_b ? b0 : b1;
  if ((trans_b ? b1 : b0) != k) failure("MatMul of {} and {} does not fit", describe(a), describe(b));
  const std::vector<int64_t> batch_a(a.dims.begin(), a.dims.end() - 2), batch_b(b.dims.begin(), b.dims.end() - 2);
  const std::vector<int64_t> batch = broadcast_shapes({batch_a, batch_b});
  std::vector<int64_t> dims = batch;
  dims.push_back(m);
  dims.push_back(n);
  Tensor c = new_zero_tensor(dtype_of<T>(), dims);
  // Element strides of A(i, p) and B(p, j) within one matrix.
  const int64_t a_i = trans_a ? 1 : a1, a_p = trans_a ? a1 : 1;
  const int64_t b_p = trans_b ? 1 : b1, b_j = trans_b ? b1 : 1;
  const std::array<std::vector<int64_t>, 2> strides = {broadcast_strides(batch_a, batch),
                                                       broadcast_strides(batch_b, batch)};
  for_each_broadcast<2>(batch, strides, [&](int64_t o, const std::array<int64_t, 2>& off) {
    const T* pa = a.values<T>() + off[0] * a0 * a1;
    const T* pb = b.values<T>() + off[1] * b0 * b1;
    T* pc = c.mutable_values<T>() + o * m * n;
    for (int64_t i = 0; i < m; ++i)
      for (int64_t p = 0; p < k; ++p) {
        const T av = pa[i * a_i + p * a_p];
        for (int64_t j = 0; j < n; ++j) pc[i * n + j] += av * pb[p * b_p + j * b_j];
      }
  });
  return c;
}

// MatMul y = a · b (numpy matmul: a 1-D a is a row, a 1-D b a column, and that axis is
// dropped from y): da = g · bᵀ and db = aᵀ · g on the operands seen as matrices, each summed
// over the batch axes its operand was broadcast along.
template <typename T>
void matmul_gradient(const Tensor& a, const Tensor& b, const Tensor& g, const std::vector<bool>& need,
                     std::vector<std::optional<Tensor>>& gin) {
  const Tensor a2 = a.dims.size() == 1 ? reshaped(a, {1, a.dims[0]}) : a;
  const Tensor b2 = b.dims.size() == 1 ? reshaped(b, {b.dims[0], 1}) : b;
  if (a2.dims.size() < 2 || b2.dims.size() < 2) bad_input("MatMul operands must not be scalars");
  std::vector<int64_t> g_dims = broadcast_shapes({std::vector<int64_t>(a2.dims.begin(), a2.dims.end() - 2),
                                                  std::vector<int64_t>(b2.dims.begin(), b2.dims.end() - 2)});
  g_dims.push_back(a2.dims[a2.dims.size() - 2]);
  g_dims.push_back(b2.dims.back());
  if (ir::element_count(g_dims) != g.numel()) failure("MatMul gradient {} does not fit its operands", describe(g));
  const Tensor g2 = reshaped(g, g_dims);
  if (need[0]) gin[0] = reshaped(reduce_to<T>(batched_matmul<T>(g2, false, b2, true), a2.dims), a.dims);
  if (need[1]) gin[1] = reshaped(reduce_to<T>(batched_matmul<T>(a2, true, g2, false), b2.dims), b.dims);
}

// Gradients of a node's inputs from the gradient g of its (only differentiable) output y;
// in[i] is the i-th input's value (nullptr when omitted). Only inputs with need[i] are made.
template <typename T>
std::vector<std::optional<Tensor>> apply_rule(Rule rule, const ir::Node& node, const std::vector<const Tensor*>& in,
                                              const Tensor& y, const Tensor& g, const std::vector<bool>& need) {
  std::vector<std::optional<Tensor>> gin(in.size());
  auto x = [&](size_t i) -> const Tensor& {
    if (i >= in.size() || !in[i])
      bad_input_at(node_label(node), "node {} ({}): input {} is missing", node_label(node), node.op_type, i);
    if (in[i]->dtype != dtype_of<T>())
      bad_input_at(node_label(node),
                   "node {} ({}): input {} is {}, but y is {}; Gradient needs one float type throughout",
                   node_label(node), node.op_type, i, describe(*in[i]), ir::dtype_name(dtype_of<T>()));
    return *in[i];
  };
  auto unary = [&](auto dy_dx) {  // derivative written with the input: dy_dx(x)
    if (need[0]) gin[0] = zip<T>(g, x(0), [&](T gv, T xv) { return gv * dy_dx(xv); });
  };
  auto of_output = [&](auto dy) {  // derivative written with the output: dy(y)
    if (need[0]) gin[0] = zip<T>(g, y, [&](T gv, T yv) { return gv * dy(yv); });
  };
  switch (rule) {
    case Rule::Add:
    case Rule::Sub:
      if (need[0]) gin[0] = reduce_to<T>(g, x(0).dims);
      if (need[1]) gin[1] = reduce_to<T>(rule == Rule::Add ? g : map_each<T>(g, [](T v) { return -v; }), x(1).dims);
      break;
    case Rule::Mul:
      if (need[0]) gin[0] = reduce_to<T>(broadcast_zip<T>(g, x(1), [](T gv, T v) { return gv * v; }), x(0).dims);
      if (need[1]) gin[1] = reduce_to<T>(broadcast_zip<T>(g, x(0), [](T gv, T v) { return gv * v; }), x(1).dims);
      break;
    case Rule::Div: {
      // y = a / b: dy/da = 1 / b, dy/db = -a / b² = -y / b.
      const Tensor q = broadcast_zip<T>(g, x(1), [](T gv, T bv) { return gv / bv; });
      if (need[0]) gin[0] = reduce_to<T>(q, x(0).dims);
      if (need[1]) gin[1] = reduce_to<T>(zip<T>(q, y, [](T qv, T yv) { return -qv * yv; }), x(1).dims);
      break;
    }
    case Rule::Neg:
      if (need[0]) gin[0] = map_each<T>(g, [](T v) { return -v; });
      break;
    case Rule::Identity:
      if (need[0]) gin[0] = g;
      break;
    case Rule::Relu:
      unary([](T xv) { return xv > T(0) ? T(1) : T(0); });
      break;
    case Rule::Log:
      unary([](T xv) { return T(1) / xv; });
      break;
    case Rule::Sigmoid:
      of_output([](T yv) { return yv * (T(1) - yv); });
      break;
    case Rule::Tanh:
      of_output([](T yv) { return T(1) - yv * yv; });
      break;
    case Rule::Exp:
      of_output([](T yv) { return yv; });
      break;
    case Rule::Sqrt:
      of_output([](T yv) { return T(0.5) / yv; });
      break;
    case Rule::MatMul:
      matmul_gradient<T>(x(0), x(1), g, need, gin);
      break;
    case Rule::Reshape:
      if (need[0]) gin[0] = reshaped(g, x(0).dims);
      break;
    case Rule::NoGradient:
      break;
  }
  return gin;
}

// into += g, into a new tensor (gradients may share storage with each other).
template <typename T>
void accumulate(std::optional<Tensor>& into, Tensor g) {
  if (!into) {
    into = std::move(g);
    return;
  }
  into = zip<T>(*into, g, [](T a, T b) { return a + b; });
}

// ---- the kernel ------------------------------------------------------------------------------

struct ForwardStep {
  const ir::Node* node = nullptr;
  std::unique_ptr<Kernel> kernel;
  std::vector<int> in, out;   // value slots; -1: omitted
  std::optional<Rule> rule;   // set when the node reads a value that depends on xs
  std::vector<bool> need;     // per input: whether it depends on xs
};

// Runs the forward steps in reverse from dy/dy = ones; grads[s] is dy/d(value in slot s).
template <typename T>
void backpropagate(const std::vector<ForwardStep>& steps, const std::vector<RValue>& vals, int y_slot,
                   std::vector<std::optional<Tensor>>& grads) {
  grads[y_slot] = filled<T>(vals[y_slot].tensor.dims, T(1));
  for (auto it = steps.rbegin(); it != steps.rend(); ++it) {
    const ForwardStep& st = *it;
    if (!st.rule || *st.rule == Rule::NoGradient) continue;
    // Every op with a rule has one output.
    if (st.out.empty() || st.out[0] < 0 || !grads[st.out[0]]) continue;
    const Tensor& g = *grads[st.out[0]];
    const RValue& y = vals[st.out[0]];
    if (!y.is_tensor())
      bad_input_at(node_label(*st.node), "node {} ({}) made no tensor", node_label(*st.node), st.node->op_type);
    std::vector<const Tensor*> in;
    for (int s : st.in) in.push_back(s >= 0 && vals[s].is_tensor() ? &vals[s].tensor : nullptr);
    std::vector<std::optional<Tensor>> gin = apply_rule<T>(*st.rule, *st.node, in, y.tensor, g, st.need);
    for (size_t i = 0; i < gin.size(); ++i)
      if (gin[i] && st.need[i]) accumulate<T>(grads[st.in[i]], std::move(*gin[i]));
  }
}

class GradientKernel : public Kernel {
 public:
  GradientKernel(const ir::Node& n, const PlanContext& pc) {
    const ir::Graph* g = n.graph;
    if (!g) bad_input("the Gradient node is not part of a graph");
    const ir::Attribute* xs = n.attr("xs");
    const ir::Attribute* zs = n.attr("zs");
    const std::string y_name = n.attr_string("y", "");
    if (!xs || xs->strings.empty()) bad_input("attribute 'xs' is missing or empty");
    if (y_name.empty()) bad_input("attribute 'y' is missing");
    std::vector<std::string> names = xs->strings;
    if (zs) names.insert(names.end(), zs->strings.begin(), zs->strings.end());
    x_count_ = xs->strings.size();
    source_count_ = names.size();
    if (n.inputs.size() != names.size())
      bad_input("has {} inputs, but xs and zs name {} tensors (one input each, xs then zs)", n.inputs.size(),
                names.size());
    if (n.outputs.size() > x_count_) bad_input("has {} outputs, but xs names only {}", n.outputs.size(), x_count_);

    auto find = [&](const std::string& name, const char* attr) {
      const ir::Value* v = g->find_value(name);
      if (!v) bad_input("attribute '{}' names '{}', which graph '{}' does not have", attr, name, g->name);
      return v;
    };
    std::unordered_map<const ir::Value*, int> slot;
    std::vector<bool> active;  // per slot: depends on xs
    for (size_t i = 0; i < names.size(); ++i) {
      const ir::Value* v = find(names[i], i < x_count_ ? "xs" : "zs");
      if (!slot.emplace(v, static_cast<int>(i)).second) bad_input("'{}' is named twice in xs and zs", names[i]);
      active.push_back(i < x_count_);
    }
    const ir::Value* y = find(y_name, "y");

    // The forward sub-computation: producers reached from y without passing xs or zs.
    std::unordered_set<const ir::Node*> forward;
    std::unordered_set<const ir::Value*> seen;
    std::vector<const ir::Value*> stack = {y};
    while (!stack.empty()) {
      const ir::Value* v = stack.back();
      stack.pop_back();
      if (!v || slot.count(v) || !seen.insert(v).second) continue;
      if (v->kind == ir::Value::Kind::NodeOutput && v->producer) {
        const ir::Node* p = v->producer;
        if (p == &n) bad_input("y '{}' depends on this Gradient node's own outputs", y_name);
        if (p->has_subgraphs())
          bad_input_at(node_label(*p),
                       "node {} ({}) between xs/zs and y '{}' has subgraphs; Gradient does not differentiate "
                       "control flow",
                       node_label(*p), p->op_type, y_name);
        if (forward.insert(p).second) stack.insert(stack.end(), p->inputs.begin(), p->inputs.end());
      } else if (!v->initializer) {
        bad_input("y '{}' depends on '{}', which is neither named in xs or zs nor a constant; add it to zs", y_name,
                  v->name);
      }
    }

    for (const ir::Node* m : g->topological_order()) {
      if (!forward.count(m)) continue;
      ForwardStep st;
      st.node = m;
      for (const ir::Value* v : m->inputs) {
        if (!v) {
          st.in.push_back(-1);
          st.need.push_back(false);
          continue;
        }
        auto [it, inserted] = slot.try_emplace(v, static_cast<int>(active.size()));
        if (inserted) {  // producers come first, so a value new here is a constant leaf
          constants_.emplace_back(it->second, v);
          active.push_back(false);
        }
        st.in.push_back(it->second);
        st.need.push_back(active[it->second]);
      }
      const bool on_path = std::find(st.need.begin(), st.need.end(), true) != st.need.end();
      if (on_path) {
        st.rule = find_rule(*m);
        if (!st.rule)
          bad_input_at(node_label(*m),
                       "node {} ({}) lies on a path from xs to y '{}' but has no gradient rule (rules: {})",
                       node_label(*m), m->op_type, y_name, rule_list());
      }
      for (const ir::Value* v : m->outputs) {
        if (!v) {
          st.out.push_back(-1);
          continue;
        }
        st.out.push_back(slot.emplace(v, static_cast<int>(active.size())).first->second);
        active.push_back(on_path && *st.rule != Rule::NoGradient);
      }
      PlanContext npc = pc;
      npc.opset = pc.model ? static_cast<int>(pc.model->opset(m->domain)) : 0;
      const KernelFactory* make = find_kernel(m->domain, m->op_type, npc.opset);
      if (!make)
        bad_input_at(node_label(*m), "node {}: op {} (opset {}) between xs/zs and y has no kernel", node_label(*m),
                     m->op_type, npc.opset);
      try {
        st.kernel = (*make)(*m, npc);
      } catch (const Error& e) {
        throw Error(e.code(), fmt::format("node {} ({}): {}", node_label(*m), m->op_type, e.what()), node_label(*m));
      }
      steps_.push_back(std::move(st));
    }
    y_slot_ = slot.at(y);
    slot_count_ = static_cast<int>(active.size());
  }

  void run(OpContext& ctx) override {
    if (ctx.input_count() != source_count_)
      bad_input("has {} inputs, but xs and zs name {} tensors", ctx.input_count(), source_count_);
    std::vector<RValue> vals(slot_count_);
    for (size_t i = 0; i < source_count_; ++i) {
      if (!ctx.has_input(i)) bad_input("input {} is missing", i);
      vals[i] = *ctx.inputs[i];
    }
    for (const auto& [s, v] : constants_) {
      const RValue* r = ctx.frame ? ctx.frame->lookup(v) : nullptr;
      if (r) {
        vals[s] = *r;
      } else if (v->kind == ir::Value::Kind::Initializer) {
        vals[s] = RValue::of(*v->initializer);
      } else {  // a graph input with a default, with no frame to say whether it was fed
        bad_input("no value for '{}'", v->name);
      }
    }

    OpContext fctx;
    fctx.pool = ctx.pool;
    for (const ForwardStep& st : steps_) {
      fctx.node = st.node;
      fctx.inputs.clear();
      for (int s : st.in) fctx.inputs.push_back(s >= 0 ? &vals[s] : nullptr);
      std::vector<RValue> outs(st.out.size());
      fctx.outputs = &outs;
      try {
        st.kernel->run(fctx);
      } catch (const Error& e) {
        throw Error(e.code(),
                    fmt::format("forward node {} ({}): {}", node_label(*st.node), st.node->op_type, e.what()));
      }
      for (size_t k = 0; k < outs.size(); ++k)
        if (st.out[k] >= 0) vals[st.out[k]] = std::move(outs[k]);
    }

    const RValue& y = vals[y_slot_];
    if (!y.is_tensor()) bad_input("y is not a tensor");
    std::vector<std::optional<Tensor>> grads(slot_count_);
    dispatch<kFloats>(y.tensor.dtype, "Gradient (y)", [&](auto tag) {
      backpropagate<decltype(tag)>(steps_, vals, y_slot_, grads);
    });
    for (size_t k = 0; k < ctx.output_count() && k < x_count_; ++k) {
      if (grads[k]) {
        ctx.set_out(k, std::move(*grads[k]));
      } else {  // y does not depend on this x
        const Tensor& x = vals[k].tensor;
        ctx.set_out(k, new_zero_tensor(x.dtype, x.dims));
      }
    }
  }

 private:
  std::vector<ForwardStep> steps_;
  std::vector<std::pair<int, const ir::Value*>> constants_;  // slot, initializer-backed leaf
  size_t x_count_ = 0, source_count_ = 0;  // slots 0..source_count_-1 hold xs, then zs
  int y_slot_ = 0, slot_count_ = 0;
};

}  // namespace
}  // namespace slmops::runtime::ops

namespace slmops::runtime {
void register_gradient_ops() {
  register_kernel("ai.onnx.preview.training", "Gradient", 1, [](const ir::Node& n, const PlanContext& pc) {
    return std::make_unique<ops::GradientKernel>(n, pc);
  });
}
}  // namespace slmops::runtime
