// Structured pruning (prune method=structured) on graphs built here. Each graph has "dead"
// units: neurons or channels whose output is exactly zero whatever the input (zero filters and
// biases, BatchNormalization with zero mean and shift). Their weight norms are zero, so
// pruning exactly that many removes exactly them, and the pruned model must compute the same
// outputs as the original (the executor runs both on the same random inputs) with every
// tensor of the units shrunk: a differential test of the cut through each op it follows.
// Against ONNX Runtime and on the fixture models: tests/interop/prune/prune_interop.sh.
#include <doctest/doctest.h>

#include <cmath>

#include "graph_builders.h"
#include "ir/error.h"
#include "ir/graph.h"
#include "passes/registry.h"
#include "runtime/executor.h"
#include "test_util.h"

using namespace slmops;
using namespace slmops::ir;

namespace {

using test::f32;
using test::floats;
using test::new_model;

std::vector<float> run(const Model& m, const std::vector<int64_t>& shape) {
  runtime::Session s(m, 1);
  std::vector<runtime::RValue> feeds;
  feeds.push_back(
      runtime::RValue::of(Tensor::from_values("", DType::Float, shape, test::random_floats(element_count(shape), 77))));
  auto out = s.run(std::move(feeds));
  const Tensor& t = out.at(0).tensor;
  return std::vector<float>(t.values<float>(), t.values<float>() + t.numel());
}

// Sets the given indices of `axis` of a float initializer to `value`.
void set_units(Value* v, int64_t axis, const std::vector<int64_t>& units, float value) {
  Tensor& t = *v->initializer;
  float* p = t.mutable_values<float>();
  int64_t outer = 1, inner = 1;
  for (int64_t i = 0; i < axis; ++i) outer *= t.dims[static_cast<size_t>(i)];
  for (size_t i = static_cast<size_t>(axis) + 1; i < t.dims.size(); ++i) inner *= t.dims[i];
  const int64_t len = t.dims[static_cast<size_t>(axis)];
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t u : units)
      for (int64_t i = 0; i < inner; ++i) p[(o * len + u) * inner + i] = value;
}

std::vector<int64_t> dims_of(const Model& m, const std::string& name) {
  for (const Value* v : m.graph->initializers)
    if (v->name == name) return v->initializer->dims;
  return {};
}

nlohmann::json prune(Model& m, nlohmann::json options) {
  const passes::PassInfo* p = passes::find_pass("prune");
  REQUIRE(p);
  REQUIRE(passes::check_pass_options(*p, options, passes::Naming::Recipe).empty());
  passes::PassContext ctx;
  ctx.verbosity = 0;
  passes::run_pass(*p, m, options, ctx);
  return ctx.report;
}

void check_same(const std::vector<float>& a, const std::vector<float>& b) {
  REQUIRE(a.size() == b.size());
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::fabs(double(a[i]) - b[i]));
  CHECK(worst <= 1e-5);
}

}  // namespace

