// The executor: plans an ir::Graph once (schedule, kernels, value slots, when each value
// dies) and runs it on inputs. Subgraphs (If/Loop/Scan bodies) are planned the same way and
// read outer values through the frame chain.
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
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
};

class Frame;

class GraphRunner {
 public:
  GraphRunner(const ir::Graph& g, const PlanContext& pc);
  ~GraphRunner();
  const ir::Graph& graph() const { return graph_; }
  // Inputs by position of the graph's declared inputs (initializer-backed inputs may be
  // omitted at the end or passed as None). Returns the graph outputs (then extras).
  std::vector<RValue> run(std::vector<RValue> inputs, ThreadPool& pool, const Frame* parent,
                          const RunOptions* opts = nullptr) const;

 private:
  struct Step;
  const ir::Graph& graph_;
  std::vector<std::unique_ptr<Step>> steps_;
  std::unordered_map<const ir::Value*, int> slot_;
  int slot_count_ = 0;
  std::vector<std::pair<int, const ir::Value*>> constants_;  // slot, initializer value
  std::vector<std::pair<int, const ir::Value*>> captured_;   // slot, captured value
  std::vector<int> input_slots_, output_slots_;
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
  // Plans the model; throws Error(BadInput) naming the first node whose op has no kernel.
  explicit Session(const ir::Model& model, int threads = 1);
  ~Session();

  // Graph inputs that callers feed (initializers listed as inputs are optional).
  const std::vector<const ir::Value*>& inputs() const { return inputs_; }
  std::vector<std::string> output_names() const;

  // Feeds by position of inputs(). Returns one value per graph output (then extras).
  std::vector<RValue> run(std::vector<RValue> feeds, const RunOptions& opts = {}) const;

  ThreadPool& pool() const { return *pool_; }

 private:
  const ir::Model& model_;
  std::unique_ptr<ThreadPool> pool_;
  std::unique_ptr<GraphRunner> main_;
  std::vector<const ir::Value*> inputs_;
};

// Names every node whose op has no kernel (for reports), recursing into subgraphs.
std::vector<std::string> unsupported_ops(const ir::Model& model);

}  // namespace slmops::runtime
