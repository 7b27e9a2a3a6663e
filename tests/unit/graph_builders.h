// Small graph builders for the unit tests of passes: a model of one opset, random float
// initializers, int64 and scalar constants, and op counts.
#pragma once
#include <string>
#include <vector>

#include "ir/graph.h"
#include "passes/common/data.h"
#include "test_util.h"

namespace slmops::test {

inline ir::TensorType f32(std::vector<int64_t> dims) { return ir::TensorType::of(ir::DType::Float, dims); }

inline ir::Model new_model(int64_t opset = 17) {
  ir::Model m;
  m.ir_version = 8;
  m.opsets = {{"", opset}};
  m.graph = std::make_unique<ir::Graph>();
  return m;
}

inline ir::Value* floats(ir::Graph& g, const std::string& name, std::vector<int64_t> dims, uint32_t seed, float lo = -1,
                         float hi = 1) {
  auto v = random_floats(ir::element_count(dims), seed, lo, hi);
  return g.add_initializer(ir::Tensor::from_values(name, ir::DType::Float, dims, v));
}

inline ir::Value* ints(ir::Graph& g, const std::string& name, std::vector<int64_t> v) {
  return g.add_initializer(ir::Tensor::from_values(name, ir::DType::Int64, {static_cast<int64_t>(v.size())}, v));
}

inline ir::Value* scalar(ir::Graph& g, const std::string& name, float x) {
  return g.add_initializer(ir::Tensor::from_values(name, ir::DType::Float, {}, std::vector<float>{x}));
}

inline int count_op(const ir::Model& m, const std::string& op) {
  int n = 0;
  for (auto& node : m.graph->nodes()) n += node->op_type == op;
  return n;
}

// A FeedSource over fixed batches of one float input.
// (input "x"; `sample_dims` without the batch axis.)
class FixedFeeds : public passes::FeedSource {
 public:
  FixedFeeds(std::vector<float> data, std::vector<int64_t> sample_dims, int64_t batch)
      : data_(std::move(data)), dims_(std::move(sample_dims)), batch_(batch) {}
  int64_t samples() const override {
    return static_cast<int64_t>(data_.size() / ir::element_count(dims_));
  }
  std::string describe() const override { return "fixed test batches"; }
  void for_each_batch(int64_t limit, const std::function<void(std::vector<runtime::RValue>)>& fn) const override {
    const int64_t per = static_cast<int64_t>(ir::element_count(dims_));
    const int64_t n = limit > 0 ? std::min(limit, samples()) : samples();
    for (int64_t b = 0; b < n; b += batch_) {
      const int64_t k = std::min(batch_, n - b);
      std::vector<int64_t> d = dims_;
      d.insert(d.begin(), k);
      std::vector<float> v(data_.begin() + b * per, data_.begin() + (b + k) * per);
      std::vector<runtime::RValue> feeds;
      feeds.push_back(runtime::RValue::of(ir::Tensor::from_values("x", ir::DType::Float, d, v)));
      fn(std::move(feeds));
    }
  }

 private:
  std::vector<float> data_;
  std::vector<int64_t> dims_;
  int64_t batch_;
};

}  // namespace slmops::test
