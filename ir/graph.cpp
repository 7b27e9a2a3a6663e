#include "ir/graph.h"

#include <algorithm>
#include <queue>
#include <unordered_set>

#include "ir/edit.h"
#include "ir/error.h"

namespace slmops::ir {

TensorType TensorType::of_dims(DType dt, std::vector<Dim> dims) {
  TensorType t;
  t.is_tensor = true;
  t.elem_code = static_cast<int32_t>(dt);
  t.has_shape = true;
  t.dims = std::move(dims);
  return t;
}

TensorType TensorType::of(DType dt, const std::vector<int64_t>& dims) {
  std::vector<Dim> d;
  for (auto x : dims) d.push_back({x, {}});
  return of_dims(dt, std::move(d));
}

bool Value::is_graph_output() const {
  if (!graph) return false;
  for (auto& o : graph->outputs)
    if (o.value == this) return true;
  return false;
}

Attribute Attribute::make_int(std::string name, int64_t v) {
  Attribute a;
  a.name = std::move(name);
  a.type = AttrType::Int;
  a.i = v;
  return a;
}
Attribute Attribute::make_float(std::string name, float v) {
  Attribute a;
  a.name = std::move(name);
  a.type = AttrType::Float;
  a.f = v;
  return a;
}
Attribute Attribute::make_string(std::string name, std::string v) {
  Attribute a;
  a.name = std::move(name);
  a.type = AttrType::String;
  a.s = std::move(v);
  return a;
}
Attribute Attribute::make_ints(std::string name, std::vector<int64_t> v) {
  Attribute a;
  a.name = std::move(name);
  a.type = AttrType::Ints;
  a.ints = std::move(v);
  return a;
}
Attribute Attribute::make_floats(std::string name, std::vector<float> v) {
  Attribute a;
  a.name = std::move(name);
  a.type = AttrType::Floats;
  a.floats = std::move(v);
  return a;
}
Attribute Attribute::make_tensor(std::string name, Tensor v) {
  Attribute a;
  a.name = std::move(name);
  a.type = AttrType::Tensor;
  a.t = std::make_shared<Tensor>(std::move(v));
  return a;
}

const Attribute* Node::attr(std::string_view n) const {
  for (auto& a : attributes)
    if (a.name == n) return &a;
  return nullptr;
}
Attribute* Node::attr(std::string_view n) {
  for (auto& a : attributes)
    if (a.name == n) return &a;
  return nullptr;
}
int64_t Node::attr_int(std::string_view n, int64_t fallback) const {
  auto a = attr(n);
  return a ? a->i : fallback;
}
float Node::attr_float(std::string_view n, float fallback) const {
  auto a = attr(n);
  return a ? a->f : fallback;
}
std::string Node::attr_string(std::string_view n, std::string fallback) const {
  auto a = attr(n);
  return a ? a->s : fallback;
}
std::vector<int64_t> Node::attr_ints(std::string_view n) const {
  auto a = attr(n);
  return a ? a->ints : std::vector<int64_t>{};
}
bool Node::has_subgraphs() const {
  for (auto& a : attributes)
    if (a.g || !a.graphs.empty()) return true;
  return false;
}

static void erase_one(std::vector<Node*>& v, Node* n) {
  auto it = std::find(v.begin(), v.end(), n);
  if (it != v.end()) v.erase(it);
}

void Node::set_input(size_t i, Value* v) {
  if (inputs[i]) erase_one(inputs[i]->consumers, this);
  inputs[i] = v;
  if (v) v->consumers.push_back(this);
}

Value* Graph::new_value(std::string n, Value::Kind kind) {
  auto v = std::make_unique<Value>();
  v->name = std::move(n);
  v->kind = kind;
  v->graph = this;
  Value* raw = v.get();
  values_.push_back(std::move(v));
  if (!raw->name.empty()) by_name_.try_emplace(raw->name, raw);
  return raw;
}

void Graph::rename_value(Value* v, std::string name) {
  if (auto it = by_name_.find(v->name); it != by_name_.end() && it->second == v) by_name_.erase(it);
  v->name = std::move(name);
  if (!v->name.empty()) by_name_[v->name] = v;
}

Value* Graph::add_input(std::string n, TensorType type) {
  Value* v = new_value(std::move(n), Value::Kind::Input);
  v->type = std::move(type);
  inputs.push_back({v, {}, {}});
  return v;
}

Value* Graph::add_initializer(Tensor t) {
  Value* v = new_value(t.name, Value::Kind::Initializer);
  v->type.is_tensor = true;
  v->type.elem_code = t.dtype_code;
  v->type.has_shape = true;
  for (auto d : t.dims) v->type.dims.push_back({d, {}});
  v->initializer = std::make_shared<Tensor>(std::move(t));
  initializers.push_back(v);
  return v;
}

void Graph::add_output(Value* v) { outputs.push_back({v, {}, {}}); }

Node* Graph::add_node(std::string op_type, std::vector<Value*> ins, std::vector<std::string> output_names,
                      std::vector<Attribute> attrs, std::string node_name, std::string domain) {
  auto node = std::make_unique<Node>();
  Node* n = node.get();
  n->op_type = std::move(op_type);
  n->name = std::move(node_name);
  n->domain = std::move(domain);
  n->attributes = std::move(attrs);
  n->graph = this;
  for (Value* v : ins) {
    n->inputs.push_back(v);
    if (v) v->consumers.push_back(n);
  }
  for (auto& on : output_names) {
    if (on.empty()) {
      n->outputs.push_back(nullptr);
      continue;
    }
    Value* v = new_value(on, Value::Kind::NodeOutput);
    v->producer = n;
    n->outputs.push_back(v);
  }
  nodes_.push_back(std::move(node));
  return n;
}

Value* Graph::find_value(std::string_view n) const {
  auto it = by_name_.find(std::string(n));
  return it == by_name_.end() ? nullptr : it->second;
}

std::string Graph::unique_name(std::string_view prefix) {
  std::string base(prefix);
  if (!find_value(base)) return base;
  for (int k = 1;; ++k) {
    std::string cand = base + "_" + std::to_string(k);
    if (!find_value(cand)) return cand;
  }
}

void Graph::remove_node(Node* n) {
  for (Value* v : n->inputs)
    if (v) erase_one(v->consumers, n);
  for (Value* v : n->implicit_inputs)
    if (v) erase_one(v->consumers, n);
  for (Value* v : n->outputs)
    if (v) v->producer = nullptr;
  nodes_.remove_if([n](const std::unique_ptr<Node>& p) { return p.get() == n; });
}

void Graph::remove_initializer(Value* v) {
  initializers.erase(std::remove(initializers.begin(), initializers.end(), v), initializers.end());
  v->initializer.reset();
  if (v->kind == Value::Kind::Initializer) v->kind = Value::Kind::Undefined;
}

void Graph::replace_all_uses(Value* from, Value* to) {
  std::vector<Node*> users = from->consumers;
  for (Node* n : users) {
    for (auto& in : n->inputs)
      if (in == from) {
        in = to;
        to->consumers.push_back(n);
      }
    for (auto& in : n->implicit_inputs)
      if (in == from) {
        in = to;
        to->consumers.push_back(n);
        // The subgraphs read it by name through captured values; repoint them.
        for (auto& a : n->attributes) {
          auto fix = [&](Graph& g) {
            for (auto& v : g.values_)
              if (v->kind == Value::Kind::Captured && v->outer == from) v->outer = to;
          };
          if (a.g) fix(*a.g);
          for (auto& g : a.graphs) fix(*g);
        }
      }
  }
  from->consumers.clear();
  for (auto& o : outputs)
    if (o.value == from) o.value = to;
}

void Graph::compact_values() {
  std::unordered_set<const Value*> live;
  for (auto& n : nodes_) {
    for (Value* v : n->inputs) live.insert(v);
    for (Value* v : n->outputs) live.insert(v);
    for (Value* v : n->implicit_inputs) live.insert(v);
  }
  for (auto& i : inputs) live.insert(i.value);
  for (auto& o : outputs) live.insert(o.value);
  for (auto& vi : value_info) live.insert(vi.value);
  for (Value* v : initializers) live.insert(v);
  // Captured values of subgraphs point at ours; keep those too.
  for_each_subgraph([&](Graph& g) {
    for (auto& v : g.values_)
      if (v->outer) live.insert(v->outer);
  });
  values_.remove_if([&](const std::unique_ptr<Value>& v) {
    if (live.count(v.get())) return false;
    auto it = by_name_.find(v->name);
    if (it != by_name_.end() && it->second == v.get()) by_name_.erase(it);
    return true;
  });
}

void Graph::set_node_order(const std::vector<Node*>& order) {
  std::unordered_map<const Node*, size_t> rank;
  for (size_t i = 0; i < order.size(); ++i) rank[order[i]] = i;
  nodes_.sort([&](const std::unique_ptr<Node>& a, const std::unique_ptr<Node>& b) {
    return rank.at(a.get()) < rank.at(b.get());
  });
}

std::vector<Node*> Graph::topological_order() const {
  std::unordered_map<const Node*, size_t> index, pending;
  std::vector<Node*> file_order;
  for (auto& n : nodes_) {
    index[n.get()] = file_order.size();
    file_order.push_back(n.get());
  }
  auto deps = [&](const Node* n, auto&& fn) {
    for (auto* list : {&n->inputs, &n->implicit_inputs})
      for (Value* v : *list)
        if (v && v->producer && v->producer->graph == this) fn(v->producer);
  };
  for (Node* n : file_order) {
    size_t k = 0;
    deps(n, [&](const Node*) { ++k; });
    pending[n] = k;
  }
  // Min-heap on file position keeps the order stable.
  std::priority_queue<size_t, std::vector<size_t>, std::greater<>> ready;
  for (Node* n : file_order)
    if (pending[n] == 0) ready.push(index[n]);
  std::vector<Node*> out;
  out.reserve(file_order.size());
  while (!ready.empty()) {
    Node* n = file_order[ready.top()];
    ready.pop();
    out.push_back(n);
    std::unordered_set<const Node*> seen;
    for (Value* v : n->outputs) {
      if (!v) continue;
      for (Node* c : v->consumers) {
        if (c->graph != this) continue;
        // A consumer that reads this value k times waits on k entries.
        if (--pending[c] == 0) ready.push(index[c]);
      }
    }
  }
  if (out.size() != file_order.size()) {
    for (Node* n : file_order)
      if (pending[n] != 0)
        bad_input("graph '{}': node '{}' ({}) is part of a cycle or reads an output that is never produced in order",
                  name, n->name, n->op_type);
  }
  return out;
}

void Graph::for_each_subgraph(const std::function<void(Graph&)>& fn) {
  for (auto& n : nodes_)
    for (auto& a : n->attributes) {
      if (a.g) {
        fn(*a.g);
        a.g->for_each_subgraph(fn);
      }
      for (auto& g : a.graphs) {
        fn(*g);
        g->for_each_subgraph(fn);
      }
    }
}

int64_t Model::opset(std::string_view d) const {
  bool want_default = is_default_domain(d);
  for (auto& o : opsets)
    if (o.domain == d || (want_default && is_default_domain(o.domain))) return o.version;
  return 0;
}

}  // namespace slmops::ir

