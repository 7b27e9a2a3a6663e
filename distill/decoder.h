// Generation with a decoder that has a KV cache (the I/O `convert HF_DIR` writes: input_ids,
// attention_mask, position_ids, past_key_values.N.* -> logits, present.N.*) through our
// executor: the prompts in one run (prefill), then one token per sequence per run (decode).
// `slmops generate` runs one sequence; `distill-data`'s local teacher runs batches, left-padded.
#pragma once
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "ir/graph.h"
#include "runtime/executor.h"
#include "tokenizers/tokenizer.h"

namespace slmops::distill {

struct Sampling {
  bool greedy = true;
  double temperature = 1.0, top_p = 1.0;
  int64_t top_k = 0;  // 0: all tokens
};

// The next token from one position's logits: argmax, or a draw from the softmax at
// `temperature` over the top-k tokens whose cumulated probability first reaches top-p.
int64_t pick_token(const float* logits, int64_t vocab, const Sampling& s, std::mt19937_64& rng);

// One sequence to continue, and what generation made of it.
struct Sequence {
  std::vector<int64_t> prompt;
  uint64_t seed = 0;
  int64_t max_new_tokens = 32;
  bool logprobs = false;     // record the chosen tokens' log-probabilities
  int64_t top_logprobs = 0;  // with logprobs, > 0: also the K most likely tokens at each step
  // Returns true when the sequence should stop after its newest token (stop strings); may be
  // empty.
  std::function<bool(const std::vector<int64_t>& generated)> stop;
  // Results.
  std::vector<int64_t> generated;
  std::string finish_reason;                  // "eos", "stop" (the stop callback) or "length"
  std::vector<double> chosen_logprob;         // log-softmax of the raw logits at each chosen token
  std::vector<std::vector<int64_t>> top_ids;  // top_logprobs ids per step, most likely first
  std::vector<std::vector<double>> top_values;
};

// A decoder model folder (model.onnx, tokenizer.json, generation_config.json / config.json) or
// a bare .onnx file, planned once.
class Decoder {
 public:
  // Throws Error(BadInput) naming the file when the model is not a decoder with a KV cache.
  Decoder(const std::filesystem::path& model_or_dir, int threads);
  ~Decoder();

  const std::filesystem::path& dir() const { return dir_; }
  const std::filesystem::path& file() const { return file_; }
  // The folder's tokenizer.json, when it has one.
  const std::optional<tok::Tokenizer>& tokenizer() const { return tokenizer_; }
  // End-of-sequence ids from generation_config.json, else config.json (may be empty).
  const std::vector<int64_t>& eos() const { return eos_; }
  // Whether rows of different lengths can share a run (left padding needs the attention mask
  // to mask keys; ONNX Runtime's GroupQueryAttention reads row lengths from the mask's sums and
  // takes no left padding).
  bool takes_left_padding() const { return left_padding_; }
  // Positions the model takes at most (genai_config.json's context_length, else config.json's
  // max_position_embeddings; 0: not known). A sequence that reaches it ends ("length").
  int64_t context_length() const { return context_length_; }

  struct Timing {
    double prefill_s = 0, decode_s = 0;
    int64_t prefill_tokens = 0, decode_tokens = 0;
  };
  // Generates for every sequence of `batch` together (one run per step), each with its own
  // sampler seeded from its seed, until each has hit an end-of-sequence id (unless
  // ignore_eos), its stop callback or max_new_tokens. A batch of more than one needs
  // takes_left_padding().
  void generate(std::vector<Sequence>& batch, const Sampling& s, bool ignore_eos, Timing* timing = nullptr);

 private:
  std::filesystem::path dir_, file_;
  std::optional<tok::Tokenizer> tokenizer_;
  std::vector<int64_t> eos_;
  bool left_padding_ = true;
  int64_t context_length_ = 0;
  ir::Model model_;
  std::unique_ptr<runtime::Session> session_;
  size_t logits_at_ = 0;
  int ids_at_ = -1, mask_at_ = -1, pos_at_ = -1;
  std::vector<size_t> past_in_, present_out_;
  std::vector<std::vector<int64_t>> past_dims_;  // [1, kv_heads, 0, head_dim]
};

}  // namespace slmops::distill
