// What recipe steps pass to each other. A step declares the kind it takes and the kind it
// returns; the recipe validator checks the chain before any work, and the runner carries the
// artifact from step to step:
//
//   onnx-model   an ir::Model in memory (every graph rewrite: cleanup, quantize, ...)
//   checkpoint   a folder of weights and configuration (a Hugging Face checkpoint; an
//                exported folder holding model.onnx)
//   package      a folder ready to deploy (model, its data files, a manifest)
//   dataset      files of samples (distill-data)
//
// A recipe's input is a checkpoint when it is a folder and an onnx-model when it is a file;
// its output is whatever the last step returns (a file for onnx-model, a folder otherwise).
#pragma once
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

#include "ir/graph.h"

namespace slmops::passes {

enum class ArtifactKind { OnnxModel, Checkpoint, Package, Dataset };

std::string_view artifact_kind_name(ArtifactKind k);  // "onnx-model", "checkpoint", ...
// Whether the artifact lives on disk as a folder (the recipe's output is then a folder).
bool is_folder_kind(ArtifactKind k);

struct Artifact {
  ArtifactKind kind = ArtifactKind::OnnxModel;
  std::optional<ir::Model> model;  // OnnxModel
  std::filesystem::path path;      // the folder or file of other kinds
};

}  // namespace slmops::passes
