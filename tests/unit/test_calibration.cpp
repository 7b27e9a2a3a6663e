// Calibration statistics: each method against an independent computation on fixed data
// (MinMax exact, Percentile against a sort, Entropy against a line-by-line re-implementation of
// ONNX Runtime's get_entropy_threshold), and streaming in several batches equal to one batch.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>

#include "ir/graph.h"
#include "graph_builders.h"
#include "passes/quant/calibration.h"
#include "runtime/executor.h"

using namespace slmops;
using namespace slmops::ir;
using test::FixedFeeds;
namespace q = slmops::passes::quant;

namespace {

// Fixed data: a normal bulk with a few large outliers (the case clipping methods are for).
std::vector<float> bulk_with_outliers(size_t n, uint32_t seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> d(0.5f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = d(gen);
  v[n / 3] = 40.0f;
  v[n / 2] = -25.0f;
  return v;
}

q::TensorStats stats_over(const q::CalibConfig& cfg, const std::vector<float>& x, size_t batches) {
  q::TensorStats s(cfg);
  const size_t step = (x.size() + batches - 1) / batches;
  for (size_t b = 0; b < x.size(); b += step) s.observe_minmax(x.data() + b, std::min(step, x.size() - b));
  if (cfg.method != q::CalibMethod::MinMax) {
    s.start_histogram();
    for (size_t b = 0; b < x.size(); b += step) s.observe_histogram(x.data() + b, std::min(step, x.size() - b));
  }
  return s;
}

// ONNX Runtime's HistogramCollector.get_entropy_threshold, transcribed statement by statement
// (smooth_distribution and scipy.stats.entropy inlined), without the prefix sums the library
// uses. Returns the chosen (edge[start], edge[end]) before the clamp to [min, max].
std::pair<double, double> ort_entropy_threshold(const std::vector<int64_t>& hist, const std::vector<double>& edges,
                                                int num_quantized_bins) {
  const int num_bins = static_cast<int>(hist.size());
  const int zero_bin_index = num_bins / 2;
  const int num_half_quantized_bin = num_quantized_bins / 2;
  std::vector<double> kl_divergence(zero_bin_index - num_half_quantized_bin + 1);
  std::vector<std::pair<double, double>> thresholds(kl_divergence.size());
  auto smooth_distribution = [](std::vector<double> p, bool& ok) {
    const double eps = 0.0001;
    double n_zeros = 0;
    for (double x : p) n_zeros += x == 0;
    const double n_nonzeros = p.size() - n_zeros;
    ok = n_nonzeros != 0;
    if (!ok) return p;
    const double eps1 = eps * n_zeros / n_nonzeros;
    for (double& x : p) x += x == 0 ? eps : -eps1;
    return p;
  };
  for (int i = num_half_quantized_bin; i < zero_bin_index + 1; ++i) {
    const int start_index = zero_bin_index - i;
    const int end_index = zero_bin_index + i + 1 <= num_bins ? zero_bin_index + i + 1 : num_bins;
    thresholds[i - num_half_quantized_bin] = {edges[start_index], edges[end_index]};
    std::vector<int64_t> sliced(hist.begin() + start_index, hist.begin() + end_index);
    std::vector<int64_t> p = sliced;
    int64_t left = 0, right = 0;
    for (int k = 0; k < start_index; ++k) left += hist[k];
    for (int k = end_index; k < num_bins; ++k) right += hist[k];
    p.front() += left;
    p.back() += right;
    std::vector<int> nonzeros(p.size());
    for (size_t k = 0; k < p.size(); ++k) nonzeros[k] = p[k] != 0;
    std::vector<int64_t> quantized_bins(num_quantized_bins, 0);
    const int num_merged_bins = static_cast<int>(sliced.size()) / num_quantized_bins;
    for (int index = 0; index < num_quantized_bins; ++index)
      for (int k = index * num_merged_bins; k < (index + 1) * num_merged_bins; ++k) quantized_bins[index] += sliced[k];
    for (size_t k = static_cast<size_t>(num_quantized_bins) * num_merged_bins; k < sliced.size(); ++k)
      quantized_bins.back() += sliced[k];
    std::vector<int64_t> q(p.size(), 0);  // int64, as ORT's np.zeros(..., dtype=np.int64)
    for (int index = 0; index < num_quantized_bins; ++index) {
      const int start = index * num_merged_bins, end = start + num_merged_bins;
      int norm = 0;
      for (int k = start; k < end; ++k) norm += nonzeros[k];
      if (norm != 0)
        for (int k = start; k < end; ++k) q[k] = static_cast<int64_t>(double(quantized_bins[index]) / double(norm));
    }
    bool okp = false, okq = false;
    std::vector<double> ps = smooth_distribution(std::vector<double>(p.begin(), p.end()), okp);
    std::vector<double> qs = smooth_distribution(std::vector<double>(q.begin(), q.end()), okq);
    if (!okq) {
      kl_divergence[i - num_half_quantized_bin] = std::numeric_limits<double>::infinity();
      continue;
    }
    double sp = 0, sq = 0, kl = 0;
    for (double x : ps) sp += x;
    for (double x : qs) sq += x;
    for (size_t k = 0; k < ps.size(); ++k) kl += ps[k] / sp * std::log((ps[k] / sp) / (qs[k] / sq));
    kl_divergence[i - num_half_quantized_bin] = kl;
  }
  const size_t best = std::min_element(kl_divergence.begin(), kl_divergence.end()) - kl_divergence.begin();
  return thresholds[best];
}


}  // namespace

TEST_CASE("MinMax: the global min and max over all batches, exactly") {
  const auto x = bulk_with_outliers(10000, 1);
  q::CalibConfig cfg;
  for (size_t batches : {1, 7}) {
    const q::Range r = stats_over(cfg, x, batches).result();
    CHECK(r.lo == *std::min_element(x.begin(), x.end()));
    CHECK(r.hi == *std::max_element(x.begin(), x.end()));
  }
}

TEST_CASE("Percentile: the threshold equals a sort-based percentile of |x| within one bin") {
  const auto x = bulk_with_outliers(20000, 2);
  std::vector<float> a(x.size());
  std::transform(x.begin(), x.end(), a.begin(), [](float v) { return std::fabs(v); });
  std::sort(a.begin(), a.end());
  for (double pct : {99.0, 99.9, 99.999}) {
    q::CalibConfig cfg;
    cfg.method = q::CalibMethod::Percentile;
    cfg.percentile = pct;
    q::TensorStats s = stats_over(cfg, x, 1);
    const q::Range r = s.result();
    // The smallest |x| with at least pct% of the values at or below it.
    const size_t rank = static_cast<size_t>(std::ceil(pct / 100.0 * a.size()));
    const double want = a[std::max<size_t>(rank, 1) - 1];
    const double bin = a.back() / 2048.0;
    CAPTURE(pct);
    CHECK(std::fabs(r.hi - want) <= bin);
    CHECK(r.lo == doctest::Approx(std::max(-r.hi, *std::min_element(x.begin(), x.end()))));
    CHECK(r.hi < 40.0f);  // the outlier is clipped
  }
}

TEST_CASE("Entropy: same threshold as a transcription of ONNX Runtime's get_entropy_threshold") {
  const auto x = bulk_with_outliers(50000, 3);
  for (int64_t bins : {2048, 512, 130}) {
    q::CalibConfig cfg;
    cfg.method = q::CalibMethod::Entropy;
    cfg.entropy_bins = bins;
    q::TensorStats s = stats_over(cfg, x, 1);
    const auto& hist = s.histogram();
    REQUIRE(static_cast<int64_t>(hist.size()) == bins);
    std::vector<double> edges(bins + 1);
    for (int64_t i = 0; i <= bins; ++i) edges[i] = s.hist_lo() + (s.hist_hi() - s.hist_lo()) * i / double(bins);
    auto [lo, hi] = ort_entropy_threshold(hist, edges, 128);
    const q::Range r = s.result();
    CAPTURE(bins);
    CHECK(r.lo == std::max(static_cast<float>(lo), s.min()));
    CHECK(r.hi == std::min(static_cast<float>(hi), s.max()));
  }
}

TEST_CASE("Entropy: outliers far from the bulk are clipped; 128 bins leave only the full range") {
  // Hand-checked case: all mass in the central bins plus one count at each end. Quantizing
  // the full range into 128 bins merges the bulk into one or two bins (large KL); the
  // narrowest candidate (128 bins around the center) keeps its shape, and the two outliers
  // folded into its end bins cost little.
  std::vector<int64_t> hist(2048, 0);
  for (int i = 1024 - 40; i < 1024 + 40; ++i) hist[i] = 1000 + (i % 7) * 50;
  hist[0] = 1;
  hist[2047] = 1;
  q::Range r = q::entropy_range(hist, -10.0, 10.0, 128, -10.0f, 10.0f);
  auto edge = [](int i) { return -10.0 + 20.0 * i / 2048.0; };
  // Candidates up to i = 88 keep the bulk (bins 984..1063) inside their first 128 bins.
  CHECK(r.hi >= edge(1064));
  CHECK(r.hi <= edge(1024 + 88 + 1));
  CHECK(r.lo <= edge(984));
  CHECK(r.lo >= edge(1024 - 88));
  // ONNX Runtime's defaults (128 bins, 128 quantized bins) on a fixed-range histogram: the
  // only candidate is the whole range, i.e. MinMax.
  std::vector<int64_t> h128(128, 0);
  for (int i = 60; i < 68; ++i) h128[i] = 100;
  h128[0] = h128[127] = 1;
  r = q::entropy_range(h128, -10.0, 10.0, 128, -9.5f, 9.9f);
  CHECK(r.lo == -9.5f);
  CHECK(r.hi == 9.9f);
}

TEST_CASE("Streaming: several batches give the same histograms and ranges as one batch") {
  const auto x = bulk_with_outliers(30000, 4);
  for (auto method : {q::CalibMethod::Entropy, q::CalibMethod::Percentile, q::CalibMethod::MinMax}) {
    q::CalibConfig cfg;
    cfg.method = method;
    q::TensorStats one = stats_over(cfg, x, 1), many = stats_over(cfg, x, 13);
    CAPTURE(q::calib_method_name(method));
    CHECK(one.histogram() == many.histogram());
    CHECK(one.result().lo == many.result().lo);
    CHECK(one.result().hi == many.result().hi);
  }
}

TEST_CASE("calibrate(): streams a model's intermediate values and graph input; batch size does not matter") {
  // y = Relu(x) * 2 - 1 (via Mul / Sub on constants); the ranges are known in closed form.
  Model m;
  m.ir_version = 8;
  m.opsets = {{"", 17}};
  m.graph = std::make_unique<Graph>();
  Graph& g = *m.graph;
  Value* x = g.add_input("x", TensorType::of(DType::Float, {-1, 4}));
  Value* two = g.add_initializer(Tensor::from_values("two", DType::Float, {}, std::vector<float>{2.0f}));
  Value* one = g.add_initializer(Tensor::from_values("one", DType::Float, {}, std::vector<float>{1.0f}));
  Node* relu = g.add_node("Relu", {x}, {"r"});
  Node* mul = g.add_node("Mul", {relu->outputs[0], two}, {"m"});
  Node* sub = g.add_node("Sub", {mul->outputs[0], one}, {"y"});
  g.add_output(sub->outputs[0]);
  const auto data = bulk_with_outliers(4 * 50, 5);
  const float lo = *std::min_element(data.begin(), data.end()), hi = *std::max_element(data.begin(), data.end());
  std::vector<const Value*> tensors = {x, relu->outputs[0], sub->outputs[0]};

  q::CalibConfig cfg;
  FixedFeeds b1(data, {4}, 1), b7(data, {4}, 7);
  auto r1 = q::calibrate(m, tensors, b1, cfg, 1);
  auto r7 = q::calibrate(m, tensors, b7, cfg, 2);
  CHECK(r1.samples == 50);
  CHECK(r1.batches == 50);
  CHECK(r7.batches == 8);
  CHECK(r1.passes == 1);
  CHECK(r1.ranges.at(x).lo == lo);
  CHECK(r1.ranges.at(x).hi == hi);
  CHECK(r1.ranges.at(relu->outputs[0]).lo == 0.0f);
  CHECK(r1.ranges.at(sub->outputs[0]).hi == hi * 2 - 1);
  for (auto* v : tensors) {
    CHECK(r7.ranges.at(v).lo == r1.ranges.at(v).lo);
    CHECK(r7.ranges.at(v).hi == r1.ranges.at(v).hi);
  }

  cfg.method = q::CalibMethod::Entropy;
  auto e1 = q::calibrate(m, tensors, b1, cfg, 1);
  auto e7 = q::calibrate(m, tensors, b7, cfg, 1);
  CHECK(e1.passes == 2);
  for (auto* v : tensors) {
    CHECK(e7.ranges.at(v).lo == e1.ranges.at(v).lo);
    CHECK(e7.ranges.at(v).hi == e1.ranges.at(v).hi);
  }
  cfg.samples = 10;  // --calib-samples: only the first 10 samples
  auto s10 = q::calibrate(m, tensors, b7, cfg, 1);
  CHECK(s10.samples == 10);
}

TEST_CASE("parse_calib_method names the option on a typo") {
  CHECK(q::parse_calib_method("entropy") == q::CalibMethod::Entropy);
  CHECK_THROWS_WITH(q::parse_calib_method("kl"), doctest::Contains("--calib-method kl"));
}
