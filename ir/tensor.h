// Tensor data. A Buffer is an immutable view on bytes with shared ownership: it may own a
// heap block, or look into a memory-mapped external-data file (then it also remembers the
// file and offset, so that saving can copy the bytes file-to-file without touching them).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "ir/dtype.h"

namespace slmops::ir {

// An open, read-only file that buffers may point into (external data). Owned by formats/.
struct FileSource {
  virtual ~FileSource() = default;
  virtual int fd() const = 0;
  virtual const std::string& path() const = 0;
};

class Buffer {
 public:
  Buffer() = default;
  // Takes ownership of `bytes`.
  static Buffer from_vector(std::vector<uint8_t> bytes);
  static Buffer from_string(std::string bytes);
  static Buffer copy_of(const void* data, size_t size);
  // A new block, 64-byte aligned, owned by this buffer (and its copies). Contents are
  // unspecified unless `zero` is set.
  static Buffer allocate(size_t size, bool zero = false);
  // A view that keeps `owner` alive; `source`/`file_offset` say where the bytes live on disk.
  static Buffer view(std::shared_ptr<const void> owner, const uint8_t* data, size_t size,
                     std::shared_ptr<const FileSource> source = nullptr, uint64_t file_offset = 0);

  const uint8_t* data() const { return data_; }
  // Writable access, for buffers made by allocate() whose contents the caller produces.
  uint8_t* mutable_data() const { return const_cast<uint8_t*>(data_); }
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  const FileSource* source() const { return source_.get(); }
  // For a view into a memory-mapped file (source() set): tells the kernel the pages wholly
  // inside this buffer are not needed now, so they leave the resident set; a later read maps
  // them in again from the file. A no-op for heap memory (whose contents that would lose).
  void release_resident_pages() const;
  uint64_t file_offset() const { return file_offset_; }

  template <typename T>
  const T* as() const { return reinterpret_cast<const T*>(data_); }

 private:
  std::shared_ptr<const void> owner_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  std::shared_ptr<const FileSource> source_;
  uint64_t file_offset_ = 0;
};

struct Tensor {
  // How the tensor was stored in the file it came from; the writer keeps the same form
  // unless told otherwise, so that an untouched model round-trips byte for byte.
  enum class Storage : uint8_t { Raw, Typed, External, Opaque };

  std::string name;
  DType dtype = DType::Undefined;
  int32_t dtype_code = 0;  // the file's data_type code, kept even when it is not a known DType
  std::vector<int64_t> dims;
  Buffer data;                       // little-endian element bytes; sub-byte types packed
  std::vector<std::string> strings;  // DType::String tensors
  Storage storage = Storage::Raw;
  std::string residual;  // serialized fields the IR does not model (doc_string, metadata, ...)

  uint64_t numel() const;
  // Whether data() is a multiple of the element size. Views into model files need not be:
  // protobuf and other writers put raw_data / external data at any byte offset, and reading a
  // misaligned float* is undefined behaviour. make_aligned() copies such data (the copy no
  // longer points into the file); code that reads typed values calls it first.
  bool aligned() const;
  void make_aligned();
  size_t nbytes() const { return storage_bytes(dtype, numel()); }
  bool has_data() const { return storage != Storage::Opaque; }

  template <typename T>
  const T* values() const { return data.as<T>(); }
  template <typename T>
  T* mutable_values() const { return reinterpret_cast<T*>(data.mutable_data()); }

  // Builders for tests and passes.
  static Tensor make(std::string name, DType dtype, std::vector<int64_t> dims, Buffer data);
  template <typename T>
  static Tensor from_values(std::string name, DType dtype, std::vector<int64_t> dims,
                            const std::vector<T>& values) {
    return make(std::move(name), dtype, std::move(dims),
                Buffer::copy_of(values.data(), values.size() * sizeof(T)));
  }
};

// Product of dims; 1 for a scalar.
uint64_t element_count(const std::vector<int64_t>& dims);

}  // namespace slmops::ir
