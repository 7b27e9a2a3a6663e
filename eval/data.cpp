#include "eval/data.h"

#include <fmt/ranges.h>

#include <cstring>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <unordered_set>

#include "eval/check_data.h"
#include "formats/file_util.h"
#include "formats/npz.h"
#include "formats/test_data.h"
#include "ir/error.h"
#include "ir/float_width.h"
#include "ir/size.h"
#include "tokenizers/chat_template.h"
#include "tokenizers/tokenizer.h"

namespace slmops::eval {

namespace fs = std::filesystem;
using runtime::RValue;

namespace {

std::vector<const ir::Value*> feedable_inputs(const ir::Model& m) {
  std::vector<const ir::Value*> v;
  for (auto& vi : m.graph->inputs)
    if (vi.value) v.push_back(vi.value);
  return v;
}

std::string shape_text(const ir::TensorType& t) {
  std::vector<std::string> d;
  for (auto& x : t.dims) d.push_back(x.known() ? std::to_string(x.value) : (x.param.empty() ? "?" : x.param));
  return "[" + fmt::format("{}", fmt::join(d, ", ")) + "]";
}

// Float data for a model converted to 16-bit floats (convert --to): the values in the input's
// type, rounded as the conversion rounds; other tensors unchanged.
void adopt_float_width(ir::Tensor& t, const ir::Value& input) {
  if (input.type.is_tensor) t = ir::to_float_width(t, input.type.elem());
}

// Checks that an array (samples along axis 0 when `batched`) fits the declared input type.
void check_fits(const std::string& what, const ir::Tensor& t, const ir::Value& input, bool batched) {
  const auto& ty = input.type;
  if (!ty.is_tensor) return;
  if (ty.elem() != t.dtype)
    bad_input("{}: array '{}' is {}, model input '{}' expects {}", what, input.name, ir::dtype_name(t.dtype),
              input.name, ir::dtype_name(ty.elem()));
  if (!ty.has_shape) return;
  if (t.dims.size() != ty.dims.size())
    bad_input("{}: array '{}' has shape [{}], model input '{}' expects rank {} {}", what, input.name,
              fmt::join(t.dims, ", "), input.name, ty.dims.size(), shape_text(ty));
  for (size_t i = batched ? 1 : 0; i < ty.dims.size(); ++i)
    if (ty.dims[i].known() && ty.dims[i].value != t.dims[i])
      bad_input("{}: array '{}' has shape [{}], model input '{}' expects {}", what, input.name,
                fmt::join(t.dims, ", "), input.name, shape_text(ty));
}

// Rows [a, b) of an array whose first axis is samples (shares nothing: a compact copy).
ir::Tensor slice_rows(const ir::Tensor& t, int64_t a, int64_t b) {
  std::vector<int64_t> dims = t.dims;
  dims[0] = b - a;
  const size_t row = t.dims.empty() || t.dims[0] == 0 ? 0 : t.nbytes() / static_cast<size_t>(t.dims[0]);
  return ir::Tensor::make("", t.dtype, dims, ir::Buffer::copy_of(t.data.data() + a * row, (b - a) * row));
}

// Cuts samples [begin, end) into batches of at most `size`; fill(batch, a, b) adds the data
// of samples [a, b).
template <typename Fill>
std::vector<Batch> cut_batches(int64_t begin, int64_t end, int64_t size, Fill fill) {
  std::vector<Batch> out;
  for (int64_t a = begin, b; a < end; a = b) {
    b = a + std::min(size, end - a);  // never a + size: size may be huge
    Batch batch;
    batch.first = a;
    batch.count = b - a;
    fill(batch, a, b);
    out.push_back(std::move(batch));
  }
  return out;
}

class NpzSource : public DataSource {
 public:
  NpzSource(const fs::path& path, const ir::Model& m, const DataOptions& o) : opts_(o), path_(path.string()) {
    archive_ = formats::load_npz(path);
    inputs_ = feedable_inputs(m);
    n_ = -1;
    for (const ir::Value* in : inputs_) {
      if (!archive_.arrays.count(in->name)) {
        if (in->initializer) {
          arrays_.push_back(nullptr);  // a default from the model
          continue;
        }
        bad_input("{}: no array for model input '{}' (it has: {})", path_, in->name, fmt::join(archive_.names, ", "));
      }
      ir::Tensor& t = archive_.arrays.at(in->name);
      if (t.dims.empty()) bad_input("{}: array '{}' is a scalar; the first axis must be samples", path_, in->name);
      adopt_float_width(t, *in);
      check_fits(path_, t, *in, true);
      if (n_ >= 0 && t.dims[0] != n_)
        bad_input("{}: array '{}' has {} samples, other inputs have {}", path_, in->name, t.dims[0], n_);
      n_ = t.dims[0];
      arrays_.push_back(&t);
    }
    if (n_ <= 0) bad_input("{}: no samples", path_);
    std::string lab = o.labels;
    if (lab.empty())
      for (const char* cand : {"label", "labels"})
        if (archive_.arrays.count(cand)) lab = cand;
    if (!lab.empty()) {
      const ir::Tensor& l = archive_.at(lab);
      if (l.dims.empty() || l.dims[0] != n_)
        bad_input("{}: labels '{}' have shape [{}], expected {} samples on the first axis", path_, lab,
                  fmt::join(l.dims, ", "), n_);
      if (l.dtype != ir::DType::Int64 && l.dtype != ir::DType::Int32)
        bad_input("{}: labels '{}' are {}, expected int64 (or int32) class ids", path_, lab, ir::dtype_name(l.dtype));
      labels_ = &l;
    }
  }
  int64_t samples() const override { return n_; }
  bool has_labels() const override { return labels_ != nullptr; }
  std::string describe() const override { return path_; }
  std::vector<Batch> batches(int64_t begin, int64_t end) const override {
    return cut_batches(begin, end, opts_.batch_size, [&](Batch& batch, int64_t a, int64_t b) {
      for (const ir::Tensor* t : arrays_) batch.feeds.push_back(t ? RValue::of(slice_rows(*t, a, b)) : RValue{});
      if (labels_) {
        ir::Tensor l = slice_rows(*labels_, a, b);
        if (l.dtype == ir::DType::Int32) {
          std::vector<int64_t> v(l.numel());
          for (size_t i = 0; i < v.size(); ++i) v[i] = l.values<int32_t>()[i];
          l = ir::Tensor::from_values("", ir::DType::Int64, l.dims, v);
        }
        batch.labels = std::move(l);
      }
    });
  }

