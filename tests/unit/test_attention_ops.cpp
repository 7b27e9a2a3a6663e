// The com.microsoft attention ops of the executor (runtime/ops/contrib_attention.cpp) against
// plain loops written here from ONNX Runtime's contrib-op definitions: GroupQueryAttention
// (prompt, right-padded prompt, decoding with a past, grouped heads, local window, do_rotary)
// and RotaryEmbedding (half and interleaved, partial rotary, 3-D and 4-D input, position offset).
#include <doctest/doctest.h>

#include <cmath>
#include <random>
#include <vector>

#include "ir/graph.h"
#include "runtime/executor.h"

using namespace slmops::runtime;
using slmops::ir::Attribute;
using slmops::ir::DType;
using slmops::ir::Tensor;
using slmops::ir::TensorType;

namespace {

std::vector<float> random_floats(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

// One com.microsoft node over graph inputs named in0, in1, ... ("" for an omitted input).
std::vector<Tensor> run_node(const std::string& op, std::vector<Tensor> feeds, const std::vector<bool>& present,
                             std::vector<Attribute> attrs, int n_out) {
  slmops::ir::Model m;
  m.ir_version = 10;
  m.opsets = {{"", 17}, {"com.microsoft", 1}};
  m.graph = std::make_unique<slmops::ir::Graph>();
  std::vector<slmops::ir::Value*> ins;
  std::vector<RValue> values;
  size_t k = 0;
  for (bool p : present) {
    if (!p) {
      ins.push_back(nullptr);
      continue;
    }
    Tensor& t = feeds[k++];
    ins.push_back(m.graph->add_input("in" + std::to_string(ins.size()), TensorType::of(t.dtype, t.dims)));
    values.push_back(RValue::of(std::move(t)));
  }
  std::vector<std::string> outs;
  for (int i = 0; i < n_out; ++i) outs.push_back("out" + std::to_string(i));
  auto* node = m.graph->add_node(op, ins, outs, std::move(attrs), "n", "com.microsoft");
  for (auto* o : node->outputs) m.graph->add_output(o);
  Session s(m, 2);
  std::vector<Tensor> r;
  for (auto& v : s.run(std::move(values))) r.push_back(v.tensor);
  return r;
}

std::vector<float> floats(const Tensor& t) {
  return std::vector<float>(t.values<float>(), t.values<float>() + t.numel());
}

// Rotary tables [rows, half] of the usual inverse frequencies.
void tables(int64_t rows, int64_t half, std::vector<float>& c, std::vector<float>& s) {
  c.assign(static_cast<size_t>(rows * half), 0);
  s = c;
  for (int64_t p = 0; p < rows; ++p)
    for (int64_t i = 0; i < half; ++i) {
      const double a = static_cast<double>(p) * std::pow(10000.0, -static_cast<double>(i) / static_cast<double>(half));
      c[static_cast<size_t>(p * half + i)] = static_cast<float>(std::cos(a));
      s[static_cast<size_t>(p * half + i)] = static_cast<float>(std::sin(a));
    }
}

// Reference rotary of one head vector.
void ref_rotate(float* x, int64_t rot, bool interleaved, const float* c, const float* s) {
  std::vector<float> y(x, x + rot);
  const int64_t half = rot / 2;
  for (int64_t i = 0; i < rot; ++i) {
    const int64_t ci = interleaved ? i / 2 : i % half;
    const int64_t j = interleaved ? (i % 2 == 0 ? i + 1 : i - 1) : (i + half) % rot;
    const float sign = interleaved ? (i % 2 == 0 ? -1.0f : 1.0f) : (i < half ? -1.0f : 1.0f);
    y[static_cast<size_t>(i)] = x[i] * c[ci] + sign * x[j] * s[ci];
  }
  std::copy(y.begin(), y.end(), x);
}

struct GqaCase {
  int64_t B = 2, S = 5, H = 4, KV = 2, D = 8, past = 0, window = -1;
  std::vector<int32_t> seqlens;  // per row: total - 1
  int32_t total = 5;
  bool rotary = false;
};

// Reference GroupQueryAttention: per row b, past_b = first prompt ? 0 : total_b - S; keys of
// the present = past[0, past_b) then the new ones; query s sees keys [start, past_b + s].
void check_gqa(const GqaCase& c, uint32_t seed) {
  const int64_t B = c.B, S = c.S, H = c.H, KV = c.KV, D = c.D, P = c.past;
  auto q = random_floats(static_cast<size_t>(B * S * H * D), seed);
  auto k = random_floats(static_cast<size_t>(B * S * KV * D), seed + 1);
  auto v = random_floats(static_cast<size_t>(B * S * KV * D), seed + 2);
  auto pk = random_floats(static_cast<size_t>(B * KV * P * D), seed + 3);
  auto pv = random_floats(static_cast<size_t>(B * KV * P * D), seed + 4);
  std::vector<float> cc, sc;
  const int64_t rows = 64, half = D / 2;
  tables(rows, half, cc, sc);
  std::vector<Tensor> feeds = {Tensor::from_values<float>("", DType::Float, {B, S, H * D}, q),
                               Tensor::from_values<float>("", DType::Float, {B, S, KV * D}, k),
                               Tensor::from_values<float>("", DType::Float, {B, S, KV * D}, v),
                               Tensor::from_values<float>("", DType::Float, {B, KV, P, D}, pk),
                               Tensor::from_values<float>("", DType::Float, {B, KV, P, D}, pv),
                               Tensor::from_values<int32_t>("", DType::Int32, {B}, c.seqlens),
                               Tensor::from_values<int32_t>("", DType::Int32, {}, {c.total})};
  std::vector<bool> present(7, true);
  std::vector<Attribute> at;
  at.push_back(Attribute::make_int("num_heads", H));
  at.push_back(Attribute::make_int("kv_num_heads", KV));
  at.push_back(Attribute::make_int("local_window_size", c.window));
  if (c.rotary) {
    at.push_back(Attribute::make_int("do_rotary", 1));
    feeds.push_back(Tensor::from_values<float>("", DType::Float, {rows, half}, cc));
    feeds.push_back(Tensor::from_values<float>("", DType::Float, {rows, half}, sc));
    present.push_back(true);
    present.push_back(true);
  }
  auto out = run_node("GroupQueryAttention", std::move(feeds), present, std::move(at), 3);
  const int64_t T = std::max<int64_t>(c.total, P);
  REQUIRE(out[1].dims == std::vector<int64_t>{B, KV, T, D});
  const bool first = S == c.total;
  const auto y = floats(out[0]), yk = floats(out[1]), yv = floats(out[2]);
  double worst = 0;
  for (int64_t b = 0; b < B; ++b) {
    const int64_t total_b = c.seqlens[static_cast<size_t>(b)] + 1, past_b = first ? 0 : total_b - S;
    for (int64_t kh = 0; kh < KV; ++kh) {
      // The present rows: past, then new (rotated when do_rotary), zeros after.
      std::vector<float> K(static_cast<size_t>(T * D), 0.0f), V(K.size(), 0.0f);
      for (int64_t t = 0; t < past_b; ++t)
        for (int64_t d = 0; d < D; ++d) {
          K[static_cast<size_t>(t * D + d)] = pk[static_cast<size_t>(((b * KV + kh) * P + t) * D + d)];
          V[static_cast<size_t>(t * D + d)] = pv[static_cast<size_t>(((b * KV + kh) * P + t) * D + d)];
        }
      for (int64_t s = 0; s < S; ++s) {
        float* kr = K.data() + (past_b + s) * D;
        for (int64_t d = 0; d < D; ++d) {
          kr[d] = k[static_cast<size_t>((b * S + s) * KV * D + kh * D + d)];
          V[static_cast<size_t>((past_b + s) * D + d)] = v[static_cast<size_t>((b * S + s) * KV * D + kh * D + d)];
        }
        if (c.rotary)
          ref_rotate(kr, D, false, &cc[static_cast<size_t>((past_b + s) * half)],
                     &sc[static_cast<size_t>((past_b + s) * half)]);
      }
      for (int64_t i = 0; i < T * D; ++i) {
        CHECK(yk[static_cast<size_t>((b * KV + kh) * T * D + i)] ==
              doctest::Approx(K[static_cast<size_t>(i)]).epsilon(1e-6));
        CHECK(yv[static_cast<size_t>((b * KV + kh) * T * D + i)] ==
              doctest::Approx(V[static_cast<size_t>(i)]).epsilon(1e-6));
      }
      for (int64_t h = kh * (H / KV); h < (kh + 1) * (H / KV); ++h)
        for (int64_t s = 0; s < S; ++s) {
          std::vector<float> qv(q.begin() + (b * S + s) * H * D + h * D, q.begin() + (b * S + s) * H * D + (h + 1) * D);
          if (c.rotary)
            ref_rotate(qv.data(), D, false, &cc[static_cast<size_t>((past_b + s) * half)],
                       &sc[static_cast<size_t>((past_b + s) * half)]);
          const int64_t last = std::min(past_b + s, total_b - 1);
          const int64_t start = c.window > 0 ? std::max<int64_t>(0, last - c.window + 1) : 0;
          std::vector<double> w;
          double mx = -1e30, sum = 0;
          for (int64_t t = start; t <= last; ++t) {
            double dot = 0;
            for (int64_t d = 0; d < D; ++d) dot += qv[static_cast<size_t>(d)] * K[static_cast<size_t>(t * D + d)];
            w.push_back(dot / std::sqrt(static_cast<double>(D)));
            mx = std::max(mx, w.back());
          }
          for (auto& x : w) sum += (x = std::exp(x - mx));
          for (int64_t d = 0; d < D; ++d) {
            double o = 0;
            for (int64_t t = start; t <= last; ++t)
              o += w[static_cast<size_t>(t - start)] / sum * V[static_cast<size_t>(t * D + d)];
            worst = std::max(worst, std::fabs(o - y[static_cast<size_t>((b * S + s) * H * D + h * D + d)]));
          }
        }
    }
  }
  CHECK(worst < 1e-5);
}

}  // namespace

TEST_CASE("GroupQueryAttention: a first prompt, grouped heads") {
  GqaCase c;
  c.seqlens = {4, 4};
  check_gqa(c, 1);
}

TEST_CASE("GroupQueryAttention: a right-padded prompt (row 1 holds 3 tokens)") {
  GqaCase c;
  c.seqlens = {4, 2};
  c.B = 2;
  // Rows of row 1 past its length are padding: compare only the rows inside it.
  c.S = 5;
  check_gqa(c, 7);
}

TEST_CASE("GroupQueryAttention: decoding one token after a past, with a local window") {
  for (int64_t window : {-1, 2}) {
    GqaCase c;
    c.S = 1;
    c.past = 6;
    c.total = 7;
    c.seqlens = {6, 6};
    c.window = window;
    check_gqa(c, 11 + static_cast<uint32_t>(window));
  }
}

TEST_CASE("GroupQueryAttention: a second prompt chunk (batch 1) and multi-query heads") {
  GqaCase c;
  c.B = 1;
  c.S = 3;
  c.past = 4;
  c.total = 7;
  c.seqlens = {6};
  c.KV = 1;
  check_gqa(c, 21);
}

TEST_CASE("GroupQueryAttention: do_rotary turns Q and the new K at the cache positions") {
  GqaCase c;
  c.S = 1;
  c.past = 3;
  c.total = 4;
  c.seqlens = {3, 3};
  c.rotary = true;
  check_gqa(c, 31);
  GqaCase p;
  p.seqlens = {4, 4};
  p.rotary = true;
  check_gqa(p, 37);
}

TEST_CASE("GroupQueryAttention: inconsistent lengths are refused") {
  GqaCase c;
  c.seqlens = {4, 9};  // beyond total_sequence_length
  CHECK_THROWS(check_gqa(c, 41));
}

TEST_CASE("RotaryEmbedding: half and interleaved, partial, 3-D and 4-D, offsets") {
  const int64_t B = 2, S = 3, N = 2, D = 8, rows = 16;
  for (bool interleaved : {false, true})
    for (int64_t rot : {int64_t{8}, int64_t{4}})
      for (bool four_d : {false, true})
        for (bool offset : {false, true}) {
          auto x = random_floats(static_cast<size_t>(B * S * N * D), 5);
          std::vector<int64_t> pos;
          for (int64_t b = 0; b < B; ++b)
            for (int64_t s = 0; s < S; ++s) pos.push_back(offset ? 3 + s : 2 * b + s + 1);
          std::vector<float> c, sn;
          tables(rows, rot / 2, c, sn);
          std::vector<Attribute> at;
          at.push_back(Attribute::make_int("interleaved", interleaved));
          at.push_back(Attribute::make_int("num_heads", N));
          if (rot < D) at.push_back(Attribute::make_int("rotary_embedding_dim", rot));
          const std::vector<int64_t> dims =
              four_d ? std::vector<int64_t>{B, N, S, D} : std::vector<int64_t>{B, S, N * D};
          std::vector<Tensor> feeds = {Tensor::from_values<float>("", DType::Float, dims, x),
                                       offset ? Tensor::from_values<int64_t>("", DType::Int64, {1}, {3})
                                              : Tensor::from_values<int64_t>("", DType::Int64, {B, S}, pos),
                                       Tensor::from_values<float>("", DType::Float, {rows, rot / 2}, c),
                                       Tensor::from_values<float>("", DType::Float, {rows, rot / 2}, sn)};
          auto y = floats(run_node("RotaryEmbedding", std::move(feeds), {true, true, true, true}, std::move(at), 1)[0]);
          auto want = x;
          for (int64_t b = 0; b < B; ++b)
            for (int64_t s = 0; s < S; ++s)
              for (int64_t h = 0; h < N; ++h) {
                const int64_t off = four_d ? ((b * N + h) * S + s) * D : (b * S + s) * N * D + h * D;
                const int64_t p = pos[static_cast<size_t>(b * S + s)];
                ref_rotate(want.data() + off, rot, interleaved, &c[static_cast<size_t>(p * rot / 2)],
                           &sn[static_cast<size_t>(p * rot / 2)]);
              }
          for (size_t i = 0; i < want.size(); ++i) CHECK(y[i] == doctest::Approx(want[i]).epsilon(1e-6));
        }
}
