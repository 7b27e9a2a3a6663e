// cleanup pass: one behaviour per case, checked on the graph after the pass. Output
// equivalence against ONNX Runtime is tested in tests/interop (cleanup_differential).
#include <doctest/doctest.h>

#include "ir/graph.h"
#include "passes/cleanup.h"
#include "passes/registry.h"

using namespace slmops;
using namespace slmops::ir;

namespace {

TensorType f32(std::vector<int64_t> dims) { return TensorType::of(DType::Float, dims); }

int count_op(const Graph& g, const std::string& op) {
  int n = 0;
  for (auto& node : g.nodes()) n += node->op_type == op;
  return n;
}

Value* weight(Graph& g, const std::string& name, std::vector<float> v) {
  return g.add_initializer(Tensor::from_values(name, DType::Float, {static_cast<int64_t>(v.size())}, v));
}

}  // namespace

TEST_CASE("Identity between two nodes is removed and its consumer rewired") {
  Graph g;
  Value* x = g.add_input("x", f32({4}));
  Node* relu = g.add_node("Relu", {x}, {"r"});
  Node* id = g.add_node("Identity", {relu->outputs[0]}, {"i"});
  Node* neg = g.add_node("Neg", {id->outputs[0]}, {"y"});
  g.add_output(neg->outputs[0]);
  auto st = passes::cleanup(g, {});
  CHECK(st.identities == 1);
  CHECK(count_op(g, "Identity") == 0);
  CHECK(neg->inputs[0] == relu->outputs[0]);
}

TEST_CASE("Identity feeding a graph output: the producer takes the output's name") {
  Graph g;
  Value* x = g.add_input("x", f32({4}));
  Node* relu = g.add_node("Relu", {x}, {"r"});
  Node* id = g.add_node("Identity", {relu->outputs[0]}, {"out"});
  g.add_output(id->outputs[0]);
  passes::cleanup(g, {});
  CHECK(count_op(g, "Identity") == 0);
  REQUIRE(g.outputs.size() == 1);
  CHECK(g.outputs[0].value->name == "out");
  CHECK(g.outputs[0].value->producer == relu);
}

TEST_CASE("Identity from a graph input to a graph output is kept: the interface would change") {
  Graph g;
  Value* x = g.add_input("x", f32({4}));
  Node* id = g.add_node("Identity", {x}, {"out"});
  g.add_output(id->outputs[0]);
  auto st = passes::cleanup(g, {});
  CHECK(st.identities == 0);
  CHECK(count_op(g, "Identity") == 1);
}

TEST_CASE("Dropout is removed unless training_mode may be true or its mask is read") {
  Graph g;
  Value* x = g.add_input("x", f32({4}));
  Node* d1 = g.add_node("Dropout", {x}, {"d1"});
  Node* r1 = g.add_node("Relu", {d1->outputs[0]}, {"r1"});
  g.add_output(r1->outputs[0]);
  Value* train = g.add_input("train", TensorType{true, {}, 9, true, {}});
  Node* d2 = g.add_node("Dropout", {x, nullptr, train}, {"d2"});
  Node* r2 = g.add_node("Relu", {d2->outputs[0]}, {"r2"});
  g.add_output(r2->outputs[0]);
  Node* d3 = g.add_node("Dropout", {x}, {"d3", "mask"});
  g.add_output(d3->outputs[1]);
  g.add_node("Relu", {d3->outputs[0]}, {"r3"});
  g.add_output(g.find_value("r3"));
  auto st = passes::cleanup(g, {});
  CHECK(st.dropouts == 1);
  CHECK(r1->inputs[0] == x);
  CHECK(count_op(g, "Dropout") == 2);
}

TEST_CASE("dead nodes go, in chains, and nodes feeding outputs stay") {
  Graph g;
  Value* x = g.add_input("x", f32({4}));
  Node* a = g.add_node("Relu", {x}, {"a"});
  g.add_node("Neg", {a->outputs[0]}, {"dead2"});  // nobody reads dead2, then nobody reads a
  Node* keep = g.add_node("Abs", {x}, {"y"});
  g.add_output(keep->outputs[0]);
  auto st = passes::cleanup(g, {});
  CHECK(st.dead_nodes == 2);
  CHECK(g.node_count() == 1);
}

