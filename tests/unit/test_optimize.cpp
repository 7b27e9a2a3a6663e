// The optimization passes (passes/optimize), each on a graph built here: the pass must make
// the change it is for (asserted on the graph), and the model must compute the same outputs
// before and after it (the executor runs both on the same random inputs; within 1e-5).
// The same passes against ONNX Runtime, on every libonnx-testdata model and the fixtures:
// tests/interop/optimize_interop.sh.
#include <doctest/doctest.h>

#include <cmath>

#include "graph_builders.h"
#include "ir/error.h"
#include "ir/graph.h"
#include "passes/optimize/optimize.h"
#include "passes/registry.h"
#include "runtime/executor.h"
#include "test_util.h"

using namespace slmops;
using namespace slmops::ir;

namespace {

using test::count_op;
using test::f32;
using test::floats;
using test::ints;
using test::new_model;
using test::scalar;

// Runs the model on random float inputs of the given shapes (fixed seeds); outputs as floats.
std::vector<std::vector<float>> run(const Model& m, const std::vector<std::vector<int64_t>>& shapes) {
  runtime::Session s(m, 1);
  std::vector<runtime::RValue> feeds;
  for (size_t i = 0; i < shapes.size(); ++i) {
    auto v = test::random_floats(element_count(shapes[i]), 100 + static_cast<uint32_t>(i));
    feeds.push_back(runtime::RValue::of(Tensor::from_values("", DType::Float, shapes[i], v)));
  }
  std::vector<std::vector<float>> out;
  for (auto& r : s.run(std::move(feeds))) {
    const Tensor& t = r.tensor;
    REQUIRE(t.dtype == DType::Float);
    out.emplace_back(t.values<float>(), t.values<float>() + t.numel());
  }
  return out;
}

// Runs `pass` on a copy of `m` and checks both compute the same; returns the copy.
template <typename Pass>
Model check_same_outputs(const Model& m, const std::vector<std::vector<int64_t>>& shapes, Pass pass,
                         double tol = 1e-5) {
  auto before = run(m, shapes);
  Model opt = m.clone();
  pass(opt);
  auto after = run(opt, shapes);
  REQUIRE(after.size() == before.size());
  for (size_t k = 0; k < before.size(); ++k) {
    REQUIRE(after[k].size() == before[k].size());
    double worst = 0;
    for (size_t i = 0; i < before[k].size(); ++i) worst = std::max(worst, std::fabs(double(after[k][i]) - before[k][i]));
    CHECK(worst <= tol);
  }
  return opt;
}

}  // namespace

TEST_CASE("fold-constants: Constant nodes and shape arithmetic on weights become initializers") {
  Model m = new_model();
  Graph& g = *m.graph;
  Value* x = g.add_input("x", f32({2, 12}));
  Value* w = floats(g, "w", {3, 4}, 1);
  Node* shape = g.add_node("Shape", {w}, {"ws"});
  Node* c = g.add_node("Constant", {}, {"tail"},
                       [] {
                         std::vector<Attribute> a;
                         a.push_back(Attribute::make_tensor(
                             "value", Tensor::from_values("", DType::Int64, {1}, std::vector<int64_t>{-1})));
                         return a;
                       }());
  Node* prod = g.add_node("ReduceProd", {shape->outputs[0]}, {"n"});
  prod->attributes.push_back(Attribute::make_int("keepdims", 1));
  Node* cat = g.add_node("Concat", {c->outputs[0], prod->outputs[0]}, {"target"});
  cat->attributes.push_back(Attribute::make_int("axis", 0));
  Node* r = g.add_node("Reshape", {x, cat->outputs[0]}, {"y"});
  g.add_output(r->outputs[0]);
  Model opt = check_same_outputs(m, {{2, 12}}, [](Model& mm) {
    auto st = passes::fold_constants(mm, {});
    CHECK(st.constants_to_initializers == 1);
    CHECK(st.nodes_folded == 3);
  });
  CHECK(opt.graph->node_count() == 1);
  CHECK(count_op(opt, "Reshape") == 1);
}

