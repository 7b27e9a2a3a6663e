// Einsum: an equation such as "bij,bjk->bik" or "...ii->...i". Every dimension carries a
// label (a letter, or one of the dimensions an ellipsis stands for). The operands are reduced
// to unique labels (diagonals of repeated labels), then contracted left to right, two at a
// time, as batched matrix products:
//   C[batch, left, right] = Σ_contracted A[batch, left, contracted] · B[batch, contracted, right]
// Labels needed by no later operand and not in the output are summed out first.
#include <algorithm>
#include <cctype>
#include <string>

#include "runtime/kernels/gemm.h"
#include "runtime/ops/reduce_common.h"

namespace slmops::runtime::ops::reduction {
namespace {

// Letters are labelled by their character code; the dimensions an ellipsis stands for get
// kEllipsis + j, right-aligned across operands so that they broadcast like numpy's.
constexpr int kEllipsis = 128;

using Labels = std::vector<int>;

bool has(const Labels& ls, int l) { return std::find(ls.begin(), ls.end(), l) != ls.end(); }

struct Equation {
  std::vector<Labels> inputs;
  Labels output;
};

// One term of the equation: its letters, with -1 where the ellipsis is.
Labels parse_term(const std::string& term, const std::string& eq) {
  Labels ls;
  for (size_t i = 0; i < term.size(); ++i) {
    if (std::isalpha(static_cast<unsigned char>(term[i]))) {
      ls.push_back(term[i]);
    } else if (term.compare(i, 3, "...") == 0) {
      if (has(ls, -1)) bad_input("equation '{}' has two ellipses in one term", eq);
      ls.push_back(-1);
      i += 2;
    } else {
      bad_input("equation '{}' has an unexpected character '{}'", eq, term[i]);
    }
  }
  return ls;
}

// Replaces the ellipsis of `ls` by `count` labels ending at kEllipsis + total.
Labels expand_ellipsis(const Labels& ls, int64_t count, int64_t total) {
  Labels out;
  for (int l : ls) {
    if (l != -1) out.push_back(l);
    else
      for (int64_t j = total - count; j < total; ++j) out.push_back(kEllipsis + static_cast<int>(j));
  }
  return out;
}

Equation parse_equation(std::string eq, const std::vector<const Tensor*>& xs) {
  eq.erase(std::remove(eq.begin(), eq.end(), ' '), eq.end());
  const size_t arrow = eq.find("->");
  const std::string lhs = eq.substr(0, arrow);
  std::vector<Labels> terms;
  for (size_t b = 0;;) {
    const size_t e = lhs.find(',', b);
    terms.push_back(parse_term(lhs.substr(b, e == std::string::npos ? e : e - b), eq));
    if (e == std::string::npos) break;
    b = e + 1;
  }
  if (terms.size() != xs.size())
    bad_input("equation '{}' has {} operands, the node {} inputs", eq, terms.size(), xs.size());
  // How many dimensions each ellipsis stands for.
  std::vector<int64_t> ellipsis_rank(terms.size());
  int64_t ellipsis_max = 0;
  for (size_t i = 0; i < terms.size(); ++i) {
    const auto letters = static_cast<int64_t>(terms[i].size() - (has(terms[i], -1) ? 1 : 0));
    const auto rank = static_cast<int64_t>(xs[i]->dims.size());
    if (has(terms[i], -1) ? rank < letters : rank != letters)
      bad_input("equation '{}': term {} has {} labels for an input of rank {}", eq, i, letters, rank);
    ellipsis_rank[i] = rank - letters;
    ellipsis_max = std::max(ellipsis_max, ellipsis_rank[i]);
  }
  Equation r;
  for (size_t i = 0; i < terms.size(); ++i)
    r.inputs.push_back(expand_ellipsis(terms[i], ellipsis_rank[i], ellipsis_max));
  if (arrow != std::string::npos) {
    r.output = expand_ellipsis(parse_term(eq.substr(arrow + 2), eq), ellipsis_max, ellipsis_max);
  } else {
    // Implicit output: the ellipsis dimensions, then the letters used once, in ASCII order.
    r.output = expand_ellipsis({-1}, ellipsis_max, ellipsis_max);
    std::vector<int> uses(kEllipsis, 0);
    for (const Labels& t : r.inputs)
      for (int l : t)
        if (l < kEllipsis) ++uses[l];
    for (int l = 0; l < kEllipsis; ++l)
      if (uses[l] == 1) r.output.push_back(l);
  }
  for (size_t i = 0; i < r.output.size(); ++i) {
    const int l = r.output[i];
    if (std::count(r.output.begin(), r.output.end(), l) > 1) bad_input("equation '{}' repeats an output label", eq);
    if (std::none_of(r.inputs.begin(), r.inputs.end(), [&](const Labels& t) { return has(t, l); }))
      bad_input("equation '{}' has an output label that no input has", eq);
  }
  return r;
}

// A tensor whose dimensions carry labels.
struct Operand {
  Tensor t;
  Labels labels;
};

// A contiguous copy of the elements of x at the given per-dimension strides (a transpose,
// diagonal or broadcast view); x itself, reshaped, when the view is x's own layout.
Tensor gather_strided(const Tensor& x, const std::vector<int64_t>& sizes, const std::vector<int64_t>& strides) {
  if (static_cast<int64_t>(x.numel()) == product(sizes) && strides == strides_of(sizes)) return reshaped(x, sizes);
  Tensor y = new_tensor(x.dtype, sizes);
  if (y.numel() == 0) return y;
  dispatch<kNumeric>(x.dtype, "Einsum", [&](auto tag) {
    using T = decltype(tag);
    const T* in = x.values<T>();
    T* out = y.mutable_values<T>();
    const std::vector<int64_t> outer_sizes(sizes.begin(), sizes.end() - (sizes.empty() ? 0 : 1));
    const std::vector<int64_t> outer_strides(strides.begin(), strides.end() - (strides.empty() ? 0 : 1));
    const int64_t n = sizes.empty() ? 1 : sizes.back(), step = strides.empty() ? 0 : strides.back();
    StridedCounter rows(outer_sizes, outer_strides);
    for (int64_t r = 0, total = product(outer_sizes); r < total; ++r, rows.next())
      for (int64_t i = 0; i < n; ++i) *out++ = in[rows.offset() + i * step];
  });
  return y;
}

// The operand with its dimensions in the order of `order` (a permutation of its labels).
Operand permuted(const Operand& x, const Labels& order) {
  const std::vector<int64_t> own = strides_of(x.t.dims);
  std::vector<int64_t> sizes, strides;
  for (int l : order) {
    const auto d = std::find(x.labels.begin(), x.labels.end(), l) - x.labels.begin();
    sizes.push_back(x.t.dims[d]);
    strides.push_back(own[d]);
  }
  return {gather_strided(x.t, sizes, strides), order};
}

// Sums out the labels for which `keep` is false.
template <typename Keep>
Operand sum_out(Operand x, Keep keep, ThreadPool* pool) {
  std::vector<bool> reduced(x.labels.size());
  Labels kept;
  for (size_t d = 0; d < x.labels.size(); ++d) {
    reduced[d] = !keep(x.labels[d]);
    if (!reduced[d]) kept.push_back(x.labels[d]);
  }
  if (kept.size() == x.labels.size()) return x;
  return {reduce(x.t, reduced, ReduceKind::Sum, false, pool), kept};
}

// An input as an operand with unique labels: a repeated label takes the diagonal (its
// strides add up), and size-1 dimensions that broadcast against a larger size elsewhere are
// dropped (the label then lives only where it has its full size).
Operand make_operand(const Tensor& x, const Labels& labels, const std::vector<int64_t>& label_size) {
  const std::vector<int64_t> own = strides_of(x.dims);
  Operand r;
  std::vector<int64_t> sizes, strides;
  for (size_t d = 0; d < labels.size(); ++d) {
    const int l = labels[d];
    if (x.dims[d] == 1 && label_size[l] != 1) continue;
    const auto it = std::find(r.labels.begin(), r.labels.end(), l);
    if (it == r.labels.end()) {
      r.labels.push_back(l);
      sizes.push_back(x.dims[d]);
      strides.push_back(own[d]);
    } else {
      strides[it - r.labels.begin()] += own[d];
    }
  }
  r.t = gather_strided(x, sizes, strides);
  return r;
}

// C[b] = A[b] · B[b] for `batch` row-major [M, K] · [K, N] products.
template <typename T>
void batched_matmul(const T* a, const T* b, T* c, int64_t batch, int64_t M, int64_t K, int64_t N, ThreadPool* pool) {
  if constexpr (std::is_same_v<T, float>) {
    // One product at a time with the pool inside, or many at once single-threaded.
    const bool across = batch >= pool->threads();
    auto run = [&](int64_t b0, int64_t b1) {
      for (int64_t i = b0; i < b1; ++i)
        kernels::sgemm(false, false, M, N, K, 1.0f, a + i * M * K, K, b + i * K * N, N, 0.0f, c + i * M * N, N,
                       across ? nullptr : pool);
    };
    if (across) pool->parallel_for(batch, 1, run);
    else run(0, batch);
  } else {
    // Rows r of all the products, in i-k-j order so that B and C rows stream.
    auto rows = [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const T* ar = a + r * K;
        const T* bm = b + (r / M) * K * N;
        T* cr = c + r * N;
        std::fill(cr, cr + N, T(0));
        for (int64_t k = 0; k < K; ++k)
          for (int64_t n = 0; n < N; ++n) cr[n] += ar[k] * bm[k * N + n];
      }
    };
    pool->parallel_for(batch * M, std::max<int64_t>(1, (1 << 14) / std::max<int64_t>(1, K * N)), rows);
  }
}

// Contracts two operands, keeping the labels for which `needed` is true (output labels and
// labels of later operands).
template <typename Needed>
Operand contract(Operand a, Operand b, Needed needed, ThreadPool* pool) {
  a = sum_out(std::move(a), [&](int l) { return needed(l) || has(b.labels, l); }, pool);
  b = sum_out(std::move(b), [&](int l) { return needed(l) || has(a.labels, l); }, pool);
  Labels batch, left, summed, right;
  for (int l : a.labels) {
    if (!has(b.labels, l)) left.push_back(l);
    else if (needed(l)) batch.push_back(l);
    else summed.push_back(l);
  }
  for (int l : b.labels)
    if (!has(a.labels, l)) right.push_back(l);
  auto concat = [](std::initializer_list<const Labels*> parts) {
    Labels r;
    for (const Labels* p : parts) r.insert(r.end(), p->begin(), p->end());
    return r;
  };
  const Operand pa = permuted(a, concat({&batch, &left, &summed}));
  const Operand pb = permuted(b, concat({&batch, &summed, &right}));
  const size_t nb = batch.size(), nl = left.size(), ns = summed.size();
  const std::vector<int64_t>& da = pa.t.dims;
  const std::vector<int64_t>& db = pb.t.dims;
  const int64_t B = product(da, 0, nb), M = product(da, nb, nb + nl);
  const int64_t K = product(da, nb + nl), N = product(db, nb + ns);
  Operand r;
  r.labels = concat({&batch, &left, &right});
  std::vector<int64_t> dims(da.begin(), da.begin() + nb + nl);
  dims.insert(dims.end(), db.begin() + nb + ns, db.end());
  r.t = new_tensor(a.t.dtype, dims);
  dispatch<kFloats | kSigned | kUnsigned>(a.t.dtype, "Einsum", [&](auto tag) {
    using T = decltype(tag);
    batched_matmul(pa.t.values<T>(), pb.t.values<T>(), r.t.mutable_values<T>(), B, M, K, N, pool);
  });
  return r;
}

void einsum(const ir::Node& n, OpContext& ctx) {
  std::vector<const Tensor*> xs;
  for (size_t i = 0; i < ctx.input_count(); ++i) xs.push_back(&ctx.in(i));
  if (xs.empty()) bad_input("Einsum needs at least one input");
  const Equation eq = parse_equation(n.attr_string("equation", ""), xs);
  const DType dt = xs[0]->dtype;
  const bool half = dt == DType::Float16 || dt == DType::BFloat16;  // computed in float

  // Each label's size; size 1 broadcasts against a larger one.
  std::vector<int64_t> label_size(kEllipsis * 2, 1);
  std::vector<bool> seen(label_size.size(), false);
  for (size_t i = 0; i < xs.size(); ++i) {
    if (xs[i]->dtype != dt) bad_input("Einsum inputs 0 and {} have different types", i);
    for (size_t d = 0; d < eq.inputs[i].size(); ++d) {
      const int l = eq.inputs[i][d];
      const int64_t size = xs[i]->dims[d];
      if (seen[l] && size != label_size[l] && size != 1 && label_size[l] != 1)
        bad_input("Einsum input {} has size {} for a label of size {} elsewhere", i, size, label_size[l]);
      if (!seen[l] || label_size[l] == 1) label_size[l] = size;
      seen[l] = true;
    }
  }

  std::vector<Operand> ops;
  for (size_t i = 0; i < xs.size(); ++i)
    ops.push_back(make_operand(half ? to_float_tensor(*xs[i]) : *xs[i], eq.inputs[i], label_size));
  // ops[0] absorbs the others in turn; a label stays while the output or a later operand has it.
  for (size_t next = 1; next < ops.size(); ++next) {
    auto needed = [&](int l) {
      if (has(eq.output, l)) return true;
      for (size_t j = next + 1; j < ops.size(); ++j)
        if (has(ops[j].labels, l)) return true;
      return false;
    };
    ops[0] = contract(std::move(ops[0]), std::move(ops[next]), needed, ctx.pool);
  }
  Operand r = sum_out(std::move(ops[0]), [&](int l) { return has(eq.output, l); }, ctx.pool);

  // Output order; labels the result lacks have size 1 there.
  const std::vector<int64_t> own = strides_of(r.t.dims);
  std::vector<int64_t> sizes, strides;
  for (int l : eq.output) {
    const auto it = std::find(r.labels.begin(), r.labels.end(), l);
    sizes.push_back(it == r.labels.end() ? 1 : r.t.dims[it - r.labels.begin()]);
    strides.push_back(it == r.labels.end() ? 0 : own[it - r.labels.begin()]);
  }
  Tensor y = gather_strided(r.t, sizes, strides);
  ctx.set_out(0, half ? from_float_tensor(y, dt) : y);
}

}  // namespace

void register_einsum_op() { register_kernel("", "Einsum", 12, simple_kernel(einsum)); }

}  // namespace slmops::runtime::ops::reduction
