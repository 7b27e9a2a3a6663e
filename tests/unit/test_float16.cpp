// The to-float16 pass (passes/convert/float16.h) on graphs built here: which values become
// 16-bit, where Casts go, what stays float and why, clamping, attributes that name types,
// subgraphs; and the converted model computes what the float one does (the executor runs
// both; float16 within 1e-2 of the output's scale). Against ONNX Runtime, on the fixtures:
// tests/interop/convert_interop.sh.
#include <doctest/doctest.h>
#include <fmt/format.h>

#include <cmath>
#include <filesystem>

#include "formats/onnx_io.h"
#include "formats/test_data.h"
#include "graph_builders.h"
#include "ir/edit.h"
#include "ir/error.h"
#include "ir/float_width.h"
#include "passes/convert/float16.h"
#include "passes/registry.h"
#include "runtime/executor.h"
#include "test_util.h"

using namespace slmops;
using namespace slmops::ir;
using test::count_op;
using test::f32;
using test::floats;
using test::ints;
using test::new_model;

namespace {

// The element type a value carries after conversion (initializer data or declared type).
DType type_of(const Value* v) {
  if (v->initializer) return v->initializer->dtype;
  return v->type.elem();
}

const Node* find_op(const Model& m, const std::string& op) {
  for (auto& n : m.graph->nodes())
    if (n->op_type == op) return n.get();
  return nullptr;
}

// x [2, 8] -> MatMul(w) -> Add(b) -> TopK(k=3) values -> Relu -> y; w also feeds a Transpose
// that only a blocked op (Max) reads.
Model mlp() {
  Model m = new_model(17);
  Graph& g = *m.graph;
  Value* x = g.add_input("x", f32({2, 8}));
  Value* w = floats(g, "w", {8, 6}, 1);
  Value* b = floats(g, "b", {6}, 2);
  Value* only_blocked = floats(g, "floor", {6}, 3);
  Node* mm = g.add_node("MatMul", {x, w}, {"mm"});
  Node* add = g.add_node("Add", {mm->outputs[0], b}, {"h"});
  Node* top = g.add_node("TopK", {add->outputs[0], ints(g, "k", {3})}, {"top", "idx"});
  Node* mx = g.add_node("Max", {add->outputs[0], only_blocked}, {"mx"});
  Node* relu = g.add_node("Relu", {top->outputs[0]}, {"y"});
  g.add_output(relu->outputs[0]);
  g.add_output(mx->outputs[0]);
  for (auto& o : g.outputs) o.value->type = f32({2, o.value->name == "y" ? 3 : 6});
  return m;
}

std::vector<float> as_floats(const Tensor& t) {
  std::vector<float> v(t.numel());
  for (size_t i = 0; i < v.size(); ++i) {
    if (t.dtype == DType::Float)
      v[i] = test::value_at<float>(t, i);
    else if (t.dtype == DType::Float16)
      v[i] = half_to_float(test::value_at<uint16_t>(t, i));
    else
      v[i] = bfloat16_to_float(test::value_at<uint16_t>(t, i));
  }
  return v;
}

// Runs `m` on x (converted to the type of its input x) and returns every output as floats.
std::vector<std::vector<float>> run(const Model& m, const std::vector<float>& x, std::vector<int64_t> dims) {
  runtime::Session s(m, 1);
  DType in = m.graph->inputs[0].value->type.elem();
  Tensor t = to_float_width(Tensor::from_values("", DType::Float, dims, x), in);
  std::vector<runtime::RValue> feeds;
  feeds.push_back(runtime::RValue::of(std::move(t)));
  std::vector<std::vector<float>> out;
  for (auto& r : s.run(std::move(feeds))) out.push_back(as_floats(r.tensor));
  return out;
}

void check_close(const std::vector<std::vector<float>>& a, const std::vector<std::vector<float>>& b, double rel) {
  REQUIRE(a.size() == b.size());
  for (size_t k = 0; k < a.size(); ++k) {
    REQUIRE(a[k].size() == b[k].size());
    double scale = 0, worst = 0;
    for (size_t i = 0; i < a[k].size(); ++i) {
      scale = std::max(scale, std::fabs(double(a[k][i])));
      worst = std::max(worst, std::fabs(double(a[k][i]) - b[k][i]));
    }
    CHECK(worst <= rel * std::max(scale, 1.0));
  }
}

}  // namespace

