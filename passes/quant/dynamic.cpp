// quantize --mode int8-dynamic: int8 weights, activations quantized at run time.
//
//   MatMul(X, W[K,N])                   -> com.microsoft.DynamicQuantizeMatMul(X, Wq, sw, zw)
//   MatMul(X, W) -> Add(., b[N])        -> DynamicQuantizeMatMul(X, Wq, sw, zw, b)
//   Gemm(X, W, C) transA=0 alpha=beta=1 -> DynamicQuantizeMatMul(X, Wq, sw, zw, C[N])
//                                          (transB=1: W is [N,K] and is transposed first)
//   Conv(X, W[M,C/g,k..], B)            -> DynamicQuantizeLinear(X) -> (xq, xs, xz)
//                                          ConvInteger(xq, Wq uint8, xz, 128) -> Cast(float)
//                                          -> Mul(., xs * sw[1,M,1..]) -> Add(., B[1,M,1..])
// Weights: int8 symmetric (ONNX Runtime's default for dynamic quantization), zero point 0,
//   q = round_half_even(w / s) clamped to [-127, 127], s = max|w| / 127 (1 when all zero),
//   one s per tensor or, with --per-channel, per output column N (MatMul/Gemm) or filter M (Conv).
//   Conv stores q + 128 as uint8 with zero point 128: the same numbers, but ORT 1.30's
//   ConvInteger is 3-5x faster with uint8 weights (conv 64->64 3x3 on 56x56: float 2.5 ms,
//   int8 weights 20.2 ms, uint8 6.4 ms; 256->256 on 14x14: 1.5 / 15.7 / 2.8 ms). Even so a
//   dynamic Conv is slower than the float one in ORT; it only saves size, hence not a default.
// Activations: uint8 asymmetric per tensor, from the tensor's run-time range [min(0,x), max(0,x)].
// Conditions: W is a float initializer of this graph (not a graph input) of rank 2 (Conv:
//   rank >= 3); Conv's bias, when present, is a float initializer too; the rewritten node's
//   output keeps its ir::Value, so consumers and graph outputs are untouched. Weights nobody
//   else reads are removed.
//
// Why DynamicQuantizeMatMul rather than ONNX Runtime's own output (DynamicQuantizeLinear +
// MatMulInteger + Cast + Mul + Mul): ONNX Runtime 1.30 on this machine, one thread, p50 of a
// single MatMul, per-tensor int8 weights (ms; float / one node / five nodes):
//   M=1   K=768  N=768    level all 0.073 / 0.021 / 0.021   disabled 0.072 / 0.020 / 0.022
//   M=32  K=768  N=3072   level all 1.117 / 0.378 / 0.366   disabled 1.170 / 0.372 / 0.388
//   M=128 K=1024 N=1024   level all 1.882 / 0.498 / 0.512   disabled 1.876 / 0.511 / 0.532
//   M=512 K=768  N=768    level all 4.629 / 1.322 / 1.288   disabled 3.929 / 1.216 / 1.352
// With all optimizations ORT fuses the five nodes into the one (equal within noise); at its
// basic/disabled levels the one node is 4-10% faster at M >= 128. Our executor runs both alike
// (M=128 K=N=1024: 1.63 / 1.61 ms). So: never slower, one node instead of five, a bias input. Folding MatMul + Add(b) into that input
// (gpt_bytes fixture, 4x64 tokens): ORT level all 1.44 ms either way (it fuses the Add itself),
// level basic 1.59 -> 1.46-1.51 ms, our executor 6.23 -> 5.88 ms. Conv has no such contrib op.
#include <algorithm>
#include <cmath>
#include <map>
#include <mutex>
#include <unordered_map>
#include <unordered_set>

#include <fmt/format.h>

#include "passes/quant/quantize.h"
#include "runtime/thread_pool.h"

