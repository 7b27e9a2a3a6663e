// quantize --mode int8-dynamic: the rewrite on small in-memory graphs, the int8 weights
// against an independent computation, and the float vs quantized model on the executor.
// ONNX Runtime runs the same rewrite on the fixtures by hand (see the report in the pass).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "ir/graph.h"
#include "test_util.h"
#include "passes/quant/quantize.h"
#include "runtime/executor.h"

using namespace slmops;
using namespace slmops::ir;
namespace q = slmops::passes::quant;

namespace {

// Float tolerance of the accumulation itself, relative to sum |a||w|.
constexpr double kFloatRel = 1e-5;
// Random data: the quantized model's RMS error relative to the float output's RMS stays below
// this for int8 weights and uint8 activations (typically ~0.5%).
constexpr double kMaxRelRms = 0.02;

Model new_model() {
  Model m;
  m.ir_version = 8;
  m.opsets = {{"", 13}};
  m.graph = std::make_unique<Graph>();
  return m;
}

using test::random_floats;

// Attribute is move-only: no initializer lists.
template <typename... A>
std::vector<Attribute> attrs(A... a) { return passes::quant::attr_list(std::move(a)...); }

Value* weight(Graph& g, const std::string& name, std::vector<int64_t> dims, const std::vector<float>& v) {
  return g.add_initializer(Tensor::from_values(name, DType::Float, std::move(dims), v));
}

int count_op(const Graph& g, const std::string& op) {
  int n = 0;
  for (auto& node : g.nodes()) n += node->op_type == op;
  return n;
}

Node* find_op(const Graph& g, const std::string& op) {
  for (auto& node : g.nodes())
    if (node->op_type == op) return node.get();
  return nullptr;
}

std::vector<float> run(const Model& m, const std::vector<float>& x, std::vector<int64_t> dims) {
  runtime::Session s(m, 1);
  auto out = s.run({runtime::RValue::of(Tensor::from_values("x", DType::Float, std::move(dims), x))});
  const Tensor& t = out.at(0).tensor;
  REQUIRE(t.dtype == DType::Float);
  return {t.values<float>(), t.values<float>() + t.numel()};
}

q::QuantReport quantize(Model& m, bool per_channel, std::vector<std::string> op_types = {}, int threads = 1) {
  passes::QuantizeOptions o;
  o.mode = "int8-dynamic";
  o.per_channel = per_channel;
  o.op_types = std::move(op_types);
  passes::NodeFilter f(o.selection(), {"MatMul", "Gemm"});
  q::QuantReport r;
  q::quantize_dynamic(m, o, f, threads, r);
  return r;
}

// Reference symmetric int8: s = max|w| / 127 over each group, q = round(w / s).
struct RefQ {
  std::vector<float> scales;
  std::vector<int8_t> q;
};
// w is [rows, cols]; channel(r, c) names the scale group.
template <typename Channel>
RefQ reference_int8(const std::vector<float>& w, int64_t rows, int64_t cols, int64_t groups, Channel channel) {
  RefQ r;
  r.scales.assign(static_cast<size_t>(groups), 0.0f);
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j)
      r.scales[channel(i, j)] = std::max(r.scales[channel(i, j)], std::fabs(w[i * cols + j]));
  for (auto& s : r.scales) s /= 127.0f;
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j)
      r.q.push_back(static_cast<int8_t>(std::lround(w[i * cols + j] / r.scales[channel(i, j)])));
  return r;
}

std::vector<int8_t> int8_values(const Value* v) {
  REQUIRE(v->initializer);
  REQUIRE(v->initializer->dtype == DType::Int8);
  auto* p = v->initializer->values<int8_t>();
  return {p, p + v->initializer->numel()};
}

std::vector<uint8_t> uint8_values(const Value* v) {
  REQUIRE(v->initializer);
  REQUIRE(v->initializer->dtype == DType::UInt8);
  auto* p = v->initializer->values<uint8_t>();
  return {p, p + v->initializer->numel()};
}