namespace slmops::ir {

std::unique_ptr<Graph> Graph::clone(Graph* parent, Node* owner, std::unordered_map<const Value*, Value*>& map) const {
  auto g = std::make_unique<Graph>(parent, owner);
  g->name = name;
  g->residual = residual;
  for (auto& v : values_) {
    Value* c = g->new_value(v->name, v->kind);
    if (v->initializer) c->initializer = std::make_shared<Tensor>(*v->initializer);
    c->type = v->type;
    c->inferred = v->inferred;
    map[v.get()] = c;
  }
  for (auto& v : values_)
    if (v->outer) map.at(v.get())->outer = map.at(v->outer);
  auto copy_infos = [&](const std::vector<ValueInfo>& from, std::vector<ValueInfo>& to) {
    for (auto& vi : from) to.push_back({vi.value ? map.at(vi.value) : nullptr, vi.proto, vi.loaded});
  };
  copy_infos(inputs, g->inputs);
  copy_infos(outputs, g->outputs);
  copy_infos(value_info, g->value_info);
  for (Value* v : initializers) g->initializers.push_back(map.at(v));
  for (auto& n : nodes_) {
    auto c = std::make_unique<Node>();
    c->name = n->name;
    c->op_type = n->op_type;
    c->domain = n->domain;
    c->residual = n->residual;
    c->graph = g.get();
    for (Value* v : n->inputs) {
      Value* m = v ? map.at(v) : nullptr;
      c->inputs.push_back(m);
      if (m) m->consumers.push_back(c.get());
    }
    for (Value* v : n->outputs) {
      Value* m = v ? map.at(v) : nullptr;
      c->outputs.push_back(m);
      if (m) m->producer = c.get();
    }
    for (Value* v : n->implicit_inputs) {
      Value* m = map.at(v);
      c->implicit_inputs.push_back(m);
      m->consumers.push_back(c.get());
    }
    for (auto& a : n->attributes) {
      Attribute b;
      b.name = a.name;
      b.type = a.type;
      b.f = a.f;
      b.i = a.i;
      b.s = a.s;
      b.floats = a.floats;
      b.ints = a.ints;
      b.strings = a.strings;
      if (a.t) b.t = std::make_shared<Tensor>(*a.t);
      b.tensors = a.tensors;
      b.residual = a.residual;
      if (a.g) b.g = a.g->clone(g.get(), c.get(), map);
      for (auto& sg : a.graphs) b.graphs.push_back(sg->clone(g.get(), c.get(), map));
      c->attributes.push_back(std::move(b));
    }
    g->nodes_.push_back(std::move(c));
  }
  return g;
}

Model Model::clone() const {
  Model m;
  m.ir_version = ir_version;
  m.opsets = opsets;
  m.producer_name = producer_name;
  m.producer_version = producer_version;
  m.domain = domain;
  m.doc_string = doc_string;
  m.model_version = model_version;
  m.metadata = metadata;
  m.residual = residual;
  m.path = path;
  m.source_files = source_files;
  m.shapes_inferred = shapes_inferred;
  std::unordered_map<const Value*, Value*> map;
  if (graph) m.graph = graph->clone(nullptr, nullptr, map);
  return m;
}

}  // namespace slmops::ir

namespace slmops::ir {

static void align_graph(Graph& g) {
  for (Value* v : g.initializers)
    if (v->initializer && !v->initializer->aligned()) v->initializer->make_aligned();
  for (auto& n : g.nodes())
    for (auto& a : n->attributes) {
      if (a.t && !a.t->aligned()) a.t->make_aligned();
      for (auto& t : a.tensors) t.make_aligned();
      if (a.g) align_graph(*a.g);
      for (auto& sg : a.graphs) align_graph(*sg);
    }
}

void align_initializers(Model& m) {
  if (m.graph) align_graph(*m.graph);
}

}  // namespace slmops::ir
