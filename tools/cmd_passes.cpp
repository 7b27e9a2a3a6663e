// slmops passes [--json]: the registry, with every option's name, type, default and help.
#include "passes/registry.h"
#include "tools/cli.h"

namespace slmops::cli {

void register_passes(CLI::App& app) {
  static bool json = false;
  auto* cmd = app.add_subcommand("passes", "list the passes recipes can use, with their options");
  cmd->add_flag("--json,--list-json", json, "print the list as JSON on stdout");
  cmd->callback([] {
    auto takes_text = [](const passes::PassInfo& p) {
      std::string t(passes::artifact_kind_name(p.takes));
      for (auto k : p.also_takes) t += fmt::format(" or a {}", passes::artifact_kind_name(k));
      return t;
    };
    if (json) {
      nlohmann::json arr = nlohmann::json::array();
      for (auto& p : passes::all_passes()) {
        nlohmann::json also = nlohmann::json::array();
        for (auto k : p.also_takes) also.push_back(passes::artifact_kind_name(k));
        arr.push_back({{"name", p.name},
                       {"summary", p.summary},
                       {"implemented", p.implemented},
                       {"takes", passes::artifact_kind_name(p.takes)},
                       {"also_takes", also},
                       {"returns", passes::artifact_kind_name(p.returns)},
                       {"options", passes::specs_to_json(p.options)}});
      }
      print_json({{"passes", arr}});
      return;
    }
    for (auto& p : passes::all_passes()) {
      fmt::print("{}  {}{}\n", p.name, p.summary, p.implemented ? "" : " (not built yet)");
      if (p.takes != passes::ArtifactKind::OnnxModel || p.returns != passes::ArtifactKind::OnnxModel)
        fmt::print("    takes a {}, returns a {}\n", takes_text(p), passes::artifact_kind_name(p.returns));
      for (auto& o : p.options) fmt::print("    {:<24} {} ({})\n", o.name, o.help, passes::describe_values(o));
    }
  });
}

}  // namespace slmops::cli
