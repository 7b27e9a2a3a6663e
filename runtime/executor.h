// The executor: plans an ir::Graph once (schedule, kernels, value slots, when each value
// dies) and runs it on inputs. Subgraphs (If/Loop/Scan bodies) are planned the same way and
// read outer values through the frame chain.
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "ir/graph.h"
#include "runtime/op_registry.h"
#include "runtime/thread_pool.h"
#include "runtime/value.h"

namespace slmops::runtime {

struct RunOptions {
  // Called after every node with its outputs (calibration, sensitivity analysis).
  std::function<void(const ir::Node&, const std::vector<RValue>& outputs)> on_node;
  // Values to return besides the graph outputs, by name (intermediates).
  std::vector<std::string> extra_outputs;
  // Asked after every node (with on_node): true ends the run there, and run() returns no
  // values (a run that only looks at intermediates need not compute the rest of the graph).
  std::function<bool()> stop;
  // Run QDQ groups as the graph writes them (DequantizeLinear, float op, QuantizeLinear)
  // instead of as integer kernels (GraphRunner::plan_qdq). The integer kernels round once
  // where the float ops round at every step, so a value near a quantization step can land one
  // step away; runs with on_node or extra_outputs always take the graph's arithmetic.
  bool exact_qdq = false;
};

class Frame;

// The plan of one graph. Values that cannot change between runs are constants held by the
// plan, never copied per run: true initializers (not graph inputs with a default, which a
// caller may feed) and the outputs of nodes folded at plan time. A node is folded when every
// input is such a constant, it has no subgraph, is deterministic, and its outputs are
// tensors of at most kMaxFoldedBytes each (Constant nodes, the exported shape arithmetic on
// constants, masks built from constants). The ir::Graph itself is not changed.
class GraphRunner {
 public:
  static constexpr size_t kMaxFoldedBytes = size_t{1} << 20;

  GraphRunner(const ir::Graph& g, const PlanContext& pc);
  ~GraphRunner();
  const ir::Graph& graph() const { return graph_; }
  // Inputs by position of the graph's declared inputs (initializer-backed inputs may be
  // omitted at the end or passed as None). Returns the graph outputs (then extras).
  std::vector<RValue> run(std::vector<RValue> inputs, ThreadPool& pool, const Frame* parent,
                          const RunOptions* opts = nullptr) const;

  size_t folded_count() const { return folded_count_; }  // nodes folded into constants
  int qdq_fused_count() const { return qdq_fused_; }     // QDQ groups run as integer kernels
  int clamp_fused_count() const { return clamp_fused_; }  // Relu / Clip steps fused (float plan)

 private:
  struct Step;
  // A step's reference to a value: a slot of the run (>= 0), a plan constant (kConst - k
  // for constants_[k]) or an omitted value (kOmitted).
  static constexpr int kOmitted = -1, kConst = -2;
  const RValue* resolve(int ref, const std::vector<RValue>& slots) const {
    return ref >= 0 ? &slots[ref] : ref == kOmitted ? nullptr : &constants_[kConst - ref];
  }
  // Folds the step when it qualifies (see the class comment); true when it did.
  bool try_fold(Step& step, ThreadPool& pool);
  void plan_qdq(const std::unordered_set<int>& keep, const PlanContext& pc);
  void plan_lifetimes(std::vector<std::unique_ptr<Step>>& steps, const std::unordered_set<int>& keep);
  void plan_fusions(std::vector<std::unique_ptr<Step>>& steps, const std::unordered_set<int>& keep);

