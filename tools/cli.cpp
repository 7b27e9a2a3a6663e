#include "tools/cli.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <new>
#include <thread>

#include "ir/error.h"
#include "ir/size.h"
#include "passes/registry.h"
#include <fmt/ranges.h>

namespace slmops::cli {

Globals& globals() {
  static Globals g;
  return g;
}

ProgressReporter& progress() {
  static ProgressReporter p;
  p.set_style(ProgressReporter::style_for(globals().verbosity));
  return p;
}

// Names in a model are bytes, not necessarily UTF-8: invalid sequences print as U+FFFD
// instead of aborting the report (nlohmann's default throws type_error.316).
void print_json(const nlohmann::json& j) {
  fmt::print("{}\n", j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace));
}

int effective_threads() {
  if (globals().threads > 0) return globals().threads;
  unsigned n = std::thread::hardware_concurrency();
  return n ? static_cast<int>(n) : 1;
}

void add_external_data_flag(CLI::App* cmd, formats::ExternalData* target) {
  cmd->add_option_function<std::string>(
         "--external-data",
         [target](const std::string& s) {
           if (!formats::parse_external_data(s, *target))
             bad_input("--external-data must be auto, always or never, got '{}'", s);
         },
         "where weights go: auto (external when the input had external data or the model passes 2 GiB), "
         "always, never")
      ->type_name("MODE");
}

std::string spec_type_name(const passes::OptionSpec& spec) {
  using passes::OptionType;
  if (!spec.choices.empty() && spec.type == OptionType::String) return fmt::format("{{{}}}", fmt::join(spec.choices, "|"));
  switch (spec.type) {
    case OptionType::Bool: return "[BOOL]";
    case OptionType::Int: return "INT";
    case OptionType::Float: return "FLOAT";
    case OptionType::String: return spec.path ? "PATH" : "TEXT";
    case OptionType::StringList: return spec.choices.empty() ? "LIST" : fmt::format("LIST of {}", fmt::join(spec.choices, "|"));
  }
  return "VALUE";
}

CLI::Option* add_spec_option(CLI::App* cmd, const passes::OptionSpec& spec,
                             std::function<void(const nlohmann::json&)> set) {
  std::string help = fmt::format("{} ({})", spec.help, passes::describe_values(spec));
  bool is_bool = spec.type == passes::OptionType::Bool;
  auto* opt = cmd->add_option_function<std::string>(
      "--" + spec.name,
      [spec, set](const std::string& v) {
        // A bool option given alone (--per-channel) means true; --per-channel false also works.
        set(passes::parse_option_text(spec, v.empty() && spec.type == passes::OptionType::Bool ? "true" : v));
      },
      help);
  opt->type_name(spec_type_name(spec));
  if (is_bool) opt->expected(0, 1);
  return opt;
}

void add_pass_option_flags(CLI::App* cmd, const passes::PassInfo& pass, nlohmann::json* target,
                           const std::vector<std::string>& only) {
  for (const auto& spec : pass.options) {
    if (!only.empty() && std::find(only.begin(), only.end(), spec.name) == only.end()) continue;
    add_spec_option(cmd, spec, [name = spec.name, target](const nlohmann::json& v) { (*target)[name] = v; });
  }
}

static std::string one_line(std::string s) {
  for (auto& c : s)
    if (c == '\n' || c == '\r') c = ' ';
  while (!s.empty() && s.back() == ' ') s.pop_back();
  return s;
}

// The first word that is not a global option must be a subcommand: say which word is not
// one, and the nearest that is ("quantise" -> quantize), instead of "A subcommand is required".
static void check_subcommand_name(CLI::App& app, int argc, char** argv) {
  std::vector<std::string> names;
  for (auto* sc : app.get_subcommands([](CLI::App*) { return true; })) names.push_back(sc->get_name());
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--help" || a == "-h" || a == "--version") return;
    if (a.rfind("-", 0) == 0) {
      if ((a == "--threads" || a == "--max-memory") && i + 1 < argc) ++i;
      continue;
    }
    if (std::find(names.begin(), names.end(), a) != names.end()) return;
    auto near = passes::nearest_name(a, names);
    bad_input("'{}' is not a command{} (commands: {})", a, near.empty() ? "" : fmt::format("; did you mean '{}'?", near),
              fmt::join(names, ", "));
  }
}

