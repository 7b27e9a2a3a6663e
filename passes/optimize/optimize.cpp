// The optimize chain and the fuse pass's registration; the other passes register in their
// own files.
#include "passes/optimize/optimize.h"

#include "formats/shape_infer.h"
#include "ir/edit.h"
#include "passes/cleanup.h"
#include "passes/common/opset.h"
#include "passes/optimize/fuse_util.h"
#include "passes/optimize/pattern.h"
#include "passes/registry.h"

namespace slmops::passes {

int64_t OptimizeStats::total() const {
  int64_t n = constants_to_initializers + nodes_folded + shape_nodes_folded + no_ops_removed + chains_merged +
              subexpressions_merged;
  for (auto& [k, v] : fusions) n += v;
  return n;
}

void OptimizeStats::add(const OptimizeStats& o) {
  constants_to_initializers += o.constants_to_initializers;
  nodes_folded += o.nodes_folded;
  folds_skipped_size = o.folds_skipped_size;  // a count of the last round, not a sum over rounds
  shape_nodes_folded += o.shape_nodes_folded;
  inputs_fixed += o.inputs_fixed;
  inputs_frozen += o.inputs_frozen;
  no_ops_removed += o.no_ops_removed;
  chains_merged += o.chains_merged;
  subexpressions_merged += o.subexpressions_merged;
  for (auto& [k, v] : o.fusions) fusions[k] += v;
}

nlohmann::json stats_json(const OptimizeStats& s) {
  return {{"constants_to_initializers", s.constants_to_initializers},
          {"nodes_folded", s.nodes_folded},
          {"folds_skipped_for_size", s.folds_skipped_size},
          {"shape_nodes_folded", s.shape_nodes_folded},
          {"inputs_fixed", s.inputs_fixed},
          {"legacy_initializer_inputs_frozen", s.inputs_frozen},
          {"no_ops_removed", s.no_ops_removed},
          {"chains_merged", s.chains_merged},
          {"subexpressions_merged", s.subexpressions_merged},
          {"fusions", s.fusions}};
}

const OptionTable<FuseOptions>& FuseOptions::table() {
  static const OptionTable<FuseOptions> t({
      {"target",
       &FuseOptions::target,
       "onnx: standard ops only; onnxruntime: also ONNX Runtime's com.microsoft contrib ops (the model then runs "
       "only in ONNX Runtime)",
       {"onnx", "onnxruntime"}},
  });
  return t;
}

OptimizeStats fuse(ir::Model& m, const FuseOptions& o) {
  OptimizeStats st;
  st.inputs_frozen = freeze_legacy_initializer_inputs(m);
  formats::ensure_shapes(m);
  for_each_graph(m, [&](ir::Graph& g) { fuse_standard(m, g, st); });
  if (o.target == "onnxruntime") {
    formats::refresh_shapes(m);
    for_each_graph(m, [&](ir::Graph& g) { fuse_onnxruntime(m, g, st); });
  }
  cleanup(*m.graph, CleanupOptions{});
  m.shapes_inferred = false;
  return st;
}

const OptionTable<OptimizeOptions>& OptimizeOptions::table() {
  static const OptionTable<OptimizeOptions> t({
      {"input-shape",
       &OptimizeOptions::input_shape,
       "fix a graph input's dims first, NAME=D1,D2,... (repeatable; onnxsim's --overwrite-input-shape)",
       {}},
      {"max-folded-bytes",
       &OptimizeOptions::max_folded_bytes,
       "a folded output above this many bytes stays a node, unless folding frees as many bytes of inputs",
       {},
       false,
       {0, 1e15}},
      {"target",
       &OptimizeOptions::target,
       "fusions for: onnx (standard ops) or onnxruntime (contrib ops too)",
       {"onnx", "onnxruntime"}},
  });
  return t;
}

OptimizeStats optimize(ir::Model& m, const OptimizeOptions& o) {
  OptimizeStats st;
  cleanup(*m.graph, CleanupOptions{});
  ShapeOptions so;
  so.input_shape = o.input_shape;
  so.max_folded_bytes = o.max_folded_bytes;
  FoldOptions fo;
  fo.max_folded_bytes = o.max_folded_bytes;
  FuseOptions fu;
  fu.target = "onnx";
  // Each pass can open work for another (a fold makes a Reshape a no-op, a merged
  // subexpression makes two fusions one); a few rounds reach the fixed point on every model
  // seen so far, and the bound keeps a pathological one from looping.
  constexpr int kMaxRounds = 4;
  for (int round = 0; round < kMaxRounds; ++round) {
    OptimizeStats r;
    r.add(fold_constants(m, fo));
    r.add(simplify_shapes(m, so));
    so.input_shape.clear();  // fixed once
    r.add(eliminate(m, EliminateOptions{}));
    r.add(fuse(m, fu));
    st.add(r);
    if (r.total() == 0) break;
  }
  if (o.target == "onnxruntime") {
    fu.target = "onnxruntime";
    st.add(fuse(m, fu));
  }
  cleanup(*m.graph, CleanupOptions{});
  m.shapes_inferred = false;
  return st;
}

std::vector<std::string> check_input_shapes(const nlohmann::json& j) {
  std::vector<std::string> problems;
  for (const auto& s : j.at("input-shape")) {
    try {
      parse_input_shape(s.get<std::string>());
    } catch (const std::exception& e) {
      problems.push_back(e.what());
    }
  }
  return problems;
}

PassInfo fuse_pass_info() {
  PassInfo p;
  p.name = "fuse";
  p.summary = "fuse Conv+BatchNormalization, Conv+Add, MatMul+Add->Gemm, LayerNormalization (and ORT contrib ops)";
  p.options = FuseOptions::table().specs();
  p.run = [](ir::Model& m, const nlohmann::json& j, PassContext& ctx) {
    ctx.report = stats_json(fuse(m, FuseOptions::table().from_json(j)));
  };
  return p;
}

PassInfo optimize_pass_info() {
  PassInfo p;
  p.name = "optimize";
  p.summary = "cleanup, fold-constants, simplify-shapes, eliminate and fuse until nothing changes";
  p.options = OptimizeOptions::table().specs();
  p.check = [](const nlohmann::json& j, Naming) { return check_input_shapes(j); };
  p.check_model = [](const ir::Model& m, const nlohmann::json& j) {
    if (j.contains("input-shape")) check_input_shapes_in(m, j["input-shape"].get<std::vector<std::string>>());
  };
  p.run = [](ir::Model& m, const nlohmann::json& j, PassContext& ctx) {
    const size_t before = m.graph->node_count();
    auto st = optimize(m, OptimizeOptions::table().from_json(j));
    ctx.report = stats_json(st);
    ctx.report["nodes_before"] = before;
    ctx.report["nodes_after"] = m.graph->node_count();
  };
  return p;
}

}  // namespace slmops::passes
