// slmops generate MODEL (--input-ids 1,2,3 | --prompt TEXT) [--max-new-tokens N]
//                 [--greedy | --temperature T --top-k K --top-p P --seed S] [--json]
// A decoding loop over a decoder with a KV cache (the I/O `convert HF_DIR` writes:
// input_ids, attention_mask, position_ids, past_key_values.N.* -> logits, present.N.*) through
// our executor: the prompt in one run (prefill), then one token per run (decode), each timed.
#include "distill/decoder.h"
#include "formats/file_util.h"
#include "formats/onnx_io.h"
#include "ir/error.h"
#include "tokenizers/chat_template.h"
#include "tokenizers/tokenizer.h"
#include "tools/cli.h"

namespace slmops::cli {

namespace {

namespace fs = std::filesystem;

std::vector<int64_t> parse_id_list(const std::string& s) {
  std::vector<int64_t> ids;
  size_t i = 0;
  while (i < s.size()) {
    size_t j = s.find(',', i);
    if (j == std::string::npos) j = s.size();
    const std::string w = s.substr(i, j - i);
    try {
      size_t used = 0;
      const long long v = std::stoll(w, &used);
      if (used != w.size() || v < 0) throw std::invalid_argument("x");
      ids.push_back(v);
    } catch (const std::exception&) {
      bad_input("--input-ids: '{}' is not a token id (non-negative integers separated by commas)", w);
    }
    i = j + 1;
  }
  if (ids.empty()) bad_input("--input-ids: no ids");
  return ids;
}

}  // namespace

void register_generate(CLI::App& app) {
  struct Args {
    std::string model, input_ids, prompt;
    int64_t max_new_tokens = 32;
    bool greedy = false, json = false, ignore_eos = false, chat = false;
    double temperature = 0, top_p = 1.0;
    int64_t top_k = 0;
    uint64_t seed = 0;
  };
  static Args a;
  auto* cmd = app.add_subcommand("generate",
                                 "generate tokens with a decoder that has a KV cache (the model "
                                 "`convert HF_DIR` builds), timing prefill and decode");
  cmd->add_option("model", a.model, "a folder holding model.onnx (and tokenizer.json), or an .onnx file")->required();
  cmd->add_option("--input-ids", a.input_ids, "the prompt as token ids, comma-separated")->type_name("1,2,3");
  cmd->add_option("--prompt", a.prompt, "the prompt as text (the folder's tokenizer.json encodes it)");
  cmd->add_option("--max-new-tokens", a.max_new_tokens, "tokens to generate at most")->check(CLI::Range(1, 1 << 20));
  cmd->add_flag("--greedy", a.greedy, "always the most likely token (the default without --temperature)");
  cmd->add_option("--temperature", a.temperature, "sample at this temperature (> 0)");
  cmd->add_option("--top-k", a.top_k, "sample among the k most likely tokens (0: all)")->check(CLI::Range(0, 1 << 24));
  cmd->add_option("--top-p", a.top_p, "sample among the most likely tokens whose probability reaches p")
      ->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--seed", a.seed, "seed of the sampler (the same seed, the same tokens)");
  cmd->add_flag("--ignore-eos", a.ignore_eos, "do not stop at the end-of-sequence token");
  cmd->add_flag("--chat", a.chat,
                "with --prompt: the prompt is one user turn of the folder's chat template (with the generation "
                "prompt), tokenized without adding special tokens again");
  cmd->add_flag("--json", a.json, "print the ids, text and timings as JSON");
  cmd->callback([] {
    if (a.input_ids.empty() == a.prompt.empty()) bad_input("generate needs exactly one of --input-ids and --prompt");
    if (a.chat && a.prompt.empty()) bad_input("--chat needs --prompt (the user's turn)");
    distill::Sampling s;
    s.greedy = a.greedy || a.temperature == 0;
    if (a.greedy && a.temperature != 0) bad_input("--greedy and --temperature exclude each other");
    if (a.temperature < 0) bad_input("--temperature {}: must be > 0", a.temperature);
    if (s.greedy && (a.top_k != 0 || a.top_p != 1.0)) bad_input("--top-k and --top-p need --temperature");
    s.temperature = a.temperature;
    s.top_k = a.top_k;
    s.top_p = a.top_p;
    distill::Decoder decoder(a.model, effective_threads());
    const fs::path dir = decoder.dir();
    const std::optional<tok::Tokenizer>& tokenizer = decoder.tokenizer();
    std::vector<int64_t> prompt;
    if (!a.prompt.empty()) {
      if (!tokenizer)
        bad_input("--prompt needs a tokenizer.json beside the model in {}; give --input-ids instead", dir.string());
      if (a.chat) {
        const tok::ChatTemplate t = tok::ChatTemplate::load(dir);
        tok::ChatRequest r;
        r.messages = nlohmann::ordered_json::array({{{"role", "user"}, {"content", a.prompt}}});
        r.add_generation_prompt = true;
        std::string text;
        try {
          text = t.render(r);
        } catch (const jinja::Raised& e) {
          bad_input("{}: the chat template raised an exception: {}", t.origin(), e.what());
        }
        for (int32_t id : tokenizer->encode(text, false)) prompt.push_back(id);
      } else {
        for (int32_t id : tokenizer->encode(a.prompt)) prompt.push_back(id);
      }
      if (prompt.empty()) bad_input("--prompt: the text has no tokens");
    } else {
      prompt = parse_id_list(a.input_ids);
    }
    distill::Sequence q;
    q.prompt = prompt;
    q.seed = a.seed;
    q.max_new_tokens = a.max_new_tokens;
    std::vector<distill::Sequence> batch{std::move(q)};
    distill::Decoder::Timing timing;
    decoder.generate(batch, s, a.ignore_eos, &timing);
    const std::vector<int64_t>& generated = batch[0].generated;
    const bool stopped_eos = batch[0].finish_reason == "eos";
    const double prefill_s = timing.prefill_s, decode_s = timing.decode_s;
    const int64_t decoded = static_cast<int64_t>(generated.size()) - 1;
    std::string text;
    if (tokenizer) {
      std::vector<int32_t> g32(generated.begin(), generated.end());
      text = tokenizer->decode(g32, true);
    }
    nlohmann::json j = {
        {"prompt_ids", prompt},
        {"generated_ids", generated},
        {"stopped", stopped_eos ? "eos" : "max-new-tokens"},
        {"prefill",
         {{"tokens", prompt.size()},
          {"seconds", prefill_s},
          {"tokens_per_s", prefill_s > 0 ? prompt.size() / prefill_s : 0.0}}},
        {"decode",
         {{"tokens", decoded}, {"seconds", decode_s}, {"tokens_per_s", decode_s > 0 ? decoded / decode_s : 0.0}}},
        {"sampling",
         s.greedy ? nlohmann::json("greedy")
                  : nlohmann::json(
                        {{"temperature", s.temperature}, {"top_k", s.top_k}, {"top_p", s.top_p}, {"seed", a.seed}})}};
    if (tokenizer) j["text"] = text;
    if (a.json) {
      print_json(j);
      return;
    }
    if (tokenizer) {
      fmt::print("{}\n", text);
    } else {
      fmt::print("{}\n", fmt::join(generated, " "));
    }
    log("prefill {} tokens in {:.3f} s ({:.1f} tokens/s); decode {} tokens in {:.3f} s ({:.1f} tokens/s)",
        prompt.size(), prefill_s, prefill_s > 0 ? prompt.size() / prefill_s : 0.0, decoded, decode_s,
        decode_s > 0 ? decoded / decode_s : 0.0);
  });
}

}  // namespace slmops::cli