TEST_CASE("to-float16: floats become float16, blocked ops stay float behind Casts, outputs agree") {
  Model m = mlp();
  Model low = m.clone();
  auto st = passes::convert_float16(low, {});
  const Graph& g = *low.graph;
  // Graph inputs and outputs are float16 without keep-io-types.
  CHECK(g.inputs[0].value->type.elem() == DType::Float16);
  CHECK(g.outputs[0].value->type.elem() == DType::Float16);
  CHECK(g.outputs[1].value->type.elem() == DType::Float16);
  CHECK(g.outputs[0].value->name == "y");  // outputs keep their names
  CHECK(g.outputs[1].value->name == "mx");
  // w and b feed converted nodes; "floor" only the blocked Max: it stays float, not cast.
  CHECK(type_of(g.find_value("w")) == DType::Float16);
  CHECK(type_of(g.find_value("b")) == DType::Float16);
  CHECK(type_of(g.find_value("floor")) == DType::Float);
  CHECK(st.initializers_converted == 2);
  CHECK(st.initializers_kept_float == 1);
  // TopK and Max (ORT's default block list) read Casts to float; TopK's values and Max's
  // output go back to float16 (Max's for the graph output).
  CHECK(st.nodes_kept_float == 2);
  CHECK(st.kept_float.at("op-block-list: TopK") == 1);
  CHECK(st.kept_float.at("op-block-list: Max") == 1);
  const Node* top = find_op(low, "TopK");
  REQUIRE(top);
  REQUIRE(top->inputs[0]->producer);
  CHECK(top->inputs[0]->producer->op_type == "Cast");
  CHECK(top->inputs[0]->producer->attr_int("to", 0) == static_cast<int64_t>(DType::Float));
  // One Cast to float for h (shared by TopK and Max), one back for TopK's values, one for mx.
  CHECK(st.casts_inserted == 3);
  CHECK(count_op(low, "Cast") == 3);

  auto x = test::random_floats(16, 7);
  check_close(run(m, x, {2, 8}), run(low, x, {2, 8}), 1e-2);
}

TEST_CASE("to-float16 keep-io-types: the graph's inputs and outputs stay float, with Casts at the boundary") {
  Model m = mlp();
  passes::Float16Options o;
  o.keep_io_types = true;
  o.op_block_list = {};
  auto st = passes::convert_float16(m, o);
  const Graph& g = *m.graph;
  CHECK(g.inputs[0].value->type.elem() == DType::Float);
  CHECK(g.outputs[0].value->type.elem() == DType::Float);
  CHECK(g.outputs[0].value->name == "y");
  REQUIRE(g.outputs[0].value->producer);
  CHECK(g.outputs[0].value->producer->op_type == "Cast");
  CHECK(st.nodes_kept_float == 0);
  CHECK(type_of(g.find_value("floor")) == DType::Float16);  // Max converts now: its weight too
  CHECK(st.casts_inserted == 3);                            // x in, y and mx out
  // Saved and loaded, the model keeps the names and types.
  test::TempDir dir;
  formats::save_model(m, dir / "m.onnx");
  Model back = formats::load_model((dir / "m.onnx").string());
  CHECK(back.graph->outputs[1].value->name == "mx");
  CHECK(back.graph->outputs[1].value->type.elem() == DType::Float);
}

