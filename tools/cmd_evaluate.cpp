// slmops evaluate MODEL --data DIR --check: runs a model on ONNX test data and checks its
// outputs. (Accuracy, perplexity, fidelity, latency and goals come with the evaluate issue.)
#include "formats/onnx_io.h"
#include "ir/error.h"
#include "runtime/executor.h"
#include "tools/check_data.h"
#include "tools/cli.h"

namespace slmops::cli {

void register_evaluate(CLI::App& app) {
  struct Args {
    std::string model, data;
    bool check = false, json = false;
    Tolerance tol;
  };
  static Args a;
  auto* cmd = app.add_subcommand("evaluate", "run a model on data and check or measure its outputs");
  cmd->add_option("model", a.model, "an .onnx model")->required();
  cmd->add_option("--data", a.data, "a test_data_set_N folder (input_K.pb, output_K.pb) or a folder of them")
      ->required();
  cmd->add_flag("--check", a.check, "compare the outputs with output_K.pb; exit 3 when any differs");
  cmd->add_option("--rtol", a.tol.rtol, "relative tolerance for float outputs (default 1e-3)");
  cmd->add_option("--atol", a.tol.atol, "absolute tolerance for float outputs (default 1e-7)");
  cmd->add_flag("--json", a.json, "print the result as JSON on stdout");
  cmd->callback([] {
    if (!a.check)
      bad_input("evaluate without --check (accuracy, perplexity, fidelity, latency) is not built yet");
    auto sets = data_set_folders(a.data);
    ir::Model m = formats::load_model(a.model);
    runtime::Session session(m, effective_threads());
    nlohmann::json results = nlohmann::json::array();
    bool all = true;
    std::string first_failure;
    for (auto& dir : sets) {
      auto r = check_data_set(m, session, dir, a.tol);
      results.push_back({{"data", dir.string()}, {"passed", r.passed}, {"outputs", r.outputs_checked},
                         {"worst", r.worst}});
      if (!r.passed && all) first_failure = fmt::format("{}: {}", dir.string(), r.worst);
      all = all && r.passed;
    }
    if (a.json) print_json({{"model", a.model}, {"passed", all}, {"data_sets", results}});
    else fmt::print("{}: {} of {} data sets match\n", a.model, std::count_if(results.begin(), results.end(), [](auto& r) { return r["passed"].template get<bool>(); }), results.size());
    if (!all) throw Error(ExitCode::GoalNotMet, fmt::format("{}: outputs differ: {}", a.model, first_failure));
  });
}

}  // namespace slmops::cli
