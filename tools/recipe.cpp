#include "tools/recipe.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <optional>

#include "eval/metrics.h"
#include "eval/run.h"
#include "formats/file_util.h"
#include "ir/error.h"
#include "passes/common/data.h"
#include "passes/evaluate_step.h"
#include "passes/registry.h"
#include "tools/cli.h"
#include "tools/pass_data.h"

namespace slmops::cli {
namespace {

const std::vector<std::string> kRecipeKeys = {"description", "input", "output", "external_data", "steps"};
const std::vector<std::string> kStepKeys = {"pass", "options", "name"};

std::string known_passes() {
  std::string s;
  for (auto& p : passes::all_passes()) s += (s.empty() ? "" : ", ") + p.name;
  return s;
}

// Applies KEY=VALUE to a JSON document; KEY is a dotted path (steps.0.options.foo). VALUE is
// parsed as JSON when it is valid JSON, else taken as a string.
void apply_set(nlohmann::json& doc, const std::string& kv, const fs::path& file) {
  auto eq = kv.find('=');
  if (eq == std::string::npos || eq == 0) bad_input("--set '{}': expected KEY=VALUE", kv);
  std::string key = kv.substr(0, eq), text = kv.substr(eq + 1);
  nlohmann::json value = nlohmann::json::parse(text, nullptr, false);
  if (value.is_discarded()) value = text;
  nlohmann::json* cur = &doc;
  size_t start = 0;
  while (true) {
    size_t dot = key.find('.', start);
    std::string part = key.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    if (part.empty()) bad_input("--set '{}': empty key part", kv);
    if (cur->is_array()) {
      size_t idx = 0;
      try {
        idx = std::stoul(part);
      } catch (const std::exception&) {
        bad_input("--set '{}': '{}' must be a step number", kv, part);
      }
      if (idx >= cur->size()) bad_input("--set '{}': {} has no step {}", kv, file.string(), idx);
      cur = &(*cur)[idx];
    } else {
      if (cur->is_null()) *cur = nlohmann::json::object();  // a key the recipe leaves out (a step's options)
      if (!cur->is_object()) bad_input("--set '{}': '{}' is not an object", kv, part);
      cur = &(*cur)[part];
    }
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  *cur = value;
}

std::string line_col(const std::string& text, size_t byte) {
  size_t line = 1, col = 1;
  for (size_t i = 0; i < byte && i < text.size(); ++i) {
    if (text[i] == '\n') {
      ++line;
      col = 1;
    } else {
      ++col;
    }
  }
  return fmt::format("{}:{}", line, col);
}

// `cli`: the recipe was built by a subcommand, whose flags are named --option and whose
// messages need no step number.
void check_step(const std::string& where, size_t number, const Step& step, std::vector<std::string>& problems,
                bool cli = false) {
  const auto* p = passes::find_pass(step.pass);
  if (!p) {
    std::vector<std::string> names;
    for (auto& q : passes::all_passes()) names.push_back(q.name);
    auto near = passes::nearest_name(step.pass, names);
    std::string shown = step.pass.size() > 64 ? step.pass.substr(0, 64) + "..." : step.pass;
    problems.push_back(fmt::format("{}: step {}: unknown pass '{}' ({}known passes: {})", where, number, shown,
                                   near.empty() ? "" : fmt::format("did you mean '{}'? ", near), known_passes()));
    return;
  }
  auto naming = cli ? passes::Naming::Cli : passes::Naming::Recipe;
  for (auto& msg : passes::check_pass_options(*p, step.options, naming))
    problems.push_back(cli ? msg : fmt::format("{}: step {}: {}", where, number, msg));
}

// Files a step reads (options declared as paths) must exist before any work starts.
void check_step_files(const std::string& where, size_t number, const Step& step, std::vector<std::string>& problems,
                      bool cli = false) {
  const auto* p = passes::find_pass(step.pass);
  if (!p || !step.options.is_object()) return;
  for (auto& spec : p->options) {
    if (!spec.path || !step.options.contains(spec.name) || !step.options[spec.name].is_string()) continue;
    std::string v = step.options[spec.name].get<std::string>();
    std::error_code ec;
    if (v.empty() || fs::exists(v, ec)) continue;
    problems.push_back(cli ? fmt::format("--{} {}: no such file or folder", spec.name, v)
                           : fmt::format("{}: step {}: option '{}': '{}' does not exist", where, number, spec.name, v));
  }
}

// The folder a file will be written to exists (or can be created) and is writable.
std::string unwritable_folder(const fs::path& file, bool may_create) {
  fs::path dir = file.parent_path();
  if (dir.empty()) dir = ".";
  std::error_code ec;
  fs::path existing = dir;
  if (may_create)
    while (!existing.empty() && !fs::exists(existing, ec)) existing = existing.parent_path();
  if (existing.empty()) existing = ".";
  if (!fs::is_directory(existing, ec))
    return fmt::format("folder '{}' does not exist{}", dir.string(), may_create ? " and cannot be created" : "");
  if (::access(existing.c_str(), W_OK) != 0) return fmt::format("folder '{}' is not writable", existing.string());
  return "";
}

// Recipes are small: a document nested deeper than this is not a recipe, and parsing it
// recursively could exhaust the stack.
constexpr int kMaxJsonDepth = 64;

// The deepest nesting of [ and { outside strings.
int json_depth(const std::string& text) {
  int depth = 0, deepest = 0;
  bool in_string = false, escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped) escaped = false;
      else if (c == '\\') escaped = true;
      else if (c == '"') in_string = false;
      continue;
    }
    if (c == '"') in_string = true;
    else if (c == '[' || c == '{') deepest = std::max(deepest, ++depth);
    else if (c == ']' || c == '}') --depth;
  }
  return deepest;
}

