// Data for passes that run the model: calibration sets (quantize), activation statistics
// (GPTQ, Wanda, SparseGPT), and the evaluator behind accuracy goals. The readers live above
// passes (eval/ and the CLI) and reach passes through DataHooks.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "ir/graph.h"
#include "runtime/value.h"

namespace slmops::passes {

// Model inputs streamed in batches (a calibration or evaluation set). Feeds are in the
// order of the model's graph inputs that callers feed (runtime::Session::inputs()).
class FeedSource {
 public:
  virtual ~FeedSource() = default;
  virtual int64_t samples() const = 0;
  virtual std::string describe() const = 0;
  // Calls fn once per batch over the first `limit` samples (all when limit <= 0).
  virtual void for_each_batch(int64_t limit, const std::function<void(std::vector<runtime::RValue>)>& fn) const = 0;
};

// How JSONL text and chat rows become token ids (evaluate's --tokenizer and --context-length).
struct TextData {
  std::string tokenizer;       // tokenizer.json or its folder; empty: the model folder's
  int64_t context_length = 0;  // windows of this many tokens (0: one sample per row)
};

// What passes that read data need from the layers above (which own the data readers and the
// evaluator). Set by the recipe runner; tests may provide their own.
struct DataHooks {
  // Opens an evaluate data source for `model`; throws Error(BadInput) when it does not fit.
  std::function<std::unique_ptr<FeedSource>(const std::string& spec, const ir::Model& model, int64_t batch_size,
                                            const TextData& text)>
      open;
  // Evaluates `candidate` against `baseline` on `data` and checks one goal (Olive's form,
  // METRIC:TYPE:VALUE, e.g. "accuracy:max-degradation:0.01"). Returns {"met": bool,
  // "value": candidate's metric, "baseline": baseline's metric}.
  std::function<nlohmann::json(const ir::Model& candidate, const ir::Model& baseline, const std::string& data,
                               const std::string& goal, const TextData& text)>
      measure;
};

}  // namespace slmops::passes
