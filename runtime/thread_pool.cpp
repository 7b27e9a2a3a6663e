#include "runtime/thread_pool.h"

#include <algorithm>

namespace slmops::runtime {

ThreadPool::ThreadPool(int threads) {
  for (int i = 1; i < threads; ++i) workers_.emplace_back([this] { worker_loop(); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  for (auto& t : workers_) t.join();
}

// A worker joins the current job when it wakes and chunks are left; the caller waits only
// for workers that are inside a chunk (running_), never for one that has not woken yet: on
// a busy machine that wake-up can take longer than the whole loop, which the caller then
// finishes alone. A worker that wakes after the job is done finds no chunks (n_ == 0).
void ThreadPool::worker_loop() {
  uint64_t seen = 0;
  std::unique_lock<std::mutex> lk(mu_);
  while (true) {
    cv_.wait(lk, [&] { return stop_ || generation_ != seen; });
    if (stop_) return;
    seen = generation_;
    while (next_ < n_) {
      int64_t b = next_;
      int64_t e = std::min(n_, b + chunk_);
      next_ = e;
      auto* job = job_;
      ++running_;
      lk.unlock();
      (*job)(b, e);
      lk.lock();
      --running_;
    }
    if (running_ == 0) done_cv_.notify_all();
  }
}

void ThreadPool::parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  const int64_t nthreads = threads();
  {
    std::unique_lock<std::mutex> lk(mu_);
    if (workers_.empty() || n <= grain || busy_) {
      lk.unlock();
      fn(0, n);
      return;
    }
    busy_ = true;
    job_ = &fn;
    n_ = n;
    // About 4 chunks per thread balances uneven work without much locking.
    chunk_ = std::max(grain, (n + nthreads * 4 - 1) / (nthreads * 4));
    next_ = 0;
    ++generation_;
  }
  cv_.notify_all();
  std::unique_lock<std::mutex> lk(mu_);
  while (next_ < n_) {
    int64_t b = next_;
    int64_t e = std::min(n_, b + chunk_);
    next_ = e;
    lk.unlock();
    fn(b, e);
    lk.lock();
  }
  done_cv_.wait(lk, [&] { return running_ == 0; });
  job_ = nullptr;
  n_ = 0;
  next_ = 0;
  busy_ = false;
}

}  // namespace slmops::runtime
