// int4-weight / int8-weight: weight-only block quantization of MatMul (and, opt-in, Gather
// on an embedding table).
//
//   Before: Y = MatMul(A, W[K,N] float)
//   After (matmulnbits): Y = com.microsoft.MatMulNBits(A, B uint8 [N, K/bs, bs*bits/8],
//                              scales [N, K/bs], zero_points uint8 [N, ceil(K/bs*bits/8)]?)
//   After (qdq):         Y = MatMul(A, DequantizeLinear(Wq int4/uint4/int8/uint8 [K,N],
//                              scale [K/bs, N], zp?, axis=0, block_size=bs))   (opset 21)
//   Gather(E[V,D], ids) -> Gather(DequantizeLinear(Eq, scale [V, D/bs], axis=1, block_size), ids)
// Conditions: W is a 2-D float32 initializer of this graph (not a graph input) and bs divides
// K (a partial last block is refused: name the node, pick a smaller block or exclude it).
// Symmetric blocks store no zero points (MatMulNBits' default 2^(bits-1); QDQ: signed types
// with zero point 0). A weight read by several MatMuls is quantized once.
#include <fmt/format.h>

#include <chrono>
#include <cstring>
#include <map>

#include "ir/error.h"
#include "passes/common/activations.h"
#include "passes/progress.h"
#include "passes/quant/block_quant.h"
#include "passes/quant/hessian.h"
#include "passes/quant/quantize.h"
#include "runtime/executor.h"
#include "runtime/thread_pool.h"

