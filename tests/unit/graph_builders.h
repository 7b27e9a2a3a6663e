// Small graph builders for the unit tests of passes: a model of one opset, random float
// initializers, int64 and scalar constants, and op counts.
#pragma once
#include <string>
#include <vector>

#include "ir/graph.h"
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

}  // namespace slmops::test
