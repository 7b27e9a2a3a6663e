// evaluate: data sources refuse bad data with one line naming the array; metric sums agree
// with an independent computation and merge exactly.
#include <doctest/doctest.h>

#include <cmath>
#include <random>

#include "eval/data.h"
#include "eval/metrics.h"
#include "formats/npz.h"
#include "formats/onnx_io.h"
#include "ir/error.h"
#include "runtime/executor.h"
#include "test_util.h"

using namespace slmops;
namespace fs = std::filesystem;

namespace {

const fs::path kFixtures = fs::path(SLMOPS_SOURCE_DIR) / "tests/fixtures";

std::string open_error(const std::string& spec, const ir::Model& m, eval::DataOptions o = {}) {
  try {
    eval::open_data(spec, m, o);
  } catch (const Error& e) {
    CHECK(e.code() == ExitCode::BadInput);
    std::string msg = e.what();
    CHECK(msg.find('\n') == std::string::npos);  // one line
    return msg;
  }
  FAIL("expected an error for ", spec);
  return "";
}

ir::Tensor floats(std::vector<int64_t> dims, float scale, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> d(0, scale);
  std::vector<float> v(ir::element_count(dims));
  for (auto& x : v) x = d(rng);
  return ir::Tensor::from_values("", ir::DType::Float, dims, v);
}

}  // namespace

TEST_CASE("bad evaluation data: each case names the array or row and what was expected") {
  test::TempDir tmp;
  ir::Model cnn = formats::load_model(kFixtures / "cnn_digits.onnx");
  ir::Model lm = formats::load_model(kFixtures / "gpt_bytes.onnx");
  auto x = floats({4, 1, 8, 8}, 1, 1);
  std::vector<int64_t> labels = {1, 2, 3, 4};
  auto lab = ir::Tensor::from_values("", ir::DType::Int64, {4}, labels);

  formats::save_npz(tmp / "noinput.npz", {{"pixels", x}, {"label", lab}});
  CHECK(open_error((tmp / "noinput.npz").string(), cnn).find("no array for model input 'input'") != std::string::npos);

  std::vector<double> d(4 * 64, 0.5);
  formats::save_npz(tmp / "double.npz", {{"input", ir::Tensor::from_values("", ir::DType::Double, {4, 1, 8, 8}, d)}});
  CHECK(open_error((tmp / "double.npz").string(), cnn).find("is double, model input 'input' expects float") !=
        std::string::npos);

  formats::save_npz(tmp / "rank.npz", {{"input", floats({4, 64}, 1, 2)}});
  CHECK(open_error((tmp / "rank.npz").string(), cnn).find("expects rank 4") != std::string::npos);

  formats::save_npz(tmp / "dims.npz", {{"input", floats({4, 1, 8, 9}, 1, 3)}});
  CHECK(open_error((tmp / "dims.npz").string(), cnn).find("[batch, 1, 8, 8]") != std::string::npos);

  std::vector<int64_t> three = {1, 2, 3};
  formats::save_npz(tmp / "labels.npz", {{"input", x}, {"label", ir::Tensor::from_values("", ir::DType::Int64, {3}, three)}});
  CHECK(open_error((tmp / "labels.npz").string(), cnn).find("expected 4 samples") != std::string::npos);

  test::write_file(tmp / "ragged.jsonl", "{\"input_ids\": [1, 2, 3]}\n{\"input_ids\": [4, 5]}\n");
  eval::DataOptions batched;
  batched.batch_size = 2;
  CHECK(open_error((tmp / "ragged.jsonl").string(), lm, batched).find("ragged rows cannot be batched") !=
        std::string::npos);

  test::write_file(tmp / "nested.jsonl", "{\"input_ids\": [[1, 2], [3]]}\n");
  CHECK(open_error((tmp / "nested.jsonl").string(), lm).find("flat list of integers") != std::string::npos);

  test::write_file(tmp / "key.jsonl", "{\"tokens\": [1, 2]}\n");
  CHECK(open_error((tmp / "key.jsonl").string(), lm).find("no \"input_ids\"") != std::string::npos);

  test::write_file(tmp / "broken.jsonl", "{\"input_ids\": [1, 2\n");
  CHECK(open_error((tmp / "broken.jsonl").string(), lm).find("broken.jsonl:1: not a JSON object") != std::string::npos);

  test::write_file(tmp / "empty.jsonl", "\n");
  CHECK(open_error((tmp / "empty.jsonl").string(), lm).find("no rows") != std::string::npos);

  test::write_file(tmp / "data.csv", "1,2,3\n");
  CHECK(open_error((tmp / "data.csv").string(), cnn).find("unknown data format") != std::string::npos);

  CHECK(open_error((tmp / "missing.npz").string(), cnn).find("no such file") != std::string::npos);
}

