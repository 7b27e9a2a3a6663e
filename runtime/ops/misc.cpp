// CumSum and Det, and the registration of the indexing and selection op files (index_*.cpp).
#include <algorithm>
#include <cmath>
#include <utility>

#include "runtime/ops/index_common.h"

namespace slmops::runtime::ops::index {
namespace {

// Running sums along `axis`, with x seen as [outer, n, inner]:
//   y[o, j, i] = Σ_{j' ≤ j} x[o, j', i]   (j' < j when exclusive; j' ≥ j, j' > j when reverse)
// Each outer block keeps one accumulator per inner position, so loops run over rows.
void cumsum(const ir::Node& node, OpContext& ctx) {
  const Tensor& x = ctx.in(0);
  const int64_t axis = normalize_axis(scalar_int(ctx.in(1), "CumSum axis"), static_cast<int64_t>(x.dims.size()));
  const bool exclusive = node.attr_int("exclusive", 0) != 0;
  const bool reverse = node.attr_int("reverse", 0) != 0;
  const AxisSplit s = split_at(x.dims, axis);
  Tensor& y = ctx.set_out(0, new_tensor(x.dtype, x.dims));
  dispatch<kNumeric>(x.dtype, "CumSum", [&](auto tag) {
    using T = decltype(tag);
    using C = compute_t<T>;
    const T* px = x.values<T>();
    T* py = y.mutable_values<T>();
    auto blocks = [&](int64_t begin, int64_t end) {
      std::vector<C> acc(s.inner);
      for (int64_t o = begin; o < end; ++o) {
        std::fill(acc.begin(), acc.end(), C(0));
        for (int64_t step = 0; step < s.n; ++step) {
          const int64_t row = (o * s.n + (reverse ? s.n - 1 - step : step)) * s.inner;
          const T* in = px + row;
          T* out = py + row;
          for (int64_t i = 0; i < s.inner; ++i) {
            const C v = load(in[i]);
            if (!exclusive) acc[i] += v;
            out[i] = store<T>(acc[i]);
            if (exclusive) acc[i] += v;
          }
        }
      }
    };
    ctx.pool->parallel_for(s.outer, std::max<int64_t>(1, (1 << 14) / std::max<int64_t>(s.n * s.inner, 1)), blocks);
  });
}

// Determinant of each M×M matrix in the last two axes, by Gaussian elimination with partial
// pivoting in double precision: det = (-1)^swaps · Π pivots.
double determinant(double* a, int64_t m) {
  double det = 1;
  for (int64_t c = 0; c < m; ++c) {
    int64_t pivot = c;
    for (int64_t r = c + 1; r < m; ++r)
      if (std::fabs(a[r * m + c]) > std::fabs(a[pivot * m + c])) pivot = r;
    if (a[pivot * m + c] == 0) return 0;
    if (pivot != c) {
      std::swap_ranges(a + pivot * m, a + pivot * m + m, a + c * m);
      det = -det;
    }
    const double p = a[c * m + c];
    det *= p;
    for (int64_t r = c + 1; r < m; ++r) {
      const double f = a[r * m + c] / p;
      for (int64_t k = c + 1; k < m; ++k) a[r * m + k] -= f * a[c * m + k];
    }
  }
  return det;
}

void det(const ir::Node&, OpContext& ctx) {
  const Tensor& x = ctx.in(0);
  const size_t rank = x.dims.size();
  if (rank < 2 || x.dims[rank - 1] != x.dims[rank - 2])
    bad_input("Det input must be square matrices [..., M, M], got {}", describe(x));
  if (!ir::traits(x.dtype).is_float) unsupported_type(x.dtype, "Det");
  const int64_t m = x.dims[rank - 1];
  std::vector<int64_t> shape(x.dims.begin(), x.dims.end() - 2);
  const int64_t batch = product(shape);
  std::vector<double> a = to_doubles(x);  // factored in place, one matrix after another
  std::vector<double> dets(batch);
  ctx.pool->parallel_for(batch, 1, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) dets[i] = determinant(a.data() + i * m * m, m);
  });
  ctx.set_out(0, tensor_from_doubles(x.dtype, shape, dets));
}

}  // namespace
}  // namespace slmops::runtime::ops::index

namespace slmops::runtime {
void register_misc_ops() {
  using namespace ops::index;
  register_kernel("", "CumSum", 11, simple_kernel(cumsum));  // opset 14 only adds types
  register_kernel("", "Det", 11, simple_kernel(det));
  register_gather_ops();
  register_scatter_ops();
  register_layout_ops();
  register_select_ops();
  register_text_ops();
}
}  // namespace slmops::runtime
