// Lexer and parser: Jinja2's grammar (jinja2/lexer.py, jinja2/parser.py) for the subset chat
// templates use, with transformers' lexer settings (trim_blocks, lstrip_blocks, no trailing
// newline).
#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <set>

#include "tokenizers/jinja/ast.h"
#include "tokenizers/unicode.h"

namespace slmops::jinja {

namespace {

[[noreturn]] void syntax_error(int line, const std::string& msg) {
  throw RenderError(fmt::format("line {}: {}", line, msg));
}

// Python's str.splitlines() joined by "\n": Jinja2 reads every line break (\r\n, \r, \v, \f,
// \x1c-\x1e, U+0085, U+2028, U+2029) as "\n", and drops one trailing line break.
std::string normalize_newlines(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    const size_t start = i;
    const char32_t cp = tok::next_code_point(s, i);
    const bool brk = cp == '\n' || cp == '\r' || cp == 0x0b || cp == 0x0c || (cp >= 0x1c && cp <= 0x1e) || cp == 0x85 ||
                     cp == 0x2028 || cp == 0x2029;
    if (!brk) {
      out.append(s, start, i - start);
      continue;
    }
    if (cp == '\r' && i < s.size() && s[i] == '\n') ++i;
    if (i == s.size()) break;  // the trailing line break
    out.push_back('\n');
  }
  return out;
}

bool space_at(std::string_view s, size_t i, size_t* len) {
  size_t j = i;
  const char32_t cp = tok::next_code_point(s, j);
  *len = j - i;
  return py_isspace(cp);
}

size_t skip_space(std::string_view s, size_t i) {
  size_t len;
  while (i < s.size() && space_at(s, i, &len)) i += len;
  return i;
}

std::string rstrip_space(std::string_view s) {
  // Walk forward, remembering where the last non-space character ended.
  size_t i = 0, keep = 0, len;
  while (i < s.size()) {
    const bool sp = space_at(s, i, &len);
    i += len;
    if (!sp) keep = i;
  }
  return std::string(s.substr(0, keep));
}

bool all_space(std::string_view s) {
  if (s.empty()) return false;
  size_t i = 0, len;
  while (i < s.size()) {
    if (!space_at(s, i, &len)) return false;
    i += len;
  }
  return true;
}

enum class Tok { Text, VarBegin, VarEnd, BlockBegin, BlockEnd, Name, String, Int, Float, Op, Eof };

struct Token {
  Tok type;
  std::string text;  // Text data, a name, an operator, a string's value
  Value value;       // Int / Float
  int line;
};

class Lexer {
 public:
  explicit Lexer(std::string_view source) : src_(normalize_newlines(source)) {}

  std::vector<Token> run() {
    while (pos_ < src_.size()) {
      const size_t start = find_tag(pos_);
      std::string text = src_.substr(pos_, start - pos_);
      if (start == src_.size()) {
        emit_text(std::move(text));
        pos_ = start;
        break;
      }
      const char kind = src_[start + 1];
      const char sign =
          start + 2 < src_.size() && (src_[start + 2] == '-' || src_[start + 2] == '+') ? src_[start + 2] : 0;
      if (sign == '-') {
        text = rstrip_space(text);
      } else if (sign != '+' && kind != '{') {  // lstrip_blocks: block and comment tags only
        const size_t l_pos = text.rfind('\n') == std::string::npos ? 0 : text.rfind('\n') + 1;
        if ((l_pos > 0 || line_starting_) && all_space(std::string_view(text).substr(l_pos))) text.resize(l_pos);
      }
      const size_t tag_body = start + 2 + (sign ? 1 : 0);
      if (kind == '%' && raw_block(text, tag_body)) continue;
      emit_text(std::move(text));
      count_lines(pos_, start);
      pos_ = tag_body;
      if (kind == '#') {
        comment();
      } else {
        tag(kind == '{');
      }
    }
    tokens_.push_back({Tok::Eof, "", {}, line_});
    return std::move(tokens_);
  }

 private:
  // The next "{{", "{%" or "{#" at or after i (src_.size() when none).
  size_t find_tag(size_t i) const {
    while ((i = src_.find('{', i)) != std::string::npos) {
      if (i + 1 < src_.size() && (src_[i + 1] == '{' || src_[i + 1] == '%' || src_[i + 1] == '#')) return i;
      ++i;
    }
    return src_.size();
  }

  void emit_text(std::string text) {
    if (!text.empty()) tokens_.push_back({Tok::Text, std::move(text), {}, line_});
  }

  void count_lines(size_t from, size_t to) {
    line_ += static_cast<int>(std::count(src_.begin() + from, src_.begin() + to, '\n'));
  }

