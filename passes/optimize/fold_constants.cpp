// fold-constants: compute at compile time what does not depend on the inputs.
//
//   Before: Constant{value=[2,3]} -> c;  Shape(W) -> s;  Concat(s, c) -> shape;  Reshape(x, shape)
//   After:  shape = initializer [64,32,2,3];  Reshape(x, shape)
// A node folds when every input is a constant of its graph (an initializer that is not also a
// graph input), it is in the default domain, has no subgraph, is deterministic, is not a
// DequantizeLinear (a quantized weight stays quantized: folding it would store the float
// weight), has a kernel in the executor, and none of its outputs is a graph output. Its
// outputs become initializers with the outputs' names. An output larger than max-folded-bytes
// folds only when the inputs that folding frees hold at least as many bytes.
#include <unordered_set>

#include "ir/edit.h"
#include "passes/optimize/optimize.h"
#include "passes/optimize/pattern.h"
#include "passes/registry.h"
#include "runtime/op_registry.h"

namespace slmops::passes {
namespace {

bool foldable_op(const ir::Node& n) {
  static const std::unordered_set<std::string> never = {"RandomNormal",      "RandomUniform",   "RandomNormalLike",
                                                        "RandomUniformLike", "Multinomial",     "Bernoulli",
                                                        "Dropout",           "DequantizeLinear"};
  return ir::is_default_domain(n.domain) && !n.has_subgraphs() && n.implicit_inputs.empty() && !never.count(n.op_type);
}

// Bytes of constant inputs that only `n` reads: what folding `n` removes from the model.
uint64_t freed_bytes(const ir::Node& n) {
  uint64_t bytes = 0;
  std::unordered_set<const ir::Value*> seen;
  for (const ir::Value* v : n.inputs) {
    if (!v || !seen.insert(v).second || v->is_graph_output()) continue;
    bool only_n = true;
    for (const ir::Node* c : v->consumers) only_n = only_n && c == &n;
    if (only_n) bytes += v->initializer->data.size();
  }
  return bytes;
}

class Folder {
 public:
  Folder(const ir::Model& m, const FoldOptions& o) : model_(m), opts_(o), pool_(1) {
    runtime::ensure_kernels_registered();
  }

  void fold_graph(ir::Graph& g, OptimizeStats& st) {
    for (ir::Node* n : g.topological_order()) {
      if (!foldable_op(*n) || n->outputs.empty()) continue;
      bool all_const = true, feeds_output = false;
      for (const ir::Value* v : n->inputs) all_const = all_const && (!v || ir::constant_tensor(v));
      for (const ir::Value* v : n->outputs) feeds_output = feeds_output || (v && v->is_graph_output());
      if (!all_const || feeds_output) continue;
      auto outs = evaluate(*n);
      if (outs.empty()) continue;
      uint64_t out_bytes = 0;
      for (auto& t : outs) out_bytes += t.data.size();
      if (n->op_type != "Constant" && out_bytes > static_cast<uint64_t>(opts_.max_folded_bytes) &&
          out_bytes > freed_bytes(*n)) {
        ++st.folds_skipped_size;
        continue;
      }
      (n->op_type == "Constant" ? st.constants_to_initializers : st.nodes_folded)++;
      std::vector<ir::Value*> values = n->outputs;
      g.remove_node(n);
      for (size_t k = 0; k < values.size(); ++k)
        if (values[k]) ir::make_initializer(g, values[k], std::move(outs[k]));
    }
  }

 private:
  // The node's outputs, or nothing when it cannot be computed here (no kernel, a kernel that
  // throws on these inputs, an output that is not a plain tensor).
  std::vector<ir::Tensor> evaluate(const ir::Node& n) {
    const int opset = static_cast<int>(model_.opset(n.domain));
    const runtime::KernelFactory* make = runtime::find_kernel(n.domain, n.op_type, opset);
    if (!make) return {};
    runtime::SessionConstants constants;
    runtime::PlanContext pc{opset, &model_, 1, nullptr, &constants};
    std::vector<runtime::RValue> ins;
    ins.reserve(n.inputs.size());
    for (const ir::Value* v : n.inputs) ins.push_back(v ? runtime::RValue::of(constants.get(v)) : runtime::RValue{});
    std::vector<runtime::RValue> outs(n.outputs.size());
    runtime::OpContext ctx;
    ctx.pool = &pool_;
    ctx.node = &n;
    ctx.outputs = &outs;
    for (size_t i = 0; i < n.inputs.size(); ++i) ctx.inputs.push_back(n.inputs[i] ? &ins[i] : nullptr);
    try {
      auto kernel = (*make)(n, pc);
      kernel->run(ctx);
    } catch (const std::exception&) {
      return {};  // left for the run to report, with its own message
    }
    std::vector<ir::Tensor> result;
    for (size_t k = 0; k < outs.size(); ++k) {
      const runtime::RValue& v = outs[k];
      if (!n.outputs[k]) {
        result.emplace_back();
        continue;
      }
      if (!v.is_tensor() || v.optional || v.tensor.dtype == ir::DType::String || v.tensor.dtype == ir::DType::Undefined)
        return {};
      ir::Tensor t = v.tensor;
      t.storage = ir::Tensor::Storage::Raw;
      t.residual.clear();
      // Kernels may hand back a view of an input or of pooled memory: keep a copy of our own.
      t.data = ir::Buffer::copy_of(t.data.data(), t.data.size());
      result.push_back(std::move(t));
    }
    return result;
  }

  const ir::Model& model_;
  FoldOptions opts_;
  runtime::ThreadPool pool_;
};

}  // namespace

const OptionTable<FoldOptions>& FoldOptions::table() {
  static const OptionTable<FoldOptions> t({
      {"max-folded-bytes",
       &FoldOptions::max_folded_bytes,
       "a folded output above this many bytes stays a node, unless folding frees as many bytes of inputs",
       {},
       false,
       {0, 1e15}},
  });
  return t;
}

OptimizeStats fold_constants(ir::Model& m, const FoldOptions& o) {
  OptimizeStats st;
  st.inputs_frozen = freeze_legacy_initializer_inputs(m);
  Folder folder(m, o);
  for_each_graph(m, [&](ir::Graph& g) { folder.fold_graph(g, st); });
  return st;
}

PassInfo fold_constants_pass_info() {
  PassInfo p;
  p.name = "fold-constants";
  p.summary = "compute nodes whose inputs are all constant once, and store their outputs as initializers";
  p.options = FoldOptions::table().specs();
  p.run = [](ir::Model& m, const nlohmann::json& j, PassContext& ctx) {
    ctx.report = stats_json(fold_constants(m, FoldOptions::table().from_json(j)));
  };
  return p;
}

}  // namespace slmops::passes
