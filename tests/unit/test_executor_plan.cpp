// The executor's plan: constant folding (nodes whose inputs are all constants run once when
// the session is planned; the ir::Graph is left as it was), what RunOptions still sees of
// folded nodes, graph inputs with defaults (never folded: a caller may feed them), and the
// activation accounting of Session::peak_activation_bytes.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <string>
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

// x [1,1,4,4] -> Conv 3x3 pad 1 (2 maps, weights of both signs) -> an activation that `act`
// adds, reading the Conv's output -> y; with `conv_is_output` the Conv's output is a graph
// output too (then it must not be fused).
using AddActivation = std::function<ir::Node*(ir::Graph&, ir::Value* conv)>;
std::unique_ptr<ir::Model> conv_act_model(bool conv_is_output, const AddActivation& act, int64_t opset) {
  auto m = std::make_unique<ir::Model>();
  m->ir_version = 8;
  m->opsets = {{"", opset}};
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
  g.add_output(act(g, conv->outputs[0])->outputs[0]);
  if (conv_is_output) g.add_output(conv->outputs[0]);
  return m;
}

std::vector<float> values_of(const RValue& v) {
  const float* p = v.tensor.values<float>();
  return std::vector<float>(p, p + v.tensor.numel());
}

// A float32 scalar initializer named `name`.
ir::Value* scalar(ir::Graph& g, const std::string& name, float v) {
  ir::Tensor t = floats({}, {v});
  t.name = name;
  return g.add_initializer(t);
}

// Runs the model of `act` (see conv_act_model) fused and not: y must be the Conv's output
// clamped to [lo, hi] either way, the session must fuse `fusions` steps, and a run that asks
// for the Conv's output (extra_outputs, on_node) must see it before the clamp. Graph inputs
// past x (a bound that is not a constant) are fed `lo`.
void check_conv_activation(const AddActivation& act, int64_t opset, float lo, float hi, int fusions) {
  std::vector<float> xv(16);
  for (int i = 0; i < 16; ++i) xv[i] = static_cast<float>((i * 7) % 11) - 5.0f;
  auto feeds_for = [&](const Session& s) {
    std::vector<RValue> feeds = {RValue::of(floats({1, 1, 4, 4}, xv))};
    while (feeds.size() < s.inputs().size()) feeds.push_back(RValue::of(floats({}, {lo})));
    return feeds;
  };

  // Reference: the Conv's output as a graph output disables fusion; the clamp by hand.
  auto ref_model = conv_act_model(true, act, opset);
  Session ref(*ref_model, 1);
  CHECK(ref.clamp_fusions() == 0);
  auto ref_out = ref.run(feeds_for(ref));
  REQUIRE(ref_out.size() == 2);
  const std::vector<float> conv = values_of(ref_out[1]);
  std::vector<float> want(conv.size());
  for (size_t i = 0; i < conv.size(); ++i) want[i] = std::min(std::max(conv[i], lo), hi);
  CHECK(values_of(ref_out[0]) == want);
  // The bounds matter here.
  if (lo > -std::numeric_limits<float>::infinity())
    CHECK(std::count_if(conv.begin(), conv.end(), [&](float v) { return v < lo; }) > 0);
  if (hi < std::numeric_limits<float>::infinity())
    CHECK(std::count_if(conv.begin(), conv.end(), [&](float v) { return v > hi; }) > 0);

  auto m = conv_act_model(false, act, opset);
  Session s(*m, 1);
  CHECK(s.clamp_fusions() == fusions);
  const std::vector<RValue> feeds = feeds_for(s);
  CHECK(values_of(s.run(feeds)[0]) == want);  // fused
  // With the Conv's output asked for, it comes back before the clamp, and y is unchanged.
  runtime::RunOptions extra;
  extra.extra_outputs = {"conv"};
  auto with_extra = s.run(feeds, extra);
  REQUIRE(with_extra.size() == 2);
  CHECK(values_of(with_extra[0]) == want);
  CHECK(values_of(with_extra[1]) == conv);
  // on_node sees both nodes, the Conv's output before the clamp.
  runtime::RunOptions watch;
  std::vector<std::string> seen;
  watch.on_node = [&](const ir::Node& n, const std::vector<RValue>& outs) {
    if (n.op_type == "Constant") return;
    seen.push_back(n.op_type);
    if (n.op_type == "Conv") CHECK(values_of(outs[0]) == conv);
  };
  CHECK(values_of(s.run(feeds, watch)[0]) == want);
  REQUIRE(seen.size() == 2);
  CHECK(seen[0] == "Conv");
}

}  // namespace

