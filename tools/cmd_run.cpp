// slmops run RECIPE [--set KEY=VALUE ...]
#include "eval/report.h"
#include "eval/run.h"
#include "ir/error.h"
#include "tools/cli.h"
#include "tools/recipe.h"

namespace slmops::cli {

void register_run(CLI::App& app) {
  struct Args {
    std::string recipe;
    std::vector<std::string> sets;
    bool dry_run = false;
    bool json = false;
  };
  static Args a;
  auto* cmd = app.add_subcommand("run", "run a JSON recipe: input model, ordered pass steps, output");
  cmd->add_option("recipe", a.recipe, "recipe file (.json)")->required();
  cmd->add_option("--set", a.sets, "override a recipe key: --set output=out.onnx, --set steps.0.options.KEY=VALUE")
      ->type_name("KEY=VALUE");
  cmd->add_flag("--dry-run", a.dry_run, "validate the recipe and stop");
  cmd->add_flag("--json", a.json, "print the report as JSON on stdout (with --dry-run: the validated plan)");
  cmd->callback([] {
    Recipe r = load_recipe(a.recipe, a.sets);
    if (a.dry_run) {
      if (a.json) print_json(recipe_plan(r));
      else log("{}: valid ({} steps)", a.recipe, r.steps.size());
      return;
    }
    auto report = execute(r);
    report["recipe"] = a.recipe;
    if (a.json) print_json(report);
    else fmt::print("{}\n", r.output.string());
    // Evaluation steps: their tables are results too; unmet goals make the run exit 3.
    for (auto& step : report["steps"])
      if (step["pass"] == "evaluate") {
        if (!a.json) {
          fmt::print("\n");
          eval::print_evaluation(step["report"]);
        }
        eval::enforce_goals(step["report"]);
      }
    enforce_step_goals(report);
  });
}

}  // namespace slmops::cli