TEST_CASE("to-float16: node-block-list, schema limits, clamping and attributes that name types") {
  Model m = new_model(13);
  Graph& g = *m.graph;
  Value* x = g.add_input("x", f32({1, 4}));
  Value* big =
      g.add_initializer(Tensor::from_values("big", DType::Float, {4}, std::vector<float>{1e6f, -1e9f, 1e-9f, 0.5f}));
  Node* mul = g.add_node("Mul", {x, big}, {"m"}, {}, "scale_node");
  Node* shape = g.add_node("Shape", {mul->outputs[0]}, {"s"});
  Node* fill = g.add_node("ConstantOfShape", {shape->outputs[0]}, {"ones"});
  fill->attributes.push_back(
      Attribute::make_tensor("value", Tensor::from_values("", DType::Float, {1}, std::vector<float>{1.0f})));
  Node* cast = g.add_node("Cast", {shape->outputs[0]}, {"sf"});
  cast->attributes.push_back(Attribute::make_int("to", static_cast<int64_t>(DType::Float)));
  Node* add = g.add_node("Add", {mul->outputs[0], fill->outputs[0]}, {"a"});
  // Resize's scales must be float (tensor(float) in every opset): the node stays float.
  Node* rs =
      g.add_node("Resize",
                 {add->outputs[0], nullptr,
                  g.add_initializer(Tensor::from_values("scales", DType::Float, {2}, std::vector<float>{1.0f, 2.0f}))},
                 {"r"});
  g.add_output(rs->outputs[0]);
  g.add_output(cast->outputs[0]);

  Model a = m.clone();
  passes::Float16Options o;
  o.op_block_list = {};
  auto st = passes::convert_float16(a, o);
  CHECK(st.clamped_to_max == 2);  // 1e6 and -1e9 -> +-65504
  CHECK(st.raised_to_min == 1);   // 1e-9 -> 5.96e-8
  const Tensor& t = *a.graph->find_value("big")->initializer;
  CHECK(half_to_float(test::value_at<uint16_t>(t, 0)) == 65504.0f);
  CHECK(half_to_float(test::value_at<uint16_t>(t, 1)) == -65504.0f);
  CHECK(half_to_float(test::value_at<uint16_t>(t, 2)) > 0);
  CHECK(st.kept_float.count("input 2 of Resize (opset 13) cannot be float16") == 1);
  CHECK(find_op(a, "ConstantOfShape")->attr("value")->t->dtype == DType::Float16);
  const Node* c = nullptr;
  for (auto& n : a.graph->nodes())
    if (n->op_type == "Cast" && n->inputs[0]->name == "s") c = n.get();
  REQUIRE(c);
  CHECK(c->attr_int("to", 0) == static_cast<int64_t>(DType::Float16));

  // The node block list keeps the Mul float; "big" then feeds only it and stays float.
  Model b = m.clone();
  o.node_block_list = {"scale_node"};
  auto st2 = passes::convert_float16(b, o);
  CHECK(st2.kept_float.at("node-block-list") == 1);
  CHECK(type_of(b.graph->find_value("big")) == DType::Float);
  CHECK(st2.clamped_to_max == 0);

  // bfloat16: the same range as float, nothing clamped.
  Model c16 = m.clone();
  passes::Float16Options ob;
  ob.dtype = "bfloat16";
  ob.op_block_list = {};
  auto st3 = passes::convert_float16(c16, ob);
  CHECK(type_of(c16.graph->find_value("big")) == DType::BFloat16);
  CHECK(st3.clamped_to_max == 0);
}

// Runs `m` on a test_data_set folder, float inputs converted to the model's 16-bit input
// type; outputs as floats.
std::vector<std::vector<float>> run_case(const Model& m, const std::filesystem::path& dir) {
  runtime::Session s(m, 1);
  std::vector<runtime::RValue> feeds;
  for (size_t k = 0; k < m.graph->inputs.size(); ++k) {
    Tensor t = to_float_width(formats::load_tensor_pb(dir / fmt::format("input_{}.pb", k)),
                              m.graph->inputs[k].value->type.elem());
    feeds.push_back(runtime::RValue::of(std::move(t)));
  }
  std::vector<std::vector<float>> out;
  for (auto& r : s.run(std::move(feeds))) out.push_back(as_floats(r.tensor));
  return out;
}

TEST_CASE("to-float16: If and Loop bodies convert with their node; a blocked node keeps its body float") {
  for (const char* name : {"test_if", "test_loop11", "test_scan9_sum"}) {
    CAPTURE(name);
    const auto dir = test::onnx_testdata() / "node" / name;
    if (!std::filesystem::exists(dir / "model.onnx")) {
      MESSAGE("libonnx-testdata not installed: skipped");
      return;
    }
    Model m = formats::load_model((dir / "model.onnx").string());
    auto want = run_case(m, dir / "test_data_set_0");
    Model low = m.clone();
    auto st = passes::convert_float16(low, {});
    INFO(passes::float16_stats_json(st).dump());
    CHECK(st.nodes_kept_float == 0);
    CHECK(st.casts_inserted == 0);
    // Every float output of every body is float16 now.
    int body_outputs = 0;
    walk_graphs(*low.graph, [&](const Graph& g) {
      if (&g == low.graph.get()) return;
      for (auto& o : g.outputs)
        if (o.value->type.elem() != DType::Bool && o.value->type.elem() != DType::Int64) {
          CHECK(o.value->type.elem() == DType::Float16);
          ++body_outputs;
        }
    });
    CHECK(body_outputs > 0);
    check_close(want, run_case(low, dir / "test_data_set_0"), 1e-2);

    // The same op blocked: its body stays float, Casts only at the node's float16 neighbours.
    Model kept = m.clone();
    passes::Float16Options o;
    o.op_block_list = {"If", "Loop", "Scan"};
    auto st2 = passes::convert_float16(kept, o);
    CHECK(st2.nodes_kept_float == 1);
    walk_graphs(*kept.graph, [&](const Graph& g) {
      if (&g == kept.graph.get()) return;
      for (auto& o : g.outputs)
        if (o.value->type.is_tensor && o.value->type.elem() != DType::Bool && o.value->type.elem() != DType::Int64)
          CHECK(o.value->type.elem() == DType::Float);
    });
    for (auto& out : kept.graph->outputs) CHECK(out.value->type.elem() == DType::Float16);
    check_close(want, run_case(kept, dir / "test_data_set_0"), 1e-2);
  }
}

