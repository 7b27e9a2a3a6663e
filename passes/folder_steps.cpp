// Steps over folders, until the checkpoint builder and the deployment packagers land:
//
//   from-folder   checkpoint -> onnx-model   loads the ONNX model a folder holds (an exported
//                                            folder, a model zoo download)
//   package       onnx-model -> package      writes the model, its external data and a
//                                            manifest.json into a folder
// Both exist so that a recipe can start from a folder and end in one; the runner stages the
// output folder and puts it in place whole.
#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "formats/file_util.h"
#include "formats/onnx_io.h"
#include "ir/error.h"
#include "passes/registry.h"

namespace slmops::passes {
namespace {

namespace fs = std::filesystem;

struct FromFolderOptions {
  std::string model = "model.onnx";
  static const OptionTable<FromFolderOptions>& table() {
    static const OptionTable<FromFolderOptions> t({
        {"model", &FromFolderOptions::model, "the ONNX file inside the folder, relative to it", {}},
    });
    return t;
  }
};

struct PackageOptions {
  std::string model_name = "model.onnx";
  std::string external_data = "auto";
  static const OptionTable<PackageOptions>& table() {
    static const OptionTable<PackageOptions> t({
        {"model-name", &PackageOptions::model_name, "file name of the model inside the package", {}},
        {"external-data", &PackageOptions::external_data,
         "where weights go: auto (external when the model had external data or passes 2 GiB), always, never",
         {"auto", "always", "never"}},
    });
    return t;
  }
};

// A plain file name (no folder part, not "." or ".."): what a package or folder may name.
bool plain_relative(const fs::path& p) {
  if (p.empty() || p.is_absolute()) return false;
  for (auto& part : p)
    if (part == ".." || part == ".") return false;
  return true;
}

void from_folder(Artifact& a, const nlohmann::json& j, PassContext&) {
  auto o = FromFolderOptions::table().from_json(j);
  if (!plain_relative(o.model))
    bad_input("from-folder: option 'model' '{}': must be a path inside the folder (no '..', not absolute)", o.model);
  fs::path file = a.path / o.model;
  std::error_code ec;
  if (!fs::is_regular_file(file, ec))
    bad_input("{}: the folder has no '{}' (option 'model' names the ONNX file inside it)", a.path.string(), o.model);
  a.model = formats::load_model(file);
  a.kind = ArtifactKind::OnnxModel;
  a.path.clear();
}

void package(Artifact& a, const nlohmann::json& j, PassContext& ctx) {
  auto o = PackageOptions::table().from_json(j);
  if (!plain_relative(o.model_name) || fs::path(o.model_name).has_parent_path() ||
      fs::path(o.model_name).extension() != ".onnx")
    bad_input("package: option 'model-name' '{}': must be a file name ending in .onnx", o.model_name);
  if (ctx.scratch.empty()) bad_input("package: this caller gives the step no folder to write");
  formats::SaveOptions so;
  formats::parse_external_data(o.external_data, so.external);
  ir::Model& m = *a.model;
  auto saved = formats::save_model(m, ctx.scratch / o.model_name, so);
  nlohmann::json files = nlohmann::json::array();
  files.push_back({{"path", o.model_name}, {"bytes", saved.model_bytes}, {"role", "model"}});
  if (!saved.data_file.empty())
    files.push_back({{"path", fs::path(saved.data_file).filename().string()}, {"bytes", saved.data_bytes},
                     {"role", "external-data"}});
  nlohmann::json inputs = nlohmann::json::array(), outputs = nlohmann::json::array();
  for (auto& vi : m.graph->inputs)
    if (vi.value && vi.value->kind == ir::Value::Kind::Input) inputs.push_back(vi.value->name);
  for (auto& vi : m.graph->outputs)
    if (vi.value) outputs.push_back(vi.value->name);
  nlohmann::json manifest = {{"format", "slmops-package"}, {"version", 1},     {"model", o.model_name},
                             {"files", files},            {"inputs", inputs}, {"outputs", outputs}};
  formats::AtomicFile f(ctx.scratch / "manifest.json");
  f.write(manifest.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
  f.commit();
  ctx.report = {{"folder_files", files.size() + 1}, {"model_bytes", saved.model_bytes}, {"data_bytes", saved.data_bytes}};
  a.kind = ArtifactKind::Package;
  a.path = ctx.scratch;
  a.model.reset();
}

}  // namespace

PassInfo from_folder_step_info() {
  PassInfo p;
  p.name = "from-folder";
  p.summary = "load the ONNX model a folder holds (checkpoint folder -> onnx model)";
  p.options = FromFolderOptions::table().specs();
  p.takes = ArtifactKind::Checkpoint;
  p.returns = ArtifactKind::OnnxModel;
  p.run_artifact = from_folder;
  return p;
}

PassInfo package_step_info() {
  PassInfo p;
  p.name = "package";
  p.summary = "write the model, its external data and a manifest.json into a folder (onnx model -> package folder)";
  p.options = PackageOptions::table().specs();
  p.takes = ArtifactKind::OnnxModel;
  p.returns = ArtifactKind::Package;
  p.run_artifact = package;
  return p;
}

}  // namespace slmops::passes
