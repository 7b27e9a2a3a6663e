#include "passes/registry.h"

#include "ir/error.h"
#include "passes/evaluate_step.h"

namespace slmops::passes {

const std::vector<PassInfo>& all_passes() {
  static const std::vector<PassInfo> passes = [] {
    std::vector<PassInfo> v;
    v.push_back(cleanup_pass_info());
    v.push_back(optimize_pass_info());
    v.push_back(fold_constants_pass_info());
    v.push_back(simplify_shapes_pass_info());
    v.push_back(eliminate_pass_info());
    v.push_back(fuse_pass_info());
    v.push_back(to_float16_pass_info());
    v.push_back(mixed_precision_pass_info());
    v.push_back(ir_version_pass_info());
    v.push_back(opset_pass_info());
    v.push_back(quantize_pass_info());
    v.push_back(prune_pass_info());
    v.push_back(from_folder_step_info());
    v.push_back(package_step_info());
    v.push_back(from_hf_step_info());
    v.push_back(package_genai_step_info());
    v.push_back(distill_step_info());
    v.push_back(evaluate_step_info());
    return v;
  }();
  return passes;
}

const PassInfo* find_pass(std::string_view name) {
  for (auto& p : all_passes())
    if (p.name == name) return &p;
  return nullptr;
}

std::vector<std::string> check_pass_options(const PassInfo& pass, const nlohmann::json& options, Naming naming) {
  auto problems = validate_options(pass.name, pass.options, options, naming);
  if (problems.empty() && pass.check) problems = pass.check(with_defaults(pass.options, options), naming);
  return problems;
}

namespace {
// The first problem with a step's options, as exit 2 (the CLI names options as flags).
void refuse_bad_options(const PassInfo& pass, const nlohmann::json& options) {
  auto problems = check_pass_options(pass, options, Naming::Cli);
  if (!problems.empty()) throw Error(ExitCode::BadInput, problems.front());
}
}  // namespace

void run_pass(const PassInfo& pass, ir::Model& model, const nlohmann::json& options, PassContext& ctx) {
  refuse_bad_options(pass, options);
  if (!pass.implemented) bad_input("pass '{}' is not built yet", pass.name);
  if (!pass.run) bad_input("'{}' is a recipe step, not a pass that rewrites a model", pass.name);
  pass.run(model, with_defaults(pass.options, options), ctx);
}

void run_step(const PassInfo& pass, Artifact& a, const nlohmann::json& options, PassContext& ctx) {
  if (!pass.takes_kind(a.kind))
    bad_input("step '{}' takes a {}, but gets a {}", pass.name, artifact_kind_name(pass.takes),
              artifact_kind_name(a.kind));
  if (!pass.run_artifact) {
    if (!a.model) bad_input("step '{}': no model to work on", pass.name);
    run_pass(pass, *a.model, options, ctx);
    return;
  }
  refuse_bad_options(pass, options);
  pass.run_artifact(a, with_defaults(pass.options, options), ctx);
}

std::string_view artifact_kind_name(ArtifactKind k) {
  switch (k) {
    case ArtifactKind::OnnxModel: return "onnx-model";
    case ArtifactKind::Checkpoint: return "checkpoint";
    case ArtifactKind::Package: return "package";
    case ArtifactKind::Dataset: return "dataset";
  }
  return "?";
}

bool is_folder_kind(ArtifactKind k) {
  return k == ArtifactKind::Checkpoint || k == ArtifactKind::Package || k == ArtifactKind::Dataset;
}

}  // namespace slmops::passes

namespace slmops::passes {

PassInfo evaluate_step_info() {
  PassInfo p;
  p.name = "evaluate";
  p.summary = "measure the saved output model (accuracy, perplexity, fidelity, latency, size, memory) and check goals";
  p.options = EvaluateStepOptions::table().specs();
  p.evaluation = true;
  return p;
}

}  // namespace slmops::passes
