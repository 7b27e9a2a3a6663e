// Edits the fusion passes share (fuse.cpp: standard ONNX ops; fuse_ort.cpp: ONNX Runtime's
// contrib ops).
#pragma once
#include <functional>
#include <string_view>
#include <vector>

#include "ir/graph.h"
#include "passes/optimize/optimize.h"

namespace slmops::passes {

// A new float initializer named from `prefix`.
ir::Value* add_float_initializer(ir::Graph& g, std::string_view prefix, std::vector<int64_t> dims,
                                 const std::vector<float>& values);
// Removes `last` and lets `writer` write last's output 0 instead of its own output 0 (the
// nodes between them, if any, are left unread for cleanup).
void take_outputs(ir::Graph& g, ir::Node* writer, ir::Node* last);
// The input of a two-input node that is not `v`, or nullptr when `v` is not one of them.
ir::Value* other_input(const ir::Node& n, const ir::Value* v);
// The one node that reads `v`, when it is a default-domain `op` and `v` is no graph output.
ir::Node* sole_reader_op(const ir::Value* v, std::string_view op);

// The input of `n` when it is a ReduceMean over the last axis only, keeping dims.
ir::Value* mean_over_last(const ir::Node* n, int64_t opset);

// Tries `rule` on every node in topological order; after a rule fires (returning the
// fusion's name), starts again on the changed graph, since a fusion removes nodes later in
// the order. Counts each fusion in st.fusions; returns how many fired.
int64_t apply_rules(ir::Graph& g, const std::function<const char*(ir::Node*)>& rule, OptimizeStats& st);

using ir::attribute_list;

int64_t fuse_standard(ir::Model& m, ir::Graph& g, OptimizeStats& st);
int64_t fuse_onnxruntime(ir::Model& m, ir::Graph& g, OptimizeStats& st);

}  // namespace slmops::passes