std::vector<float> float_values(const Value* v) {
  REQUIRE(v->initializer);
  REQUIRE(v->initializer->dtype == DType::Float);
  auto* p = v->initializer->values<float>();
  return {p, p + v->initializer->numel()};
}

// uint8 asymmetric activation scale over x's range widened to 0 (DynamicQuantizeLinear).
float activation_scale(const std::vector<float>& x) {
  float lo = 0, hi = 0;
  for (float v : x) lo = std::min(lo, v), hi = std::max(hi, v);
  return (hi - lo) / 255.0f;
}

// Worst case of |y_q - y| for y = A[M,K] x W[K,N] (+ bias): activation error <= sa (rounding of
// the value and of the zero point), weight error <= sw/2, so per output
//   sum_k |a| sw/2 + |w| sa + sa sw/2, plus the float accumulation's own rounding.
void check_matmul_error(const std::vector<float>& x, const std::vector<float>& w, const std::vector<float>& sw,
                        int64_t M, int64_t K, int64_t N, const std::vector<float>& yf, const std::vector<float>& yq) {
  REQUIRE(yf.size() == yq.size());
  const float sa = activation_scale(x);
  double err2 = 0, ref2 = 0;
  int violations = 0;
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      const float s = sw[sw.size() == 1 ? 0 : j];
      double bound = 0, mag = 0;
      for (int64_t k = 0; k < K; ++k) {
        const double a = std::fabs(x[i * K + k]), b = std::fabs(w[k * N + j]);
        bound += a * s / 2 + b * sa + sa * s / 2;
        mag += a * b;
      }
      const double e = std::fabs(yq[i * N + j] - yf[i * N + j]);
      violations += e > bound + kFloatRel * mag;
      err2 += e * e;
      ref2 += static_cast<double>(yf[i * N + j]) * yf[i * N + j];
    }
  CHECK(violations == 0);
  CHECK(err2 > 0);  // the quantized model really computes something else
  CHECK(std::sqrt(err2 / ref2) < kMaxRelRms);
}

}  // namespace

TEST_CASE("int8-dynamic: MatMul becomes DynamicQuantizeMatMul with per-tensor int8 weights") {
  const int64_t M = 5, K = 24, N = 10;
  Model m = new_model();
  Graph& g = *m.graph;
  Value* x = g.add_input("x", TensorType::of(DType::Float, {M, K}));
  auto wv = random_floats(K * N, 1);
  Node* mm = g.add_node("MatMul", {x, weight(g, "W", {K, N}, wv)}, {"y"}, {}, "mm");
  g.add_output(mm->outputs[0]);
  auto xv = random_floats(M * K, 2, -2.0f, 3.0f);
  auto yf = run(m, xv, {M, K});

  auto r = quantize(m, false);
  REQUIRE(g.node_count() == 1);
  Node* dq = find_op(g, "DynamicQuantizeMatMul");
  REQUIRE(dq);
  CHECK(dq->domain == "com.microsoft");
  CHECK(dq->name == "mm");
  CHECK(m.opset("com.microsoft") == 1);
  // The graph output is the same value, now produced by the new node.
  REQUIRE(g.outputs.size() == 1);
  CHECK(g.outputs[0].value->name == "y");
  CHECK(g.outputs[0].value->producer == dq);
  CHECK(g.outputs[0].value->type == TensorType{});  // untouched (none was declared)
  // Weights: int8 [K, N], one scale, zero point 0; the float weight is gone.
  REQUIRE(dq->inputs.size() == 4);
  CHECK(dq->inputs[1]->initializer->dims == std::vector<int64_t>{K, N});
  RefQ ref = reference_int8(wv, K, N, 1, [](int64_t, int64_t) { return 0; });
  CHECK(int8_values(dq->inputs[1]) == ref.q);
  CHECK(dq->inputs[2]->initializer->dims.empty());
  CHECK(float_values(dq->inputs[2]) == ref.scales);
  CHECK(int8_values(dq->inputs[3]) == std::vector<int8_t>{0});
  CHECK(g.find_value("W") == nullptr);
  CHECK(std::none_of(g.initializers.begin(), g.initializers.end(), [](Value* v) { return v->name == "W"; }));
  // Report.
  REQUIRE(r.nodes.size() == 1);
  CHECK(r.nodes[0].node == "mm");
  CHECK(r.nodes[0].how.rfind("DynamicQuantizeMatMul int8 sym per-tensor", 0) == 0);
  CHECK(r.nodes[0].bytes_before == K * N * 4);
  CHECK(r.nodes[0].bytes_after == K * N + 4 + 1);
  CHECK(r.to_json()["activation"].get<std::string>().find("uint8") != std::string::npos);

  check_matmul_error(xv, wv, ref.scales, M, K, N, yf, run(m, xv, {M, K}));
}

