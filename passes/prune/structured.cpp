#include "passes/prune/structured.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <numeric>

#include "formats/shape_infer.h"
#include "ir/edit.h"
#include "ir/error.h"
#include "passes/common/activations.h"
#include "passes/optimize/pattern.h"
#include "passes/progress.h"
#include "passes/quant/block_quant.h"
#include "passes/quant/hessian.h"
#include "runtime/executor.h"
#include "runtime/kernels/gemm.h"
#include "runtime/thread_pool.h"

namespace slmops::passes {
namespace {

// Where the units sit in a value: its axis `ae` counted from the end (0: the last axis), each
// unit `inner` consecutive indices of that axis (1, or H*W features per channel after Flatten).
struct Desc {
  int64_t ae = 0, inner = 1;
  bool operator==(const Desc&) const = default;
};

// One tensor input to cut: input `input` of `node`, along `axis` (from the front of that
// tensor), each unit `inner` indices. `weight`: a MatMul/Gemm/Conv weight (its norms rank the
// units), `bn`: BatchNormalization's scale (weight importance multiplies its |gamma/sigma|).
struct Cut {
  ir::Node* node;
  size_t input;
  int64_t axis, inner;
  bool weight = false, reader = false;
};

// An entry of a Reshape's shape to rewrite once the units kept are known: input `input` of
// `holder` (the Reshape's shape constant, or one piece of the Concat that builds it), element
// `offset`, becomes kept * `per_unit`, or -1 (infer) when `per_unit` is 0 (a dynamic piece).
struct ShapeEdit {
  ir::Node* holder;
  size_t input;
  int64_t offset, per_unit;
};

struct Group {
  int64_t units = 0;
  std::vector<ir::Value*> order;  // values carrying the units, in the order found
  std::map<const ir::Value*, Desc> desc;
  std::vector<Cut> cuts;
  std::vector<ir::Node*> producers, readers, depthwise, bn;
  std::set<const ir::Node*> visited;
  std::string problem;  // why the set cannot be pruned
  std::vector<double> score;
  std::vector<ShapeEdit> shape_edits;
  int64_t head_dim = 0;       // when the units became attention heads: features per head
  std::vector<int64_t> keep;  // unit indices kept, ascending
  int level = 0;              // accuracy-aware: 1 halves the share removed
};

bool default_op(const ir::Node* n, std::initializer_list<std::string_view> ops) {
  if (!ir::is_default_domain(n->domain)) return false;
  return std::find(ops.begin(), ops.end(), n->op_type) != ops.end();
}

// "node 'name' (Op): why", as the report's skipped entries and errors say it.
std::string at_node(const ir::Node* n, std::string_view why) {
  return fmt::format("node {} ({}): {}", runtime::node_label(*n), n->op_type, why);
}

// The tensor of a constant: an initializer or the `value` of a Constant node.
const ir::Tensor* const_of(const ir::Value* v) {
  if (const ir::Tensor* t = ir::constant_tensor(v)) return t;
  if (v && v->producer && default_op(v->producer, {"Constant"})) {
    const ir::Attribute* a = v->producer->attr("value");
    if (a && a->t) return a->t.get();
  }
  return nullptr;
}

// The values of an int64/int32 constant (an initializer or a Constant node), or nothing.
std::optional<std::vector<int64_t>> int_values(const ir::Value* v) {
  const ir::Tensor* t = const_of(v);
  return t ? tensor_ints(*t) : std::nullopt;
}

bool readable(const ir::Tensor* t) {
  return t && ir::traits(t->dtype).bits >= 8 && ir::traits(t->dtype).bits % 8 == 0 && t->data.size() == t->nbytes();
}

const char* kUnary[] = {"Relu",     "LeakyRelu", "Sigmoid",     "Tanh",      "Erf",
                        "Gelu",     "Softplus",  "Softsign",    "Elu",       "Selu",
                        "Celu",     "Mish",      "HardSigmoid", "HardSwish", "Neg",
                        "Abs",      "Exp",       "Log",         "Sqrt",      "Reciprocal",
                        "Identity", "Cast",      "Dropout",     "Clip",      "ThresholdedRelu",
                        "Sin",      "Cos",       "Floor",       "Ceil",      "Round",
                        "Sign"};
const char* kBinary[] = {"Add", "Sub", "Mul", "Div", "Max", "Min", "Pow", "PRelu", "Where"};
const char* kPool[] = {"MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "LpPool", "GlobalLpPool"};

template <size_t N>
bool in(const char* const (&set)[N], const std::string& op) {
  return std::find_if(std::begin(set), std::end(set), [&](const char* s) { return op == s; }) != std::end(set);
}

class Finder {
 public:
  Finder(const NodeFilter* filter, const std::map<std::string, int>& lowered, bool global, int64_t opset)
      : filter_(filter), lowered_(lowered), global_(global), opset_(opset) {}

  Group find(ir::Node* seed) {
    Group g;
    g_ = &g;
    todo_.clear();
    const ir::Tensor* w = seed->inputs.size() > 1 ? const_of(seed->inputs[1]) : nullptr;
    if (seed->op_type == "MatMul") g.units = w->dims[1];
    if (seed->op_type == "Gemm") g.units = w->dims[seed->attr_int("transB", 0) ? 0 : 1];
    if (seed->op_type == "Conv") g.units = w->dims[0];
    const auto shape = partial_shape(seed->outputs[0]);
    const int64_t rank = shape ? static_cast<int64_t>(shape->size()) : (seed->op_type == "Conv" ? -1 : 0);
    if (seed->op_type == "Conv" && rank < 3) return fail(seed, "the rank of its output is not known");
    add(seed->outputs[0], seed->op_type == "Conv" ? Desc{rank - 2, 1} : Desc{0, 1});
    while (!todo_.empty() && g.problem.empty()) {
      ir::Value* v = todo_.back();
      todo_.pop_back();
      if (v->is_graph_output()) return fail(v->producer, fmt::format("value '{}' is a graph output", v->name));
      if (!v->producer) return fail(nullptr, fmt::format("value '{}' is not computed by a node", v->name));
      visit(v->producer, v);
      for (ir::Node* c : std::vector<ir::Node*>(v->consumers))
        if (g.problem.empty()) visit(c, v);
    }
    if (g.problem.empty() && g.readers.empty()) fail(seed, "no MatMul/Gemm/Conv reads its units");
    g_ = nullptr;
    return g;
  }

 private:
  Group& fail(const ir::Node* n, std::string why) {
    if (g_->problem.empty()) g_->problem = n ? at_node(n, why) : std::move(why);
    return *g_;
  }

  void add(ir::Value* v, Desc d) {
    if (!v) return;
    auto [it, fresh] = g_->desc.emplace(v, d);
    if (!fresh) {
      if (!(it->second == d)) fail(v->producer, fmt::format("value '{}' carries the units on two axes", v->name));
      return;
    }
    g_->order.push_back(v);
    todo_.push_back(v);
  }

  bool selectable(ir::Node* n) {
    if (filter_ && !filter_->allows(*n)) {
      fail(n, "excluded from pruning, but its weight would have to shrink");
      return false;
    }
    if (auto it = lowered_.find(n->name); it != lowered_.end()) {
      if (it->second >= 2 || global_) {
        fail(n, "kept whole (accuracy-aware)");
        return false;
      }
      g_->level = std::max(g_->level, it->second);
    }
    return true;
  }

  // Input `i` of `n` is a constant broadcast against a value with units at `d`: cut it along
  // its own axis when it has one entry per unit, leave it when it has one for all.
  bool constant_input(ir::Node* n, size_t i, Desc d) {
    const ir::Tensor* t = const_of(n->inputs[i]);
    if (!t) return false;
    const auto r = static_cast<int64_t>(t->dims.size());
    if (r <= d.ae) return true;
    const int64_t dim = t->dims[static_cast<size_t>(r - 1 - d.ae)];
    if (dim == 1) return true;
    if (dim != g_->units * d.inner || !readable(t)) {
      fail(n, fmt::format("constant '{}' of shape [{}] does not broadcast per unit", n->inputs[i]->name,
                          fmt::join(t->dims, ", ")));
      return true;
    }
    g_->cuts.push_back({n, i, r - 1 - d.ae, d.inner});
    return true;
  }

  bool only_output0_read(ir::Node* n) {
    for (size_t o = 1; o < n->outputs.size(); ++o)
      if (n->outputs[o] && (!n->outputs[o]->consumers.empty() || n->outputs[o]->is_graph_output())) {
        fail(n, fmt::format("its output '{}' is read", n->outputs[o]->name));
        return false;
      }
    return true;
  }

  // A MatMul/Gemm/Conv weight: a float constant the cut can read.
  const ir::Tensor* weight(ir::Node* n, size_t i, size_t rank) {
    const ir::Tensor* w = i < n->inputs.size() ? const_of(n->inputs[i]) : nullptr;
    if (!w || w->dtype != ir::DType::Float || w->dims.size() < rank || (rank == 2 && w->dims.size() != 2) ||
        !readable(w)) {
      fail(n, "its weight is not a float32 constant of the expected rank");
      return nullptr;
    }
    return w;
  }

  bool channel_axis(ir::Node* n, ir::Value* v, Desc d) {
    const auto s = partial_shape(v);
    if (!s || d.inner != 1 || d.ae != static_cast<int64_t>(s->size()) - 2) {
      fail(n, "the units are not on the channel axis (1) of its input");
      return false;
    }
    return true;
  }

  void visit(ir::Node* n, ir::Value* from) {
    if (!g_->visited.insert(n).second) return;
    const Desc d = g_->desc.at(from);
    const bool is_out = !n->outputs.empty() && n->outputs[0] == from;
    if (!ir::is_default_domain(n->domain)) return void(fail(n, "an op of another domain"));
    const std::string& op = n->op_type;
    if (in(kUnary, op)) {
      if (n->inputs.empty() || (n->inputs[0] != from && !is_out))
        return void(fail(n, "reads the units as a parameter"));
      for (size_t i = 1; i < n->inputs.size(); ++i)
        if (n->inputs[i] && !const_of(n->inputs[i])) return void(fail(n, "a parameter is not constant"));
      if (!only_output0_read(n)) return;
      add(n->inputs[0], d);
      add(n->outputs[0], d);
      return;
    }
    if (in(kBinary, op)) {
      if (op == "PRelu" || op == "Pow") {  // the second input must be a constant
        if (n->inputs.size() < 2 || n->inputs[0] == nullptr || !const_of(n->inputs[1]) || n->inputs[1] == from)
          return void(fail(n, "its second input is not a constant"));
      }
      for (size_t i = 0; i < n->inputs.size(); ++i) {
        ir::Value* x = n->inputs[i];
        if (!x) continue;
        if (constant_input(n, i, d)) {
          if (!g_->problem.empty()) return;
          continue;
        }
        if (op == "Where" && i == 0) return void(fail(n, "its condition is not constant"));
        const auto s = partial_shape(x);
        if (s && static_cast<int64_t>(s->size()) > d.ae && (*s)[s->size() - 1 - static_cast<size_t>(d.ae)] == 1)
          continue;  // broadcast over the units
        if (s && static_cast<int64_t>(s->size()) <= d.ae) continue;
        add(x, d);
      }
      add(n->outputs[0], d);
      return;
    }
    if (in(kPool, op)) {
      if (!channel_axis(n, n->inputs[0], d) || !only_output0_read(n)) return;
      add(n->inputs[0], d);
      add(n->outputs[0], d);
      return;
    }
    if (op == "BatchNormalization" || op == "InstanceNormalization") {
      if (n->inputs[0] == nullptr || !channel_axis(n, n->inputs[0], d) || !only_output0_read(n)) return;
      if (op == "BatchNormalization" && n->attr_int("training_mode", 0) != 0) return void(fail(n, "training mode"));
      for (size_t i = 1; i < n->inputs.size(); ++i) {
        const ir::Tensor* t = const_of(n->inputs[i]);
        if (!t || t->dims.size() != 1 || t->dims[0] != g_->units || !readable(t))
          return void(fail(n, "a parameter is not a constant with one entry per channel"));
        g_->cuts.push_back({n, i, 0, 1});
      }
      if (op == "BatchNormalization") g_->bn.push_back(n);
      add(n->inputs[0], d);
      add(n->outputs[0], d);
      return;
    }
    if (op == "Flatten") {
      const auto s = static_shape_tail(n->inputs[0]);
      if (n->attr_int("axis", 1) != 1 || !s) return void(fail(n, "not a Flatten at axis 1 of a known channel shape"));
      const Desc in_d{static_cast<int64_t>(s->size()) - 2, 1}, out_d{0, product_tail(*s)};
      if ((is_out && !(d == out_d)) || (!is_out && !(d == in_d))) return void(fail(n, "the units are not channels"));
      add(n->inputs[0], in_d);
      add(n->outputs[0], out_d);
      return;
    }
    if (op == "MatMul" && n->inputs.size() == 2 && !const_of(n->inputs[0]) && !const_of(n->inputs[1]))
      return batch_matmul(n, d);
    if (op == "Transpose") return transpose(n, d, is_out);
    if (op == "Reshape") return reshape(n, d, is_out);
    if (op == "Softmax" || op == "LogSoftmax") {
      const int64_t r = rank_of(n->inputs[0]);
      int64_t axis = n->attr_int("axis", opset_ >= 13 ? -1 : 1);
      if (axis < 0) axis += r;
      if (r < 0 || axis == r - 1 - d.ae || (opset_ < 13 && axis != r - 1))
        return void(fail(n, "it normalizes over the units"));
      add(n->inputs[0], d);
      add(n->outputs[0], d);
      return;
    }
    if (op == "Slice" || op == "Concat") return along_other_axis(n, d);
    if (op == "MatMul" || op == "Gemm") {
      if (!selectable(n)) return;
      const bool gemm = op == "Gemm", tb = gemm && n->attr_int("transB", 0) != 0;
      if (gemm && n->attr_int("transA", 0) != 0) return void(fail(n, "transA"));
      if (n->inputs.size() < 2 || n->inputs[1] == from) return void(fail(n, "reads the units as its weight"));
      const ir::Tensor* w = weight(n, 1, 2);
      if (!w) return;
      if (is_out) {
        if (d.ae != 0 || w->dims[tb ? 0 : 1] != g_->units * d.inner)
          return void(fail(n, "its output does not carry the units on its last axis"));
        g_->cuts.push_back({n, 1, tb ? 0 : 1, d.inner, true});
        if (gemm && n->inputs.size() > 2 && n->inputs[2] && !constant_input(n, 2, d))
          return void(fail(n, "its bias is not constant"));
        g_->producers.push_back(n);
      } else {
        if (d.ae != 0 || w->dims[tb ? 1 : 0] != g_->units * d.inner)
          return void(fail(n, "its input A does not carry the units on its reduction axis"));
        g_->cuts.push_back({n, 1, tb ? 1 : 0, d.inner, true, true});
        g_->readers.push_back(n);
      }
      return;
    }
    if (op == "Conv") {
      if (!selectable(n)) return;
      if (n->inputs.size() < 2 || n->inputs[1] == from) return void(fail(n, "reads the units as its weight"));
      const ir::Tensor* w = weight(n, 1, 3);
      if (!w) return;
      const int64_t groups = n->attr_int("group", 1);
      const bool depthwise = groups > 1 && groups == w->dims[0] && w->dims[1] == 1;
      if (is_out || depthwise) {
        if (!channel_axis(n, is_out ? n->outputs[0] : n->inputs[0], d)) return;
        if (groups > 1 && !depthwise) return void(fail(n, "a grouped Conv"));
        if (w->dims[0] != g_->units) return void(fail(n, "its output channels are not the units"));
        g_->cuts.push_back({n, 1, 0, 1, true});
        if (n->inputs.size() > 2 && n->inputs[2]) {
          const ir::Tensor* b = const_of(n->inputs[2]);
          if (!b || b->dims.size() != 1 || !readable(b)) return void(fail(n, "its bias is not constant"));
          g_->cuts.push_back({n, 2, 0, 1});
        }
        if (depthwise) {
          g_->depthwise.push_back(n);
          add(n->inputs[0], d);
          add(n->outputs[0], d);
        } else {
          g_->producers.push_back(n);
        }
      } else {
        if (!channel_axis(n, n->inputs[0], d)) return;
        if (groups != 1) return void(fail(n, "a grouped Conv reads the units"));
        if (w->dims[1] != g_->units) return void(fail(n, "its input channels are not the units"));
        g_->cuts.push_back({n, 1, 1, 1, true, true});
        g_->readers.push_back(n);
      }
      return;
    }
    fail(n, is_out ? "writes the units" : "reads the units");
  }

  static int64_t rank_of(const ir::Value* v) {
    const auto s = partial_shape(v);
    return s ? static_cast<int64_t>(s->size()) : -1;
  }

  // Feature units that turn out to be attention heads of `f` features each: every value and
  // cut so far counts heads instead.
  void coarsen(int64_t f) {
    g_->units /= f;
    for (auto& [v, d] : g_->desc) d.inner *= f;
    for (Cut& c : g_->cuts) c.inner *= f;
  }

  // MatMul of two computed values (attention scores, scores x values): the units must be a
  // batch axis, which both inputs share (or one broadcasts).
  void batch_matmul(ir::Node* n, Desc d) {
    if (d.inner != 1 || d.ae < 2) return void(fail(n, "the units are not a batch axis of the product"));
    for (ir::Value* x : n->inputs) {
      const auto s = partial_shape(x);
      if (!s) return void(fail(n, "the rank of an input is not known"));
      const auto r = static_cast<int64_t>(s->size());
      if (r <= d.ae || (*s)[static_cast<size_t>(r - 1 - d.ae)] == 1) continue;  // broadcast over the units
      add(x, d);
    }
    add(n->outputs[0], d);
  }

  void transpose(ir::Node* n, Desc d, bool is_out) {
    std::vector<int64_t> perm = n->attr_ints("perm");
    const int64_t r = perm.empty() ? rank_of(n->inputs[0]) : static_cast<int64_t>(perm.size());
    if (r < 1) return void(fail(n, "the rank is not known"));
    if (perm.empty())
      for (int64_t i = r - 1; i >= 0; --i) perm.push_back(i);
    if (d.inner != 1) return void(fail(n, "the units span several axes"));
    if (is_out) {
      add(n->inputs[0], Desc{r - 1 - perm[static_cast<size_t>(r - 1 - d.ae)], 1});
      add(n->outputs[0], d);
    } else {
      const auto j = std::find(perm.begin(), perm.end(), r - 1 - d.ae) - perm.begin();
      add(n->inputs[0], d);
      add(n->outputs[0], Desc{r - 1 - j, 1});
    }
  }

  // Slice and Concat along another axis than the units'.
  void along_other_axis(ir::Node* n, Desc d) {
    const int64_t r = rank_of(n->outputs[0]);
    if (r < 0) return void(fail(n, "its rank is not known"));
    std::vector<int64_t> axes;
    if (n->op_type == "Concat") {
      axes.push_back(n->attr_int("axis", 0));
    } else {
      if (opset_ < 10 || n->inputs.size() < 3) return void(fail(n, "a Slice of opset < 10"));
      for (size_t i = 1; i < n->inputs.size(); ++i)
        if (n->inputs[i] && !int_values(n->inputs[i])) return void(fail(n, "its starts/ends/axes are not constant"));
      if (n->inputs.size() > 3 && n->inputs[3]) {
        axes = *int_values(n->inputs[3]);
      } else {
        for (size_t i = 0; i < int_values(n->inputs[1])->size(); ++i) axes.push_back(static_cast<int64_t>(i));
      }
    }
    for (int64_t a : axes)
      if ((a < 0 ? a + r : a) == r - 1 - d.ae) return void(fail(n, "it cuts or joins along the units"));
    const size_t data_inputs = n->op_type == "Concat" ? n->inputs.size() : 1;
    for (size_t i = 0; i < data_inputs; ++i) {
      if (!n->inputs[i]) continue;
      if (const_of(n->inputs[i])) return void(fail(n, "joins a constant to the units"));
      add(n->inputs[i], d);
    }
    add(n->outputs[0], d);
  }

  // A Reshape that splits the last axis into [heads, head size] or merges them back. Its shape
  // is a constant or a Concat of constants and computed dims (batch, sequence); the entry that
  // counts heads (or heads x size) is rewritten, a computed one to -1.
  void reshape(ir::Node* n, Desc d, bool is_out) {
    struct Entry {
      ir::Node* holder;
      size_t input;
      int64_t offset;
      std::optional<int64_t> value;
    };
    std::vector<Entry> spec;
    ir::Value* shape = n->inputs.size() > 1 ? n->inputs[1] : nullptr;
    if (auto c = shape ? int_values(shape) : std::nullopt) {
      for (size_t i = 0; i < c->size(); ++i) spec.push_back({n, 1, static_cast<int64_t>(i), (*c)[i]});
    } else if (ir::Node* cat = producer_of(shape, "Concat"); cat && shape->consumers.size() == 1) {
      for (size_t j = 0; j < cat->inputs.size(); ++j) {
        if (auto piece = int_values(cat->inputs[j])) {
          for (size_t i = 0; i < piece->size(); ++i) spec.push_back({cat, j, static_cast<int64_t>(i), (*piece)[i]});
        } else {
          const auto ps = partial_shape(cat->inputs[j]);
          if (!ps || ps->size() != 1 || (*ps)[0] != 1) return void(fail(n, "its shape is not known entry by entry"));
          spec.push_back({cat, j, 0, std::nullopt});
        }
      }
    } else {
      return void(fail(n, "its shape is computed"));
    }
    const int64_t in_rank = rank_of(n->inputs[0]), out_rank = static_cast<int64_t>(spec.size());
    if (in_rank < 2) return void(fail(n, "the rank of its input is not known"));
    if (out_rank == in_rank + 1) {  // [.., H*D] -> [.., H, D]
      const auto& h = spec[spec.size() - 2].value;
      const auto& dd = spec.back().value;
      if (!dd || *dd <= 0 || !h || (*h != -1 && *h <= 0))
        return void(fail(n, "the head size of the split is not a constant"));
      if (!is_out && d == Desc{0, 1} && g_->units % *dd == 0 && g_->units != *h) coarsen(*dd);  // features -> heads
      if ((*h != -1 && *h != g_->units) ||
          !(g_->desc.at(is_out ? n->outputs[0] : n->inputs[0]) == (is_out ? Desc{1, 1} : Desc{0, *dd})))
        return void(fail(n, "it does not split the units into heads"));
      g_->head_dim = *dd;
      if (*h != -1)
        g_->shape_edits.push_back(
            {spec[spec.size() - 2].holder, spec[spec.size() - 2].input, spec[spec.size() - 2].offset, 1});
      add(n->inputs[0], Desc{0, *dd});
      add(n->outputs[0], Desc{1, 1});
    } else if (out_rank == in_rank - 1) {  // [.., H, D] -> [.., H*D]
      const auto s = partial_shape(n->inputs[0]);
      const int64_t dd = is_out ? d.inner : (s && s->back() > 0 ? s->back() : g_->head_dim);
      if (dd <= 0 || !(is_out ? d == Desc{0, dd} : d == Desc{1, 1})) return void(fail(n, "it does not merge heads"));
      const Entry& e = spec.back();
      if (e.value && *e.value != g_->units * dd && *e.value != -1)
        return void(fail(n, "its last entry is not heads x head size"));
      if (!e.value || *e.value != -1) g_->shape_edits.push_back({e.holder, e.input, e.offset, e.value ? dd : 0});
      add(n->inputs[0], Desc{1, 1});
      add(n->outputs[0], Desc{0, dd});
    } else {
      fail(n, "a Reshape that does not split or merge the last axis");
    }
  }

  // Dims 1.. of v when they are all known (N may be symbolic).
  static std::optional<std::vector<int64_t>> static_shape_tail(const ir::Value* v) {
    auto s = partial_shape(v);
    if (!s || s->size() < 3) return std::nullopt;
    for (size_t i = 1; i < s->size(); ++i)
      if ((*s)[i] < 0) return std::nullopt;
    return s;
  }
  static int64_t product_tail(const std::vector<int64_t>& s) {
    int64_t p = 1;
    for (size_t i = 2; i < s.size(); ++i) p *= s[i];
    return p;
  }

  const NodeFilter* filter_;
  const std::map<std::string, int>& lowered_;
  bool global_;
  int64_t opset_;
  Group* g_ = nullptr;
  std::vector<ir::Value*> todo_;
};

// Sum of squares per index of `axis` of a float tensor.
std::vector<double> sumsq_along(const float* x, const std::vector<int64_t>& dims, int64_t axis) {
  int64_t outer = 1, inner = 1;
  for (int64_t i = 0; i < axis; ++i) outer *= dims[static_cast<size_t>(i)];
  for (size_t i = static_cast<size_t>(axis) + 1; i < dims.size(); ++i) inner *= dims[i];
  const int64_t len = dims[static_cast<size_t>(axis)];
  std::vector<double> s(static_cast<size_t>(len), 0.0);
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t a = 0; a < len; ++a) {
      const float* p = x + (o * len + a) * inner;
      double acc = 0;
      for (int64_t i = 0; i < inner; ++i) acc += double(p[i]) * p[i];
      s[static_cast<size_t>(a)] += acc;
    }
  return s;
}

// Unit u of `per_index` (one entry per axis index) summed over its `inner` indices.
std::vector<double> per_unit(const std::vector<double>& per_index, int64_t units, int64_t inner) {
  std::vector<double> u(static_cast<size_t>(units), 0.0);
  for (size_t i = 0; i < per_index.size(); ++i) u[i / static_cast<size_t>(inner)] += per_index[i];
  return u;
}

// Copy of `t` with only the units `keep` along `axis` (each unit `inner` indices).
ir::Tensor cut_tensor(const ir::Tensor& t, int64_t axis, int64_t inner, const std::vector<int64_t>& keep) {
  const size_t es = ir::traits(t.dtype).bits / 8;
  int64_t outer = 1, rest = 1;
  for (int64_t i = 0; i < axis; ++i) outer *= t.dims[static_cast<size_t>(i)];
  for (size_t i = static_cast<size_t>(axis) + 1; i < t.dims.size(); ++i) rest *= t.dims[i];
  const int64_t len = t.dims[static_cast<size_t>(axis)], new_len = static_cast<int64_t>(keep.size()) * inner;
  std::vector<int64_t> dims = t.dims;
  dims[static_cast<size_t>(axis)] = new_len;
  ir::Buffer out = ir::Buffer::allocate(static_cast<size_t>(outer * new_len * rest) * es);
  const size_t block = static_cast<size_t>(inner * rest) * es;
  uint8_t* dst = out.mutable_data();
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t u : keep) {
      std::memcpy(dst, t.data.data() + static_cast<size_t>((o * len + u * inner) * rest) * es, block);
      dst += block;
    }
  return ir::Tensor::make(t.name, t.dtype, std::move(dims), std::move(out));
}

void set_dim(ir::TensorType& t, int64_t ae, int64_t value) {
  if (!t.is_tensor || !t.has_shape || static_cast<int64_t>(t.dims.size()) <= ae) return;
  ir::Dim& d = t.dims[t.dims.size() - 1 - static_cast<size_t>(ae)];
  if (d.known()) d.value = value;
}

}  // namespace

