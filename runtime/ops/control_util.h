// Helpers shared by the control-flow ops (If, Loop, Scan), the sequence ops and
// SequenceMap: running a subgraph attribute, and cutting tensors into slices along an axis
// or joining slices back (scan inputs and outputs, SplitToSequence, ConcatFromSequence).
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "runtime/executor.h"
#include "runtime/ops/common.h"

namespace slmops::runtime::ops {

// A graph attribute of a node (a branch or a loop body), planned once when the kernel is
// made and run any number of times. Each run sees the running node's frame as its parent
// scope, so the body reads outer values (and values of enclosing bodies) by lookup.
class Subgraph {
 public:
  // Throws Error naming the attribute when the node has no graph attribute `attr`.
  Subgraph(const ir::Node& node, const char* attr, const PlanContext& pc);

  const ir::Graph& graph() const { return *graph_; }
  size_t input_count() const { return graph_->inputs.size(); }
  size_t output_count() const { return graph_->outputs.size(); }

  // Runs the graph on `inputs` (by position of its declared inputs) and returns its
  // outputs. Errors raised inside are prefixed with the attribute name.
  std::vector<RValue> run(std::vector<RValue> inputs, const OpContext& ctx) const;

 private:
  std::string attr_;
  const ir::Graph* graph_;
  std::unique_ptr<GraphRunner> runner_;
};

// Scalars passed to and read from bodies (iteration numbers, conditions, positions).
Tensor scalar_int64(int64_t v);
Tensor scalar_bool(bool v);
// The single element of a one-element bool tensor; `what` names it in errors.
bool read_bool(const Tensor& t, const char* what);
// The single element of a one-element integer tensor; `what` names it in errors.
int64_t read_int64(const Tensor& t, const char* what);

// The node's input i as given, of any kind (an empty RValue when omitted).
RValue input_value(const OpContext& ctx, size_t i);

// The value `v` (a tensor) or an error naming it: `what` says which input/output it is.
const Tensor& expect_tensor(const RValue& v, const std::string& what);

// Joins tensors of one type along an existing axis (0 <= axis < rank); every other
// dimension must agree. `parts` must not be empty.
Tensor concat(const std::vector<Tensor>& parts, int64_t axis, ThreadPool* pool);
// Joins tensors of one shape and type along a new axis (0 <= axis <= rank). `parts` must not
// be empty.
Tensor stack(const std::vector<Tensor>& parts, int64_t axis, ThreadPool* pool);
// An empty stack (no parts) of slices of the type `slice` declares: its element type and
// the dimensions it knows, with a 0 inserted at `axis` (0 <= axis <= declared rank).
Tensor empty_stack(const ir::TensorType& slice, int64_t axis);

// Cuts `t` along `axis` into pieces of the given lengths (which must add up to the axis).
std::vector<Tensor> split(const Tensor& t, int64_t axis, const std::vector<int64_t>& lengths, ThreadPool* pool);
// Every slice of `t` along `axis`, with that axis removed (the inverse of stack).
std::vector<Tensor> unstack(const Tensor& t, int64_t axis, ThreadPool* pool);

}  // namespace slmops::runtime::ops
