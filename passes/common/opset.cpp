#include "passes/common/opset.h"

#include <algorithm>
#include <set>

#include "ir/edit.h"
#include "ir/error.h"

namespace slmops::passes {
namespace {

const std::set<std::string> kReduceAxesToInput18 = {"ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd",
                                                    "ReduceSumSquare", "ReduceL1", "ReduceL2", "ReduceLogSum",
                                                    "ReduceLogSumExp"};

// Rewrites nodes of the default domain whose meaning changed between `from` and `to`.
void upgrade_graph(ir::Graph& g, int64_t from, int64_t to) {
  std::vector<ir::Node*> nodes;
  for (auto& n : g.nodes()) nodes.push_back(n.get());
  for (ir::Node* n : nodes) {
    for (auto& a : n->attributes) {
      if (a.g) upgrade_graph(*a.g, from, to);
      for (auto& sg : a.graphs) upgrade_graph(*sg, from, to);
    }
    if (!ir::is_default_domain(n->domain)) continue;
    if (from < 18 && to >= 18 && kReduceAxesToInput18.count(n->op_type)) {
      // Reduce*-18: `axes` moved from an attribute to an optional int64 input.
      auto it = std::find_if(n->attributes.begin(), n->attributes.end(), [](auto& a) { return a.name == "axes"; });
      if (it != n->attributes.end()) {
        std::vector<int64_t> axes = it->ints;
        n->attributes.erase(it);
        ir::Value* v = ir::add_initializer(g, n->name.empty() ? "axes" : n->name + "_axes", ir::DType::Int64,
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

void require_opset(ir::Model& m, const std::string& domain, int64_t version, std::string_view purpose) {
  bool dflt = ir::is_default_domain(domain);
  for (auto& o : m.opsets) {
    if (!(o.domain == domain || (dflt && ir::is_default_domain(o.domain)))) continue;
    if (o.version >= version) return;
    if (dflt) {
      if (o.version < 13)
        bad_input("{}: opset {} is older than 13; convert the model to opset 13 or later before {}", m.path,
                  o.version, purpose);
      upgrade_graph(*m.graph, o.version, version);
    }
    o.version = version;
    if (dflt && version >= 21 && m.ir_version < 10) m.ir_version = 10;
    return;
  }
  m.opsets.push_back({domain, version});
}


}  // namespace slmops::passes
