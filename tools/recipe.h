// Recipes: a JSON file naming an input model, an ordered list of pass steps and an output.
// Every subcommand builds the same Recipe in memory and calls execute(), so a subcommand
// and the equivalent one-step recipe write byte-identical files.
#pragma once
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "formats/onnx_io.h"

namespace slmops::cli {

namespace fs = std::filesystem;

struct Step {
  std::string pass;
  nlohmann::json options = nlohmann::json::object();
};

struct Recipe {
  fs::path source;  // the recipe file, for messages ("" when built by a subcommand)
  fs::path input, output;
  formats::ExternalData external_data = formats::ExternalData::Auto;
  std::vector<Step> steps;
  bool create_output_folder = false;  // recipes create their output folder; subcommands do not
};

// Parses and validates a recipe document. Paths in the file are relative to the file's folder;
// paths set with --set KEY=VALUE are relative to the current folder. Throws Error(BadInput)
// whose message lists every problem found, one per line.
Recipe load_recipe(const fs::path& file, const std::vector<std::string>& sets);

// Checks a recipe built in memory (unknown pass, bad options, missing input); same errors.
void validate_recipe(const Recipe& r);

// The validated plan (--dry-run --json): input, output, steps with every option in effect.
nlohmann::json recipe_plan(const Recipe& r);

// Loads the input, runs every step, saves the output. Returns the report (also for --json).
// `on_step` sees each rewriting step's entry ({pass, report, seconds}) as it finishes.
nlohmann::json execute(const Recipe& r, const std::function<void(const nlohmann::json&)>& on_step = {});

// Throws Error(GoalNotMet) when a step reports "goal_met": false (accuracy-aware passes
// write their output, then the run exits 3).
void enforce_step_goals(const nlohmann::json& report);

}  // namespace slmops::cli