TEST_CASE("int8-dynamic: --per-channel gives one scale per output column") {
  const int64_t M = 3, K = 16, N = 6;
  Model m = new_model();
  Graph& g = *m.graph;
  Value* x = g.add_input("x", TensorType::of(DType::Float, {M, K}));
  auto wv = random_floats(K * N, 3);
  for (int64_t k = 0; k < K; ++k) wv[k * N + 2] *= 20.0f;  // one column far larger than the rest
  Node* mm = g.add_node("MatMul", {x, weight(g, "W", {K, N}, wv)}, {"y"}, {}, "mm");
  g.add_output(mm->outputs[0]);
  auto xv = random_floats(M * K, 4);
  auto yf = run(m, xv, {M, K});

  quantize(m, true);
  Node* dq = find_op(g, "DynamicQuantizeMatMul");
  REQUIRE(dq);
  RefQ ref = reference_int8(wv, K, N, N, [](int64_t, int64_t j) { return j; });
  CHECK(dq->inputs[2]->initializer->dims == std::vector<int64_t>{N});
  CHECK(float_values(dq->inputs[2]) == ref.scales);
  CHECK(int8_values(dq->inputs[1]) == ref.q);
  CHECK(int8_values(dq->inputs[3]) == std::vector<int8_t>(N, 0));
  check_matmul_error(xv, wv, ref.scales, M, K, N, yf, run(m, xv, {M, K}));
}

TEST_CASE("int8-dynamic: Gemm transB=1 with a bias C maps to DynamicQuantizeMatMul with W transposed") {
  const int64_t M = 4, K = 12, N = 7;
  Model m = new_model();
  Graph& g = *m.graph;
  Value* x = g.add_input("x", TensorType::of(DType::Float, {M, K}));
  auto wt = random_floats(N * K, 5);  // [N, K]
  auto cv = random_floats(N, 6);
  Node* gemm = g.add_node("Gemm", {x, weight(g, "W", {N, K}, wt), weight(g, "C", {N}, cv)}, {"y"},
                          attrs(Attribute::make_int("transB", 1)), "fc");
  g.add_output(gemm->outputs[0]);
  auto xv = random_floats(M * K, 7);
  auto yf = run(m, xv, {M, K});

  quantize(m, true);
  REQUIRE(g.node_count() == 1);
  Node* dq = find_op(g, "DynamicQuantizeMatMul");
  REQUIRE(dq);
  REQUIRE(dq->inputs.size() == 5);
  CHECK(dq->inputs[4]->name == "C");
  CHECK(dq->inputs[1]->initializer->dims == std::vector<int64_t>{K, N});
  std::vector<float> w(K * N);  // W^T as [K, N]
  for (int64_t n = 0; n < N; ++n)
    for (int64_t k = 0; k < K; ++k) w[k * N + n] = wt[n * K + k];
  RefQ ref = reference_int8(w, K, N, N, [](int64_t, int64_t j) { return j; });
  CHECK(int8_values(dq->inputs[1]) == ref.q);
  check_matmul_error(xv, w, ref.scales, M, K, N, yf, run(m, xv, {M, K}));
}