// What the recipe's input is: a folder is a checkpoint, a file an ONNX model.
passes::ArtifactKind input_kind(const fs::path& input) {
  std::error_code ec;
  return fs::is_directory(input, ec) ? passes::ArtifactKind::Checkpoint : passes::ArtifactKind::OnnxModel;
}

// Walks the kinds along the recipe: the input's, then what each step returns. A step that
// gets a kind it does not take, and an evaluate step after anything but an ONNX model, are
// problems. Returns the kind of the output.
passes::ArtifactKind check_chain(const std::string& where, const Recipe& r, std::vector<std::string>& problems,
                                 bool cli = false) {
  auto kind = input_kind(r.input);
  std::string from = "the input";
  for (size_t k = 0; k < r.steps.size(); ++k) {
    const auto* p = passes::find_pass(r.steps[k].pass);
    if (!p) continue;
    const std::string at = cli ? std::string() : fmt::format("{}: step {}: ", where, k + 1);
    if (p->evaluation) {
      if (kind != passes::ArtifactKind::OnnxModel)
        problems.push_back(fmt::format("{}evaluate measures an ONNX model, but the recipe's output is a {} (from {})",
                                       at, passes::artifact_kind_name(kind), from));
      continue;
    }
    if (!p->takes_kind(kind))
      problems.push_back(fmt::format("{}'{}' takes a {}, but gets a {} from {}", at, p->name,
                                     passes::artifact_kind_name(p->takes), passes::artifact_kind_name(kind), from));
    kind = p->returns;
    from = fmt::format("step {} ('{}')", k + 1, p->name);
  }
  return kind;
}

passes::ArtifactKind output_kind(const Recipe& r) {
  std::vector<std::string> ignored;
  return check_chain("", r, ignored);
}

// Who made the model, and how: the producer, and the recipe's steps with their options in
// effect (metadata slmops.recipe).
void stamp(ir::Model& model, const Recipe& r) {
  model.producer_name = "slmops";
  model.producer_version = SLMOPS_VERSION;
  nlohmann::json made = nlohmann::json::array();
  for (auto& st : r.steps) {
    const auto* p = passes::find_pass(st.pass);
    if (p && !p->evaluation) made.push_back({{"pass", st.pass}, {"options", passes::with_defaults(p->options, st.options)}});
  }
  std::erase_if(model.metadata, [](const auto& kv) { return kv.first == "slmops.recipe"; });
  model.metadata.emplace_back("slmops.recipe", made.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
}

[[noreturn]] void throw_problems(const std::vector<std::string>& problems) {
  std::string all;
  for (size_t i = 0; i < problems.size(); ++i) all += (i ? "\n" : "") + problems[i];
  throw Error(ExitCode::BadInput, all);
}

}  // namespace