TEST_CASE("fold-constants: outputs above max-folded-bytes stay nodes; DequantizeLinear is never folded") {
  Model m = new_model();
  Graph& g = *m.graph;
  Value* x = g.add_input("x", f32({1}));
  Node* big = g.add_node("ConstantOfShape", {ints(g, "shape", {512, 1024})}, {"big"});  // 2 MiB of zeros
  Value* q = g.add_initializer(Tensor::from_values("q", DType::Int8, {4}, std::vector<int8_t>{1, -2, 3, -4}));
  Node* dq = g.add_node("DequantizeLinear", {q, scalar(g, "s", 0.5f)}, {"wq"});
  Node* sum = g.add_node("ReduceSum", {big->outputs[0]}, {"total"});
  sum->attributes.push_back(Attribute::make_int("keepdims", 0));
  Node* a = g.add_node("Add", {x, sum->outputs[0]}, {"a"});
  Node* y = g.add_node("Mul", {a->outputs[0], dq->outputs[0]}, {"y"});
  g.add_output(y->outputs[0]);
  Model opt = check_same_outputs(m, {{1}}, [](Model& mm) {
    auto st = passes::fold_constants(mm, {});
    CHECK(st.folds_skipped_size == 1);
  });
  CHECK(count_op(opt, "ConstantOfShape") == 1);
  CHECK(count_op(opt, "DequantizeLinear") == 1);
  // With a cap above its size, the 2 MiB tensor folds.
  Model big_cap = m.clone();
  passes::FoldOptions o;
  o.max_folded_bytes = int64_t{4} << 20;
  passes::fold_constants(big_cap, o);
  CHECK(count_op(big_cap, "ConstantOfShape") == 0);
}

TEST_CASE("simplify-shapes: Shape/Gather chains on known dims fold; --input-shape fixes dynamic ones") {
  auto build = [](bool dynamic) {
    Model m = new_model();
    Graph& g = *m.graph;
    TensorType t = dynamic ? TensorType::of_dims(DType::Float, {Dim{-1, "batch"}, Dim{6, {}}, Dim{4, {}}})
                           : f32({2, 6, 4});
    Value* x = g.add_input("x", t);
    Node* shape = g.add_node("Shape", {x}, {"s"});
    Node* b = g.add_node("Gather", {shape->outputs[0], ints(g, "i0", {0})}, {"b"});
    Node* cat = g.add_node("Concat", {b->outputs[0], ints(g, "rest", {3, 8})}, {"target"});
    cat->attributes.push_back(Attribute::make_int("axis", 0));
    Node* r = g.add_node("Reshape", {x, cat->outputs[0]}, {"y"});
    g.add_output(r->outputs[0]);
    return m;
  };
  Model fixed = build(false);
  Model opt = check_same_outputs(fixed, {{2, 6, 4}}, [](Model& mm) {
    auto st = passes::simplify_shapes(mm, {});
    CHECK(st.shape_nodes_folded >= 1);
  });
  CHECK(opt.graph->node_count() == 1);

  Model dyn = build(true);
  Model kept = dyn.clone();
  passes::simplify_shapes(kept, {});
  CHECK(count_op(kept, "Shape") == 1);  // the batch dim is symbolic: it stays computed
  passes::ShapeOptions o;
  o.input_shape = {"x=2,6,4"};
  Model set = check_same_outputs(dyn, {{2, 6, 4}}, [&](Model& mm) { passes::simplify_shapes(mm, o); });
  CHECK(set.graph->node_count() == 1);

  o.input_shape = {"y=2,6,4"};
  CHECK_THROWS_WITH_AS(passes::simplify_shapes(dyn, o), doctest::Contains("has no input 'y' (inputs: x)"), Error);
  o.input_shape = {"x=2,0,4"};
  CHECK_THROWS_WITH_AS(passes::simplify_shapes(dyn, o), doctest::Contains("must be a positive integer"), Error);
  o.input_shape = {"x=2,6"};
  CHECK_THROWS_WITH_AS(passes::simplify_shapes(dyn, o), doctest::Contains("has rank 3, not 2"), Error);
}

