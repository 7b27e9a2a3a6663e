// slmops evaluate: the command line of the evaluator (eval/): one report with accuracy,
// perplexity, fidelity against a baseline, latency, size and memory, with goals that gate CI
// (exit 3), shards and merging. `--check` runs ONNX test data and compares with the reference
// outputs (the conformance runner).
#include "eval/check_data.h"
#include "eval/report.h"
#include "eval/run.h"
#include "formats/onnx_io.h"
#include "ir/error.h"
#include "passes/evaluate_step.h"
#include "passes/optimize/optimize.h"
#include "runtime/executor.h"
#include "tools/cli.h"

namespace slmops::cli {

namespace {

struct Args {
  eval::EvalArgs eval;
  nlohmann::json options = nlohmann::json::object();  // the evaluate step's options given as flags
  std::vector<std::string> merge;
  bool check = false, json = false, progress = false, no_progress = false;
  eval::Tolerance tol;
};

void check(const Args& a) {
  const std::string& model = a.eval.model;
  auto sets = eval::data_set_folders(a.eval.options.data);
  ir::Model m = formats::load_model(model);
  // As evaluation does: an optimized copy and integer QDQ kernels, or the graph as written.
  const bool optimize = a.eval.options.optimize;
  if (optimize) passes::optimize(m, {});
  runtime::RunOptions run_opts;
  run_opts.exact_qdq = !optimize;
  runtime::Session session(m, effective_threads());
  nlohmann::json results = nlohmann::json::array();
  int matched = 0;
  std::string first_failure;
  for (auto& dir : sets) {
    auto r = eval::check_data_set(m, session, dir, a.tol, run_opts);
    results.push_back({{"data", dir.string()}, {"passed", r.passed}, {"outputs", r.outputs_checked}, {"worst", r.worst}});
    if (r.passed) ++matched;
    else if (first_failure.empty()) first_failure = fmt::format("{}: {}", dir.string(), r.worst);
  }
  const bool all = matched == static_cast<int>(sets.size());
  if (a.json)
    print_json({{"model", model}, {"passed", all}, {"optimized", optimize}, {"data_sets", results}});
  else fmt::print("{}: {} of {} data sets match\n", model, matched, sets.size());
  if (!all) throw Error(ExitCode::GoalNotMet, fmt::format("{}: outputs differ: {}", model, first_failure));
}

// The evaluate step's options (passes/evaluate_step.h), one flag each; values land in *given.
// Two read differently on the command line: a goal is given once per --goal, and there is no
// recipe input for --baseline to default to.
void add_step_option_flags(CLI::App* cmd, nlohmann::json* given) {
  for (passes::OptionSpec spec : passes::EvaluateStepOptions::table().specs()) {
    if (spec.name == "goals") {
      cmd->add_option_function<std::vector<std::string>>(
             "--goal", [given](const std::vector<std::string>& v) { (*given)["goals"] = v; }, spec.help)
          ->type_name("GOAL");
      continue;
    }
    if (spec.name == "baseline") spec.default_value = "";
    auto* opt = add_spec_option(cmd, spec, [given, name = spec.name](const nlohmann::json& v) { (*given)[name] = v; });
    if (spec.name == "report") opt->type_name("FILE.md");
  }
}

}  // namespace

void register_evaluate(CLI::App& app) {
  static Args a;
  using passes::OptionSpec;
  using passes::OptionType;
  // Numeric options of the subcommand alone, declared with their ranges.
  static const std::vector<OptionSpec> own = {
      {"samples", OptionType::Int, 16, "how many random samples for --random", {}, false, {1, 1000000}},
      {"warmup", OptionType::Int, 1, "untimed runs before timing", {}, false, {0, 1000}},
      {"rtol", OptionType::Float, 1e-3, "relative tolerance for --check", {}, false, {0, 1}},
      {"atol", OptionType::Float, 1e-7, "absolute tolerance for --check", {}, false, {0, 1e6}},
  };
  auto* cmd = app.add_subcommand("evaluate", "accuracy, perplexity, fidelity, latency, size and memory of a model");
  cmd->add_option("model", a.eval.model, "an .onnx model (omit with --merge)");
  add_step_option_flags(cmd, &a.options);
  cmd->add_flag("--random", a.eval.random, "random inputs from the declared shapes (latency, size and memory only)");
  cmd->add_option("--shape", a.eval.shapes, "shape of an input for --random: NAME=1x128")->type_name("NAME=DIMS");
  add_spec_option(cmd, own[0], [](const nlohmann::json& v) { a.eval.samples = v; });
  add_spec_option(cmd, own[1], [](const nlohmann::json& v) { a.eval.warmup = v; });
  cmd->add_option("--shard", a.eval.shard, "evaluate the I-th of N slices (0-based I/N, N up to 1000000)")
      ->type_name("I/N");
  cmd->add_option("--merge", a.merge, "combine shard reports (--json files) into one")->type_name("REPORT...");
  cmd->add_flag_callback(
      "--no-optimize", [] { a.options["optimize"] = false; },
      "run the graph as written: no optimize pass, QDQ pairs in float (same as --optimize false)");
  cmd->add_flag("--json", a.json, "print the report as JSON on stdout");
  cmd->add_flag("--progress", a.progress, "show a progress bar even when stderr is not a terminal");
  cmd->add_flag("--no-progress", a.no_progress, "never show progress");
  cmd->add_flag("--check", a.check, "compare with the data's output_K.pb; exit 3 when any differs");
  add_spec_option(cmd, own[2], [](const nlohmann::json& v) { a.tol.rtol = v; });
  add_spec_option(cmd, own[3], [](const nlohmann::json& v) { a.tol.atol = v; });
  cmd->add_flag("--scaled", a.tol.scaled, "--check: rtol relative to the largest |reference| of each output");
  cmd->callback([] {
    if (a.progress) progress().force(ProgressReporter::Style::Bar);
    eval::EvalArgs& e = a.eval;
    e.options = passes::EvaluateStepOptions::table().from_json(a.options);
    if (!a.options.contains("baseline")) e.options.baseline.clear();  // none: "input" is a recipe's
    e.threads = effective_threads();
    e.progress = a.no_progress ? nullptr : &progress();
    if (a.check) {
      if (e.model.empty() || e.options.data.empty())
        bad_input("--check needs a model and --data DIR (a test_data_set folder)");
      return check(a);
    }
    if (a.merge.empty() && e.model.empty()) bad_input("evaluate needs a model (or --merge REPORTS)");
    if (a.merge.empty()) eval::check_arguments(e);
    else if (!e.options.report.empty()) eval::check_writable_file("--report", e.options.report);
    nlohmann::json report = a.merge.empty() ? eval::evaluation_report(e) : eval::merge_reports(a.merge, e);
    if (a.json) print_json(report);
    else eval::print_evaluation(report);
    eval::enforce_goals(report);
  });
}

}  // namespace slmops::cli
