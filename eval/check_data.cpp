#include "eval/check_data.h"

#include <algorithm>
#include <cmath>
#include <fmt/ranges.h>

#include "formats/test_data.h"
#include "ir/error.h"
#include "runtime/ops/common.h"

#include "formats/file_util.h"

namespace slmops::eval {

namespace fs = std::filesystem;
using runtime::RValue;

namespace {

// ONNX 1.12's test data stores bfloat16 tensors with data_type uint16; take the declared type.
void adopt_declared_type(formats::DataValue& d, const ir::Value* declared) {
  if (declared && declared->type.elem() == ir::DType::BFloat16 && d.tensor.dtype == ir::DType::UInt16) {
    d.tensor.dtype = ir::DType::BFloat16;
    d.tensor.dtype_code = static_cast<int32_t>(ir::DType::BFloat16);
  }
}

RValue to_rvalue(formats::DataValue d) {
  RValue v;
  v.optional = d.optional;
  switch (d.kind) {
    case formats::DataValue::Kind::Tensor:
      v.kind = RValue::Kind::Tensor;
      v.tensor = std::move(d.tensor);
      break;
    case formats::DataValue::Kind::Sequence:
      v.kind = RValue::Kind::Sequence;
      v.sequence = std::move(d.sequence);
      break;
    case formats::DataValue::Kind::None: v.kind = RValue::Kind::None; break;
  }
  return v;
}

std::vector<fs::path> numbered(const fs::path& dir, const std::string& prefix) {
  std::vector<fs::path> files;
  for (int k = 0;; ++k) {
    fs::path p = dir / fmt::format("{}_{}.pb", prefix, k);
    if (!formats::path_exists(p)) break;
    files.push_back(p);
  }
  return files;
}

// Compares one tensor; updates `res` with the worst element when it does not match.
void compare_tensor(const std::string& name, const ir::Tensor& got, const ir::Tensor& want, const Tolerance& tol,
                    CheckResult& res) {
  auto fail = [&](std::string why) {
    if (res.passed) res.worst = fmt::format("output '{}': {}", name, why);
    res.passed = false;
  };
  if (got.dtype != want.dtype) {
    fail(fmt::format("type {}, expected {}", ir::dtype_name(got.dtype), ir::dtype_name(want.dtype)));
    return;
  }
  if (got.dims != want.dims) {
    fail(fmt::format("shape [{}], expected [{}]", fmt::join(got.dims, ", "), fmt::join(want.dims, ", ")));
    return;
  }
  if (got.dtype == ir::DType::String) {
    for (size_t i = 0; i < want.strings.size(); ++i)
      if (got.strings[i] != want.strings[i]) {
        fail(fmt::format("element {} is \"{}\", expected \"{}\"", i, got.strings[i], want.strings[i]));
        return;
      }
    return;
  }
  const bool exact = !ir::traits(want.dtype).is_float;
  auto a = runtime::ops::to_doubles(got);
  auto b = runtime::ops::to_doubles(want);
  double worst_excess = 0;
  int64_t worst_i = -1;
  double scale = 0;
  if (tol.scaled)
    for (double y : b)
      if (std::isfinite(y)) scale = std::max(scale, std::fabs(y));
  for (size_t i = 0; i < b.size(); ++i) {
    double x = a[i], y = b[i];
    if (std::isnan(x) && std::isnan(y)) continue;
    if (std::isinf(x) || std::isinf(y)) {
      if (x == y) continue;
      worst_i = static_cast<int64_t>(i);
      worst_excess = INFINITY;
      break;
    }
    double excess = exact ? std::fabs(x - y)
                          : std::fabs(x - y) - (tol.atol + tol.rtol * (tol.scaled ? scale : std::fabs(y)));
    if (std::isnan(x) != std::isnan(y)) excess = INFINITY;
    if (excess > 0 && excess > worst_excess) {
      worst_excess = excess;
      worst_i = static_cast<int64_t>(i);
    }
  }
  if (worst_i >= 0)
    fail(fmt::format("element {} is {}, expected {} (|diff| {:.3g}; tolerance rtol {}{} atol {})", worst_i,
                     a[worst_i], b[worst_i], std::fabs(a[worst_i] - b[worst_i]), exact ? 0.0 : tol.rtol,
                     tol.scaled ? fmt::format(" x max|ref| {:.4g}", scale) : "", exact ? 0.0 : tol.atol));
}

}  // namespace

std::vector<fs::path> data_set_folders(const fs::path& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) bad_input("{}: not a folder of test data", dir.string());
  if (formats::path_exists(dir / "input_0.pb") || formats::path_exists(dir / "output_0.pb")) return {dir};
  std::vector<fs::path> sets;
  for (auto& e : fs::directory_iterator(dir))
    if (e.is_directory() && e.path().filename().string().rfind("test_data_set_", 0) == 0) sets.push_back(e.path());
  std::sort(sets.begin(), sets.end());
  if (sets.empty()) bad_input("{}: no input_0.pb and no test_data_set_N folders", dir.string());
  return sets;
}

CheckResult check_data_set(const ir::Model& model, const runtime::Session& session, const fs::path& dir,
                           const Tolerance& tol, const runtime::RunOptions& run_opts) {
  const auto& g = *model.graph;
  auto inputs = numbered(dir, "input");
  auto outputs = numbered(dir, "output");
  // Inputs are given for the graph inputs in order; initializer-backed inputs may be left out.
  std::vector<RValue> feeds;
  const auto& declared = session.inputs();
  if (inputs.size() > declared.size())
    bad_input("{}: {} input files but the model has {} inputs", dir.string(), inputs.size(), declared.size());
  for (size_t k = 0; k < inputs.size(); ++k) {
    auto d = formats::load_data_value(inputs[k], declared[k]->type.container);
    adopt_declared_type(d, declared[k]);
    feeds.push_back(to_rvalue(std::move(d)));
  }
  for (size_t k = inputs.size(); k < declared.size(); ++k)
    if (!declared[k]->initializer && declared[k]->type.container.rfind("optional", 0) != 0)
      bad_input("{}: no data for model input '{}'", dir.string(), declared[k]->name);
  auto got = session.run(std::move(feeds), run_opts);
  CheckResult res;
  if (outputs.size() != g.outputs.size())
    bad_input("{}: {} output files but the model has {} outputs", dir.string(), outputs.size(), g.outputs.size());
  for (size_t k = 0; k < outputs.size(); ++k) {
    const ir::Value* ov = g.outputs[k].value;
    std::string name = ov ? ov->name : fmt::format("#{}", k);
    auto wd = formats::load_data_value(outputs[k], ov ? ov->type.container : "");
    adopt_declared_type(wd, ov);
    RValue want = to_rvalue(std::move(wd));
    const RValue& have = got[k];
    ++res.outputs_checked;
    if (want.kind != have.kind) {
      if (res.passed) res.worst = fmt::format("output '{}': kind differs (tensor, sequence or none)", name);
      res.passed = false;
      continue;
    }
    if (want.kind == RValue::Kind::Tensor) compare_tensor(name, have.tensor, want.tensor, tol, res);
    if (want.kind == RValue::Kind::Sequence) {
      if (want.sequence.size() != have.sequence.size()) {
        if (res.passed)
          res.worst = fmt::format("output '{}': sequence of {}, expected {}", name, have.sequence.size(), want.sequence.size());
        res.passed = false;
        continue;
      }
      for (size_t i = 0; i < want.sequence.size(); ++i)
        compare_tensor(fmt::format("{}[{}]", name, i), have.sequence[i], want.sequence[i], tol, res);
    }
  }
  return res;
}

}  // namespace slmops::eval
