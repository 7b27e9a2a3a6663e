// Evaluation data: .npz arrays, ONNX test_data_set folders, JSONL token rows, or random
// inputs, mapped to the model's inputs by name and cut into batches.
#pragma once
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "ir/graph.h"
#include "runtime/value.h"

namespace slmops::eval {

struct DataOptions {
  int64_t batch_size = 1;
  std::string labels;  // array holding labels (default: "label"/"labels" when present)
  std::vector<std::pair<std::string, std::vector<int64_t>>> shapes;  // --shape for --random
  bool random = false;
  int64_t random_samples = 16;
  uint64_t seed = 1;
  // JSONL rows {"text": "..."}: the tokenizer.json (or its folder) that turns them into ids;
  // empty: the model folder's tokenizer.json when there is one.
  std::string tokenizer;
  // > 0: a text row's ids are cut into windows of this many tokens (the last may be shorter).
  int64_t context_length = 0;
  // > 0 (with context_length): windows start every `stride` tokens and only the tokens the
  // previous window did not score are scored (the others are context), as Hugging Face's
  // sliding-window perplexity does.
  int64_t stride = 0;
};

struct Batch {
  std::vector<runtime::RValue> feeds;     // by model input position
  std::optional<ir::Tensor> labels;       // [count] int64 class ids, or [count, T] token labels
  std::vector<ir::Tensor> reference;      // expected outputs when the data has them (test data)
  int64_t first = 0, count = 0;           // sample range
};

class DataSource {
 public:
  virtual ~DataSource() = default;
  virtual int64_t samples() const = 0;
  // Batches covering samples [begin, end), at most batch_size samples each.
  virtual std::vector<Batch> batches(int64_t begin, int64_t end) const = 0;
  virtual std::string describe() const = 0;
  virtual bool has_labels() const { return false; }
};

// Opens `spec` for `model` and checks that it fits the model's inputs (names, dtypes, ranks,
// fixed dims); throws Error(BadInput) with one line naming the array and what was expected.
std::unique_ptr<DataSource> open_data(const std::string& spec, const ir::Model& model, const DataOptions& opts);

// Parses "name=1x128" for --shape.
std::pair<std::string, std::vector<int64_t>> parse_shape_option(const std::string& s);

}  // namespace slmops::eval
