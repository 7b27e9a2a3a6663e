// Runs every case of ONNX's conformance data (libonnx-testdata) through the slmops executor
// and checks the outputs with the ONNX backend tolerance. Prints per-suite pass counts,
// writes a Markdown report, and fails when a suite is below its bar.
//
//   slmops_conformance [--root DIR] [--filter SUBSTRING] [--report FILE] [--verbose]
//                      [--min-node 0.90] [--min-other 0.95] [--optimize]
//
// With --optimize each case that passes is also run after passes::optimize (what `slmops
// convert --optimize` writes); a case that passes as exported but not optimized fails the run.
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "eval/check_data.h"
#include "formats/onnx_io.h"
#include "ir/error.h"
#include "passes/optimize/optimize.h"
#include "runtime/executor.h"

namespace fs = std::filesystem;
using namespace slmops;

struct CaseResult {
  std::string suite, name;
  bool passed = false;
  std::string reason;
};

static CaseResult run_case(const fs::path& root, const fs::path& dir, bool optimize) {
  CaseResult r;
  r.suite = dir.lexically_relative(root).begin()->string();
  r.name = dir.filename().string();
  try {
    ir::Model m = formats::load_model(dir / "model.onnx");
    if (optimize) passes::optimize(m, passes::OptimizeOptions{});
    runtime::Session s(m, 1);
    auto sets = eval::data_set_folders(dir);
    for (auto& set : sets) {
      auto res = eval::check_data_set(m, s, set, eval::Tolerance{});
      if (!res.passed) {
        r.reason = fmt::format("{}: {}", set.filename().string(), res.worst);
        return r;
      }
    }
    r.passed = true;
  } catch (const std::exception& e) {
    r.reason = e.what();
  }
  return r;
}

int main(int argc, char** argv) {
  fs::path root = "/usr/share/libonnx-testdata/data";
  std::string filter, report;
  bool verbose = false, optimize = false;
  double min_node = 0.0, min_other = 0.0;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (a == "--root") root = next();
    else if (a == "--filter") filter = next();
    else if (a == "--report") report = next();
    else if (a == "--verbose" || a == "-v") verbose = true;
    else if (a == "--optimize")
      optimize = true;
    else if (a == "--min-node") min_node = std::stod(next());
    else if (a == "--min-other") min_other = std::stod(next());
    else {
      std::fprintf(stderr, "unknown argument %s\n", a.c_str());
      return 2;
    }
  }
  std::vector<fs::path> cases;
  for (auto& e : fs::recursive_directory_iterator(root))
    if (e.is_regular_file() && e.path().filename() == "model.onnx") {
      fs::path dir = e.path().parent_path();
      if (filter.empty() || dir.string().find(filter) != std::string::npos) cases.push_back(dir);
    }
  std::sort(cases.begin(), cases.end());
  std::map<std::string, std::pair<int, int>> suites;  // passed, total
  std::vector<CaseResult> failures, regressions;
  int optimized_passed = 0;
  auto t0 = std::chrono::steady_clock::now();
  for (auto& dir : cases) {
    CaseResult r = run_case(root, dir, false);
    if (optimize && r.passed) {
      CaseResult o = run_case(root, dir, true);
      if (o.passed)
        ++optimized_passed;
      else
        regressions.push_back(o);
    }
    auto& s = suites[r.suite];
    ++s.second;
    if (r.passed) ++s.first;
    else failures.push_back(r);
    if (verbose) std::printf("%s %s/%s %s\n", r.passed ? "ok  " : "FAIL", r.suite.c_str(), r.name.c_str(), r.reason.c_str());
  }
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  bool ok = true;
  std::string table = "| suite | passed | cases | rate |\n|---|---|---|---|\n";
  for (auto& [suite, s] : suites) {
    double rate = s.second ? static_cast<double>(s.first) / s.second : 0;
    double bar = suite == "node" ? min_node : min_other;
    if (rate < bar) ok = false;
    std::printf("conformance %s: %d of %d passed (%.1f%%, bar %.0f%%)\n", suite.c_str(), s.first, s.second, rate * 100, bar * 100);
    table += fmt::format("| {} | {} | {} | {:.1f}% |\n", suite, s.first, s.second, rate * 100);
  }
  std::printf("conformance: %zu cases in %.1f s\n", cases.size(), secs);
  if (optimize) {
    std::printf("conformance --optimize: %d of %d passing cases still pass after optimize\n", optimized_passed,
                optimized_passed + static_cast<int>(regressions.size()));
    for (auto& f : regressions)
      std::printf("  optimized FAIL %s/%s: %s\n", f.suite.c_str(), f.name.c_str(), f.reason.c_str());
    if (!regressions.empty()) ok = false;
  }
  if (!report.empty()) {
    std::ofstream out(report);
    out << "# Conformance: ONNX's test data through the slmops executor\n\n"
        << "Every `model.onnx` under `/usr/share/libonnx-testdata/data` (Debian package libonnx-testdata "
           "1.12) is run on each of its `test_data_set_N` inputs and compared with the reference outputs "
           "(ONNX backend tolerance: rtol 1e-3, atol 1e-7; integers, booleans and strings exact).\n\n"
        << "Made by `build/tests/slmops_conformance --report docs/conformance.md` (ctest `conformance`).\n\n"
        << table << "\n## Failing cases\n\n";
    if (failures.empty()) out << "None.\n";
    else {
      out << "| suite | case | reason |\n|---|---|---|\n";
      for (auto& f : failures) {
        std::string reason = f.reason;
        std::replace(reason.begin(), reason.end(), '|', '/');
        std::replace(reason.begin(), reason.end(), '\n', ' ');
        out << "| " << f.suite << " | " << f.name << " | " << reason << " |\n";
      }
    }
  }
  return ok ? 0 : 1;
}