Recipe load_recipe(const fs::path& file, const std::vector<std::string>& sets) {
  std::string text = formats::read_text_file(file);
  // An ONNX model (a protobuf: binary, starts with field 1 = ir_version, byte 0x08) given
  // where a recipe goes.
  if (!text.empty() && (text[0] == '\x08' || file.extension() == ".onnx"))
    bad_input("{}: this is an ONNX model, not a recipe (a JSON file); to work on a model use slmops convert, "
              "quantize, evaluate or inspect", file.string());
  if (json_depth(text) > kMaxJsonDepth)
    bad_input("{}: JSON nested more than {} levels deep; a recipe is an object with input, output and steps",
              file.string(), kMaxJsonDepth);
  nlohmann::json doc;
  try {
    doc = nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    std::string what = e.what();
    auto colon = what.rfind(": ");
    bad_input("{}:{}: JSON syntax error: {}", file.string(), line_col(text, e.byte ? e.byte - 1 : 0),
              colon == std::string::npos ? what : what.substr(colon + 2));
  } catch (const nlohmann::json::out_of_range& e) {  // a number such as 1e400 that no double holds
    std::string what = e.what();
    auto bracket = what.find("] ");
    bad_input("{}: {}", file.string(), bracket == std::string::npos ? what : what.substr(bracket + 2));
  }
  if (!doc.is_object()) bad_input("{}: a recipe is a JSON object with input, output and steps", file.string());
  nlohmann::json before = doc;
  for (auto& kv : sets) apply_set(doc, kv, file);

  Recipe r;
  r.source = file;
  r.create_output_folder = true;
  std::vector<std::string> problems;
  const std::string where = file.string();
  fs::path base = file.parent_path();
  for (auto& [k, v] : doc.items())
    if (std::find(kRecipeKeys.begin(), kRecipeKeys.end(), k) == kRecipeKeys.end())
      problems.push_back(fmt::format("{}: unknown key '{}' (valid keys: {})", where, k, fmt::join(kRecipeKeys, ", ")));
  auto path_of = [&](const char* key, fs::path& out) {
    if (!doc.contains(key)) {
      problems.push_back(fmt::format("{}: missing '{}' (a model path)", where, key));
      return;
    }
    if (!doc[key].is_string() || doc[key].get<std::string>().empty()) {
      problems.push_back(fmt::format("{}: '{}' must be a non-empty string", where, key));
      return;
    }
    fs::path p = doc[key].get<std::string>();
    bool from_set = !before.contains(key) || before[key] != doc[key];
    out = ((p.is_absolute() || from_set) ? p : base / p).lexically_normal();
  };
  path_of("input", r.input);
  path_of("output", r.output);
  if (doc.contains("external_data")) {
    if (!doc["external_data"].is_string() ||
        !formats::parse_external_data(doc["external_data"].get<std::string>(), r.external_data))
      problems.push_back(fmt::format("{}: 'external_data' must be \"auto\", \"always\" or \"never\"", where));
  }
  if (!doc.contains("steps") || !doc["steps"].is_array()) {
    problems.push_back(fmt::format("{}: 'steps' must be a list of {{\"pass\": ..., \"options\": {{...}}}}", where));
  } else {
    size_t i = 0;
    std::vector<bool> step_malformed;
    for (auto& s : doc["steps"]) {
      ++i;
      if (!s.is_object() || !s.contains("pass") || !s["pass"].is_string()) {
        problems.push_back(fmt::format("{}: step {}: must be an object with a \"pass\" name", where, i));
        r.steps.push_back({"", nlohmann::json::object()});
        step_malformed.push_back(true);
        continue;
      }
      for (auto& [k, v] : s.items())
        if (std::find(kStepKeys.begin(), kStepKeys.end(), k) == kStepKeys.end())
          problems.push_back(
              fmt::format("{}: step {}: unknown key '{}' (valid keys: {})", where, i, k, fmt::join(kStepKeys, ", ")));
      Step st{s["pass"].get<std::string>(), s.value("options", nlohmann::json::object())};
      r.steps.push_back(std::move(st));
      step_malformed.push_back(false);
    }
    for (size_t k = 0; k < r.steps.size(); ++k)
      if (!step_malformed[k]) check_step(where, k + 1, r.steps[k], problems);
    // Options that name files are relative to the recipe's folder (unless set by --set).
    for (size_t k = 0; k < r.steps.size(); ++k) {
      const auto* p = passes::find_pass(r.steps[k].pass);
      if (!p || p->evaluation || !r.steps[k].options.is_object()) continue;  // evaluate: below
      for (auto& spec : p->options) {
        auto& opts = r.steps[k].options;
        if (!spec.path || !opts.contains(spec.name) || !opts[spec.name].is_string()) continue;
        std::string v = opts[spec.name].get<std::string>();
        std::string set_key = fmt::format("steps.{}.options.{}", k, spec.name);
        bool from_set = false;
        for (auto& kv : sets) from_set = from_set || kv.rfind(set_key + "=", 0) == 0;
        if (v.empty() || from_set || fs::path(v).is_absolute()) continue;
        opts[spec.name] = (base / v).lexically_normal().string();
      }
    }
    if (r.steps.empty()) problems.push_back(where + ": the recipe has no steps");
    check_chain(where, r, problems);
    // Evaluation steps measure the saved output: they come after every rewriting pass.
    bool seen_eval = false;
    for (size_t k = 0; k < r.steps.size(); ++k) {
      auto& st = r.steps[k];
      if (st.pass == "evaluate") {
        seen_eval = true;
        if (st.options.is_object() && st.options.contains("data") && !st.options["data"].is_string())
          continue;  // mistyped: already reported
        if (!st.options.is_object() || !st.options.contains("data") || st.options["data"].get<std::string>().empty()) {
          problems.push_back(fmt::format("{}: step {}: evaluate needs \"data\" (a .npz, .jsonl or test data folder)", where, k + 1));
          continue;
        }
        // Its paths are relative to the recipe's folder, also when set by --set; baseline "input"
        // names the recipe's input model.
        for (auto& spec : passes::EvaluateStepOptions::table().specs()) {
          const std::string& key = spec.name;
          if (!spec.path || !st.options.contains(key) || !st.options[key].is_string()) continue;
          std::string v = st.options[key].get<std::string>();
          if (v.empty() || (key == "baseline" && v == "input")) continue;
          fs::path p = v;
          if (!p.is_absolute()) st.options[key] = (base / p).lexically_normal().string();
        }
        std::error_code dec;
        if (!fs::exists(st.options["data"].get<std::string>(), dec))
          problems.push_back(fmt::format("{}: step {}: evaluation data '{}' does not exist", where, k + 1,
                                         st.options["data"].get<std::string>()));
        // Goals, the report's folder and the baseline: checked now, not after the work.
        passes::EvaluateStepOptions o;
        // A mistyped option is reported already; converting it (1e44 to an int) is undefined.
        bool typed = true;
        for (auto& spec : passes::EvaluateStepOptions::table().specs())
          if (st.options.contains(spec.name) && !passes::value_has_type(spec.type, st.options[spec.name]))
            typed = false;
        if (!typed) continue;
        try {
          o = passes::EvaluateStepOptions::table().from_json(
              passes::with_defaults(passes::EvaluateStepOptions::table().specs(), st.options));
        } catch (const nlohmann::json::exception&) {
          continue;  // a mistyped option, already reported
        }
        bool has_reference = !o.baseline.empty() || fs::is_directory(o.data, dec);
        for (auto& msg : eval::goal_problems(o.goals, has_reference, o.metrics))
          problems.push_back(fmt::format("{}: step {}: {}", where, k + 1, msg));
        if (!o.baseline.empty() && o.baseline != "input" && !fs::exists(o.baseline, dec))
          problems.push_back(fmt::format("{}: step {}: baseline '{}' does not exist", where, k + 1, o.baseline));
        if (!o.report.empty()) {
          auto why = unwritable_folder(o.report, true);
          if (!why.empty()) problems.push_back(fmt::format("{}: step {}: report '{}': {}", where, k + 1, o.report, why));
        }
      } else if (!step_malformed[k]) {
        check_step_files(where, k + 1, st, problems);
      }
      if (st.pass != "evaluate" && seen_eval && !step_malformed[k]) {
        problems.push_back(fmt::format("{}: step {}: '{}' comes after an evaluate step; evaluate steps go last",
                                       where, k + 1, st.pass));
      }
    }
  }
  std::error_code ec;
  if (!r.input.empty() && !fs::exists(r.input, ec))
    problems.push_back(fmt::format("{}: input model '{}' does not exist", where, r.input.string()));
  std::error_code in_ec, out_ec;  // a name too long for the file system is reported where it is opened
  if (!r.input.empty() && !r.output.empty() &&
      fs::weakly_canonical(r.input, in_ec) == fs::weakly_canonical(r.output, out_ec) && !in_ec && !out_ec)
    problems.push_back(fmt::format("{}: output '{}' is the input model; choose another output path", where,
                                   r.output.string()));
  if (!r.output.empty()) {
    auto why = unwritable_folder(r.output, true);
    if (!why.empty()) problems.push_back(fmt::format("{}: output '{}': {}", where, r.output.string(), why));
  }
  if (!problems.empty()) throw_problems(problems);
  return r;
}

