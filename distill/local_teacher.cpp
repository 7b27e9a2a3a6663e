#include "distill/local_teacher.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <optional>

#include "distill/decoder.h"
#include "ir/error.h"
#include "tokenizers/chat_template.h"

namespace slmops::distill {

namespace {

namespace fs = std::filesystem;

// Log-probabilities are kept to 6 decimals: short lines, and far below any difference a
// student's loss can see.
double round6(double v) { return std::round(v * 1e6) / 1e6; }

class LocalTeacher final : public Teacher {
 public:
  LocalTeacher(const LocalOptions& o, const Settings& s) : o_(o), s_(s), decoder_(o.model, o.threads) {
    if (!decoder_.tokenizer())
      bad_input("--teacher {}: the folder has no tokenizer.json (a local teacher reads and writes text)",
                decoder_.dir().string());
    std::error_code ec;
    name_ = fs::is_directory(o.model, ec) ? fs::path(o.model).lexically_normal().filename().string()
                                          : fs::path(o.model).stem().string();
    if (name_.empty()) name_ = fs::absolute(o.model).lexically_normal().parent_path().filename().string();
    if (!o.name.empty()) name_ = o.name;
    sampling_.greedy = s.temperature == 0;
    sampling_.temperature = s.temperature;
    sampling_.top_k = s.top_k;
    sampling_.top_p = s.top_p;
  }

  std::string name() const override { return name_; }
  bool batches() const override { return true; }

  void run(const std::vector<Request>& requests, const OnDone& done, RunStats& stats) override {
    // Batches are fixed windows of prompt rows (by index), whatever an earlier run finished.
    std::map<int64_t, std::vector<const Request*>> groups;
    for (const auto& r : requests) groups[r.index / std::max<int64_t>(1, o_.batch_size)].push_back(&r);
    for (auto& [g, members] : groups) {
      if (std::none_of(members.begin(), members.end(), [](const Request* r) { return r->needed; })) continue;
      if (decoder_.takes_left_padding()) {
        run_batch(members, done, stats);
      } else {
        for (const Request* r : members)
          if (r->needed) run_batch({r}, done, stats);
      }
    }
  }

 private:
  std::vector<int64_t> encode(const Request& r) {
    const tok::Tokenizer& t = *decoder_.tokenizer();
    std::vector<int32_t> ids;
    if (r.is_prompt) {
      ids = t.encode(r.prompt);
    } else {
      if (!chat_) chat_ = tok::ChatTemplate::load(decoder_.dir());
      tok::ChatRequest cr;
      cr.messages = r.messages;
      cr.add_generation_prompt = true;
      std::string text;
      try {
        text = chat_->render(cr);
      } catch (const jinja::Raised& e) {
        bad_input("{}: {}: the chat template raised an exception: {}", r.where, chat_->origin(), e.what());
      }
      ids = t.encode(text, false);
    }
    if (ids.empty()) bad_input("{}: the prompt has no tokens", r.where);
    const int64_t ctx = decoder_.context_length();
    if (ctx > 0 && static_cast<int64_t>(ids.size()) >= ctx)
      bad_input("{}: the prompt's {} tokens leave no room in the teacher's context of {} (shorten or remove the row)",
                r.where, ids.size(), ctx);
    return {ids.begin(), ids.end()};
  }

  // The answer's text: the generated ids without a final end-of-sequence id, decoded, cut at
  // the first stop string.
  std::string answer_text(const std::vector<int64_t>& generated, bool drop_last, size_t* stop_at) const {
    std::vector<int32_t> ids(generated.begin(), generated.end() - (drop_last ? 1 : 0));
    std::string text = decoder_.tokenizer()->decode(ids, true);
    size_t cut = std::string::npos;
    for (const auto& st : s_.stop) cut = std::min(cut, text.find(st));
    if (stop_at) *stop_at = cut;
    if (cut != std::string::npos) text.resize(cut);
    return text;
  }

  void run_batch(const std::vector<const Request*>& members, const OnDone& done, RunStats& stats) {
    std::vector<Sequence> batch;
    for (const Request* r : members) {
      Sequence q;
      q.prompt = encode(*r);
      q.seed = r->seed;
      q.max_new_tokens = s_.max_tokens;
      q.logprobs = s_.logprobs > 0;
      q.top_logprobs = s_.logprobs;
      if (!s_.stop.empty())
        q.stop = [this](const std::vector<int64_t>& g) {
          size_t at = std::string::npos;
          answer_text(g, false, &at);
          return at != std::string::npos;
        };
      batch.push_back(std::move(q));
    }
    decoder_.generate(batch, sampling_, false);
    for (size_t k = 0; k < members.size(); ++k) {
      const Request& r = *members[k];
      const Sequence& q = batch[k];
      if (!r.needed) continue;
      Completion c;
      c.model = name_;
      c.text = answer_text(q.generated, q.finish_reason == "eos", nullptr);
      c.finish_reason = q.finish_reason == "length" ? "length" : "stop";
      c.prompt_tokens = static_cast<int64_t>(q.prompt.size());
      c.completion_tokens = static_cast<int64_t>(q.generated.size());
      if (s_.logprobs > 0) {
        nlohmann::ordered_json chosen = nlohmann::ordered_json::array(), top_ids = chosen, top_values = chosen;
        for (size_t t = 0; t < q.generated.size(); ++t) {
          chosen.push_back(round6(q.chosen_logprob[t]));
          top_ids.push_back(q.top_ids[t]);
          nlohmann::ordered_json v = nlohmann::ordered_json::array();
          for (double x : q.top_values[t]) v.push_back(round6(x));
          top_values.push_back(std::move(v));
        }
        c.logprobs = {{"ids", q.generated}, {"chosen", chosen}, {"top_ids", top_ids}, {"top_values", top_values}};
      }
      stats.prompt_tokens += c.prompt_tokens;
      stats.completion_tokens += c.completion_tokens;
      done(r, std::move(c));
    }
  }

  LocalOptions o_;
  Settings s_;
  Decoder decoder_;
  Sampling sampling_;
  std::string name_;
  std::optional<tok::ChatTemplate> chat_;
};

}  // namespace

std::unique_ptr<Teacher> make_local_teacher(const LocalOptions& o, const Settings& s) {
  return std::make_unique<LocalTeacher>(o, s);
}

}  // namespace slmops::distill
