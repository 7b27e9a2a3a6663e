// A Hugging Face decoder-only checkpoint (config.json + safetensors) as an ONNX model with a
// KV cache, in the I/O layout ONNX Runtime GenAI and transformers.js (Optimum) expect:
//
//   input_ids [batch, seq] int64, attention_mask [batch, past+seq] int64,
//   position_ids [batch, seq] int64, past_key_values.N.key/.value [batch, kv_heads, past, head_dim]
//   -> logits [batch, seq, vocab], present.N.key/.value [batch, kv_heads, past+seq, head_dim]
//
// One graph serves prefill (past of length 0) and decoding. Families: LlamaForCausalLM
// (rope_scaling default, linear, llama3), MistralForCausalLM (sliding_window),
// Qwen2ForCausalLM (q/k/v bias), Qwen3ForCausalLM (per-head q/k RMSNorm), Phi3ForCausalLM
// (fused qkv_proj and gate_up_proj; longrope). GQA/MQA, tied embeddings, head_dim.
// The graph uses standard ONNX ops only (opset 17), float32: the model definitions of
// transformers written out op by op; or, with DecoderOptions::contrib_ops, ONNX Runtime's
// RotaryEmbedding and GroupQueryAttention for the attention, as ONNX Runtime GenAI's model
// builder writes it.
#pragma once
#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "ir/graph.h"

namespace slmops::passes {

// What the builder read from config.json.
struct DecoderConfig {
  std::string architecture, model_type;
  int64_t hidden = 0, intermediate = 0, layers = 0, heads = 0, kv_heads = 0, head_dim = 0, vocab = 0;
  int64_t max_positions = 0;
  double rms_eps = 1e-6, rope_theta = 10000.0;
  nlohmann::json rope_scaling;  // null or the config's object
  int64_t sliding_window = 0;   // 0: none
  bool tied = false, qkv_bias = false, qk_norm = false, fused_qkv = false;
  double partial_rotary = 1.0;
};

// The architectures the builder knows, for messages.
const std::vector<std::string>& supported_architectures();

// config.json of `dir`, checked (a missing key or an unknown architecture is refused naming it).
DecoderConfig read_decoder_config(const std::filesystem::path& dir);

class Progress;

struct DecoderOptions {
  int64_t context_length = 0;  // rows of the rotary tables (0: max_position_embeddings, at most 131072)
  Progress* progress = nullptr;  // layers built, on a terminal
  int threads = 1;               // weights are converted on this many threads
  // ONNX Runtime's contrib ops for attention (--target onnxruntime): RotaryEmbedding and
  // GroupQueryAttention (com.microsoft) in place of the standard-op attention. Such a model
  // runs in ONNX Runtime and in slmops' executor; its batches must not be left-padded.
  bool contrib_ops = false;
  // > 0: the Linear weights (MatMul B; lm_head included) as int4 MatMulNBits with blocks of
  // this many values along K, quantized (RTN) as each is read, never held as float32: the
  // bytes `quantize --mode int4-weight` writes over the float model, at a fraction of its peak
  // memory. The embedding table stays float32.
  int64_t int4_block = 0;
  bool int4_symmetric = false;
  int64_t int4_accuracy_level = 0;
};

// Builds the model. Throws Error(BadInput) naming the checkpoint and the tensor that is
// missing or has the wrong shape.
ir::Model build_decoder(const std::filesystem::path& dir, const DecoderOptions& options);

}  // namespace slmops::passes
