// Text ops: StringNormalizer and TfIdfVectorizer. Both read their word lists from attributes
// once, when the kernel is made.
#include <algorithm>
#include <cctype>
#include <map>
#include <memory>
#include <unordered_set>

#include "runtime/ops/index_common.h"

namespace slmops::runtime::ops::index {
namespace {

// ---- StringNormalizer ----------------------------------------------------------------------

// Case changes are ASCII-only: other bytes (UTF-8 sequences included) pass through unchanged,
// and the `locale` attribute is not consulted.
std::string ascii_case(std::string s, bool upper) {
  for (char& ch : s) {
    const auto u = static_cast<unsigned char>(ch);
    ch = static_cast<char>(upper ? std::toupper(u) : std::tolower(u));
  }
  return s;
}

// Drops the stopwords from a [C] or [1, C] string tensor, then changes case (LOWER, UPPER or
// NONE). When every string is dropped the output holds one empty string.
class StringNormalizer : public Kernel {
 public:
  explicit StringNormalizer(const ir::Node& node) {
    const std::string action = node.attr_string("case_change_action", "NONE");
    if (action != "NONE" && action != "LOWER" && action != "UPPER")
      bad_input("StringNormalizer case_change_action '{}' is not NONE, LOWER or UPPER", action);
    lower_ = action == "LOWER";
    upper_ = action == "UPPER";
    case_sensitive_ = node.attr_int("is_case_sensitive", 0) != 0;
    if (const ir::Attribute* a = node.attr("stopwords"))
      for (const std::string& w : a->strings) stopwords_.insert(case_sensitive_ ? w : ascii_case(w, false));
  }

  void run(OpContext& ctx) override {
    const Tensor& x = ctx.in(0);
    const bool row = x.dims.size() == 2;
    if (x.dtype != DType::String || !(x.dims.size() == 1 || (row && x.dims[0] == 1)))
      bad_input("StringNormalizer input must be a string tensor [C] or [1, C], got {}", describe(x));
    std::vector<std::string> kept;
    for (const std::string& s : x.strings) {
      if (stopwords_.count(case_sensitive_ ? s : ascii_case(s, false))) continue;
      kept.push_back(lower_ || upper_ ? ascii_case(s, upper_) : s);
    }
    if (kept.empty()) kept.emplace_back();
    const int64_t count = static_cast<int64_t>(kept.size());
    Tensor& y = ctx.set_out(0, new_tensor(DType::String, row ? std::vector<int64_t>{1, count} : std::vector<int64_t>{count}));
    y.strings = std::move(kept);
  }

 private:
  bool lower_ = false, upper_ = false, case_sensitive_ = false;
  std::unordered_set<std::string> stopwords_;  // lower case unless case-sensitive
};

// ---- TfIdfVectorizer -----------------------------------------------------------------------

// The pool's n-grams as a trie: the path of tokens t_0 .. t_{n-1} leads to the node of that
// n-gram, whose `column` is its output column (-1 for a prefix that is not in the pool).
template <typename Token>
struct NgramTrie {
  struct Node {
    std::map<Token, std::unique_ptr<Node>> next;
    int64_t column = -1;
    const Node* find(const Token& t) const {
      auto it = next.find(t);
      return it == next.end() ? nullptr : it->second.get();
    }
  };
  Node root;

  void add(const Token* gram, int64_t n, int64_t column) {
    Node* node = &root;
    for (int64_t k = 0; k < n; ++k) {
      auto& child = node->next[gram[k]];
      if (!child) child = std::make_unique<Node>();
      node = child.get();
    }
    node->column = column;
  }
};

struct NgramSpec {
  int64_t min_n, max_n, max_skip;
};

// Adds the counts of the pool n-grams found in one row of tokens to `counts` (indexed by
// output column). An n-gram with skip s takes tokens start, start + (s+1), ..., for every
// start and s <= max_skip; unigrams are counted once (at s = 0), as ONNX Runtime does.
template <typename Token>
void count_ngrams(const NgramTrie<Token>& trie, const NgramSpec& spec, const Token* row, int64_t len, float* counts) {
  for (int64_t skip = 0; skip <= spec.max_skip; ++skip) {
    const int64_t step = skip + 1;
    for (int64_t start = 0; start < len; ++start) {
      const typename NgramTrie<Token>::Node* node = &trie.root;
      for (int64_t n = 1; n <= spec.max_n; ++n) {
        const int64_t pos = start + (n - 1) * step;
        if (pos >= len || !(node = node->find(row[pos]))) break;
        if (n >= spec.min_n && node->column >= 0 && (n > 1 || skip == 0)) counts[node->column] += 1;
      }
    }
  }
}

// Counts pool n-grams in each row of a [C] or [N, C] tensor of int32/int64 or string tokens,
// giving float [W] or [N, W] with W = max(ngram_indexes) + 1, then weighs them by mode:
//   TF: count;  IDF: weight if count > 0 else 0;  TFIDF: count · weight
// where weight is weights[column] (1 when there are no weights, indexed by output column as
// in ONNX Runtime and the ONNX reference).
class TfIdfVectorizer : public Kernel {
 public:
  explicit TfIdfVectorizer(const ir::Node& node) {
    spec_ = {node.attr_int("min_gram_length", 0), node.attr_int("max_gram_length", 0), node.attr_int("max_skip_count", 0)};
    if (spec_.min_n < 1 || spec_.max_n < spec_.min_n || spec_.max_skip < 0)
      bad_input("TfIdfVectorizer needs 1 <= min_gram_length <= max_gram_length and max_skip_count >= 0, got {}, {}, {}",
                spec_.min_n, spec_.max_n, spec_.max_skip);
    const std::string mode = node.attr_string("mode", "");
    if (mode != "TF" && mode != "IDF" && mode != "TFIDF")
      bad_input("TfIdfVectorizer mode '{}' is not TF, IDF or TFIDF", mode);
    tf_ = mode != "IDF";
    idf_ = mode != "TF";
    if (const ir::Attribute* w = node.attr("weights")) weights_ = w->floats;

    const std::vector<int64_t> columns = node.attr_ints("ngram_indexes");
    for (int64_t c : columns)
      if (c < 0) bad_input("TfIdfVectorizer ngram_indexes has a negative entry {}", c);
    width_ = columns.empty() ? 0 : *std::max_element(columns.begin(), columns.end()) + 1;
    if (!weights_.empty() && static_cast<int64_t>(weights_.size()) < width_)
      bad_input("TfIdfVectorizer has {} weights for {} output columns", weights_.size(), width_);

    const ir::Attribute* strings = node.attr("pool_strings");
    strings_ = strings && !strings->strings.empty();
    if (strings_) build(string_trie_, strings->strings, node, columns);
    else build(int_trie_, node.attr_ints("pool_int64s"), node, columns);
  }

