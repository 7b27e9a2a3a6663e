// The one registry of passes, by name. The CLI, the recipe validator and `slmops passes`
// all read it; there is no second list to keep in sync.
#pragma once
#include <algorithm>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "ir/graph.h"
#include "passes/artifact.h"
#include "passes/options.h"

namespace slmops::passes {

struct DataHooks;  // passes/quant/quantize.h: data readers and the evaluator, from the CLI layer

class Progress;  // passes/progress.h

struct PassContext {
  int threads = 1;
  const DataHooks* data = nullptr;
  int verbosity = 1;  // 0 quiet, 1 normal, 2 verbose
  Progress* progress = nullptr;  // where long steps report progress (nullptr: nowhere)
  // For steps that return a folder: an empty folder of the recipe's staging area to write
  // it in (the runner moves the last one into place as the recipe's output).
  std::filesystem::path scratch;
  nlohmann::json report = nlohmann::json::object();  // what the pass did, for --json
};

struct PassInfo {
  std::string name;
  std::string summary;  // one line
  std::vector<OptionSpec> options;
  // The kinds of artifact the step takes and returns (see passes/artifact.h).
  ArtifactKind takes = ArtifactKind::OnnxModel, returns = ArtifactKind::OnnxModel;
  // Other kinds the step also takes (distill-data: a checkpoint folder or a package).
  std::vector<ArtifactKind> also_takes = {};
  bool takes_kind(ArtifactKind k) const {
    return k == takes || std::find(also_takes.begin(), also_takes.end(), k) != also_takes.end();
  }
  // Runs on a model; `options` has passed validation and has every default filled in.
  std::function<void(ir::Model&, const nlohmann::json& options, PassContext&)> run;
  // For steps whose kinds are not model -> model: replaces `a` by what the step returns.
  std::function<void(Artifact& a, const nlohmann::json& options, PassContext&)> run_artifact;
  // Checks between options that need no model (a mode that needs calib-data, a block size
  // that is a power of two), on the options with defaults filled in; one message per
  // problem, naming options as `naming` says. Run by recipe validation and --dry-run too.
  std::function<std::vector<std::string>(const nlohmann::json& options, Naming naming)> check;
  // Checks of the options against the recipe's input model (a named graph input exists), run
  // on it before any step; throws Error(BadInput). Options as written (defaults not filled).
  std::function<void(const ir::Model& input, const nlohmann::json& options)> check_model;
  bool implemented = true;  // false: listed so recipes can name it, but refuses to run yet
  bool evaluation = false;  // a measurement step (evaluate) that the recipe runner carries out
};

const std::vector<PassInfo>& all_passes();
const PassInfo* find_pass(std::string_view name);

// validate_options plus the pass's own check (on the options with defaults).
std::vector<std::string> check_pass_options(const PassInfo& pass, const nlohmann::json& options,
                                            Naming naming = Naming::Recipe);

// Runs a pass by name after validating its options. Throws Error(BadInput) on bad options.
void run_pass(const PassInfo& pass, ir::Model& model, const nlohmann::json& options, PassContext& ctx);
// The same for a step over any artifact (a model -> model pass runs on a.model).
void run_step(const PassInfo& pass, Artifact& a, const nlohmann::json& options, PassContext& ctx);

// Registration: each pass file defines one function returning its PassInfo; registry.cpp
// lists those functions once.
PassInfo cleanup_pass_info();
PassInfo optimize_pass_info();
PassInfo fold_constants_pass_info();
PassInfo simplify_shapes_pass_info();
PassInfo eliminate_pass_info();
PassInfo fuse_pass_info();
PassInfo to_float16_pass_info();
PassInfo mixed_precision_pass_info();
PassInfo ir_version_pass_info();
PassInfo opset_pass_info();
PassInfo evaluate_step_info();
PassInfo quantize_pass_info();
PassInfo prune_pass_info();
PassInfo from_folder_step_info();
PassInfo package_step_info();
PassInfo distill_step_info();  // passes/distill_step.cpp
PassInfo from_hf_step_info();
PassInfo package_genai_step_info();

}  // namespace slmops::passes
