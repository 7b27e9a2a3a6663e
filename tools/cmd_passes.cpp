// slmops passes [--json]: the registry, with every option's name, type, default and help.
#include "passes/registry.h"
#include "tools/cli.h"

namespace slmops::cli {

void register_passes(CLI::App& app) {
  static bool json = false;
  auto* cmd = app.add_subcommand("passes", "list the passes recipes can use, with their options");
  cmd->add_flag("--json,--list-json", json, "print the list as JSON on stdout");
  cmd->callback([] {
    if (json) {
      nlohmann::json arr = nlohmann::json::array();
      for (auto& p : passes::all_passes())
        arr.push_back({{"name", p.name},
                       {"summary", p.summary},
                       {"implemented", p.implemented},
                       {"takes", passes::artifact_kind_name(p.takes)},
                       {"returns", passes::artifact_kind_name(p.returns)},
                       {"options", passes::specs_to_json(p.options)}});
      print_json({{"passes", arr}});
      return;
    }
    for (auto& p : passes::all_passes()) {
      fmt::print("{}  {}{}\n", p.name, p.summary, p.implemented ? "" : " (not built yet)");
      if (p.takes != passes::ArtifactKind::OnnxModel || p.returns != passes::ArtifactKind::OnnxModel)
        fmt::print("    takes a {}, returns a {}\n", passes::artifact_kind_name(p.takes),
                   passes::artifact_kind_name(p.returns));
      for (auto& o : p.options) fmt::print("    {:<24} {} ({})\n", o.name, o.help, passes::describe_values(o));
    }
  });
}

}  // namespace slmops::cli
