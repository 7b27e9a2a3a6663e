#include "distill/decoder.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <nlohmann/json.hpp>
#include <numeric>

#include "formats/file_util.h"
#include "formats/onnx_io.h"
#include "ir/error.h"

namespace slmops::distill {

namespace fs = std::filesystem;

int64_t pick_token(const float* logits, int64_t vocab, const Sampling& s, std::mt19937_64& rng) {
  if (s.greedy) return std::max_element(logits, logits + vocab) - logits;
  std::vector<int64_t> order(static_cast<size_t>(vocab));
  std::iota(order.begin(), order.end(), 0);
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

Decoder::Decoder(const fs::path& model_or_dir, int threads) {
  std::error_code ec;
  const bool is_dir = fs::is_directory(model_or_dir, ec);
  dir_ = is_dir ? model_or_dir : model_or_dir.parent_path();
  file_ = is_dir ? dir_ / "model.onnx" : model_or_dir;
  if (formats::path_exists(dir_ / "tokenizer.json")) tokenizer_ = tok::Tokenizer::load(dir_ / "tokenizer.json");
  // The folder's JSON files, each read once (an object, or null when absent or not JSON).
  auto read_json = [&](const char* name) {
    if (!formats::path_exists(dir_ / name)) return nlohmann::json();
    nlohmann::json j = nlohmann::json::parse(formats::read_text_file(dir_ / name), nullptr, false);
    return j.is_object() ? j : nlohmann::json();
  };
  const nlohmann::json generation = read_json("generation_config.json"), config = read_json("config.json"),
                       genai = read_json("genai_config.json");
  // End-of-sequence ids: generation_config.json's, else config.json's.
  for (const nlohmann::json* j : {&generation, &config}) {
    if (!eos_.empty() || !j->contains("eos_token_id")) continue;
    const auto& e = (*j)["eos_token_id"];
    if (e.is_number_integer()) eos_.push_back(e.get<int64_t>());
    if (e.is_array())
      for (const auto& x : e)
        if (x.is_number_integer()) eos_.push_back(x.get<int64_t>());
  }
  const nlohmann::json ctx = genai.contains("model") && genai["model"].is_object()
                                 ? genai["model"].value("context_length", nlohmann::json())
                                 : nlohmann::json();
  if (ctx.is_number_integer()) context_length_ = ctx.get<int64_t>();
  if (context_length_ <= 0 && config.contains("max_position_embeddings") &&
      config["max_position_embeddings"].is_number_integer())
    context_length_ = config["max_position_embeddings"].get<int64_t>();
  model_ = formats::load_model(file_);
  for (const auto& n : model_.graph->nodes())
    if (n->op_type == "GroupQueryAttention") left_padding_ = false;
  session_ = std::make_unique<runtime::Session>(model_, threads);
  const auto& inputs = session_->inputs();
  const std::vector<std::string> outs = session_->output_names();
  auto out_index = [&](const std::string& name) -> size_t {
    const auto it = std::find(outs.begin(), outs.end(), name);
    if (it == outs.end())
      bad_input("{}: the model has no output '{}' (a decoder with a KV cache is needed)", file_.string(), name);
    return static_cast<size_t>(it - outs.begin());
  };
  logits_at_ = out_index("logits");
  // past_key_values.N.x -> present.N.x, with the declared [batch, kv_heads, past, head_dim].
  for (size_t i = 0; i < inputs.size(); ++i) {
    const std::string& n = inputs[i]->name;
    if (n == "input_ids") {
      ids_at_ = static_cast<int>(i);
    } else if (n == "attention_mask") {
      mask_at_ = static_cast<int>(i);
    } else if (n == "position_ids") {
      pos_at_ = static_cast<int>(i);
    } else if (n.rfind("past_key_values.", 0) == 0) {
      const auto& t = inputs[i]->type;
      if (!t.has_shape || t.dims.size() != 4 || !t.dims[1].known() || !t.dims[3].known())
        bad_input("{}: input '{}' must be declared [batch, kv_heads, past, head_dim] with known heads and head_dim",
                  file_.string(), n);
      past_in_.push_back(i);
      present_out_.push_back(out_index("present" + n.substr(std::string("past_key_values").size())));
      past_dims_.push_back({1, t.dims[1].value, 0, t.dims[3].value});
    } else if (!inputs[i]->initializer) {
      bad_input("{}: input '{}' is not one a decoder with a KV cache takes", file_.string(), n);
    }
  }
  if (ids_at_ < 0 || mask_at_ < 0) bad_input("{}: a decoder needs inputs input_ids and attention_mask", file_.string());
  // Without position_ids a model counts positions itself, from the mask's ones; left padding
  // would still shift them unless it does so.
  if (pos_at_ < 0) left_padding_ = false;
}

Decoder::~Decoder() = default;

namespace {

// log-softmax of the raw logits at the chosen token and at the K most likely ones (ties: the
// lower id first), in double.
void record_logprobs(const float* row, int64_t vocab, int64_t chosen, Sequence& q) {
  const float mx = *std::max_element(row, row + vocab);
  double sum = 0;
  for (int64_t v = 0; v < vocab; ++v) sum += std::exp(static_cast<double>(row[v]) - mx);
  const double lse = mx + std::log(sum);
  q.chosen_logprob.push_back(static_cast<double>(row[chosen]) - lse);
  if (q.top_logprobs <= 0) return;
  const int64_t k = std::min(q.top_logprobs, vocab);
  std::vector<int64_t> ids(static_cast<size_t>(vocab));
  std::iota(ids.begin(), ids.end(), 0);
  std::partial_sort(ids.begin(), ids.begin() + k, ids.end(),
                    [&](int64_t a, int64_t b) { return row[a] > row[b] || (row[a] == row[b] && a < b); });
  ids.resize(static_cast<size_t>(k));
  std::vector<double> values;
  for (int64_t id : ids) values.push_back(static_cast<double>(row[id]) - lse);
  q.top_ids.push_back(std::move(ids));
  q.top_values.push_back(std::move(values));
}

}  // namespace

void Decoder::generate(std::vector<Sequence>& batch, const Sampling& s, bool ignore_eos, Timing* timing) {
  const auto B = static_cast<int64_t>(batch.size());
  if (B == 0) return;
  if (B > 1 && !left_padding_)
    throw Error(ExitCode::Failure, fmt::format("{}: this decoder takes one sequence per run", file_.string()));
  int64_t P = 0;
  for (const auto& q : batch) {
    if (q.prompt.empty()) bad_input("{}: a prompt has no tokens", file_.string());
    if (context_length_ > 0 && static_cast<int64_t>(q.prompt.size()) >= context_length_)
      bad_input("{}: a prompt of {} tokens leaves no room in the model's context of {}", file_.string(),
                q.prompt.size(), context_length_);
    P = std::max<int64_t>(P, static_cast<int64_t>(q.prompt.size()));
  }
  std::vector<std::mt19937_64> rng;
  std::vector<int64_t> pad(static_cast<size_t>(B));  // left padding of each row
  std::vector<bool> active(static_cast<size_t>(B), true);
  for (int64_t b = 0; b < B; ++b) {
    auto& q = batch[static_cast<size_t>(b)];
    rng.emplace_back(q.seed);
    pad[static_cast<size_t>(b)] = P - static_cast<int64_t>(q.prompt.size());
    q.generated.clear();
    q.chosen_logprob.clear();
    q.top_ids.clear();
    q.top_values.clear();
    q.finish_reason.clear();
    if (q.max_new_tokens <= 0) {
      q.finish_reason = "length";
      active[static_cast<size_t>(b)] = false;
    }
  }
  std::vector<runtime::RValue> past(past_in_.size());
  for (size_t k = 0; k < past_in_.size(); ++k) {
    std::vector<int64_t> d = past_dims_[k];
    d[0] = B;
    past[k] = runtime::RValue::of(ir::Tensor::from_values("", ir::DType::Float, d, std::vector<float>{}));
  }
  using clock = std::chrono::steady_clock;
  int64_t total = 0;  // positions in the cache (padding included)
  int64_t n = P;      // positions fed in this run
  std::vector<int64_t> ids(static_cast<size_t>(B * P));
  for (int64_t b = 0; b < B; ++b) {
    const auto& pr = batch[static_cast<size_t>(b)].prompt;
    std::copy(pr.begin(), pr.end(), ids.begin() + b * P + pad[static_cast<size_t>(b)]);
  }
  const auto& inputs = session_->inputs();
  while (std::find(active.begin(), active.end(), true) != active.end()) {
    std::vector<runtime::RValue> feeds(inputs.size());
    std::vector<int64_t> mask(static_cast<size_t>(B * (total + n)), 1), pos(static_cast<size_t>(B * n));
    for (int64_t b = 0; b < B; ++b) {
      const int64_t pb = pad[static_cast<size_t>(b)];
      std::fill_n(mask.begin() + b * (total + n), std::min(pb, total + n), 0);
      // A row that has ended idles at position 0: its position would otherwise pass the
      // context while other rows go on.
      for (int64_t k = 0; k < n; ++k)
        pos[static_cast<size_t>(b * n + k)] = active[static_cast<size_t>(b)] ? std::max<int64_t>(0, total + k - pb) : 0;
    }
    feeds[static_cast<size_t>(ids_at_)] =
        runtime::RValue::of(ir::Tensor::from_values("", ir::DType::Int64, {B, n}, ids));
    feeds[static_cast<size_t>(mask_at_)] =
        runtime::RValue::of(ir::Tensor::from_values("", ir::DType::Int64, {B, total + n}, mask));
    if (pos_at_ >= 0)
      feeds[static_cast<size_t>(pos_at_)] =
          runtime::RValue::of(ir::Tensor::from_values("", ir::DType::Int64, {B, n}, pos));
    for (size_t k = 0; k < past_in_.size(); ++k) feeds[past_in_[k]] = std::move(past[k]);
    const auto t0 = clock::now();
    std::vector<runtime::RValue> out = session_->run(std::move(feeds));
    const double dt = std::chrono::duration<double>(clock::now() - t0).count();
    if (timing) (total == 0 ? timing->prefill_s : timing->decode_s) += dt;
    const ir::Tensor& logits = out[logits_at_].tensor;
    if (logits.dims.size() != 3 || logits.dims[0] != B || logits.dims[1] != n || logits.dtype != ir::DType::Float)
      bad_input("{}: logits must be float32 [batch, seq, vocab]", file_.string());
    const int64_t vocab = logits.dims[2];
    if (timing) {
      for (int64_t b = 0; b < B; ++b)
        if (active[static_cast<size_t>(b)])
          (total == 0 ? timing->prefill_tokens : timing->decode_tokens) +=
              total == 0 ? P - pad[static_cast<size_t>(b)] : 1;
    }
    total += n;
    std::vector<int64_t> next_ids(static_cast<size_t>(B));
    for (int64_t b = 0; b < B; ++b) {
      auto& q = batch[static_cast<size_t>(b)];
      if (!active[static_cast<size_t>(b)]) {
        next_ids[static_cast<size_t>(b)] = ids[static_cast<size_t>(b * n + n - 1)];  // a row that ended idles
        continue;
      }
      const float* row = logits.values<float>() + (b * n + n - 1) * vocab;
      const int64_t next = pick_token(row, vocab, s, rng[static_cast<size_t>(b)]);
      if (q.logprobs) record_logprobs(row, vocab, next, q);
      q.generated.push_back(next);
      next_ids[static_cast<size_t>(b)] = next;
      if (!ignore_eos && std::find(eos_.begin(), eos_.end(), next) != eos_.end()) {
        q.finish_reason = "eos";
      } else if (q.stop && q.stop(q.generated)) {
        q.finish_reason = "stop";
      } else if (static_cast<int64_t>(q.generated.size()) >= q.max_new_tokens ||
                 (context_length_ > 0 &&
                  static_cast<int64_t>(q.prompt.size() + q.generated.size()) >= context_length_)) {
        q.finish_reason = "length";
      }
      if (!q.finish_reason.empty()) active[static_cast<size_t>(b)] = false;
    }
    for (size_t k = 0; k < past_in_.size(); ++k) past[k] = std::move(out[present_out_[k]]);
    ids = std::move(next_ids);
    n = 1;
  }
}

}  // namespace slmops::distill