 private:
  DataOptions opts_;
  std::string path_;
  formats::NpzArchive archive_;
  std::vector<const ir::Value*> inputs_;
  std::vector<const ir::Tensor*> arrays_;
  const ir::Tensor* labels_ = nullptr;
  int64_t n_ = 0;
};

// One sample per test_data_set folder (inputs are used as stored).
class TestDataSource : public DataSource {
 public:
  TestDataSource(const fs::path& dir, const ir::Model& m) : dir_(dir.string()) {
    sets_ = data_set_folders(dir);
    inputs_ = feedable_inputs(m);
    outputs_ = m.graph->outputs.size();
  }
  int64_t samples() const override { return static_cast<int64_t>(sets_.size()); }
  std::string describe() const override { return dir_; }
  std::vector<Batch> batches(int64_t begin, int64_t end) const override {
    std::vector<Batch> out;
    for (int64_t k = begin; k < end; ++k) {
      Batch b;
      b.first = k;
      b.count = 1;
      for (size_t i = 0; i < inputs_.size(); ++i) {
        fs::path p = sets_[k] / fmt::format("input_{}.pb", i);
        if (!formats::path_exists(p)) {
          if (inputs_[i]->initializer) {
            b.feeds.emplace_back();
            continue;
          }
          bad_input("{}: no data for model input '{}' (input_{}.pb)", sets_[k].string(), inputs_[i]->name, i);
        }
        auto v = formats::load_data_value(p, inputs_[i]->type.container);
        if (v.kind != formats::DataValue::Kind::Tensor)
          bad_input("{}: only tensor inputs can be evaluated", p.string());
        adopt_float_width(v.tensor, *inputs_[i]);
        check_fits(p.string(), v.tensor, *inputs_[i], false);
        b.feeds.push_back(RValue::of(std::move(v.tensor)));
      }
      for (size_t o = 0; o < outputs_; ++o) {
        fs::path p = sets_[k] / fmt::format("output_{}.pb", o);
        if (formats::path_exists(p)) b.reference.push_back(formats::load_tensor_pb(p));
      }
      out.push_back(std::move(b));
    }
    return out;
  }