TEST_CASE("Conv -> Relu: the fused run equals Relu run separately, and intermediates stay pre-Relu") {
  check_conv_activation([](ir::Graph& g, ir::Value* c) { return g.add_node("Relu", {c}, {"y"}); }, 17, 0.0f,
                        std::numeric_limits<float>::infinity(), 1);
}

TEST_CASE("Conv -> Clip with constant bounds is fused; a bound fed at run time is not") {
  constexpr float kInf = std::numeric_limits<float>::infinity();
  SUBCASE("bounds as initializers (opset 11+)") {
    check_conv_activation(
        [](ir::Graph& g, ir::Value* c) {
          return g.add_node("Clip", {c, scalar(g, "lo", -1.5f), scalar(g, "hi", 2.0f)}, {"y"});
        },
        17, -1.5f, 2.0f, 1);
  }
  SUBCASE("bounds from Constant nodes (folded), as PyTorch exports ReLU6") {
    check_conv_activation(
        [](ir::Graph& g, ir::Value* c) {
          auto constant = [&](const std::string& name, float v) {
            std::vector<ir::Attribute> a;
            a.push_back(ir::Attribute::make_tensor("value", floats({}, {v})));
            return g.add_node("Constant", {}, {name}, std::move(a))->outputs[0];
          };
          return g.add_node("Clip", {c, constant("lo", 0.0f), constant("hi", 6.0f)}, {"y"});
        },
        17, 0.0f, 6.0f, 1);
  }
  SUBCASE("min omitted") {
    check_conv_activation(
        [](ir::Graph& g, ir::Value* c) {
          return g.add_node("Clip", {c, nullptr, scalar(g, "hi", 2.0f)}, {"y"});
        },
        17, -kInf, 2.0f, 1);
  }
  SUBCASE("bounds as attributes (opset 6)") {
    check_conv_activation(
        [](ir::Graph& g, ir::Value* c) {
          std::vector<ir::Attribute> a;
          a.push_back(ir::Attribute::make_float("min", -1.0f));
          return g.add_node("Clip", {c}, {"y"}, std::move(a));
        },
        6, -1.0f, kInf, 1);
  }
  SUBCASE("a bound that is a graph input") {
    check_conv_activation(
        [](ir::Graph& g, ir::Value* c) {
          ir::Value* lo = g.add_input("lo", ir::TensorType::of(ir::DType::Float, {}));
          return g.add_node("Clip", {c, lo, scalar(g, "hi", 2.0f)}, {"y"});
        },
        17, -1.0f, 2.0f, 0);
  }
}

TEST_CASE("Add -> Relu (a residual connection) fuses into the Add, float and integer") {
  for (ir::DType dt : {ir::DType::Float, ir::DType::Int32}) {
    CAPTURE(ir::dtype_name(dt));
    auto m = std::make_unique<ir::Model>();
    m->ir_version = 8;
    m->opsets = {{"", 17}};
    m->graph = std::make_unique<ir::Graph>();
    ir::Graph& g = *m->graph;
    ir::Value* a = g.add_input("a", ir::TensorType::of(dt, {2, 3}));
    ir::Value* b = g.add_input("b", ir::TensorType::of(dt, {3}));  // broadcast, as a bias would
    ir::Node* add = g.add_node("Add", {a, b}, {"sum"});
    g.add_output(g.add_node("Relu", {add->outputs[0]}, {"y"})->outputs[0]);
    Session s(*m, 1);
    CHECK(s.clamp_fusions() == 1);
    const std::vector<float> av = {-3, 1, 2, 5, -1, 0}, bv = {1, -2, 0.5f};
    auto tensor = [&](std::vector<int64_t> dims, const std::vector<float>& v) {
      ir::Tensor t = runtime::new_tensor(dt, dims);
      for (size_t i = 0; i < v.size(); ++i) {
        if (dt == ir::DType::Float)
          t.mutable_values<float>()[i] = v[i];
        else
          t.mutable_values<int32_t>()[i] = static_cast<int32_t>(v[i]);  // 0.5 -> 0
      }
      return RValue::of(t);
    };
    const std::vector<RValue> feeds = {tensor({2, 3}, av), tensor({3}, bv)};
    const RValue y = s.run(feeds)[0];
    runtime::RunOptions extra;
    extra.extra_outputs = {"sum"};
    const auto unfused = s.run(feeds, extra);
    for (size_t i = 0; i < 6; ++i) {
      const double sum =
          dt == ir::DType::Float ? double(av[i]) + bv[i % 3] : double(int32_t(av[i]) + int32_t(bv[i % 3]));
      const double got = dt == ir::DType::Float ? y.tensor.values<float>()[i] : y.tensor.values<int32_t>()[i];
      const double pre =
          dt == ir::DType::Float ? unfused[1].tensor.values<float>()[i] : unfused[1].tensor.values<int32_t>()[i];
      CHECK(got == std::max(sum, 0.0));
      CHECK(pre == sum);  // asked for, the Add's output comes back before Relu
    }
  }
}

