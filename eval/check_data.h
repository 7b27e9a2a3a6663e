// Checks a model's outputs against reference data: ONNX test_data_set_N folders
// (input_K.pb / output_K.pb), with the ONNX backend tolerance by default.
#pragma once
#include <filesystem>
#include <string>
#include <vector>

#include "ir/graph.h"
#include "runtime/executor.h"

namespace slmops::eval {

struct Tolerance {
  double rtol = 1e-3;  // ONNX backend tests: numpy.testing.assert_allclose(rtol=1e-3, atol=1e-7)
  double atol = 1e-7;
  // Scale rtol by the largest |reference| of the output instead of each element's own
  // (|a - b| <= atol + rtol * max|b|): the usual bar for whole-model comparisons, where
  // near-zero elements carry only absolute rounding noise.
  bool scaled = false;
};

struct CheckResult {
  bool passed = true;
  int outputs_checked = 0;
  std::string worst;  // the worst mismatch, naming the output and element
};

// Runs `dir` (one test_data_set folder) through `session` and compares the outputs.
CheckResult check_data_set(const ir::Model& model, const runtime::Session& session, const std::filesystem::path& dir,
                           const Tolerance& tol, const runtime::RunOptions& run_opts = {});

// The test_data_set folders under `dir` (or `dir` itself when it holds input_*.pb files).
std::vector<std::filesystem::path> data_set_folders(const std::filesystem::path& dir);

}  // namespace slmops::eval
