// A local teacher: an ONNX decoder folder with a KV cache (what `convert HF_DIR` writes) and its
// tokenizer and chat template, run by our executor in left-padded batches.
#pragma once
#include <memory>
#include <string>

#include "distill/teacher.h"

namespace slmops::distill {

struct LocalOptions {
  std::string model;  // the folder (or its model.onnx)
  int threads = 1;
  int64_t batch_size = 8;  // prompt rows per run (each with its n answers)
  std::string name;        // the name in keys and metadata (empty: the folder's name)
};

// Loads and plans the model; throws Error(BadInput) naming the folder when it is not a decoder
// with a KV cache or has no tokenizer.json.
std::unique_ptr<Teacher> make_local_teacher(const LocalOptions& o, const Settings& s);

}  // namespace slmops::distill