namespace slmops::passes::quant {
namespace {

constexpr float kQMax = 127.0f;  // symmetric int8: [-127, 127]
constexpr uint8_t kConvZeroPoint = 128;  // Conv weights are stored as uint8 q + 128

// Symmetric int8 of a row-major [rows, cols] matrix. The channel axis is cols (MatMul's N)
// or rows (Conv's M); one scale per channel with per_channel, else one for the tensor.
struct Int8Weight {
  ir::Buffer q;  // int8 codes, rows x cols
  std::vector<float> scales;
};

// The two row loops, compiled for AVX2 and for baseline x86-64 (chosen at load time; no FMA
// in either, so both give the same bits). Branch-free so that they vectorize.
__attribute__((target_clones("avx2", "default"))) float row_absmax(const float* __restrict row, int64_t n,
                                                                  float init) {
  // max|x| in 8 independent lanes (a single running max does not vectorize).
  float lane[8] = {init, init, init, init, init, init, init, init};
  int64_t c = 0;
  for (; c + 8 <= n; c += 8)
    for (int j = 0; j < 8; ++j) {
      const float v = std::fabs(row[c + j]);
      lane[j] = lane[j] < v ? v : lane[j];
    }
  for (; c < n; ++c) lane[0] = std::max(lane[0], std::fabs(row[c]));
  float acc = lane[0];
  for (int j = 1; j < 8; ++j) acc = std::max(acc, lane[j]);
  return acc;
}

__attribute__((target_clones("avx2", "default"))) void col_absmax(const float* __restrict row, int64_t n,
                                                                 float* __restrict m) {
  for (int64_t c = 0; c < n; ++c) {
    const float v = std::fabs(row[c]);
    m[c] = m[c] < v ? v : m[c];
  }
}

// q = round_half_even(clamp(w / s, -127, 127)) without a libm call (baseline x86-64 has no
// roundps): for |v| <= 2^22, (v + 1.5 * 2^23) - 1.5 * 2^23 is the integer the FPU's default
// rounding picks; without -ffast-math the compiler keeps both operations. `per_col`: one
// scale per column (s[c]), else s[0] for the row.
__attribute__((target_clones("avx2", "default"))) void quantize_row(const float* __restrict row, int64_t n,
                                                                   const float* __restrict s, bool per_col,
                                                                   int8_t* __restrict q) {
  constexpr float kMagic = 12582912.0f, kMax = 127.0f;
  if (per_col) {
    for (int64_t c = 0; c < n; ++c) {
      float v = row[c] / s[c];
      v = v < -kMax ? -kMax : v;
      v = v > kMax ? kMax : v;
      q[c] = static_cast<int8_t>((v + kMagic) - kMagic);
    }
  } else {
    const float sc = s[0];
    for (int64_t c = 0; c < n; ++c) {
      float v = row[c] / sc;
      v = v < -kMax ? -kMax : v;
      v = v > kMax ? kMax : v;
      q[c] = static_cast<int8_t>((v + kMagic) - kMagic);
    }
  }
}

Int8Weight quantize_symmetric_int8(const float* w, int64_t rows, int64_t cols, bool per_channel, bool channel_is_col,
                                   runtime::ThreadPool& pool) {
  const int64_t channels = !per_channel ? 1 : channel_is_col ? cols : rows;
  const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 16) / std::max<int64_t>(1, cols));
  // absmax per channel: each chunk of rows keeps its own maxima, merged under a lock. The
  // inner loops are branch-free so that they vectorize.
  std::vector<float> absmax(static_cast<size_t>(channels), 0.0f);
  std::mutex mu;
  pool.parallel_for(rows, grain, [&](int64_t b, int64_t e) {
    std::vector<float> local(static_cast<size_t>(channels), 0.0f);
    float* m = local.data();
    for (int64_t r = b; r < e; ++r) {
      const float* row = w + r * cols;
      if (!per_channel) m[0] = row_absmax(row, cols, m[0]);
      else if (channel_is_col) col_absmax(row, cols, m);
      else m[r] = row_absmax(row, cols, m[r]);
    }
    std::lock_guard<std::mutex> lk(mu);
    for (int64_t i = 0; i < channels; ++i) absmax[i] = std::max(absmax[i], local[i]);
  });
  Int8Weight out;
  out.scales.resize(static_cast<size_t>(channels));
  for (int64_t i = 0; i < channels; ++i) out.scales[i] = absmax[i] > 0 ? absmax[i] / kQMax : 1.0f;
  out.q = ir::Buffer::allocate(static_cast<size_t>(rows * cols));
  int8_t* qall = reinterpret_cast<int8_t*>(out.q.mutable_data());
  pool.parallel_for(rows, grain, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      const bool per_col = per_channel && channel_is_col;
      const float* s = out.scales.data() + (per_channel && !channel_is_col ? r : 0);
      quantize_row(w + r * cols, cols, s, per_col, qall + r * cols);
    }
  });
  return out;
}