TEST_CASE("unused initializers go, but not those that are graph inputs") {
  Graph g;
  Value* x = g.add_input("x", f32({2}));
  Value* used = weight(g, "w", {1, 2});
  weight(g, "unused", {5, 6});
  Value* overridable = weight(g, "bias_default", {0, 0});
  g.inputs.push_back({overridable, {}, {}});
  Node* mul = g.add_node("Mul", {x, used}, {"y"});
  g.add_output(mul->outputs[0]);
  auto st = passes::cleanup(g, {});
  CHECK(st.unused_initializers == 1);
  CHECK(g.initializers.size() == 2);
  CHECK(g.find_value("unused") == nullptr);
}

TEST_CASE("duplicate initializers merge when type, shape and bytes agree") {
  Graph g;
  Value* x = g.add_input("x", f32({2}));
  Value* w1 = weight(g, "w1", {1, 2});
  Value* w2 = weight(g, "w2", {1, 2});
  Value* w3 = weight(g, "w3", {1, 3});  // same shape, other bytes
  Node* a = g.add_node("Mul", {x, w1}, {"a"});
  Node* b = g.add_node("Mul", {a->outputs[0], w2}, {"b"});
  Node* c = g.add_node("Mul", {b->outputs[0], w3}, {"y"});
  g.add_output(c->outputs[0]);
  auto st = passes::cleanup(g, {});
  CHECK(st.duplicate_initializers == 1);
  CHECK(b->inputs[1] == w1);
  CHECK(c->inputs[1] == w3);
  CHECK(g.initializers.size() == 2);
}

TEST_CASE("options turn each rewrite off") {
  Graph g;
  Value* x = g.add_input("x", f32({4}));
  Node* id = g.add_node("Identity", {x}, {"i"});
  Node* relu = g.add_node("Relu", {id->outputs[0]}, {"y"});
  g.add_output(relu->outputs[0]);
  g.add_node("Neg", {x}, {"dead"});
  passes::CleanupOptions o;
  o.remove_identity = false;
  o.remove_dead_nodes = false;
  auto st = passes::cleanup(g, o);
  CHECK(st.identities == 0);
  CHECK(st.dead_nodes == 0);
  CHECK(g.node_count() == 3);
}

TEST_CASE("subgraphs are cleaned and outer values they read stay alive") {
  Graph g;
  Value* x = g.add_input("x", f32({4}));
  Value* cond = g.add_input("c", TensorType{true, {}, 9, true, {}});
  Node* outer = g.add_node("Relu", {x}, {"outer"});
  Node* ifn = g.add_node("If", {cond}, {"y"});
  g.add_output(ifn->outputs[0]);
  for (const char* branch : {"then_branch", "else_branch"}) {
    Attribute a;
    a.name = branch;
    a.type = AttrType::Graph;
    a.g = std::make_unique<Graph>(&g, ifn);
    Graph& sg = *a.g;
    Value* cap = sg.new_value("outer", Value::Kind::Captured);
    cap->outer = outer->outputs[0];
    Node* id = sg.add_node("Identity", {cap}, {std::string("id_") + branch});
    Node* neg = sg.add_node("Neg", {id->outputs[0]}, {std::string("o_") + branch});
    sg.add_output(neg->outputs[0]);
    ifn->attributes.push_back(std::move(a));
  }
  ifn->implicit_inputs.push_back(outer->outputs[0]);
  outer->outputs[0]->consumers.push_back(ifn);
  auto st = passes::cleanup(g, {});
  CHECK(st.identities == 0);  // reads a captured value: kept (the subgraph names it)
  CHECK(st.dead_nodes == 0);
  CHECK(g.node_count() == 2);  // Relu stays: the If reads it implicitly
}

TEST_CASE("the registry lists cleanup with its declared options") {
  const auto* p = passes::find_pass("cleanup");
  REQUIRE(p);
  CHECK(p->options.size() == 6);
  CHECK(p->options[0].name == "remove-identity");
  CHECK(p->options[0].default_value == true);
  CHECK(passes::find_pass("no-such-pass") == nullptr);
}
