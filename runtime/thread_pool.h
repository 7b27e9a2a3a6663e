// A small fixed pool for data-parallel loops. Kernels call parallel_for; with one thread
// (or a small range) the loop runs inline.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace slmops::runtime {

class ThreadPool {
 public:
  explicit ThreadPool(int threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int threads() const { return static_cast<int>(workers_.size()) + 1; }
  // parallel_for cuts [0, n) into about this many chunks per thread (at least `grain` long),
  // handed out as threads free up: a caller wanting equal shares makes n a multiple of
  // kChunksPerThread * threads() (the chunks are then equal).
  static constexpr int64_t kChunksPerThread = 4;
  // Calls fn(begin, end) on disjoint chunks covering [0, n); chunks are at least `grain`
  // long. Blocks until all are done. Not reentrant: nested calls run inline.
  void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

 private:
  void worker_loop();
  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable cv_, done_cv_;
  const std::function<void(int64_t, int64_t)>* job_ = nullptr;
  int64_t n_ = 0, chunk_ = 0, next_ = 0;
  // Changed under mu_; atomic so that spinning threads can read them without it.
  std::atomic<int> running_{0};  // workers inside a chunk of the current job
  std::atomic<uint64_t> generation_{0};
  std::atomic<bool> stop_{false};
  bool busy_ = false;
};

}  // namespace slmops::runtime
