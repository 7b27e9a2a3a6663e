#include "passes/registry.h"

#include "ir/error.h"

namespace slmops::passes {

const std::vector<PassInfo>& all_passes() {
  static const std::vector<PassInfo> passes = [] {
    std::vector<PassInfo> v;
    v.push_back(cleanup_pass_info());
    return v;
  }();
  return passes;
}

const PassInfo* find_pass(std::string_view name) {
  for (auto& p : all_passes())
    if (p.name == name) return &p;
  return nullptr;
}

void run_pass(const PassInfo& pass, ir::Model& model, const nlohmann::json& options, PassContext& ctx) {
  auto problems = validate_options(pass.name, pass.options, options);
  if (!problems.empty()) throw Error(ExitCode::BadInput, problems.front());
  if (!pass.implemented) bad_input("pass '{}' is not built yet", pass.name);
  pass.run(model, with_defaults(pass.options, options), ctx);
}

}  // namespace slmops::passes
