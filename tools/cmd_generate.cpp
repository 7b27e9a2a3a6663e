// slmops generate MODEL (--input-ids 1,2,3 | --prompt TEXT) [--max-new-tokens N]
//                 [--greedy | --temperature T --top-k K --top-p P --seed S] [--json]
// A decoding loop over a decoder with a KV cache (the I/O `convert HF_DIR` writes:
// input_ids, attention_mask, position_ids, past_key_values.N.* -> logits, present.N.*) through
// our executor: the prompt in one run (prefill), then one token per run (decode), each timed.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <random>

#include "formats/file_util.h"
#include "formats/onnx_io.h"
#include "ir/error.h"
#include "runtime/executor.h"
#include "tokenizers/chat_template.h"
#include "tokenizers/tokenizer.h"
#include "tools/cli.h"

namespace slmops::cli {

namespace {

namespace fs = std::filesystem;

struct Sampling {
  bool greedy = true;
  double temperature = 1.0, top_p = 1.0;
  int64_t top_k = 0;
  uint64_t seed = 0;
};

// The next token from the last position's logits: argmax, or a draw from the softmax at
// `temperature` over the top-k tokens whose cumulated probability first reaches top-p.
int64_t pick(const float* logits, int64_t vocab, const Sampling& s, std::mt19937_64& rng) {
  if (s.greedy) return std::max_element(logits, logits + vocab) - logits;
  std::vector<int64_t> order(static_cast<size_t>(vocab));
  for (int64_t i = 0; i < vocab; ++i) order[static_cast<size_t>(i)] = i;
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return logits[a] > logits[b]; });
  if (s.top_k > 0 && s.top_k < vocab) order.resize(static_cast<size_t>(s.top_k));
  std::vector<double> p;
  const double mx = logits[order[0]];
  double sum = 0;
  for (int64_t i : order) {
    p.push_back(std::exp((logits[i] - mx) / s.temperature));
    sum += p.back();
  }
  double cum = 0;
  size_t keep = p.size();
  for (size_t k = 0; k < p.size(); ++k) {
    cum += p[k] / sum;
    if (cum >= s.top_p) {
      keep = k + 1;
      break;
    }
  }
  std::discrete_distribution<size_t> d(p.begin(), p.begin() + static_cast<long>(keep));
  return order[d(rng)];
}

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
    Sampling s;
    s.greedy = a.greedy || a.temperature == 0;
    if (a.greedy && a.temperature != 0) bad_input("--greedy and --temperature exclude each other");
    if (a.temperature < 0) bad_input("--temperature {}: must be > 0", a.temperature);
    if (s.greedy && (a.top_k != 0 || a.top_p != 1.0)) bad_input("--top-k and --top-p need --temperature");
    s.temperature = a.temperature;
    s.top_k = a.top_k;
    s.top_p = a.top_p;
    s.seed = a.seed;
    std::error_code ec;
    const fs::path dir = fs::is_directory(a.model, ec) ? fs::path(a.model) : fs::path(a.model).parent_path();
    const fs::path file = fs::is_directory(a.model, ec) ? dir / "model.onnx" : fs::path(a.model);
    std::optional<tok::Tokenizer> tokenizer;
    if (formats::path_exists(dir / "tokenizer.json")) tokenizer = tok::Tokenizer::load(dir / "tokenizer.json");
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
    // End-of-sequence ids: generation_config.json, else config.json.
    std::vector<int64_t> eos;
    for (const char* name : {"generation_config.json", "config.json"}) {
      if (!eos.empty() || !formats::path_exists(dir / name)) continue;
      nlohmann::json j = nlohmann::json::parse(formats::read_text_file(dir / name), nullptr, false);
      if (!j.is_object() || !j.contains("eos_token_id")) continue;
      const auto& e = j["eos_token_id"];
      if (e.is_number_integer()) eos.push_back(e.get<int64_t>());
      if (e.is_array())
        for (const auto& x : e)
          if (x.is_number_integer()) eos.push_back(x.get<int64_t>());
    }

    ir::Model m = formats::load_model(file);
    runtime::Session session(m, effective_threads());
    const auto& inputs = session.inputs();
    const std::vector<std::string> outs = session.output_names();
    auto out_index = [&](const std::string& name) -> size_t {
      const auto it = std::find(outs.begin(), outs.end(), name);
      if (it == outs.end())
        bad_input("{}: the model has no output '{}' (generate needs a decoder with a KV cache)", file.string(), name);
      return static_cast<size_t>(it - outs.begin());
    };
    const size_t logits_at = out_index("logits");
    // past_key_values.N.x -> present.N.x, with the declared [batch, kv_heads, past, head_dim].
    std::vector<size_t> past_in;
    std::vector<size_t> present_out;
    std::vector<std::vector<int64_t>> past_dims;
    int ids_at = -1, mask_at = -1, pos_at = -1;
    for (size_t i = 0; i < inputs.size(); ++i) {
      const std::string& n = inputs[i]->name;
      if (n == "input_ids")
        ids_at = static_cast<int>(i);
      else if (n == "attention_mask")
        mask_at = static_cast<int>(i);
      else if (n == "position_ids")
        pos_at = static_cast<int>(i);
      else if (n.rfind("past_key_values.", 0) == 0) {
        const auto& t = inputs[i]->type;
        if (!t.has_shape || t.dims.size() != 4 || !t.dims[1].known() || !t.dims[3].known())
          bad_input("{}: input '{}' must be declared [batch, kv_heads, past, head_dim] with known heads and head_dim",
                    file.string(), n);
        past_in.push_back(i);
        present_out.push_back(out_index("present" + n.substr(std::string("past_key_values").size())));
        past_dims.push_back({1, t.dims[1].value, 0, t.dims[3].value});
      } else if (!inputs[i]->initializer) {
        bad_input("{}: input '{}' is not one a decoder with a KV cache takes", file.string(), n);
      }
    }
    if (ids_at < 0 || mask_at < 0) bad_input("{}: a decoder needs inputs input_ids and attention_mask", file.string());

    std::mt19937_64 rng(s.seed);
    std::vector<int64_t> generated;
    std::vector<runtime::RValue> past(past_in.size());
    for (size_t k = 0; k < past_in.size(); ++k)
      past[k] = runtime::RValue::of(ir::Tensor::from_values("", ir::DType::Float, past_dims[k], std::vector<float>{}));
    using clock = std::chrono::steady_clock;
    double prefill_s = 0, decode_s = 0;
    int64_t total = 0;
    std::vector<int64_t> step = prompt;
    bool stopped_eos = false;
    while (static_cast<int64_t>(generated.size()) < a.max_new_tokens) {
      const int64_t n = static_cast<int64_t>(step.size());
      std::vector<runtime::RValue> feeds(inputs.size());
      feeds[static_cast<size_t>(ids_at)] =
          runtime::RValue::of(ir::Tensor::from_values("", ir::DType::Int64, {1, n}, step));
      feeds[static_cast<size_t>(mask_at)] = runtime::RValue::of(ir::Tensor::from_values(
          "", ir::DType::Int64, {1, total + n}, std::vector<int64_t>(static_cast<size_t>(total + n), 1)));
      if (pos_at >= 0) {
        std::vector<int64_t> p;
        for (int64_t k = 0; k < n; ++k) p.push_back(total + k);
        feeds[static_cast<size_t>(pos_at)] =
            runtime::RValue::of(ir::Tensor::from_values("", ir::DType::Int64, {1, n}, p));
      }
      for (size_t k = 0; k < past_in.size(); ++k) feeds[past_in[k]] = std::move(past[k]);
      const auto t0 = clock::now();
      std::vector<runtime::RValue> out = session.run(std::move(feeds));
      const double dt = std::chrono::duration<double>(clock::now() - t0).count();
      (total == 0 ? prefill_s : decode_s) += dt;
      total += n;
      const ir::Tensor& logits = out[logits_at].tensor;
      if (logits.dims.size() != 3 || logits.dims[1] != n || logits.dtype != ir::DType::Float)
        bad_input("{}: logits must be float32 [batch, seq, vocab]", file.string());
      const int64_t vocab = logits.dims[2];
      const int64_t next = pick(logits.values<float>() + (n - 1) * vocab, vocab, s, rng);
      generated.push_back(next);
      for (size_t k = 0; k < past_in.size(); ++k) past[k] = std::move(out[present_out[k]]);
      step = {next};
      if (!a.ignore_eos && std::find(eos.begin(), eos.end(), next) != eos.end()) {
        stopped_eos = true;
        break;
      }
    }
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
                        {{"temperature", s.temperature}, {"top_k", s.top_k}, {"top_p", s.top_p}, {"seed", s.seed}})}};
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
