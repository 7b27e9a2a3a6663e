// `slmops distill-data`: teacher-written training data.
//
// Prompts are JSONL rows with chat `messages` or `prompt` text (other keys are carried
// through). Each answer becomes one output row: a `messages` row with the assistant's turn
// appended, a `prompt` row with a `completion` key, plus `teacher` metadata (model, settings,
// index, sample, key, finish reason, token counts, log-probabilities when asked).
//
// Resumable: a row's key is a hash of the prompt row, its occurrence number among identical
// rows, the teacher's name and the settings. Answers are appended to `OUT.journal` as they
// finish, one whole line per write, flushed; at the end of a run (also one stopped by an
// error) OUT is rewritten, atomically, with every finished row in prompt order, and the journal
// is removed. A run finds the rows finished by earlier ones in OUT and in the journal (a killed
// run's journal may end in a torn line, which is dropped) and asks the teacher only for the
// others. --shard I/N takes a contiguous run of whole batches of prompt rows; rows keep their
// index among all prompt rows, so --merge of the shards' outputs equals one unsharded run.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "distill/http_teacher.h"
#include "distill/options.h"
#include "distill/teacher.h"
#include "passes/progress.h"

namespace slmops::distill {

struct DistillArgs {
  std::string teacher;     // a model folder / .onnx, or an http(s):// URL
  std::string output;      // JSONL
  DistillOptions options;  // prompts, sampling, batches, shard (shared with the recipe step)
  HttpOptions http;        // for a URL (url is set from teacher)
  int threads = 1;
  passes::Progress* progress = nullptr;
};

// Checks what can be checked before any work (flags, the output's folder); throws
// Error(BadInput) naming the flag.
void check_arguments(const DistillArgs& a);

// Runs (or resumes) the job; returns the JSON summary. Throws Error(BadInput) on a bad prompt
// row (named by line number, unless skip_bad_rows) or what the teacher cannot do, after
// writing every finished row to the output.
nlohmann::json run(const DistillArgs& a);

// Joins shard outputs into `output` in prompt order (by teacher.index, then teacher.sample);
// refuses overlapping rows. Returns a summary.
nlohmann::json merge(const std::vector<std::string>& shard_files, const std::string& output);

// Classifier teachers: runs `model` over the arrays of an .npz (one per model input, samples on
// axis 0) and writes them to `output` with "soft_labels" = softmax(output / temperature) of the
// model's first output (or `output_name`), float32 [samples, classes]. Returns a summary.
struct SoftLabelArgs {
  std::string model, inputs, output, output_name;
  double temperature = 1.0;
  int64_t batch_size = 64;
  int threads = 1;
};
nlohmann::json soft_labels(const SoftLabelArgs& a);

}  // namespace slmops::distill
