// Subcommands that are one pass run as a one-step recipe (quantize, prune).
#include <memory>

#include "passes/registry.h"
#include "tools/cli.h"
#include "tools/recipe.h"

namespace slmops::cli {

void register_pass_command(CLI::App& app, const std::string& pass, const std::string& description,
                           std::function<void(const nlohmann::json& step)> summary) {
  struct Args {
    std::string model, output;
    bool json = false;
    formats::ExternalData external = formats::ExternalData::Auto;
    nlohmann::json options = nlohmann::json::object();
  };
  auto a = std::make_shared<Args>();
  auto* cmd = app.add_subcommand(pass, description);
  cmd->add_option("model", a->model, "input .onnx model (float)")->required();
  cmd->add_option("-o,--output", a->output, "output .onnx path")->required();
  cmd->add_flag("--json", a->json, "print the report as JSON on stdout");
  add_external_data_flag(cmd, &a->external);
  add_pass_option_flags(cmd, *passes::find_pass(pass), &a->options);
  cmd->callback([a, pass, summary] {
    Recipe r;
    r.input = a->model;
    r.output = a->output;
    r.external_data = a->external;
    r.steps.push_back({pass, a->options});
    validate_recipe(r);
    auto report = execute(r, summary);
    if (a->json)
      print_json(report);
    else
      fmt::print("{}\n", r.output.string());
    enforce_step_goals(report);
  });
}

}  // namespace slmops::cli