TEST_CASE("to-float16 is registered; an op-block-list entry that is no op type is refused") {
  const passes::PassInfo* p = passes::find_pass("to-float16");
  REQUIRE(p);
  auto problems = passes::check_pass_options(*p, {{"op-block-list", {"Resize", "Resise"}}}, passes::Naming::Cli);
  REQUIRE(problems.size() == 1);
  CHECK(problems[0].find("'Resise' is not an ONNX op type") != std::string::npos);
}

// x [n, 4] in [-4, 4] -> Mul 300 ("a", up to 1200) -> Mul 300 ("b", up to 360000: beyond
// float16) -> Mul 1e-4 -> y. Nodes unnamed, as exporters often leave them.
Model overflowing_chain() {
  Model m = new_model(17);
  Graph& g = *m.graph;
  Value* x = g.add_input("x", f32({-1, 4}));
  auto scalar = [&](const char* name, float v) {
    return g.add_initializer(Tensor::from_values(name, DType::Float, {}, std::vector<float>{v}));
  };
  Node* up1 = g.add_node("Mul", {x, scalar("c1", 300)}, {"a"});
  Node* up2 = g.add_node("Mul", {up1->outputs[0], scalar("c2", 300)}, {"b"});
  Node* down = g.add_node("Mul", {up2->outputs[0], scalar("c3", 1e-4f)}, {"y"});
  g.add_output(down->outputs[0]);
  g.outputs[0].value->type = f32({-1, 4});
  return m;
}

TEST_CASE("mixed-precision: the producer and readers of a value that overflows float16 on the data stay float") {
  const std::vector<float> data = test::random_floats(64 * 4, 7, -4, 4);
  passes::DataHooks hooks;
  hooks.open = [&](const std::string&, const Model&, int64_t batch, const passes::TextData&) {
    return std::unique_ptr<passes::FeedSource>(new test::FixedFeeds(data, {4}, batch));
  };
  passes::PassContext ctx;
  ctx.data = &hooks;
  ctx.verbosity = 0;
  const Model m = overflowing_chain();
  const auto want = run(m, std::vector<float>(data.begin(), data.begin() + 32), {8, 4});

  Model mixed = m.clone();
  passes::run_pass(*passes::find_pass("mixed-precision"), mixed, {{"calib-data", "calib.npz"}}, ctx);
  const auto& rep = ctx.report;
  REQUIRE(rep["overflow_kept_float"].size() == 2);  // the Mul writing b and the one reading it
  CHECK(rep["overflow_kept_float"][0]["max_abs"].get<double>() > 65504);
  CHECK(rep["nodes_named"] == 3);
  CHECK(rep["nodes_kept_float"] == 2);
  CHECK(type_of(mixed.graph->find_value("c1")) == DType::Float16);  // the first Mul is float16
  CHECK(type_of(mixed.graph->find_value("c2")) == DType::Float);
  CHECK(type_of(mixed.graph->find_value("c3")) == DType::Float);
  CHECK(count_op(mixed, "Cast") == 2);  // x to float16, a back to float
  CHECK(mixed.graph->inputs[0].value->type.elem() == DType::Float);  // keep-io-types by default
  check_close(want, run(mixed, std::vector<float>(data.begin(), data.begin() + 32), {8, 4}), 1e-2);

  // Plain float16 overflows there: b is clamped (its reader sees 65504 at most), y is wrong.
  Model plain = m.clone();
  passes::Float16Options o;
  o.keep_io_types = true;
  passes::convert_float16(plain, o);
  const auto got = run(plain, std::vector<float>(data.begin(), data.begin() + 32), {8, 4});
  double worst = 0;
  for (size_t i = 0; i < got[0].size(); ++i)
    worst = std::max(worst, std::fabs(double(got[0][i]) - want[0][i]) / std::max(1.0, std::fabs(double(want[0][i]))));
  CHECK(worst > 0.1);
}

