#include "distill/distill.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <mutex>

#include "distill/local_teacher.h"
#include "formats/file_util.h"
#include "formats/npz.h"
#include "formats/onnx_io.h"
#include "formats/sha256.h"
#include "ir/error.h"
#include "passes/common/shard.h"
#include "runtime/executor.h"

namespace slmops::distill {

namespace fs = std::filesystem;
using ojson = nlohmann::ordered_json;

ojson Settings::to_json() const {
  return {{"temperature", temperature},
          {"top_p", top_p},
          {"top_k", top_k},
          {"max_tokens", max_tokens},
          {"stop", stop},
          {"n", n},
          {"seed", seed},
          {"logprobs", logprobs}};
}

namespace {

bool is_url(const std::string& t) { return t.rfind("http://", 0) == 0 || t.rfind("https://", 0) == 0; }

// Calls fn(line_number, line) for each line of a JSONL file that is not blank (1-based numbers).
template <typename Fn>
void for_each_row_line(const std::string& path, Fn fn) {
  const std::string text = formats::read_text_file(path);
  int64_t line = 0;
  size_t at = 0;
  while (at < text.size()) {
    size_t end = text.find('\n', at);
    if (end == std::string::npos) end = text.size();
    const std::string_view l(text.data() + at, end - at);
    at = end + 1;
    ++line;
    if (l.find_first_not_of(" \t\r") != std::string_view::npos) fn(line, l);
  }
}

struct PromptRow {
  int64_t index = 0;  // among the non-blank lines
  int64_t line = 0;   // 1-based
  ojson row;
  bool is_prompt = false;
  std::string key;
};

// What is wrong with a prompt row, or "" when it is usable.
std::string row_problem(const ojson& row) {
  if (!row.is_object()) return "a row must be a JSON object";
  const bool m = row.contains("messages"), p = row.contains("prompt");
  if (m && p) return "a row has either 'messages' or 'prompt', not both";
  if (p) return row["prompt"].is_string() ? "" : "'prompt' must be a string";
  if (!m) return "a row needs 'messages' (chat turns) or 'prompt' (text)";
  const ojson& msgs = row["messages"];
  if (!msgs.is_array() || msgs.empty()) return "'messages' must be a non-empty array of turns";
  for (size_t k = 0; k < msgs.size(); ++k)
    if (!msgs[k].is_object() || !msgs[k].contains("role") || !msgs[k]["role"].is_string())
      return fmt::format("messages[{}] must be an object with a string 'role'", k);
  return "";
}

std::vector<PromptRow> read_prompts(const std::string& path, bool skip_bad, std::vector<nlohmann::json>& bad) {
  std::vector<PromptRow> rows;
  int64_t index = 0;
  for_each_row_line(path, [&](int64_t line, std::string_view l) {
    PromptRow r;
    r.index = index++;
    r.line = line;
    r.row = ojson::parse(l, nullptr, false);
    std::string problem = r.row.is_discarded() ? "not JSON" : row_problem(r.row);
    if (!problem.empty()) {
      if (!skip_bad) bad_input("{}:{}: {} (--skip-bad-rows goes on without it)", path, line, problem);
      bad.push_back({{"line", line}, {"error", problem}});
      return;
    }
    r.is_prompt = r.row.contains("prompt");
    rows.push_back(std::move(r));
  });
  return rows;
}

// The 16 hex digits of a key (and a sample) as a sampler seed.
uint64_t seed_of(const std::string& key, int64_t sample) {
  return std::stoull(formats::sha256_hex(fmt::format("{}/{}", key, sample)).substr(0, 16), nullptr, 16);
}

// The output row for prompt row `p` answered by `c`.
ojson make_row(const PromptRow& p, const Request& r, const Completion& c, const Settings& s) {
  ojson row = p.row;
  if (p.is_prompt) {
    row["completion"] = c.text;
  } else {
    row["messages"].push_back({{"role", "assistant"}, {"content", c.text}});
  }
  ojson t = {{"model", c.model},
             {"settings", s.to_json()},
             {"index", p.index},
             {"sample", r.sample},
             {"key", p.key},
             {"finish_reason", c.finish_reason},
             {"prompt_tokens", c.prompt_tokens},
             {"completion_tokens", c.completion_tokens}};
  if (!c.logprobs.is_null()) t["logprobs"] = c.logprobs;
  row["teacher"] = std::move(t);
  return row;
}

// The completion an output row holds (the inverse of make_row), or nullopt when the row is not
// one of ours.
std::optional<std::pair<std::string, Completion>> completion_of(const ojson& row, int64_t* sample) {
  if (!row.is_object() || !row.contains("teacher") || !row["teacher"].is_object()) return std::nullopt;
  const ojson& t = row["teacher"];
  try {
    Completion c;
    if (row.contains("completion")) {
      c.text = row["completion"].get<std::string>();
    } else {
      c.text = row.at("messages").back().at("content").get<std::string>();
    }
    c.model = t.at("model").get<std::string>();
    c.finish_reason = t.at("finish_reason").get<std::string>();
    c.prompt_tokens = t.at("prompt_tokens").get<int64_t>();
    c.completion_tokens = t.at("completion_tokens").get<int64_t>();
    if (t.contains("logprobs")) c.logprobs = t["logprobs"];
    *sample = t.at("sample").get<int64_t>();
    return std::make_pair(t.at("key").get<std::string>(), std::move(c));
  } catch (const nlohmann::json::exception&) {
    return std::nullopt;
  }
}

using Finished = std::map<std::pair<std::string, int64_t>, Completion>;

// Reads the rows of an earlier run's output or journal; returns how many lines were not rows
// (a killed run's last, torn journal line among them).
int64_t read_finished(const fs::path& path, Finished& out) {
  if (!formats::path_exists(path)) return 0;
  int64_t skipped = 0;
  for_each_row_line(path.string(), [&](int64_t, std::string_view l) {
    int64_t sample = 0;
    auto c = completion_of(ojson::parse(l, nullptr, false), &sample);
    if (!c) {
      ++skipped;
      return;
    }
    out.insert_or_assign({c->first, sample}, std::move(c->second));
  });
  return skipped;
}

// The journal: finished rows appended as they come, one write per line. Locked, so two runs
// never write the same output; a torn last line (a killed run) is cut off first.
class Journal {
 public:
  explicit Journal(fs::path path) : path_(std::move(path)) {
    fd_ = ::open(path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd_ < 0) bad_input("{}: cannot open: {}", path_.string(), std::strerror(errno));
    if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
      ::close(fd_);
      bad_input("{}: another distill-data run is writing this output", path_.string());
    }
    const off_t size = ::lseek(fd_, 0, SEEK_END);
    off_t keep = size;
    char ch = '\n';
    // Back to just after the last newline.
    while (keep > 0 && ::pread(fd_, &ch, 1, keep - 1) == 1 && ch != '\n') --keep;
    if (keep != size && ::ftruncate(fd_, keep) != 0)
      bad_input("{}: cannot cut a torn line: {}", path_.string(), std::strerror(errno));
    ::lseek(fd_, 0, SEEK_END);
  }
  ~Journal() {
    if (fd_ >= 0) ::close(fd_);
  }
  void append(const std::string& line) {
    size_t done = 0;
    while (done < line.size()) {
      const ssize_t w = ::write(fd_, line.data() + done, line.size() - done);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) failure("{}: write failed: {}", path_.string(), std::strerror(errno));
      done += static_cast<size_t>(w);
    }
  }
  // Removes the file, then lets go of the lock.
  void remove() {
    std::error_code ec;
    fs::remove(path_, ec);
    ::close(fd_);
    fd_ = -1;
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
  int fd_ = -1;
};

}  // namespace