TEST_CASE("int8-dynamic: Gemm that is not X*W+C stays float and is reported as skipped") {
  Model m = new_model();
  Graph& g = *m.graph;
  Value* x = g.add_input("x", TensorType::of(DType::Float, {2, 4}));
  Node* gemm = g.add_node("Gemm", {x, weight(g, "W", {4, 3}, random_floats(12, 8))}, {"y"},
                          attrs(Attribute::make_float("alpha", 0.5f)), "scaled");
  g.add_output(gemm->outputs[0]);
  auto r = quantize(m, false);
  CHECK(g.node_count() == 1);
  CHECK(find_op(g, "Gemm") == gemm);
  CHECK(g.find_value("W")->initializer);
  REQUIRE(r.nodes.size() == 1);
  CHECK(r.nodes[0].how.rfind("skipped: Gemm with alpha", 0) == 0);
  CHECK(m.opset("com.microsoft") == 0);
}

TEST_CASE("int8-dynamic: a MatMul whose weight is a graph input is skipped") {
  Model m = new_model();
  Graph& g = *m.graph;
  Value* x = g.add_input("x", TensorType::of(DType::Float, {2, 4}));
  Value* w = g.add_input("w", TensorType::of(DType::Float, {4, 3}));
  Node* mm = g.add_node("MatMul", {x, w}, {"y"}, {}, "mm");
  g.add_output(mm->outputs[0]);
  auto r = quantize(m, false);
  CHECK(find_op(g, "MatMul") == mm);
  REQUIRE(r.nodes.size() == 1);
  CHECK(r.nodes[0].how == "skipped: weight is not a constant 2-D float");
  CHECK(r.to_json()["nodes_quantized"] == 0);
}

TEST_CASE("int8-dynamic: MatMul + Add(bias [N]) folds the bias into DynamicQuantizeMatMul") {
  const int64_t B = 2, S = 3, K = 8, N = 5;
  Model m = new_model();
  Graph& g = *m.graph;
  Value* x = g.add_input("x", TensorType::of(DType::Float, {B, S, K}));
  auto wv = random_floats(K * N, 9);
  auto bv = random_floats(N, 10);
  Node* mm = g.add_node("MatMul", {x, weight(g, "W", {K, N}, wv)}, {"mm_out"}, {}, "mm");
  Node* add = g.add_node("Add", {weight(g, "b", {N}, bv), mm->outputs[0]}, {"y"}, {}, "add");
  g.add_output(add->outputs[0]);
  auto xv = random_floats(B * S * K, 11);
  auto yf = run(m, xv, {B, S, K});

  quantize(m, false);
  REQUIRE(g.node_count() == 1);
  Node* dq = find_op(g, "DynamicQuantizeMatMul");
  REQUIRE(dq);
  REQUIRE(dq->inputs.size() == 5);
  CHECK(dq->inputs[4]->name == "b");
  CHECK(g.outputs[0].value->name == "y");
  CHECK(g.outputs[0].value->producer == dq);
  RefQ ref = reference_int8(wv, K, N, 1, [](int64_t, int64_t) { return 0; });
  check_matmul_error(xv, wv, ref.scales, B * S, K, N, yf, run(m, xv, {B, S, K}));
}

