// The decoder builder: transformers' modeling_{llama,mistral,qwen2,qwen3,phi3}.py and
// modeling_rope_utils.py written out as ONNX ops. Weights are converted to float32 (and
// transposed for MatMul) one tensor at a time; the mapped checkpoint pages of each are
// released after, so the checkpoint is never resident alongside the whole output.
#include "passes/convert/hf_decoder.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numbers>

#include "formats/file_util.h"
#include "formats/safetensors.h"
#include "ir/error.h"
#include "passes/progress.h"
#include "passes/quant/block_quant.h"
#include "passes/registry.h"
#include "runtime/kernels/avx2_moves.h"
#include "runtime/kernels/cpu_features.h"
#include "runtime/thread_pool.h"

namespace slmops::passes {

namespace fs = std::filesystem;
using ir::Value;

const std::vector<std::string>& supported_architectures() {
  static const std::vector<std::string> v = {"LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM",
                                             "Qwen3ForCausalLM", "Phi3ForCausalLM"};
  return v;
}

namespace {

int64_t int_key(const nlohmann::json& c, const char* key, const std::string& where, int64_t dflt = -1) {
  if (!c.contains(key) || c[key].is_null()) {
    if (dflt >= 0) return dflt;
    bad_input("{}: config.json has no \"{}\"", where, key);
  }
  if (!c[key].is_number_integer() || c[key].get<int64_t>() < 0)
    bad_input("{}: config.json \"{}\" must be a non-negative integer, found {}", where, key, c[key].dump());
  return c[key].get<int64_t>();
}

double num_key(const nlohmann::json& c, const char* key, double dflt) {
  if (!c.contains(key) || c[key].is_null()) return dflt;
  if (!c[key].is_number()) bad_input("config.json \"{}\" must be a number, found {}", key, c[key].dump());
  return c[key].get<double>();
}

// Float32 copy of rows [row0, row0+rows) of a 2-D (or 1-D) F32/F16/BF16 tensor, transposed to
// [cols, rows] when `transpose`. Written straight into the new tensor's buffer, in 64x64 tiles
// (the transpose reads and writes whole cache lines).
template <size_t ES, typename Convert>
void convert_rows(const uint8_t* base, int64_t rows, int64_t cols, bool transpose, float* out, Convert cvt) {
  if (!transpose) {  // one pass in storage order (the element size is a constant: it vectorizes)
    const int64_t n = rows * cols;
    for (int64_t i = 0; i < n; ++i) out[i] = cvt(base + static_cast<size_t>(i) * ES);
    return;
  }
  constexpr int64_t kTile = 64;
  for (int64_t r0 = 0; r0 < rows; r0 += kTile)
    for (int64_t c0 = 0; c0 < cols; c0 += kTile) {
      const int64_t r1 = std::min(rows, r0 + kTile), c1 = std::min(cols, c0 + kTile);
      for (int64_t r = r0; r < r1; ++r) {
        const uint8_t* row = base + static_cast<size_t>(r * cols) * ES;
        for (int64_t c = c0; c < c1; ++c) out[c * rows + r] = cvt(row + static_cast<size_t>(c) * ES);
      }
    }
}

// The transposing copy of 4-byte (float32) or 2-byte (bfloat16, widened) values in 8x8 blocks
// of AVX2 registers: both are moves of bits, so the values are convert_rows' exactly. Within
// 64x64 tiles, as convert_rows; rows and columns past the last multiple of 8 go through `edge`.
template <size_t ES, typename Edge>
__attribute__((target("avx2"))) void transpose_rows_avx2(const uint8_t* base, int64_t rows, int64_t cols, float* out,
                                                         Edge edge) {
  constexpr int64_t kTile = 64;
  const int64_t rows8 = rows / 8 * 8, cols8 = cols / 8 * 8;
  for (int64_t r0 = 0; r0 < rows8; r0 += kTile)
    for (int64_t c0 = 0; c0 < cols8; c0 += kTile) {
      const int64_t r1 = std::min(rows8, r0 + kTile), c1 = std::min(cols8, c0 + kTile);
      for (int64_t r = r0; r < r1; r += 8)
        for (int64_t c = c0; c < c1; c += 8) {
          __m256 v[8];
          for (int64_t i = 0; i < 8; ++i)
            v[i] = runtime::kernels::load8_as_float<ES>(base + static_cast<size_t>((r + i) * cols + c) * ES);
          runtime::kernels::transpose8(v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7]);
          for (int64_t i = 0; i < 8; ++i) _mm256_storeu_ps(out + (c + i) * rows + r, v[i]);
        }
    }
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = r < rows8 ? cols8 : 0; c < cols; ++c)
      out[c * rows + r] = edge(base + static_cast<size_t>(r * cols + c) * ES);
}

// One weight to convert: rows [row0, row0+rows) of `src` into `out` (see to_float); or, when
// `q.B` is set, those rows (output features of a Linear, K values each) quantized to int4 into
// MatMulNBits' B, scales and packed zero points (see Builder::matmul).
struct Int4Out {
  uint8_t* B = nullptr;
  float* scales = nullptr;
  uint8_t* zero_points = nullptr;  // null: symmetric
  int64_t block = 32;
};
struct Job {
  const ir::Tensor* src;
  int64_t row0, rows;
  bool transpose;
  float* out;
  Int4Out q;
};

// Float32 of rows [row0, row0+rows) of `t`, transposed to [cols, rows] when `transpose`.
void convert_block(const ir::Tensor& t, int64_t row0, int64_t rows, bool transpose, float* out) {
  const int64_t cols = t.dims.size() >= 2 ? t.dims[1] : 1;
  const size_t es = t.dtype == ir::DType::Float ? 4 : 2;
  const uint8_t* base = t.data.data() + static_cast<size_t>(row0 * cols) * es;
  auto u16 = [](const uint8_t* p) {
    uint16_t h;
    std::memcpy(&h, p, 2);
    return h;
  };
  auto f32 = [](const uint8_t* p) {
    float v;
    std::memcpy(&v, p, 4);
    return v;
  };
  auto bf16 = [&](const uint8_t* p) {  // the top half of a float32: inline, so the tile loops vectorize
    const uint32_t bits = static_cast<uint32_t>(u16(p)) << 16;
    float v;
    std::memcpy(&v, &bits, 4);
    return v;
  };
  const bool avx2 = transpose && runtime::kernels::cpu().avx2;
  if (t.dtype == ir::DType::Float)
    avx2 ? transpose_rows_avx2<4>(base, rows, cols, out, f32) : convert_rows<4>(base, rows, cols, transpose, out, f32);
  else if (t.dtype == ir::DType::Float16)
    convert_rows<2>(base, rows, cols, transpose, out, [&](const uint8_t* p) { return ir::half_to_float(u16(p)); });
  else
    avx2 ? transpose_rows_avx2<2>(base, rows, cols, out, bf16)
         : convert_rows<2>(base, rows, cols, transpose, out, bf16);
}