void check_arguments(const DistillArgs& a) {
  const Settings s = a.options.settings();
  if (a.teacher.empty()) bad_input("distill-data needs --teacher MODEL_DIR|URL");
  if (a.options.prompts.empty()) bad_input("distill-data needs --prompts PROMPTS.jsonl");
  if (a.output.empty()) bad_input("distill-data needs -o OUT.jsonl");
  // Ranges are the option table's (checked as flags or recipe options are read); here only what
  // spans options.
  if (s.temperature == 0 && s.n > 1) bad_input("--n {} needs --temperature > 0 (greedy answers are all the same)", s.n);
  for (const auto& st : s.stop)
    if (st.empty()) bad_input("--stop: a stop string must not be empty");
  if (!is_url(a.teacher) && !formats::path_exists(a.teacher)) {
    bad_input("--teacher {}: no such model folder or file (or give an http(s):// URL)", a.teacher);
  }
  formats::check_output_path(a.output, {fs::path(a.options.prompts)});  // also: not the prompts file
}

nlohmann::json run(const DistillArgs& a) {
  check_arguments(a);
  const DistillOptions& o = a.options;
  const Settings settings = o.settings();
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<nlohmann::json> bad;
  std::vector<PromptRow> rows = read_prompts(o.prompts, o.skip_bad_rows, bad);
  if (rows.empty() && bad.empty()) bad_input("{}: no prompt rows (JSONL with 'messages' or 'prompt')", o.prompts);
  int64_t all_rows = 0;  // bad rows too: indices never move when --skip-bad-rows drops one
  for (const auto& r : rows) all_rows = std::max(all_rows, r.index + 1);
  const auto [begin, end] = passes::shard_range(o.shard, all_rows, o.batch_size);

  std::unique_ptr<Teacher> teacher;
  if (is_url(a.teacher)) {
    HttpOptions h = a.http;
    h.url = a.teacher;
    teacher = make_http_teacher(h, settings);
  } else {
    LocalOptions l;
    l.model = a.teacher;
    l.threads = a.threads;
    l.batch_size = o.batch_size;
    l.name = o.teacher_name;
    teacher = make_local_teacher(l, settings);
  }
  const std::string teacher_name = o.teacher_name.empty() ? teacher->name() : o.teacher_name;
  const std::string settings_text = settings.to_json().dump();
  std::map<std::string, int64_t> occurrences;
  for (auto& r : rows) {
    const std::string canon = r.row.dump();
    const int64_t occ = occurrences[canon]++;
    r.key = formats::sha256_hex(fmt::format("{}\n{}\n{}\n{}", canon, occ, teacher_name, settings_text)).substr(0, 32);
  }
  std::vector<const PromptRow*> mine;
  for (const auto& r : rows)
    if (r.index >= begin && r.index < end) mine.push_back(&r);

  // Rows finished by earlier runs: the output, then a killed run's journal.
  const fs::path out(a.output);
  Journal journal(fs::path(a.output + ".journal"));
  Finished finished;
  read_finished(out, finished);
  read_finished(journal.path(), finished);

  std::vector<Request> requests;
  int64_t skipped = 0;
  for (const PromptRow* p : mine)
    for (int64_t k = 0; k < settings.n; ++k) {
      Request r;
      r.index = p->index;
      r.sample = k;
      r.where = fmt::format("{}:{}", o.prompts, p->line);
      r.is_prompt = p->is_prompt;
      if (p->is_prompt) {
        r.prompt = p->row["prompt"].get<std::string>();
        r.messages = ojson::array({{{"role", "user"}, {"content", r.prompt}}});
      } else {
        r.messages = p->row["messages"];
      }
      r.seed = seed_of(p->key, k);
      r.needed = !finished.count({p->key, k});
      skipped += r.needed ? 0 : 1;
      if (r.needed || teacher->batches()) requests.push_back(std::move(r));
    }
  std::map<int64_t, const PromptRow*> by_index;
  for (const PromptRow* p : mine) by_index[p->index] = p;
  const int64_t to_do = static_cast<int64_t>(mine.size()) * settings.n - skipped;

  RunStats stats;
  std::mutex mu;
  int64_t written = 0;
  passes::ProgressStage stage(a.progress, "distill-data", to_do, "rows");
  const auto run_t0 = std::chrono::steady_clock::now();
  auto done = [&](const Request& r, Completion&& c) {
    const PromptRow& p = *by_index.at(r.index);
    const std::string line = make_row(p, r, c, settings).dump() + "\n";
    std::lock_guard<std::mutex> lock(mu);
    journal.append(line);
    finished.insert_or_assign({p.key, r.sample}, std::move(c));
    ++written;
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - run_t0).count();
    stage.update(written, fmt::format("{:.1f} tokens/s, {} retries",
                                      secs > 0 ? static_cast<double>(stats.completion_tokens.load()) / secs : 0.0,
                                      stats.retries.load()));
  };
  std::exception_ptr failed;
  try {
    if (to_do > 0) teacher->run(requests, done, stats);
  } catch (...) {
    failed = std::current_exception();
  }

  // Every finished row of this shard, in prompt order, atomically; then the journal goes.
  int64_t rows_out = 0;
  {
    formats::AtomicFile f(out);
    for (const PromptRow* p : mine)
      for (int64_t k = 0; k < settings.n; ++k) {
        const auto it = finished.find({p->key, k});
        if (it == finished.end()) continue;
        Request r;
        r.index = p->index;
        r.sample = k;
        f.write(make_row(*p, r, it->second, settings).dump() + "\n");
        ++rows_out;
      }
    f.commit();
  }
  journal.remove();
  const int64_t expected = static_cast<int64_t>(mine.size()) * settings.n;
  if (failed) {
    try {
      std::rethrow_exception(failed);
    } catch (const Error& e) {
      throw Error(e.code(), fmt::format("{} ({} of {} rows finished are in {}; the same command resumes)", e.what(),
                                        rows_out, expected, a.output));
    }
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  nlohmann::json j = {{"output", a.output},
                      {"teacher", teacher_name},
                      {"rows_total", expected},
                      {"rows_written", written},
                      {"rows_skipped", skipped},
                      {"rows_bad", bad.size()},
                      {"bad_rows", bad},
                      {"retries", stats.retries.load()},
                      {"requests", stats.requests.load()},
                      {"max_in_flight", stats.max_in_flight.load()},
                      {"prompt_tokens", stats.prompt_tokens.load()},
                      {"completion_tokens", stats.completion_tokens.load()},
                      {"seconds", secs},
                      {"tokens_per_s", secs > 0 ? static_cast<double>(stats.completion_tokens.load()) / secs : 0.0}};
  if (!o.shard.empty()) {
    j["shard"] = o.shard;
    j["range"] = {begin, end};
  }
  return j;
}