// ---- QDQ groups as integer kernels (GraphRunner::plan_qdq) ------------------------------------

namespace {

// Builds QDQ graphs as `slmops quantize --mode int8-static` writes them: uint8 activations with
// one Q/DQ pair per tensor, int8 symmetric weights, int32 biases with scale x_scale * w_scale.
struct QdqBuilder {
  std::unique_ptr<ir::Model> m = std::make_unique<ir::Model>();
  ir::Graph* g;
  int counter = 0;
  QdqBuilder() {
    m->ir_version = 8;
    m->opsets = {{"", 17}};
    m->graph = std::make_unique<ir::Graph>();
    g = m->graph.get();
  }
  std::string fresh(const char* base) { return std::string(base) + "_" + std::to_string(counter++); }
  ir::Value* init(ir::Tensor t, const char* base) {
    t.name = fresh(base);
    return g->add_initializer(std::move(t));
  }
  ir::Value* scalar_f(float v) { return init(floats({}, {v}), "scale"); }
  template <typename T>
  ir::Value* ints(ir::DType dt, std::vector<int64_t> dims, std::vector<T> v, const char* base) {
    ir::Tensor t = runtime::new_tensor(dt, dims);
    std::copy(v.begin(), v.end(), t.mutable_values<T>());
    return init(std::move(t), base);
  }
  ir::Value* node(const char* op, std::vector<ir::Value*> in, std::vector<ir::Attribute> attrs = {}) {
    return g->add_node(op, std::move(in), {fresh(op)}, std::move(attrs))->outputs[0];
  }
  // Q then DQ of a float activation (uint8, the given scale and zero point).
  ir::Value* qdq(ir::Value* x, float scale, uint8_t zp) {
    ir::Value* s = scalar_f(scale);
    ir::Value* z = ints<uint8_t>(ir::DType::UInt8, {}, {zp}, "zp");
    return node("DequantizeLinear", {node("QuantizeLinear", {x, s, z}), s, z});
  }
  // The same with int8 symmetric activations (zero point 0, --symmetric-activations).
  ir::Value* qdq_s8(ir::Value* x, float scale) {
    ir::Value* s = scalar_f(scale);
    ir::Value* z = ints<int8_t>(ir::DType::Int8, {}, {0}, "zp");
    return node("DequantizeLinear", {node("QuantizeLinear", {x, s, z}), s, z});
  }
  // DQ of an int8 weight with deterministic values in [-127, 127].
  ir::Value* weight(std::vector<int64_t> dims, float scale, int seed) {
    int64_t n = 1;
    for (int64_t d : dims) n *= d;
    std::vector<int8_t> v(n);
    for (int64_t i = 0; i < n; ++i) v[i] = static_cast<int8_t>((i * 37 + seed * 11) % 255 - 127);
    return node("DequantizeLinear", {ints<int8_t>(ir::DType::Int8, dims, v, "w"), scalar_f(scale),
                                     ints<int8_t>(ir::DType::Int8, {}, {0}, "wzp")});
  }
  ir::Value* bias(std::vector<int32_t> v, float scale) {
    return node("DequantizeLinear", {ints<int32_t>(ir::DType::Int32, {static_cast<int64_t>(v.size())}, v, "b"),
                                     scalar_f(scale), ints<int32_t>(ir::DType::Int32, {}, {0}, "bzp")});
  }
};

std::vector<float> ramp(int64_t n, float lo, float hi) {
  std::vector<float> v(n);
  for (int64_t i = 0; i < n; ++i) v[i] = lo + (hi - lo) * static_cast<float>((i * 7919) % n) / static_cast<float>(n);
  return v;
}

// The integer plan's outputs and the graph's own arithmetic (exact_qdq) on the same feeds.
std::pair<std::vector<float>, std::vector<float>> both_plans(Session& s, const std::vector<RValue>& feeds) {
  runtime::RunOptions exact;
  exact.exact_qdq = true;
  return {values_of(s.run(feeds)[0]), values_of(s.run(feeds, exact)[0])};
}

}  // namespace