  // Consumes a tag end at pos_ of the form "<sign?><close>" and what whitespace control says
  // after it; returns false when there is none here.
  bool tag_end(std::string_view close, bool allow_plus) {
    size_t p = pos_;
    char sign = 0;
    if (src_.compare(p, 1, "-") == 0 || (allow_plus && src_.compare(p, 1, "+") == 0)) sign = src_[p++];
    if (src_.compare(p, close.size(), close) != 0) return false;
    p += close.size();
    if (sign == '-') {
      p = skip_space(src_, p);
    } else if (sign == 0 && close != "}}" && p < src_.size() && src_[p] == '\n') {
      ++p;  // trim_blocks
    }
    count_lines(pos_, p);
    line_starting_ = p > pos_ && src_[p - 1] == '\n';
    pos_ = p;
    return true;
  }

  void comment() {
    const int line = line_;
    while (pos_ < src_.size()) {
      if (tag_end("#}", true)) return;
      ++pos_;
    }
    syntax_error(line, "missing end of comment tag");
  }

  // {% raw %}...{% endraw %}: the text in between is kept as it is.
  bool raw_block(std::string& text, size_t body) {
    size_t p = skip_space(src_, body);
    if (src_.compare(p, 3, "raw") != 0) return false;
    p = skip_space(src_, p + 3);
    if (src_.compare(p, 3, "-%}") == 0) {
      p = skip_space(src_, p + 3);
    } else if (src_.compare(p, 2, "%}") == 0) {
      p += 2;
    } else {
      return false;
    }
    emit_text(std::move(text));
    count_lines(pos_, p);
    const int line = line_;
    for (size_t q = src_.find("{%", p); q != std::string::npos; q = src_.find("{%", q + 2)) {
      size_t r = q + 2;
      const char sign = r < src_.size() && (src_[r] == '-' || src_[r] == '+') ? src_[r] : 0;
      if (sign) ++r;
      r = skip_space(src_, r);
      if (src_.compare(r, 6, "endraw") != 0) continue;
      r = skip_space(src_, r + 6);
      std::string raw = src_.substr(p, q - p);
      if (sign == '-') {
        raw = rstrip_space(raw);
      } else if (sign != '+') {
        const size_t l_pos = raw.rfind('\n') == std::string::npos ? 0 : raw.rfind('\n') + 1;
        if (l_pos > 0 && all_space(std::string_view(raw).substr(l_pos))) raw.resize(l_pos);
      }
      count_lines(p, r);
      pos_ = r;
      if (!tag_end("%}", true)) syntax_error(line_, "expected '%}' after 'endraw'");
      emit_text(std::move(raw));
      return true;
    }
    syntax_error(line, "missing end of raw directive");
  }

  void tag(bool variable) {
    tokens_.push_back({variable ? Tok::VarBegin : Tok::BlockBegin, "", {}, line_});
    const int line = line_;
    std::vector<char> balance;
    while (true) {
      const size_t p = skip_space(src_, pos_);
      count_lines(pos_, p);
      pos_ = p;
      if (pos_ >= src_.size())
        syntax_error(line, fmt::format("unexpected end of template, expected '{}'", variable ? "}}" : "%}"));
      if (balance.empty() && tag_end(variable ? "}}" : "%}", !variable)) {
        tokens_.push_back({variable ? Tok::VarEnd : Tok::BlockEnd, "", {}, line_});
        return;
      }
      token(balance);
    }
  }

  void token(std::vector<char>& balance) {
    const char c = src_[pos_];
    if (c == '\'' || c == '"') return string_literal(c);
    if (std::isdigit(static_cast<unsigned char>(c))) return number();
    if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
      size_t e = pos_;
      while (e < src_.size() && (std::isalnum(static_cast<unsigned char>(src_[e])) || src_[e] == '_')) ++e;
      tokens_.push_back({Tok::Name, src_.substr(pos_, e - pos_), {}, line_});
      pos_ = e;
      return;
    }
    static const char* const ops[] = {"**", "//", "==", "!=", "<=", ">=", "+", "-", "*", "/", "%", "~", "<",
                                      ">",  "=",  "(",  ")",  "[",  "]",  "{", "}", ",", ":", ".", "|", ";"};
    for (const char* op : ops) {
      const std::string_view o(op);
      if (src_.compare(pos_, o.size(), o) != 0) continue;
      if (o == "(" || o == "[" || o == "{") balance.push_back(o[0]);
      if (o == ")" || o == "]" || o == "}") {
        const char open = o == ")" ? '(' : o == "]" ? '[' : '{';
        if (balance.empty() || balance.back() != open) syntax_error(line_, fmt::format("unexpected '{}'", o));
        balance.pop_back();
      }
      tokens_.push_back({Tok::Op, std::string(o), {}, line_});
      pos_ += o.size();
      return;
    }
    syntax_error(line_, fmt::format("unexpected char '{}'", std::string(1, c)));
  }