 private:
  std::string dir_;
  std::vector<fs::path> sets_;
  std::vector<const ir::Value*> inputs_;
  size_t outputs_;
};

// JSONL: one JSON object per line, keys = model input names, values = flat integer arrays
// (token ids). Rows are batched when they have the same length.
class JsonlSource : public DataSource {
 public:
  JsonlSource(const fs::path& path, const ir::Model& m, const DataOptions& o) : opts_(o), path_(path.string()) {
    inputs_ = feedable_inputs(m);
    std::istringstream in(formats::read_text_file(path));
    std::string line;
    int lineno = 0;
    while (std::getline(in, line)) {
      ++lineno;
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
      if (j.is_discarded() || !j.is_object()) bad_input("{}:{}: not a JSON object", path_, lineno);
      if (j.contains("text")) {
        add_text_row(j["text"], m, lineno);
        continue;
      }
      if (j.contains("messages")) {
        add_chat_row(j["messages"], m, lineno);
        continue;
      }
      Row row;
      for (const ir::Value* inp : inputs_) {
        if (!j.contains(inp->name)) {
          if (inp->initializer) {
            row.push_back({});
            continue;
          }
          bad_input("{}:{}: no \"{}\" (a model input)", path_, lineno, inp->name);
        }
        const auto& a = j[inp->name];
        if (!a.is_array() || a.empty()) bad_input("{}:{}: \"{}\" must be a non-empty list of integers", path_, lineno, inp->name);
        std::vector<int64_t> ids;
        for (auto& x : a) {
          if (!x.is_number_integer())
            bad_input("{}:{}: \"{}\" must be a flat list of integers (token ids), found {}", path_, lineno, inp->name,
                      x.dump());
          ids.push_back(x.get<int64_t>());
        }
        row.push_back(std::move(ids));
      }
      push_row(std::move(row), lineno);
    }
    if (rows_.empty()) bad_input("{}: no rows", path_);
    for (size_t i = 0; i < inputs_.size(); ++i)
      if (inputs_[i]->type.is_tensor && inputs_[i]->type.elem() != ir::DType::Int64 &&
          inputs_[i]->type.elem() != ir::DType::Int32 && !rows_[0][i].empty())
        bad_input("{}: model input '{}' expects {}, JSONL rows hold token ids (integers)", path_, inputs_[i]->name,
                  ir::dtype_name(inputs_[i]->type.elem()));
  }
  int64_t samples() const override { return static_cast<int64_t>(rows_.size()); }
  std::string describe() const override { return path_; }
  std::vector<Batch> batches(int64_t begin, int64_t end) const override {
    return cut_batches(begin, end, opts_.batch_size, [&](Batch& batch, int64_t a, int64_t b) {
      for (size_t i = 0; i < inputs_.size(); ++i) {
        if (rows_[a][i].empty() && is_empty_past(*inputs_[i])) {
          const auto& d = inputs_[i]->type.dims;
          batch.feeds.push_back(RValue::of(
              ir::Tensor::from_values("", ir::DType::Float, {b - a, d[1].value, 0, d[3].value}, std::vector<float>{})));
          continue;
        }
        if (rows_[a][i].empty()) {
          batch.feeds.emplace_back();
          continue;
        }
        const int64_t len = static_cast<int64_t>(rows_[a][i].size());
        std::vector<int64_t> flat;
        for (int64_t r = a; r < b; ++r) flat.insert(flat.end(), rows_[r][i].begin(), rows_[r][i].end());
        ir::DType dt = inputs_[i]->type.elem() == ir::DType::Int32 ? ir::DType::Int32 : ir::DType::Int64;
        ir::Tensor t = ir::Tensor::from_values("", ir::DType::Int64, {b - a, len}, flat);
        if (dt == ir::DType::Int32) {
          std::vector<int32_t> v(flat.begin(), flat.end());
          t = ir::Tensor::from_values("", dt, {b - a, len}, v);
        }
        batch.feeds.push_back(RValue::of(std::move(t)));
      }
      // Sliding-window rows carry their own targets; a row without them (batched beside them)
      // predicts its next tokens.
      bool explicit_targets = false;
      for (int64_t r = a; r < b; ++r) explicit_targets = explicit_targets || !targets_[r].empty();
      if (!explicit_targets) return;
      const auto& first_ids = rows_[a][static_cast<size_t>(ids_input_)];
      const int64_t len = static_cast<int64_t>(first_ids.size());
      std::vector<int64_t> flat;
      for (int64_t r = a; r < b; ++r) {
        if (!targets_[r].empty()) {
          flat.insert(flat.end(), targets_[r].begin(), targets_[r].end());
          continue;
        }
        const auto& ids = rows_[r][static_cast<size_t>(ids_input_)];
        for (int64_t k = 0; k < len; ++k) flat.push_back(k + 1 < len ? ids[static_cast<size_t>(k + 1)] : -1);
      }
      batch.labels = ir::Tensor::from_values("", ir::DType::Int64, {b - a, len}, flat);
    });
  }

