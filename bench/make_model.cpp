// slmops_make_model OUT.onnx --mb 500 [--external|--embedded] [--seed N]
//
// Writes a synthetic float32 decoder stack (transformer-shaped, plain ONNX ops, opset 17,
// ir_version 8) whose initializers add up to about --mb MiB, for the model IO benchmark
// (bench/io_bench.sh). Built with the ir:: builder API and saved with formats::save_model.
//
// Graph (single-head attention, pre-norm):
//   input_ids int64 [batch, seq] -> Gather(embed [V, d])
//   per layer: LayerNormalization -> MatMul+Add q/k/v -> Transpose(k) -> MatMul -> Mul(1/sqrt d)
//              -> Softmax -> MatMul(v) -> MatMul+Add o -> Add (residual)
//              LayerNormalization -> MatMul+Add (d x 4d) -> Relu -> MatMul+Add (4d x d) -> Add
//   LayerNormalization -> MatMul(lm_head [d, V]) -> logits float [batch, seq, V]
//
// Weights are deterministic for a given --seed and --mb (xorshift64*, uniform in
// [-1/sqrt(fan_in), 1/sqrt(fan_in)]); LayerNormalization scales are 1 and its biases 0.
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "formats/onnx_io.h"
#include "ir/error.h"
#include "ir/graph.h"