// Rows of a Linear weight [N, K] quantized 64 at a time: each chunk goes to float32 as it is
// stored (one row per output column, its blocks contiguous; a small buffer), then through the
// quantize pass's RTN arithmetic into MatMulNBits' N-major layout, so chunks land one after
// another. The same bytes as quantize over the float model (tested).
void quantize_job(const Job& j) {
  constexpr int64_t kChunk = 64;
  const int64_t K = j.src->dims[1], bs = j.q.block, kb = K / bs, blob = bs / 2, zp_row = (kb * 4 + 7) / 8;
  const passes::quant::BlockParams bp{4, bs, j.q.zero_points == nullptr};
  std::vector<float> w(j.src->dtype == ir::DType::BFloat16 ? 0 : static_cast<size_t>(K * kChunk));
  std::vector<uint8_t> zp(static_cast<size_t>(kChunk * kb));
  for (int64_t n0 = 0; n0 < j.rows; n0 += kChunk) {
    const int64_t nc = std::min(kChunk, j.rows - n0);
    if (j.src->dtype == ir::DType::BFloat16) {  // widened as it is read, no float32 copy
      const uint8_t* src = j.src->data.data() + static_cast<size_t>((j.row0 + n0) * K) * 2;
      passes::quant::quantize_rtn_rows_packed_bf16(src, K, nc, bp, j.q.B + n0 * kb * blob, j.q.scales + n0 * kb,
                                                   zp.data());
    } else {
      convert_block(*j.src, j.row0 + n0, nc, false, w.data());
      passes::quant::quantize_rtn_rows_packed(w.data(), K, nc, bp, j.q.B + n0 * kb * blob, j.q.scales + n0 * kb,
                                              zp.data());
    }
    if (!j.q.zero_points) continue;
    uint8_t* dst = j.q.zero_points + n0 * zp_row;
    std::fill(dst, dst + nc * zp_row, uint8_t{0});
    for (int64_t n = 0; n < nc; ++n)  // two 4-bit zero points per byte, the first in the low nibble
      for (int64_t b = 0; b < kb; ++b)
        dst[n * zp_row + b / 2] |= static_cast<uint8_t>((zp[static_cast<size_t>(n * kb + b)] & 15) << (b % 2 * 4));
  }
}

void convert_job(const Job& j) {
  if (j.q.B)
    quantize_job(j);
  else
    convert_block(*j.src, j.row0, j.rows, j.transpose, j.out);
  j.src->data.release_resident_pages();  // the checkpoint's pages leave the resident set once read
}

// A float32 tensor for rows [row0, row0+rows) of `t` (transposed to [cols, rows] when
// `transpose`): allocated now, filled when the jobs run (on every thread, after the graph is built).
ir::Tensor to_float(const ir::Tensor& t, const std::string& name, int64_t row0, int64_t rows, bool transpose,
                    std::vector<Job>& jobs) {
  const int64_t cols = t.dims.size() >= 2 ? t.dims[1] : 1;
  ir::Buffer buf = ir::Buffer::allocate(static_cast<size_t>(rows * cols) * sizeof(float));
  jobs.push_back({&t, row0, rows, transpose, reinterpret_cast<float*>(buf.mutable_data())});
  std::vector<int64_t> dims = t.dims.size() >= 2
                                  ? (transpose ? std::vector<int64_t>{cols, rows} : std::vector<int64_t>{rows, cols})
                                  : std::vector<int64_t>{rows};
  return ir::Tensor::make(name, ir::DType::Float, dims, std::move(buf));
}

class Builder {
 public:
  Builder(ir::Graph& g, const formats::Checkpoint& ck) : g_(g), ck_(ck) {}

  // One node with one output, named after the scope.
  Value* op(const std::string& type, std::vector<Value*> in, std::vector<ir::Attribute> attrs = {},
            std::string out_name = {}) {
    return ops(type, std::move(in), 1, std::move(attrs), {std::move(out_name)})[0];
  }
  std::vector<Value*> ops(const std::string& type, std::vector<Value*> in, int n_out,
                          std::vector<ir::Attribute> attrs = {}, std::vector<std::string> out_names = {},
                          std::string domain = {}) {
    const std::string node = unique(scope_ + "/" + type);
    std::vector<std::string> outs;
    for (int k = 0; k < n_out; ++k)
      outs.push_back(static_cast<size_t>(k) < out_names.size() && !out_names[static_cast<size_t>(k)].empty()
                         ? out_names[static_cast<size_t>(k)]
                         : fmt::format("{}/output_{}", node, k));
    ir::Node* n = g_.add_node(type, std::move(in), outs, std::move(attrs), node, std::move(domain));
    return n->outputs;
  }
  Value* i64(const std::string& name, std::vector<int64_t> v) {
    return g_.add_initializer(
        ir::Tensor::from_values(unique(name), ir::DType::Int64, {static_cast<int64_t>(v.size())}, v));
  }
  Value* i64_scalar(const std::string& name, int64_t v) {
    return g_.add_initializer(ir::Tensor::from_values(unique(name), ir::DType::Int64, {}, std::vector<int64_t>{v}));
  }
  Value* f32_scalar(const std::string& name, float v) {
    return g_.add_initializer(ir::Tensor::from_values(unique(name), ir::DType::Float, {}, std::vector<float>{v}));
  }
  Value* add(ir::Tensor t) { return g_.add_initializer(std::move(t)); }

