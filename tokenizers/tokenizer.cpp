#include "tokenizers/tokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <utf8proc.h>

#include <algorithm>
#include <array>
#include <fstream>
#include <map>
#include <mutex>
#include <queue>
#include <nlohmann/json.hpp>
#include <sstream>
#include <unordered_map>
#include <unordered_set>

#include "ir/error.h"
#include "tokenizers/unicode.h"

namespace slmops::tok {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

// ---------------------------------------------------------------------------------------
// Regex (PCRE2, UTF + Unicode properties), compiled once and JIT-compiled when possible.

class Regex {
 public:
  Regex(const std::string& pattern, const std::string& where) : pattern_(pattern), where_(where) {
    int err = 0;
    PCRE2_SIZE off = 0;
    code_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), PCRE2_UTF | PCRE2_UCP, &err,
                          &off, nullptr);
    if (!code_) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(err, msg, sizeof msg);
      bad_input("{}: regex /{}/ does not compile (PCRE2, at {}): {}", where, pattern, off,
                reinterpret_cast<const char*>(msg));
    }
    pcre2_jit_compile(code_, PCRE2_JIT_COMPLETE);
  }
  Regex(const Regex&) = delete;
  ~Regex() { pcre2_code_free(code_); }

  // Every non-overlapping match of the pattern in s, as [begin, end) byte ranges.
  std::vector<std::pair<size_t, size_t>> find_all(std::string_view s) const {
    std::vector<std::pair<size_t, size_t>> out;
    thread_local std::unique_ptr<pcre2_match_data, decltype(&pcre2_match_data_free)> md(
        pcre2_match_data_create(1, nullptr), &pcre2_match_data_free);
    size_t at = 0;
    while (at <= s.size()) {
      int rc = pcre2_match(code_, reinterpret_cast<PCRE2_SPTR>(s.data()), s.size(), at, PCRE2_NO_UTF_CHECK, md.get(),
                           nullptr);
      if (rc == PCRE2_ERROR_NOMATCH) break;
      if (rc < 0) {  // the match or depth limit: a pattern that backtracks without end
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(rc, msg, sizeof msg);
        bad_input("{}: regex /{}/ failed on the input: {}", where_, pattern_, reinterpret_cast<const char*>(msg));
      }
      const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md.get());
      size_t b = ov[0], e = ov[1];
      if (e == b) {  // an empty match: step one character on
        if (b >= s.size()) break;
        size_t i = b;
        next_code_point(s, i);
        at = i;
        continue;
      }
      out.push_back({b, e});
      at = e;
    }
    return out;
  }

 private:
  std::string pattern_, where_;
  pcre2_code* code_ = nullptr;
};

// ---------------------------------------------------------------------------------------
// Splitting with Hugging Face's SplitDelimiterBehavior.

enum class Behavior { Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous };

Behavior parse_behavior(const std::string& s, const std::string& where) {
  if (s == "Removed") return Behavior::Removed;
  if (s == "Isolated") return Behavior::Isolated;
  if (s == "MergedWithPrevious") return Behavior::MergedWithPrevious;
  if (s == "MergedWithNext") return Behavior::MergedWithNext;
  if (s == "Contiguous") return Behavior::Contiguous;
  bad_input("{}: unknown split behavior '{}'", where, s);
}

// `s` cut by `matches` (sorted, non-overlapping) as `b` says; empty pieces dropped.
std::vector<std::string> split_by(std::string_view s, const std::vector<std::pair<size_t, size_t>>& matches, Behavior b,
                                  bool invert) {
  struct Piece {
    size_t begin, end;
    bool match;
  };
  std::vector<Piece> all;
  size_t prev = 0;
  for (auto [mb, me] : matches) {
    if (mb > prev) all.push_back({prev, mb, false});
    all.push_back({mb, me, true});
    prev = me;
  }
  if (prev < s.size() || all.empty()) all.push_back({prev, s.size(), false});
  if (invert)
    for (auto& p : all) p.match = !p.match;
  std::vector<Piece> out;
  switch (b) {
    case Behavior::Removed:
      for (auto& p : all)
        if (!p.match) out.push_back(p);
      break;
    case Behavior::Isolated:
      out = all;
      break;
    case Behavior::MergedWithPrevious: {
      bool prev_match = false;
      for (auto& p : all) {
        if (p.match && !prev_match && !out.empty())
          out.back().end = p.end;
        else
          out.push_back(p);
        prev_match = p.match;
      }
      break;
    }
    case Behavior::MergedWithNext: {
      bool prev_match = false;
      for (auto it = all.rbegin(); it != all.rend(); ++it) {
        if (it->match && !prev_match && !out.empty())
          out.back().begin = it->begin;
        else
          out.push_back(*it);
        prev_match = it->match;
      }
      std::reverse(out.begin(), out.end());
      break;
    }
    case Behavior::Contiguous: {
      bool prev_match = false;
      bool first = true;
      for (auto& p : all) {
        if (!first && p.match == prev_match)
          out.back().end = p.end;
        else
          out.push_back(p);
        prev_match = p.match;
        first = false;
      }
      break;
    }
  }
  std::vector<std::string> pieces;
  for (auto& p : out)
    if (p.end > p.begin) pieces.emplace_back(s.substr(p.begin, p.end - p.begin));
  return pieces;
}

