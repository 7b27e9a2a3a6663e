// Streaming calibration statistics (see calibration.h for the methods and their sources).
#include "passes/quant/calibration.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <mutex>

#include "ir/error.h"
#include "passes/common/activations.h"
#include "runtime/executor.h"

namespace slmops::passes::quant {

CalibMethod parse_calib_method(const std::string& name) {
  if (name == "minmax" || name.empty()) return CalibMethod::MinMax;
  if (name == "entropy") return CalibMethod::Entropy;
  if (name == "percentile") return CalibMethod::Percentile;
  bad_input("--calib-method {}: unknown; use minmax, entropy or percentile", name);
}

const char* calib_method_name(CalibMethod m) {
  switch (m) {
    case CalibMethod::MinMax: return "minmax";
    case CalibMethod::Entropy: return "entropy";
    case CalibMethod::Percentile: return "percentile";
  }
  return "?";
}

// ---- Histograms ---------------------------------------------------------------------------

int64_t histogram_bin(double x, double lo, double hi, int64_t bins) {
  if (!(hi > lo)) return 0;
  int64_t b = static_cast<int64_t>(std::floor((x - lo) * static_cast<double>(bins) / (hi - lo)));
  return std::clamp<int64_t>(b, 0, bins - 1);
}

namespace {

double edge(double lo, double hi, int64_t bins, int64_t i) {
  return lo + (hi - lo) * static_cast<double>(i) / static_cast<double>(bins);
}

// ORT's smooth_distribution: zeros become eps, the mass is taken evenly off the non-zeros.
// Returns false when every entry is zero (ORT then scores the candidate as +inf).
bool smooth(const std::vector<double>& p, std::vector<double>& out) {
  const double eps = 1e-4;
  size_t zeros = 0;
  for (double v : p) zeros += v == 0;
  const size_t nonzeros = p.size() - zeros;
  if (nonzeros == 0) return false;
  const double eps1 = eps * static_cast<double>(zeros) / static_cast<double>(nonzeros);
  out.resize(p.size());
  for (size_t i = 0; i < p.size(); ++i) out[i] = p[i] == 0 ? eps : p[i] - eps1;
  return true;
}

// scipy.stats.entropy(p, q): both normalised to sum 1, sum p log(p / q).
double kl_divergence(const std::vector<double>& p, const std::vector<double>& q) {
  double sp = 0, sq = 0;
  for (double v : p) sp += v;
  for (double v : q) sq += v;
  double kl = 0;
  for (size_t i = 0; i < p.size(); ++i) {
    const double a = p[i] / sp, b = q[i] / sq;
    if (a > 0) kl += a * std::log(a / b);
  }
  return kl;
}

Range clamp_range(double lo, double hi, float data_min, float data_max) {
  Range r{static_cast<float>(lo), static_cast<float>(hi)};
  if (r.lo < data_min) r.lo = data_min;
  if (r.hi > data_max) r.hi = data_max;
  return r;
}

}  // namespace

Range entropy_range(const std::vector<int64_t>& hist, double lo, double hi, int64_t quantized_bins, float data_min,
                    float data_max) {
  const int64_t bins = static_cast<int64_t>(hist.size());
  const int64_t zero = bins / 2, half_q = quantized_bins / 2;
  if (bins == 0 || quantized_bins <= 0 || half_q > zero) return clamp_range(lo, hi, data_min, data_max);
  std::vector<int64_t> prefix(bins + 1, 0);
  for (int64_t i = 0; i < bins; ++i) prefix[i + 1] = prefix[i] + hist[i];

  double best_kl = std::numeric_limits<double>::infinity();
  double best_lo = edge(lo, hi, bins, 0), best_hi = edge(lo, hi, bins, bins);
  bool have_best = false;
  std::vector<double> p, q, ps, qs;
  std::vector<int64_t> quantized(quantized_bins);
  for (int64_t i = half_q; i <= zero; ++i) {
    const int64_t start = zero - i, end = std::min(zero + i + 1, bins), size = end - start;
    // Reference p: the slice with the outliers folded into its end bins.
    p.assign(hist.begin() + start, hist.begin() + end);
    p.front() += static_cast<double>(prefix[start]);
    p.back() += static_cast<double>(prefix[bins] - prefix[end]);
    // Candidate q: the slice merged into quantized_bins bins (the last takes the remainder),
    // then spread back over the non-zero positions of p, truncated to an integer as ORT's
    // int64 array does.
    const int64_t merged = size / quantized_bins;
    for (int64_t j = 0; j < quantized_bins; ++j)
      quantized[j] = prefix[start + (j + 1) * merged] - prefix[start + j * merged];
    quantized[quantized_bins - 1] += prefix[end] - prefix[start + quantized_bins * merged];
    q.assign(size, 0.0);
    for (int64_t j = 0; j < quantized_bins; ++j) {
      const int64_t b = j * merged, e = b + merged;
      int64_t norm = 0;
      for (int64_t k = b; k < e; ++k) norm += p[k] != 0;
      if (norm == 0) continue;
      const double v = std::trunc(static_cast<double>(quantized[j]) / static_cast<double>(norm));
      for (int64_t k = b; k < e; ++k) q[k] = v;
    }
    double kl = std::numeric_limits<double>::infinity();
    if (smooth(p, ps) && smooth(q, qs)) kl = kl_divergence(ps, qs);
    if (!have_best || kl < best_kl) {
      have_best = true;
      best_kl = kl;
      best_lo = edge(lo, hi, bins, start);
      best_hi = edge(lo, hi, bins, end);
    }
  }
  return clamp_range(best_lo, best_hi, data_min, data_max);
}

Range percentile_range(const std::vector<int64_t>& hist, double lo, double hi, double percentile, float data_min,
                       float data_max) {
  const int64_t bins = static_cast<int64_t>(hist.size());
  int64_t total = 0;
  for (int64_t c : hist) total += c;
  if (total == 0) return clamp_range(0, 0, data_min, data_max);
  // numpy: cdf = cumsum(hist / total); idx = searchsorted(cdf, percentile / 100) (left).
  const double target = percentile / 100.0;
  double cdf = 0;
  int64_t idx = bins;
  for (int64_t i = 0; i < bins; ++i) {
    cdf += static_cast<double>(hist[i]) / static_cast<double>(total);
    if (cdf >= target) {
      idx = i;
      break;
    }
  }
  const double t = edge(lo, hi, bins, idx);
  return clamp_range(-t, t, data_min, data_max);
}

// ---- TensorStats ----------------------------------------------------------------------------

void TensorStats::observe_minmax(const float* x, int64_t n) {
  if (n <= 0) return;
  float lo = count_ ? min_ : std::numeric_limits<float>::infinity();
  float hi = count_ ? max_ : -std::numeric_limits<float>::infinity();
  for (int64_t i = 0; i < n; ++i) {
    const float v = x[i];
    if (v < lo) lo = v;  // NaN compares false and is skipped
    if (v > hi) hi = v;
  }
  if (lo > hi) return;  // only NaNs
  min_ = lo;
  max_ = hi;
  count_ += n;
}

void TensorStats::start_histogram() {
  const double amax = std::max(std::fabs(static_cast<double>(min_)), std::fabs(static_cast<double>(max_)));
  if (cfg_->method == CalibMethod::Entropy) {
    hist_.assign(cfg_->entropy_bins, 0);
    hist_lo_ = -amax;
    hist_hi_ = amax;
  } else if (cfg_->method == CalibMethod::Percentile) {
    hist_.assign(cfg_->percentile_bins, 0);
    hist_lo_ = 0;
    hist_hi_ = amax;
  }
}

void TensorStats::observe_histogram(const float* x, int64_t n) {
  if (hist_.empty()) return;
  const bool absolute = cfg_->method == CalibMethod::Percentile;
  const int64_t bins = static_cast<int64_t>(hist_.size());
  if (!(hist_hi_ > hist_lo_)) {
    for (int64_t i = 0; i < n; ++i) hist_[0] += !std::isnan(x[i]);
    return;
  }
  const double scale = static_cast<double>(bins) / (hist_hi_ - hist_lo_);
  for (int64_t i = 0; i < n; ++i) {
    double v = x[i];
    if (std::isnan(v)) continue;
    if (absolute) v = std::fabs(v);
    int64_t b = static_cast<int64_t>((v - hist_lo_) * scale);
    hist_[std::clamp<int64_t>(b, 0, bins - 1)] += 1;
  }
}

Range TensorStats::result() const {
  if (!count_) return {};
  switch (cfg_->method) {
    case CalibMethod::MinMax: return {min_, max_};
    case CalibMethod::Entropy:
      return entropy_range(hist_, hist_lo_, hist_hi_, cfg_->entropy_quantized_bins, min_, max_);
    case CalibMethod::Percentile: return percentile_range(hist_, hist_lo_, hist_hi_, cfg_->percentile, min_, max_);
  }
  return {min_, max_};
}

// ---- Running the model ----------------------------------------------------------------------

CalibrationResult calibrate(const ir::Model& m, const std::vector<const ir::Value*>& tensors, const FeedSource& calib,
                            const CalibConfig& cfg, int threads) {
  const auto t0 = std::chrono::steady_clock::now();
  CalibrationResult res;
  std::vector<std::string> names;
  std::vector<TensorStats> stats;  // by position in `tensors`
  for (const ir::Value* v : tensors) {
    names.push_back(v->name);
    stats.emplace_back(cfg);
  }
  ActivationCollector collector(m, std::move(names), threads);
  runtime::ThreadPool& pool = collector.session().pool();

  const bool histogram = cfg.method != CalibMethod::MinMax;
  for (int pass = 0; pass < (histogram ? 2 : 1); ++pass) {
    const bool minmax_pass = pass == 0;
    if (!minmax_pass)
      for (auto& s : stats) s.start_histogram();
    auto observe = [&](TensorStats& s, const runtime::RValue& rv) {
      if (!rv.is_tensor() || rv.tensor.dtype != ir::DType::Float) return;
      const ir::Tensor& t = rv.tensor;
      if (minmax_pass) {
        const int64_t n = static_cast<int64_t>(t.numel());
        if (n < (1 << 17) || pool.threads() == 1) {
          s.observe_minmax(t.values<float>(), n);
          return;
        }
        std::mutex mu;
        pool.parallel_for(n, 1 << 16, [&](int64_t b, int64_t e) {
          TensorStats local(cfg);
          local.observe_minmax(t.values<float>() + b, e - b);
          if (!local.seen()) return;
          std::lock_guard<std::mutex> lock(mu);
          float both[2] = {local.min(), local.max()};
          s.observe_minmax(both, 2);
        });
      } else {
        s.observe_histogram(t.values<float>(), static_cast<int64_t>(t.numel()));
      }
    };
    int64_t samples = 0, batches = 0;
    calib.for_each_batch(cfg.samples, [&](std::vector<runtime::RValue> feeds) {
      if (!feeds.empty() && feeds[0].is_tensor() && !feeds[0].tensor.dims.empty()) samples += feeds[0].tensor.dims[0];
      else samples += 1;
      ++batches;
      collector.observe(std::move(feeds), [&](size_t k, const runtime::RValue& v) { observe(stats[k], v); });
    });
    if (batches == 0) bad_input("{}: the calibration data holds no samples", calib.describe());
    res.samples = samples;
    res.batches = batches;
    res.passes = pass + 1;
  }
  for (size_t k = 0; k < tensors.size(); ++k)
    if (stats[k].seen()) res.ranges[tensors[k]] = stats[k].result();
  res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return res;
}

}  // namespace slmops::passes::quant
