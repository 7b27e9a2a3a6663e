// The executor's plan: constant folding (nodes whose inputs are all constants run once when
// the session is planned; the ir::Graph is left as it was), what RunOptions still sees of
// folded nodes, graph inputs with defaults (never folded: a caller may feed them), and the
// activation accounting of Session::peak_activation_bytes.
#include <doctest/doctest.h>

#include <algorithm>
#include <vector>

#include "ir/graph.h"
#include "runtime/executor.h"

using namespace slmops;
using runtime::RValue;
using runtime::Session;

namespace {

ir::Tensor floats(std::vector<int64_t> dims, std::vector<float> v) {
  ir::Tensor t = runtime::new_tensor(ir::DType::Float, dims);
  std::copy(v.begin(), v.end(), t.mutable_values<float>());
  return t;
}

// y = x * (c + w) with c a Constant node and w an initializer: Constant and Add fold, Mul
// runs. Also Shape(w) -> Cast, folded, as a second output.
std::unique_ptr<ir::Model> folding_model() {
  auto m = std::make_unique<ir::Model>();
  m->ir_version = 8;
  m->opsets = {{"", 17}};
  m->graph = std::make_unique<ir::Graph>();
  ir::Graph& g = *m->graph;
  ir::Value* x = g.add_input("x", ir::TensorType::of(ir::DType::Float, {2, 3}));
  ir::Tensor wt = floats({3}, {1, 2, 3});
  wt.name = std::string(1, 'w');  // (a literal assignment trips GCC 12 -Wrestrict, bug 105651)
  ir::Value* w = g.add_initializer(wt);
  std::vector<ir::Attribute> attrs;
  attrs.push_back(ir::Attribute::make_tensor("value", floats({3}, {10, 20, 30})));
  ir::Node* c = g.add_node("Constant", {}, {"c"}, std::move(attrs));
  ir::Node* add = g.add_node("Add", {c->outputs[0], w}, {"cw"});
  ir::Node* mul = g.add_node("Mul", {x, add->outputs[0]}, {"y"});
  ir::Node* shape = g.add_node("Shape", {w}, {"w_shape"});
  g.add_output(mul->outputs[0]);
  g.add_output(shape->outputs[0]);
  return m;
}

}  // namespace

TEST_CASE("nodes whose inputs are all constants are folded at plan time") {
  auto m = folding_model();
  const size_t nodes_before = m->graph->node_count();
  Session s(*m, 1);
  CHECK(s.folded_nodes() == 3);  // Constant, Add, Shape
  CHECK(m->graph->node_count() == nodes_before);

  std::vector<RValue> feeds = {RValue::of(floats({2, 3}, {1, 1, 1, 2, 2, 2}))};
  auto out = s.run(feeds);
  REQUIRE(out.size() == 2);
  const float* y = out[0].tensor.values<float>();
  CHECK(std::vector<float>(y, y + 6) == std::vector<float>{11, 22, 33, 22, 44, 66});
  CHECK(out[1].tensor.values<int64_t>()[0] == 3);
  // A second run gives the same (the constants are not consumed or freed by the first).
  auto again = s.run(feeds);
  CHECK(std::vector<float>(again[0].tensor.values<float>(), again[0].tensor.values<float>() + 6) ==
        std::vector<float>{11, 22, 33, 22, 44, 66});
}

TEST_CASE("RunOptions still sees folded nodes and can return their values") {
  auto m = folding_model();
  Session s(*m, 1);
  runtime::RunOptions opts;
  std::vector<std::string> seen;
  opts.on_node = [&](const ir::Node& n, const std::vector<RValue>& outs) {
    seen.push_back(n.op_type);
    CHECK(outs.size() == 1);
    CHECK(outs[0].is_tensor());
  };
  opts.extra_outputs = {"cw"};
  auto out = s.run({RValue::of(floats({2, 3}, {0, 0, 0, 0, 0, 0}))}, opts);
  CHECK(seen.size() == 4);
  REQUIRE(out.size() == 3);
  const float* cw = out[2].tensor.values<float>();
  CHECK(std::vector<float>(cw, cw + 3) == std::vector<float>{11, 22, 33});
}

TEST_CASE("a graph input with a default is not a constant: feeding it changes the result") {
  auto m = std::make_unique<ir::Model>();
  m->ir_version = 8;
  m->opsets = {{"", 17}};
  m->graph = std::make_unique<ir::Graph>();
  ir::Graph& g = *m->graph;
  ir::Value* x = g.add_input("x", ir::TensorType::of(ir::DType::Float, {2}));
  ir::Value* b = g.add_input("b", ir::TensorType::of(ir::DType::Float, {2}));
  b->initializer = std::make_shared<ir::Tensor>(floats({2}, {1, 1}));
  g.initializers.push_back(b);
  ir::Node* neg = g.add_node("Neg", {b}, {"nb"});
  ir::Node* add = g.add_node("Add", {x, neg->outputs[0]}, {"y"});
  g.add_output(add->outputs[0]);
  Session s(*m, 1);
  CHECK(s.folded_nodes() == 0);
  auto by_default = s.run({RValue::of(floats({2}, {5, 5}))});
  CHECK(by_default[0].tensor.values<float>()[0] == 4);
  auto fed = s.run({RValue::of(floats({2}, {5, 5})), RValue::of(floats({2}, {2, 3}))});
  CHECK(fed[0].tensor.values<float>()[1] == 2);
}

