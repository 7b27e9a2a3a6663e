// Value::inferred (formats/shape_infer.h): filled on demand for every value, for the
// com.microsoft ops the quantizer writes and opset 21, and left empty (never thrown) where
// inference fails.
#include <doctest/doctest.h>

#include "formats/onnx_io.h"
#include "formats/shape_infer.h"
#include "ir/graph.h"
#include "passes/registry.h"
#include "test_util.h"

using namespace slmops;
using namespace slmops::ir;

namespace {

const test::fs::path kFixtures = test::fs::path(SLMOPS_SOURCE_DIR) / "tests" / "fixtures";

// Every value of `g` (inputs, initializers, node outputs, outputs), main graph only.
std::vector<const Value*> all_values(const Graph& g) {
  std::vector<const Value*> out;
  for (auto& vi : g.inputs) out.push_back(vi.value);
  for (const Value* v : g.initializers) out.push_back(v);
  for (auto& n : g.nodes())
    for (const Value* v : n->outputs)
      if (v) out.push_back(v);
  for (auto& vi : g.outputs) out.push_back(vi.value);
  return out;
}

const Node* find_op(const Graph& g, const std::string& op) {
  for (auto& n : g.nodes())
    if (n->op_type == op) return n.get();
  return nullptr;
}

Model quantized(const std::string& fixture, nlohmann::json options) {
  Model m = formats::load_model(kFixtures / fixture);
  passes::PassContext ctx;
  ctx.verbosity = 0;
  passes::run_pass(*passes::find_pass("quantize"), m, options, ctx);
  return m;
}

std::vector<Dim> dims_of(std::initializer_list<Dim> d) { return d; }
Dim sym(const char* s) { return {-1, s}; }
Dim num(int64_t v) { return {v, {}}; }

}  // namespace

// A fixture loaded and typed.
Model typed(const char* name) {
  Model m = formats::load_model(kFixtures / name);
  formats::ensure_shapes(m);
  return m;
}

TEST_CASE("every value of the fixtures has an inferred dtype and shape") {
  for (const char* name : {"cnn_digits.onnx", "gpt_bytes.onnx", "llama_bytes.onnx"}) {
    CAPTURE(name);
    Model m = typed(name);
    size_t count = 0;
    for (const Value* v : all_values(*m.graph)) {
      CAPTURE(v->name);
      CHECK(v->inferred.is_tensor);
      CHECK(v->inferred.has_shape);
      ++count;
    }
    CHECK(count > 10);
  }
  // Symbolic dims keep their names: gpt_bytes' logits are [batch, seq, 256].
  Model m = typed("gpt_bytes.onnx");
  const Value* logits = m.graph->outputs.at(0).value;
  CHECK(logits->inferred == TensorType::of_dims(DType::Float, dims_of({sym("batch"), sym("seq"), num(256)})));
}

TEST_CASE("loading does not infer; ensure_shapes does, once; declared types stay apart") {
  Model m = formats::load_model(kFixtures / "cnn_digits.onnx");
  CHECK_FALSE(m.shapes_inferred);
  CHECK_FALSE(m.graph->nodes().front()->outputs[0]->inferred.is_tensor);
  formats::ensure_shapes(m);
  CHECK(m.shapes_inferred);
  int typed_only_by_inference = 0;
  for (auto& n : m.graph->nodes())
    for (const Value* v : n->outputs)
      if (v && !v->is_graph_output() && v->inferred.is_tensor && !v->type.is_tensor) ++typed_only_by_inference;
  CHECK(typed_only_by_inference > 0);
  Model c = m.clone();
  CHECK(c.shapes_inferred);
  for (auto& n : c.graph->nodes())
    for (const Value* v : n->outputs)
      if (v) CHECK(v->inferred.is_tensor);
}

