// The data hooks passes use (calibration sets, accuracy goals), backed by the evaluate
// machinery: the same data sources and metrics as `slmops evaluate`.
#include "tools/pass_data.h"

#include <filesystem>

#include "eval/data.h"
#include "eval/metrics.h"
#include "eval/run.h"
#include "formats/file_util.h"
#include "ir/error.h"
#include "passes/progress.h"
#include "passes/quant/quantize.h"
#include "tools/cli.h"

namespace slmops::cli {
namespace {

class Feeds : public passes::FeedSource {
 public:
  Feeds(std::unique_ptr<eval::DataSource> src, int64_t batch_size) : src_(std::move(src)), bs_(batch_size) {}
  int64_t samples() const override { return src_->samples(); }
  std::string describe() const override { return src_->describe(); }
  void for_each_batch(int64_t limit, const std::function<void(std::vector<runtime::RValue>)>& fn) const override {
    int64_t n = src_->samples();
    if (limit > 0 && limit < n) n = limit;
    // One batch at a time, so that only the current batch's inputs are in memory.
    passes::ProgressStage stage(&progress(), "calibration data", n, "samples");
    for (int64_t b = 0; b < n; b += bs_) {
      for (auto& batch : src_->batches(b, std::min(n, b + bs_))) fn(std::move(batch.feeds));
      stage.update(std::min(n, b + bs_));
    }
  }

 private:
  std::unique_ptr<eval::DataSource> src_;
  int64_t bs_;
};

}  // namespace

const passes::DataHooks& pass_data_hooks() {
  static const passes::DataHooks hooks = [] {
    passes::DataHooks h;
    h.open = [](const std::string& spec, const ir::Model& model, int64_t batch_size, const passes::TextData& text) {
      eval::DataOptions opts;
      opts.batch_size = batch_size;
      opts.tokenizer = text.tokenizer;
      opts.context_length = text.context_length;
      std::unique_ptr<passes::FeedSource> f = std::make_unique<Feeds>(eval::open_data(spec, model, opts), batch_size);
      if (f->samples() == 0) bad_input("{}: the data set is empty", spec);
      return f;
    };
    h.measure = [](const ir::Model& cand, const ir::Model& base, const std::string& data, const std::string& goal,
                   const passes::TextData& text) {
      eval::Goal g = eval::parse_goal(goal);
      eval::EvalArgs a;
      a.model = "(quantized candidate)";
      a.options.baseline = "(float model)";
      a.options.data = data;
      a.options.goals = {goal};
      // Text rows: the given tokenizer, else the original model folder's (the candidate has no folder).
      a.options.tokenizer = text.tokenizer;
      if (a.options.tokenizer.empty() && !base.path.empty()) {
        const std::filesystem::path own = std::filesystem::path(base.path).parent_path() / "tokenizer.json";
        if (formats::path_exists(own)) a.options.tokenizer = own.string();
      }
      a.options.context_length = text.context_length;
      a.warmup = 0;
      a.threads = effective_threads();
      a.options.metrics = {g.metric == "accuracy" || g.metric.rfind("top_", 0) == 0 ? "accuracy"
                           : g.metric == "perplexity" || g.metric == "nll"      ? "perplexity"
                                                                                 : "fidelity"};
      nlohmann::json rep = eval::evaluation_report(cand, &base, a);
      double v = 0, bv = 0;
      if (!eval::metric_value(rep["metrics"], g.metric, v))
        bad_input("--max-degradation: metric '{}' is not measured on {} (accuracy, perplexity, snr_db, "
                  "top1_agreement, ...)", g.metric, data);
      eval::metric_value(rep["baseline"]["metrics"], g.metric, bv);
      bool met = !rep["goals"].empty() && rep["goals"][0].value("met", false);
      return nlohmann::json{{"met", met}, {"value", v}, {"baseline", bv}};
    };
    return h;
  }();
  return hooks;
}

}  // namespace slmops::cli
