#include "passes/cleanup.h"

#include <algorithm>
#include <cstring>
#include <map>
#include <string_view>
#include <unordered_set>

#include "ir/edit.h"
#include "passes/registry.h"

namespace slmops::passes {
namespace {

bool used(const ir::Value* v) { return v && (!v->consumers.empty() || v->is_graph_output()); }

// Dropout is the identity at inference unless training_mode (input 2) may be true.
bool is_inference_dropout(const ir::Node* n) {
  if (n->inputs.size() < 3 || !n->inputs[2]) return true;
  const ir::Value* tm = n->inputs[2];
  if (!tm->initializer || tm->initializer->dtype != ir::DType::Bool || tm->initializer->numel() != 1) return false;
  return tm->initializer->data.size() == 1 && tm->initializer->data.data()[0] == 0;
}

void remove_dead(ir::Graph& g, CleanupStats& st) {
  auto order = g.topological_order();
  for (auto it = order.rbegin(); it != order.rend(); ++it) {
    ir::Node* n = *it;
    bool any = false;
    for (ir::Value* v : n->outputs) any = any || used(v);
    if (!any) {
      g.remove_node(n);
      ++st.dead_nodes;
    }
  }
}

bool is_graph_input(const ir::Graph& g, const ir::Value* v) {
  for (auto& i : g.inputs)
    if (i.value == v) return true;
  return false;
}

void dedupe(ir::Graph& g, CleanupStats& st) {
  // Bucket by type and shape, then compare bytes: only candidates of equal size are read.
  std::map<std::tuple<int32_t, std::vector<int64_t>, size_t>, std::vector<ir::Value*>> buckets;
  for (ir::Value* v : g.initializers) {
    auto& t = *v->initializer;
    if (!t.has_data() || t.dtype == ir::DType::String || is_graph_input(g, v) || v->is_graph_output()) continue;
    buckets[{t.dtype_code, t.dims, t.data.size()}].push_back(v);
  }
  std::vector<ir::Value*> dropped;
  for (auto& [key, vals] : buckets) {
    if (vals.size() < 2) continue;
    std::vector<ir::Value*> keep;
    for (ir::Value* v : vals) {
      ir::Value* same = nullptr;
      for (ir::Value* k : keep)
        if (std::memcmp(k->initializer->data.data(), v->initializer->data.data(), v->initializer->data.size()) == 0) {
          same = k;
          break;
        }
      if (!same) {
        keep.push_back(v);
        continue;
      }
      g.replace_all_uses(v, same);
      dropped.push_back(v);
    }
  }
  for (ir::Value* v : dropped) {
    g.remove_initializer(v);
    ++st.duplicate_initializers;
  }
}

void cleanup_graph(ir::Graph& g, const CleanupOptions& o, CleanupStats& st) {
  std::vector<ir::Node*> nodes;
  for (auto& n : g.nodes()) nodes.push_back(n.get());
  for (ir::Node* n : nodes) {
    if (!ir::is_default_domain(n->domain)) continue;
    if (o.remove_identity && n->op_type == "Identity" && n->inputs.size() == 1) {
      if (n->inputs[0] && n->inputs[0]->kind != ir::Value::Kind::Captured && ir::bypass_node(g, n)) ++st.identities;
    } else if (o.remove_dropout && n->op_type == "Dropout" && is_inference_dropout(n)) {
      if (n->inputs[0] && n->inputs[0]->kind != ir::Value::Kind::Captured && ir::bypass_node(g, n)) ++st.dropouts;
    }
  }
  if (o.remove_dead_nodes) remove_dead(g, st);
  if (o.dedupe_initializers) dedupe(g, st);
  if (o.remove_unused_initializers) {
    const std::vector<ir::Value*> all = g.initializers;
    for (ir::Value* v : all)
      if (ir::erase_initializer(g, v)) ++st.unused_initializers;
  }
  ir::prune_value_info(g);
  if (o.subgraphs)
    for (auto& n : g.nodes())
      for (auto& a : n->attributes) {
        if (a.g) cleanup_graph(*a.g, o, st);
        for (auto& sg : a.graphs) cleanup_graph(*sg, o, st);
      }
  g.compact_values();
}

}  // namespace

const OptionTable<CleanupOptions>& CleanupOptions::table() {
  static const OptionTable<CleanupOptions> t({
      {"remove-identity", &CleanupOptions::remove_identity, "remove Identity nodes", {}},
      {"remove-dropout", &CleanupOptions::remove_dropout, "remove Dropout nodes in inference form", {}},
      {"remove-dead-nodes", &CleanupOptions::remove_dead_nodes, "remove nodes whose outputs nothing reads", {}},
      {"remove-unused-initializers", &CleanupOptions::remove_unused_initializers,
       "remove initializers nothing reads (not those that are also graph inputs)", {}},
      {"dedupe-initializers", &CleanupOptions::dedupe_initializers,
       "merge initializers with the same type, shape and bytes", {}},
      {"subgraphs", &CleanupOptions::subgraphs, "also clean the subgraphs of If/Loop/Scan", {}},
  });
  return t;
}

CleanupStats cleanup(ir::Graph& g, const CleanupOptions& opts) {
  CleanupStats st;
  cleanup_graph(g, opts, st);
  return st;
}

PassInfo cleanup_pass_info() {
  PassInfo p;
  p.name = "cleanup";
  p.summary = "remove dead nodes, Identity/Dropout in inference graphs, unused and duplicate initializers";
  p.options = CleanupOptions::table().specs();
  p.run = [](ir::Model& m, const nlohmann::json& j, PassContext& ctx) {
    auto st = cleanup(*m.graph, CleanupOptions::table().from_json(j));
    ctx.report = {{"identities_removed", st.identities},
                  {"dropouts_removed", st.dropouts},
                  {"dead_nodes_removed", st.dead_nodes},
                  {"unused_initializers_removed", st.unused_initializers},
                  {"duplicate_initializers_merged", st.duplicate_initializers}};
  };
  return p;
}

}  // namespace slmops::passes
