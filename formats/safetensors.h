// Hugging Face safetensors checkpoints (issue #14: the way in from a checkpoint folder): one
// `model.safetensors`, or shards listed by `model.safetensors.index.json`. Files are
// memory-mapped and tensors are views into them (nothing is copied), so converting a
// checkpoint never holds its weights twice.
//
// A file is: 8 bytes little-endian header length N, N bytes of JSON header
// {"name": {"dtype", "shape", "data_offsets": [begin, end]}, ..., "__metadata__": {...}}, then
// the data. The header is checked as the reference implementation checks it: offsets inside
// the data, each tensor's bytes equal to its shape times its element size, the data covered
// whole without holes or overlaps.
#pragma once
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "ir/tensor.h"

namespace slmops::formats {

struct Checkpoint {
  std::string path;                             // the file or folder it was read from
  std::vector<std::string> names;               // tensor names, file by file in offset order
  std::map<std::string, ir::Tensor> tensors;    // views into the mapped files
  std::map<std::string, std::string> metadata;  // "__metadata__" of the (first) file
  std::map<std::string, std::string> file_of;   // tensor name -> the file holding it
  bool contains(const std::string& name) const { return tensors.count(name) > 0; }
  // The tensor, or Error(BadInput) naming the checkpoint and the missing tensor.
  const ir::Tensor& at(const std::string& name) const;
  uint64_t data_bytes() const;  // the tensors' bytes
};

// One .safetensors file. Throws Error(BadInput) naming the file (and the tensor) on anything
// that does not hold: truncated, a header that is not JSON or lies about offsets, an unknown
// dtype, a shape that does not match the bytes.
Checkpoint load_safetensors_file(const std::filesystem::path& file);

// A checkpoint folder (model.safetensors.index.json, else model.safetensors, else the single
// *.safetensors file it holds) or a file. Shards named by the index must be plain file names
// inside the folder; every tensor the index lists must be in its shard.
Checkpoint load_checkpoint(const std::filesystem::path& file_or_folder);

}  // namespace slmops::formats