  void number() {
    // Jinja2: integers 0b.., 0o.., 0x.., decimal with '_' separators; floats d.d, d.de+d, de+d.
    size_t e = pos_;
    auto digits = [&](auto pred) {
      const size_t s = e;
      while (e < src_.size() &&
             (pred(src_[e]) || (src_[e] == '_' && e > s && e + 1 < src_.size() && pred(src_[e + 1]))))
        ++e;
      return e > s;
    };
    auto dec = [](char ch) { return ch >= '0' && ch <= '9'; };
    if (src_[e] == '0' && e + 1 < src_.size() && std::strchr("bBoOxX", src_[e + 1])) {
      const char b = static_cast<char>(std::tolower(static_cast<unsigned char>(src_[e + 1])));
      const int base = b == 'b' ? 2 : b == 'o' ? 8 : 16;
      e += 2;
      if (e < src_.size() && src_[e] == '_') ++e;
      if (!digits([base](char ch) {
            return base == 16 ? std::isxdigit(static_cast<unsigned char>(ch)) != 0 : ch >= '0' && ch < '0' + base;
          }))
        syntax_error(line_, "invalid integer literal");
      std::string d;
      for (char ch : src_.substr(pos_ + 2, e - pos_ - 2))
        if (ch != '_') d.push_back(ch);
      int64_t v = 0;
      if (std::from_chars(d.data(), d.data() + d.size(), v, base).ec != std::errc())
        syntax_error(line_, "integer literal out of range");
      tokens_.push_back({Tok::Int, "", Value(v), line_});
      pos_ = e;
      return;
    }
    digits(dec);
    bool is_float = false;
    if (e + 1 < src_.size() && src_[e] == '.' && dec(src_[e + 1])) {
      ++e;
      digits(dec);
      is_float = true;
    }
    if (e < src_.size() && (src_[e] == 'e' || src_[e] == 'E')) {
      size_t f = e + 1;
      if (f < src_.size() && (src_[f] == '+' || src_[f] == '-')) ++f;
      if (f < src_.size() && dec(src_[f])) {
        e = f;
        digits(dec);
        is_float = true;
      }
    }
    if (!is_float && src_[pos_] == '0') {
      // Jinja2's integers: a decimal one starts with 1-9, or is zeros ("007" is "00" then "7").
      e = pos_ + 1;
      while (e < src_.size() && (src_[e] == '0' || (src_[e] == '_' && e + 1 < src_.size() && src_[e + 1] == '0'))) ++e;
    }
    std::string d;
    for (char ch : src_.substr(pos_, e - pos_))
      if (ch != '_') d.push_back(ch);
    if (is_float) {
      tokens_.push_back({Tok::Float, "", Value(std::strtod(d.c_str(), nullptr)), line_});
    } else {
      int64_t v = 0;
      if (std::from_chars(d.data(), d.data() + d.size(), v).ec != std::errc())
        syntax_error(line_, "integer literal out of range");
      tokens_.push_back({Tok::Int, "", Value(v), line_});
    }
    pos_ = e;
  }

  // A quoted string with Python's escapes (Jinja2 decodes them with "unicode-escape").
  void string_literal(char quote) {
    const int line = line_;
    std::string out;
    size_t i = pos_ + 1;
    auto hex = [&](size_t n) -> char32_t {
      if (i + n > src_.size()) syntax_error(line, "truncated \\x, \\u or \\U escape in a string");
      uint32_t v = 0;
      const auto r = std::from_chars(src_.data() + i, src_.data() + i + n, v, 16);
      if (r.ptr != src_.data() + i + n || v > 0x10ffff)
        syntax_error(line, "invalid \\x, \\u or \\U escape in a string");
      if (v >= 0xd800 && v <= 0xdfff)
        syntax_error(line, fmt::format("a lone surrogate \\u{:04x} in a string (the output must be valid UTF-8)", v));
      i += n;
      return static_cast<char32_t>(v);
    };
    while (true) {
      if (i >= src_.size()) syntax_error(line, "unterminated string");
      const char c = src_[i];
      if (c == quote) break;
      if (c != '\\') {
        if (c == '\n') ++line_;
        out.push_back(c);
        ++i;
        continue;
      }
      if (++i >= src_.size()) syntax_error(line, "unterminated string");
      const char e = src_[i++];
      switch (e) {
        case '\n':
          ++line_;
          break;  // a line continuation
        case '\\':
          out.push_back('\\');
          break;
        case '\'':
          out.push_back('\'');
          break;
        case '"':
          out.push_back('"');
          break;
        case 'a':
          out.push_back('\a');
          break;
        case 'b':
          out.push_back('\b');
          break;
        case 'f':
          out.push_back('\f');
          break;
        case 'n':
          out.push_back('\n');
          break;
        case 'r':
          out.push_back('\r');
          break;
        case 't':
          out.push_back('\t');
          break;
        case 'v':
          out.push_back('\v');
          break;
        case 'x':
          tok::append_utf8(out, hex(2));
          break;
        case 'u':
          tok::append_utf8(out, hex(4));
          break;
        case 'U':
          tok::append_utf8(out, hex(8));
          break;
        default:
          if (e >= '0' && e <= '7') {
            uint32_t v = static_cast<uint32_t>(e - '0');
            for (int k = 0; k < 2 && i < src_.size() && src_[i] >= '0' && src_[i] <= '7'; ++k)
              v = v * 8 + static_cast<uint32_t>(src_[i++] - '0');
            tok::append_utf8(out, static_cast<char32_t>(v));
          } else {
            out.push_back('\\');  // an unknown escape keeps its backslash, as in Python
            out.push_back(e);
          }
      }
    }
    tokens_.push_back({Tok::String, std::move(out), {}, line});
    pos_ = i + 1;
  }

