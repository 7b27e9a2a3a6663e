// What every quantize mode shares: node selection, the report, initializer helpers, opset
// upgrades and the already-quantized check.
#include <algorithm>
#include <set>


#include "ir/error.h"
#include "passes/quant/quantize.h"

namespace slmops::passes::quant {

bool glob_match(std::string_view p, std::string_view t) {
  // Iterative wildcard match with backtracking to the last '*'.
  size_t pi = 0, ti = 0, star = std::string_view::npos, mark = 0;
  while (ti < t.size()) {
    if (pi < p.size() && (p[pi] == '?' || p[pi] == t[ti])) {
      ++pi;
      ++ti;
    } else if (pi < p.size() && p[pi] == '*') {
      star = pi++;
      mark = ti;
    } else if (star != std::string_view::npos) {
      pi = star + 1;
      ti = ++mark;
    } else {
      return false;
    }
  }
  while (pi < p.size() && p[pi] == '*') ++pi;
  return pi == p.size();
}

NodeFilter::NodeFilter(const QuantizeOptions& o, std::vector<std::string> default_op_types)
    : op_types_(o.op_types.empty() ? std::move(default_op_types) : o.op_types),
      exclude_nodes_(o.exclude_nodes),
      exclude_op_types_(o.exclude_op_types) {}

bool NodeFilter::allows(const ir::Node& n) const {
  if (std::find(op_types_.begin(), op_types_.end(), n.op_type) == op_types_.end()) return false;
  if (std::find(exclude_op_types_.begin(), exclude_op_types_.end(), n.op_type) != exclude_op_types_.end())
    return false;
  for (auto& pat : exclude_nodes_)
    if (glob_match(pat, n.name)) return false;
  return true;
}

static void collect_names(ir::Graph& g, std::vector<std::string>& names) {
  for (auto& n : g.nodes()) names.push_back(n->name);
  g.for_each_subgraph([&](ir::Graph& sub) {
    for (auto& n : sub.nodes()) names.push_back(n->name);
  });
}

std::vector<std::string> NodeFilter::unmatched(const ir::Graph& g) const {
  std::vector<std::string> names, out;
  collect_names(const_cast<ir::Graph&>(g), names);
  for (auto& pat : exclude_nodes_) {
    bool hit = false;
    for (auto& n : names) hit = hit || glob_match(pat, n);
    if (!hit) out.push_back(pat);
  }
  return out;
}

nlohmann::json QuantReport::to_json() const {
  nlohmann::json j = extra;
  nlohmann::json arr = nlohmann::json::array();
  int64_t quantized = 0, before = 0, after = 0;
  for (auto& n : nodes) {
    arr.push_back({{"node", n.node}, {"op_type", n.op_type}, {"how", n.how}, {"bytes_before", n.bytes_before},
                   {"bytes_after", n.bytes_after}});
    if (n.how.rfind("skipped", 0) != 0 && n.how.rfind("kept", 0) != 0) ++quantized;
    before += n.bytes_before;
    after += n.bytes_after;
  }
  j["nodes_quantized"] = quantized;
  j["weight_bytes_before"] = before;
  j["weight_bytes_after"] = after;
  j["nodes"] = std::move(arr);
  return j;
}

const ir::Tensor* float_initializer(const ir::Graph& g, const ir::Value* v) {
  if (!v || v->kind != ir::Value::Kind::Initializer || v->graph != &g || !v->initializer) return nullptr;
  for (auto& i : g.inputs)
    if (i.value == v) return nullptr;  // callers may feed another value at run time
  const ir::Tensor& t = *v->initializer;
  if (t.dtype != ir::DType::Float || !t.has_data() || t.data.size() != t.nbytes()) return nullptr;
  return &t;
}

ir::Value* add_initializer(ir::Graph& g, const std::string& prefix, ir::DType dt, std::vector<int64_t> dims,
                           ir::Buffer data) {
  ir::Tensor t = ir::Tensor::make(g.unique_name(prefix), dt, std::move(dims), std::move(data));
  return g.add_initializer(std::move(t));
}

ir::Node* replace_node(ir::Graph& g, ir::Node* old, std::string op_type, std::string domain,
                       std::vector<ir::Value*> inputs, std::vector<ir::Attribute> attrs) {
  std::vector<ir::Value*> outs = old->outputs;
  std::string name = old->name;
  g.remove_node(old);
  ir::Node* n = g.add_node(std::move(op_type), std::move(inputs), {}, std::move(attrs), std::move(name), std::move(domain));
  for (ir::Value* v : outs) {
    n->outputs.push_back(v);
    if (v) v->producer = n;
  }
  return n;
}

void drop_if_unused(ir::Graph& g, ir::Value* v) {
  if (!v || v->kind != ir::Value::Kind::Initializer || !v->consumers.empty() || v->is_graph_output()) return;
  for (auto& i : g.inputs)
    if (i.value == v) return;
  g.remove_initializer(v);
}

void release_file_pages(const ir::Tensor& t) { t.data.release_resident_pages(); }

void sort_nodes(ir::Graph& g) { g.set_node_order(g.topological_order()); }

namespace {

const std::set<std::string> kReduceAxesToInput18 = {"ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd",
                                                    "ReduceSumSquare", "ReduceL1", "ReduceL2", "ReduceLogSum",
                                                    "ReduceLogSumExp"};

bool default_domain(const std::string& d) { return d.empty() || d == "ai.onnx"; }

// Rewrites nodes of the default domain whose meaning changed between `from` and `to`.
void upgrade_graph(ir::Graph& g, int64_t from, int64_t to) {
  std::vector<ir::Node*> nodes;
  for (auto& n : g.nodes()) nodes.push_back(n.get());
  for (ir::Node* n : nodes) {
    for (auto& a : n->attributes) {
      if (a.g) upgrade_graph(*a.g, from, to);
      for (auto& sg : a.graphs) upgrade_graph(*sg, from, to);
    }
    if (!default_domain(n->domain)) continue;
    if (from < 18 && to >= 18 && kReduceAxesToInput18.count(n->op_type)) {
      // Reduce*-18: `axes` moved from an attribute to an optional int64 input.
      auto it = std::find_if(n->attributes.begin(), n->attributes.end(), [](auto& a) { return a.name == "axes"; });
      if (it != n->attributes.end()) {
        std::vector<int64_t> axes = it->ints;
        n->attributes.erase(it);
        ir::Value* v = add_initializer(g, n->name.empty() ? "axes" : n->name + "_axes", ir::DType::Int64,
                                       {static_cast<int64_t>(axes.size())},
                                       ir::Buffer::copy_of(axes.data(), axes.size() * sizeof(int64_t)));
        n->inputs.resize(1);
        n->inputs.push_back(v);
        v->consumers.push_back(n);
      }
    }
    if (from < 18 && to >= 18 && n->op_type == "Split") {
      // Split-18 wants either the `split` input or `num_outputs`.
      bool has_split = n->inputs.size() > 1 && n->inputs[1];
      if (!has_split && !n->attr("num_outputs"))
        n->attributes.push_back(ir::Attribute::make_int("num_outputs", static_cast<int64_t>(n->outputs.size())));
    }
    if (from < 20 && to >= 20 && n->op_type == "GridSample") {
      // GridSample-20 renamed the modes.
      if (auto* a = n->attr("mode")) {
        if (a->s == "bilinear") a->s = "linear";
        else if (a->s == "bicubic") a->s = "cubic";
      }
    }
  }
}

}  // namespace

void require_opset(ir::Model& m, const std::string& domain, int64_t version) {
  bool dflt = default_domain(domain);
  for (auto& o : m.opsets) {
    if (!(o.domain == domain || (dflt && default_domain(o.domain)))) continue;
    if (o.version >= version) return;
    if (dflt) {
      if (o.version < 13)
        bad_input("{}: opset {} is older than 13; convert the model to opset 13 or later before quantizing",
                  m.path, o.version);
      upgrade_graph(*m.graph, o.version, version);
    }
    o.version = version;
    if (dflt && version >= 21 && m.ir_version < 10) m.ir_version = 10;
    return;
  }
  m.opsets.push_back({domain, version});
}

void refuse_quantized(const ir::Model& m) {
  static const std::set<std::string> quantized_ops = {
      "QuantizeLinear",  "DequantizeLinear",      "DynamicQuantizeLinear", "MatMulInteger",
      "ConvInteger",     "QLinearMatMul",         "QLinearConv",           "MatMulNBits",
      "DynamicQuantizeMatMul", "MatMulIntegerToFloat", "QGemm",            "QAttention",
      "GatherBlockQuantized",  "DynamicQuantizeLSTM", "QLinearAdd",        "QLinearMul"};
  std::function<void(const ir::Graph&)> walk = [&](const ir::Graph& g) {
    for (auto& n : g.nodes()) {
      if (quantized_ops.count(n->op_type) || n->op_type.rfind("QLinear", 0) == 0)
        bad_input("{}: the model is already quantized (node '{}' is {}); quantize the float model instead",
                  m.path.empty() ? "model" : m.path, n->name, n->op_type);
      for (auto& a : n->attributes) {
        if (a.g) walk(*a.g);
        for (auto& sg : a.graphs) walk(*sg);
      }
    }
  };
  walk(*m.graph);
}

}  // namespace slmops::passes::quant
