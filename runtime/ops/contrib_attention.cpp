// com.microsoft attention ops as ONNX Runtime's CPU kernels define them: the ops ONNX Runtime
// GenAI's model builder writes, and `slmops convert HF_DIR --target onnxruntime` too.
//
//   RotaryEmbedding(input, position_ids, cos_cache, sin_cache) -> output
//     input [batch, seq, heads * head] or [batch, heads, seq, head]; position_ids [batch, seq]
//     or one offset (positions offset + s); caches [max_position, rotary_dim / 2]. The first
//     rotary_dim values of each head turn (halves, or interleaved pairs); the rest pass.
//   GroupQueryAttention(query, key, value, past_key?, past_value?, seqlens_k, total_sequence_length,
//                       cos_cache?, sin_cache?) -> output, present_key, present_value
//     query [batch, seq, heads * head] (or Q, K and V packed in it when key is absent), key and
//     value [batch, seq, kv_heads * head]; past/present [batch, kv_heads, length, head].
//     seqlens_k[b] + 1 is batch row b's total length. A first prompt (seq == total_sequence_length)
//     writes its keys from position 0 (rows may be right-padded); a later call (one token, or
//     more with batch 1) writes them after that row's past. Causal; with local_window_size W > 0
//     a query sees its last W keys, itself included (as ONNX Runtime 1.30 does, and
//     transformers' sliding_window); softcap, smooth softmax, and
//     do_rotary (the positions the cache holds, rotary applied to Q and the new K).
// Float16 and bfloat16 compute through float; outputs keep the input type.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <tuple>

#include "runtime/kernels/gemm.h"
#include "runtime/ops/common.h"

namespace slmops::runtime::ops::contrib {
namespace {

// Rotates `rot` values of x (a head of `head` values) in place: halves (x[i], x[i + rot/2]) or
// interleaved pairs (x[2i], x[2i+1]) by the angles whose cos/sin are c[0..rot/2), s[...].
void rotate(float* x, int64_t rot, bool interleaved, const float* c, const float* s) {
  const int64_t half = rot / 2;
  if (interleaved) {
    for (int64_t i = 0; i < half; ++i) {
      const float a = x[2 * i], b = x[2 * i + 1];
      x[2 * i] = a * c[i] - b * s[i];
      x[2 * i + 1] = b * c[i] + a * s[i];
    }
  } else {
    for (int64_t i = 0; i < half; ++i) {
      const float a = x[i], b = x[i + half];
      x[i] = a * c[i] - b * s[i];
      x[i + half] = b * c[i] + a * s[i];
    }
  }
}

// The cos/sin caches [max_position, rotary_dim / 2] as floats.
struct RotaryCache {
  Tensor cos, sin;
  int64_t rows = 0, half = 0;
  RotaryCache(const Tensor& c, const Tensor& s) : cos(to_float_tensor(c)), sin(to_float_tensor(s)) {
    if (c.dims.size() != 2 || c.dims != s.dims)
      bad_input("cos_cache {} and sin_cache {} must be two matrices of one shape", describe(c), describe(s));
    rows = c.dims[0];
    half = c.dims[1];
  }
  const float* cos_row(int64_t p) const { return cos.values<float>() + check(p) * half; }
  const float* sin_row(int64_t p) const { return sin.values<float>() + p * half; }
  int64_t check(int64_t p) const {
    if (p < 0 || p >= rows) bad_input("position {} is outside the rotary cache's {} rows", p, rows);
    return p;
  }
};

void rotary_embedding(const ir::Node& n, OpContext& ctx) {
  const Tensor& x = ctx.in(0);
  const std::vector<int64_t> pos = to_int64s(ctx.in(1));
  const RotaryCache cache(ctx.in(2), ctx.in(3));
  const int64_t rank = static_cast<int64_t>(x.dims.size());
  if (rank != 3 && rank != 4) bad_input("input {} must have 3 or 4 dimensions", describe(x));
  const int64_t num_heads_attr = n.attr_int("num_heads", 0), rot_attr = n.attr_int("rotary_embedding_dim", 0);
  const bool interleaved = n.attr_int("interleaved", 0) == 1;
  if (rot_attr > 0 && num_heads_attr <= 0) bad_input("num_heads must be given with rotary_embedding_dim");
  const int64_t B = x.dims[0], S = rank == 3 ? x.dims[1] : x.dims[2];
  const int64_t hidden = rank == 3 ? x.dims[2] : x.dims[1] * x.dims[3];
  const int64_t head = rot_attr == 0 ? cache.half * 2 : hidden / num_heads_attr;
  const int64_t rot = rot_attr > 0 ? rot_attr : head;
  if (head <= 0 || hidden % head != 0 || rot > head || rot % 2 != 0 || rot / 2 != cache.half)
    bad_input("input {} with rotary dimension {} does not fit caches of {} columns", describe(x), rot, cache.half);
  const int64_t N = hidden / head;
  const bool offset = pos.size() == 1 && !(ctx.in(1).dims.size() == 2 && B * S == 1);
  if (!offset && static_cast<int64_t>(pos.size()) != B * S)
    bad_input("position_ids {} must be [{}, {}] or one offset", describe(ctx.in(1)), B, S);
  // Strides of (batch, seq, head) in the input.
  const int64_t hs = rank == 3 ? head : S * head, ss = rank == 3 ? N * head : head, bs = S * N * head;
  Tensor xf = to_float_tensor(x);
  Tensor y = new_tensor(DType::Float, x.dims);
  const float* in = xf.values<float>();
  float* out = y.mutable_values<float>();
  std::memcpy(out, in, static_cast<size_t>(xf.numel()) * sizeof(float));
  ctx.pool->parallel_for(B * S, std::max<int64_t>(1, 256 / std::max<int64_t>(N, 1)), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t b = r / S, s = r % S;
      const int64_t p = offset ? pos[0] + s : pos[static_cast<size_t>(r)];
      const float* c = cache.cos_row(p);
      const float* sn = cache.sin_row(p);
      for (int64_t h = 0; h < N; ++h) rotate(out + b * bs + s * ss + h * hs, rot, interleaved, c, sn);
    }
  });
  ctx.set_out(0, x.dtype == DType::Float ? std::move(y) : from_float_tensor(y, x.dtype));
}