namespace {

using slmops::ir::Attribute;
using slmops::ir::Buffer;
using slmops::ir::DType;
using slmops::ir::Graph;
using slmops::ir::Tensor;
using slmops::ir::TensorType;
using slmops::ir::Value;

constexpr uint64_t kMiB = uint64_t{1} << 20;
// The whole model must fit in one protobuf message (2 GiB - 1) when embedded; leave room for
// the graph and the message framing.
constexpr uint64_t kEmbeddedMaxBytes = (uint64_t{2047} << 20) - (uint64_t{16} << 20);

[[noreturn]] void usage_error(const std::string& msg) {
  std::fprintf(stderr,
               "slmops_make_model: error: %s\n"
               "usage: slmops_make_model OUT.onnx --mb MIB [--external|--embedded] [--seed N]\n",
               msg.c_str());
  std::exit(2);
}

uint64_t splitmix64(uint64_t& s) {
  uint64_t z = (s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

struct Shape {
  int64_t d = 0, ffn = 0, vocab = 0, layers = 0;
};

uint64_t layer_floats(int64_t d, int64_t ffn) {
  // ln1 scale+bias, q/k/v/o weights and biases, ln2 scale+bias, w1+b1, w2+b2
  return uint64_t(2 * d + 4 * d * d + 4 * d + 2 * d + d * ffn + ffn + ffn * d + d);
}
uint64_t fixed_floats(int64_t d, int64_t vocab) {
  // embedding, final LayerNormalization scale+bias, lm_head, attention scale scalar
  return uint64_t(vocab * d + 2 * d + d * vocab + 1);
}

// Hidden size 1024 (FFN 4096) for anything of a few hundred MiB and more, smaller for small
// targets; then as many layers as fit, and the vocabulary takes up the rest.
Shape choose_shape(uint64_t target_bytes) {
  constexpr int64_t kMinVocab = 256;
  const uint64_t target = target_bytes / 4;  // floats
  int64_t d = 1024;
  while (d > 64 && 2 * layer_floats(d, 4 * d) + fixed_floats(d, kMinVocab) > target) d /= 2;
  Shape s;
  s.d = d;
  s.ffn = 4 * d;
  const uint64_t per_layer = layer_floats(s.d, s.ffn);
  const uint64_t fixed_min = fixed_floats(s.d, kMinVocab);
  s.layers = target > fixed_min + per_layer ? int64_t((target - fixed_min) / per_layer) : 1;
  const uint64_t rest = target > s.layers * per_layer + 2 * d + 1 ? target - s.layers * per_layer - 2 * d - 1 : 0;
  s.vocab = std::max<int64_t>(kMinVocab, int64_t((rest + d) / (2 * d)));  // nearest
  return s;
}

class Builder {
 public:
  Builder(Graph& g, uint64_t seed) : g_(g), seed_(seed) {}

  // A float initializer filled with uniform values in [-bound, bound].
  Value* random(const std::string& name, std::vector<int64_t> dims, float bound) {
    const uint64_t n = slmops::ir::element_count(dims);
    float* p = alloc(n);
    uint64_t s = seed_ ^ (0x51ed2701ull * ++count_);
    uint64_t x = splitmix64(s) | 1;  // xorshift64* state, never 0
    const float scale = 2.0f * bound;
    for (uint64_t i = 0; i < n; ++i) {
      x ^= x >> 12;
      x ^= x << 25;
      x ^= x >> 27;
      uint64_t r = x * 0x2545f4914f6cdd1dull;
      // top 23 bits as the mantissa of a float in [1, 2), shifted to [-0.5, 0.5)
      uint32_t bits = 0x3f800000u | uint32_t(r >> 41);
      float f;
      std::memcpy(&f, &bits, 4);
      p[i] = (f - 1.5f) * scale;
    }
    return add(name, std::move(dims), p, n);
  }

  Value* constant(const std::string& name, std::vector<int64_t> dims, float v) {
    const uint64_t n = slmops::ir::element_count(dims);
    float* p = alloc(n);
    for (uint64_t i = 0; i < n; ++i) p[i] = v;
    ++count_;
    return add(name, std::move(dims), p, n);
  }

  uint64_t bytes() const { return bytes_; }
  uint64_t count() const { return count_; }

 private:
  // Uninitialized storage: the generator writes every element, so no zero-fill pass.
  float* alloc(uint64_t n) {
    pending_.reset(new float[n ? n : 1]);
    return pending_.get();
  }
  Value* add(const std::string& name, std::vector<int64_t> dims, float* p, uint64_t n) {
    std::shared_ptr<const void> owner(pending_.release(), [](const void* q) { delete[] static_cast<const float*>(q); });
    Buffer b = Buffer::view(owner, reinterpret_cast<const uint8_t*>(p), n * sizeof(float));
    bytes_ += n * sizeof(float);
    return g_.add_initializer(Tensor::make(name, DType::Float, std::move(dims), std::move(b)));
  }

  Graph& g_;
  uint64_t seed_;
  uint64_t count_ = 0;
  uint64_t bytes_ = 0;
  std::unique_ptr<float[]> pending_;
};

// Attribute is move-only, so a braced list (which copies) cannot build the vector.
template <typename... A>
std::vector<Attribute> attrs(A&&... a) {
  std::vector<Attribute> v;
  (v.push_back(std::forward<A>(a)), ...);
  return v;
}

struct Built {
  slmops::ir::Model model;
  Shape shape;
  uint64_t param_bytes = 0;
  uint64_t tensors = 0;
};

Built build(uint64_t target_bytes, uint64_t seed) {
  Built res;
  Shape s = choose_shape(target_bytes);
  res.shape = s;
  auto& m = res.model;
  m.ir_version = 8;
  m.opsets = {{"", 17}};
  m.producer_name = "slmops_make_model";
  m.producer_version = "1";
  m.doc_string = "synthetic float32 decoder stack for the slmops model IO benchmark";
  m.graph = std::make_unique<Graph>();
  Graph& g = *m.graph;
  g.name = "bench_decoder";
  Builder b(g, seed);

  const int64_t d = s.d, f = s.ffn, V = s.vocab;
  const float bd = 1.0f / std::sqrt(float(d)), bf = 1.0f / std::sqrt(float(f));
  slmops::ir::Dim batch{-1, "batch"}, seq{-1, "seq"};

  Value* ids = g.add_input("input_ids", TensorType::of_dims(DType::Int64, {batch, seq}));
  Value* embed = b.random("embed.weight", {V, d}, 1.0f);
  Value* x = g.add_node("Gather", {embed, ids}, {"embed.out"}, attrs(Attribute::make_int("axis", 0)), "embed")->outputs[0];
  Value* att_scale = b.constant("attn.scale", {}, 1.0f / std::sqrt(float(d)));

  auto layer_norm = [&](const std::string& p, Value* in) {
    Value* sc = b.constant(p + ".scale", {d}, 1.0f);
    Value* bi = b.constant(p + ".bias", {d}, 0.0f);
    return g
        .add_node("LayerNormalization", {in, sc, bi}, {p + ".out"},
                  attrs(Attribute::make_int("axis", -1), Attribute::make_float("epsilon", 1e-5f)), p)
        ->outputs[0];
  };
  // MatMul by a [k, n] weight plus an [n] bias.
  auto linear = [&](const std::string& p, Value* in, int64_t k, int64_t n, float bound) {
    Value* w = b.random(p + ".weight", {k, n}, bound);
    Value* y = g.add_node("MatMul", {in, w}, {p + ".matmul"}, {}, p + ".matmul")->outputs[0];
    Value* bv = b.random(p + ".bias", {n}, bound);
    return g.add_node("Add", {y, bv}, {p + ".out"}, {}, p + ".add")->outputs[0];
  };

  for (int64_t l = 0; l < s.layers; ++l) {
    const std::string p = "layers." + std::to_string(l);
    Value* h = layer_norm(p + ".ln1", x);
    Value* q = linear(p + ".attn.q", h, d, d, bd);
    Value* k = linear(p + ".attn.k", h, d, d, bd);
    Value* v = linear(p + ".attn.v", h, d, d, bd);
    Value* kt = g.add_node("Transpose", {k}, {p + ".attn.kT"}, attrs(Attribute::make_ints("perm", {0, 2, 1})),
                           p + ".attn.transpose")
                    ->outputs[0];
    Value* sc = g.add_node("MatMul", {q, kt}, {p + ".attn.scores"}, {}, p + ".attn.qk")->outputs[0];
    Value* ss = g.add_node("Mul", {sc, att_scale}, {p + ".attn.scaled"}, {}, p + ".attn.scale")->outputs[0];
    Value* pr = g.add_node("Softmax", {ss}, {p + ".attn.probs"}, attrs(Attribute::make_int("axis", -1)), p + ".attn.softmax")
                    ->outputs[0];
    Value* ctx = g.add_node("MatMul", {pr, v}, {p + ".attn.ctx"}, {}, p + ".attn.pv")->outputs[0];
    Value* o = linear(p + ".attn.o", ctx, d, d, bd);
    x = g.add_node("Add", {x, o}, {p + ".attn.residual"}, {}, p + ".attn.residual")->outputs[0];

    Value* h2 = layer_norm(p + ".ln2", x);
    Value* up = linear(p + ".mlp.up", h2, d, f, bd);
    Value* act = g.add_node("Relu", {up}, {p + ".mlp.relu"}, {}, p + ".mlp.relu")->outputs[0];
    Value* down = linear(p + ".mlp.down", act, f, d, bf);
    x = g.add_node("Add", {x, down}, {p + ".mlp.residual"}, {}, p + ".mlp.residual")->outputs[0];
  }
  Value* hf = layer_norm("final_ln", x);
  Value* head = b.random("lm_head.weight", {d, V}, bd);
  Value* logits = g.add_node("MatMul", {hf, head}, {"logits"}, {}, "lm_head")->outputs[0];
  logits->type = TensorType::of_dims(DType::Float, {batch, seq, {V, {}}});
  g.add_output(logits);

  res.param_bytes = b.bytes();
  res.tensors = b.count();
  return res;
}

}  // namespace

int main(int argc, char** argv) {
  std::string out_path;
  double mb = -1;
  bool external = true;
  uint64_t seed = 1;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage_error(std::string(a) + " needs a value");
      return argv[++i];
    };
    if (a == "--mb") {
      std::string v = value();
      char* end = nullptr;
      mb = std::strtod(v.c_str(), &end);
      if (end == v.c_str() || *end || !(mb > 0)) usage_error("--mb must be a positive number, got '" + v + "'");
    } else if (a == "--seed") {
      std::string v = value();
      char* end = nullptr;
      seed = std::strtoull(v.c_str(), &end, 10);
      if (end == v.c_str() || *end) usage_error("--seed must be a whole number, got '" + v + "'");
    } else if (a == "--external") {
      external = true;
    } else if (a == "--embedded") {
      external = false;
    } else if (a == "-h" || a == "--help") {
      std::printf(
          "usage: slmops_make_model OUT.onnx --mb MIB [--external|--embedded] [--seed N]\n"
          "  Writes a synthetic float32 decoder stack (opset 17, ir_version 8) whose weights add up to\n"
          "  about MIB MiB. --external (default) puts every weight in OUT.onnx.data; --embedded keeps\n"
          "  them inside OUT.onnx (must stay under protobuf's 2 GiB limit). --seed (default 1) picks\n"
          "  the pseudo-random weights.\n");
      return 0;
    } else if (!a.empty() && a[0] == '-') {
      usage_error("unknown option '" + std::string(a) + "'");
    } else if (out_path.empty()) {
      out_path = a;
    } else {
      usage_error("more than one output path given");
    }
  }
  if (out_path.empty()) usage_error("no output path given");
  if (mb < 0) usage_error("--mb is required");
  const uint64_t target = static_cast<uint64_t>(mb * double(kMiB));
  if (!external && target > kEmbeddedMaxBytes)
    usage_error("--embedded keeps all weights in one protobuf message, which must stay under 2 GiB; use --mb "
                "2000 or less, or --external");

