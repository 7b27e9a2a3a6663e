// eliminate: nodes that change nothing, chains that collapse, and repeated computations.
//
//   Before: Cast(x: float, to=float) -> a;  Transpose(a, [0,2,1]) -> b;  Transpose(b, [0,2,1]) -> c
//           Shape(x) -> s1;  Shape(x) -> s2;  Gather(s1, 0);  Gather(s2, 0)
//   After:  c is x;  Shape(x) -> s1;  Gather(s1, 0)
// No-ops (removed when the types and dims that prove them are known): Cast to the input's own
// type, Reshape/Expand whose output has the input's dims, Transpose with the identity
// permutation, Slice covering every element, Pad adding nothing, Unsqueeze(Squeeze(x, a), a)
// and Squeeze(Unsqueeze(x, a), a). Chains: Transpose(Transpose(x)) becomes one Transpose (or
// none), Reshape(Reshape(x)) one Reshape when the outer shape copies no dim (no 0 entry).
// Common subexpressions: two deterministic nodes without subgraphs with the same op, domain,
// attributes and inputs (after equal initializers are merged) become one.
#include <algorithm>
#include <map>
#include <numeric>
#include <unordered_set>

#include "ir/edit.h"
#include "ir/size.h"
#include "passes/cleanup.h"
#include "passes/optimize/optimize.h"
#include "passes/optimize/pattern.h"
#include "passes/registry.h"