struct GqaShape {
  int64_t B, S, H, KV, D, past_len, present_len, total;
  bool packed, first_prompt;
};

void group_query_attention(const ir::Node& n, OpContext& ctx) {
  const Tensor& q_in = ctx.in(0);
  const bool packed = !ctx.has_input(1);
  const int64_t H = n.attr_int("num_heads", 0), KV = n.attr_int("kv_num_heads", 0);
  if (H <= 0 || KV <= 0 || H % KV != 0) bad_input("num_heads {} must be a positive multiple of kv_num_heads {}", H, KV);
  for (size_t i : {size_t{9}, size_t{10}, size_t{11}})
    if (ctx.has_input(i))
      bad_input("input {} ({}) is not supported by slmops' GroupQueryAttention", i,
                i == 9    ? "position_ids"
                : i == 10 ? "attention_bias"
                          : "head_sink");
  if (q_in.dims.size() != 3) bad_input("query {} must be [batch, sequence, hidden]", describe(q_in));
  GqaShape g{};
  g.B = q_in.dims[0];
  g.S = q_in.dims[1];
  g.H = H;
  g.KV = KV;
  g.packed = packed;
  const int64_t width = q_in.dims[2];
  g.D = packed ? width / (H + 2 * KV) : width / H;
  if (g.D <= 0 || (packed ? g.D * (H + 2 * KV) : g.D * H) != width)
    bad_input("query {} does not hold {} heads", describe(q_in), packed ? H + 2 * KV : H);
  if (!packed) {
    for (size_t i : {size_t{1}, size_t{2}}) {
      const Tensor& t = ctx.in(i);
      if (t.dims != std::vector<int64_t>{g.B, g.S, KV * g.D})
        bad_input("{} {} must be [{}, {}, {}]", i == 1 ? "key" : "value", describe(t), g.B, g.S, KV * g.D);
    }
  }
  const bool has_past = ctx.has_input(3) && ctx.has_input(4);
  if (ctx.has_input(3) != ctx.has_input(4)) bad_input("past_key and past_value must both be given or both omitted");
  if (has_past) {
    const Tensor& pk = ctx.in(3);
    if (pk.dims.size() != 4 || pk.dims[0] != g.B || pk.dims[1] != KV || pk.dims[3] != g.D || ctx.in(4).dims != pk.dims)
      bad_input("past_key {} and past_value {} must be [{}, {}, length, {}]", describe(pk), describe(ctx.in(4)), g.B,
                KV, g.D);
    g.past_len = pk.dims[2];
  }
  const std::vector<int64_t> seqlens = to_int64s(ctx.in(5));
  const std::vector<int64_t> total_v = to_int64s(ctx.in(6));
  if (static_cast<int64_t>(seqlens.size()) != g.B)
    bad_input("seqlens_k {} must hold {} values", describe(ctx.in(5)), g.B);
  if (total_v.size() != 1) bad_input("total_sequence_length {} must be one value", describe(ctx.in(6)));
  g.total = total_v[0];
  g.present_len = std::max(g.total, g.past_len);
  const bool subsequent = g.S > 1 && g.S != g.total;
  if (subsequent && g.B != 1)
    bad_input("batch {} with {} new tokens and a past: ONNX Runtime's GroupQueryAttention takes batch 1 there", g.B,
              g.S);
  g.first_prompt = !subsequent && g.S == g.total;
  if (!subsequent && !g.first_prompt && g.S != 1)
    bad_input("{} new tokens with total_sequence_length {}: not a prompt, so it must be one token", g.S, g.total);
  for (int64_t b = 0; b < g.B; ++b) {
    const int64_t t = seqlens[static_cast<size_t>(b)] + 1;
    const int64_t past = g.first_prompt ? 0 : t - g.S;
    if (t < 1 || t > g.present_len || past < 0 || past > g.past_len || past + g.S > g.present_len)
      bad_input("seqlens_k[{}] = {} does not fit {} new tokens, a past of {} and total_sequence_length {}", b, t - 1,
                g.S, g.past_len, g.total);
  }
  const float scale_attr = n.attr_float("scale", 0.0f);
  const float scale = scale_attr == 0.0f ? 1.0f / std::sqrt(static_cast<float>(g.D)) : scale_attr;
  const float softcap = n.attr_float("softcap", 0.0f);
  const int64_t window = n.attr_int("local_window_size", -1);
  const bool smooth = n.attr_int("smooth_softmax", 0) == 1;
  const bool do_rotary = n.attr_int("do_rotary", 0) == 1;
  const bool interleaved = n.attr_int("rotary_interleaved", 0) == 1;
  std::unique_ptr<RotaryCache> cache;
  if (do_rotary) {
    if (!ctx.has_input(7) || !ctx.has_input(8)) bad_input("do_rotary needs cos_cache and sin_cache");
    cache = std::make_unique<RotaryCache>(ctx.in(7), ctx.in(8));
    if (cache->half * 2 > g.D) bad_input("rotary caches of {} columns exceed head size {}", cache->half, g.D);
  }

  // Q, K and V as float [B, S, heads, D] rows; rotary on Q and the new K.
  const Tensor qf = to_float_tensor(q_in);
  const Tensor kf = packed ? Tensor() : to_float_tensor(ctx.in(1));
  const Tensor vf = packed ? Tensor() : to_float_tensor(ctx.in(2));
  const int64_t row = packed ? (H + 2 * KV) * g.D : H * g.D, kv_row = packed ? row : KV * g.D;
  const float* qp = qf.values<float>();
  const float* kp = packed ? qp + H * g.D : kf.values<float>();
  const float* vp = packed ? qp + (H + KV) * g.D : vf.values<float>();
  std::vector<float> qr, kr;
  if (do_rotary) {
    qr.resize(static_cast<size_t>(g.B * g.S * H * g.D));
    kr.resize(static_cast<size_t>(g.B * g.S * KV * g.D));
    for (int64_t b = 0; b < g.B; ++b) {
      const int64_t past = g.first_prompt ? 0 : seqlens[static_cast<size_t>(b)] + 1 - g.S;
      for (int64_t s = 0; s < g.S; ++s) {
        const float* c = cache->cos_row(past + s);
        const float* sn = cache->sin_row(past + s);
        float* qo = qr.data() + (b * g.S + s) * H * g.D;
        float* ko = kr.data() + (b * g.S + s) * KV * g.D;
        std::memcpy(qo, qp + (b * g.S + s) * row, static_cast<size_t>(H * g.D) * sizeof(float));
        std::memcpy(ko, kp + (b * g.S + s) * kv_row, static_cast<size_t>(KV * g.D) * sizeof(float));
        for (int64_t h = 0; h < H; ++h) rotate(qo + h * g.D, cache->half * 2, interleaved, c, sn);
        for (int64_t h = 0; h < KV; ++h) rotate(ko + h * g.D, cache->half * 2, interleaved, c, sn);
      }
    }
    qp = qr.data();
    kp = kr.data();
  }
  const int64_t q_stride = do_rotary ? H * g.D : row, k_stride = do_rotary ? KV * g.D : kv_row;

  // present = the row's past (its first `past` positions), then the new keys/values; zeros after.
  Tensor pk = new_tensor(DType::Float, {g.B, KV, g.present_len, g.D});
  Tensor pv = new_tensor(DType::Float, {g.B, KV, g.present_len, g.D});
  const Tensor past_k = has_past ? to_float_tensor(ctx.in(3)) : Tensor();
  const Tensor past_v = has_past ? to_float_tensor(ctx.in(4)) : Tensor();
  Tensor out = new_tensor(DType::Float, {g.B, g.S, H * g.D});
  const int64_t group = H / KV;
  ctx.pool->parallel_for(g.B * KV, 1, [&](int64_t i0, int64_t i1) {
    std::vector<float> qh(static_cast<size_t>(g.S * g.D)), scores, ctxv(static_cast<size_t>(g.S * g.D));
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t b = i / KV, kh = i % KV;
      const int64_t total_b = seqlens[static_cast<size_t>(b)] + 1;
      const int64_t past = g.first_prompt ? 0 : total_b - g.S;
      // This row's present key/value blocks [present_len, D].
      for (auto [dst_t, src_t, fresh, fresh_stride] :
           {std::tuple{&pk, &past_k, kp, k_stride}, std::tuple{&pv, &past_v, vp, kv_row}}) {
        float* dst = dst_t->mutable_values<float>() + i * g.present_len * g.D;
        std::fill(dst, dst + g.present_len * g.D, 0.0f);
        if (has_past && past > 0)
          std::memcpy(dst, src_t->values<float>() + i * g.past_len * g.D,
                      static_cast<size_t>(past * g.D) * sizeof(float));
        for (int64_t s = 0; s < g.S; ++s)
          std::memcpy(dst + (past + s) * g.D, fresh + (b * g.S + s) * fresh_stride + kh * g.D,
                      static_cast<size_t>(g.D) * sizeof(float));
      }
      const float* K = pk.values<float>() + i * g.present_len * g.D;
      const float* V = pv.values<float>() + i * g.present_len * g.D;
      const int64_t T = std::min(total_b, g.present_len);
      scores.resize(static_cast<size_t>(g.S * T));
      for (int64_t h = kh * group; h < (kh + 1) * group; ++h) {
        for (int64_t s = 0; s < g.S; ++s)
          std::memcpy(qh.data() + s * g.D, qp + (b * g.S + s) * q_stride + h * g.D,
                      static_cast<size_t>(g.D) * sizeof(float));
        kernels::sgemm(false, true, g.S, T, g.D, scale, qh.data(), g.D, K, g.D, 0.0f, scores.data(), T, nullptr);
        for (int64_t s = 0; s < g.S; ++s) {
          float* sc = scores.data() + s * T;
          const int64_t causal = std::min(past + s + 1, T);                           // keys [0, causal) are visible
          const int64_t start = window > 0 && causal > window ? causal - window : 0;  // window keys, this one included
          float mx = -INFINITY;
          for (int64_t j = start; j < causal; ++j) {
            if (softcap > 0.0f) sc[j] = softcap * std::tanh(sc[j] / softcap);
            mx = std::max(mx, sc[j]);
          }
          if (smooth) mx = std::max(mx, 0.0f);
          double sum = smooth ? std::exp(-static_cast<double>(mx)) : 0.0;
          for (int64_t j = start; j < causal; ++j) {
            sc[j] = std::exp(sc[j] - mx);
            sum += sc[j];
          }
          const float inv = static_cast<float>(1.0 / sum);
          for (int64_t j = 0; j < T; ++j) sc[j] = j >= start && j < causal ? sc[j] * inv : 0.0f;
        }
        kernels::sgemm(false, false, g.S, g.D, T, 1.0f, scores.data(), T, V, g.D, 0.0f, ctxv.data(), g.D, nullptr);
        float* o = out.mutable_values<float>();
        for (int64_t s = 0; s < g.S; ++s)
          std::memcpy(o + (b * g.S + s) * H * g.D + h * g.D, ctxv.data() + s * g.D,
                      static_cast<size_t>(g.D) * sizeof(float));
      }
    }
  });
  const DType dt = q_in.dtype;
  auto typed = [&](Tensor t) { return dt == DType::Float ? std::move(t) : from_float_tensor(t, dt); };
  ctx.set_out(0, typed(std::move(out)));
  if (ctx.output_count() > 1 && n.outputs[1]) ctx.set_out(1, typed(std::move(pk)));
  if (ctx.output_count() > 2 && n.outputs[2]) ctx.set_out(2, typed(std::move(pv)));
}

}  // namespace
}  // namespace slmops::runtime::ops::contrib

namespace slmops::runtime {
void register_contrib_attention_ops() {
  using namespace ops::contrib;
  register_kernel("com.microsoft", "RotaryEmbedding", 1, simple_kernel(rotary_embedding));
  register_kernel("com.microsoft", "GroupQueryAttention", 1, simple_kernel(group_query_attention));
}
}  // namespace slmops::runtime