TEST_CASE("MatMulNBits and DynamicQuantizeMatMul outputs from the quantizer get shapes") {
  Model m = quantized("llama_bytes.onnx", {{"mode", "int4-weight"}});
  formats::refresh_shapes(m);
  const Node* nbits = find_op(*m.graph, "MatMulNBits");
  REQUIRE(nbits);
  const TensorType& y = nbits->outputs[0]->inferred;
  REQUIRE(y.is_tensor);
  CHECK(y.elem() == DType::Float);
  REQUIRE(y.dims.size() == 3);
  CHECK(y.dims[0] == sym("batch"));
  CHECK(y.dims[2] == num(nbits->attr_int("N", -1)));
  for (const Value* v : all_values(*m.graph)) {
    CAPTURE(v->name);
    CHECK(v->inferred.has_shape);
  }

  // The same model saved and loaded again: types come back at load.
  test::TempDir dir;
  formats::save_model(m, dir / "q.onnx");
  Model loaded = formats::load_model(dir / "q.onnx");
  formats::ensure_shapes(loaded);
  CHECK(find_op(*loaded.graph, "MatMulNBits")->outputs[0]->inferred == y);

  Model d = quantized("gpt_bytes.onnx", {{"mode", "int8-dynamic"}});
  formats::refresh_shapes(d);
  const Node* dq = find_op(*d.graph, "DynamicQuantizeMatMul");
  REQUIRE(dq);
  CHECK(dq->outputs[0]->inferred.elem() == DType::Float);
  CHECK(dq->outputs[0]->inferred.dims.size() == 3);
}

TEST_CASE("opset 21 blocked DequantizeLinear (newer than libonnx) still gets types") {
  Model m = quantized("llama_bytes.onnx", {{"mode", "int4-weight"}, {"format", "qdq"}});
  CHECK(m.opset("") == 21);
  formats::refresh_shapes(m);
  const Node* dq = find_op(*m.graph, "DequantizeLinear");
  REQUIRE(dq);
  CHECK(dq->outputs[0]->inferred.elem() == DType::Float);
  CHECK(dq->outputs[0]->inferred.dims == dq->inputs[0]->inferred.dims);
  for (const Value* v : all_values(*m.graph)) {
    CAPTURE(v->name);
    CHECK(v->inferred.has_shape);
  }
}

TEST_CASE("an unknown custom op leaves only the values downstream of it untyped") {
  // x -> Relu -> a -> my.domain.Mystery -> b -> Relu -> c (output); x -> Sigmoid -> d (output)
  Model m;
  m.ir_version = 8;
  m.opsets = {{"", 17}, {"my.domain", 1}};
  m.graph = std::make_unique<Graph>();
  Graph& g = *m.graph;
  Value* x = g.add_input("x", TensorType::of_dims(DType::Float, dims_of({sym("n"), num(4)})));
  Node* relu = g.add_node("Relu", {x}, {"a"});
  Node* mystery = g.add_node("Mystery", {relu->outputs[0]}, {"b"}, {}, "mystery", "my.domain");
  Node* relu2 = g.add_node("Relu", {mystery->outputs[0]}, {"c"});
  Node* sig = g.add_node("Sigmoid", {x}, {"d"});
  g.add_output(relu2->outputs[0]);
  g.add_output(sig->outputs[0]);

  test::TempDir dir;
  formats::save_model(m, dir / "custom.onnx");
  Model loaded;
  REQUIRE_NOTHROW(loaded = formats::load_model(dir / "custom.onnx"));
  REQUIRE_NOTHROW(formats::ensure_shapes(loaded));
  const Graph& lg = *loaded.graph;
  auto inferred = [&](const char* name) { return lg.find_value(name)->inferred; };
  CHECK(inferred("a") == TensorType::of_dims(DType::Float, dims_of({sym("n"), num(4)})));
  CHECK(inferred("d") == TensorType::of_dims(DType::Float, dims_of({sym("n"), num(4)})));
  CHECK_FALSE(inferred("b").is_tensor);
  CHECK_FALSE(inferred("c").is_tensor);
}

TEST_CASE("a node whose inputs contradict its rule leaves its outputs untyped, without throwing") {
  // MatMul [2, 3] x [4, 5]: the inner dims differ, libonnx's rule fails on this node only.
  Model m;
  m.ir_version = 8;
  m.opsets = {{"", 17}};
  m.graph = std::make_unique<Graph>();
  Graph& g = *m.graph;
  Value* a = g.add_input("a", TensorType::of(DType::Float, {2, 3}));
  Value* b = g.add_input("b", TensorType::of(DType::Float, {4, 5}));
  Node* mm = g.add_node("MatMul", {a, b}, {"y"});
  Node* neg = g.add_node("Neg", {a}, {"z"});
  g.add_output(mm->outputs[0]);
  g.add_output(neg->outputs[0]);
  REQUIRE_NOTHROW(formats::infer_shapes(m));
  CHECK_FALSE(mm->outputs[0]->inferred.is_tensor);
  CHECK(neg->outputs[0]->inferred == TensorType::of(DType::Float, {2, 3}));
}
