// Graph optimizations: the passes that make an exported graph as small as ONNX Runtime's own
// session-time rewrites would (onnx-simplifier's job), each a pass of its own, plus the chain
// that runs them to a fixed point. `slmops convert --optimize`, recipes and the evaluator (before
// it plans a session) all call the functions below; there is no second implementation.
//
//   fold-constants   Constant nodes become initializers; a node whose inputs are all constant
//                    is run once with the executor's kernel and replaced by its outputs.
//   simplify-shapes  shape inference (libonnx) after fixing dynamic dims (--input-shape), then
//                    Shape/Size, and Gather/Slice of a Shape, become constants where the dims
//                    they read are known; then fold-constants.
//   eliminate        nodes that change nothing (Cast to the same type, Reshape/Expand to the
//                    same shape, identity Transpose, full Slice, zero Pad, Unsqueeze undoing a
//                    Squeeze), Transpose and Reshape chains merged, and common subexpressions:
//                    two nodes of the same op, attributes and inputs become one.
//   fuse             standard ONNX fusions (opset-aware): Conv+BatchNormalization, Conv+Add
//                    bias, MatMul+Add -> Gemm (2-D), Mul(x, 1/y) -> Div(x, y), decomposed
//                    LayerNormalization (opset 17).
//                    With target onnxruntime, also the com.microsoft contrib ops ONNX Runtime
//                    makes at session creation (Gelu, BiasGelu, FastGelu, QuickGelu,
//                    SkipLayerNormalization, SimplifiedLayerNormalization and its Skip form,
//                    FusedMatMul).
#pragma once
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "ir/graph.h"
#include "passes/options.h"

namespace slmops::passes {

struct FoldOptions {
  // A folded output larger than this stays a node unless folding frees at least as many bytes
  // of constant inputs (so Expand/Tile/ConstantOfShape never grow a model).
  int64_t max_folded_bytes = int64_t{1} << 20;
  static const OptionTable<FoldOptions>& table();
};

struct ShapeOptions {
  std::vector<std::string> input_shape;  // "NAME=D1,D2,..." (onnxsim's --overwrite-input-shape)
  int64_t max_folded_bytes = int64_t{1} << 20;
  static const OptionTable<ShapeOptions>& table();
};

struct EliminateOptions {
  bool no_ops = true;
  bool merge_chains = true;
  bool cse = true;
  static const OptionTable<EliminateOptions>& table();
};

struct FuseOptions {
  std::string target = "onnx";  // onnx | onnxruntime
  static const OptionTable<FuseOptions>& table();
};

struct OptimizeOptions {
  std::vector<std::string> input_shape;
  int64_t max_folded_bytes = int64_t{1} << 20;
  std::string target = "onnx";
  static const OptionTable<OptimizeOptions>& table();
};

struct OptimizeStats {
  int64_t constants_to_initializers = 0, nodes_folded = 0, folds_skipped_size = 0;
  int64_t shape_nodes_folded = 0, inputs_fixed = 0, inputs_frozen = 0;
  int64_t no_ops_removed = 0, chains_merged = 0, subexpressions_merged = 0;
  std::map<std::string, int64_t> fusions;  // "Conv+BatchNormalization" -> count
  int64_t total() const;
  void add(const OptimizeStats& o);
};

// Each pass works on the main graph and every subgraph. They change `m` in place; a model
// whose outputs they would change is a bug (the differential tests run each one).
OptimizeStats fold_constants(ir::Model& m, const FoldOptions& o);
OptimizeStats simplify_shapes(ir::Model& m, const ShapeOptions& o);
OptimizeStats eliminate(ir::Model& m, const EliminateOptions& o);
OptimizeStats fuse(ir::Model& m, const FuseOptions& o);
// cleanup, then the four passes above in turn until none changes the graph (at most a few
// rounds), then cleanup. What `convert --optimize` and the evaluator run.
OptimizeStats optimize(ir::Model& m, const OptimizeOptions& o);

// Parses "NAME=D1,D2,..." (each dim a positive integer); throws Error(BadInput) naming the
// option text when it is malformed. Exposed for the CLI's checks.
std::pair<std::string, std::vector<int64_t>> parse_input_shape(std::string_view text);
// Sets the declared dims of the graph inputs named in `specs`; throws Error(BadInput) for a
// name that is no input, or a rank that differs from the declared one.
int64_t fix_input_shapes(ir::Model& m, const std::vector<std::string>& specs);
// The same checks without changing the model (recipes run them on the input model before any
// step, so a bad name fails before work is done or logged).
void check_input_shapes_in(const ir::Model& m, const std::vector<std::string>& specs);

nlohmann::json stats_json(const OptimizeStats& s);
// One message per malformed entry of an "input-shape" option (options with defaults).
std::vector<std::string> check_input_shapes(const nlohmann::json& options);

}  // namespace slmops::passes
