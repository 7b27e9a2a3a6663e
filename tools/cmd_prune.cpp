// slmops prune MODEL -o OUT --method METHOD [--sparsity S] [--pattern N:M] [options]: the
// `prune` pass as a one-step recipe, so that the subcommand and {"pass": "prune", ...} write
// the same bytes.
#include "ir/error.h"
#include "passes/registry.h"
#include "tools/cli.h"
#include "tools/recipe.h"

namespace slmops::cli {
namespace {

void print_summary(const nlohmann::json& step) {
  const auto& r = step["report"];
  if (globals().verbosity < 1 || !r.contains("tensors")) return;
  for (auto& t : r["tensors"])
    fmt::print(stderr, "slmops:   {:<40} {:<7} {:>10} weights  sparsity {:.4f}\n", t["node"].get<std::string>(),
               t["op_type"].get<std::string>(), t["parameters"].get<int64_t>(), t["sparsity"].get<double>());
  fmt::print(stderr, "slmops: {} weight(s) pruned: {} of {} parameters are zero ({:.2f}%)\n", r["tensors"].size(),
             r["zeros_after"].get<int64_t>(), r["pruned_parameters"].get<int64_t>(),
             100.0 * r["sparsity"].get<double>());
}

}  // namespace

void register_prune(CLI::App& app) {
  register_pass_command(app, "prune",
                        "zero weights of MatMul/Gemm/Conv: magnitude (per tensor or global), N:M, Wanda, SparseGPT",
                        print_summary);
}

}  // namespace slmops::cli