// Matches of a per-character predicate, one range per character.
template <typename Pred>
std::vector<std::pair<size_t, size_t>> char_matches(std::string_view s, Pred pred) {
  std::vector<std::pair<size_t, size_t>> out;
  for (size_t i = 0; i < s.size();) {
    size_t at = i;
    char32_t cp = next_code_point(s, i);
    if (pred(cp)) out.push_back({at, i});
  }
  return out;
}

std::vector<std::pair<size_t, size_t>> literal_matches(std::string_view s, const std::string& lit) {
  std::vector<std::pair<size_t, size_t>> out;
  if (lit.empty()) return out;
  for (size_t at = s.find(lit); at != std::string_view::npos; at = s.find(lit, at + lit.size()))
    out.push_back({at, at + lit.size()});
  return out;
}

// `s` with each of `matches` (sorted, non-overlapping) replaced by `content`.
std::string replace_matches(const std::string& s, const std::vector<std::pair<size_t, size_t>>& matches,
                            std::string_view content) {
  if (matches.empty()) return s;
  std::string out;
  size_t prev = 0;
  for (auto [b, e] : matches) {
    out.append(s, prev, b - prev);
    out += content;
    prev = e;
  }
  out.append(s, prev);
  return out;
}

// GPT-2's pre-tokenizer regex (ByteLevel with use_regex).
const char* kGpt2Pattern = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

// The ByteLevel alphabet: each byte as one printable code point (GPT-2's bytes_to_unicode).
const std::array<char32_t, 256>& byte_to_char() {
  static const std::array<char32_t, 256> t = [] {
    std::array<char32_t, 256> m{};
    char32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
      m[static_cast<size_t>(b)] = printable ? static_cast<char32_t>(b) : next++;
    }
    return m;
  }();
  return t;
}

const std::unordered_map<char32_t, uint8_t>& char_to_byte() {
  static const std::unordered_map<char32_t, uint8_t> t = [] {
    std::unordered_map<char32_t, uint8_t> m;
    for (int b = 0; b < 256; ++b) m[byte_to_char()[static_cast<size_t>(b)]] = static_cast<uint8_t>(b);
    return m;
  }();
  return t;
}

std::string string_field(const json& j, const char* key, const std::string& fallback = {}) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : fallback;
}
bool bool_field(const json& j, const char* key, bool fallback) {
  auto it = j.find(key);
  return it != j.end() && it->is_boolean() ? it->get<bool>() : fallback;
}
// A JSON integer in [0, max] (a token id, a count); bad input naming `what` otherwise (a float
// such as 3e21 is never converted: that is undefined).
int64_t whole_number(const json& v, int64_t max, const std::string& where, const std::string& what) {
  if (!v.is_number_integer())
    bad_input("{}: {} must be an integer, found {}", where, what,
              v.dump(-1, ' ', false, json::error_handler_t::replace));
  if (v.is_number_unsigned() ? v.get<uint64_t>() > static_cast<uint64_t>(max)
                             : (v.get<int64_t>() < 0 || v.get<int64_t>() > max))
    bad_input("{}: {} {} is out of range (0 to {})", where, what, v.dump(), max);
  return v.is_number_unsigned() ? static_cast<int64_t>(v.get<uint64_t>()) : v.get<int64_t>();
}
int32_t token_id(const json& v, const std::string& where, const std::string& what) {
  // 2^24: far above any real vocabulary (262,144 for Gemma 3), and a table that size is cheap.
  return static_cast<int32_t>(whole_number(v, (1 << 24) - 1, where, what));
}

// ---------------------------------------------------------------------------------------
// Normalizers.

struct Normalizer {
  virtual ~Normalizer() = default;
  virtual void apply(std::string& s) const = 0;
};

struct SequenceNormalizer : Normalizer {
  std::vector<std::unique_ptr<Normalizer>> steps;
  void apply(std::string& s) const override {
    for (auto& n : steps) n->apply(s);
  }
};

struct PrependNormalizer : Normalizer {
  std::string prepend;
  void apply(std::string& s) const override {
    if (!s.empty()) s.insert(0, prepend);
  }
};

struct ReplaceNormalizer : Normalizer {
  std::string literal, content;
  std::unique_ptr<Regex> regex;
  void apply(std::string& s) const override {
    s = replace_matches(s, regex ? regex->find_all(s) : literal_matches(s, literal), content);
  }
};

struct UnicodeNormalizer : Normalizer {
  int options = 0;
  void apply(std::string& s) const override {
    utf8proc_uint8_t* out = nullptr;
    auto n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(s.data()), static_cast<utf8proc_ssize_t>(s.size()),
                          &out, static_cast<utf8proc_option_t>(options));
    if (n >= 0) s.assign(reinterpret_cast<char*>(out), static_cast<size_t>(n));
    std::free(out);
  }
};

struct LowercaseNormalizer : Normalizer {
  void apply(std::string& s) const override {
    std::string out;
    out.reserve(s.size());
    for (size_t i = 0; i < s.size();)
      append_utf8(out, static_cast<char32_t>(utf8proc_tolower(static_cast<utf8proc_int32_t>(next_code_point(s, i)))));
    s = std::move(out);
  }
};