void validate_recipe(const Recipe& r) {
  std::vector<std::string> problems;
  const bool cli = r.source.empty();
  std::string where = cli ? r.input.string() : r.source.string();
  for (size_t k = 0; k < r.steps.size(); ++k) {
    check_step(where, k + 1, r.steps[k], problems, cli);
    check_step_files(where, k + 1, r.steps[k], problems, cli);
  }
  check_chain(where, r, problems, cli);
  // A subcommand's flags: the first problem, on one line (a recipe lists them all).
  if (cli && problems.size() > 1) problems.resize(1);
  if (!problems.empty()) throw_problems(problems);
}

nlohmann::json recipe_plan(const Recipe& r) {
  nlohmann::json steps = nlohmann::json::array();
  for (auto& st : r.steps) {
    const auto* p = passes::find_pass(st.pass);
    steps.push_back({{"pass", st.pass}, {"options", p ? passes::with_defaults(p->options, st.options) : st.options}});
  }
  std::string ext = r.external_data == formats::ExternalData::Always  ? "always"
                    : r.external_data == formats::ExternalData::Never ? "never"
                                                                      : "auto";
  return {{"recipe", r.source.string()},
          {"valid", true},
          {"input", r.input.string()},
          {"input_kind", passes::artifact_kind_name(input_kind(r.input))},
          {"output", r.output.string()},
          {"output_kind", passes::artifact_kind_name(output_kind(r))},
          {"external_data", ext},
          {"steps", steps}};
}