TEST_CASE("int8-dynamic: a weight shared by two MatMuls is quantized once; one read by another op is kept") {
  Model m = new_model();
  Graph& g = *m.graph;
  Value* x = g.add_input("x", TensorType::of(DType::Float, {2, 4}));
  Value* w = weight(g, "W", {4, 4}, random_floats(16, 12));
  Node* a = g.add_node("MatMul", {x, w}, {"a"}, {}, "a");
  Node* b = g.add_node("MatMul", {a->outputs[0], w}, {"b"}, {}, "b");
  Node* t = g.add_node("Transpose", {w}, {"wt"}, {}, "t");  // another reader of W
  g.add_output(b->outputs[0]);
  g.add_output(t->outputs[0]);
  auto r = quantize(m, false);
  CHECK(count_op(g, "DynamicQuantizeMatMul") == 2);
  Node* first = nullptr;
  Node* second = nullptr;
  for (auto& n : g.nodes())
    if (n->op_type == "DynamicQuantizeMatMul") (first ? second : first) = n.get();
  REQUIRE(second);
  CHECK(first->name == "a");  // order kept: producers first
  CHECK(first->inputs[1] == second->inputs[1]);
  CHECK(g.find_value("W")->initializer);  // Transpose still reads it
  CHECK(t->inputs[0] == g.find_value("W"));
  REQUIRE(r.nodes.size() == 2);
  CHECK(r.nodes[0].bytes_before == 64);
  CHECK(r.nodes[1].bytes_before == 0);
  CHECK(r.nodes[1].how.find("shared with 'a'") != std::string::npos);
  CHECK(g.topological_order().size() == g.node_count());
}

TEST_CASE("int8-dynamic: Conv is left alone unless listed in the op types") {
  Model m = new_model();
  Graph& g = *m.graph;
  Value* x = g.add_input("x", TensorType::of(DType::Float, {1, 2, 5, 5}));
  Node* c = g.add_node("Conv", {x, weight(g, "W", {3, 2, 3, 3}, random_floats(54, 13))}, {"y"}, {}, "conv");
  g.add_output(c->outputs[0]);
  auto r = quantize(m, false);
  CHECK(find_op(g, "Conv") == c);
  CHECK(r.nodes.empty());
}

