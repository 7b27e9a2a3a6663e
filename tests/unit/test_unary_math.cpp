// The vectorized float32 math of runtime/kernels/unary_math.h against the double-precision
// libm functions (correctly rounded to float), in ulps, over a sweep of the float range and
// the special values, for every kernel set (portable, AVX+FMA, AVX2). Then the element-wise ops
// that use them, and the broadcast fast path of the binary ops, against their definitions.
#include <doctest/doctest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "ir/graph.h"
#include "runtime/executor.h"
#include "runtime/kernels/unary_math.h"
#include "test_util.h"

using namespace slmops::runtime;
using kernels::UnaryOp;

namespace {

// Largest allowed distance from the correctly rounded result, in units in the last place
// (the polynomials measure 1-2; the double libm functions they replace are correctly
// rounded after the cast to float).
constexpr int64_t kMaxUlp = 2;

// Floats ordered as integers: adjacent floats differ by 1 (also across zero and into the
// denormals).
int64_t ordered(float f) {
  const int32_t i = std::bit_cast<int32_t>(f);
  return i < 0 ? -static_cast<int64_t>(i & 0x7fffffff) : i;
}

int64_t ulp_distance(float got, float want) {
  if (std::isnan(want) || std::isnan(got)) return std::isnan(want) && std::isnan(got) ? 0 : INT64_MAX;
  return std::llabs(ordered(got) - ordered(want));
}

double reference(UnaryOp op, double x) {
  switch (op) {
    case UnaryOp::Exp: return std::exp(x);
    case UnaryOp::Erf: return std::erf(x);
    case UnaryOp::Sigmoid: return x >= 0 ? 1.0 / (1.0 + std::exp(-x)) : std::exp(x) / (1.0 + std::exp(x));
    case UnaryOp::Tanh: return std::tanh(x);
    case UnaryOp::Sqrt: return std::sqrt(x);
    case UnaryOp::Square: return x * x;
    case UnaryOp::Relu: return x > 0 ? x : 0.0;
  }
  return 0;
}

// Every 997th float in [-128, 128] (about 2 million, including denormal inputs), plus the
// special values and the ends of each function's ranges.
std::vector<float> sweep() {
  std::vector<float> v;
  for (uint32_t b = 0; b <= std::bit_cast<uint32_t>(128.0f); b += 997) {
    v.push_back(std::bit_cast<float>(b));
    v.push_back(-std::bit_cast<float>(b));
  }
  const float inf = std::numeric_limits<float>::infinity();
  for (float f : {0.0f, -0.0f, inf, -inf, std::numeric_limits<float>::quiet_NaN(), 88.72283f, 88.72284f, -87.33654f,
                  -103.97f, -104.0f, 0.927734375f, -0.927734375f, 0.55f, -0.55f, 9.0f, 4.0f, 1e-30f, -1e-30f,
                  std::numeric_limits<float>::max(), std::numeric_limits<float>::denorm_min()})
    v.push_back(f);
  return v;
}

int64_t max_ulp(kernels::detail::UnaryF32 fn, UnaryOp op, const std::vector<float>& x, float* worst) {
  std::vector<float> y(x.size());
  fn(op, x.data(), y.data(), static_cast<int64_t>(x.size()));
  int64_t m = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double r = reference(op, x[i]);
    if (op == UnaryOp::Sqrt && x[i] < 0) continue;  // NaN either way, sign unspecified
    const int64_t d = ulp_distance(y[i], static_cast<float>(r));
    if (d > m) {
      m = d;
      *worst = x[i];
    }
  }
  return m;
}

}  // namespace

TEST_CASE("unary_math kernels stay within kMaxUlp of libm, every kernel set") {
  std::vector<kernels::detail::UnaryF32> sets = {kernels::detail::unary_portable()};
  if (__builtin_cpu_supports("avx") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c"))
    sets.push_back(kernels::detail::unary_fma());
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) sets.push_back(kernels::detail::unary_avx2());
  if (__builtin_cpu_supports("avx512f")) sets.push_back(kernels::detail::unary_avx512());
  const std::vector<float> x = sweep();
  for (auto fn : sets)
    for (UnaryOp op : {UnaryOp::Exp, UnaryOp::Erf, UnaryOp::Sigmoid, UnaryOp::Tanh, UnaryOp::Sqrt, UnaryOp::Square,
                       UnaryOp::Relu}) {
      float worst = 0;
      const int64_t m = max_ulp(fn, op, x, &worst);
      INFO("op " << static_cast<int>(op) << " worst at x = " << worst);
      CHECK(m <= kMaxUlp);
    }
}