  std::string src_;
  size_t pos_ = 0;
  int line_ = 1;
  bool line_starting_ = true;
  std::vector<Token> tokens_;
};

class Parser {
 public:
  explicit Parser(std::vector<Token> tokens) : t_(std::move(tokens)) {}

  Body parse() {
    std::string end;
    Body body = parse_body({}, &end);
    // Jinja2 refuses an unknown filter or test when it compiles, unless it sits in an if
    // statement or an inline if (where it fails only when it runs).
    if (!unknown_.empty()) syntax_error(unknown_[0].first, unknown_[0].second);
    return body;
  }

 private:
  const Token& cur() const { return t_[i_]; }
  const Token& peek(size_t k = 1) const { return t_[std::min(i_ + k, t_.size() - 1)]; }
  bool is_op(std::string_view op) const { return cur().type == Tok::Op && cur().text == op; }
  bool is_name(std::string_view n) const { return cur().type == Tok::Name && cur().text == n; }
  bool skip_op(std::string_view op) {
    if (!is_op(op)) return false;
    ++i_;
    return true;
  }
  bool skip_name(std::string_view n) {
    if (!is_name(n)) return false;
    ++i_;
    return true;
  }
  std::string describe(const Token& t) const {
    switch (t.type) {
      case Tok::Eof:
        return "end of template";
      case Tok::VarEnd:
        return "end of print statement";
      case Tok::BlockEnd:
        return "end of statement block";
      case Tok::Name:
        return "'" + t.text + "'";
      case Tok::Op:
        return "'" + t.text + "'";
      case Tok::String:
        return "string";
      case Tok::Int:
      case Tok::Float:
        return "number";
      default:
        return "template data";
    }
  }
  [[noreturn]] void fail(const std::string& msg) const { syntax_error(cur().line, msg); }
  void expect_op(std::string_view op) {
    if (!skip_op(op)) fail(fmt::format("expected '{}', got {}", op, describe(cur())));
  }
  void expect_block_end() {
    if (cur().type != Tok::BlockEnd) fail(fmt::format("expected end of statement block, got {}", describe(cur())));
    ++i_;
  }
  std::string expect_name() {
    if (cur().type != Tok::Name) fail(fmt::format("expected a name, got {}", describe(cur())));
    return t_[i_++].text;
  }

  ExprPtr make(Expr::Kind k, int line) {
    auto e = std::make_unique<Expr>();
    e->kind = k;
    e->line = line;
    return e;
  }

  // Statements up to a block tag named in `ends` (its name is consumed and returned in *end).
  Body parse_body(const std::set<std::string>& ends, std::string* end) {
    const Depth d(*this);
    Body body;
    while (true) {
      const Token& t = cur();
      if (t.type == Tok::Eof) {
        if (!ends.empty()) {
          std::string want;
          for (const auto& e : ends) want += (want.empty() ? "" : " or ") + e;
          fail(fmt::format("unexpected end of template; Jinja was looking for the following tags: '{}'", want));
        }
        return body;
      }
      if (t.type == Tok::Text) {
        auto s = std::make_unique<Stmt>();
        s->kind = Stmt::Kind::Text;
        s->line = t.line;
        s->text = t.text;
        body.push_back(std::move(s));
        ++i_;
        continue;
      }
      if (t.type == Tok::VarBegin) {
        auto s = std::make_unique<Stmt>();
        s->kind = Stmt::Kind::Output;
        s->line = t.line;
        ++i_;
        s->exprs.push_back(parse_tuple(true, {}));
        if (cur().type != Tok::VarEnd) fail(fmt::format("expected end of print statement, got {}", describe(cur())));
        ++i_;
        body.push_back(std::move(s));
        continue;
      }
      if (t.type != Tok::BlockBegin) fail(fmt::format("unexpected {}", describe(t)));
      ++i_;
      if (cur().type != Tok::Name) fail("tag name expected");
      const std::string name = cur().text;
      if (ends.count(name)) {
        ++i_;
        *end = name;
        return body;
      }
      body.push_back(parse_statement());
    }
  }

  std::unique_ptr<Stmt> stmt(Stmt::Kind k) {
    auto s = std::make_unique<Stmt>();
    s->kind = k;
    s->line = cur().line;
    return s;
  }