  void run(OpContext& ctx) override {
    const Tensor& x = ctx.in(0);
    if (x.dims.empty() || x.dims.size() > 2) bad_input("TfIdfVectorizer input must be [C] or [N, C], got {}", describe(x));
    if ((x.dtype == DType::String) != strings_)
      bad_input("TfIdfVectorizer input {} does not match its {} pool", describe(x), strings_ ? "string" : "integer");
    const int64_t rows = x.dims.size() == 2 ? x.dims[0] : 1, len = x.dims.back();
    std::vector<int64_t> shape = {width_};
    if (x.dims.size() == 2) shape.insert(shape.begin(), rows);
    Tensor& y = ctx.set_out(0, new_zero_tensor(DType::Float, shape));
    float* out = y.mutable_values<float>();

    std::vector<int64_t> int_tokens;
    if (!strings_) int_tokens = to_int64s(x);
    ctx.pool->parallel_for(rows, 1, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        float* counts = out + r * width_;
        if (strings_) count_ngrams(string_trie_, spec_, x.strings.data() + r * len, len, counts);
        else count_ngrams(int_trie_, spec_, int_tokens.data() + r * len, len, counts);
        if (idf_)
          for (int64_t c = 0; c < width_; ++c) {
            const float weight = weights_.empty() ? 1.f : weights_[c];
            counts[c] = tf_ ? counts[c] * weight : (counts[c] > 0 ? weight : 0.f);
          }
      }
    });
  }

 private:
  // Fills `trie` from the pool: ngram_counts[g] is the pool offset where the (g+1)-grams
  // start (they run to the next group's offset); n-gram number i overall gets column
  // ngram_indexes[i].
  template <typename Token>
  void build(NgramTrie<Token>& trie, const std::vector<Token>& pool, const ir::Node& node,
             const std::vector<int64_t>& columns) {
    const std::vector<int64_t> starts = node.attr_ints("ngram_counts");
    size_t gram = 0;  // n-grams added so far
    for (size_t g = 0; g < starts.size(); ++g) {
      const int64_t n = static_cast<int64_t>(g) + 1;
      const int64_t begin = starts[g];
      const int64_t end = g + 1 < starts.size() ? starts[g + 1] : static_cast<int64_t>(pool.size());
      if (begin < 0 || end < begin || end > static_cast<int64_t>(pool.size()) || (end - begin) % n != 0)
        bad_input("TfIdfVectorizer ngram_counts entry {} ({}) does not delimit whole {}-grams in a pool of {}", g,
                  begin, n, pool.size());
      for (int64_t at = begin; at < end; at += n, ++gram) {
        if (gram >= columns.size())
          bad_input("TfIdfVectorizer pool has more n-grams than ngram_indexes ({})", columns.size());
        trie.add(pool.data() + at, n, columns[gram]);
      }
    }
    if (gram != columns.size())
      bad_input("TfIdfVectorizer pool has {} n-grams but ngram_indexes has {} entries", gram, columns.size());
  }

  NgramSpec spec_{};
  bool tf_ = true, idf_ = false, strings_ = false;
  int64_t width_ = 0;
  std::vector<float> weights_;
  NgramTrie<int64_t> int_trie_;
  NgramTrie<std::string> string_trie_;
};

}  // namespace

void register_text_ops() {
  register_kernel("", "StringNormalizer", 10, [](const ir::Node& n, const PlanContext&) {
    return std::make_unique<StringNormalizer>(n);
  });
  register_kernel("", "TfIdfVectorizer", 9, [](const ir::Node& n, const PlanContext&) {
    return std::make_unique<TfIdfVectorizer>(n);
  });
}

}  // namespace slmops::runtime::ops::index