std::vector<float> transpose(const float* w, int64_t rows, int64_t cols) {
  std::vector<float> t(static_cast<size_t>(rows * cols));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) t[c * rows + r] = w[r * cols + c];
  return t;
}

template <typename T>
ir::Buffer bytes_of(const std::vector<T>& v) {
  return ir::Buffer::copy_of(v.data(), v.size() * sizeof(T));
}

// The quantized form of one float weight, shared by every node that reads it the same way.
struct QWeight {
  ir::Value *q = nullptr, *scale = nullptr, *zero_point = nullptr;
  std::vector<float> scales;  // host copy (Conv folds them into its Mul)
  std::string first_node;
};

enum class Use { MatMul, MatMulTransposed, Conv };

class DynamicRewriter {
 public:
  DynamicRewriter(ir::Graph& g, const QuantizeOptions& o, const NodeFilter& f, runtime::ThreadPool& pool,
                  QuantReport& report)
      : g_(g), o_(o), f_(f), pool_(pool), report_(report) {}

  // Returns {uses com.microsoft, uses Conv ops}.
  std::pair<bool, bool> run() {
    std::vector<ir::Node*> order;
    for (auto& n : g_.nodes()) order.push_back(n.get());
    for (ir::Node* n : order) {
      if (removed_.count(n) || !ir::is_default_domain(n->domain)) continue;
      if (n->op_type != "MatMul" && n->op_type != "Gemm" && n->op_type != "Conv") continue;
      if (!f_.allows(*n)) continue;
      NodeReport r{n->name, n->op_type, "", 0, 0};
      std::string why;
      if (n->op_type == "MatMul") why = rewrite_matmul(n, r);
      else if (n->op_type == "Gemm") why = rewrite_gemm(n, r);
      else why = rewrite_conv(n, r);
      if (!why.empty()) r.how = "skipped: " + why;
      else if (!shared_with_.empty()) r.how += fmt::format(" (weight shared with '{}')", shared_with_);
      report_.nodes.push_back(std::move(r));
    }
    if (replaced_.empty()) return {false, false};
    std::vector<ir::Node*> new_order;
    for (ir::Node* n : order) {
      auto it = replaced_.find(n);
      if (it != replaced_.end()) new_order.insert(new_order.end(), it->second.begin(), it->second.end());
      else if (!removed_.count(n)) new_order.push_back(n);
    }
    g_.set_node_order(new_order);
    drop_unused(touched_);
    g_.compact_values();
    return {used_contrib_, used_conv_};
  }

 private:
  ir::Value* initializer(const std::string& prefix, ir::DType dt, std::vector<int64_t> dims, ir::Buffer data) {
    return add_initializer(g_, prefix, dt, std::move(dims), std::move(data));
  }

  std::string base_name(const ir::Node* n, const ir::Value* w) const {
    if (!w->name.empty()) return w->name;
    return n->name.empty() ? std::string("weight") : n->name;
  }

