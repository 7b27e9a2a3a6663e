#include "runtime/ops/tensor_copy.h"

#include <algorithm>

namespace slmops::runtime::ops {
namespace {

// Side of the square blocks a transposing copy works in: rows of at least 32 bytes, and
// small enough for L1.
template <typename T>
constexpr int64_t kTile = sizeof(T) == 1 ? 64 : 32;

void add_axis(StridedCopy& c, int64_t dim, int64_t src_stride, int64_t dst_stride) {
  c.dims.push_back(dim);
  c.src_strides.push_back(src_stride);
  c.dst_strides.push_back(dst_stride);
}

// Drops unit axes and merges neighbours that are contiguous in both layouts: axes k and
// k+1 merge when stride[k] == stride[k+1]·dims[k+1] on the source and destination sides.
StridedCopy simplified(const StridedCopy& c) {
  StridedCopy s{{}, {}, {}, c.src_offset, c.dst_offset};
  for (size_t k = 0; k < c.dims.size(); ++k) {
    if (c.dims[k] == 1) continue;
    if (!s.dims.empty() && s.src_strides.back() == c.src_strides[k] * c.dims[k] &&
        s.dst_strides.back() == c.dst_strides[k] * c.dims[k]) {
      s.dims.back() *= c.dims[k];
      s.src_strides.back() = c.src_strides[k];
      s.dst_strides.back() = c.dst_strides[k];
    } else {
      add_axis(s, c.dims[k], c.src_strides[k], c.dst_strides[k]);
    }
  }
  return s;
}

// The axes of `c` except those in `skip`, as their own copy (the outer loops of a kernel).
StridedCopy without_axes(const StridedCopy& c, std::initializer_list<size_t> skip) {
  StridedCopy o{{}, {}, {}, c.src_offset, c.dst_offset};
  for (size_t k = 0; k < c.dims.size(); ++k)
    if (std::find(skip.begin(), skip.end(), k) == skip.end()) add_axis(o, c.dims[k], c.src_strides[k], c.dst_strides[k]);
  return o;
}

// Walks the index space of a copy in row-major order from a linear start index, keeping
// the source and destination offsets of the current index.
class Cursor {
 public:
  Cursor(const StridedCopy& c, int64_t start) : src(c.src_offset), dst(c.dst_offset), c_(c), idx_(c.dims.size()) {
    for (size_t k = c.dims.size(); k-- > 0;) {
      idx_[k] = start % c.dims[k];
      start /= c.dims[k];
      src += idx_[k] * c.src_strides[k];
      dst += idx_[k] * c.dst_strides[k];
    }
  }
  void next() {
    for (size_t k = c_.dims.size(); k-- > 0;) {
      src += c_.src_strides[k];
      dst += c_.dst_strides[k];
      if (++idx_[k] < c_.dims[k]) return;
      src -= c_.src_strides[k] * c_.dims[k];
      dst -= c_.dst_strides[k] * c_.dims[k];
      idx_[k] = 0;
    }
  }

  int64_t src, dst;