int64_t float_parameters(const ir::Graph& g) {
  int64_t n = 0;
  for (const ir::Value* v : g.initializers)
    if (v->initializer && ir::traits(v->initializer->dtype).is_float)
      n += static_cast<int64_t>(v->initializer->numel());
  return n;
}

namespace {

// Weight norms per unit, one vector per weight of the set (its producers' and readers'), and
// BatchNormalization's |gamma| / sqrt(var + eps).
std::vector<std::vector<double>> weight_norms(const Group& g) {
  std::vector<std::vector<double>> out;
  for (const Cut& c : g.cuts) {
    if (!c.weight) continue;
    const ir::Tensor* t = const_of(c.node->inputs[c.input]);
    auto s = per_unit(sumsq_along(t->values<float>(), t->dims, c.axis), g.units, c.inner);
    for (double& x : s) x = std::sqrt(x);
    out.push_back(std::move(s));
  }
  for (ir::Node* bn : g.bn) {
    const ir::Tensor* gamma = const_of(bn->inputs[1]);
    const ir::Tensor* var = const_of(bn->inputs[4]);
    if (gamma->dtype != ir::DType::Float || var->dtype != ir::DType::Float) continue;
    const float eps = bn->attr_float("epsilon", 1e-5f);
    std::vector<double> s(static_cast<size_t>(g.units));
    for (int64_t u = 0; u < g.units; ++u)
      s[static_cast<size_t>(u)] = std::fabs(gamma->values<float>()[u]) / std::sqrt(var->values<float>()[u] + eps);
    out.push_back(std::move(s));
  }
  return out;
}

void normalize(std::vector<double>& s) {
  const double mean = std::accumulate(s.begin(), s.end(), 0.0) / static_cast<double>(std::max<size_t>(s.size(), 1));
  if (mean > 0)
    for (double& x : s) x /= mean;
}

// weight: the product over the set's weights of each unit's norm relative to that weight's
// mean unit norm (a unit whose filters or whose readers' rows are small matters little).
void score_by_weights(Group& g) {
  g.score.assign(static_cast<size_t>(g.units), 1.0);
  for (auto& s : weight_norms(g)) {
    normalize(s);
    for (int64_t u = 0; u < g.units; ++u) g.score[static_cast<size_t>(u)] *= s[static_cast<size_t>(u)];
  }
}

// activation: per unit, summed over the readers, ||x_k|| * ||W_k|| over its input features k
// (x over calib-data): the size of what the unit adds to each reader's output (Wanda's score
// of a whole input feature).
void score_by_activations(ir::Model& m, std::vector<Group*>& groups, const StructuredConfig& c) {
  struct Probe {
    Group* g;
    const Cut* cut;
    Desc d;
    std::vector<double> sumsq;
  };
  std::vector<Probe> probes;
  std::vector<std::string> names;
  std::map<std::string, std::vector<size_t>> by_name;
  for (Group* g : groups)
    for (const Cut& cut : g->cuts) {
      if (!cut.reader) continue;
      ir::Value* x = cut.node->inputs[0];
      if (!by_name.count(x->name)) names.push_back(x->name);
      by_name[x->name].push_back(probes.size());
      probes.push_back({g, &cut, g->desc.at(x), {}});
    }
  ActivationCollector collector(m, names, c.threads);
  c.calib->for_each_batch(c.calib_samples, [&](std::vector<runtime::RValue> feeds) {
    collector.observe(std::move(feeds), [&](size_t k, const runtime::RValue& v) {
      if (!v.is_tensor() || v.tensor.dtype != ir::DType::Float) return;
      for (size_t pi : by_name[names[k]]) {
        Probe& p = probes[pi];
        const auto r = static_cast<int64_t>(v.tensor.dims.size());
        if (r <= p.d.ae) continue;
        auto s = sumsq_along(v.tensor.values<float>(), v.tensor.dims, r - 1 - p.d.ae);
        if (p.sumsq.empty()) p.sumsq.assign(s.size(), 0.0);
        if (s.size() != p.sumsq.size()) continue;
        for (size_t i = 0; i < s.size(); ++i) p.sumsq[i] += s[i];
      }
    });
  });
  for (Group* g : groups) g->score.assign(static_cast<size_t>(g->units), 0.0);
  for (Probe& p : probes) {
    const ir::Tensor* w = const_of(p.cut->node->inputs[p.cut->input]);
    const auto wn = sumsq_along(w->values<float>(), w->dims, p.cut->axis);
    if (p.sumsq.size() != wn.size())
      failure("prune: the calibration data never reached node '{}' (its input '{}')", p.cut->node->name,
              p.cut->node->inputs[0]->name);
    for (size_t k = 0; k < wn.size(); ++k)
      p.g->score[k / static_cast<size_t>(p.cut->inner)] += std::sqrt(p.sumsq[k]) * std::sqrt(wn[k]);
  }
}

// Removes `v` when nothing reads it any more: an initializer, or the node that computed it and,
// in turn, whatever only that node read (the Shape -> Gather -> Unsqueeze chain of a shape
// entry that became a constant).
void remove_if_unread(ir::Graph& g, ir::Value* v) {
  if (!v || !v->consumers.empty() || v->is_graph_output()) return;
  if (v->kind == ir::Value::Kind::Initializer) {
    ir::erase_initializer(g, v);
    return;
  }
  ir::Node* n = v->producer;
  if (!n || n->has_subgraphs()) return;
  for (ir::Value* o : n->outputs)
    if (o && (!o->consumers.empty() || o->is_graph_output())) return;
  const std::vector<ir::Value*> inputs = n->inputs;
  g.remove_node(n);
  for (ir::Value* in : inputs) remove_if_unread(g, in);
}

// The readers' weights take over what the removed units gave them, as well as a linear map of
// the kept units can (least squares on calib-data, the optimal-brain-surgeon update for a
// removed input block): with H = X^T X of a reader's input on the model as pruned so far,
//   W_kept += (H_kk + damp)^-1 H_kr W_removed
// (damp 1% of H's mean diagonal). Readers must be MatMul with a [K, N] constant read by that
// node only; a set with another reader is cut without it. Returns whether it was done.
bool compensate(ir::Model& m, Group& g, const StructuredConfig& c, runtime::ThreadPool& pool) {
  std::vector<quant::HessianTarget> targets;
  for (const Cut& cut : g.cuts) {
    if (!cut.reader) continue;
    ir::Value* w = cut.node->inputs[1];
    if (cut.node->op_type != "MatMul" || cut.axis != 0 || w->kind != ir::Value::Kind::Initializer ||
        !ir::constant_tensor(w) || w->consumers.size() != 1)
      return false;
    targets.push_back({cut.node, g.units * cut.inner});
  }
  int64_t batches = 0;
  const auto H = quant::collect_hessians(m, targets, *c.calib, c.calib_samples, pool, std::max(1, c.threads), batches);
  for (const Cut& cut : g.cuts) {
    if (!cut.reader) continue;
    const std::vector<double>& h = H.at(cut.node);
    ir::Value* wv = cut.node->inputs[1];
    const ir::Tensor& w = *wv->initializer;
    const int64_t K = w.dims[0], N = w.dims[1];
    if (K != g.units * cut.inner || static_cast<int64_t>(h.size()) != K * K) continue;
    std::vector<int64_t> kk, kr;  // kept and removed input features
    std::vector<bool> keep(static_cast<size_t>(K), false);
    for (int64_t u : g.keep)
      for (int64_t i = 0; i < cut.inner; ++i) keep[static_cast<size_t>(u * cut.inner + i)] = true;
    for (int64_t k = 0; k < K; ++k) (keep[static_cast<size_t>(k)] ? kk : kr).push_back(k);
    const auto nk = static_cast<int64_t>(kk.size()), nr = static_cast<int64_t>(kr.size());
    if (nr == 0) continue;
    std::vector<double> hkk(static_cast<size_t>(nk * nk));
    double mean_diag = 0;
    for (int64_t i = 0; i < nk; ++i) {
      for (int64_t j = 0; j < nk; ++j) hkk[static_cast<size_t>(i * nk + j)] = h[static_cast<size_t>(kk[i] * K + kk[j])];
      mean_diag += h[static_cast<size_t>(kk[i] * K + kk[i])];
    }
    mean_diag /= static_cast<double>(std::max<int64_t>(nk, 1));
    if (mean_diag <= 0) continue;  // the calibration data never reached these features
    std::vector<int64_t> perm(static_cast<size_t>(nk));
    std::iota(perm.begin(), perm.end(), 0);
    std::vector<float> U;
    if (!quant::inverse_cholesky_upper(hkk, perm, 0.01 * mean_diag, U, &pool)) continue;
    std::vector<float> hkr(static_cast<size_t>(nk * nr)), wr(static_cast<size_t>(nr * N)),
        b(static_cast<size_t>(nk * N)), t(static_cast<size_t>(nk * N));
    for (int64_t i = 0; i < nk; ++i)
      for (int64_t j = 0; j < nr; ++j)
        hkr[static_cast<size_t>(i * nr + j)] = static_cast<float>(h[static_cast<size_t>(kk[i] * K + kr[j])]);
    const float* wd = w.values<float>();
    for (int64_t j = 0; j < nr; ++j) std::copy_n(wd + kr[j] * N, N, wr.data() + j * N);
    using runtime::kernels::sgemm;
    sgemm(false, false, nk, N, nr, 1.0f, hkr.data(), nr, wr.data(), N, 0.0f, b.data(), N, &pool);  // H_kr W_r
    sgemm(false, false, nk, N, nk, 1.0f, U.data(), nk, b.data(), N, 0.0f, t.data(), N, &pool);     // U (.)
    sgemm(true, false, nk, N, nk, 1.0f, U.data(), nk, t.data(), N, 0.0f, b.data(), N, &pool);      // U^T (.)
    std::vector<float> out(wd, wd + K * N);
    for (int64_t i = 0; i < nk; ++i)
      for (int64_t n = 0; n < N; ++n) out[static_cast<size_t>(kk[i] * N + n)] += b[static_cast<size_t>(i * N + n)];
    wv->initializer = std::make_shared<ir::Tensor>(ir::Tensor::from_values(w.name, ir::DType::Float, w.dims, out));
  }
  return true;
}

// What a set's units are: attention heads, Conv channels or MLP (ffn) neurons.
std::string kind(const Group& g) {
  if (g.head_dim > 0) return "heads";
  for (const ir::Node* p : g.producers)
    if (p->op_type == "Conv") return "channels";
  return "ffn";
}

// How many units of `units` stay when `drop` are asked to go.
int64_t kept_count(int64_t units, int64_t drop, int64_t multiple) {
  int64_t keep = std::max<int64_t>(1, units - drop);
  if (multiple > 1) keep = std::min(units, (keep + multiple - 1) / multiple * multiple);
  return keep;
}

void choose(Group& g, int64_t keep) {
  std::vector<int64_t> idx(static_cast<size_t>(g.units));
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(), [&](int64_t a, int64_t b) {
    return g.score[static_cast<size_t>(a)] > g.score[static_cast<size_t>(b)];
  });
  g.keep.assign(idx.begin(), idx.begin() + keep);
  std::sort(g.keep.begin(), g.keep.end());
}

}  // namespace

