// ai.onnx.preview.training.Gradient in the executor: gradients of small models against closed
// forms (float) and central finite differences of the same session's y output (double):
//   d(Σ y)/dx_i ≈ (Σ y(x + h e_i) − Σ y(x − h e_i)) / 2h
// (the kernel seeds dy/dy with ones, so it computes the gradient of Σ y). Also the plan-time
// error for a node without a gradient rule, and that the gradient is taken at the Gradient
// node's inputs.
#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <vector>

#include "ir/error.h"
#include "ir/graph.h"
#include "runtime/executor.h"

using namespace slmops;
using runtime::RValue;
using runtime::Session;

namespace {

constexpr double kStep = 1e-5;          // finite-difference step (double)
constexpr double kFdTolerance = 1e-6;   // relative (plus the same absolute) bound vs. the FD value
constexpr const char* kTraining = "ai.onnx.preview.training";

template <typename T>
ir::Tensor tensor(ir::DType dt, std::vector<int64_t> dims, const std::vector<T>& v) {
  ir::Tensor t = runtime::new_tensor(dt, dims);
  REQUIRE(t.numel() == v.size());
  std::copy(v.begin(), v.end(), t.mutable_values<T>());
  return t;
}
ir::Tensor doubles(std::vector<int64_t> dims, const std::vector<double>& v) {
  return tensor(ir::DType::Double, std::move(dims), v);
}
ir::Tensor floats(std::vector<int64_t> dims, const std::vector<float>& v) {
  return tensor(ir::DType::Float, std::move(dims), v);
}

// n values spread over [lo, hi] without a regular pattern (deterministic).
std::vector<double> spread(size_t n, double lo, double hi, unsigned seed) {
  std::vector<double> v(n);
  for (size_t i = 0; i < n; ++i)
    v[i] = lo + (hi - lo) * std::fmod(0.618034 * static_cast<double>(i + seed * 7 + 1), 1.0);
  return v;
}

std::vector<double> values_of(const RValue& r) {
  REQUIRE(r.is_tensor());
  REQUIRE(r.tensor.dtype == ir::DType::Double);
  const double* p = r.tensor.values<double>();
  return std::vector<double>(p, p + r.tensor.numel());
}

std::unique_ptr<ir::Model> new_model() {
  auto m = std::make_unique<ir::Model>();
  m->ir_version = 8;
  m->opsets = {{"", 17}, {kTraining, 1}};
  m->graph = std::make_unique<ir::Graph>();
  return m;
}

ir::Value* constant(ir::Graph& g, const std::string& name, ir::Tensor t) {
  t.name = name;
  return g.add_initializer(std::move(t));
}

ir::Attribute strings(const std::string& name, std::vector<std::string> v) {
  ir::Attribute a;
  a.name = name;
  a.type = ir::AttrType::Strings;
  a.strings = std::move(v);
  return a;
}

// Gradient(xs, zs, y) reading `inputs` (the values of xs then zs); its outputs are added as
// graph outputs "d_<x>" after the ones already there.
void add_gradient(ir::Graph& g, const std::vector<ir::Value*>& inputs, std::vector<std::string> xs,
                  std::vector<std::string> zs, const std::string& y) {
  std::vector<std::string> outs;
  for (auto& x : xs) outs.push_back("d_" + x);
  std::vector<ir::Attribute> attrs;
  attrs.push_back(strings("xs", std::move(xs)));
  if (!zs.empty()) attrs.push_back(strings("zs", std::move(zs)));
  attrs.push_back(ir::Attribute::make_string("y", y));
  ir::Node* n = g.add_node("Gradient", inputs, outs, std::move(attrs), "grad", kTraining);
  for (ir::Value* v : n->outputs) g.add_output(v);
}

// Checks output `grad_out` of the session (the gradient for feed `x`) against central
// differences of Σ output 0 over every element of feed x.
void check_against_finite_differences(const Session& s, const std::vector<ir::Tensor>& feeds, size_t x,
                                      size_t grad_out) {
  std::vector<RValue> in;
  for (auto& t : feeds) in.push_back(RValue::of(t));
  const std::vector<double> grad = values_of(s.run(in)[grad_out]);
  REQUIRE(grad.size() == feeds[x].numel());
  auto sum_y = [&](size_t i, double delta) {
    std::vector<RValue> moved;
    for (size_t k = 0; k < feeds.size(); ++k) {
      ir::Tensor t = runtime::new_tensor(feeds[k].dtype, feeds[k].dims);
      std::copy_n(feeds[k].values<double>(), t.numel(), t.mutable_values<double>());
      if (k == x) t.mutable_values<double>()[i] += delta;
      moved.push_back(RValue::of(std::move(t)));
    }
    double total = 0;
    for (double v : values_of(s.run(moved)[0])) total += v;
    return total;
  };
  for (size_t i = 0; i < grad.size(); ++i) {
    const double fd = (sum_y(i, kStep) - sum_y(i, -kStep)) / (2 * kStep);
    INFO("input ", x, " element ", i);
    CHECK(std::fabs(grad[i] - fd) <= kFdTolerance * (1 + std::fabs(fd)));
  }
}

}  // namespace

