#include "tools/cli.h"

#include <unistd.h>

#include <cstdio>
#include <new>
#include <thread>

#include "ir/error.h"
#include "passes/registry.h"

namespace slmops::cli {

Globals& globals() {
  static Globals g;
  return g;
}

void print_json(const nlohmann::json& j) { fmt::print("{}\n", j.dump(2)); }

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

void add_pass_option_flags(CLI::App* cmd, const passes::PassInfo& pass, nlohmann::json* target) {
  for (const auto& spec : pass.options) {
    std::string help = fmt::format("{} ({}, default {})", spec.help, passes::option_type_name(spec.type),
                                   spec.default_value.dump());
    bool is_bool = spec.type == passes::OptionType::Bool;
    auto* opt = cmd->add_option_function<std::string>(
        "--" + spec.name,
        [spec, target](const std::string& v) {
          // A bool option given alone (--per-channel) means true; --per-channel false also works.
          (*target)[spec.name] = passes::parse_option_text(spec, v.empty() && spec.type == passes::OptionType::Bool ? "true" : v);
        },
        help);
    opt->type_name(is_bool ? "[BOOL]" : "VALUE");
    if (is_bool) opt->expected(0, 1);
  }
}

static std::string one_line(std::string s) {
  for (auto& c : s)
    if (c == '\n' || c == '\r') c = ' ';
  while (!s.empty() && s.back() == ' ') s.pop_back();
  return s;
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
  app.add_option("--threads", g.threads, "worker threads (default: all cores)")->check(CLI::NonNegativeNumber);

  register_run(app);
  register_inspect(app);
  register_passes(app);
  register_convert(app);
  register_quantize(app);
  register_evaluate(app);
  register_pending(app);

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
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
