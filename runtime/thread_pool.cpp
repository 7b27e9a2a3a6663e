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

void ThreadPool::worker_loop() {
  uint64_t seen = 0;
  while (true) {
    std::unique_lock<std::mutex> lk(mu_);
    cv_.wait(lk, [&] { return stop_ || generation_ != seen; });
    if (stop_) return;
    seen = generation_;
    while (next_ < n_) {
      int64_t b = next_;
      int64_t e = std::min(n_, b + chunk_);
      next_ = e;
      auto* job = job_;
      lk.unlock();
      (*job)(b, e);
      lk.lock();
    }
    if (--pending_ == 0) done_cv_.notify_all();
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
    pending_ = static_cast<int>(workers_.size());
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
  done_cv_.wait(lk, [&] { return pending_ == 0; });
  job_ = nullptr;
  n_ = 0;
  busy_ = false;
}

}  // namespace slmops::runtime