  std::unique_ptr<Stmt> parse_statement() {
    const std::string name = cur().text;
    const int line = cur().line;
    ++i_;
    std::string end;
    if (name == "if") {
      auto s = stmt(Stmt::Kind::If);
      s->line = line;
      ++soft_;
      struct Soft {
        int& n;
        ~Soft() { --n; }
      } soft{soft_};
      s->exprs.push_back(parse_tuple(false, {}));
      expect_block_end();
      while (true) {
        s->bodies.push_back(parse_body({"elif", "else", "endif"}, &end));
        if (end == "elif") {
          s->exprs.push_back(parse_tuple(false, {}));
          expect_block_end();
          continue;
        }
        if (end == "else") {
          expect_block_end();
          s->bodies.push_back(parse_body({"endif"}, &end));
          s->has_else = true;
        }
        expect_block_end();
        return s;
      }
    }
    if (name == "for") {
      auto s = stmt(Stmt::Kind::For);
      s->line = line;
      s->names = parse_target_names();
      if (!skip_name("in")) fail(fmt::format("expected 'in', got {}", describe(cur())));
      s->exprs.push_back(parse_tuple(false, {"recursive"}));
      s->exprs.push_back(skip_name("if") ? parse_expression(true) : nullptr);
      if (is_name("recursive")) fail("recursive loops are not supported");
      expect_block_end();
      ++loop_depth_;
      s->bodies.push_back(parse_body({"endfor", "else"}, &end));
      --loop_depth_;
      if (end == "else") {
        expect_block_end();
        s->bodies.push_back(parse_body({"endfor"}, &end));
        s->has_else = true;
      }
      expect_block_end();
      return s;
    }
    if (name == "set") {
      if (cur().type == Tok::Name && peek().type == Tok::Op && peek().text == ".") {
        auto s = stmt(Stmt::Kind::SetAttr);
        s->line = line;
        s->names.push_back(expect_name());
        ++i_;
        s->names.push_back(expect_name());
        if (skip_op("=")) {
          s->exprs.push_back(parse_tuple(true, {}));
          expect_block_end();
          return s;
        }
        s->kind = Stmt::Kind::SetBlock;  // {% set ns.x %}...{% endset %}
        parse_set_block(*s);
        return s;
      }
      std::vector<std::string> names = parse_target_names();
      if (skip_op("=")) {
        auto s = stmt(Stmt::Kind::Set);
        s->line = line;
        s->names = std::move(names);
        s->exprs.push_back(parse_tuple(true, {}));
        expect_block_end();
        return s;
      }
      if (names.size() != 1) fail("a block set assigns one name");
      auto s = stmt(Stmt::Kind::SetBlock);
      s->line = line;
      s->names = std::move(names);
      parse_set_block(*s);
      return s;
    }
    if (name == "macro") {
      auto s = stmt(Stmt::Kind::Macro);
      s->line = line;
      s->names.push_back(expect_name());
      expect_op("(");
      while (!skip_op(")")) {
        if (s->names.size() > 1) expect_op(",");
        if (skip_op(")")) break;
        s->names.push_back(expect_name());
        if (skip_op("=")) {
          s->exprs.push_back(parse_expression(true));
        } else if (!s->exprs.empty()) {
          fail("non-default argument follows default argument");
        }
      }
      expect_block_end();
      names_read_.emplace_back();
      s->bodies.push_back(parse_body({"endmacro"}, &end));
      s->catch_varargs = names_read_.back().count("varargs") > 0;
      s->catch_kwargs = names_read_.back().count("kwargs") > 0;
      names_read_.pop_back();
      expect_block_end();
      return s;
    }
    if (name == "filter") {
      auto s = stmt(Stmt::Kind::FilterBlock);
      s->line = line;
      ExprPtr chain = chained(parse_filter(nullptr, false));
      while (is_op("|")) chain = chained(parse_filter(std::move(chain), true));
      s->exprs.push_back(std::move(chain));
      expect_block_end();
      s->bodies.push_back(parse_body({"endfilter"}, &end));
      expect_block_end();
      return s;
    }
    if (name == "with") {
      auto s = stmt(Stmt::Kind::With);
      s->line = line;
      while (cur().type != Tok::BlockEnd) {
        if (!s->names.empty()) expect_op(",");
        s->names.push_back(expect_name());
        expect_op("=");
        s->exprs.push_back(parse_expression(true));
      }
      expect_block_end();
      s->bodies.push_back(parse_body({"endwith"}, &end));
      expect_block_end();
      return s;
    }
    if (name == "generation") {
      // transformers' AssistantTracker tag: it marks assistant text for masks and renders its body.
      auto s = stmt(Stmt::Kind::With);
      s->line = line;
      expect_block_end();
      s->bodies.push_back(parse_body({"endgeneration"}, &end));
      expect_block_end();
      return s;
    }
    if (name == "break" || name == "continue") {
      if (loop_depth_ == 0) syntax_error(line, fmt::format("'{}' outside of a loop", name));
      auto s = stmt(name == "break" ? Stmt::Kind::Break : Stmt::Kind::Continue);
      s->line = line;
      expect_block_end();
      return s;
    }
    syntax_error(line, fmt::format("encountered unknown tag '{}'", name));
  }