TEST_CASE("QDQ Conv -> Relu -> MaxPool -> Gemm runs as integer kernels within one output step") {
  QdqBuilder b;
  ir::Value* x = b.g->add_input("x", ir::TensorType::of(ir::DType::Float, {2, 3, 6, 6}));
  const float xs = 2.f / 255, w1s = 0.01f, c1s = 0.05f, r1s = 0.03f, w2s = 0.02f, ys = 0.1f;
  std::vector<ir::Attribute> ca;
  ca.push_back(ir::Attribute::make_ints("pads", {1, 1, 1, 1}));
  ir::Value* conv =
      b.node("Conv", {b.qdq(x, xs, 128), b.weight({4, 3, 3, 3}, w1s, 1), b.bias({100, -200, 300, 0}, xs * w1s)},
             std::move(ca));
  ir::Value* relu = b.node("Relu", {b.qdq(conv, c1s, 120)});
  std::vector<ir::Attribute> pa;
  pa.push_back(ir::Attribute::make_ints("kernel_shape", {2, 2}));
  pa.push_back(ir::Attribute::make_ints("strides", {2, 2}));
  ir::Value* pool = b.node("MaxPool", {b.qdq(relu, r1s, 0)}, std::move(pa));
  ir::Value* flat = b.node("Flatten", {b.qdq(pool, r1s, 0)});
  std::vector<ir::Attribute> ga;
  ga.push_back(ir::Attribute::make_int("transB", 1));
  ir::Value* gemm = b.node(
      "Gemm", {b.qdq(flat, r1s, 0), b.weight({5, 36}, w2s, 2), b.bias({7, 8, 9, 10, -11}, r1s * w2s)}, std::move(ga));
  b.g->add_output(b.qdq(gemm, ys, 128));

  Session s(*b.m, 2);
  // Conv, Relu (table), MaxPool and Flatten (same scale), Gemm.
  CHECK(s.qdq_fused_groups() == 5);
  const std::vector<RValue> feeds = {RValue::of(floats({2, 3, 6, 6}, ramp(216, -1.f, 1.f)))};
  auto [fused, exact] = both_plans(s, feeds);
  REQUIRE(fused.size() == exact.size());
  int differ = 0;
  for (size_t i = 0; i < fused.size(); ++i) {
    CHECK(std::fabs(fused[i] - exact[i]) <= ys * 1.001f);  // at most one step of y's quantizer
    differ += fused[i] != exact[i];
  }
  CHECK(differ <= 1);
  CHECK(std::count(exact.begin(), exact.end(), exact[0]) < static_cast<long>(exact.size()));  // not constant
  // on_node runs the graph as written: the same values as exact_qdq.
  runtime::RunOptions watch;
  int nodes = 0;
  watch.on_node = [&](const ir::Node&, const std::vector<RValue>&) { ++nodes; };
  CHECK(values_of(s.run(feeds, watch)[0]) == exact);
  CHECK(nodes == static_cast<int>(b.g->node_count()));
}

TEST_CASE("QDQ Relu and MaxPool groups are exact: table and same-scale kernels equal the float ops") {
  QdqBuilder b;
  ir::Value* x = b.g->add_input("x", ir::TensorType::of(ir::DType::Float, {1, 2, 4, 4}));
  ir::Value* relu = b.node("Relu", {b.qdq(x, 0.02f, 100)});
  std::vector<ir::Attribute> pa;
  pa.push_back(ir::Attribute::make_ints("kernel_shape", {3, 3}));
  pa.push_back(ir::Attribute::make_ints("pads", {1, 1, 1, 1}));
  ir::Value* pool = b.node("MaxPool", {b.qdq(relu, 0.013f, 0)}, std::move(pa));
  b.g->add_output(b.qdq(pool, 0.013f, 0));
  Session s(*b.m, 1);
  CHECK(s.qdq_fused_groups() == 2);
  const std::vector<RValue> feeds = {RValue::of(floats({1, 2, 4, 4}, ramp(32, -2.f, 3.f)))};
  auto [fused, exact] = both_plans(s, feeds);
  CHECK(fused == exact);
}

