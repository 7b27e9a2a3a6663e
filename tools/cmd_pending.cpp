// Subcommands whose capability is not built yet. They exist so that scripts and --help see
// the whole tool, and say plainly that they do nothing yet (exit 2) rather than pretend.
#include "ir/error.h"
#include "tools/cli.h"

namespace slmops::cli {

void register_pending(CLI::App& app) {
  struct Pending {
    const char* name;
    const char* summary;
  };
  static const Pending pending[] = {
      {"distill-data", "generate distillation data from a teacher model (not built yet)"},
  };
  for (auto& p : pending) {
    auto* cmd = app.add_subcommand(p.name, p.summary);
    cmd->allow_extras();
    cmd->fallthrough(false);
    cmd->prefix_command();  // take every argument as it is: nothing is parsed yet
    std::string name = p.name;
    cmd->callback([name] { bad_input("'{}' is not built yet in this version; nothing was read or written", name); });
  }
}

}  // namespace slmops::cli