TEST_CASE("fidelity figures of a perturbed model match an independent computation") {
  // Outputs of the real CNN and of a copy whose head weights are scaled by 1.05.
  ir::Model m = formats::load_model(kFixtures / "cnn_digits.onnx");
  auto data = formats::load_npz(kFixtures / "cnn_digits_test.npz");
  const ir::Tensor& input = data.at("input");
  runtime::Session s(m, 1);
  auto base = s.run({runtime::RValue::of(input)})[0].tensor;
  ir::Model p = formats::load_model(kFixtures / "cnn_digits.onnx");
  ir::Value* w = p.graph->find_value("head.2.weight");
  REQUIRE(w);
  ir::Tensor& wt = *w->initializer;
  wt.make_aligned();  // mapped raw_data may sit at any offset; read it as float* only once aligned
  std::vector<float> scaled(wt.values<float>(), wt.values<float>() + wt.numel());
  for (auto& v : scaled) v *= 1.05f;
  wt = ir::Tensor::from_values(wt.name, ir::DType::Float, wt.dims, scaled);
  runtime::Session sp(p, 1);
  auto pert = sp.run({runtime::RValue::of(input)})[0].tensor;

  eval::MetricSums sums;
  eval::add_fidelity(sums, pert, base);
  auto f = eval::finish_metrics(sums, false, false, true, 1)["fidelity"];

  // Independent: straight from the definitions, in double.
  const float* a = pert.values<float>();
  const float* b = base.values<float>();
  const int64_t rows = base.dims[0], c = base.dims[1], n = rows * c;
  double max_err = 0, sum_err = 0, sig = 0, noise = 0, dot = 0, na = 0, nb = 0, kl = 0;
  int64_t agree = 0;
  for (int64_t i = 0; i < n; ++i) {
    max_err = std::max(max_err, std::fabs(double(a[i]) - b[i]));
    sum_err += std::fabs(double(a[i]) - b[i]);
    sig += double(b[i]) * b[i];
    noise += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
    dot += double(a[i]) * b[i];
    na += double(a[i]) * a[i];
    nb += double(b[i]) * b[i];
  }
  for (int64_t r = 0; r < rows; ++r) {
    double za = 0, zb = 0;
    int64_t ia = 0, ib = 0;
    for (int64_t k = 0; k < c; ++k) {
      za += std::exp(double(a[r * c + k]));
      zb += std::exp(double(b[r * c + k]));
      if (a[r * c + k] > a[r * c + ia]) ia = k;
      if (b[r * c + k] > b[r * c + ib]) ib = k;
    }
    for (int64_t k = 0; k < c; ++k) {
      double pb = std::exp(double(b[r * c + k])) / zb, pa = std::exp(double(a[r * c + k])) / za;
      kl += pb * std::log(pb / pa);
    }
    agree += ia == ib;
  }
  CHECK(f["max_abs_err"].get<double>() == doctest::Approx(max_err).epsilon(1e-9));
  CHECK(f["mean_abs_err"].get<double>() == doctest::Approx(sum_err / n).epsilon(1e-9));
  CHECK(f["snr_db"].get<double>() == doctest::Approx(10 * std::log10(sig / noise)).epsilon(1e-9));
  CHECK(f["cosine"].get<double>() == doctest::Approx(dot / std::sqrt(na * nb)).epsilon(1e-9));
  CHECK(f["kl"].get<double>() == doctest::Approx(kl / rows).epsilon(1e-6));
  CHECK(f["top1_agreement"].get<double>() == doctest::Approx(double(agree) / rows));
  CHECK(f["kl"].get<double>() > 0);
  CHECK(f["snr_db"].get<double>() < 100);
}

TEST_CASE("exact sums do not depend on how the data is split") {
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<double> d(0, 10);
  std::vector<double> xs(1000);
  for (auto& x : xs) x = d(rng);
  eval::ExactSum all, a, b, c;
  for (size_t i = 0; i < xs.size(); ++i) {
    all.add(xs[i]);
    (i < 300 ? a : i < 700 ? b : c).add(xs[i]);
  }
  eval::ExactSum merged;
  merged.add(c);
  merged.add(a);
  merged.add(b);
  CHECK(merged.value() == all.value());  // bit-identical, not approximately
  auto back = eval::ExactSum::from_json(all.to_json());
  CHECK(back.value() == all.value());
}

TEST_CASE("goals: each type, both directions") {
  nlohmann::json model = {{"accuracy", 0.95}, {"perplexity", 3.3}, {"latency_ms", {{"p50", 8.0}}}};
  nlohmann::json base = {{"accuracy", 0.96}, {"perplexity", 3.2}, {"latency_ms", {{"p50", 10.0}}}};
  auto unmet = [&](const std::string& g) { return eval::check_goals({eval::parse_goal(g)}, model, &base).size(); };
  CHECK(unmet("accuracy:threshold:0.9") == 0);
  CHECK(unmet("accuracy:threshold:0.96") == 1);
  CHECK(unmet("perplexity:threshold:3.5") == 0);  // lower is better
  CHECK(unmet("accuracy:max-degradation:0.02") == 0);
  CHECK(unmet("accuracy:max-degradation:0.005") == 1);
  CHECK(unmet("perplexity:percent-max-degradation:5") == 0);  // +3.1%
  CHECK(unmet("perplexity:percent-max-degradation:2") == 1);
  CHECK(unmet("latency_p50:percent-min-improvement:20") == 0);  // 20% faster
  CHECK(unmet("latency_p50:percent-min-improvement:25") == 1);
  CHECK(unmet("latency_p50:min-improvement:2") == 0);
  CHECK_THROWS_AS(eval::parse_goal("accuracy:at-least:0.9"), Error);
  CHECK_THROWS_AS(eval::check_goals({eval::parse_goal("bleu:threshold:1")}, model, &base), Error);
}