TEST_CASE("int8-dynamic: Conv becomes DynamicQuantizeLinear + ConvInteger + Cast + Mul (+Add bias)") {
  const int64_t C = 3, M = 4, H = 9;
  Model m = new_model();
  Graph& g = *m.graph;
  Value* x = g.add_input("x", TensorType::of(DType::Float, {2, C, H, H}));
  auto wv = random_floats(M * C * 9, 14);
  for (int64_t i = 0; i < C * 9; ++i) wv[i] *= 0.05f;  // filter 0 much smaller: per-channel matters
  auto bv = random_floats(M, 15);
  Node* conv = g.add_node("Conv", {x, weight(g, "W", {M, C, 3, 3}, wv), weight(g, "B", {M}, bv)}, {"y"},
                          attrs(Attribute::make_ints("pads", {1, 1, 1, 1}), Attribute::make_ints("strides", {2, 2})),
                          "conv");
  Node* relu = g.add_node("Relu", {conv->outputs[0]}, {"r"}, {}, "relu");
  g.add_output(relu->outputs[0]);
  auto xv = random_floats(2 * C * H * H, 16, -1.0f, 2.0f);
  auto yf = run(m, xv, {2, C, H, H});

  auto r = quantize(m, true, {"Conv"});
  CHECK(count_op(g, "Conv") == 0);
  CHECK(count_op(g, "DynamicQuantizeLinear") == 1);
  CHECK(count_op(g, "Cast") == 1);
  CHECK(count_op(g, "Mul") == 2);
  CHECK(count_op(g, "Add") == 1);
  Node* ci = find_op(g, "ConvInteger");
  REQUIRE(ci);
  CHECK(ci->attr_ints("strides") == std::vector<int64_t>{2, 2});
  CHECK(ci->attr_ints("pads") == std::vector<int64_t>{1, 1, 1, 1});
  // int8 values per filter, stored as uint8 q + 128 with one zero point 128 (ORT's ConvInteger
  // takes no per-channel zero point and is faster on uint8 weights).
  RefQ ref = reference_int8(wv, M, C * 9, M, [](int64_t i, int64_t) { return i; });
  std::vector<uint8_t> shifted;
  for (int8_t v : ref.q) shifted.push_back(static_cast<uint8_t>(v + 128));
  CHECK(uint8_values(ci->inputs[1]) == shifted);
  CHECK(ci->inputs[1]->initializer->dims == std::vector<int64_t>{M, C, 3, 3});
  CHECK(uint8_values(ci->inputs[3]) == std::vector<uint8_t>{128});
  // The scale Mul reads the weight scales shaped [1, M, 1, 1].
  bool found_scale = false;
  for (auto& n : g.nodes())
    if (n->op_type == "Mul" && n->inputs[1]->initializer) {
      CHECK(n->inputs[1]->initializer->dims == std::vector<int64_t>{1, M, 1, 1});
      CHECK(float_values(n->inputs[1]) == ref.scales);
      found_scale = true;
    }
  CHECK(found_scale);
  CHECK(relu->inputs[0]->name == "y");
  CHECK(relu->inputs[0]->producer->op_type == "Add");
  CHECK(g.find_value("W") == nullptr);
  CHECK(g.find_value("B") == nullptr);  // reshaped to [1, M, 1, 1]
  REQUIRE(r.nodes.size() == 1);
  CHECK(r.nodes[0].how.rfind("ConvInteger int8 sym per-channel", 0) == 0);
  CHECK(r.nodes[0].bytes_before == M * C * 9 * 4);
  CHECK(r.nodes[0].bytes_after == M * C * 9 + M * 4 + 1);  // q, one scale per filter, the zero point

  // Differential: error <= K_rf * (max|x| sw/2 + max|w| sx + sx sw/2) per output (Relu
  // after the Conv is 1-Lipschitz, so the bound holds on the graph output too).
  auto yq = run(m, xv, {2, C, H, H});
  REQUIRE(yq.size() == yf.size());
  const float sx = activation_scale(xv);
  float xmax = 0;
  for (float v : xv) xmax = std::max(xmax, std::fabs(v));
  const int64_t P = yf.size() / (2 * M), krf = C * 9;
  double err2 = 0, ref2 = 0;
  int violations = 0;
  for (size_t i = 0; i < yf.size(); ++i) {
    const int64_t ch = (static_cast<int64_t>(i) / P) % M;
    float wmax = 0;
    for (int64_t k = 0; k < krf; ++k) wmax = std::max(wmax, std::fabs(wv[ch * krf + k]));
    const double sw = ref.scales[ch];
    const double bound = krf * (xmax * sw / 2 + wmax * sx + sx * sw / 2) + 1e-5;
    const double e = std::fabs(yq[i] - yf[i]);
    violations += e > bound;
    err2 += e * e;
    ref2 += static_cast<double>(yf[i]) * yf[i];
  }
  CHECK(violations == 0);
  CHECK(err2 > 0);
  CHECK(std::sqrt(err2 / ref2) < kMaxRelRms);
}

TEST_CASE("int8-dynamic: weight quantization with a thread pool gives the same bytes as one thread") {
  auto build = [] {
    Model m = new_model();
    Graph& g = *m.graph;
    Value* x = g.add_input("x", TensorType::of(DType::Float, {1, 300}));
    Node* mm = g.add_node("MatMul", {x, weight(g, "W", {300, 513}, random_floats(300 * 513, 17))}, {"y"}, {}, "mm");
    g.add_output(mm->outputs[0]);
    return m;
  };
  for (bool per_channel : {false, true}) {
    Model a = build(), b = build();
    quantize(a, per_channel, {}, 1);
    quantize(b, per_channel, {}, 4);
    Node* da = find_op(*a.graph, "DynamicQuantizeMatMul");
    Node* db = find_op(*b.graph, "DynamicQuantizeMatMul");
    REQUIRE(da);
    REQUIRE(db);
    CHECK(int8_values(da->inputs[1]) == int8_values(db->inputs[1]));
    CHECK(float_values(da->inputs[2]) == float_values(db->inputs[2]));
  }
}
