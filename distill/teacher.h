// A teacher answers prompts for `slmops distill-data`: a local ONNX decoder folder (through our
// executor, distill/local_teacher.h) or an OpenAI-compatible /v1/chat/completions endpoint
// (distill/http_teacher.h). The driver (distill/distill.h) reads the prompts, skips the rows
// already finished, hands the rest to a teacher and writes each completion as it arrives.
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace slmops::distill {

// What the teacher is asked to do; part of every row's key, so a changed setting never reuses
// a row made with another.
struct Settings {
  double temperature = 0;  // 0: greedy (the most likely token)
  double top_p = 1.0;
  int64_t top_k = 0;  // 0: all tokens
  int64_t max_tokens = 256;
  std::vector<std::string> stop;  // stop strings (not part of the answer)
  int64_t n = 1;                  // answers per prompt: one output row each
  uint64_t seed = 0;
  int64_t logprobs = 0;  // top-K log-probabilities per generated token (0: none)
  // The settings as they go into keys and each row's `teacher` metadata (stable key order).
  nlohmann::ordered_json to_json() const;
};

// One answer to make: sample `sample` (0..n-1) of prompt row `index`.
struct Request {
  int64_t index = 0;   // the row's position among all prompt rows (0-based, before sharding)
  int64_t sample = 0;  // 0..n-1
  std::string where;   // PROMPTS.jsonl:LINE, for messages
  // The conversation: a `messages` row's turns, or a `prompt` row as one user turn.
  nlohmann::ordered_json messages;
  // A `prompt` row's text (messages then holds it as one user turn): a local teacher encodes it
  // as it is, without the chat template; an HTTP teacher sends `messages`.
  std::string prompt;
  bool is_prompt = false;
  uint64_t seed = 0;  // this answer's own seed (from Settings::seed, the row's key and sample)
  // False: already written by an earlier run. Only a teacher whose batches() is true sees such
  // requests: it may compute them again (no `done`) so that every batch holds the same rows, and
  // so the same bits, as in an uninterrupted run.
  bool needed = true;
};

struct Completion {
  std::string text;
  std::string finish_reason;  // "stop" (end of sequence or a stop string) or "length"
  int64_t prompt_tokens = 0, completion_tokens = 0;
  // null without --logprobs; else, per generated token:
  //   local: {"ids": [chosen id...], "chosen": [logprob...], "top_ids": [[...]], "top_values": [[...]]}
  //   HTTP:  {"tokens": [chosen token...], "chosen": [...], "top_tokens": [[...]], "top_values": [[...]]}
  nlohmann::ordered_json logprobs;
  int64_t retries = 0;  // HTTP: attempts beyond the first for this answer
  std::string model;    // the model that answered (HTTP: the response's "model", when given)
};

// Counters the driver shows as progress and reports in the JSON summary; teachers add to them
// from any thread.
struct RunStats {
  std::atomic<int64_t> requests{0};  // HTTP requests sent (attempts)
  std::atomic<int64_t> retries{0};   // attempts beyond the first
  std::atomic<int64_t> completion_tokens{0};
  std::atomic<int64_t> prompt_tokens{0};
  std::atomic<int64_t> max_in_flight{0};  // HTTP: the most requests open at once
};

// Called as each answer finishes, from any thread (the driver serializes the writes).
using OnDone = std::function<void(const Request&, Completion&&)>;

class Teacher {
 public:
  virtual ~Teacher() = default;
  // The teacher's name in keys and metadata: the model folder's name, or the --model name sent
  // to an endpoint.
  virtual std::string name() const = 0;
  // True when answers depend on which requests share a run (a local teacher's padded batches):
  // the driver then passes every request of the shard, finished ones with needed = false.
  virtual bool batches() const { return false; }
  // Answers every request, calling `done` for each as it finishes, in any order. Throws
  // Error(BadInput) on what dooms the run (an unreachable URL, a refused key, a request the
  // endpoint rejects, retries exhausted), after `done` was called for every answer finished
  // so far; the driver keeps those.
  virtual void run(const std::vector<Request>& requests, const OnDone& done, RunStats& stats) = 0;
};

}  // namespace slmops::distill
