// The recipe step {"pass": "distill-data", "options": {"prompts": "p.jsonl", ...}}: the folder the
// step gets (a checkpoint folder holding model.onnx, or a package a `package-genai` step wrote)
// is the local teacher; the step returns a dataset folder holding distill.jsonl and the run's
// summary.json. Options are distill/options.h's table, the same as `slmops distill-data`'s flags.
//
//   before: package/            model.onnx, tokenizer.json, genai_config.json, ...
//   after:  dataset/            distill.jsonl (one row per answer), summary.json
#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "distill/distill.h"
#include "distill/options.h"
#include "formats/file_util.h"
#include "ir/error.h"
#include "passes/registry.h"

namespace slmops::passes {

namespace {

void distill_step(Artifact& a, const nlohmann::json& j, PassContext& ctx) {
  if (ctx.scratch.empty()) bad_input("distill-data: this caller gives the step no folder to write");
  distill::DistillArgs d;
  d.options = distill::DistillOptions::table().from_json(j);
  if (d.options.prompts.empty()) bad_input("distill-data: option 'prompts' is required (a JSONL file of prompt rows)");
  d.teacher = a.path.string();
  d.output = (ctx.scratch / "distill.jsonl").string();
  d.threads = ctx.threads;
  d.progress = ctx.progress;
  nlohmann::json summary = distill::run(d);
  summary["output"] = "distill.jsonl";
  {
    formats::AtomicFile f(ctx.scratch / "summary.json");
    f.write(summary.dump(2) + "\n");
    f.commit();
  }
  for (const char* k : {"rows_total", "rows_written", "rows_bad", "completion_tokens", "tokens_per_s"})
    ctx.report[k] = summary[k];
  a.kind = ArtifactKind::Dataset;
  a.path = ctx.scratch;
  a.model.reset();
}

}  // namespace

PassInfo distill_step_info() {
  PassInfo p;
  p.name = "distill-data";
  p.summary = "teacher-written training data: the step's model folder answers the prompts (distill.jsonl)";
  p.options = distill::DistillOptions::table().specs();
  p.takes = ArtifactKind::Checkpoint;      // a folder holding model.onnx: the recipe's input folder
  p.also_takes = {ArtifactKind::Package};  // or what package-genai wrote
  p.returns = ArtifactKind::Dataset;
  p.run_artifact = distill_step;
  p.check = [](const nlohmann::json& o, Naming naming) {
    std::vector<std::string> problems;
    if (!o.contains("prompts") || o["prompts"] == "")
      problems.push_back(fmt::format("{} is required (a JSONL file of prompt rows)", option_label("prompts", naming)));
    if (o.value("n", int64_t{1}) > 1 && o.value("temperature", 0.0) == 0)
      problems.push_back(fmt::format("{} > 1 needs {} > 0 (greedy answers are all the same)", option_label("n", naming),
                                     option_label("temperature", naming)));
    return problems;
  };
  return p;
}

}  // namespace slmops::passes