nlohmann::json execute(const Recipe& r, const std::function<void(const nlohmann::json&)>& on_step) {
  using clock = std::chrono::steady_clock;
  auto t0 = clock::now();
  if (r.create_output_folder && !r.output.parent_path().empty()) {
    std::error_code ec;
    fs::create_directories(r.output.parent_path(), ec);
  }
  const passes::ArtifactKind out_kind = output_kind(r);
  const bool folder_out = passes::is_folder_kind(out_kind);
  // Check where the output goes before any work is done.
  if (!folder_out) formats::check_output_path(r.output, {r.input});
  passes::Artifact art;
  art.kind = input_kind(r.input);
  if (art.kind == passes::ArtifactKind::OnnxModel) {
    art.model = formats::load_model(r.input);
    // Now that the input's external-data files are known: neither the output nor its data file
    // may be one of them (checked before any pass runs, not when saving).
    if (!folder_out) formats::check_save_targets(*art.model, r.output);
    log_verbose("loaded {} ({} nodes, {} initializers)", r.input.string(), art.model->graph->node_count(),
                art.model->graph->initializers.size());
    for (auto& st : r.steps) {
      if (const auto* p = passes::find_pass(st.pass); p && p->check_model) p->check_model(*art.model, st.options);
      // Data a step will run the model on must fit it (input names, shapes), before any step
      // runs and logs.
      for (const char* key : {"calib-data", "eval-data"})
        if (auto it = st.options.find(key);
            it != st.options.end() && it->is_string() && !it->get<std::string>().empty())
          pass_data_hooks().open(it->get<std::string>(), *art.model, 1,
                                 passes::TextData{st.options.value("tokenizer", std::string()),
                                                  st.options.value("context-length", int64_t{0})});
    }
  } else {
    art.path = r.input;
  }
  // Steps that return a folder write into a staging folder beside the output; a folder output
  // is the last of them, put in place whole. (With a file output the stage is only scratch,
  // removed at the end.)
  std::optional<formats::StagingFolder> stage;
  bool writes_folder = false;
  for (auto& st : r.steps)
    if (const auto* p = passes::find_pass(st.pass)) writes_folder = writes_folder || passes::is_folder_kind(p->returns);
  if (folder_out) stage.emplace(r.output);
  else if (writes_folder) stage.emplace(fs::path(r.output.string() + ".steps"));
  nlohmann::json report = {{"input", r.input.string()}, {"output", r.output.string()}};
  nlohmann::json steps = nlohmann::json::array();
  passes::PassContext ctx;
  ctx.threads = effective_threads();
  ctx.verbosity = globals().verbosity;
  ctx.data = &pass_data_hooks();
  std::vector<size_t> evaluations;
  ctx.progress = &progress();
  for (size_t i = 0; i < r.steps.size(); ++i) {
    const auto* p = passes::find_pass(r.steps[i].pass);
    if (!p) bad_input("{}: step {}: unknown pass '{}'", r.source.string(), i + 1, r.steps[i].pass);
    if (p->evaluation) {
      evaluations.push_back(i);
      continue;
    }
    auto ts = clock::now();
    ctx.report = nlohmann::json::object();
    ctx.scratch.clear();
    if (stage && passes::is_folder_kind(p->returns)) {
      ctx.scratch = stage->path() / fmt::format("step-{}", i + 1);
      fs::create_directories(ctx.scratch);
    }
    if (art.model && p->run_artifact) stamp(*art.model, r);  // the step writes the model out
    passes::run_step(*p, art, r.steps[i].options, ctx);
    if (art.model) art.model->shapes_inferred = false;  // the next reader of shapes infers them anew
    double sec = std::chrono::duration<double>(clock::now() - ts).count();
    std::string summary;
    for (auto& [k, v] : ctx.report.items())
      if (!v.is_structured()) summary += fmt::format("{}{} {}", summary.empty() ? "" : ", ", k, passes::json_text(v));
    log("step {}/{} {}: {} ({:.2f} s)", i + 1, r.steps.size(), p->name, summary, sec);
    steps.push_back({{"pass", p->name}, {"report", ctx.report}, {"seconds", sec}});
    if (on_step) on_step(steps.back());
  }
  if (folder_out) {
    stage->commit(art.path);
    report["output_kind"] = passes::artifact_kind_name(art.kind);
  } else {
    ir::Model& model = *art.model;
    stamp(model, r);
    formats::SaveOptions so;
    so.external = r.external_data;
    auto saved = formats::save_model(model, r.output, so);
    report["model_bytes"] = saved.model_bytes;
    report["data_bytes"] = saved.data_bytes;
    report["data_file"] = saved.data_file;
  }
  for (size_t i : evaluations) {
    const auto* p = passes::find_pass(r.steps[i].pass);
    eval::EvalArgs a;
    a.model = r.output.string();
    a.options = passes::EvaluateStepOptions::table().from_json(passes::with_defaults(p->options, r.steps[i].options));
    if (a.options.baseline == "input") a.options.baseline = r.input.string();
    a.threads = effective_threads();
    a.progress = &progress();
    if (!a.options.report.empty() && r.create_output_folder) {
      std::error_code ec;
      fs::create_directories(fs::path(a.options.report).parent_path(), ec);
    }
    auto ts = clock::now();
    nlohmann::json ev = eval::evaluation_report(a);
    double sec = std::chrono::duration<double>(clock::now() - ts).count();
    log("step {}/{} evaluate: {} samples of {} ({:.2f} s)", i + 1, r.steps.size(), ev["samples"].get<int64_t>(),
        a.options.data, sec);
    steps.push_back({{"pass", "evaluate"}, {"report", ev}, {"seconds", sec}});
  }
  report["steps"] = steps;
  report["seconds"] = std::chrono::duration<double>(clock::now() - t0).count();
  return report;
}

void enforce_step_goals(const nlohmann::json& report) {
  if (!report.contains("steps")) return;
  for (auto& st : report["steps"]) {
    const auto& rep = st["report"];
    if (rep.is_object() && rep.contains("goal_met") && rep["goal_met"].is_boolean() && !rep["goal_met"].get<bool>())
      throw Error(ExitCode::GoalNotMet,
                  fmt::format("step '{}': the accuracy goal was not met (the output was written; see the report)",
                              st["pass"].get<std::string>()));
  }
}

}  // namespace slmops::cli
