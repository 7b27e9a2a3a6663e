// Value types and shapes: ONNX's own shape inference (Debian's libonnx 1.12) run over the
// IR, with schemas of our own for the com.microsoft ops the quantizer writes.
//
// The result goes into Value::inferred, never into Value::type: declared types (what the
// file says) stay as loaded, so saving a model writes the same bytes as before.
#pragma once
#include <cstdint>
#include <optional>
#include <string>

#include "ir/graph.h"

namespace slmops::formats {

// Fills Value::inferred (and sets Model::shapes_inferred) for every value of every graph (subgraphs included) that inference
// can type: graph inputs and declared value_info as declared (merged with what inference
// finds), initializers from their dtype and dims, node outputs from the op schemas. A value
// inference cannot type (unknown op, an op that fails on its inputs, and what depends on
// it) is left with inferred.is_tensor == false. Never throws.
//
// Weights are not copied: initializers above a few KiB reach libonnx as typed graph inputs
// without data, so the cost does not grow with the model's size on disk.
void infer_shapes(ir::Model& m);

// infer_shapes again, after a pass changed the graph: every value's inferred type is
// recomputed (values a pass created included).
void refresh_shapes(ir::Model& m);

// infer_shapes unless Model::shapes_inferred says it ran already. load_model does not infer
// (it would add a third to a memory-mapped load, plus libonnx's one-time schema set-up); code
// that reads Value::inferred calls this first.
void ensure_shapes(ir::Model& m);

// What an op's schema (libonnx's, or slmops' own com.microsoft ones) lets formal input or
// output `index` hold: whether tensors of `dt` are allowed (a variadic last parameter covers
// every later index). std::nullopt when there is no schema for the op at `opset`, or the
// index is past the schema's parameters.
std::optional<bool> schema_allows(const std::string& op_type, const std::string& domain, int64_t opset, bool input,
                                  size_t index, ir::DType dt);
// Whether `op_type` of `domain` exists in opset `opset` (has a schema at or before it).
bool op_exists_at(const std::string& op_type, const std::string& domain, int64_t opset);
// Whether some schema of any domain and version has this op type (recipe and CLI checks of
// op-type lists).
bool is_known_op_type(const std::string& op_type);

}  // namespace slmops::formats