TEST_CASE("Gradient of MatMul plus a broadcast bias matches the closed form (float)") {
  // Y = X·W + b, X [2,3], W [3,4], b [4] broadcast over rows. With dY = ones:
  //   dX[i,k] = Σ_j W[k,j]   dW[k,j] = Σ_i X[i,k]   db[j] = rows = 2.
  auto m = new_model();
  ir::Graph& g = *m->graph;
  ir::Value* x = g.add_input("X", ir::TensorType::of(ir::DType::Float, {2, 3}));
  ir::Value* w = g.add_input("W", ir::TensorType::of(ir::DType::Float, {3, 4}));
  ir::Value* b = g.add_input("b", ir::TensorType::of(ir::DType::Float, {4}));
  ir::Node* mm = g.add_node("MatMul", {x, w}, {"H"});
  ir::Node* add = g.add_node("Add", {mm->outputs[0], b}, {"Y"});
  g.add_output(add->outputs[0]);
  add_gradient(g, {x, w, b}, {"X", "W", "b"}, {}, "Y");

  const std::vector<float> xv = {1, 2, 3, 4, 5, 6};
  const std::vector<float> wv = {1, -2, 3, 0.5f, -1, 2, 0, 4, 2, 1, -3, 1};
  Session s(*m, 1);
  auto out = s.run({RValue::of(floats({2, 3}, xv)), RValue::of(floats({3, 4}, wv)),
                    RValue::of(floats({4}, {0.5f, 0.5f, 0.5f, 0.5f}))});
  REQUIRE(out.size() == 4);
  const ir::Tensor &dx = out[1].tensor, &dw = out[2].tensor, &db = out[3].tensor;
  CHECK(dx.dims == std::vector<int64_t>{2, 3});
  CHECK(dw.dims == std::vector<int64_t>{3, 4});
  CHECK(db.dims == std::vector<int64_t>{4});
  REQUIRE(dx.dtype == ir::DType::Float);
  for (int i = 0; i < 2; ++i)
    for (int k = 0; k < 3; ++k) {
      float row_sum = 0;
      for (int j = 0; j < 4; ++j) row_sum += wv[k * 4 + j];
      CHECK(dx.values<float>()[i * 3 + k] == doctest::Approx(row_sum));
    }
  for (int k = 0; k < 3; ++k)
    for (int j = 0; j < 4; ++j) CHECK(dw.values<float>()[k * 4 + j] == doctest::Approx(xv[k] + xv[3 + k]));
  for (int j = 0; j < 4; ++j) CHECK(db.values<float>()[j] == doctest::Approx(2.0f));
}