TEST_CASE("QDQ MatMul: weights and activation x activation products, quantized and float outputs") {
  QdqBuilder b;
  ir::Value* x = b.g->add_input("x", ir::TensorType::of(ir::DType::Float, {2, 5, 16}));
  const float xs = 0.01f, ws = 0.02f, hs = 0.04f;
  ir::Value* xq = b.qdq(x, xs, 128);
  ir::Value* h = b.node("MatMul", {xq, b.weight({16, 16}, ws, 3)});  // weight, Q after
  ir::Value* hq = b.qdq(h, hs, 125);
  std::vector<ir::Attribute> ta;
  ta.push_back(ir::Attribute::make_ints("perm", {0, 2, 1}));
  ir::Value* ht = b.node("Transpose", {hq}, std::move(ta));     // same scale on both sides
  ir::Value* att = b.node("MatMul", {hq, b.qdq(ht, hs, 125)});  // activation x activation, Q after
  ir::Value* out = b.node("MatMul", {b.qdq(att, 0.5f, 128), b.weight({5, 3}, ws, 4)});  // no Q: float
  b.g->add_output(out);
  Session s(*b.m, 2);
  CHECK(s.qdq_fused_groups() == 4);  // three MatMuls and the Transpose
  const std::vector<RValue> feeds = {RValue::of(floats({2, 5, 16}, ramp(160, -1.f, 1.f)))};
  auto [fused, exact] = both_plans(s, feeds);
  REQUIRE(fused.size() == exact.size());
  float scale = 0;
  for (float v : exact) scale = std::max(scale, std::fabs(v));
  CHECK(scale > 0);
  for (size_t i = 0; i < fused.size(); ++i) CHECK(std::fabs(fused[i] - exact[i]) <= 0.02f * scale);
}

TEST_CASE("QDQ groups on int8 activations: the table is indexed by value + 128") {
  QdqBuilder b;
  ir::Value* x = b.g->add_input("x", ir::TensorType::of(ir::DType::Float, {1, 3, 4, 4}));
  ir::Value* relu = b.node("Relu", {b.qdq_s8(x, 0.02f)});
  ir::Value* conv = b.node("Conv", {b.qdq_s8(relu, 0.01f), b.weight({2, 3, 1, 1}, 0.01f, 5)});
  b.g->add_output(b.qdq_s8(conv, 0.05f));
  Session s(*b.m, 1);
  CHECK(s.qdq_fused_groups() == 2);
  const std::vector<RValue> feeds = {RValue::of(floats({1, 3, 4, 4}, ramp(48, -2.f, 2.f)))};
  auto [fused, exact] = both_plans(s, feeds);
  REQUIRE(fused.size() == exact.size());
  for (size_t i = 0; i < fused.size(); ++i) CHECK(std::fabs(fused[i] - exact[i]) <= 0.05f * 1.001f);
}

TEST_CASE("TensorPool reuses a freed block up to twice the size asked for, and counts what was asked") {
  runtime::TensorPool pool;
  runtime::TensorPool::Scope scope(pool);
  const void* big = nullptr;
  {
    runtime::Tensor t = runtime::new_tensor(ir::DType::Float, {25600});  // 100 KiB
    big = t.values<float>();
    CHECK(pool.peak_bytes() == 102400);
  }
  CHECK(pool.cached_bytes() == 102400);
  {
    // 60 KiB fits in the 100 KiB block: the pool hands it out again (no new memory to fault
    // in) and counts 60 KiB in use, not 100.
    runtime::Tensor t = runtime::new_tensor(ir::DType::Float, {15360});
    CHECK(static_cast<const void*>(t.values<float>()) == big);
    CHECK(pool.cached_bytes() == 0);
    CHECK(pool.peak_bytes() == 102400);
    // 40 KiB is less than half the block: a block of its own, while the first is in use.
    runtime::Tensor u = runtime::new_tensor(ir::DType::Float, {10240});
    CHECK(static_cast<const void*>(u.values<float>()) != big);
    CHECK(pool.peak_bytes() == 102400);
  }
  // Both came back; the 100 KiB block keeps its whole size.
  CHECK(pool.cached_bytes() == 102400 + 40960);
  {
    runtime::Tensor small = runtime::new_tensor(ir::DType::Float, {10240});
    runtime::Tensor larger = runtime::new_tensor(ir::DType::Float, {20480});  // 80 KiB: the 100 KiB block
    CHECK(static_cast<const void*>(larger.values<float>()) == big);
    CHECK(pool.peak_bytes() == 40960 + 81920);
  }
}