  const QWeight& quantized(ir::Node* n, ir::Value* wv, const ir::Tensor& w, Use use, NodeReport& r) {
    auto key = std::make_pair(wv, use);
    auto it = cache_.find(key);
    shared_with_.clear();
    if (it != cache_.end()) {
      shared_with_ = it->second.first_node;
      return it->second;
    }
    QWeight qw;
    qw.first_node = n->name;
    const std::string base = base_name(n, wv);
    const float* data = w.values<float>();
    Int8Weight iw;
    std::vector<int64_t> qdims = w.dims;
    if (use == Use::Conv) {
      const int64_t M = w.dims[0], per = static_cast<int64_t>(w.numel()) / std::max<int64_t>(1, M);
      iw = quantize_symmetric_int8(data, M, per, o_.per_channel, false, pool_);
    } else if (use == Use::MatMulTransposed) {
      const int64_t N = w.dims[0], K = w.dims[1];
      std::vector<float> t = transpose(data, N, K);
      iw = quantize_symmetric_int8(t.data(), K, N, o_.per_channel, true, pool_);
      qdims = {K, N};
    } else {
      iw = quantize_symmetric_int8(data, w.dims[0], w.dims[1], o_.per_channel, true, pool_);
    }
    release_file_pages(w);  // read once; a later reader maps it back in from the file
    const int64_t nscale = static_cast<int64_t>(iw.scales.size());
    if (use == Use::Conv) {
      // ConvInteger: uint8 q + 128 with zero point 128 (the same values as int8 with zero point 0).
      // ONNX Runtime 1.30 runs ConvInteger 3-5x faster with uint8 weights than with int8 ones,
      // and takes only a scalar weight zero point; per-channel scales go into the Mul after it.
      std::vector<uint8_t> u(iw.q.size());
      const int8_t* iq = reinterpret_cast<const int8_t*>(iw.q.data());
      for (size_t i = 0; i < u.size(); ++i) u[i] = static_cast<uint8_t>(iq[i] + kConvZeroPoint);
      qw.q = initializer(base + "_quantized", ir::DType::UInt8, qdims, bytes_of(u));
      qw.zero_point = initializer(base + "_zero_point", ir::DType::UInt8, {},
                                  bytes_of(std::vector<uint8_t>{kConvZeroPoint}));
    } else {
      qw.q = initializer(base + "_quantized", ir::DType::Int8, qdims, iw.q);
      std::vector<int64_t> sdims = o_.per_channel ? std::vector<int64_t>{nscale} : std::vector<int64_t>{};
      qw.scale = initializer(base + "_scale", ir::DType::Float, sdims, bytes_of(iw.scales));
      qw.zero_point = initializer(base + "_zero_point", ir::DType::Int8, sdims,
                                  bytes_of(std::vector<int8_t>(static_cast<size_t>(nscale), 0)));
    }
    qw.scales = std::move(iw.scales);
    r.bytes_before = static_cast<int64_t>(w.nbytes());
    r.bytes_after = static_cast<int64_t>(qw.q->initializer->nbytes() + nscale * sizeof(float) +
                                         qw.zero_point->initializer->nbytes());
    touched_.push_back(wv);
    return cache_.emplace(key, std::move(qw)).first->second;
  }

  // Emits DynamicQuantizeMatMul(a, Wq, sw, zw[, bias]) in place of `old` (and of `fused_add`).
  void emit_matmul(ir::Node* old, ir::Value* a, const QWeight& qw, ir::Value* bias, ir::Node* fused_add,
                   NodeReport& r) {
    ir::Value* out = fused_add ? fused_add->outputs[0] : old->outputs[0];
    std::vector<ir::Value*> ins = {a, qw.q, qw.scale, qw.zero_point};
    if (bias) ins.push_back(bias);
    ir::Node* dq = g_.add_node("DynamicQuantizeMatMul", ins, {""}, {}, old->name, "com.microsoft");
    g_.remove_node(old);
    removed_.insert(old);
    if (fused_add) {
      g_.remove_node(fused_add);
      removed_.insert(fused_add);
    }
    ir::move_output(dq, dq->outputs[0], out);
    replaced_[old] = {dq};
    used_contrib_ = true;
    r.how = fmt::format("DynamicQuantizeMatMul int8 sym {}{}", o_.per_channel ? "per-channel" : "per-tensor",
                        bias ? " +bias" : "");
  }

