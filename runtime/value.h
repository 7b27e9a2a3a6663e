// What flows along graph edges at run time: a tensor, a sequence of tensors, or nothing
// (an empty optional).
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "ir/tensor.h"

namespace slmops::runtime {

using ir::Buffer;
using ir::DType;
using ir::Tensor;

struct RValue {
  enum class Kind : uint8_t { Tensor, Sequence, None } kind = Kind::None;
  Tensor tensor;
  std::vector<Tensor> sequence;
  // Set for optional-typed values (Optional/OptionalGetElement); None is an empty optional.
  bool optional = false;

  // Kernels read tensors as typed pointers: data at an odd offset (raw_data or external data
  // mapped from a file) is copied to an aligned block here, once per value, so no caller of
  // the executor has to align a model's initializers first.
  static RValue of(Tensor t) {
    RValue v;
    v.kind = Kind::Tensor;
    v.tensor = std::move(t);
    v.tensor.make_aligned();
    return v;
  }
  static RValue of_sequence(std::vector<Tensor> s) {
    RValue v;
    v.kind = Kind::Sequence;
    v.sequence = std::move(s);
    for (auto& t : v.sequence) t.make_aligned();
    return v;
  }
  bool is_tensor() const { return kind == Kind::Tensor; }
};

// Recycles the storage of freed tensors by size. The executor runs the same shapes run
// after run; without this, every large output is a fresh block from malloc, which glibc
// serves (and frees) with mmap above its threshold, so each run page-faults on every 4 KiB
// of its activations again: 1,800 faults and 40% of the CPU time of a GPT run at batch 8.
// A freed block of at least kMinBytes is kept for the next request of the same size, as
// long as the free blocks stay under twice the peak bytes in use; smaller ones go back to
// malloc (cheap there). Every block made while a Scope is active counts towards
// peak_bytes(). Thread-safe; blocks may outlive the pool object.
class TensorPool {
 public:
  static constexpr size_t kMinBytes = 16 * 1024;  // smaller blocks come cheaply from malloc
  struct State;
  TensorPool();
  ~TensorPool();
  TensorPool(const TensorPool&) = delete;
  TensorPool& operator=(const TensorPool&) = delete;

  // Makes new_tensor / new_zero_tensor on the current thread draw from `pool` while it
  // lives (nests; the previous pool is restored after).
  class Scope {
   public:
    explicit Scope(TensorPool& pool);
    ~Scope();
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
    const std::shared_ptr<State>* previous_;
  };

  size_t cached_bytes() const;  // free blocks held for reuse
  size_t peak_bytes() const;    // most bytes handed out and not yet returned, at once

 private:
  std::shared_ptr<State> state_;
};

// A new tensor of the given type and shape with uninitialized storage.
Tensor new_tensor(DType dtype, const std::vector<int64_t>& shape);
// A new tensor filled with zero bytes.
Tensor new_zero_tensor(DType dtype, const std::vector<int64_t>& shape);

// Human-readable "float[2, 3]".
std::string describe(const Tensor& t);

}  // namespace slmops::runtime