struct StripNormalizer : Normalizer {
  bool left = true, right = true;
  void apply(std::string& s) const override {
    size_t b = 0, e = s.size();
    if (left)
      while (b < e) {
        size_t i = b;
        if (!is_whitespace(next_code_point(s, i))) break;
        b = i;
      }
    if (right)
      while (e > b) {
        size_t start = e - 1;
        while (start > b && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80) --start;
        size_t i = start;
        if (!is_whitespace(next_code_point(s, i))) break;
        e = start;
      }
    s = s.substr(b, e - b);
  }
};

std::unique_ptr<Normalizer> make_normalizer(const json& j, const std::string& where) {
  const std::string type = string_field(j, "type");
  if (type == "Sequence") {
    auto n = std::make_unique<SequenceNormalizer>();
    for (auto& s : j.at("normalizers")) n->steps.push_back(make_normalizer(s, where));
    return n;
  }
  if (type == "Prepend") {
    auto n = std::make_unique<PrependNormalizer>();
    n->prepend = string_field(j, "prepend");
    return n;
  }
  if (type == "Replace") {
    auto n = std::make_unique<ReplaceNormalizer>();
    const json& p = j.at("pattern");
    if (p.contains("Regex"))
      n->regex = std::make_unique<Regex>(p["Regex"].get<std::string>(), where + ": normalizer Replace");
    else
      n->literal = p.at("String").get<std::string>();
    n->content = string_field(j, "content");
    return n;
  }
  if (type == "NFC" || type == "NFD" || type == "NFKC" || type == "NFKD") {
    auto n = std::make_unique<UnicodeNormalizer>();
    n->options = UTF8PROC_STABLE | (type[type.size() - 1] == 'C' ? UTF8PROC_COMPOSE : UTF8PROC_DECOMPOSE) |
                 (type.size() == 4 ? UTF8PROC_COMPAT : 0);
    return n;
  }
  if (type == "Lowercase") return std::make_unique<LowercaseNormalizer>();
  if (type == "Strip") {
    auto n = std::make_unique<StripNormalizer>();
    n->left = bool_field(j, "strip_left", true);
    n->right = bool_field(j, "strip_right", true);
    return n;
  }
  bad_input("{}: normalizer type '{}' is not supported (Sequence, Prepend, Replace, NFC, NFD, NFKC, NFKD, Lowercase, "
            "Strip are)",
            where, type);
}

// ---------------------------------------------------------------------------------------
// Pre-tokenizers: one piece of text in, the words the model sees out.

struct PreTokenizer {
  virtual ~PreTokenizer() = default;
  // `at_start`: the piece begins the whole input (Metaspace's prepend_scheme "first").
  virtual std::vector<std::string> split(std::string s, bool at_start) const = 0;
};

struct SequencePre : PreTokenizer {
  std::vector<std::unique_ptr<PreTokenizer>> steps;
  std::vector<std::string> split(std::string s, bool at_start) const override {
    std::vector<std::string> cur{std::move(s)};
    for (auto& p : steps) {
      std::vector<std::string> next;
      for (size_t k = 0; k < cur.size(); ++k)
        for (auto& w : p->split(std::move(cur[k]), at_start && k == 0)) next.push_back(std::move(w));
      cur = std::move(next);
    }
    return cur;
  }
};

struct ByteLevelPre : PreTokenizer {
  bool add_prefix_space = true, use_regex = true;
  std::unique_ptr<Regex> regex;
  std::vector<std::string> split(std::string s, bool) const override {
    if (add_prefix_space && (s.empty() || s[0] != ' ')) s.insert(0, " ");
    std::vector<std::string> words =
        use_regex ? split_by(s, regex->find_all(s), Behavior::Isolated, false) : std::vector<std::string>{s};
    const auto& map = byte_to_char();
    for (auto& w : words) {
      std::string m;
      m.reserve(w.size() * 2);
      for (unsigned char c : w) append_utf8(m, map[c]);
      w = std::move(m);
    }
    return words;
  }
};

struct SplitPre : PreTokenizer {
  std::string literal;
  std::unique_ptr<Regex> regex;
  Behavior behavior = Behavior::Isolated;
  bool invert = false;
  std::vector<std::string> split(std::string s, bool) const override {
    return split_by(s, regex ? regex->find_all(s) : literal_matches(s, literal), behavior, invert);
  }
};

struct MetaspacePre : PreTokenizer {
  std::string replacement = "\xE2\x96\x81";  // U+2581
  std::string scheme = "always";
  bool split_words = true;
  std::vector<std::string> split(std::string s, bool at_start) const override {
    std::string r;
    for (char c : s) {
      if (c == ' ')
        r += replacement;
      else
        r.push_back(c);
    }
    const bool starts = r.compare(0, replacement.size(), replacement) == 0;
    if (!starts && (scheme == "always" || (scheme == "first" && at_start))) r.insert(0, replacement);
    if (!split_words) return {r};
    return split_by(r, literal_matches(r, replacement), Behavior::MergedWithNext, false);
  }
};

struct DigitsPre : PreTokenizer {
  bool individual = false;
  std::vector<std::string> split(std::string s, bool) const override {
    auto m = char_matches(s, [](char32_t c) { return c >= '0' && c <= '9'; });
    return split_by(s, m, individual ? Behavior::Isolated : Behavior::Contiguous, false);
  }
};