TEST_CASE("simplify-shapes: Shapes of different tensors with the same symbolic dims merge") {
  Model m = new_model();
  Graph& g = *m.graph;
  Value* x = g.add_input("x", TensorType::of_dims(DType::Float, {Dim{-1, "batch"}, Dim{8, {}}}));
  Node* relu = g.add_node("Relu", {x}, {"r"});
  Node* s1 = g.add_node("Shape", {x}, {"s1"});
  Node* s2 = g.add_node("Shape", {relu->outputs[0]}, {"s2"});
  Node* r1 = g.add_node("Reshape", {x, s1->outputs[0]}, {"y1"});
  Node* r2 = g.add_node("Reshape", {relu->outputs[0], s2->outputs[0]}, {"y2"});
  g.add_output(r1->outputs[0]);
  g.add_output(r2->outputs[0]);
  Model opt = check_same_outputs(m, {{3, 8}}, [](Model& mm) { passes::simplify_shapes(mm, {}); });
  CHECK(count_op(opt, "Shape") == 1);
}

TEST_CASE("eliminate: no-op Cast/Transpose pairs/Reshape chains/Squeeze-Unsqueeze and repeated nodes") {
  Model m = new_model();
  Graph& g = *m.graph;
  Value* x = g.add_input("x", f32({2, 3, 4}));
  Node* cast = g.add_node("Cast", {x}, {"c"});
  cast->attributes.push_back(Attribute::make_int("to", static_cast<int64_t>(DType::Float)));
  Node* t1 = g.add_node("Transpose", {cast->outputs[0]}, {"t1"});
  t1->attributes.push_back(Attribute::make_ints("perm", {0, 2, 1}));
  Node* t2 = g.add_node("Transpose", {t1->outputs[0]}, {"t2"});
  t2->attributes.push_back(Attribute::make_ints("perm", {0, 2, 1}));
  Node* r1 = g.add_node("Reshape", {t2->outputs[0], ints(g, "s1", {6, 4})}, {"r1"});
  Node* r2 = g.add_node("Reshape", {r1->outputs[0], ints(g, "s2", {2, 12})}, {"r2"});
  Node* un = g.add_node("Unsqueeze", {r2->outputs[0], ints(g, "ax", {0})}, {"u"});
  Node* sq = g.add_node("Squeeze", {un->outputs[0], ints(g, "ax2", {0})}, {"q"});
  Node* a = g.add_node("Relu", {sq->outputs[0]}, {"a"});
  Node* b = g.add_node("Relu", {sq->outputs[0]}, {"b"});
  Node* y = g.add_node("Add", {a->outputs[0], b->outputs[0]}, {"y"});
  g.add_output(y->outputs[0]);
  Model opt = check_same_outputs(m, {{2, 3, 4}}, [](Model& mm) {
    auto st = passes::eliminate(mm, {});
    CHECK(st.subexpressions_merged >= 1);
    CHECK(st.chains_merged >= 2);
  });
  CHECK(count_op(opt, "Cast") == 0);
  CHECK(count_op(opt, "Transpose") == 0);
  CHECK(count_op(opt, "Reshape") == 1);
  CHECK(count_op(opt, "Squeeze") == 0);
  CHECK(count_op(opt, "Unsqueeze") == 0);
  CHECK(count_op(opt, "Relu") == 1);
}