  // A checkpoint tensor of the expected shape.
  const ir::Tensor& tensor(const std::string& name, const std::vector<int64_t>& dims) const {
    if (!ck_.contains(name)) bad_input("{}: the checkpoint has no tensor '{}'", ck_.path, name);
    const ir::Tensor& t = ck_.at(name);
    if (t.dims != dims)
      bad_input("{}: tensor '{}' has shape [{}], expected [{}]", ck_.path, name, fmt::join(t.dims, ", "),
                fmt::join(dims, ", "));
    if (t.dtype != ir::DType::Float && t.dtype != ir::DType::Float16 && t.dtype != ir::DType::BFloat16)
      bad_input("{}: tensor '{}' is {}; weights must be F32, F16 or BF16", ck_.path, name, ir::dtype_name(t.dtype));
    return t;
  }
  // x times a Linear weight [out, in] (rows [row0, row0+rows) of it): MatMul with the weight as
  // float32 [in, out], or with int4_block set, MatMulNBits with the rows quantized as they are
  // read (asymmetric RTN unless int4_symmetric; a weight whose K the block does not divide stays
  // float, as quantize would refuse it).
  Value* matmul(Value* x, const ir::Tensor& t, const std::string& onnx_name, int64_t row0 = 0, int64_t rows = -1,
                std::string out_name = {}) {
    if (rows < 0) rows = t.dims[0];
    const int64_t K = t.dims[1], bs = int4_block;
    if (bs == 0 || K % bs != 0)
      return op("MatMul", {x, add(to_float(t, onnx_name, row0, rows, true, jobs_))}, {}, std::move(out_name));
    const int64_t kb = K / bs, blob = bs / 2, zp_row = (kb * 4 + 7) / 8;
    ir::Buffer B = ir::Buffer::allocate(static_cast<size_t>(rows * kb * blob));
    ir::Buffer S = ir::Buffer::allocate(static_cast<size_t>(rows * kb) * sizeof(float));
    ir::Buffer Z = int4_symmetric ? ir::Buffer() : ir::Buffer::allocate(static_cast<size_t>(rows * zp_row));
    Int4Out q{B.mutable_data(), reinterpret_cast<float*>(S.mutable_data()), int4_symmetric ? nullptr : Z.mutable_data(),
              bs};
    jobs_.push_back({&t, row0, rows, true, nullptr, q});
    std::vector<Value*> in = {
        x, add(ir::Tensor::make(onnx_name + "_Q4", ir::DType::UInt8, {rows, kb, blob}, std::move(B))),
        add(ir::Tensor::make(onnx_name + "_scales", ir::DType::Float, {rows, kb}, std::move(S)))};
    if (!int4_symmetric)
      in.push_back(add(ir::Tensor::make(onnx_name + "_zero_points", ir::DType::UInt8, {rows, zp_row}, std::move(Z))));
    return ops("MatMulNBits", std::move(in), 1,
               ir::attribute_list(ir::Attribute::make_int("K", K), ir::Attribute::make_int("N", rows),
                                  ir::Attribute::make_int("bits", 4), ir::Attribute::make_int("block_size", bs),
                                  ir::Attribute::make_int("accuracy_level", int4_accuracy_level)),
               {std::move(out_name)}, "com.microsoft")[0];
  }
  // The same for a checkpoint weight of the expected shape.
  Value* matmul(Value* x, const std::string& name, const std::vector<int64_t>& dims, const std::string& onnx_name,
                int64_t row0 = 0, int64_t rows = -1) {
    return matmul(x, tensor(name, dims), onnx_name, row0, rows);
  }
  int64_t int4_block = 0, int4_accuracy_level = 0;
  bool int4_symmetric = false;
  Value* vec(const std::string& name, int64_t n, const std::string& onnx_name, int64_t off = 0, int64_t len = -1) {
    const ir::Tensor& t = tensor(name, {n});
    return add(to_float(t, onnx_name, off, len < 0 ? n : len, false, jobs_));
  }
  bool has(const std::string& name) const { return ck_.contains(name); }
  std::vector<Job> jobs_;  // weights to fill once the graph is built

  std::string scope_;

 private:
  std::string unique(const std::string& base) {
    const int n = used_[base]++;
    return n == 0 ? base : fmt::format("{}_{}", base, n);
  }
  ir::Graph& g_;
  const formats::Checkpoint& ck_;
  std::map<std::string, int> used_;
};

// x * rsqrt(mean(x^2) + eps) * w, over the last axis (LlamaRMSNorm; float32).
Value* rms_norm(Builder& b, Value* x, Value* w, double eps) {
  Value* sq = b.op("Pow", {x, b.f32_scalar("two", 2.0f)});  // Pow, as exporters write it: ORT fuses the pattern
  Value* ms = b.op("ReduceMean", {sq},
                   ir::attribute_list(ir::Attribute::make_ints("axes", {-1}), ir::Attribute::make_int("keepdims", 1)));
  Value* e = b.op("Add", {ms, b.f32_scalar("eps", static_cast<float>(eps))});
  Value* r = b.op("Sqrt", {e});
  Value* y = b.op("Div", {x, r});
  return b.op("Mul", {y, w});
}

// inv_freq of the rotary embedding (modeling_rope_utils.py), in float32 as torch computes it.
std::vector<float> inv_freq(const DecoderConfig& c, int64_t dim, const std::vector<double>* ext_factors) {
  std::vector<float> f(static_cast<size_t>(dim / 2));
  for (int64_t i = 0; i < dim / 2; ++i) {
    const float e = static_cast<float>(2 * i) / static_cast<float>(dim);
    float p = std::pow(static_cast<float>(c.rope_theta), e);
    if (ext_factors) p = static_cast<float>((*ext_factors)[static_cast<size_t>(i)]) * p;
    f[static_cast<size_t>(i)] = 1.0f / p;
  }
  return f;
}

std::string rope_type(const DecoderConfig& c) {
  if (c.rope_scaling.is_null()) return "default";
  const auto& r = c.rope_scaling;
  std::string t = r.contains("rope_type") && r["rope_type"].is_string() ? r["rope_type"].get<std::string>()
                  : r.contains("type") && r["type"].is_string()         ? r["type"].get<std::string>()
                                                                        : "default";
  if (t == "su") t = "longrope";
  return t;
}

std::vector<double> factors(const nlohmann::json& r, const char* key, int64_t n) {
  if (!r.contains(key) || !r[key].is_array() || static_cast<int64_t>(r[key].size()) != n)
    bad_input("config.json rope_scaling \"{}\" must be a list of {} numbers", key, n);
  std::vector<double> v;
  for (const auto& x : r[key]) {
    if (!x.is_number()) bad_input("config.json rope_scaling \"{}\" must hold numbers", key);
    v.push_back(x.get<double>());
  }
  return v;
}

