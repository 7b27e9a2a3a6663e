// The CLI's progress reporter: on a terminal, one bar per stage on stderr (stage, item,
// done/total, rate, ETA), redrawn at most 10 times a second and cleared when the stage
// ends; when stderr is not a terminal (logs, CI), one line per finished stage; with -q,
// nothing. Header-only so every command reaches it through tools/cli.h.
#pragma once
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <exception>
#include <cstdio>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "passes/progress.h"

namespace slmops::cli {

class ProgressReporter final : public passes::Progress {
 public:
  enum class Style { Silent, Lines, Bar };
  static Style style_for(int verbosity) {
    if (verbosity < 1) return Style::Silent;
    return ::isatty(2) ? Style::Bar : Style::Lines;
  }
  void set_style(Style s) {
    if (!forced_) style_ = s;
  }
  void force(Style s) {
    style_ = s;
    forced_ = true;
  }
  Style style() const { return style_; }

  void begin(std::string_view stage, int64_t total, std::string_view unit) override {
    clear_bar();
    stages_.push_back({std::string(stage), std::string(unit), total, 0, "", clock::now(), {}});
    draw(true);
  }
  void update(int64_t done, std::string_view item) override {
    if (stages_.empty()) return;
    auto& s = stages_.back();
    s.done = done;
    if (!item.empty()) s.item = std::string(item);
    draw(false);
  }
  void end() override {
    if (stages_.empty()) return;
    clear_bar();
    const auto s = stages_.back();
    stages_.pop_back();
    double secs = seconds_since(s.start);
    if (style_ != Style::Silent && !std::uncaught_exceptions()) {
      std::string count = s.total > 0 ? fmt::format("{}/{} {}", s.done, s.total, s.unit)
                                      : (s.done > 0 ? fmt::format("{} {}", s.done, s.unit) : "done");
      std::string rate = secs > 0 && s.done > 0 ? fmt::format(", {:.3g} {}/s", s.done / secs, s.unit) : "";
      fmt::print(stderr, "slmops: {}: {} in {:.2f} s{}\n", s.stage, count, secs, rate);
    }
    draw(true);
  }

 private:
  using clock = std::chrono::steady_clock;
  struct Stage {
    std::string stage, unit;
    int64_t total, done;
    std::string item;
    clock::time_point start, last_draw;
  };
  static double seconds_since(clock::time_point t) { return std::chrono::duration<double>(clock::now() - t).count(); }

  void clear_bar() {
    if (style_ == Style::Bar && drawn_) {
      fmt::print(stderr, "\r\x1b[K");
      std::fflush(stderr);
      drawn_ = false;
    }
  }
  void draw(bool force) {
    if (style_ != Style::Bar || stages_.empty()) return;
    auto& s = stages_.back();
    auto now = clock::now();
    if (!force && now - s.last_draw < std::chrono::milliseconds(100) && s.done != s.total) return;
    s.last_draw = now;
    double secs = seconds_since(s.start);
    double rate = secs > 0 ? s.done / secs : 0;
    std::string bar;
    if (s.total > 0) {
      const int width = 24;
      int filled = static_cast<int>(width * std::min<int64_t>(s.done, s.total) / s.total);
      bar = fmt::format("[{}{}] {}/{} {}", std::string(filled, '#'), std::string(width - filled, '.'), s.done, s.total,
                        s.unit);
    } else {
      bar = fmt::format("{} {}", s.done, s.unit);
    }
    std::string eta = s.total > 0 && rate > 0 ? fmt::format(", ETA {:.0f} s", (s.total - s.done) / rate) : "";
    std::string item = s.item.empty() ? "" : "  " + (s.item.size() > 40 ? "..." + s.item.substr(s.item.size() - 37) : s.item);
    fmt::print(stderr, "\r\x1b[Kslmops: {} {} {:.3g} {}/s{}{}", s.stage, bar, rate, s.unit, eta, item);
    std::fflush(stderr);
    drawn_ = true;
  }

  Style style_ = Style::Silent;
  bool forced_ = false;
  std::vector<Stage> stages_;
  bool drawn_ = false;
};

}  // namespace slmops::cli
