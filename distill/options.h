// The options `slmops distill-data` and a recipe's {"pass": "distill-data", ...} step share,
// declared once: the table drives the CLI flags (tools/cmd_distill.cpp), recipe validation and
// `slmops passes`. The teacher and the HTTP client's flags are the command line's own (in a
// recipe the teacher is the step's input folder).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "distill/teacher.h"
#include "passes/options.h"

namespace slmops::distill {

struct DistillOptions {
  std::string prompts;
  double temperature = 0;
  double top_p = 1.0;
  int64_t top_k = 0;
  int64_t max_tokens = 256;
  std::vector<std::string> stop;
  int64_t n = 1;
  int64_t seed = 0;
  int64_t logprobs = 0;
  int64_t batch_size = 8;
  std::string shard;
  bool skip_bad_rows = false;
  std::string teacher_name;

  Settings settings() const {
    Settings s;
    s.temperature = temperature;
    s.top_p = top_p;
    s.top_k = top_k;
    s.max_tokens = max_tokens;
    s.stop = stop;
    s.n = n;
    s.seed = static_cast<uint64_t>(seed);
    s.logprobs = logprobs;
    return s;
  }

  static const passes::OptionTable<DistillOptions>& table() {
    using D = DistillOptions;
    static const passes::OptionTable<D> t({
        {"prompts",
         &D::prompts,
         "JSONL rows with chat 'messages' or 'prompt' text; other keys are carried to the output",
         {},
         true},
        {"temperature", &D::temperature, "sample at this temperature (0: greedy)", {}, false, {0, 100}},
        {"top-p",
         &D::top_p,
         "sample among the most likely tokens whose probability reaches p",
         {},
         false,
         {0, 1, true, false}},
        {"top-k", &D::top_k, "sample among the k most likely tokens (0: all)", {}, false, {0, 1 << 24}},
        {"max-tokens", &D::max_tokens, "tokens per answer at most", {}, false, {1, 1 << 20}},
        {"stop", &D::stop, "stop an answer at this string (not part of the answer); repeatable", {}},
        {"n", &D::n, "answers per prompt, one output row each (needs a temperature)", {}, false, {1, 1024}},
        {"seed",
         &D::seed,
         "seed of the sampler: the same seed, prompts and settings give the same answers",
         {},
         false,
         {0, 9007199254740991.0}},  // 2^53 - 1: exact in every JSON reader
        {"logprobs",
         &D::logprobs,
         "store the top-K log-probabilities of each generated token (ids and values; 0: none)",
         {},
         false,
         {0, 20}},
        {"batch-size",
         &D::batch_size,
         "prompt rows per run of a local teacher (left-padded); shards cut at whole batches",
         {},
         false,
         {1, 4096}},
        {"shard", &D::shard, "I/N: run the I-th of N slices of the prompts (0-based); --merge joins the outputs", {}},
        {"skip-bad-rows", &D::skip_bad_rows, "go on past prompt rows that are not usable (counted and listed)", {}},
        {"teacher-name",
         &D::teacher_name,
         "the teacher's name in row keys and metadata (default: a local model's folder name, an endpoint's --model "
         "or host)",
         {}},
    });
    return t;
  }
};

}  // namespace slmops::distill