TEST_CASE("fuse: Conv+BatchNormalization, Conv+Add and MatMul+Add become one op each") {
  Model m = new_model();
  Graph& g = *m.graph;
  Value* x = g.add_input("x", f32({1, 3, 6, 6}));
  Node* c1 = g.add_node("Conv", {x, floats(g, "w1", {4, 3, 3, 3}, 2), floats(g, "b1", {4}, 3)}, {"c1"});
  Node* bn = g.add_node("BatchNormalization",
                        {c1->outputs[0], floats(g, "scale", {4}, 4, 0.5f, 2.0f), floats(g, "shift", {4}, 5),
                         floats(g, "mean", {4}, 6), floats(g, "var", {4}, 7, 0.5f, 2.0f)},
                        {"bn"});
  Node* c2 = g.add_node("Conv", {bn->outputs[0], floats(g, "w2", {2, 4, 1, 1}, 8)}, {"c2"});
  Node* add = g.add_node("Add", {c2->outputs[0], floats(g, "bias2", {1, 2, 1, 1}, 9)}, {"a2"});
  Node* flat = g.add_node("Flatten", {add->outputs[0]}, {"f"});
  Node* mm = g.add_node("MatMul", {flat->outputs[0], floats(g, "w3", {32, 5}, 10)}, {"mm"});
  Node* y = g.add_node("Add", {mm->outputs[0], floats(g, "b3", {5}, 11)}, {"y"});
  g.add_output(y->outputs[0]);
  Model opt = check_same_outputs(m, {{1, 3, 6, 6}}, [](Model& mm) {
    auto st = passes::fuse(mm, {});
    CHECK(st.fusions["Conv+BatchNormalization"] == 1);
    CHECK(st.fusions["Conv+Add"] == 1);
    CHECK(st.fusions["MatMul+Add->Gemm"] == 1);
  });
  CHECK(count_op(opt, "BatchNormalization") == 0);
  CHECK(count_op(opt, "Add") == 0);
  CHECK(count_op(opt, "Gemm") == 1);
  CHECK(opt.graph->node_count() == 4);
}

TEST_CASE("fuse: decomposed LayerNormalization (opset 17) and Mul(x, 1/y) -> Div") {
  Model m = new_model(17);
  Graph& g = *m.graph;
  Value* x = g.add_input("x", f32({2, 5, 8}));
  auto mean_last = [&](Value* v, const std::string& name) {
    Node* n = g.add_node("ReduceMean", {v}, {name});
    n->attributes.push_back(Attribute::make_ints("axes", {-1}));
    return n->outputs[0];
  };
  Value* mu = mean_last(x, "mu");
  Node* d = g.add_node("Sub", {x, mu}, {"d"});
  Node* sq = g.add_node("Pow", {d->outputs[0], scalar(g, "two", 2.0f)}, {"sq"});
  Value* var = mean_last(sq->outputs[0], "var");
  Node* e = g.add_node("Add", {var, scalar(g, "eps", 1e-5f)}, {"e"});
  Node* r = g.add_node("Sqrt", {e->outputs[0]}, {"r"});
  Node* n = g.add_node("Div", {d->outputs[0], r->outputs[0]}, {"n"});
  Node* ga = g.add_node("Mul", {n->outputs[0], floats(g, "gamma", {8}, 12)}, {"ga"});
  Node* be = g.add_node("Add", {ga->outputs[0], floats(g, "beta", {8}, 13)}, {"ln"});
  Node* inv = g.add_node("Div", {scalar(g, "one", 1.0f), floats(g, "den", {8}, 14, 0.5f, 2.0f)}, {"inv"});
  Node* y = g.add_node("Mul", {be->outputs[0], inv->outputs[0]}, {"y"});
  g.add_output(y->outputs[0]);
  Model opt = check_same_outputs(m, {{2, 5, 8}}, [](Model& mm) {
    auto st = passes::fuse(mm, {});
    CHECK(st.fusions["LayerNormalization"] == 1);
    CHECK(st.fusions["Div+Mul->Div"] == 1);
  });
  CHECK(count_op(opt, "LayerNormalization") == 1);
  CHECK(count_op(opt, "ReduceMean") == 0);
  CHECK(count_op(opt, "Mul") == 0);
  CHECK(opt.graph->node_count() == 2);

  Model old_opset = m.clone();
  old_opset.opsets = {{"", 13}};
  passes::fuse(old_opset, {});
  CHECK(count_op(old_opset, "LayerNormalization") == 0);  // the op exists from opset 17 on
}