 private:
  using Row = std::vector<std::vector<int64_t>>;

  void push_row(Row row, int lineno, std::vector<int64_t> targets = {}) {
    if (!rows_.empty())
      for (size_t i = 0; i < row.size(); ++i)
        if (row[i].size() != rows_[0][i].size() && opts_.batch_size > 1)
          bad_input("{}:{}: rows have different lengths ({} and {}); ragged rows cannot be batched, use "
                    "--batch-size 1",
                    path_, lineno, row[i].size(), rows_[0][i].size());
    rows_.push_back(std::move(row));
    targets_.push_back(std::move(targets));
  }

  // A KV-cache input (past_key_values.N.*, [batch, heads, past, head_dim] with heads and
  // head_dim known) that text rows leave empty.
  static bool is_empty_past(const ir::Value& v) {
    const auto& t = v.type;
    return v.name.rfind("past_key_values.", 0) == 0 && t.is_tensor && t.elem() == ir::DType::Float && t.has_shape &&
           t.dims.size() == 4 && t.dims[1].known() && t.dims[3].known();
  }

  // The tokenizer for text and chat rows: --tokenizer, else the model folder's tokenizer.json.
  std::string tokenizer_spec(const ir::Model& m, int lineno) const {
    if (!opts_.tokenizer.empty()) return opts_.tokenizer;
    const fs::path own = fs::path(m.path).parent_path() / "tokenizer.json";
    if (m.path.empty() || !formats::path_exists(own))
      bad_input(
          "{}:{}: a text or chat row needs a tokenizer: --tokenizer FILE_OR_FOLDER (the model's folder has no "
          "tokenizer.json)",
          path_, lineno);
    return own.string();
  }

  // A {"text": ...} row: tokenized with the post-processor's special tokens added, as Hugging
  // Face's tokenizer(text) does.
  void add_text_row(const nlohmann::json& text, const ir::Model& m, int lineno) {
    if (!text.is_string()) bad_input("{}:{}: \"text\" must be a string", path_, lineno);
    if (!tokenizer_) tokenizer_ = std::make_unique<tok::Tokenizer>(tok::Tokenizer::load(tokenizer_spec(m, lineno)));
    add_token_row(tokenizer_->encode(text.get<std::string>()), m, lineno);
  }

  // A {"messages": [...]} row: the tokenizer folder's chat template rendered (no generation
  // prompt), then tokenized without adding special tokens, as apply_chat_template(tokenize=True).
  void add_chat_row(const nlohmann::json& messages, const ir::Model& m, int lineno) {
    if (!messages.is_array() || messages.empty())
      bad_input("{}:{}: \"messages\" must be a non-empty list of {{\"role\", \"content\"}} objects", path_, lineno);
    if (!tokenizer_) tokenizer_ = std::make_unique<tok::Tokenizer>(tok::Tokenizer::load(tokenizer_spec(m, lineno)));
    if (!chat_) chat_ = std::make_unique<tok::ChatTemplate>(tok::ChatTemplate::load(tokenizer_spec(m, lineno)));
    tok::ChatRequest r;
    r.messages = nlohmann::ordered_json::parse(messages.dump());
    std::string text;
    try {
      text = chat_->render(r);
    } catch (const jinja::Raised& e) {
      bad_input("{}:{}: the chat template raised an exception: {}", path_, lineno, e.what());
    } catch (const Error& e) {
      bad_input("{}:{}: {}", path_, lineno, e.what());
    }
    add_token_row(tokenizer_->encode(text, false), m, lineno);
  }