// cos and sin tables [rows, dim] (cat(freqs, freqs) as transformers builds them), scaled; with
// `halves`, [rows, dim / 2] (freqs once, the cache layout of ONNX Runtime's RotaryEmbedding).
std::pair<std::vector<float>, std::vector<float>> rope_values(const std::vector<float>& inv, int64_t rows, float scale,
                                                              bool halves) {
  const int64_t half = static_cast<int64_t>(inv.size()), dim = halves ? half : 2 * half;
  std::vector<float> cs(static_cast<size_t>(rows * dim)), sn(cs.size());
  for (int64_t p = 0; p < rows; ++p)
    for (int64_t i = 0; i < half; ++i) {
      const float a = static_cast<float>(p) * inv[static_cast<size_t>(i)];
      const float cv = std::cos(a) * scale, sv = std::sin(a) * scale;
      for (int64_t k : {i, i + half}) {
        if (k >= dim) break;
        cs[static_cast<size_t>(p * dim + k)] = cv;
        sn[static_cast<size_t>(p * dim + k)] = sv;
      }
    }
  return {std::move(cs), std::move(sn)};
}

std::pair<ir::Tensor, ir::Tensor> rope_tables(const std::vector<float>& inv, int64_t rows, float scale,
                                              const std::string& suffix, bool halves) {
  auto [cs, sn] = rope_values(inv, rows, scale, halves);
  const int64_t dim = static_cast<int64_t>(cs.size()) / std::max<int64_t>(rows, 1);
  return {ir::Tensor::from_values("cos_cache" + suffix, ir::DType::Float, {rows, dim}, cs),
          ir::Tensor::from_values("sin_cache" + suffix, ir::DType::Float, {rows, dim}, sn)};
}

}  // namespace

DecoderConfig read_decoder_config(const fs::path& dir) {
  const fs::path file = dir / "config.json";
  if (!formats::path_exists(file))
    bad_input("{}: no config.json (a Hugging Face checkpoint folder has one)", dir.string());
  const std::string where = file.string();
  nlohmann::json c = nlohmann::json::parse(formats::read_text_file(file), nullptr, false);
  if (c.is_discarded() || !c.is_object()) bad_input("{}: not valid JSON", where);
  DecoderConfig d;
  if (!c.contains("architectures") || !c["architectures"].is_array() || c["architectures"].empty() ||
      !c["architectures"][0].is_string())
    bad_input("{}: no \"architectures\" list", where);
  d.architecture = c["architectures"][0].get<std::string>();
  const auto& sup = supported_architectures();
  if (std::find(sup.begin(), sup.end(), d.architecture) == sup.end())
    bad_input("{}: architecture {} is not supported (supported: {})", where, d.architecture, fmt::join(sup, ", "));
  d.model_type = c.value("model_type", std::string());
  d.hidden = int_key(c, "hidden_size", where);
  d.intermediate = int_key(c, "intermediate_size", where);
  d.layers = int_key(c, "num_hidden_layers", where);
  d.heads = int_key(c, "num_attention_heads", where);
  d.kv_heads = int_key(c, "num_key_value_heads", where, d.heads);
  d.vocab = int_key(c, "vocab_size", where);
  d.max_positions = int_key(c, "max_position_embeddings", where, 4096);
  d.head_dim = int_key(c, "head_dim", where, d.heads > 0 ? d.hidden / d.heads : 0);
  if (d.hidden == 0 || d.heads == 0 || d.kv_heads == 0 || d.layers == 0 || d.vocab == 0 || d.head_dim == 0 ||
      d.heads % d.kv_heads != 0 || d.head_dim % 2 != 0)
    bad_input(
        "{}: hidden_size {}, num_attention_heads {}, num_key_value_heads {}, head_dim {}: heads must be a "
        "multiple of key/value heads and head_dim even and positive",
        where, d.hidden, d.heads, d.kv_heads, d.head_dim);
  d.rms_eps = num_key(c, "rms_norm_eps", 1e-6);
  d.rope_theta = num_key(c, "rope_theta", 10000.0);
  d.rope_scaling = c.contains("rope_scaling") ? c["rope_scaling"] : nlohmann::json();
  d.tied = c.value("tie_word_embeddings", false);
  d.partial_rotary = num_key(c, "partial_rotary_factor", 1.0);
  const auto rot = static_cast<int64_t>(static_cast<double>(d.head_dim) * d.partial_rotary);
  if (d.partial_rotary <= 0 || d.partial_rotary > 1 || rot % 2 != 0 || rot == 0)
    bad_input(
        "{}: partial_rotary_factor {} with head_dim {} gives {} rotary dims; expected an even number in (0, "
        "head_dim]",
        where, d.partial_rotary, d.head_dim, rot);
  const std::string act = c.value("hidden_act", std::string("silu"));
  if (act != "silu") bad_input("{}: hidden_act \"{}\" is not supported (silu is)", where, act);
  if (d.architecture == "MistralForCausalLM" || d.architecture == "Phi3ForCausalLM")
    d.sliding_window = c.contains("sliding_window") && c["sliding_window"].is_number_integer()
                           ? c["sliding_window"].get<int64_t>()
                           : 0;
  if (d.architecture == "Qwen2ForCausalLM" && c.value("use_sliding_window", false))
    bad_input("{}: Qwen2 with use_sliding_window is not supported", where);
  d.qkv_bias = d.architecture == "Qwen2ForCausalLM" || c.value("attention_bias", false);
  d.qk_norm = d.architecture == "Qwen3ForCausalLM";
  d.fused_qkv = d.architecture == "Phi3ForCausalLM";
  // Phi-3 keeps the pretrained length beside the extended one (longrope).
  if (c.contains("original_max_position_embeddings") && d.rope_scaling.is_object() &&
      !d.rope_scaling.contains("original_max_position_embeddings"))
    d.rope_scaling["original_max_position_embeddings"] = c["original_max_position_embeddings"];
  const std::string rt = rope_type(d);
  if (rt != "default" && rt != "linear" && rt != "llama3" && rt != "longrope")
    bad_input("{}: rope_scaling type \"{}\" is not supported (default, linear, llama3, longrope)", where, rt);
  return d;
}