TEST_CASE("peak_activation_bytes counts the tensors a run had alive at once") {
  auto m = folding_model();
  Session s(*m, 1);
  CHECK(s.peak_activation_bytes() == 0);
  // x is fed (not counted); y = 1000 x 3 floats is the one activation, 12,000 bytes (a
  // multiple of 64 already is 12,032 rounded up).
  std::vector<float> ones(3000, 1.0f);
  auto out = s.run({RValue::of(floats({1000, 3}, ones))});
  CHECK(s.peak_activation_bytes() == 12032);
  out.clear();
  s.run({RValue::of(floats({1000, 3}, ones))});
  CHECK(s.peak_activation_bytes() == 12032);
}

namespace {

// x [1,1,4,4] -> Conv 3x3 pad 1 (2 maps, weights of both signs) -> Relu -> y; with
// `conv_is_output` the Conv's output is a graph output too (then it must not be fused).
std::unique_ptr<ir::Model> conv_relu_model(bool conv_is_output) {
  auto m = std::make_unique<ir::Model>();
  m->ir_version = 8;
  m->opsets = {{"", 17}};
  m->graph = std::make_unique<ir::Graph>();
  ir::Graph& g = *m->graph;
  ir::Value* x = g.add_input("x", ir::TensorType::of(ir::DType::Float, {1, 1, 4, 4}));
  ir::Tensor wt = floats({2, 1, 3, 3}, {1, -2, 1, 0, 3, 0, -1, 2, -1, -1, 0, 1, 2, -3, 2, 1, 0, -1});
  wt.name = std::string(1, 'w');
  ir::Value* w = g.add_initializer(wt);
  ir::Tensor bt = floats({2}, {-0.5f, 0.25f});
  bt.name = std::string(1, 'b');
  ir::Value* b = g.add_initializer(bt);
  std::vector<ir::Attribute> attrs;
  attrs.push_back(ir::Attribute::make_ints("pads", {1, 1, 1, 1}));
  ir::Node* conv = g.add_node("Conv", {x, w, b}, {"conv"}, std::move(attrs));
  ir::Node* relu = g.add_node("Relu", {conv->outputs[0]}, {"y"});
  g.add_output(relu->outputs[0]);
  if (conv_is_output) g.add_output(conv->outputs[0]);
  return m;
}

std::vector<float> values_of(const RValue& v) {
  const float* p = v.tensor.values<float>();
  return std::vector<float>(p, p + v.tensor.numel());
}

}  // namespace

TEST_CASE("Conv -> Relu: the fused run equals Relu run separately, and intermediates stay pre-Relu") {
  std::vector<float> xv(16);
  for (int i = 0; i < 16; ++i) xv[i] = static_cast<float>((i * 7) % 11) - 5.0f;
  const std::vector<RValue> feeds = {RValue::of(floats({1, 1, 4, 4}, xv))};

  // Reference: the Conv's output as a graph output disables fusion; Relu by hand.
  auto ref_model = conv_relu_model(true);
  Session ref(*ref_model, 1);
  auto ref_out = ref.run(feeds);
  REQUIRE(ref_out.size() == 2);
  const std::vector<float> conv = values_of(ref_out[1]);
  std::vector<float> want(conv.size());
  for (size_t i = 0; i < conv.size(); ++i) want[i] = conv[i] > 0 ? conv[i] : 0;
  CHECK(values_of(ref_out[0]) == want);
  CHECK(std::count_if(conv.begin(), conv.end(), [](float v) { return v < 0; }) > 0);  // Relu matters here

  auto m = conv_relu_model(false);
  Session s(*m, 1);
  CHECK(values_of(s.run(feeds)[0]) == want);  // fused
  // With the Conv's output asked for, it comes back before Relu, and y is unchanged.
  runtime::RunOptions extra;
  extra.extra_outputs = {"conv"};
  auto with_extra = s.run(feeds, extra);
  REQUIRE(with_extra.size() == 2);
  CHECK(values_of(with_extra[0]) == want);
  CHECK(values_of(with_extra[1]) == conv);
  // on_node sees both nodes, the Conv's output before Relu.
  runtime::RunOptions watch;
  std::vector<std::string> seen;
  watch.on_node = [&](const ir::Node& n, const std::vector<RValue>& outs) {
    seen.push_back(n.op_type);
    if (n.op_type == "Conv") CHECK(values_of(outs[0]) == conv);
  };
  CHECK(values_of(s.run(feeds, watch)[0]) == want);
  CHECK(seen == std::vector<std::string>{"Conv", "Relu"});
}