TEST_CASE("unary_math: lengths that are not whole vectors, in place") {
  for (int64_t n : {0, 1, 3, 7, 8, 9, 17}) {
    std::vector<float> v(n);
    for (int64_t i = 0; i < n; ++i) v[i] = 0.25f * static_cast<float>(i) - 1.0f;
    const std::vector<float> x = v;
    kernels::unary_f32(UnaryOp::Exp, v.data(), v.data(), n);
    for (int64_t i = 0; i < n; ++i) CHECK(ulp_distance(v[i], static_cast<float>(std::exp(double(x[i])))) <= kMaxUlp);
  }
}

namespace {

Tensor float_tensor(std::vector<int64_t> dims, uint32_t seed, float lo = -3, float hi = 3) {
  Tensor t = new_tensor(DType::Float, dims);
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  for (uint64_t i = 0; i < t.numel(); ++i) t.mutable_values<float>()[i] = dist(gen);
  return t;
}

// One node with fed inputs, run by a Session with `threads` threads.
Tensor run_node(const std::string& op, std::vector<Tensor> inputs, int threads = 1) {
  slmops::ir::Model m;
  m.ir_version = 8;
  m.opsets = {{"", 17}};
  m.graph = std::make_unique<slmops::ir::Graph>();
  std::vector<slmops::ir::Value*> ins;
  std::vector<RValue> feeds;
  for (size_t i = 0; i < inputs.size(); ++i) {
    ins.push_back(m.graph->add_input("x" + std::to_string(i), slmops::ir::TensorType::of(DType::Float, inputs[i].dims)));
    feeds.push_back(RValue::of(inputs[i]));
  }
  slmops::ir::Node* n = m.graph->add_node(op, ins, {"y"});
  m.graph->add_output(n->outputs[0]);
  Session s(m, threads);
  return s.run(std::move(feeds))[0].tensor;
}

}  // namespace

TEST_CASE("Erf, Sigmoid, Tanh, Exp ops on float32 use the kernels (and stay within kMaxUlp)") {
  const Tensor x = float_tensor({3, 1000}, 1, -6, 6);
  for (auto [op, f] : std::vector<std::pair<std::string, double (*)(double)>>{
           {"Erf", [](double v) { return std::erf(v); }},
           {"Tanh", [](double v) { return std::tanh(v); }},
           {"Exp", [](double v) { return std::exp(v); }},
           {"Sigmoid", [](double v) { return 1.0 / (1.0 + std::exp(-v)); }}}) {
    const Tensor y = run_node(op, {x}, 2);
    int64_t m = 0;
    for (uint64_t i = 0; i < x.numel(); ++i)
      m = std::max(m, ulp_distance(y.values<float>()[i], static_cast<float>(f(x.values<float>()[i]))));
    INFO(op);
    CHECK(m <= kMaxUlp);
  }
}

TEST_CASE("Pow with a scalar exponent matches std::pow in double, rounded") {
  Tensor x = float_tensor({5, 7}, 2, -4, 4);
  x.mutable_values<float>()[0] = -0.0f;
  x.mutable_values<float>()[1] = -std::numeric_limits<float>::infinity();
  x.mutable_values<float>()[2] = 0.0f;
  for (double e : {2.0, 0.5, 1.0, 3.0, -1.5}) {
    Tensor ex = new_tensor(DType::Float, {});
    ex.mutable_values<float>()[0] = static_cast<float>(e);
    const Tensor y = run_node("Pow", {x, ex});
    for (uint64_t i = 0; i < x.numel(); ++i) {
      const float want = static_cast<float>(std::pow(static_cast<double>(x.values<float>()[i]), e));
      const float got = y.values<float>()[i];
      INFO("x = " << x.values<float>()[i] << ", e = " << e);
      if (std::isnan(want)) CHECK(std::isnan(got));
      else CHECK(std::bit_cast<uint32_t>(got) == std::bit_cast<uint32_t>(want));
    }
  }
}