ir::Model build_decoder(const fs::path& dir, const DecoderOptions& o) {
  const DecoderConfig c = read_decoder_config(dir);
  const formats::Checkpoint ck = formats::load_checkpoint(dir);
  ir::Model m;
  m.ir_version = 8;
  m.opsets = {{"", 17}};
  m.producer_name = "slmops";
  m.graph = std::make_unique<ir::Graph>();
  m.graph->name = c.architecture;
  ir::Graph& g = *m.graph;
  Builder b(g, ck);

  const int64_t H = c.heads, KV = c.kv_heads, D = c.head_dim, E = c.hidden, I = c.intermediate;
  const auto R = static_cast<int64_t>(static_cast<double>(D) * c.partial_rotary);  // rotary dims (Phi-3: a share)
  const int64_t rows = o.context_length > 0 ? o.context_length : std::min<int64_t>(c.max_positions, 131072);
  using ir::Dim;
  auto sym = [](const char* s) { return Dim{-1, s}; };
  Value* ids =
      g.add_input("input_ids", ir::TensorType::of_dims(ir::DType::Int64, {sym("batch_size"), sym("sequence_length")}));
  Value* amask = g.add_input(
      "attention_mask", ir::TensorType::of_dims(ir::DType::Int64, {sym("batch_size"), sym("total_sequence_length")}));
  Value* pos = g.add_input("position_ids",
                           ir::TensorType::of_dims(ir::DType::Int64, {sym("batch_size"), sym("sequence_length")}));
  std::vector<Value*> past_k, past_v;
  for (int64_t l = 0; l < c.layers; ++l)
    for (const char* kind : {"key", "value"}) {
      Value* p = g.add_input(fmt::format("past_key_values.{}.{}", l, kind),
                             ir::TensorType::of_dims(ir::DType::Float, {sym("batch_size"), Dim{KV, ""},
                                                                        sym("past_sequence_length"), Dim{D, ""}}));
      (std::string(kind) == "key" ? past_k : past_v).push_back(p);
    }

  // contrib: ONNX Runtime's RotaryEmbedding and GroupQueryAttention (--target onnxruntime).
  const bool contrib = o.contrib_ops;
  if (contrib || o.int4_block > 0) m.opsets.push_back({"com.microsoft", 1});
  b.int4_block = o.int4_block;
  b.int4_symmetric = o.int4_symmetric;
  b.int4_accuracy_level = o.int4_accuracy_level;
  b.scope_ = "/model/attn_mask";
  auto to_type = [](int64_t t) { return ir::attribute_list(ir::Attribute::make_int("to", t)); };
  auto axis0 = [] { return ir::attribute_list(ir::Attribute::make_int("axis", 0)); };
  Value* mask = nullptr;       // standard: [batch, 1, seq, total] additive mask
  Value* seqlens_k = nullptr;  // contrib: sum(attention_mask[b]) - 1, int32
  Value* total_len = nullptr;  // contrib: the mask's length, int32
  if (contrib) {
    // GroupQueryAttention reads each row's length from the mask's sum: a row's ones come first
    // (no left padding), as ONNX Runtime GenAI feeds them.
    Value* sum =
        b.op("ReduceSum", {amask, b.i64("axes", {1})}, ir::attribute_list(ir::Attribute::make_int("keepdims", 0)));
    seqlens_k = b.op("Cast", {b.op("Sub", {sum, b.i64_scalar("one", 1)})}, to_type(6));
    total_len = b.op("Cast", {b.op("Gather", {b.op("Shape", {amask}), b.i64_scalar("one", 1)}, axis0())}, to_type(6));
  } else {
    // The attention mask [batch, 1, seq, total]: 0 where a query may attend a key (causal,
    // inside the sliding window, not padding), the float minimum elsewhere.
    Value* S = b.op("Gather", {b.op("Shape", {ids}), b.i64_scalar("one", 1)},
                    ir::attribute_list(ir::Attribute::make_int("axis", 0)));
    Value* T = b.op("Gather", {b.op("Shape", {amask}), b.i64_scalar("one", 1)},
                    ir::attribute_list(ir::Attribute::make_int("axis", 0)));
    Value* past_len = b.op("Sub", {T, S});
    Value* kidx = b.op("Range", {b.i64_scalar("zero", 0), T, b.i64_scalar("one", 1)});
    Value* qidx = b.op("Range", {past_len, T, b.i64_scalar("one", 1)});
    Value* q2 = b.op("Unsqueeze", {qidx, b.i64("axes", {1})});
    Value* k2 = b.op("Unsqueeze", {kidx, b.i64("axes", {0})});
    Value* allowed = b.op("LessOrEqual", {k2, q2});
    if (c.sliding_window > 0)
      allowed = b.op("And", {allowed, b.op("Less", {b.op("Sub", {q2, k2}), b.i64_scalar("window", c.sliding_window)})});
    Value* pad = b.op("Unsqueeze", {b.op("Cast", {amask}, ir::attribute_list(ir::Attribute::make_int("to", 9))),
                                    b.i64("axes", {1, 2})});
    allowed = b.op("And", {b.op("Unsqueeze", {allowed, b.i64("axes", {0, 1})}), pad});
    mask = b.op("Where", {allowed, b.f32_scalar("zero_f", 0.0f), b.f32_scalar("min_f", -3.4028234663852886e38f)});
  }

  // Rotary tables, gathered at position_ids: [batch, 1, seq, head_dim].
  b.scope_ = "/model/rotary_emb";
  const std::string rt = rope_type(c);
  Value* cos = nullptr;  // standard: the rows at position_ids [batch, 1, seq, R]; contrib: the caches
  Value* sin = nullptr;
  Value* rot_pos = pos;  // contrib: the cache rows RotaryEmbedding reads
  auto gather_rows = [&](Value* table) {
    return b.op("Unsqueeze", {b.op("Gather", {table, pos}, ir::attribute_list(ir::Attribute::make_int("axis", 0))),
                              b.i64("axes", {1})});
  };
  if (rt == "longrope") {
    const auto& r = c.rope_scaling;
    const int64_t orig = r.contains("original_max_position_embeddings")
                             ? r["original_max_position_embeddings"].get<int64_t>()
                             : c.max_positions;
    double factor = static_cast<double>(c.max_positions) / static_cast<double>(orig);
    double attn = r.contains("attention_factor") && r["attention_factor"].is_number()
                      ? r["attention_factor"].get<double>()
                      : (factor <= 1.0 ? 1.0 : std::sqrt(1 + std::log(factor) / std::log(static_cast<double>(orig))));
    const auto shortf = factors(r, "short_factor", R / 2), longf = factors(r, "long_factor", R / 2);
    // transformers picks the long factors once max(position_ids) + 1 passes the pretrained length.
    Value* longer =
        b.op("Greater", {b.op("ReduceMax", {pos}, ir::attribute_list(ir::Attribute::make_int("keepdims", 0))),
                         b.i64_scalar("orig_minus_one", orig - 1)});
    if (contrib) {
      // One cache of 2 * rows: the short factors' rows, then the long ones'; the positions move
      // to the second half once the long factors apply.
      auto [cs, ss] = rope_values(inv_freq(c, R, &shortf), rows, static_cast<float>(attn), true);
      auto [cl, sl] = rope_values(inv_freq(c, R, &longf), rows, static_cast<float>(attn), true);
      cs.insert(cs.end(), cl.begin(), cl.end());
      ss.insert(ss.end(), sl.begin(), sl.end());
      cos = b.add(ir::Tensor::from_values("cos_cache", ir::DType::Float, {2 * rows, R / 2}, cs));
      sin = b.add(ir::Tensor::from_values("sin_cache", ir::DType::Float, {2 * rows, R / 2}, ss));
      rot_pos = b.op("Add", {pos, b.op("Mul", {b.op("Cast", {longer}, to_type(7)), b.i64_scalar("rows", rows)})});
    } else {
      auto [cs, ss] = rope_tables(inv_freq(c, R, &shortf), rows, static_cast<float>(attn), "_short", false);
      auto [cl, sl] = rope_tables(inv_freq(c, R, &longf), rows, static_cast<float>(attn), "_long", false);
      cos = b.op("Where", {longer, gather_rows(b.add(std::move(cl))), gather_rows(b.add(std::move(cs)))});
      sin = b.op("Where", {longer, gather_rows(b.add(std::move(sl))), gather_rows(b.add(std::move(ss)))});
    }
  } else {
    std::vector<float> inv = inv_freq(c, R, nullptr);
    if (rt == "linear") {
      const float f = static_cast<float>(num_key(c.rope_scaling, "factor", 1.0));
      for (float& x : inv) x /= f;
    } else if (rt == "llama3") {
      const auto& r = c.rope_scaling;
      const double factor = num_key(r, "factor", 8.0), lo = num_key(r, "low_freq_factor", 1.0),
                   hi = num_key(r, "high_freq_factor", 4.0),
                   old = num_key(r, "original_max_position_embeddings", 8192.0);
      const double lo_wave = old / lo, hi_wave = old / hi;
      for (float& x : inv) {
        const double wave = 2 * std::numbers::pi / x;
        float v = wave > lo_wave ? static_cast<float>(x / factor) : x;
        if (!(wave < hi_wave) && !(wave > lo_wave)) {
          const double smooth = (old / wave - lo) / (hi - lo);
          v = static_cast<float>((1 - smooth) * v / factor + smooth * v);
        }
        x = v;
      }
    }
    auto [ct, st] = rope_tables(inv, rows, 1.0f, "", contrib);
    cos = contrib ? b.add(std::move(ct)) : gather_rows(b.add(std::move(ct)));
    sin = contrib ? b.add(std::move(st)) : gather_rows(b.add(std::move(st)));
  }
  // x * cos + rotate_half(x) * sin on the first R dims of x [batch, heads, seq, D]; the rest pass.
  auto rope = [&](Value* x) {
    Value* pass = nullptr;
    if (R < D) {
      std::vector<Value*> parts =
          b.ops("Split", {x, b.i64("split", {R, D - R})}, 2, ir::attribute_list(ir::Attribute::make_int("axis", -1)));
      x = parts[0];
      pass = parts[1];
    }
    std::vector<Value*> halves = b.ops("Split", {x}, 2, ir::attribute_list(ir::Attribute::make_int("axis", -1)));
    Value* rot =
        b.op("Concat", {b.op("Neg", {halves[1]}), halves[0]}, ir::attribute_list(ir::Attribute::make_int("axis", -1)));
    Value* y = b.op("Add", {b.op("Mul", {x, cos}), b.op("Mul", {rot, sin})});
    return pass ? b.op("Concat", {y, pass}, ir::attribute_list(ir::Attribute::make_int("axis", -1))) : y;
  };

  b.scope_ = "/model/embed_tokens";
  const ir::Tensor& emb = b.tensor("model.embed_tokens.weight", {c.vocab, E});
  Value* emb_w = b.add(to_float(emb, "model.embed_tokens.weight", 0, c.vocab, false, b.jobs_));
  Value* x = b.op("Gather", {emb_w, ids}, ir::attribute_list(ir::Attribute::make_int("axis", 0)));
  Value* scale = nullptr;

  ProgressStage stage(o.progress, "from-hf: decoder layers", c.layers, "layers");
  for (int64_t l = 0; l < c.layers; ++l) {
    stage.update(l);
    const std::string p = fmt::format("model.layers.{}.", l);
    b.scope_ = fmt::format("/model/layers.{}", l);
    Value* h = rms_norm(b, x, b.vec(p + "input_layernorm.weight", E, p + "input_layernorm.weight"), c.rms_eps);
    b.scope_ = fmt::format("/model/layers.{}/self_attn", l);
    // q/k/v_proj (+ bias): [batch, seq, heads * D].
    auto project = [&](const std::string& w, int64_t heads, const char* kind, int64_t row0) {
      Value* y;
      if (c.fused_qkv)
        y = b.matmul(h, p + "self_attn.qkv_proj.weight", {(H + 2 * KV) * D, E},
                     p + "self_attn." + kind + "_proj.weight", row0, heads * D);
      else
        y = b.matmul(h, p + "self_attn." + w + ".weight", {heads * D, E}, p + "self_attn." + w + ".weight");
      if (c.qkv_bias)
        y = b.op("Add", {y, b.vec(p + "self_attn." + w + ".bias", heads * D, p + "self_attn." + w + ".bias")});
      return y;
    };
    // [batch, seq, heads, D], q and k normalized per head (Qwen3).
    auto split_heads = [&](Value* y, int64_t heads, const char* kind) {
      y = b.op("Reshape", {y, b.i64("shape", {0, 0, heads, D})});
      if (c.qk_norm && std::string(kind) != "v")
        y = rms_norm(b, y, b.vec(p + "self_attn." + kind + "_norm.weight", D, p + "self_attn." + kind + "_norm.weight"),
                     c.rms_eps);
      return y;
    };
    Value* ctx = nullptr;
    if (contrib) {
      auto rotary = [&](Value* y, int64_t heads, const char* kind) {
        if (c.qk_norm) y = b.op("Reshape", {split_heads(y, heads, kind), b.i64("shape", {0, 0, heads * D})});
        std::vector<ir::Attribute> at = ir::attribute_list(ir::Attribute::make_int("num_heads", heads));
        if (R < D) at.push_back(ir::Attribute::make_int("rotary_embedding_dim", R));
        return b.ops("RotaryEmbedding", {y, rot_pos, cos, sin}, 1, std::move(at), {}, "com.microsoft")[0];
      };
      Value* q = rotary(project("q_proj", H, "q", 0), H, "q");
      Value* k = rotary(project("k_proj", KV, "k", H * D), KV, "k");
      Value* v = project("v_proj", KV, "v", (H + KV) * D);
      std::vector<ir::Attribute> at = ir::attribute_list(
          ir::Attribute::make_int("num_heads", H), ir::Attribute::make_int("kv_num_heads", KV),
          ir::Attribute::make_float("scale", static_cast<float>(1.0 / std::sqrt(static_cast<double>(D)))));
      // transformers' window holds sliding_window keys, the current one included; so does
      // local_window_size in ONNX Runtime 1.30 (checked against the reference in interop_convert_hf).
      if (c.sliding_window > 0) at.push_back(ir::Attribute::make_int("local_window_size", c.sliding_window));
      ctx = b.ops("GroupQueryAttention",
                  {q, k, v, past_k[static_cast<size_t>(l)], past_v[static_cast<size_t>(l)], seqlens_k, total_len}, 3,
                  std::move(at), {"", fmt::format("present.{}.key", l), fmt::format("present.{}.value", l)},
                  "com.microsoft")[0];
    } else {
      auto heads_first = [&](Value* y) {
        return b.op("Transpose", {y}, ir::attribute_list(ir::Attribute::make_ints("perm", {0, 2, 1, 3})));
      };
      Value* q = rope(heads_first(split_heads(project("q_proj", H, "q", 0), H, "q")));
      Value* k = rope(heads_first(split_heads(project("k_proj", KV, "k", H * D), KV, "k")));
      Value* v = heads_first(split_heads(project("v_proj", KV, "v", (H + KV) * D), KV, "v"));
      Value* k_all = b.op("Concat", {past_k[static_cast<size_t>(l)], k},
                          ir::attribute_list(ir::Attribute::make_int("axis", 2)), fmt::format("present.{}.key", l));
      Value* v_all = b.op("Concat", {past_v[static_cast<size_t>(l)], v},
                          ir::attribute_list(ir::Attribute::make_int("axis", 2)), fmt::format("present.{}.value", l));
      auto repeat = [&](Value* t) {  // [batch, KV, T, D] -> [batch, H, T, D] (repeat_kv)
        if (H == KV) return t;
        Value* u = b.op("Unsqueeze", {t, b.i64("axes", {2})});
        u = b.op("Tile", {u, b.i64("repeats", {1, 1, H / KV, 1, 1})});
        return b.op("Reshape", {u, b.i64("shape", {0, H, -1, D})});
      };
      Value* kt =
          b.op("Transpose", {repeat(k_all)}, ir::attribute_list(ir::Attribute::make_ints("perm", {0, 1, 3, 2})));
      if (!scale)
        scale = b.f32_scalar("/model/attn_scale", static_cast<float>(1.0 / std::sqrt(static_cast<double>(D))));
      Value* scores = b.op("Mul", {b.op("MatMul", {q, kt}), scale});
      Value* probs =
          b.op("Softmax", {b.op("Add", {scores, mask})}, ir::attribute_list(ir::Attribute::make_int("axis", -1)));
      ctx = b.op("MatMul", {probs, repeat(v_all)});
      ctx =
          b.op("Reshape", {b.op("Transpose", {ctx}, ir::attribute_list(ir::Attribute::make_ints("perm", {0, 2, 1, 3}))),
                           b.i64("shape", {0, 0, H * D})});
    }
    Value* attn = b.matmul(ctx, p + "self_attn.o_proj.weight", {E, H * D}, p + "self_attn.o_proj.weight");
    if (c.qkv_bias && c.architecture == "LlamaForCausalLM")
      attn = b.op("Add", {attn, b.vec(p + "self_attn.o_proj.bias", E, p + "self_attn.o_proj.bias")});
    b.scope_ = fmt::format("/model/layers.{}", l);
    x = b.op("Add", {x, attn});
    Value* h2 = rms_norm(b, x, b.vec(p + "post_attention_layernorm.weight", E, p + "post_attention_layernorm.weight"),
                         c.rms_eps);
    b.scope_ = fmt::format("/model/layers.{}/mlp", l);
    Value *gate, *up;
    if (c.fused_qkv) {
      gate = b.matmul(h2, p + "mlp.gate_up_proj.weight", {2 * I, E}, p + "mlp.gate_proj.weight", 0, I);
      up = b.matmul(h2, p + "mlp.gate_up_proj.weight", {2 * I, E}, p + "mlp.up_proj.weight", I, I);
    } else {
      gate = b.matmul(h2, p + "mlp.gate_proj.weight", {I, E}, p + "mlp.gate_proj.weight");
      up = b.matmul(h2, p + "mlp.up_proj.weight", {I, E}, p + "mlp.up_proj.weight");
    }
    Value* act = b.op("Mul", {gate, b.op("Sigmoid", {gate})});
    Value* down = b.matmul(b.op("Mul", {act, up}), p + "mlp.down_proj.weight", {E, I}, p + "mlp.down_proj.weight");
    b.scope_ = fmt::format("/model/layers.{}", l);
    x = b.op("Add", {x, down});
  }
  stage.update(c.layers);
  b.scope_ = "/model/norm";
  x = rms_norm(b, x, b.vec("model.norm.weight", E, "model.norm.weight"), c.rms_eps);
  b.scope_ = "/lm_head";
  // Tied embeddings: the head is the embedding table, transposed (the checkpoint has no lm_head).
  Value* logits = c.tied
                      ? b.matmul(x, emb, "lm_head.weight", 0, c.vocab, "logits")
                      : b.matmul(x, b.tensor("lm_head.weight", {c.vocab, E}), "lm_head.weight", 0, c.vocab, "logits");
  g.add_output(logits);
  logits->type =
      ir::TensorType::of_dims(ir::DType::Float, {sym("batch_size"), sym("sequence_length"), Dim{c.vocab, ""}});
  for (int64_t l = 0; l < c.layers; ++l)
    for (const char* kind : {"key", "value"}) {
      Value* pv = g.find_value(fmt::format("present.{}.{}", l, kind));
      pv->type = ir::TensorType::of_dims(ir::DType::Float,
                                         {sym("batch_size"), Dim{KV, ""}, sym("total_sequence_length"), Dim{D, ""}});
      g.add_output(pv);
    }
  // The weights, converted on every thread (one tensor per job, the largest first).
  auto size_of = [](const Job& j) { return j.rows * (j.src->dims.size() >= 2 ? j.src->dims[1] : 1); };
  std::stable_sort(b.jobs_.begin(), b.jobs_.end(), [&](const Job& x, const Job& y) { return size_of(x) > size_of(y); });
  runtime::ThreadPool pool(std::max(1, o.threads));
  pool.parallel_for(static_cast<int64_t>(b.jobs_.size()), 1, [&](int64_t lo, int64_t hi) {
    for (int64_t k = lo; k < hi; ++k) convert_job(b.jobs_[static_cast<size_t>(k)]);
  });
  m.metadata.emplace_back("slmops.source", c.architecture);
  m.metadata.emplace_back("slmops.context_length", std::to_string(rows));  // the rotary tables' positions
  // The checkpoint it came from: readers of the folder (tokenizer.json for text data, the
  // deployment packagers) look beside config.json; saving never overwrites these files.
  m.path = (dir / "config.json").string();
  m.source_files.push_back(m.path);
  for (const auto& [name, f] : ck.file_of)
    if (std::find(m.source_files.begin(), m.source_files.end(), f) == m.source_files.end()) m.source_files.push_back(f);
  return m;
}

}  // namespace slmops::passes