  const ir::Graph& graph_;
  std::vector<std::unique_ptr<Step>> steps_;
  std::vector<std::unique_ptr<Step>> qdq_steps_;  // the integer QDQ plan (empty: none fused)
  int qdq_fused_ = 0;
  int clamp_fused_ = 0;
  std::unordered_map<const ir::Value*, int> ref_;  // every value's reference (slot or constant)
  int slot_count_ = 0;
  std::vector<RValue> constants_;
  SessionConstants* session_constants_ = nullptr;  // the session's aligned initializers (run-time defaults)
  size_t folded_count_ = 0;
  std::vector<std::pair<int, const ir::Value*>> defaults_;  // slot, graph input with a default
  std::vector<std::pair<int, const ir::Value*>> captured_;  // slot, captured value
  std::vector<int> input_slots_, output_refs_;
  friend class Frame;
};

// The values of one running graph; subgraph runs look up captured values through `parent`.
class Frame {
 public:
  Frame(const GraphRunner& r, const Frame* parent, std::vector<RValue>& slots)
      : runner_(r), parent_(parent), slots_(slots) {}
  const RValue* lookup(const ir::Value* v) const;

 private:
  const GraphRunner& runner_;
  const Frame* parent_;
  std::vector<RValue>& slots_;
};

class Session {
 public:
  // Plan-time copies of weights (pre-packed GEMM operands) get at most this share of the
  // model's weight bytes, or kMinPackBudget when that is more: packing speeds up products
  // on small weights the most, but every packed byte sits next to the model's own copy, and
  // packing all of a 200 MiB decoder took its peak RSS to 2.06x its weights.
  static constexpr int64_t kPackBudgetDivisor = 4;
  static constexpr int64_t kMinPackBudget = int64_t{16} << 20;
  // Beside it, room for packing the aligned copies of misaligned mapped weights
  // (PlanContext::mapped_copy_budget): with it a resnet18 (46.7 MB of raw_data at odd
  // offsets) packs all its convolutions; with 16 MiB its four largest ran without their map
  // panels, 1.25x slower each.
  static constexpr int64_t kMappedCopyPackBudget = int64_t{48} << 20;

  // Plans the model; throws Error(BadInput) naming the first node whose op has no kernel.
  explicit Session(const ir::Model& model, int threads = 1);
  ~Session();

  // Graph inputs that callers feed (initializers listed as inputs are optional).
  const std::vector<const ir::Value*>& inputs() const { return inputs_; }
  std::vector<std::string> output_names() const;

  // Feeds by position of inputs(). Returns one value per graph output (then extras).
  std::vector<RValue> run(std::vector<RValue> feeds, const RunOptions& opts = {}) const;

  ThreadPool& pool() const { return *pool_; }

  // Nodes of the main graph folded into constants when the session was planned.
  size_t folded_nodes() const { return main_->folded_count(); }
  // QDQ groups of the main graph that runs take as integer kernels (GraphRunner::plan_qdq).
  int qdq_fused_groups() const { return main_->qdq_fused_count(); }
  // Relu and Clip nodes of the main graph's float plan that their producer applies itself.
  int clamp_fusions() const { return main_->clamp_fused_count(); }
  // The most bytes of tensors made by this session's runs that were alive at once, over all
  // runs so far: activations, outputs not yet released and kernel scratch tensors, each
  // rounded up to 64 bytes; tensors that share storage (Reshape) count once. Weights and
  // folded constants are not included. It is measured, not derived from the plan (dims are
  // symbolic until a run), so it covers the shapes that were actually run.
  size_t peak_activation_bytes() const { return tensors_->peak_bytes(); }

 private:
  const ir::Model& model_;
  std::unique_ptr<ThreadPool> pool_;
  std::unique_ptr<TensorPool> tensors_;  // recycles activation buffers across runs
  int64_t pack_budget_ = 0;              // see kPackBudgetDivisor
  int64_t mapped_copy_budget_ = kMappedCopyPackBudget;
  std::unique_ptr<SessionConstants> constants_table_;  // before main_: outlives the plan
  std::unique_ptr<GraphRunner> main_;
  std::vector<const ir::Value*> inputs_;
};

// How errors name a node: 'its name', or (OpType node) when it has none.
std::string node_label(const ir::Node& n);

// Names every node whose op has no kernel (for reports), recursing into subgraphs.
std::vector<std::string> unsupported_ops(const ir::Model& model);

}  // namespace slmops::runtime