// binary_f32 in every build against one scalar operation per element: the same bits, for
// every op, both strides on each side (0 repeats one element), lengths around the vector
// widths, and NaN, infinities, signed zeros and denormals among the operands.
TEST_CASE("binary_f32: every kernel set gives the bits of the scalar operation") {
  using kernels::BinaryOp;
  std::vector<kernels::detail::BinaryF32> sets = {kernels::detail::binary_portable()};
  if (__builtin_cpu_supports("avx") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c"))
    sets.push_back(kernels::detail::binary_fma());
  if (__builtin_cpu_supports("avx512f")) sets.push_back(kernels::detail::binary_avx512());
  std::vector<float> x = slmops::test::random_floats(1100, 91, -4.f, 4.f);
  std::vector<float> z = slmops::test::random_floats(1100, 92, -4.f, 4.f);
  // Specials among the streamed operands (from index 10 on); a repeated operand (stride 0) is
  // taken from several offsets: normal values (x 3, z 5, 26, 40) and specials (x 10 NaN, 24
  // -inf, 38 -0; z 12 +0).
  const float specials[] = {std::nanf(""), INFINITY, -INFINITY, 0.f, -0.f, 1e-40f, -3e-39f, 3e38f};
  for (size_t i = 0; i < 8; ++i) {
    x[7 * i + 10] = specials[i];
    z[11 * i + 12] = specials[(i + 3) % 8];
  }
  int64_t checked = 0, wrong = 0;
  for (auto fn : sets)
    for (BinaryOp op : {BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Div})
      for (int64_t sx : {0, 1})
        for (int64_t sz : {0, 1})
          for (int64_t ox : {3, 10, 24, 38})
            for (int64_t n : {0, 1, 3, 4, 7, 8, 15, 16, 17, 31, 33, 64, 100, 1000}) {
              const int64_t oz = ox == 3 ? 5 : ox + 2;  // z: a normal value, then near its specials
              std::vector<float> y(n + 1, 42.f);
              fn(op, x.data() + ox, sx, z.data() + oz, sz, y.data(), n);
              for (int64_t i = 0; i < n; ++i) {
                const float a = x[ox + i * sx], b = z[oz + i * sz];
                const float want = op == BinaryOp::Add   ? a + b
                                   : op == BinaryOp::Sub ? a - b
                                   : op == BinaryOp::Mul ? a * b
                                                         : a / b;
                wrong += std::memcmp(&want, &y[i], sizeof want) != 0 && !(std::isnan(want) && std::isnan(y[i]));
                checked += !std::isnan(want);
              }
              wrong += y[n] != 42.f;  // nothing written past n
            }
  CHECK(checked > 100000);  // most results are numbers, compared bit for bit
  CHECK(wrong == 0);
}

TEST_CASE("Add/Sub/Mul/Div broadcast fast path matches the element-by-element definition") {
  const std::vector<std::pair<std::vector<int64_t>, std::vector<int64_t>>> shapes = {
      {{2, 3, 4}, {4}},          {{2, 3, 4}, {2, 3, 1}},    {{2, 3, 4, 4}, {1, 1, 4, 4}}, {{2, 3, 4}, {3, 1}},
      {{1}, {2, 3}},             {{2, 1, 4}, {1, 3, 1}},    {{5, 1}, {1, 6}},             {{2, 3, 4}, {}},
      {{3, 1, 2}, {3, 5, 2}},    {{4, 0, 2}, {2}},          {{2, 3, 4}, {2, 1, 4}},       {{64, 32}, {64, 1}}};
  for (const auto& [ad, bd] : shapes)
    for (const std::string op : {"Add", "Sub", "Mul", "Div"})
      for (bool swap : {false, true}) {
        Tensor a = float_tensor(swap ? bd : ad, 3), b = float_tensor(swap ? ad : bd, 4, 0.5f, 2.0f);
        const Tensor y = run_node(op, {a, b}, 2);
        // out[i] = f(a[ia], b[ib]) with ia, ib from the right-aligned multi-index.
        const size_t rank = y.dims.size();
        std::vector<int64_t> idx(rank, 0);
        for (uint64_t o = 0; o < y.numel(); ++o) {
          int64_t rest = static_cast<int64_t>(o);
          for (size_t d = rank; d-- > 0;) {
            idx[d] = rest % y.dims[d];
            rest /= y.dims[d];
          }
          auto offset = [&](const Tensor& t) {
            int64_t off = 0;
            for (size_t d = 0; d < t.dims.size(); ++d) {
              const int64_t i = idx[rank - t.dims.size() + d];
              off = off * t.dims[d] + (t.dims[d] == 1 ? 0 : i);
            }
            return off;
          };
          const float va = a.values<float>()[offset(a)], vb = b.values<float>()[offset(b)];
          const float want = op == "Add" ? va + vb : op == "Sub" ? va - vb : op == "Mul" ? va * vb : va / vb;
          INFO(op << " output index " << o);
          CHECK(y.values<float>()[o] == want);
        }
      }
}