  // Token ids cut into --context-length windows (every --stride tokens), one sample each. The
  // token-id input gets the ids; attention_mask ones, position_ids 0..n-1. With a stride
  // shorter than the window, a window scores only the tokens the previous one did not.
  void add_token_row(const std::vector<int32_t>& ids, const ir::Model& m, int lineno) {
    int ids_input = -1;
    for (size_t i = 0; i < inputs_.size(); ++i)
      if (inputs_[i]->name == "input_ids") ids_input = static_cast<int>(i);
    for (size_t i = 0; i < inputs_.size() && ids_input < 0; ++i)
      if (inputs_[i]->type.is_tensor &&
          (inputs_[i]->type.elem() == ir::DType::Int64 || inputs_[i]->type.elem() == ir::DType::Int32))
        ids_input = static_cast<int>(i);
    if (ids_input < 0)
      bad_input("{}:{}: a text row needs a model input of token ids (int64), the model has none", path_, lineno);
    ids_input_ = ids_input;
    (void)m;
    if (ids.empty()) bad_input("{}:{}: the text has no tokens", path_, lineno);
    const size_t window = opts_.context_length > 0 ? static_cast<size_t>(opts_.context_length) : ids.size();
    const size_t stride = opts_.stride > 0 ? static_cast<size_t>(opts_.stride) : window;
    const bool overlap = stride < window;
    size_t scored_to = 0;  // tokens [0, scored_to) have been scored (or are the first token)
    for (size_t at = 0;; at += stride) {
      const size_t end = std::min(at + window, ids.size());
      const size_t n = end - at;
      Row row(inputs_.size());
      for (size_t i = 0; i < inputs_.size(); ++i) {
        const std::string& name = inputs_[i]->name;
        if (static_cast<int>(i) == ids_input) {
          row[i].assign(ids.begin() + static_cast<std::ptrdiff_t>(at), ids.begin() + static_cast<std::ptrdiff_t>(end));
        } else if (name == "attention_mask") {
          row[i].assign(n, 1);
        } else if (name == "position_ids") {
          for (size_t k = 0; k < n; ++k) row[i].push_back(static_cast<int64_t>(k));
        } else if (is_empty_past(*inputs_[i])) {
          // a decoder with a KV cache: the past is empty (batches() feeds [batch, heads, 0, dim])
        } else if (!inputs_[i]->initializer) {
          bad_input("{}:{}: a text row gives token ids, attention_mask and position_ids; model input '{}' needs "
                    "its own values (write rows with every input instead)",
                    path_, lineno, name);
        }
      }
      std::vector<int64_t> targets;
      if (overlap) {
        // Position k predicts token at + k + 1; only tokens not scored by an earlier window count.
        targets.assign(n, -1);
        for (size_t k = 0; k + 1 < n; ++k)
          if (at + k + 1 >= scored_to) targets[k] = ids[at + k + 1];
      }
      push_row(std::move(row), lineno, std::move(targets));
      scored_to = end;
      if (end == ids.size()) break;
    }
  }