  // The rest of a block set: optional filters, then the body up to endset.
  void parse_set_block(Stmt& s) {
    if (is_op("|")) {
      ExprPtr chain;
      while (is_op("|")) chain = chained(parse_filter(std::move(chain), true));
      s.exprs.push_back(std::move(chain));
    }
    expect_block_end();
    std::string end;
    s.bodies.push_back(parse_body({"endset"}, &end));
    expect_block_end();
  }

  // "a", "a, b" or "(a, b)".
  std::vector<std::string> parse_target_names() {
    std::vector<std::string> names;
    const bool paren = skip_op("(");
    names.push_back(expect_name());
    while (skip_op(",")) {
      if (paren && is_op(")")) break;
      if (cur().type != Tok::Name || is_name("in")) break;
      names.push_back(expect_name());
    }
    if (paren) expect_op(")");
    return names;
  }

  bool tuple_end(const std::set<std::string>& extra_end) const {
    const Token& t = cur();
    if (t.type == Tok::VarEnd || t.type == Tok::BlockEnd || t.type == Tok::Eof) return true;
    if (t.type == Tok::Op && t.text == ")") return true;
    return t.type == Tok::Name && extra_end.count(t.text);
  }

  ExprPtr parse_tuple(bool with_condexpr, const std::set<std::string>& extra_end, bool explicit_parens = false) {
    const int line = cur().line;
    std::vector<ExprPtr> items;
    bool is_tuple = false;
    while (true) {
      if (!items.empty()) expect_op(",");
      if (tuple_end(extra_end)) break;
      items.push_back(parse_expression(with_condexpr));
      if (is_op(",")) {
        is_tuple = true;
      } else {
        break;
      }
    }
    if (!is_tuple) {
      if (!items.empty()) return std::move(items[0]);
      if (!explicit_parens) fail(fmt::format("expected an expression, got {}", describe(cur())));
    }
    auto e = make(Expr::Kind::Tuple, line);
    e->args = std::move(items);
    return chained(std::move(e));
  }

  // Nesting (brackets, unary operators, blocks) deeper than this is refused: the parser and the
  // renderer recurse once per level.
  static constexpr int kMaxDepth = 200;
  struct Depth {
    Parser& p;
    explicit Depth(Parser& parser) : p(parser) {
      if (++p.depth_ > kMaxDepth) p.fail(fmt::format("nested deeper than {} levels", kMaxDepth));
    }
    ~Depth() { --p.depth_; }
  };

  ExprPtr parse_expression(bool with_condexpr) {
    const Depth d(*this);
    return with_condexpr ? parse_condexpr() : parse_or();
  }

  ExprPtr parse_condexpr() {
    const size_t unknown_before = unknown_.size();
    ExprPtr e = parse_or();
    while (is_name("if")) {
      const int line = cur().line;
      ++i_;
      unknown_.resize(std::min(unknown_.size(), unknown_before));
      ++soft_;
      ExprPtr cond = parse_or();
      ExprPtr other = skip_name("else") ? parse_condexpr() : nullptr;
      --soft_;
      auto c = make(Expr::Kind::Cond, line);
      c->args.push_back(std::move(cond));
      c->args.push_back(std::move(e));
      c->args.push_back(std::move(other));
      e = chained(std::move(c));
    }
    return e;
  }

  ExprPtr binary_chain(Expr::Kind kind, std::string_view kw, ExprPtr (Parser::*next)()) {
    ExprPtr left = (this->*next)();
    while (is_name(kw)) {
      const int line = cur().line;
      ++i_;
      auto e = make(kind, line);
      e->args.push_back(std::move(left));
      e->args.push_back((this->*next)());
      left = chained(std::move(e));
    }
    return left;
  }
  ExprPtr parse_or() { return binary_chain(Expr::Kind::Or, "or", &Parser::parse_and); }
  ExprPtr parse_and() { return binary_chain(Expr::Kind::And, "and", &Parser::parse_not); }

  ExprPtr parse_not() {
    const Depth d(*this);
    if (is_name("not")) {
      auto e = make(Expr::Kind::Not, cur().line);
      ++i_;
      e->args.push_back(parse_not());
      return chained(std::move(e));
    }
    return parse_compare();
  }

  ExprPtr parse_compare() {
    const int line = cur().line;
    ExprPtr first = parse_math1();
    ExprPtr cmp;
    while (true) {
      std::string op;
      if (cur().type == Tok::Op && (cur().text == "==" || cur().text == "!=" || cur().text == "<" ||
                                    cur().text == ">" || cur().text == "<=" || cur().text == ">=")) {
        op = cur().text;
        ++i_;
      } else if (is_name("in")) {
        op = "in";
        ++i_;
      } else if (is_name("not") && peek().type == Tok::Name && peek().text == "in") {
        op = "not in";
        i_ += 2;
      } else {
        break;
      }
      if (!cmp) {
        cmp = make(Expr::Kind::Compare, line);
        cmp->args.push_back(std::move(first));
      }
      cmp->ops.push_back(op);
      cmp->args.push_back(parse_math1());
      if (cmp->ops.size() > kMaxChain) fail(fmt::format("more than {} chained comparisons", kMaxChain));
    }
    return cmp ? chained(std::move(cmp)) : std::move(first);
  }

