// What the optimization passes ask of a graph while matching patterns: constants as numbers,
// known shapes, single readers, producers of a given op. One set of questions, so that every
// pass answers them alike (a value a caller may feed is never a constant, for instance).
#pragma once
#include <functional>
#include <optional>
#include <string_view>
#include <vector>

#include "ir/graph.h"

namespace slmops::passes {

// The main graph, then every graph nested in node attributes (If/Loop/Scan bodies).
void for_each_graph(ir::Model& m, const std::function<void(ir::Graph&)>& fn);

// Models of IR version < 4 must list every initializer as a graph input too; ONNX Runtime
// treats those as constants, not as inputs a caller may override. So do the optimization
// passes: they leave the input list (main graph). Returns how many did.
int64_t freeze_legacy_initializer_inputs(ir::Model& m);

// The node of op `op` (default domain) that writes `v`, or nullptr.
ir::Node* producer_of(const ir::Value* v, std::string_view op);
// Whether `v` is read by exactly one node input and is not a graph output.
bool sole_reader(const ir::Value* v);
// The values of an int64 or int32 tensor, or nothing (another type, or data not all there).
std::optional<std::vector<int64_t>> tensor_ints(const ir::Tensor& t);
// The values of an integer constant (int64 or int32), or nothing.
std::optional<std::vector<int64_t>> const_ints(const ir::Value* v);
// The values of a float constant (float, double or float16), or nothing.
std::optional<std::vector<float>> const_floats(const ir::Value* v);
// The value of a constant with one element (any float or integer type), or nothing.
std::optional<double> const_scalar(const ir::Value* v);
// Whether every element of a float constant is within `tol` of `x`.
bool const_all_near(const ir::Value* v, double x, double tol = 1e-6);

// The element type of `v` as far as known (declared, inferred or the initializer's).
ir::DType dtype_of(const ir::Value* v);
// The dims of `v` when every one of them is known.
std::optional<std::vector<int64_t>> static_shape(const ir::Value* v);
// The dims of `v` as far as known: the rank, with -1 for a dim that is not a number.
std::optional<std::vector<int64_t>> partial_shape(const ir::Value* v);
// Whether two attributes (same name assumed) hold the same value. Graph attributes never
// compare equal.
bool same_attribute(const ir::Attribute& a, const ir::Attribute& b);

}  // namespace slmops::passes