struct PunctuationPre : PreTokenizer {
  Behavior behavior = Behavior::Isolated;
  std::vector<std::string> split(std::string s, bool) const override {
    return split_by(s, char_matches(s, is_punctuation), behavior, false);
  }
};

struct WhitespaceSplitPre : PreTokenizer {
  std::vector<std::string> split(std::string s, bool) const override {
    return split_by(s, char_matches(s, is_whitespace), Behavior::Removed, false);
  }
};

struct WhitespacePre : PreTokenizer {
  Regex regex{R"(\w+|[^\w\s]+)", "pre-tokenizer Whitespace"};
  std::vector<std::string> split(std::string s, bool) const override {
    return split_by(s, regex.find_all(s), Behavior::Removed, true);
  }
};

std::unique_ptr<PreTokenizer> make_pre_tokenizer(const json& j, const std::string& where) {
  const std::string type = string_field(j, "type");
  if (type == "Sequence") {
    auto p = std::make_unique<SequencePre>();
    for (auto& s : j.at("pretokenizers")) p->steps.push_back(make_pre_tokenizer(s, where));
    return p;
  }
  if (type == "ByteLevel") {
    auto p = std::make_unique<ByteLevelPre>();
    p->add_prefix_space = bool_field(j, "add_prefix_space", true);
    p->use_regex = bool_field(j, "use_regex", true);
    if (p->use_regex) p->regex = std::make_unique<Regex>(kGpt2Pattern, where + ": pre-tokenizer ByteLevel");
    return p;
  }
  if (type == "Split") {
    auto p = std::make_unique<SplitPre>();
    const json& pat = j.at("pattern");
    if (pat.contains("Regex"))
      p->regex = std::make_unique<Regex>(pat["Regex"].get<std::string>(), where + ": pre-tokenizer Split");
    else
      p->literal = pat.at("String").get<std::string>();
    p->behavior = parse_behavior(string_field(j, "behavior", "Isolated"), where);
    p->invert = bool_field(j, "invert", false);
    return p;
  }
  if (type == "Metaspace") {
    auto p = std::make_unique<MetaspacePre>();
    p->replacement = string_field(j, "replacement", p->replacement);
    if (j.contains("prepend_scheme"))
      p->scheme = string_field(j, "prepend_scheme", "always");
    else
      p->scheme = bool_field(j, "add_prefix_space", true) ? "always" : "never";
    p->split_words = bool_field(j, "split", true);
    return p;
  }
  if (type == "Digits") {
    auto p = std::make_unique<DigitsPre>();
    p->individual = bool_field(j, "individual_digits", false);
    return p;
  }
  if (type == "Punctuation") {
    auto p = std::make_unique<PunctuationPre>();
    p->behavior = parse_behavior(string_field(j, "behavior", "Isolated"), where);
    return p;
  }
  if (type == "WhitespaceSplit") return std::make_unique<WhitespaceSplitPre>();
  if (type == "Whitespace") return std::make_unique<WhitespacePre>();
  bad_input("{}: pre-tokenizer type '{}' is not supported (Sequence, ByteLevel, Split, Metaspace, Digits, "
            "Punctuation, Whitespace, WhitespaceSplit are)",
            where, type);
}

// ---------------------------------------------------------------------------------------
// Decoders: token strings in, token strings out (joined at the end).

struct Decoder {
  virtual ~Decoder() = default;
  virtual std::vector<std::string> decode(std::vector<std::string> tokens) const = 0;
};

struct SequenceDecoder : Decoder {
  std::vector<std::unique_ptr<Decoder>> steps;
  std::vector<std::string> decode(std::vector<std::string> t) const override {
    for (auto& d : steps) t = d->decode(std::move(t));
    return t;
  }
};

struct ByteLevelDecoder : Decoder {
  std::vector<std::string> decode(std::vector<std::string> tokens) const override {
    const auto& map = char_to_byte();
    std::string bytes;
    for (auto& t : tokens) {
      std::string b;
      bool all = true;
      for (size_t i = 0; i < t.size();) {
        auto it = map.find(next_code_point(t, i));
        if (it == map.end()) {
          all = false;
          break;
        }
        b.push_back(static_cast<char>(it->second));
      }
      bytes += all ? b : t;
    }
    return {lossy_utf8(bytes)};
  }
};

struct ReplaceDecoder : Decoder {
  std::string literal, content;
  std::vector<std::string> decode(std::vector<std::string> tokens) const override {
    for (auto& t : tokens) t = replace_matches(t, literal_matches(t, literal), content);
    return tokens;
  }
};