nlohmann::json merge(const std::vector<std::string>& files, const std::string& output) {
  if (files.empty()) bad_input("--merge needs the shards' outputs");
  formats::check_output_path(output, std::vector<fs::path>(files.begin(), files.end()));
  std::map<std::pair<int64_t, int64_t>, std::string> rows;
  for (const auto& file : files)
    for_each_row_line(file, [&](int64_t line, std::string_view l) {
      const ojson row = ojson::parse(l, nullptr, false);
      if (!row.is_object() || !row.contains("teacher") || !row["teacher"].contains("index") ||
          !row["teacher"]["index"].is_number_integer() || !row["teacher"].contains("sample"))
        bad_input("{}:{}: not a distill-data output row (no teacher.index / teacher.sample)", file, line);
      const std::pair<int64_t, int64_t> at_key{row["teacher"]["index"].get<int64_t>(),
                                               row["teacher"]["sample"].get<int64_t>()};
      if (!rows.emplace(at_key, std::string(l)).second)
        bad_input("{}:{}: prompt row {} sample {} is also in another shard", file, line, at_key.first, at_key.second);
    });
  formats::AtomicFile f{fs::path(output)};
  for (const auto& [k, l] : rows) f.write(l + "\n");
  f.commit();
  return {{"output", output}, {"shards", files.size()}, {"rows", rows.size()}};
}