TEST_CASE("Gradient of a batched, broadcasting composite matches finite differences (double)") {
  // y = Sigmoid((Tanh(X·W + b) * s - Exp(b)) / k), X [2,2,3] batched against W [3,4], b [4]
  // read twice, s [2,1,1] a zs input, k [4] a constant initializer.
  auto m = new_model();
  ir::Graph& g = *m->graph;
  ir::Value* x = g.add_input("X", ir::TensorType::of(ir::DType::Double, {2, 2, 3}));
  ir::Value* w = g.add_input("W", ir::TensorType::of(ir::DType::Double, {3, 4}));
  ir::Value* b = g.add_input("b", ir::TensorType::of(ir::DType::Double, {4}));
  ir::Value* sc = g.add_input("s", ir::TensorType::of(ir::DType::Double, {2, 1, 1}));
  ir::Value* k = constant(g, "k", doubles({4}, {1.5, 2.0, 0.7, 1.1}));
  ir::Value* h = g.add_node("MatMul", {x, w}, {"h"})->outputs[0];
  ir::Value* p = g.add_node("Add", {h, b}, {"p"})->outputs[0];
  ir::Value* t = g.add_node("Tanh", {p}, {"t"})->outputs[0];
  ir::Value* q = g.add_node("Mul", {t, sc}, {"q"})->outputs[0];
  ir::Value* e = g.add_node("Exp", {b}, {"e"})->outputs[0];
  ir::Value* r = g.add_node("Sub", {q, e}, {"r"})->outputs[0];
  ir::Value* d = g.add_node("Div", {r, k}, {"d"})->outputs[0];
  ir::Value* y = g.add_node("Sigmoid", {d}, {"y"})->outputs[0];
  g.add_output(y);
  add_gradient(g, {x, w, b, sc}, {"X", "W", "b"}, {"s"}, "y");

  Session s(*m, 1);
  const std::vector<ir::Tensor> feeds = {doubles({2, 2, 3}, spread(12, -1, 1, 1)),
                                         doubles({3, 4}, spread(12, -1, 1, 2)), doubles({4}, spread(4, -0.5, 0.5, 3)),
                                         doubles({2, 1, 1}, {0.8, -1.3})};
  auto out = s.run({RValue::of(feeds[0]), RValue::of(feeds[1]), RValue::of(feeds[2]), RValue::of(feeds[3])});
  REQUIRE(out.size() == 4);  // y, dX, dW, db: no output for zs
  CHECK(out[1].tensor.dims == std::vector<int64_t>{2, 2, 3});
  CHECK(out[2].tensor.dims == std::vector<int64_t>{3, 4});
  CHECK(out[3].tensor.dims == std::vector<int64_t>{4});
  for (size_t i = 0; i < 3; ++i) check_against_finite_differences(s, feeds, i, 1 + i);
}

TEST_CASE("every unary rule matches finite differences (double)") {
  // y = op(x) * w, so that dy/dx is not the same for every element.
  for (const char* op : {"Neg", "Identity", "Relu", "Sigmoid", "Tanh", "Exp", "Log", "Sqrt"}) {
    INFO("op ", op);
    auto m = new_model();
    ir::Graph& g = *m->graph;
    ir::Value* x = g.add_input("x", ir::TensorType::of(ir::DType::Double, {2, 3}));
    ir::Value* w = constant(g, "w", doubles({3}, {1.5, -0.5, 2.0}));
    ir::Value* u = g.add_node(op, {x}, {"u"})->outputs[0];
    g.add_output(g.add_node("Mul", {u, w}, {"y"})->outputs[0]);
    add_gradient(g, {x}, {"x"}, {}, "y");
    Session s(*m, 1);
    // Log and Sqrt need x > 0; Relu gets both signs, away from its kink at 0.
    const bool positive = std::string(op) == "Log" || std::string(op) == "Sqrt";
    const std::vector<double> xv =
        positive ? spread(6, 0.3, 2.0, 4) : std::vector<double>{-1.2, 0.4, 0.9, -0.3, 1.7, -2.1};
    check_against_finite_differences(s, {doubles({2, 3}, xv)}, 0, 1);
  }
}

TEST_CASE("every binary elementwise rule reduces broadcast gradients to each input's shape (double)") {
  struct Shapes {
    std::vector<int64_t> a, b;
  };
  for (const char* op : {"Add", "Sub", "Mul", "Div"})
    for (const Shapes& sh : {Shapes{{2, 3}, {3}}, Shapes{{2, 1}, {1, 3}}, Shapes{{2, 3}, {}}, Shapes{{3}, {2, 2, 3}}}) {
      INFO("op ", op, " a rank ", sh.a.size(), " b rank ", sh.b.size());
      auto m = new_model();
      ir::Graph& g = *m->graph;
      ir::Value* a = g.add_input("a", ir::TensorType::of(ir::DType::Double, sh.a));
      ir::Value* b = g.add_input("b", ir::TensorType::of(ir::DType::Double, sh.b));
      g.add_output(g.add_node(op, {a, b}, {"y"})->outputs[0]);
      add_gradient(g, {a, b}, {"a", "b"}, {}, "y");
      Session s(*m, 1);
      ir::Tensor ta = doubles(sh.a, spread(ir::element_count(sh.a), -1.5, 1.5, 5));
      ir::Tensor tb = doubles(sh.b, spread(ir::element_count(sh.b), 0.5, 2.0, 6));  // Div: b away from 0
      auto out = s.run({RValue::of(ta), RValue::of(tb)});
      CHECK(out[1].tensor.dims == sh.a);
      CHECK(out[2].tensor.dims == sh.b);
      check_against_finite_differences(s, {ta, tb}, 0, 1);
      check_against_finite_differences(s, {ta, tb}, 1, 2);
    }
}