  DataOptions opts_;
  std::string path_;
  std::vector<const ir::Value*> inputs_;
  std::vector<Row> rows_;
  std::vector<std::vector<int64_t>> targets_;  // per row: explicit next-token targets (-1: not scored), or empty
  std::unique_ptr<tok::Tokenizer> tokenizer_;
  std::unique_ptr<tok::ChatTemplate> chat_;
  int ids_input_ = -1;  // the token-id input, once a text or chat row found it
};

// Exclusive upper bound for random integer values fed to `in`: the row count of an embedding
// (a Gather whose table is an initializer) that reads `in` as indices, looking through Cast and
// shape-only ops; 100 when the graph shows none. Token ids must stay inside the vocabulary.
int64_t index_bound(const ir::Value* in) {
  std::optional<int64_t> bound;
  std::vector<const ir::Value*> todo{in};
  std::unordered_set<const ir::Value*> seen{in};
  static const std::unordered_set<std::string> pass_through = {"Cast",    "Reshape", "Unsqueeze",
                                                               "Squeeze", "Flatten", "Identity"};
  while (!todo.empty()) {
    const ir::Value* v = todo.back();
    todo.pop_back();
    for (const ir::Node* n : v->consumers) {
      if (n->op_type == "Gather" && n->inputs.size() >= 2 && n->inputs[1] == v && n->inputs[0] &&
          n->inputs[0]->initializer) {
        const auto& dims = n->inputs[0]->initializer->dims;
        const int64_t rank = static_cast<int64_t>(dims.size());
        int64_t axis = n->attr_int("axis", 0);
        if (axis < 0) axis += rank;
        if (axis >= 0 && axis < rank) bound = std::min(bound.value_or(dims[axis]), dims[axis]);
      } else if (pass_through.count(n->op_type) && !n->inputs.empty() && n->inputs[0] == v && !n->outputs.empty() &&
                 n->outputs[0] && seen.insert(n->outputs[0]).second) {
        todo.push_back(n->outputs[0]);
      }
    }
  }
  return std::max<int64_t>(1, bound.value_or(100));
}

// Random inputs from the declared shapes, for latency runs. A symbolic first dim is the batch:
// --batch-size rows; each row is one sample.
class RandomSource : public DataSource {
 public:
  RandomSource(const ir::Model& m, const DataOptions& o) : opts_(o) {
    inputs_ = feedable_inputs(m);
    uint64_t batch_bytes = 0;
    for (const ir::Value* in : inputs_) {
      if (!in->type.is_tensor || !in->type.has_shape)
        bad_input("--random: model input '{}' has no declared tensor shape; give one with --shape {}=...", in->name,
                  in->name);
      const ir::DType dt = in->type.elem();
      if (!fillable(dt))
        bad_input("--random: model input '{}' is {}, for which slmops cannot make random values", in->name,
                  ir::dtype_name(dt));
      std::vector<int64_t> dims;
      bool given = false, batched = false;
      for (auto& [name, shape] : o.shapes)
        if (name == in->name) dims = shape, given = true;
      if (given && in->type.dims.size() != dims.size())
        bad_input("--shape {}: rank {} given, the model input has rank {} {}", in->name, dims.size(),
                  in->type.dims.size(), shape_text(in->type));
      if (!given) {
        for (size_t i = 0; i < in->type.dims.size(); ++i) {
          const auto& d = in->type.dims[i];
          if (!d.known() && d.param.empty() && d.value != -1)
            bad_input("--random: model input '{}' declares dimension {} = {}, which is negative", in->name, i, d.value);
          if (d.known()) dims.push_back(d.value);
          else if (i == 0) dims.push_back(o.batch_size), batched = true;
          else
            bad_input("--random: model input '{}' has a symbolic dim '{}'; give its shape with --shape {}=...",
                      in->name, d.param.empty() ? "?" : d.param, in->name);
        }
      }
      // Sizes come from the file: checked for overflow and against the memory limit here,
      // before anything is allocated.
      const std::string what = fmt::format("--random: model input '{}' of shape [{}]", in->name, fmt::join(dims, ", "));
      const uint64_t bytes = dt == ir::DType::String ? ir::element_count_or_throw(dims, what) * sizeof(std::string)
                                                     : ir::tensor_bytes_or_throw(dt, dims, what);
      batch_bytes = ir::checked_add(batch_bytes, bytes).value_or(UINT64_MAX);
      if (rows_ < 0 && !dims.empty()) rows_ = std::max<int64_t>(1, dims[0]);
      batched_.push_back(batched);
      bounds_.push_back(index_bound(in));
      shapes_.push_back(std::move(dims));
    }
    if (rows_ < 0) rows_ = 1;
    // Every batch is made before the run: all of them must fit.
    const uint64_t batches = static_cast<uint64_t>((std::max<int64_t>(0, o.random_samples) + rows_ - 1) / rows_);
    ir::check_allocation(ir::checked_mul(batch_bytes, batches).value_or(UINT64_MAX),
                         fmt::format("--random: {} batches of random inputs", batches));
  }
  int64_t samples() const override { return opts_.random_samples; }
  std::string describe() const override { return "random inputs"; }
  std::vector<Batch> batches(int64_t begin, int64_t end) const override {
    std::mt19937_64 rng(opts_.seed);
    return cut_batches(begin, end, rows_, [&](Batch& b, int64_t first, int64_t last) {
      for (size_t i = 0; i < inputs_.size(); ++i) {
        std::vector<int64_t> dims = shapes_[i];
        if (batched_[i]) dims[0] = last - first;  // a last, partial batch
        b.feeds.push_back(RValue::of(random_tensor(inputs_[i]->type.elem(), dims, bounds_[i], rng)));
      }
    });
  }

 private:
  static bool fillable(ir::DType dt) {
    switch (dt) {
      case ir::DType::Float: case ir::DType::Double: case ir::DType::Float16: case ir::DType::BFloat16:
      case ir::DType::Int8: case ir::DType::Int16: case ir::DType::Int32: case ir::DType::Int64:
      case ir::DType::UInt8: case ir::DType::UInt16: case ir::DType::UInt32: case ir::DType::UInt64:
      case ir::DType::Bool: case ir::DType::String: return true;
      default: return false;
    }
  }