TEST_CASE("mixed-precision needs calib-data; a bad max-degradation is refused") {
  const passes::PassInfo* p = passes::find_pass("mixed-precision");
  REQUIRE(p);
  auto problems = passes::check_pass_options(*p, nlohmann::json::object(), passes::Naming::Cli);
  REQUIRE(problems.size() == 1);
  CHECK(problems[0].find("--calib-data") != std::string::npos);
  problems = passes::check_pass_options(*p, {{"calib-data", "c.npz"}, {"max-degradation", "perplexity"}},
                                        passes::Naming::Recipe);
  REQUIRE(problems.size() == 1);
  CHECK(problems[0].find("expected METRIC:VALUE") != std::string::npos);
}

TEST_CASE("mixed-precision with max-degradation: nodes that lose too much in float16 go back to float until the "
          "goal is met") {
  // x in [-1, 1] -> Add 1000 -> Sub 1000 -> Mul 2 -> y: in float16 1000 + x keeps a step of
  // 0.5, so y is off by up to 0.5; the Sub (and the Add feeding it) must stay float.
  Model m = new_model(17);
  Graph& g = *m.graph;
  Value* x = g.add_input("x", f32({-1, 4}));
  auto scalar = [&](const char* name, float v) {
    return g.add_initializer(Tensor::from_values(name, DType::Float, {}, std::vector<float>{v}));
  };
  Node* add = g.add_node("Add", {x, scalar("k1", 1000)}, {"s"});
  Node* sub = g.add_node("Sub", {add->outputs[0], scalar("k2", 1000)}, {"d"});
  Node* mul = g.add_node("Mul", {sub->outputs[0], scalar("k3", 2)}, {"y"});
  g.add_output(mul->outputs[0]);
  g.outputs[0].value->type = f32({-1, 4});

  const std::vector<float> data = test::random_floats(32 * 4, 11, -1, 1);
  auto max_error = [&](const Model& a, const Model& b) {
    auto ya = run(a, data, {32, 4}), yb = run(b, data, {32, 4});
    double worst = 0;
    for (size_t i = 0; i < ya[0].size(); ++i) worst = std::max(worst, std::fabs(double(ya[0][i]) - yb[0][i]));
    return worst;
  };
  passes::DataHooks hooks;
  hooks.open = [&](const std::string&, const Model&, int64_t batch, const passes::TextData&) {
    return std::unique_ptr<passes::FeedSource>(new test::FixedFeeds(data, {4}, batch));
  };
  int measured = 0;
  hooks.measure = [&](const Model& cand, const Model& base, const std::string&, const std::string&,
                      const passes::TextData&) {
    ++measured;
    const double e = max_error(cand, base);
    return nlohmann::json{{"met", e <= 0.01}, {"value", e}, {"baseline", 0.0}};
  };
  passes::PassContext ctx;
  ctx.data = &hooks;
  ctx.verbosity = 0;
  Model mixed = m.clone();
  passes::run_pass(*passes::find_pass("mixed-precision"), mixed,
                   {{"calib-data", "calib.npz"}, {"max-degradation", "max_abs_err:0.01"}}, ctx);
  const auto& aa = ctx.report["accuracy_aware"];
  CHECK(aa["goal_met"] == true);
  const auto kept = aa["kept_float"].get<std::vector<std::string>>();
  CHECK(std::find(kept.begin(), kept.end(), "Sub_mp1") != kept.end());
  CHECK(kept.size() <= 2);  // Sub, and Add if needed; never the harmless Mul alone
  CHECK(aa["steps"].size() == kept.size() + 1);
  CHECK(measured == static_cast<int>(aa["steps"].size()));
  CHECK(ctx.report["overflow_kept_float"].empty());
  CHECK(max_error(mixed, m) <= 0.01);
  // The first candidate (everything float16) missed the goal.
  CHECK(aa["steps"][0]["met"] == false);
  CHECK(aa["steps"][0]["value"].get<double>() > 0.1);
}