// "The following arguments were not expected: --mod int8-dynamic" -> which option of which
// command was not recognised, and the nearest one that exists.
static std::string unexpected_arguments(CLI::App& app, const CLI::ExtrasError& e) {
  CLI::App* cmd = &app;
  for (auto* sc : app.get_subcommands()) cmd = sc;
  std::vector<std::string> extras = cmd->remaining(true);
  if (extras.empty()) extras = app.remaining(true);
  std::vector<std::string> names;
  for (auto* o : cmd->get_options())
    for (auto& l : o->get_lnames()) names.push_back("--" + l);
  if (cmd != &app)
    for (auto* o : app.get_options())
      for (auto& l : o->get_lnames()) names.push_back("--" + l);
  std::string where = cmd == &app ? "slmops" : cmd->get_name();
  for (auto& x : extras) {
    if (x.rfind("--", 0) != 0) continue;
    std::string flag = x.substr(0, x.find('='));
    auto near = passes::nearest_name(flag, names);
    return fmt::format("{}: unknown option {}{} (see slmops {} --help)", where, flag,
                       near.empty() ? "" : fmt::format("; did you mean {}?", near), cmd == &app ? "" : where);
  }
  if (!extras.empty())
    return fmt::format("{}: unexpected argument '{}' (see slmops {} --help)", where, extras.front(),
                       cmd == &app ? "" : where);
  return one_line(e.what());
}

int main(int argc, char** argv) {
  CLI::App app{"slmops: compress and convert models for edge devices (distil, quantize, prune, convert, evaluate)",
               "slmops"};
  app.set_version_flag("--version", std::string("slmops ") + SLMOPS_VERSION);
  app.require_subcommand(1);
  app.fallthrough();
  auto& g = globals();
  app.add_flag_callback("-v,--verbose", [&] { g.verbosity = 2; }, "more log lines on stderr");
  app.add_flag_callback("-q,--quiet", [&] { g.verbosity = 0; }, "only errors on stderr");
  // More threads than cores only slows the kernels down (they spin and contend).
  const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  add_spec_option(&app,
                  {"threads", passes::OptionType::Int, 0, "worker threads (0: all cores)", {}, false,
                   {0, static_cast<double>(cores)}},
                  [&](const nlohmann::json& v) { g.threads = v.get<int>(); });
  app.add_option_function<std::string>(
         "--max-memory",
         [](const std::string& s) {
           auto v = ir::parse_byte_size(s);
           if (!v || *v == 0) bad_input("--max-memory must be a byte size such as 512M or 16G, got '{}'", s);
           ir::set_allocation_limit(*v);
         },
         "largest single tensor or buffer that a file may make slmops allocate, e.g. 512M, 16G "
         "(default: the memory available at start, or SLMOPS_MAX_MEMORY)")
      ->type_name("SIZE");

  register_run(app);
  register_inspect(app);
  register_passes(app);
  register_convert(app);
  register_quantize(app);
  register_prune(app);
  register_tokenize(app);
  register_generate(app);
  register_evaluate(app);
  register_distill(app);

  try {
    check_subcommand_name(app, argc, argv);
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ExtrasError& e) {
    fmt::print(stderr, "slmops: error: {}\n", unexpected_arguments(app, e));
    return static_cast<int>(ExitCode::BadInput);
  } catch (const CLI::ParseError& e) {
    fmt::print(stderr, "slmops: error: {} (see slmops --help)\n", one_line(e.what()));
    return static_cast<int>(ExitCode::BadInput);
  } catch (const Error& e) {
    // One line per problem (a recipe may report several).
    std::string msg = e.what();
    size_t start = 0;
    while (start <= msg.size()) {
      size_t nl = msg.find('\n', start);
      std::string line = msg.substr(start, nl == std::string::npos ? std::string::npos : nl - start);
      if (!line.empty()) fmt::print(stderr, "slmops: error: {}\n", line);
      if (nl == std::string::npos) break;
      start = nl + 1;
    }
    return static_cast<int>(e.code());
  } catch (const std::bad_alloc&) {
    fmt::print(stderr, "slmops: error: out of memory\n");
    return static_cast<int>(ExitCode::Failure);
  } catch (const std::exception& e) {
    fmt::print(stderr, "slmops: error: {}\n", one_line(e.what()));
    return static_cast<int>(ExitCode::Failure);
  }
  std::fflush(stdout);
  return 0;
}

}  // namespace slmops::cli