// "<0x0A>" -> 0x0A; -1 when the token is not a byte token.
int byte_token(const std::string& t) {
  if (t.size() != 6 || t.compare(0, 3, "<0x") != 0 || t[5] != '>') return -1;
  auto hex = [](char c) { return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1; };
  int hi = hex(t[3]), lo = hex(t[4]);
  return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

struct ByteFallbackDecoder : Decoder {
  std::vector<std::string> decode(std::vector<std::string> tokens) const override {
    std::vector<std::string> out;
    std::string pending;
    size_t pending_count = 0;
    auto flush = [&] {
      if (!pending_count) return;
      std::string v = valid_utf8(pending);
      if (v == pending) {
        out.push_back(pending);
      } else {
        for (size_t k = 0; k < pending_count; ++k) out.push_back("\xEF\xBF\xBD");
      }
      pending.clear();
      pending_count = 0;
    };
    for (auto& t : tokens) {
      int b = byte_token(t);
      if (b >= 0) {
        pending.push_back(static_cast<char>(b));
        ++pending_count;
      } else {
        flush();
        out.push_back(std::move(t));
      }
    }
    flush();
    return out;
  }
};

struct FuseDecoder : Decoder {
  std::vector<std::string> decode(std::vector<std::string> tokens) const override {
    std::string all;
    for (auto& t : tokens) all += t;
    return {all};
  }
};

struct StripDecoder : Decoder {
  std::string content;
  size_t start = 0, stop = 0;
  std::vector<std::string> decode(std::vector<std::string> tokens) const override {
    for (auto& t : tokens) {
      size_t b = 0, e = t.size();
      for (size_t k = 0; k < start && t.compare(b, content.size(), content) == 0 && b < e; ++k) b += content.size();
      for (size_t k = 0; k < stop && e >= b + content.size() && t.compare(e - content.size(), content.size(), content) == 0;
           ++k)
        e -= content.size();
      t = t.substr(b, e - b);
    }
    return tokens;
  }
};

struct MetaspaceDecoder : Decoder {
  std::string replacement = "\xE2\x96\x81";
  bool strip_first = true;  // prepend_scheme other than "never"
  std::vector<std::string> decode(std::vector<std::string> tokens) const override {
    for (size_t k = 0; k < tokens.size(); ++k) {
      std::string out;
      const std::string& t = tokens[k];
      for (size_t i = 0; i < t.size();) {
        if (t.compare(i, replacement.size(), replacement) == 0) {
          out.push_back(' ');
          i += replacement.size();
        } else {
          out.push_back(t[i++]);
        }
      }
      if (k == 0 && strip_first && !out.empty() && out[0] == ' ') out.erase(0, 1);
      tokens[k] = std::move(out);
    }
    return tokens;
  }
};

std::unique_ptr<Decoder> make_decoder(const json& j, const std::string& where) {
  const std::string type = string_field(j, "type");
  if (type == "Sequence") {
    auto d = std::make_unique<SequenceDecoder>();
    for (auto& s : j.at("decoders")) d->steps.push_back(make_decoder(s, where));
    return d;
  }
  if (type == "ByteLevel") return std::make_unique<ByteLevelDecoder>();
  if (type == "Replace") {
    auto d = std::make_unique<ReplaceDecoder>();
    const json& p = j.at("pattern");
    if (!p.contains("String")) bad_input("{}: decoder Replace with a regex pattern is not supported", where);
    d->literal = p["String"].get<std::string>();
    d->content = string_field(j, "content");
    return d;
  }
  if (type == "ByteFallback") return std::make_unique<ByteFallbackDecoder>();
  if (type == "Fuse") return std::make_unique<FuseDecoder>();
  if (type == "Strip") {
    auto d = std::make_unique<StripDecoder>();
    d->content = string_field(j, "content", " ");
    d->start =
        j.contains("start") ? static_cast<size_t>(whole_number(j["start"], 1 << 20, where, "decoder Strip start")) : 0;
    d->stop =
        j.contains("stop") ? static_cast<size_t>(whole_number(j["stop"], 1 << 20, where, "decoder Strip stop")) : 0;
    return d;
  }
  if (type == "Metaspace") {
    auto d = std::make_unique<MetaspaceDecoder>();
    d->replacement = string_field(j, "replacement", d->replacement);
    if (j.contains("prepend_scheme"))
      d->strip_first = string_field(j, "prepend_scheme", "always") != "never";
    else
      d->strip_first = bool_field(j, "add_prefix_space", true);
    return d;
  }
  bad_input("{}: decoder type '{}' is not supported (Sequence, ByteLevel, Replace, ByteFallback, Fuse, Strip, "
            "Metaspace are)",
            where, type);
}

struct AddedToken {
  int32_t id = 0;
  std::string content;
  bool special = false, normalized = false, lstrip = false, rstrip = false, single_word = false;
};

// A piece of the input: text for the model, or an added token's id.
struct Piece {
  std::string text;
  int32_t added = -1;
  bool at_start = false;
};

}  // namespace

// ---------------------------------------------------------------------------------------

struct Tokenizer::Impl {
  std::string where;
  // BPE model.
  std::unordered_map<std::string, int32_t> vocab;
  std::vector<std::string> id_to_token;
  std::unordered_map<uint64_t, std::pair<int32_t, int32_t>> merges;  // (a, b) -> (rank, merged id)
  bool byte_fallback = false, ignore_merges = false, fuse_unk = false;
  int32_t unk = -1;
  std::array<int32_t, 256> byte_ids{};
  // Pipeline.
  std::vector<AddedToken> added;
  std::unordered_set<int32_t> special_ids;  // added tokens marked special (decode --skip-special)
  // Added tokens by their first byte, longest first (the leftmost-longest scan's candidates).
  std::array<std::vector<const AddedToken*>, 256> added_by_byte;
  std::unique_ptr<Normalizer> normalizer;
  std::unique_ptr<PreTokenizer> pre;
  std::unique_ptr<Decoder> decoder;
  std::vector<int32_t> prefix, suffix;  // post-processor's special tokens around the sequence
  bool clean_up_spaces = false;
  mutable std::mutex cache_mu;
  mutable std::unordered_map<std::string, std::vector<int32_t>> cache;