namespace slmops::passes {
namespace {

const ir::Value* in_at(const ir::Node& n, size_t i) { return i < n.inputs.size() ? n.inputs[i] : nullptr; }

// Axes of Squeeze/Unsqueeze: the attribute before opset 13, the second input after.
std::optional<std::vector<int64_t>> axes_of(const ir::Node& n, int64_t opset) {
  if (opset < 13) {
    if (!n.attr("axes")) return std::nullopt;
    return n.attr_ints("axes");
  }
  return in_at(n, 1) ? const_ints(in_at(n, 1)) : std::nullopt;
}

std::optional<std::vector<int64_t>> perm_of(const ir::Node& n) {
  if (!n.attr("perm")) return std::nullopt;
  return n.attr_ints("perm");
}

bool is_identity_perm(const std::vector<int64_t>& p) {
  for (size_t i = 0; i < p.size(); ++i)
    if (p[i] != static_cast<int64_t>(i)) return false;
  return true;
}

// The dims a Reshape produces from a known input shape and a constant target, or nothing.
std::optional<std::vector<int64_t>> reshape_result(const std::vector<int64_t>& in, std::vector<int64_t> target,
                                                   bool allowzero) {
  int64_t known = 1, infer = -1;
  for (size_t i = 0; i < target.size(); ++i) {
    if (target[i] == 0 && !allowzero) {
      if (i >= in.size()) return std::nullopt;
      target[i] = in[i];
    }
    if (target[i] == -1) {
      if (infer >= 0) return std::nullopt;
      infer = static_cast<int64_t>(i);
    } else if (target[i] < 0) {
      return std::nullopt;
    } else if (__builtin_mul_overflow(known, target[i], &known)) {
      return std::nullopt;  // a target no tensor can have (the regression model's wrapping dims)
    }
  }
  const auto count = ir::checked_element_count(in);
  if (!count || *count > static_cast<uint64_t>(INT64_MAX)) return std::nullopt;
  const auto total = static_cast<int64_t>(*count);
  if (infer >= 0) {
    if (known == 0 || total % known) return std::nullopt;
    target[infer] = total / known;
  }
  return target;
}

// Whether node `n` leaves input 0 as it is.
bool is_no_op(const ir::Node& n, int64_t opset) {
  const ir::Value* x = in_at(n, 0);
  if (!x || n.outputs.empty() || !n.outputs[0]) return false;
  const std::string& op = n.op_type;
  if (op == "Cast") {
    const ir::DType from = dtype_of(x);
    return from != ir::DType::Undefined && static_cast<int64_t>(from) == n.attr_int("to", -1);
  }
  if (op == "Transpose") {
    auto p = perm_of(n);
    if (p) return is_identity_perm(*p);
    auto s = partial_shape(x);
    return s && s->size() <= 1;
  }
  auto in = static_shape(x);
  if (!in) return false;
  if (op == "Reshape") {
    auto target = const_ints(in_at(n, 1));
    if (!target) return false;
    auto out = reshape_result(*in, *target, n.attr_int("allowzero", 0) != 0);
    return out && *out == *in;
  }
  if (op == "Expand") {
    auto shape = const_ints(in_at(n, 1));
    if (!shape || shape->size() > in->size()) return false;
    // Broadcasting `shape` against the input changes nothing when each of its dims is 1 or equal.
    const size_t off = in->size() - shape->size();
    for (size_t i = 0; i < shape->size(); ++i)
      if ((*shape)[i] != 1 && (*shape)[i] != (*in)[off + i]) return false;
    return true;
  }
  if (op == "Slice" && opset >= 10) {
    auto starts = const_ints(in_at(n, 1)), ends = const_ints(in_at(n, 2));
    if (!starts || !ends || starts->size() != ends->size()) return false;
    std::vector<int64_t> axes(starts->size());
    std::iota(axes.begin(), axes.end(), 0);
    if (in_at(n, 3)) {
      auto a = const_ints(in_at(n, 3));
      if (!a || a->size() != starts->size()) return false;
      axes = *a;
    }
    if (in_at(n, 4)) {
      auto steps = const_ints(in_at(n, 4));
      if (!steps || std::any_of(steps->begin(), steps->end(), [](int64_t s) { return s != 1; })) return false;
    }
    const auto rank = static_cast<int64_t>(in->size());
    for (size_t i = 0; i < axes.size(); ++i) {
      const int64_t axis = axes[i] < 0 ? axes[i] + rank : axes[i];
      if (axis < 0 || axis >= rank) return false;
      const int64_t dim = (*in)[axis];
      const int64_t s = (*starts)[i], e = (*ends)[i];
      if (!(s == 0 || s <= -dim)) return false;
      if (!(e >= dim)) return false;
    }
    return true;
  }
  if (op == "Pad") {
    std::optional<std::vector<int64_t>> pads;
    if (opset < 11) {
      if (n.attr("pads")) pads = n.attr_ints("pads");
    } else {
      pads = const_ints(in_at(n, 1));
    }
    return pads && std::all_of(pads->begin(), pads->end(), [](int64_t p) { return p == 0; });
  }
  return false;
}

// Unsqueeze(Squeeze(x, a), a) or Squeeze(Unsqueeze(x, a), a): the value x.
ir::Value* undone_pair(const ir::Node& n, int64_t opset) {
  const char* inner_op = n.op_type == "Unsqueeze" ? "Squeeze" : n.op_type == "Squeeze" ? "Unsqueeze" : nullptr;
  if (!inner_op) return nullptr;
  ir::Node* inner = producer_of(in_at(n, 0), inner_op);
  if (!inner || !in_at(*inner, 0)) return nullptr;
  auto a = axes_of(n, opset), b = axes_of(*inner, opset);
  if (!a || !b || a->empty()) return nullptr;
  std::sort(a->begin(), a->end());
  std::sort(b->begin(), b->end());
  if (*a != *b || std::any_of(a->begin(), a->end(), [](int64_t x) { return x < 0; })) return nullptr;
  return inner->inputs[0];
}

// Replaces every use of `n`'s output 0 by `v` and removes `n`, unless output 0 is a graph output.
bool forward(ir::Graph& g, ir::Node* n, ir::Value* v) {
  ir::Value* out = n->outputs[0];
  if (out->is_graph_output() || v->kind == ir::Value::Kind::Captured) return false;
  g.replace_all_uses(out, v);
  g.remove_node(n);
  return true;
}

bool merge_chain(ir::Node& n) {
  if (n.op_type == "Transpose") {
    ir::Node* inner = producer_of(in_at(n, 0), "Transpose");
    if (!inner || !in_at(*inner, 0)) return false;
    auto p1 = perm_of(*inner), p2 = perm_of(n);
    if (!p1 || !p2 || p1->size() != p2->size()) return false;
    std::vector<int64_t> q(p2->size());
    for (size_t i = 0; i < q.size(); ++i) {
      if ((*p2)[i] < 0 || (*p2)[i] >= static_cast<int64_t>(p1->size())) return false;
      q[i] = (*p1)[(*p2)[i]];
    }
    n.set_input(0, inner->inputs[0]);
    n.attr("perm")->ints = q;
    return true;
  }
  if (n.op_type == "Reshape") {
    ir::Node* inner = producer_of(in_at(n, 0), "Reshape");
    if (!inner || !in_at(*inner, 0)) return false;
    auto target = const_ints(in_at(n, 1));
    if (!target || (n.attr_int("allowzero", 0) == 0 && std::count(target->begin(), target->end(), 0) > 0)) return false;
    n.set_input(0, inner->inputs[0]);
    return true;
  }
  return false;
}

bool deterministic(const ir::Node& n) {
  static const std::unordered_set<std::string> random = {"RandomNormal",      "RandomUniform", "RandomNormalLike",
                                                         "RandomUniformLike", "Multinomial",   "Bernoulli"};
  return !random.count(n.op_type);
}

bool same_node(const ir::Node& a, const ir::Node& b) {
  if (a.op_type != b.op_type || a.domain != b.domain || a.inputs != b.inputs || a.outputs.size() != b.outputs.size() ||
      a.attributes.size() != b.attributes.size())
    return false;
  for (size_t k = 0; k < a.outputs.size(); ++k)
    if (static_cast<bool>(a.outputs[k]) != static_cast<bool>(b.outputs[k])) return false;
  for (const ir::Attribute& x : a.attributes) {
    const ir::Attribute* y = b.attr(x.name);
    if (!y || !same_attribute(x, *y)) return false;
  }
  return true;
}

void cse(ir::Graph& g, OptimizeStats& st) {
  // Candidates share a bucket by op and first input; the graph is walked in topological order,
  // so merging a node may make its readers equal to earlier ones, and they merge in turn.
  std::map<std::tuple<std::string, std::string, const ir::Value*, size_t>, std::vector<ir::Node*>> seen;
  for (ir::Node* n : g.topological_order()) {
    if (n->has_subgraphs() || !n->implicit_inputs.empty() || !deterministic(*n) || n->outputs.empty()) continue;
    bool output = false;
    for (const ir::Value* v : n->outputs) output = output || (v && v->is_graph_output());
    auto& bucket = seen[{n->op_type, n->domain, n->inputs.empty() ? nullptr : n->inputs[0], n->inputs.size()}];
    ir::Node* same = nullptr;
    for (ir::Node* c : bucket)
      if (same_node(*c, *n)) {
        same = c;
        break;
      }
    if (!same || output) {
      if (!same) bucket.push_back(n);
      continue;
    }
    for (size_t k = 0; k < n->outputs.size(); ++k)
      if (n->outputs[k]) g.replace_all_uses(n->outputs[k], same->outputs[k]);
    g.remove_node(n);
    ++st.subexpressions_merged;
  }
}

void eliminate_graph(ir::Model& m, ir::Graph& g, const EliminateOptions& o, OptimizeStats& st) {
  const int64_t opset = m.opset("");
  for (ir::Node* n : g.topological_order()) {
    if (!ir::is_default_domain(n->domain)) continue;
    if (o.no_ops && is_no_op(*n, opset) && n->inputs[0]->kind != ir::Value::Kind::Captured && ir::bypass_node(g, n)) {
      ++st.no_ops_removed;
      continue;
    }
    if (o.no_ops) {
      if (ir::Value* x = undone_pair(*n, opset); x && forward(g, n, x)) {
        ++st.no_ops_removed;
        continue;
      }
    }
    if (o.merge_chains && merge_chain(*n)) {
      ++st.chains_merged;
      auto p = perm_of(*n);
      if (n->op_type == "Transpose" && p && is_identity_perm(*p) && ir::bypass_node(g, n)) ++st.no_ops_removed;
    }
  }
  if (o.cse) {
    CleanupOptions merge_only;
    merge_only.remove_identity = merge_only.remove_dropout = merge_only.remove_dead_nodes = false;
    merge_only.subgraphs = false;
    cleanup(g, merge_only);  // equal initializers first: their readers then compare equal
    cse(g, st);
  }
}

}  // namespace

const OptionTable<EliminateOptions>& EliminateOptions::table() {
  static const OptionTable<EliminateOptions> t({
      {"no-ops",
       &EliminateOptions::no_ops,
       "remove Cast/Reshape/Expand/Transpose/Slice/Pad nodes and Squeeze-Unsqueeze pairs that change nothing",
       {}},
      {"merge-chains", &EliminateOptions::merge_chains, "merge consecutive Transposes and Reshapes", {}},
      {"cse", &EliminateOptions::cse, "merge nodes with the same op, attributes and inputs", {}},
  });
  return t;
}

OptimizeStats eliminate(ir::Model& m, const EliminateOptions& o) {
  OptimizeStats st;
  st.inputs_frozen = freeze_legacy_initializer_inputs(m);
  for_each_graph(m, [&](ir::Graph& g) { eliminate_graph(m, g, o, st); });
  cleanup(*m.graph, CleanupOptions{});
  return st;
}

PassInfo eliminate_pass_info() {
  PassInfo p;
  p.name = "eliminate";
  p.summary = "remove nodes that change nothing, merge Transpose/Reshape chains and common subexpressions";
  p.options = EliminateOptions::table().specs();
  p.run = [](ir::Model& m, const nlohmann::json& j, PassContext& ctx) {
    ctx.report = stats_json(eliminate(m, EliminateOptions::table().from_json(j)));
  };
  return p;
}

}  // namespace slmops::passes