  // Floats uniform in [0, 1); integers in [0, bound) (token ids and indices stay in range);
  // strings the decimal text of such an integer.
  static ir::Tensor random_tensor(ir::DType dt, const std::vector<int64_t>& dims, int64_t bound, std::mt19937_64& rng) {
    ir::Tensor t = runtime::new_zero_tensor(dt, dims);
    const uint64_t n = t.numel();
    uint8_t* p = t.data.mutable_data();
    const uint64_t ubound = static_cast<uint64_t>(bound);
    std::uniform_real_distribution<float> unit(0, 1);
    for (uint64_t k = 0; k < n; ++k) {
      const uint64_t r = rng() % ubound;
      switch (dt) {
        case ir::DType::Float: reinterpret_cast<float*>(p)[k] = unit(rng); break;
        case ir::DType::Double: reinterpret_cast<double*>(p)[k] = unit(rng); break;
        case ir::DType::Float16: reinterpret_cast<uint16_t*>(p)[k] = ir::float_to_half(unit(rng)); break;
        case ir::DType::BFloat16: reinterpret_cast<uint16_t*>(p)[k] = ir::float_to_bfloat16(unit(rng)); break;
        case ir::DType::Int8: case ir::DType::UInt8: p[k] = static_cast<uint8_t>(r % 128); break;
        case ir::DType::Int16: case ir::DType::UInt16: reinterpret_cast<uint16_t*>(p)[k] = static_cast<uint16_t>(r % 32768); break;
        case ir::DType::Int32: case ir::DType::UInt32: reinterpret_cast<uint32_t*>(p)[k] = static_cast<uint32_t>(r % 0x7fffffff); break;
        case ir::DType::Int64: case ir::DType::UInt64: reinterpret_cast<uint64_t*>(p)[k] = r; break;
        case ir::DType::Bool: p[k] = r & 1; break;
        case ir::DType::String: t.strings[k] = std::to_string(r); break;
        default: break;
      }
    }
    return t;
  }

  DataOptions opts_;
  std::vector<const ir::Value*> inputs_;
  std::vector<std::vector<int64_t>> shapes_;
  std::vector<bool> batched_;     // dim 0 is the batch (symbolic in the model)
  std::vector<int64_t> bounds_;   // exclusive bound of integer values
  int64_t rows_ = -1;             // samples per batch
};

}  // namespace

std::pair<std::string, std::vector<int64_t>> parse_shape_option(const std::string& s) {
  auto eq = s.find('=');
  if (eq == std::string::npos || eq == 0) bad_input("--shape '{}': expected NAME=DIMxDIM (e.g. input_ids=1x128)", s);
  std::vector<int64_t> dims;
  std::string rest = s.substr(eq + 1);
  size_t pos = 0;
  while (pos <= rest.size()) {
    size_t x = rest.find('x', pos);
    std::string part = rest.substr(pos, x == std::string::npos ? std::string::npos : x - pos);
    try {
      size_t used = 0;
      long long v = std::stoll(part, &used);
      if (used != part.size() || v < 0) throw std::invalid_argument(part);
      dims.push_back(v);
    } catch (const std::exception&) {
      bad_input("--shape '{}': '{}' is not a dimension", s, part);
    }
    if (x == std::string::npos) break;
    pos = x + 1;
  }
  return {s.substr(0, eq), dims};
}

std::unique_ptr<DataSource> open_data(const std::string& spec, const ir::Model& model, const DataOptions& opts) {
  if (opts.batch_size < 1) bad_input("--batch-size must be at least 1");
  if (opts.random) return std::make_unique<RandomSource>(model, opts);
  fs::path p = spec;
  std::error_code ec;
  if (!fs::exists(p, ec)) bad_input("{}: no such file or folder", spec);
  if (fs::is_directory(p, ec)) return std::make_unique<TestDataSource>(p, model);
  std::string ext = p.extension().string();
  if (ext == ".npz") return std::make_unique<NpzSource>(p, model, opts);
  if (ext == ".jsonl") return std::make_unique<JsonlSource>(p, model, opts);
  bad_input("{}: unknown data format (expected .npz, .jsonl or a test_data_set folder)", spec);
}

}  // namespace slmops::eval