  static uint64_t pair_key(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }

  // Merges the lowest-ranked adjacent pair (leftmost on ties) until none is left, as the
  // Rust BPE does: symbols in a linked list, candidate pairs in a heap, O(n log n) (a
  // tokenizer without a pre-tokenizer hands the whole text over as one word).
  void merge(std::vector<int32_t>& sym) const {
    const size_t n = sym.size();
    if (n < 2) return;
    std::vector<int32_t> prev(n), next(n);
    for (size_t k = 0; k < n; ++k) {
      prev[k] = static_cast<int32_t>(k) - 1;
      next[k] = k + 1 < n ? static_cast<int32_t>(k + 1) : -1;
    }
    struct Cand {
      int32_t rank, pos, left, right;  // left/right: the ids the pair had when queued
      bool operator>(const Cand& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
    };
    std::priority_queue<Cand, std::vector<Cand>, std::greater<Cand>> heap;
    auto push = [&](int32_t a) {
      if (a < 0 || next[static_cast<size_t>(a)] < 0) return;
      const int32_t b = next[static_cast<size_t>(a)];
      auto it = merges.find(pair_key(sym[static_cast<size_t>(a)], sym[static_cast<size_t>(b)]));
      if (it != merges.end()) heap.push({it->second.first, a, sym[static_cast<size_t>(a)], sym[static_cast<size_t>(b)]});
    };
    for (size_t k = 0; k + 1 < n; ++k) push(static_cast<int32_t>(k));
    std::vector<char> dead(n, 0);
    while (!heap.empty()) {
      const Cand c = heap.top();
      heap.pop();
      const auto a = static_cast<size_t>(c.pos);
      if (dead[a] || sym[a] != c.left || next[a] < 0) continue;
      const auto b = static_cast<size_t>(next[a]);
      if (sym[b] != c.right) continue;
      sym[a] = merges.at(pair_key(c.left, c.right)).second;
      dead[b] = 1;
      next[a] = next[b];
      if (next[b] >= 0) prev[static_cast<size_t>(next[b])] = c.pos;
      push(prev[a]);
      push(c.pos);
    }
    size_t w = 0;
    for (int32_t k = 0; k >= 0; k = next[static_cast<size_t>(k)]) sym[w++] = sym[static_cast<size_t>(k)];
    sym.resize(w);
  }

  void bpe_word(const std::string& w, std::vector<int32_t>& out) const {
    if (ignore_merges) {
      auto it = vocab.find(w);
      if (it != vocab.end()) {
        out.push_back(it->second);
        return;
      }
    }
    {
      std::lock_guard<std::mutex> lock(cache_mu);
      auto it = cache.find(w);
      if (it != cache.end()) {
        out.insert(out.end(), it->second.begin(), it->second.end());
        return;
      }
    }
    std::vector<int32_t> sym;
    bool last_unk = false;
    for (size_t i = 0; i < w.size();) {
      const size_t at = i;
      next_code_point(w, i);
      auto it = vocab.find(w.substr(at, i - at));
      if (it != vocab.end()) {
        sym.push_back(it->second);
        last_unk = false;
        continue;
      }
      if (byte_fallback) {
        bool all = true;
        for (size_t k = at; k < i; ++k) all = all && byte_ids[static_cast<unsigned char>(w[k])] >= 0;
        if (all) {
          for (size_t k = at; k < i; ++k) sym.push_back(byte_ids[static_cast<unsigned char>(w[k])]);
          last_unk = false;
          continue;
        }
      }
      if (unk >= 0) {
        if (!(fuse_unk && last_unk)) sym.push_back(unk);
        last_unk = true;
      }
    }
    merge(sym);
    out.insert(out.end(), sym.begin(), sym.end());
    std::lock_guard<std::mutex> lock(cache_mu);
    if (cache.size() > 200000) cache.clear();
    cache.emplace(w, std::move(sym));
  }

  // Splits `s` at added tokens of one kind (normalized or not), leftmost-longest, with their
  // lstrip / rstrip / single_word flags.
  void split_added(const std::string& s, bool normalized_kind, bool at_start, std::vector<Piece>& out) const {
    size_t prev = 0;
    for (size_t i = 0; i < s.size();) {
      const AddedToken* hit = nullptr;
      for (const AddedToken* tp : added_by_byte[static_cast<unsigned char>(s[i])]) {
        const AddedToken& t = *tp;
        if (t.normalized != normalized_kind) continue;
        if (hit && t.content.size() <= hit->content.size()) continue;
        if (s.compare(i, t.content.size(), t.content) != 0) continue;
        if (t.single_word) {
          size_t before = i;
          if (before > 0) {
            while (before > 0 && (static_cast<unsigned char>(s[before - 1]) & 0xC0) == 0x80) --before;
            size_t k = before > 0 ? before - 1 : 0;
            while (k > 0 && (static_cast<unsigned char>(s[k]) & 0xC0) == 0x80) --k;
            if (is_word_char(next_code_point(s, k))) continue;
          }
          size_t after = i + t.content.size();
          if (after < s.size() && is_word_char(next_code_point(s, after))) continue;
        }
        hit = &t;
      }
      if (!hit) {
        next_code_point(s, i);
        continue;
      }
      size_t b = i, e = i + hit->content.size();
      if (hit->lstrip)
        while (b > prev && (s[b - 1] == ' ' || s[b - 1] == '\t' || s[b - 1] == '\n' || s[b - 1] == '\r')) --b;
      if (hit->rstrip)
        while (e < s.size() && (s[e] == ' ' || s[e] == '\t' || s[e] == '\n' || s[e] == '\r')) ++e;
      if (b > prev) out.push_back({s.substr(prev, b - prev), -1, at_start && prev == 0});
      out.push_back({{}, hit->id, false});
      prev = e;
      i = e;
    }
    if (prev < s.size()) out.push_back({s.substr(prev), -1, at_start && prev == 0});
  }

  std::vector<int32_t> encode(std::string_view text, bool add_special) const {
    std::string s = valid_utf8(text);
    std::vector<Piece> raw;
    split_added(s, false, true, raw);
    std::vector<int32_t> ids;
    if (add_special) ids = prefix;
    for (Piece& p : raw) {
      if (p.added >= 0) {
        ids.push_back(p.added);
        continue;
      }
      if (normalizer) normalizer->apply(p.text);
      std::vector<Piece> sub;
      split_added(p.text, true, p.at_start, sub);
      for (Piece& q : sub) {
        if (q.added >= 0) {
          ids.push_back(q.added);
          continue;
        }
        std::vector<std::string> words = pre ? pre->split(std::move(q.text), q.at_start) : std::vector<std::string>{q.text};
        for (const std::string& w : words) bpe_word(w, ids);
      }
    }
    if (add_special) ids.insert(ids.end(), suffix.begin(), suffix.end());
    return ids;
  }
};

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

namespace {

json read_json(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  if (!f) bad_input("{}: cannot be read", p.string());
  std::stringstream ss;
  ss << f.rdbuf();
  try {
    return json::parse(ss.str());
  } catch (const json::exception& e) {
    bad_input("{}: not valid JSON: {}", p.string(), e.what());
  }
}

// The ids a TemplateProcessing item list puts before and after the sequence "A".
void template_ids(const json& single, const json& special, const std::string& where, std::vector<int32_t>& prefix,
                  std::vector<int32_t>& suffix) {
  bool seen_a = false;
  for (const json& item : single) {
    if (item.contains("Sequence")) {
      seen_a = true;
      continue;
    }
    const std::string name = item.at("SpecialToken").at("id").get<std::string>();
    auto it = special.find(name);
    if (it == special.end()) bad_input("{}: post-processor names special token '{}' it does not define", where, name);
    for (const json& id : it->at("ids")) (seen_a ? suffix : prefix).push_back(token_id(id, where, "special token id"));
  }
}

void load_post_processor(const json& j, const std::string& where, std::vector<int32_t>& prefix,
                         std::vector<int32_t>& suffix) {
  const std::string type = string_field(j, "type");
  if (type == "Sequence") {
    for (const json& p : j.at("processors")) load_post_processor(p, where, prefix, suffix);
  } else if (type == "TemplateProcessing") {
    template_ids(j.at("single"), j.at("special_tokens"), where, prefix, suffix);
  } else if (type != "ByteLevel") {
    bad_input("{}: post-processor type '{}' is not supported (TemplateProcessing, ByteLevel, Sequence are)", where,
              type);
  }
}

}  // namespace

Tokenizer Tokenizer::load(const fs::path& path) {
  fs::path file = path;
  std::error_code ec;
  if (fs::is_directory(path, ec)) file = path / "tokenizer.json";
  if (!fs::exists(file, ec)) bad_input("{}: no tokenizer.json there", path.string());
  auto impl = std::make_unique<Impl>();
  impl->where = file.string();
  const std::string& where = impl->where;
  const json j = read_json(file);
  try {
    const json& model = j.at("model");
    const std::string type = string_field(model, "type", "BPE");
    if (type != "BPE")
      bad_input("{}: model type '{}' is not supported (BPE is; WordPiece and Unigram are not built yet)", where, type);
    if (!model.value("continuing_subword_prefix", json()).is_null() &&
        !model["continuing_subword_prefix"].get<std::string>().empty())
      bad_input("{}: BPE continuing_subword_prefix is not supported", where);
    if (!model.value("end_of_word_suffix", json()).is_null() && !model["end_of_word_suffix"].get<std::string>().empty())
      bad_input("{}: BPE end_of_word_suffix is not supported", where);
    impl->byte_fallback = bool_field(model, "byte_fallback", false);
    impl->ignore_merges = bool_field(model, "ignore_merges", false);
    impl->fuse_unk = bool_field(model, "fuse_unk", false);
    for (auto& [tok, id] : model.at("vocab").items()) {
      const int32_t i = token_id(id, where, "vocab id of '" + tok + "'");
      impl->vocab[tok] = i;
      if (static_cast<size_t>(i) >= impl->id_to_token.size()) impl->id_to_token.resize(static_cast<size_t>(i) + 1);
      impl->id_to_token[static_cast<size_t>(i)] = tok;
    }
    const std::string unk = string_field(model, "unk_token");
    if (!unk.empty()) {
      auto it = impl->vocab.find(unk);
      if (it != impl->vocab.end()) impl->unk = it->second;
    }
    for (int b = 0; b < 256; ++b) {
      auto it = impl->vocab.find(fmt::format("<0x{:02X}>", b));
      impl->byte_ids[static_cast<size_t>(b)] = it != impl->vocab.end() ? it->second : -1;
    }
    int32_t rank = 0;
    for (const json& m : model.at("merges")) {
      std::string a, b;
      if (m.is_string()) {
        const std::string s = m.get<std::string>();
        const size_t sp = s.find(' ', 1);
        if (sp == std::string::npos) bad_input("{}: merge {} is not 'a b'", where, rank);
        a = s.substr(0, sp), b = s.substr(sp + 1);
      } else {
        a = m.at(0).get<std::string>(), b = m.at(1).get<std::string>();
      }
      auto ia = impl->vocab.find(a), ib = impl->vocab.find(b), im = impl->vocab.find(a + b);
      if (ia == impl->vocab.end() || ib == impl->vocab.end() || im == impl->vocab.end())
        bad_input("{}: merge {} ('{}' '{}') names a token not in the vocabulary", where, rank, a, b);
      impl->merges.emplace(Impl::pair_key(ia->second, ib->second), std::make_pair(rank, im->second));
      ++rank;
    }
    if (j.contains("added_tokens"))
      for (const json& t : j["added_tokens"]) {
        AddedToken a;
        a.id = token_id(t.at("id"), where, "added token id");
        a.content = t.at("content").get<std::string>();
        a.special = bool_field(t, "special", false);
        a.normalized = bool_field(t, "normalized", !a.special);
        a.lstrip = bool_field(t, "lstrip", false);
        a.rstrip = bool_field(t, "rstrip", false);
        a.single_word = bool_field(t, "single_word", false);
        if (a.id < 0) bad_input("{}: added token '{}' has a negative id", where, a.content);
        if (static_cast<size_t>(a.id) >= impl->id_to_token.size())
          impl->id_to_token.resize(static_cast<size_t>(a.id) + 1);
        impl->id_to_token[static_cast<size_t>(a.id)] = a.content;
        impl->added.push_back(std::move(a));
      }
    if (j.contains("normalizer") && !j["normalizer"].is_null()) impl->normalizer = make_normalizer(j["normalizer"], where);
    if (j.contains("pre_tokenizer") && !j["pre_tokenizer"].is_null())
      impl->pre = make_pre_tokenizer(j["pre_tokenizer"], where);
    if (j.contains("decoder") && !j["decoder"].is_null()) impl->decoder = make_decoder(j["decoder"], where);
    if (j.contains("post_processor") && !j["post_processor"].is_null())
      load_post_processor(j["post_processor"], where, impl->prefix, impl->suffix);
  } catch (const json::exception& e) {
    bad_input("{}: unexpected structure: {}", where, e.what());
  }
  for (int32_t id : impl->prefix)
    if (static_cast<size_t>(id) >= impl->id_to_token.size())
      bad_input("{}: post-processor special token id {} is not in the vocabulary", where, id);
  for (int32_t id : impl->suffix)
    if (static_cast<size_t>(id) >= impl->id_to_token.size())
      bad_input("{}: post-processor special token id {} is not in the vocabulary", where, id);
  for (const AddedToken& a : impl->added)
    if (a.special) impl->special_ids.insert(a.id);
  for (const AddedToken& a : impl->added)
    if (!a.content.empty()) impl->added_by_byte[static_cast<unsigned char>(a.content[0])].push_back(&a);
  for (auto& v : impl->added_by_byte)
    std::stable_sort(v.begin(), v.end(), [](const AddedToken* x, const AddedToken* y) {
      return x->content.size() > y->content.size();
    });
  const fs::path config = file.parent_path() / "tokenizer_config.json";
  if (fs::exists(config, ec)) {
    const json c = read_json(config);
    impl->clean_up_spaces = bool_field(c, "clean_up_tokenization_spaces", false);
  }
  return Tokenizer(std::move(impl));
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special) const {
  return impl_->encode(text, add_special);
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool skip_special) const {
  std::vector<std::string> tokens;
  for (int32_t id : ids) {
    if (id < 0 || static_cast<size_t>(id) >= impl_->id_to_token.size()) continue;
    if (skip_special && impl_->special_ids.count(id)) continue;
    tokens.push_back(impl_->id_to_token[static_cast<size_t>(id)]);
  }
  if (impl_->decoder) tokens = impl_->decoder->decode(std::move(tokens));
  std::string out;
  for (auto& t : tokens) out += t;
  if (impl_->clean_up_spaces) {
    static const std::pair<const char*, const char*> rules[] = {
        {" .", "."}, {" ?", "?"}, {" !", "!"}, {" ,", ","}, {" ' ", "'"}, {" n't", "n't"},
        {" 'm", "'m"}, {" 's", "'s"}, {" 've", "'ve"}, {" 're", "'re"}};
    for (auto [from, to] : rules) out = replace_matches(out, literal_matches(out, from), to);
  }
  return out;
}

std::string Tokenizer::token(int32_t id) const {
  return id >= 0 && static_cast<size_t>(id) < impl_->id_to_token.size() ? impl_->id_to_token[static_cast<size_t>(id)]
                                                                          : std::string();
}

size_t Tokenizer::vocab_size() const { return impl_->id_to_token.size(); }

}  // namespace slmops::tok