namespace slmops::passes::quant {
namespace {

struct Target {
  ir::Node* node;
  const ir::Tensor* w;  // the initializer
  int64_t K, N;
  std::vector<float> kn;  // Gemm with transB=1: W transposed to [K, N] (else empty)
  ir::Value* bias = nullptr;  // Gemm's C when it is a [N] vector
  const float* values() const { return kn.empty() ? w->values<float>() : kn.data(); }
};

// Packs N-major unpacked integers q[n*K + k] as an ONNX [K, N] tensor of `bits` (4: two per
// byte, first element in the low nibble), subtracting `offset` (signed types).
ir::Buffer pack_kn(const BlockQuantized& b, int bits, int offset) {
  size_t count = static_cast<size_t>(b.K * b.N);
  size_t bytes = bits == 4 ? (count + 1) / 2 : count;
  ir::Buffer buf = ir::Buffer::allocate(bytes, true);
  uint8_t* out = buf.mutable_data();
  for (int64_t k = 0; k < b.K; ++k)
    for (int64_t n = 0; n < b.N; ++n) {
      size_t idx = static_cast<size_t>(k * b.N + n);
      uint8_t v = static_cast<uint8_t>(int(b.q[n * b.K + k]) - offset);
      if (bits == 8) out[idx] = v;
      else out[idx / 2] |= static_cast<uint8_t>((v & 0xF) << ((idx % 2) * 4));
    }
  return buf;
}

// Per-block values laid out [k_blocks, N] (the QDQ form of MatMulNBits' [N, k_blocks]).
template <typename T, typename F>
ir::Buffer blocks_kn(const BlockQuantized& b, F value) {
  ir::Buffer buf = ir::Buffer::allocate(static_cast<size_t>(b.k_blocks * b.N) * sizeof(T));
  T* out = reinterpret_cast<T*>(buf.mutable_data());
  for (int64_t kb = 0; kb < b.k_blocks; ++kb)
    for (int64_t n = 0; n < b.N; ++n) out[kb * b.N + n] = value(n * b.k_blocks + kb);
  return buf;
}

ir::Buffer to_buffer(const std::vector<uint8_t>& v) { return ir::Buffer::copy_of(v.data(), v.size()); }
ir::Buffer to_buffer(const std::vector<float>& v) { return ir::Buffer::copy_of(v.data(), v.size() * sizeof(float)); }

// DequantizeLinear(Wq, scale, zp?, axis, block_size) for a [rows, cols] matrix blocked along
// `axis`. `b` is the quantization of the matrix seen as W[K, N] with K along `axis`... for
// axis 0 that is W itself; for axis 1 (embeddings) it is W^T.
ir::Value* blocked_dequantize(ir::Graph& g, const std::string& base, const BlockQuantized& b, int bits, bool sym,
                              int64_t bs, int axis) {
  ir::DType qt = bits == 4 ? (sym ? ir::DType::Int4 : ir::DType::UInt4) : (sym ? ir::DType::Int8 : ir::DType::UInt8);
  int offset = sym ? (1 << (bits - 1)) : 0;
  ir::Value *wq, *sc, *zp = nullptr;
  if (axis == 0) {
    wq = add_initializer(g, base + "_q", qt, {b.K, b.N}, pack_kn(b, bits, offset));
    sc = add_initializer(g, base + "_scale", ir::DType::Float, {b.k_blocks, b.N},
                         blocks_kn<float>(b, [&](int64_t i) { return b.scales[i]; }));
    if (!sym) {
      BlockQuantized z;  // zero points as a [k_blocks, N] matrix of `bits`
      z.K = b.k_blocks;
      z.N = b.N;
      z.q.resize(static_cast<size_t>(b.k_blocks * b.N));
      for (int64_t n = 0; n < b.N; ++n)
        for (int64_t kb = 0; kb < b.k_blocks; ++kb) z.q[n * b.k_blocks + kb] = b.zero_points[n * b.k_blocks + kb];
      zp = add_initializer(g, base + "_zero_point", qt, {b.k_blocks, b.N}, pack_kn(z, bits, 0));
    }
  } else {
    // The table E[V, D] was quantized as W = E^T [D, V]: N-major q is already E's row-major order.
    size_t count = static_cast<size_t>(b.K * b.N);
    ir::Buffer q = ir::Buffer::allocate(bits == 4 ? (count + 1) / 2 : count, true);
    for (size_t i = 0; i < count; ++i) {
      uint8_t v = static_cast<uint8_t>(int(b.q[i]) - offset);
      if (bits == 8) q.mutable_data()[i] = v;
      else q.mutable_data()[i / 2] |= static_cast<uint8_t>((v & 0xF) << ((i % 2) * 4));
    }
    wq = add_initializer(g, base + "_q", qt, {b.N, b.K}, q);
    sc = add_initializer(g, base + "_scale", ir::DType::Float, {b.N, b.k_blocks}, to_buffer(b.scales));
    if (!sym) {
      size_t zc = b.zero_points.size();
      ir::Buffer zb = ir::Buffer::allocate(bits == 4 ? (zc + 1) / 2 : zc, true);
      for (size_t i = 0; i < zc; ++i) {
        if (bits == 8) zb.mutable_data()[i] = b.zero_points[i];
        else zb.mutable_data()[i / 2] |= static_cast<uint8_t>((b.zero_points[i] & 0xF) << ((i % 2) * 4));
      }
      zp = add_initializer(g, base + "_zero_point", qt, {b.N, b.k_blocks}, zb);
    }
  }
  std::vector<ir::Value*> ins = {wq, sc};
  if (zp) ins.push_back(zp);
  ir::Node* dq = g.add_node("DequantizeLinear", ins, {g.unique_name(base + "_dq")},
                            attr_list(ir::Attribute::make_int("axis", axis), ir::Attribute::make_int("block_size", bs)),
                            g.unique_name(base + "_DequantizeLinear"));
  return dq->outputs[0];
}

std::string describe_how(const char* what, int bits, const QuantizeOptions& o) {
  return fmt::format("{} int{} block {} {} {}", what, bits, o.block_size, o.symmetric ? "sym" : "asym", o.algorithm);
}

}  // namespace

void quantize_weight_only(ir::Model& m, const QuantizeOptions& o, const NodeFilter& f, const FeedSource* calib,
                          int threads, QuantReport& report, Progress* progress) {
  ir::Graph& g = *m.graph;
  const int bits = o.mode == "int4-weight" ? 4 : 8;
  const int64_t bs = o.block_size;
  const bool qdq = o.format == "qdq";
  runtime::ThreadPool pool(threads);

  // Pick the targets first (and refuse bad shapes) before changing anything.
  std::vector<Target> targets, gathers;
  for (auto& up : g.nodes()) {
    ir::Node* n = up.get();
    if (!f.allows(*n)) continue;
    NodeReport r{n->name, n->op_type, "", 0, 0};
    if (n->op_type == "MatMul") {
      const ir::Tensor* w = n->inputs.size() == 2 ? float_initializer(g, n->inputs[1]) : nullptr;
      if (!w || w->dims.size() != 2 || !n->inputs[0]) {
        r.how = "skipped: B is not a constant 2-D float32 weight";
        report.nodes.push_back(r);
        continue;
      }
      int64_t K = w->dims[0], N = w->dims[1];
      if (K % bs != 0)
        bad_input("node '{}': K = {} is not a multiple of --block-size {}; choose a block size that divides it or "
                  "--exclude-nodes '{}'",
                  n->name, K, bs, n->name);
      targets.push_back({n, w, K, N, {}, nullptr});
    } else if (n->op_type == "Gemm") {
      // Y = A B + C with transA 0, alpha 1, beta 1 (or no C), C a [N] vector: a MatMul plus bias.
      const ir::Tensor* w = n->inputs.size() >= 2 ? float_initializer(g, n->inputs[1]) : nullptr;
      ir::Value* c = n->inputs.size() >= 3 ? n->inputs[2] : nullptr;
      bool trans_b = n->attr_int("transB", 0) != 0;
      int64_t N = w && w->dims.size() == 2 ? w->dims[trans_b ? 0 : 1] : 0;
      // C must be a float [N] vector: from its initializer, else from its declared type.
      bool c_is_vector = false;
      if (c && c->initializer)
        c_is_vector = c->initializer->dtype == ir::DType::Float && c->initializer->dims == std::vector<int64_t>{N};
      else if (c)
        c_is_vector = c->type.has_shape && c->type.dims.size() == 1 && c->type.dims[0].value == N &&
                      c->type.elem() == ir::DType::Float;
      bool plain = n->attr_int("transA", 0) == 0 && n->attr_float("alpha", 1.f) == 1.f &&
                   (!c || (n->attr_float("beta", 1.f) == 1.f && c_is_vector));
      if (!w || w->dims.size() != 2 || !n->inputs[0] || !plain) {
        r.how = "skipped: not A x B (+ C[N]) with a constant 2-D float32 B, transA 0, alpha and beta 1";
        report.nodes.push_back(r);
        continue;
      }
      int64_t K = w->dims[trans_b ? 1 : 0];
      if (K % bs != 0)
        bad_input("node '{}': K = {} is not a multiple of --block-size {}; choose a block size that divides it or "
                  "--exclude-nodes '{}'",
                  n->name, K, bs, n->name);
      Target t{n, w, K, N, {}, c};
      if (trans_b) {
        t.kn.resize(static_cast<size_t>(K * N));
        const float* src = w->values<float>();
        for (int64_t i = 0; i < N; ++i)
          for (int64_t k = 0; k < K; ++k) t.kn[k * N + i] = src[i * K + k];
      }
      targets.push_back(std::move(t));
    } else if (n->op_type == "Gather") {
      const ir::Tensor* w = n->inputs.size() == 2 ? float_initializer(g, n->inputs[0]) : nullptr;
      if (!w || w->dims.size() != 2 || n->attr_int("axis", 0) != 0) {
        r.how = "skipped: data is not a constant 2-D float32 table gathered on axis 0";
        report.nodes.push_back(r);
        continue;
      }
      if (w->dims[1] % bs != 0)
        bad_input("node '{}': embedding width {} is not a multiple of --block-size {}", n->name, w->dims[1], bs);
      gathers.push_back({n, w, w->dims[1], w->dims[0], {}, nullptr});
    }
  }

  std::map<ir::Node*, std::vector<double>> hessians;
  if (o.algorithm == "gptq" && !targets.empty()) {
    auto t0 = std::chrono::steady_clock::now();
    int64_t batches = 0;
    std::vector<HessianTarget> ht;
    for (auto& t : targets) ht.push_back({t.node, t.K});
    hessians = collect_hessians(m, ht, *calib, o.calib_samples, pool, threads, batches);
    report.extra["calibration"] = {{"data", calib->describe()},
                                   {"batches", batches},
                                   {"seconds", std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()}};
  }

  BlockParams bp{bits, bs, o.symmetric};
  auto quantize = [&](const float* w, int64_t K, int64_t N, ir::Node* node) {
    if (o.algorithm == "hqq") return quantize_hqq(w, K, N, bp, static_cast<int>(o.hqq_iterations), &pool);
    if (o.algorithm == "gptq" && node) {
      GptqOptions go;
      go.damp = o.gptq_damp;
      go.act_order = o.gptq_act_order;
      return quantize_gptq(w, K, N, hessians.at(node), bp, go, &pool);
    }
    return quantize_rtn(w, K, N, bp, &pool);
  };

  if (qdq || !gathers.empty()) require_opset(m, "", 21);
  if (!qdq && !targets.empty()) require_opset(m, "com.microsoft", 1);

  // MatMulNBits inputs per weight value, so a shared weight is quantized once (not with GPTQ:
  // there each consumer has its own Hessian).
  std::map<ir::Value*, std::vector<ir::Value*>> done;
  ProgressStage stage(targets.empty() && gathers.empty() ? nullptr : progress, fmt::format("{} {}", o.algorithm, o.mode), static_cast<int64_t>(targets.size() + gathers.size()),
                      "weights");
  int64_t finished = 0;
  for (auto& t : targets) {
    ir::Node* n = t.node;
    stage.update(finished++, n->name);
    const std::string node_name = n->name, node_op = n->op_type;
    ir::Value* wv = n->inputs[1];
    ir::Value* a = n->inputs[0];
    std::string base = wv->name;
    int64_t before = static_cast<int64_t>(t.w->nbytes()), after = 0;
    std::vector<ir::Value*> extra;
    auto cached = o.algorithm == "gptq" ? done.end() : done.find(wv);
    if (cached != done.end()) {
      extra = cached->second;
    } else if (o.algorithm == "rtn" && !qdq) {
      // The common case, streamed: codes go straight into the packed B, no unpacked copy.
      const int64_t kb = t.K / bs, blob = bs * bits / 8;
      ir::Buffer B = ir::Buffer::allocate(static_cast<size_t>(t.N * kb * blob));
      ir::Buffer S = ir::Buffer::allocate(static_cast<size_t>(t.N * kb) * sizeof(float));
      BlockQuantized zp;
      zp.K = t.K;
      zp.N = t.N;
      zp.k_blocks = kb;
      zp.zero_points.resize(static_cast<size_t>(t.N * kb));
      quantize_rtn_packed(t.values(), t.K, t.N, bp, B.mutable_data(),
                          reinterpret_cast<float*>(S.mutable_data()), zp.zero_points.data(), &pool);
      extra.push_back(add_initializer(g, base + "_Q" + std::to_string(bits), ir::DType::UInt8, {t.N, kb, blob}, B));
      extra.push_back(add_initializer(g, base + "_scales", ir::DType::Float, {t.N, kb}, S));
      if (!o.symmetric) {
        auto packed_zp = pack_zero_points(zp, bits);
        int64_t per_row = static_cast<int64_t>(packed_zp.size()) / t.N;
        extra.push_back(add_initializer(g, base + "_zero_points", ir::DType::UInt8, {t.N, per_row}, to_buffer(packed_zp)));
      }
      done[wv] = extra;
      for (ir::Value* v : extra) after += static_cast<int64_t>(v->initializer->nbytes());
    } else {
      BlockQuantized b = quantize(t.values(), t.K, t.N, n);
      if (qdq) {
        extra = {blocked_dequantize(g, base, b, bits, o.symmetric, bs, 0)};
      } else {
        auto packed = pack_matmulnbits_b(b, bits, bs);
        extra.push_back(add_initializer(g, base + "_Q" + std::to_string(bits), ir::DType::UInt8,
                                        {t.N, b.k_blocks, bs * bits / 8}, to_buffer(packed)));
        extra.push_back(add_initializer(g, base + "_scales", ir::DType::Float, {t.N, b.k_blocks}, to_buffer(b.scales)));
        if (!o.symmetric) {
          auto zp = pack_zero_points(b, bits);
          int64_t per_row = static_cast<int64_t>(zp.size()) / t.N;
          extra.push_back(add_initializer(g, base + "_zero_points", ir::DType::UInt8, {t.N, per_row}, to_buffer(zp)));
        }
      }
      done[wv] = extra;
      for (ir::Value* v : extra)
        if (v->initializer) after += static_cast<int64_t>(v->initializer->nbytes());
        else
          for (ir::Value* in : v->producer->inputs)
            if (in && in->initializer) after += static_cast<int64_t>(in->initializer->nbytes());
    }
    if (qdq) {
      n->set_input(1, extra[0]);  // [K, N]
      if (auto* tb = n->attr("transB")) tb->i = 0;
    } else {
      std::vector<ir::Value*> ins = {a};
      ins.insert(ins.end(), extra.begin(), extra.end());
      if (t.bias) {
        ins.resize(5, nullptr);  // A, B, scales, zero_points?, g_idx (unused), bias
        ins.push_back(t.bias);
      }
      ir::replace_node(g, n, "MatMulNBits", "com.microsoft", ins,
                   attr_list(ir::Attribute::make_int("K", t.K), ir::Attribute::make_int("N", t.N),
                             ir::Attribute::make_int("bits", bits), ir::Attribute::make_int("block_size", bs),
                             ir::Attribute::make_int("accuracy_level", o.accuracy_level)));
    }
    if (wv->consumers.empty()) release_file_pages(*t.w);
    ir::erase_initializer(g, wv);
    report.nodes.push_back({node_name, node_op,
                            describe_how(qdq ? ("DequantizeLinear+" + node_op).c_str() : "MatMulNBits", bits, o), before, after});
  }
  for (auto& t : gathers) {
    stage.update(finished++, t.node->name);
    ir::Node* n = t.node;
    ir::Value* table = n->inputs[0];
    // Blocks run along D (axis 1): quantize E^T [D, V] so that K = D.
    std::vector<float> et(static_cast<size_t>(t.K * t.N));
    const float* e = t.w->values<float>();
    for (int64_t v = 0; v < t.N; ++v)
      for (int64_t d = 0; d < t.K; ++d) et[d * t.N + v] = e[v * t.K + d];
    BlockQuantized b = o.algorithm == "hqq" ? quantize_hqq(et.data(), t.K, t.N, bp, static_cast<int>(o.hqq_iterations), &pool)
                                            : quantize_rtn(et.data(), t.K, t.N, bp, &pool);
    ir::Value* dq = blocked_dequantize(g, table->name, b, bits, o.symmetric, bs, 1);
    int64_t after = 0;
    for (ir::Value* in : dq->producer->inputs) after += static_cast<int64_t>(in->initializer->nbytes());
    int64_t before = static_cast<int64_t>(t.w->nbytes());
    n->set_input(0, dq);
    ir::erase_initializer(g, table);
    report.nodes.push_back({n->name, "Gather", describe_how("DequantizeLinear+Gather", bits, o), before, after});
  }
  ir::sort_nodes(g);
  report.extra["bits"] = bits;
  report.extra["block_size"] = bs;
  stage.update(finished);
  report.extra["symmetric"] = o.symmetric;
  report.extra["format"] = o.format;
  report.extra["algorithm"] = o.algorithm;
}

}  // namespace slmops::passes::quant