TEST_CASE("structured: Conv channels through BatchNormalization, Relu, depthwise Conv, MaxPool and Flatten") {
  Model m = new_model();
  Graph& g = *m.graph;
  Value* x = g.add_input("x", f32({2, 3, 8, 8}));
  auto bn = [&](Value* in, const std::string& p, uint32_t seed) {
    return g
        .add_node("BatchNormalization",
                  {in, floats(g, p + "_scale", {8}, seed, 0.5f, 2.0f), floats(g, p + "_shift", {8}, seed + 1),
                   floats(g, p + "_mean", {8}, seed + 2), floats(g, p + "_var", {8}, seed + 3, 0.5f, 2.0f)},
                  {p})
        ->outputs[0];
  };
  Node* a = g.add_node("Conv", {x, floats(g, "wa", {8, 3, 3, 3}, 1), floats(g, "ba", {8}, 2)}, {"a"},
                       attribute_list(Attribute::make_ints("pads", {1, 1, 1, 1})), "conv_a");
  Value* r1 = g.add_node("Relu", {bn(a->outputs[0], "bn1", 10)}, {"r1"})->outputs[0];
  Node* dw = g.add_node("Conv", {r1, floats(g, "wd", {8, 1, 3, 3}, 3)}, {"d"},
                        attribute_list(Attribute::make_int("group", 8), Attribute::make_ints("pads", {1, 1, 1, 1})),
                        "conv_dw");
  Value* r2 = g.add_node("Relu", {bn(dw->outputs[0], "bn2", 20)}, {"r2"})->outputs[0];
  Node* b = g.add_node("Conv", {r2, floats(g, "wb", {6, 8, 1, 1}, 4), floats(g, "bb", {6}, 5)}, {"b"}, {}, "conv_b");
  Node* pool =
      g.add_node("MaxPool", {b->outputs[0]}, {"p"},
                 attribute_list(Attribute::make_ints("kernel_shape", {2, 2}), Attribute::make_ints("strides", {2, 2})));
  Node* flat = g.add_node("Flatten", {pool->outputs[0]}, {"f"});
  Node* mm = g.add_node("MatMul", {flat->outputs[0], floats(g, "wm", {96, 4}, 6)}, {"y"}, {}, "head");
  g.add_output(mm->outputs[0]);
  // Dead: channels 1, 4, 6 of conv_a (and so of the depthwise Conv), channels 0, 3 of conv_b.
  const std::vector<int64_t> dead_a{1, 4, 6}, dead_b{0, 3};
  for (const char* w : {"wa", "ba"}) set_units(g.find_value(w), 0, dead_a, 0.0f);
  for (const char* p : {"bn1_mean", "bn1_shift", "bn2_mean", "bn2_shift"}) set_units(g.find_value(p), 0, dead_a, 0.0f);
  for (const char* w : {"wb", "bb"}) set_units(g.find_value(w), 0, dead_b, 0.0f);
  const auto before = run(m, {2, 3, 8, 8});

  Model p = m.clone();
  // floor(0.375 * 8) = 3 channels of the first set, floor(0.375 * 6) = 2 of the second.
  auto r = prune(p, {{"method", "structured"}, {"sparsity", 0.375}});
  check_same(before, run(p, {2, 3, 8, 8}));
  REQUIRE(r["groups"].size() == 2);
  CHECK(r["groups"][0]["units_after"] == 5);
  CHECK(r["groups"][1]["units_after"] == 4);
  CHECK(dims_of(p, "wa") == std::vector<int64_t>{5, 3, 3, 3});
  CHECK(dims_of(p, "bn1_var") == std::vector<int64_t>{5});
  CHECK(dims_of(p, "wd") == std::vector<int64_t>{5, 1, 3, 3});
  CHECK(dims_of(p, "bn2_scale") == std::vector<int64_t>{5});
  CHECK(dims_of(p, "wb") == std::vector<int64_t>{4, 5, 1, 1});
  CHECK(dims_of(p, "wm") == std::vector<int64_t>{64, 4});  // 4 channels x 4x4 features
  for (auto& n : p.graph->nodes())
    if (n->name == "conv_dw") CHECK(n->attr_int("group", 0) == 5);
  CHECK(r["model_float_parameters_before"].get<int64_t>() - r["model_float_parameters_after"].get<int64_t>() ==
        3 * (27 + 1 + 4 + 9 + 4) + 3 * 6 + 2 * (5 + 1) + 2 * 16 * 4);
}

TEST_CASE("structured: gated MLP neurons (gate and up shrink together, down's rows with them)") {
  Model m = new_model();
  Graph& g = *m.graph;
  Value* x = g.add_input("x", f32({2, 5, 8}));
  Node* gate = g.add_node("MatMul", {x, floats(g, "w_gate", {8, 12}, 1)}, {"gate"}, {}, "gate_proj");
  Node* up = g.add_node("MatMul", {x, floats(g, "w_up", {8, 12}, 2)}, {"up"}, {}, "up_proj");
  Node* sig = g.add_node("Sigmoid", {gate->outputs[0]}, {"sig"});
  Node* silu = g.add_node("Mul", {gate->outputs[0], sig->outputs[0]}, {"silu"});
  Node* h = g.add_node("Mul", {silu->outputs[0], up->outputs[0]}, {"h"});
  Node* down = g.add_node("MatMul", {h->outputs[0], floats(g, "w_down", {12, 8}, 3)}, {"down"}, {}, "down_proj");
  Node* y = g.add_node("Add", {down->outputs[0], x}, {"y"});
  g.add_output(y->outputs[0]);
  set_units(g.find_value("w_gate"), 1, {2, 7, 9}, 0.0f);  // silu(0) * up = 0
  const auto before = run(m, {2, 5, 8});

  Model p = m.clone();
  auto r = prune(p, {{"method", "structured"}, {"sparsity", 0.25}});
  check_same(before, run(p, {2, 5, 8}));
  REQUIRE(r["groups"].size() == 1);
  CHECK(r["groups"][0]["producers"] == nlohmann::json({"gate_proj", "up_proj"}));
  CHECK(r["groups"][0]["readers"] == nlohmann::json({"down_proj"}));
  CHECK(dims_of(p, "w_gate") == std::vector<int64_t>{8, 9});
  CHECK(dims_of(p, "w_up") == std::vector<int64_t>{8, 9});
  CHECK(dims_of(p, "w_down") == std::vector<int64_t>{9, 8});
  // down_proj writes into the residual stream (Add with the graph input, a graph output): not
  // a unit set.
  REQUIRE(r["skipped"].size() == 1);
  CHECK(r["skipped"][0]["node"] == "down_proj");

  // Excluding the reader leaves the set whole: nothing else can shrink, so that is an error.
  Model q = m.clone();
  CHECK_THROWS_AS(prune(q, {{"method", "structured"}, {"sparsity", 0.25}, {"exclude-nodes", {"down_proj"}}}), Error);
}