TEST_CASE("MatMul gradients for 1-D, 2-D and broadcast batched operands (double)") {
  struct Shapes {
    std::vector<int64_t> a, b;
  };
  for (const Shapes& sh : {Shapes{{2, 3}, {3, 4}}, Shapes{{3}, {3, 4}}, Shapes{{2, 3}, {3}}, Shapes{{3}, {3}},
                           Shapes{{2, 2, 3}, {2, 3, 4}}, Shapes{{2, 1, 2, 3}, {3, 3, 4}}, Shapes{{3, 4}, {2, 4, 2}}}) {
    INFO("a rank ", sh.a.size(), " b rank ", sh.b.size());
    auto m = new_model();
    ir::Graph& g = *m->graph;
    ir::Value* a = g.add_input("a", ir::TensorType::of(ir::DType::Double, sh.a));
    ir::Value* b = g.add_input("b", ir::TensorType::of(ir::DType::Double, sh.b));
    ir::Value* mm = g.add_node("MatMul", {a, b}, {"mm"})->outputs[0];
    // Squaring makes dy/dmm depend on the element, so every entry of the gradient differs.
    g.add_output(g.add_node("Mul", {mm, mm}, {"y"})->outputs[0]);
    add_gradient(g, {a, b}, {"a", "b"}, {}, "y");
    Session s(*m, 1);
    ir::Tensor ta = doubles(sh.a, spread(ir::element_count(sh.a), -1, 1, 7));
    ir::Tensor tb = doubles(sh.b, spread(ir::element_count(sh.b), -1, 1, 8));
    check_against_finite_differences(s, {ta, tb}, 0, 1);
    check_against_finite_differences(s, {ta, tb}, 1, 2);
  }
}

TEST_CASE("Gradient is taken at its inputs; an x that y does not depend on gets zeros") {
  // y = x * x with Gradient(xs=[x, unused]) fed (x2, u): d_x = 2 * x2, not 2 * x.
  auto m = new_model();
  ir::Graph& g = *m->graph;
  ir::Value* x = g.add_input("x", ir::TensorType::of(ir::DType::Double, {3}));
  ir::Value* x2 = g.add_input("x2", ir::TensorType::of(ir::DType::Double, {3}));
  ir::Value* unused = g.add_input("unused", ir::TensorType::of(ir::DType::Double, {2}));
  g.add_output(g.add_node("Mul", {x, x}, {"y"})->outputs[0]);
  add_gradient(g, {x2, unused}, {"x", "unused"}, {}, "y");
  Session s(*m, 1);
  auto out = s.run({RValue::of(doubles({3}, {1, 2, 3})), RValue::of(doubles({3}, {10, 20, -5})),
                    RValue::of(doubles({2}, {7, 7}))});
  REQUIRE(out.size() == 3);
  CHECK(values_of(out[0]) == std::vector<double>{1, 4, 9});
  CHECK(values_of(out[1]) == std::vector<double>{20, 40, -10});
  CHECK(values_of(out[2]) == std::vector<double>{0, 0});
}

// The message of the error that planning the model throws ("" when it plans).
static std::string plan_error(const ir::Model& m) {
  try {
    Session s(m, 1);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST_CASE("a node without a gradient rule between xs and y fails at plan time, naming it") {
  auto m = new_model();
  ir::Graph& g = *m->graph;
  ir::Value* x = g.add_input("x", ir::TensorType::of(ir::DType::Float, {2, 3}));
  ir::Value* sm = g.add_node("Softmax", {x}, {"sm"}, {}, "my_softmax")->outputs[0];
  g.add_output(g.add_node("Relu", {sm}, {"y"})->outputs[0]);
  add_gradient(g, {x}, {"x"}, {}, "y");
  const std::string message = plan_error(*m);
  INFO(message);
  CHECK(message.find("'my_softmax' (Softmax)") != std::string::npos);
  CHECK(message.find("no gradient rule") != std::string::npos);
  CHECK(message.find('\n') == std::string::npos);
}

TEST_CASE("y reading a graph input that is neither in xs nor zs fails at plan time") {
  auto m = new_model();
  ir::Graph& g = *m->graph;
  ir::Value* x = g.add_input("x", ir::TensorType::of(ir::DType::Float, {2}));
  ir::Value* other = g.add_input("other", ir::TensorType::of(ir::DType::Float, {2}));
  g.add_output(g.add_node("Add", {x, other}, {"y"})->outputs[0]);
  add_gradient(g, {x}, {"x"}, {}, "y");
  const std::string message = plan_error(*m);
  CHECK(message.find("'other'") != std::string::npos);
  CHECK(message.find("zs") != std::string::npos);
}
