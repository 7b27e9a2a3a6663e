#include "runtime/value.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <new>

#include "ir/size.h"

namespace slmops::runtime {

struct TensorPool::State {
  std::mutex mu;
  std::map<size_t, std::vector<void*>> free;  // by block size
  size_t cached = 0;  // bytes in `free`
  size_t in_use = 0;  // bytes asked for and not returned (not counting a reused block's slack)
  size_t peak = 0;    // most of in_use at once

  ~State() {
    for (auto& [size, blocks] : free)
      for (void* p : blocks) std::free(p);
  }
};

namespace {

// The pool new_tensor draws from on this thread (set by TensorPool::Scope).
thread_local const std::shared_ptr<TensorPool::State>* current_pool = nullptr;

// A 64-byte aligned block of at least `padded` bytes (a multiple of 64): the smallest of the
// pool's free blocks that holds it and is at most twice its size, or a new one. `capacity`
// receives the block's size. Reusing a larger block (not only one of the same size) keeps
// the set of blocks a run needs small: the sizes a CNN's layers ask for are nearly all
// different, and with exact sizes the blocks a run frees did not fit in the pool's budget,
// so each run gave a few MB back to the heap top (brk) and took them again, page faults and
// all (mobilenet_v2: 840 faults a run, a tenth of its time).
void* take_block(TensorPool::State& s, size_t padded, size_t& capacity) {
  capacity = padded;
  {
    std::lock_guard<std::mutex> lock(s.mu);
    s.in_use += padded;
    s.peak = std::max(s.peak, s.in_use);
    if (padded >= TensorPool::kMinBytes) {
      auto it = s.free.lower_bound(padded);
      if (it != s.free.end() && it->first / 2 <= padded) {
        void* p = it->second.back();
        capacity = it->first;
        it->second.pop_back();
        if (it->second.empty()) s.free.erase(it);
        s.cached -= capacity;
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
// one, and the shortfall went back to the system on every run).
void return_block(TensorPool::State& s, void* p, size_t padded, size_t capacity) {
  {
    std::lock_guard<std::mutex> lock(s.mu);
    s.in_use -= padded;
    if (capacity >= TensorPool::kMinBytes && s.cached + capacity <= 2 * s.peak) {
      s.free[capacity].push_back(p);
      s.cached += capacity;
      return;
    }
  }
  std::free(p);
}

Buffer allocate(size_t size, bool zero) {
  const size_t padded = std::max<size_t>(64, (size + 63) / 64 * 64);
  if (!current_pool) return Buffer::allocate(size, zero);
  std::shared_ptr<TensorPool::State> state = *current_pool;
  size_t capacity = 0;
  void* p = take_block(*state, padded, capacity);
  if (zero) std::memset(p, 0, padded);
  std::shared_ptr<const void> owner(
      p, [state, padded, capacity](const void* q) { return_block(*state, const_cast<void*>(q), padded, capacity); });
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