  ExprPtr binary(std::string op, ExprPtr l, ExprPtr r, int line) {
    auto e = make(Expr::Kind::Binary, line);
    e->name = std::move(op);
    e->args.push_back(std::move(l));
    e->args.push_back(std::move(r));
    return chained(std::move(e));
  }

  // Operator, attribute and filter chains build left-deep trees without recursing here, but
  // rendering (and freeing) one recurses per level: a chain as deep as kMaxChain is refused.
  static constexpr int kMaxChain = 1000;
  ExprPtr chained(ExprPtr e) {
    int d = 0;
    for (const auto& a : e->args)
      if (a) d = std::max(d, a->depth);
    for (const auto& kv : e->kwargs)
      if (kv.second) d = std::max(d, kv.second->depth);
    e->depth = d + 1;
    if (e->depth > kMaxChain)
      syntax_error(e->line, fmt::format("an expression nested deeper than {} levels", kMaxChain));
    return e;
  }

  ExprPtr parse_math1() {
    ExprPtr left = parse_concat();
    while (is_op("+") || is_op("-")) {
      const std::string op = cur().text;
      const int line = cur().line;
      ++i_;
      left = binary(op, std::move(left), parse_concat(), line);
    }
    return left;
  }

  ExprPtr parse_concat() {
    ExprPtr left = parse_math2();
    while (is_op("~")) {
      const int line = cur().line;
      ++i_;
      left = binary("~", std::move(left), parse_math2(), line);
    }
    return left;
  }

