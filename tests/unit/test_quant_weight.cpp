// int4/int8-weight on small in-memory models: the rewrite's graph (MatMulNBits or blocked
// DequantizeLinear), its weights against the block quantizer's output, and the quantized
// model run through the executor against the float one. Also the helpers every mode uses
// (globs, opset upgrade, Model::clone).
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>

#include "ir/error.h"
#include "ir/graph.h"
#include "passes/quant/block_quant.h"
#include "passes/quant/quantize.h"
#include "runtime/executor.h"

using namespace slmops;
using namespace slmops::ir;
using namespace slmops::passes;

namespace {

constexpr int64_t kK = 64, kN = 24, kRows = 5;

std::vector<float> random_floats(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

// y = MatMul(x [rows, K], W [K, N]); z = ReduceMean(y, axes=[1]) when `reduce` (opset 17).
Model matmul_model(bool reduce = false) {
  Model m;
  m.ir_version = 8;
  m.opsets = {{"", 17}};
  m.graph = std::make_unique<Graph>();
  Graph& g = *m.graph;
  Value* x = g.add_input("x", TensorType::of(DType::Float, {kRows, kK}));
  Value* w = g.add_initializer(Tensor::from_values("W", DType::Float, {kK, kN}, random_floats(kK * kN, 7, 0.05f)));
  Node* mm = g.add_node("MatMul", {x, w}, {"y"}, {}, "mm");
  if (reduce) {
    std::vector<Attribute> attrs;
    attrs.push_back(Attribute::make_ints("axes", {1}));
    Node* r = g.add_node("ReduceMean", {mm->outputs[0]}, {"z"}, std::move(attrs), "mean");
    g.add_output(r->outputs[0]);
  } else {
    g.add_output(mm->outputs[0]);
  }
  return m;
}

std::vector<float> run(const Model& m, const std::vector<float>& x) {
  runtime::Session s(m, 1);
  Tensor t = Tensor::from_values("x", DType::Float, {kRows, kK}, x);
  auto outs = s.run({runtime::RValue::of(t)});
  const Tensor& y = outs[0].tensor;
  return std::vector<float>(y.values<float>(), y.values<float>() + y.numel());
}

const Node* find_op(const Graph& g, const std::string& op) {
  for (auto& n : g.nodes())
    if (n->op_type == op) return n.get();
  return nullptr;
}

QuantizeOptions weight_opts(const std::string& mode, bool sym, const std::string& format = "matmulnbits") {
  QuantizeOptions o;
  o.mode = mode;
  o.symmetric = sym;
  o.block_size = 32;
  o.format = format;
  return o;
}

void quantize(Model& m, const QuantizeOptions& o, quant::QuantReport& rep) {
  passes::NodeFilter f(o.selection(), {"MatMul", "Gemm"});
  quant::quantize_weight_only(m, o, f, nullptr, 1, rep);
}

// The quantized model's output equals x * dequant(W) computed here in double.
void check_matches_dequantized(const Model& q, const std::vector<float>& wdq) {
  auto x = random_floats(kRows * kK, 3);
  auto y = run(q, x);
  for (int64_t r = 0; r < kRows; ++r)
    for (int64_t n = 0; n < kN; ++n) {
      double want = 0;
      for (int64_t k = 0; k < kK; ++k) want += double(x[r * kK + k]) * wdq[k * kN + n];
      CHECK(y[r * kN + n] == doctest::Approx(want).epsilon(1e-4).scale(1.0));
    }
}

}  // namespace

TEST_CASE("int4-weight: MatMul becomes MatMulNBits with the block quantizer's bytes") {
  for (bool sym : {true, false}) {
    CAPTURE(sym);
    Model m = matmul_model();
    std::vector<float> w(m.graph->initializers[0]->initializer->values<float>(),
                         m.graph->initializers[0]->initializer->values<float>() + kK * kN);
    quant::QuantReport rep;
    quantize(m, weight_opts("int4-weight", sym), rep);
    const Node* nb = find_op(*m.graph, "MatMulNBits");
    REQUIRE(nb);
    CHECK(nb->domain == "com.microsoft");
    CHECK(nb->name == "mm");
    CHECK(nb->attr_int("K", 0) == kK);
    CHECK(nb->attr_int("N", 0) == kN);
    CHECK(nb->attr_int("bits", 0) == 4);
    CHECK(nb->attr_int("block_size", 0) == 32);
    CHECK(nb->outputs[0]->is_graph_output());
    CHECK(nb->inputs.size() == (sym ? 3u : 4u));
    CHECK(m.opset("com.microsoft") == 1);
    const Value* old_w = m.graph->find_value("W");
    CHECK((old_w == nullptr || old_w->kind != Value::Kind::Initializer));

    auto b = quant::quantize_rtn(w.data(), kK, kN, {4, 32, sym});
    auto packed = quant::pack_matmulnbits_b(b, 4, 32);
    const Tensor& B = *nb->inputs[1]->initializer;
    CHECK(B.dtype == DType::UInt8);
    CHECK(B.dims == std::vector<int64_t>{kN, 2, 16});
    REQUIRE(B.data.size() == packed.size());
    CHECK(std::equal(packed.begin(), packed.end(), B.data.data()));
    const Tensor& S = *nb->inputs[2]->initializer;
    CHECK(S.dims == std::vector<int64_t>{kN, 2});
    CHECK(std::equal(b.scales.begin(), b.scales.end(), S.values<float>()));
    if (!sym) {
      auto zp = quant::pack_zero_points(b, 4);
      const Tensor& Z = *nb->inputs[3]->initializer;
      CHECK(Z.dims == std::vector<int64_t>{kN, 1});
      CHECK(std::equal(zp.begin(), zp.end(), Z.data.data()));
    }
    CHECK(rep.nodes.size() == 1);
    CHECK(rep.nodes[0].bytes_before == kK * kN * 4);
    CHECK(rep.nodes[0].bytes_after == kN * 32 + kN * 2 * 4 + (sym ? 0 : kN));
    check_matches_dequantized(m, quant::dequantize(b, 32));
  }
}

TEST_CASE("int4-weight --format qdq: blocked int4 DequantizeLinear feeding MatMul, opset 21") {
  for (bool sym : {true, false}) {
    CAPTURE(sym);
    Model m = matmul_model(true);
    std::vector<float> w(m.graph->initializers[0]->initializer->values<float>(),
                         m.graph->initializers[0]->initializer->values<float>() + kK * kN);
    quant::QuantReport rep;
    quantize(m, weight_opts("int4-weight", sym, "qdq"), rep);
    const Node* dq = find_op(*m.graph, "DequantizeLinear");
    REQUIRE(dq);
    CHECK(dq->attr_int("axis", -1) == 0);
    CHECK(dq->attr_int("block_size", 0) == 32);
    const Tensor& q = *dq->inputs[0]->initializer;
    CHECK(q.dtype == (sym ? DType::Int4 : DType::UInt4));
    CHECK(q.dims == std::vector<int64_t>{kK, kN});
    CHECK(dq->inputs[1]->initializer->dims == std::vector<int64_t>{2, kN});
    CHECK(find_op(*m.graph, "MatMul")->inputs[1] == dq->outputs[0]);
    // The ONNX int4 tensor: row-major [K, N], two per byte, first in the low nibble; signed
    // values are the unsigned codes minus 8.
    auto b = quant::quantize_rtn(w.data(), kK, kN, {4, 32, sym});
    for (int64_t k : {0, 1, 31, 63})
      for (int64_t n : {0, 1, 23}) {
        size_t idx = static_cast<size_t>(k * kN + n);
        int nib = (q.data.data()[idx / 2] >> (4 * (idx % 2))) & 0xF;
        int want = int(b.q[n * kK + k]) - (sym ? 8 : 0);
        CHECK(nib == (want & 0xF));
      }
    // Opset 21: ReduceMean's axes moved from the attribute to an input.
    CHECK(m.opset("") == 21);
    CHECK(m.ir_version >= 10);
    const Node* mean = find_op(*m.graph, "ReduceMean");
    CHECK(mean->attr("axes") == nullptr);
    REQUIRE(mean->inputs.size() == 2);
    CHECK(mean->inputs[1]->initializer->values<int64_t>()[0] == 1);
    runtime::Session s(m, 1);  // plans: every op has a kernel at opset 21
  }
}

TEST_CASE("int8-weight: bits 8, one byte per value, within half a step of the float weight") {
  Model m = matmul_model();
  std::vector<float> w(m.graph->initializers[0]->initializer->values<float>(),
                       m.graph->initializers[0]->initializer->values<float>() + kK * kN);
  quant::QuantReport rep;
  quantize(m, weight_opts("int8-weight", false), rep);
  const Node* nb = find_op(*m.graph, "MatMulNBits");
  REQUIRE(nb);
  CHECK(nb->attr_int("bits", 0) == 8);
  CHECK(nb->inputs[1]->initializer->dims == std::vector<int64_t>{kN, 2, 32});
  auto b = quant::quantize_rtn(w.data(), kK, kN, {8, 32, false});
  auto dq = quant::dequantize(b, 32);
  for (int64_t k = 0; k < kK; ++k)
    for (int64_t n = 0; n < kN; ++n)
      CHECK(std::fabs(dq[k * kN + n] - w[k * kN + n]) <= 0.5f * b.scales[n * 2 + k / 32] * 1.0001f);
  check_matches_dequantized(m, dq);
}

TEST_CASE("weight-only refuses a block size that does not divide K, naming the node") {
  Model m = matmul_model();
  auto o = weight_opts("int4-weight", true);
  o.block_size = 128;
  quant::QuantReport rep;
  try {
    quantize(m, o, rep);
    FAIL("expected an error");
  } catch (const Error& e) {
    CHECK(e.code() == ExitCode::BadInput);
    CHECK(std::string(e.what()).find("'mm'") != std::string::npos);
  }
  CHECK(find_op(*m.graph, "MatMul") != nullptr);  // nothing changed
}

TEST_CASE("NodeFilter: op types, excluded names and globs") {
  CHECK(passes::glob_match("/blocks.0/*", "/blocks.0/attn/q/MatMul"));
  CHECK_FALSE(passes::glob_match("/blocks.0/*", "/blocks.1/attn/q/MatMul"));
  CHECK(passes::glob_match("*q?MatMul", "/a/q/MatMul"));
  CHECK_FALSE(passes::glob_match("mm", "mm2"));
  Model m = matmul_model();
  QuantizeOptions o;
  o.exclude_nodes = {"m?", "nothing*"};
  passes::NodeFilter f(o.selection(), {"MatMul"});
  CHECK_FALSE(f.allows(*m.graph->nodes().front()));
  CHECK(f.unmatched(*m.graph) == std::vector<std::string>{"nothing*"});
}

TEST_CASE("Model::clone is deep: editing the copy leaves the original, weights are shared") {
  Model m = matmul_model(true);
  Model c = m.clone();
  CHECK(c.graph->node_count() == m.graph->node_count());
  const Tensor& a = *m.graph->initializers[0]->initializer;
  const Tensor& b = *c.graph->initializers[0]->initializer;
  CHECK(a.data.data() == b.data.data());  // same bytes, not copied
  c.graph->remove_node(c.graph->nodes().front().get());
  CHECK(m.graph->node_count() == 2);
  CHECK(m.graph->nodes().front()->inputs[1]->consumers.size() == 1);
  auto x = random_floats(kRows * kK, 5);
  Model d = m.clone();
  CHECK(run(d, x) == run(m, x));
}

TEST_CASE("quantize_rtn_packed writes what quantize_rtn + pack_matmulnbits_b would") {
  for (int bits : {4, 8})
    for (bool sym : {true, false}) {
      CAPTURE(bits);
      CAPTURE(sym);
      const int64_t K = 128, N = 70;  // N not a multiple of the 64-column tile
      auto w = random_floats(K * N, 11);
      w[5] = std::nanf("");  // NaN and infinities follow the same rules in both paths
      w[9 * N + 3] = 1e30f;
      quant::BlockParams p{bits, 32, sym};
      auto ref = quant::quantize_rtn(w.data(), K, N, p);
      auto packed = quant::pack_matmulnbits_b(ref, bits, 32);
      std::vector<uint8_t> B(packed.size()), zp(ref.zero_points.size());
      std::vector<float> sc(ref.scales.size());
      quant::quantize_rtn_packed(w.data(), K, N, p, B.data(), sc.data(), zp.data());
      CHECK(B == packed);
      CHECK(zp == ref.zero_points);
      CHECK(std::memcmp(sc.data(), ref.scales.data(), sc.size() * sizeof(float)) == 0);
    }
}

TEST_CASE(
    "quantize_rtn_rows_packed (rows of W^T, as convert HF_DIR --precision int4 reads them) writes the same bytes") {
  // Float32 rows and bfloat16 rows (the AVX2 kernel where the CPU has it and K is a multiple of
  // 32, rtn_row otherwise; unit_isa_portable runs this without AVX2), against the column tiles.
  const float inf = std::numeric_limits<float>::infinity();
  for (int bits : {4, 8})
    for (bool sym : {true, false})
      for (int64_t K : {int64_t{256}, int64_t{48}})
        for (int64_t bs : {int64_t{16}, int64_t{32}, int64_t{128}}) {
          if (K % bs != 0) continue;
          CAPTURE(bits);
          CAPTURE(sym);
          CAPTURE(K);
          CAPTURE(bs);
          const int64_t N = 70;
          auto w = random_floats(K * N, 13);
          w[static_cast<size_t>(9 * N + 3)] = 1e30f;  // an outlier: its block's scale, the others' codes
          for (int64_t k = 0; k < 16; ++k) {
            w[static_cast<size_t>(k * N + 7)] = 0.0f;                   // a block of zeros (column 7)
            w[static_cast<size_t>(k * N + 8)] = 1e-40f;                 // denormals: the reciprocal overflows
            w[static_cast<size_t>(k * N + 9)] = -0.75f;                 // constant and negative
            w[static_cast<size_t>(k * N + 10)] = k % 2 ? -0.0f : 0.0f;  // signed zeros
          }
          w[static_cast<size_t>(3 * N + 11)] = std::nanf("");  // NaN: code 0, left out of min and max
          w[static_cast<size_t>(5 * N + 12)] = inf;
          w[static_cast<size_t>(7 * N + 13)] = -inf;
          for (float& v : w) {  // bfloat16-exact, so both inputs hold the same values
            uint32_t u;
            std::memcpy(&u, &v, 4);
            if (!std::isnan(v)) u &= 0xffff0000u;
            std::memcpy(&v, &u, 4);
          }
          std::vector<float> wt(static_cast<size_t>(K * N));
          std::vector<uint16_t> wt16(wt.size());
          for (int64_t k = 0; k < K; ++k)
            for (int64_t n = 0; n < N; ++n) {
              const float v = w[static_cast<size_t>(k * N + n)];
              uint32_t u;
              std::memcpy(&u, &v, 4);
              wt[static_cast<size_t>(n * K + k)] = v;
              wt16[static_cast<size_t>(n * K + k)] = static_cast<uint16_t>(u >> 16);
            }
          quant::BlockParams p{bits, bs, sym};
          const int64_t kb = K / bs;
          std::vector<uint8_t> B(static_cast<size_t>(N * kb * bs * bits / 8)), B2(B.size()), B3(B.size()),
              zp(static_cast<size_t>(N * kb)), zp2(zp.size()), zp3(zp.size());
          std::vector<float> sc(zp.size()), sc2(zp.size()), sc3(zp.size());
          quant::quantize_rtn_packed(w.data(), K, N, p, B.data(), sc.data(), zp.data());
          quant::quantize_rtn_rows_packed(wt.data(), K, N, p, B2.data(), sc2.data(), zp2.data());
          quant::quantize_rtn_rows_packed_bf16(wt16.data(), K, N, p, B3.data(), sc3.data(), zp3.data());
          CHECK(B == B2);
          CHECK(zp == zp2);
          CHECK(std::memcmp(sc.data(), sc2.data(), sc.size() * sizeof(float)) == 0);
          CHECK(B == B3);
          CHECK(zp == zp3);
          CHECK(std::memcmp(sc.data(), sc3.data(), sc.size() * sizeof(float)) == 0);
        }
}

TEST_CASE("pruned zeros survive RTN and HQQ weight quantization (prune, then quantize)") {
  // Every block's range holds 0 (asymmetric: [min(0, lo), max(0, hi)]; symmetric: centred), so a
  // zero weight gets the code of the zero point and dequantizes to exactly 0.
  const int64_t K = 128, N = 40;
  auto w = random_floats(K * N, 17);
  for (size_t i = 0; i < w.size(); i += 2) w[i] = 0.0f;                       // 50% unstructured
  for (int64_t k = 0; k < 32; ++k) w[static_cast<size_t>(k * N + 5)] = 0.0f;  // a whole block of zeros
  for (int bits : {4, 8})
    for (bool sym : {true, false})
      for (int algo = 0; algo < 2; ++algo) {
        CAPTURE(bits);
        CAPTURE(sym);
        CAPTURE(algo);
        quant::BlockParams p{bits, 32, sym};
        auto q = algo == 0 ? quant::quantize_rtn(w.data(), K, N, p) : quant::quantize_hqq(w.data(), K, N, p, 10);
        auto d = quant::dequantize(q, 32);
        int64_t kept = 0;
        for (size_t i = 0; i < w.size(); ++i)
          if (w[i] == 0.0f) kept += d[i] == 0.0f;
        CHECK(kept == static_cast<int64_t>(std::count(w.begin(), w.end(), 0.0f)));
      }
}

TEST_CASE("int4-weight quantizes Gemm(A, B^T, C) into MatMulNBits with the bias, or DQ + Gemm transB 0") {
  for (const char* format : {"matmulnbits", "qdq"}) {
    CAPTURE(format);
    Model m;
    m.ir_version = 8;
    m.opsets = {{"", 17}};
    m.graph = std::make_unique<Graph>();
    Graph& g = *m.graph;
    Value* x = g.add_input("x", TensorType::of(DType::Float, {kRows, kK}));
    auto wt = random_floats(kN * kK, 9, 0.05f);  // [N, K]: transB = 1
    Value* w = g.add_initializer(Tensor::from_values("Wt", DType::Float, {kN, kK}, wt));
    Value* c = g.add_initializer(Tensor::from_values("C", DType::Float, {kN}, random_floats(kN, 4)));
    Node* gemm = g.add_node("Gemm", {x, w, c}, {"y"}, quant::attr_list(Attribute::make_int("transB", 1)), "gemm");
    g.add_output(gemm->outputs[0]);
    quant::QuantReport rep;
    quantize(m, weight_opts("int4-weight", false, format), rep);
    REQUIRE(rep.nodes.size() == 1);
    CHECK(rep.nodes[0].op_type == "Gemm");
    if (std::string(format) == "matmulnbits") {
      const Node* nb = find_op(*m.graph, "MatMulNBits");
      REQUIRE(nb);
      REQUIRE(nb->inputs.size() == 6);
      CHECK(nb->inputs[5] == c);
    } else {
      const Node* gm = find_op(*m.graph, "Gemm");
      REQUIRE(gm);
      CHECK(gm->attr_int("transB", 1) == 0);
      CHECK(gm->inputs[1]->producer->op_type == "DequantizeLinear");
    }
    // Against x * dequant(W^T) + C computed here.
    std::vector<float> kn(kK * kN);
    for (int64_t n = 0; n < kN; ++n)
      for (int64_t k = 0; k < kK; ++k) kn[k * kN + n] = wt[n * kK + k];
    auto dq = quant::dequantize(quant::quantize_rtn(kn.data(), kK, kN, {4, 32, false}), 32);
    auto xin = random_floats(kRows * kK, 3);
    auto y = run(m, xin);
    const float* cv = c->initializer->values<float>();
    for (int64_t r = 0; r < kRows; ++r)
      for (int64_t n = 0; n < kN; ++n) {
        double want = cv[n];
        for (int64_t k = 0; k < kK; ++k) want += double(xin[r * kK + k]) * dq[k * kN + n];
        CHECK(y[r * kN + n] == doctest::Approx(want).epsilon(1e-4).scale(1.0));
      }
  }
}