nlohmann::json soft_labels(const SoftLabelArgs& a) {
  if (!(a.temperature > 0)) bad_input("--temperature {}: soft labels need a temperature > 0", a.temperature);
  if (a.batch_size < 1) bad_input("--batch-size {}: must be >= 1", a.batch_size);
  formats::check_output_path(a.output, {fs::path(a.inputs), fs::path(a.model)});
  fs::path file(a.model);
  std::error_code ec;
  if (fs::is_directory(file, ec)) file /= "model.onnx";
  const formats::NpzArchive npz = formats::load_npz(a.inputs);
  ir::Model m = formats::load_model(file);
  runtime::Session session(m, a.threads);
  const auto& inputs = session.inputs();
  const std::vector<std::string> outs = session.output_names();
  size_t out_at = 0;
  if (!a.output_name.empty()) {
    const auto it = std::find(outs.begin(), outs.end(), a.output_name);
    if (it == outs.end()) bad_input("--output-name {}: {} has no such output", a.output_name, file.string());
    out_at = static_cast<size_t>(it - outs.begin());
  }
  int64_t samples = -1;
  std::vector<const ir::Tensor*> feeds_from(inputs.size(), nullptr);
  for (size_t i = 0; i < inputs.size(); ++i) {
    const std::string& n = inputs[i]->name;
    if (!npz.arrays.count(n)) {
      if (inputs[i]->initializer) continue;
      bad_input("{}: no array '{}' for the model's input of that name", a.inputs, n);
    }
    const ir::Tensor& t = npz.at(n);
    if (t.dims.empty()) bad_input("{}: array '{}' has no sample axis", a.inputs, n);
    if (samples >= 0 && t.dims[0] != samples)
      bad_input("{}: array '{}' has {} samples, the others {}", a.inputs, n, t.dims[0], samples);
    samples = t.dims[0];
    feeds_from[i] = &t;
  }
  if (samples <= 0) bad_input("{}: no samples", a.inputs);
  std::vector<float> probs;
  int64_t classes = -1;
  for (int64_t b0 = 0; b0 < samples; b0 += a.batch_size) {
    const int64_t b1 = std::min(samples, b0 + a.batch_size);
    std::vector<runtime::RValue> feeds(inputs.size());
    for (size_t i = 0; i < inputs.size(); ++i) {
      const ir::Tensor* t = feeds_from[i];
      if (!t) continue;
      std::vector<int64_t> d = t->dims;
      const size_t row = t->nbytes() / static_cast<size_t>(d[0]);
      d[0] = b1 - b0;
      feeds[i] = runtime::RValue::of(ir::Tensor::make(
          "", t->dtype, d, ir::Buffer::copy_of(t->data.data() + static_cast<size_t>(b0) * row, row * (b1 - b0))));
    }
    std::vector<runtime::RValue> out = session.run(std::move(feeds));
    const ir::Tensor& y = out[out_at].tensor;
    if (y.dtype != ir::DType::Float || y.dims.size() != 2 || y.dims[0] != b1 - b0)
      bad_input("{}: output '{}' must be float32 [samples, classes] for soft labels", file.string(), outs[out_at]);
    classes = y.dims[1];
    const float* v = y.values<float>();
    for (int64_t r = 0; r < b1 - b0; ++r) {
      const float* x = v + r * classes;
      const double mx = *std::max_element(x, x + classes);
      double sum = 0;
      std::vector<double> e(static_cast<size_t>(classes));
      for (int64_t c = 0; c < classes; ++c) sum += e[static_cast<size_t>(c)] = std::exp((x[c] - mx) / a.temperature);
      for (int64_t c = 0; c < classes; ++c) probs.push_back(static_cast<float>(e[static_cast<size_t>(c)] / sum));
    }
  }
  std::vector<std::pair<std::string, ir::Tensor>> arrays;
  for (const auto& n : npz.names)
    if (n != "soft_labels") arrays.emplace_back(n, npz.at(n));
  arrays.emplace_back("soft_labels",
                      ir::Tensor::from_values("soft_labels", ir::DType::Float, {samples, classes}, probs));
  formats::save_npz(a.output, arrays);
  return {{"output", a.output},           {"samples", samples},       {"classes", classes},
          {"temperature", a.temperature}, {"teacher", file.string()}, {"teacher_output", outs[out_at]}};
}

}  // namespace slmops::distill