  ExprPtr parse_math2() {
    ExprPtr left = parse_pow();
    while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
      const std::string op = cur().text;
      const int line = cur().line;
      ++i_;
      left = binary(op, std::move(left), parse_pow(), line);
    }
    return left;
  }

  ExprPtr parse_pow() {
    ExprPtr left = parse_unary(true);
    while (is_op("**")) {
      const int line = cur().line;
      ++i_;
      left = binary("**", std::move(left), parse_unary(true), line);
    }
    return left;
  }

  ExprPtr parse_unary(bool with_filter) {
    const Depth d(*this);
    ExprPtr node;
    if (is_op("-") || is_op("+")) {
      node = make(Expr::Kind::Unary, cur().line);
      node->name = cur().text;
      ++i_;
      node->args.push_back(parse_unary(false));
      node = chained(std::move(node));
    } else {
      node = parse_primary();
    }
    node = parse_postfix(std::move(node));
    if (with_filter) node = parse_filter_expr(std::move(node));
    return node;
  }

  ExprPtr parse_primary() {
    const Token& t = cur();
    if (t.type == Tok::Name) {
      ++i_;
      if (t.text == "true" || t.text == "True") return literal(Value(true), t.line);
      if (t.text == "false" || t.text == "False") return literal(Value(false), t.line);
      if (t.text == "none" || t.text == "None") return literal(Value(None{}), t.line);
      auto e = make(Expr::Kind::Name, t.line);
      e->name = t.text;
      for (auto& names : names_read_) names.insert(t.text);
      return e;
    }
    if (t.type == Tok::String) {
      std::string s = t.text;
      const int line = t.line;
      ++i_;
      while (cur().type == Tok::String) s += t_[i_++].text;  // adjacent literals concatenate
      return literal(Value(std::move(s)), line);
    }
    if (t.type == Tok::Int || t.type == Tok::Float) {
      ++i_;
      return literal(t.value, t.line);
    }
    if (is_op("(")) {
      ++i_;
      ExprPtr e = parse_tuple(true, {}, true);
      expect_op(")");
      return e;
    }
    if (is_op("[")) {
      auto e = make(Expr::Kind::List, t.line);
      ++i_;
      while (!skip_op("]")) {
        if (!e->args.empty()) {
          expect_op(",");
          if (skip_op("]")) break;
        }
        e->args.push_back(parse_expression(true));
      }
      return chained(std::move(e));
    }
    if (is_op("{")) {
      auto e = make(Expr::Kind::Dict, t.line);
      ++i_;
      while (!skip_op("}")) {
        if (!e->args.empty()) {
          expect_op(",");
          if (skip_op("}")) break;
        }
        e->args.push_back(parse_expression(true));
        expect_op(":");
        e->args.push_back(parse_expression(true));
      }
      return chained(std::move(e));
    }
    fail(fmt::format("unexpected {}", describe(t)));
  }

  ExprPtr literal(Value v, int line) {
    auto e = make(Expr::Kind::Literal, line);
    e->value = std::move(v);
    return e;
  }

  ExprPtr parse_postfix(ExprPtr node) {
    while (true) {
      const int line = cur().line;
      if (is_op(".")) {
        ++i_;
        if (cur().type == Tok::Int) {
          auto e = make(Expr::Kind::GetItem, line);
          e->args.push_back(std::move(node));
          e->args.push_back(literal(t_[i_++].value, line));
          node = chained(std::move(e));
          continue;
        }
        auto e = make(Expr::Kind::GetAttr, line);
        e->name = expect_name();
        e->args.push_back(std::move(node));
        node = chained(std::move(e));
      } else if (is_op("[")) {
        ++i_;
        node = chained(parse_subscript(std::move(node), line));
      } else if (is_op("(")) {
        node = chained(parse_call(std::move(node)));
      } else {
        return node;
      }
    }
  }

  ExprPtr parse_subscript(ExprPtr obj, int line) {
    // obj[expr], obj[a:b:c] (parts optional), obj[a, b] (a tuple key).
    ExprPtr parts[3];
    int part = 0;
    bool slice = false;
    while (!is_op("]")) {
      if (is_op(":")) {
        ++i_;
        slice = true;
        if (++part > 2) fail("too many ':' in a slice");
        continue;
      }
      if (parts[part]) fail(fmt::format("expected ']', got {}", describe(cur())));
      parts[part] = part == 0 && !slice ? parse_tuple(true, {}) : parse_expression(true);
    }
    ++i_;
    if (!slice) {
      if (!parts[0]) fail("expected an index inside '[]'");
      auto e = make(Expr::Kind::GetItem, line);
      e->args.push_back(std::move(obj));
      e->args.push_back(std::move(parts[0]));
      return e;
    }
    auto e = make(Expr::Kind::Slice, line);
    e->args.push_back(std::move(obj));
    for (auto& p : parts) e->args.push_back(std::move(p));
    return e;
  }

  // "(" args ")" into e->args (after whatever is in args[0]) and e->kwargs.
  void parse_call_args(Expr& e) {
    expect_op("(");
    bool first = true;
    while (!skip_op(")")) {
      if (!first) {
        expect_op(",");
        if (skip_op(")")) break;
      }
      first = false;
      if (is_op("*") || is_op("**")) fail("*args and **kwargs in calls are not supported");
      if (cur().type == Tok::Name && peek().type == Tok::Op && peek().text == "=") {
        std::string key = t_[i_].text;
        i_ += 2;
        e.kwargs.emplace_back(std::move(key), parse_expression(true));
      } else {
        if (!e.kwargs.empty()) fail("positional argument follows keyword argument");
        e.args.push_back(parse_expression(true));
      }
    }
  }

  ExprPtr parse_call(ExprPtr callee) {
    auto e = make(Expr::Kind::Call, cur().line);
    e->args.push_back(std::move(callee));
    parse_call_args(*e);
    return e;
  }

  ExprPtr parse_filter(ExprPtr operand, bool skip_bar) {
    const int line = cur().line;
    if (skip_bar) expect_op("|");
    auto e = make(Expr::Kind::Filter, line);
    e->name = expect_name();
    while (is_op(".")) {
      ++i_;
      e->name += "." + expect_name();
    }
    if (!is_known_filter(e->name) && soft_ == 0)
      unknown_.emplace_back(line, fmt::format("no filter named '{}'", e->name));
    e->args.push_back(std::move(operand));
    if (is_op("(")) parse_call_args(*e);
    return e;
  }

  ExprPtr parse_test(ExprPtr operand) {
    const int line = cur().line;
    ++i_;  // "is"
    auto e = make(Expr::Kind::Test, line);
    e->negated = skip_name("not");
    e->name = expect_name();
    while (is_op(".")) {
      ++i_;
      e->name += "." + expect_name();
    }
    if (!is_known_test(e->name) && soft_ == 0) unknown_.emplace_back(line, fmt::format("no test named '{}'", e->name));
    e->args.push_back(std::move(operand));
    const Token& t = cur();
    if (is_op("(")) {
      parse_call_args(*e);
    } else if ((t.type == Tok::Name || t.type == Tok::String || t.type == Tok::Int || t.type == Tok::Float ||
                is_op("[") || is_op("{")) &&
               !is_name("else") && !is_name("or") && !is_name("and")) {
      if (is_name("is")) fail("you cannot chain multiple tests with is");
      e->args.push_back(parse_postfix(parse_primary()));
    }
    return e;
  }

  ExprPtr parse_filter_expr(ExprPtr node) {
    while (true) {
      if (is_op("|")) {
        node = chained(parse_filter(std::move(node), true));
      } else if (is_name("is")) {
        node = chained(parse_test(std::move(node)));
      } else if (is_op("(")) {
        node = chained(parse_call(std::move(node)));
      } else {
        return node;
      }
    }
  }

  std::vector<Token> t_;
  size_t i_ = 0;
  int loop_depth_ = 0;
  int depth_ = 0;
  int soft_ = 0;                                      // inside an if statement or an inline if
  std::vector<std::pair<int, std::string>> unknown_;  // unknown filters/tests outside them
  std::vector<std::set<std::string>> names_read_;     // one per macro being parsed
};

}  // namespace

Body parse_template(std::string_view source) {
  Lexer lexer(source);
  Parser parser(lexer.run());
  return parser.parse();
}

}  // namespace slmops::jinja