namespace slmops::passes {
namespace {

struct FromHfOptions {
  int64_t context_length = 0;
  std::string target = "standard";
  std::string weights = "fp32";
  int64_t block_size = 32, accuracy_level = 0;
  bool symmetric = false;
  static const OptionTable<FromHfOptions>& table() {
    static const OptionTable<FromHfOptions> t({
        {"context-length",
         &FromHfOptions::context_length,
         "positions the rotary tables cover (0: max_position_embeddings, at most 131072)",
         {},
         false,
         {0, 1 << 24}},
        {"target",
         &FromHfOptions::target,
         "standard: attention in standard ONNX ops (any runtime); onnxruntime: ONNX Runtime's RotaryEmbedding and "
         "GroupQueryAttention (com.microsoft; batches without left padding)",
         {"standard", "onnxruntime"}},
        {"weights",
         &FromHfOptions::weights,
         "fp32, or int4: the Linear weights as MatMulNBits, quantized (RTN) as each is read (the bytes of "
         "quantize mode=int4-weight over the fp32 model, at a fraction of its peak memory)",
         {"fp32", "int4"}},
        {"block-size",
         &FromHfOptions::block_size,
         "int4: values per scale along K (a power of two)",
         {},
         false,
         {16, 256},
         "weights=int4"},
        {"symmetric",
         &FromHfOptions::symmetric,
         "int4: symmetric blocks (no zero points); default asymmetric",
         {},
         false,
         {},
         "weights=int4"},
        {"accuracy-level",
         &FromHfOptions::accuracy_level,
         "int4: MatMulNBits accuracy_level (0 to 4)",
         {},
         false,
         {0, 4},
         "weights=int4"},
    });
    return t;
  }
};

void from_hf(Artifact& a, const nlohmann::json& j, PassContext& ctx) {
  const FromHfOptions o = FromHfOptions::table().from_json(j);
  DecoderOptions d;
  d.context_length = o.context_length;
  d.progress = ctx.progress;
  d.threads = ctx.threads;
  d.contrib_ops = o.target == "onnxruntime";
  if (o.weights == "int4") {
    if ((o.block_size & (o.block_size - 1)) != 0)
      bad_input("from-hf: block-size {} must be a power of two from 16 to 256", o.block_size);
    d.int4_block = o.block_size;
    d.int4_symmetric = o.symmetric;
    d.int4_accuracy_level = o.accuracy_level;
  }
  a.model = build_decoder(a.path, d);
  const DecoderConfig c = read_decoder_config(a.path);
  ctx.report = {{"architecture", c.architecture},
                {"layers", c.layers},
                {"hidden_size", c.hidden},
                {"heads", c.heads},
                {"kv_heads", c.kv_heads},
                {"head_dim", c.head_dim},
                {"vocab_size", c.vocab},
                {"nodes", a.model->graph->node_count()},
                {"target", o.target},
                {"weights", o.weights}};
  if (o.weights == "int4") {
    int64_t nbits = 0, matmuls = 0;
    for (const auto& n : a.model->graph->nodes()) {
      nbits += n->op_type == "MatMulNBits";
      matmuls += n->op_type == "MatMul";
    }
    ctx.report["int4_matmuls"] = nbits;
    ctx.report["float_matmuls"] = matmuls;  // attention products, and weights whose K the block does not divide
  }
  a.kind = ArtifactKind::OnnxModel;
  a.path.clear();
}

}  // namespace

PassInfo from_hf_step_info() {
  PassInfo p;
  p.name = "from-hf";
  p.summary = "build an ONNX decoder with KV cache from a Hugging Face checkpoint folder (checkpoint -> onnx model)";
  p.options = FromHfOptions::table().specs();
  p.takes = ArtifactKind::Checkpoint;
  p.returns = ArtifactKind::OnnxModel;
  p.run_artifact = from_hf;
  return p;
}

}  // namespace slmops::passes