TEST_CASE("structured: a Reshape that is no head split or merge stops the set; multiple-of rounds up") {
  Model m = new_model();
  Graph& g = *m.graph;
  Value* x = g.add_input("x", f32({3, 16}));
  Node* q = g.add_node("MatMul", {x, floats(g, "wq", {16, 16}, 1)}, {"q"}, {}, "q_proj");
  Node* rs = g.add_node("Reshape", {q->outputs[0], test::ints(g, "shape", {48})}, {"flat"}, {}, "flatten_all");
  Node* fc1 = g.add_node("MatMul", {x, floats(g, "w1", {16, 24}, 2)}, {"h1"}, {}, "fc1");
  Node* act = g.add_node("Relu", {fc1->outputs[0]}, {"a1"});
  Node* fc2 = g.add_node("MatMul", {act->outputs[0], floats(g, "w2", {24, 16}, 3)}, {"y"}, {}, "fc2");
  g.add_output(rs->outputs[0]);
  g.add_output(fc2->outputs[0]);
  Model p = m.clone();
  // floor(0.5 * 24) = 12 removed, 12 kept, rounded up to 16.
  auto r = prune(p, {{"method", "structured"}, {"sparsity", 0.5}, {"multiple-of", 8}});
  REQUIRE(r["groups"].size() == 1);
  CHECK(r["groups"][0]["units_after"] == 16);
  CHECK(dims_of(p, "w1") == std::vector<int64_t>{16, 16});
  CHECK(dims_of(p, "wq") == std::vector<int64_t>{16, 16});
  CHECK(r["skipped"][0]["node"] == "q_proj");
  CHECK(r["skipped"][0]["why"].get<std::string>().find("'flatten_all' (Reshape): it does not merge heads") !=
        std::string::npos);
}

TEST_CASE("structured: attention heads (q/k/v columns, o rows and both Reshape shapes shrink together)") {
  Model m = new_model();
  Graph& g = *m.graph;
  Value* x = g.add_input("x", f32({2, 5, 16}));
  auto heads = [&](const std::string& name, uint32_t seed, std::vector<int64_t> perm) {
    Node* p = g.add_node("MatMul", {x, floats(g, "w_" + name, {16, 16}, seed)}, {name}, {}, name + "_proj");
    Node* r = g.add_node("Reshape", {p->outputs[0], test::ints(g, "split_" + name, {0, 0, 4, 4})}, {name + "_heads"});
    return g.add_node("Transpose", {r->outputs[0]}, {name + "_t"}, attribute_list(Attribute::make_ints("perm", perm)))
        ->outputs[0];
  };
  Value* q = heads("q", 1, {0, 2, 1, 3});
  Value* k = heads("k", 2, {0, 2, 3, 1});
  Value* v = heads("v", 3, {0, 2, 1, 3});
  Node* s = g.add_node("MatMul", {q, k}, {"scores"});
  Node* sc = g.add_node("Mul", {s->outputs[0], test::scalar(g, "scale", 0.5f)}, {"scaled"});
  Node* sm = g.add_node("Softmax", {sc->outputs[0]}, {"probs"}, attribute_list(Attribute::make_int("axis", -1)));
  Node* ctxv = g.add_node("MatMul", {sm->outputs[0], v}, {"ctx"});
  Node* t = g.add_node("Transpose", {ctxv->outputs[0]}, {"ctx_t"},
                       attribute_list(Attribute::make_ints("perm", {0, 2, 1, 3})));
  Node* mg = g.add_node("Reshape", {t->outputs[0], test::ints(g, "merge", {0, 0, 16})}, {"merged"});
  Node* o = g.add_node("MatMul", {mg->outputs[0], floats(g, "w_o", {16, 16}, 4)}, {"y"}, {}, "o_proj");
  g.add_output(o->outputs[0]);
  set_units(g.find_value("w_v"), 1, {8, 9, 10, 11}, 0.0f);  // head 2 adds nothing: its values are 0
  const auto before = run(m, {2, 5, 16});

  Model p = m.clone();
  auto r = prune(p, {{"method", "structured"}, {"sparsity", 0.25}, {"structures", {"heads"}}});
  check_same(before, run(p, {2, 5, 16}));
  REQUIRE(r["groups"].size() == 1);
  CHECK(r["groups"][0]["kind"] == "heads");
  CHECK(r["groups"][0]["head_dim"] == 4);
  CHECK(r["groups"][0]["units_after"] == 3);
  for (const char* w : {"w_q", "w_k", "w_v"}) CHECK(dims_of(p, w) == std::vector<int64_t>{16, 12});
  CHECK(dims_of(p, "w_o") == std::vector<int64_t>{12, 16});
  for (auto& n : p.graph->nodes())
    if (n->op_type == "Reshape") {
      const Tensor* shape = n->inputs[1]->initializer.get();
      REQUIRE(shape);
      const int64_t* sv = shape->values<int64_t>();
      if (shape->numel() == 4) CHECK(sv[2] == 3);
      if (shape->numel() == 3) CHECK(sv[2] == 12);
    }
}
