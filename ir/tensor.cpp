#include "ir/tensor.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>

#include <sys/mman.h>
#include <unistd.h>

namespace slmops::ir {

Buffer Buffer::from_vector(std::vector<uint8_t> bytes) {
  auto owned = std::make_shared<std::vector<uint8_t>>(std::move(bytes));
  Buffer b;
  b.data_ = owned->data();
  b.size_ = owned->size();
  b.owner_ = std::move(owned);
  return b;
}

Buffer Buffer::from_string(std::string bytes) {
  auto owned = std::make_shared<std::string>(std::move(bytes));
  Buffer b;
  b.data_ = reinterpret_cast<const uint8_t*>(owned->data());
  b.size_ = owned->size();
  b.owner_ = std::move(owned);
  return b;
}

Buffer Buffer::copy_of(const void* data, size_t size) {
  std::vector<uint8_t> v(size);
  if (size) std::memcpy(v.data(), data, size);
  return from_vector(std::move(v));
}

Buffer Buffer::allocate(size_t size, bool zero) {
  size_t padded = (size + 63) / 64 * 64;
  void* p = std::aligned_alloc(64, padded ? padded : 64);
  if (!p) throw std::bad_alloc();
  if (zero) std::memset(p, 0, padded);
  Buffer b;
  b.data_ = static_cast<const uint8_t*>(p);
  b.size_ = size;
  b.owner_ = std::shared_ptr<const void>(p, [](const void* q) { std::free(const_cast<void*>(q)); });
  return b;
}

void Buffer::release_resident_pages() const {
  if (!source_ || size_ == 0) return;
  const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  uintptr_t begin = (reinterpret_cast<uintptr_t>(data_) + page - 1) & ~(page - 1);
  uintptr_t end = (reinterpret_cast<uintptr_t>(data_) + size_) & ~(page - 1);
  if (end > begin) ::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);
}

bool Tensor::aligned() const {
  const size_t align = dtype == DType::Undefined ? 1 : std::max<size_t>(1, traits(dtype).bits / 8);
  return reinterpret_cast<uintptr_t>(data.data()) % align == 0;
}

void Tensor::make_aligned() {
  if (!aligned()) data = Buffer::copy_of(data.data(), data.size());
}

Buffer Buffer::view(std::shared_ptr<const void> owner, const uint8_t* data, size_t size,
                    std::shared_ptr<const FileSource> source, uint64_t file_offset) {
  Buffer b;
  b.owner_ = std::move(owner);
  b.data_ = data;
  b.size_ = size;
  b.source_ = std::move(source);
  b.file_offset_ = file_offset;
  return b;
}

uint64_t element_count(const std::vector<int64_t>& dims) {
  uint64_t n = 1;
  for (auto d : dims) n *= static_cast<uint64_t>(d < 0 ? 0 : d);
  return n;
}

uint64_t Tensor::numel() const { return element_count(dims); }

Tensor Tensor::make(std::string name, DType dtype, std::vector<int64_t> dims, Buffer data) {
  Tensor t;
  t.name = std::move(name);
  t.dtype = dtype;
  t.dtype_code = static_cast<int32_t>(dtype);
  t.dims = std::move(dims);
  t.data = std::move(data);
  return t;
}

}  // namespace slmops::ir