  // A MatMul output read only by Add(., b) with b a float [N] initializer: b becomes the bias.
  ir::Node* foldable_add(ir::Node* mm, int64_t N, ir::Value*& bias) {
    ir::Value* y = mm->outputs[0];
    if (y->is_graph_output() || y->consumers.size() != 1) return nullptr;
    ir::Node* add = y->consumers[0];
    if (add->graph != &g_ || add->op_type != "Add" || !ir::is_default_domain(add->domain) || add->inputs.size() != 2 ||
        add->outputs.size() != 1 || !add->outputs[0])
      return nullptr;
    for (auto& pat : o_.exclude_nodes)
      if (glob_match(pat, add->name)) return nullptr;  // the user asked to keep that Add
    ir::Value* other = add->inputs[0] == y ? add->inputs[1] : add->inputs[0];
    if (other == y) return nullptr;
    const ir::Tensor* b = float_initializer(g_, other);
    if (!b || b->dims != std::vector<int64_t>{N}) return nullptr;
    bias = other;
    return add;
  }

  std::string rewrite_matmul(ir::Node* n, NodeReport& r) {
    if (n->inputs.size() != 2 || n->outputs.size() != 1 || !n->outputs[0] || !n->inputs[0])
      return "unexpected inputs or outputs";
    ir::Value* wv = n->inputs[1];
    const ir::Tensor* w = float_initializer(g_, wv);
    if (!w || w->dims.size() != 2) return "weight is not a constant 2-D float";
    ir::Value* bias = nullptr;
    ir::Node* add = foldable_add(n, w->dims[1], bias);
    const QWeight& qw = quantized(n, wv, *w, Use::MatMul, r);
    finish_shared(r);
    emit_matmul(n, n->inputs[0], qw, bias, add, r);
    return {};
  }

  std::string rewrite_gemm(ir::Node* n, NodeReport& r) {
    if (n->inputs.size() < 2 || n->outputs.size() != 1 || !n->outputs[0] || !n->inputs[0])
      return "unexpected inputs or outputs";
    ir::Value* c = n->inputs.size() > 2 ? n->inputs[2] : nullptr;
    const float beta = n->attr_float("beta", 1.0f);
    if (n->attr_int("transA", 0) != 0) return "Gemm with transA=1 does not map to MatMul";
    if (n->attr_float("alpha", 1.0f) != 1.0f) return "Gemm with alpha != 1 does not map to MatMul";
    if (c && beta != 1.0f) return "Gemm with beta != 1 does not map to MatMul";
    ir::Value* wv = n->inputs[1];
    const ir::Tensor* w = float_initializer(g_, wv);
    if (!w || w->dims.size() != 2) return "weight is not a constant 2-D float";
    const bool trans_b = n->attr_int("transB", 0) != 0;
    const int64_t N = trans_b ? w->dims[0] : w->dims[1];
    // C as a bias [N] when it is a constant [N], [1, N] or a scalar; else an Add after.
    ir::Value* bias = nullptr;
    bool add_after = false;
    if (c) {
      const ir::Tensor* ct = float_initializer(g_, c);
      const bool row = ct && ((ct->dims.size() == 1 && ct->dims[0] == N) ||
                              (ct->dims.size() == 2 && ct->dims[0] == 1 && ct->dims[1] == N));
      if (row && ct->dims.size() == 1) {
        bias = c;
      } else if (row || (ct && ct->numel() == 1)) {
        std::vector<float> b(static_cast<size_t>(N));
        for (int64_t j = 0; j < N; ++j) b[j] = ct->values<float>()[ct->numel() == 1 ? 0 : j];
        bias = initializer(base_name(n, c) + "_bias", ir::DType::Float, {N}, bytes_of(b));
        touched_.push_back(c);
      } else {
        add_after = true;
      }
    }
    const QWeight& qw = quantized(n, wv, *w, trans_b ? Use::MatMulTransposed : Use::MatMul, r);
    finish_shared(r);
    if (!add_after) {
      emit_matmul(n, n->inputs[0], qw, bias, nullptr, r);
      return {};
    }
    // C is a run-time value or a full [M, N] matrix: DynamicQuantizeMatMul, then Add(., C).
    ir::Value* out = n->outputs[0];
    ir::Node* dq = g_.add_node("DynamicQuantizeMatMul", {n->inputs[0], qw.q, qw.scale, qw.zero_point},
                               {g_.unique_name(out->name + "_matmul")}, {}, n->name, "com.microsoft");
    ir::Node* add = g_.add_node("Add", {dq->outputs[0], c}, {""}, {}, n->name + "_bias");
    g_.remove_node(n);
    removed_.insert(n);
    ir::move_output(add, add->outputs[0], out);
    replaced_[n] = {dq, add};
    used_contrib_ = true;
    r.how = fmt::format("DynamicQuantizeMatMul int8 sym {} +Add", o_.per_channel ? "per-channel" : "per-tensor");
    return {};
  }

