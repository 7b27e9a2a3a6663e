// Loading and saving .onnx files: lossless (every field survives a round trip, including
// ones newer than our schema), external data memory-mapped on load and copied file-to-file
// on save, atomic writes, and no external-data path that leaves the model's folder.
#pragma once
#include <cstdint>
#include <filesystem>
#include <string>

#include "ir/graph.h"

namespace slmops::formats {

enum class ExternalData { Auto, Always, Never };

struct SaveOptions {
  // Auto: external when the input had external data or the model would pass protobuf's 2 GiB
  // limit; Always/Never force it.
  ExternalData external = ExternalData::Auto;
  uint64_t external_threshold = 1024;  // smaller tensors stay inside the .onnx file
  uint64_t align = 64;                 // every tensor in the data file starts at a multiple...
  uint64_t page_align_above = 1 << 20; // ...and tensors of 1 MiB or more at a 4 KiB page
  bool sha256 = false;                 // hash the data file as it is written (SaveReport::data_sha256)
};

struct SaveReport {
  uint64_t model_bytes = 0;
  uint64_t data_bytes = 0;
  uint64_t external_tensors = 0;
  std::string data_file;  // empty when everything is inside the model file
  std::string data_sha256;  // SaveOptions::sha256: the data file's digest (lowercase hex)
};

ir::Model load_model(const std::filesystem::path& path);
// Checks, before any work, that `path` (and the data file `path`.data that may be written
// beside it) can be written and is none of the files `model` was read from (its .onnx and
// external data). Throws Error(BadInput) naming the path.
void check_save_targets(const ir::Model& model, const std::filesystem::path& path);
SaveReport save_model(const ir::Model& model, const std::filesystem::path& path, const SaveOptions& opts = {});
// The model converted to default-domain opset `target` by libonnx's version converter (its
// adapters, after ONNX shape inference); weights are shared with `model`, not copied. Throws
// Error(BadInput) with the converter's reason (the op it has no adapter for) when it cannot.
ir::Model convert_opset(const ir::Model& model, int64_t target);

// Serialized ModelProto bytes of `path` after protobuf's own parse and re-serialization: the
// canonical form the round-trip tests compare.
std::string canonical_model_bytes(const std::filesystem::path& path);

std::string_view external_data_name(ExternalData e);
bool parse_external_data(std::string_view s, ExternalData& out);

}  // namespace slmops::formats