TEST_CASE("fuse --target onnxruntime: Gelu and QuickGelu patterns become the contrib ops") {
  Model m = new_model();
  Graph& g = *m.graph;
  Value* x = g.add_input("x", f32({2, 8}));
  Node* dv = g.add_node("Div", {x, scalar(g, "sqrt2", 1.4142135f)}, {"dv"});
  Node* erf = g.add_node("Erf", {dv->outputs[0]}, {"erf"});
  Node* p1 = g.add_node("Add", {erf->outputs[0], scalar(g, "one", 1.0f)}, {"p1"});
  Node* m1 = g.add_node("Mul", {x, p1->outputs[0]}, {"m1"});
  Node* gelu = g.add_node("Mul", {m1->outputs[0], scalar(g, "half", 0.5f)}, {"gelu"});
  Node* sg = g.add_node("Sigmoid", {gelu->outputs[0]}, {"sg"});
  Node* y = g.add_node("Mul", {gelu->outputs[0], sg->outputs[0]}, {"y"});
  g.add_output(y->outputs[0]);
  passes::FuseOptions o;
  o.target = "onnxruntime";
  auto st = passes::fuse(m, o);
  CHECK(st.fusions["Gelu"] == 1);
  CHECK(st.fusions["QuickGelu"] == 1);
  REQUIRE(m.graph->node_count() == 2);
  for (auto& n : m.graph->nodes()) CHECK(n->domain == "com.microsoft");
}

TEST_CASE("fuse --target onnxruntime: FusedMatMul (transposed operands, alpha) runs in the executor as before") {
  // Transpose(x) @ w * 0.5 (a constant 2-D B, packed at plan time), a @ Transpose(b) and
  // Transpose(c) @ d over batches of 2, e @ Transpose(f) with one 2-D B for both of e's
  // matrices (graph inputs).
  Model m = new_model();
  Graph& g = *m.graph;
  Value* x = g.add_input("x", f32({7, 5}));
  Value* a = g.add_input("a", f32({2, 5, 6}));
  Value* b = g.add_input("b", f32({2, 4, 6}));
  Value* c = g.add_input("c", f32({2, 6, 5}));
  Value* d = g.add_input("d", f32({2, 6, 3}));
  Value* e = g.add_input("e", f32({2, 3, 5}));
  Value* f = g.add_input("f", f32({4, 5}));
  auto swap_last = [&](Value* v, const char* name, std::vector<int64_t> perm) {
    return g.add_node("Transpose", {v}, {name}, attribute_list(Attribute::make_ints("perm", std::move(perm))))
        ->outputs[0];
  };
  Value* w = g.add_initializer(Tensor::from_values("w", DType::Float, {7, 3}, test::random_floats(21, 9)));
  Node* m1 = g.add_node("MatMul", {swap_last(x, "xt", {1, 0}), w}, {"m1"});
  Node* y1 = g.add_node("Mul", {m1->outputs[0], scalar(g, "alpha", 0.5f)}, {"y1"});
  Node* y2 = g.add_node("MatMul", {a, swap_last(b, "bt", {0, 2, 1})}, {"y2"});
  Node* y3 = g.add_node("MatMul", {swap_last(c, "ct", {0, 2, 1}), d}, {"y3"});
  Node* y4 = g.add_node("MatMul", {e, swap_last(f, "ft", {1, 0})}, {"y4"});
  for (Node* n : {y1, y2, y3, y4}) g.add_output(n->outputs[0]);
  const std::vector<std::vector<int64_t>> shapes = {{7, 5},    {2, 5, 6}, {2, 4, 6}, {2, 6, 5},
                                                    {2, 6, 3}, {2, 3, 5}, {4, 5}};
  const Model opt = check_same_outputs(m, shapes, [](Model& mm) {
    passes::FuseOptions o;
    o.target = "onnxruntime";
    CHECK(passes::fuse(mm, o).fusions.count("FusedMatMul") == 1);
  });
  CHECK(count_op(opt, "Transpose") == 0);
  CHECK(count_op(opt, "FusedMatMul") == 4);
}

TEST_CASE("optimize is registered with its options, and refuses a malformed --input-shape before any work") {
  const passes::PassInfo* p = passes::find_pass("optimize");
  REQUIRE(p);
  auto problems = passes::check_pass_options(*p, {{"input-shape", {"x=1,-3"}}}, passes::Naming::Cli);
  REQUIRE(problems.size() == 1);
  CHECK(problems[0].find("must be a positive integer") != std::string::npos);
  for (const char* name : {"fold-constants", "simplify-shapes", "eliminate", "fuse"}) CHECK(passes::find_pass(name));
}
