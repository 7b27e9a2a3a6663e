// How an evaluation report (the JSON of evaluation_report, eval/run.h) reads: a table on
// stdout and a Markdown file, each with the baseline's column when there is one and the goals.
#pragma once
#include <string>

#include <nlohmann/json.hpp>

namespace slmops::eval {

// Prints the report as a table on stdout.
void print_evaluation(const nlohmann::json& report);
// Writes the report as Markdown to `path` (atomically: a reader never sees half a file).
void write_markdown(const nlohmann::json& report, const std::string& path);

}  // namespace slmops::eval