 private:
  const StridedCopy& c_;
  std::vector<int64_t> idx_;
};

// n elements from s (step ss) to d (step ds).
template <typename T>
void copy_run(const T* s, int64_t ss, T* d, int64_t ds, int64_t n) {
  if (ss == 1 && ds == 1) std::copy_n(s, n, d);
  else if (ss == 0 && ds == 1) std::fill_n(d, n, *s);
  else
    for (int64_t i = 0; i < n; ++i) d[i * ds] = s[i * ss];
}

// One run along the last axis per index of the other axes.
template <typename T>
void copy_rows(const T* src, T* dst, const StridedCopy& c, ThreadPool* pool) {
  const size_t last = c.dims.size() - 1;
  const int64_t n = c.dims[last], ss = c.src_strides[last], ds = c.dst_strides[last];
  const StridedCopy outer = without_axes(c, {last});
  pool->parallel_for(product(outer.dims), std::max<int64_t>(1, kCopyGrainElements / n), [&](int64_t b, int64_t e) {
    Cursor cur(outer, b);
    for (int64_t r = b; r < e; ++r, cur.next()) copy_run(src + cur.src, ss, dst + cur.dst, ds, n);
  });
}

// Copies the block d[x·ds + y] = s[x + y·ss], x < nx, y < ny (both <= kTile<T>), through a
// local buffer: rows of s are read and rows of d written contiguously. Walking a column
// directly would touch one cache line per element, and with power-of-two strides all those
// lines fall into the same cache set and evict each other.
template <typename T>
void transpose_block(const T* s, int64_t ss, T* d, int64_t ds, int64_t nx, int64_t ny) {
  if constexpr (std::is_trivially_copyable_v<T>) {
    T buf[kTile<T>][kTile<T>];
    for (int64_t y = 0; y < ny; ++y) std::copy_n(s + y * ss, nx, buf[y]);
    for (int64_t x = 0; x < nx; ++x)
      for (int64_t y = 0; y < ny; ++y) d[x * ds + y] = buf[y][x];
  } else {
    for (int64_t x = 0; x < nx; ++x)
      for (int64_t y = 0; y < ny; ++y) d[x * ds + y] = s[x + y * ss];
  }
}

// A transposing copy: axis `a` is contiguous in the source and the last axis is contiguous
// in the destination. Copies kTile x kTile blocks over (a, last).
template <typename T>
void copy_tiled(const T* src, T* dst, const StridedCopy& c, size_t a, ThreadPool* pool) {
  const size_t last = c.dims.size() - 1;
  const int64_t na = c.dims[a], nl = c.dims[last];
  const int64_t dst_stride_a = c.dst_strides[a], src_stride_l = c.src_strides[last];
  constexpr int64_t tile = kTile<T>;
  const int64_t tiles_l = (nl + tile - 1) / tile;
  const int64_t tiles = (na + tile - 1) / tile * tiles_l;  // per index of the outer axes
  const StridedCopy outer = without_axes(c, {a, last});
  const int64_t items = product(outer.dims) * tiles;
  pool->parallel_for(items, std::max<int64_t>(1, kCopyGrainElements / (tile * tile)), [&](int64_t b, int64_t e) {
    int64_t outer_index = b / tiles;
    Cursor cur(outer, outer_index);
    for (int64_t item = b; item < e; ++item) {
      for (; outer_index < item / tiles; ++outer_index) cur.next();
      const int64_t x0 = item % tiles / tiles_l * tile, y0 = item % tiles_l * tile;
      transpose_block(src + cur.src + x0 + y0 * src_stride_l, src_stride_l, dst + cur.dst + x0 * dst_stride_a + y0,
                      dst_stride_a, std::min(tile, na - x0), std::min(tile, nl - y0));
    }
  });
}

}  // namespace

StridedCopy StridedCopy::into_contiguous(std::vector<int64_t> dims, std::vector<int64_t> src_strides,
                                         int64_t src_offset) {
  StridedCopy c;
  c.dst_strides = strides_of(dims);
  c.dims = std::move(dims);
  c.src_strides = std::move(src_strides);
  c.src_offset = src_offset;
  return c;
}

void strided_copy(const Tensor& src, Tensor& dst, const StridedCopy& copy, ThreadPool* pool) {
  if (product(copy.dims) == 0) return;
  const StridedCopy c = simplified(copy);
  dispatch_width(src.dtype, "this op", [&](auto tag) {
    using T = decltype(tag);
    const T* s = elements<T>(src);
    T* d = mutable_elements<T>(dst);
    if (c.dims.empty()) {
      d[c.dst_offset] = s[c.src_offset];
      return;
    }
    const size_t last = c.dims.size() - 1;
    const int64_t src_step = c.src_strides[last];
    if (c.dst_strides[last] == 1 && src_step != 1 && src_step != 0)
      for (size_t a = 0; a < last; ++a)
        if (c.src_strides[a] == 1) return copy_tiled(s, d, c, a, pool);
    copy_rows(s, d, c, pool);
  });
}

Tensor copy_to_new(const Tensor& src, const StridedCopy& copy, const std::vector<int64_t>& dims, ThreadPool* pool) {
  const StridedCopy c = simplified(copy);
  const bool unchanged = ir::element_count(dims) == src.numel() && c.src_offset == 0 &&
                         (c.dims.empty() || (c.dims.size() == 1 && c.src_strides[0] == 1));
  if (unchanged) return reshaped(src, dims);
  Tensor dst = new_tensor(src.dtype, dims);
  strided_copy(src, dst, c, pool);
  return dst;
}

void fill_with(Tensor& dst, const Tensor& value, ThreadPool* pool) {
  if (value.numel() < 1) bad_input("the fill value is empty");
  dispatch_width(dst.dtype, "this op", [&](auto tag) {
    using T = decltype(tag);
    const T v = elements<T>(value)[0];
    T* d = mutable_elements<T>(dst);
    pool->parallel_for(static_cast<int64_t>(dst.numel()), kCopyGrainElements,
                       [&](int64_t b, int64_t e) { std::fill(d + b, d + e, v); });
  });
}

}  // namespace slmops::runtime::ops