  using clock = std::chrono::steady_clock;
  try {
    auto t0 = clock::now();
    Built built = build(target, seed);
    if (!external && built.param_bytes > kEmbeddedMaxBytes)
      usage_error("the model would need " + std::to_string(built.param_bytes) +
                  " bytes of weights, too many to embed under 2 GiB; use --external");
    auto t1 = clock::now();
    slmops::formats::SaveOptions so;
    so.external = external ? slmops::formats::ExternalData::Always : slmops::formats::ExternalData::Never;
    auto rep = slmops::formats::save_model(built.model, out_path, so);
    auto t2 = clock::now();
    auto sec = [](auto a, auto b) { return std::chrono::duration<double>(b - a).count(); };
    std::fprintf(stderr,
                 "slmops_make_model: wrote %s: d=%lld ffn=%lld vocab=%lld layers=%lld, %llu initializers, "
                 "%llu weight bytes (%.1f MiB); model file %llu bytes, data file %llu bytes; "
                 "generate %.2f s, save %.2f s\n",
                 out_path.c_str(), (long long)built.shape.d, (long long)built.shape.ffn, (long long)built.shape.vocab,
                 (long long)built.shape.layers, (unsigned long long)built.tensors,
                 (unsigned long long)built.param_bytes, double(built.param_bytes) / double(kMiB),
                 (unsigned long long)rep.model_bytes, (unsigned long long)rep.data_bytes, sec(t0, t1), sec(t1, t2));
  } catch (const slmops::Error& e) {
    std::fprintf(stderr, "slmops_make_model: error: %s\n", e.what());
    return static_cast<int>(e.code());
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "slmops_make_model: error: out of memory\n");
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "slmops_make_model: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
