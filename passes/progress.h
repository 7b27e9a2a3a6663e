// Progress of a long step (calibration batches, evaluation batches, accuracy-aware rounds).
// Passes and the evaluator report through this interface; the CLI renders it (a bar on a
// terminal, one line per stage in logs, nothing with -q). Passes never see how.
#pragma once
#include <cstdint>
#include <string_view>

namespace slmops::passes {

class Progress {
 public:
  virtual ~Progress() = default;
  // Starts a stage of `total` items (0: not known), e.g. ("calibration", 64, "batches").
  // Stages nest: a stage begun inside another ends before it.
  virtual void begin(std::string_view stage, int64_t total, std::string_view unit) = 0;
  // `done` items of the current stage are finished; `item` names the current one, if any.
  virtual void update(int64_t done, std::string_view item = {}) = 0;
  // The current stage is finished.
  virtual void end() = 0;
};

// Begins a stage on construction and ends it on destruction (also when an error unwinds);
// a no-op when `p` is null.
class ProgressStage {
 public:
  ProgressStage(Progress* p, std::string_view stage, int64_t total, std::string_view unit) : p_(p) {
    if (p_) p_->begin(stage, total, unit);
  }
  ~ProgressStage() {
    if (p_) p_->end();
  }
  ProgressStage(const ProgressStage&) = delete;
  ProgressStage& operator=(const ProgressStage&) = delete;
  void update(int64_t done, std::string_view item = {}) {
    if (p_) p_->update(done, item);
  }

 private:
  Progress* p_;
};

}  // namespace slmops::passes
