// slmops distill-data --teacher MODEL_DIR|URL --prompts P.jsonl -o OUT.jsonl [options]
// slmops distill-data --merge SHARD.jsonl... -o OUT.jsonl
// slmops distill-data --soft-labels --teacher MODEL --inputs X.npz -o OUT.npz [--temperature T]
// Teacher-written training data (distill/distill.h): resumable, sharded, with log-probabilities;
// soft labels for classifier students.
#include "distill/distill.h"
#include "ir/error.h"
#include "tools/cli.h"

namespace slmops::cli {

void register_distill(CLI::App& app) {
  struct Args {
    distill::DistillArgs d;
    nlohmann::json given = nlohmann::json::object();  // the shared options given as flags
    std::vector<std::string> merge;
    std::string inputs, output_name;
    bool soft_labels = false, json = false, progress = false, no_progress = false;
  };
  static Args a;
  auto* cmd = app.add_subcommand(
      "distill-data",
      "write training data with a teacher: a local decoder folder or an OpenAI-compatible endpoint (resumable, "
      "sharded, with top-k log-probabilities), or soft labels of a classifier");
  auto& d = a.d;
  cmd->add_option("--teacher", d.teacher,
                  "a decoder folder as `convert HF_DIR` writes it, or http(s)://HOST[:PORT] of an OpenAI-compatible "
                  "server (/v1/chat/completions); with --soft-labels a classifier .onnx")
      ->type_name("MODEL_DIR|URL");
  cmd->add_option("-o,--output", d.output,
                  "the output JSONL (with --soft-labels: an .npz; default: X_soft_labels.npz beside the inputs)");
  for (const passes::OptionSpec& spec : distill::DistillOptions::table().specs()) {
    if (spec.name == "stop") {  // repeatable, and a stop string may hold a comma
      cmd->add_option_function<std::vector<std::string>>(
             "--stop", [](const std::vector<std::string>& v) { a.given["stop"] = v; }, spec.help)
          ->type_name("TEXT");
      continue;
    }
    auto* opt = add_spec_option(cmd, spec, [name = spec.name](const nlohmann::json& v) { a.given[name] = v; });
    if (spec.name == "shard") opt->type_name("I/N");
  }
  cmd->add_option("--merge", a.merge, "join shard outputs in prompt order into -o")->type_name("SHARD.jsonl...");
  cmd->add_option("--model", d.http.model, "HTTP: the model name sent to the endpoint");
  cmd->add_option("--api-key-env", d.http.api_key_env, "HTTP: the environment variable that holds the API key");
  cmd->add_option("--concurrency", d.http.concurrency, "HTTP: requests open at once (a thread each)")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  cmd->add_option("--requests-per-minute", d.http.requests_per_minute,
                  "HTTP: start requests at most this often (0: no limit)")
      ->check(CLI::Range(0.0, 1e9))
      ->capture_default_str();
  cmd->add_option("--max-retries", d.http.max_retries, "HTTP: retries per answer on 408/429/5xx/timeouts")
      ->check(CLI::Range(0, 1000))
      ->capture_default_str();
  cmd->add_option("--timeout", d.http.timeout_s, "HTTP: seconds per attempt")
      ->check(CLI::Range(0.001, 86400.0))
      ->capture_default_str();
  cmd->add_option("--retry-backoff", d.http.backoff_s,
                  "HTTP: first back-off in seconds, doubled per retry with jitter (Retry-After wins)")
      ->check(CLI::Range(0.0, 3600.0))
      ->capture_default_str();
  cmd->add_flag("--soft-labels", a.soft_labels,
                "classifier teacher: write softmax(output / --temperature) of the --inputs .npz as 'soft_labels'");
  cmd->add_option("--inputs", a.inputs, "with --soft-labels: an .npz with one array per model input");
  cmd->add_option("--output-name", a.output_name, "with --soft-labels: the model output to use (default: the first)");
  cmd->add_flag("--json", a.json, "print the summary as JSON on stdout");
  cmd->add_flag("--progress", a.progress, "show a progress bar even when stderr is not a terminal");
  cmd->add_flag("--no-progress", a.no_progress, "never show progress");
  cmd->callback([] {
    if (a.progress) progress().force(ProgressReporter::Style::Bar);
    a.d.options = distill::DistillOptions::table().from_json(a.given);
    nlohmann::json j;
    if (a.d.output.empty() && !a.soft_labels) bad_input("distill-data needs -o OUT.jsonl");
    if (!a.merge.empty()) {
      if (!a.d.teacher.empty() || a.given.contains("prompts"))
        bad_input("--merge takes shard outputs and -o only: drop --teacher and --prompts");
      j = distill::merge(a.merge, a.d.output);
    } else if (a.soft_labels) {
      // The inputs: --inputs, or --prompts naming an .npz.
      if (a.inputs.empty() && a.given.contains("prompts")) a.inputs = a.d.options.prompts;
      if (a.inputs.empty()) bad_input("--soft-labels needs --inputs X.npz");
      if (a.d.teacher.empty()) bad_input("--soft-labels needs --teacher MODEL (a classifier .onnx)");
      for (const auto& [k, v] : a.given.items())
        if (k != "temperature" && k != "batch-size" && k != "prompts") bad_input("--{} is not for --soft-labels", k);
      if (a.d.output.empty()) {
        std::filesystem::path in(a.inputs);
        a.d.output = (in.parent_path() / (in.stem().string() + "_soft_labels.npz")).string();
      }
      distill::SoftLabelArgs sl;
      sl.model = a.d.teacher;
      sl.inputs = a.inputs;
      sl.output = a.d.output;
      sl.output_name = a.output_name;
      sl.temperature = a.given.value("temperature", 1.0);
      if (a.given.contains("batch-size")) sl.batch_size = a.d.options.batch_size;
      sl.threads = effective_threads();
      j = distill::soft_labels(sl);
    } else {
      if (!a.inputs.empty()) bad_input("--inputs is for --soft-labels; a generation teacher reads --prompts");
      a.d.threads = effective_threads();
      a.d.progress = a.no_progress ? nullptr : &progress();
      j = distill::run(a.d);
      log("{} rows written, {} already done, {} bad rows skipped, {} retries -> {}", j["rows_written"].get<int64_t>(),
          j["rows_skipped"].get<int64_t>(), j["rows_bad"].get<int64_t>(), j["retries"].get<int64_t>(), a.d.output);
    }
    if (a.json) print_json(j);
  });
}

}  // namespace slmops::cli
