#include "runtime/value.h"

#include "ir/size.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>
#include <unordered_map>

#include <fmt/format.h>
#include <fmt/ranges.h>

namespace slmops::runtime {

struct TensorPool::State {
  std::mutex mu;
  std::unordered_map<size_t, std::vector<void*>> free;  // by block size
  size_t cached = 0;  // bytes in `free`
  size_t in_use = 0;  // bytes handed out and not returned
  size_t peak = 0;    // most of in_use at once

  ~State() {
    for (auto& [size, blocks] : free)
      for (void* p : blocks) std::free(p);
  }
};

namespace {

// The pool new_tensor draws from on this thread (set by TensorPool::Scope).
thread_local const std::shared_ptr<TensorPool::State>* current_pool = nullptr;

// A 64-byte aligned block of `padded` bytes (a multiple of 64), from the pool's free blocks
// of that size when it has one. Every block counts towards in_use until it is returned.
void* take_block(TensorPool::State& s, size_t padded) {
  {
    std::lock_guard<std::mutex> lock(s.mu);
    s.in_use += padded;
    s.peak = std::max(s.peak, s.in_use);
    if (padded >= TensorPool::kMinBytes) {
      auto it = s.free.find(padded);
      if (it != s.free.end() && !it->second.empty()) {
        void* p = it->second.back();
        it->second.pop_back();
        s.cached -= padded;
        return p;
      }
    }
  }
  void* p = std::aligned_alloc(64, padded);
  if (!p) {
    std::lock_guard<std::mutex> lock(s.mu);
    s.in_use -= padded;
    throw std::bad_alloc();
  }
  return p;
}

// Keeps a large block for reuse while the pool holds fewer free bytes than twice its peak
// use (once was not enough: the sizes a run frees do not match the sizes it asks for one to
// one, and the shortfall went back to mmap on every run).
void return_block(TensorPool::State& s, void* p, size_t padded) {
  {
    std::lock_guard<std::mutex> lock(s.mu);
    s.in_use -= padded;
    if (padded >= TensorPool::kMinBytes && s.cached + padded <= 2 * s.peak) {
      s.free[padded].push_back(p);
      s.cached += padded;
      return;
    }
  }
  std::free(p);
}

Buffer allocate(size_t size, bool zero) {
  const size_t padded = std::max<size_t>(64, (size + 63) / 64 * 64);
  if (!current_pool) return Buffer::allocate(size, zero);
  std::shared_ptr<TensorPool::State> state = *current_pool;
  void* p = take_block(*state, padded);
  if (zero) std::memset(p, 0, padded);
  std::shared_ptr<const void> owner(p, [state, padded](const void* q) { return_block(*state, const_cast<void*>(q), padded); });
  return Buffer::view(std::move(owner), static_cast<const uint8_t*>(p), size);
}

}  // namespace

TensorPool::TensorPool() : state_(std::make_shared<State>()) {}
TensorPool::~TensorPool() = default;

TensorPool::Scope::Scope(TensorPool& pool) : previous_(current_pool) { current_pool = &pool.state_; }
TensorPool::Scope::~Scope() { current_pool = previous_; }

size_t TensorPool::cached_bytes() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  return state_->cached;
}

size_t TensorPool::peak_bytes() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  return state_->peak;
}

// Bytes of a new tensor, refused (naming its type and shape) when the shape overflows or
// exceeds the memory limit. The message is built only on failure: this runs for every output.
static uint64_t checked_bytes(const Tensor& t) {
  auto n = ir::checked_element_count(t.dims);
  auto bytes = n ? ir::checked_storage_bytes(t.dtype, *n) : std::nullopt;
  if (!bytes || *bytes > ir::allocation_limit()) return ir::tensor_bytes_or_throw(t.dtype, t.dims, "tensor " + describe(t));
  return *bytes;
}

Tensor new_tensor(DType dtype, const std::vector<int64_t>& shape) {
  Tensor t;
  t.dtype = dtype;
  t.dtype_code = static_cast<int32_t>(dtype);
  t.dims = shape;
  uint64_t bytes = checked_bytes(t);
  if (dtype == DType::String) t.strings.resize(t.numel());
  else t.data = allocate(bytes, false);
  return t;
}

Tensor new_zero_tensor(DType dtype, const std::vector<int64_t>& shape) {
  Tensor t;
  t.dtype = dtype;
  t.dtype_code = static_cast<int32_t>(dtype);
  t.dims = shape;
  uint64_t bytes = checked_bytes(t);
  if (dtype == DType::String) t.strings.resize(t.numel());
  else t.data = allocate(bytes, true);
  return t;
}

std::string describe(const Tensor& t) { return fmt::format("{}[{}]", ir::dtype_name(t.dtype), fmt::join(t.dims, ", ")); }

}  // namespace slmops::runtime