  std::string rewrite_conv(ir::Node* n, NodeReport& r) {
    if (n->inputs.size() < 2 || n->outputs.size() != 1 || !n->outputs[0] || !n->inputs[0])
      return "unexpected inputs or outputs";
    ir::Value* wv = n->inputs[1];
    const ir::Tensor* w = float_initializer(g_, wv);
    if (!w || w->dims.size() < 3) return "weight is not a constant float of rank >= 3";
    ir::Value* bv = n->inputs.size() > 2 ? n->inputs[2] : nullptr;
    const ir::Tensor* b = bv ? float_initializer(g_, bv) : nullptr;
    const int64_t M = w->dims[0];
    if (bv && (!b || static_cast<int64_t>(b->numel()) != M)) return "bias is not a constant float [M]";
    const QWeight& qw = quantized(n, wv, *w, Use::Conv, r);
    finish_shared(r);
    // Broadcast shape of a per-channel vector against the output [batch, M, spatial...].
    std::vector<int64_t> chan_dims(w->dims.size(), 1);
    chan_dims[1] = M;
    const std::string base = n->name.empty() ? base_name(n, wv) : n->name;
    ir::Value* out = n->outputs[0];

    ir::Node* dql = g_.add_node("DynamicQuantizeLinear", {n->inputs[0]},
                                {g_.unique_name(base + "_x_quantized"), g_.unique_name(base + "_x_scale"),
                                 g_.unique_name(base + "_x_zero_point")},
                                {}, base + "_quantize_x");
    std::vector<ir::Attribute> conv_attrs = std::move(n->attributes);
    ir::Node* ci = g_.add_node("ConvInteger", {dql->outputs[0], qw.q, dql->outputs[2], qw.zero_point},
                               {g_.unique_name(base + "_int32")}, std::move(conv_attrs), n->name);
    std::vector<ir::Attribute> cast_to;
    cast_to.push_back(ir::Attribute::make_int("to", static_cast<int64_t>(ir::DType::Float)));
    ir::Node* cast = g_.add_node("Cast", {ci->outputs[0]}, {g_.unique_name(base + "_int32_float")},
                                 std::move(cast_to), base + "_cast");
    // scale = x_scale * w_scale: a scalar, or [1, M, 1, ..] with per-channel weights.
    ir::Value* ws = o_.per_channel
                        ? initializer(base_name(n, wv) + "_scale", ir::DType::Float, chan_dims, bytes_of(qw.scales))
                        : initializer(base_name(n, wv) + "_scale", ir::DType::Float, {}, bytes_of(qw.scales));
    ir::Node* sc = g_.add_node("Mul", {dql->outputs[1], ws}, {g_.unique_name(base + "_scale")}, {},
                               base + "_scale");
    std::vector<ir::Node*> seq = {dql, ci, cast, sc};
    ir::Node* last;
    if (bv) {
      ir::Node* mul = g_.add_node("Mul", {cast->outputs[0], sc->outputs[0]}, {g_.unique_name(base + "_unbiased")},
                                  {}, base + "_rescale");
      ir::Value* bias = initializer(base_name(n, bv) + "_reshaped", ir::DType::Float, chan_dims,
                                    ir::Buffer::copy_of(b->data.data(), b->nbytes()));
      touched_.push_back(bv);
      last = g_.add_node("Add", {mul->outputs[0], bias}, {""}, {}, base + "_bias");
      seq.push_back(mul);
    } else {
      last = g_.add_node("Mul", {cast->outputs[0], sc->outputs[0]}, {""}, {}, base + "_rescale");
    }
    seq.push_back(last);
    g_.remove_node(n);
    removed_.insert(n);
    ir::move_output(last, last->outputs[0], out);
    replaced_[n] = seq;
    used_conv_ = true;
    r.how = fmt::format("ConvInteger int8 sym {} (stored as uint8 + 128)", o_.per_channel ? "per-channel" : "per-tensor");
    return {};
  }

