// passes/convert/hf_decoder: the weights of a checkpoint whose sizes are not multiples of the
// vector width (8), F32 and BF16, land in the model as the transposed float32 of the source,
// value for value (the AVX2 8x8-block copy and its edges; unit_isa_portable runs the scalar one).
#include <doctest/doctest.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "ir/dtype.h"
#include "passes/convert/hf_decoder.h"

namespace {

namespace fs = std::filesystem;

struct Weight {
  std::string name;
  int64_t rows, cols;  // cols 0: a vector
};

// A one-layer Llama checkpoint of random values (bfloat16-exact) in `dtype` ("F32" or "BF16").
// Returns each tensor's values as float32, by name.
std::map<std::string, std::vector<float>> write_llama(const fs::path& dir, const std::string& dtype) {
  const int64_t E = 20, I = 36, V = 27, KV = 10;
  const std::vector<Weight> ws = {{"model.embed_tokens.weight", V, E},
                                  {"model.layers.0.input_layernorm.weight", E, 0},
                                  {"model.layers.0.self_attn.q_proj.weight", E, E},
                                  {"model.layers.0.self_attn.k_proj.weight", KV, E},
                                  {"model.layers.0.self_attn.v_proj.weight", KV, E},
                                  {"model.layers.0.self_attn.o_proj.weight", E, E},
                                  {"model.layers.0.post_attention_layernorm.weight", E, 0},
                                  {"model.layers.0.mlp.gate_proj.weight", I, E},
                                  {"model.layers.0.mlp.up_proj.weight", I, E},
                                  {"model.layers.0.mlp.down_proj.weight", E, I},
                                  {"model.norm.weight", E, 0},
                                  {"lm_head.weight", V, E}};
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  std::map<std::string, std::vector<float>> values;
  std::string header = "{", data;
  const size_t es = dtype == "F32" ? 4 : 2;
  for (const auto& w : ws) {
    const int64_t n = w.rows * (w.cols ? w.cols : 1);
    auto& v = values[w.name];
    for (int64_t k = 0; k < n; ++k) {
      const uint16_t h = slmops::ir::float_to_bfloat16(u(rng));
      v.push_back(slmops::ir::bfloat16_to_float(h));
      if (es == 2)
        data.append(reinterpret_cast<const char*>(&h), 2);
      else
        data.append(reinterpret_cast<const char*>(&v.back()), 4);
    }
    const size_t end = data.size(), begin = end - static_cast<size_t>(n) * es;
    header += (header.size() > 1 ? ", \"" : "\"") + w.name + "\": {\"dtype\": \"" + dtype + "\", \"shape\": [" +
              std::to_string(w.rows) + (w.cols ? ", " + std::to_string(w.cols) : "") + "], \"data_offsets\": [" +
              std::to_string(begin) + ", " + std::to_string(end) + "]}";
  }
  header += "}";
  while ((8 + header.size()) % 8) header.push_back(' ');
  std::string len(8, '\0');
  for (int k = 0; k < 8; ++k) len[static_cast<size_t>(k)] = static_cast<char>((header.size() >> (8 * k)) & 0xff);
  std::ofstream(dir / "model.safetensors", std::ios::binary) << len << header << data;
  std::ofstream(dir / "config.json")
      << R"({"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 20,
             "intermediate_size": 36, "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 10,
             "num_hidden_layers": 1, "vocab_size": 27, "max_position_embeddings": 64, "rms_norm_eps": 1e-5,
             "rope_theta": 10000.0, "tie_word_embeddings": false, "bos_token_id": 1, "eos_token_id": 2})";
  return values;
}

}  // namespace

TEST_CASE("convert HF_DIR: Linear weights of odd sizes are the transposed float32 of the checkpoint's") {
  for (const char* dtype : {"F32", "BF16"}) {
    CAPTURE(dtype);
    const fs::path dir = fs::temp_directory_path() / ("slmops_hf_" + std::to_string(::getpid()) + dtype);
    fs::remove_all(dir);
    fs::create_directories(dir);
    const auto src = write_llama(dir, dtype);
    slmops::passes::DecoderOptions o;
    o.threads = 2;
    const slmops::ir::Model m = slmops::passes::build_decoder(dir, o);
    for (const char* name : {"model.layers.0.mlp.gate_proj.weight", "model.layers.0.mlp.down_proj.weight",
                             "model.layers.0.self_attn.k_proj.weight", "lm_head.weight"}) {
      CAPTURE(name);
      const slmops::ir::Value* v = m.graph->find_value(name);
      REQUIRE(v);
      REQUIRE(v->initializer);
      const auto& t = *v->initializer;
      REQUIRE(t.dims.size() == 2);
      const int64_t K = t.dims[0], N = t.dims[1];  // MatMul's B: [in, out], the checkpoint's [out, in]
      const auto& w = src.at(name);
      REQUIRE(static_cast<int64_t>(w.size()) == K * N);
      const float* got = t.data.as<float>();
      int64_t wrong = 0;
      for (int64_t k = 0; k < K; ++k)
        for (int64_t n = 0; n < N; ++n) wrong += got[k * N + n] != w[static_cast<size_t>(n * K + k)];
      CHECK(wrong == 0);
    }
    fs::remove_all(dir);
  }
}
