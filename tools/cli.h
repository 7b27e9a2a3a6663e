// The CLI core shared by every subcommand: global flags, logging to stderr, the one place
// that turns exceptions into exit codes.
#pragma once
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "formats/onnx_io.h"
#include "passes/options.h"
#include "tools/progress.h"

namespace slmops::cli {

struct Globals {
  int verbosity = 1;  // -q: 0, default 1, -v: 2
  int threads = 0;    // 0: all cores
  bool json = false;
};

Globals& globals();
// The one progress reporter of the process (style set from -q / the terminal in main).
ProgressReporter& progress();

template <typename... Args>
void log(fmt::format_string<Args...> f, Args&&... args) {
  if (globals().verbosity >= 1) fmt::print(stderr, "slmops: {}\n", fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void log_verbose(fmt::format_string<Args...> f, Args&&... args) {
  if (globals().verbosity >= 2) fmt::print(stderr, "slmops: {}\n", fmt::format(f, std::forward<Args>(args)...));
}

// Prints a JSON document on stdout (the --json contract: one object, stable keys).
void print_json(const nlohmann::json& j);

int effective_threads();

// Adds --external-data to a subcommand.
void add_external_data_flag(CLI::App* cmd, formats::ExternalData* target);

// Subcommand registration; each lives in its own cmd_<verb>.cpp.
void register_run(CLI::App& app);
void register_inspect(CLI::App& app);
void register_passes(CLI::App& app);
void register_convert(CLI::App& app);
void register_evaluate(CLI::App& app);
void register_quantize(CLI::App& app);
void register_prune(CLI::App& app);
void register_tokenize(CLI::App& app);
void register_generate(CLI::App& app);
void register_distill(CLI::App& app);

// Entry point used by main() and by tests: returns the exit code.
int main(int argc, char** argv);

}  // namespace slmops::cli

namespace slmops::passes {
struct PassInfo;
}
namespace slmops::cli {
// Adds one --<option> VALUE flag per declared option of `pass`; values land in *target.
// `only`: the subset of options to add (empty: all).
void add_pass_option_flags(CLI::App* cmd, const passes::PassInfo& pass, nlohmann::json* target,
                           const std::vector<std::string>& only = {});

// A subcommand `PASS MODEL -o OUT [--json] [--external-data ...] [the pass's options as flags]`
// that runs the pass as a one-step recipe, so that the subcommand and {"pass": PASS, ...} write
// the same bytes; `summary` prints each step's report on stderr (tools/pass_command.cpp).
void register_pass_command(CLI::App& app, const std::string& pass, const std::string& description,
                           std::function<void(const nlohmann::json& step)> summary);
// Adds --<spec.name> from a declaration: help shows type, choices or range and default; the
// value is parsed and range-checked (one-line error naming the flag) before `set` sees it.
CLI::Option* add_spec_option(CLI::App* cmd, const passes::OptionSpec& spec,
                             std::function<void(const nlohmann::json&)> set);
// The --help type name of a declared option: INT, FLOAT, [BOOL], TEXT, LIST or {a|b|c}.
std::string spec_type_name(const passes::OptionSpec& spec);
}  // namespace slmops::cli