  // A second node reading an already quantized weight counts no bytes of its own.
  void finish_shared(NodeReport& r) {
    if (shared_with_.empty()) return;
    r.bytes_before = r.bytes_after = 0;
  }

  // Float weights (and biases) that nothing reads any more.
  void drop_unused(const std::vector<ir::Value*>& vals) {
    std::unordered_set<ir::Value*> seen;
    for (ir::Value* v : vals)
      if (seen.insert(v).second) ir::erase_initializer(g_, v);
  }

  ir::Graph& g_;
  const QuantizeOptions& o_;
  const NodeFilter& f_;
  runtime::ThreadPool& pool_;
  QuantReport& report_;
  std::map<std::pair<ir::Value*, Use>, QWeight> cache_;
  std::unordered_map<ir::Node*, std::vector<ir::Node*>> replaced_;
  std::unordered_set<ir::Node*> removed_;
  std::vector<ir::Value*> touched_;
  std::string shared_with_;  // set by quantized(): the node that first quantized the weight
  bool used_contrib_ = false, used_conv_ = false;
};

}  // namespace

void quantize_dynamic(ir::Model& m, const QuantizeOptions& o, const NodeFilter& f, int threads, QuantReport& report) {
  runtime::ThreadPool pool(std::max(1, threads));
  std::vector<ir::Graph*> graphs = {m.graph.get()};
  m.graph->for_each_subgraph([&](ir::Graph& sub) { graphs.push_back(&sub); });
  bool contrib = false, conv = false;
  for (ir::Graph* g : graphs) {
    auto [c, v] = DynamicRewriter(*g, o, f, pool, report).run();
    contrib = contrib || c;
    conv = conv || v;
  }
  if (contrib) require_opset(m, "com.microsoft", 1);
  if (conv && m.opset("") < 11) require_opset(m, "", 11);  // DynamicQuantizeLinear-11
  report.extra["weights"] = fmt::format("int8 symmetric, zero point 0, scale max|w|/127 {}",
                                        o.per_channel ? "per output channel" : "per tensor");
  report.extra["activation"] = "dynamic uint8 asymmetric per tensor (range computed at run time)";
  report.extra["matmul_op"] = "com.microsoft.DynamicQuantizeMatMul";
  if (conv) report.extra["conv_ops"] = "DynamicQuantizeLinear + ConvInteger + Cast + Mul";
}

}  // namespace slmops::passes::quant