nlohmann::json prune_structured(ir::Model& m, const StructuredConfig& c, Progress* progress) {
  ir::Graph& graph = *m.graph;
  formats::ensure_shapes(m);
  ir::align_initializers(m);
  const int64_t params_before = float_parameters(graph);

  // The sets, each found from the first MatMul/Gemm/Conv (in graph order) that writes it.
  std::vector<Group> groups;
  nlohmann::json skipped = nlohmann::json::array();
  std::set<const ir::Node*> claimed;  // producers of a set already found
  Finder finder(c.filter, c.lowered, c.global, m.opset(""));
  for (auto& up : graph.nodes()) {
    ir::Node* n = up.get();
    if (claimed.count(n) || !default_op(n, {"MatMul", "Gemm", "Conv"}) || n->outputs.empty() || !n->outputs[0])
      continue;
    if (c.filter && !c.filter->allows(*n)) continue;
    const ir::Tensor* w = n->inputs.size() > 1 ? const_of(n->inputs[1]) : nullptr;
    const bool shaped =
        w && ((n->op_type != "Conv" && w->dims.size() == 2) || (n->op_type == "Conv" && w->dims.size() >= 3));
    if (!w) continue;  // an activation product (attention scores): no weight to shrink
    if (!shaped || (n->op_type == "Gemm" && n->attr_int("transA", 0) != 0) ||
        (n->op_type == "Conv" && n->attr_int("group", 1) != 1)) {
      skipped.push_back(
          {{"node", n->name}, {"why", at_node(n, "its weight is not a constant MatMul/Gemm matrix or Conv kernel")}});
      continue;
    }
    Group g = finder.find(n);
    for (ir::Node* p : g.producers) claimed.insert(p);
    claimed.insert(n);
    if (!g.problem.empty()) {
      skipped.push_back({{"node", n->name}, {"why", g.problem}});
      continue;
    }
    if (!c.structures.empty() && !c.structures.count(kind(g))) {
      skipped.push_back(
          {{"node", n->name}, {"why", at_node(n, fmt::format("{} are not among the structures to prune", kind(g)))}});
      continue;
    }
    groups.push_back(std::move(g));
  }
  if (groups.empty() && c.lowered.empty() && !c.allow_noop)
    bad_input(
        "{}: nothing to prune structurally: no set of units (MLP neurons, attention heads, Conv channels) can "
        "shrink{}; --allow-noop writes it anyway",
        m.path.empty() ? "the model" : m.path,
        skipped.empty() ? std::string() : fmt::format(" (first: {})", skipped[0]["why"].get<std::string>()));

  // Scores, all on the weights as loaded (before any set is cut).
  std::vector<Group*> ptrs;
  for (auto& g : groups) ptrs.push_back(&g);
  const bool by_activation = c.importance == "activation";
  if (by_activation) {
    if (!c.calib) bad_input("prune: importance activation needs calib-data");
    ProgressStage stage(progress, "prune structured: activations", 0, "batches");
    score_by_activations(m, ptrs, c);
  } else {
    for (Group* g : ptrs) score_by_weights(*g);
  }

  if (c.global) {
    struct Entry {
      double score;
      size_t group;
      int64_t unit;
    };
    std::vector<Entry> all;
    int64_t total = 0;
    for (size_t gi = 0; gi < groups.size(); ++gi) {
      auto s = groups[gi].score;
      normalize(s);
      for (int64_t u = 0; u < groups[gi].units; ++u) all.push_back({s[static_cast<size_t>(u)], gi, u});
      total += groups[gi].units;
    }
    std::stable_sort(all.begin(), all.end(), [](const Entry& a, const Entry& b) { return a.score < b.score; });
    auto drop = static_cast<int64_t>(std::floor(c.sparsity * static_cast<double>(total)));
    std::vector<int64_t> dropped(groups.size(), 0);
    for (const Entry& e : all) {
      if (drop <= 0) break;
      if (groups[e.group].units - dropped[e.group] <= 1) continue;  // every set keeps a unit
      ++dropped[e.group];
      --drop;
    }
    for (size_t gi = 0; gi < groups.size(); ++gi)
      choose(groups[gi], kept_count(groups[gi].units, dropped[gi], c.multiple_of));
  } else {
    for (Group& g : groups)
      choose(g, kept_count(g.units,
                           static_cast<int64_t>(std::floor(c.sparsity / (1 << g.level) * static_cast<double>(g.units))),
                           c.multiple_of));
  }

  // Cut. A constant read only through the cuts of one set is replaced in place (it keeps its
  // name); one that other nodes also read gets a cut copy for these nodes.
  nlohmann::json report_groups = nlohmann::json::array();
  std::vector<ir::Value*> old_constants;
  runtime::ThreadPool pool(std::max(1, c.threads));
  ProgressStage stage(progress, "prune structured", static_cast<int64_t>(groups.size()), "sets");
  int64_t done_groups = 0;
  for (Group& g : groups) {
    stage.update(done_groups++, g.producers.empty() ? std::string() : g.producers[0]->name);
    const auto kept = static_cast<int64_t>(g.keep.size());
    const bool compensated = c.compensate && c.calib && compensate(m, g, c, pool);
    int64_t before = 0, after = 0;
    std::map<ir::Value*, int> uses;
    for (const Cut& cut : g.cuts) ++uses[cut.node->inputs[cut.input]];
    std::map<ir::Value*, std::pair<int64_t, int64_t>> done;  // in-place cuts made: value -> (axis, inner)
    for (const Cut& cut : g.cuts) {
      ir::Value* v = cut.node->inputs[cut.input];
      if (auto it = done.find(v); it != done.end() && it->second == std::make_pair(cut.axis, cut.inner)) continue;
      const ir::Tensor* t = const_of(v);
      ir::Tensor cutt = cut_tensor(*t, cut.axis, cut.inner, g.keep);
      before += static_cast<int64_t>(t->numel());
      after += static_cast<int64_t>(cutt.numel());
      const bool in_place = v->kind == ir::Value::Kind::Initializer && ir::constant_tensor(v) &&
                            static_cast<int>(v->consumers.size()) == uses[v] && !v->is_graph_output();
      if (in_place) {
        v->initializer = std::make_shared<ir::Tensor>(std::move(cutt));
        v->type = ir::TensorType::of(v->initializer->dtype, v->initializer->dims);
        v->inferred = v->type;
        done[v] = {cut.axis, cut.inner};
      } else {
        ir::Value* nv = ir::add_initializer(graph, v->name, cutt.dtype, cutt.dims, std::move(cutt.data));
        cut.node->set_input(cut.input, nv);
        if (std::find(old_constants.begin(), old_constants.end(), v) == old_constants.end()) old_constants.push_back(v);
      }
    }
    for (const ShapeEdit& e : g.shape_edits) {
      ir::Value* v = e.holder->inputs[e.input];
      std::vector<int64_t> vals{-1};
      if (e.per_unit > 0) {
        vals = *int_values(v);
        vals[static_cast<size_t>(e.offset)] = kept * e.per_unit;
      }
      const std::vector<int64_t> dims{static_cast<int64_t>(vals.size())};
      ir::Value* nv = ir::add_initializer(graph, v->name.empty() ? "shape" : v->name, ir::DType::Int64, dims,
                                          ir::Buffer::copy_of(vals.data(), vals.size() * sizeof(int64_t)));
      e.holder->set_input(e.input, nv);
      if (std::find(old_constants.begin(), old_constants.end(), v) == old_constants.end()) old_constants.push_back(v);
    }
    for (ir::Node* n : g.depthwise) {
      ir::Attribute* a = n->attr("group");
      if (a) a->i = kept;
    }
    for (ir::Value* v : g.order) {
      const Desc d = g.desc.at(v);
      set_dim(v->type, d.ae, kept * d.inner);
      set_dim(v->inferred, d.ae, kept * d.inner);
    }
    nlohmann::json producers = nlohmann::json::array(), readers = nlohmann::json::array();
    for (ir::Node* n : g.producers) producers.push_back(n->name);
    for (ir::Node* n : g.readers) readers.push_back(n->name);
    report_groups.push_back({{"kind", kind(g)},
                             {"compensated", compensated},
                             {"head_dim", g.head_dim},
                             {"producers", producers},
                             {"readers", readers},
                             {"units_before", g.units},
                             {"units_after", kept},
                             {"parameters_before", before},
                             {"parameters_after", after}});
  }
  for (ir::Value* v : old_constants) remove_if_unread(graph, v);
  ir::prune_value_info(graph);
  formats::refresh_shapes(m);
  const int64_t params_after = float_parameters(graph);
  return {{"groups", report_groups},
          {"skipped", skipped},
          {"model_float_parameters_before", params_before},
          {"model_float_parameters_after", params_after}};
}

}  // namespace slmops::passes
