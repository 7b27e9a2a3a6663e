// slmops quantize MODEL -o OUT --mode MODE [options]: the `quantize` pass as a one-step recipe,
// so that the subcommand and {"pass": "quantize", "options": {...}} write the same bytes.
#include "ir/error.h"
#include "passes/registry.h"
#include "tools/cli.h"
#include "tools/recipe.h"

namespace slmops::cli {
namespace {

void print_summary(const nlohmann::json& step) {
  const auto& r = step["report"];
  if (globals().verbosity < 1 || !r.contains("nodes")) return;
  for (auto& n : r["nodes"]) {
    int64_t b = n["bytes_before"].get<int64_t>(), a = n["bytes_after"].get<int64_t>();
    fmt::print(stderr, "slmops:   {:<40} {:<8} {:>10} -> {:>10} B  {}\n", n["node"].get<std::string>(),
               n["op_type"].get<std::string>(), b, a, n["how"].get<std::string>());
  }
  int64_t b = r["weight_bytes_before"].get<int64_t>(), a = r["weight_bytes_after"].get<int64_t>();
  fmt::print(stderr, "slmops: {} node(s) quantized; their weights {} -> {} bytes ({:.1f}% saved)\n",
             r["nodes_quantized"].get<int64_t>(), b, a, b ? 100.0 * double(b - a) / double(b) : 0.0);
  if (r.contains("accuracy_aware")) {
    auto& aa = r["accuracy_aware"];
    fmt::print(stderr, "slmops: accuracy-aware: goal {} {} with {} node(s) kept float: {}\n",
               aa["goal"].get<std::string>(), aa["goal_met"].get<bool>() ? "met" : "NOT met",
               aa["kept_float"].size(), passes::json_text(aa["kept_float"]));
  }
}

}  // namespace

void register_quantize(CLI::App& app) {
  register_pass_command(app, "quantize",
                        "quantize a model: int8 dynamic, int8/int16 static QDQ, int4/int8 weight-only (RTN, GPTQ, HQQ)",
                        print_summary);
}

}  // namespace slmops::cli
