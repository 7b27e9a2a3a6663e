#include "ir/edit.h"

#include <algorithm>

namespace slmops::ir {

bool is_default_domain(std::string_view domain) { return domain.empty() || domain == "ai.onnx"; }

void move_output(Node* producer, Value* from, Value* to) {
  for (auto& o : producer->outputs)
    if (o == from) {
      o = to;
      break;
    }
  to->producer = producer;
  if (from && from->producer == producer) from->producer = nullptr;
}

Node* replace_node(Graph& g, Node* old, std::string op_type, std::string domain, std::vector<Value*> inputs,
                   std::vector<Attribute> attrs) {
  std::vector<Value*> outs = old->outputs;
  std::string name = old->name;
  g.remove_node(old);
  Node* n = g.add_node(std::move(op_type), std::move(inputs), {}, std::move(attrs), std::move(name), std::move(domain));
  for (Value* v : outs) {
    n->outputs.push_back(v);
    if (v) v->producer = n;
  }
  return n;
}

Value* add_initializer(Graph& g, std::string_view prefix, DType dt, std::vector<int64_t> dims, Buffer data) {
  return g.add_initializer(Tensor::make(g.unique_name(prefix), dt, std::move(dims), std::move(data)));
}

static bool used(const Value* v) { return v && (!v->consumers.empty() || v->is_graph_output()); }

bool bypass_node(Graph& g, Node* n) {
  Value* in = n->inputs.empty() ? nullptr : n->inputs[0];
  Value* out = n->outputs.empty() ? nullptr : n->outputs[0];
  if (!in || !out) return false;
  for (size_t k = 1; k < n->outputs.size(); ++k)
    if (used(n->outputs[k])) return false;
  if (!out->is_graph_output()) {
    g.replace_all_uses(out, in);
    g.remove_node(n);
    return true;
  }
  // `out` is a graph output and keeps its name: let the producer of `in` write `out` directly.
  Node* producer = in->producer;
  if (!producer || producer->graph != &g || in->is_graph_output() || in->kind != Value::Kind::NodeOutput) return false;
  for (Node* c : in->consumers)
    if (c != n && !c->implicit_inputs.empty() &&
        std::find(c->implicit_inputs.begin(), c->implicit_inputs.end(), in) != c->implicit_inputs.end())
      return false;  // a subgraph reads `in` by name
  g.remove_node(n);
  g.replace_all_uses(in, out);
  move_output(producer, in, out);
  return true;
}

void make_initializer(Graph& g, Value* v, Tensor t) {
  t.name = v->name;
  v->kind = Value::Kind::Initializer;
  v->producer = nullptr;
  v->initializer = std::make_shared<Tensor>(std::move(t));
  g.initializers.push_back(v);
}

const Tensor* constant_tensor(const Value* v) {
  if (!v || v->kind != Value::Kind::Initializer || !v->initializer || !v->initializer->has_data()) return nullptr;
  if (v->graph)
    for (auto& i : v->graph->inputs)
      if (i.value == v) return nullptr;
  return v->initializer.get();
}

void sort_nodes(Graph& g) { g.set_node_order(g.topological_order()); }

bool erase_initializer(Graph& g, Value* v) {
  if (!v || v->kind != Value::Kind::Initializer || !v->consumers.empty() || v->is_graph_output()) return false;
  for (auto& i : g.inputs)
    if (i.value == v) return false;
  g.remove_initializer(v);
  g.value_info.erase(std::remove_if(g.value_info.begin(), g.value_info.end(),
                                    [&](const ValueInfo& vi) { return vi.value == v; }),
                     g.value_info.end());
  return true;
}

void prune_value_info(Graph& g) {
  auto stale = [](const ValueInfo& vi) {
    const Value* v = vi.value;
    if (!v) return false;
    if (v->kind == Value::Kind::NodeOutput) return v->producer == nullptr;
    if (v->kind == Value::Kind::Undefined) return v->consumers.empty();
    return false;
  };
  g.value_info.erase(std::remove_if(g.value_info.begin(), g.value_info.end(), stale), g.value_info.end());
}

void walk_graphs(const Graph& g, const std::function<void(const Graph&)>& fn) {
  fn(g);
  for (auto& n : g.nodes())
    for (auto& a : n->attributes) {
      if (a.g) walk_graphs(*a.g, fn);
      for (auto& sg : a.graphs) walk_graphs(*sg, fn);
    }
}

namespace {

// Inputs of quantized ops that hold scales and zero points.
const std::map<std::string, std::vector<size_t>>& quantization_inputs() {
  static const std::map<std::string, std::vector<size_t>> m = {
      {"MatMulNBits", {2, 3, 4}},          {"DequantizeLinear", {1, 2}},     {"QuantizeLinear", {1, 2}},
      {"DynamicQuantizeMatMul", {2, 3}},   {"MatMulInteger", {2, 3}},        {"ConvInteger", {2, 3}},
      {"MatMulIntegerToFloat", {2, 3, 4, 5}}, {"QLinearMatMul", {1, 2, 4, 5, 6, 7}},
      {"QLinearConv", {1, 2, 4, 5, 6, 7}},
  };
  return m;
}

std::string dtype_key(int32_t code) {
  return is_known_dtype(code) ? std::string(dtype_name(static_cast<DType>(code))) : "type" + std::to_string(code);
}

}  // namespace

ModelStats model_statistics(const Model& m) {
  ModelStats s;
  walk_graphs(*m.graph, [&](const Graph& g) {
    std::map<const Value*, uint64_t> logical;  // initializer -> its logical count (0: not a parameter)
    std::map<const Value*, std::string> nbits;  // MatMulNBits weight -> "uint4" / "uint8"
    for (auto& n : g.nodes()) {
      ++s.nodes;
      ++s.ops[is_default_domain(n->domain) ? n->op_type : n->domain + "." + n->op_type];
      auto it = quantization_inputs().find(n->op_type);
      if (it == quantization_inputs().end()) continue;
      for (size_t k : it->second)
        if (k < n->inputs.size() && n->inputs[k] && n->inputs[k]->initializer) logical[n->inputs[k]] = 0;
      if (n->op_type == "MatMulNBits" && n->inputs.size() > 1 && n->inputs[1] && n->inputs[1]->initializer) {
        logical[n->inputs[1]] = static_cast<uint64_t>(n->attr_int("N", 0) * n->attr_int("K", 0));
        nbits[n->inputs[1]] = "uint" + std::to_string(n->attr_int("bits", 4));
      }
    }
    for (const Value* v : g.initializers) {
      const Tensor& t = *v->initializer;
      ++s.initializers;
      const uint64_t bytes = t.has_data() ? t.nbytes() : 0;
      s.weight_bytes += bytes;
      s.bytes_by_dtype[dtype_key(t.dtype_code)] += bytes;
      auto it = logical.find(v);
      const uint64_t params = it != logical.end() ? it->second : static_cast<uint64_t>(t.numel());
      s.parameters += params;
      if (params) {
        auto nb = nbits.find(v);
        s.parameters_by_dtype[nb != nbits.end() ? nb->second : dtype_key(t.dtype_code)] += params;
      }
      if (t.storage == Tensor::Storage::External && t.data.source()) {
        auto& e = s.external[t.data.source()->path()];
        ++e.first;
        e.second += t.data.size();
      }
    }
  });
  return s;
}

}  // namespace slmops::ir
