// Graph edits that passes share, and one set of model statistics. Every pass that rewires
// outputs, removes weights or counts parameters goes through these, so value_info, producer
// links and the parameter count stay consistent whichever pass touched the model.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "ir/graph.h"

namespace slmops::ir {

// The ONNX default operator set: "" and "ai.onnx" name the same domain.
bool is_default_domain(std::string_view domain);

// `producer` writes `to` wherever it wrote `from`: `to` keeps its name, consumers, type and
// any graph-output entry, and `from` is left without a producer (prune_value_info drops its
// declaration). `from` may be nullptr: the first omitted output slot (a node just added with
// output name "") then writes `to`. The edit behind "bypass an Identity whose output is a graph output",
// "insert Q/DQ after an activation" and "fold a node into its producer".
void move_output(Node* producer, Value* from, Value* to);

// Replaces `old` by a new node of `op_type` that keeps old's name and writes old's output
// values (consumers and graph outputs untouched). Call sort_nodes() after a batch of edits.
Node* replace_node(Graph& g, Node* old, std::string op_type, std::string domain, std::vector<Value*> inputs,
                   std::vector<Attribute> attrs);

// Removes `n`, a node that passes input 0 through to output 0 unchanged (Identity, an
// inference Dropout, a Reshape to the same shape): readers of output 0 read input 0. When
// output 0 is a graph output it keeps its name: the producer of input 0 writes it directly.
// Returns false (and changes nothing) when that cannot be done without changing the graph's
// interface, or when another output of `n` is read.
bool bypass_node(Graph& g, Node* n);
// Turns `v`, a node output whose producer was removed, into an initializer holding `t` (it
// keeps its name, consumers and any value_info entry): the edit behind constant folding.
void make_initializer(Graph& g, Value* v, Tensor t);
// The tensor of `v` when it is a constant of its graph: an initializer that is not also a
// graph input (a caller may feed those), with readable data. nullptr otherwise.
const Tensor* constant_tensor(const Value* v);
// Adds an initializer named uniquely from `prefix` (prefix, prefix_1, ...).
Value* add_initializer(Graph& g, std::string_view prefix, DType dt, std::vector<int64_t> dims, Buffer data);

// Restores a topological node order (an ONNX file lists producers first).
void sort_nodes(Graph& g);

// Removes initializer `v` when nothing reads it (no consumer, not a graph output, not a
// graph input with a default), with its value_info entry. Returns whether it was removed.
bool erase_initializer(Graph& g, Value* v);

// Drops value_info entries that declare values no longer in the graph: node outputs whose
// producer is gone, removed initializers nothing reads.
void prune_value_info(Graph& g);

// `g` and every graph nested in its nodes' attributes, depth first (g first), read-only
// (Graph::for_each_subgraph is the editing walk).
void walk_graphs(const Graph& g, const std::function<void(const Graph&)>& fn);

// What a model holds, counted once for inspect, evaluate and the executor. Parameters are
// logical values: a MatMulNBits weight counts N x K (not its packed bytes), and the scales and
// zero points of quantized ops are storage of the quantization, not parameters.
struct ModelStats {
  int64_t nodes = 0, initializers = 0;
  uint64_t parameters = 0;
  uint64_t weight_bytes = 0;                         // bytes of every initializer's values
  std::map<std::string, uint64_t> bytes_by_dtype;    // "float", "uint8", "type99" for unknown codes
  // Parameters by the type they are stored in ("float16"; a MatMulNBits weight under "uint4" or
  // "uint8" by its bits): how much of the model a conversion or quantization moved.
  std::map<std::string, uint64_t> parameters_by_dtype;
  std::map<std::string, int64_t> ops;                // "MatMul", "com.microsoft.MatMulNBits"
  std::map<std::string, std::pair<int64_t, uint64_t>> external;  // data file -> tensors, bytes
};
ModelStats model_statistics(const Model& m);

}  // namespace slmops::ir
