// ir::Graph: builder, use lists, topological order, edits.
#include <doctest/doctest.h>

#include "ir/error.h"
#include "ir/graph.h"

using namespace slmops;
using namespace slmops::ir;

namespace {
TensorType float_type(std::vector<int64_t> dims) { return TensorType::of(DType::Float, dims); }
}  // namespace

TEST_CASE("builder records producers and one consumer entry per use") {
  Graph g;
  Value* x = g.add_input("x", float_type({2}));
  Node* add = g.add_node("Add", {x, x}, {"y"});
  Value* y = add->outputs[0];
  g.add_output(y);
  CHECK(y->producer == add);
  CHECK(x->consumers.size() == 2);
  CHECK(y->is_graph_output());
  CHECK_FALSE(x->is_graph_output());
  CHECK(g.find_value("y") == y);
  CHECK(g.unique_name("y") == "y_1");
  CHECK(g.unique_name("z") == "z");
}

TEST_CASE("topological order is stable and puts producers first") {
  Graph g;
  Value* x = g.add_input("x", float_type({2}));
  // Nodes added in an order where the consumer comes first; file order breaks ties.
  Node* relu = g.add_node("Relu", {nullptr}, {"r"});
  Node* neg = g.add_node("Neg", {x}, {"n"});
  Node* abs = g.add_node("Abs", {x}, {"a"});
  relu->set_input(0, neg->outputs[0]);
  auto order = g.topological_order();
  REQUIRE(order.size() == 3);
  CHECK(order[0] == neg);
  CHECK(order[1] == relu);
  CHECK(order[2] == abs);
  g.set_node_order(order);
  CHECK(g.nodes().front().get() == neg);
}

TEST_CASE("a cycle is reported with the node's name") {
  Graph g;
  Node* a = g.add_node("Relu", {nullptr}, {"a"}, {}, "node_a");
  Node* b = g.add_node("Relu", {a->outputs[0]}, {"b"}, {}, "node_b");
  a->set_input(0, b->outputs[0]);
  try {
    g.topological_order();
    FAIL("expected an error");
  } catch (const Error& e) {
    CHECK(e.code() == ExitCode::BadInput);
    CHECK(std::string(e.what()).find("node_a") != std::string::npos);
  }
}

TEST_CASE("replace_all_uses moves consumers and graph outputs") {
  Graph g;
  Value* x = g.add_input("x", float_type({2}));
  Node* id = g.add_node("Identity", {x}, {"i"});
  Node* relu = g.add_node("Relu", {id->outputs[0]}, {"r"});
  g.add_output(id->outputs[0]);
  g.replace_all_uses(id->outputs[0], x);
  CHECK(relu->inputs[0] == x);
  CHECK(g.outputs[0].value == x);
  CHECK(id->outputs[0]->consumers.empty());
  g.remove_node(id);
  CHECK(g.node_count() == 1);
  CHECK(x->consumers.size() == 1);  // Identity's use was dropped with it
}

TEST_CASE("initializers carry their tensor and can be removed") {
  Graph g;
  std::vector<float> w = {1, 2, 3, 4};
  Value* v = g.add_initializer(Tensor::from_values("w", DType::Float, {2, 2}, w));
  REQUIRE(v->initializer);
  CHECK(v->initializer->numel() == 4);
  CHECK(v->initializer->nbytes() == 16);
  CHECK(v->initializer->values<float>()[3] == 4);
  g.remove_initializer(v);
  CHECK(g.initializers.empty());
}
