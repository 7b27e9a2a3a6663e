#include "eval/report.h"

#include <cmath>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "formats/file_util.h"

namespace slmops::eval {

namespace {

using Rows = std::vector<std::pair<std::string, nlohmann::json>>;

std::string fmt_value(const nlohmann::json& v) {
  if (v.is_number_float()) return fmt::format("{:.6g}", v.get<double>());
  if (v.is_string()) return v.get<std::string>();
  return v.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

// Flattens {"fidelity": {"kl": 1}} to rows ("fidelity.kl", 1) for tables.
void flatten(const nlohmann::json& j, const std::string& prefix, Rows& out) {
  for (auto& [k, v] : j.items()) {
    std::string key = prefix.empty() ? k : prefix + "." + k;
    if (v.is_object()) flatten(v, key, out);
    else out.emplace_back(key, v);
  }
}

}  // namespace

// "optimized (396 -> 188 nodes)" or "as written (--no-optimize)"; "" for reports without the field.
static std::string optimize_note(const nlohmann::json& report) {
  if (!report.contains("optimized")) return "";
  if (!report["optimized"].get<bool>()) return "as written (--no-optimize)";
  if (!report.contains("optimize")) return "optimized";
  const auto& o = report["optimize"];
  return fmt::format("optimized ({} -> {} nodes)", o["nodes_before"].get<int64_t>(), o["nodes_after"].get<int64_t>());
}

void print_evaluation(const nlohmann::json& report) {
  Rows rows, base;
  flatten(report["metrics"], "", rows);
  bool has_base = report.contains("baseline");
  if (has_base) flatten(report["baseline"]["metrics"], "", base);
  fmt::print("model    {}\ndata     {} ({} samples{})\n", report["model"].get<std::string>(),
             report["data"].get<std::string>(), report["samples"].get<int64_t>(),
             report.contains("shard") ? ", shard " + report["shard"].get<std::string>() : "");
  if (has_base) fmt::print("baseline {}\n", report["baseline"]["model"].get<std::string>());
  if (auto note = optimize_note(report); !note.empty()) fmt::print("graph    {}\n", note);
  fmt::print("\n{:<32} {:>16}{}\n", "metric", "model", has_base ? fmt::format(" {:>16}", "baseline") : "");
  for (auto& [k, v] : rows) {
    std::string b;
    if (has_base)
      for (auto& [bk, bv] : base)
        if (bk == k) b = fmt_value(bv);
    fmt::print("{:<32} {:>16}{}\n", k, fmt_value(v), has_base ? fmt::format(" {:>16}", b) : "");
  }
  if (report.contains("goals")) {
    fmt::print("\n");
    for (auto& g : report["goals"])
      fmt::print("goal {:<40} {}\n", g["goal"].get<std::string>(), g["met"].get<bool>() ? "met" : "NOT MET");
  }
}

void write_markdown(const nlohmann::json& report, const std::string& path) {
  Rows rows, base;
  flatten(report["metrics"], "", rows);
  bool has_base = report.contains("baseline");
  if (has_base) flatten(report["baseline"]["metrics"], "", base);
  std::string md = fmt::format("# Evaluation of `{}`\n\nData: `{}`, {} samples.", report["model"].get<std::string>(),
                               report["data"].get<std::string>(), report["samples"].get<int64_t>());
  if (has_base) md += fmt::format(" Baseline: `{}`.", report["baseline"]["model"].get<std::string>());
  if (auto note = optimize_note(report); !note.empty()) md += fmt::format(" Graph: {}.", note);
  md += "\n\n| metric | model |";
  md += has_base ? " baseline | change |\n|---|---:|---:|---:|\n" : "\n|---|---:|\n";
  for (auto& [k, v] : rows) {
    md += fmt::format("| {} | {} |", k, fmt_value(v));
    if (has_base) {
      std::string b = "", change = "";
      for (auto& [bk, bv] : base)
        if (bk == k) {
          b = fmt_value(bv);
          if (v.is_number() && bv.is_number() && bv.get<double>() != 0)
            change = fmt::format("{:+.2f}%", 100.0 * (v.get<double>() - bv.get<double>()) / std::fabs(bv.get<double>()));
        }
      md += fmt::format(" {} | {} |", b, change);
    }
    md += "\n";
  }
  if (report.contains("goals")) {
    md += "\n## Goals\n\n| goal | met |\n|---|---|\n";
    for (auto& g : report["goals"]) md += fmt::format("| `{}` | {} |\n", g["goal"].get<std::string>(), g["met"].get<bool>() ? "yes" : "**no**");
  }
  formats::AtomicFile f(path);
  f.write(md);
  f.commit();
}

}  // namespace slmops::eval
