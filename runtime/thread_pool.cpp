#include "runtime/thread_pool.h"

#include <algorithm>
#include <chrono>

#include <immintrin.h>

namespace slmops::runtime {

namespace {

// Busy-waits up to kSpin for done() (checking the clock every 64 pauses); true if it came.
// Sleeping on a condition variable and being woken costs a futex round trip and, in a VM, the
// host scheduling an idle vCPU again: tens of microseconds, more than many kernels take. ONNX
// Runtime's pool spins the same way before it sleeps.
constexpr std::chrono::microseconds kSpin{100};

template <typename Done>
bool spin_until(Done&& done) {
  const auto end = std::chrono::steady_clock::now() + kSpin;
  while (true) {
    for (int i = 0; i < 64; ++i) {
      if (done()) return true;
      _mm_pause();
    }
    if (std::chrono::steady_clock::now() >= end) return false;
  }
}

}  // namespace

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
// Between jobs a worker spins for a while (see kSpin) before it sleeps on cv_; the caller
// spins the same way for running_ to reach 0 before it sleeps on done_cv_.
void ThreadPool::worker_loop() {
  uint64_t seen = 0;
  while (true) {
    spin_until([&] { return stop_.load(std::memory_order_acquire) || generation_.load(std::memory_order_acquire) != seen; });
    std::unique_lock<std::mutex> lk(mu_);
    cv_.wait(lk, [&] { return stop_.load() || generation_.load() != seen; });
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
    // A few chunks per thread balance uneven work without much locking.
    const int64_t chunks = nthreads * kChunksPerThread;
    chunk_ = std::max(grain, (n + chunks - 1) / chunks);
    next_ = 0;
    generation_.fetch_add(1, std::memory_order_release);
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
  if (running_ != 0) {
    lk.unlock();
    spin_until([&] { return running_.load(std::memory_order_acquire) == 0; });
    lk.lock();
  }
  done_cv_.wait(lk, [&] { return running_ == 0; });
  job_ = nullptr;
  n_ = 0;
  next_ = 0;
  busy_ = false;
}

}  // namespace slmops::runtime
